//! The secrets Berth keeps, sealed under the master keyring: the one place that seals and
//! opens them, re-seals them to another keyring version (a rotation, online and resumable: a
//! pass re-seals whatever is not on the target version, so stopping and starting again only
//! repeats work), and seals what a release before the keyring left in plain text (the upgrade).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use berth_keyring::{Identity, Keyring, KeyringError, sealed_version};
use berth_meta::{SealedKind, SecretStore};

use crate::RegistryError;

type Result<T> = std::result::Result<T, RegistryError>;

fn keyring_error(e: KeyringError) -> RegistryError {
    RegistryError::Internal(format!("master keyring: {e}"))
}

/// The master keyring in use, reloadable from its file (`SIGHUP`, or before a rotation).
pub struct MasterKeys {
    ring: RwLock<Arc<Keyring>>,
    file: Option<PathBuf>,
}

impl MasterKeys {
    /// The keyring read from `file`, which `reload` reads again.
    pub fn from_file(file: PathBuf) -> Result<Self> {
        let ring = berth_keyring::load(&file).map_err(keyring_error)?;
        Ok(MasterKeys { ring: RwLock::new(Arc::new(ring)), file: Some(file) })
    }

    /// A keyring held only in memory, for tests: what it seals is lost with it.
    pub fn in_memory(ring: Keyring) -> Self {
        MasterKeys { ring: RwLock::new(Arc::new(ring)), file: None }
    }

    pub fn keyring(&self) -> Arc<Keyring> {
        self.ring.read().expect("keyring lock").clone()
    }

    /// Reads the keyring file again; returns its versions. A file that does not parse, or that
    /// lost a version the current keyring holds, is refused and the current keyring is kept
    /// (values sealed under a dropped version would no longer open).
    pub fn reload(&self) -> Result<Vec<u32>> {
        let Some(file) = &self.file else { return Ok(self.keyring().versions()) };
        let ring = berth_keyring::load(file).map_err(keyring_error)?;
        let current = self.keyring();
        if let Some(lost) = current.versions().into_iter().find(|v| !ring.has_version(*v)) {
            // Dropping a version is only safe once nothing is sealed under it: a restart with
            // the smaller file does that after `rotate-master-key` reported it unused.
            return Err(RegistryError::Internal(format!(
                "{} no longer holds master key version {lost}: keeping the keyring in use (restart to drop a version)",
                file.display()
            )));
        }
        let versions = ring.versions();
        *self.ring.write().expect("keyring lock") = Arc::new(ring);
        Ok(versions)
    }

    pub fn seal(&self, kind: SealedKind, id: &str, plaintext: &[u8]) -> String {
        self.keyring().seal(Identity { kind: kind.as_str(), id }, plaintext)
    }

    /// Opens a stored value; one that is not sealed is refused (after the upgrade there is none).
    pub fn open(&self, kind: SealedKind, id: &str, stored: &[u8]) -> Result<Vec<u8>> {
        let text = std::str::from_utf8(stored).map_err(|_| keyring_error(KeyringError::NotSealed))?;
        self.keyring()
            .open(Identity { kind: kind.as_str(), id }, text)
            .map_err(|e| RegistryError::Internal(format!("the {} of {id} does not open: {e}", kind.as_str())))
    }
}

/// How many values a re-sealing pass reads at once, and how long it pauses between batches (a
/// rotation on a busy server can be slowed so that it never competes with requests).
#[derive(Debug, Clone, Copy)]
pub struct ResealPace {
    pub batch: usize,
    pub pause: Duration,
}

impl Default for ResealPace {
    fn default() -> Self {
        ResealPace { batch: 200, pause: Duration::ZERO }
    }
}

/// Where the stored secrets stand: how many are sealed under each version, how many are plain
/// (a data directory not yet upgraded), and which keyring versions seal nothing any more.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SecretsReport {
    pub by_version: BTreeMap<u32, u64>,
    pub unsealed: u64,
    /// Sealed under a version the keyring does not hold (they cannot be opened).
    pub unknown_version: u64,
    /// The rotation in progress, if any.
    pub rotation_target: Option<u32>,
    /// Keyring versions that seal nothing and are not the newest: safe to remove from the file.
    pub removable: Vec<u32>,
}

/// Re-seals every stored value that is not sealed under `target` (plain values included); one
/// pass, returning how many it changed. A value changed meanwhile is left for the next pass.
async fn reseal_pass(
    store: &dyn SecretStore,
    keys: &MasterKeys,
    target: u32,
    only_unsealed: bool,
    pace: ResealPace,
) -> Result<u64> {
    let mut changed = 0;
    for kind in SealedKind::ALL {
        let mut after = String::new();
        loop {
            let page = store.stored_secrets(kind, &after, pace.batch.max(1)).await?;
            let Some(last) = page.last() else { break };
            after = last.id.clone();
            for value in &page {
                let version = std::str::from_utf8(&value.stored).ok().and_then(sealed_version);
                if version == Some(target) || (only_unsealed && version.is_some()) {
                    continue;
                }
                let plain = match version {
                    None => value.stored.clone(),
                    Some(_) => keys.open(kind, &value.id, &value.stored)?,
                };
                let ring = keys.keyring();
                let sealed = ring
                    .seal_with(target, Identity { kind: kind.as_str(), id: &value.id }, &plain)
                    .map_err(keyring_error)?;
                if store.replace_stored_secret(kind, &value.id, &value.stored, sealed.as_bytes()).await? {
                    changed += 1;
                }
            }
            if !pace.pause.is_zero() {
                tokio::time::sleep(pace.pause).await;
            }
        }
    }
    Ok(changed)
}

/// Seals every value a release before the keyring stored in plain text, then erases the old
/// bytes from the store's files. Returns how many it sealed (0: nothing to do, nothing erased).
pub async fn seal_plaintext_secrets(store: &dyn SecretStore, keys: &MasterKeys) -> Result<u64> {
    let current = keys.keyring().current_version();
    let sealed = reseal_pass(store, keys, current, true, ResealPace::default()).await?;
    if sealed > 0 {
        store.erase_freed_space().await?;
    }
    Ok(sealed)
}

/// Re-seals every stored value to `target` until none is left on another version, then clears
/// the recorded rotation. Safe to run again after an interruption (it resumes where values
/// still need it) and alongside requests (each value is swapped in one compare-and-set).
pub async fn rotate(
    store: &dyn SecretStore,
    keys: &MasterKeys,
    target: u32,
    pace: ResealPace,
) -> Result<SecretsReport> {
    loop {
        reseal_pass(store, keys, target, false, pace).await?;
        let report = secrets_report(store, keys).await?;
        let elsewhere =
            report.unsealed + report.by_version.iter().filter(|(v, _)| **v != target).map(|(_, n)| n).sum::<u64>();
        if elsewhere == 0 {
            // The counts just taken stand; only the recorded target changes.
            let mut report = report;
            if report.rotation_target == Some(target) {
                store.set_rotation_target(None).await?;
                report.rotation_target = None;
            }
            return Ok(report);
        }
    }
}

/// Records `target` as the rotation in progress, after checking that the keyring holds it as
/// its newest version (new values are sealed with the newest: a rotation to an older one would
/// never finish).
pub async fn begin_rotation(store: &dyn SecretStore, keys: &MasterKeys, target: u32) -> Result<()> {
    let ring = keys.keyring();
    if !ring.has_version(target) {
        return Err(RegistryError::InvalidParameter(format!(
            "the master keyring holds no version {target} (it holds {:?}): add it to the keyring file of every node and reload (SIGHUP) first",
            ring.versions()
        )));
    }
    if ring.current_version() != target {
        return Err(RegistryError::InvalidParameter(format!(
            "version {target} is not the newest in the keyring ({}); new values are sealed with the newest, so rotate to it",
            ring.current_version()
        )));
    }
    store.set_rotation_target(Some(target)).await?;
    Ok(())
}

pub async fn secrets_report(store: &dyn SecretStore, keys: &MasterKeys) -> Result<SecretsReport> {
    let ring = keys.keyring();
    let mut report = SecretsReport { rotation_target: store.rotation_target().await?, ..Default::default() };
    for kind in SealedKind::ALL {
        let mut after = String::new();
        loop {
            let page = store.stored_secrets(kind, &after, 500).await?;
            let Some(last) = page.last() else { break };
            after = last.id.clone();
            for value in &page {
                match std::str::from_utf8(&value.stored).ok().and_then(sealed_version) {
                    None => report.unsealed += 1,
                    Some(v) if !ring.has_version(v) => report.unknown_version += 1,
                    Some(v) => *report.by_version.entry(v).or_default() += 1,
                }
            }
        }
    }
    report.removable = ring
        .versions()
        .into_iter()
        .filter(|v| *v != ring.current_version() && !report.by_version.contains_key(v))
        .collect();
    Ok(report)
}

impl crate::Registry {
    pub fn master_keys(&self) -> &Arc<MasterKeys> {
        &self.master_keys
    }

    /// See [`seal_plaintext_secrets`].
    pub async fn seal_plaintext_secrets(&self) -> Result<u64> {
        seal_plaintext_secrets(self.meta().as_ref(), &self.master_keys).await
    }

    /// See [`begin_rotation`].
    pub async fn begin_master_key_rotation(&self, target: u32) -> Result<()> {
        begin_rotation(self.meta().as_ref(), &self.master_keys, target).await
    }

    /// See [`rotate`].
    pub async fn rotate_master_key(&self, target: u32, pace: ResealPace) -> Result<SecretsReport> {
        rotate(self.meta().as_ref(), &self.master_keys, target, pace).await
    }

    /// The rotation a previous run recorded and did not finish, if any.
    pub async fn unfinished_master_key_rotation(&self) -> Result<Option<u32>> {
        Ok(self.meta().rotation_target().await?)
    }

    pub async fn secrets_report(&self) -> Result<SecretsReport> {
        secrets_report(self.meta().as_ref(), &self.master_keys).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use berth_meta::MetaStore;

    async fn store_with_plain_secrets() -> (tempfile::TempDir, Arc<dyn MetaStore>) {
        let dir = tempfile::tempdir().unwrap();
        let meta: Arc<dyn MetaStore> =
            Arc::new(berth_meta::SqliteMeta::open(&dir.path().join("meta.db")).await.unwrap());
        let ids: Vec<String> = (0..5).map(|i| format!("AKIAPLAIN{i:011}")).collect();
        let ids: Vec<&str> = ids.iter().map(String::as_str).collect();
        berth_meta::testing::root_with_keys(&meta, &ids, "plain-secret").await;
        meta.registry_secret("registry-token-hmac", &[7u8; 32]).await.unwrap();
        (dir, meta)
    }

    #[tokio::test]
    async fn plaintext_is_sealed_once_and_rotation_moves_everything_to_the_new_version() {
        let (_dir, meta) = store_with_plain_secrets().await;
        let keys = MasterKeys::in_memory(Keyring::generate());
        assert_eq!(secrets_report(meta.as_ref(), &keys).await.unwrap().unsealed, 6);
        assert_eq!(seal_plaintext_secrets(meta.as_ref(), &keys).await.unwrap(), 6);
        assert_eq!(seal_plaintext_secrets(meta.as_ref(), &keys).await.unwrap(), 0);
        let (key, _) = meta.access_key("AKIAPLAIN00000000002").await.unwrap().unwrap();
        assert_eq!(
            keys.open(SealedKind::AccessKeySecret, &key.access_key_id, key.sealed_secret.as_bytes()).unwrap(),
            b"plain-secret-AKIAPLAIN00000000002"
        );
        let token = meta.registry_secret("registry-token-hmac", b"").await.unwrap();
        assert_eq!(keys.open(SealedKind::RegistrySecret, "registry-token-hmac", &token).unwrap(), [7u8; 32]);

        let (two, v) = keys.keyring().with_new_version();
        let keys = MasterKeys::in_memory(two);
        assert!(begin_rotation(meta.as_ref(), &keys, 1).await.is_err(), "not the newest");
        assert!(begin_rotation(meta.as_ref(), &keys, 9).await.is_err(), "not held");
        begin_rotation(meta.as_ref(), &keys, v).await.unwrap();
        let report = rotate(meta.as_ref(), &keys, v, ResealPace { batch: 2, pause: Duration::ZERO }).await.unwrap();
        assert_eq!(report.by_version, BTreeMap::from([(2, 6)]));
        assert_eq!((report.rotation_target, report.removable), (None, vec![1]));
        let (key, _) = meta.access_key("AKIAPLAIN00000000004").await.unwrap().unwrap();
        assert!(key.sealed_secret.starts_with("sealed:v2:"));
        assert_eq!(
            keys.open(SealedKind::AccessKeySecret, &key.access_key_id, key.sealed_secret.as_bytes()).unwrap(),
            b"plain-secret-AKIAPLAIN00000000004"
        );
    }

    #[tokio::test]
    async fn a_value_moved_to_another_row_does_not_open() {
        let (_dir, meta) = store_with_plain_secrets().await;
        let keys = MasterKeys::in_memory(Keyring::generate());
        seal_plaintext_secrets(meta.as_ref(), &keys).await.unwrap();
        let (a, _) = meta.access_key("AKIAPLAIN00000000000").await.unwrap().unwrap();
        assert!(keys.open(SealedKind::AccessKeySecret, "AKIAPLAIN00000000001", a.sealed_secret.as_bytes()).is_err());
        assert!(keys.open(SealedKind::RegistrySecret, &a.access_key_id, a.sealed_secret.as_bytes()).is_err());
        assert!(keys.open(SealedKind::AccessKeySecret, &a.access_key_id, b"plain").is_err());
    }
}
