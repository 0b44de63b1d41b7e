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
pub mod testing;

pub use fs::FsBlobStore;

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
}

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

    /// Creates an empty upload session.
    async fn upload_create(&self, id: &str) -> Result<()>;
    /// Bytes received so far by a session, or `None` if there is no such session.
    async fn upload_size(&self, id: &str) -> Result<Option<u64>>;
    /// Appends `data` at the end of the session (which must be at `offset`) and returns the new
    /// size. On error, some of `data` may have been appended: `upload_size` tells how much.
    async fn upload_append(&self, id: &str, offset: u64, data: ByteStream) -> Result<u64>;
    /// Cuts a session back to its first `len` bytes (a chunk that was refused after it had
    /// been written: a chunked body that did not match its range).
    async fn upload_truncate(&self, id: &str, len: u64) -> Result<()>;
    /// Streams what a session holds so far (to rebuild a running hash).
    async fn upload_read(&self, id: &str) -> Result<ByteStream>;
    /// Makes a session's bytes durable and publishes them atomically as the blob `digest`.
    /// The caller has verified the digest. If the blob exists already, the session is dropped.
    async fn upload_commit(&self, id: &str, digest: &Digest) -> Result<u64>;
    /// Drops a session and its bytes. Dropping a missing session is not an error.
    async fn upload_delete(&self, id: &str) -> Result<()>;
    /// Every session id with its age in seconds since last written, in no particular order.
    fn upload_list(&self) -> Listing<(String, u64)>;

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
