//! A scan's result: the inventory's packages matched against the records filed under them,
//! one finding per (vulnerability, package), in a form both of ECR's finding shapes (basic
//! `findings`, `enhancedFindings`) are rendered from.

use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};

use crate::image::{Inventory, InventoryPackage};
use crate::matching::affected_package;
use crate::osv::Record;
use crate::severity::Severity;

/// One vulnerability in one installed package.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Finding {
    /// What ECR shows as the finding's name: the first CVE the record is known by, else its id.
    pub name: String,
    pub record_id: String,
    /// The record's other identifiers (`upstream` then `aliases`).
    pub aliases: Vec<String>,
    pub description: String,
    /// The record's page on osv.dev.
    pub uri: String,
    pub severity: Severity,
    pub cvss_score: Option<f64>,
    pub cvss_vector: Option<String>,
    pub references: Vec<String>,
    pub published: Option<String>,
    pub modified: Option<String>,
    pub package_name: String,
    pub package_version: String,
    /// `OS`, `CARGO`, `NPM`, `PYTHONPKG`, `GOMOD`.
    pub package_manager: String,
    pub ecosystem: String,
    pub arch: Option<String>,
    pub file_path: String,
    /// Index of the layer the package's file came from.
    pub layer: usize,
    /// The oldest fixing version, when one is known.
    pub fixed_in: Option<String>,
}

/// Matches every package against `records` (those filed under the packages' keys; others
/// are simply not matched). Findings are ordered by severity (highest first), then name and
/// package; a vulnerability known under several records (a GHSA and a PYSEC record of one CVE)
/// is reported once per package, at its highest severity.
pub fn match_inventory(inventory: &Inventory, records: &[Record]) -> Vec<Finding> {
    let mut by_key: HashMap<(String, String), Vec<&Record>> = HashMap::new();
    for record in records {
        for key in crate::image::record_keys(record) {
            by_key.entry(key).or_default().push(record);
        }
    }
    let mut found: BTreeMap<(String, String, String, String), Finding> = BTreeMap::new();
    for p in &inventory.packages {
        let Some(candidates) = by_key.get(&p.index_key()) else { continue };
        for record in candidates {
            let Some(m) = affected_package(record, &p.package) else { continue };
            let finding = finding(record, p, m);
            let key = (finding.name.clone(), p.package.name.clone(), p.package.version.clone(), p.file_path.clone());
            match found.get(&key) {
                Some(existing) if existing.severity >= finding.severity => {}
                _ => {
                    found.insert(key, finding);
                }
            }
        }
    }
    let mut out: Vec<Finding> = found.into_values().collect();
    sort_findings(&mut out);
    out
}

/// The order findings are reported in: severity (highest first), then name, package and file.
pub fn sort_findings(findings: &mut [Finding]) {
    findings.sort_by(|a, b| {
        b.severity
            .cmp(&a.severity)
            .then_with(|| a.name.cmp(&b.name))
            .then_with(|| a.package_name.cmp(&b.package_name))
            .then_with(|| a.file_path.cmp(&b.file_path))
    });
}

fn finding(record: &Record, p: &InventoryPackage, m: crate::Match) -> Finding {
    let name = m.cves.first().cloned().unwrap_or_else(|| record.id.clone());
    let description = record
        .details
        .clone()
        .or_else(|| record.summary.clone())
        .unwrap_or_else(|| format!("{} in {}", m.id, p.package.name));
    Finding {
        name,
        record_id: record.id.clone(),
        aliases: m.aliases,
        description,
        uri: format!("https://osv.dev/vulnerability/{}", record.id),
        severity: m.severity.level,
        cvss_score: m.severity.score,
        cvss_vector: m.severity.vector,
        references: record.references.iter().map(|r| r.url.clone()).filter(|u| !u.is_empty()).collect(),
        published: record.published.clone(),
        modified: record.modified.clone(),
        package_name: p.package.name.clone(),
        package_version: p.package.version.clone(),
        package_manager: p.package_manager.to_string(),
        ecosystem: p.package.ecosystem.clone(),
        arch: p.package.arch.clone(),
        file_path: p.file_path.clone(),
        layer: p.layer,
        fixed_in: m.fixed_versions.first().cloned(),
    }
}

/// The count of findings per severity, as ECR's `findingSeverityCounts` (only levels present).
pub fn severity_counts(findings: &[Finding]) -> BTreeMap<String, u64> {
    let mut counts = BTreeMap::new();
    for f in findings {
        *counts.entry(f.severity.as_str().to_string()).or_insert(0) += 1;
    }
    counts
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::image::FileKind;

    fn record(json: &str) -> Record {
        Record::from_json(json).unwrap()
    }

    #[test]
    fn matches_source_packages_and_deduplicates_aliases() {
        let os = b"ID=debian\nVERSION_ID=12\n";
        let status = b"Package: libssl3\nStatus: install ok installed\nSource: openssl\nVersion: 3.0.11-1~deb12u1\n\n\
                       Package: openssl\nStatus: install ok installed\nVersion: 3.0.11-1~deb12u1\n\n\
                       Package: zlib1g\nStatus: install ok installed\nSource: zlib\nVersion: 1:1.2.13.dfsg-1\n";
        let meta = b"Name: requests\nVersion: 2.19.0\n";
        let inv = Inventory::from_files(
            [
                ("etc/os-release", 0, FileKind::OsRelease, &os[..]),
                ("var/lib/dpkg/status", 0, FileKind::DpkgStatus, &status[..]),
                ("x/requests-2.19.0.dist-info/METADATA", 1, FileKind::PythonMetadata, &meta[..]),
            ],
            Vec::new(),
        );
        let records = vec![
            record(
                r#"{"id":"DSA-1","upstream":["CVE-2024-1"],"details":"openssl bug",
                    "severity":[{"type":"CVSS_V3","score":"CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H"}],
                    "affected":[{"package":{"ecosystem":"Debian:12","name":"openssl"},
                    "ranges":[{"type":"ECOSYSTEM","events":[{"introduced":"0"},{"fixed":"3.0.13-1~deb12u1"}]}]}]}"#,
            ),
            // Fixed before the installed version: nothing.
            record(
                r#"{"id":"DSA-2","aliases":["CVE-2022-2"],"affected":[{"package":{"ecosystem":"Debian:12","name":"zlib"},
                    "ranges":[{"type":"ECOSYSTEM","events":[{"introduced":"0"},{"fixed":"1:1.2.12-1"}]}]}]}"#,
            ),
            // Another release: nothing.
            record(
                r#"{"id":"DSA-3","affected":[{"package":{"ecosystem":"Debian:11","name":"zlib"},
                    "ranges":[{"type":"ECOSYSTEM","events":[{"introduced":"0"}]}]}]}"#,
            ),
            record(
                r#"{"id":"PYSEC-1","aliases":["CVE-2018-18074"],"affected":[{"package":{"ecosystem":"PyPI","name":"Requests"},
                    "ranges":[{"type":"ECOSYSTEM","events":[{"introduced":"0"},{"fixed":"2.20.0"}]}]}]}"#,
            ),
            record(
                r#"{"id":"GHSA-x","aliases":["CVE-2018-18074"],"database_specific":{"severity":"HIGH"},
                    "affected":[{"package":{"ecosystem":"PyPI","name":"requests"},
                    "ranges":[{"type":"ECOSYSTEM","events":[{"introduced":"0"},{"fixed":"2.20.0"}]}]}]}"#,
            ),
        ];
        let findings = match_inventory(&inv, &records);
        let summary: Vec<(&str, &str, Severity, Option<&str>)> = findings
            .iter()
            .map(|f| (f.name.as_str(), f.package_name.as_str(), f.severity, f.fixed_in.as_deref()))
            .collect();
        assert_eq!(
            summary,
            vec![
                ("CVE-2024-1", "libssl3", Severity::Critical, Some("3.0.13-1~deb12u1")),
                ("CVE-2024-1", "openssl", Severity::Critical, Some("3.0.13-1~deb12u1")),
                ("CVE-2018-18074", "requests", Severity::High, Some("2.20.0")),
            ]
        );
        assert_eq!(findings[2].record_id, "GHSA-x", "the higher-severity record of the two");
        assert_eq!(findings[0].uri, "https://osv.dev/vulnerability/DSA-1");
        assert_eq!(findings[0].cvss_score, Some(9.8));
        let counts = severity_counts(&findings);
        assert_eq!(counts.get("CRITICAL"), Some(&2));
        assert_eq!(counts.get("HIGH"), Some(&1));
        assert_eq!(counts.len(), 2);
    }
}
