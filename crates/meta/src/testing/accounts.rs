use super::*;

pub async fn keeps_accounts_principals_and_keys(meta: Store) {
    assert_eq!(meta.first_account().await.unwrap(), None);
    meta.ensure_account("123456789012").await.unwrap();
    meta.ensure_account("123456789012").await.unwrap();
    meta.ensure_account("210987654321").await.unwrap();
    assert_eq!(meta.first_account().await.unwrap().as_deref(), Some("123456789012"));
    assert_eq!(meta.accounts().await.unwrap(), ["123456789012", "210987654321"]);
    let root = root_principal();
    meta.create_principal(&root).await.unwrap();
    assert!(matches!(meta.create_principal(&root).await, Err(MetaError::AlreadyExists)));
    let key = AccessKey {
        access_key_id: "AKIATEST".into(),
        principal_id: root.id.clone(),
        sealed_secret: "s3cret".into(),
        active: true,
        created_at: 2,
        last_used: None,
    };
    meta.create_access_key(&key).await.unwrap();
    assert!(matches!(meta.create_access_key(&key).await, Err(MetaError::AlreadyExists)));
    assert_eq!(meta.access_key("AKIATEST").await.unwrap(), Some((key.clone(), root.clone())));
    assert_eq!(meta.access_key("AKIANONE").await.unwrap(), None);
    assert_eq!(meta.list_access_keys(&root.id).await.unwrap(), [key]);
    assert_eq!(meta.principal_by_name("123456789012", "root").await.unwrap(), Some(root.clone()));
    assert_eq!(meta.principal_by_name("210987654321", "root").await.unwrap(), None);
    assert_eq!(meta.list_principals("123456789012").await.unwrap(), [root]);
}

pub async fn the_first_secret_stored_wins(meta: Store) {
    assert_eq!(meta.registry_secret("token", b"first").await.unwrap(), b"first");
    assert_eq!(meta.registry_secret("token", b"second").await.unwrap(), b"first");
}

/// Nodes storing a secret at once, each with its own initial value: all end up with one.
pub async fn concurrent_secrets_agree(meta: Store) {
    for round in 0..ROUNDS {
        let name = format!("secret-{round}");
        let values = race(&meta, |meta, i| {
            let name = name.clone();
            async move { meta.registry_secret(&name, format!("value-{i}").as_bytes()).await.unwrap() }
        })
        .await;
        assert!(values.windows(2).all(|w| w[0] == w[1]), "round {round}: {values:?}");
    }
}

pub async fn keys_are_deactivated_and_deleted_keeping_one_active(meta: Store) {
    let root = root_with_keys(&meta, &["AKIAONE", "AKIATWO"], "sealed").await;
    let active = |meta: Store| async move {
        meta.list_access_keys("123456789012").await.unwrap().iter().filter(|k| k.active).count()
    };
    assert_eq!(meta.update_access_key_status("AKIAONE", false, true).await.unwrap(), KeyChange::Done);
    assert_eq!(meta.update_access_key_status("AKIATWO", false, true).await.unwrap(), KeyChange::LastActiveKey);
    assert_eq!(meta.delete_access_key("AKIATWO", true).await.unwrap(), KeyChange::LastActiveKey);
    assert_eq!(active(meta.clone()).await, 1);
    // An inactive key may always go; without the guard, the last one too.
    assert_eq!(meta.update_access_key_status("AKIAONE", false, true).await.unwrap(), KeyChange::Done);
    assert_eq!(meta.delete_access_key("AKIAONE", true).await.unwrap(), KeyChange::Done);
    assert!(meta.access_key_deleted("AKIAONE").await.unwrap());
    assert!(!meta.access_key_deleted("AKIATWO").await.unwrap());
    assert_eq!(meta.update_access_key_status("AKIATWO", false, false).await.unwrap(), KeyChange::Done);
    assert_eq!(meta.update_access_key_status("AKIATWO", true, true).await.unwrap(), KeyChange::Done);
    assert_eq!(meta.delete_access_key("AKIATWO", false).await.unwrap(), KeyChange::Done);
    assert_eq!(meta.update_access_key_status("AKIATWO", true, false).await.unwrap(), KeyChange::NotFound);
    assert_eq!(meta.delete_access_key("AKIANONE", false).await.unwrap(), KeyChange::NotFound);
    assert!(meta.list_access_keys(&root.id).await.unwrap().is_empty());
    assert_eq!(meta.access_key("AKIAONE").await.unwrap(), None);
}

/// Deactivations and deletions racing for a principal's last keys leave one active key.
pub async fn concurrent_deactivations_leave_one_active_key(meta: Store) {
    let ids: Vec<String> = (0..RACERS).map(|i| format!("AKIARACE{i:04}")).collect();
    let refs: Vec<&str> = ids.iter().map(String::as_str).collect();
    root_with_keys(&meta, &refs, "sealed").await;
    let changes = race(&meta, |meta, i| async move {
        let id = format!("AKIARACE{i:04}");
        if i % 2 == 0 {
            meta.update_access_key_status(&id, false, true).await.unwrap()
        } else {
            meta.delete_access_key(&id, true).await.unwrap()
        }
    })
    .await;
    assert_eq!(changes.iter().filter(|c| **c == KeyChange::LastActiveKey).count(), 1, "{changes:?}");
    let keys = meta.list_access_keys("123456789012").await.unwrap();
    assert_eq!(keys.iter().filter(|k| k.active).count(), 1, "{keys:?}");
}

pub async fn records_the_latest_use_of_a_key(meta: Store) {
    root_with_keys(&meta, &["AKIAUSED"], "sealed").await;
    let used = |at: i64, service: &str| KeyUse { at, service: service.into(), region: "us-east-1".into() };
    meta.record_access_key_use("AKIAUSED", &used(2000, "ecr")).await.unwrap();
    meta.record_access_key_use("AKIAUSED", &used(1000, "iam")).await.unwrap();
    meta.record_access_key_use("AKIANONE", &used(3000, "ecr")).await.unwrap();
    let (key, _) = meta.access_key("AKIAUSED").await.unwrap().unwrap();
    assert_eq!(key.last_used, Some(used(2000, "ecr")), "an older use does not overwrite a newer one");
}

/// Nodes starting together on an empty store, each with its own candidate: one account.
pub async fn concurrent_first_starts_agree_on_one_account(meta: Store) {
    let answers =
        race(&meta, |meta, i| async move { meta.first_account_or_create(&format!("10000000000{i}")).await.unwrap() })
            .await;
    assert_eq!(answers.iter().filter(|(_, created)| *created).count(), 1, "{answers:?}");
    assert!(answers.windows(2).all(|w| w[0].0 == w[1].0), "{answers:?}");
    assert_eq!(meta.first_account_or_create("999999999999").await.unwrap(), (answers[0].0.clone(), false));
}

/// Nodes starting together, each making the root's first key: exactly one is stored.
pub async fn concurrent_first_keys_store_one(meta: Store) {
    let root = root_with_keys(&meta, &[], "sealed").await;
    let stored = race(&meta, |meta, i| {
        let principal_id = root.id.clone();
        async move {
            let key = AccessKey {
                access_key_id: format!("AKIAFIRST{i:011}"),
                principal_id,
                sealed_secret: format!("sealed-{i}"),
                active: true,
                created_at: i as i64,
                last_used: None,
            };
            meta.create_first_access_key(&key).await.unwrap()
        }
    })
    .await;
    assert_eq!(stored.iter().filter(|s| **s).count(), 1, "{stored:?}");
    assert_eq!(meta.list_access_keys(&root.id).await.unwrap().len(), 1);
}
