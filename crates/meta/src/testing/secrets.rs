use super::*;

pub async fn pages_through_stored_secrets_and_replaces_them_only_if_unchanged(meta: Store) {
    root_with_keys(&meta, &["AKIAA", "AKIAB", "AKIAC"], "plain").await;
    meta.registry_secret("token", b"raw-bytes").await.unwrap();
    let page = meta.stored_secrets(SealedKind::AccessKeySecret, "", 2).await.unwrap();
    assert_eq!(page.iter().map(|s| s.id.as_str()).collect::<Vec<_>>(), ["AKIAA", "AKIAB"]);
    assert_eq!(page[0].stored, b"plain-AKIAA");
    let rest = meta.stored_secrets(SealedKind::AccessKeySecret, "AKIAB", 2).await.unwrap();
    assert_eq!(rest.iter().map(|s| s.id.as_str()).collect::<Vec<_>>(), ["AKIAC"]);
    assert!(
        meta.replace_stored_secret(SealedKind::AccessKeySecret, "AKIAA", b"plain-AKIAA", b"sealed:v1:x").await.unwrap()
    );
    assert!(
        !meta
            .replace_stored_secret(SealedKind::AccessKeySecret, "AKIAA", b"plain-AKIAA", b"sealed:v1:y")
            .await
            .unwrap()
    );
    assert_eq!(meta.access_key("AKIAA").await.unwrap().unwrap().0.sealed_secret, "sealed:v1:x");
    let secrets = meta.stored_secrets(SealedKind::RegistrySecret, "", 10).await.unwrap();
    assert_eq!(
        secrets,
        [StoredSecret { kind: SealedKind::RegistrySecret, id: "token".into(), stored: b"raw-bytes".to_vec() }]
    );
    assert!(meta.replace_stored_secret(SealedKind::RegistrySecret, "token", b"raw-bytes", b"sealed").await.unwrap());
    assert_eq!(meta.registry_secret("token", b"other").await.unwrap(), b"sealed");
    meta.erase_freed_space().await.unwrap();
    assert_eq!(meta.registry_secret("token", b"other").await.unwrap(), b"sealed");
}

pub async fn keeps_the_rotation_target(meta: Store) {
    assert_eq!(meta.rotation_target().await.unwrap(), None);
    meta.set_rotation_target(Some(2)).await.unwrap();
    meta.set_rotation_target(Some(3)).await.unwrap();
    assert_eq!(meta.rotation_target().await.unwrap(), Some(3));
    meta.set_rotation_target(None).await.unwrap();
    assert_eq!(meta.rotation_target().await.unwrap(), None);
}
