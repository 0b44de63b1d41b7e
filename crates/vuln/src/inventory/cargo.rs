//! `Cargo.lock`, every format version (v1 to v4): the `[[package]]` array.

use serde::Deserialize;

use super::Package;
use crate::Error;

#[derive(Deserialize)]
struct Lock {
    #[serde(default)]
    package: Vec<LockPackage>,
}

#[derive(Deserialize)]
struct LockPackage {
    name: String,
    version: String,
    #[serde(default)]
    source: Option<String>,
}

/// Whether a `source` is the crates.io registry (git index or sparse index).
fn is_crates_io(source: &str) -> bool {
    source == "registry+https://github.com/rust-lang/crates.io-index" || source == "sparse+https://index.crates.io/"
}

/// Parses a lockfile into its crates.io packages. Workspace and path packages (no
/// `source`), git dependencies and other registries are left out: crates.io advisories do
/// not describe them.
pub fn parse_lock(text: &str) -> Result<Vec<Package>, Error> {
    let lock: Lock = toml::from_str(text)?;
    Ok(lock
        .package
        .into_iter()
        .filter(|p| p.source.as_deref().is_some_and(is_crates_io))
        .map(|p| Package::new("crates.io", &p.name, &p.version))
        .collect())
}
