//! OSV ecosystem names, their version schemes, release suffixes and package-name rules.
//!
//! An OSV ecosystem string is a base name with an optional `:`-separated suffix: `Debian:12`,
//! `Alpine:v3.19`, `Ubuntu:22.04:LTS`, `Ubuntu:Pro:18.04:LTS`, `Rocky Linux:9`,
//! `Red Hat:enterprise_linux:9::baseos` (a CPE without its prefix), or, for language
//! ecosystems, a repository (`Maven:https://maven.google.com`). For distributions the suffix
//! scopes the record to a release; [`ecosystem_applies`] decides whether a record's scope
//! covers an image.

use std::fmt;

use crate::version::Scheme;

/// The base of an OSV ecosystem string.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Ecosystem {
    Debian,
    Ubuntu,
    Alpine,
    Wolfi,
    Chainguard,
    RockyLinux,
    AlmaLinux,
    RedHat,
    CratesIo,
    Npm,
    PyPI,
    Go,
    Maven,
    /// Any other ecosystem, by its OSV name.
    Other(String),
}

impl Ecosystem {
    /// The ecosystem named by an OSV base name (no suffix). Names are matched exactly as OSV
    /// spells them, with a case-insensitive second chance.
    pub fn from_name(name: &str) -> Ecosystem {
        let known = [
            ("Debian", Ecosystem::Debian),
            ("Ubuntu", Ecosystem::Ubuntu),
            ("Alpine", Ecosystem::Alpine),
            ("Wolfi", Ecosystem::Wolfi),
            ("Chainguard", Ecosystem::Chainguard),
            ("Rocky Linux", Ecosystem::RockyLinux),
            ("AlmaLinux", Ecosystem::AlmaLinux),
            ("Red Hat", Ecosystem::RedHat),
            ("crates.io", Ecosystem::CratesIo),
            ("npm", Ecosystem::Npm),
            ("PyPI", Ecosystem::PyPI),
            ("Go", Ecosystem::Go),
            ("Maven", Ecosystem::Maven),
        ];
        let name = name.trim();
        known
            .iter()
            .find(|(n, _)| *n == name)
            .or_else(|| known.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)))
            .map_or_else(|| Ecosystem::Other(name.to_string()), |(_, e)| e.clone())
    }

    /// The OSV base name.
    pub fn name(&self) -> &str {
        match self {
            Ecosystem::Debian => "Debian",
            Ecosystem::Ubuntu => "Ubuntu",
            Ecosystem::Alpine => "Alpine",
            Ecosystem::Wolfi => "Wolfi",
            Ecosystem::Chainguard => "Chainguard",
            Ecosystem::RockyLinux => "Rocky Linux",
            Ecosystem::AlmaLinux => "AlmaLinux",
            Ecosystem::RedHat => "Red Hat",
            Ecosystem::CratesIo => "crates.io",
            Ecosystem::Npm => "npm",
            Ecosystem::PyPI => "PyPI",
            Ecosystem::Go => "Go",
            Ecosystem::Maven => "Maven",
            Ecosystem::Other(name) => name,
        }
    }

    /// The version ordering of `ECOSYSTEM` ranges, if this ecosystem has a known one.
    pub fn scheme(&self) -> Option<Scheme> {
        Some(match self {
            Ecosystem::Debian | Ecosystem::Ubuntu => Scheme::Dpkg,
            Ecosystem::Alpine | Ecosystem::Wolfi | Ecosystem::Chainguard => Scheme::Apk,
            Ecosystem::RockyLinux | Ecosystem::AlmaLinux | Ecosystem::RedHat => Scheme::Rpm,
            Ecosystem::CratesIo | Ecosystem::Npm => Scheme::SemVer,
            Ecosystem::PyPI => Scheme::Pep440,
            Ecosystem::Go => Scheme::Go,
            Ecosystem::Maven => Scheme::Maven,
            Ecosystem::Other(_) => return None,
        })
    }

    /// Whether this is an operating-system distribution, whose suffix names a release.
    pub fn is_distribution(&self) -> bool {
        matches!(
            self,
            Ecosystem::Debian
                | Ecosystem::Ubuntu
                | Ecosystem::Alpine
                | Ecosystem::Wolfi
                | Ecosystem::Chainguard
                | Ecosystem::RockyLinux
                | Ecosystem::AlmaLinux
                | Ecosystem::RedHat
        )
    }

    /// The key under which package names compare: PEP 503 for PyPI, the name itself
    /// elsewhere.
    pub fn normalize_name(&self, name: &str) -> String {
        match self {
            Ecosystem::PyPI => pep503_normalize(name),
            _ => name.to_string(),
        }
    }

    /// Whether two package names denote the same package in this ecosystem.
    pub fn same_package(&self, a: &str, b: &str) -> bool {
        match self {
            Ecosystem::PyPI => pep503_normalize(a) == pep503_normalize(b),
            _ => a == b,
        }
    }
}

impl fmt::Display for Ecosystem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A parsed OSV ecosystem string: the base and the suffix after the first `:`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct EcosystemId {
    pub ecosystem: Ecosystem,
    /// The suffix (`12`, `v3.19`, `22.04:LTS`, `enterprise_linux:9::baseos`, a repository
    /// URL for Maven...), if any.
    pub release: Option<String>,
}

impl EcosystemId {
    /// Parses `Base[:suffix]`.
    pub fn parse(s: &str) -> EcosystemId {
        let s = s.trim();
        let (base, release) = match s.split_once(':') {
            Some((base, rest)) if !rest.trim().is_empty() => (base, Some(rest.trim().to_string())),
            Some((base, _)) => (base, None),
            None => (s, None),
        };
        EcosystemId { ecosystem: Ecosystem::from_name(base), release }
    }

    /// The release as a dotted version (`3.19` for `v3.19`, `22.04` for `Pro:22.04:LTS`,
    /// `9` for `enterprise_linux:9::baseos`), or the suffix itself when it has no numbers
    /// (`sid`, `edge`). `None` for non-distributions and unscoped strings.
    pub fn release_version(&self) -> Option<String> {
        if !self.ecosystem.is_distribution() {
            return None;
        }
        self.release.as_deref().map(|r| release_version(&self.ecosystem, r))
    }
}

impl fmt::Display for EcosystemId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.release {
            Some(r) => write!(f, "{}:{r}", self.ecosystem),
            None => write!(f, "{}", self.ecosystem),
        }
    }
}

fn starts_with_digit(s: &str) -> bool {
    s.as_bytes().first().is_some_and(u8::is_ascii_digit)
}

/// Extracts the comparable release from a distribution's ecosystem suffix.
fn release_version(ecosystem: &Ecosystem, suffix: &str) -> String {
    let suffix = suffix.trim();
    let found = match ecosystem {
        // `v3.19`, `3.19.1`, `edge`.
        Ecosystem::Alpine | Ecosystem::Wolfi | Ecosystem::Chainguard => {
            Some(suffix.strip_prefix('v').filter(|r| starts_with_digit(r)).unwrap_or(suffix))
        }
        // `22.04:LTS`, `Pro:18.04:LTS`, and CPE-like `enterprise_linux:9::baseos`: the first
        // `:`-separated field that starts with a digit.
        _ => suffix.split(':').find(|f| starts_with_digit(f)),
    };
    found.unwrap_or(suffix).to_string()
}

/// Whether release `record` (from a record's ecosystem) covers release `image`: the record's
/// dotted components must be a prefix of the image's (`12` covers `12.4`, `3.19` covers
/// `3.19.1`, `8.4` does not cover `8.9`). Non-numeric releases must match exactly.
fn release_covers(record: &str, image: &str) -> bool {
    let rec: Vec<&str> = record.split('.').collect();
    let img: Vec<&str> = image.split('.').collect();
    if rec.len() > img.len() {
        return false;
    }
    rec.iter().zip(&img).all(|(r, i)| {
        let numeric = |s: &str| !s.is_empty() && s.bytes().all(|c| c.is_ascii_digit());
        if numeric(r) && numeric(i) {
            r.trim_start_matches('0') == i.trim_start_matches('0')
        } else {
            r.eq_ignore_ascii_case(i)
        }
    })
}

/// Whether a record entry for `record_ecosystem` applies to an image (or package) of
/// `image_ecosystem` at release `image_release`.
///
/// The bases must name the same ecosystem. A record without a release applies to every
/// release. For distributions, a release-scoped record applies when its release covers the
/// image's: `Alpine:v3.19` applies to Alpine `3.19` and `3.19.1`, not to `3.18`. The image's
/// release may come as `image_release` or as the suffix of `image_ecosystem`
/// (`Alpine:v3.19`). When the image's release is unknown, release-scoped records are taken to
/// apply: the scanner reports the vulnerability rather than miss it. For language
/// ecosystems the suffix names a repository, not a release, and is ignored.
pub fn ecosystem_applies(record_ecosystem: &str, image_ecosystem: &str, image_release: Option<&str>) -> bool {
    let record = EcosystemId::parse(record_ecosystem);
    let image = EcosystemId::parse(image_ecosystem);
    if record.ecosystem != image.ecosystem {
        return false;
    }
    if !record.ecosystem.is_distribution() {
        return true;
    }
    let Some(record_release) = record.release_version() else {
        return true;
    };
    let image_release = match image_release.map(str::trim).filter(|r| !r.is_empty()) {
        Some(r) => Some(release_version(&image.ecosystem, r)),
        None => image.release_version(),
    };
    match image_release {
        Some(image_release) => release_covers(&record_release, &image_release),
        None => true,
    }
}

/// PEP 503 name normalization: lowercase, and every run of `-`, `_` and `.` becomes one `-`.
pub fn pep503_normalize(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    let mut in_run = false;
    for c in name.trim().chars() {
        if matches!(c, '-' | '_' | '.') {
            if !in_run {
                out.push('-');
            }
            in_run = true;
        } else {
            out.extend(c.to_lowercase());
            in_run = false;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_bases_and_suffixes() {
        let id = EcosystemId::parse("Debian:12");
        assert_eq!(id.ecosystem, Ecosystem::Debian);
        assert_eq!(id.release.as_deref(), Some("12"));
        assert_eq!(EcosystemId::parse("Alpine:v3.19").release_version().as_deref(), Some("3.19"));
        assert_eq!(EcosystemId::parse("Ubuntu:22.04:LTS").release_version().as_deref(), Some("22.04"));
        assert_eq!(EcosystemId::parse("Ubuntu:Pro:18.04:LTS").release_version().as_deref(), Some("18.04"));
        assert_eq!(EcosystemId::parse("Red Hat:rhel_aus:8.4::appstream").release_version().as_deref(), Some("8.4"));
        assert_eq!(EcosystemId::parse("Rocky Linux:9").ecosystem, Ecosystem::RockyLinux);
        assert_eq!(EcosystemId::parse("PyPI").release, None);
        assert_eq!(EcosystemId::parse("Maven:https://maven.google.com").release_version(), None);
        assert_eq!(EcosystemId::parse("Hex").ecosystem, Ecosystem::Other("Hex".into()));
        assert_eq!(EcosystemId::parse("Alpine:v3.19").to_string(), "Alpine:v3.19");
    }

    #[test]
    fn schemes_per_ecosystem() {
        assert_eq!(Ecosystem::Debian.scheme(), Some(Scheme::Dpkg));
        assert_eq!(Ecosystem::Ubuntu.scheme(), Some(Scheme::Dpkg));
        assert_eq!(Ecosystem::Alpine.scheme(), Some(Scheme::Apk));
        assert_eq!(Ecosystem::from_name("AlmaLinux").scheme(), Some(Scheme::Rpm));
        assert_eq!(Ecosystem::from_name("Red Hat").scheme(), Some(Scheme::Rpm));
        assert_eq!(Ecosystem::from_name("crates.io").scheme(), Some(Scheme::SemVer));
        assert_eq!(Ecosystem::from_name("npm").scheme(), Some(Scheme::SemVer));
        assert_eq!(Ecosystem::from_name("PyPI").scheme(), Some(Scheme::Pep440));
        assert_eq!(Ecosystem::from_name("Go").scheme(), Some(Scheme::Go));
        assert_eq!(Ecosystem::from_name("Maven").scheme(), Some(Scheme::Maven));
        assert_eq!(Ecosystem::from_name("pypi"), Ecosystem::PyPI);
        assert_eq!(Ecosystem::from_name("NuGet").scheme(), None);
    }

    #[test]
    fn release_applicability() {
        assert!(ecosystem_applies("Alpine:v3.19", "Alpine", Some("3.19")));
        assert!(ecosystem_applies("Alpine:v3.19", "Alpine", Some("3.19.1")));
        assert!(ecosystem_applies("Alpine:v3.19", "Alpine:v3.19", None));
        assert!(!ecosystem_applies("Alpine:v3.19", "Alpine", Some("3.18.4")));
        assert!(!ecosystem_applies("Alpine:v3.1", "Alpine", Some("3.19.0")));
        assert!(ecosystem_applies("Alpine", "Alpine", Some("3.19")));
        assert!(!ecosystem_applies("Alpine:v3.19", "Debian", Some("3.19")));
        assert!(ecosystem_applies("Debian:12", "Debian:12", None));
        assert!(!ecosystem_applies("Debian:11", "Debian:12", None));
        assert!(ecosystem_applies("Ubuntu:22.04:LTS", "Ubuntu:22.04", None));
        assert!(ecosystem_applies("Ubuntu:Pro:22.04:LTS", "Ubuntu", Some("22.04")));
        assert!(!ecosystem_applies("Ubuntu:20.04:LTS", "Ubuntu", Some("22.04")));
        assert!(ecosystem_applies("Rocky Linux:9", "Rocky Linux", Some("9.3")));
        assert!(ecosystem_applies("Red Hat:enterprise_linux:9::baseos", "Red Hat", Some("9.3")));
        assert!(!ecosystem_applies("Red Hat:rhel_aus:8.4::appstream", "Red Hat", Some("8.9")));
        assert!(ecosystem_applies("Debian:sid", "Debian", Some("sid")));
        // Unknown image release: report rather than miss.
        assert!(ecosystem_applies("Alpine:v3.19", "Alpine", None));
        // Language ecosystems ignore the repository suffix.
        assert!(ecosystem_applies("Maven:https://maven.google.com", "Maven", None));
        assert!(ecosystem_applies("PyPI", "PyPI", None));
        assert!(!ecosystem_applies("PyPI", "npm", None));
    }

    #[test]
    fn pep503() {
        assert_eq!(pep503_normalize("Django"), "django");
        assert_eq!(pep503_normalize("zope.interface"), "zope-interface");
        assert_eq!(pep503_normalize("Foo__Bar-._baz"), "foo-bar-baz");
        assert_eq!(pep503_normalize("typing_extensions"), "typing-extensions");
        assert!(Ecosystem::PyPI.same_package("PyYAML", "pyyaml"));
        assert!(Ecosystem::PyPI.same_package("ruamel.yaml", "ruamel-yaml"));
        assert!(!Ecosystem::Npm.same_package("Lodash", "lodash"));
    }
}
