use super::*;
use crate::{CappedInsert, PullThroughRule};

fn rule(account: &str, prefix: &str) -> PullThroughRule {
    PullThroughRule {
        account_id: account.into(),
        prefix: prefix.into(),
        upstream_url: "https://registry.example.com".into(),
        upstream_registry: None,
        upstream_prefix: Some("mirror".into()),
        credential_arn: None,
        refresh_seconds: None,
        created_at: 1_000,
        updated_at: 1_000,
    }
}

pub async fn rules_are_kept_per_account_and_prefix(meta: Store) {
    assert_eq!(meta.create_pull_through_rule(&rule("111111111111", "hub"), 50).await.unwrap(), CappedInsert::Inserted);
    assert_eq!(meta.create_pull_through_rule(&rule("111111111111", "ROOT"), 50).await.unwrap(), CappedInsert::Inserted);
    assert_eq!(meta.create_pull_through_rule(&rule("111111111111", "hub"), 50).await.unwrap(), CappedInsert::Taken);
    // The same prefix in another account is another rule.
    assert_eq!(meta.create_pull_through_rule(&rule("222222222222", "hub"), 50).await.unwrap(), CappedInsert::Inserted);
    let mine = meta.pull_through_rules("111111111111").await.unwrap();
    assert_eq!(mine.iter().map(|r| r.prefix.as_str()).collect::<Vec<_>>(), ["ROOT", "hub"]);
    assert_eq!(mine[1], rule("111111111111", "hub"));
    assert_eq!(meta.pull_through_rules("222222222222").await.unwrap().len(), 1);
    assert!(meta.pull_through_rules("333333333333").await.unwrap().is_empty());
}

pub async fn only_the_credential_and_refresh_interval_change(meta: Store) {
    meta.create_pull_through_rule(&rule("111111111111", "hub"), 50).await.unwrap();
    let mut changed = rule("111111111111", "hub");
    changed.credential_arn =
        Some("arn:aws:secretsmanager:us-east-1:111111111111:secret:ecr-pullthroughcache/x-AbCdEf".into());
    changed.refresh_seconds = Some(3);
    changed.updated_at = 2_000;
    // What may not change stays as created.
    changed.upstream_url = "https://elsewhere.example.com".into();
    changed.created_at = 5;
    meta.update_pull_through_rule(&changed).await.unwrap();
    let stored = meta.pull_through_rules("111111111111").await.unwrap().remove(0);
    assert_eq!(stored.credential_arn, changed.credential_arn);
    assert_eq!((stored.refresh_seconds, stored.updated_at), (Some(3), 2_000));
    assert_eq!((stored.upstream_url.as_str(), stored.created_at), ("https://registry.example.com", 1_000));
    assert!(matches!(meta.update_pull_through_rule(&rule("222222222222", "hub")).await, Err(MetaError::NotFound)));
}

pub async fn a_deleted_rule_is_returned_once(meta: Store) {
    meta.create_pull_through_rule(&rule("111111111111", "hub"), 50).await.unwrap();
    assert_eq!(meta.delete_pull_through_rule("111111111111", "hub").await.unwrap(), rule("111111111111", "hub"));
    assert!(matches!(meta.delete_pull_through_rule("111111111111", "hub").await, Err(MetaError::NotFound)));
    assert!(meta.pull_through_rules("111111111111").await.unwrap().is_empty());
}

pub async fn concurrent_creates_never_pass_the_limit(meta: Store) {
    const LIMIT: usize = 3;
    for round in 0..ROUNDS {
        let account = format!("{:012}", round + 1);
        let results = race(&meta, |m, i| {
            let account = account.clone();
            async move { m.create_pull_through_rule(&rule(&account, &format!("p{i}")), LIMIT).await.unwrap() }
        })
        .await;
        let created = results.iter().filter(|r| **r == CappedInsert::Inserted).count();
        assert_eq!(created, LIMIT, "round {round}: {results:?}");
        assert_eq!(meta.pull_through_rules(&account).await.unwrap().len(), LIMIT);
    }
}

pub async fn a_due_tag_check_is_claimed_once(meta: Store) {
    meta.create_repository("hub/app", &RepositorySettings::default(), &[]).await.unwrap();
    // The first check of a tag is always due.
    assert!(meta.claim_tag_check("hub/app", "v1", 1_000, 0).await.unwrap());
    // Not due again until its interval has passed since.
    assert!(!meta.claim_tag_check("hub/app", "v1", 2_000, 999).await.unwrap());
    assert!(meta.claim_tag_check("hub/app", "v1", 3_000, 1_000).await.unwrap());
    assert!(meta.claim_tag_check("hub/app", "v2", 3_000, 0).await.unwrap());
    assert!(!meta.claim_tag_check("no/such", "v1", 3_000, i64::MAX).await.unwrap());
    // Of racing nodes, one claims a due check.
    for round in 0..ROUNDS as i64 {
        let now = 10_000 + round * 1_000;
        let claims =
            race(&meta, move |m, _| async move { m.claim_tag_check("hub/app", "v1", now, now - 500).await.unwrap() })
                .await;
        assert_eq!(claims.iter().filter(|c| **c).count(), 1, "round {round}: {claims:?}");
    }
    // The checks go with their repository.
    meta.delete_repository("hub/app", true).await.unwrap();
    meta.create_repository("hub/app", &RepositorySettings::default(), &[]).await.unwrap();
    assert!(meta.claim_tag_check("hub/app", "v1", 20_000, 0).await.unwrap());
}
