//! ECR's registry replication configuration: up to ten rules, each a list of destinations
//! (`{region, registryId}`) and optional `PREFIX_MATCH` repository filters; validation as
//! `PutReplicationConfiguration` does it, and the destinations one repository's pushes go to.
//! Berth's extensions of a rule (set through the Berth extension target, never through ECR's
//! operation, and left out of what ECR's operations return): exact repository names the rule
//! covers besides its prefixes, and tag filters (lifecycle's wildcard patterns) that narrow
//! which images it replicates, and with which of their tags.
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

#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ReplicationRule {
    pub destinations: Vec<Destination>,
    /// No filters (and no `repository_names`): every repository of the registry.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repository_filters: Option<Vec<ReplicationFilter>>,
    /// Berth: repositories covered by their exact name (with no prefix filters: only these).
    #[serde(default, rename = "berthRepositoryNames", skip_serializing_if = "Vec::is_empty")]
    pub repository_names: Vec<String>,
    /// Berth: only images with a tag matching one of these patterns are replicated, with the
    /// matching tags only (an untagged push is not).
    #[serde(default, rename = "berthTagFilters", skip_serializing_if = "Vec::is_empty")]
    pub tag_filters: Vec<String>,
    /// Berth: deletes and tag removals in the repositories the rule covers are done at its
    /// destinations too (ECR never does; off unless set).
    #[serde(default, rename = "berthPropagateDeletes", skip_serializing_if = "std::ops::Not::not")]
    pub propagate_deletes: bool,
}

/// Most exact names and tag patterns one rule may hold, and wildcards in one pattern (as
/// lifecycle's tag patterns).
pub const MAX_RULE_EXTENSIONS: usize = 100;
const MAX_WILDCARDS: usize = 4;

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
        let named = self.repository_names.iter().any(|n| n == repository);
        match &self.repository_filters {
            None => self.repository_names.is_empty() || named,
            Some(filters) => named || filters.iter().any(|f| f.matches(repository)),
        }
    }

    /// Which of an image's `tags` this rule replicates it with; `None` when its tag filters
    /// take none of them (the rule does not replicate the image).
    pub fn tags_for(&self, tags: &[String]) -> Option<Vec<String>> {
        if self.tag_filters.is_empty() {
            return Some(tags.to_vec());
        }
        let kept: Vec<String> =
            tags.iter().filter(|t| self.tag_filters.iter().any(|p| crate::wildcard::matches(p, t))).cloned().collect();
        (!kept.is_empty()).then_some(kept)
    }

    /// The rule without Berth's extensions: what ECR's operations show.
    pub fn ecr_view(&self) -> ReplicationRule {
        ReplicationRule {
            repository_names: Vec::new(),
            tag_filters: Vec::new(),
            propagate_deletes: false,
            ..self.clone()
        }
    }

    /// Checks Berth's extensions of the rule (`n` counts rules from 1).
    fn validate_extensions(&self, n: usize) -> Result<(), String> {
        if self.repository_names.len() > MAX_RULE_EXTENSIONS || self.tag_filters.len() > MAX_RULE_EXTENSIONS {
            return Err(format!("Rule {n}: at most {MAX_RULE_EXTENSIONS} repository names and tag filters each"));
        }
        if let Some(bad) = self.repository_names.iter().find(|r| berth_oci::validate_repository_name(r).is_err()) {
            return Err(format!("Rule {n}: {bad:?} is not a repository name"));
        }
        for p in &self.tag_filters {
            if p.is_empty() || p.len() > 128 {
                return Err(format!("Rule {n}: a tag filter is 1 to 128 characters, not {p:?}"));
            }
            if p.matches('*').count() > MAX_WILDCARDS {
                return Err(format!("Rule {n}: tag filter {p:?} has more than {MAX_WILDCARDS} wildcards"));
            }
        }
        Ok(())
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
        for (i, rule) in self.rules.iter().enumerate() {
            rule.validate_extensions(i + 1).map_err(invalid)?;
        }
        if unique.len() > MAX_UNIQUE_DESTINATIONS {
            return Err(invalid(format_args!(
                "A replication configuration can contain at most {MAX_UNIQUE_DESTINATIONS} unique destinations, not {}",
                unique.len()
            )));
        }
        Ok(())
    }

    /// Where a push of an image to `repository` with `tags` is replicated: every destination
    /// of every rule that covers the repository and takes one of the tags (or has no tag
    /// filters), each once, in the order the rules name them.
    pub fn destinations_for(&self, repository: &str, tags: &[String]) -> Vec<Destination> {
        let mut out: Vec<Destination> = Vec::new();
        for rule in self.rules.iter().filter(|r| r.covers(repository) && r.tags_for(tags).is_some()) {
            for d in &rule.destinations {
                if !out.contains(d) {
                    out.push(d.clone());
                }
            }
        }
        out
    }

    /// The tags an image of `repository` pushed with `tags` arrives at `destination` with: the
    /// union of what each rule sending it there takes (all of them, without tag filters).
    pub fn tags_for(&self, repository: &str, destination: &Destination, tags: &[String]) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for rule in self.rules.iter().filter(|r| r.covers(repository) && r.destinations.contains(destination)) {
            for t in rule.tags_for(tags).unwrap_or_default() {
                if !out.contains(&t) {
                    out.push(t);
                }
            }
        }
        out
    }

    /// Where a delete or a tag removal in `repository` is done too: the destinations of the
    /// rules covering it that propagate deletes, each once.
    pub fn removal_destinations(&self, repository: &str) -> Vec<Destination> {
        let mut out: Vec<Destination> = Vec::new();
        for rule in self.rules.iter().filter(|r| r.propagate_deletes && r.covers(repository)) {
            for d in &rule.destinations {
                if !out.contains(d) {
                    out.push(d.clone());
                }
            }
        }
        out
    }

    /// The configuration without Berth's extensions: what ECR's operations show.
    pub fn ecr_view(&self) -> ReplicationConfiguration {
        ReplicationConfiguration { rules: self.rules.iter().map(ReplicationRule::ecr_view).collect() }
    }

    /// This configuration, each rule keeping the Berth extensions of the rule of `previous`
    /// with the same destinations and filters (how `PutReplicationConfiguration`, which cannot
    /// name them, leaves them in place).
    pub fn keeping_extensions_of(&self, previous: &ReplicationConfiguration) -> ReplicationConfiguration {
        let rules = self
            .rules
            .iter()
            .map(|r| match previous.rules.iter().find(|p| p.ecr_view() == r.ecr_view()) {
                Some(p) => ReplicationRule {
                    repository_names: p.repository_names.clone(),
                    tag_filters: p.tag_filters.clone(),
                    propagate_deletes: p.propagate_deletes,
                    ..r.ecr_view()
                },
                None => r.ecr_view(),
            })
            .collect();
        ReplicationConfiguration { rules }
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
                ReplicationRule { destinations: vec![dest("eu-west-1", "111111111111")], ..Default::default() },
                ReplicationRule {
                    destinations: vec![dest("us-east-1", "222222222222"), dest("eu-west-1", "111111111111")],
                    repository_filters: Some(vec![prefix("team-a/")]),
                    ..Default::default()
                },
            ],
        };
        assert_eq!(c.validate(&source(), known), Ok(()));
        assert_eq!(ReplicationConfiguration::default().validate(&source(), known), Ok(()));
    }

    #[test]
    fn each_refusal_names_its_reason() {
        let rule = |d: Vec<Destination>| ReplicationRule { destinations: d, ..Default::default() };
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
        let no_filters = ReplicationRule {
            destinations: vec![dest("eu-west-1", SOURCE.1)],
            repository_filters: Some(vec![]),
            ..Default::default()
        };
        assert!(refused(ReplicationConfiguration { rules: vec![no_filters] }).contains("must not be empty"));
        let other = ReplicationRule {
            destinations: vec![dest("eu-west-1", SOURCE.1)],
            repository_filters: Some(vec![ReplicationFilter { filter: "a".into(), filter_type: "EXACT".into() }]),
            ..Default::default()
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
                    ..Default::default()
                },
                ReplicationRule {
                    destinations: vec![dest("ap-northeast-1", "111111111111"), dest("eu-west-1", "111111111111")],
                    repository_filters: Some(vec![prefix("team-a/web")]),
                    ..Default::default()
                },
                ReplicationRule { destinations: vec![dest("us-east-1", "222222222222")], ..Default::default() },
            ],
        };
        let names = |repo: &str| c.destinations_for(repo, &[]).into_iter().map(|d| d.region).collect::<Vec<_>>();
        assert_eq!(names("team-a/web"), ["eu-west-1", "ap-northeast-1", "us-east-1"]);
        assert_eq!(names("team-a-tools"), ["eu-west-1", "us-east-1"], "a prefix, not a path");
        assert_eq!(names("shared/base"), ["eu-west-1", "us-east-1"]);
        assert_eq!(names("other"), ["us-east-1"]);
        assert!(ReplicationConfiguration::default().destinations_for("any", &[]).is_empty());
    }

    #[test]
    fn the_wire_form_is_ecrs() {
        let text = r#"{"rules":[{"destinations":[{"region":"eu-west-1","registryId":"111111111111"}],"repositoryFilters":[{"filter":"a/","filterType":"PREFIX_MATCH"}]},{"destinations":[{"region":"us-east-1","registryId":"222222222222"}]}]}"#;
        let c: ReplicationConfiguration = serde_json::from_str(text).unwrap();
        assert_eq!(serde_json::to_string(&c).unwrap(), text);
    }

    fn tags(t: &[&str]) -> Vec<String> {
        t.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn exact_names_and_tag_filters_narrow_a_rule() {
        let eu = dest("eu-west-1", "111111111111");
        let ap = dest("ap-northeast-1", "111111111111");
        let c = ReplicationConfiguration {
            rules: vec![
                // Only `prod/api` and `prod/web` (exact), only release tags.
                ReplicationRule {
                    destinations: vec![eu.clone()],
                    repository_names: vec!["prod/api".into(), "prod/web".into()],
                    tag_filters: vec!["v*".into(), "release-*".into()],
                    propagate_deletes: true,
                    repository_filters: None,
                },
                // Prefix `team/` or the exact `shared`, every tag.
                ReplicationRule {
                    destinations: vec![ap.clone(), eu.clone()],
                    repository_filters: Some(vec![prefix("team/")]),
                    repository_names: vec!["shared".into()],
                    ..Default::default()
                },
            ],
        };
        assert_eq!(c.validate(&source(), known), Ok(()));
        let to = |repo: &str, t: &[&str]| c.destinations_for(repo, &tags(t));
        assert_eq!(to("prod/api", &["v1.2", "latest"]), std::slice::from_ref(&eu));
        assert!(to("prod/api", &["latest"]).is_empty(), "no tag the filters take");
        assert!(to("prod/api", &[]).is_empty(), "an untagged push");
        assert!(to("prod/apis", &["v1"]).is_empty(), "exact, not a prefix");
        assert_eq!(to("shared", &[]), [ap.clone(), eu.clone()]);
        assert!(to("shared-tools", &["v1"]).is_empty());
        assert_eq!(to("team/x", &["anything"]), [ap.clone(), eu.clone()]);
        // The tags sent: what the rules sending there take.
        assert_eq!(c.tags_for("prod/api", &eu, &tags(&["v1.2", "latest", "release-7"])), tags(&["v1.2", "release-7"]));
        assert_eq!(c.tags_for("team/x", &eu, &tags(&["v1.2", "latest"])), tags(&["v1.2", "latest"]));
        // ECR's operations never show the extensions; a put of the same rules keeps them.
        let shown = c.ecr_view();
        assert!(shown.rules.iter().all(|r| r.repository_names.is_empty() && r.tag_filters.is_empty()));
        assert!(shown.rules.iter().all(|r| !r.propagate_deletes));
        // Removals go only where a rule covering the repository propagates them.
        assert_eq!(c.removal_destinations("prod/api"), std::slice::from_ref(&eu));
        assert!(c.removal_destinations("team/x").is_empty());
        assert!(!serde_json::to_string(&shown).unwrap().contains("berth"));
        assert_eq!(shown.keeping_extensions_of(&c), c);
        let changed = ReplicationConfiguration {
            rules: vec![
                shown.rules[1].clone(),
                ReplicationRule { destinations: vec![ap.clone()], ..Default::default() },
            ],
        };
        assert_eq!(changed.keeping_extensions_of(&c).rules[0], c.rules[1]);
        assert!(changed.keeping_extensions_of(&c).rules[1].tag_filters.is_empty());
    }

    #[test]
    fn extensions_are_checked() {
        let with = |names: Vec<&str>, filters: Vec<&str>| ReplicationConfiguration {
            rules: vec![ReplicationRule {
                destinations: vec![dest("eu-west-1", SOURCE.1)],
                repository_names: names.into_iter().map(String::from).collect(),
                tag_filters: filters.into_iter().map(String::from).collect(),
                ..Default::default()
            }],
        };
        assert!(
            with(vec!["Not/Valid"], vec![]).validate(&source(), known).unwrap_err().contains("not a repository name")
        );
        assert!(with(vec![], vec![""]).validate(&source(), known).unwrap_err().contains("1 to 128"));
        assert!(with(vec![], vec!["*a*b*c*d*e"]).validate(&source(), known).unwrap_err().contains("wildcards"));
        assert_eq!(with(vec!["ok/name"], vec!["v*"]).validate(&source(), known), Ok(()));
    }
}
