//! Matching against real OSV records from Berth's vulnerability data (copied into
//! `tests/fixtures/`; see the README there for their sources and licenses).

use berth_vuln::osv::RangeType;
use berth_vuln::severity::SeveritySource;
use berth_vuln::{Package, Record, Severity, affected, affected_package};

fn fixture(name: &str) -> Record {
    let path = format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    Record::from_json(&text).unwrap()
}

#[test]
fn alpine_record_per_release_fixes() {
    // gd: fixed in 2.2.1-r2 on v3.3 and in 2.2.2-r0 on v3.4.
    let r = fixture("ALPINE-CVE-2015-8874.json");
    assert_eq!(r.cve_ids(), vec!["CVE-2015-8874".to_string()]);

    let m = affected(&r, "Alpine:v3.3", "gd", "2.2.1-r1").expect("2.2.1-r1 is vulnerable on v3.3");
    assert_eq!(m.fixed_versions, vec!["2.2.1-r2".to_string()]);
    assert_eq!(m.cves, vec!["CVE-2015-8874".to_string()]);
    assert_eq!(m.ecosystem, "Alpine:v3.3");
    // No severity in secdb-derived records.
    assert_eq!(m.severity.level, Severity::Undefined);
    assert!(affected(&r, "Alpine:v3.3", "gd", "2.2.1-r2").is_none());
    assert!(affected(&r, "Alpine:v3.3", "gd", "2.2.2-r0").is_none());

    // On v3.4 the same version is still vulnerable: that branch fixed it later.
    let m = affected(&r, "Alpine:v3.4", "gd", "2.2.1-r2").unwrap();
    assert_eq!(m.fixed_in(), Some("2.2.2-r0"));
    assert!(affected(&r, "Alpine:v3.4", "gd", "2.2.2-r0").is_none());

    // No entry for v3.5, other packages, or other distributions.
    assert!(affected(&r, "Alpine:v3.5", "gd", "2.2.1-r1").is_none());
    assert!(affected(&r, "Alpine:v3.3", "gd-dev", "2.2.1-r1").is_none());
    assert!(affected(&r, "Debian:12", "gd", "2.2.1-r1").is_none());

    // The binary package gd-dev is matched through its origin.
    let mut dev = Package::new("Alpine:v3.3", "gd-dev", "2.2.1-r0");
    dev.source_name = Some("gd".into());
    assert!(affected_package(&r, &dev).is_some());
}

#[test]
fn alpine_fixed_zero_means_never_affected() {
    // secdb's "0" fix: the branch was never affected.
    let r = fixture("ALPINE-CVE-2016-0682.json");
    assert!(affected(&r, "Alpine:v3.8", "db", "5.3.28-r0").is_none());
    assert!(affected(&r, "Alpine:v3.8", "db", "0.1-r0").is_none());
}

#[test]
fn pypi_record_unsorted_events_and_versions_list() {
    // urllib3: [0, 1.26.17) and [2.0.0, 2.0.6), listed out of order, plus a GIT range.
    let r = fixture("PYSEC-2023-192.json");
    assert!(r.affected[0].ranges.iter().any(|rg| rg.kind == RangeType::Git));

    let m = affected(&r, "PyPI", "urllib3", "1.26.16").expect("1.26.16 is vulnerable");
    assert_eq!(m.fixed_versions, vec!["1.26.17".to_string()]);
    assert_eq!(m.cves, vec!["CVE-2023-43804".to_string()]);
    assert!(m.aliases.contains(&"GHSA-v845-jxx5-vc9f".to_string()));
    // CVSS:3.1/AV:N/AC:L/PR:L/UI:N/S:U/C:H/I:H/A:N scores 8.1.
    assert_eq!(m.severity.level, Severity::High);
    assert_eq!(m.severity.score, Some(8.1));
    assert_eq!(m.severity.source, SeveritySource::CvssV3);

    assert!(affected(&r, "PyPI", "urllib3", "1.26.17").is_none());
    assert_eq!(affected(&r, "PyPI", "urllib3", "2.0.4").unwrap().fixed_in(), Some("2.0.6"));
    assert!(affected(&r, "PyPI", "urllib3", "2.0.6").is_none());
    assert!(affected(&r, "PyPI", "urllib3", "2.2.0").is_none());
    // PEP 503 names and PEP 440 spellings.
    assert!(affected(&r, "PyPI", "URLLib3", "1.26.16").is_some());
    assert!(affected(&r, "PyPI", "urllib3", "2.0.0rc1").is_none());
    assert!(affected(&r, "PyPI", "urllib3", "v1.24").is_some());
}

#[test]
fn crates_io_record_two_semver_pairs() {
    // hyper: [0.0.0-0, 0.9.18) and [0.10.0, 0.10.2).
    let r = fixture("RUSTSEC-2017-0002.json");
    let m = affected(&r, "crates.io", "hyper", "0.9.17").expect("0.9.17 is vulnerable");
    assert_eq!(m.fixed_in(), Some("0.9.18"));
    assert_eq!(m.cves, vec!["CVE-2017-18587".to_string()]);
    // CVSS:3.0/AV:N/AC:L/PR:N/UI:N/S:U/C:N/I:L/A:N = 5.3.
    assert_eq!((m.severity.level, m.severity.score), (Severity::Medium, Some(5.3)));
    assert!(affected(&r, "crates.io", "hyper", "0.9.18").is_none());
    assert!(affected(&r, "crates.io", "hyper", "0.10.1").is_some());
    assert!(affected(&r, "crates.io", "hyper", "0.10.2").is_none());
    assert!(affected(&r, "crates.io", "hyper", "1.0.0").is_none());
}

#[test]
fn crates_io_record_cvss_v4() {
    let r = fixture("RUSTSEC-2024-0445.json");
    let m = affected(&r, "crates.io", "cap-primitives", "3.4.0").unwrap();
    assert_eq!(m.fixed_in(), Some("3.4.1"));
    assert_eq!(m.severity.source, SeveritySource::CvssV4);
    assert_eq!((m.severity.level, m.severity.score), (Severity::Low, Some(2.3)));
    assert!(affected(&r, "crates.io", "cap-primitives", "3.4.1").is_none());
}

#[test]
fn inventory_to_match_end_to_end() {
    // An Alpine 3.4 image with gd installed, as the scanner would see it.
    let os = berth_vuln::inventory::os_release::parse("ID=alpine\nVERSION_ID=3.4.6\n");
    let ecosystem = os.osv_ecosystem().unwrap().to_string();
    assert_eq!(ecosystem, "Alpine:v3.4");
    let installed = "P:gd\nV:2.2.1-r0\nA:x86_64\no:gd\n\nP:musl\nV:1.1.14-r16\no:musl\n";
    let packages = berth_vuln::inventory::apk::parse_installed(installed, &ecosystem);
    let r = fixture("ALPINE-CVE-2015-8874.json");
    let hits: Vec<_> = packages.iter().filter_map(|p| affected_package(&r, p).map(|m| (p.name.clone(), m))).collect();
    assert_eq!(hits.len(), 1);
    assert_eq!(hits[0].0, "gd");
    assert_eq!(hits[0].1.fixed_in(), Some("2.2.2-r0"));
}
