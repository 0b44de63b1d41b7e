//! Package inventories read from files found in an image. Each parser takes the file's
//! text (the caller walks the layers) and returns the packages it lists.
//!
//! | file | parser | ecosystem |
//! |---|---|---|
//! | `/etc/os-release`, `/usr/lib/os-release` | [`os_release::parse`] | decides the distribution's |
//! | `/var/lib/dpkg/status`, `/var/lib/dpkg/status.d/*` | [`dpkg::parse_status`] | `Debian:N`, `Ubuntu:N` |
//! | `/lib/apk/db/installed` | [`apk::parse_installed`] | `Alpine:vX.Y` |
//! | `Cargo.lock` | [`cargo::parse_lock`] | `crates.io` |
//! | `package-lock.json` | [`npm::parse_package_lock`] | `npm` |
//! | `*.dist-info/METADATA`, `PKG-INFO` | [`python::parse_metadata`] | `PyPI` |
//! | `go.mod` | [`gomod::parse`] | `Go` |
//! | `/var/lib/rpm/rpmdb.sqlite` (a header blob) | [`rpm::parse_header`] | `Rocky Linux:9`, `AlmaLinux:9`, `Red Hat:…` |

pub mod apk;
pub mod cargo;
pub mod dpkg;
pub mod gomod;
pub mod npm;
pub mod os_release;
pub mod python;
pub mod rpm;

use serde::{Deserialize, Serialize};

/// One installed package.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Package {
    /// The OSV ecosystem string to match records against, with the distribution release for
    /// OS packages (`Debian:12`, `Alpine:v3.19`, `PyPI`).
    pub ecosystem: String,
    /// The package name (the binary package for distributions).
    pub name: String,
    pub version: String,
    /// The source package (dpkg `Source`, apk origin), when it is known.
    pub source_name: Option<String>,
    /// The source package's version, when it differs from `version`.
    pub source_version: Option<String>,
    pub arch: Option<String>,
    /// Where the package was found (an npm lockfile key, or what the caller sets).
    pub path: Option<String>,
}

impl Package {
    /// A package with only the essentials set.
    pub fn new(ecosystem: &str, name: &str, version: &str) -> Package {
        Package {
            ecosystem: ecosystem.to_string(),
            name: name.to_string(),
            version: version.to_string(),
            source_name: None,
            source_version: None,
            arch: None,
            path: None,
        }
    }

    /// The name OSV records use: the source package when known (Debian, Ubuntu and Alpine
    /// records are keyed by source), else the package name.
    pub fn osv_name(&self) -> &str {
        self.source_name.as_deref().unwrap_or(&self.name)
    }

    /// The version to match: the source version when it differs, else the version.
    pub fn osv_version(&self) -> &str {
        self.source_version.as_deref().unwrap_or(&self.version)
    }

    /// The same package, found at `path`.
    pub fn with_path(mut self, path: &str) -> Package {
        self.path = Some(path.to_string());
        self
    }
}

/// Splits RFC 822-style text (dpkg status, Python METADATA) into paragraphs of
/// `(field, value)` pairs; continuation lines (leading space or tab) join the previous value
/// with a newline.
pub(crate) fn rfc822_paragraphs(text: &str) -> Vec<Vec<(String, String)>> {
    let mut paragraphs = Vec::new();
    let mut current: Vec<(String, String)> = Vec::new();
    for line in text.lines() {
        if line.trim().is_empty() {
            if !current.is_empty() {
                paragraphs.push(std::mem::take(&mut current));
            }
        } else if line.starts_with([' ', '\t']) {
            if let Some((_, value)) = current.last_mut() {
                value.push('\n');
                value.push_str(line.trim());
            }
        } else if let Some((key, value)) = line.split_once(':') {
            current.push((key.trim().to_string(), value.trim().to_string()));
        }
    }
    if !current.is_empty() {
        paragraphs.push(current);
    }
    paragraphs
}

/// The first value of `key` (case-insensitive) in a paragraph.
pub(crate) fn field<'a>(paragraph: &'a [(String, String)], key: &str) -> Option<&'a str> {
    paragraph.iter().find(|(k, _)| k.eq_ignore_ascii_case(key)).map(|(_, v)| v.as_str()).filter(|v| !v.is_empty())
}

#[cfg(test)]
mod tests;
