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
}
