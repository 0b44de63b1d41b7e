//! The KMS service on a real metadata store: keys' life cycle, ciphertexts, rotation, the key
//! policy rule and grants.

use berth_meta::PrincipalKind;

use super::*;
use crate::authz::Authorizer;
use crate::test_registry;

const ACCOUNT: &str = "111111111111";
const OTHER: &str = "222222222222";

fn root(account: &str) -> Caller {
    Caller {
        account_id: account.into(),
        principal_id: account.into(),
        arn: format!("arn:aws:iam::{account}:root"),
        access_key_id: "AKIA".into(),
        kind: PrincipalKind::Root,
    }
}

/// A user with no identity policies at all.
fn user(account: &str, name: &str) -> Caller {
    Caller {
        account_id: account.into(),
        principal_id: format!("AIDA{name}"),
        arn: format!("arn:aws:iam::{account}:user/{name}"),
        access_key_id: "AKIA".into(),
        kind: PrincipalKind::User,
    }
}

fn who<'a>(authorizer: &'a Authorizer, caller: &'a Caller, env: &'a RequestEnv) -> KmsCaller<'a> {
    KmsCaller { authorizer, caller, env, via_service: None }
}

fn ctx(pairs: &[(&str, &str)]) -> EncryptionContext {
    pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

#[tokio::test]
async fn ciphertexts_open_under_their_key_and_context_only() {
    let (_dir, registry) = test_registry().await;
    let (kms, authz, env, root) =
        (registry.kms(), registry.authorizer("us-east-1"), RequestEnv::default(), root(ACCOUNT));
    let w = who(&authz, &root, &env);
    let key = kms.create_key(&w, NewKey::default()).await.unwrap();
    let other = kms.create_key(&w, NewKey::default()).await.unwrap();
    let c = ctx(&[("repo", "app")]);
    let (arn, blob) = kms.encrypt(&w, &key.key_id, b"secret", &c, None, false).await.unwrap();
    assert_eq!(arn, key.arn);
    let opened = kms.decrypt(&w, &blob, None, &c, None, false).await.unwrap();
    assert_eq!((opened.plaintext.as_slice(), opened.key_arn.as_str()), (b"secret".as_slice(), key.arn.as_str()));
    assert!(matches!(kms.decrypt(&w, &blob, None, &ctx(&[]), None, false).await, Err(KmsError::InvalidCiphertext(_))));
    assert!(matches!(
        kms.decrypt(&w, &blob, Some(&other.key_id), &c, None, false).await,
        Err(KmsError::IncorrectKey(_))
    ));
    let mut flipped = blob.clone();
    *flipped.last_mut().unwrap() ^= 1;
    assert!(matches!(kms.decrypt(&w, &flipped, None, &c, None, false).await, Err(KmsError::InvalidCiphertext(_))));
    assert!(matches!(kms.decrypt(&w, b"garbage", None, &c, None, false).await, Err(KmsError::InvalidCiphertext(_))));

    let data = kms.generate_data_key(&w, &key.arn, None, Some("AES_256"), &c, false).await.unwrap();
    assert_eq!(data.plaintext.len(), 32);
    assert_eq!(kms.decrypt(&w, &data.ciphertext, None, &c, None, false).await.unwrap().plaintext, data.plaintext);
    assert!(matches!(
        kms.generate_data_key(&w, &key.arn, Some(32), Some("AES_256"), &c, false).await,
        Err(KmsError::Validation(_))
    ));
}

#[tokio::test]
async fn rotation_keeps_old_material_and_states_gate_use() {
    let (_dir, registry) = test_registry().await;
    let (kms, authz, env, root) =
        (registry.kms(), registry.authorizer("us-east-1"), RequestEnv::default(), root(ACCOUNT));
    let w = who(&authz, &root, &env);
    let key = kms.create_key(&w, NewKey::default()).await.unwrap();
    let (_, before) = kms.encrypt(&w, &key.key_id, b"old", &ctx(&[]), None, false).await.unwrap();
    kms.rotate_key_on_demand(&w, &key.key_id).await.unwrap();
    let rotated = kms.describe_key(&w, &key.key_id).await.unwrap();
    assert_ne!(rotated.current_material, key.current_material);
    let (_, after) = kms.encrypt(&w, &key.key_id, b"new", &ctx(&[]), None, false).await.unwrap();
    assert_eq!(kms.decrypt(&w, &before, None, &ctx(&[]), None, false).await.unwrap().plaintext, b"old");
    assert_eq!(
        kms.decrypt(&w, &after, None, &ctx(&[]), None, false).await.unwrap().material_id,
        rotated.current_material
    );
    let (_, rotations) = kms.list_key_rotations(&w, &key.key_id, false, None, None).await.unwrap();
    assert_eq!(rotations.items.len(), 1);

    kms.disable_key(&w, &key.key_id).await.unwrap();
    assert!(matches!(kms.decrypt(&w, &before, None, &ctx(&[]), None, false).await, Err(KmsError::Disabled(_))));
    kms.schedule_key_deletion(&w, &key.key_id, Some(7)).await.unwrap();
    assert!(matches!(kms.encrypt(&w, &key.key_id, b"x", &ctx(&[]), None, false).await, Err(KmsError::InvalidState(_))));
    assert!(matches!(kms.enable_key(&w, &key.key_id).await, Err(KmsError::InvalidState(_))));
    assert!(matches!(kms.schedule_key_deletion(&w, &key.key_id, Some(6)).await, Err(KmsError::Validation(_))));
    let cancelled = kms.cancel_key_deletion(&w, &key.key_id).await.unwrap();
    assert_eq!(cancelled.state, KmsKeyState::Disabled);
    kms.enable_key(&w, &key.key_id).await.unwrap();
    assert_eq!(kms.decrypt(&w, &before, None, &ctx(&[]), None, false).await.unwrap().plaintext, b"old");
}

#[tokio::test]
async fn the_key_policy_decides_even_for_the_root_and_grants_add_to_it() {
    let (_dir, registry) = test_registry().await;
    let (kms, authz, env) = (registry.kms(), registry.authorizer("us-east-1"), RequestEnv::default());
    let (root_a, alice, root_b) = (root(ACCOUNT), user(ACCOUNT, "alice"), root(OTHER));
    let w = who(&authz, &root_a, &env);
    let key = kms.create_key(&w, NewKey::default()).await.unwrap();
    let (_, blob) = kms.encrypt(&w, &key.key_id, b"v", &ctx(&[("repo", "app")]), None, false).await.unwrap();

    // Alice has no IAM policy: the default key policy delegates to IAM, so she is refused…
    let as_alice = who(&authz, &alice, &env);
    assert!(matches!(
        kms.decrypt(&as_alice, &blob, None, &ctx(&[("repo", "app")]), None, false).await,
        Err(KmsError::AccessDenied(_))
    ));
    // …until a grant names her, for that operation and context.
    let grant = NewGrant {
        key_id: key.key_id.clone(),
        grantee_principal: alice.arn.clone(),
        operations: vec!["Decrypt".into()],
        constraints: GrantConstraints { subset: Some(ctx(&[("repo", "app")])), equals: None },
        ..NewGrant::default()
    };
    let (grant_id, token) = kms.create_grant(&w, grant).await.unwrap();
    assert_eq!(
        kms.decrypt(&as_alice, &blob, None, &ctx(&[("repo", "app")]), None, false).await.unwrap().plaintext,
        b"v"
    );
    assert!(matches!(
        kms.encrypt(&as_alice, &key.key_id, b"v", &ctx(&[("repo", "app")]), None, false).await,
        Err(KmsError::AccessDenied(_))
    ));
    let (_, listed) = kms.list_grants(&w, &key.key_id, None, None, None, None).await.unwrap();
    assert_eq!(listed.items.iter().map(|g| g.grant_id.as_str()).collect::<Vec<_>>(), [grant_id.as_str()]);
    kms.retire_grant(&w, Some(&token), None, None, false).await.unwrap();
    assert!(matches!(
        kms.decrypt(&as_alice, &blob, None, &ctx(&[("repo", "app")]), None, false).await,
        Err(KmsError::AccessDenied(_))
    ));

    // Another account's root: not in the key policy, refused; the policy naming it lets it decrypt.
    let as_b = who(&authz, &root_b, &env);
    let denied = kms.decrypt(&as_b, &blob, None, &ctx(&[("repo", "app")]), None, false).await;
    assert!(matches!(&denied, Err(KmsError::AccessDenied(m)) if m.contains(&key.arn)), "{:?}", denied.as_ref().err());
    let policy = format!(
        r#"{{"Version":"2012-10-17","Statement":[{{"Effect":"Allow","Principal":{{"AWS":"arn:aws:iam::{ACCOUNT}:root"}},"Action":"kms:*","Resource":"*"}},{{"Effect":"Allow","Principal":{{"AWS":"arn:aws:iam::{OTHER}:root"}},"Action":"kms:Decrypt","Resource":"*"}}]}}"#
    );
    kms.put_key_policy(&w, &key.key_id, None, &policy, false).await.unwrap();
    authz.invalidate();
    assert_eq!(kms.decrypt(&as_b, &blob, None, &ctx(&[("repo", "app")]), None, false).await.unwrap().plaintext, b"v");

    // A policy that would lock the caller out is refused unless the check is bypassed; one
    // that does not name the root leaves even the root without access.
    let alice_only = format!(
        r#"{{"Version":"2012-10-17","Statement":[{{"Effect":"Allow","Principal":{{"AWS":"{}"}},"Action":"kms:*","Resource":"*"}}]}}"#,
        alice.arn
    );
    assert!(matches!(
        kms.put_key_policy(&w, &key.key_id, None, &alice_only, false).await,
        Err(KmsError::MalformedPolicyDocument(_))
    ));
    kms.put_key_policy(&w, &key.key_id, None, &alice_only, true).await.unwrap();
    assert!(matches!(kms.describe_key(&w, &key.key_id).await, Err(KmsError::AccessDenied(_))));
    assert!(kms.describe_key(&as_alice, &key.key_id).await.is_ok());
}

#[tokio::test]
async fn aliases_name_keys_and_the_ecr_key_is_made_on_first_use() {
    let (_dir, registry) = test_registry().await;
    let (kms, authz, env, root) =
        (registry.kms(), registry.authorizer("us-east-1"), RequestEnv::default(), root(ACCOUNT));
    let w = who(&authz, &root, &env);
    let key = kms.create_key(&w, NewKey::default()).await.unwrap();
    kms.create_alias(&w, "alias/team", &key.key_id).await.unwrap();
    assert!(matches!(kms.create_alias(&w, "alias/team", &key.key_id).await, Err(KmsError::AlreadyExists(_))));
    assert!(matches!(kms.create_alias(&w, "alias/aws/mine", &key.key_id).await, Err(KmsError::InvalidAliasName(_))));
    assert_eq!(kms.describe_key(&w, "alias/team").await.unwrap().key_id, key.key_id);
    assert_eq!(kms.describe_key(&w, &kms.alias_arn(ACCOUNT, "alias/team")).await.unwrap().key_id, key.key_id);
    assert!(matches!(kms.describe_key(&w, "alias/nothing").await, Err(KmsError::NotFound(_))));
    assert!(matches!(kms.describe_key(&w, "not-a-key").await, Err(KmsError::NotFound(_))));

    let managed = kms.describe_key(&w, ECR_MANAGED_ALIAS).await.unwrap();
    assert_eq!(managed.key_manager, "AWS");
    assert_eq!(kms.ecr_key(ACCOUNT, None).await.unwrap().key_id, managed.key_id, "made once");
    // Directly, even the root may not use it: only through ECR.
    assert!(matches!(
        kms.encrypt(&w, ECR_MANAGED_ALIAS, b"v", &ctx(&[]), None, false).await,
        Err(KmsError::AccessDenied(_))
    ));
    let via_ecr = KmsCaller { via_service: Some("ecr.us-east-1.amazonaws.com".into()), ..who(&authz, &root, &env) };
    assert!(kms.encrypt(&via_ecr, ECR_MANAGED_ALIAS, b"v", &ctx(&[]), None, false).await.is_ok());
    assert!(matches!(kms.disable_key(&w, ECR_MANAGED_ALIAS).await, Err(KmsError::AccessDenied(_))));

    let aliases = kms.list_aliases(&w, None, None, None).await.unwrap();
    assert_eq!(
        aliases.items.iter().map(|a| a.alias_name.as_str()).collect::<Vec<_>>(),
        ["alias/aws/ecr", "alias/team"]
    );
    kms.delete_alias(&w, "alias/team").await.unwrap();
    assert!(matches!(kms.delete_alias(&w, "alias/team").await, Err(KmsError::NotFound(_))));
}

#[tokio::test]
async fn ecr_uses_a_repository_key_through_its_grant_and_others_need_the_key_policy() {
    let (_dir, registry) = test_registry().await;
    let (kms, authz, env) = (registry.kms(), registry.authorizer("us-east-1"), RequestEnv::default());
    let (root_a, root_b) = (root(ACCOUNT), root(OTHER));
    let w = who(&authz, &root_a, &env);
    let key = kms.create_key(&w, NewKey::default()).await.unwrap();
    let repo = "arn:aws:ecr:us-east-1:111111111111:repository/app";
    let other_repo = "arn:aws:ecr:us-east-1:111111111111:repository/other";
    let context = ctx(&[("berth:blob", "sha256:00")]);

    // Without the repository's grant ECR may not use the key.
    assert!(matches!(kms.ecr_seal(&key.arn, repo, &context, b"keys").await, Err(KmsError::AccessDenied(_))));
    kms.grant_to_ecr(Some(&w), ACCOUNT, Some(&key.key_id), repo).await.unwrap();
    let sealed = kms.ecr_seal(&key.arn, repo, &context, b"keys").await.unwrap();
    assert_eq!(kms.ecr_open(&key.arn, repo, &context, &sealed).await.unwrap(), b"keys");
    assert!(matches!(kms.ecr_open(&key.arn, repo, &ctx(&[]), &sealed).await, Err(KmsError::InvalidCiphertext(_))));
    assert!(matches!(kms.ecr_open(&key.arn, other_repo, &context, &sealed).await, Err(KmsError::AccessDenied(_))));

    // A disabled key stops ECR; enabled again, it works again.
    kms.disable_key(&w, &key.key_id).await.unwrap();
    assert!(matches!(kms.ecr_open(&key.arn, repo, &context, &sealed).await, Err(KmsError::Disabled(_))));
    kms.enable_key(&w, &key.key_id).await.unwrap();
    assert!(kms.ecr_open(&key.arn, repo, &context, &sealed).await.is_ok());

    // The key's account pulls through the grant; another account needs kms:Decrypt in the key policy.
    kms.check_ecr_decrypt_for(&w, &key.arn).await.unwrap();
    let as_b = who(&authz, &root_b, &env);
    let denied = kms.check_ecr_decrypt_for(&as_b, &key.arn).await;
    assert!(matches!(&denied, Err(KmsError::AccessDenied(m)) if m.contains(&key.arn)), "{denied:?}");
    let policy = format!(
        r#"{{"Version":"2012-10-17","Statement":[{{"Effect":"Allow","Principal":{{"AWS":"arn:aws:iam::{ACCOUNT}:root"}},"Action":"kms:*","Resource":"*"}},{{"Effect":"Allow","Principal":{{"AWS":"arn:aws:iam::{OTHER}:root"}},"Action":"kms:Decrypt","Resource":"*","Condition":{{"StringEquals":{{"kms:ViaService":"ecr.us-east-1.amazonaws.com"}}}}}}]}}"#
    );
    kms.put_key_policy(&w, &key.key_id, None, &policy, false).await.unwrap();
    authz.invalidate();
    kms.check_ecr_decrypt_for(&as_b, &key.arn).await.unwrap();

    // Retiring the repository's grant ends ECR's use of the key for it.
    kms.retire_ecr_grant(&key.arn, repo).await.unwrap();
    assert!(matches!(kms.ecr_open(&key.arn, repo, &context, &sealed).await, Err(KmsError::AccessDenied(_))));
}

#[tokio::test]
async fn a_grant_passes_on_no_more_than_it_holds() {
    let (_dir, registry) = test_registry().await;
    let (kms, authz, env) = (registry.kms(), registry.authorizer("us-east-1"), RequestEnv::default());
    let (root_a, bob) = (root(ACCOUNT), user(ACCOUNT, "bob"));
    let w = who(&authz, &root_a, &env);
    let key = kms.create_key(&w, NewKey::default()).await.unwrap();
    let grant = |ops: &[&str], grantee: &str| NewGrant {
        key_id: key.key_id.clone(),
        grantee_principal: grantee.to_string(),
        operations: ops.iter().map(|o| o.to_string()).collect(),
        ..NewGrant::default()
    };
    kms.create_grant(&w, grant(&["CreateGrant"], &bob.arn)).await.unwrap();
    let as_bob = who(&authz, &bob, &env);
    // Bob may not give himself (or anyone) Decrypt with a grant that holds only CreateGrant.
    assert!(matches!(kms.create_grant(&as_bob, grant(&["Decrypt"], &bob.arn)).await, Err(KmsError::AccessDenied(_))));
    kms.create_grant(&w, grant(&["CreateGrant", "Decrypt"], &bob.arn)).await.unwrap();
    kms.create_grant(&as_bob, grant(&["Decrypt"], "arn:aws:iam::111111111111:user/carol")).await.unwrap();
    // Nor loosen a constrained grant's context.
    let carol = user(ACCOUNT, "carol");
    let constrained = NewGrant {
        constraints: GrantConstraints { subset: Some(ctx(&[("repo", "app")])), equals: None },
        ..grant(&["CreateGrant", "Decrypt"], &carol.arn)
    };
    kms.create_grant(&w, constrained).await.unwrap();
    let as_carol = who(&authz, &carol, &env);
    assert!(matches!(
        kms.create_grant(&as_carol, grant(&["Decrypt"], &carol.arn)).await,
        Err(KmsError::AccessDenied(_))
    ));
    let narrower = NewGrant {
        constraints: GrantConstraints { subset: Some(ctx(&[("repo", "app"), ("tag", "v1")])), equals: None },
        ..grant(&["Decrypt"], &carol.arn)
    };
    kms.create_grant(&as_carol, narrower).await.unwrap();
}

#[tokio::test]
async fn listing_keys_skips_deleted_ones_without_ending_early() {
    let (_dir, registry) = test_registry().await;
    let (kms, authz, env, root) =
        (registry.kms(), registry.authorizer("us-east-1"), RequestEnv::default(), root(ACCOUNT));
    let w = who(&authz, &root, &env);
    let mut ids = Vec::new();
    for _ in 0..5 {
        ids.push(kms.create_key(&w, NewKey::default()).await.unwrap().key_id);
    }
    ids.sort();
    // Two keys whose deletion date has passed, among the first ones listed.
    for id in &ids[..2] {
        let read = registry.meta().kms_key(id).await.unwrap().unwrap();
        let k = KmsKey { state: KmsKeyState::PendingDeletion, deletion_date: Some(1), ..read.clone() };
        assert!(registry.meta().update_kms_key(&k, &read).await.unwrap());
    }
    let first = kms.list_keys(&w, Some(2), None).await.unwrap();
    assert_eq!(first.items.iter().map(|k| k.key_id.clone()).collect::<Vec<_>>(), ids[2..4]);
    let marker = first.next_marker.expect("more follow");
    let rest = kms.list_keys(&w, Some(2), Some(&marker)).await.unwrap();
    assert_eq!(rest.items.iter().map(|k| k.key_id.clone()).collect::<Vec<_>>(), ids[4..]);
    assert!(rest.next_marker.is_none());
}

#[tokio::test]
async fn ecr_on_its_own_uses_only_the_repositorys_account_keys() {
    let (_dir, registry) = test_registry().await;
    let (kms, authz, env, root_b) =
        (registry.kms(), registry.authorizer("us-east-1"), RequestEnv::default(), root(OTHER));
    let theirs = kms.create_key(&who(&authz, &root_b, &env), NewKey::default()).await.unwrap();
    let repo = "arn:aws:ecr:us-east-1:111111111111:repository/from-template";
    let made = kms.grant_to_ecr(None, ACCOUNT, Some(&theirs.arn), repo).await;
    assert!(matches!(made, Err(KmsError::AccessDenied(_))), "a template naming another account's key");
    assert!(registry.meta().kms_grants(&theirs.key_id).await.unwrap().is_empty());
}
