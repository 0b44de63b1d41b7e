use super::*;

pub async fn keeps_policies_and_when_they_were_applied(meta: Store) {
    repository(meta.as_ref(), "life").await;
    assert_eq!(meta.lifecycle_policy("life").await.unwrap(), None);
    assert_eq!(meta.set_lifecycle_policy("life", Some("{\"rules\":[]}")).await.unwrap(), None);
    assert_eq!(meta.lifecycle_policy("life").await.unwrap(), Some(("{\"rules\":[]}".to_string(), None)));
    meta.set_lifecycle_evaluated("life", 77).await.unwrap();
    assert_eq!(meta.lifecycle_policy("life").await.unwrap().unwrap().1, Some(77));
    assert!(meta.set_lifecycle_policy("life", None).await.unwrap().is_some());
    assert_eq!(meta.lifecycle_policy("life").await.unwrap(), None);
    assert!(matches!(meta.lifecycle_policy("nope").await, Err(MetaError::RepositoryNotFound)));
    assert!(matches!(meta.set_lifecycle_policy("nope", None).await, Err(MetaError::RepositoryNotFound)));
}

pub async fn keeps_the_latest_preview(meta: Store) {
    repository(meta.as_ref(), "life").await;
    assert_eq!(meta.lifecycle_preview("life").await.unwrap(), None);
    meta.put_lifecycle_preview("life", "p1", "COMPLETE", "[]").await.unwrap();
    meta.put_lifecycle_preview("life", "p2", "COMPLETE", "[1]").await.unwrap();
    assert_eq!(
        meta.lifecycle_preview("life").await.unwrap(),
        Some(("p2".to_string(), "COMPLETE".to_string(), "[1]".to_string()))
    );
}

pub async fn records_events_newest_first(meta: Store) {
    repository(meta.as_ref(), "team/app").await;
    repository(meta.as_ref(), "a").await;
    let event = LifecycleEvent {
        repository: "team/app".into(),
        digest: digest("sig").to_string(),
        tags: vec!["t".into()],
        action: ActionKind::Expire,
        rule_priority: 2,
        at: 10_000,
    };
    meta.record_lifecycle_event(&event).await.unwrap();
    let later = LifecycleEvent { repository: "a".into(), at: 11_000, ..event.clone() };
    meta.record_lifecycle_event(&later).await.unwrap();
    assert_eq!(meta.lifecycle_events(Some("team/app"), 10).await.unwrap(), std::slice::from_ref(&event));
    assert_eq!(meta.lifecycle_events(None, 10).await.unwrap(), [later, event]);
    assert_eq!(meta.lifecycle_events(None, 1).await.unwrap().len(), 1);
}
