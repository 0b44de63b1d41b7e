//! ECR lifecycle policies: the rule grammar, its validation, and evaluation as a pure function
//! of (policy, images, now) to the actions to take.
//!
//! Evaluation follows ECR's rules: a rule sees every image of its storage class; results apply
//! in priority order (lowest number first); an image is acted on by at most one rule; an image
//! whose tags meet a higher-priority rule's selection is never acted on by a lower-priority
//! rule, yet it still counts toward that rule's `imageCountMoreThan`; older images go first.
//! Children of a multi-architecture index are not evaluated on their own: they live and die
//! with the index.
//!
//! Beyond ECR, as extensions whose names start with `berth` (ECR's grammar is unchanged, so a
//! policy without them means exactly what it means in ECR):
//! - `berthProtection` (top level): images pulled within `pulledWithinDays`, tagged with a tag
//!   matching one of `pinnedTags` (wildcards) or listed in `pinnedDigests` are never acted on
//!   by any rule; they still count toward `imageCountMoreThan`.
//! - `selection.berthExcludeTagPatternList`: a rule does not select an image that carries a tag
//!   matching one of these patterns.
//! - `countType: berthSinceImagePulled`: `sinceImagePulled` that may also `expire` (ECR accepts
//!   `sinceImagePulled` only with `transition`).

use serde::Deserialize;

use crate::wildcard;

pub const DAY_MS: i64 = 24 * 3600 * 1000;
/// At most this many `*` in one `tagPatternList` entry.
pub const MAX_WILDCARDS: usize = 4;
/// ECR's minimum storage duration in the archive: no rule may expire an image archived for
/// fewer days.
pub const MIN_ARCHIVE_DAYS: i64 = 90;

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LifecyclePolicy {
    pub rules: Vec<Rule>,
    #[serde(default)]
    pub berth_protection: Option<Protection>,
}

/// Images no rule may act on (an extension).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Protection {
    #[serde(default)]
    pub pulled_within_days: Option<i64>,
    #[serde(default)]
    pub pinned_tags: Option<Vec<String>>,
    #[serde(default)]
    pub pinned_digests: Option<Vec<String>>,
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
    /// `standard` (the default) or `archive`: which images the rule sees.
    #[serde(default)]
    pub storage_class: Option<String>,
    pub count_type: String,
    #[serde(default)]
    pub count_unit: Option<String>,
    pub count_number: i64,
    #[serde(default)]
    pub berth_exclude_tag_pattern_list: Option<Vec<String>>,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Action {
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default)]
    pub target_storage_class: Option<String>,
}

/// Where an image's bytes live as far as ECR's API is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum StorageClass {
    #[default]
    Standard,
    Archive,
}

impl StorageClass {
    /// The lifecycle grammar's spelling (`standard`, `archive`).
    pub fn as_policy_str(self) -> &'static str {
        match self {
            StorageClass::Standard => "standard",
            StorageClass::Archive => "archive",
        }
    }
    /// The API's spelling (`STANDARD`, `ARCHIVE`).
    pub fn as_api_str(self) -> &'static str {
        match self {
            StorageClass::Standard => "STANDARD",
            StorageClass::Archive => "ARCHIVE",
        }
    }
}

/// What a rule does to the images it selects.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ActionKind {
    Expire,
    /// Move to the archive storage class.
    Transition,
}

impl ActionKind {
    /// The API's spelling (`EXPIRE`, `TRANSITION`).
    pub fn as_api_str(self) -> &'static str {
        match self {
            ActionKind::Expire => "EXPIRE",
            ActionKind::Transition => "TRANSITION",
        }
    }

    pub fn parse(s: &str) -> Option<ActionKind> {
        match s {
            "EXPIRE" => Some(ActionKind::Expire),
            "TRANSITION" => Some(ActionKind::Transition),
            _ => None,
        }
    }
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

fn check_patterns(at: &str, field: &str, patterns: &[String]) -> Result<(), LifecycleError> {
    if patterns.is_empty() || patterns.iter().any(|t| t.is_empty()) {
        return err(format!("{at}: {field} must hold at least one non-empty entry"));
    }
    if let Some(bad) = patterns.iter().find(|p| p.matches('*').count() > MAX_WILDCARDS) {
        return err(format!("{at}: tag pattern {bad:?} in {field} has more than {MAX_WILDCARDS} wildcards"));
    }
    Ok(())
}

pub fn validate(policy: &LifecyclePolicy) -> Result<(), LifecycleError> {
    if policy.rules.is_empty() {
        return err("Lifecycle policy must contain at least one rule");
    }
    let mut priorities: Vec<i64> = Vec::new();
    let mut untagged_rules: Vec<StorageClass> = Vec::new();
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
        let class = rule.storage_class().map_err(|e| LifecycleError(format!("{at}: {e}")))?;
        let (prefixes, patterns) = (s.tag_prefix_list.as_ref(), s.tag_pattern_list.as_ref());
        match s.tag_status.as_str() {
            "tagged" => match (prefixes, patterns) {
                (Some(_), Some(_)) => return err(format!("{at}: give tagPrefixList or tagPatternList, not both")),
                (None, None) => {
                    return err(format!("{at}: tagStatus tagged needs a tagPrefixList or a tagPatternList"));
                }
                (Some(l), None) => check_patterns(&at, "tagPrefixList", l)?,
                (None, Some(l)) => check_patterns(&at, "tagPatternList", l)?,
            },
            "untagged" | "any" => {
                if prefixes.is_some() || patterns.is_some() {
                    return err(format!(
                        "{at}: tagPrefixList and tagPatternList are only allowed with tagStatus tagged"
                    ));
                }
                if s.tag_status == "untagged" {
                    if untagged_rules.contains(&class) {
                        return err(format!(
                            "Only one rule may select untagged images of storage class {}",
                            class.as_policy_str()
                        ));
                    }
                    untagged_rules.push(class);
                }
            }
            other => return err(format!("{at}: tagStatus must be tagged, untagged or any, got {other:?}")),
        }
        if let Some(excl) = &s.berth_exclude_tag_pattern_list {
            if s.tag_status == "untagged" {
                return err(format!("{at}: berthExcludeTagPatternList cannot apply to untagged images"));
            }
            check_patterns(&at, "berthExcludeTagPatternList", excl)?;
        }
        let action = match (rule.action.kind.as_str(), rule.action.target_storage_class.as_deref()) {
            ("expire", None) => ActionKind::Expire,
            ("expire", Some(_)) => return err(format!("{at}: targetStorageClass is only allowed with transition")),
            ("transition", Some("archive")) => ActionKind::Transition,
            ("transition", Some(other)) => {
                return err(format!("{at}: targetStorageClass must be archive, got {other:?}"));
            }
            ("transition", None) => return err(format!("{at}: transition needs targetStorageClass archive")),
            (other, _) => return err(format!("{at}: action type must be expire or transition, got {other:?}")),
        };
        if action == ActionKind::Transition && class == StorageClass::Archive {
            return err(format!("{at}: images in the archive storage class cannot transition; select standard"));
        }
        let days = match s.count_type.as_str() {
            "imageCountMoreThan" => {
                if s.count_unit.is_some() {
                    return err(format!("{at}: countUnit is not allowed with imageCountMoreThan"));
                }
                false
            }
            "sinceImagePushed" | "sinceImagePulled" | "sinceImageTransitioned" | "berthSinceImagePulled" => true,
            other => {
                return err(format!(
                    "{at}: countType must be imageCountMoreThan, sinceImagePushed, sinceImagePulled or \
                     sinceImageTransitioned, got {other:?}"
                ));
            }
        };
        if days {
            match s.count_unit.as_deref() {
                Some("days") => {}
                Some(u) => return err(format!("{at}: countUnit must be days, got {u:?}")),
                None => return err(format!("{at}: {} needs countUnit days", s.count_type)),
            }
        }
        match (s.count_type.as_str(), action, class) {
            ("sinceImagePulled", ActionKind::Expire, _) => {
                return err(format!(
                    "{at}: sinceImagePulled is only allowed with the transition action \
                     (Berth's extension countType berthSinceImagePulled may expire)"
                ));
            }
            ("sinceImageTransitioned", _, StorageClass::Standard) => {
                return err(format!("{at}: sinceImageTransitioned is only allowed with storageClass archive"));
            }
            ("sinceImageTransitioned", ActionKind::Expire, StorageClass::Archive)
                if s.count_number < MIN_ARCHIVE_DAYS =>
            {
                return err(format!(
                    "{at}: archived images have a minimum storage duration of {MIN_ARCHIVE_DAYS} days; \
                     countNumber must be at least {MIN_ARCHIVE_DAYS}"
                ));
            }
            (t, ActionKind::Expire, StorageClass::Archive) if t != "sinceImageTransitioned" => {
                return err(format!(
                    "{at}: a rule that expires archived images must count with sinceImageTransitioned"
                ));
            }
            _ => {}
        }
        if s.count_number < 1 {
            return err(format!("{at}: countNumber must be a positive integer, got {}", s.count_number));
        }
    }
    for class in [StorageClass::Standard, StorageClass::Archive] {
        let in_class: Vec<&Rule> = policy.rules.iter().filter(|r| r.storage_class().ok() == Some(class)).collect();
        let max = in_class.iter().map(|r| r.rule_priority).max().unwrap_or(0);
        if let Some(any) = in_class.iter().find(|r| r.selection.tag_status == "any" && r.rule_priority != max) {
            return err(format!(
                "The rule with tagStatus any (rulePriority {}) must have the highest rulePriority among the \
                 rules of storage class {}",
                any.rule_priority,
                class.as_policy_str()
            ));
        }
    }
    if let Some(p) = &policy.berth_protection {
        if p.pulled_within_days.is_some_and(|d| d < 1) {
            return err("berthProtection.pulledWithinDays must be a positive integer");
        }
        if let Some(tags) = &p.pinned_tags {
            check_patterns("berthProtection", "pinnedTags", tags)?;
        }
    }
    Ok(())
}

impl Rule {
    pub fn storage_class(&self) -> Result<StorageClass, String> {
        match self.selection.storage_class.as_deref() {
            None | Some("standard") => Ok(StorageClass::Standard),
            Some("archive") => Ok(StorageClass::Archive),
            Some(other) => Err(format!("storageClass must be standard or archive, got {other:?}")),
        }
    }

    pub fn action_kind(&self) -> ActionKind {
        if self.action.kind == "transition" { ActionKind::Transition } else { ActionKind::Expire }
    }
}

/// An image as lifecycle evaluation sees it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Image {
    pub digest: String,
    pub tags: Vec<String>,
    pub pushed_at_ms: i64,
    /// Last pull through the registry; `None` when never pulled.
    pub last_pulled_ms: Option<i64>,
    pub storage_class: StorageClass,
    /// When the image last moved to the archive.
    pub archived_at_ms: Option<i64>,
    /// Listed by a multi-architecture index: never evaluated on its own.
    pub in_index: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    pub digest: String,
    pub rule_priority: i64,
    pub action: ActionKind,
}

impl Selection {
    /// Whether an image meets the rule's tagging requirements. Every entry of a prefix or
    /// pattern list must match one of the image's tags (the lists are AND).
    pub fn selects(&self, image: &Image) -> bool {
        let by_tags = match self.tag_status.as_str() {
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
        };
        by_tags
            && !self
                .berth_exclude_tag_pattern_list
                .as_ref()
                .is_some_and(|ex| ex.iter().any(|p| image.tags.iter().any(|t| wildcard::matches(p, t))))
    }

    /// The moment a `since…` count starts from, for this image.
    fn since_ms(&self, image: &Image) -> i64 {
        match self.count_type.as_str() {
            // ECR: an image never pulled counts from its push.
            "sinceImagePulled" | "berthSinceImagePulled" => image.last_pulled_ms.unwrap_or(image.pushed_at_ms),
            "sinceImageTransitioned" => image.archived_at_ms.unwrap_or(image.pushed_at_ms),
            _ => image.pushed_at_ms,
        }
    }
}

impl Protection {
    pub fn protects(&self, image: &Image, now_ms: i64) -> bool {
        let pulled =
            self.pulled_within_days.is_some_and(|d| image.last_pulled_ms.is_some_and(|p| p >= now_ms - d * DAY_MS));
        let pinned_tag = self
            .pinned_tags
            .as_ref()
            .is_some_and(|ps| ps.iter().any(|p| image.tags.iter().any(|t| wildcard::matches(p, t))));
        let pinned_digest = self.pinned_digests.as_ref().is_some_and(|ds| ds.contains(&image.digest));
        pulled || pinned_tag || pinned_digest
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
    let protection = policy.berth_protection.clone().unwrap_or_default();
    let mut decisions = Vec::new();
    for rule in rules {
        let s = &rule.selection;
        let class = rule.storage_class().unwrap_or_default();
        // Newest first, so the count keeps the newest; ties broken by digest for stability.
        let mut matched: Vec<&Image> =
            eligible.iter().copied().filter(|i| i.storage_class == class && s.selects(i)).collect();
        matched.sort_by(|a, b| b.pushed_at_ms.cmp(&a.pushed_at_ms).then_with(|| a.digest.cmp(&b.digest)));
        let mut candidates: Vec<&Image> = match s.count_type.as_str() {
            "imageCountMoreThan" => matched.iter().copied().skip(s.count_number as usize).collect(),
            _ => {
                let cutoff = now_ms - s.count_number * DAY_MS;
                matched.iter().copied().filter(|i| s.since_ms(i) < cutoff).collect()
            }
        };
        // Oldest first, by the same clock the rule counts with.
        candidates.sort_by(|a, b| s.since_ms(a).cmp(&s.since_ms(b)).then_with(|| a.digest.cmp(&b.digest)));
        for image in candidates {
            if !reserved.contains(image.digest.as_str()) && !protection.protects(image, now_ms) {
                decisions.push(Decision {
                    digest: image.digest.clone(),
                    rule_priority: rule.rule_priority,
                    action: rule.action_kind(),
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
            ..Default::default()
        }
    }

    fn archived(digest: &str, tags: &[&str], days_in_archive: i64) -> Image {
        Image {
            storage_class: StorageClass::Archive,
            archived_at_ms: Some(NOW - days_in_archive * DAY_MS),
            ..img(digest, tags, days_in_archive + 30)
        }
    }

    fn pulled(mut image: Image, days_ago: i64) -> Image {
        image.last_pulled_ms = Some(NOW - days_ago * DAY_MS);
        image
    }

    fn decided(policy: &str, images: &[Image]) -> Vec<(String, ActionKind)> {
        let mut d: Vec<(String, ActionKind)> =
            evaluate(&parse(policy).unwrap(), images, NOW).into_iter().map(|d| (d.digest, d.action)).collect();
        d.sort_by(|a, b| a.0.cmp(&b.0));
        d
    }

    fn rule(prio: i64, selection: &str, action: &str) -> String {
        format!(r#"{{"rulePriority":{prio},"selection":{selection},"action":{action}}}"#)
    }

    fn policy_of(rules: &[String]) -> String {
        format!(r#"{{"rules":[{}]}}"#, rules.join(","))
    }

    const EXPIRE: &str = r#"{"type":"expire"}"#;
    const ARCHIVE: &str = r#"{"type":"transition","targetStorageClass":"archive"}"#;

    // The worked examples of the AWS user guide's "Examples of lifecycle policies" page, with
    // the repository contents and outcomes it gives.

    #[test]
    fn guide_filtering_on_image_age() {
        let p = policy_of(&[rule(
            1,
            r#"{"tagStatus":"tagged","tagPatternList":["prod*"],"countType":"sinceImagePushed","countUnit":"days","countNumber":14}"#,
            EXPIRE,
        )]);
        let images = [img("a", &["prod-1"], 15), img("b", &["prod-2"], 13), img("c", &["dev-1"], 30)];
        assert_eq!(expired(&p, &images), ["a"]);
    }

    #[test]
    fn guide_filtering_on_image_count() {
        let p = policy_of(&[rule(
            1,
            r#"{"tagStatus":"tagged","tagPatternList":["prod*"],"countType":"imageCountMoreThan","countNumber":1}"#,
            EXPIRE,
        )]);
        let images = [img("a", &["prod-1"], 3), img("b", &["prod-2"], 2), img("c", &["prod-3"], 1)];
        assert_eq!(expired(&p, &images), ["a", "b"]);
    }

    #[test]
    fn guide_filtering_on_multiple_rules() {
        // Image A [beta-1, prod-1] 10 days, B [beta-2, prod-2] 9 days, C [beta-3] 8 days.
        // Rule 1 (prod, keep 1) expires A; rule 2 (beta, keep 1) would take A and B, but A is
        // already expired and B met rule 1's selection: only A goes.
        let p = policy_of(&[
            rule(
                1,
                r#"{"tagStatus":"tagged","tagPatternList":["prod*"],"countType":"imageCountMoreThan","countNumber":1}"#,
                EXPIRE,
            ),
            rule(
                2,
                r#"{"tagStatus":"tagged","tagPatternList":["beta*"],"countType":"imageCountMoreThan","countNumber":1}"#,
                EXPIRE,
            ),
        ]);
        let images =
            [img("A", &["beta-1", "prod-1"], 10), img("B", &["beta-2", "prod-2"], 9), img("C", &["beta-3"], 8)];
        assert_eq!(expired(&p, &images), ["A"]);
    }

    #[test]
    fn guide_filtering_on_multiple_tags_in_one_rule() {
        // A [alpha-1] 12 d, B [beta-1] 11 d, C [alpha-2, beta-2] 10 d, D [alpha-3] 4 d,
        // E [beta-3] 3 d, F [alpha-4, beta-4] 2 d. Both patterns must match: C and F qualify.
        let images = [
            img("A", &["alpha-1"], 12),
            img("B", &["beta-1"], 11),
            img("C", &["alpha-2", "beta-2"], 10),
            img("D", &["alpha-3"], 4),
            img("E", &["beta-3"], 3),
            img("F", &["alpha-4", "beta-4"], 2),
        ];
        let by_age = policy_of(&[rule(
            1,
            r#"{"tagStatus":"tagged","tagPatternList":["alpha*","beta*"],"countType":"sinceImagePushed","countUnit":"days","countNumber":5}"#,
            EXPIRE,
        )]);
        assert_eq!(expired(&by_age, &images), ["C"]);
        let by_count = policy_of(&[rule(
            1,
            r#"{"tagStatus":"tagged","tagPatternList":["alpha*","beta*"],"countType":"imageCountMoreThan","countNumber":1}"#,
            EXPIRE,
        )]);
        assert_eq!(expired(&by_count, &images), ["C"]);
    }

    #[test]
    fn guide_filtering_on_all_images() {
        // A [alpha-1] 4 d, B [beta-1] 3 d, C untagged 2 d, D [alpha-2] 1 d; keep one of any.
        let images = [img("A", &["alpha-1"], 4), img("B", &["beta-1"], 3), img("C", &[], 2), img("D", &["alpha-2"], 1)];
        let keep_one =
            policy_of(&[rule(1, r#"{"tagStatus":"any","countType":"imageCountMoreThan","countNumber":1}"#, EXPIRE)]);
        assert_eq!(expired(&keep_one, &images), ["A", "B", "C"]);
        // Untagged first (keep one), then any (keep one): C is the only untagged image, so rule 1
        // expires nothing but shields C; rule 2 keeps D (newest) and expires A and B.
        let two_rules = policy_of(&[
            rule(1, r#"{"tagStatus":"untagged","countType":"imageCountMoreThan","countNumber":1}"#, EXPIRE),
            rule(2, r#"{"tagStatus":"any","countType":"imageCountMoreThan","countNumber":1}"#, EXPIRE),
        ]);
        assert_eq!(expired(&two_rules, &images), ["A", "B"]);
    }

    #[test]
    fn guide_archive_then_delete() {
        // Archive what has not been pulled for 90 days; delete what has been archived for a year.
        let p = policy_of(&[
            rule(
                1,
                r#"{"tagStatus":"any","countType":"sinceImagePulled","countUnit":"days","countNumber":90}"#,
                ARCHIVE,
            ),
            rule(
                2,
                r#"{"tagStatus":"any","storageClass":"archive","countType":"sinceImageTransitioned","countUnit":"days","countNumber":365}"#,
                EXPIRE,
            ),
        ]);
        let images = [
            pulled(img("hot", &["v1"], 400), 10),
            pulled(img("cold", &["v2"], 400), 100),
            img("never-pulled-old", &[], 120),
            img("never-pulled-new", &[], 30),
            archived("archived-long", &["v0"], 400),
            archived("archived-recent", &[], 100),
        ];
        assert_eq!(
            decided(&p, &images),
            [
                ("archived-long".to_string(), ActionKind::Expire),
                ("cold".to_string(), ActionKind::Transition),
                ("never-pulled-old".to_string(), ActionKind::Transition),
            ]
        );
    }

    #[test]
    fn rules_see_only_their_storage_class() {
        let p =
            policy_of(&[rule(1, r#"{"tagStatus":"any","countType":"imageCountMoreThan","countNumber":1}"#, EXPIRE)]);
        // The archived image neither counts nor is expired by a standard rule.
        let images = [archived("old-archived", &[], 200), img("a", &[], 2), img("b", &[], 1)];
        assert_eq!(expired(&p, &images), ["a"]);
    }

    #[test]
    fn extension_protection_keeps_pulled_and_pinned_images() {
        let p = r#"{"rules":[{"rulePriority":1,"selection":{"tagStatus":"any","countType":"imageCountMoreThan","countNumber":1},"action":{"type":"expire"}}],
            "berthProtection":{"pulledWithinDays":7,"pinnedTags":["release-*"],"pinnedDigests":["pinned"]}}"#;
        let images = [
            img("newest", &[], 1),
            pulled(img("in-use", &["x"], 50), 3),
            pulled(img("stale", &["y"], 40), 30),
            img("released", &["release-1"], 60),
            img("pinned", &[], 70),
            img("plain", &[], 80),
        ];
        assert_eq!(expired(p, &images), ["plain", "stale"]);
    }

    #[test]
    fn extension_exclusion_patterns() {
        let p = policy_of(&[rule(
            1,
            r#"{"tagStatus":"tagged","tagPatternList":["*"],"berthExcludeTagPatternList":["latest","stable-*"],"countType":"imageCountMoreThan","countNumber":1}"#,
            EXPIRE,
        )]);
        let images = [
            img("new", &["v3"], 1),
            img("mid", &["v2", "stable-2"], 2),
            img("old", &["v1"], 3),
            img("latest", &["v0", "latest"], 9),
        ];
        assert_eq!(expired(&p, &images), ["old"]);
    }

    #[test]
    fn extension_expire_since_pulled() {
        let p = policy_of(&[rule(
            1,
            r#"{"tagStatus":"any","countType":"berthSinceImagePulled","countUnit":"days","countNumber":30}"#,
            EXPIRE,
        )]);
        let images = [
            pulled(img("used", &[], 100), 5),
            pulled(img("unused", &[], 100), 45),
            img("never", &[], 31),
            img("fresh", &[], 29),
        ];
        assert_eq!(expired(&p, &images), ["never", "unused"]);
    }

    #[test]
    fn storage_class_validation_messages() {
        let cases: Vec<(String, &str)> = vec![
            (
                policy_of(&[rule(1, r#"{"tagStatus":"any","countType":"sinceImagePulled","countUnit":"days","countNumber":9}"#, EXPIRE)]),
                "sinceImagePulled is only allowed with the transition action",
            ),
            (
                policy_of(&[rule(1, r#"{"tagStatus":"any","countType":"sinceImageTransitioned","countUnit":"days","countNumber":99}"#, EXPIRE)]),
                "only allowed with storageClass archive",
            ),
            (
                policy_of(&[rule(1, r#"{"tagStatus":"any","storageClass":"archive","countType":"sinceImageTransitioned","countUnit":"days","countNumber":30}"#, EXPIRE)]),
                "minimum storage duration of 90 days",
            ),
            (
                policy_of(&[rule(1, r#"{"tagStatus":"any","storageClass":"archive","countType":"imageCountMoreThan","countNumber":3}"#, EXPIRE)]),
                "must count with sinceImageTransitioned",
            ),
            (
                policy_of(&[rule(1, r#"{"tagStatus":"any","storageClass":"archive","countType":"sinceImagePushed","countUnit":"days","countNumber":3}"#, ARCHIVE)]),
                "cannot transition",
            ),
            (
                policy_of(&[rule(1, r#"{"tagStatus":"any","storageClass":"glacier","countType":"imageCountMoreThan","countNumber":3}"#, EXPIRE)]),
                "storageClass must be standard or archive",
            ),
            (
                policy_of(&[rule(1, r#"{"tagStatus":"any","countType":"imageCountMoreThan","countNumber":3}"#, r#"{"type":"transition"}"#)]),
                "needs targetStorageClass archive",
            ),
            (
                policy_of(&[rule(1, r#"{"tagStatus":"any","countType":"imageCountMoreThan","countNumber":3}"#, r#"{"type":"transition","targetStorageClass":"standard"}"#)]),
                "targetStorageClass must be archive",
            ),
            (
                policy_of(&[rule(1, r#"{"tagStatus":"any","countType":"imageCountMoreThan","countNumber":3}"#, r#"{"type":"expire","targetStorageClass":"archive"}"#)]),
                "only allowed with transition",
            ),
            (
                policy_of(&[rule(1, r#"{"tagStatus":"any","countType":"imageCountMoreThan","countNumber":3}"#, r#"{"type":"delete"}"#)]),
                "action type must be expire or transition",
            ),
            (
                policy_of(&[rule(1, r#"{"tagStatus":"untagged","berthExcludeTagPatternList":["x"],"countType":"imageCountMoreThan","countNumber":3}"#, EXPIRE)]),
                "cannot apply to untagged",
            ),
            (
                policy_of(&[rule(1, r#"{"tagStatus":"any","countType":"sinceImagePulled","countNumber":3}"#, ARCHIVE)]),
                "sinceImagePulled needs countUnit days",
            ),
            (
                r#"{"rules":[{"rulePriority":1,"selection":{"tagStatus":"any","countType":"imageCountMoreThan","countNumber":1},"action":{"type":"expire"}}],"berthProtection":{"pulledWithinDays":0}}"#.into(),
                "pulledWithinDays must be a positive",
            ),
        ];
        for (text, want) in cases {
            let e = parse(&text).expect_err(&text);
            assert!(e.0.contains(want), "{text}: {e}");
        }
        // `any` is last within each storage class, and each class may have its own untagged rule.
        assert!(
            parse(&policy_of(&[
                rule(1, r#"{"tagStatus":"untagged","countType":"sinceImagePulled","countUnit":"days","countNumber":30}"#, ARCHIVE),
                rule(2, r#"{"tagStatus":"any","countType":"sinceImagePulled","countUnit":"days","countNumber":90}"#, ARCHIVE),
                rule(3, r#"{"tagStatus":"untagged","storageClass":"archive","countType":"sinceImageTransitioned","countUnit":"days","countNumber":90}"#, EXPIRE),
                rule(4, r#"{"tagStatus":"any","storageClass":"archive","countType":"sinceImageTransitioned","countUnit":"days","countNumber":365}"#, EXPIRE),
            ]))
            .is_ok()
        );
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
