use super::*;

pub async fn lists_every_blob_and_reference(meta: Store) {
    let (m, idx, _) = populated(meta.as_ref()).await;
    let all = meta.all_manifest_references().await.unwrap();
    assert_eq!(all.len(), 3);
    assert_eq!(all.iter().find(|r| r.digest == m.digest.as_str()).unwrap().blobs.len(), 2);
    assert_eq!(all.iter().find(|r| r.digest == idx.digest.as_str()).unwrap().manifests, [m.digest.to_string()]);
    let mut blobs = meta.all_blobs().await.unwrap();
    blobs.sort();
    let mut want = vec![(digest("config").to_string(), 6), (digest("layer").to_string(), 5)];
    want.sort();
    assert_eq!(blobs, want);
}

pub async fn collects_old_unreferenced_links_and_then_their_blobs(meta: Store) {
    repository(meta.as_ref(), "gc").await;
    let (kept, dropped) = (digest("gc-kept"), digest("gc-dropped"));
    meta.link_blob("gc", &kept, 3, None).await.unwrap();
    meta.link_blob("gc", &dropped, 4, None).await.unwrap();
    meta.put_manifest("gc", &manifest("gc-m", &[&kept], &[], None), &["v1".into()], &[]).await.unwrap();
    let far_future = now_ms() + 3_600_000;
    assert_eq!(meta.gc_preview(0).await.unwrap(), (0, vec![]), "nothing is older than the epoch");
    let (links, blobs) = meta.gc_preview(far_future).await.unwrap();
    assert_eq!(links, 1);
    assert_eq!(blobs, [(dropped.to_string(), 4)], "referenced blobs are never candidates");
    assert_eq!(meta.gc_unlink_unreferenced(far_future).await.unwrap(), 1);
    assert_eq!(meta.linked_blob("gc", &dropped).await.unwrap(), None);
    assert_eq!(meta.linked_blob("gc", &kept).await.unwrap(), Some(3));
    let removed = meta.gc_remove_unlinked_blobs(far_future).await.unwrap();
    assert_eq!(removed, [(dropped.to_string(), 4)]);
    assert!(meta.blobs_recorded(&[dropped.to_string()]).await.unwrap().is_empty());
    assert_eq!(
        meta.blobs_recorded(&[kept.to_string(), dropped.to_string()]).await.unwrap(),
        [kept.to_string()],
        "one query for a batch"
    );
    let usage = meta.repository_usage().await.unwrap();
    let gc_usage = usage.iter().find(|(n, _, _)| n == "gc").unwrap();
    assert_eq!((gc_usage.1, gc_usage.2), (1, 3), "one image; only the kept blob is still linked");
}

pub async fn finds_stale_uploads(meta: Store) {
    repository(meta.as_ref(), "gc").await;
    meta.create_upload("gc", "u-stale", Algorithm::Sha256, "", None).await.unwrap();
    assert_eq!(meta.stale_uploads(now_ms() + 3_600_000).await.unwrap(), ["u-stale"]);
    assert!(meta.stale_uploads(0).await.unwrap().is_empty());
}

pub async fn finds_and_forgets_keys_without_a_blob(meta: Store) {
    repository(meta.as_ref(), "gc").await;
    let (linked, orphan) = (digest("keyed-linked"), digest("keyed-orphan"));
    let keys = BlobKeyWrapping { wrapping: "AES256".into(), layers: 1, wrapped: b"w".to_vec() };
    meta.claim_blob_keys(&linked, &keys).await.unwrap();
    meta.link_blob("gc", &linked, 3, None).await.unwrap();
    meta.claim_blob_keys(&orphan, &keys).await.unwrap();
    assert_eq!(meta.unrecorded_blob_keys().await.unwrap(), [orphan.to_string()]);
    meta.delete_blob_keys(&[orphan.to_string()]).await.unwrap();
    meta.delete_blob_keys(&[]).await.unwrap();
    assert!(meta.unrecorded_blob_keys().await.unwrap().is_empty());
    assert!(meta.blob_keys(&orphan).await.unwrap().is_empty());
    assert_eq!(meta.blob_keys(&linked).await.unwrap(), [keys]);
}

/// GC unlinking a repository's unreferenced blobs while a manifest referencing one of them
/// is put: either the manifest is refused (the blob was unlinked first) or the blob stays
/// linked and recorded (the manifest came first) — never a manifest whose blob is gone.
pub async fn concurrent_unlink_and_manifest_put_never_lose_a_referenced_blob(meta: Store) {
    repository(meta.as_ref(), "gc").await;
    let far_future = now_ms() + 3_600_000;
    for round in 0..ROUNDS {
        let blob = digest(&format!("layer-{round}"));
        meta.link_blob("gc", &blob, 7, None).await.unwrap();
        let m = manifest(&format!("gc-m-{round}"), &[&blob], &[], None);
        let (meta_a, meta_b) = (meta.clone(), meta.clone());
        let put = tokio::spawn(async move { meta_a.put_manifest("gc", &m, &[], &[]).await });
        let collect = tokio::spawn(async move {
            meta_b.gc_unlink_unreferenced(far_future).await.unwrap();
            meta_b.gc_remove_unlinked_blobs(far_future).await.unwrap()
        });
        let (put, removed) = (put.await.unwrap(), collect.await.unwrap());
        let removed_it = removed.iter().any(|(d, _)| d == blob.as_str());
        match put {
            Ok(()) => {
                assert!(!removed_it, "round {round}: a referenced blob was collected");
                assert_eq!(meta.linked_blob("gc", &blob).await.unwrap(), Some(7));
                assert_eq!(meta.blobs_recorded(&[blob.to_string()]).await.unwrap().len(), 1);
            }
            Err(MetaError::MissingReferences { blobs, .. }) => assert_eq!(blobs, std::slice::from_ref(&blob)),
            Err(e) => panic!("round {round}: {e}"),
        }
    }
}

/// A holder of a digest's bytes lock makes another wait for that digest, and only for it; a
/// store only one node opens holds nothing (the registry's own lock serves there).
pub async fn blob_bytes_locks_exclude_holders_of_one_digest(meta: Store) {
    let batch = ["sha256:bb".to_string(), "sha256:aa".to_string(), "sha256:aa".to_string()];
    let held = meta.lock_blob_bytes(&batch).await.unwrap();
    if held.is_local() {
        return;
    }
    let other = meta.lock_blob_bytes(&["sha256:cc".to_string()]).await.unwrap();
    drop(other);
    let acquired = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let waiter = tokio::spawn({
        let (meta, acquired) = (meta.clone(), acquired.clone());
        async move {
            let lock = meta.lock_blob_bytes(&["sha256:aa".to_string()]).await.unwrap();
            acquired.store(true, std::sync::atomic::Ordering::SeqCst);
            drop(lock);
        }
    });
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert!(!acquired.load(std::sync::atomic::Ordering::SeqCst), "the second holder waited");
    drop(held);
    tokio::time::timeout(std::time::Duration::from_secs(10), waiter).await.unwrap().unwrap();
    assert!(acquired.load(std::sync::atomic::Ordering::SeqCst));
}
