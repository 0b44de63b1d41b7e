use berth_meta::MetaError;
use berth_oci::ErrorCode;
use berth_store::StoreError;

/// A failure as the distribution spec names it, an internal fault (answered with 500), or a
/// full disk (the server's fault too: `/v2/` answers 507, the ECR API `ServerException`).
#[derive(Debug)]
pub enum RegistryError {
    Oci { code: ErrorCode, message: String, detail: Option<serde_json::Value> },
    Internal(String),
    InsufficientStorage,
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
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        RegistryError::Oci { code, message: message.into(), detail: None }
    }

    pub fn with_detail(code: ErrorCode, message: impl Into<String>, detail: serde_json::Value) -> Self {
        RegistryError::Oci { code, message: message.into(), detail: Some(detail) }
    }

    pub fn code(&self) -> Option<ErrorCode> {
        match self {
            RegistryError::Oci { code, .. } => Some(*code),
            RegistryError::Internal(_) | RegistryError::InsufficientStorage => None,
        }
    }
}

impl std::fmt::Display for RegistryError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RegistryError::Oci { code, message, .. } => write!(f, "{}: {message}", code.as_str()),
            RegistryError::Internal(m) => write!(f, "internal error: {m}"),
            RegistryError::InsufficientStorage => write!(f, "insufficient storage"),
        }
    }
}

impl std::error::Error for RegistryError {}

impl From<MetaError> for RegistryError {
    fn from(e: MetaError) -> Self {
        match e {
            MetaError::RepositoryNotFound => {
                RegistryError::new(ErrorCode::NameUnknown, "repository name not known to registry")
            }
            MetaError::StorageFull(detail) => storage_full(&detail),
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
