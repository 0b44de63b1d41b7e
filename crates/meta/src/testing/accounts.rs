use super::*;

pub async fn keeps_accounts_principals_and_keys(meta: Store) {
    assert_eq!(meta.first_account().await.unwrap(), None);
    meta.ensure_account("123456789012").await.unwrap();
    meta.ensure_account("123456789012").await.unwrap();
    meta.ensure_account("210987654321").await.unwrap();
    assert_eq!(meta.first_account().await.unwrap().as_deref(), Some("123456789012"));
    let root = Principal {
        id: "123456789012".into(),
        account_id: "123456789012".into(),
        name: "root".into(),
        kind: PrincipalKind::Root,
        created_at: 1,
    };
    meta.create_principal(&root).await.unwrap();
    assert!(matches!(meta.create_principal(&root).await, Err(MetaError::AlreadyExists)));
    let key = AccessKey {
        access_key_id: "AKIATEST".into(),
        principal_id: root.id.clone(),
        secret: "s3cret".into(),
        active: true,
        created_at: 2,
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
