//! One blob on its way from the upstream: its bytes written to a spool file as they arrive,
//! the latest of them also kept in memory, and any number of readers (the clients pulling the
//! blob meanwhile, and the upload that verifies and stores it) following the fetch.
//!
//! A reader that keeps pace takes the bytes from memory (shared, not copied); one that falls
//! behind the in-memory window reads the spool file, so a slow client never holds bytes in
//! memory and the window bounds what a fetch keeps there (`WINDOW`), however large the blob.
//!
//! The spool file holds the bytes under a key made for the fetch and never stored
//! (AES-256-CTR, the counter the byte offset / 16, so a reader opens any range it reads): the
//! plaintext of a blob being fetched never reaches the disk. Its integrity is not the
//! spool's to prove: the upload hashes what it reads to the blob's digest, clients too.

use std::collections::VecDeque;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use tokio::sync::watch;

use crate::RegistryError;

/// Bytes gathered from the upstream before they are written to the spool in one `writev`.
const SPOOL_BATCH: usize = 256 * 1024;

/// The latest bytes of a fetch kept in memory for readers that keep pace.
const WINDOW: usize = 4 * 1024 * 1024;

/// The most a reader of the spool file reads at once.
const FILE_READ: usize = 1024 * 1024;

#[derive(Debug, Clone)]
pub(super) enum Progress {
    /// Waiting for the upstream's answer.
    Asking,
    /// Bytes arriving: `written` of `size` (when the upstream said) are in the spool file.
    Receiving {
        size: Option<u64>,
        written: u64,
    },
    /// All `size` bytes are in the spool file; the upload is verifying and storing them.
    Received {
        size: u64,
    },
    /// Verified and stored in the repository.
    Stored {
        size: u64,
    },
    Failed(RegistryError),
}

/// The latest chunks written, each with the offset it starts at.
#[derive(Default)]
struct Window {
    chunks: VecDeque<(u64, Bytes)>,
    bytes: usize,
}

/// The throwaway key a fetch's spool file is written under.
struct SpoolKey {
    key: aws_lc_rs::cipher::EncryptingKey,
    nonce: [u8; 8],
}

impl SpoolKey {
    fn new() -> Self {
        use aws_lc_rs::cipher::{AES_256, EncryptingKey, UnboundCipherKey};
        let mut key = [0u8; 32];
        let mut nonce = [0u8; 8];
        aws_lc_rs::rand::fill(&mut key).expect("the system's random source");
        aws_lc_rs::rand::fill(&mut nonce).expect("the system's random source");
        let unbound = UnboundCipherKey::new(&AES_256, &key).expect("a 256-bit key");
        SpoolKey { key: EncryptingKey::ctr(unbound).expect("AES-256-CTR"), nonce }
    }

    /// XORs `buf`, which lies at `offset` in the spool, with the key stream there: it seals
    /// plaintext and opens what it sealed alike.
    fn apply(&self, offset: u64, buf: &mut [u8]) {
        use aws_lc_rs::cipher::EncryptionContext;
        use aws_lc_rs::iv::FixedLength;
        let mut iv = [0u8; 16];
        iv[..8].copy_from_slice(&self.nonce);
        iv[8..].copy_from_slice(&(offset / 16).to_be_bytes());
        let skip = (offset % 16) as usize;
        let context = EncryptionContext::Iv128(FixedLength::from(iv));
        if skip == 0 {
            self.key.less_safe_encrypt(buf, context).expect("CTR takes any length");
            return;
        }
        // Mid-block: the block's first bytes run through the key stream too, then are dropped.
        let mut padded = vec![0u8; skip + buf.len()];
        padded[skip..].copy_from_slice(buf);
        self.key.less_safe_encrypt(&mut padded, context).expect("CTR takes any length");
        buf.copy_from_slice(&padded[skip..]);
    }
}

/// One blob being fetched, and how far it has come.
pub(super) struct BlobFetch {
    pub(super) spool: PathBuf,
    pub(super) progress: watch::Sender<Progress>,
    recent: Mutex<Window>,
    key: SpoolKey,
}

impl BlobFetch {
    pub(super) fn new(spool: PathBuf) -> Arc<Self> {
        Arc::new(BlobFetch {
            spool,
            progress: watch::Sender::new(Progress::Asking),
            recent: Mutex::default(),
            key: SpoolKey::new(),
        })
    }

    /// Makes `chunks`, which start at `offset` and are in the spool file now, readable from
    /// memory, forgetting the oldest beyond the window.
    fn publish(&self, mut offset: u64, chunks: Vec<Bytes>) {
        let mut w = self.recent.lock().expect("fetch window");
        for c in chunks {
            let len = c.len();
            w.chunks.push_back((offset, c));
            w.bytes += len;
            offset += len as u64;
        }
        while w.bytes > WINDOW && w.chunks.len() > 1 {
            let (_, old) = w.chunks.pop_front().expect("more than one chunk");
            w.bytes -= old.len();
        }
    }

    /// The bytes from `offset` up to at most `end`, if memory still holds them.
    fn in_memory(&self, offset: u64, end: u64) -> Option<Bytes> {
        let w = self.recent.lock().expect("fetch window");
        if w.chunks.front().is_none_or(|(first, _)| offset < *first) {
            return None;
        }
        let i = w.chunks.partition_point(|(at, _)| *at <= offset) - 1;
        let (at, chunk) = &w.chunks[i];
        let from = (offset - at) as usize;
        if from >= chunk.len() {
            return None;
        }
        let to = chunk.len().min(from.saturating_add((end - offset).min(usize::MAX as u64) as usize));
        Some(chunk.slice(from..to))
    }
}

/// A batch being written to the spool file: the file and the batch come back when it is done.
type SpoolWrite = tokio::task::JoinHandle<std::io::Result<(std::fs::File, Vec<Bytes>)>>;

/// Writes a fetch's bytes to its spool file, one batch on the blocking pool while the next is
/// received, and publishes each batch once it is written.
pub(super) struct SpoolWriter {
    fetch: Arc<BlobFetch>,
    size: Option<u64>,
    idle: Option<std::fs::File>,
    in_flight: Option<SpoolWrite>,
    batch: Vec<Bytes>,
    batch_len: usize,
    /// Bytes written and published; the batch in flight starts here.
    written: u64,
    in_flight_len: u64,
}

impl SpoolWriter {
    /// Creates the spool file of `fetch`, whose upstream announced `size` (if it did).
    pub(super) async fn create(fetch: Arc<BlobFetch>, size: Option<u64>) -> std::io::Result<Self> {
        let path = fetch.spool.clone();
        let file = tokio::task::spawn_blocking(move || std::fs::File::create(path)).await.map_err(join_error)??;
        fetch.progress.send_replace(Progress::Receiving { size, written: 0 });
        Ok(SpoolWriter {
            fetch,
            size,
            idle: Some(file),
            in_flight: None,
            batch: Vec::new(),
            batch_len: 0,
            written: 0,
            in_flight_len: 0,
        })
    }

    /// Takes a chunk, to be written with the next batch.
    pub(super) async fn push(&mut self, chunk: Bytes) -> std::io::Result<()> {
        self.batch_len += chunk.len();
        self.batch.push(chunk);
        if self.batch_len >= SPOOL_BATCH {
            self.settle().await?;
            self.write_batch();
        }
        Ok(())
    }

    /// Writes what is left; returns the size of the whole spool file.
    pub(super) async fn finish(mut self) -> std::io::Result<u64> {
        self.settle().await?;
        if !self.batch.is_empty() {
            self.write_batch();
            self.settle().await?;
        }
        Ok(self.written)
    }

    /// Starts writing the gathered batch, sealed under the fetch's key; call with nothing in
    /// flight. (The chunks themselves stay as they are, for readers in memory.)
    fn write_batch(&mut self) {
        let mut file = self.idle.take().expect("the spool file is idle when nothing is in flight");
        let chunks = std::mem::take(&mut self.batch);
        self.in_flight_len = std::mem::take(&mut self.batch_len) as u64;
        let (fetch, mut at) = (self.fetch.clone(), self.written);
        self.in_flight = Some(tokio::task::spawn_blocking(move || {
            let sealed: Vec<Bytes> = chunks
                .iter()
                .map(|c| {
                    let mut buf = c.to_vec();
                    fetch.key.apply(at, &mut buf);
                    at += buf.len() as u64;
                    Bytes::from(buf)
                })
                .collect();
            berth_store::write_all_vectored(&mut file, &sealed).map(|_| (file, chunks))
        }));
    }

    /// Waits for the batch in flight, if any, and publishes it.
    async fn settle(&mut self) -> std::io::Result<()> {
        let Some(write) = self.in_flight.take() else { return Ok(()) };
        let (file, chunks) = write.await.map_err(join_error)??;
        self.idle = Some(file);
        let len = std::mem::take(&mut self.in_flight_len);
        self.fetch.publish(self.written, chunks);
        self.written += len;
        self.fetch.progress.send_replace(Progress::Receiving { size: self.size, written: self.written });
        Ok(())
    }
}

fn join_error(e: tokio::task::JoinError) -> std::io::Error {
    std::io::Error::other(e)
}

/// The fetch's outcome, once it has one.
pub(super) async fn wait_stored(fetch: &BlobFetch) -> Result<u64, RegistryError> {
    let mut progress = fetch.progress.subscribe();
    loop {
        match &*progress.borrow_and_update() {
            Progress::Stored { size } => return Ok(*size),
            Progress::Failed(e) => return Err(e.clone()),
            _ => {}
        }
        if progress.changed().await.is_err() {
            return Err(RegistryError::Internal("the blob fetch ended without an outcome".into()));
        }
    }
}

/// The fetch's bytes as they are written, up to `size` (or, unknown, up to where the fetch
/// says they end): from memory while the reader keeps pace, else from `file` (the spool,
/// opened before its fetch could remove it); an error if the fetch fails (a client sees its
/// download break off and retries; the upload is not completed).
pub(super) fn follow(fetch: Arc<BlobFetch>, file: std::fs::File, size: Option<u64>) -> berth_store::ByteStream {
    struct Reader {
        fetch: Arc<BlobFetch>,
        progress: watch::Receiver<Progress>,
        file: Arc<std::fs::File>,
        offset: u64,
        size: Option<u64>,
    }
    let progress = fetch.progress.subscribe();
    let state = Reader { fetch, progress, file: Arc::new(file), offset: 0, size };
    Box::pin(futures_util::stream::unfold(Some(state), |state| async move {
        let mut r = state?;
        loop {
            let (available, end) = match &*r.progress.borrow_and_update() {
                Progress::Asking => (0, r.size),
                Progress::Receiving { written, .. } => (*written, r.size),
                Progress::Received { size } | Progress::Stored { size } => (*size, Some(*size)),
                Progress::Failed(e) => {
                    let e = std::io::Error::other(format!("the upstream fetch failed: {e}"));
                    return Some((Err(e), None));
                }
            };
            if end.is_some_and(|end| r.offset >= end) {
                return None;
            }
            if r.offset < available {
                let until = end.map_or(available, |end| end.min(available));
                if let Some(chunk) = r.fetch.in_memory(r.offset, until) {
                    r.offset += chunk.len() as u64;
                    return Some((Ok(chunk), Some(r)));
                }
                let (file, at, fetch) = (r.file.clone(), r.offset, r.fetch.clone());
                let want = (until - at).min(FILE_READ as u64) as usize;
                let read = tokio::task::spawn_blocking(move || {
                    let mut buf = vec![0u8; want];
                    file.read_exact_at(&mut buf, at)?;
                    fetch.key.apply(at, &mut buf);
                    Ok(Bytes::from(buf))
                })
                .await
                .unwrap_or_else(|e| Err(join_error(e)));
                return match read {
                    Ok(chunk) => {
                        r.offset += chunk.len() as u64;
                        Some((Ok(chunk), Some(r)))
                    }
                    Err(e) => Some((Err(e), None)),
                };
            }
            if r.progress.changed().await.is_err() {
                return Some((Err(std::io::Error::other("the blob fetch ended without an outcome")), None));
            }
        }
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fetch_with(chunks: &[&[u8]]) -> Arc<BlobFetch> {
        let fetch = BlobFetch::new(PathBuf::from("/nonexistent"));
        let mut at = 0;
        for c in chunks {
            fetch.publish(at, vec![Bytes::copy_from_slice(c)]);
            at += c.len() as u64;
        }
        fetch
    }

    #[test]
    fn memory_serves_from_any_offset_it_holds() {
        let fetch = fetch_with(&[b"abc", b"defg", b"h"]);
        assert_eq!(fetch.in_memory(0, 8).as_deref(), Some(&b"abc"[..]));
        assert_eq!(fetch.in_memory(1, 8).as_deref(), Some(&b"bc"[..]));
        assert_eq!(fetch.in_memory(3, 8).as_deref(), Some(&b"defg"[..]));
        assert_eq!(fetch.in_memory(5, 6).as_deref(), Some(&b"f"[..]));
        assert_eq!(fetch.in_memory(7, 8).as_deref(), Some(&b"h"[..]));
        assert_eq!(fetch.in_memory(8, 9), None);
    }

    #[test]
    fn the_window_forgets_the_oldest_bytes_beyond_its_size() {
        let big = vec![7u8; WINDOW / 2 + 1];
        let fetch = fetch_with(&[b"first", &big, &big, b"last"]);
        // The first chunk and the first big one are gone: readers there read the file.
        assert_eq!(fetch.in_memory(0, u64::MAX), None);
        assert_eq!(fetch.in_memory(5, u64::MAX), None);
        let second = 5 + big.len() as u64;
        assert_eq!(fetch.in_memory(second, u64::MAX).map(|b| b.len()), Some(big.len()));
        assert_eq!(fetch.in_memory(second + big.len() as u64, u64::MAX).as_deref(), Some(&b"last"[..]));
    }

    #[tokio::test]
    async fn a_reader_behind_the_window_reads_the_spool_file() {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let fetch = BlobFetch::new(dir.path().join("spool"));
        let mut writer = SpoolWriter::create(fetch.clone(), None).await.expect("a spool");
        let data: Vec<u8> = (0..(WINDOW * 3) as u32).map(|i| (i % 251) as u8).collect();
        // Pieces that start mid-block of the spool's key stream.
        for piece in data.chunks(64 * 1024 + 7) {
            writer.push(Bytes::copy_from_slice(piece)).await.expect("written");
        }
        let size = writer.finish().await.expect("finished");
        assert_eq!(size, data.len() as u64);
        let on_disk = std::fs::read(&fetch.spool).expect("the spool");
        assert_eq!(on_disk.len(), data.len());
        assert!(on_disk.chunks(4096).zip(data.chunks(4096)).all(|(d, p)| d != p), "the spool holds no plaintext");
        fetch.progress.send_replace(Progress::Received { size });
        // A reader that starts now begins outside the window: the file, then memory.
        let file = std::fs::File::open(&fetch.spool).expect("the spool");
        let mut body = follow(fetch.clone(), file, Some(size));
        let mut read = Vec::new();
        while let Some(chunk) = futures_util::StreamExt::next(&mut body).await {
            read.extend_from_slice(&chunk.expect("a chunk"));
        }
        assert!(read == data, "the reader got other bytes ({} of {})", read.len(), data.len());
    }

    #[tokio::test]
    async fn a_failed_fetch_breaks_its_readers_off() {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let fetch = BlobFetch::new(dir.path().join("spool"));
        let mut writer = SpoolWriter::create(fetch.clone(), Some(10)).await.expect("a spool");
        writer.push(Bytes::from_static(b"01234")).await.expect("taken");
        let file = std::fs::File::open(&fetch.spool).expect("the spool");
        let mut body = follow(fetch.clone(), file, Some(10));
        fetch.progress.send_replace(Progress::Failed(RegistryError::Internal("gone".into())));
        let next = futures_util::StreamExt::next(&mut body).await.expect("an item");
        assert!(next.is_err());
    }
}
