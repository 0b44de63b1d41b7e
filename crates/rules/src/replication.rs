//! ECR's registry replication configuration: up to ten rules, each a list of destinations
//! (`{region, registryId}`) and optional `PREFIX_MATCH` repository filters; validation as
//! `PutReplicationConfiguration` does it, and the destinations one repository's pushes go to.
//!
//! Where ECR's wording of a refusal is not known, the messages are Berth's own (ARCHITECTURE.md,
//! "Replication").

use serde::{Deserialize, Serialize};

/// ECR's limits: rules per configuration, unique destinations over all rules.
pub const MAX_RULES: usize = 10;
pub const MAX_UNIQUE_DESTINATIONS: usize = 25;

#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ReplicationConfiguration {
    pub rules: Vec<ReplicationRule>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ReplicationRule {
    pub destinations: Vec<Destination>,
    /// No filters: every repository of the registry.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repository_filters: Option<Vec<ReplicationFilter>>,
}

/// A registry in a region: where replicas go.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Destination {
    pub region: String,
    pub registry_id: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ReplicationFilter {
    pub filter: String,
    pub filter_type: String,
}

const PREFIX_MATCH: &str = "PREFIX_MATCH";

fn invalid(constraint: impl std::fmt::Display) -> String {
    format!("Invalid parameter at 'replicationConfiguration' failed to satisfy constraint: '{constraint}'")
}

impl ReplicationFilter {
    fn matches(&self, repository: &str) -> bool {
        self.filter_type == PREFIX_MATCH && repository.starts_with(&self.filter)
    }
}

impl ReplicationRule {
    /// Whether pushes to `repository` are replicated by this rule.
    pub fn covers(&self, repository: &str) -> bool {
        match &self.repository_filters {
            None => true,
            Some(filters) => filters.iter().any(|f| f.matches(repository)),
        }
    }
}

impl ReplicationConfiguration {
    /// Checks the configuration of the registry `source`. `region_known` says whether a
    /// region can be replicated to (this deployment's own, or a configured peer's).
    /// Lengths and patterns of single values are the model's, checked before this.
    pub fn validate(&self, source: &Destination, region_known: impl Fn(&str) -> bool) -> Result<(), String> {
        if self.rules.len() > MAX_RULES {
            return Err(invalid(format_args!("A replication configuration can contain at most {MAX_RULES} rules")));
        }
        let mut unique = std::collections::BTreeSet::new();
        for (i, rule) in self.rules.iter().enumerate() {
            let n = i + 1;
            if rule.destinations.is_empty() {
                return Err(invalid(format_args!("Rule {n} must name at least one destination")));
            }
            let mut in_rule = std::collections::BTreeSet::new();
            for d in &rule.destinations {
                if d == source {
                    return Err(invalid(format_args!(
                        "Rule {n} names the source registry itself ({}, {}) as a destination",
                        d.registry_id, d.region
                    )));
                }
                if !in_rule.insert(d) {
                    return Err(invalid(format_args!(
                        "Rule {n} names the destination ({}, {}) more than once",
                        d.registry_id, d.region
                    )));
                }
                if !region_known(&d.region) {
                    return Err(invalid(format_args!(
                        "Rule {n}: region '{}' is neither this deployment's region ('{}') nor that of a replication \
                         peer (berth admin add-replication-peer)",
                        d.region, source.region
                    )));
                }
                unique.insert(d.clone());
            }
            if let Some(filters) = &rule.repository_filters {
                if filters.is_empty() {
                    return Err(invalid(format_args!("Rule {n}: repositoryFilters, when given, must not be empty")));
                }
                if let Some(f) = filters.iter().find(|f| f.filter_type != PREFIX_MATCH) {
                    return Err(invalid(format_args!(
                        "Rule {n}: filter type '{}' is not supported (only {PREFIX_MATCH})",
                        f.filter_type
                    )));
                }
            }
        }
        if unique.len() > MAX_UNIQUE_DESTINATIONS {
            return Err(invalid(format_args!(
                "A replication configuration can contain at most {MAX_UNIQUE_DESTINATIONS} unique destinations, not {}",
                unique.len()
            )));
        }
        Ok(())
    }

    /// Where pushes to `repository` are replicated: every destination of every rule that
    /// covers it, each once, in the order the rules name them.
    pub fn destinations_for(&self, repository: &str) -> Vec<Destination> {
        let mut out: Vec<Destination> = Vec::new();
        for rule in self.rules.iter().filter(|r| r.covers(repository)) {
            for d in &rule.destinations {
                if !out.contains(d) {
                    out.push(d.clone());
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dest(region: &str, id: &str) -> Destination {
        Destination { region: region.into(), registry_id: id.into() }
    }

    fn prefix(f: &str) -> ReplicationFilter {
        ReplicationFilter { filter: f.into(), filter_type: PREFIX_MATCH.into() }
    }

    const SOURCE: (&str, &str) = ("us-east-1", "111111111111");

    fn source() -> Destination {
        dest(SOURCE.0, SOURCE.1)
    }

    fn known(r: &str) -> bool {
        matches!(r, "us-east-1" | "eu-west-1" | "ap-northeast-1")
    }

    #[test]
    fn a_valid_configuration_passes_and_an_empty_one_too() {
        let c = ReplicationConfiguration {
            rules: vec![
                ReplicationRule { destinations: vec![dest("eu-west-1", "111111111111")], repository_filters: None },
                ReplicationRule {
                    destinations: vec![dest("us-east-1", "222222222222"), dest("eu-west-1", "111111111111")],
                    repository_filters: Some(vec![prefix("team-a/")]),
                },
            ],
        };
        assert_eq!(c.validate(&source(), known), Ok(()));
        assert_eq!(ReplicationConfiguration::default().validate(&source(), known), Ok(()));
    }

    #[test]
    fn each_refusal_names_its_reason() {
        let rule = |d: Vec<Destination>| ReplicationRule { destinations: d, repository_filters: None };
        let refused = |c: ReplicationConfiguration| c.validate(&source(), known).unwrap_err();
        assert!(refused(ReplicationConfiguration { rules: vec![rule(vec![source()])] }).contains("source registry"));
        assert!(refused(ReplicationConfiguration { rules: vec![rule(vec![])] }).contains("at least one destination"));
        let twice = vec![dest("eu-west-1", "111111111111"), dest("eu-west-1", "111111111111")];
        assert!(refused(ReplicationConfiguration { rules: vec![rule(twice)] }).contains("more than once"));
        assert!(
            refused(ReplicationConfiguration { rules: vec![rule(vec![dest("mars-1", "1".repeat(12).as_str())])] })
                .contains("region 'mars-1'")
        );
        let eleven = (0..11).map(|i| rule(vec![dest("eu-west-1", &format!("{i:012}"))])).collect();
        assert!(refused(ReplicationConfiguration { rules: eleven }).contains("at most 10 rules"));
        // 26 unique destinations over three rules (each rule may hold up to 100).
        let many = |from: usize, to: usize| rule((from..to).map(|i| dest("eu-west-1", &format!("{i:012}"))).collect());
        let c = ReplicationConfiguration { rules: vec![many(0, 10), many(5, 20), many(15, 26)] };
        assert!(refused(c).contains("at most 25 unique destinations, not 26"));
        let c = ReplicationConfiguration { rules: vec![many(0, 10), many(5, 25)] };
        assert_eq!(c.validate(&source(), known), Ok(()), "25 unique, some named twice across rules");
        let no_filters =
            ReplicationRule { destinations: vec![dest("eu-west-1", SOURCE.1)], repository_filters: Some(vec![]) };
        assert!(refused(ReplicationConfiguration { rules: vec![no_filters] }).contains("must not be empty"));
        let other = ReplicationRule {
            destinations: vec![dest("eu-west-1", SOURCE.1)],
            repository_filters: Some(vec![ReplicationFilter { filter: "a".into(), filter_type: "EXACT".into() }]),
        };
        assert!(refused(ReplicationConfiguration { rules: vec![other] }).contains("'EXACT' is not supported"));
    }

    #[test]
    fn destinations_are_the_union_of_the_rules_that_cover_a_repository() {
        let c = ReplicationConfiguration {
            rules: vec![
                ReplicationRule {
                    destinations: vec![dest("eu-west-1", "111111111111")],
                    repository_filters: Some(vec![prefix("team-a"), prefix("shared/")]),
                },
                ReplicationRule {
                    destinations: vec![dest("ap-northeast-1", "111111111111"), dest("eu-west-1", "111111111111")],
                    repository_filters: Some(vec![prefix("team-a/web")]),
                },
                ReplicationRule { destinations: vec![dest("us-east-1", "222222222222")], repository_filters: None },
            ],
        };
        let names = |repo: &str| c.destinations_for(repo).into_iter().map(|d| d.region).collect::<Vec<_>>();
        assert_eq!(names("team-a/web"), ["eu-west-1", "ap-northeast-1", "us-east-1"]);
        assert_eq!(names("team-a-tools"), ["eu-west-1", "us-east-1"], "a prefix, not a path");
        assert_eq!(names("shared/base"), ["eu-west-1", "us-east-1"]);
        assert_eq!(names("other"), ["us-east-1"]);
        assert!(ReplicationConfiguration::default().destinations_for("any").is_empty());
    }

    #[test]
    fn the_wire_form_is_ecrs() {
        let text = r#"{"rules":[{"destinations":[{"region":"eu-west-1","registryId":"111111111111"}],"repositoryFilters":[{"filter":"a/","filterType":"PREFIX_MATCH"}]},{"destinations":[{"region":"us-east-1","registryId":"222222222222"}]}]}"#;
        let c: ReplicationConfiguration = serde_json::from_str(text).unwrap();
        assert_eq!(serde_json::to_string(&c).unwrap(), text);
    }
}
