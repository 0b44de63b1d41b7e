//! rpm's package headers, as the SQLite rpm database (`/var/lib/rpm/rpmdb.sqlite`, table
//! `Packages`, column `blob`) stores them: the caller reads the blobs, this parses one.
//!
//! A stored header is `il` (u32, big-endian) index entries and `dl` data bytes: the counts,
//! then `il` entries of (tag, type, offset, count) as four big-endian u32s, then the data
//! store. Strings (type 6) are NUL-terminated at their offset; INT32 (type 4) values are
//! big-endian. Only the tags a scan needs are read.

use super::Package;

const TAG_NAME: u32 = 1000;
const TAG_VERSION: u32 = 1001;
const TAG_RELEASE: u32 = 1002;
const TAG_EPOCH: u32 = 1003;
const TAG_ARCH: u32 = 1022;

const TYPE_INT32: u32 = 4;
const TYPE_STRING: u32 = 6;
const TYPE_I18NSTRING: u32 = 9;

/// Largest header accepted (rpm's own limit is 256 MiB; real headers are kilobytes).
const MAX_HEADER: usize = 64 << 20;

fn be32(b: &[u8], at: usize) -> Option<u32> {
    b.get(at..at + 4).map(|s| u32::from_be_bytes([s[0], s[1], s[2], s[3]]))
}

/// Parses one header blob into a package of `ecosystem`; `None` when the blob is malformed or
/// lacks a name or version (rpm's `gpg-pubkey` pseudo-packages are skipped too).
pub fn parse_header(blob: &[u8], ecosystem: &str) -> Option<Package> {
    let il = be32(blob, 0)? as usize;
    let dl = be32(blob, 4)? as usize;
    let index_end = 8usize.checked_add(il.checked_mul(16)?)?;
    let data_end = index_end.checked_add(dl)?;
    if data_end > blob.len() || data_end > MAX_HEADER {
        return None;
    }
    let data = &blob[index_end..data_end];
    let mut name = None;
    let mut version = None;
    let mut release = None;
    let mut epoch = None;
    let mut arch = None;
    for i in 0..il {
        let e = 8 + i * 16;
        let (tag, kind, offset, count) =
            (be32(blob, e)?, be32(blob, e + 4)?, be32(blob, e + 8)? as usize, be32(blob, e + 12)?);
        let string = || -> Option<String> {
            if kind != TYPE_STRING && kind != TYPE_I18NSTRING {
                return None;
            }
            let rest = data.get(offset..)?;
            let end = rest.iter().position(|&b| b == 0)?;
            Some(String::from_utf8_lossy(&rest[..end]).into_owned())
        };
        match tag {
            TAG_NAME => name = string(),
            TAG_VERSION => version = string(),
            TAG_RELEASE => release = string(),
            TAG_ARCH => arch = string(),
            TAG_EPOCH if kind == TYPE_INT32 && count >= 1 => epoch = be32(data, offset),
            _ => {}
        }
    }
    let name = name.filter(|n| !n.is_empty() && n != "gpg-pubkey")?;
    let version = version.filter(|v| !v.is_empty())?;
    let full = match (&epoch, &release) {
        (Some(e), Some(r)) => format!("{e}:{version}-{r}"),
        (None, Some(r)) => format!("{version}-{r}"),
        (Some(e), None) => format!("{e}:{version}"),
        (None, None) => version,
    };
    // Matching stays on the binary name: Rocky and Alma records list binary packages.
    let mut package = Package::new(ecosystem, &name, &full);
    package.arch = arch;
    Some(package)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Builds a header blob the way rpm stores one, for tests.
    pub fn header(strings: &[(u32, &str)], epoch: Option<u32>) -> Vec<u8> {
        let mut index = Vec::new();
        let mut data = Vec::new();
        if let Some(e) = epoch {
            index.push((TAG_EPOCH, TYPE_INT32, data.len() as u32, 1u32));
            data.extend_from_slice(&e.to_be_bytes());
        }
        for (tag, s) in strings {
            index.push((*tag, TYPE_STRING, data.len() as u32, 1));
            data.extend_from_slice(s.as_bytes());
            data.push(0);
        }
        let mut blob = Vec::new();
        blob.extend_from_slice(&(index.len() as u32).to_be_bytes());
        blob.extend_from_slice(&(data.len() as u32).to_be_bytes());
        for (tag, kind, offset, count) in index {
            for v in [tag, kind, offset, count] {
                blob.extend_from_slice(&v.to_be_bytes());
            }
        }
        blob.extend_from_slice(&data);
        blob
    }

    #[test]
    fn reads_name_epoch_version_release() {
        let blob = header(
            &[(TAG_NAME, "openssl-libs"), (TAG_VERSION, "3.0.7"), (TAG_RELEASE, "24.el9"), (TAG_ARCH, "x86_64")],
            Some(1),
        );
        let p = parse_header(&blob, "Rocky Linux:9").unwrap();
        assert_eq!((p.name.as_str(), p.version.as_str()), ("openssl-libs", "1:3.0.7-24.el9"));
        assert_eq!(p.arch.as_deref(), Some("x86_64"));
        assert_eq!(p.ecosystem, "Rocky Linux:9");
        let p = parse_header(&header(&[(TAG_NAME, "bash"), (TAG_VERSION, "5.1.8"), (TAG_RELEASE, "6.el9")], None), "x")
            .unwrap();
        assert_eq!(p.version, "5.1.8-6.el9");
    }

    #[test]
    fn malformed_headers_are_skipped() {
        assert!(parse_header(&[], "x").is_none());
        assert!(parse_header(&[0, 0, 0, 1, 0, 0, 0, 0], "x").is_none());
        // Counts that overflow or point outside the blob.
        assert!(parse_header(&[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff], "x").is_none());
        let mut blob = header(&[(TAG_NAME, "bash"), (TAG_VERSION, "5")], None);
        blob.truncate(blob.len() - 2);
        assert!(parse_header(&blob, "x").is_none());
        // An offset past the data store.
        let mut blob = header(&[(TAG_NAME, "bash"), (TAG_VERSION, "5")], None);
        blob[8 + 16 + 8..8 + 16 + 12].copy_from_slice(&1000u32.to_be_bytes());
        assert!(parse_header(&blob, "x").is_none());
        assert!(parse_header(&header(&[(TAG_NAME, "gpg-pubkey"), (TAG_VERSION, "1")], None), "x").is_none());
    }
}
