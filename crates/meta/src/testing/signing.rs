use super::*;
use crate::{ImageSigning, SigningProfile};

fn profile(account: &str, name: &str) -> SigningProfile {
    SigningProfile {
        arn: format!("arn:aws:signer:us-east-1:{account}:/signing-profiles/{name}"),
        account_id: account.into(),
        name: name.into(),
        public_key_pem: "-----BEGIN PUBLIC KEY-----\n…\n-----END PUBLIC KEY-----\n".into(),
        sealed_private_key: format!("sealed-{name}"),
        created_at: 1_000,
        revoked_at: None,
    }
}

pub async fn keeps_profiles_per_account_and_revokes_once(meta: Store) {
    let a = profile("111111111111", "release");
    meta.create_signing_profile(&a).await.unwrap();
    meta.create_signing_profile(&profile("111111111111", "nightly")).await.unwrap();
    meta.create_signing_profile(&profile("222222222222", "release")).await.unwrap();
    assert!(matches!(meta.create_signing_profile(&a).await, Err(MetaError::AlreadyExists)));
    assert_eq!(meta.signing_profile(&a.arn).await.unwrap(), Some(a.clone()));
    let names: Vec<String> = meta.signing_profiles("111111111111").await.unwrap().into_iter().map(|p| p.name).collect();
    assert_eq!(names, ["nightly", "release"]);
    assert_eq!(meta.revoke_signing_profile(&a.arn, 5_000).await.unwrap().revoked_at, Some(5_000));
    assert_eq!(meta.revoke_signing_profile(&a.arn, 9_000).await.unwrap().revoked_at, Some(5_000));
    assert!(matches!(meta.revoke_signing_profile("arn:absent", 1).await, Err(MetaError::NotFound)));
    // The sealed key is one of the values a master-key rotation re-seals.
    let sealed = meta.stored_secrets(SealedKind::SigningProfileKey, "", 10).await.unwrap();
    assert_eq!(sealed.len(), 3);
    assert!(
        meta.replace_stored_secret(SealedKind::SigningProfileKey, &a.arn, b"sealed-release", b"again").await.unwrap()
    );
    assert_eq!(meta.signing_profile(&a.arn).await.unwrap().unwrap().sealed_private_key, "again");
}

pub async fn keeps_an_images_signing_status_per_profile_until_it_goes(meta: Store) {
    meta.create_repository("prod/app", &RepositorySettings::default(), &[]).await.unwrap();
    let m = manifest("signed image", &[], &[], None);
    meta.put_manifest("prod/app", &m, &["v1".to_string()], &[]).await.unwrap();
    let status = |arn: &str, s: &str, at| ImageSigning {
        profile_arn: arn.into(),
        status: s.into(),
        failure_code: (s == "FAILED").then(|| "SIGNING_NOT_AUTHORIZED".into()),
        failure_reason: None,
        updated_at: at,
    };
    meta.put_image_signing("prod/app", m.digest.as_str(), &status("arn:b", "IN_PROGRESS", 1)).await.unwrap();
    meta.put_image_signing("prod/app", m.digest.as_str(), &status("arn:a", "FAILED", 2)).await.unwrap();
    meta.put_image_signing("prod/app", m.digest.as_str(), &status("arn:b", "COMPLETE", 3)).await.unwrap();
    // An image that is not there records nothing.
    meta.put_image_signing("prod/app", "sha256:absent", &status("arn:a", "COMPLETE", 4)).await.unwrap();
    let got = meta.image_signings("prod/app", m.digest.as_str()).await.unwrap();
    assert_eq!(got, [status("arn:a", "FAILED", 2), status("arn:b", "COMPLETE", 3)]);
    assert!(meta.image_signings("prod/app", "sha256:absent").await.unwrap().is_empty());
    meta.delete_image_signing("prod/app", m.digest.as_str(), "arn:a").await.unwrap();
    assert_eq!(meta.image_signings("prod/app", m.digest.as_str()).await.unwrap(), [status("arn:b", "COMPLETE", 3)]);
    meta.delete_image_signing("prod/app", m.digest.as_str(), "arn:b").await.unwrap();
    assert!(meta.image_signings("prod/app", m.digest.as_str()).await.unwrap().is_empty());
    meta.put_image_signing("prod/app", m.digest.as_str(), &status("arn:a", "COMPLETE", 5)).await.unwrap();
    meta.delete_manifest("prod/app", &m.digest).await.unwrap();
    assert!(meta.image_signings("prod/app", m.digest.as_str()).await.unwrap().is_empty());
}

pub async fn keeps_a_repositorys_verification_on_pull_and_reads_it_with_the_manifest(meta: Store) {
    meta.create_repository("prod/app", &RepositorySettings::default(), &[]).await.unwrap();
    let m = manifest("verified image", &[], &[], None);
    meta.put_manifest("prod/app", &m, &["v1".to_string()], &[]).await.unwrap();
    assert_eq!(meta.pull_verification("prod/app").await.unwrap(), None);
    assert_eq!(meta.manifest("prod/app", &m.digest).await.unwrap().unwrap().pull_gate.verification, None);
    meta.set_pull_verification("prod/app", Some(r#"{"trustedKeys":[]}"#)).await.unwrap();
    assert_eq!(meta.pull_verification("prod/app").await.unwrap().as_deref(), Some(r#"{"trustedKeys":[]}"#));
    let by_tag = meta.tagged_manifest("prod/app", "v1").await.unwrap().unwrap();
    assert_eq!(by_tag.pull_gate.verification.as_deref(), Some(r#"{"trustedKeys":[]}"#));
    meta.set_pull_verification("prod/app", None).await.unwrap();
    assert_eq!(meta.manifest("prod/app", &m.digest).await.unwrap().unwrap().pull_gate.verification, None);
    assert!(matches!(meta.set_pull_verification("absent", None).await, Err(MetaError::RepositoryNotFound)));
    assert!(matches!(meta.pull_verification("absent").await, Err(MetaError::RepositoryNotFound)));
}
