//! The filesystem blob store: one file per blob under `blobs/<alg>/<2 hex>/<hex>`, one
//! append-only file per upload session under `uploads/<id>`.
//!
//! Written with tokio's file API rather than object_store's `LocalFileSystem`, which neither
//! fsyncs nor appends: an acknowledged blob must survive power loss (the file and its directory
//! entry are fsync'd before `upload_commit` returns), and an OCI chunked upload appends.

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use async_trait::async_trait;
use berth_oci::{Algorithm, ByteRange, Digest};
use futures_util::StreamExt;
use tokio::fs::{self, File, OpenOptions};
use tokio::io::{AsyncReadExt, AsyncSeekExt, AsyncWriteExt, BufWriter};
use tokio_util::io::ReaderStream;

use crate::{BlobStore, ByteStream, Result, StoreError};

/// Read and write buffer size: large enough that per-call overhead of tokio's blocking file IO
/// vanishes next to the copy itself.
const IO_BUF: usize = 512 * 1024;

pub struct FsBlobStore {
    root: PathBuf,
}

impl FsBlobStore {
    pub async fn open(root: impl Into<PathBuf>) -> Result<Self> {
        let root = root.into();
        fs::create_dir_all(root.join("blobs")).await?;
        fs::create_dir_all(root.join("uploads")).await?;
        Ok(FsBlobStore { root })
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

async fn open_stream(path: &Path, range: Option<ByteRange>) -> Result<ByteStream> {
    let mut file = not_found(File::open(path).await)?;
    let (start, len) = match range {
        Some(r) => (r.start, r.len()),
        None => (0, u64::MAX),
    };
    if start > 0 {
        file.seek(std::io::SeekFrom::Start(start)).await?;
    }
    Ok(Box::pin(ReaderStream::with_capacity(file.take(len), IO_BUF)))
}

#[async_trait]
impl BlobStore for FsBlobStore {
    async fn stat(&self, digest: &Digest) -> Result<Option<u64>> {
        Ok(not_found_as_none(fs::metadata(self.blob_path(digest)).await)?.map(|m| m.len()))
    }

    async fn read(&self, digest: &Digest, range: Option<ByteRange>) -> Result<ByteStream> {
        open_stream(&self.blob_path(digest), range).await
    }

    async fn delete(&self, digest: &Digest) -> Result<()> {
        not_found_as_none(fs::remove_file(self.blob_path(digest)).await)?;
        Ok(())
    }

    async fn list(&self) -> Result<Vec<Digest>> {
        let mut out = Vec::new();
        for alg in [Algorithm::Sha256, Algorithm::Sha512] {
            let dir = self.root.join("blobs").join(alg.as_str());
            let Some(mut prefixes) = not_found_as_none(fs::read_dir(&dir).await)? else { continue };
            while let Some(prefix) = prefixes.next_entry().await? {
                let mut files = fs::read_dir(prefix.path()).await?;
                while let Some(f) = files.next_entry().await? {
                    if let Ok(d) = Digest::parse(&format!("{alg}:{}", f.file_name().to_string_lossy())) {
                        out.push(d);
                    }
                }
            }
        }
        out.sort();
        Ok(out)
    }

    async fn upload_create(&self, id: &str) -> Result<()> {
        OpenOptions::new().write(true).create_new(true).open(self.upload_path(id)?).await?;
        Ok(())
    }

    async fn upload_size(&self, id: &str) -> Result<Option<u64>> {
        Ok(not_found_as_none(fs::metadata(self.upload_path(id)?).await)?.map(|m| m.len()))
    }

    async fn upload_append(&self, id: &str, offset: u64, mut data: ByteStream) -> Result<u64> {
        let path = self.upload_path(id)?;
        let file = not_found(OpenOptions::new().append(true).open(&path).await)?;
        let size = file.metadata().await?.len();
        if size != offset {
            return Err(StoreError::Io(std::io::Error::other(format!(
                "upload {id} is at {size} bytes, not at {offset}"
            ))));
        }
        let mut w = BufWriter::with_capacity(IO_BUF, file);
        let mut written = size;
        let result: Result<()> = async {
            while let Some(chunk) = data.next().await {
                let chunk = chunk?;
                w.write_all(&chunk).await?;
                written += chunk.len() as u64;
            }
            Ok(())
        }
        .await;
        // Flush what was received even when the stream broke, so `upload_size` stays the truth.
        let flushed = w.flush().await;
        result?;
        flushed?;
        Ok(written)
    }

    async fn upload_read(&self, id: &str) -> Result<ByteStream> {
        open_stream(&self.upload_path(id)?, None).await
    }

    async fn upload_commit(&self, id: &str, digest: &Digest) -> Result<u64> {
        let src = self.upload_path(id)?;
        let file = not_found(File::open(&src).await)?;
        let size = file.metadata().await?.len();
        let dst = self.blob_path(digest);
        if fs::metadata(&dst).await.is_ok() {
            // Same digest, same bytes: the stored copy is already durable.
            fs::remove_file(&src).await?;
            return Ok(size);
        }
        file.sync_all().await?;
        drop(file);
        let parent = dst.parent().expect("blob path has a parent");
        fs::create_dir_all(parent).await?;
        fs::rename(&src, &dst).await?;
        sync_dir(parent).await?;
        Ok(size)
    }

    async fn upload_delete(&self, id: &str) -> Result<()> {
        not_found_as_none(fs::remove_file(self.upload_path(id)?).await)?;
        Ok(())
    }

    async fn upload_list(&self) -> Result<Vec<(String, u64)>> {
        let mut out = Vec::new();
        let mut dir = fs::read_dir(self.root.join("uploads")).await?;
        let now = SystemTime::now();
        while let Some(e) = dir.next_entry().await? {
            let age =
                e.metadata().await?.modified().ok().and_then(|m| now.duration_since(m).ok()).map_or(0, |d| d.as_secs());
            out.push((e.file_name().to_string_lossy().into_owned(), age));
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn passes_the_blob_store_suite() {
        let dir = tempfile::tempdir().unwrap();
        let store = FsBlobStore::open(dir.path()).await.unwrap();
        crate::testing::blob_store_suite(&store).await;
    }

    #[tokio::test]
    async fn rejects_path_tricks_in_upload_ids() {
        let dir = tempfile::tempdir().unwrap();
        let store = FsBlobStore::open(dir.path()).await.unwrap();
        for id in ["../x", "a/b", "", "."] {
            assert!(matches!(store.upload_size(id).await, Err(StoreError::NotFound)), "{id}");
        }
    }
}
