//! ECR's registry scanning configuration: the scan type (`BASIC` or `ENHANCED`) and up to two
//! rules, each a scan frequency with repository filters; validation as
//! `PutRegistryScanningConfiguration` does it, and the configuration that results for one
//! repository (what `BatchGetRepositoryScanningConfiguration` reports).

use serde::{Deserialize, Serialize};

use crate::wildcard;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct RegistryScanning {
    #[serde(default)]
    pub scan_type: ScanType,
    #[serde(default)]
    pub rules: Vec<ScanningRule>,
}

/// What a scan looks at: OS packages (`BASIC`), or OS and language packages (`ENHANCED`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ScanType {
    #[default]
    Basic,
    Enhanced,
}

impl ScanType {
    pub fn as_str(self) -> &'static str {
        match self {
            ScanType::Basic => "BASIC",
            ScanType::Enhanced => "ENHANCED",
        }
    }

    pub fn parse(s: &str) -> Option<ScanType> {
        match s {
            "BASIC" => Some(ScanType::Basic),
            "ENHANCED" => Some(ScanType::Enhanced),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ScanningRule {
    pub scan_frequency: String,
    pub repository_filters: Vec<RepositoryFilter>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RepositoryFilter {
    pub filter: String,
    pub filter_type: String,
}

/// How one repository is scanned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RepositoryScanning {
    pub scan_on_push: bool,
    /// `SCAN_ON_PUSH`, `CONTINUOUS_SCAN` or `MANUAL`.
    pub scan_frequency: &'static str,
    /// The registry filters that matched the repository.
    pub applied_filters: Vec<RepositoryFilter>,
}

fn filter_value_ok(f: &str) -> bool {
    // The model's pattern: ^[a-z0-9*](?:[._\-/a-z0-9*]?[a-z0-9*]+)*$ , at most 255 characters.
    let b = f.as_bytes();
    let word = |c: u8| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'*';
    let sep = |c: u8| matches!(c, b'.' | b'_' | b'-' | b'/');
    !b.is_empty()
        && b.len() <= 255
        && word(b[0])
        && word(b[b.len() - 1])
        && b.iter().all(|&c| word(c) || sep(c))
        && !b.windows(2).any(|w| sep(w[0]) && sep(w[1]))
}

impl RegistryScanning {
    /// Validates a configuration as `PutRegistryScanningConfiguration` receives it.
    pub fn validate(&self) -> Result<(), String> {
        if self.rules.len() > 2 {
            return Err(format!("rules may hold at most 2 rules, got {}", self.rules.len()));
        }
        let mut seen = Vec::new();
        for (i, rule) in self.rules.iter().enumerate() {
            let at = format!("rules[{i}]");
            match (self.scan_type.as_str(), rule.scan_frequency.as_str()) {
                (_, "SCAN_ON_PUSH") | ("ENHANCED", "CONTINUOUS_SCAN") => {}
                ("BASIC", "CONTINUOUS_SCAN") => {
                    return Err(format!("{at}: CONTINUOUS_SCAN is only available with scanType ENHANCED"));
                }
                (_, "MANUAL") => {
                    return Err(format!(
                        "{at}: MANUAL is what applies without a rule; a rule's scanFrequency is SCAN_ON_PUSH or CONTINUOUS_SCAN"
                    ));
                }
                (_, other) => {
                    return Err(format!("{at}: scanFrequency must be SCAN_ON_PUSH or CONTINUOUS_SCAN, got {other:?}"));
                }
            }
            if seen.contains(&rule.scan_frequency) {
                return Err(format!("{at}: only one rule per scanFrequency"));
            }
            seen.push(rule.scan_frequency.clone());
            if rule.repository_filters.is_empty() || rule.repository_filters.len() > 100 {
                return Err(format!("{at}: repositoryFilters must hold between 1 and 100 filters"));
            }
            for (j, f) in rule.repository_filters.iter().enumerate() {
                if f.filter_type != "WILDCARD" {
                    return Err(format!(
                        "{at}.repositoryFilters[{j}]: filterType must be WILDCARD, got {:?}",
                        f.filter_type
                    ));
                }
                if !filter_value_ok(&f.filter) {
                    return Err(format!(
                        "{at}.repositoryFilters[{j}]: filter {:?} must be lower-case letters, digits, '*' and single '._-/' separators, at most 255 characters",
                        f.filter
                    ));
                }
            }
        }
        Ok(())
    }

    /// How `repository` (with its own `scanOnPush` flag) is scanned: continuous scanning wins
    /// over scan on push; without a matching rule, the repository's own flag decides between
    /// `SCAN_ON_PUSH` and `MANUAL`.
    pub fn for_repository(&self, repository: &str, repository_scan_on_push: bool) -> RepositoryScanning {
        for frequency in ["CONTINUOUS_SCAN", "SCAN_ON_PUSH"] {
            let matched: Vec<RepositoryFilter> = self
                .rules
                .iter()
                .filter(|r| r.scan_frequency == frequency)
                .flat_map(|r| r.repository_filters.iter())
                .filter(|f| wildcard::matches(&f.filter, repository))
                .cloned()
                .collect();
            if !matched.is_empty() {
                return RepositoryScanning { scan_on_push: true, scan_frequency: frequency, applied_filters: matched };
            }
        }
        RepositoryScanning {
            scan_on_push: repository_scan_on_push,
            scan_frequency: if repository_scan_on_push { "SCAN_ON_PUSH" } else { "MANUAL" },
            applied_filters: Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(scan_type: &str, rules: &[(&str, &[&str])]) -> RegistryScanning {
        RegistryScanning {
            scan_type: ScanType::parse(scan_type).expect("a scan type"),
            rules: rules
                .iter()
                .map(|(freq, filters)| ScanningRule {
                    scan_frequency: freq.to_string(),
                    repository_filters: filters
                        .iter()
                        .map(|f| RepositoryFilter { filter: f.to_string(), filter_type: "WILDCARD".into() })
                        .collect(),
                })
                .collect(),
        }
    }

    #[test]
    fn validation() {
        assert!(config("BASIC", &[]).validate().is_ok());
        assert!(config("BASIC", &[("SCAN_ON_PUSH", &["*"])]).validate().is_ok());
        assert!(config("ENHANCED", &[("CONTINUOUS_SCAN", &["prod-*"]), ("SCAN_ON_PUSH", &["*"])]).validate().is_ok());
        // A scan type other than BASIC or ENHANCED cannot even be read in.
        assert_eq!(ScanType::parse("DEEP"), None);
        assert!(serde_json::from_str::<RegistryScanning>(r#"{"scanType":"DEEP"}"#).is_err());
        let cases: &[(RegistryScanning, &str)] = &[
            (config("BASIC", &[("CONTINUOUS_SCAN", &["*"])]), "only available with scanType ENHANCED"),
            (config("ENHANCED", &[("MANUAL", &["*"])]), "MANUAL is what applies"),
            (config("ENHANCED", &[("HOURLY", &["*"])]), "scanFrequency must be"),
            (
                config("ENHANCED", &[("SCAN_ON_PUSH", &["a"]), ("SCAN_ON_PUSH", &["b"])]),
                "only one rule per scanFrequency",
            ),
            (config("ENHANCED", &[("SCAN_ON_PUSH", &[])]), "between 1 and 100"),
            (config("BASIC", &[("SCAN_ON_PUSH", &["Prod"])]), "lower-case"),
            (config("BASIC", &[("SCAN_ON_PUSH", &["a//b"])]), "single '._-/' separators"),
            (
                config("ENHANCED", &[("SCAN_ON_PUSH", &["a"]), ("CONTINUOUS_SCAN", &["b"]), ("SCAN_ON_PUSH", &["c"])]),
                "at most 2 rules",
            ),
        ];
        for (c, want) in cases {
            let e = c.validate().expect_err(want);
            assert!(e.contains(want), "{e}");
        }
        let mut wrong_type = config("BASIC", &[("SCAN_ON_PUSH", &["*"])]);
        wrong_type.rules[0].repository_filters[0].filter_type = "PREFIX".into();
        assert!(wrong_type.validate().unwrap_err().contains("filterType must be WILDCARD"));
    }

    #[test]
    fn effective_configuration() {
        let c = config("ENHANCED", &[("CONTINUOUS_SCAN", &["prod-*"]), ("SCAN_ON_PUSH", &["*"])]);
        let prod = c.for_repository("prod-api", false);
        assert_eq!((prod.scan_on_push, prod.scan_frequency), (true, "CONTINUOUS_SCAN"));
        assert_eq!(prod.applied_filters[0].filter, "prod-*");
        assert_eq!(c.for_repository("dev-api", false).scan_frequency, "SCAN_ON_PUSH");
        let none = config("BASIC", &[]);
        assert_eq!(none.for_repository("x", false).scan_frequency, "MANUAL");
        let own = none.for_repository("x", true);
        assert_eq!((own.scan_on_push, own.scan_frequency), (true, "SCAN_ON_PUSH"));
        assert!(own.applied_filters.is_empty());
        let narrow = config("BASIC", &[("SCAN_ON_PUSH", &["team/*"])]);
        assert_eq!(narrow.for_repository("team/app", false).scan_frequency, "SCAN_ON_PUSH");
        assert_eq!(narrow.for_repository("other", false).scan_frequency, "MANUAL");
    }
}
