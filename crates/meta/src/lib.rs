//! Registry metadata behind a narrow trait: repositories, which blobs each repository may
//! serve, manifests with their references, tags and upload sessions.
//!
//! Every method that changes more than one row does it in one transaction, so a reader sees a
//! push either whole or not at all.

use berth_oci::{Algorithm, Digest};
pub use berth_rules::lifecycle::ActionKind;
pub use berth_rules::mutability::Mode as TagMutabilityMode;
pub use berth_rules::scanning::ScanType;
pub use berth_vuln::Severity;

mod postgres;
mod roles;
mod sql;
mod sqlite;
pub mod testing;
pub mod transfer;

pub use postgres::PgMeta;
pub use roles::{
    ANY_CHANGE, AccountStore, ChangeFeed, ContentStore, GcStore, IamPolicyStore, KmsStore, LeaseStore, LifecycleStore,
    ManagedSecretStore, MetaStore, ReplicationStore, RepositoryStore, ScanStore, SecretStore,
};
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
    /// The database is passing through a state the request is not to blame for — a lost or
    /// refused connection, a server restarting, a deadlock or serialization failure (the
    /// transaction was rolled back): the request may be retried. The PostgreSQL store retries
    /// what is safe to retry itself first.
    #[error("metadata store unavailable: {0}")]
    Unavailable(String),
    /// Every connection was busy for the pool's whole acquire timeout: the request may be
    /// retried later, but not at once (it waited already).
    #[error("metadata store busy: {0}")]
    Busy(String),
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

/// A repository's policy text and resource tags, as authorization reads them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RepositoryFactsRow {
    pub name: String,
    pub policy: Option<String>,
    pub tags: Vec<(String, String)>,
}

/// Berth's pull policy: pulls of images whose scan found something at or above a severity
/// are refused, or the policy is off for the repository (`NONE`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PullBlock {
    Off,
    AtOrAbove(Severity),
}

impl PullBlock {
    /// The spelling stored and shown (`berthPullBlockSeverity`).
    pub fn as_str(self) -> &'static str {
        match self {
            PullBlock::Off => "NONE",
            PullBlock::AtOrAbove(s) => s.as_str(),
        }
    }

    /// A severity name (any case), or `NONE`/`OFF`/empty for off.
    pub fn parse(s: &str) -> std::result::Result<PullBlock, String> {
        Ok(match s.trim().to_ascii_uppercase().as_str() {
            "" | "NONE" | "OFF" => PullBlock::Off,
            "CRITICAL" => PullBlock::AtOrAbove(Severity::Critical),
            "HIGH" => PullBlock::AtOrAbove(Severity::High),
            "MEDIUM" => PullBlock::AtOrAbove(Severity::Medium),
            "LOW" => PullBlock::AtOrAbove(Severity::Low),
            "INFORMATIONAL" => PullBlock::AtOrAbove(Severity::Informational),
            other => {
                return Err(format!(
                    "unknown severity {other:?}: use CRITICAL, HIGH, MEDIUM, LOW, INFORMATIONAL or NONE"
                ));
            }
        })
    }

    /// The severity from which pulls are refused, if any.
    pub fn threshold(self) -> Option<Severity> {
        match self {
            PullBlock::Off => None,
            PullBlock::AtOrAbove(s) => Some(s),
        }
    }
}

/// How a repository's bytes are encrypted at rest, as ECR names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EncryptionType {
    Aes256,
    Kms,
    KmsDsse,
}

impl EncryptionType {
    pub fn as_str(self) -> &'static str {
        match self {
            EncryptionType::Aes256 => "AES256",
            EncryptionType::Kms => "KMS",
            EncryptionType::KmsDsse => "KMS_DSSE",
        }
    }

    pub fn parse(s: &str) -> Option<EncryptionType> {
        [Self::Aes256, Self::Kms, Self::KmsDsse].into_iter().find(|e| e.as_str() == s)
    }
}

/// What `CreateRepository` and the `Put…` calls configure on a repository.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RepositorySettings {
    pub tag_mutability: TagMutabilityMode,
    /// Wildcard filters of the `*_WITH_EXCLUSION` modes.
    pub tag_mutability_exclusions: Vec<String>,
    pub scan_on_push: bool,
    pub encryption_type: EncryptionType,
    pub kms_key: Option<String>,
    /// Berth's pull policy for this repository; `None` falls back to the configured default.
    pub pull_block_severity: Option<PullBlock>,
}

impl Default for RepositorySettings {
    fn default() -> Self {
        RepositorySettings {
            tag_mutability: TagMutabilityMode::Mutable,
            tag_mutability_exclusions: Vec::new(),
            scan_on_push: false,
            encryption_type: EncryptionType::Aes256,
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
    /// The secret sealed under the master keyring (`berth_keyring`); a data directory of a
    /// release before the keyring holds it in plain text until the upgrade seals it.
    pub sealed_secret: String,
    pub active: bool,
    pub created_at: i64,
    /// When, for which service and in which region the key last authenticated a request.
    pub last_used: Option<KeyUse>,
}

/// One recorded use of an access key (`GetAccessKeyLastUsed`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyUse {
    /// Epoch milliseconds.
    pub at: i64,
    pub service: String,
    pub region: String,
}

/// What a conditional change of an access key did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyChange {
    Done,
    NotFound,
    /// Refused: it would leave the key's principal without an active key.
    LastActiveKey,
}

/// The kinds of sealed value the store keeps, each named as the keyring's associated data
/// names it. Later features add theirs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SealedKind {
    /// An access key's secret, identified by the access key id.
    AccessKeySecret,
    /// A key the registry itself holds (the token signing key), identified by its name.
    RegistrySecret,
    /// A version of a Secrets Manager secret's value, identified by
    /// `managed_secret_version_key(arn, version id)`.
    ManagedSecretValue,
    /// A version of a KMS key's material, identified by `kms_material_key(key id, material id)`.
    KmsKeyMaterial,
    /// A sealed blob's data keys wrapped under the master keyring (its `AES256` wrapping),
    /// identified by the blob's digest; an upload's, until it is committed, by
    /// `upload_keys_id(upload id)` (uploads are short-lived and not re-sealed by a rotation).
    BlobDataKeys,
    /// A sealed manifest's data keys wrapped under the master keyring, identified by
    /// `manifest_keys_id(repository, digest)`.
    ManifestDataKeys,
    /// The secret of the credential shared with a replication peer, identified by its access
    /// key id.
    ReplicationPeerSecret,
    /// A signing profile's private key (PKCS#8), identified by the profile's ARN.
    SigningProfileKey,
}

/// The identity a manifest's data keys are sealed under: `<repository key>@<digest>` (a
/// manifest is stored, and sealed, once per repository).
pub fn manifest_keys_id(repository: &str, digest: &str) -> String {
    format!("{repository}@{digest}")
}

/// A manifest stored as sent, as `berth encrypt` reads it to seal it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnsealedManifest {
    pub repository: String,
    pub digest: String,
    pub content: Vec<u8>,
    pub annotations: Option<String>,
}

/// A sealed manifest's data keys as stored with it: wrapped under the key that protected its
/// repository when it was pushed ([`MASTER_WRAPPING`] or a KMS key's ARN). Its content is
/// then sealed in the blob format, and its annotations (for the referrers API) sealed apart
/// under the same keys.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManifestKeys {
    pub wrapping: String,
    pub wrapped: Vec<u8>,
}

/// The identity an upload's data keys are sealed under until the upload becomes a blob.
pub fn upload_keys_id(upload_id: &str) -> String {
    format!("upload/{upload_id}")
}

/// The `wrapping` of a blob's data keys sealed under the master keyring; any other wrapping
/// is the ARN of the KMS key they are wrapped under.
pub const MASTER_WRAPPING: &str = "AES256";

/// A sealed blob's data keys as one key protects them (see `ContentStore::blob_keys`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlobKeyWrapping {
    /// [`MASTER_WRAPPING`] or a KMS key's ARN.
    pub wrapping: String,
    /// How many AEAD layers the blob is sealed with (2 for `KMS_DSSE`).
    pub layers: u32,
    pub wrapped: Vec<u8>,
}

/// An upload into a repository whose blobs are sealed: its data keys wrapped as a blob's are
/// (bound to the upload), and the plaintext past its last whole chunk, sealed, if any.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UploadCipher {
    pub wrapping: String,
    pub wrapped_keys: Vec<u8>,
    pub staged_chunk: Option<Vec<u8>>,
}

/// The identity a KMS key's material is sealed under: `<key id>/<material id>`.
pub fn kms_material_key(key_id: &str, material_id: &str) -> String {
    format!("{key_id}/{material_id}")
}

impl SealedKind {
    pub const ALL: [SealedKind; 8] = [
        SealedKind::AccessKeySecret,
        SealedKind::RegistrySecret,
        SealedKind::ManagedSecretValue,
        SealedKind::KmsKeyMaterial,
        SealedKind::BlobDataKeys,
        SealedKind::ManifestDataKeys,
        SealedKind::ReplicationPeerSecret,
        SealedKind::SigningProfileKey,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            SealedKind::AccessKeySecret => "access-key-secret",
            SealedKind::RegistrySecret => "registry-secret",
            SealedKind::ManagedSecretValue => "managed-secret-value",
            SealedKind::KmsKeyMaterial => "kms-key-material",
            SealedKind::BlobDataKeys => "blob-data-keys",
            SealedKind::ManifestDataKeys => "manifest-data-keys",
            SealedKind::ReplicationPeerSecret => "replication-peer-secret",
            SealedKind::SigningProfileKey => "signing-profile-key",
        }
    }
}

/// A Secrets Manager secret as stored: its metadata and its versions' staging labels (values
/// are read one version at a time, `ManagedSecretStore::secret_version`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManagedSecret {
    pub arn: String,
    pub account_id: String,
    pub name: String,
    pub description: Option<String>,
    pub kms_key_id: Option<String>,
    pub tags: Vec<(String, String)>,
    pub created_at: i64,
    pub changed_at: i64,
    pub accessed_at: Option<i64>,
    /// When a scheduled deletion takes effect (ms), if one is scheduled.
    pub deletion_date: Option<i64>,
    /// Each version's id and staging labels, oldest first.
    pub versions: Vec<(String, Vec<String>)>,
}

/// A version to store: its id, its value sealed under the master keyring (bound to
/// `managed_secret_version_key`), and the staging labels it takes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewSecretVersion {
    pub version_id: String,
    pub sealed_value: String,
    pub stages: Vec<String>,
}

/// A stored version of a secret's value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretVersion {
    pub version_id: String,
    pub sealed_value: String,
    pub stages: Vec<String>,
    pub created_at: i64,
}

/// What `create_managed_secret` did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SecretCreated {
    Created,
    /// The account has a secret of that name.
    NameTaken,
    /// The account has a secret of that name, scheduled for deletion.
    NameScheduledForDeletion,
}

/// What `put_secret_version` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VersionPut {
    Created,
    /// A version with that id exists (a retried request, or a conflicting one: the caller
    /// compares the values).
    Exists {
        sealed_value: String,
        stages: Vec<String>,
    },
    SecretNotFound,
}

/// The id a secret version's sealed value is bound to, and that a rotation pages by.
pub fn managed_secret_version_key(arn: &str, version_id: &str) -> String {
    format!("{arn}#{version_id}")
}

/// Moves staging labels to a new version as Secrets Manager does: each label the new version
/// takes leaves the version that had it, and the version losing `AWSCURRENT` takes
/// `AWSPREVIOUS` (from whichever had it). Returns every version's labels afterwards, the new
/// one last; a version left with none is deprecated.
pub fn restage(existing: &[(String, Vec<String>)], new_id: &str, new_stages: &[String]) -> Vec<(String, Vec<String>)> {
    let takes_current = new_stages.iter().any(|s| s == "AWSCURRENT");
    let mut out: Vec<(String, Vec<String>)> = Vec::with_capacity(existing.len() + 1);
    for (id, stages) in existing.iter().filter(|(id, _)| id != new_id) {
        let had_current = stages.iter().any(|s| s == "AWSCURRENT");
        let mut kept: Vec<String> = stages
            .iter()
            .filter(|s| !(new_stages.contains(s) || takes_current && s.as_str() == "AWSPREVIOUS"))
            .cloned()
            .collect();
        if takes_current && had_current {
            kept.push("AWSPREVIOUS".to_string());
        }
        out.push((id.clone(), kept));
    }
    out.push((new_id.to_string(), new_stages.to_vec()));
    out
}

/// A stored secret as the store holds it: sealed text, or (before the upgrade) plain bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredSecret {
    pub kind: SealedKind,
    pub id: String,
    pub stored: Vec<u8>,
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

/// A KMS key's state, as KMS names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KmsKeyState {
    Enabled,
    Disabled,
    PendingDeletion,
}

impl KmsKeyState {
    pub fn as_str(self) -> &'static str {
        match self {
            KmsKeyState::Enabled => "Enabled",
            KmsKeyState::Disabled => "Disabled",
            KmsKeyState::PendingDeletion => "PendingDeletion",
        }
    }

    pub fn parse(s: &str) -> Option<KmsKeyState> {
        [Self::Enabled, Self::Disabled, Self::PendingDeletion].into_iter().find(|k| k.as_str() == s)
    }
}

/// A KMS key as stored (its material is kept apart, sealed: `KmsKeyMaterial`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KmsKey {
    pub key_id: String,
    pub account_id: String,
    pub arn: String,
    pub description: String,
    /// `CUSTOMER`, or `AWS` for an AWS-managed key such as `alias/aws/ecr`.
    pub key_manager: String,
    pub state: KmsKeyState,
    pub policy: String,
    pub created_at: i64,
    /// When a scheduled deletion takes effect (ms), and the window it was scheduled with.
    pub deletion_date: Option<i64>,
    pub pending_window_days: Option<i64>,
    /// Set while automatic rotation is on.
    pub rotation_period_days: Option<i64>,
    pub next_rotation_at: Option<i64>,
    /// The material new ciphertexts are made with.
    pub current_material: String,
}

/// One version of a key's material, sealed under the master keyring.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KmsKeyMaterial {
    pub key_id: String,
    pub material_id: String,
    pub sealed_material: String,
    /// `None` for the key's first material, else `AUTOMATIC` or `ON_DEMAND`.
    pub rotation_type: Option<String>,
    pub created_at: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KmsAlias {
    pub account_id: String,
    /// With its `alias/` prefix.
    pub alias_name: String,
    pub target_key_id: String,
    pub created_at: i64,
    pub updated_at: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KmsGrant {
    pub grant_id: String,
    pub key_id: String,
    pub name: Option<String>,
    pub grantee_principal: String,
    pub retiring_principal: Option<String>,
    pub operations: Vec<String>,
    /// The grant's constraints as KMS's JSON shape, if it has any.
    pub constraints: Option<String>,
    pub issuing_account: String,
    pub grant_token: String,
    pub created_at: i64,
}

/// A pull-through cache rule of an account, as stored: the columns of its API shape, with the
/// prefix as matched (`ROOT`, or a namespace without its trailing `/`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PullThroughRule {
    pub account_id: String,
    pub prefix: String,
    pub upstream_url: String,
    /// The provider the rule names (`docker-hub`, …), if any: it selects quirks only.
    pub upstream_registry: Option<String>,
    /// The upstream namespace the prefix maps to (`None` or `ROOT`: none).
    pub upstream_prefix: Option<String>,
    pub credential_arn: Option<String>,
    /// Berth's extension: how long a cached tag is served before it is checked upstream again,
    /// in seconds (`None`: ECR's 24 hours).
    pub refresh_seconds: Option<i64>,
    pub created_at: i64,
    pub updated_at: i64,
}

/// What an insert into a per-account list with a quota did (pull-through cache rules,
/// pull-time update exclusions).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CappedInsert {
    Inserted,
    /// The account's list has an entry with that key.
    Taken,
    /// The account's list is as long as it may be.
    LimitReached,
}

/// A manifest to store, with what it references.
#[derive(Debug, Clone)]
pub struct NewManifest {
    pub digest: Digest,
    pub media_type: String,
    pub artifact_type: Option<String>,
    pub subject: Option<Digest>,
    /// JSON text of the manifest's annotations, for the referrers API (sealed and base64 when
    /// `keys` is set).
    pub annotations: Option<String>,
    /// The manifest as stored: sealed when `keys` is set.
    pub content: Vec<u8>,
    /// The manifest's own size (its plaintext's).
    pub size: u64,
    pub keys: Option<ManifestKeys>,
    pub blobs: Vec<Digest>,
    pub manifests: Vec<Digest>,
    /// Where this push is replicated: a job per destination, queued in the transaction that
    /// stores the manifest.
    pub replicate_to: Vec<ReplicationTarget>,
}

#[derive(Debug, Clone)]
pub struct StoredManifest {
    pub digest: Digest,
    pub media_type: String,
    /// As stored: sealed when `keys` is set (the registry opens it).
    pub content: Vec<u8>,
    pub keys: Option<ManifestKeys>,
    /// In the archive storage class: not to be served.
    pub archived: bool,
    /// What the pull policy needs, read with the manifest so a pull costs no extra query.
    pub pull_gate: PullGate,
}

/// The repository's pull policy and the image's scan outcome.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PullGate {
    /// The repository's `pull_block_severity` setting.
    pub block_severity: Option<PullBlock>,
    /// The image's scan status and severity counts (JSON), if it has a scan.
    pub scan_status: Option<ScanStatus>,
    pub scan_counts: Option<String>,
    /// The repository's verification on pull (JSON), if it has one.
    pub verification: Option<String>,
}

/// A manifest as listed by the referrers API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManifestSummary {
    pub digest: String,
    pub media_type: String,
    pub size: i64,
    pub artifact_type: Option<String>,
    /// As stored: sealed and base64 when `keys` is set (the registry opens them).
    pub annotations: Option<String>,
    pub keys: Option<ManifestKeys>,
}

/// A held [`GcStore::lock_blob_bytes`]; dropping it releases the lock.
pub struct BlobBytesLock(#[allow(dead_code)] Option<Box<dyn Send>>);

impl BlobBytesLock {
    /// A lock that holds nothing (a store only one node opens).
    pub fn local() -> Self {
        BlobBytesLock(None)
    }

    /// Whether this lock holds nothing beyond the caller's own.
    pub fn is_local(&self) -> bool {
        self.0.is_none()
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Upload {
    pub id: String,
    pub repository: String,
    pub algorithm: Algorithm,
    pub started_at: i64,
    /// A part under the ECR API's minimum size was followed by another part.
    pub part_too_small: bool,
    /// The bytes the upload holds as far as any client was told (its acknowledged size).
    pub acknowledged_bytes: u64,
    /// The running hash over those bytes (`berth_oci::Hasher::state`); `None` before any.
    pub hash_state: Option<Vec<u8>>,
    /// The blob store's state for those bytes (`berth_store::UploadState`), opaque here.
    pub store_state: String,
    /// How the upload is sealed, if its repository's blobs are.
    pub cipher: Option<UploadCipher>,
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
    pub action: ActionKind,
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

/// A registry in a region that an image is replicated to.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ReplicationTarget {
    pub region: String,
    pub registry_id: String,
}

/// What a replication job does at its destination.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum ReplicationAction {
    /// Sends the image with `tags`.
    #[default]
    Replicate,
    /// Removes the image (deleted at the source).
    Delete,
    /// Removes `tags` from the image (removed at the source).
    Untag,
}

impl ReplicationAction {
    pub fn as_str(self) -> &'static str {
        match self {
            ReplicationAction::Replicate => "REPLICATE",
            ReplicationAction::Delete => "DELETE",
            ReplicationAction::Untag => "UNTAG",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "REPLICATE" => Some(ReplicationAction::Replicate),
            "DELETE" => Some(ReplicationAction::Delete),
            "UNTAG" => Some(ReplicationAction::Untag),
            _ => None,
        }
    }
}

/// A replication to run: the image, where to, what to do there (send it with `tags`, or
/// remove it or `tags` from it), and the generation (the push or removal) it answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplicationJob {
    pub repository: String,
    pub digest: String,
    pub target: ReplicationTarget,
    pub action: ReplicationAction,
    pub tags: Vec<String>,
    pub attempts: u32,
    pub generation: i64,
    /// When the push that queued it was stored (ms): the replication lag is measured from it.
    pub queued_at: i64,
}

/// ECR's replication statuses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ReplicationStatus {
    InProgress,
    Complete,
    Failed,
}

impl ReplicationStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            ReplicationStatus::InProgress => "IN_PROGRESS",
            ReplicationStatus::Complete => "COMPLETE",
            ReplicationStatus::Failed => "FAILED",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "IN_PROGRESS" => Some(ReplicationStatus::InProgress),
            "COMPLETE" => Some(ReplicationStatus::Complete),
            "FAILED" => Some(ReplicationStatus::Failed),
            _ => None,
        }
    }
}

/// How a claimed replication ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReplicationOutcome {
    /// The replica is whole; `dropped_tags` are immutable tags the destination held on
    /// another image, left where they were.
    Complete { dropped_tags: Vec<String> },
    /// Failed for good (`failure_code` is Berth's, documented).
    Failed { failure_code: String },
    /// Failed this time; run again from `due_at` (ms), the failure kept for the status.
    Retry { failure_code: String, due_at: i64 },
}

/// Where one image's replication to one destination stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageReplication {
    pub target: ReplicationTarget,
    /// What the job does: a removal's status is not the image's arrival.
    pub action: ReplicationAction,
    pub status: ReplicationStatus,
    /// The last failure: of a `FAILED` job, or of an attempt a retry is waiting to repeat.
    pub failure_code: Option<String>,
    pub dropped_tags: Vec<String>,
    pub attempts: u32,
    pub queued_at: i64,
    pub completed_at: Option<i64>,
}

/// How many replication jobs are where.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReplicationQueueCounts {
    pub waiting: u64,
    pub running: u64,
    pub complete: u64,
    pub failed: u64,
}

/// A deployment of another region this one replicates to, or accepts replicas from: both sides
/// hold the same credential (its secret sealed under each one's master keyring).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplicationPeer {
    pub region: String,
    /// Where replicas for the region are sent; `None` on a side that only accepts them.
    pub endpoint: Option<String>,
    /// PEM certificates trusted for `endpoint` besides the system's roots.
    pub ca_pem: Option<String>,
    pub access_key_id: String,
    pub sealed_secret: String,
    /// The accounts the peer deployment holds: it may replicate here on their behalf only.
    pub accounts: Vec<String>,
    pub created_at: i64,
}

/// A web console session, stored by the SHA-256 of its cookie value (the value itself is never
/// stored), bound to the access key it was signed in with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsoleSession {
    pub id_hash: String,
    pub access_key_id: String,
    /// The token every form of the session carries (CSRF protection).
    pub csrf_token: String,
    pub created_at: i64,
    pub expires_at: i64,
}

/// A signing profile Berth holds for an account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SigningProfile {
    /// `arn:aws:signer:<region>:<account>:/signing-profiles/<name>`.
    pub arn: String,
    pub account_id: String,
    pub name: String,
    /// The public key, a PEM `PUBLIC KEY` (SubjectPublicKeyInfo).
    pub public_key_pem: String,
    /// The PKCS#8 private key sealed under the master keyring.
    pub sealed_private_key: String,
    pub created_at: i64,
    /// When it was revoked; a revoked profile signs nothing more.
    pub revoked_at: Option<i64>,
}

/// An image's signing by one profile.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageSigning {
    pub profile_arn: String,
    /// `IN_PROGRESS`, `COMPLETE` or `FAILED`.
    pub status: String,
    pub failure_code: Option<String>,
    pub failure_reason: Option<String>,
    pub updated_at: i64,
}

/// A replication that ended, as recorded when its job did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplicationEvent {
    pub id: i64,
    pub at: i64,
    pub repository: String,
    pub digest: String,
    pub target: ReplicationTarget,
    pub action: ReplicationAction,
    /// `COMPLETE` or `FAILED`.
    pub status: ReplicationStatus,
    pub failure_code: Option<String>,
    pub tags: Vec<String>,
    pub dropped_tags: Vec<String>,
}

/// A scan to run: the image and the request generation it answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScanJob {
    pub repository: String,
    pub digest: String,
    pub scan_type: ScanType,
    pub generation: i64,
}

/// Where an image's scan stands: queued, running, or its outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ScanStatus {
    Pending,
    InProgress,
    Complete,
    Failed,
    UnsupportedImage,
}

impl ScanStatus {
    /// The spelling stored (and, but for `PENDING`, shown by the ECR API).
    pub fn as_str(self) -> &'static str {
        match self {
            ScanStatus::Pending => "PENDING",
            ScanStatus::InProgress => "IN_PROGRESS",
            ScanStatus::Complete => "COMPLETE",
            ScanStatus::Failed => "FAILED",
            ScanStatus::UnsupportedImage => "UNSUPPORTED_IMAGE",
        }
    }

    pub fn parse(s: &str) -> Option<ScanStatus> {
        [Self::Pending, Self::InProgress, Self::Complete, Self::Failed, Self::UnsupportedImage]
            .into_iter()
            .find(|v| v.as_str() == s)
    }
}

/// An image's scan as stored: status, and the findings once complete.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageScan {
    pub digest: String,
    pub scan_type: ScanType,
    pub status: ScanStatus,
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
    pub status: ScanStatus,
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

/// Milliseconds since the Unix epoch, the one time format the metadata store keeps.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}

#[cfg(test)]
mod restage_tests {
    use super::restage;

    fn v(id: &str, stages: &[&str]) -> (String, Vec<String>) {
        (id.to_string(), stages.iter().map(|s| s.to_string()).collect())
    }

    #[test]
    fn a_new_current_version_makes_the_old_one_previous_and_deprecates_the_one_before() {
        let existing = [v("a", &["AWSPREVIOUS"]), v("b", &["AWSCURRENT"])];
        let out = restage(&existing, "c", &["AWSCURRENT".to_string()]);
        assert_eq!(out, [v("a", &[]), v("b", &["AWSPREVIOUS"]), v("c", &["AWSCURRENT"])]);
    }

    #[test]
    fn a_custom_label_moves_alone() {
        let existing = [v("a", &["AWSCURRENT", "blue"])];
        let out = restage(&existing, "b", &["blue".to_string()]);
        assert_eq!(out, [v("a", &["AWSCURRENT"]), v("b", &["blue"])]);
    }

    #[test]
    fn the_first_version_just_takes_its_labels() {
        assert_eq!(restage(&[], "a", &["AWSCURRENT".to_string()]), [v("a", &["AWSCURRENT"])]);
    }
}
