use berth_meta::MetaError;
use berth_oci::Digest;
use berth_store::StoreError;

/// What a registry service refuses, in the registry's own terms: each variant carries the data
/// (names, digests, offsets) a protocol needs to word it. Each surface maps these once, with an
/// exhaustive match (`/v2/` to OCI codes, the ECR API to its exceptions); no handler reads a
/// protocol code back out of an error. Repository names here are store keys (the surfaces turn
/// them back into names on the way out).
#[derive(Debug, Clone)]
pub enum RegistryError {
    // ---- names, references, request shape ----
    /// A repository name outside the grammar.
    NameInvalid(String),
    /// A digest that does not parse, or of an algorithm Berth does not serve.
    DigestInvalid(String),
    TagInvalid(String),
    /// A request parameter a service checked (the ECR model's shape is checked at the edge).
    InvalidParameter(String),
    /// An account setting that does not exist, or a value it does not take.
    InvalidSetting(String),
    /// What the protocol allows but Berth does not do.
    Unsupported(String),
    /// The caller may not do this (the authorizer's refusal, already worded).
    Denied(String),

    // ---- repositories ----
    RepositoryNotFound {
        name: String,
    },
    RepositoryAlreadyExists {
        name: String,
    },
    RepositoryNotEmpty {
        name: String,
    },
    /// More resource tags than a repository may have (50).
    TooManyTags,
    /// A resource tag key or value out of bounds.
    InvalidResourceTag(String),
    TemplateNotFound {
        prefix: String,
    },
    TemplateAlreadyExists {
        prefix: String,
    },
    RepositoryPolicyNotFound {
        name: String,
    },
    RegistryPolicyNotFound,
    LifecyclePolicyNotFound {
        name: String,
    },
    LifecyclePreviewNotFound {
        name: String,
    },

    // ---- signing ----
    SigningConfigurationNotFound,
    /// Verification on pull refused an image no trusted key signed.
    PullUnverified {
        repository: String,
        digest: Digest,
        trusted: Vec<String>,
    },

    // ---- pull-time update exclusions ----
    PullTimeExclusionExists {
        arn: String,
    },
    PullTimeExclusionNotFound {
        arn: String,
    },
    /// The registry has as many pull-time update exclusions as it may (100).
    PullTimeExclusionLimit,

    // ---- the public host ----
    /// An anonymous pull from a source that has used up this month's allowance.
    AnonymousAllowanceExceeded {
        allowance: u64,
        retry_after_seconds: u64,
    },

    // ---- pull-through cache ----
    PullThroughRuleNotFound {
        prefix: String,
    },
    PullThroughRuleAlreadyExists {
        prefix: String,
    },
    /// The registry has as many pull-through cache rules as it may (50).
    PullThroughRuleLimit,
    /// An upstream URL Berth does not fetch from (plain http elsewhere than loopback), or one
    /// that does not answer as a registry.
    UnsupportedUpstream(String),
    /// The secret a rule names does not exist.
    SecretNotFound(String),
    /// The secret exists but the registry may not use it (scheduled for deletion, another
    /// account or region, outside `ecr-pullthroughcache/`).
    SecretInaccessible(String),
    /// The secret cannot be opened, or does not hold a credential.
    SecretUndecryptable(String),
    /// The repository's KMS key refused: missing, disabled, pending deletion, or the caller may
    /// not use it (ECR's `KmsException`, whose `kmsError` is KMS's exception name).
    Kms(crate::kms::KmsError),
    /// A fill could not get what it needed from the upstream.
    Upstream {
        failure: crate::pull_through::UpstreamFailure,
        message: String,
    },

    // ---- blobs and uploads ----
    BlobNotFound {
        digest: Digest,
    },
    UploadNotFound {
        id: String,
    },
    /// The upload's bytes stopped arriving (the client went away, or storage failed mid-way).
    UploadInterrupted(String),
    /// A chunk that does not start where the upload ends.
    UploadOutOfOrder {
        start: u64,
        size: u64,
    },
    /// A chunk whose range does not describe its bytes.
    ChunkRangeInvalid(String),
    /// The body was not as long as the request said.
    SizeMismatch {
        received: u64,
        declared: u64,
    },
    /// The bytes uploaded do not hash to the digest the client gave.
    UploadDigestMismatch {
        expected: Digest,
        actual: Digest,
    },
    /// An ECR API part under the minimum size that was not the last.
    LayerPartTooSmall {
        min: usize,
    },
    /// An ECR API upload completed without any part.
    EmptyUpload,

    // ---- manifests and images ----
    ManifestNotFound {
        reference: String,
    },
    /// The image is archived: not pullable until restored.
    ManifestArchived {
        reference: String,
        digest: Digest,
    },
    /// The manifest's media type is not among those the client accepts.
    ManifestNotAccepted {
        reference: String,
        media_type: String,
    },
    ManifestInvalid(String),
    /// The manifest does not hash to the digest it was put under.
    ManifestDigestMismatch {
        expected: Digest,
        actual: Digest,
    },
    /// The tag exists, points at another manifest, and the repository's rule keeps it there.
    TagImmutable {
        repository: String,
        tag: String,
    },
    /// Content the manifest references that the repository does not hold.
    ReferencesMissing {
        repository: String,
        blobs: Vec<Digest>,
        manifests: Vec<Digest>,
    },
    /// A manifest that indexes of the repository list is not deleted.
    ReferencedByIndex {
        digest: Digest,
        parents: Vec<String>,
    },
    /// `PutImage` of an image (and tag) the repository holds already.
    ImageAlreadyExists {
        repository: String,
        digest: Digest,
        tag: Option<String>,
    },
    /// The pull policy refuses an image with findings at or above the threshold.
    PullBlocked {
        digest: Digest,
        findings: String,
        threshold: String,
    },
    /// A scan is asked of an archived image.
    ImageArchived {
        digest: Digest,
    },
    /// A scan is asked of an image no scanner reads.
    ImageNotScannable {
        digest: Digest,
        why: &'static str,
    },
    /// An image listed by an index is archived with its index, never alone.
    ArchiveOfIndexChild,
    ScanNotFound {
        digest: Digest,
    },

    // ---- the server's own faults ----
    Internal(String),
    /// A full disk (the server's fault: `/v2/` answers 507, the ECR API `ServerException`).
    InsufficientStorage,
    /// The metadata database is unavailable for a moment (restarting, a lost connection) and
    /// retries did not bridge it: `/v2/` answers 503 with `Retry-After`, the ECR API
    /// `ServerException`; the client may retry.
    Unavailable(String),
}

/// Whether an IO error means the disk (or the quota) is full.
pub fn is_storage_full(e: &std::io::Error) -> bool {
    matches!(e.kind(), std::io::ErrorKind::StorageFull | std::io::ErrorKind::QuotaExceeded)
}

/// A full disk: logged at most once a minute however many requests meet it, so the log does
/// not fill what is left of the disk.
pub fn storage_full(detail: &dyn std::fmt::Display) -> RegistryError {
    use std::sync::atomic::{AtomicI64, Ordering};
    static LAST_LOGGED_MS: AtomicI64 = AtomicI64::new(i64::MIN);
    let now = berth_meta::now_ms();
    let last = LAST_LOGGED_MS.load(Ordering::Relaxed);
    if now.saturating_sub(last) >= 60_000
        && LAST_LOGGED_MS.compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed).is_ok()
    {
        tracing::error!(error = %detail, "out of storage space: writes fail until space is freed (logged once a minute)");
    }
    RegistryError::InsufficientStorage
}

impl RegistryError {
    /// Whether a read missed: the repository, the manifest or the blob is not there (what a
    /// pull-through cache repository fills).
    pub fn is_not_found(&self) -> bool {
        matches!(
            self,
            RegistryError::RepositoryNotFound { .. }
                | RegistryError::ManifestNotFound { .. }
                | RegistryError::BlobNotFound { .. }
        )
    }

    /// A store error met while acting on the repository `name`: a missing repository is named.
    pub fn in_repository(name: &str) -> impl FnOnce(MetaError) -> RegistryError + '_ {
        move |e| match e {
            MetaError::RepositoryNotFound => RegistryError::RepositoryNotFound { name: name.to_string() },
            other => other.into(),
        }
    }
}

/// The message `/v2/` sends and logs show; the ECR mapping words its own.
impl std::fmt::Display for RegistryError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        use RegistryError::*;
        match self {
            NameInvalid(m) | DigestInvalid(m) | TagInvalid(m) | InvalidParameter(m) | InvalidSetting(m)
            | Unsupported(m) | Denied(m) => f.write_str(m),
            ManifestInvalid(m) | ChunkRangeInvalid(m) | InvalidResourceTag(m) => f.write_str(m),
            RepositoryNotFound { name } if name.is_empty() => f.write_str("repository name not known to registry"),
            RepositoryNotFound { name } => write!(f, "repository {name:?} not known to registry"),
            RepositoryAlreadyExists { name } => write!(f, "repository {name:?} already exists"),
            RepositoryNotEmpty { name } => write!(f, "repository {name:?} still contains images"),
            TooManyTags => f.write_str("A repository can have at most 50 tags"),
            TemplateNotFound { prefix } => {
                write!(f, "The repository creation template with prefix '{prefix}' does not exist")
            }
            TemplateAlreadyExists { prefix } => {
                write!(f, "The repository creation template with prefix '{prefix}' already exists")
            }
            RepositoryPolicyNotFound { name } => write!(f, "repository {name:?} has no repository policy"),
            RegistryPolicyNotFound => f.write_str("the registry has no registry policy"),
            LifecyclePolicyNotFound { name } => write!(f, "repository {name:?} has no lifecycle policy"),
            LifecyclePreviewNotFound { name } => write!(f, "repository {name:?} has no lifecycle policy preview"),
            SigningConfigurationNotFound => f.write_str("The registry has no signing configuration"),
            PullUnverified { repository, digest, trusted } => write!(
                f,
                "image {repository}@{digest} is not signed by a key this repository trusts for pulls ({})",
                trusted.join(", ")
            ),
            PullTimeExclusionExists { arn } => {
                write!(f, "The principal {arn} is already excluded from pull time updates")
            }
            PullTimeExclusionNotFound { arn } => {
                write!(f, "The principal {arn} is not excluded from pull time updates")
            }
            PullTimeExclusionLimit => write!(
                f,
                "The registry has {} pull time update exclusions, the most it may have",
                crate::pull_times::MAX_EXCLUSIONS
            ),
            AnonymousAllowanceExceeded { allowance, .. } => write!(
                f,
                "This address has pulled its {allowance} bytes of anonymous pulls this month; \
                 sign in to pull more, or wait for the next month"
            ),
            PullThroughRuleNotFound { prefix } => {
                write!(f, "The pull through cache rule with prefix '{prefix}' does not exist")
            }
            PullThroughRuleAlreadyExists { prefix } => {
                write!(f, "A pull through cache rule with prefix '{prefix}' already exists")
            }
            PullThroughRuleLimit => write!(
                f,
                "The registry has {} pull through cache rules, the most it may have",
                berth_rules::pull_through::MAX_RULES
            ),
            UnsupportedUpstream(m) | SecretNotFound(m) | SecretInaccessible(m) | SecretUndecryptable(m) => {
                f.write_str(m)
            }
            Upstream { message, .. } => f.write_str(message),
            Kms(e) => write!(f, "{e}"),
            BlobNotFound { .. } => f.write_str("blob unknown to registry"),
            UploadNotFound { .. } => f.write_str("blob upload unknown to registry"),
            UploadInterrupted(m) => write!(f, "upload interrupted: {m}"),
            UploadOutOfOrder { start, size } => write!(f, "chunk starts at {start} but the upload has {size} bytes"),
            SizeMismatch { received, declared } => {
                write!(f, "received {received} bytes but Content-Length said {declared}")
            }
            UploadDigestMismatch { expected, actual } => {
                write!(f, "provided digest {expected} does not match the uploaded content's digest {actual}")
            }
            LayerPartTooSmall { min } => write!(f, "Layer parts must be at least {min} bytes, but for the last part"),
            EmptyUpload => f.write_str("The specified layer upload does not contain any layer parts"),
            ManifestNotFound { .. } => f.write_str("manifest unknown to registry"),
            ManifestArchived { digest, .. } => write!(
                f,
                "the image {digest} is archived; restore it with UpdateImageStorageClass \
                 (targetStorageClass STANDARD) or push it again"
            ),
            ManifestNotAccepted { media_type, .. } => {
                write!(f, "the manifest is {media_type}, which the Accept header does not admit")
            }
            ManifestDigestMismatch { expected, actual } => {
                write!(f, "manifest digest {actual} does not match the reference {expected}")
            }
            TagImmutable { repository, tag } => write!(
                f,
                "The image tag '{tag}' already exists in the '{repository}' repository and cannot be overwritten because the repository is immutable."
            ),
            ReferencesMissing { blobs, manifests, .. } => {
                let missing: Vec<&str> = blobs.iter().chain(manifests).map(Digest::as_str).collect();
                write!(f, "manifest references content not in the repository: {}", missing.join(", "))
            }
            ReferencedByIndex { digest, parents } => write!(
                f,
                "the manifest {digest} is referenced by manifest list(s) [{}]: delete those first",
                parents.join(", ")
            ),
            ImageAlreadyExists { digest, tag, .. } => {
                write!(f, "Image with digest '{digest}' and tag '{}' already exists", tag.as_deref().unwrap_or("null"))
            }
            PullBlocked { digest, findings, threshold } => write!(
                f,
                "pull refused by the repository's pull policy: image {digest} has {findings} finding(s) (blocking {threshold} and above); \
                 see DescribeImageScanFindings"
            ),
            ImageArchived { digest } => {
                write!(f, "The image {digest} is archived; restore it with UpdateImageStorageClass before scanning it")
            }
            ImageNotScannable { digest, why } => write!(f, "The image {digest} cannot be scanned: {why}"),
            ArchiveOfIndexChild => {
                f.write_str("An image listed by a multi-architecture index is archived with its index, not on its own")
            }
            ScanNotFound { digest } => write!(f, "no scan of the image {digest}"),
            Internal(m) => write!(f, "internal error: {m}"),
            InsufficientStorage => f.write_str("insufficient storage"),
            Unavailable(_) => f.write_str("the registry's database is unavailable for a moment; retry shortly"),
        }
    }
}

impl std::error::Error for RegistryError {}

impl From<MetaError> for RegistryError {
    fn from(e: MetaError) -> Self {
        match e {
            // Where the name is known, `RegistryError::in_repository` names it.
            MetaError::RepositoryNotFound => RegistryError::RepositoryNotFound { name: String::new() },
            MetaError::StorageFull(detail) => storage_full(&detail),
            MetaError::Unavailable(detail) | MetaError::Busy(detail) => RegistryError::Unavailable(detail),
            other => RegistryError::Internal(other.to_string()),
        }
    }
}

impl From<StoreError> for RegistryError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Io(io) if is_storage_full(&io) => storage_full(&io),
            other => RegistryError::Internal(other.to_string()),
        }
    }
}
