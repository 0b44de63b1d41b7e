//! The registry services: push (uploads, mounts, manifests), pull, delete, listing, referrers
//! and fsck. Both HTTP surfaces (OCI `/v2/` and, later, the ECR API) call these, so each rule
//! lives in one place. Storage is reached only through the `BlobStore` and `MetaStore` traits.

pub mod authz;
mod error;
mod fsck;
mod gc;
pub mod iam;
pub mod identity;
mod lifecycle;
pub mod repositories;
pub mod scan;
mod service;

pub use error::{RegistryError, is_storage_full, storage_full};
pub use fsck::FsckReport;
pub use gc::{GcPolicy, GcReport};
pub use lifecycle::LifecycleRun;
pub use service::{BlobRead, ManifestPut, Page, Registry};
