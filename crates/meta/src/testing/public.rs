use super::*;

pub async fn keeps_one_alias_per_account_each_held_once(meta: Store) {
    let (a, b) = ("111111111111", "222222222222");
    assert_eq!(meta.registry_alias(a).await.unwrap(), None);
    assert_eq!(meta.ensure_registry_alias(a, "abcdefgh", 1).await.unwrap(), "abcdefgh");
    // A second call keeps the first alias.
    assert_eq!(meta.ensure_registry_alias(a, "zzzzzzzz", 2).await.unwrap(), "abcdefgh");
    // Another account cannot take it, by either call.
    assert!(matches!(meta.ensure_registry_alias(b, "abcdefgh", 3).await, Err(MetaError::AlreadyExists)));
    assert!(matches!(meta.set_registry_alias(b, "abcdefgh", 3).await, Err(MetaError::AlreadyExists)));
    meta.set_registry_alias(a, "team-a", 4).await.unwrap();
    assert_eq!(meta.registry_alias(a).await.unwrap().as_deref(), Some("team-a"));
    // The old alias is free again.
    meta.set_registry_alias(b, "abcdefgh", 5).await.unwrap();
    assert_eq!(meta.registry_alias(b).await.unwrap().as_deref(), Some("abcdefgh"));
    assert_eq!(meta.account_of_registry_alias("abcdefgh").await.unwrap().as_deref(), Some(b));
    assert_eq!(meta.account_of_registry_alias("team-a").await.unwrap().as_deref(), Some(a));
    assert_eq!(meta.account_of_registry_alias("nobody").await.unwrap(), None);
    assert_eq!(
        meta.registry_aliases().await.unwrap(),
        vec![(b.to_string(), "abcdefgh".to_string()), (a.to_string(), "team-a".to_string())]
    );
}

pub async fn counts_anonymous_pulls_per_source_and_month(meta: Store) {
    assert_eq!(meta.anonymous_pull_bytes("192.0.2.1", "2026-12").await.unwrap(), 0);
    // Concurrent additions all count.
    let adds = (0..16).map(|_| {
        let meta = meta.clone();
        async move { meta.add_anonymous_pull_bytes("192.0.2.1", "2026-12", 1000).await }
    });
    for r in futures_util::future::join_all(adds).await {
        r.unwrap();
    }
    meta.add_anonymous_pull_bytes("192.0.2.2", "2026-12", 5).await.unwrap();
    meta.add_anonymous_pull_bytes("192.0.2.1", "2027-01", 7).await.unwrap();
    assert_eq!(meta.anonymous_pull_bytes("192.0.2.1", "2026-12").await.unwrap(), 16_000);
    assert_eq!(meta.anonymous_pull_bytes("192.0.2.2", "2026-12").await.unwrap(), 5);
    assert_eq!(meta.anonymous_pull_bytes("192.0.2.1", "2027-01").await.unwrap(), 7);
}
