//! Reading an image's layers for a scan: each layer's blob is streamed from storage through
//! its decompressor (gzip, zstd, or none, told apart by magic bytes) into a tar reader, on a
//! blocking thread; only the files that list packages are kept (see `berth_vuln::image`), and
//! the rpm database is kept in memory too and opened there by SQLite (`sqlite3_deserialize`): a
//! layer's plaintext never reaches a disk, even while a scan runs.

use std::io::{self, BufReader, Read};

use crate::at_rest::AtRest;
use berth_oci::Digest;
use berth_vuln::image::{self, FileKind, ImageFiles, MAX_TEXT_FILE};
use berth_vuln::inventory::Package;
use futures_util::TryStreamExt;
use tokio_util::io::{StreamReader, SyncIoBridge};

/// A kept file's content.
#[derive(Debug)]
pub enum Content {
    Bytes(Vec<u8>),
    /// The rpm database (a SQLite file), in memory.
    Database(Vec<u8>),
}

/// Largest rpm database read (real ones are tens of MiB); it counts against `MAX_KEPT_BYTES`.
const MAX_DATABASE_FILE: u64 = 256 << 20;

const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];
const ZSTD_MAGIC: [u8; 4] = [0x28, 0xb5, 0x2f, 0xfd];

/// Largest GNU long name or PAX extension header read (real ones are bytes to kilobytes); the
/// tar crate would read any declared size into memory, so extension entries are read here.
const MAX_EXTENSION_HEADER: u64 = 1 << 20;

/// Most bytes of package lists one scan keeps in memory, over all layers (a real image keeps a
/// few MiB); past it the scan fails instead of exhausting memory.
pub const MAX_KEPT_BYTES: u64 = 256 << 20;

/// The decompressed stream of a layer, whatever its compression, told by its first bytes.
fn decompressed<'a>(mut raw: impl Read + 'a) -> io::Result<Box<dyn Read + 'a>> {
    let mut head = [0u8; 4];
    let mut got = 0;
    while got < head.len() {
        match raw.read(&mut head[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    let seen = head[..got].to_vec();
    let buffered = BufReader::with_capacity(256 << 10, io::Cursor::new(seen).chain(raw));
    Ok(if head[..got].starts_with(&GZIP_MAGIC) {
        Box::new(flate2::bufread::MultiGzDecoder::new(buffered))
    } else if head[..got].starts_with(&ZSTD_MAGIC) {
        Box::new(zstd::stream::read::Decoder::with_buffer(buffered)?)
    } else {
        Box::new(buffered)
    })
}

/// An entry's data, at most `cap` bytes (more is an error).
fn read_capped(entry: &mut impl Read, cap: u64, what: &str) -> io::Result<Vec<u8>> {
    let mut data = Vec::new();
    entry.take(cap + 1).read_to_end(&mut data)?;
    if data.len() as u64 > cap {
        return Err(io::Error::new(io::ErrorKind::InvalidData, format!("{what} larger than {cap} bytes")));
    }
    Ok(data)
}

/// The `path` of a PAX extended header's records (`<len> <key>=<value>\n`).
fn pax_path(data: &[u8]) -> Option<String> {
    let mut rest = data;
    while !rest.is_empty() {
        let space = rest.iter().position(|&b| b == b' ')?;
        let len: usize = std::str::from_utf8(&rest[..space]).ok()?.parse().ok()?;
        if len <= space || len > rest.len() {
            return None;
        }
        let record = &rest[space + 1..len];
        let record = record.strip_suffix(b"\n").unwrap_or(record);
        if let Some(value) = record.strip_prefix(b"path=") {
            return Some(String::from_utf8_lossy(value).into_owned());
        }
        rest = &rest[len..];
    }
    None
}

/// Applies one layer's tar stream (layer `index`, 0 = bottom) to `files`, taking what it keeps
/// out of `budget` (bytes of package lists this scan may still keep).
pub fn apply_layer(files: &mut ImageFiles<Content>, index: usize, raw: impl Read, budget: &mut u64) -> io::Result<()> {
    let mut archive = tar::Archive::new(decompressed(raw)?);
    // Raw entries: GNU long names and PAX headers come to us, read with a bound.
    let mut long_name: Option<String> = None;
    for entry in archive.entries()?.raw(true) {
        let mut entry = entry?;
        let kind_of_entry = entry.header().entry_type();
        if kind_of_entry.is_gnu_longname() {
            let name = read_capped(&mut entry, MAX_EXTENSION_HEADER, "GNU long name")?;
            long_name = Some(String::from_utf8_lossy(name.strip_suffix(&[0]).unwrap_or(&name)).into_owned());
            continue;
        }
        if kind_of_entry.is_pax_local_extensions() {
            let data = read_capped(&mut entry, MAX_EXTENSION_HEADER, "PAX header")?;
            if let Some(p) = pax_path(&data) {
                long_name = Some(p);
            }
            continue;
        }
        if kind_of_entry.is_gnu_longlink() || kind_of_entry.is_pax_global_extensions() {
            continue;
        }
        let raw_path = match long_name.take() {
            Some(p) => p,
            None => entry.path()?.to_string_lossy().into_owned(),
        };
        if files.apply_whiteout(index, &raw_path) {
            continue;
        }
        let path = image::normalize_path(&raw_path).to_string();
        let kind = if kind_of_entry.is_file() { image::classify(&path) } else { None };
        let Some(kind) = kind else {
            // Anything else at a kept file's path replaces it; and anything but a directory
            // replaces a directory, with what lower layers kept under it.
            files.replace_with_other(index, &path, kind_of_entry.is_dir());
            continue;
        };
        let size = entry.size();
        let limit = if kind == FileKind::RpmSqlite { MAX_DATABASE_FILE } else { MAX_TEXT_FILE };
        if size > limit {
            tracing::warn!(path, size, "package list too large to scan; skipped");
            files.replace_with_other(index, &path, false);
            continue;
        }
        if size > *budget {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("the image's package lists exceed {MAX_KEPT_BYTES} bytes"),
            ));
        }
        *budget -= size;
        let content = if kind == FileKind::RpmSqlite {
            Content::Database(read_capped(&mut entry, limit, "rpm database")?)
        } else {
            Content::Bytes(read_capped(&mut entry, limit, "package list")?)
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

/// Streams every layer (in order) of `repository` as it serves them (a sealed layer opened on
/// the way) and returns the kept files, the rpm database in memory. Blocks: call it on
/// a blocking thread, with a handle of the runtime the store lives on.
pub(crate) fn read_layers(
    handle: &tokio::runtime::Handle,
    at_rest: &AtRest,
    repository: &str,
    layers: &[Digest],
) -> io::Result<ImageFiles<Content>> {
    let mut files = ImageFiles::default();
    let mut budget = MAX_KEPT_BYTES;
    for (index, digest) in layers.iter().enumerate() {
        let stream = handle
            .block_on(at_rest.open_linked(repository, digest))
            .map_err(|e| io::Error::other(format!("layer {digest}: {e}")))?;
        let reader = SyncIoBridge::new_with_handle(StreamReader::new(stream.map_err(io::Error::other)), handle.clone());
        apply_layer(&mut files, index, reader, &mut budget)
            .map_err(|e| io::Error::new(e.kind(), format!("layer {digest}: {e}")))?;
    }
    Ok(files)
}

/// Reads the package headers of a spooled SQLite rpm database (table `Packages`, column
/// `blob`), opened read-only.
pub async fn rpm_packages(database: &[u8]) -> Result<Vec<Package>, String> {
    use futures_util::StreamExt;
    use sqlx::ConnectOptions;
    let mut conn = sqlx::sqlite::SqliteConnectOptions::new()
        .in_memory(true)
        .connect()
        .await
        .map_err(|e| format!("rpm database: {e}"))?;
    // SQLite opens a database in memory only in rollback-journal mode; rpm's is in WAL mode,
    // which the header's two format bytes say (2, 2): read as a rollback database it is the
    // same (its own WAL file, if any, is not part of the image's state that counts).
    let mut bytes = database.to_vec();
    if bytes.len() >= 20 && bytes[18] == 2 && bytes[19] == 2 {
        (bytes[18], bytes[19]) = (1, 1);
    }
    let buf = sqlx::sqlite::SqliteOwnedBuf::try_from(&bytes[..]).map_err(|e| format!("rpm database: {e}"))?;
    drop(bytes);
    conn.deserialize(None, buf, true).await.map_err(|e| format!("rpm database: {e}"))?;
    // The file comes from a pushed image: `Packages` must be a real table (not a view that
    // computes rows), read row by row within a byte budget.
    let is_table: Option<i64> =
        sqlx::query_scalar("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'Packages'")
            .fetch_optional(&mut conn)
            .await
            .map_err(|e| format!("rpm database: {e}"))?;
    if is_table.is_none() {
        return Err("rpm database: no Packages table".into());
    }
    let mut rows = sqlx::query_scalar::<_, Vec<u8>>("SELECT blob FROM Packages").fetch(&mut conn);
    let (mut packages, mut bytes) = (Vec::new(), 0u64);
    while let Some(blob) = rows.next().await {
        let blob = blob.map_err(|e| format!("rpm database: {e}"))?;
        bytes += blob.len() as u64;
        if bytes > MAX_KEPT_BYTES {
            return Err(format!("rpm database: headers larger than {MAX_KEPT_BYTES} bytes"));
        }
        packages.extend(berth_vuln::inventory::rpm::parse_header(&blob, ""));
    }
    Ok(packages)
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
        let mut budget = MAX_KEPT_BYTES;
        apply_layer(&mut files, 0, &gzip(&base)[..], &mut budget).unwrap();
        apply_layer(&mut files, 1, &zstd::encode_all(&second[..], 3).unwrap()[..], &mut budget).unwrap();
        apply_layer(&mut files, 2, &third[..], &mut budget).unwrap();
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
    async fn the_sqlite_rpm_database_is_read_in_memory() {
        use sqlx::ConnectOptions;
        // Made on disk in WAL mode, as rpm makes it; read from its bytes, as a layer holds them.
        let made = tempfile::NamedTempFile::new().unwrap();
        let mut conn = sqlx::sqlite::SqliteConnectOptions::new()
            .filename(made.path())
            .journal_mode(sqlx::sqlite::SqliteJournalMode::Wal)
            .connect()
            .await
            .unwrap();
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
        sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)").execute(&mut conn).await.unwrap();
        drop(conn);
        let database = std::fs::read(made.path()).unwrap();
        assert_eq!((database[18], database[19]), (2, 2), "a WAL-mode file");
        let packages = rpm_packages(&database).await.unwrap();
        let names: Vec<(&str, &str)> = packages.iter().map(|p| (p.name.as_str(), p.version.as_str())).collect();
        assert_eq!(names, vec![("openssl-libs", "3.0.7-24.el9")]);
        assert!(rpm_packages(b"not a database").await.is_err());
    }

    #[test]
    fn long_names_pax_paths_and_bounds() {
        // A PAX path and a GNU long name, as real tar writers make them.
        let long = format!("app/{}/Cargo.lock", "d".repeat(150));
        let mut builder = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_gnu();
        h.set_size(3);
        h.set_entry_type(tar::EntryType::Regular);
        builder.append_data(&mut h, &long, &b"v=1"[..]).unwrap();
        let pax = "29 path=lib/apk/db/installed\n";
        let mut ph = tar::Header::new_ustar();
        ph.set_size(pax.len() as u64);
        ph.set_entry_type(tar::EntryType::XHeader);
        ph.set_path("PaxHeaders/x").unwrap();
        ph.set_cksum();
        builder.append(&ph, pax.as_bytes()).unwrap();
        let mut fh = tar::Header::new_ustar();
        fh.set_size(2);
        fh.set_entry_type(tar::EntryType::Regular);
        fh.set_path("short-name").unwrap();
        fh.set_cksum();
        builder.append(&fh, &b"P:"[..]).unwrap();
        let layer = builder.into_inner().unwrap();
        let mut files = ImageFiles::default();
        let mut budget = MAX_KEPT_BYTES;
        apply_layer(&mut files, 0, &layer[..], &mut budget).unwrap();
        let kept: Vec<&str> = files.files().map(|(p, ..)| p).collect();
        assert_eq!(kept, vec![long.as_str(), "lib/apk/db/installed"]);
        assert_eq!(budget, MAX_KEPT_BYTES - 5);
        // Past the budget the layer is refused, whatever the files.
        let mut small = 2;
        assert!(apply_layer(&mut ImageFiles::default(), 0, &layer[..], &mut small).is_err());
        // A GNU long name that claims a gigabyte of (well compressing) zeros is refused, not read.
        let mut bomb = tar::Builder::new(Vec::new());
        let mut lh = tar::Header::new_gnu();
        lh.set_entry_type(tar::EntryType::GNULongName);
        lh.set_size(4 << 20);
        lh.set_path("././@LongLink").unwrap();
        lh.set_cksum();
        bomb.append(&lh, io::repeat(b'a').take(4 << 20)).unwrap();
        let bomb = gzip(&bomb.into_inner().unwrap());
        assert!(apply_layer(&mut ImageFiles::default(), 0, &bomb[..], &mut MAX_KEPT_BYTES.clone()).is_err());
    }

    #[test]
    fn pax_records() {
        assert_eq!(pax_path(b"29 path=lib/apk/db/installed\n").as_deref(), Some("lib/apk/db/installed"));
        assert_eq!(pax_path(b"20 mtime=1700000000\n11 path=ab\n").as_deref(), Some("ab"));
        assert_eq!(pax_path(b"999 path=x\n"), None);
        assert_eq!(pax_path(b"garbage"), None);
    }

    #[test]
    fn a_corrupt_layer_is_an_error_not_a_panic() {
        let mut files = ImageFiles::default();
        let mut bad = gzip(&tar_of(&[("etc/os-release", b"ID=debian\n")]));
        let n = bad.len();
        bad[n / 2] ^= 0xff;
        bad.truncate(n - 4);
        assert!(apply_layer(&mut files, 0, &bad[..], &mut MAX_KEPT_BYTES.clone()).is_err());
    }
}
