//! The behaviour every [`MetaStore`] implementation must show. Each implementation's tests call
//! [`meta_store_suite`] on a fresh, empty store.

use berth_oci::{Algorithm, Digest};

use crate::{
    AccessKey, Group, IdentityPolicySource, ImageFilter, LifecycleEvent, ManagedPolicy, MetaError, MetaStore,
    NewManifest, Principal, PrincipalKind, RepositorySettings, ScanJob, ScanOutcome, StatusFilter, TagFilter,
    VulnDbState, VulnRecord, now_ms,
};

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
    let defaults = RepositorySettings::default();
    let r = meta.create_repository("team/app", &defaults, &[]).await.unwrap();
    assert_eq!(meta.repository("team/app").await.unwrap(), Some(r));
    meta.create_repository("a", &defaults, &[]).await.unwrap();
    meta.create_repository("z", &defaults, &[]).await.unwrap();
    assert_eq!(meta.list_repositories(None, 10).await.unwrap(), ["a", "team/app", "z"]);
    assert_eq!(meta.list_repositories(Some("a"), 1).await.unwrap(), ["team/app"]);

    // Blobs are linked per repository and mounted across.
    let (config, layer) = (digest("config"), digest("layer"));
    assert!(matches!(meta.link_blob("missing", &config, 1, None).await, Err(MetaError::RepositoryNotFound)));
    assert!(!meta.link_blob("team/app", &config, 6, None).await.unwrap(), "a new link");
    assert!(meta.link_blob("team/app", &config, 6, None).await.unwrap(), "linked already");
    assert_eq!(meta.linked_blob("team/app", &config).await.unwrap(), Some(6));
    assert_eq!(meta.linked_blob("a", &config).await.unwrap(), None);
    assert!(!meta.mount_blob("a", "z", &config).await.unwrap());
    assert!(meta.mount_blob("team/app", "a", &config).await.unwrap());
    assert_eq!(meta.linked_blob("a", &config).await.unwrap(), Some(6));

    // A manifest whose references are missing is refused whole.
    let m = manifest("m1", &[&config, &layer], &[], None);
    match meta.put_manifest("team/app", &m, &["v1".into()], &[]).await {
        Err(MetaError::MissingReferences { blobs, manifests }) => {
            assert_eq!(blobs, vec![layer.clone()]);
            assert!(manifests.is_empty());
        }
        other => panic!("expected MissingReferences, got {other:?}"),
    }
    assert!(meta.manifest("team/app", &m.digest).await.unwrap().is_none());
    assert!(meta.resolve_tag("team/app", "v1").await.unwrap().is_none());

    meta.link_blob("team/app", &layer, 5, None).await.unwrap();
    meta.put_manifest("team/app", &m, &["v1".into(), "latest".into()], &[]).await.unwrap();
    meta.put_manifest("team/app", &m, &["v1".into()], &[]).await.unwrap();
    let stored = meta.manifest("team/app", &m.digest).await.unwrap().unwrap();
    assert_eq!(stored.content, b"m1");
    assert_eq!(meta.resolve_tag("team/app", "v1").await.unwrap(), Some(m.digest.clone()));
    assert_eq!(meta.list_tags("team/app", None, 10).await.unwrap(), ["latest", "v1"]);
    assert_eq!(meta.list_tags("team/app", Some("latest"), 10).await.unwrap(), ["v1"]);
    assert!(meta.manifest("a", &m.digest).await.unwrap().is_none(), "manifests are per repository");

    // An index needs its children; referrers are found by subject and artifact type.
    let idx = manifest("idx", &[], &[&digest("absent")], None);
    assert!(matches!(meta.put_manifest("team/app", &idx, &[], &[]).await, Err(MetaError::MissingReferences { .. })));
    let idx = manifest("idx", &[], &[&m.digest], None);
    meta.put_manifest("team/app", &idx, &["multi".into()], &[]).await.unwrap();
    let sig = manifest("sig", &[&config], &[], Some(&m.digest));
    meta.put_manifest("team/app", &sig, &[], &[]).await.unwrap();
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

    // Image listings: one id per tag, untagged images by digest alone.
    let ids = meta.list_image_ids("team/app", None, 100, ImageFilter::ALL).await.unwrap();
    let mut want = vec![
        (m.digest.to_string(), Some("latest".to_string())),
        (m.digest.to_string(), Some("v1".to_string())),
        (idx.digest.to_string(), Some("multi".to_string())),
        (sig.digest.to_string(), None),
    ];
    want.sort_by(|a, b| {
        (a.0.clone(), a.1.clone().unwrap_or_default()).cmp(&(b.0.clone(), b.1.clone().unwrap_or_default()))
    });
    assert_eq!(ids, want);
    let first = meta.list_image_ids("team/app", None, 2, ImageFilter::ALL).await.unwrap();
    let (d, t) = (&first[1].0, first[1].1.as_deref().unwrap_or(""));
    let rest = meta.list_image_ids("team/app", Some((d, t)), 100, ImageFilter::ALL).await.unwrap();
    assert_eq!([first, rest].concat(), want, "pages join up");
    let untagged = meta
        .list_image_ids("team/app", None, 100, ImageFilter { tags: TagFilter::Untagged, status: StatusFilter::Any })
        .await
        .unwrap();
    assert_eq!(untagged, [(sig.digest.to_string(), None)]);
    let images = meta
        .list_images("team/app", None, 100, ImageFilter { tags: TagFilter::Tagged, status: StatusFilter::Any })
        .await
        .unwrap();
    assert_eq!(images.len(), 2);
    let img = meta.image("team/app", m.digest.as_str()).await.unwrap().unwrap();
    assert_eq!(img.tags, ["latest", "v1"]);
    assert_eq!(img.blob_bytes, 11);
    let sizes = meta
        .image_blob_bytes("team/app", &[m.digest.to_string(), "sha256:absent".into(), idx.digest.to_string()])
        .await
        .unwrap();
    assert_eq!(sizes, [(m.digest.to_string(), 11)], "one query, only images with blobs");
    assert_eq!(img.last_pulled_at, None);
    meta.record_pull("team/app", m.digest.as_str(), 5000).await.unwrap();
    meta.record_pull("team/app", m.digest.as_str(), 4000).await.unwrap();
    assert_eq!(meta.image("team/app", m.digest.as_str()).await.unwrap().unwrap().last_pulled_at, Some(5000));
    assert_eq!(meta.image("team/app", idx.digest.as_str()).await.unwrap().unwrap().children, [m.digest.to_string()]);
    assert_eq!(meta.manifest_parents("team/app", m.digest.as_str()).await.unwrap(), [idx.digest.to_string()]);
    // A manifest an index lists is not deleted, in the deleting transaction itself.
    match meta.delete_manifest("team/app", &m.digest).await {
        Err(MetaError::ReferencedByIndex(parents)) => assert_eq!(parents, [idx.digest.to_string()]),
        other => panic!("deleting a listed manifest: {other:?}"),
    }
    assert!(meta.manifest("team/app", &m.digest).await.unwrap().is_some());

    // The archive storage class: listed only when asked for, not served, restored by a re-push.
    let active = ImageFilter { tags: TagFilter::Any, status: StatusFilter::Active };
    let archived = ImageFilter { tags: TagFilter::Any, status: StatusFilter::Archived };
    assert_eq!(meta.set_image_archived("team/app", sig.digest.as_str(), true, 7000).await.unwrap(), Some(true));
    assert_eq!(meta.set_image_archived("team/app", sig.digest.as_str(), true, 7001).await.unwrap(), Some(false));
    assert_eq!(meta.set_image_archived("team/app", "sha256:00", true, 7001).await.unwrap(), None);
    assert!(meta.manifest("team/app", &sig.digest).await.unwrap().unwrap().archived);
    let img = meta.image("team/app", sig.digest.as_str()).await.unwrap().unwrap();
    assert!(img.archived);
    assert_eq!(img.last_archived_at, Some(7000));
    assert_eq!(meta.list_images("team/app", None, 100, active).await.unwrap().len(), 2);
    assert_eq!(meta.list_image_ids("team/app", None, 100, archived).await.unwrap(), [(sig.digest.to_string(), None)]);
    meta.put_manifest("team/app", &sig, &[], &[]).await.unwrap();
    let img = meta.image("team/app", sig.digest.as_str()).await.unwrap().unwrap();
    assert!(!img.archived, "a re-push restores an archived image");
    assert!(img.last_activated_at.is_some());
    assert_eq!(meta.set_image_archived("team/app", sig.digest.as_str(), true, 8000).await.unwrap(), Some(true));
    assert_eq!(meta.set_image_archived("team/app", sig.digest.as_str(), false, 9000).await.unwrap(), Some(true));
    let img = meta.image("team/app", sig.digest.as_str()).await.unwrap().unwrap();
    assert_eq!((img.archived, img.last_archived_at, img.last_activated_at), (false, Some(8000), Some(9000)));

    let event = LifecycleEvent {
        repository: "team/app".into(),
        digest: sig.digest.to_string(),
        tags: vec!["t".into()],
        action: "EXPIRE".into(),
        rule_priority: 2,
        at: 10_000,
    };
    meta.record_lifecycle_event(&event).await.unwrap();
    meta.record_lifecycle_event(&LifecycleEvent { repository: "a".into(), at: 11_000, ..event.clone() }).await.unwrap();
    assert_eq!(meta.lifecycle_events(Some("team/app"), 10).await.unwrap(), std::slice::from_ref(&event));
    assert_eq!(meta.lifecycle_events(None, 10).await.unwrap().len(), 2);

    // Moving a tag; deleting a tag; deleting a manifest takes its tags.
    let m2 = manifest("m2", &[&config], &[], None);
    meta.put_manifest("team/app", &m2, &["v1".into()], &[]).await.unwrap();
    assert_eq!(meta.resolve_tag("team/app", "v1").await.unwrap(), Some(m2.digest.clone()));
    assert!(meta.delete_tag("team/app", "latest").await.unwrap());
    assert!(!meta.delete_tag("team/app", "latest").await.unwrap());
    assert!(meta.delete_manifest("team/app", &m2.digest).await.unwrap());
    assert!(!meta.delete_manifest("team/app", &m2.digest).await.unwrap());
    assert!(meta.resolve_tag("team/app", "v1").await.unwrap().is_none());

    assert_eq!(meta.linked_blob("team/app", &config).await.unwrap(), Some(6));
    assert_eq!(meta.all_blobs().await.unwrap().len(), 2);

    // An immutable tag may be re-pointed at the same manifest, never at another one.
    let m3 = manifest("m3", &[&config], &[], None);
    meta.put_manifest("team/app", &m3, &["stable".into()], &["stable".into()]).await.unwrap();
    meta.put_manifest("team/app", &m3, &["stable".into()], &["stable".into()]).await.unwrap();
    let m4 = manifest("m4", &[&config], &[], None);
    match meta.put_manifest("team/app", &m4, &["stable".into()], &["stable".into()]).await {
        Err(MetaError::TagImmutable(t)) => assert_eq!(t, "stable"),
        other => panic!("expected TagImmutable, got {other:?}"),
    }
    assert!(meta.manifest("team/app", &m4.digest).await.unwrap().is_none(), "nothing of a refused push is kept");
    meta.put_manifest("team/app", &m4, &["stable".into()], &[]).await.unwrap();

    // Upload sessions.
    meta.create_upload("team/app", "u-1", "sha256").await.unwrap();
    let u = meta.upload("u-1").await.unwrap().unwrap();
    assert_eq!((u.repository.as_str(), u.algorithm.as_str()), ("team/app", "sha256"));
    assert!(!u.part_too_small);
    meta.note_upload_part("u-1", false).await.unwrap();
    meta.note_upload_part("u-1", true).await.unwrap();
    assert!(!meta.upload("u-1").await.unwrap().unwrap().part_too_small, "a small last part is fine");
    meta.note_upload_part("u-1", false).await.unwrap();
    assert!(meta.upload("u-1").await.unwrap().unwrap().part_too_small, "a small part followed by another is not");
    meta.delete_upload("u-1").await.unwrap();
    assert!(meta.upload("u-1").await.unwrap().is_none());
    // Linking the blob a session delivered ends the session in the same transaction.
    meta.create_upload("team/app", "u-2", "sha256").await.unwrap();
    meta.link_blob("team/app", &config, 6, Some("u-2")).await.unwrap();
    assert!(meta.upload("u-2").await.unwrap().is_none());
    assert_eq!(meta.linked_blob("team/app", &config).await.unwrap(), Some(6));

    // Repositories with settings and resource tags.
    let settings = RepositorySettings {
        tag_mutability: "IMMUTABLE_WITH_EXCLUSION".into(),
        tag_mutability_exclusions: vec!["latest".into()],
        scan_on_push: true,
        encryption_type: "KMS".into(),
        kms_key: Some("arn:aws:kms:us-east-1:123456789012:key/abc".into()),
        pull_block_severity: Some("HIGH".into()),
    };
    let created = meta.create_repository("conf/app", &settings, &[("team".into(), "a".into())]).await.unwrap();
    assert_eq!(created.settings, settings);
    assert!(matches!(
        meta.create_repository("conf/app", &settings, &[]).await,
        Err(MetaError::RepositoryAlreadyExists)
    ));
    assert_eq!(meta.repository("conf/app").await.unwrap().unwrap().settings, settings);
    assert_eq!(meta.repository_resource_tags("conf/app").await.unwrap(), [("team".to_string(), "a".to_string())]);
    meta.tag_repository("conf/app", &[("team".into(), "b".into()), ("env".into(), "prod".into())]).await.unwrap();
    meta.untag_repository("conf/app", &["env".into(), "absent".into()]).await.unwrap();
    assert_eq!(meta.repository_resource_tags("conf/app").await.unwrap(), [("team".to_string(), "b".to_string())]);
    assert!(matches!(meta.tag_repository("nope", &[]).await, Err(MetaError::RepositoryNotFound)));
    let mutable = RepositorySettings { scan_on_push: false, ..RepositorySettings::default() };
    assert_eq!(meta.update_repository_settings("conf/app", &mutable).await.unwrap().settings, mutable);
    assert!(matches!(meta.update_repository_settings("nope", &mutable).await, Err(MetaError::RepositoryNotFound)));
    let names: Vec<String> = meta.describe_repositories(None, 100).await.unwrap().into_iter().map(|r| r.name).collect();
    assert_eq!(names, ["a", "conf/app", "team/app", "z"]);
    assert!(matches!(meta.delete_repository("team/app", false).await, Err(MetaError::RepositoryNotEmpty)));
    assert_eq!(meta.delete_repository("team/app", true).await.unwrap().name, "team/app");
    assert!(meta.repository("team/app").await.unwrap().is_none());
    assert!(meta.manifest("team/app", &m.digest).await.unwrap().is_none());
    assert!(matches!(meta.delete_repository("team/app", true).await, Err(MetaError::RepositoryNotFound)));
    assert_eq!(meta.delete_repository("conf/app", false).await.unwrap().name, "conf/app");

    // Accounts, principals and access keys.
    assert_eq!(meta.first_account().await.unwrap(), None);
    meta.ensure_account("123456789012").await.unwrap();
    meta.ensure_account("123456789012").await.unwrap();
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
    assert_eq!(meta.list_principals("123456789012").await.unwrap(), [root]);
    // The first value stored for a secret wins.
    assert_eq!(meta.registry_secret("token", b"first").await.unwrap(), b"first");
    assert_eq!(meta.registry_secret("token", b"second").await.unwrap(), b"first");

    // IAM: users in groups, inline and managed policies, resource policies.
    let alice = Principal {
        id: "AIDAALICE".into(),
        account_id: "123456789012".into(),
        name: "alice".into(),
        kind: PrincipalKind::User,
        created_at: 3,
    };
    meta.create_principal(&alice).await.unwrap();
    let devs = Group { id: "AGPADEVS".into(), account_id: "123456789012".into(), name: "devs".into(), created_at: 4 };
    meta.create_group(&devs).await.unwrap();
    assert!(matches!(meta.create_group(&devs).await, Err(MetaError::AlreadyExists)));
    assert_eq!(meta.group_by_name("123456789012", "devs").await.unwrap(), Some(devs.clone()));
    meta.add_group_member(&devs.id, &alice.id).await.unwrap();
    meta.add_group_member(&devs.id, &alice.id).await.unwrap();
    assert_eq!(meta.groups_of(&alice.id).await.unwrap(), std::slice::from_ref(&devs));
    assert_eq!(meta.group_members(&devs.id).await.unwrap(), std::slice::from_ref(&alice));
    meta.put_inline_policy(&alice.id, "own", "{1}").await.unwrap();
    meta.put_inline_policy(&alice.id, "own", "{2}").await.unwrap();
    meta.put_inline_policy(&devs.id, "team", "{3}").await.unwrap();
    assert_eq!(meta.inline_policy(&alice.id, "own").await.unwrap().as_deref(), Some("{2}"));
    assert_eq!(meta.list_inline_policies(&alice.id).await.unwrap(), ["own"]);
    let managed = ManagedPolicy {
        arn: "arn:aws:iam::123456789012:policy/pull".into(),
        id: "ANPAPULL".into(),
        account_id: "123456789012".into(),
        name: "pull".into(),
        path: "/".into(),
        document: "{4}".into(),
        created_at: 5,
        updated_at: 5,
    };
    meta.create_managed_policy(&managed).await.unwrap();
    assert!(matches!(meta.create_managed_policy(&managed).await, Err(MetaError::AlreadyExists)));
    assert!(meta.update_managed_policy(&managed.arn, "{5}").await.unwrap());
    meta.attach_policy(&devs.id, &managed.arn).await.unwrap();
    let aws_managed = "arn:aws:iam::aws:policy/AmazonEC2ContainerRegistryReadOnly";
    meta.attach_policy(&alice.id, aws_managed).await.unwrap();
    assert_eq!(meta.policy_attachment_count(&managed.arn).await.unwrap(), 1);
    let mut sources = meta.identity_policies(&alice.id).await.unwrap();
    sources.sort_by_key(|s| format!("{s:?}"));
    assert_eq!(
        sources,
        [
            IdentityPolicySource::Attached {
                owner: devs.id.clone(),
                arn: managed.arn.clone(),
                document: Some("{5}".into())
            },
            IdentityPolicySource::Attached { owner: alice.id.clone(), arn: aws_managed.into(), document: None },
            IdentityPolicySource::Inline { owner: devs.id.clone(), name: "team".into(), document: "{3}".into() },
            IdentityPolicySource::Inline { owner: alice.id.clone(), name: "own".into(), document: "{2}".into() },
        ]
    );
    assert!(meta.remove_group_member(&devs.id, &alice.id).await.unwrap());
    assert_eq!(meta.identity_policies(&alice.id).await.unwrap().len(), 2, "group policies left with the group");
    assert!(meta.detach_policy(&alice.id, aws_managed).await.unwrap());
    assert!(meta.delete_inline_policy(&alice.id, "own").await.unwrap());
    assert!(meta.identity_policies(&alice.id).await.unwrap().is_empty());
    assert!(meta.delete_group(&devs.id).await.unwrap());
    assert_eq!(meta.policy_attachment_count(&managed.arn).await.unwrap(), 0);
    assert!(meta.delete_managed_policy(&managed.arn).await.unwrap());
    assert!(meta.delete_principal(&alice.id).await.unwrap());
    assert!(!meta.delete_principal("123456789012").await.unwrap(), "the root is not deleted");

    meta.create_repository("guarded", &RepositorySettings::default(), &[]).await.unwrap();
    assert_eq!(meta.repository_policy("guarded").await.unwrap(), None);
    assert_eq!(meta.set_repository_policy("guarded", Some("{p}")).await.unwrap(), None);
    assert_eq!(meta.repository_policy("guarded").await.unwrap().as_deref(), Some("{p}"));
    assert_eq!(meta.set_repository_policy("guarded", None).await.unwrap().as_deref(), Some("{p}"));
    assert!(matches!(meta.repository_policy("nope").await, Err(MetaError::RepositoryNotFound)));
    assert_eq!(meta.set_registry_policy("123456789012", Some("{r}")).await.unwrap(), None);
    assert_eq!(meta.registry_policy("123456789012").await.unwrap().as_deref(), Some("{r}"));
    assert_eq!(meta.set_registry_policy("123456789012", None).await.unwrap().as_deref(), Some("{r}"));
    assert_eq!(meta.registry_policy("123456789012").await.unwrap(), None);

    // Lifecycle policies and previews.
    meta.create_repository("life", &RepositorySettings::default(), &[]).await.unwrap();
    assert_eq!(meta.lifecycle_policy("life").await.unwrap(), None);
    assert_eq!(meta.set_lifecycle_policy("life", Some("{\"rules\":[]}")).await.unwrap(), None);
    assert_eq!(meta.lifecycle_policy("life").await.unwrap(), Some(("{\"rules\":[]}".to_string(), None)));
    meta.set_lifecycle_evaluated("life", 77).await.unwrap();
    assert_eq!(meta.lifecycle_policy("life").await.unwrap().unwrap().1, Some(77));
    assert!(meta.set_lifecycle_policy("life", None).await.unwrap().is_some());
    assert_eq!(meta.lifecycle_policy("life").await.unwrap(), None);
    assert!(matches!(meta.lifecycle_policy("nope").await, Err(MetaError::RepositoryNotFound)));
    assert_eq!(meta.lifecycle_preview("life").await.unwrap(), None);
    meta.put_lifecycle_preview("life", "p1", "COMPLETE", "[]").await.unwrap();
    meta.put_lifecycle_preview("life", "p2", "COMPLETE", "[1]").await.unwrap();
    assert_eq!(
        meta.lifecycle_preview("life").await.unwrap(),
        Some(("p2".to_string(), "COMPLETE".to_string(), "[1]".to_string()))
    );

    // Garbage collection: a blob linked but referenced by no manifest goes once its link is old.
    meta.create_repository("gc", &RepositorySettings::default(), &[]).await.unwrap();
    let (kept, dropped) = (digest("gc-kept"), digest("gc-dropped"));
    meta.link_blob("gc", &kept, 3, None).await.unwrap();
    meta.link_blob("gc", &dropped, 4, None).await.unwrap();
    meta.put_manifest("gc", &manifest("gc-m", &[&kept], &[], None), &["v1".into()], &[]).await.unwrap();
    let far_future = now_ms() + 3_600_000;
    assert_eq!(meta.gc_preview(0).await.unwrap(), (0, vec![]), "nothing is older than the epoch");
    let (links, blobs) = meta.gc_preview(far_future).await.unwrap();
    assert!(links >= 1 && blobs.iter().any(|(d, s)| d == dropped.as_str() && *s == 4));
    assert!(!blobs.iter().any(|(d, _)| d == kept.as_str()), "referenced blobs are never candidates");
    assert!(meta.gc_unlink_unreferenced(far_future).await.unwrap() >= 1);
    assert_eq!(meta.linked_blob("gc", &dropped).await.unwrap(), None);
    assert_eq!(meta.linked_blob("gc", &kept).await.unwrap(), Some(3));
    let removed = meta.gc_remove_unlinked_blobs(far_future).await.unwrap();
    assert!(removed.iter().any(|(d, _)| d == dropped.as_str()));
    assert!(meta.blobs_recorded(&[dropped.to_string()]).await.unwrap().is_empty());
    assert_eq!(meta.blobs_recorded(&[kept.to_string()]).await.unwrap(), [kept.to_string()]);
    assert_eq!(
        meta.blobs_recorded(&[kept.to_string(), dropped.to_string()]).await.unwrap(),
        [kept.to_string()],
        "one query for a batch"
    );
    meta.create_upload("gc", "u-stale", "sha256").await.unwrap();
    assert_eq!(meta.stale_uploads(far_future).await.unwrap(), ["u-stale"]);
    assert!(meta.stale_uploads(0).await.unwrap().is_empty());

    let usage = meta.repository_usage().await.unwrap();
    let gc_usage = usage.iter().find(|(n, _, _)| n == "gc").unwrap();
    assert_eq!((gc_usage.1, gc_usage.2), (1, 3), "one image; only the kept blob is still linked");

    // Account settings.
    assert_eq!(meta.account_setting("123456789012", "BLOB_MOUNTING").await.unwrap(), None);
    meta.put_account_setting("123456789012", "BLOB_MOUNTING", "ENABLED").await.unwrap();
    meta.put_account_setting("123456789012", "BLOB_MOUNTING", "DISABLED").await.unwrap();
    assert_eq!(meta.account_setting("123456789012", "BLOB_MOUNTING").await.unwrap().as_deref(), Some("DISABLED"));

    // Creation templates.
    meta.create_creation_template("ROOT", "{}").await.unwrap();
    assert!(matches!(meta.create_creation_template("ROOT", "{}").await, Err(MetaError::AlreadyExists)));
    assert_eq!(meta.update_creation_template("ROOT", "{\"a\":1}").await.unwrap().body, "{\"a\":1}");
    assert!(matches!(meta.update_creation_template("team", "{}").await, Err(MetaError::NotFound)));
    assert_eq!(meta.creation_templates().await.unwrap().len(), 1);
    assert_eq!(meta.delete_creation_template("ROOT").await.unwrap().prefix, "ROOT");
    assert!(matches!(meta.delete_creation_template("ROOT").await, Err(MetaError::NotFound)));

    scan_suite(meta).await;
}

/// The vulnerability database and the scan queue.
async fn scan_suite(meta: &dyn MetaStore) {
    let record = |id: &str, modified: &str, keys: &[(&str, &str)]| VulnRecord {
        id: id.into(),
        modified: modified.into(),
        json: format!("{{\"id\":\"{id}\",\"modified\":\"{modified}\"}}"),
        keys: keys.iter().map(|(e, n)| (e.to_string(), n.to_string())).collect(),
    };
    assert_eq!(meta.vulndb_state().await.unwrap(), VulnDbState::default());
    let batch = [
        record("A-1", "2024-01-01", &[("Alpine", "openssl"), ("Alpine", "libssl")]),
        record("A-2", "2024-01-01", &[("Alpine", "openssl")]),
        record("P-1", "2024-01-01", &[("PyPI", "requests")]),
    ];
    assert_eq!(meta.vulndb_put(&batch).await.unwrap(), 3);
    assert_eq!(meta.vulndb_put(&batch).await.unwrap(), 0, "unchanged records are left alone");
    let state = meta.vulndb_finish_import(3).await.unwrap();
    assert_eq!((state.version, state.records), (1, 3));
    assert_eq!(meta.vulndb_finish_import(0).await.unwrap().version, 1, "an import that changed nothing");
    let keys = |k: &[(&str, &str)]| k.iter().map(|(e, n)| (e.to_string(), n.to_string())).collect::<Vec<_>>();
    let mut ids: Vec<String> = meta
        .vulndb_lookup(&keys(&[("Alpine", "openssl"), ("Alpine", "libssl"), ("PyPI", "nothing")]))
        .await
        .unwrap()
        .into_iter()
        .map(|(id, _)| id)
        .collect();
    ids.sort();
    assert_eq!(ids, ["A-1", "A-2"], "each record once");
    // A re-import that changes a record's packages re-files it.
    assert_eq!(meta.vulndb_put(&[record("A-1", "2024-02-01", &[("Alpine", "zlib")])]).await.unwrap(), 1);
    assert_eq!(meta.vulndb_finish_import(1).await.unwrap().version, 2);
    let found = meta.vulndb_lookup(&keys(&[("Alpine", "libssl")])).await.unwrap();
    assert!(found.is_empty(), "{found:?}");
    let found = meta.vulndb_lookup(&keys(&[("Alpine", "zlib")])).await.unwrap();
    assert_eq!(found, [("A-1".to_string(), "{\"id\":\"A-1\",\"modified\":\"2024-02-01\"}".to_string())]);

    // Scans: requested, claimed, finished; a newer request wins over a running scan.
    let defaults = RepositorySettings::default();
    meta.create_repository("scan/app", &defaults, &[]).await.unwrap();
    let m = manifest("scan-1", &[], &[], None);
    meta.put_manifest("scan/app", &m, &["v1".into()], &[]).await.unwrap();
    let d = m.digest.to_string();
    assert!(meta.image_scan("scan/app", &d).await.unwrap().is_none());
    assert!(meta.request_scan("scan/app", &d, "BASIC", true).await.unwrap());
    assert!(!meta.request_scan("scan/app", &d, "BASIC", true).await.unwrap(), "only if new");
    assert_eq!(meta.image_scan("scan/app", &d).await.unwrap().unwrap().status, "PENDING");
    let jobs = meta.claim_scans("node-a", 10).await.unwrap();
    assert_eq!(
        jobs,
        [ScanJob { repository: "scan/app".into(), digest: d.clone(), scan_type: "BASIC".into(), generation: 1 }]
    );
    assert!(meta.claim_scans("node-b", 10).await.unwrap().is_empty(), "a claimed scan is not claimed twice");
    // The node dies; on restart it puts its scans back.
    assert_eq!(meta.release_scans(Some("node-b"), 0).await.unwrap(), 0);
    assert_eq!(meta.release_scans(Some("node-a"), 0).await.unwrap(), 1);
    let job = meta.claim_scans("node-a", 10).await.unwrap().pop().unwrap();
    let outcome = ScanOutcome {
        status: "COMPLETE".into(),
        description: Some("The scan was completed successfully.".into()),
        findings: Some("[]".into()),
        counts: Some("{}".into()),
        vulndb_version: Some(2),
        vulndb_updated_at: Some(5),
    };
    // A new request while it runs: the running scan's result is dropped, the scan stays queued.
    assert!(meta.request_scan("scan/app", &d, "ENHANCED", false).await.unwrap());
    assert!(!meta.finish_scan(&job, &outcome).await.unwrap());
    let job = meta.claim_scans("node-a", 10).await.unwrap().pop().unwrap();
    // Generations: the first request, the release at restart, this request.
    assert_eq!((job.generation, job.scan_type.as_str()), (3, "ENHANCED"));
    assert!(meta.finish_scan(&job, &outcome).await.unwrap());
    let scan = meta.image_scan("scan/app", &d).await.unwrap().unwrap();
    assert_eq!(
        (scan.status.as_str(), scan.findings.as_deref(), scan.vulndb_version),
        ("COMPLETE", Some("[]"), Some(2))
    );
    assert!(scan.completed_at.is_some());
    let summaries = meta.image_scan_summaries("scan/app", &[d.clone(), "sha256:none".into()]).await.unwrap();
    assert_eq!(summaries.len(), 1);
    assert_eq!(summaries[0].findings, None);
    // A failure keeps the last complete scan's findings and counts (the pull policy reads them).
    assert!(meta.request_scan("scan/app", &d, "ENHANCED", false).await.unwrap());
    let again = meta.claim_scans("node-a", 10).await.unwrap().pop().unwrap();
    let failure = ScanOutcome {
        status: "FAILED".into(),
        description: Some("broken layer".into()),
        findings: None,
        counts: None,
        vulndb_version: None,
        vulndb_updated_at: None,
    };
    assert!(meta.finish_scan(&again, &failure).await.unwrap());
    let scan = meta.image_scan("scan/app", &d).await.unwrap().unwrap();
    assert_eq!((scan.status.as_str(), scan.counts.as_deref(), scan.vulndb_version), ("FAILED", Some("{}"), Some(2)));
    // A released claim is a new request: the released run's result is not recorded.
    assert!(meta.request_scan("scan/app", &d, "ENHANCED", false).await.unwrap());
    let running = meta.claim_scans("node-a", 10).await.unwrap().pop().unwrap();
    assert_eq!(meta.release_scans(None, i64::MAX).await.unwrap(), 1);
    assert!(!meta.finish_scan(&running, &outcome).await.unwrap());
    let rerun = meta.claim_scans("node-b", 10).await.unwrap().pop().unwrap();
    assert!(meta.finish_scan(&rerun, &outcome).await.unwrap());
    // Rescans after a database change: one statement per repository.
    assert_eq!(meta.request_rescans("scan/app", 2).await.unwrap(), 0);
    assert_eq!(meta.request_rescans("scan/app", 3).await.unwrap(), 1);
    assert_eq!(meta.image_scan("scan/app", &d).await.unwrap().unwrap().status, "PENDING");
    // Deleting the image deletes its scan.
    meta.delete_manifest("scan/app", &m.digest).await.unwrap();
    assert!(meta.image_scan("scan/app", &d).await.unwrap().is_none());
}
