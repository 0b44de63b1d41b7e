//! The contract every [`BlobStore`] must keep, as named clauses. The conformance macro expands,
//! for a fixture (an async fn returning a guard and a fresh, empty store) and a way to open a
//! second instance on the same storage (another node, or the same one after a restart), into
//! one `#[tokio::test]` per clause:
//!
//! ```ignore
//! async fn fixture() -> (tempfile::TempDir, Arc<dyn BlobStore>) { … }
//! async fn reopen(dir: &tempfile::TempDir) -> Arc<dyn BlobStore> { … }
//! berth_store::blob_store_conformance!(fixture, reopen);
//! ```

use std::sync::Arc;

use berth_oci::{Algorithm, ByteRange, Digest, Hasher};
use bytes::Bytes;
use futures_util::{StreamExt, stream};

use crate::{BlobStore, ByteStream, Listing, StoreError};

/// The store a clause runs against.
pub type Store = Arc<dyn BlobStore>;

pub fn bytes_stream(chunks: Vec<&'static [u8]>) -> ByteStream {
    Box::pin(stream::iter(chunks.into_iter().map(|c| Ok(Bytes::from_static(c)))))
}

pub async fn collect(mut s: ByteStream) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(c) = s.next().await {
        out.extend_from_slice(&c.unwrap());
    }
    out
}

/// Every item of a listing.
pub async fn listed<T>(mut l: Listing<T>) -> Vec<T> {
    let mut out = Vec::new();
    while let Some(item) = l.next().await {
        out.push(item.unwrap());
    }
    out
}

/// The bytes `start..end` of a fixed pseudo-random pattern, generated chunk by chunk as they
/// are sent (never held whole).
fn generated(start: usize, end: usize, chunk: usize) -> ByteStream {
    let chunks = (start..end).step_by(chunk).map(move |at| {
        let upto = (at + chunk).min(end);
        Ok(Bytes::from((at..upto).map(pattern).collect::<Vec<u8>>()))
    });
    Box::pin(stream::iter(chunks))
}

fn pattern(at: usize) -> u8 {
    (at.wrapping_mul(2_654_435_761) >> 13) as u8
}

fn generated_digest(len: usize) -> Digest {
    let mut h = Algorithm::Sha256.hasher();
    let mut buf = Vec::with_capacity(1 << 20);
    for at in 0..len {
        buf.push(pattern(at));
        if buf.len() == buf.capacity() {
            h.update(&buf);
            buf.clear();
        }
    }
    h.update(&buf);
    h.finish()
}

/// Expands to one `#[tokio::test]` per clause of the blob store contract.
#[macro_export]
macro_rules! blob_store_conformance {
    ($fixture:path, $reopen:path) => {
        mod blob_store {
            use super::*;
            $crate::__blob_store_clauses!(
                $fixture,
                [
                    holds_nothing_at_first,
                    commits_an_upload_of_several_appends,
                    keeps_one_copy_of_content_committed_twice,
                    lists_and_drops_sessions,
                    commits_an_empty_upload,
                    keeps_sha512_blobs_beside_sha256_ones,
                    deletes_blobs,
                    streams_large_blobs_in_and_out,
                    concurrent_uploads_of_one_digest_keep_one_blob,
                ]
            );

            /// A second instance on the same storage continues an upload the first started.
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn a_fresh_instance_continues_an_upload_another_started() {
                let (guard, first) = $fixture().await;
                let second = $reopen(&guard).await;
                $crate::testing::a_fresh_instance_continues_an_upload_another_started(first, second).await;
            }
        }
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __blob_store_clauses {
    ($fixture:path, [$($clause:ident),* $(,)?]) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn $clause() {
                let (_guard, store) = $fixture().await;
                $crate::testing::$clause(store).await;
            }
        )*
    };
}

pub async fn holds_nothing_at_first(store: Store) {
    let digest = Digest::from_bytes(Algorithm::Sha256, b"anything");
    assert_eq!(store.stat(&digest).await.unwrap(), None);
    assert!(matches!(store.read(&digest, None).await, Err(StoreError::NotFound)));
    assert!(listed(store.list()).await.is_empty());
    assert!(listed(store.upload_list()).await.is_empty());
}

pub async fn commits_an_upload_of_several_appends(store: Store) {
    let content = b"hello, blob store";
    let digest = Digest::from_bytes(Algorithm::Sha256, content);
    store.upload_create("u1").await.unwrap();
    assert_eq!(store.upload_size("u1").await.unwrap(), Some(0));
    assert_eq!(store.upload_append("u1", 0, bytes_stream(vec![b"hello, "])).await.unwrap(), 7);
    // Appending at the wrong offset fails and changes nothing.
    assert!(store.upload_append("u1", 3, bytes_stream(vec![b"x"])).await.is_err());
    assert_eq!(store.upload_size("u1").await.unwrap(), Some(7));
    // A refused chunk is cut off again.
    assert_eq!(store.upload_append("u1", 7, bytes_stream(vec![b"refused"])).await.unwrap(), 14);
    store.upload_truncate("u1", 7).await.unwrap();
    assert_eq!(store.upload_size("u1").await.unwrap(), Some(7));
    let n = store.upload_append("u1", 7, bytes_stream(vec![b"blob ", b"store"])).await.unwrap();
    assert_eq!(n, content.len() as u64);
    assert_eq!(collect(store.upload_read("u1").await.unwrap()).await, content);
    // Not visible as a blob before commit.
    assert_eq!(store.stat(&digest).await.unwrap(), None);
    assert_eq!(store.upload_commit("u1", &digest).await.unwrap(), content.len() as u64);
    assert_eq!(store.upload_size("u1").await.unwrap(), None);
    assert_eq!(store.stat(&digest).await.unwrap(), Some(content.len() as u64));
    assert_eq!(collect(store.read(&digest, None).await.unwrap()).await, content);
    assert_eq!(collect(store.read(&digest, Some(ByteRange { start: 7, end: 10 })).await.unwrap()).await, b"blob");
    assert_eq!(listed(store.list()).await, vec![digest]);
}

pub async fn keeps_one_copy_of_content_committed_twice(store: Store) {
    let content = b"the same content";
    let digest = Digest::from_bytes(Algorithm::Sha256, content);
    for id in ["u1", "u2"] {
        store.upload_create(id).await.unwrap();
        store.upload_append(id, 0, bytes_stream(vec![content])).await.unwrap();
        assert_eq!(store.upload_commit(id, &digest).await.unwrap(), content.len() as u64);
        assert_eq!(store.upload_size(id).await.unwrap(), None, "the session is gone");
    }
    assert_eq!(listed(store.list()).await, [digest]);
}

pub async fn lists_and_drops_sessions(store: Store) {
    store.upload_create("u3").await.unwrap();
    assert!(listed(store.upload_list()).await.iter().any(|(id, _)| id == "u3"));
    assert!(store.upload_create("u3").await.is_err(), "session ids are unique");
    store.upload_delete("u3").await.unwrap();
    store.upload_delete("u3").await.unwrap();
    assert_eq!(store.upload_size("u3").await.unwrap(), None);
    assert!(matches!(store.upload_append("u3", 0, bytes_stream(vec![b"x"])).await, Err(StoreError::NotFound)));
    assert!(listed(store.upload_list()).await.is_empty());
}

pub async fn commits_an_empty_upload(store: Store) {
    store.upload_create("u4").await.unwrap();
    let empty = Digest::from_bytes(Algorithm::Sha256, b"");
    assert_eq!(store.upload_commit("u4", &empty).await.unwrap(), 0);
    assert_eq!(collect(store.read(&empty, None).await.unwrap()).await, b"");
}

pub async fn keeps_sha512_blobs_beside_sha256_ones(store: Store) {
    let content = b"hello, blob store";
    for digest in [Digest::from_bytes(Algorithm::Sha256, content), Digest::from_bytes(Algorithm::Sha512, content)] {
        let id = format!("u-{}", digest.algorithm());
        store.upload_create(&id).await.unwrap();
        store.upload_append(&id, 0, bytes_stream(vec![content])).await.unwrap();
        store.upload_commit(&id, &digest).await.unwrap();
        assert_eq!(store.stat(&digest).await.unwrap(), Some(content.len() as u64));
    }
    assert_eq!(listed(store.list()).await.len(), 2);
}

pub async fn deletes_blobs(store: Store) {
    let content = b"short-lived";
    let digest = Digest::from_bytes(Algorithm::Sha256, content);
    store.upload_create("u").await.unwrap();
    store.upload_append("u", 0, bytes_stream(vec![content])).await.unwrap();
    store.upload_commit("u", &digest).await.unwrap();
    store.delete(&digest).await.unwrap();
    store.delete(&digest).await.unwrap();
    assert_eq!(store.stat(&digest).await.unwrap(), None);
    assert!(listed(store.list()).await.is_empty());
}

pub async fn a_fresh_instance_continues_an_upload_another_started(first: Store, second: Store) {
    first.upload_create("shared").await.unwrap();
    assert_eq!(first.upload_append("shared", 0, bytes_stream(vec![b"begun on one, "])).await.unwrap(), 14);
    assert_eq!(second.upload_size("shared").await.unwrap(), Some(14));
    let end = second.upload_append("shared", 14, bytes_stream(vec![b"finished on another"])).await.unwrap();
    assert_eq!(end, 33);
    let content = b"begun on one, finished on another";
    let digest = Digest::from_bytes(Algorithm::Sha256, content);
    assert_eq!(second.upload_commit("shared", &digest).await.unwrap(), 33);
    assert_eq!(collect(first.read(&digest, None).await.unwrap()).await, content);
}

/// A blob larger than any buffer goes in as a stream of chunks and comes out as one, whole
/// and by ranges (the last byte, a range across chunk boundaries).
pub async fn streams_large_blobs_in_and_out(store: Store) {
    const LEN: usize = 40 * 1024 * 1024 + 123;
    let digest = generated_digest(LEN);
    store.upload_create("big").await.unwrap();
    let half = LEN / 2;
    let first = store.upload_append("big", 0, generated(0, half, 1 << 20)).await.unwrap();
    assert_eq!(first, half as u64);
    let rest = generated(half, LEN, 1 << 20);
    assert_eq!(store.upload_append("big", half as u64, rest).await.unwrap(), LEN as u64);
    assert_eq!(store.upload_commit("big", &digest).await.unwrap(), LEN as u64);
    let mut read = store.read(&digest, None).await.unwrap();
    let (mut h, mut n): (Hasher, usize) = (Algorithm::Sha256.hasher(), 0);
    while let Some(chunk) = read.next().await {
        let chunk = chunk.unwrap();
        assert!(chunk.len() <= 8 << 20, "read in bounded chunks, got {}", chunk.len());
        h.update(&chunk);
        n += chunk.len();
    }
    assert_eq!((n, h.finish()), (LEN, digest.clone()));
    let last = ByteRange { start: LEN as u64 - 1, end: LEN as u64 - 1 };
    assert_eq!(collect(store.read(&digest, Some(last)).await.unwrap()).await, [pattern(LEN - 1)]);
    let (start, end) = ((1 << 20) - 3, (1 << 20) + 5);
    let across =
        collect(store.read(&digest, Some(ByteRange { start: start as u64, end: end as u64 })).await.unwrap()).await;
    assert_eq!(across, (start..=end).map(pattern).collect::<Vec<u8>>());
}

/// Uploads of one content committed at once: every commit succeeds, one blob is kept, whole.
pub async fn concurrent_uploads_of_one_digest_keep_one_blob(store: Store) {
    const RACERS: usize = 8;
    let len = 3 * 1024 * 1024 + 7;
    let digest = generated_digest(len);
    let barrier = Arc::new(tokio::sync::Barrier::new(RACERS));
    let tasks: Vec<_> = (0..RACERS)
        .map(|i| {
            let (store, barrier, digest) = (store.clone(), barrier.clone(), digest.clone());
            tokio::spawn(async move {
                let id = format!("same-{i}");
                store.upload_create(&id).await.unwrap();
                store.upload_append(&id, 0, generated(0, len, 64 * 1024)).await.unwrap();
                barrier.wait().await;
                store.upload_commit(&id, &digest).await.unwrap()
            })
        })
        .collect();
    for t in tasks {
        assert_eq!(t.await.unwrap(), len as u64);
    }
    assert_eq!(listed(store.list()).await, std::slice::from_ref(&digest));
    assert!(listed(store.upload_list()).await.is_empty(), "every session ended");
    let mut read = store.read(&digest, None).await.unwrap();
    let mut h = Algorithm::Sha256.hasher();
    while let Some(chunk) = read.next().await {
        h.update(&chunk.unwrap());
    }
    assert_eq!(h.finish(), digest);
}
