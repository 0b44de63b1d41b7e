//! Deciding whether a package version is affected by an OSV record, following the schema's
//! evaluation algorithm.
//!
//! A version is affected by an `affected` entry when it is listed in `versions`, or when a
//! range's events put it inside: events are sorted by version (`introduced: "0"` first), and
//! walking them, `introduced` (inclusive) switches "affected" on, `fixed` (exclusive) and
//! `last_affected` (inclusive, so anything above it) switch it off. `limit` events bound the
//! range from above (`*` is infinity). `GIT` ranges are skipped: an installed package has no
//! commit to place in a repository's history.
//!
//! The schema leaves events at equal versions unordered, and the order matters. Here a
//! closing event (`fixed`, `last_affected`) at a tie closes the interval already open, and an
//! `introduced` pairs with a closing event at its own version only when none is open: so
//! adjacent ranges `[1.0, 2.0)` `[2.0, 3.0)` leave 2.0 affected, a single-version range
//! `[2.0, 2.0]` does not leak past 2.0, and an empty range `[2.0, 2.0)` (RustSec writes these
//! for "patched from 2.0 on") affects nothing.

use std::cmp::Ordering;

use serde::{Deserialize, Serialize};

use crate::ecosystem::{EcosystemId, ecosystem_applies};
use crate::inventory::Package;
use crate::osv::{Affected, EventKind, Range, RangeType, Record};
use crate::severity::{SeverityInfo, record_severity};
use crate::version::Scheme;

/// A record that affects a package.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Match {
    /// The record's id (`ALPINE-CVE-2014-0138`, `PYSEC-2023-192`, `RUSTSEC-2017-0002`).
    pub id: String,
    /// Other names of the vulnerability: the record's `upstream` then `aliases`.
    pub aliases: Vec<String>,
    /// CVE identifiers among the id, `upstream` and `aliases` (what ECR shows).
    pub cves: Vec<String>,
    pub summary: Option<String>,
    /// The ecosystem string of the first entry that matched (`Alpine:v3.11`).
    pub ecosystem: String,
    /// Versions that fix it for this package, oldest first; empty when no fix is known.
    pub fixed_versions: Vec<String>,
    pub severity: SeverityInfo,
}

impl Match {
    /// The oldest fixing version, the one to upgrade to.
    pub fn fixed_in(&self) -> Option<&str> {
        self.fixed_versions.first().map(String::as_str)
    }
}

/// The scheme that orders a range's versions: `SEMVER` ranges are SemVer whatever the
/// ecosystem; `ECOSYSTEM` ranges use the ecosystem's scheme (none for unknown ecosystems).
fn range_scheme(range: &Range, ecosystem_scheme: Option<Scheme>) -> Option<Scheme> {
    match range.kind {
        RangeType::Semver => Some(Scheme::SemVer),
        RangeType::Ecosystem => ecosystem_scheme,
        RangeType::Git | RangeType::Unknown => None,
    }
}

/// Tie order for the sort; the walk regroups ties anyway, this only makes it deterministic.
fn kind_rank(kind: EventKind) -> u8 {
    match kind {
        EventKind::Fixed => 0,
        EventKind::Introduced => 1,
        EventKind::LastAffected => 2,
        EventKind::Limit => 3,
    }
}

/// Whether `version` falls in `range` under `scheme` (the schema's `IncludedInRanges` for one
/// range, including `BeforeLimits`).
pub fn range_affects(range: &Range, scheme: Scheme, version: &str) -> bool {
    let events: Vec<(EventKind, &str)> = range.events.iter().filter_map(|e| e.kind()).collect();
    let mut limits = events.iter().filter(|(k, _)| *k == EventKind::Limit).map(|&(_, v)| v).peekable();
    if limits.peek().is_some() && !limits.any(|l| l.contains('*') || scheme.compare(version, l) == Ordering::Less) {
        return false;
    }
    let is_zero = |k: EventKind, v: &str| k == EventKind::Introduced && v.trim() == "0";
    let mut timeline: Vec<(EventKind, &str)> = events.into_iter().filter(|(k, _)| *k != EventKind::Limit).collect();
    timeline.sort_by(|&(ka, va), &(kb, vb)| match (is_zero(ka, va), is_zero(kb, vb)) {
        (true, true) => Ordering::Equal,
        (true, false) => Ordering::Less,
        (false, true) => Ordering::Greater,
        (false, false) => scheme.compare(va, vb).then(kind_rank(ka).cmp(&kind_rank(kb))),
    });
    // Walk the timeline a group of equal versions at a time. Within a group, closing events
    // pair with an interval already open and `introduced` with a closing event of its own
    // group: adjacent ranges [1.0, 2.0) [2.0, 3.0) keep 2.0 affected, while an empty range
    // [2.0, 2.0) (as some databases write for "every version from 2.0 is fine") opens and
    // closes at once.
    let apply = |vulnerable: bool, (kind, at): (EventKind, &str)| {
        let ord = scheme.compare(version, at);
        match kind {
            EventKind::Introduced if is_zero(kind, at) || ord != Ordering::Less => true,
            EventKind::Fixed if ord != Ordering::Less => false,
            EventKind::LastAffected if ord == Ordering::Greater => false,
            _ => vulnerable,
        }
    };
    let mut vulnerable = false;
    let mut rest = timeline.as_slice();
    while let Some(&(kind, at)) = rest.first() {
        let len = if is_zero(kind, at) {
            1
        } else {
            rest.iter().take_while(|&&(k, v)| !is_zero(k, v) && scheme.compare(v, at) == Ordering::Equal).count()
        };
        let (group, tail) = rest.split_at(len);
        let (opens, closes): (Vec<_>, Vec<_>) = group.iter().partition(|(k, _)| *k == EventKind::Introduced);
        let ordered = if vulnerable { closes.into_iter().chain(opens) } else { opens.into_iter().chain(closes) };
        vulnerable = ordered.fold(vulnerable, |state, &event| apply(state, event));
        rest = tail;
    }
    vulnerable
}

/// The oldest `fixed` event of `range` newer than `version` that is not itself affected (with
/// adjacent ranges `[0, 3.1.1)` `[3.1.1, 3.1.3)`, the fix for 3.0 is 3.1.3).
fn next_fix<'a>(range: &'a Range, scheme: Scheme, version: &str) -> Option<&'a str> {
    let mut fixes: Vec<&str> = range
        .events
        .iter()
        .filter_map(|e| e.fixed.as_deref())
        .filter(|f| scheme.compare(f, version) == Ordering::Greater)
        .collect();
    fixes.sort_by(|a, b| scheme.compare(a, b));
    fixes.into_iter().find(|f| !range_affects(range, scheme, f))
}

/// Whether `version` is affected by one `affected` entry, and if so the fixes that apply:
/// for each range holding the version, its oldest fix above the version (or, when only the
/// `versions` list names it, the oldest fix above it in each range).
pub fn entry_affects(entry: &Affected, ecosystem_scheme: Option<Scheme>, version: &str) -> Option<Vec<String>> {
    let listed = entry.versions.iter().any(|v| match ecosystem_scheme {
        Some(s) => s.equal(v, version),
        None => v == version,
    });
    let ranges: Vec<(&Range, Scheme)> =
        entry.ranges.iter().filter_map(|r| range_scheme(r, ecosystem_scheme).map(|s| (r, s))).collect();
    let holding: Vec<&(&Range, Scheme)> = ranges.iter().filter(|(r, s)| range_affects(r, *s, version)).collect();
    if !listed && holding.is_empty() {
        return None;
    }
    let sources: Vec<&(&Range, Scheme)> = if holding.is_empty() { ranges.iter().collect() } else { holding };
    let mut fixes: Vec<(String, Scheme)> = Vec::new();
    for (range, scheme) in sources {
        if let Some(fix) = next_fix(range, *scheme, version)
            && !fixes.iter().any(|(f, _)| f == fix)
        {
            fixes.push((fix.to_string(), *scheme));
        }
    }
    fixes.sort_by(|(a, s), (b, _)| s.compare(a, b));
    Some(fixes.into_iter().map(|(f, _)| f).collect())
}

/// Whether `record` affects `package_name` at `version` in `ecosystem`.
///
/// `ecosystem` is the package's OSV ecosystem, with its distribution release when there is
/// one (`Alpine:v3.19`, `Debian:12`, `PyPI`); entries scoped to other releases are skipped
/// (see [`ecosystem_applies`]). Package names compare as the ecosystem does (PEP 503 for
/// PyPI). For Debian and Ubuntu, records name **source** packages: pass the source name and
/// version. Withdrawn records match nothing.
pub fn affected(record: &Record, ecosystem: &str, package_name: &str, version: &str) -> Option<Match> {
    if record.is_withdrawn() || version.trim().is_empty() {
        return None;
    }
    let image = EcosystemId::parse(ecosystem);
    let scheme = image.ecosystem.scheme();
    let mut found: Option<Match> = None;
    for entry in &record.affected {
        if !ecosystem_applies(&entry.package.ecosystem, ecosystem, None)
            || !image.ecosystem.same_package(&entry.package.name, package_name)
        {
            continue;
        }
        let Some(fixes) = entry_affects(entry, scheme, version) else {
            continue;
        };
        match &mut found {
            None => {
                let mut aliases = record.upstream.clone();
                aliases.extend(record.aliases.iter().filter(|a| !record.upstream.contains(a)).cloned());
                found = Some(Match {
                    id: record.id.clone(),
                    aliases,
                    cves: record.cve_ids(),
                    summary: record.summary.clone(),
                    ecosystem: entry.package.ecosystem.clone(),
                    fixed_versions: fixes,
                    severity: record_severity(record, Some(entry)),
                });
            }
            Some(m) => {
                // Several entries can apply (a release-less image against per-release entries).
                for fix in fixes {
                    if !m.fixed_versions.contains(&fix) {
                        m.fixed_versions.push(fix);
                    }
                }
                if let Some(s) = scheme {
                    m.fixed_versions.sort_by(|a, b| s.compare(a, b));
                }
                let severity = record_severity(record, Some(entry));
                if severity.level > m.severity.level {
                    m.severity = severity;
                }
            }
        }
    }
    found
}

/// [`affected`] for an inventoried package, under the name and version OSV keys it by
/// (the source package for Debian and Ubuntu, the origin for Alpine).
pub fn affected_package(record: &Record, package: &Package) -> Option<Match> {
    affected(record, &package.ecosystem, package.osv_name(), package.osv_version())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::osv::{Event, Package as OsvPackage};

    fn range(kind: RangeType, events: Vec<Event>) -> Range {
        Range { kind, repo: None, events, database_specific: None }
    }

    fn semver(events: Vec<Event>) -> Range {
        range(RangeType::Semver, events)
    }

    fn record(ecosystem: &str, name: &str, ranges: Vec<Range>, versions: &[&str]) -> Record {
        Record {
            id: "TEST-0001".into(),
            aliases: vec!["CVE-2024-0001".into()],
            affected: vec![Affected {
                package: OsvPackage { ecosystem: ecosystem.into(), name: name.into(), purl: None },
                ranges,
                versions: versions.iter().map(|v| v.to_string()).collect(),
                ..Affected::default()
            }],
            ..Record::default()
        }
    }

    use Event as E;

    #[test]
    fn introduced_inclusive_fixed_exclusive() {
        let r = semver(vec![E::introduced("1.0.0"), E::fixed("1.0.2")]);
        assert!(!range_affects(&r, Scheme::SemVer, "0.9.9"));
        assert!(range_affects(&r, Scheme::SemVer, "1.0.0"));
        assert!(range_affects(&r, Scheme::SemVer, "1.0.1"));
        assert!(range_affects(&r, Scheme::SemVer, "1.0.2-rc.1"));
        assert!(!range_affects(&r, Scheme::SemVer, "1.0.2"));
        assert!(!range_affects(&r, Scheme::SemVer, "2.0.0"));
    }

    #[test]
    fn introduced_zero_means_from_the_beginning() {
        let r = semver(vec![E::introduced("0"), E::fixed("1.0.2")]);
        assert!(range_affects(&r, Scheme::SemVer, "0.0.0-alpha"));
        assert!(range_affects(&r, Scheme::SemVer, "0.1.0"));
        assert!(!range_affects(&r, Scheme::SemVer, "1.0.2"));
        // "0" is the beginning even where "0" is itself a version of the scheme.
        let r = range(RangeType::Ecosystem, vec![E::introduced("0"), E::fixed("1.0-r0")]);
        assert!(range_affects(&r, Scheme::Apk, "0.9-r3"));
        let unfixed = semver(vec![E::introduced("0")]);
        assert!(range_affects(&unfixed, Scheme::SemVer, "99.0.0"));
    }

    #[test]
    fn last_affected_is_inclusive() {
        let r = range(RangeType::Ecosystem, vec![E::introduced("0"), E::last_affected("2.1.214")]);
        assert!(range_affects(&r, Scheme::Maven, "2.1.214"));
        assert!(range_affects(&r, Scheme::Maven, "2.1.99"));
        assert!(!range_affects(&r, Scheme::Maven, "2.1.215"));
        // A single-version range [2.0, 2.0].
        let r = range(RangeType::Ecosystem, vec![E::last_affected("2.0"), E::introduced("2.0")]);
        assert!(range_affects(&r, Scheme::Pep440, "2.0"));
        assert!(!range_affects(&r, Scheme::Pep440, "2.0.1"));
        assert!(!range_affects(&r, Scheme::Pep440, "1.9"));
    }

    #[test]
    fn several_pairs_in_one_range() {
        let r = semver(vec![E::introduced("1.0.0"), E::fixed("1.0.2"), E::introduced("3.0.0"), E::fixed("3.2.5")]);
        let cases =
            [("0.5.0", false), ("1.0.1", true), ("1.0.2", false), ("2.9.9", false), ("3.1.0", true), ("3.2.5", false)];
        for (v, want) in cases {
            assert_eq!(range_affects(&r, Scheme::SemVer, v), want, "{v}");
        }
        // Adjacent ranges: 2.0 closes the first and opens the second.
        let r = semver(vec![E::introduced("1.0.0"), E::fixed("2.0.0"), E::introduced("2.0.0"), E::fixed("3.0.0")]);
        assert!(range_affects(&r, Scheme::SemVer, "2.0.0"));
        assert!(range_affects(&r, Scheme::SemVer, "2.5.0"));
        assert!(!range_affects(&r, Scheme::SemVer, "3.0.0"));
    }

    #[test]
    fn the_fix_offered_is_not_itself_affected() {
        // PYSEC-2022-236 (pyspark): [0, 3.1.1), [3.2.0, 3.2.2), [3.1.1, 3.1.3).
        let r = record(
            "PyPI",
            "pyspark",
            vec![range(
                RangeType::Ecosystem,
                vec![
                    E::introduced("0"),
                    E::fixed("3.1.1"),
                    E::introduced("3.2.0"),
                    E::fixed("3.2.2"),
                    E::introduced("3.1.1"),
                    E::fixed("3.1.3"),
                ],
            )],
            &[],
        );
        assert_eq!(affected(&r, "PyPI", "pyspark", "3.0.0").unwrap().fixed_in(), Some("3.1.3"));
        assert_eq!(affected(&r, "PyPI", "pyspark", "3.1.1").unwrap().fixed_in(), Some("3.1.3"));
        assert_eq!(affected(&r, "PyPI", "pyspark", "3.2.1").unwrap().fixed_in(), Some("3.2.2"));
        assert!(affected(&r, "PyPI", "pyspark", "3.1.3").is_none());
    }

    #[test]
    fn empty_ranges_affect_nothing() {
        // RUSTSEC-2024-0399 (rustls): [0.23.0, 0.23.0) then [0.23.13, 0.23.18).
        let r =
            semver(vec![E::introduced("0.23.0"), E::fixed("0.23.0"), E::introduced("0.23.13"), E::fixed("0.23.18")]);
        assert!(!range_affects(&r, Scheme::SemVer, "0.23.0"));
        assert!(!range_affects(&r, Scheme::SemVer, "0.23.5"));
        assert!(range_affects(&r, Scheme::SemVer, "0.23.13"));
        assert!(!range_affects(&r, Scheme::SemVer, "0.23.18"));
        // RUSTSEC-2022-0012 (arrow2): a trailing [0.10.0, 0.10.0) means "fine from 0.10.0".
        let r = semver(vec![E::introduced("0.9.0"), E::fixed("0.9.2"), E::introduced("0.10.0"), E::fixed("0.10.0")]);
        assert!(range_affects(&r, Scheme::SemVer, "0.9.1"));
        assert!(!range_affects(&r, Scheme::SemVer, "0.10.0"));
        assert!(!range_affects(&r, Scheme::SemVer, "0.17.0"));
        // The order the events are listed in does not matter.
        let r = semver(vec![E::fixed("0.10.0"), E::fixed("0.9.2"), E::introduced("0.10.0"), E::introduced("0.9.0")]);
        assert!(!range_affects(&r, Scheme::SemVer, "0.17.0"));
        assert!(range_affects(&r, Scheme::SemVer, "0.9.1"));
    }

    #[test]
    fn events_are_sorted_before_the_walk() {
        // The shape of PYSEC-2023-192: the later pair is listed first.
        let r = range(
            RangeType::Ecosystem,
            vec![E::introduced("2.0.0"), E::fixed("2.0.6"), E::introduced("0"), E::fixed("1.26.17")],
        );
        assert!(range_affects(&r, Scheme::Pep440, "1.26.16"));
        assert!(!range_affects(&r, Scheme::Pep440, "1.26.17"));
        assert!(range_affects(&r, Scheme::Pep440, "2.0.5"));
        assert!(!range_affects(&r, Scheme::Pep440, "2.0.6"));
        // Sorting is by the scheme's order, not the strings': 1.10 comes after 1.9.
        let r = range(RangeType::Ecosystem, vec![E::fixed("1.10"), E::introduced("1.9")]);
        assert!(range_affects(&r, Scheme::Pep440, "1.9.5"));
    }

    #[test]
    fn limits_bound_the_range() {
        let r = semver(vec![E::introduced("1.0.0"), E::limit("2.0.0")]);
        assert!(range_affects(&r, Scheme::SemVer, "1.5.0"));
        assert!(!range_affects(&r, Scheme::SemVer, "2.0.0"));
        let r = semver(vec![E::introduced("1.0.0"), E::limit("*")]);
        assert!(range_affects(&r, Scheme::SemVer, "9.0.0"));
    }

    #[test]
    fn versions_list_and_git_ranges() {
        let git = range(RangeType::Git, vec![E::introduced("0"), E::fixed("644124ecd0b6e417c527191f866daa05a5a2056d")]);
        let r = record("PyPI", "keylime", vec![git], &["6.3.1", "7.0.0"]);
        assert!(affected(&r, "PyPI", "keylime", "7.0.0").is_some());
        // PEP 440 equality: 7.0 is 7.0.0.
        assert!(affected(&r, "PyPI", "keylime", "7.0").is_some());
        // Not listed, and the GIT range is not evaluated.
        assert!(affected(&r, "PyPI", "keylime", "6.9.0").is_none());
    }

    #[test]
    fn match_carries_fixes_and_severity() {
        let mut r = record(
            "crates.io",
            "hyper",
            vec![semver(vec![
                E::introduced("0.0.0-0"),
                E::fixed("0.9.18"),
                E::introduced("0.10.0"),
                E::fixed("0.10.2"),
            ])],
            &[],
        );
        r.severity = vec![crate::osv::SeverityEntry {
            kind: "CVSS_V3".into(),
            score: "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H".into(),
        }];
        let m = affected(&r, "crates.io", "hyper", "0.10.1").unwrap();
        assert_eq!(m.id, "TEST-0001");
        assert_eq!(m.cves, vec!["CVE-2024-0001".to_string()]);
        assert_eq!(m.fixed_versions, vec!["0.10.2".to_string()]);
        assert_eq!(m.fixed_in(), Some("0.10.2"));
        assert_eq!(m.severity.level, crate::Severity::Critical);
        assert_eq!(affected(&r, "crates.io", "hyper", "0.9.0").unwrap().fixed_in(), Some("0.9.18"));
        assert!(affected(&r, "crates.io", "hyper", "0.9.18").is_none());
        assert!(affected(&r, "crates.io", "hyper-util", "0.9.0").is_none());
        assert!(affected(&r, "npm", "hyper", "0.9.0").is_none());
        // Unfixed: no fix to offer.
        let r = record("npm", "x", vec![semver(vec![E::introduced("1.0.0")])], &[]);
        assert!(affected(&r, "npm", "x", "1.2.0").unwrap().fixed_versions.is_empty());
    }

    #[test]
    fn names_compare_as_the_ecosystem_does() {
        let r =
            record("PyPI", "PyYAML", vec![range(RangeType::Ecosystem, vec![E::introduced("0"), E::fixed("5.4")])], &[]);
        assert!(affected(&r, "PyPI", "pyyaml", "5.3.1").is_some());
        assert!(affected(&r, "PyPI", "py_yaml", "5.3.1").is_none());
        let r = record("npm", "Lodash", vec![semver(vec![E::introduced("0")])], &[]);
        assert!(affected(&r, "npm", "lodash", "4.0.0").is_none());
    }

    #[test]
    fn withdrawn_records_match_nothing() {
        let mut r = record("npm", "x", vec![semver(vec![E::introduced("0")])], &[]);
        assert!(affected(&r, "npm", "x", "1.0.0").is_some());
        r.withdrawn = Some("2024-01-01T00:00:00Z".into());
        assert!(affected(&r, "npm", "x", "1.0.0").is_none());
    }

    #[test]
    fn distribution_releases_and_source_packages() {
        let mut r = record(
            "Debian:12",
            "openssl",
            vec![range(RangeType::Ecosystem, vec![E::introduced("0"), E::fixed("3.0.11-1~deb12u1")])],
            &[],
        );
        r.affected.push(Affected {
            package: OsvPackage { ecosystem: "Debian:11".into(), name: "openssl".into(), purl: None },
            ranges: vec![range(RangeType::Ecosystem, vec![E::introduced("0"), E::fixed("1.1.1w-0+deb11u1")])],
            ..Affected::default()
        });
        let m = affected(&r, "Debian:12", "openssl", "3.0.9-1").unwrap();
        assert_eq!(m.fixed_versions, vec!["3.0.11-1~deb12u1".to_string()]);
        assert_eq!(m.ecosystem, "Debian:12");
        assert!(affected(&r, "Debian:12", "openssl", "3.0.11-1~deb12u1").is_none());
        assert!(affected(&r, "Debian:11", "openssl", "1.1.1n-0+deb11u5").is_some());
        // The binary libssl3 is matched through its source package.
        let mut libssl = crate::Package::new("Debian:12", "libssl3", "3.0.9-1");
        libssl.source_name = Some("openssl".into());
        assert!(affected_package(&r, &libssl).is_some());
        assert!(affected(&r, "Debian:12", "libssl3", "3.0.9-1").is_none());
        // Release unknown: both entries apply and both fixes are offered.
        let m = affected(&r, "Debian", "openssl", "1.0.0-1").unwrap();
        assert_eq!(m.fixed_versions.len(), 2);
        assert!(affected(&r, "Ubuntu:22.04", "openssl", "1.0.0-1").is_none());
    }

    #[test]
    fn unknown_ecosystems_only_match_listed_versions() {
        let r = record(
            "Hex",
            "plug",
            vec![range(RangeType::Ecosystem, vec![E::introduced("0"), E::fixed("1.5.1")])],
            &["1.5.0"],
        );
        assert!(affected(&r, "Hex", "plug", "1.5.0").is_some());
        assert!(affected(&r, "Hex", "plug", "1.4.0").is_none());
        // SEMVER ranges are SemVer in any ecosystem.
        let r = record("Hex", "plug", vec![semver(vec![E::introduced("0"), E::fixed("1.5.1")])], &[]);
        assert!(affected(&r, "Hex", "plug", "1.4.0").is_some());
    }
}
