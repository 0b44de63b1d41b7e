//! The keyring file: read, created once (atomically, so two processes starting together end
//! up with the same key), and extended by one version for a rotation.

use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

use crate::{Keyring, KeyringError};

fn io(path: &Path, e: std::io::Error) -> KeyringError {
    KeyringError::Io(format!("{}: {e}", path.display()))
}

/// Reads the keyring at `path`.
pub fn load(path: &Path) -> Result<Keyring, KeyringError> {
    let text = std::fs::read_to_string(path).map_err(|e| io(path, e))?;
    Keyring::parse(&text).map_err(|e| match e {
        KeyringError::Malformed { line, reason } => {
            KeyringError::Malformed { line, reason: format!("{reason} (in {})", path.display()) }
        }
        other => other,
    })
}

/// Writes `ring` to a new 0600 file beside `path`, synced, to be linked or renamed into place.
fn write_temp(path: &Path, ring: &Keyring) -> Result<std::path::PathBuf, KeyringError> {
    let tmp = path.with_extension(format!("tmp-{}", std::process::id()));
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(|e| io(&tmp, e))?;
    f.write_all(ring.to_text().as_bytes()).and_then(|_| f.sync_all()).map_err(|e| io(&tmp, e))?;
    Ok(tmp)
}

fn sync_dir(path: &Path) {
    if let Some(dir) = path.parent().and_then(|d| std::fs::File::open(d).ok()) {
        let _ = dir.sync_all();
    }
}

/// Reads the keyring at `path`, first creating it with one new key if there is none. Creation
/// links a complete file into place, so a concurrent creator's file wins whole or not at all.
/// Returns the keyring and whether this call created it.
pub fn load_or_create(path: &Path) -> Result<(Keyring, bool), KeyringError> {
    if path.exists() {
        return Ok((load(path)?, false));
    }
    let tmp = write_temp(path, &Keyring::generate())?;
    let linked = std::fs::hard_link(&tmp, path);
    let _ = std::fs::remove_file(&tmp);
    match linked {
        Ok(()) => {
            sync_dir(path);
            Ok((load(path)?, true))
        }
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok((load(path)?, false)),
        Err(e) => Err(io(path, e)),
    }
}

/// Adds a new random version to the keyring file at `path` (temp file, fsync, rename); returns
/// the new keyring and its version. The file keeps mode 0600.
pub fn append_new_version(path: &Path) -> Result<(Keyring, u32), KeyringError> {
    let (ring, version) = load(path)?.with_new_version();
    let tmp = write_temp(path, &ring)?;
    std::fs::rename(&tmp, path).map_err(|e| io(path, e))?;
    let _ = std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600));
    sync_dir(path);
    Ok((ring, version))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn created_once_private_and_extended() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("master.key");
        let (ring, created) = load_or_create(&path).unwrap();
        assert!(created);
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        let (again, created) = load_or_create(&path).unwrap();
        assert!(!created);
        let id = crate::Identity { kind: "k", id: "i" };
        assert_eq!(again.open(id, &ring.seal(id, b"x")).unwrap(), b"x");
        let (extended, v) = append_new_version(&path).unwrap();
        assert_eq!(v, 2);
        assert_eq!(load(&path).unwrap().versions(), extended.versions());
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1, "no temp file left");
    }
}
