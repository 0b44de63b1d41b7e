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
    #[error("repository already exists")]
    RepositoryAlreadyExists,
    #[error("repository is not empty")]
    RepositoryNotEmpty,
    /// The tag exists, points at another manifest and may not move.
    #[error("tag {0} is immutable")]
    TagImmutable(String),
    #[error("already exists")]
    AlreadyExists,
    #[error("metadata store: {0}")]
    Backend(String),
    /// The manifest is listed by these indexes and stays.
    #[error("manifest is listed by {0:?}")]
    ReferencedByIndex(Vec<String>),
    /// The database could not write: its disk is full.
    #[error("metadata store: out of space: {0}")]
    StorageFull(String),
}

pub type Result<T> = std::result::Result<T, MetaError>;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Repository {
    pub id: i64,
    pub name: String,
    pub created_at: i64,
    pub settings: RepositorySettings,
}

/// What `CreateRepository` and the `Put…` calls configure on a repository.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RepositorySettings {
    /// `MUTABLE`, `IMMUTABLE`, `IMMUTABLE_WITH_EXCLUSION` or `MUTABLE_WITH_EXCLUSION`.
    pub tag_mutability: String,
    /// Wildcard filters of the `*_WITH_EXCLUSION` modes.
    pub tag_mutability_exclusions: Vec<String>,
    pub scan_on_push: bool,
    /// `AES256`, `KMS` or `KMS_DSSE`.
    pub encryption_type: String,
    pub kms_key: Option<String>,
    /// Berth's pull policy: pulls of images with scan findings at or above this severity
    /// (`CRITICAL` … `LOW`) are refused; `None` falls back to the configured default.
    pub pull_block_severity: Option<String>,
}

impl Default for RepositorySettings {
    fn default() -> Self {
        RepositorySettings {
            tag_mutability: "MUTABLE".into(),
            tag_mutability_exclusions: Vec::new(),
            scan_on_push: false,
            encryption_type: "AES256".into(),
            kms_key: None,
            pull_block_severity: None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// The account id for the root; a unique `AIDA…` id for users.
    pub id: String,
    pub account_id: String,
    /// `root` for the account root.
    pub name: String,
    pub kind: PrincipalKind,
    pub created_at: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PrincipalKind {
    Root,
    User,
}

impl PrincipalKind {
    pub fn as_str(self) -> &'static str {
        match self {
            PrincipalKind::Root => "root",
            PrincipalKind::User => "user",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessKey {
    pub access_key_id: String,
    pub principal_id: String,
    /// Never logged; only the SigV4 verifier reads it.
    pub secret: String,
    pub active: bool,
    pub created_at: i64,
}

/// An IAM group of users.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Group {
    /// A unique `AGPA…` id.
    pub id: String,
    pub account_id: String,
    pub name: String,
    pub created_at: i64,
}

/// A customer-managed IAM policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManagedPolicy {
    pub arn: String,
    /// A unique `ANPA…` id.
    pub id: String,
    pub account_id: String,
    pub name: String,
    pub path: String,
    pub document: String,
    pub created_at: i64,
    pub updated_at: i64,
}

/// Where an identity policy that applies to a principal comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IdentityPolicySource {
    /// An inline policy (of the user, or of one of its groups) with its document.
    Inline { owner: String, name: String, document: String },
    /// An attached managed policy: its ARN, and its document when stored here (customer-managed;
    /// AWS-managed policies are built into Berth and resolved by ARN).
    Attached { owner: String, arn: String, document: Option<String> },
}

/// A repository creation template: its prefix and the template as the API received it (JSON).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreationTemplate {
    pub prefix: String,
    pub body: String,
    pub created_at: i64,
    pub updated_at: i64,
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
    /// In the archive storage class: not to be served.
    pub archived: bool,
    /// What the pull policy needs, read with the manifest so a pull costs no extra query.
    pub pull_gate: PullGate,
}

/// The repository's pull policy and the image's scan outcome.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PullGate {
    /// The repository's `pull_block_severity` setting.
    pub block_severity: Option<String>,
    /// The image's scan status and severity counts (JSON), if it has a scan.
    pub scan_status: Option<String>,
    pub scan_counts: Option<String>,
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
    /// A part under the ECR API's minimum size was followed by another part.
    pub part_too_small: bool,
}

/// Which images a listing includes, by whether they carry tags.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TagFilter {
    Any,
    Tagged,
    Untagged,
}

/// Which images a listing includes, by their storage status (`ACTIVE` images are pullable,
/// `ARCHIVED` ones are in the archive storage class). Restores are immediate here, so no image
/// is ever `ACTIVATING`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatusFilter {
    Any,
    Active,
    Archived,
    Activating,
}

/// A listing's filter: by tags and by storage status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ImageFilter {
    pub tags: TagFilter,
    pub status: StatusFilter,
}

impl ImageFilter {
    /// Every image, whatever its tags or storage class.
    pub const ALL: ImageFilter = ImageFilter { tags: TagFilter::Any, status: StatusFilter::Any };
}

/// One action a lifecycle run took.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LifecycleEvent {
    pub repository: String,
    pub digest: String,
    pub tags: Vec<String>,
    /// `EXPIRE` or `TRANSITION`.
    pub action: String,
    pub rule_priority: i64,
    pub at: i64,
}

/// An image (a manifest) as `DescribeImages` reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageRecord {
    pub digest: String,
    pub media_type: String,
    pub artifact_type: Option<String>,
    pub subject: Option<String>,
    pub pushed_at: i64,
    pub last_pulled_at: Option<i64>,
    pub tags: Vec<String>,
    /// Total size of the blobs the manifest references (config and layers).
    pub blob_bytes: i64,
    /// Child manifests, for an index.
    pub children: Vec<String>,
    /// In the archive storage class: listed, not pullable.
    pub archived: bool,
    pub last_archived_at: Option<i64>,
    pub last_activated_at: Option<i64>,
}

/// A scan to run: the image and the request generation it answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScanJob {
    pub repository: String,
    pub digest: String,
    /// `BASIC` or `ENHANCED`.
    pub scan_type: String,
    pub generation: i64,
}

/// An image's scan as stored: status, and the findings once complete.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageScan {
    pub digest: String,
    pub scan_type: String,
    /// `PENDING`, `IN_PROGRESS`, `COMPLETE`, `FAILED` or `UNSUPPORTED_IMAGE`.
    pub status: String,
    pub description: Option<String>,
    pub queued_at: i64,
    pub completed_at: Option<i64>,
    pub vulndb_version: Option<i64>,
    pub vulndb_updated_at: Option<i64>,
    /// JSON, as the scanner wrote it.
    pub findings: Option<String>,
    /// JSON object: severity → count.
    pub counts: Option<String>,
}

/// The outcome a worker records for a scan it claimed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScanOutcome {
    pub status: String,
    pub description: Option<String>,
    pub findings: Option<String>,
    pub counts: Option<String>,
    pub vulndb_version: Option<i64>,
    pub vulndb_updated_at: Option<i64>,
}

/// One OSV record to import: id, `modified`, the JSON, and its (ecosystem, package) keys.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VulnRecord {
    pub id: String,
    pub modified: String,
    pub json: String,
    pub keys: Vec<(String, String)>,
}

/// The vulnerability database's version (bumped by each import that changed it), when it
/// last changed, and how many records it holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct VulnDbState {
    pub version: i64,
    pub updated_at: Option<i64>,
    pub records: i64,
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
    /// Creates a repository; `RepositoryAlreadyExists` if the name is taken.
    async fn create_repository(
        &self,
        name: &str,
        settings: &RepositorySettings,
        tags: &[(String, String)],
    ) -> Result<Repository>;
    /// Repository names in order, after `last`, at most `limit`.
    async fn list_repositories(&self, last: Option<&str>, limit: u32) -> Result<Vec<String>>;
    /// Repositories with their settings in name order, after `last`, at most `limit`.
    async fn describe_repositories(&self, last: Option<&str>, limit: u32) -> Result<Vec<Repository>>;
    /// Replaces a repository's settings; returns the repository as it now is.
    async fn update_repository_settings(&self, name: &str, settings: &RepositorySettings) -> Result<Repository>;
    /// Deletes a repository with everything in it; without `force`, only an empty one
    /// (`RepositoryNotEmpty` otherwise).
    async fn delete_repository(&self, name: &str, force: bool) -> Result<Repository>;
    async fn repository_resource_tags(&self, name: &str) -> Result<Vec<(String, String)>>;
    /// Adds or replaces resource tags; `RepositoryNotFound` if there is no such repository.
    async fn tag_repository(&self, name: &str, tags: &[(String, String)]) -> Result<()>;
    async fn untag_repository(&self, name: &str, keys: &[String]) -> Result<()>;

    /// Records a durable blob and links it into a repository (idempotent); `finished_upload`,
    /// the session that delivered it, ends in the same transaction (one commit, not two).
    /// Returns whether the repository held the blob already, decided in that transaction.
    async fn link_blob(
        &self,
        repository: &str,
        digest: &Digest,
        size: u64,
        finished_upload: Option<&str>,
    ) -> Result<bool>;
    /// Links a blob already linked in `from` into `to`; false if `from` does not hold it.
    async fn mount_blob(&self, from: &str, to: &str, digest: &Digest) -> Result<bool>;
    /// The size of a blob if `repository` may serve it.
    async fn linked_blob(&self, repository: &str, digest: &Digest) -> Result<Option<u64>>;
    /// Every blob the registry has recorded, with its size.
    async fn all_blobs(&self) -> Result<Vec<(String, i64)>>;

    /// Stores a manifest (idempotent for identical content) and points `tags` at it, in one
    /// transaction that first checks every referenced blob and child manifest is present and
    /// that no tag in `immutable_tags` would move to another manifest (`TagImmutable`).
    async fn put_manifest(
        &self,
        repository: &str,
        manifest: &NewManifest,
        tags: &[String],
        immutable_tags: &[String],
    ) -> Result<()>;
    async fn manifest(&self, repository: &str, digest: &Digest) -> Result<Option<StoredManifest>>;
    async fn resolve_tag(&self, repository: &str, tag: &str) -> Result<Option<Digest>>;
    /// Deletes a manifest and the tags pointing at it; false if it was not there. A manifest
    /// an index of the repository lists is not deleted: `ReferencedByIndex`, decided in the
    /// same transaction, so an index put meanwhile cannot be left pointing at nothing.
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
    /// (digest, tag) pairs, one per tag and one tagless pair per untagged image, ordered by
    /// digest then tag, after `after`, at most `limit`.
    async fn list_image_ids(
        &self,
        repository: &str,
        after: Option<(&str, &str)>,
        limit: u32,
        filter: ImageFilter,
    ) -> Result<Vec<(String, Option<String>)>>;
    /// Images in digest order after `after`, at most `limit`.
    async fn list_images(
        &self,
        repository: &str,
        after: Option<&str>,
        limit: u32,
        filter: ImageFilter,
    ) -> Result<Vec<ImageRecord>>;
    async fn image(&self, repository: &str, digest: &str) -> Result<Option<ImageRecord>>;
    /// `blob_bytes` of each of `digests` the repository holds, in one query (for the sizes of
    /// a page of indexes' children).
    async fn image_blob_bytes(&self, repository: &str, digests: &[String]) -> Result<Vec<(String, i64)>>;
    /// Index manifests in the repository that list `digest` as a child.
    async fn manifest_parents(&self, repository: &str, digest: &str) -> Result<Vec<String>>;
    /// Records that a manifest was pulled at `at` (epoch ms).
    async fn record_pull(&self, repository: &str, digest: &str, at: i64) -> Result<()>;
    /// Moves an image to the archive storage class (`archived`) or back to standard, at `at`.
    /// `None` if there is no such image, else whether its class changed. Pushing an archived
    /// image's manifest again (`put_manifest`) also restores it.
    async fn set_image_archived(&self, repository: &str, digest: &str, archived: bool, at: i64)
    -> Result<Option<bool>>;

    // ---- vulnerability database and scans ----
    /// Inserts or replaces records (a record whose stored `modified` is the same is left
    /// alone); returns how many were added or changed. One transaction per call.
    async fn vulndb_put(&self, records: &[VulnRecord]) -> Result<u64>;
    /// Bumps the database version after an import that changed `changed` records.
    async fn vulndb_finish_import(&self, changed: u64) -> Result<VulnDbState>;
    async fn vulndb_state(&self) -> Result<VulnDbState>;
    /// The records filed under any of `keys`, each once: (id, JSON).
    async fn vulndb_lookup(&self, keys: &[(String, String)]) -> Result<Vec<(String, String)>>;
    /// Requests a scan of an image (`PENDING`, a new generation). With `only_if_new`, an image
    /// that has a scan row already is left alone. Returns whether a scan was queued.
    async fn request_scan(&self, repository: &str, digest: &str, scan_type: &str, only_if_new: bool) -> Result<bool>;
    /// Claims up to `limit` pending scans for `worker`, oldest first.
    async fn claim_scans(&self, worker: &str, limit: u32) -> Result<Vec<ScanJob>>;
    /// Records a claimed scan's outcome, unless a newer request came meanwhile (then the scan
    /// stays pending for its next run). An outcome without findings (a failure) keeps the last
    /// complete scan's findings and counts, which the pull policy goes on reading. Returns
    /// whether it was recorded.
    async fn finish_scan(&self, job: &ScanJob, outcome: &ScanOutcome) -> Result<bool>;
    /// Puts scans claimed by `worker` (or by anyone, claimed before `before`) back in the queue,
    /// as a new request (so a released scan still running cannot record its result): how a
    /// restarted node resumes the scans it was running, and how a dead node's are taken over.
    async fn release_scans(&self, worker: Option<&str>, before: i64) -> Result<u64>;
    async fn image_scan(&self, repository: &str, digest: &str) -> Result<Option<ImageScan>>;
    /// The scans of several images of one repository, without their findings.
    async fn image_scan_summaries(&self, repository: &str, digests: &[String]) -> Result<Vec<ImageScan>>;
    /// Queues again, in one statement, every complete scan of `repository` computed against a
    /// database version older than `version`; returns how many.
    async fn request_rescans(&self, repository: &str, version: i64) -> Result<u64>;

    async fn create_upload(&self, repository: &str, id: &str, algorithm: &str) -> Result<()>;
    async fn upload(&self, id: &str) -> Result<Option<Upload>>;
    async fn delete_upload(&self, id: &str) -> Result<()>;
    /// Notes that an ECR API part was received and whether it was under the minimum size; a
    /// small part followed by another marks the upload `part_too_small`.
    async fn note_upload_part(&self, id: &str, small: bool) -> Result<()>;

    /// Sets (or with `None` removes) a repository's lifecycle policy text; returns the previous
    /// text and when it was last evaluated. `RepositoryNotFound` if there is no repository.
    async fn set_lifecycle_policy(&self, repository: &str, text: Option<&str>)
    -> Result<Option<(String, Option<i64>)>>;
    async fn lifecycle_policy(&self, repository: &str) -> Result<Option<(String, Option<i64>)>>;
    /// Records when the lifecycle policy was last applied (`lastEvaluatedAt`).
    async fn set_lifecycle_evaluated(&self, repository: &str, at: i64) -> Result<()>;
    /// Stores a repository's lifecycle preview (replacing the previous one).
    async fn put_lifecycle_preview(
        &self,
        repository: &str,
        policy_text: &str,
        status: &str,
        results: &str,
    ) -> Result<()>;
    /// The last preview: (policy text, status, results JSON).
    async fn lifecycle_preview(&self, repository: &str) -> Result<Option<(String, String, String)>>;

    async fn record_lifecycle_event(&self, event: &LifecycleEvent) -> Result<()>;
    /// The newest `limit` lifecycle events (of one repository, or all), newest first.
    async fn lifecycle_events(&self, repository: Option<&str>, limit: u32) -> Result<Vec<LifecycleEvent>>;

    /// Per repository: (name, image count, bytes of the blobs it links), for `/metrics`.
    async fn repository_usage(&self) -> Result<Vec<(String, i64, i64)>>;

    // ---- garbage collection ----

    /// What a collection with this cutoff (epoch ms) would remove: the number of blob links no
    /// manifest of their repository references and that are older than the cutoff, and the
    /// blobs (digest, size) that would then have no link left and were recorded before it.
    async fn gc_preview(&self, before: i64) -> Result<(u64, Vec<(String, i64)>)>;
    /// Removes the unreferenced links older than `before`; returns how many.
    async fn gc_unlink_unreferenced(&self, before: i64) -> Result<u64>;
    /// Removes the records of blobs no repository links any more that were recorded before
    /// `before`; returns them (digest, size). Their bytes are the caller's to delete.
    async fn gc_remove_unlinked_blobs(&self, before: i64) -> Result<Vec<(String, i64)>>;
    /// Which of `digests` have a blob record (one query for a batch of GC's candidates).
    async fn blobs_recorded(&self, digests: &[String]) -> Result<Vec<String>>;
    /// Upload sessions started before `before`.
    async fn stale_uploads(&self, before: i64) -> Result<Vec<String>>;

    async fn account_setting(&self, account_id: &str, name: &str) -> Result<Option<String>>;
    async fn put_account_setting(&self, account_id: &str, name: &str, value: &str) -> Result<()>;

    // ---- IAM: groups, identity policies, resource policies ----

    async fn create_group(&self, group: &Group) -> Result<()>;
    async fn group_by_name(&self, account_id: &str, name: &str) -> Result<Option<Group>>;
    async fn list_groups(&self, account_id: &str) -> Result<Vec<Group>>;
    /// Deletes a group with its memberships, inline policies and attachments.
    async fn delete_group(&self, group_id: &str) -> Result<bool>;
    async fn add_group_member(&self, group_id: &str, principal_id: &str) -> Result<()>;
    async fn remove_group_member(&self, group_id: &str, principal_id: &str) -> Result<bool>;
    async fn groups_of(&self, principal_id: &str) -> Result<Vec<Group>>;
    async fn group_members(&self, group_id: &str) -> Result<Vec<Principal>>;
    /// Creates or replaces an inline policy of a user or group (`owner_id`).
    async fn put_inline_policy(&self, owner_id: &str, name: &str, document: &str) -> Result<()>;
    async fn inline_policy(&self, owner_id: &str, name: &str) -> Result<Option<String>>;
    async fn list_inline_policies(&self, owner_id: &str) -> Result<Vec<String>>;
    async fn delete_inline_policy(&self, owner_id: &str, name: &str) -> Result<bool>;
    /// `AlreadyExists` if the account has a policy of that name.
    async fn create_managed_policy(&self, policy: &ManagedPolicy) -> Result<()>;
    async fn managed_policy(&self, arn: &str) -> Result<Option<ManagedPolicy>>;
    async fn list_managed_policies(&self, account_id: &str) -> Result<Vec<ManagedPolicy>>;
    /// Replaces a managed policy's document.
    async fn update_managed_policy(&self, arn: &str, document: &str) -> Result<bool>;
    async fn delete_managed_policy(&self, arn: &str) -> Result<bool>;
    async fn attach_policy(&self, owner_id: &str, arn: &str) -> Result<()>;
    async fn detach_policy(&self, owner_id: &str, arn: &str) -> Result<bool>;
    async fn attached_policies(&self, owner_id: &str) -> Result<Vec<String>>;
    /// How many users and groups a managed policy is attached to.
    async fn policy_attachment_count(&self, arn: &str) -> Result<u64>;
    /// Every identity policy that applies to a principal: its own inline and attached policies
    /// and those of its groups.
    async fn identity_policies(&self, principal_id: &str) -> Result<Vec<IdentityPolicySource>>;
    /// A repository's policy text. `RepositoryNotFound` if there is no repository.
    async fn repository_policy(&self, repository: &str) -> Result<Option<String>>;
    /// Sets (`Some`) or removes (`None`) a repository's policy; returns the previous text.
    async fn set_repository_policy(&self, repository: &str, text: Option<&str>) -> Result<Option<String>>;
    async fn registry_policy(&self, account_id: &str) -> Result<Option<String>>;
    /// Sets or removes an account's registry policy; returns the previous text.
    async fn set_registry_policy(&self, account_id: &str, text: Option<&str>) -> Result<Option<String>>;
    /// Deletes a user with its keys, memberships, inline policies and attachments.
    async fn delete_principal(&self, principal_id: &str) -> Result<bool>;

    // ---- accounts, principals, access keys, registry secrets ----

    async fn ensure_account(&self, account_id: &str) -> Result<()>;
    /// The account created first (the default registry), if any.
    async fn first_account(&self) -> Result<Option<String>>;
    /// Creates a principal; `AlreadyExists` if the account has one of that name.
    async fn create_principal(&self, principal: &Principal) -> Result<()>;
    async fn principal_by_name(&self, account_id: &str, name: &str) -> Result<Option<Principal>>;
    async fn list_principals(&self, account_id: &str) -> Result<Vec<Principal>>;
    /// Stores an access key; `AlreadyExists` if the id is taken.
    async fn create_access_key(&self, key: &AccessKey) -> Result<()>;
    /// An access key with the principal it belongs to.
    async fn access_key(&self, access_key_id: &str) -> Result<Option<(AccessKey, Principal)>>;
    async fn list_access_keys(&self, principal_id: &str) -> Result<Vec<AccessKey>>;
    /// The named registry secret, stored first as `initial` if there is none yet. Every node
    /// ends up with the same value whichever stored it.
    async fn registry_secret(&self, name: &str, initial: &[u8]) -> Result<Vec<u8>>;

    // ---- repository creation templates ----

    /// Creates a template; `AlreadyExists` if one has that prefix.
    async fn create_creation_template(&self, prefix: &str, body: &str) -> Result<CreationTemplate>;
    /// Replaces a template's body; `NotFound` if there is none with that prefix.
    async fn update_creation_template(&self, prefix: &str, body: &str) -> Result<CreationTemplate>;
    async fn delete_creation_template(&self, prefix: &str) -> Result<CreationTemplate>;
    async fn creation_templates(&self) -> Result<Vec<CreationTemplate>>;

    async fn close(&self);
}

/// Milliseconds since the Unix epoch, the one time format the metadata store keeps.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}
