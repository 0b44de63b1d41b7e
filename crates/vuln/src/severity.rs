//! Severity of a record, on ECR's scale.
//!
//! Sources, in order of preference: the affected entry's own `severity`, then the record's
//! — of those, a CVSS v3 vector first (the version most databases and ECR's own findings
//! carry), then v4, then v2, each scored with the `cvss` crate; an OSV `Ubuntu` priority;
//! then labels: `database_specific.severity` (GHSA's `HIGH`, `MODERATE`), then
//! `ecosystem_specific.severity` (both on the affected entry first, then on the record).
//! A RustSec informational advisory (`unmaintained`, `unsound`, `notice`) without a score is
//! `INFORMATIONAL`. With nothing to go on the level is `UNDEFINED`.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::osv::{Affected, Record, SeverityEntry};

/// ECR's severity levels, ordered from least to most severe.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Severity {
    Undefined,
    Informational,
    Low,
    Medium,
    High,
    Critical,
}

impl Severity {
    /// ECR's name for the level.
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Undefined => "UNDEFINED",
            Severity::Informational => "INFORMATIONAL",
            Severity::Low => "LOW",
            Severity::Medium => "MEDIUM",
            Severity::High => "HIGH",
            Severity::Critical => "CRITICAL",
        }
    }

    /// The level of a CVSS base score: ≥ 9.0 critical, ≥ 7.0 high, ≥ 4.0 medium, > 0 low,
    /// 0 informational.
    pub fn from_score(score: f64) -> Severity {
        if score >= 9.0 {
            Severity::Critical
        } else if score >= 7.0 {
            Severity::High
        } else if score >= 4.0 {
            Severity::Medium
        } else if score > 0.0 {
            Severity::Low
        } else {
            Severity::Informational
        }
    }

    /// The level of a textual label as databases write them (case-insensitive): GHSA's
    /// `CRITICAL`/`HIGH`/`MODERATE`/`LOW`, Red Hat's `Important`, Debian and Ubuntu's
    /// `negligible`/`unimportant`, and `none`. `None` for labels that carry no level
    /// (`untriaged`, `unknown`, anything else).
    pub fn from_label(label: &str) -> Option<Severity> {
        Some(match label.trim().to_ascii_lowercase().as_str() {
            "critical" => Severity::Critical,
            "high" | "important" => Severity::High,
            "medium" | "moderate" => Severity::Medium,
            "low" => Severity::Low,
            "informational" | "info" | "none" | "negligible" | "unimportant" => Severity::Informational,
            _ => return None,
        })
    }
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where a severity came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum SeveritySource {
    CvssV2,
    CvssV3,
    CvssV4,
    /// A textual label (`Ubuntu` priority, `database_specific`/`ecosystem_specific`).
    Label,
    /// A RustSec informational advisory.
    Informational,
    None,
}

/// A record's severity: the level, and the CVSS score and vector when one was computed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SeverityInfo {
    pub level: Severity,
    pub score: Option<f64>,
    pub vector: Option<String>,
    pub source: SeveritySource,
}

impl SeverityInfo {
    /// No severity data.
    pub fn undefined() -> SeverityInfo {
        SeverityInfo { level: Severity::Undefined, score: None, vector: None, source: SeveritySource::None }
    }

    fn label(level: Severity) -> SeverityInfo {
        SeverityInfo { level, score: None, vector: None, source: SeveritySource::Label }
    }
}

/// The CVSS base score of a vector (`CVSS:3.1/...`, `CVSS:4.0/...`, or a bare v2 vector).
pub fn cvss_base_score(vector: &str) -> Option<f64> {
    cvss::Cvss::from_str(vector.trim()).ok().map(|c| c.score())
}

/// Scores the first entry of each CVSS kind, in the order of preference.
fn from_entries(entries: &[SeverityEntry]) -> Option<SeverityInfo> {
    let order =
        [("CVSS_V3", SeveritySource::CvssV3), ("CVSS_V4", SeveritySource::CvssV4), ("CVSS_V2", SeveritySource::CvssV2)];
    for (kind, source) in order {
        for entry in entries.iter().filter(|e| e.kind == kind) {
            if let Some(score) = cvss_base_score(&entry.score) {
                return Some(SeverityInfo {
                    level: Severity::from_score(score),
                    score: Some(score),
                    vector: Some(entry.score.trim().to_string()),
                    source,
                });
            }
        }
    }
    // OSV's `Ubuntu` type carries Ubuntu's priority as a word.
    entries.iter().filter(|e| e.kind == "Ubuntu").find_map(|e| Severity::from_label(&e.score)).map(SeverityInfo::label)
}

fn label_in(value: Option<&Value>) -> Option<Severity> {
    value?.get("severity")?.as_str().and_then(Severity::from_label)
}

fn is_informational_advisory(affected: &Affected) -> bool {
    affected.database_specific.as_ref().and_then(|d| d.get("informational")).and_then(Value::as_str).is_some()
}

/// The severity of `record` as it bears on `affected` (one of its entries, if known).
pub fn record_severity(record: &Record, affected: Option<&Affected>) -> SeverityInfo {
    if let Some(info) = affected.and_then(|a| from_entries(&a.severity)).or_else(|| from_entries(&record.severity)) {
        return info;
    }
    let labels = [
        affected.and_then(|a| label_in(a.database_specific.as_ref())),
        label_in(record.database_specific.as_ref()),
        affected.and_then(|a| label_in(a.ecosystem_specific.as_ref())),
    ];
    if let Some(level) = labels.into_iter().flatten().next() {
        return SeverityInfo::label(level);
    }
    if affected.is_some_and(is_informational_advisory) {
        return SeverityInfo {
            level: Severity::Informational,
            score: None,
            vector: None,
            source: SeveritySource::Informational,
        };
    }
    SeverityInfo::undefined()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(json: &str) -> Record {
        Record::from_json(json).unwrap()
    }

    #[test]
    fn score_thresholds() {
        assert_eq!(Severity::from_score(9.0), Severity::Critical);
        assert_eq!(Severity::from_score(8.9), Severity::High);
        assert_eq!(Severity::from_score(7.0), Severity::High);
        assert_eq!(Severity::from_score(6.9), Severity::Medium);
        assert_eq!(Severity::from_score(4.0), Severity::Medium);
        assert_eq!(Severity::from_score(3.9), Severity::Low);
        assert_eq!(Severity::from_score(0.1), Severity::Low);
        assert_eq!(Severity::from_score(0.0), Severity::Informational);
        assert!(Severity::Critical > Severity::High && Severity::Informational > Severity::Undefined);
    }

    #[test]
    fn known_cvss_base_scores() {
        // Log4Shell, CVE-2021-44228 (NVD: 10.0).
        assert_eq!(cvss_base_score("CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:C/C:H/I:H/A:H"), Some(10.0));
        // The classic network/no-auth/high-everything vector: 9.8.
        assert_eq!(cvss_base_score("CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H"), Some(9.8));
        // OSV's own example, GHSA-r9p9-mrjm-926w (elliptic): 6.8.
        assert_eq!(cvss_base_score("CVSS:3.1/AV:N/AC:H/PR:N/UI:N/S:C/C:H/I:N/A:N"), Some(6.8));
        // RUSTSEC-2017-0002 (hyper), a v3.0 vector: 5.3.
        assert_eq!(cvss_base_score("CVSS:3.0/AV:N/AC:L/PR:N/UI:N/S:U/C:N/I:L/A:N"), Some(5.3));
        // CVSS v4.0 (scores cross-checked with an independent implementation, the Python
        // `cvss` package): all-high network vector 9.3, low confidentiality only 6.9, and
        // RUSTSEC-2024-0445 (cap-primitives) 2.3.
        assert_eq!(cvss_base_score("CVSS:4.0/AV:N/AC:L/AT:N/PR:N/UI:N/VC:H/VI:H/VA:H/SC:N/SI:N/SA:N"), Some(9.3));
        assert_eq!(cvss_base_score("CVSS:4.0/AV:N/AC:L/AT:N/PR:N/UI:N/VC:L/VI:N/VA:N/SC:N/SI:N/SA:N"), Some(6.9));
        assert_eq!(cvss_base_score("CVSS:4.0/AV:N/AC:L/AT:P/PR:L/UI:N/VC:L/VI:L/VA:L/SC:N/SI:N/SA:N"), Some(2.3));
        // CVSS v2 (no prefix): 7.5.
        assert_eq!(cvss_base_score("AV:N/AC:L/Au:N/C:P/I:P/A:P"), Some(7.5));
        assert_eq!(cvss_base_score("garbage"), None);
    }

    #[test]
    fn record_severity_sources() {
        let r = record(
            r#"{"id":"A","severity":[{"type":"CVSS_V3","score":"CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H"}]}"#,
        );
        let s = record_severity(&r, None);
        assert_eq!((s.level, s.score, s.source), (Severity::Critical, Some(9.8), SeveritySource::CvssV3));
        assert_eq!(s.vector.as_deref(), Some("CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H"));

        let r = record(r#"{"id":"B","database_specific":{"severity":"MODERATE"}}"#);
        assert_eq!(record_severity(&r, None).level, Severity::Medium);

        let r = record(
            r#"{"id":"C","affected":[{"package":{"ecosystem":"Go","name":"x"},"ecosystem_specific":{"severity":"HIGH"}}]}"#,
        );
        assert_eq!(record_severity(&r, Some(&r.affected[0])).level, Severity::High);

        let r = record(r#"{"id":"D","severity":[{"type":"Ubuntu","score":"negligible"}]}"#);
        assert_eq!(record_severity(&r, None).level, Severity::Informational);

        let r = record(r#"{"id":"E"}"#);
        assert_eq!(record_severity(&r, None), SeverityInfo::undefined());

        // The affected entry's own severity wins over the record's.
        let r = record(
            r#"{"id":"F","severity":[{"type":"CVSS_V3","score":"CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H"}],
                "affected":[{"package":{"ecosystem":"npm","name":"x"},
                "severity":[{"type":"CVSS_V3","score":"CVSS:3.0/AV:N/AC:L/PR:N/UI:N/S:U/C:N/I:L/A:N"}]}]}"#,
        );
        assert_eq!(record_severity(&r, Some(&r.affected[0])).level, Severity::Medium);

        // v3 is preferred over v4 when both are present.
        let r = record(
            r#"{"id":"G","severity":[
                {"type":"CVSS_V4","score":"CVSS:4.0/AV:N/AC:L/AT:N/PR:N/UI:N/VC:H/VI:H/VA:H/SC:N/SI:N/SA:N"},
                {"type":"CVSS_V3","score":"CVSS:3.0/AV:N/AC:L/PR:N/UI:N/S:U/C:N/I:L/A:N"}]}"#,
        );
        assert_eq!(record_severity(&r, None).source, SeveritySource::CvssV3);

        let r = record(
            r#"{"id":"H","affected":[{"package":{"ecosystem":"crates.io","name":"x"},
                "database_specific":{"informational":"unmaintained"}}]}"#,
        );
        assert_eq!(record_severity(&r, Some(&r.affected[0])).level, Severity::Informational);
    }
}
