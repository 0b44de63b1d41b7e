use super::*;
use crate::{KmsAlias, KmsGrant, KmsKey, KmsKeyMaterial, KmsKeyState, kms_material_key};

fn key(account: &str, id: &str) -> KmsKey {
    KmsKey {
        key_id: id.into(),
        account_id: account.into(),
        arn: format!("arn:aws:kms:us-east-1:{account}:key/{id}"),
        description: "repositories".into(),
        key_manager: "CUSTOMER".into(),
        state: KmsKeyState::Enabled,
        policy: r#"{"Version":"2012-10-17","Statement":[]}"#.into(),
        created_at: now_ms(),
        deletion_date: None,
        pending_window_days: None,
        rotation_period_days: None,
        next_rotation_at: None,
        current_material: format!("m1-{id}"),
    }
}

fn material(key_id: &str, id: &str, rotation: Option<&str>) -> KmsKeyMaterial {
    KmsKeyMaterial {
        key_id: key_id.into(),
        material_id: id.into(),
        sealed_material: format!("sealed:{key_id}:{id}"),
        rotation_type: rotation.map(str::to_string),
        created_at: now_ms(),
    }
}

async fn create(meta: &Store, account: &str, id: &str) -> KmsKey {
    let k = key(account, id);
    meta.create_kms_key(&k, &material(id, &k.current_material, None)).await.unwrap();
    k
}

pub async fn keys_are_stored_with_their_first_material_and_listed_per_account(meta: Store) {
    let a = create(&meta, "111111111111", "0a").await;
    create(&meta, "111111111111", "0b").await;
    create(&meta, "111111111111", "0c").await;
    create(&meta, "222222222222", "0d").await;
    assert_eq!(meta.kms_key("0a").await.unwrap(), Some(a.clone()));
    assert!(meta.kms_key("nope").await.unwrap().is_none());
    let ids = |keys: Vec<KmsKey>| keys.into_iter().map(|k| k.key_id).collect::<Vec<_>>();
    assert_eq!(ids(meta.kms_keys("111111111111", "", 2).await.unwrap()), ["0a", "0b"]);
    assert_eq!(ids(meta.kms_keys("111111111111", "0b", 2).await.unwrap()), ["0c"]);
    assert_eq!(ids(meta.kms_keys("222222222222", "", 10).await.unwrap()), ["0d"]);
    let materials = meta.kms_key_materials("0a").await.unwrap();
    assert_eq!(
        materials,
        [material("0a", "m1-0a", None)].map(|m| KmsKeyMaterial { created_at: materials[0].created_at, ..m })
    );
    // What may change, changes; the id, account and ARN do not.
    let mut changed = a.clone();
    changed.state = KmsKeyState::PendingDeletion;
    changed.deletion_date = Some(now_ms() + 7 * 86_400_000);
    changed.pending_window_days = Some(7);
    changed.policy = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow"}]}"#.into();
    changed.rotation_period_days = Some(365);
    changed.next_rotation_at = Some(now_ms());
    changed.description = "other".into();
    assert!(meta.update_kms_key(&changed, &a).await.unwrap());
    assert_eq!(meta.kms_key("0a").await.unwrap(), Some(changed.clone()));
    let missing = key("111111111111", "nope");
    assert!(!meta.update_kms_key(&missing, &missing).await.unwrap());
    // A change made from a stale read is refused and leaves the key as it is.
    let mut stale = a.clone();
    stale.state = KmsKeyState::Enabled;
    stale.description = "from a stale read".into();
    assert!(!meta.update_kms_key(&stale, &a).await.unwrap());
    assert_eq!(meta.kms_key("0a").await.unwrap(), Some(changed.clone()));
    // So is one read before a rotation.
    assert!(meta.rotate_kms_key(&material("0a", "m9", Some("ON_DEMAND")), None).await.unwrap());
    let mut disabled = changed.clone();
    disabled.state = KmsKeyState::Disabled;
    assert!(!meta.update_kms_key(&disabled, &changed).await.unwrap());
}

pub async fn rotation_adds_material_and_keeps_the_old(meta: Store) {
    create(&meta, "111111111111", "0a").await;
    assert!(meta.rotate_kms_key(&material("0a", "m2", Some("ON_DEMAND")), None).await.unwrap());
    assert!(meta.rotate_kms_key(&material("0a", "m3", Some("AUTOMATIC")), Some(42)).await.unwrap());
    let k = meta.kms_key("0a").await.unwrap().unwrap();
    assert_eq!((k.current_material.as_str(), k.next_rotation_at), ("m3", Some(42)));
    let ids: Vec<_> = meta.kms_key_materials("0a").await.unwrap().into_iter().map(|m| m.material_id).collect();
    assert_eq!(ids.len(), 3);
    assert!(ids.contains(&"m1-0a".to_string()) && ids.contains(&"m2".to_string()));
    assert!(!meta.rotate_kms_key(&material("nope", "m2", Some("ON_DEMAND")), None).await.unwrap());
    assert!(meta.kms_key_materials("nope").await.unwrap().is_empty());
}

fn alias(account: &str, name: &str, target: &str) -> KmsAlias {
    KmsAlias {
        account_id: account.into(),
        alias_name: name.into(),
        target_key_id: target.into(),
        created_at: now_ms(),
        updated_at: now_ms(),
    }
}

pub async fn aliases_are_unique_per_account_and_go_with_their_key(meta: Store) {
    create(&meta, "111111111111", "0a").await;
    create(&meta, "111111111111", "0b").await;
    create(&meta, "222222222222", "0c").await;
    let first = alias("111111111111", "alias/app", "0a");
    assert!(meta.create_kms_alias(&first).await.unwrap());
    assert!(!meta.create_kms_alias(&alias("111111111111", "alias/app", "0b")).await.unwrap(), "the name is taken");
    assert!(meta.create_kms_alias(&alias("222222222222", "alias/app", "0c")).await.unwrap(), "in another account");
    assert!(meta.create_kms_alias(&alias("111111111111", "alias/aws/ecr", "0b")).await.unwrap());
    assert_eq!(meta.kms_alias("111111111111", "alias/app").await.unwrap(), Some(first));
    let names: Vec<_> =
        meta.kms_aliases("111111111111").await.unwrap().into_iter().map(|a| (a.alias_name, a.target_key_id)).collect();
    assert_eq!(names, [("alias/app".to_string(), "0a".to_string()), ("alias/aws/ecr".to_string(), "0b".to_string())]);
    assert!(meta.delete_kms_alias("111111111111", "alias/app").await.unwrap());
    assert!(!meta.delete_kms_alias("111111111111", "alias/app").await.unwrap());
    assert!(meta.kms_alias("111111111111", "alias/app").await.unwrap().is_none());
    assert!(meta.kms_alias("222222222222", "alias/app").await.unwrap().is_some());
    // Deleting a key takes its aliases, grants and materials along.
    meta.create_kms_grant(&grant("g1", "0b")).await.unwrap();
    assert!(meta.delete_kms_key("0b").await.unwrap());
    assert!(!meta.delete_kms_key("0b").await.unwrap());
    assert!(meta.kms_key("0b").await.unwrap().is_none());
    assert!(meta.kms_aliases("111111111111").await.unwrap().is_empty());
    assert!(meta.kms_grants("0b").await.unwrap().is_empty());
    assert!(meta.kms_key_materials("0b").await.unwrap().is_empty());
}

fn grant(id: &str, key_id: &str) -> KmsGrant {
    KmsGrant {
        grant_id: id.into(),
        key_id: key_id.into(),
        name: Some("ecr".into()),
        grantee_principal: "arn:aws:iam::111111111111:root".into(),
        retiring_principal: Some("arn:aws:iam::111111111111:user/ops".into()),
        operations: vec!["Decrypt".into(), "GenerateDataKey".into()],
        constraints: Some(r#"{"EncryptionContextSubset":{"repository":"app"}}"#.into()),
        issuing_account: "arn:aws:iam::111111111111:root".into(),
        grant_token: format!("token-{id}"),
        created_at: now_ms(),
    }
}

pub async fn grants_are_kept_per_key(meta: Store) {
    create(&meta, "111111111111", "0a").await;
    create(&meta, "111111111111", "0b").await;
    let g2 = grant("g2", "0a");
    meta.create_kms_grant(&g2).await.unwrap();
    meta.create_kms_grant(&KmsGrant { name: None, retiring_principal: None, constraints: None, ..grant("g1", "0a") })
        .await
        .unwrap();
    meta.create_kms_grant(&grant("g3", "0b")).await.unwrap();
    let grants = meta.kms_grants("0a").await.unwrap();
    assert_eq!(grants.iter().map(|g| g.grant_id.as_str()).collect::<Vec<_>>(), ["g1", "g2"]);
    assert_eq!(grants[1], g2);
    assert_eq!((grants[0].name.as_deref(), grants[0].constraints.as_deref()), (None, None));
    assert!(meta.delete_kms_grant("g2").await.unwrap());
    assert!(!meta.delete_kms_grant("g2").await.unwrap());
    assert_eq!(meta.kms_grants("0a").await.unwrap().len(), 1);
    assert_eq!(meta.kms_grants("0b").await.unwrap().len(), 1);
}

pub async fn sealed_material_pages_for_master_key_rotation(meta: Store) {
    create(&meta, "111111111111", "0a").await;
    meta.rotate_kms_key(&material("0a", "m2", Some("ON_DEMAND")), None).await.unwrap();
    create(&meta, "222222222222", "0b").await;
    let page = meta.stored_secrets(SealedKind::KmsKeyMaterial, "", 2).await.unwrap();
    let ids: Vec<_> = page.iter().map(|s| s.id.clone()).collect();
    assert_eq!(ids, [kms_material_key("0a", "m1-0a"), kms_material_key("0a", "m2")]);
    assert_eq!(page[0].stored, b"sealed:0a:m1-0a");
    let rest = meta.stored_secrets(SealedKind::KmsKeyMaterial, &ids[1], 10).await.unwrap();
    assert_eq!(rest.iter().map(|s| s.id.as_str()).collect::<Vec<_>>(), ["0b/m1-0b"]);
    let id = &ids[1];
    assert!(meta.replace_stored_secret(SealedKind::KmsKeyMaterial, id, b"sealed:0a:m2", b"resealed").await.unwrap());
    assert!(!meta.replace_stored_secret(SealedKind::KmsKeyMaterial, id, b"sealed:0a:m2", b"again").await.unwrap());
    let m: Vec<_> = meta.kms_key_materials("0a").await.unwrap().into_iter().map(|m| m.sealed_material).collect();
    assert!(m.contains(&"resealed".to_string()));
}
