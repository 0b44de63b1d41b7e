//! The OSV record format (<https://ossf.github.io/osv-schema/>), read leniently: unknown
//! fields are ignored, missing or `null` lists read as empty, and an event object is read
//! field by field so a malformed one degrades instead of failing the whole record.

use serde::{Deserialize, Deserializer, Serialize};
use serde_json::Value;

use crate::Error;

/// Reads a list that may be absent or `null`.
fn nullable_vec<'de, D, T>(d: D) -> Result<Vec<T>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    Ok(Option::<Vec<T>>::deserialize(d)?.unwrap_or_default())
}

/// One OSV record (one vulnerability).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Record {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schema_version: Option<String>,
    pub id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub modified: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub published: Option<String>,
    /// Set when the record was withdrawn; such records match nothing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub withdrawn: Option<String>,
    #[serde(default, deserialize_with = "nullable_vec")]
    pub aliases: Vec<String>,
    /// Upstream identifiers (OSV 1.7): the CVE an `ALPINE-CVE-…` record is about.
    #[serde(default, deserialize_with = "nullable_vec")]
    pub upstream: Vec<String>,
    #[serde(default, deserialize_with = "nullable_vec")]
    pub related: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub summary: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub details: Option<String>,
    #[serde(default, deserialize_with = "nullable_vec")]
    pub severity: Vec<SeverityEntry>,
    #[serde(default, deserialize_with = "nullable_vec")]
    pub affected: Vec<Affected>,
    #[serde(default, deserialize_with = "nullable_vec")]
    pub references: Vec<Reference>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub database_specific: Option<Value>,
}

impl Record {
    /// Parses one record from JSON.
    pub fn from_json(text: &str) -> Result<Record, Error> {
        Ok(serde_json::from_str(text)?)
    }

    /// Parses one record from JSON bytes.
    pub fn from_slice(bytes: &[u8]) -> Result<Record, Error> {
        Ok(serde_json::from_slice(bytes)?)
    }

    /// Whether the record was withdrawn.
    pub fn is_withdrawn(&self) -> bool {
        self.withdrawn.is_some()
    }

    /// The CVE identifiers the record is known by: its id if it is one, then `upstream`
    /// and `aliases` entries that are (deduplicated, in order).
    pub fn cve_ids(&self) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        let candidates = std::iter::once(&self.id).chain(&self.upstream).chain(&self.aliases);
        for id in candidates {
            if id.starts_with("CVE-") && !out.contains(id) {
                out.push(id.clone());
            }
        }
        out
    }
}

/// A `severity` entry: a scoring system and its score or vector.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SeverityEntry {
    /// `CVSS_V2`, `CVSS_V3`, `CVSS_V4`, `Ubuntu`, ...
    #[serde(rename = "type", default)]
    pub kind: String,
    #[serde(default)]
    pub score: String,
}

/// One affected package and where it is affected.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Affected {
    #[serde(default)]
    pub package: Package,
    #[serde(default, deserialize_with = "nullable_vec")]
    pub severity: Vec<SeverityEntry>,
    #[serde(default, deserialize_with = "nullable_vec")]
    pub ranges: Vec<Range>,
    #[serde(default, deserialize_with = "nullable_vec")]
    pub versions: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ecosystem_specific: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub database_specific: Option<Value>,
}

/// The package an `affected` entry is about.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Package {
    /// `Debian:12`, `PyPI`, ...
    #[serde(default)]
    pub ecosystem: String,
    #[serde(default)]
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub purl: Option<String>,
}

/// How a range's event versions are to be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum RangeType {
    #[serde(rename = "SEMVER")]
    Semver,
    #[serde(rename = "ECOSYSTEM")]
    Ecosystem,
    /// Commit hashes; a scanner of installed packages cannot evaluate them.
    #[serde(rename = "GIT")]
    Git,
    #[serde(other)]
    Unknown,
}

/// One affected range: a timeline of events.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Range {
    #[serde(rename = "type")]
    pub kind: RangeType,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repo: Option<String>,
    #[serde(default, deserialize_with = "nullable_vec")]
    pub events: Vec<Event>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub database_specific: Option<Value>,
}

/// An event object. The schema allows one key per object; all four are read so that a
/// malformed object is still usable (see [`Event::kind`]).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub introduced: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fixed: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_affected: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<String>,
}

/// What an event says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    Introduced,
    Fixed,
    LastAffected,
    Limit,
}

impl Event {
    /// The event's kind and version; with several keys (invalid), the first of
    /// introduced, fixed, last_affected, limit.
    pub fn kind(&self) -> Option<(EventKind, &str)> {
        [
            (EventKind::Introduced, &self.introduced),
            (EventKind::Fixed, &self.fixed),
            (EventKind::LastAffected, &self.last_affected),
            (EventKind::Limit, &self.limit),
        ]
        .into_iter()
        .find_map(|(k, v)| v.as_deref().map(|v| (k, v)))
    }

    pub fn introduced(v: &str) -> Event {
        Event { introduced: Some(v.into()), ..Event::default() }
    }

    pub fn fixed(v: &str) -> Event {
        Event { fixed: Some(v.into()), ..Event::default() }
    }

    pub fn last_affected(v: &str) -> Event {
        Event { last_affected: Some(v.into()), ..Event::default() }
    }

    pub fn limit(v: &str) -> Event {
        Event { limit: Some(v.into()), ..Event::default() }
    }
}

/// A reference link.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reference {
    #[serde(rename = "type", default)]
    pub kind: String,
    #[serde(default)]
    pub url: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lenient_parse() {
        let json = r#"{
            "id": "TEST-1",
            "aliases": null,
            "upstream": ["CVE-2024-0001"],
            "future_field": {"x": 1},
            "affected": [{
                "package": {"ecosystem": "PyPI", "name": "Foo"},
                "ranges": [
                    {"type": "ECOSYSTEM", "events": [{"introduced": "0"}, {"fixed": "1.2"}]},
                    {"type": "SOMETHING_NEW", "events": [{"introduced": "0"}]}
                ],
                "versions": null,
                "ecosystem_specific": {"severity": "HIGH"}
            }]
        }"#;
        let r = Record::from_json(json).unwrap();
        assert_eq!(r.id, "TEST-1");
        assert!(r.aliases.is_empty());
        assert_eq!(r.cve_ids(), vec!["CVE-2024-0001".to_string()]);
        assert_eq!(r.affected[0].ranges[0].kind, RangeType::Ecosystem);
        assert_eq!(r.affected[0].ranges[1].kind, RangeType::Unknown);
        assert_eq!(r.affected[0].ranges[0].events[1].kind(), Some((EventKind::Fixed, "1.2")));
        assert!(!r.is_withdrawn());
        assert!(Record::from_json("{\"summary\": \"no id\"}").is_err());
        assert!(Record::from_json("not json").is_err());
    }
}
