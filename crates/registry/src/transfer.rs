//! Copying blobs from one store into another (`berth migrate`): each streamed through its
//! hash, in an upload session of the target that is committed only when the bytes hash to
//! the digest and number the recorded size — a damaged or short blob is reported, never
//! published. A blob Berth sealed is copied as stored, its sealed size checked (its chunks'
//! tags are checked whenever it is opened, its digest through decryption by `berth fsck`).
//! A blob the target holds already (an earlier, interrupted run) is not copied.

use std::sync::{Arc, Mutex};

use berth_oci::Digest;
use berth_store::{BlobStore, StoreError};
use futures_util::{StreamExt, TryStreamExt};

/// What became of one blob.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BlobCopy {
    /// Copied: this many bytes.
    Copied(u64),
    /// The target held it already, at the recorded size.
    Present,
    /// The source does not hold it.
    Missing,
    /// The source's bytes are not the blob (the reason): nothing was published.
    Damaged(String),
}

/// What the source holds under a digest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stored {
    /// The blob as sent: this many bytes, hashing to the digest.
    AsSent(u64),
    /// The blob sealed by Berth: this many sealed bytes.
    Sealed(u64),
}

impl Stored {
    /// A blob of `plain_len` bytes sealed with `layers` layers.
    pub fn sealed(layers: u32, plain_len: u64) -> Self {
        Stored::Sealed(berth_envelope::Envelope::sealed_len_of(layers as usize, plain_len))
    }
}

/// Copies `digest` (stored as `stored` says) from `from` to `to`; `on_bytes` hears of every
/// chunk as it passes.
pub async fn copy_blob(
    from: &dyn BlobStore,
    to: &dyn BlobStore,
    digest: &Digest,
    stored: Stored,
    on_bytes: Arc<dyn Fn(u64) + Send + Sync>,
) -> Result<BlobCopy, StoreError> {
    let size = match stored {
        Stored::AsSent(n) | Stored::Sealed(n) => n,
    };
    match to.stat(digest).await? {
        Some(s) if s == size => return Ok(BlobCopy::Present),
        Some(s) => {
            return Ok(BlobCopy::Damaged(format!("the target holds {s} bytes under this digest, not {size}")));
        }
        None => {}
    }
    let source = match from.read(digest, None).await {
        Ok(s) => s,
        Err(StoreError::NotFound) => return Ok(BlobCopy::Missing),
        Err(e) => return Err(e),
    };
    let seen = Arc::new(Mutex::new((digest.algorithm().hasher(), 0u64)));
    let hashed = {
        let seen = seen.clone();
        source.inspect_ok(move |chunk| {
            let mut seen = seen.lock().expect("hasher lock");
            seen.0.update(chunk);
            seen.1 += chunk.len() as u64;
            on_bytes(chunk.len() as u64);
        })
    };
    let id = format!("migrate-{}", uuid::Uuid::new_v4().simple());
    let state = to.upload_create(&id).await?;
    let appended = to.upload_append(&id, 0, &state, hashed.boxed()).await;
    let (offset, state) = match appended {
        Ok(done) => done,
        Err(e) => {
            let _ = to.upload_delete(&id, Some(&state)).await;
            return Err(e);
        }
    };
    let (hasher, counted) = {
        let mut seen = seen.lock().expect("hasher lock");
        let (h, n) = std::mem::replace(&mut *seen, (digest.algorithm().hasher(), 0));
        (h, n)
    };
    let actual = hasher.finish();
    let damage = if counted != size || offset != size {
        Some(format!("the source holds {counted} bytes, the metadata records {size}"))
    } else if actual != *digest && matches!(stored, Stored::AsSent(_)) {
        Some(format!("the source's bytes hash to {actual}"))
    } else {
        None
    };
    if let Some(why) = damage {
        to.upload_delete(&id, Some(&state)).await?;
        return Ok(BlobCopy::Damaged(why));
    }
    to.upload_commit(&id, offset, &state, digest).await?;
    Ok(BlobCopy::Copied(size))
}

#[cfg(test)]
mod tests {
    use super::*;
    use berth_store::FsBlobStore;
    use bytes::Bytes;

    async fn store(dir: &std::path::Path) -> FsBlobStore {
        FsBlobStore::open(dir.to_path_buf()).await.unwrap()
    }

    async fn put(store: &FsBlobStore, data: &'static [u8]) -> Digest {
        let digest = Digest::from_bytes(berth_oci::Algorithm::Sha256, data);
        let state = store.upload_create("u").await.unwrap();
        let body = futures_util::stream::once(async move { Ok(Bytes::from_static(data)) }).boxed();
        let (n, state) = store.upload_append("u", 0, &state, body).await.unwrap();
        store.upload_commit("u", n, &state, &digest).await.unwrap();
        digest
    }

    fn quiet() -> Arc<dyn Fn(u64) + Send + Sync> {
        Arc::new(|_| {})
    }

    #[tokio::test]
    async fn a_blob_is_copied_once_and_found_present_the_second_time() {
        let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let (from, to) = (store(a.path()).await, store(b.path()).await);
        let digest = put(&from, b"layer bytes").await;
        assert_eq!(copy_blob(&from, &to, &digest, Stored::AsSent(11), quiet()).await.unwrap(), BlobCopy::Copied(11));
        assert_eq!(to.stat(&digest).await.unwrap(), Some(11));
        assert_eq!(copy_blob(&from, &to, &digest, Stored::AsSent(11), quiet()).await.unwrap(), BlobCopy::Present);
    }

    #[tokio::test]
    async fn a_missing_or_damaged_blob_is_reported_and_nothing_is_published() {
        let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let (from, to) = (store(a.path()).await, store(b.path()).await);
        let absent = Digest::from_bytes(berth_oci::Algorithm::Sha256, b"never stored");
        assert_eq!(copy_blob(&from, &to, &absent, Stored::AsSent(12), quiet()).await.unwrap(), BlobCopy::Missing);

        let digest = put(&from, b"layer bytes").await;
        // The metadata records another size than the store holds.
        assert!(matches!(
            copy_blob(&from, &to, &digest, Stored::AsSent(12), quiet()).await.unwrap(),
            BlobCopy::Damaged(_)
        ));
        assert_eq!(to.stat(&digest).await.unwrap(), None);

        // Bytes that are not the blob: the file under the digest changed on disk.
        let path = walk(a.path()).into_iter().find(|p| p.ends_with(digest.hex())).expect("the blob's file");
        std::fs::write(&path, b"other bytes").unwrap();
        match copy_blob(&from, &to, &digest, Stored::AsSent(11), quiet()).await.unwrap() {
            BlobCopy::Damaged(why) => assert!(why.contains("hash to"), "{why}"),
            other => panic!("{other:?}"),
        }
        assert_eq!(to.stat(&digest).await.unwrap(), None);
        let mut sessions = to.upload_list();
        assert!(sessions.next().await.is_none(), "the refused copy's session is dropped");
    }

    fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
        let mut out = Vec::new();
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() { out.extend(walk(&path)) } else { out.push(path) }
        }
        out
    }
}
