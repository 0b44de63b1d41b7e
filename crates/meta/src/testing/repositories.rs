use super::*;

pub async fn creates_a_repository_once_and_lists_in_order(meta: Store) {
    assert!(meta.repository("team/app").await.unwrap().is_none());
    let defaults = RepositorySettings::default();
    let r = meta.create_repository("team/app", &defaults, &[]).await.unwrap();
    assert_eq!(meta.repository("team/app").await.unwrap(), Some(r));
    assert!(matches!(
        meta.create_repository("team/app", &defaults, &[]).await,
        Err(MetaError::RepositoryAlreadyExists)
    ));
    repository(meta.as_ref(), "a").await;
    repository(meta.as_ref(), "z").await;
    assert_eq!(meta.list_repositories(None, 10).await.unwrap(), ["a", "team/app", "z"]);
    assert_eq!(meta.list_repositories(Some("a"), 1).await.unwrap(), ["team/app"]);
    let names: Vec<String> =
        meta.describe_repositories(Some("a"), 100).await.unwrap().into_iter().map(|r| r.name).collect();
    assert_eq!(names, ["team/app", "z"]);
}

pub async fn keeps_settings_and_resource_tags(meta: Store) {
    let settings = RepositorySettings {
        tag_mutability: TagMutabilityMode::ImmutableWithExclusion,
        tag_mutability_exclusions: vec!["latest".into()],
        scan_on_push: true,
        encryption_type: EncryptionType::Kms,
        kms_key: Some("arn:aws:kms:us-east-1:123456789012:key/abc".into()),
        pull_block_severity: Some(PullBlock::AtOrAbove(Severity::High)),
    };
    let created = meta.create_repository("conf/app", &settings, &[("team".into(), "a".into())]).await.unwrap();
    assert_eq!(created.settings, settings);
    assert_eq!(meta.repository("conf/app").await.unwrap().unwrap().settings, settings);
    assert_eq!(meta.repository_resource_tags("conf/app").await.unwrap(), [("team".to_string(), "a".to_string())]);
    meta.tag_repository("conf/app", &[("team".into(), "b".into()), ("env".into(), "prod".into())]).await.unwrap();
    meta.untag_repository("conf/app", &["env".into(), "absent".into()]).await.unwrap();
    assert_eq!(meta.repository_resource_tags("conf/app").await.unwrap(), [("team".to_string(), "b".to_string())]);
    assert!(matches!(meta.tag_repository("nope", &[]).await, Err(MetaError::RepositoryNotFound)));
    let mutable = RepositorySettings { scan_on_push: false, ..RepositorySettings::default() };
    assert_eq!(meta.update_repository_settings("conf/app", &mutable).await.unwrap().settings, mutable);
    assert!(matches!(meta.update_repository_settings("nope", &mutable).await, Err(MetaError::RepositoryNotFound)));
}

pub async fn deletes_a_repository_with_images_only_by_force(meta: Store) {
    let (m, _, _) = populated(meta.as_ref()).await;
    repository(meta.as_ref(), "empty").await;
    assert!(matches!(meta.delete_repository("team/app", false).await, Err(MetaError::RepositoryNotEmpty)));
    assert_eq!(meta.delete_repository("team/app", true).await.unwrap().name, "team/app");
    assert!(meta.repository("team/app").await.unwrap().is_none());
    assert!(meta.manifest("team/app", &m.digest).await.unwrap().is_none());
    assert!(matches!(meta.delete_repository("team/app", true).await, Err(MetaError::RepositoryNotFound)));
    assert_eq!(meta.delete_repository("empty", false).await.unwrap().name, "empty");
}

pub async fn keeps_resource_policies(meta: Store) {
    repository(meta.as_ref(), "guarded").await;
    assert_eq!(meta.repository_policy("guarded").await.unwrap(), None);
    assert_eq!(meta.set_repository_policy("guarded", Some("{p}")).await.unwrap(), None);
    assert_eq!(meta.repository_policy("guarded").await.unwrap().as_deref(), Some("{p}"));
    assert_eq!(meta.set_repository_policy("guarded", None).await.unwrap().as_deref(), Some("{p}"));
    assert!(matches!(meta.repository_policy("nope").await, Err(MetaError::RepositoryNotFound)));
    meta.ensure_account("123456789012").await.unwrap();
    assert_eq!(meta.set_registry_policy("123456789012", Some("{r}")).await.unwrap(), None);
    assert_eq!(meta.registry_policy("123456789012").await.unwrap().as_deref(), Some("{r}"));
    assert_eq!(meta.set_registry_policy("123456789012", None).await.unwrap().as_deref(), Some("{r}"));
    assert_eq!(meta.registry_policy("123456789012").await.unwrap(), None);
}

pub async fn reads_the_facts_of_a_name_range(meta: Store) {
    for name in ["a/1", "a/2", "a/3", "b/1"] {
        repository(meta.as_ref(), name).await;
    }
    meta.set_repository_policy("a/2", Some("{p2}")).await.unwrap();
    meta.tag_repository("a/1", &[("team".into(), "x".into()), ("env".into(), "dev".into())]).await.unwrap();
    meta.tag_repository("a/3", &[("team".into(), "y".into())]).await.unwrap();
    meta.tag_repository("b/1", &[("team".into(), "z".into())]).await.unwrap();
    let row = |name: &str, policy: Option<&str>, tags: &[(&str, &str)]| RepositoryFactsRow {
        name: name.into(),
        policy: policy.map(str::to_string),
        tags: tags.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
    };
    assert_eq!(
        meta.repository_facts_between("a/1", "a/3").await.unwrap(),
        vec![
            row("a/1", None, &[("env", "dev"), ("team", "x")]),
            row("a/2", Some("{p2}"), &[]),
            row("a/3", None, &[("team", "y")])
        ]
    );
    assert!(meta.repository_facts_between("c", "d").await.unwrap().is_empty());
}

pub async fn keeps_account_settings(meta: Store) {
    meta.ensure_account("123456789012").await.unwrap();
    assert_eq!(meta.account_setting("123456789012", "BLOB_MOUNTING").await.unwrap(), None);
    meta.put_account_setting("123456789012", "BLOB_MOUNTING", "ENABLED").await.unwrap();
    meta.put_account_setting("123456789012", "BLOB_MOUNTING", "DISABLED").await.unwrap();
    assert_eq!(meta.account_setting("123456789012", "BLOB_MOUNTING").await.unwrap().as_deref(), Some("DISABLED"));
}

pub async fn keeps_creation_templates(meta: Store) {
    meta.create_creation_template("ROOT", "{}").await.unwrap();
    assert!(matches!(meta.create_creation_template("ROOT", "{}").await, Err(MetaError::AlreadyExists)));
    assert_eq!(meta.update_creation_template("ROOT", "{\"a\":1}").await.unwrap().body, "{\"a\":1}");
    assert!(matches!(meta.update_creation_template("team", "{}").await, Err(MetaError::NotFound)));
    assert_eq!(meta.creation_templates().await.unwrap().len(), 1);
    assert_eq!(meta.delete_creation_template("ROOT").await.unwrap().prefix, "ROOT");
    assert!(matches!(meta.delete_creation_template("ROOT").await, Err(MetaError::NotFound)));
}

pub async fn reports_usage_per_repository(meta: Store) {
    populated(meta.as_ref()).await;
    repository(meta.as_ref(), "empty").await;
    let usage = meta.repository_usage().await.unwrap();
    let app = usage.iter().find(|(n, _, _)| n == "team/app").unwrap();
    assert_eq!((app.1, app.2), (3, 11), "three images; the bytes of the two blobs linked");
}

/// Several creates of one name at once: exactly one creates it, the others are told it exists.
pub async fn concurrent_creates_of_one_repository_exactly_one_wins(meta: Store) {
    for round in 0..ROUNDS {
        let name = format!("race/{round}");
        let results = race(&meta, |meta, _| {
            let name = name.clone();
            async move { meta.create_repository(&name, &RepositorySettings::default(), &[]).await }
        })
        .await;
        let created = results.iter().filter(|r| r.is_ok()).count();
        let refused = results.iter().filter(|r| matches!(r, Err(MetaError::RepositoryAlreadyExists))).count();
        assert_eq!((created, refused), (1, RACERS - 1), "round {round}: {results:?}");
    }
}

pub async fn keeps_pull_time_exclusions_per_account(meta: Store) {
    let (a, b) = ("111111111111", "222222222222");
    let alice = "arn:aws:iam::111111111111:user/alice";
    let ci = "arn:aws:iam::111111111111:role/ci";
    assert_eq!(meta.add_pull_time_exclusion(a, ci, 1_000, 100).await.unwrap(), CappedInsert::Inserted);
    assert_eq!(meta.add_pull_time_exclusion(a, alice, 2_000, 100).await.unwrap(), CappedInsert::Inserted);
    assert_eq!(meta.add_pull_time_exclusion(a, alice, 3_000, 100).await.unwrap(), CappedInsert::Taken);
    // Another account's list is another list, with its own limit.
    assert_eq!(meta.add_pull_time_exclusion(b, alice, 4_000, 0).await.unwrap(), CappedInsert::LimitReached);
    assert_eq!(meta.add_pull_time_exclusion(b, alice, 4_000, 1).await.unwrap(), CappedInsert::Inserted);
    assert_eq!(
        meta.pull_time_exclusions(a).await.unwrap(),
        [(ci.to_string(), 1_000), (alice.to_string(), 2_000)].into_iter().collect::<Vec<_>>()
    );
    assert!(meta.remove_pull_time_exclusion(a, alice).await.unwrap());
    assert!(!meta.remove_pull_time_exclusion(a, alice).await.unwrap());
    assert_eq!(meta.pull_time_exclusions(a).await.unwrap().len(), 1);
    assert_eq!(meta.pull_time_exclusions(b).await.unwrap().len(), 1);
}

pub async fn concurrent_exclusions_never_pass_the_limit(meta: Store) {
    const LIMIT: usize = 3;
    for round in 0..ROUNDS {
        let account = format!("{:012}", round + 1);
        let results = race(&meta, |m, i| {
            let account = account.clone();
            let arn = format!("arn:aws:iam::{account}:user/u{i}");
            async move { m.add_pull_time_exclusion(&account, &arn, 1, LIMIT).await.unwrap() }
        })
        .await;
        let added = results.iter().filter(|r| **r == CappedInsert::Inserted).count();
        assert_eq!(added, LIMIT, "round {round}: {results:?}");
        assert_eq!(meta.pull_time_exclusions(&account).await.unwrap().len(), LIMIT);
    }
}
