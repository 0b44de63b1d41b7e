use berth_meta::MetaError;
use berth_oci::ErrorCode;
use berth_store::StoreError;

/// A failure as the distribution spec names it, or an internal fault (answered with 500).
#[derive(Debug)]
pub enum RegistryError {
    Oci { code: ErrorCode, message: String, detail: Option<serde_json::Value> },
    Internal(String),
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
            RegistryError::Internal(_) => None,
        }
    }
}

impl std::fmt::Display for RegistryError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RegistryError::Oci { code, message, .. } => write!(f, "{}: {message}", code.as_str()),
            RegistryError::Internal(m) => write!(f, "internal error: {m}"),
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
            other => RegistryError::Internal(other.to_string()),
        }
    }
}

impl From<StoreError> for RegistryError {
    fn from(e: StoreError) -> Self {
        RegistryError::Internal(e.to_string())
    }
}
