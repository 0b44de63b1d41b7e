//! The registry services: push (uploads, mounts, manifests), pull, delete, listings,
//! referrers, repositories and their settings, images as the ECR API sees them, policies,
//! lifecycle, GC, scanning, fsck, identity and authorization. Every surface — OCI `/v2/`, the
//! ECR API, the IAM Query API, `berth admin` — calls these, so each rule lives in one place;
//! they refuse with one typed error (`RegistryError`) that each surface maps once. Storage is
//! reached only through the storage role traits, which stay private to this crate.

mod at_rest;
pub mod authz;
pub mod blob_cipher;
pub mod console;
pub mod encrypt;
mod error;
mod fsck;
mod gc;
pub mod iam;
pub mod iam_transfer;
pub mod identity;
pub mod images;
pub mod kms;
mod leases;
mod lifecycle;
pub mod public;
pub mod pull_through;
mod pull_times;
pub mod replication;
pub mod repositories;
pub mod scan;
pub mod secrets;
pub mod secrets_manager;
mod service;
pub mod settings;
pub mod signing;
pub mod transfer;

pub use error::{RegistryError, is_storage_full, storage_full};
pub use fsck::FsckReport;
pub use gc::{GcPolicy, GcReport};
pub use lifecycle::LifecycleRun;
pub use service::{BlobGet, BlobRead, ManifestPut, Page, Registry};

/// A registry on fresh stores in a temporary directory, for the services' own tests.
#[cfg(test)]
pub(crate) async fn test_registry() -> (tempfile::TempDir, Registry) {
    let dir = tempfile::tempdir().expect("temporary directory");
    let meta = std::sync::Arc::new(berth_meta::SqliteMeta::open(&dir.path().join("meta.db")).await.expect("meta"));
    let blobs = std::sync::Arc::new(berth_store::FsBlobStore::open(dir.path().join("blobs")).await.expect("blobs"));
    berth_meta::AccountStore::ensure_account(meta.as_ref(), "111111111111").await.expect("account");
    (dir, Registry::new(meta, blobs, "111111111111".into(), test_master_keys()))
}

/// A keyring held in memory, for the services' own tests.
#[cfg(test)]
pub(crate) fn test_master_keys() -> std::sync::Arc<secrets::MasterKeys> {
    std::sync::Arc::new(secrets::MasterKeys::in_memory(berth_keyring::Keyring::generate()))
}
