use super::*;

pub async fn links_blobs_per_repository_and_mounts_them(meta: Store) {
    for r in ["team/app", "a", "z"] {
        repository(meta.as_ref(), r).await;
    }
    let config = digest("config");
    assert!(matches!(meta.link_blob("missing", &config, 1, None).await, Err(MetaError::RepositoryNotFound)));
    assert!(!meta.link_blob("team/app", &config, 6, None).await.unwrap(), "a new link");
    assert!(meta.link_blob("team/app", &config, 6, None).await.unwrap(), "linked already");
    assert_eq!(meta.linked_blob("team/app", &config).await.unwrap(), Some(6));
    assert_eq!(meta.linked_blob("a", &config).await.unwrap(), None);
    assert!(!meta.mount_blob("a", "z", &config).await.unwrap());
    assert!(meta.mount_blob("team/app", "a", &config).await.unwrap());
    assert_eq!(meta.linked_blob("a", &config).await.unwrap(), Some(6));
}

pub async fn refuses_a_manifest_with_missing_references_whole(meta: Store) {
    repository(meta.as_ref(), "team/app").await;
    let (config, layer) = (digest("config"), digest("layer"));
    meta.link_blob("team/app", &config, 6, None).await.unwrap();
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
    let idx = manifest("idx", &[], &[&digest("absent")], None);
    match meta.put_manifest("team/app", &idx, &[], &[]).await {
        Err(MetaError::MissingReferences { blobs, manifests }) => {
            assert!(blobs.is_empty());
            assert_eq!(manifests, [digest("absent")]);
        }
        other => panic!("expected MissingReferences, got {other:?}"),
    }
}

pub async fn stores_manifests_and_their_tags(meta: Store) {
    let (m, _, _) = populated(meta.as_ref()).await;
    repository(meta.as_ref(), "a").await;
    meta.put_manifest("team/app", &m, &["v1".into()], &[]).await.unwrap();
    let stored = meta.manifest("team/app", &m.digest).await.unwrap().unwrap();
    assert_eq!(stored.content, b"m1");
    assert_eq!(stored.digest, m.digest);
    assert_eq!(meta.resolve_tag("team/app", "v1").await.unwrap(), Some(m.digest.clone()));
    let tagged = meta.tagged_manifest("team/app", "v1").await.unwrap().unwrap();
    assert_eq!((tagged.digest, tagged.content, tagged.media_type), (stored.digest, stored.content, stored.media_type));
    assert!(meta.tagged_manifest("team/app", "nope").await.unwrap().is_none());
    assert!(meta.tagged_manifest("a", "v1").await.unwrap().is_none(), "tags are per repository");
    assert_eq!(meta.list_tags("team/app", None, 10).await.unwrap(), ["latest", "multi", "v1"]);
    assert_eq!(meta.list_tags("team/app", Some("latest"), 1).await.unwrap(), ["multi"]);
    assert!(meta.manifest("a", &m.digest).await.unwrap().is_none(), "manifests are per repository");
}

pub async fn an_index_needs_its_children_and_referrers_are_found(meta: Store) {
    let (m, idx, sig) = populated(meta.as_ref()).await;
    let refs = meta.referrers("team/app", &m.digest, None).await.unwrap();
    assert_eq!(refs.len(), 1);
    assert_eq!(refs[0].digest, sig.digest.as_str());
    assert_eq!(refs[0].size, 3);
    assert_eq!(meta.referrers("team/app", &m.digest, Some("application/x-test")).await.unwrap().len(), 1);
    assert!(meta.referrers("team/app", &m.digest, Some("other")).await.unwrap().is_empty());
    assert_eq!(meta.image("team/app", idx.digest.as_str()).await.unwrap().unwrap().children, [m.digest.to_string()]);
    assert_eq!(meta.manifest_parents("team/app", m.digest.as_str()).await.unwrap(), [idx.digest.to_string()]);
}

pub async fn lists_image_ids_and_images_in_pages(meta: Store) {
    let (m, idx, sig) = populated(meta.as_ref()).await;
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
    let untagged = ImageFilter { tags: TagFilter::Untagged, status: StatusFilter::Any };
    assert_eq!(meta.list_image_ids("team/app", None, 100, untagged).await.unwrap(), [(sig.digest.to_string(), None)]);
    let tagged = ImageFilter { tags: TagFilter::Tagged, status: StatusFilter::Any };
    assert_eq!(meta.list_images("team/app", None, 100, tagged).await.unwrap().len(), 2);
    let img = meta.image("team/app", m.digest.as_str()).await.unwrap().unwrap();
    assert_eq!(img.tags, ["latest", "v1"]);
    assert_eq!(img.blob_bytes, 11);
    let sizes = meta
        .image_blob_bytes("team/app", &[m.digest.to_string(), "sha256:absent".into(), idx.digest.to_string()])
        .await
        .unwrap();
    assert_eq!(sizes, [(m.digest.to_string(), 11)], "one query, only images with blobs");
}

pub async fn records_the_latest_pull(meta: Store) {
    let (m, _, _) = populated(meta.as_ref()).await;
    assert_eq!(meta.image("team/app", m.digest.as_str()).await.unwrap().unwrap().last_pulled_at, None);
    meta.record_pull("team/app", m.digest.as_str(), 5000).await.unwrap();
    meta.record_pull("team/app", m.digest.as_str(), 4000).await.unwrap();
    assert_eq!(meta.image("team/app", m.digest.as_str()).await.unwrap().unwrap().last_pulled_at, Some(5000));
}

pub async fn keeps_a_manifest_an_index_lists(meta: Store) {
    let (m, idx, _) = populated(meta.as_ref()).await;
    match meta.delete_manifest("team/app", &m.digest).await {
        Err(MetaError::ReferencedByIndex(parents)) => assert_eq!(parents, [idx.digest.to_string()]),
        other => panic!("deleting a listed manifest: {other:?}"),
    }
    assert!(meta.manifest("team/app", &m.digest).await.unwrap().is_some());
    assert!(meta.delete_manifest("team/app", &idx.digest).await.unwrap());
    assert!(meta.delete_manifest("team/app", &m.digest).await.unwrap(), "no index lists it any more");
}

pub async fn archives_and_restores_images(meta: Store) {
    let (_, _, sig) = populated(meta.as_ref()).await;
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
}

pub async fn moves_and_deletes_tags(meta: Store) {
    populated(meta.as_ref()).await;
    let m2 = manifest("m2", &[&digest("config")], &[], None);
    meta.put_manifest("team/app", &m2, &["v1".into()], &[]).await.unwrap();
    assert_eq!(meta.resolve_tag("team/app", "v1").await.unwrap(), Some(m2.digest.clone()));
    assert!(meta.delete_tag("team/app", "latest").await.unwrap());
    assert!(!meta.delete_tag("team/app", "latest").await.unwrap());
    assert!(meta.delete_manifest("team/app", &m2.digest).await.unwrap());
    assert!(!meta.delete_manifest("team/app", &m2.digest).await.unwrap());
    assert!(meta.resolve_tag("team/app", "v1").await.unwrap().is_none(), "a manifest takes its tags along");
    assert_eq!(meta.linked_blob("team/app", &digest("config")).await.unwrap(), Some(6), "links stay");
}

pub async fn never_moves_an_immutable_tag(meta: Store) {
    populated(meta.as_ref()).await;
    let config = digest("config");
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
    assert_eq!(meta.resolve_tag("team/app", "stable").await.unwrap(), Some(m4.digest));
}

pub async fn keeps_upload_sessions(meta: Store) {
    repository(meta.as_ref(), "team/app").await;
    meta.create_upload("team/app", "u-1", Algorithm::Sha256, "", None).await.unwrap();
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
}

pub async fn records_upload_progress_from_where_it_was(meta: Store) {
    repository(meta.as_ref(), "team/app").await;
    meta.create_upload("team/app", "u-p", Algorithm::Sha256, "store-0", None).await.unwrap();
    let u = meta.upload("u-p").await.unwrap().unwrap();
    assert_eq!((u.acknowledged_bytes, u.hash_state, u.store_state.as_str()), (0, None, "store-0"));
    assert!(meta.record_upload_progress("u-p", 0, 10, b"state-10", "store-10", None).await.unwrap());
    assert!(!meta.record_upload_progress("u-p", 0, 7, b"stale", "stale", None).await.unwrap(), "not from where it is");
    assert!(meta.record_upload_progress("u-p", 10, 25, b"state-25", "store-25", None).await.unwrap());
    let u = meta.upload("u-p").await.unwrap().unwrap();
    assert_eq!((u.acknowledged_bytes, u.hash_state.as_deref()), (25, Some(&b"state-25"[..])));
    assert_eq!(u.store_state, "store-25", "the store's state moves with the hash");
    assert!(!meta.record_upload_progress("u-none", 0, 1, b"x", "", None).await.unwrap(), "no such upload");
}

pub async fn keeps_a_sealed_upload_and_its_staged_chunk(meta: Store) {
    repository(meta.as_ref(), "team/app").await;
    let cipher = UploadCipher { wrapping: "AES256".into(), wrapped_keys: b"wrapped".to_vec(), staged_chunk: None };
    meta.create_upload("team/app", "u-s", Algorithm::Sha256, "", Some(&cipher)).await.unwrap();
    assert_eq!(meta.upload("u-s").await.unwrap().unwrap().cipher, Some(cipher.clone()));
    assert!(meta.record_upload_progress("u-s", 0, 10, b"h", "", Some(b"staged-10")).await.unwrap());
    let staged = meta.upload("u-s").await.unwrap().unwrap().cipher.unwrap().staged_chunk;
    assert_eq!(staged.as_deref(), Some(&b"staged-10"[..]));
    assert!(meta.record_upload_progress("u-s", 10, 20, b"h", "", None).await.unwrap());
    let after = meta.upload("u-s").await.unwrap().unwrap().cipher.unwrap();
    assert_eq!((after.wrapped_keys, after.staged_chunk), (b"wrapped".to_vec(), None), "a whole chunk stages nothing");
    meta.create_upload("team/app", "u-plain", Algorithm::Sha256, "", None).await.unwrap();
    assert_eq!(meta.upload("u-plain").await.unwrap().unwrap().cipher, None);
}

pub async fn claims_a_blobs_keys_and_adds_wrappings(meta: Store) {
    let blob = digest("sealed");
    assert!(meta.blob_keys(&blob).await.unwrap().is_empty(), "a blob stored as sent has no keys");
    let wrapping = |w: &str, bytes: &[u8]| BlobKeyWrapping { wrapping: w.into(), layers: 1, wrapped: bytes.to_vec() };
    meta.claim_blob_keys(&blob, &wrapping("AES256", b"first")).await.unwrap();
    meta.add_blob_key_wrapping(&blob, &wrapping("arn:aws:kms:us-east-1:1:key/k", b"kms")).await.unwrap();
    meta.add_blob_key_wrapping(&blob, &wrapping("AES256", b"other")).await.unwrap();
    assert_eq!(
        meta.blob_keys(&blob).await.unwrap(),
        [wrapping("AES256", b"first"), wrapping("arn:aws:kms:us-east-1:1:key/k", b"kms")],
        "one wrapping per key, the first kept"
    );
    meta.claim_blob_keys(&blob, &BlobKeyWrapping { layers: 2, ..wrapping("arn:aws:kms:us-east-1:1:key/d", b"new") })
        .await
        .unwrap();
    assert_eq!(
        meta.blob_keys(&blob).await.unwrap(),
        [BlobKeyWrapping { layers: 2, ..wrapping("arn:aws:kms:us-east-1:1:key/d", b"new") }],
        "a claim replaces an interrupted commit's keys"
    );
    let page = meta.stored_secrets(SealedKind::BlobDataKeys, "", 10).await.unwrap();
    assert!(page.is_empty(), "only master wrappings are the keyring's to re-seal");
    meta.add_blob_key_wrapping(&blob, &wrapping("AES256", b"sealed:k1:x")).await.unwrap();
    let page = meta.stored_secrets(SealedKind::BlobDataKeys, "", 10).await.unwrap();
    assert_eq!(page.len(), 1);
    assert!(
        meta.replace_stored_secret(SealedKind::BlobDataKeys, blob.as_str(), b"sealed:k1:x", b"sealed:k2:y")
            .await
            .unwrap()
    );
    assert!(
        !meta.replace_stored_secret(SealedKind::BlobDataKeys, blob.as_str(), b"sealed:k1:x", b"again").await.unwrap()
    );
    assert!(meta.blob_keys(&blob).await.unwrap().contains(&wrapping("AES256", b"sealed:k2:y")));
}

/// Writers continuing one upload from the same offset at once: exactly one records.
pub async fn concurrent_progress_from_one_offset_exactly_one_records(meta: Store) {
    repository(meta.as_ref(), "race").await;
    for round in 0..ROUNDS {
        let id = format!("u-{round}");
        meta.create_upload("race", &id, Algorithm::Sha256, "", None).await.unwrap();
        let results = race(&meta, |meta, i| {
            let id = id.clone();
            async move { meta.record_upload_progress(&id, 0, 100 + i as u64, b"s", "", None).await.unwrap() }
        })
        .await;
        assert_eq!(results.iter().filter(|r| **r).count(), 1, "round {round}: {results:?}");
    }
}

pub async fn linking_a_blob_ends_its_upload_session(meta: Store) {
    repository(meta.as_ref(), "team/app").await;
    let config = digest("config");
    meta.create_upload("team/app", "u-2", Algorithm::Sha256, "", None).await.unwrap();
    meta.link_blob("team/app", &config, 6, Some("u-2")).await.unwrap();
    assert!(meta.upload("u-2").await.unwrap().is_none());
    assert_eq!(meta.linked_blob("team/app", &config).await.unwrap(), Some(6));
}

/// Pushes of one immutable tag with different content, at once: exactly one wins, the
/// others are refused, and the tag names the winner's manifest.
pub async fn concurrent_pushes_of_an_immutable_tag_exactly_one_wins(meta: Store) {
    repository(meta.as_ref(), "race").await;
    let config = digest("config");
    meta.link_blob("race", &config, 6, None).await.unwrap();
    for round in 0..ROUNDS {
        let tag = format!("t{round}");
        let results = race(&meta, |meta, i| {
            let tag = tag.clone();
            let m = manifest(&format!("{tag}-{i}"), &[&digest("config")], &[], None);
            async move {
                (
                    m.digest.clone(),
                    meta.put_manifest("race", &m, std::slice::from_ref(&tag), std::slice::from_ref(&tag)).await,
                )
            }
        })
        .await;
        let winners: Vec<&Digest> = results.iter().filter(|(_, r)| r.is_ok()).map(|(d, _)| d).collect();
        assert_eq!(winners.len(), 1, "round {round}: {results:?}");
        assert!(results.iter().all(|(_, r)| r.is_ok() || matches!(r, Err(MetaError::TagImmutable(_)))));
        assert_eq!(meta.resolve_tag("race", &tag).await.unwrap().as_ref(), Some(winners[0]));
    }
}

/// Links of one blob into one repository at once: exactly one is told it is new.
pub async fn concurrent_links_of_one_blob_exactly_one_is_new(meta: Store) {
    repository(meta.as_ref(), "race").await;
    for round in 0..ROUNDS {
        let blob = digest(&format!("blob-{round}"));
        let results = race(&meta, |meta, _| {
            let blob = blob.clone();
            async move { meta.link_blob("race", &blob, 9, None).await.unwrap() }
        })
        .await;
        assert_eq!(results.iter().filter(|already| !**already).count(), 1, "round {round}: {results:?}");
    }
}

/// An index put racing the delete of its child: either the index is refused (its child is
/// gone) or the child stays (an index lists it) — never an index listing nothing.
pub async fn concurrent_index_put_and_child_delete_never_leave_an_index_dangling(meta: Store) {
    repository(meta.as_ref(), "race").await;
    let config = digest("config");
    meta.link_blob("race", &config, 6, None).await.unwrap();
    for round in 0..ROUNDS {
        let child = manifest(&format!("child-{round}"), &[&config], &[], None);
        meta.put_manifest("race", &child, &[], &[]).await.unwrap();
        let index = manifest(&format!("index-{round}"), &[], &[&child.digest], None);
        let (meta_a, meta_b) = (meta.clone(), meta.clone());
        let (i, c) = (index.clone(), child.digest.clone());
        let put = tokio::spawn(async move { meta_a.put_manifest("race", &i, &[], &[]).await });
        let delete = tokio::spawn(async move { meta_b.delete_manifest("race", &c).await });
        let (put, delete) = (put.await.unwrap(), delete.await.unwrap());
        let child_there = meta.manifest("race", &child.digest).await.unwrap().is_some();
        match (&put, &delete) {
            (Ok(()), Err(MetaError::ReferencedByIndex(_))) => assert!(child_there),
            (Err(MetaError::MissingReferences { .. }), Ok(true)) => assert!(!child_there),
            other => panic!("round {round}: index put and child delete both went through: {other:?}"),
        }
    }
}

pub async fn keeps_a_sealed_manifests_keys_and_its_plaintext_size(meta: Store) {
    repository(meta.as_ref(), "team/sealed").await;
    let subject = manifest("subject", &[], &[], None);
    meta.put_manifest("team/sealed", &subject, &[], &[]).await.unwrap();
    let keys = ManifestKeys { wrapping: "AES256".into(), wrapped: b"sealed:v1:keys".to_vec() };
    let sealed = NewManifest {
        content: b"ciphertext, longer than the manifest".to_vec(),
        size: 8,
        keys: Some(keys.clone()),
        annotations: Some("c2VhbGVk".into()),
        ..manifest("referrer", &[], &[], Some(&subject.digest))
    };
    meta.put_manifest("team/sealed", &sealed, &["v1".into()], &[]).await.unwrap();
    let stored = meta.manifest("team/sealed", &sealed.digest).await.unwrap().unwrap();
    assert_eq!((stored.content, stored.keys.as_ref()), (sealed.content.clone(), Some(&keys)));
    assert_eq!(meta.tagged_manifest("team/sealed", "v1").await.unwrap().unwrap().keys, Some(keys.clone()));
    assert_eq!(meta.manifest("team/sealed", &subject.digest).await.unwrap().unwrap().keys, None);
    let refs = meta.referrers("team/sealed", &subject.digest, None).await.unwrap();
    assert_eq!(
        (refs[0].size, refs[0].annotations.as_deref(), refs[0].keys.as_ref()),
        (8, Some("c2VhbGVk"), Some(&keys))
    );
    // The master keyring's wrappings are re-sealed by a rotation, by `<repository>@<digest>`.
    let id = crate::manifest_keys_id("team/sealed", sealed.digest.as_str());
    let page = meta.stored_secrets(SealedKind::ManifestDataKeys, "", 10).await.unwrap();
    assert_eq!(
        page.iter().map(|s| (s.id.as_str(), s.stored.as_slice())).collect::<Vec<_>>(),
        [(id.as_str(), &b"sealed:v1:keys"[..])]
    );
    assert!(meta.stored_secrets(SealedKind::ManifestDataKeys, &id, 10).await.unwrap().is_empty());
    assert!(
        meta.replace_stored_secret(SealedKind::ManifestDataKeys, &id, b"sealed:v1:keys", b"sealed:v2:keys")
            .await
            .unwrap()
    );
    assert!(!meta.replace_stored_secret(SealedKind::ManifestDataKeys, &id, b"sealed:v1:keys", b"again").await.unwrap());
    assert_eq!(
        meta.manifest("team/sealed", &sealed.digest).await.unwrap().unwrap().keys.unwrap().wrapped,
        b"sealed:v2:keys"
    );
}
