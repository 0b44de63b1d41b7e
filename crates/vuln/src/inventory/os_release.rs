//! `/etc/os-release` (or `/usr/lib/os-release`): which distribution an image is, and the OSV
//! ecosystem its OS packages belong to.

use serde::{Deserialize, Serialize};

use crate::ecosystem::{Ecosystem, EcosystemId};

/// The fields of os-release a scanner uses.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct OsRelease {
    /// `ID` (`debian`, `ubuntu`, `alpine`, `rocky`, `almalinux`, `rhel`, ...).
    pub id: String,
    /// `ID_LIKE`, split on spaces.
    pub id_like: Vec<String>,
    /// `VERSION_ID` (`12`, `22.04`, `3.19.1`, `9.3`).
    pub version_id: Option<String>,
    pub version_codename: Option<String>,
    pub pretty_name: Option<String>,
}

impl OsRelease {
    /// The OSV ecosystem the distribution's packages are published under, if it is one this
    /// crate knows: `ID` first, then each `ID_LIKE`.
    pub fn ecosystem(&self) -> Option<Ecosystem> {
        std::iter::once(&self.id).chain(&self.id_like).find_map(|id| ecosystem_of(id))
    }

    /// The OSV ecosystem with its release, as records scope it: `Debian:12`,
    /// `Ubuntu:22.04`, `Alpine:v3.19`, `Rocky Linux:9`, `AlmaLinux:9`, `Red Hat:9.3`. Wolfi
    /// and Chainguard are rolling and have no release. Without a `VERSION_ID` the base name
    /// alone (Debian testing and sid have none).
    pub fn osv_ecosystem(&self) -> Option<EcosystemId> {
        let ecosystem = self.ecosystem()?;
        // Only borrow the version when the distribution is the ID itself, not an ID_LIKE
        // relative whose numbering differs (Linux Mint is ID_LIKE=ubuntu).
        let own = ecosystem_of(&self.id).is_some();
        let version = self.version_id.as_deref().filter(|_| own).map(str::trim).filter(|v| !v.is_empty());
        let numbers = |n: usize| version.map(|v| v.split(['.', '_', '-']).take(n).collect::<Vec<_>>().join("."));
        let release = match ecosystem {
            Ecosystem::Alpine => numbers(2).map(|v| format!("v{v}")),
            Ecosystem::Debian | Ecosystem::RockyLinux | Ecosystem::AlmaLinux => numbers(1),
            Ecosystem::Ubuntu | Ecosystem::RedHat => version.map(str::to_string),
            _ => None,
        };
        Some(EcosystemId { ecosystem, release })
    }
}

fn ecosystem_of(id: &str) -> Option<Ecosystem> {
    Some(match id {
        "debian" => Ecosystem::Debian,
        "ubuntu" => Ecosystem::Ubuntu,
        "alpine" => Ecosystem::Alpine,
        "wolfi" => Ecosystem::Wolfi,
        "chainguard" => Ecosystem::Chainguard,
        "rocky" => Ecosystem::RockyLinux,
        "almalinux" => Ecosystem::AlmaLinux,
        "rhel" => Ecosystem::RedHat,
        _ => return None,
    })
}

/// Unquotes a shell-style value: `"..."` (with `\` escapes) or `'...'`.
fn unquote(value: &str) -> String {
    let v = value.trim();
    if let Some(inner) = v.strip_prefix('"').and_then(|s| s.strip_suffix('"')) {
        let mut out = String::new();
        let mut chars = inner.chars();
        while let Some(c) = chars.next() {
            if c == '\\' {
                if let Some(next) = chars.next() {
                    out.push(next);
                }
            } else {
                out.push(c);
            }
        }
        out
    } else if let Some(inner) = v.strip_prefix('\'').and_then(|s| s.strip_suffix('\'')) {
        inner.to_string()
    } else {
        v.to_string()
    }
}

/// Parses os-release text. Unknown keys, comments and malformed lines are ignored.
pub fn parse(text: &str) -> OsRelease {
    let mut out = OsRelease::default();
    for line in text.lines() {
        let line = line.trim();
        if line.starts_with('#') {
            continue;
        }
        let Some((key, value)) = line.split_once('=') else {
            continue;
        };
        let value = unquote(value);
        match key.trim() {
            "ID" => out.id = value.to_ascii_lowercase(),
            "ID_LIKE" => out.id_like = value.split_whitespace().map(str::to_ascii_lowercase).collect(),
            "VERSION_ID" => out.version_id = Some(value),
            "VERSION_CODENAME" => out.version_codename = Some(value).filter(|v| !v.is_empty()),
            "PRETTY_NAME" => out.pretty_name = Some(value),
            _ => {}
        }
    }
    out
}
