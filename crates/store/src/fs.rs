//! The filesystem blob store: one file per blob under `blobs/<alg>/<2 hex>/<hex>`, one
//! append-only file per upload session under `uploads/<id>`.
//!
//! Written with tokio's file API rather than object_store's `LocalFileSystem`, which neither
//! fsyncs nor appends: an acknowledged blob must survive power loss (the file and its directory
//! entry are fsync'd before `upload_commit` returns), and an OCI chunked upload appends.

use std::io::{IoSlice, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use async_trait::async_trait;
use berth_oci::{Algorithm, ByteRange, Digest};
use bytes::Bytes;
use futures_util::StreamExt;
use tokio::fs::{self, File, OpenOptions};

use crate::{BlobStore, ByteStream, Listing, Result, StoreError, UploadState, listing};

/// Bytes moved per blocking read or write call: large enough that the cost of handing work to
/// tokio's blocking pool vanishes next to the copy itself.
const IO_CHUNK: usize = 1024 * 1024;

pub struct FsBlobStore {
    root: PathBuf,
    /// Declared by the operator: the filesystem encrypts what it holds (see `encrypts_at_rest`).
    encrypted_at_rest: bool,
}

impl FsBlobStore {
    pub async fn open(root: impl Into<PathBuf>) -> Result<Self> {
        let root = root.into();
        fs::create_dir_all(root.join("blobs")).await?;
        fs::create_dir_all(root.join("uploads")).await?;
        Ok(FsBlobStore { root, encrypted_at_rest: false })
    }

    /// The store as one whose filesystem the operator encrypts at rest (dm-crypt, LUKS), or not.
    pub fn encrypted_at_rest(self, encrypted: bool) -> Self {
        FsBlobStore { encrypted_at_rest: encrypted, ..self }
    }

    /// Publishes a session's first `offset` bytes as `digest` (see `upload_commit`), in place
    /// of a stored copy when `replace` (a rename over it, atomic for readers).
    async fn publish(
        &self,
        id: &str,
        offset: u64,
        _state: &UploadState,
        digest: &Digest,
        replace: bool,
    ) -> Result<u64> {
        let src = self.upload_path(id)?;
        let file = match not_found(OpenOptions::new().write(true).open(&src).await) {
            Ok(file) => file,
            // Committed before, and its caller's record of the session outlived it: done.
            Err(StoreError::NotFound) => {
                return match fs::metadata(self.blob_path(digest)).await {
                    Ok(m) if m.len() == offset => Ok(offset),
                    _ => Err(StoreError::NotFound),
                };
            }
            Err(e) => return Err(e),
        };
        let size = file.metadata().await?.len();
        if size < offset {
            return Err(StoreError::Io(std::io::Error::other(format!("upload {id} holds {size} bytes, not {offset}"))));
        }
        let dst = self.blob_path(digest);
        if !replace && fs::metadata(&dst).await.is_ok() {
            // Same digest, same bytes: the stored copy is already durable.
            fs::remove_file(&src).await?;
            return Ok(offset);
        }
        if size > offset {
            file.set_len(offset).await?;
        }
        file.sync_all().await?;
        drop(file);
        let parent = dst.parent().expect("blob path has a parent");
        fs::create_dir_all(parent).await?;
        fs::rename(&src, &dst).await?;
        sync_dir(parent).await?;
        Ok(offset)
    }

    fn blob_path(&self, digest: &Digest) -> PathBuf {
        let hex = digest.hex();
        self.root.join("blobs").join(digest.algorithm().as_str()).join(&hex[..2]).join(hex)
    }

    fn upload_path(&self, id: &str) -> Result<PathBuf> {
        // Session ids come from URLs: only accept the characters we generate.
        if id.is_empty() || id.len() > 64 || !id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
            return Err(StoreError::NotFound);
        }
        Ok(self.root.join("uploads").join(id))
    }
}

fn not_found_as_none<T>(r: std::io::Result<T>) -> Result<Option<T>> {
    match r {
        Ok(v) => Ok(Some(v)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e.into()),
    }
}

fn not_found<T>(r: std::io::Result<T>) -> Result<T> {
    not_found_as_none(r)?.ok_or(StoreError::NotFound)
}

async fn sync_dir(dir: &Path) -> Result<()> {
    let d = File::open(dir).await?;
    d.sync_all().await?;
    Ok(())
}

/// Streams the bytes `start..end` of a file (or all of it) in `IO_CHUNK` reads, each a
/// positioned read on the blocking pool straight into the buffer that is sent: one copy from
/// the page cache.
async fn open_stream(path: &Path, span: Option<(u64, u64)>) -> Result<ByteStream> {
    let path = path.to_path_buf();
    let file = not_found(tokio::task::spawn_blocking(move || std::fs::File::open(path)).await.map_err(join_error)?)?;
    let (start, end) = match span {
        Some(span) => span,
        None => (0, file.metadata()?.len()),
    };
    let state = (Some(Arc::new(file)), start);
    Ok(Box::pin(futures_util::stream::unfold(state, move |(file, pos)| async move {
        let file = file?;
        if pos >= end {
            return None;
        }
        let want = (end - pos).min(IO_CHUNK as u64) as usize;
        let reader = file.clone();
        let read = tokio::task::spawn_blocking(move || -> std::io::Result<Bytes> {
            // Read into the buffer's spare capacity (exactly `want`: `with_capacity` gives
            // no more), so nothing is zeroed first only to be overwritten.
            let mut buf = Vec::with_capacity(want);
            while buf.len() < want {
                let at = pos + buf.len() as u64;
                let n = rustix::io::pread(&*reader, rustix::buffer::spare_capacity(&mut buf), at)?;
                if n == 0 {
                    return Err(std::io::Error::new(
                        std::io::ErrorKind::UnexpectedEof,
                        "blob is shorter than its size",
                    ));
                }
            }
            Ok(Bytes::from(buf))
        })
        .await
        .unwrap_or_else(|e| Err(std::io::Error::other(e)));
        match read {
            Ok(chunk) => Some((Ok(chunk), (Some(file), pos + want as u64))),
            Err(e) => Some((Err(e), (None, end))),
        }
    })))
}

fn join_error(e: tokio::task::JoinError) -> StoreError {
    StoreError::Io(std::io::Error::other(e))
}

/// Writes every byte of `chunks` with as few `writev` calls as the kernel allows.
pub fn write_all_vectored(file: &mut std::fs::File, chunks: &[Bytes]) -> std::io::Result<()> {
    let mut slices: Vec<IoSlice<'_>> = chunks.iter().map(|c| IoSlice::new(c)).collect();
    let mut slices = &mut slices[..];
    IoSlice::advance_slices(&mut slices, 0);
    while !slices.is_empty() {
        match file.write_vectored(slices) {
            Ok(0) => return Err(std::io::Error::new(std::io::ErrorKind::WriteZero, "write returned 0")),
            Ok(n) => IoSlice::advance_slices(&mut slices, n),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

#[async_trait]
impl BlobStore for FsBlobStore {
    async fn stat(&self, digest: &Digest) -> Result<Option<u64>> {
        Ok(not_found_as_none(fs::metadata(self.blob_path(digest)).await)?.map(|m| m.len()))
    }

    async fn read(&self, digest: &Digest, range: Option<ByteRange>) -> Result<ByteStream> {
        open_stream(&self.blob_path(digest), range.map(|r| (r.start, r.end + 1))).await
    }

    async fn delete(&self, digest: &Digest) -> Result<()> {
        not_found_as_none(fs::remove_file(self.blob_path(digest)).await)?;
        Ok(())
    }

    fn list(&self) -> Listing<Digest> {
        let root = self.root.join("blobs");
        listing(move |tx| async move {
            let walk = async {
                for alg in [Algorithm::Sha256, Algorithm::Sha512] {
                    let Some(mut prefixes) = not_found_as_none(fs::read_dir(root.join(alg.as_str())).await)? else {
                        continue;
                    };
                    while let Some(prefix) = prefixes.next_entry().await? {
                        let mut files = fs::read_dir(prefix.path()).await?;
                        while let Some(f) = files.next_entry().await? {
                            if let Ok(d) = Digest::parse(&format!("{alg}:{}", f.file_name().to_string_lossy()))
                                && tx.send(Ok(d)).await.is_err()
                            {
                                return Ok(());
                            }
                        }
                    }
                }
                Ok::<_, StoreError>(())
            };
            if let Err(e) = walk.await {
                let _ = tx.send(Err(e)).await;
            }
        })
    }

    async fn upload_create(&self, id: &str) -> Result<UploadState> {
        OpenOptions::new().write(true).create_new(true).open(self.upload_path(id)?).await?;
        Ok(UploadState::default())
    }

    async fn upload_held(&self, id: &str, offset: u64, _state: &UploadState) -> Result<Option<u64>> {
        Ok(not_found_as_none(fs::metadata(self.upload_path(id)?).await)?.map(|m| m.len().min(offset)))
    }

    async fn upload_append(
        &self,
        id: &str,
        offset: u64,
        _state: &UploadState,
        mut data: ByteStream,
    ) -> Result<(u64, UploadState)> {
        let path = self.upload_path(id)?;
        let file = tokio::task::spawn_blocking(move || -> std::io::Result<std::fs::File> {
            let file = std::fs::OpenOptions::new().append(true).open(path)?;
            let size = file.metadata()?.len();
            if size < offset {
                return Err(std::io::Error::other(format!("the upload holds {size} bytes, not {offset}")));
            }
            // Bytes past the acknowledged ones were never acknowledged: cut them off.
            if size > offset {
                file.set_len(offset)?;
            }
            Ok(file)
        })
        .await
        .map_err(join_error)?;
        let file = not_found(file)?;
        let size = offset;
        // Received chunks are gathered into batches of about IO_CHUNK and written with writev
        // on the blocking pool, one batch in flight while the next is received: no copy besides
        // the kernel's, and the socket keeps being read while the disk writes.
        type Pending = tokio::task::JoinHandle<std::io::Result<std::fs::File>>;
        let mut idle = Some(file);
        let mut in_flight: Option<Pending> = None;
        let mut batch: Vec<Bytes> = Vec::new();
        let mut batch_len = 0usize;
        let mut written = size;
        let mut failure: Option<std::io::Error> = None;
        loop {
            let next = data.next().await;
            let done = match next {
                Some(Ok(chunk)) => {
                    batch_len += chunk.len();
                    written += chunk.len() as u64;
                    batch.push(chunk);
                    false
                }
                Some(Err(e)) => {
                    failure = Some(e);
                    true
                }
                None => true,
            };
            if batch_len < IO_CHUNK && !done {
                continue;
            }
            let mut file = match in_flight.take() {
                Some(h) => h.await.map_err(join_error)??,
                None => idle.take().expect("the file is idle when nothing is in flight"),
            };
            let chunks = std::mem::take(&mut batch);
            batch_len = 0;
            if done {
                // Write what was received even when the stream broke, so `upload_size` stays the truth.
                tokio::task::spawn_blocking(move || write_all_vectored(&mut file, &chunks))
                    .await
                    .map_err(join_error)??;
                break;
            }
            in_flight = Some(tokio::task::spawn_blocking(move || write_all_vectored(&mut file, &chunks).map(|_| file)));
        }
        match failure {
            Some(e) => Err(e.into()),
            None => Ok((written, UploadState::default())),
        }
    }

    async fn upload_read(&self, id: &str, offset: u64, _state: &UploadState) -> Result<ByteStream> {
        open_stream(&self.upload_path(id)?, Some((0, offset))).await
    }

    async fn upload_commit(&self, id: &str, offset: u64, state: &UploadState, digest: &Digest) -> Result<u64> {
        self.publish(id, offset, state, digest, false).await
    }

    async fn upload_replace(&self, id: &str, offset: u64, state: &UploadState, digest: &Digest) -> Result<u64> {
        self.publish(id, offset, state, digest, true).await
    }

    fn encrypts_at_rest(&self) -> bool {
        self.encrypted_at_rest
    }

    async fn upload_delete(&self, id: &str, _state: Option<&UploadState>) -> Result<()> {
        not_found_as_none(fs::remove_file(self.upload_path(id)?).await)?;
        Ok(())
    }

    fn upload_list(&self) -> Listing<(String, u64)> {
        let dir = self.root.join("uploads");
        listing(move |tx| async move {
            let walk = async {
                let mut dir = fs::read_dir(dir).await?;
                let now = SystemTime::now();
                while let Some(e) = dir.next_entry().await? {
                    let modified = e.metadata().await?.modified().ok();
                    let age = modified.and_then(|m| now.duration_since(m).ok()).map_or(0, |d| d.as_secs());
                    if tx.send(Ok((e.file_name().to_string_lossy().into_owned(), age))).await.is_err() {
                        return Ok(());
                    }
                }
                Ok::<_, StoreError>(())
            };
            if let Err(e) = walk.await {
                let _ = tx.send(Err(e)).await;
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn fixture() -> (tempfile::TempDir, Arc<dyn BlobStore>) {
        let dir = tempfile::tempdir().unwrap();
        let store = FsBlobStore::open(dir.path()).await.unwrap();
        (dir, Arc::new(store))
    }

    async fn reopen(dir: &tempfile::TempDir) -> Arc<dyn BlobStore> {
        Arc::new(FsBlobStore::open(dir.path()).await.unwrap())
    }

    crate::blob_store_conformance!(fixture, reopen);

    #[tokio::test]
    async fn rejects_path_tricks_in_upload_ids() {
        let dir = tempfile::tempdir().unwrap();
        let store = FsBlobStore::open(dir.path()).await.unwrap();
        for id in ["../x", "a/b", "", "."] {
            let held = store.upload_held(id, 0, &UploadState::default()).await;
            assert!(matches!(held, Err(StoreError::NotFound)), "{id}");
        }
    }
}
