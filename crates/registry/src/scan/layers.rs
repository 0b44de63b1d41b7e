//! Reading an image's layers for a scan: each layer's blob is streamed from storage through
//! its decompressor (gzip, zstd, or none, told apart by magic bytes) into a tar reader, on a
//! blocking thread; only the files that list packages are kept (see `berth_vuln::image`), and
//! the rpm database, which SQLite must open as a file, is spooled to a private temp file.

use std::io::{self, BufRead, BufReader, Read};
use std::sync::Arc;

use berth_oci::Digest;
use berth_store::BlobStore;
use berth_vuln::image::{self, FileKind, ImageFiles, MAX_TEXT_FILE};
use berth_vuln::inventory::Package;
use futures_util::TryStreamExt;
use tokio_util::io::{StreamReader, SyncIoBridge};

/// A kept file's content.
#[derive(Debug)]
pub enum Content {
    Bytes(Vec<u8>),
    /// The rpm database, spooled.
    Spooled(tempfile::NamedTempFile),
}

/// Largest rpm database spooled (real ones are tens of MiB).
const MAX_SPOOLED_FILE: u64 = 1 << 30;

const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];
const ZSTD_MAGIC: [u8; 4] = [0x28, 0xb5, 0x2f, 0xfd];

/// The decompressed stream of a layer, whatever its compression.
fn decompressed<'a>(raw: impl Read + 'a) -> io::Result<Box<dyn Read + 'a>> {
    let mut buffered = BufReader::with_capacity(256 << 10, raw);
    let head = buffered.fill_buf()?;
    Ok(if head.starts_with(&GZIP_MAGIC) {
        Box::new(flate2::bufread::MultiGzDecoder::new(buffered))
    } else if head.starts_with(&ZSTD_MAGIC) {
        Box::new(zstd::stream::read::Decoder::with_buffer(buffered)?)
    } else {
        Box::new(buffered)
    })
}

/// Applies one layer's tar stream (layer `index`, 0 = bottom) to `files`.
pub fn apply_layer(files: &mut ImageFiles<Content>, index: usize, raw: impl Read) -> io::Result<()> {
    let mut archive = tar::Archive::new(decompressed(raw)?);
    for entry in archive.entries()? {
        let mut entry = entry?;
        let raw_path = entry.path()?.to_string_lossy().into_owned();
        if files.apply_whiteout(index, &raw_path) {
            continue;
        }
        let path = image::normalize_path(&raw_path).to_string();
        let kind = if entry.header().entry_type().is_file() { image::classify(&path) } else { None };
        let Some(kind) = kind else {
            // Directories, links and other files still replace a kept file at that path.
            files.replace_with_other(&path);
            continue;
        };
        let size = entry.size();
        let content = if kind == FileKind::RpmSqlite {
            if size > MAX_SPOOLED_FILE {
                tracing::warn!(path, size, "rpm database too large to scan; skipped");
                files.replace_with_other(&path);
                continue;
            }
            let mut spool = tempfile::NamedTempFile::new()?;
            io::copy(&mut entry, spool.as_file_mut())?;
            Content::Spooled(spool)
        } else {
            if size > MAX_TEXT_FILE {
                tracing::warn!(path, size, "package list too large to scan; skipped");
                files.replace_with_other(&path);
                continue;
            }
            let mut bytes = Vec::with_capacity(size as usize);
            entry.read_to_end(&mut bytes)?;
            Content::Bytes(bytes)
        };
        files.insert(index, &path, kind, content);
    }
    Ok(())
}

/// Runs `work` on a thread of its own under `SCHED_IDLE` and awaits its result: scans are
/// background work, so on a busy node the scheduler runs request handling first (an idle-class
/// thread weighs 3 against a normal thread's 1024) and the scan takes what CPU is left. Linux
/// threads carry their own policy. `work` may block, and may `block_on` the runtime.
pub async fn on_background_thread<T: Send + 'static>(work: impl FnOnce() -> T + Send + 'static) -> Result<T, String> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name("berth-scan".into())
        .spawn(move || {
            // SAFETY: a plain syscall on the calling thread (pid 0) with a valid parameter;
            // failure only means the scan runs at normal priority.
            unsafe {
                let param = libc::sched_param { sched_priority: 0 };
                libc::sched_setscheduler(0, libc::SCHED_IDLE, &param);
            }
            let _ = tx.send(work());
        })
        .map_err(|e| format!("scan thread: {e}"))?;
    rx.await.map_err(|_| "the scan thread panicked".to_string())
}

/// Streams every layer (in order) from storage and returns the kept files. Blocks: call it on
/// a blocking thread, with a handle of the runtime the store lives on.
pub fn read_layers(
    handle: &tokio::runtime::Handle,
    blobs: &Arc<dyn BlobStore>,
    layers: &[Digest],
) -> io::Result<ImageFiles<Content>> {
    let mut files = ImageFiles::default();
    for (index, digest) in layers.iter().enumerate() {
        let stream =
            handle.block_on(blobs.read(digest, None)).map_err(|e| io::Error::other(format!("layer {digest}: {e}")))?;
        let reader = SyncIoBridge::new_with_handle(StreamReader::new(stream.map_err(io::Error::other)), handle.clone());
        apply_layer(&mut files, index, reader).map_err(|e| io::Error::new(e.kind(), format!("layer {digest}: {e}")))?;
    }
    Ok(files)
}

/// Reads the package headers of a spooled SQLite rpm database (table `Packages`, column
/// `blob`), opened read-only.
pub async fn rpm_packages(path: &std::path::Path) -> Result<Vec<Package>, String> {
    use sqlx::ConnectOptions;
    let options = sqlx::sqlite::SqliteConnectOptions::new().filename(path).read_only(true).immutable(true);
    let mut conn = options.connect().await.map_err(|e| format!("rpm database: {e}"))?;
    let blobs: Vec<Vec<u8>> = sqlx::query_scalar("SELECT blob FROM Packages")
        .fetch_all(&mut conn)
        .await
        .map_err(|e| format!("rpm database: {e}"))?;
    Ok(blobs.iter().filter_map(|b| berth_vuln::inventory::rpm::parse_header(b, "")).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tar_of(entries: &[(&str, &[u8])]) -> Vec<u8> {
        let mut builder = tar::Builder::new(Vec::new());
        for (path, data) in entries {
            let mut header = tar::Header::new_gnu();
            header.set_size(data.len() as u64);
            header.set_mode(0o644);
            header.set_entry_type(tar::EntryType::Regular);
            builder.append_data(&mut header, path, *data).unwrap();
        }
        builder.into_inner().unwrap()
    }

    fn gzip(data: &[u8]) -> Vec<u8> {
        use std::io::Write;
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        enc.write_all(data).unwrap();
        enc.finish().unwrap()
    }

    #[test]
    fn layers_in_every_compression_stack_with_whiteouts() {
        let base = tar_of(&[
            ("etc/os-release", b"ID=alpine\nVERSION_ID=3.19.1\n"),
            ("lib/apk/db/installed", b"P:musl\nV:1.2.4-r2\n\n"),
            ("app/Cargo.lock", b"version = 3\n"),
            ("app/README", b"not kept"),
        ]);
        let second = tar_of(&[("app/.wh.Cargo.lock", b""), ("./srv/go.mod", b"module x\n")]);
        let third = tar_of(&[("srv/.wh..wh..opq", b"")]);
        let mut files = ImageFiles::default();
        apply_layer(&mut files, 0, &gzip(&base)[..]).unwrap();
        apply_layer(&mut files, 1, &zstd::encode_all(&second[..], 3).unwrap()[..]).unwrap();
        apply_layer(&mut files, 2, &third[..]).unwrap();
        let kept: Vec<(&str, usize)> = files.files().map(|(p, l, _, _)| (p, l)).collect();
        assert_eq!(kept, vec![("etc/os-release", 0), ("lib/apk/db/installed", 0)]);
    }

    /// An rpm header blob with string tags (name 1000, version 1001, release 1002).
    fn rpm_header(tags: &[(u32, &str)]) -> Vec<u8> {
        let (mut index, mut data) = (Vec::new(), Vec::new());
        for (tag, value) in tags {
            for v in [*tag, 6, data.len() as u32, 1] {
                index.extend_from_slice(&v.to_be_bytes());
            }
            data.extend_from_slice(value.as_bytes());
            data.push(0);
        }
        let mut blob = (tags.len() as u32).to_be_bytes().to_vec();
        blob.extend_from_slice(&(data.len() as u32).to_be_bytes());
        blob.extend(index);
        blob.extend(data);
        blob
    }

    #[tokio::test]
    async fn the_sqlite_rpm_database_is_read_from_a_spooled_file() {
        use sqlx::ConnectOptions;
        let file = tempfile::NamedTempFile::new().unwrap();
        let mut conn = sqlx::sqlite::SqliteConnectOptions::new().filename(file.path()).connect().await.unwrap();
        sqlx::query("CREATE TABLE Packages (hnum INTEGER PRIMARY KEY AUTOINCREMENT, blob BLOB NOT NULL)")
            .execute(&mut conn)
            .await
            .unwrap();
        for blob in [
            rpm_header(&[(1000, "openssl-libs"), (1001, "3.0.7"), (1002, "24.el9")]),
            rpm_header(&[(1000, "gpg-pubkey"), (1001, "1"), (1002, "1")]),
            b"garbage".to_vec(),
        ] {
            sqlx::query("INSERT INTO Packages (blob) VALUES ($1)").bind(blob).execute(&mut conn).await.unwrap();
        }
        drop(conn);
        let packages = rpm_packages(file.path()).await.unwrap();
        let names: Vec<(&str, &str)> = packages.iter().map(|p| (p.name.as_str(), p.version.as_str())).collect();
        assert_eq!(names, vec![("openssl-libs", "3.0.7-24.el9")]);
        assert!(rpm_packages(std::path::Path::new("/nonexistent/rpmdb.sqlite")).await.is_err());
    }

    #[test]
    fn a_corrupt_layer_is_an_error_not_a_panic() {
        let mut files = ImageFiles::default();
        let mut bad = gzip(&tar_of(&[("etc/os-release", b"ID=debian\n")]));
        let n = bad.len();
        bad[n / 2] ^= 0xff;
        bad.truncate(n - 4);
        assert!(apply_layer(&mut files, 0, &bad[..]).is_err());
    }
}
