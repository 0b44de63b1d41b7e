use super::*;
use crate::{ManagedSecret, NewSecretVersion, SecretCreated, VersionPut};

fn secret(account: &str, name: &str) -> ManagedSecret {
    ManagedSecret {
        arn: format!("arn:aws:secretsmanager:us-east-1:{account}:secret:{name}-AbCdEf"),
        account_id: account.into(),
        name: name.into(),
        description: Some("upstream".into()),
        kms_key_id: None,
        tags: vec![("team".into(), "a".into())],
        created_at: now_ms(),
        changed_at: now_ms(),
        accessed_at: None,
        deletion_date: None,
        versions: Vec::new(),
    }
}

fn version(id: &str, value: &str) -> NewSecretVersion {
    NewSecretVersion { version_id: id.into(), sealed_value: value.into(), stages: vec!["AWSCURRENT".into()] }
}

pub async fn a_secret_is_created_once_per_account_and_name(meta: Store) {
    let s = secret("111111111111", "ecr-pullthroughcache/hub");
    assert_eq!(meta.create_managed_secret(&s, Some(&version("v1", "sealed-1"))).await.unwrap(), SecretCreated::Created);
    let mut again = s.clone();
    again.arn.push('x');
    assert_eq!(meta.create_managed_secret(&again, None).await.unwrap(), SecretCreated::NameTaken);
    let other = secret("222222222222", "ecr-pullthroughcache/hub");
    assert_eq!(meta.create_managed_secret(&other, None).await.unwrap(), SecretCreated::Created);
    let stored = meta.managed_secret_by_name("111111111111", "ecr-pullthroughcache/hub").await.unwrap().unwrap();
    assert_eq!(stored.arn, s.arn);
    assert_eq!(stored.tags, s.tags);
    assert_eq!(stored.versions, [("v1".to_string(), vec!["AWSCURRENT".to_string()])]);
    assert_eq!(meta.managed_secret_by_arn(&s.arn).await.unwrap().unwrap().name, s.name);
    let v = meta.secret_version(&s.arn, None, Some("AWSCURRENT")).await.unwrap().unwrap();
    assert_eq!((v.version_id.as_str(), v.sealed_value.as_str()), ("v1", "sealed-1"));
    assert_eq!(meta.managed_secrets("111111111111").await.unwrap().len(), 1);
    assert!(meta.managed_secret_by_name("333333333333", "ecr-pullthroughcache/hub").await.unwrap().is_none());
}

pub async fn versions_move_their_labels_and_repeat_ids_are_reported(meta: Store) {
    let s = secret("111111111111", "app");
    meta.create_managed_secret(&s, Some(&version("v1", "one"))).await.unwrap();
    assert_eq!(meta.put_secret_version(&s.arn, &version("v2", "two")).await.unwrap(), VersionPut::Created);
    assert_eq!(meta.put_secret_version(&s.arn, &version("v3", "three")).await.unwrap(), VersionPut::Created);
    let stored = meta.managed_secret_by_arn(&s.arn).await.unwrap().unwrap();
    assert_eq!(
        stored.versions,
        [("v2".to_string(), vec!["AWSPREVIOUS".to_string()]), ("v3".to_string(), vec!["AWSCURRENT".to_string()])],
        "v1 lost its last label and is gone"
    );
    assert_eq!(meta.secret_version(&s.arn, None, Some("AWSPREVIOUS")).await.unwrap().unwrap().sealed_value, "two");
    assert_eq!(meta.secret_version(&s.arn, Some("v3"), None).await.unwrap().unwrap().sealed_value, "three");
    assert!(meta.secret_version(&s.arn, Some("v2"), Some("AWSCURRENT")).await.unwrap().is_none());
    assert_eq!(
        meta.put_secret_version(&s.arn, &version("v3", "other")).await.unwrap(),
        VersionPut::Exists { sealed_value: "three".into(), stages: vec!["AWSCURRENT".into()] }
    );
    assert_eq!(meta.put_secret_version("arn:nope", &version("v9", "x")).await.unwrap(), VersionPut::SecretNotFound);
}

pub async fn deletion_is_scheduled_restored_or_immediate(meta: Store) {
    let s = secret("111111111111", "gone");
    meta.create_managed_secret(&s, Some(&version("v1", "one"))).await.unwrap();
    assert!(meta.set_secret_deletion(&s.arn, Some(now_ms() + 7 * 86_400_000)).await.unwrap());
    let mut same_name = s.clone();
    same_name.arn = format!("{}-new", s.arn);
    assert_eq!(meta.create_managed_secret(&same_name, None).await.unwrap(), SecretCreated::NameScheduledForDeletion);
    assert!(meta.set_secret_deletion(&s.arn, None).await.unwrap());
    assert!(meta.managed_secret_by_arn(&s.arn).await.unwrap().unwrap().deletion_date.is_none());
    // A passed deletion date frees the name.
    assert!(meta.set_secret_deletion(&s.arn, Some(now_ms() - 1)).await.unwrap());
    assert_eq!(meta.create_managed_secret(&same_name, None).await.unwrap(), SecretCreated::Created);
    assert!(meta.managed_secret_by_arn(&s.arn).await.unwrap().is_none());
    assert!(meta.secret_version(&s.arn, None, None).await.unwrap().is_none(), "versions went with it");
    assert!(meta.delete_managed_secret(&same_name.arn).await.unwrap());
    assert!(!meta.delete_managed_secret(&same_name.arn).await.unwrap());
    assert!(!meta.set_secret_deletion(&same_name.arn, None).await.unwrap());
}

pub async fn updates_and_reads_are_recorded(meta: Store) {
    let s = secret("111111111111", "meta");
    meta.create_managed_secret(&s, None).await.unwrap();
    assert!(meta.update_managed_secret(&s.arn, Some("new"), None).await.unwrap());
    assert!(!meta.update_managed_secret("arn:nope", Some("new"), None).await.unwrap());
    meta.record_secret_access(&s.arn, 5_000).await.unwrap();
    meta.record_secret_access(&s.arn, 4_000).await.unwrap();
    let stored = meta.managed_secret_by_arn(&s.arn).await.unwrap().unwrap();
    assert_eq!((stored.description.as_deref(), stored.accessed_at), (Some("new"), Some(5_000)));
    assert!(stored.versions.is_empty());
}

pub async fn sealed_values_page_for_rotation(meta: Store) {
    let s = secret("111111111111", "rot");
    meta.create_managed_secret(&s, Some(&version("v1", "sealed:v1:a"))).await.unwrap();
    let page = meta.stored_secrets(SealedKind::ManagedSecretValue, "", 10).await.unwrap();
    let key = crate::managed_secret_version_key(&s.arn, "v1");
    assert_eq!(
        page,
        [StoredSecret { kind: SealedKind::ManagedSecretValue, id: key.clone(), stored: b"sealed:v1:a".to_vec() }]
    );
    assert!(
        meta.replace_stored_secret(SealedKind::ManagedSecretValue, &key, b"sealed:v1:a", b"sealed:v2:b").await.unwrap()
    );
    assert!(
        !meta
            .replace_stored_secret(SealedKind::ManagedSecretValue, &key, b"sealed:v1:a", b"sealed:v2:c")
            .await
            .unwrap()
    );
    assert_eq!(meta.secret_version(&s.arn, Some("v1"), None).await.unwrap().unwrap().sealed_value, "sealed:v2:b");
}

/// Racing puts of new versions: every one lands, and exactly one holds `AWSCURRENT`.
pub async fn concurrent_puts_leave_one_current_version(meta: Store) {
    let s = secret("111111111111", "race");
    meta.create_managed_secret(&s, Some(&version("v0", "zero"))).await.unwrap();
    let tasks: Vec<_> = (0..RACERS)
        .map(|i| {
            let (meta, arn) = (meta.clone(), s.arn.clone());
            tokio::spawn(
                async move { meta.put_secret_version(&arn, &version(&format!("v{}", i + 1), "x")).await.unwrap() },
            )
        })
        .collect();
    for t in tasks {
        assert_eq!(t.await.unwrap(), VersionPut::Created);
    }
    let stored = meta.managed_secret_by_arn(&s.arn).await.unwrap().unwrap();
    let current = stored.versions.iter().filter(|(_, st)| st.contains(&"AWSCURRENT".to_string())).count();
    let previous = stored.versions.iter().filter(|(_, st)| st.contains(&"AWSPREVIOUS".to_string())).count();
    assert_eq!((current, previous, stored.versions.len()), (1, 1, 2), "{:?}", stored.versions);
}
