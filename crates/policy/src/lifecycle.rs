//! ECR lifecycle policies: the rule grammar, its validation, and evaluation as a pure function
//! of (policy, images, now) to the actions to take.
//!
//! Evaluation follows ECR's rules: every rule sees every image; results apply in priority
//! order (lowest number first); an image is acted on by at most one rule; an image whose tags
//! meet a higher-priority rule's selection is never acted on by a lower-priority rule, yet it
//! still counts toward that rule's `imageCountMoreThan`; older images go first. Children of a
//! multi-architecture index are not evaluated on their own: they live and die with the index.

use serde::Deserialize;

use crate::wildcard;

pub const DAY_MS: i64 = 24 * 3600 * 1000;
/// At most this many `*` in one `tagPatternList` entry.
pub const MAX_WILDCARDS: usize = 4;

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LifecyclePolicy {
    pub rules: Vec<Rule>,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Rule {
    pub rule_priority: i64,
    #[serde(default)]
    pub description: Option<String>,
    pub selection: Selection,
    pub action: Action,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Selection {
    pub tag_status: String,
    #[serde(default)]
    pub tag_prefix_list: Option<Vec<String>>,
    #[serde(default)]
    pub tag_pattern_list: Option<Vec<String>>,
    pub count_type: String,
    #[serde(default)]
    pub count_unit: Option<String>,
    pub count_number: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Action {
    #[serde(rename = "type")]
    pub kind: String,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct LifecycleError(pub String);

fn err<T>(msg: impl Into<String>) -> Result<T, LifecycleError> {
    Err(LifecycleError(msg.into()))
}

/// Parses and validates a lifecycle policy as `PutLifecyclePolicy` receives it.
pub fn parse(text: &str) -> Result<LifecyclePolicy, LifecycleError> {
    let policy: LifecyclePolicy = serde_json::from_str(text)
        .map_err(|e| LifecycleError(format!("Lifecycle policy is not valid JSON for the rule grammar: {e}")))?;
    validate(&policy)?;
    Ok(policy)
}

pub fn validate(policy: &LifecyclePolicy) -> Result<(), LifecycleError> {
    if policy.rules.is_empty() {
        return err("Lifecycle policy must contain at least one rule");
    }
    let mut priorities: Vec<i64> = Vec::new();
    let mut untagged_rules = 0;
    for rule in &policy.rules {
        let p = rule.rule_priority;
        let at = format!("rule with rulePriority {p}");
        if p < 1 {
            return err(format!("rulePriority must be a positive integer, got {p}"));
        }
        if priorities.contains(&p) {
            return err(format!("rulePriority {p} is used by more than one rule: priorities must be unique"));
        }
        priorities.push(p);
        let s = &rule.selection;
        let (prefixes, patterns) = (s.tag_prefix_list.as_ref(), s.tag_pattern_list.as_ref());
        match s.tag_status.as_str() {
            "tagged" => match (prefixes, patterns) {
                (Some(_), Some(_)) => return err(format!("{at}: give tagPrefixList or tagPatternList, not both")),
                (None, None) => {
                    return err(format!("{at}: tagStatus tagged needs a tagPrefixList or a tagPatternList"));
                }
                (Some(l), None) | (None, Some(l)) if l.is_empty() || l.iter().any(|t| t.is_empty()) => {
                    return err(format!("{at}: tag lists must hold at least one non-empty entry"));
                }
                _ => {}
            },
            "untagged" | "any" => {
                if prefixes.is_some() || patterns.is_some() {
                    return err(format!(
                        "{at}: tagPrefixList and tagPatternList are only allowed with tagStatus tagged"
                    ));
                }
                if s.tag_status == "untagged" {
                    untagged_rules += 1;
                }
            }
            other => return err(format!("{at}: tagStatus must be tagged, untagged or any, got {other:?}")),
        }
        if let Some(bad) = patterns.into_iter().flatten().find(|p| p.matches('*').count() > MAX_WILDCARDS) {
            return err(format!("{at}: tag pattern {bad:?} has more than {MAX_WILDCARDS} wildcards"));
        }
        match (s.count_type.as_str(), s.count_unit.as_deref()) {
            ("imageCountMoreThan", None) => {}
            ("imageCountMoreThan", Some(_)) => {
                return err(format!("{at}: countUnit is not allowed with imageCountMoreThan"));
            }
            ("sinceImagePushed", Some("days")) => {}
            ("sinceImagePushed", Some(u)) => return err(format!("{at}: countUnit must be days, got {u:?}")),
            ("sinceImagePushed", None) => return err(format!("{at}: sinceImagePushed needs countUnit days")),
            (other, _) => {
                return err(format!("{at}: countType must be imageCountMoreThan or sinceImagePushed, got {other:?}"));
            }
        }
        if s.count_number < 1 {
            return err(format!("{at}: countNumber must be a positive integer, got {}", s.count_number));
        }
        if rule.action.kind != "expire" {
            return err(format!("{at}: action type must be expire, got {:?}", rule.action.kind));
        }
    }
    if untagged_rules > 1 {
        return err("Only one rule may select untagged images");
    }
    let max = priorities.iter().copied().max().unwrap_or(0);
    if let Some(any) = policy.rules.iter().find(|r| r.selection.tag_status == "any" && r.rule_priority != max) {
        return err(format!(
            "The rule with tagStatus any (rulePriority {}) must have the highest rulePriority",
            any.rule_priority
        ));
    }
    Ok(())
}

/// An image as lifecycle evaluation sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Image {
    pub digest: String,
    pub tags: Vec<String>,
    pub pushed_at_ms: i64,
    /// Listed by a multi-architecture index: never evaluated on its own.
    pub in_index: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    pub digest: String,
    pub rule_priority: i64,
    pub action: String,
}

impl Selection {
    /// Whether an image meets the rule's tagging requirements. Every entry of a prefix or
    /// pattern list must match one of the image's tags (the lists are AND).
    pub fn selects(&self, image: &Image) -> bool {
        match self.tag_status.as_str() {
            "untagged" => image.tags.is_empty(),
            "any" => true,
            "tagged" => {
                if let Some(prefixes) = &self.tag_prefix_list {
                    !image.tags.is_empty()
                        && prefixes.iter().all(|p| image.tags.iter().any(|t| t.starts_with(p.as_str())))
                } else if let Some(patterns) = &self.tag_pattern_list {
                    !image.tags.is_empty()
                        && patterns.iter().all(|p| image.tags.iter().any(|t| wildcard::matches(p, t)))
                } else {
                    false
                }
            }
            _ => false,
        }
    }
}

/// What the policy does to `images` at `now_ms`: at most one decision per image, ordered by
/// rule priority and then oldest first.
pub fn evaluate(policy: &LifecyclePolicy, images: &[Image], now_ms: i64) -> Vec<Decision> {
    let mut rules: Vec<&Rule> = policy.rules.iter().collect();
    rules.sort_by_key(|r| r.rule_priority);
    let eligible: Vec<&Image> = images.iter().filter(|i| !i.in_index).collect();
    // Digests a higher-priority rule selected (acted on or not): out of reach of lower rules.
    let mut reserved: std::collections::HashSet<&str> = std::collections::HashSet::new();
    let mut decisions = Vec::new();
    for rule in rules {
        let s = &rule.selection;
        // Newest first, so the count keeps the newest; ties broken by digest for stability.
        let mut matched: Vec<&Image> = eligible.iter().copied().filter(|i| s.selects(i)).collect();
        matched.sort_by(|a, b| b.pushed_at_ms.cmp(&a.pushed_at_ms).then_with(|| a.digest.cmp(&b.digest)));
        let candidates: Vec<&Image> = match s.count_type.as_str() {
            "imageCountMoreThan" => matched.iter().copied().skip(s.count_number as usize).collect(),
            _ => {
                let cutoff = now_ms - s.count_number * DAY_MS;
                matched.iter().copied().filter(|i| i.pushed_at_ms < cutoff).collect()
            }
        };
        for image in candidates.into_iter().rev() {
            if !reserved.contains(image.digest.as_str()) {
                decisions.push(Decision {
                    digest: image.digest.clone(),
                    rule_priority: rule.rule_priority,
                    action: rule.action.kind.clone(),
                });
            }
        }
        reserved.extend(matched.iter().map(|i| i.digest.as_str()));
    }
    decisions
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const NOW: i64 = 1_800_000_000_000;

    fn img(digest: &str, tags: &[&str], days_old: i64) -> Image {
        Image {
            digest: digest.into(),
            tags: tags.iter().map(|t| t.to_string()).collect(),
            pushed_at_ms: NOW - days_old * DAY_MS,
            in_index: false,
        }
    }

    fn expired(policy: &str, images: &[Image]) -> Vec<String> {
        let mut d: Vec<String> = evaluate(&parse(policy).unwrap(), images, NOW).into_iter().map(|d| d.digest).collect();
        d.sort();
        d
    }

    #[test]
    fn seed_policies_keep_the_last_five_prod_and_drop_old_untagged() {
        let policy = r#"{"rules":[
            {"rulePriority":1,"description":"keep last 5 prod","selection":{"tagStatus":"tagged","tagPatternList":["prod*"],"countType":"imageCountMoreThan","countNumber":5},"action":{"type":"expire"}},
            {"rulePriority":2,"description":"untagged older than 14 days","selection":{"tagStatus":"untagged","countType":"sinceImagePushed","countUnit":"days","countNumber":14},"action":{"type":"expire"}}]}"#;
        let mut images: Vec<Image> = (1..=8).map(|i| img(&format!("p{i}"), &[&format!("prod-{i}")], 20 - i)).collect();
        images.push(img("dev", &["dev-1"], 30));
        images.push(img("u-old", &[], 15));
        images.push(img("u-new", &[], 13));
        assert_eq!(expired(policy, &images), ["p1", "p2", "p3", "u-old"]);
    }

    #[test]
    fn higher_priority_selection_shields_but_still_counts() {
        // Rule 1 selects prod images (keeps 10: expires nothing); rule 2, `any` keep 2, cannot
        // touch prod images but they count toward its two.
        let policy = r#"{"rules":[
            {"rulePriority":1,"selection":{"tagStatus":"tagged","tagPrefixList":["prod"],"countType":"imageCountMoreThan","countNumber":10},"action":{"type":"expire"}},
            {"rulePriority":2,"selection":{"tagStatus":"any","countType":"imageCountMoreThan","countNumber":2},"action":{"type":"expire"}}]}"#;
        let images = [
            img("prod-new", &["prod1"], 1),
            img("prod-old", &["prod2"], 9),
            img("a", &["x"], 2),
            img("b", &[], 3),
            img("c", &["y"], 4),
        ];
        // any sees [prod-new, a, b, c, prod-old] newest first; keeps 2 (prod-new, a); b, c, prod-old
        // are beyond the count, and prod-old is shielded by rule 1.
        assert_eq!(expired(policy, &images), ["b", "c"]);
    }

    #[test]
    fn lists_are_and_and_patterns_use_wildcards() {
        let policy = r#"{"rules":[{"rulePriority":1,"selection":{"tagStatus":"tagged","tagPrefixList":["alpha","beta"],"countType":"imageCountMoreThan","countNumber":1},"action":{"type":"expire"}}]}"#;
        let images = [
            img("both-new", &["alpha1", "beta1"], 1),
            img("both-old", &["alpha2", "beta2"], 2),
            img("alpha-only", &["alpha3"], 3),
        ];
        assert_eq!(expired(policy, &images), ["both-old"]);
        let pattern = r#"{"rules":[{"rulePriority":1,"selection":{"tagStatus":"tagged","tagPatternList":["v*.*-rc*"],"countType":"sinceImagePushed","countUnit":"days","countNumber":7},"action":{"type":"expire"}}]}"#;
        let images = [img("rc-old", &["v1.2-rc3"], 8), img("rc-new", &["v1.3-rc1"], 2), img("release", &["v1.2"], 30)];
        assert_eq!(expired(pattern, &images), ["rc-old"]);
    }

    #[test]
    fn index_children_are_not_evaluated_alone() {
        let policy = r#"{"rules":[{"rulePriority":1,"selection":{"tagStatus":"untagged","countType":"imageCountMoreThan","countNumber":1},"action":{"type":"expire"}}]}"#;
        let mut child = img("child", &[], 10);
        child.in_index = true;
        let images = [child, img("u1", &[], 1), img("u2", &[], 2)];
        assert_eq!(expired(policy, &images), ["u2"]);
    }

    #[test]
    fn validation_messages() {
        let rule = |sel: &str, prio: i64| {
            format!(r#"{{"rulePriority":{prio},"selection":{sel},"action":{{"type":"expire"}}}}"#)
        };
        let policy = |rules: &[String]| format!(r#"{{"rules":[{}]}}"#, rules.join(","));
        let tagged = r#"{"tagStatus":"tagged","tagPrefixList":["p"],"countType":"imageCountMoreThan","countNumber":1}"#;
        let untagged = r#"{"tagStatus":"untagged","countType":"imageCountMoreThan","countNumber":1}"#;
        let any = r#"{"tagStatus":"any","countType":"imageCountMoreThan","countNumber":1}"#;
        let cases: Vec<(String, &str)> = vec![
            (policy(&[]), "at least one rule"),
            (policy(&[rule(tagged, 1), rule(untagged, 1)]), "must be unique"),
            (policy(&[rule(any, 1), rule(tagged, 2)]), "must have the highest rulePriority"),
            (policy(&[rule(untagged, 1), rule(untagged, 2)]), "Only one rule may select untagged"),
            (
                policy(&[rule(r#"{"tagStatus":"tagged","countType":"imageCountMoreThan","countNumber":1}"#, 1)]),
                "needs a tagPrefixList or a tagPatternList",
            ),
            (
                policy(&[rule(
                    r#"{"tagStatus":"tagged","tagPrefixList":["a"],"tagPatternList":["b"],"countType":"imageCountMoreThan","countNumber":1}"#,
                    1,
                )]),
                "not both",
            ),
            (
                policy(&[rule(
                    r#"{"tagStatus":"untagged","tagPrefixList":["a"],"countType":"imageCountMoreThan","countNumber":1}"#,
                    1,
                )]),
                "only allowed with tagStatus tagged",
            ),
            (
                policy(&[rule(
                    r#"{"tagStatus":"tagged","tagPatternList":["a*b*c*d*e*f"],"countType":"imageCountMoreThan","countNumber":1}"#,
                    1,
                )]),
                "more than 4 wildcards",
            ),
            (
                policy(&[rule(
                    r#"{"tagStatus":"untagged","countType":"imageCountMoreThan","countUnit":"days","countNumber":1}"#,
                    1,
                )]),
                "countUnit is not allowed",
            ),
            (
                policy(&[rule(r#"{"tagStatus":"untagged","countType":"sinceImagePushed","countNumber":1}"#, 1)]),
                "needs countUnit days",
            ),
            (
                policy(&[rule(r#"{"tagStatus":"untagged","countType":"imageCountMoreThan","countNumber":0}"#, 1)]),
                "countNumber must be a positive",
            ),
            (
                policy(&[rule(r#"{"tagStatus":"sometimes","countType":"imageCountMoreThan","countNumber":1}"#, 1)]),
                "tagStatus must be",
            ),
            (
                policy(&[rule(r#"{"tagStatus":"untagged","countType":"imageCountMoreThan","countNumber":1}"#, 0)]),
                "positive integer",
            ),
            (r#"{"rules":[{"rulePriority":1}]}"#.into(), "not valid JSON"),
            ("not json".into(), "not valid JSON"),
        ];
        for (text, want) in cases {
            let e = parse(&text).expect_err(&text);
            assert!(e.0.contains(want), "{text}: {e}");
        }
        assert!(parse(&policy(&[rule(tagged, 1), rule(untagged, 2), rule(any, 3)])).is_ok());
    }

    proptest! {
        #[test]
        fn count_rules_never_leave_fewer_than_n(ages in proptest::collection::vec(0i64..100, 0..30), n in 1i64..10) {
            let policy = format!(r#"{{"rules":[{{"rulePriority":1,"selection":{{"tagStatus":"any","countType":"imageCountMoreThan","countNumber":{n}}},"action":{{"type":"expire"}}}}]}}"#);
            let images: Vec<Image> = ages.iter().enumerate().map(|(i, a)| img(&format!("d{i}"), &[], *a)).collect();
            let decisions = evaluate(&parse(&policy).unwrap(), &images, NOW);
            prop_assert_eq!(images.len() - decisions.len(), images.len().min(n as usize));
            // And what is expired is never newer than what is kept.
            let expired: Vec<&Image> = images.iter().filter(|i| decisions.iter().any(|d| d.digest == i.digest)).collect();
            let kept: Vec<&Image> = images.iter().filter(|i| !decisions.iter().any(|d| d.digest == i.digest)).collect();
            for e in &expired {
                for k in &kept {
                    prop_assert!(e.pushed_at_ms <= k.pushed_at_ms);
                }
            }
        }

        #[test]
        fn an_image_is_acted_on_at_most_once(ages in proptest::collection::vec(0i64..60, 0..20), tagged in proptest::collection::vec(any::<bool>(), 20)) {
            let policy = r#"{"rules":[
                {"rulePriority":1,"selection":{"tagStatus":"tagged","tagPrefixList":["t"],"countType":"imageCountMoreThan","countNumber":2},"action":{"type":"expire"}},
                {"rulePriority":2,"selection":{"tagStatus":"untagged","countType":"sinceImagePushed","countUnit":"days","countNumber":10},"action":{"type":"expire"}},
                {"rulePriority":3,"selection":{"tagStatus":"any","countType":"imageCountMoreThan","countNumber":3},"action":{"type":"expire"}}]}"#;
            let images: Vec<Image> = ages.iter().enumerate().map(|(i, a)| img(&format!("d{i}"), if tagged[i] { &["t1"] } else { &[] }, *a)).collect();
            let decisions = evaluate(&parse(policy).unwrap(), &images, NOW);
            let mut seen = std::collections::HashSet::new();
            for d in &decisions {
                prop_assert!(seen.insert(d.digest.clone()));
            }
        }
    }
}
