//! The behaviour every [`MetaStore`] implementation must show. Each implementation's tests call
//! [`meta_store_suite`] on a fresh, empty store.

use berth_oci::{Algorithm, Digest};

use crate::{MetaError, MetaStore, NewManifest};

fn digest(s: &str) -> Digest {
    Digest::from_bytes(Algorithm::Sha256, s.as_bytes())
}

fn manifest(content: &str, blobs: &[&Digest], manifests: &[&Digest], subject: Option<&Digest>) -> NewManifest {
    NewManifest {
        digest: digest(content),
        media_type: "application/vnd.oci.image.manifest.v1+json".into(),
        artifact_type: Some("application/x-test".into()),
        subject: subject.cloned(),
        annotations: None,
        content: content.as_bytes().to_vec(),
        blobs: blobs.iter().map(|d| (*d).clone()).collect(),
        manifests: manifests.iter().map(|d| (*d).clone()).collect(),
    }
}

pub async fn meta_store_suite(meta: &dyn MetaStore) {
    // Repositories are created once and listed in order.
    assert!(meta.repository("team/app").await.unwrap().is_none());
    let r = meta.ensure_repository("team/app").await.unwrap();
    assert_eq!(meta.ensure_repository("team/app").await.unwrap(), r);
    meta.ensure_repository("a").await.unwrap();
    meta.ensure_repository("z").await.unwrap();
    assert_eq!(meta.list_repositories(None, 10).await.unwrap(), ["a", "team/app", "z"]);
    assert_eq!(meta.list_repositories(Some("a"), 1).await.unwrap(), ["team/app"]);

    // Blobs are linked per repository and mounted across.
    let (config, layer) = (digest("config"), digest("layer"));
    assert!(matches!(meta.link_blob("missing", &config, 1).await, Err(MetaError::RepositoryNotFound)));
    meta.link_blob("team/app", &config, 6).await.unwrap();
    meta.link_blob("team/app", &config, 6).await.unwrap();
    assert_eq!(meta.linked_blob("team/app", &config).await.unwrap(), Some(6));
    assert_eq!(meta.linked_blob("a", &config).await.unwrap(), None);
    assert!(!meta.mount_blob("a", "z", &config).await.unwrap());
    assert!(meta.mount_blob("team/app", "a", &config).await.unwrap());
    assert_eq!(meta.linked_blob("a", &config).await.unwrap(), Some(6));

    // A manifest whose references are missing is refused whole.
    let m = manifest("m1", &[&config, &layer], &[], None);
    match meta.put_manifest("team/app", &m, &["v1".into()]).await {
        Err(MetaError::MissingReferences { blobs, manifests }) => {
            assert_eq!(blobs, vec![layer.clone()]);
            assert!(manifests.is_empty());
        }
        other => panic!("expected MissingReferences, got {other:?}"),
    }
    assert!(meta.manifest("team/app", &m.digest).await.unwrap().is_none());
    assert!(meta.resolve_tag("team/app", "v1").await.unwrap().is_none());

    meta.link_blob("team/app", &layer, 5).await.unwrap();
    meta.put_manifest("team/app", &m, &["v1".into(), "latest".into()]).await.unwrap();
    meta.put_manifest("team/app", &m, &["v1".into()]).await.unwrap();
    let stored = meta.manifest("team/app", &m.digest).await.unwrap().unwrap();
    assert_eq!(stored.content, b"m1");
    assert_eq!(meta.resolve_tag("team/app", "v1").await.unwrap(), Some(m.digest.clone()));
    assert_eq!(meta.list_tags("team/app", None, 10).await.unwrap(), ["latest", "v1"]);
    assert_eq!(meta.list_tags("team/app", Some("latest"), 10).await.unwrap(), ["v1"]);
    assert!(meta.manifest("a", &m.digest).await.unwrap().is_none(), "manifests are per repository");

    // An index needs its children; referrers are found by subject and artifact type.
    let idx = manifest("idx", &[], &[&digest("absent")], None);
    assert!(matches!(meta.put_manifest("team/app", &idx, &[]).await, Err(MetaError::MissingReferences { .. })));
    let idx = manifest("idx", &[], &[&m.digest], None);
    meta.put_manifest("team/app", &idx, &["multi".into()]).await.unwrap();
    let sig = manifest("sig", &[&config], &[], Some(&m.digest));
    meta.put_manifest("team/app", &sig, &[]).await.unwrap();
    let refs = meta.referrers("team/app", &m.digest, None).await.unwrap();
    assert_eq!(refs.len(), 1);
    assert_eq!(refs[0].digest, sig.digest.as_str());
    assert_eq!(refs[0].size, 3);
    assert_eq!(meta.referrers("team/app", &m.digest, Some("application/x-test")).await.unwrap().len(), 1);
    assert!(meta.referrers("team/app", &m.digest, Some("other")).await.unwrap().is_empty());

    let all = meta.all_manifest_references().await.unwrap();
    assert_eq!(all.len(), 3);
    let refs_m = all.iter().find(|r| r.digest == m.digest.as_str()).unwrap();
    assert_eq!(refs_m.blobs.len(), 2);
    assert_eq!(all.iter().find(|r| r.digest == idx.digest.as_str()).unwrap().manifests, [m.digest.to_string()]);

    // Moving a tag; deleting a tag; deleting a manifest takes its tags.
    let m2 = manifest("m2", &[&config], &[], None);
    meta.put_manifest("team/app", &m2, &["v1".into()]).await.unwrap();
    assert_eq!(meta.resolve_tag("team/app", "v1").await.unwrap(), Some(m2.digest.clone()));
    assert!(meta.delete_tag("team/app", "latest").await.unwrap());
    assert!(!meta.delete_tag("team/app", "latest").await.unwrap());
    assert!(meta.delete_manifest("team/app", &m2.digest).await.unwrap());
    assert!(!meta.delete_manifest("team/app", &m2.digest).await.unwrap());
    assert!(meta.resolve_tag("team/app", "v1").await.unwrap().is_none());

    // Unlinking a blob hides it from that repository only.
    assert!(meta.unlink_blob("a", &config).await.unwrap());
    assert!(!meta.unlink_blob("a", &config).await.unwrap());
    assert_eq!(meta.linked_blob("team/app", &config).await.unwrap(), Some(6));
    assert_eq!(meta.all_blobs().await.unwrap().len(), 2);

    // Upload sessions.
    meta.create_upload("team/app", "u-1", "sha256").await.unwrap();
    let u = meta.upload("u-1").await.unwrap().unwrap();
    assert_eq!((u.repository.as_str(), u.algorithm.as_str()), ("team/app", "sha256"));
    meta.delete_upload("u-1").await.unwrap();
    assert!(meta.upload("u-1").await.unwrap().is_none());
}
