//! Vulnerability matching for Berth's image scanning, pure (no IO): the caller reads image
//! layers and a vulnerability database; this crate decides what is vulnerable.
//!
//! The pieces, in the order a scan uses them:
//!
//! - [`inventory`]: parsers for the files that list an image's packages — `os-release`
//!   (which distribution and release, hence which OSV ecosystem), dpkg's status database,
//!   apk's installed database, `Cargo.lock`, `package-lock.json`, Python `METADATA`, and
//!   `go.mod` — each turning file text into [`Package`]s.
//! - [`image`]: which image files list packages, how layers stack (whiteouts), and the
//!   [`Inventory`] the surviving files describe, each package with its file and layer.
//! - [`osv`]: a lenient serde model of OSV records (<https://ossf.github.io/osv-schema/>), the
//!   format of the vulnerability data.
//! - [`ecosystem`]: OSV ecosystem names (`Debian:12`, `Alpine:v3.19`, `PyPI`), the version
//!   scheme of each, release scoping ([`ecosystem_applies`]) and package-name rules
//!   (PEP 503 for PyPI).
//! - [`version`]: the version orderings — dpkg, apk, rpm, SemVer, PEP 440, Go and Maven —
//!   behind [`Scheme`].
//! - [`matching`]: the OSV evaluation algorithm ([`affected`]): is this package version in a
//!   record's `versions` or ranges, and which fixed versions apply.
//! - [`findings`]: an inventory matched against records, one [`findings::Finding`] per
//!   vulnerability and package, and the counts per severity.
//! - [`sbom`]: the inventory as a CycloneDX document with package URLs.
//! - [`severity`]: a record's severity on ECR's scale (`CRITICAL` … `UNDEFINED`), from CVSS
//!   v3/v4/v2 vectors scored with the `cvss` crate or from the databases' labels.
//!
//! Comparators are total: odd version strings get a documented best-effort order instead of
//! an error, since one malformed version in a database must not stop a scan.

pub mod ecosystem;
pub mod findings;
pub mod image;
pub mod inventory;
pub mod matching;
pub mod osv;
pub mod sbom;
pub mod severity;
pub mod version;

pub use ecosystem::{Ecosystem, EcosystemId, ecosystem_applies, pep503_normalize};
pub use image::{ImageFiles, Inventory, InventoryPackage};
pub use inventory::Package;
pub use matching::{Match, affected, affected_package};
pub use osv::Record;
pub use severity::{Severity, SeverityInfo, record_severity};
pub use version::Scheme;

/// Errors from parsing input files.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("invalid JSON: {0}")]
    Json(#[from] serde_json::Error),
    #[error("invalid TOML: {0}")]
    Toml(#[from] toml::de::Error),
    #[error("{0}")]
    Format(String),
}
