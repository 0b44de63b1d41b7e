//! What the pull-through cache holds on this node between requests: the fills and blob fetches
//! in flight, manifests served before they are stored, each account's rules as last read, and
//! when each tag may next be checked. The registry owns one (`Registry::cache`); fill.rs acts
//! on it.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use berth_meta::{PullThroughRule, StoredManifest};
use berth_rules::pull_through::UpstreamUrl;
use tokio::sync::{OnceCell, watch};

use super::spool::BlobFetch;
use super::upstream::UpstreamCredential;
use crate::RegistryError;

/// Where a cache repository's content comes from.
pub(crate) struct CacheSource {
    /// The rule's account and prefix: the labels of its metrics.
    pub(super) account: String,
    pub(super) prefix: String,
    pub(super) url: UpstreamUrl,
    /// The repository's name upstream.
    pub(super) repository: String,
    pub(super) credential: Option<UpstreamCredential>,
    pub(super) ecr: bool,
}

/// A manifest served from memory until its image is stored.
pub(super) struct PendingManifest {
    pub(super) manifest: StoredManifest,
    /// The background completion's outcome, once it has one.
    pub(super) stored: watch::Sender<Option<Result<(), RegistryError>>>,
}

impl PendingManifest {
    pub(super) fn new(manifest: StoredManifest) -> Arc<Self> {
        Arc::new(PendingManifest { manifest, stored: watch::Sender::new(None) })
    }

    pub(super) async fn wait_stored(&self) -> Result<(), RegistryError> {
        let mut rx = self.stored.subscribe();
        loop {
            if let Some(outcome) = rx.borrow_and_update().clone() {
                return outcome;
            }
            if rx.changed().await.is_err() {
                return Err(RegistryError::Internal("the fill ended without an outcome".into()));
            }
        }
    }
}

pub(super) type FillResult = Result<Arc<PendingManifest>, RegistryError>;

/// An account's rules, and when they were read.
type RulesRead = (std::time::Instant, Arc<Vec<PullThroughRule>>);

/// (repository, reference or digest or tag): what the maps below are keyed by.
type RepositoryKey = (String, String);

/// What the cache has in flight on this node.
pub(crate) struct CacheState {
    /// This node, as the holder of blob fetch leases.
    pub(super) node_id: String,
    /// Manifests served before they are stored, by (repository, digest), and the tags that name
    /// them by (repository, tag).
    pub(super) pending: Mutex<HashMap<RepositoryKey, Arc<PendingManifest>>>,
    pub(super) pending_tags: Mutex<HashMap<RepositoryKey, String>>,
    /// One fill per (repository, reference): later pulls wait for the first one's answer.
    pub(super) fills: Mutex<HashMap<RepositoryKey, Arc<OnceCell<FillResult>>>>,
    /// One fetch per blob digest.
    pub(super) fetches: Mutex<HashMap<String, Arc<BlobFetch>>>,
    pub(super) spool_dir: Mutex<Option<PathBuf>>,
    /// Each account's rules, read at most every `RULES_CACHE`.
    pub(super) rules: Mutex<HashMap<String, RulesRead>>,
    /// When this node next asks whether a tag's check is due, per (repository, tag).
    pub(super) next_check: Mutex<HashMap<RepositoryKey, i64>>,
}

impl Default for CacheState {
    fn default() -> Self {
        CacheState {
            node_id: format!("pull-through-{}", uuid::Uuid::new_v4()),
            pending: Default::default(),
            pending_tags: Default::default(),
            fills: Default::default(),
            fetches: Default::default(),
            spool_dir: Default::default(),
            rules: Default::default(),
            next_check: Default::default(),
        }
    }
}

impl CacheState {
    pub(crate) fn set_spool_dir(&self, dir: PathBuf) {
        *self.spool_dir.lock().expect("spool dir") = Some(dir);
    }

    /// Forgets the rules read for `account` (this node changed them).
    pub(crate) fn rules_changed(&self, account: &str) {
        self.rules.lock().expect("rules cache").remove(account);
    }

    /// Whether this node should ask the store about the check of (repository, tag) now.
    pub(super) fn check_may_be_due(&self, repository: &str, tag: &str, now: i64) -> bool {
        let checks = self.next_check.lock().expect("next checks");
        checks.get(&(repository.to_string(), tag.to_string())).is_none_or(|at| now >= *at)
    }

    pub(super) fn next_check_at(&self, repository: &str, tag: &str, at: i64) {
        let mut checks = self.next_check.lock().expect("next checks");
        if checks.len() > 100_000 {
            checks.retain(|_, due| *due > at - 24 * 3600 * 1000);
        }
        checks.insert((repository.to_string(), tag.to_string()), at);
    }

    pub(super) fn spool_path(&self) -> PathBuf {
        let dir = self.spool_dir.lock().expect("spool dir").clone().unwrap_or_else(std::env::temp_dir);
        dir.join(format!("berth-fill-{}", uuid::Uuid::new_v4()))
    }

    pub(super) fn pending(&self, repository: &str, reference: &str) -> Option<Arc<PendingManifest>> {
        let digest = if reference.contains(':') {
            reference.to_string()
        } else {
            self.pending_tags.lock().expect("pending tags").get(&(repository.into(), reference.into()))?.clone()
        };
        self.pending.lock().expect("pending").get(&(repository.into(), digest)).cloned()
    }
}
