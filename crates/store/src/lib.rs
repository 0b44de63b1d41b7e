//! Blob storage behind a narrow trait.
//!
//! A [`BlobStore`] keeps content-addressed blobs (written once, read by range, deleted by GC)
//! and append-only upload sessions that become blobs when committed. It knows nothing of
//! repositories or digests' meaning: the registry verifies digests before it commits, and the
//! metadata store decides which repository may see which blob.

use std::io;
use std::pin::Pin;

use async_trait::async_trait;
use berth_oci::{ByteRange, Digest};
use bytes::Bytes;
use futures_util::Stream;

mod fs;
mod s3;
pub mod testing;

pub use fs::{FsBlobStore, write_all_vectored};
pub use s3::{MIN_PART, PART_SIZE, S3BlobStore, S3Config};

/// A stream of blob bytes, as read from or written to storage.
pub type ByteStream = Pin<Box<dyn Stream<Item = io::Result<Bytes>> + Send>>;

/// A listing, streamed: a store may hold millions of blobs, and none is read whole.
pub type Listing<T> = Pin<Box<dyn Stream<Item = Result<T>> + Send>>;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("not found")]
    NotFound,
    #[error("storage: {0}")]
    Io(#[from] io::Error),
    #[error("{0}")]
    Unsupported(String),
}

/// Where an upload session stands in storage after an append: what a store needs to continue or
/// commit it on any node (for an object store, its multipart upload and parts). Opaque to the
/// caller, who records it with the acknowledged size and hands it back.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UploadState(pub String);

pub type Result<T> = std::result::Result<T, StoreError>;

#[async_trait]
pub trait BlobStore: Send + Sync + 'static {
    /// The size of a committed blob, or `None` if it is not stored.
    async fn stat(&self, digest: &Digest) -> Result<Option<u64>>;
    /// Streams a committed blob, whole or the inclusive `range` of it.
    async fn read(&self, digest: &Digest, range: Option<ByteRange>) -> Result<ByteStream>;
    /// Removes a committed blob. Removing a missing blob is not an error.
    async fn delete(&self, digest: &Digest) -> Result<()>;
    /// Every committed blob's digest, in no particular order.
    fn list(&self) -> Listing<Digest>;

    /// Creates an empty upload session and returns its state. A store may write nothing yet.
    async fn upload_create(&self, id: &str) -> Result<UploadState>;
    /// How many of the `offset` bytes a session was acknowledged at (with `state`) it still
    /// holds: `offset` unless storage lost some; `None` if there is no such session.
    async fn upload_held(&self, id: &str, offset: u64, state: &UploadState) -> Result<Option<u64>>;
    /// Appends `data` to a session acknowledged at `offset` bytes with `state`, and returns the
    /// new size and state. Whatever was written past `offset` and never acknowledged (a chunk
    /// that failed or was refused, a crash before the caller recorded it) is discarded first.
    /// The old state stays valid until the caller records the new one: an append the caller
    /// does not acknowledge (another node moved the upload meanwhile) changes nothing it will
    /// see. On error, nothing acknowledged changed.
    async fn upload_append(
        &self,
        id: &str,
        offset: u64,
        state: &UploadState,
        data: ByteStream,
    ) -> Result<(u64, UploadState)>;
    /// Streams the first `offset` bytes of a session (to rebuild a running hash). A store that
    /// cannot read a session back before it is committed says so with `StoreError::Unsupported`.
    async fn upload_read(&self, id: &str, offset: u64, state: &UploadState) -> Result<ByteStream>;
    /// Makes the first `offset` bytes of a session durable and publishes them atomically as
    /// the blob `digest`, then drops the session (what appends the caller never acknowledged
    /// wrote may be left for GC, which `upload_list` shows it). The caller has verified the
    /// digest. If the blob exists already, it keeps its bytes (or gets the same bytes again)
    /// and the session is dropped. Committing again a session that a commit already published
    /// (its caller's record outlived it) succeeds.
    async fn upload_commit(&self, id: &str, offset: u64, state: &UploadState, digest: &Digest) -> Result<u64>;
    /// As `upload_commit`, but the session's bytes take the place of what is stored under
    /// `digest`, atomically (a reader gets the old bytes or the new, whole): `berth encrypt`
    /// swapping a blob's plaintext for its sealed bytes. The caller holds the blob's commit lock.
    async fn upload_replace(&self, id: &str, offset: u64, state: &UploadState, digest: &Digest) -> Result<u64>;
    /// Drops a session and its bytes, with its last recorded state if there is one. Dropping a
    /// missing session is not an error.
    async fn upload_delete(&self, id: &str, state: Option<&UploadState>) -> Result<()>;
    /// Every session that holds bytes in storage, with its age in seconds since last written,
    /// in no particular order.
    fn upload_list(&self) -> Listing<(String, u64)>;

    /// Whether the storage answers (for readiness checks and a node's start).
    async fn check(&self) -> Result<()> {
        Ok(())
    }

    /// Whether the store encrypts what it holds itself (an S3 bucket written with SSE-S3):
    /// then the registry leaves `AES256` to it and seals only what a KMS key protects.
    fn encrypts_at_rest(&self) -> bool {
        false
    }

    /// A URL from which a client may read the blob directly until `expires_at` (Unix seconds),
    /// if this store can hand one out (an object store's presigned GET); `None` if it cannot,
    /// and the registry serves the bytes itself. An optional capability: no store fakes it.
    async fn presigned_read_url(&self, digest: &Digest, expires_at: i64) -> Result<Option<String>> {
        let _ = (digest, expires_at);
        Ok(None)
    }
}

/// A listing that walks in a task of its own and hands items over as they are found.
pub fn listing<T, F, Fut>(walk: F) -> Listing<T>
where
    T: Send + 'static,
    F: FnOnce(tokio::sync::mpsc::Sender<Result<T>>) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let (tx, rx) = tokio::sync::mpsc::channel(256);
    tokio::spawn(walk(tx));
    Box::pin(futures_util::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|item| (item, rx)) }))
}
