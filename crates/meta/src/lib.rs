//! Registry metadata behind a narrow trait: repositories, which blobs each repository may
//! serve, manifests with their references, tags and upload sessions.
//!
//! Every method that changes more than one row does it in one transaction, so a reader sees a
//! push either whole or not at all.

use async_trait::async_trait;
use berth_oci::Digest;

mod sqlite;
pub mod testing;

pub use sqlite::SqliteMeta;

#[derive(Debug, thiserror::Error)]
pub enum MetaError {
    #[error("repository not found")]
    RepositoryNotFound,
    #[error("not found")]
    NotFound,
    /// A manifest references blobs or child manifests the repository does not hold.
    #[error("manifest references content the repository does not hold")]
    MissingReferences { blobs: Vec<Digest>, manifests: Vec<Digest> },
    #[error("metadata store: {0}")]
    Backend(String),
}

pub type Result<T> = std::result::Result<T, MetaError>;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Repository {
    pub id: i64,
    pub name: String,
    pub created_at: i64,
}

/// A manifest to store, with what it references.
#[derive(Debug, Clone)]
pub struct NewManifest {
    pub digest: Digest,
    pub media_type: String,
    pub artifact_type: Option<String>,
    pub subject: Option<Digest>,
    /// JSON text of the manifest's annotations, for the referrers API.
    pub annotations: Option<String>,
    pub content: Vec<u8>,
    pub blobs: Vec<Digest>,
    pub manifests: Vec<Digest>,
}

#[derive(Debug, Clone)]
pub struct StoredManifest {
    pub digest: Digest,
    pub media_type: String,
    pub content: Vec<u8>,
}

/// A manifest as listed by the referrers API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManifestSummary {
    pub digest: String,
    pub media_type: String,
    pub size: i64,
    pub artifact_type: Option<String>,
    pub annotations: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Upload {
    pub id: String,
    pub repository: String,
    pub algorithm: String,
    pub started_at: i64,
}

/// A manifest and the blobs and manifests it references, for fsck and GC.
#[derive(Debug, Clone)]
pub struct ManifestReferences {
    pub repository: String,
    pub digest: String,
    pub blobs: Vec<String>,
    pub manifests: Vec<String>,
}

#[async_trait]
pub trait MetaStore: Send + Sync + 'static {
    async fn repository(&self, name: &str) -> Result<Option<Repository>>;
    /// Returns the repository, creating it first if it does not exist.
    async fn ensure_repository(&self, name: &str) -> Result<Repository>;
    /// Repository names in order, after `last`, at most `limit`.
    async fn list_repositories(&self, last: Option<&str>, limit: u32) -> Result<Vec<String>>;

    /// Records a durable blob and links it into a repository (idempotent).
    async fn link_blob(&self, repository: &str, digest: &Digest, size: u64) -> Result<()>;
    /// Links a blob already linked in `from` into `to`; false if `from` does not hold it.
    async fn mount_blob(&self, from: &str, to: &str, digest: &Digest) -> Result<bool>;
    /// The size of a blob if `repository` may serve it.
    async fn linked_blob(&self, repository: &str, digest: &Digest) -> Result<Option<u64>>;
    /// Removes a blob's link from a repository; false if it was not linked.
    async fn unlink_blob(&self, repository: &str, digest: &Digest) -> Result<bool>;
    /// Every blob the registry has recorded, with its size.
    async fn all_blobs(&self) -> Result<Vec<(String, i64)>>;

    /// Stores a manifest (idempotent for identical content) and points `tags` at it, in one
    /// transaction that first checks every referenced blob and child manifest is present.
    async fn put_manifest(&self, repository: &str, manifest: &NewManifest, tags: &[String]) -> Result<()>;
    async fn manifest(&self, repository: &str, digest: &Digest) -> Result<Option<StoredManifest>>;
    async fn resolve_tag(&self, repository: &str, tag: &str) -> Result<Option<Digest>>;
    /// Deletes a manifest and the tags pointing at it; false if it was not there.
    async fn delete_manifest(&self, repository: &str, digest: &Digest) -> Result<bool>;
    /// Deletes a tag only; false if it was not there.
    async fn delete_tag(&self, repository: &str, tag: &str) -> Result<bool>;
    async fn list_tags(&self, repository: &str, last: Option<&str>, limit: u32) -> Result<Vec<String>>;
    /// Manifests whose subject is `digest`, optionally only those of one artifact type.
    async fn referrers(
        &self,
        repository: &str,
        subject: &Digest,
        artifact_type: Option<&str>,
    ) -> Result<Vec<ManifestSummary>>;
    async fn all_manifest_references(&self) -> Result<Vec<ManifestReferences>>;

    async fn create_upload(&self, repository: &str, id: &str, algorithm: &str) -> Result<()>;
    async fn upload(&self, id: &str) -> Result<Option<Upload>>;
    async fn delete_upload(&self, id: &str) -> Result<()>;

    async fn close(&self);
}

/// Milliseconds since the Unix epoch, the one time format the metadata store keeps.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}
