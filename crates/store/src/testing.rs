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

use crate::{BlobStore, ByteStream, Listing, StoreError, UploadState};

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
                    a_session_committed_again_after_it_was_published_succeeds,
                    lists_and_drops_sessions,
                    drops_sessions_that_hold_parts,
                    commits_appends_of_every_size,
                    commits_an_empty_upload,
                    keeps_sha512_blobs_beside_sha256_ones,
                    deletes_blobs,
                    streams_large_blobs_in_and_out,
                    concurrent_uploads_of_one_digest_keep_one_blob,
                    replaces_a_stored_blob_in_place,
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

/// An upload session as its caller keeps it: the acknowledged size and the store's state.
pub struct Session {
    pub id: String,
    pub offset: u64,
    pub state: UploadState,
}

impl Session {
    pub async fn start(store: &Store, id: &str) -> Session {
        let state = store.upload_create(id).await.unwrap();
        Session { id: id.to_string(), offset: 0, state }
    }

    /// Appends and acknowledges `data`; returns the new size.
    pub async fn append(&mut self, store: &Store, data: ByteStream) -> u64 {
        let (offset, state) = store.upload_append(&self.id, self.offset, &self.state, data).await.unwrap();
        (self.offset, self.state) = (offset, state);
        offset
    }

    pub async fn commit(&self, store: &Store, digest: &Digest) -> u64 {
        store.upload_commit(&self.id, self.offset, &self.state, digest).await.unwrap()
    }

    /// What the session holds, or `None` where the store cannot read a session back.
    pub async fn read(&self, store: &Store) -> Option<Vec<u8>> {
        match store.upload_read(&self.id, self.offset, &self.state).await {
            Ok(s) => Some(collect(s).await),
            Err(StoreError::Unsupported(_)) => None,
            Err(e) => panic!("reading upload {}: {e}", self.id),
        }
    }
}

/// The SHA-256 of a stored blob's bytes, read back.
async fn stored_digest(store: &Store, digest: &Digest) -> Digest {
    let mut h = Algorithm::Sha256.hasher();
    let mut read = store.read(digest, None).await.unwrap();
    while let Some(chunk) = read.next().await {
        h.update(&chunk.unwrap());
    }
    h.finish()
}

fn session_ids(sessions: Vec<(String, u64)>) -> Vec<String> {
    sessions.into_iter().map(|(id, _)| id).collect()
}

pub async fn holds_nothing_at_first(store: Store) {
    let digest = Digest::from_bytes(Algorithm::Sha256, b"anything");
    assert_eq!(store.stat(&digest).await.unwrap(), None);
    assert!(matches!(store.read(&digest, None).await, Err(StoreError::NotFound)));
    assert!(listed(store.list()).await.is_empty());
    assert!(listed(store.upload_list()).await.is_empty());
    store.check().await.unwrap();
}

pub async fn commits_an_upload_of_several_appends(store: Store) {
    let content = b"hello, blob store";
    let digest = Digest::from_bytes(Algorithm::Sha256, content);
    let mut s = Session::start(&store, "u1").await;
    assert_eq!(store.upload_held("u1", 0, &s.state).await.unwrap().unwrap_or(0), 0);
    assert_eq!(s.append(&store, bytes_stream(vec![b"hello, "])).await, 7);
    // Appending past the acknowledged bytes fails.
    assert!(store.upload_append("u1", 9, &s.state, bytes_stream(vec![b"x"])).await.is_err());
    // An append the caller never acknowledges (a refused chunk) is discarded by the next.
    let (unacknowledged, _) = store.upload_append("u1", 7, &s.state, bytes_stream(vec![b"refused"])).await.unwrap();
    assert_eq!(unacknowledged, 14);
    assert_eq!(store.upload_held("u1", 7, &s.state).await.unwrap(), Some(7));
    assert_eq!(s.append(&store, bytes_stream(vec![b"blob ", b"store"])).await, content.len() as u64);
    if let Some(held) = s.read(&store).await {
        assert_eq!(held, content);
    }
    // Not visible as a blob before commit.
    assert_eq!(store.stat(&digest).await.unwrap(), None);
    assert_eq!(s.commit(&store, &digest).await, content.len() as u64);
    // The session ended with its commit. What the refused append wrote may be left for GC,
    // which drops sessions `upload_list` shows without a record (an object store commits a
    // small upload without listing its session).
    let left = listed(store.upload_list()).await;
    assert!(left.iter().all(|(id, _)| id == "u1"), "{left:?}");
    store.upload_delete("u1", None).await.unwrap();
    assert!(listed(store.upload_list()).await.is_empty(), "GC's drop removes the leftovers");
    assert_eq!(store.stat(&digest).await.unwrap(), Some(content.len() as u64));
    assert_eq!(collect(store.read(&digest, None).await.unwrap()).await, content);
    assert_eq!(collect(store.read(&digest, Some(ByteRange { start: 7, end: 10 })).await.unwrap()).await, b"blob");
    assert_eq!(listed(store.list()).await, vec![digest]);
}

/// The registry records a blob after its commit; if that record fails (a database that is
/// restarting), the client commits the same session again.
pub async fn a_session_committed_again_after_it_was_published_succeeds(store: Store) {
    let content = b"committed, then committed again";
    let digest = Digest::from_bytes(Algorithm::Sha256, content);
    let mut s = Session::start(&store, "again").await;
    s.append(&store, bytes_stream(vec![content])).await;
    assert_eq!(s.commit(&store, &digest).await, content.len() as u64);
    assert_eq!(s.commit(&store, &digest).await, content.len() as u64);
    assert_eq!(collect(store.read(&digest, None).await.unwrap()).await, content);
    // A session that never was is still unknown.
    let never = Digest::from_bytes(Algorithm::Sha256, b"never uploaded");
    assert!(matches!(
        store.upload_commit("never", 3, &s.state, &never).await,
        Err(crate::StoreError::NotFound) | Err(crate::StoreError::Io(_))
    ));
}

pub async fn keeps_one_copy_of_content_committed_twice(store: Store) {
    let content = b"the same content";
    let digest = Digest::from_bytes(Algorithm::Sha256, content);
    for id in ["u1", "u2"] {
        let mut s = Session::start(&store, id).await;
        s.append(&store, bytes_stream(vec![content])).await;
        assert_eq!(s.commit(&store, &digest).await, content.len() as u64);
    }
    assert!(listed(store.upload_list()).await.is_empty(), "the sessions are gone");
    assert_eq!(listed(store.list()).await, [digest]);
}

pub async fn lists_and_drops_sessions(store: Store) {
    let mut s = Session::start(&store, "u3").await;
    s.append(&store, bytes_stream(vec![b"x"])).await;
    assert_eq!(session_ids(listed(store.upload_list()).await), ["u3"]);
    store.upload_delete("u3", Some(&s.state)).await.unwrap();
    store.upload_delete("u3", Some(&s.state)).await.unwrap();
    store.upload_delete("u3", None).await.unwrap();
    assert!(listed(store.upload_list()).await.is_empty());
}

/// A session with multipart parts (over 5 MiB) and staged bytes is dropped whole, with or
/// without its state (an orphan GC found in storage with no record).
pub async fn drops_sessions_that_hold_parts(store: Store) {
    const LEN: usize = 11 * 1024 * 1024 + 5;
    let mut with_state = Session::start(&store, "parts-1").await;
    with_state.append(&store, generated(0, LEN, 1 << 20)).await;
    let mut orphan = Session::start(&store, "parts-2").await;
    orphan.append(&store, generated(0, LEN, 1 << 20)).await;
    let mut ids = session_ids(listed(store.upload_list()).await);
    ids.sort();
    assert_eq!(ids, ["parts-1", "parts-2"]);
    store.upload_delete("parts-1", Some(&with_state.state)).await.unwrap();
    store.upload_delete("parts-2", None).await.unwrap();
    assert!(listed(store.upload_list()).await.is_empty());
    assert!(listed(store.list()).await.is_empty());
}

/// Appends of every size around an object store's 5 MiB part minimum, some tiny, add up to
/// the right bytes.
pub async fn commits_appends_of_every_size(store: Store) {
    const MIB: usize = 1024 * 1024;
    let sizes = [1, 3 * MIB, 2 * MIB + 17, 5 * MIB, 7, 9 * MIB + 1, MIB, 0, 4 * MIB, 6 * MIB - 1];
    let len: usize = sizes.iter().sum();
    let digest = generated_digest(len);
    let mut s = Session::start(&store, "sizes").await;
    let mut at = 0;
    for size in sizes {
        assert_eq!(s.append(&store, generated(at, at + size, 256 * 1024)).await, (at + size) as u64);
        at += size;
    }
    assert_eq!(s.commit(&store, &digest).await, len as u64);
    assert_eq!(stored_digest(&store, &digest).await, digest);
    assert!(listed(store.upload_list()).await.is_empty());
}

pub async fn commits_an_empty_upload(store: Store) {
    let s = Session::start(&store, "u4").await;
    let empty = Digest::from_bytes(Algorithm::Sha256, b"");
    assert_eq!(s.commit(&store, &empty).await, 0);
    assert_eq!(collect(store.read(&empty, None).await.unwrap()).await, b"");
}

pub async fn keeps_sha512_blobs_beside_sha256_ones(store: Store) {
    let content = b"hello, blob store";
    for digest in [Digest::from_bytes(Algorithm::Sha256, content), Digest::from_bytes(Algorithm::Sha512, content)] {
        let id = format!("u-{}", digest.algorithm());
        let mut s = Session::start(&store, &id).await;
        s.append(&store, bytes_stream(vec![content])).await;
        s.commit(&store, &digest).await;
        assert_eq!(store.stat(&digest).await.unwrap(), Some(content.len() as u64));
    }
    assert_eq!(listed(store.list()).await.len(), 2);
}

pub async fn deletes_blobs(store: Store) {
    let content = b"short-lived";
    let digest = Digest::from_bytes(Algorithm::Sha256, content);
    let mut s = Session::start(&store, "u").await;
    s.append(&store, bytes_stream(vec![content])).await;
    s.commit(&store, &digest).await;
    store.delete(&digest).await.unwrap();
    store.delete(&digest).await.unwrap();
    assert_eq!(store.stat(&digest).await.unwrap(), None);
    assert!(listed(store.list()).await.is_empty());
}

/// Another instance (another node) continues an upload from its recorded state, across the
/// part minimum: the first appends a small chunk, the second a large one, the first a small
/// one again, and the second commits.
pub async fn a_fresh_instance_continues_an_upload_another_started(first: Store, second: Store) {
    const MIB: usize = 1024 * 1024;
    let len = 2 * MIB + 6 * MIB + 3;
    let digest = generated_digest(len);
    let mut s = Session::start(&first, "shared").await;
    assert_eq!(s.append(&first, generated(0, 2 * MIB, 64 * 1024)).await, (2 * MIB) as u64);
    assert_eq!(second.upload_held("shared", s.offset, &s.state).await.unwrap(), Some(s.offset));
    s.append(&second, generated(2 * MIB, 8 * MIB, 64 * 1024)).await;
    s.append(&first, generated(8 * MIB, len, 64 * 1024)).await;
    assert_eq!(s.commit(&second, &digest).await, len as u64);
    assert_eq!(stored_digest(&first, &digest).await, digest);
}

/// A blob larger than any buffer goes in as a stream of chunks and comes out as one, whole
/// and by ranges (the last byte, a range across chunk boundaries).
pub async fn streams_large_blobs_in_and_out(store: Store) {
    const LEN: usize = 40 * 1024 * 1024 + 123;
    let digest = generated_digest(LEN);
    let mut s = Session::start(&store, "big").await;
    let half = LEN / 2;
    assert_eq!(s.append(&store, generated(0, half, 1 << 20)).await, half as u64);
    assert_eq!(s.append(&store, generated(half, LEN, 1 << 20)).await, LEN as u64);
    assert_eq!(s.commit(&store, &digest).await, LEN as u64);
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
                let mut s = Session::start(&store, &format!("same-{i}")).await;
                s.append(&store, generated(0, len, 64 * 1024)).await;
                barrier.wait().await;
                s.commit(&store, &digest).await
            })
        })
        .collect();
    for t in tasks {
        assert_eq!(t.await.unwrap(), len as u64);
    }
    assert_eq!(listed(store.list()).await, std::slice::from_ref(&digest));
    assert!(listed(store.upload_list()).await.is_empty(), "every session ended");
    assert_eq!(stored_digest(&store, &digest).await, digest);
}

/// `upload_replace` puts a session's bytes in place of what is stored under a digest (small
/// sessions and ones of several parts alike).
pub async fn replaces_a_stored_blob_in_place(store: Store) {
    let plain: &'static [u8] = b"stored first";
    let digest = Digest::from_bytes(Algorithm::Sha256, plain);
    let mut first = Session::start(&store, "r-1").await;
    first.append(&store, bytes_stream(vec![plain])).await;
    first.commit(&store, &digest).await;
    assert_eq!(collect(store.read(&digest, None).await.unwrap()).await, plain);
    let mut small = Session::start(&store, "r-3").await;
    small.append(&store, bytes_stream(vec![b"sealed: ", b"replaced"])).await;
    assert_eq!(store.upload_replace("r-3", small.offset, &small.state, &digest).await.unwrap(), 16);
    assert_eq!(collect(store.read(&digest, None).await.unwrap()).await, b"sealed: replaced");
    const LEN: usize = 6 * 1024 * 1024 + 3;
    let mut parts = Session::start(&store, "r-4").await;
    parts.append(&store, generated(0, LEN, 1 << 20)).await;
    store.upload_replace("r-4", parts.offset, &parts.state, &digest).await.unwrap();
    assert_eq!(store.stat(&digest).await.unwrap(), Some(LEN as u64));
    assert_eq!(collect(store.read(&digest, None).await.unwrap()).await, collect(generated(0, LEN, 1 << 20)).await);
    assert!(listed(store.upload_list()).await.is_empty(), "the sessions are gone");
    assert_eq!(listed(store.list()).await, [digest]);
}
