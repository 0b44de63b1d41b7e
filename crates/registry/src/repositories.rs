//! Repositories as the ECR API manages them: creation with settings, description, deletion,
//! tag mutability and scanning settings, and repository creation templates, which decide
//! whether a push to a missing repository creates it (`appliedFor: CREATE_ON_PUSH`).

use berth_meta::{CreationTemplate, MetaError, Repository, RepositorySettings};
use berth_oci::ErrorCode;
use berth_policy::TagMutability;
use serde::{Deserialize, Serialize};

use crate::{Registry, RegistryError};

/// A repository creation template as `CreateRepositoryCreationTemplate` takes it (all but the
/// prefix); stored as this JSON.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TemplateSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encryption_configuration: Option<EncryptionConfiguration>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub resource_tags: Vec<ResourceTag>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_tag_mutability: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub image_tag_mutability_exclusion_filters: Vec<ExclusionFilter>,
    /// Stored as text; enforced once repository policies exist.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repository_policy: Option<String>,
    /// Stored as text; enforced once lifecycle policies exist.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lifecycle_policy: Option<String>,
    #[serde(default)]
    pub applied_for: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub custom_role_arn: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EncryptionConfiguration {
    pub encryption_type: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kms_key: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResourceTag {
    #[serde(rename = "Key")]
    pub key: String,
    #[serde(rename = "Value")]
    pub value: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ExclusionFilter {
    pub filter_type: String,
    pub filter: String,
}

pub const ROOT_PREFIX: &str = "ROOT";

/// Whether a template prefix covers a repository name: `ROOT` covers all, `prod` covers
/// `prod/…` (a trailing slash is optional).
pub fn prefix_covers(prefix: &str, name: &str) -> bool {
    // Templates are the default account's: another account's repositories (keys `@…`) are
    // created only by CreateRepository.
    if name.starts_with('@') {
        return false;
    }
    if prefix == ROOT_PREFIX {
        return true;
    }
    let p = prefix.trim_end_matches('/');
    name.len() > p.len() && name.starts_with(p) && name.as_bytes()[p.len()] == b'/'
}

/// The most specific template covering `name` among those applied for `applied_for`.
pub fn template_for<'a>(
    templates: &'a [(CreationTemplate, TemplateSpec)],
    name: &str,
    applied_for: &str,
) -> Option<&'a (CreationTemplate, TemplateSpec)> {
    templates
        .iter()
        .filter(|(t, spec)| spec.applied_for.iter().any(|a| a == applied_for) && prefix_covers(&t.prefix, name))
        .max_by_key(|(t, _)| if t.prefix == ROOT_PREFIX { 0 } else { t.prefix.trim_end_matches('/').len() + 1 })
}

impl TemplateSpec {
    /// The settings a repository created from this template gets.
    pub fn settings(&self) -> RepositorySettings {
        let mut s = RepositorySettings::default();
        if let Some(m) = &self.image_tag_mutability {
            s.tag_mutability = m.clone();
            s.tag_mutability_exclusions =
                self.image_tag_mutability_exclusion_filters.iter().map(|f| f.filter.clone()).collect();
        }
        if let Some(e) = &self.encryption_configuration {
            s.encryption_type = e.encryption_type.clone();
            s.kms_key = e.kms_key.clone().filter(|k| !k.is_empty());
        }
        s
    }
}

pub fn repository_not_found(name: &str, registry_id: &str) -> String {
    format!("The repository with name '{name}' does not exist in the registry with id '{registry_id}'")
}

/// The mutability rule of a repository's settings (stored settings were validated on the way in).
pub fn tag_mutability(settings: &RepositorySettings) -> TagMutability {
    TagMutability::new(&settings.tag_mutability, settings.tag_mutability_exclusions.clone())
        .unwrap_or_else(|_| TagMutability::mutable())
}

impl Registry {
    /// One page of `account`'s repositories in key order after the key `after`: at most
    /// `limit`, and whether more follow. The listing both `/v2/_catalog` and
    /// `DescribeRepositories` page through. Another account's keys share a prefix, so they are
    /// one range of the store's order; the default account's keys are the ones without a
    /// prefix, which the other accounts' `@…` range splits in two (digits sort before `@`,
    /// letters after), so its listing steps over that range.
    pub async fn account_repositories(
        &self,
        account: &str,
        after: Option<&str>,
        limit: u32,
    ) -> Result<(Vec<Repository>, bool), RegistryError> {
        let prefix = account_key_prefix(self.registry_id(), account);
        let mut cursor = match after {
            Some(a) => Some(a.to_string()),
            None if !prefix.is_empty() => Some(prefix.clone()),
            None => None,
        };
        let mut found: Vec<Repository> = Vec::new();
        let want = limit as usize + 1;
        loop {
            let asked = want - found.len();
            let page = self.meta().describe_repositories(cursor.as_deref(), asked as u32).await?;
            let exhausted = page.len() < asked;
            cursor = page.last().map(|r| r.name.clone());
            let mut left_the_range = false;
            for r in page {
                if key_in_account(self.registry_id(), account, &r.name) {
                    found.push(r);
                } else {
                    left_the_range = true;
                    break;
                }
            }
            if found.len() >= want {
                break;
            }
            if left_the_range {
                // Another account's range ends at the first key outside it; the default
                // account's goes on after the other accounts' keys (none sort past them).
                if !prefix.is_empty() {
                    break;
                }
                cursor = Some(OTHER_ACCOUNTS_END.to_string());
            } else if exhausted {
                break;
            }
        }
        let more = found.len() > limit as usize;
        found.truncate(limit as usize);
        Ok((found, more))
    }

    async fn templates(&self) -> Result<Vec<(CreationTemplate, TemplateSpec)>, RegistryError> {
        let mut out = Vec::new();
        for t in self.meta().creation_templates().await? {
            let spec: TemplateSpec = serde_json::from_str(&t.body)
                .map_err(|e| RegistryError::Internal(format!("stored template {}: {e}", t.prefix)))?;
            out.push((t, spec));
        }
        Ok(out)
    }

    /// The repository a push goes to: the existing one, or one created from the most specific
    /// `CREATE_ON_PUSH` template covering the name; otherwise `NAME_UNKNOWN`, as ECR answers.
    pub async fn repository_for_push(&self, name: &str) -> Result<Repository, RegistryError> {
        if let Some(r) = self.meta().repository(name).await? {
            return Ok(r);
        }
        let templates = self.templates().await?;
        let Some((_, spec)) = template_for(&templates, name, "CREATE_ON_PUSH") else {
            return Err(RegistryError::new(ErrorCode::NameUnknown, repository_not_found(name, self.registry_id())));
        };
        let tags: Vec<(String, String)> = spec.resource_tags.iter().map(|t| (t.key.clone(), t.value.clone())).collect();
        match self.meta().create_repository(name, &spec.settings(), &tags).await {
            Ok(r) => {
                tracing::info!(repository = name, "created on push from a creation template");
                Ok(r)
            }
            Err(MetaError::RepositoryAlreadyExists) => {
                self.meta().repository(name).await?.ok_or_else(|| RegistryError::Internal("repository vanished".into()))
            }
            Err(e) => Err(e.into()),
        }
    }
}

/// A repository's key in the metadata store: its name in the registry's first (default)
/// account, `@<account>/<name>` in another account. `@` never occurs in a repository name, so
/// keys of different accounts cannot collide, nor appear anywhere but as a key (the API
/// adapters translate at their edges), and the default account's data needs no change.
pub fn repository_key(default_account: &str, account: &str, name: &str) -> String {
    if account == default_account { name.to_string() } else { format!("@{account}/{name}") }
}

/// The prefix of every key of `account` (empty for the default account).
pub fn account_key_prefix(default_account: &str, account: &str) -> String {
    if account == default_account { String::new() } else { format!("@{account}/") }
}

/// Past every other account's repository keys (`@<digits>/…`) in the store's order.
const OTHER_ACCOUNTS_END: &str = "@~";

/// The (account, name) a repository key stands for.
pub fn split_repository_key<'a>(default_account: &'a str, key: &'a str) -> (&'a str, &'a str) {
    match key.strip_prefix('@').and_then(|k| k.split_once('/')) {
        Some((account, name)) => (account, name),
        None => (default_account, key),
    }
}

/// Whether `key` is a repository of `account`.
pub fn key_in_account(default_account: &str, account: &str, key: &str) -> bool {
    split_repository_key(default_account, key).0 == account
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The one repository listing, over three accounts' keys interleaved in the store's
    /// order (digits sort before `@`, letters after): each account sees exactly its own, in
    /// pages of any size.
    #[tokio::test]
    async fn each_account_pages_through_exactly_its_own_repositories() {
        let dir = tempfile::tempdir().unwrap();
        let meta = std::sync::Arc::new(berth_meta::SqliteMeta::open(&dir.path().join("meta.db")).await.unwrap());
        let blobs = std::sync::Arc::new(berth_store::FsBlobStore::open(dir.path().join("blobs")).await.unwrap());
        let registry = Registry::new(meta.clone(), blobs, "111111111111".into());
        let default = ["0-first", "9lives", "alpha", "beta/app", "zeta"];
        let other = ["app", "lib/x", "zz"];
        let third = ["only"];
        use berth_meta::MetaStore;
        let settings = RepositorySettings::default();
        for (account, names) in
            [("111111111111", &default[..]), ("222222222222", &other[..]), ("333333333333", &third[..])]
        {
            for n in names {
                meta.create_repository(&repository_key("111111111111", account, n), &settings, &[]).await.unwrap();
            }
        }
        for (account, names) in
            [("111111111111", &default[..]), ("222222222222", &other[..]), ("333333333333", &third[..])]
        {
            let keys: Vec<String> = names.iter().map(|n| repository_key("111111111111", account, n)).collect();
            for limit in [1u32, 2, 3, 100] {
                let (mut listed, mut after) = (Vec::new(), None::<String>);
                loop {
                    let (page, more) = registry.account_repositories(account, after.as_deref(), limit).await.unwrap();
                    assert!(page.len() <= limit as usize);
                    listed.extend(page.iter().map(|r| r.name.clone()));
                    after = page.last().map(|r| r.name.clone());
                    if !more {
                        break;
                    }
                }
                assert_eq!(listed, keys, "account {account}, pages of {limit}");
            }
        }
        let (none, more) = registry.account_repositories("444444444444", None, 10).await.unwrap();
        assert!(none.is_empty() && !more);
    }

    fn t(prefix: &str, applied: &[&str]) -> (CreationTemplate, TemplateSpec) {
        (
            CreationTemplate { prefix: prefix.into(), body: String::new(), created_at: 0, updated_at: 0 },
            TemplateSpec { applied_for: applied.iter().map(|s| s.to_string()).collect(), ..Default::default() },
        )
    }

    #[test]
    fn prefixes() {
        assert!(prefix_covers("ROOT", "anything"));
        assert!(prefix_covers("prod", "prod/app"));
        assert!(prefix_covers("prod/", "prod/app"));
        assert!(prefix_covers("prod/team", "prod/team/api"));
        assert!(!prefix_covers("prod", "prod"));
        assert!(!prefix_covers("prod", "production/app"));
        assert!(!prefix_covers("prod/team", "prod/other"));
    }

    #[test]
    fn most_specific_template_wins() {
        let all = vec![
            t("ROOT", &["CREATE_ON_PUSH"]),
            t("prod", &["CREATE_ON_PUSH"]),
            t("prod/team", &["PULL_THROUGH_CACHE"]),
        ];
        assert_eq!(template_for(&all, "prod/team/api", "CREATE_ON_PUSH").unwrap().0.prefix, "prod");
        assert_eq!(template_for(&all, "dev/app", "CREATE_ON_PUSH").unwrap().0.prefix, "ROOT");
        assert_eq!(template_for(&all, "prod/team/api", "PULL_THROUGH_CACHE").unwrap().0.prefix, "prod/team");
        assert!(template_for(&all[1..], "dev/app", "CREATE_ON_PUSH").is_none());
    }

    #[test]
    fn keys_by_account() {
        assert_eq!(repository_key("111111111111", "111111111111", "team/app"), "team/app");
        assert_eq!(repository_key("111111111111", "987654321098", "team/app"), "@987654321098/team/app");
        assert_eq!(split_repository_key("111111111111", "team/app"), ("111111111111", "team/app"));
        assert_eq!(split_repository_key("111111111111", "@987654321098/team/app"), ("987654321098", "team/app"));
        assert!(key_in_account("111111111111", "111111111111", "team/app"));
        assert!(!key_in_account("111111111111", "987654321098", "team/app"));
        assert!(key_in_account("111111111111", "987654321098", "@987654321098/app"));
        assert_eq!(account_key_prefix("111111111111", "987654321098"), "@987654321098/");
    }

    #[test]
    fn template_settings() {
        let spec = TemplateSpec {
            image_tag_mutability: Some("IMMUTABLE_WITH_EXCLUSION".into()),
            image_tag_mutability_exclusion_filters: vec![ExclusionFilter {
                filter_type: "WILDCARD".into(),
                filter: "latest".into(),
            }],
            encryption_configuration: Some(EncryptionConfiguration {
                encryption_type: "KMS".into(),
                kms_key: Some(String::new()),
            }),
            ..Default::default()
        };
        let s = spec.settings();
        assert_eq!(s.tag_mutability, "IMMUTABLE_WITH_EXCLUSION");
        assert_eq!(s.tag_mutability_exclusions, ["latest"]);
        assert_eq!((s.encryption_type.as_str(), s.kms_key), ("KMS", None));
    }
}
