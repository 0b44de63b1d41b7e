//! Pure OCI distribution logic: digests, repository names and tags, byte ranges, manifest
//! parsing and validation, the `/v2/` path grammar, the spec's error codes, and registries' `WWW-Authenticate`
//! challenges.
//!
//! Nothing here does IO or is async, so every rule can be tested in microseconds.

pub mod challenge;
pub mod digest;
pub mod error;
pub mod manifest;
pub mod name;
pub mod path;
pub mod range;

pub use challenge::{Challenge, parse_challenge};
pub use digest::{Algorithm, Digest, DigestError, Hasher};
pub use error::ErrorCode;
pub use manifest::{ManifestError, ManifestKind, ParsedManifest, accepts, media_types};
pub use name::{validate_repository_name, validate_tag};
pub use path::{V2Route, parse_v2_path};
pub use range::{ByteRange, ContentRange, RangeRequest, parse_content_range, parse_range};
