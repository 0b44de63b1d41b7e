//! Repositories as the ECR API manages them: creation with settings, description, deletion,
//! tag mutability and scanning settings, and repository creation templates, which decide
//! whether a push to a missing repository creates it (`appliedFor: CREATE_ON_PUSH`).

use berth_meta::{CreationTemplate, EncryptionType, MetaError, Repository, RepositorySettings, TagMutabilityMode};
use berth_rules::TagMutability;
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

/// Whether a template covers a repository, both given as keys (a template is stored under its
/// account's key of its prefix, as a repository is): `ROOT` covers all of its account's
/// repositories, `prod` covers `prod/…` (a trailing slash is optional); never another
/// account's.
pub fn prefix_covers(prefix_key: &str, name_key: &str) -> bool {
    // The default account's keys carry no account: an empty default tells them apart.
    let ((prefix_account, prefix), (name_account, name)) =
        (split_repository_key("", prefix_key), split_repository_key("", name_key));
    if prefix_account != name_account {
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
        // Stored templates were validated when they were put.
        if let Some(m) = self.image_tag_mutability.as_deref().and_then(TagMutabilityMode::parse) {
            s.tag_mutability = m;
            s.tag_mutability_exclusions =
                self.image_tag_mutability_exclusion_filters.iter().map(|f| f.filter.clone()).collect();
        }
        if let Some(e) = &self.encryption_configuration
            && let Some(kind) = EncryptionType::parse(&e.encryption_type)
        {
            s.encryption_type = kind;
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
    TagMutability::new(settings.tag_mutability.as_str(), settings.tag_mutability_exclusions.clone())
        .unwrap_or_else(|_| TagMutability::mutable())
}

impl Registry {
    /// One page of `account`'s repositories in key order after the key `after`: at most
    /// `limit`, and whether more follow (`DescribeRepositories`).
    pub async fn account_repositories(
        &self,
        account: &str,
        after: Option<&str>,
        limit: u32,
    ) -> Result<(Vec<Repository>, bool), RegistryError> {
        let meta = self.meta();
        let fetch = |cursor: Option<String>, n| async move { meta.describe_repositories(cursor.as_deref(), n).await };
        self.account_range(account, after, limit, fetch, |r| &r.name).await
    }

    /// The same page, repository keys only (`/v2/_catalog`: no settings to read).
    pub async fn account_repository_keys(
        &self,
        account: &str,
        after: Option<&str>,
        limit: u32,
    ) -> Result<(Vec<String>, bool), RegistryError> {
        let meta = self.meta();
        let fetch = |cursor: Option<String>, n| async move { meta.list_repositories(cursor.as_deref(), n).await };
        self.account_range(account, after, limit, fetch, |k| k).await
    }

    /// The one repository-listing loop: pages of the store's repositories (`fetch`: after a
    /// key, at most n) kept to `account`'s keys. Another account's keys share a prefix, so
    /// they are one range of the store's order; the default account's keys are the ones
    /// without a prefix, which the other accounts' `@…` range splits in two (digits sort
    /// before `@`, letters after), so its listing steps over that range.
    async fn account_range<T, F, Fut>(
        &self,
        account: &str,
        after: Option<&str>,
        limit: u32,
        fetch: F,
        key: impl Fn(&T) -> &str,
    ) -> Result<(Vec<T>, bool), RegistryError>
    where
        F: Fn(Option<String>, u32) -> Fut,
        Fut: std::future::Future<Output = berth_meta::Result<Vec<T>>>,
    {
        let prefix = account_key_prefix(self.registry_id(), account);
        let mut cursor = match after {
            Some(a) => Some(a.to_string()),
            None if !prefix.is_empty() => Some(prefix.clone()),
            None => None,
        };
        let mut found: Vec<T> = Vec::new();
        let want = limit as usize + 1;
        loop {
            let asked = want - found.len();
            let page = fetch(cursor.clone(), asked as u32).await?;
            let exhausted = page.len() < asked;
            cursor = page.last().map(|r| key(r).to_string());
            let mut left_the_range = false;
            for r in page {
                if key_in_account(self.registry_id(), account, key(&r)) {
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

    pub(crate) async fn templates(&self) -> Result<Vec<(CreationTemplate, TemplateSpec)>, RegistryError> {
        let mut out = Vec::new();
        for t in self.meta().creation_templates().await? {
            let spec: TemplateSpec = serde_json::from_str(&t.body)
                .map_err(|e| RegistryError::Internal(format!("stored template {}: {e}", t.prefix)))?;
            out.push((t, spec));
        }
        Ok(out)
    }

    /// The repository a push goes to: the existing one, or one created from the most specific
    /// `CREATE_ON_PUSH` template covering the name; otherwise `RepositoryNotFound`, as ECR
    /// answers. Created through `create_repository`, as `CreateRepository` creates one.
    pub async fn repository_for_push(&self, name: &str) -> Result<Repository, RegistryError> {
        if let Some(r) = self.meta().repository(name).await? {
            return Ok(r);
        }
        let templates = self.templates().await?;
        let Some((_, spec)) = template_for(&templates, name, "CREATE_ON_PUSH") else {
            return Err(RegistryError::RepositoryNotFound { name: name.to_string() });
        };
        match self.create_repository(name, &spec.settings(), &spec.resource_tags, None).await {
            Ok(r) => {
                tracing::info!(repository = name, "created on push from a creation template");
                Ok(r)
            }
            // Created by a racing push meanwhile.
            Err(RegistryError::RepositoryAlreadyExists { .. }) => self.repository(name).await,
            Err(e) => Err(e),
        }
    }

    /// A repository, or `RepositoryNotFound`.
    pub async fn repository(&self, name: &str) -> Result<Repository, RegistryError> {
        self.find_repository(name).await?.ok_or_else(|| RegistryError::RepositoryNotFound { name: name.to_string() })
    }

    pub async fn find_repository(&self, name: &str) -> Result<Option<Repository>, RegistryError> {
        Ok(self.meta().repository(name).await?)
    }

    /// Creates a repository with its settings and resource tags (at most 50, each within
    /// bounds): what `CreateRepository` and create-on-push both do.
    pub async fn create_repository(
        &self,
        name: &str,
        settings: &RepositorySettings,
        tags: &[ResourceTag],
        creator: Option<&crate::kms::KmsCaller<'_>>,
    ) -> Result<Repository, RegistryError> {
        check_resource_tags(tags)?;
        let tags: Vec<(String, String)> = tags.iter().map(|t| (t.key.clone(), t.value.clone())).collect();
        let mut settings = settings.clone();
        let arn = self.repository_arn(name);
        let mut grant = None;
        if settings.encryption_type != EncryptionType::Aes256 {
            if self.meta().repository(name).await?.is_some() {
                return Err(RegistryError::RepositoryAlreadyExists { name: name.to_string() });
            }
            // As ECR does: the key is resolved and ECR granted its use before the repository
            // exists, and the repository records the key's ARN whatever named it.
            let account = split_repository_key(self.registry_id(), name).0;
            let granted = self
                .kms()
                .grant_to_ecr(creator, account, settings.kms_key.as_deref(), &arn)
                .await
                .map_err(RegistryError::Kms)?;
            settings.kms_key = Some(granted.key.arn.clone());
            grant = granted.created.map(|id| (granted.key.key_id, id));
        }
        let created = self.meta().create_repository(name, &settings, &tags).await.map_err(|e| match e {
            MetaError::RepositoryAlreadyExists => RegistryError::RepositoryAlreadyExists { name: name.to_string() },
            other => other.into(),
        });
        // A grant this call made for a repository it did not create goes again — unless the
        // repository exists after all (a racing creation won): the grant is that repository's.
        if let Err(e) = &created
            && !matches!(e, RegistryError::RepositoryAlreadyExists { .. })
            && let Some((key_id, grant_id)) = &grant
            && let Err(e) = self.meta().delete_kms_grant(grant_id).await
        {
            tracing::warn!(repository = name, key = key_id, error = %e, "could not retire the KMS grant of a repository not created");
        }
        created
    }

    /// Deletes a repository; one that holds images only with `force`.
    pub async fn delete_repository(&self, name: &str, force: bool) -> Result<Repository, RegistryError> {
        let deleted = self.meta().delete_repository(name, force).await.map_err(|e| match e {
            MetaError::RepositoryNotEmpty => RegistryError::RepositoryNotEmpty { name: name.to_string() },
            other => RegistryError::in_repository(name)(other),
        })?;
        // ECR's grant on the key goes with the repository. The repository is gone either way:
        // a grant left behind only lets Berth use a key for data nothing references.
        if let Some(key) = &deleted.settings.kms_key
            && let Err(e) = self.kms().retire_ecr_grant(key, &self.repository_arn(name)).await
        {
            tracing::warn!(repository = name, error = %e, "could not retire the deleted repository's KMS grant");
        }
        Ok(deleted)
    }

    /// Changes a repository's settings with `change` and stores them.
    pub async fn update_repository_settings(
        &self,
        name: &str,
        change: impl FnOnce(&mut RepositorySettings),
    ) -> Result<Repository, RegistryError> {
        let mut settings = self.repository(name).await?.settings;
        change(&mut settings);
        self.meta().update_repository_settings(name, &settings).await.map_err(RegistryError::in_repository(name))
    }

    pub async fn repository_tags(&self, name: &str) -> Result<Vec<(String, String)>, RegistryError> {
        self.repository(name).await?;
        self.meta().repository_resource_tags(name).await.map_err(RegistryError::in_repository(name))
    }

    /// Adds or replaces resource tags; a repository keeps at most 50.
    pub async fn tag_repository(&self, name: &str, tags: &[ResourceTag]) -> Result<(), RegistryError> {
        check_resource_tags(tags)?;
        let existing = self.repository_tags(name).await?;
        let added = tags.iter().filter(|t| !existing.iter().any(|(k, _)| *k == t.key)).count();
        if existing.len() + added > MAX_RESOURCE_TAGS {
            return Err(RegistryError::TooManyTags);
        }
        let tags: Vec<(String, String)> = tags.iter().map(|t| (t.key.clone(), t.value.clone())).collect();
        self.meta().tag_repository(name, &tags).await.map_err(RegistryError::in_repository(name))
    }

    pub async fn untag_repository(&self, name: &str, keys: &[String]) -> Result<(), RegistryError> {
        if keys.iter().any(|k| k.is_empty() || k.chars().count() > 128) {
            return Err(RegistryError::InvalidResourceTag("Tag keys are 1 to 128 characters".into()));
        }
        self.repository(name).await?;
        self.meta().untag_repository(name, keys).await.map_err(RegistryError::in_repository(name))
    }

    // ---- repository creation templates ----

    /// Every template of `account`, in prefix order. Templates are per account: each is
    /// stored under its account's key of its prefix and covers that account's repositories.
    pub async fn creation_templates(&self, account: &str) -> Result<Vec<StoredTemplate>, RegistryError> {
        let default = self.registry_id();
        let mut out: Vec<StoredTemplate> = self
            .templates()
            .await?
            .into_iter()
            .filter(|(t, _)| key_in_account(default, account, &t.prefix))
            .map(|(t, spec)| StoredTemplate {
                prefix: split_repository_key(default, &t.prefix).1.to_string(),
                spec,
                created_at: t.created_at,
                updated_at: t.updated_at,
            })
            .collect();
        out.sort_by(|a, b| a.prefix.cmp(&b.prefix));
        Ok(out)
    }

    fn template_key(&self, account: &str, prefix: &str) -> String {
        repository_key(self.registry_id(), account, prefix)
    }

    /// A stored template as its account sees it: its prefix unkeyed.
    fn stored_template(&self, t: CreationTemplate) -> Result<StoredTemplate, RegistryError> {
        let spec = serde_json::from_str(&t.body)
            .map_err(|e| RegistryError::Internal(format!("stored template {}: {e}", t.prefix)))?;
        let prefix = split_repository_key(self.registry_id(), &t.prefix).1.to_string();
        Ok(StoredTemplate { prefix, spec, created_at: t.created_at, updated_at: t.updated_at })
    }

    /// Creates a template of `account`; it must say what it applies for.
    pub async fn create_creation_template(
        &self,
        account: &str,
        prefix: &str,
        spec: &TemplateSpec,
    ) -> Result<StoredTemplate, RegistryError> {
        check_template(prefix, spec)?;
        if spec.applied_for.is_empty() {
            return Err(RegistryError::InvalidParameter(
                "appliedFor must name at least one of REPLICATION, PULL_THROUGH_CACHE, CREATE_ON_PUSH".into(),
            ));
        }
        let body = serde_json::to_string(spec).expect("template serializes");
        let key = self.template_key(account, prefix);
        let stored = self.meta().create_creation_template(&key, &body).await.map_err(|e| match e {
            MetaError::AlreadyExists => RegistryError::TemplateAlreadyExists { prefix: prefix.to_string() },
            other => other.into(),
        })?;
        self.stored_template(stored)
    }

    /// Updates a template: what `spec` names replaces what is stored, the rest stays (an empty
    /// `appliedFor` names nothing), as ECR's update does.
    pub async fn update_creation_template(
        &self,
        account: &str,
        prefix: &str,
        spec: &TemplateSpec,
    ) -> Result<StoredTemplate, RegistryError> {
        check_template(prefix, spec)?;
        let not_found = || RegistryError::TemplateNotFound { prefix: prefix.to_string() };
        let key = self.template_key(account, prefix);
        let current = self.meta().creation_templates().await?.into_iter().find(|t| t.prefix == key);
        let current = current.ok_or_else(not_found)?;
        let mut merged: serde_json::Value = serde_json::from_str(&current.body)
            .map_err(|e| RegistryError::Internal(format!("stored template {prefix}: {e}")))?;
        if let (Some(m), serde_json::Value::Object(new)) =
            (merged.as_object_mut(), serde_json::to_value(spec).expect("template serializes"))
        {
            for (k, v) in new {
                if !(k == "appliedFor" && v.as_array().is_some_and(|a| a.is_empty())) {
                    m.insert(k, v);
                }
            }
        }
        let stored = self.meta().update_creation_template(&key, &merged.to_string()).await.map_err(|e| match e {
            MetaError::NotFound => not_found(),
            other => other.into(),
        })?;
        self.stored_template(stored)
    }

    pub async fn delete_creation_template(&self, account: &str, prefix: &str) -> Result<StoredTemplate, RegistryError> {
        check_template_prefix(prefix)?;
        let t =
            self.meta().delete_creation_template(&self.template_key(account, prefix)).await.map_err(|e| match e {
                MetaError::NotFound => RegistryError::TemplateNotFound { prefix: prefix.to_string() },
                other => other.into(),
            })?;
        self.stored_template(t)
    }
}

/// What the registry stores, for `/metrics`.
#[derive(Debug, Clone, Default)]
pub struct StorageUsage {
    /// Per repository key: images, and bytes of the blobs it links.
    pub repositories: Vec<(String, i64, i64)>,
    /// Every blob once, however many repositories link it.
    pub blobs: u64,
    pub blob_bytes: i64,
}

impl Registry {
    /// Per repository key: images, and bytes of the blobs it links (without the deduplicated
    /// total, which reads every blob).
    pub async fn repository_usage(&self) -> Result<Vec<(String, i64, i64)>, RegistryError> {
        Ok(self.meta().repository_usage().await?)
    }

    pub async fn storage_usage(&self) -> Result<StorageUsage, RegistryError> {
        let repositories = self.meta().repository_usage().await?;
        let blobs = self.meta().all_blobs().await?;
        Ok(StorageUsage { repositories, blobs: blobs.len() as u64, blob_bytes: blobs.iter().map(|(_, s)| s).sum() })
    }
}

/// A stored repository creation template.
#[derive(Debug, Clone)]
pub struct StoredTemplate {
    pub prefix: String,
    pub spec: TemplateSpec,
    pub created_at: i64,
    pub updated_at: i64,
}

/// A repository keeps at most this many resource tags, as in ECR.
pub const MAX_RESOURCE_TAGS: usize = 50;

/// Resource tags as ECR bounds them: at most 50; keys 1 to 128 characters, not starting with
/// `aws:`; values at most 256.
pub fn check_resource_tags(tags: &[ResourceTag]) -> Result<(), RegistryError> {
    if tags.len() > MAX_RESOURCE_TAGS {
        return Err(RegistryError::TooManyTags);
    }
    for t in tags {
        if t.key.is_empty() || t.key.chars().count() > 128 || t.value.chars().count() > 256 || t.key.starts_with("aws:")
        {
            return Err(RegistryError::InvalidResourceTag(format!(
                "Invalid tag {:?}: keys are 1 to 128 characters and may not start with 'aws:', values at most 256",
                t.key
            )));
        }
    }
    Ok(())
}

/// A tag mutability rule from its mode and exclusion filters (only `WILDCARD` filters).
pub fn tag_mutability_rule(mode: &str, filters: &[ExclusionFilter]) -> Result<TagMutability, RegistryError> {
    if let Some(f) = filters.iter().find(|f| f.filter_type != "WILDCARD") {
        return Err(RegistryError::InvalidParameter(format!(
            "Invalid parameter at 'filterType' failed to satisfy constraint: 'Member must satisfy enum value set: [WILDCARD]' (got {:?})",
            f.filter_type
        )));
    }
    TagMutability::new(mode, filters.iter().map(|f| f.filter.clone()).collect())
        .map_err(|e| RegistryError::InvalidParameter(e.to_string()))
}

/// The encryption a repository gets: `AES256` when none is asked for; a KMS key only with a
/// KMS encryption type.
pub fn encryption_settings(
    e: Option<&EncryptionConfiguration>,
) -> Result<(EncryptionType, Option<String>), RegistryError> {
    let Some(e) = e else { return Ok((EncryptionType::Aes256, None)) };
    match EncryptionType::parse(&e.encryption_type) {
        Some(EncryptionType::Aes256) => {
            if e.kms_key.as_deref().is_some_and(|k| !k.is_empty()) {
                return Err(RegistryError::InvalidParameter(
                    "Invalid parameter: kmsKey can only be given with encryptionType KMS or KMS_DSSE".into(),
                ));
            }
            Ok((EncryptionType::Aes256, None))
        }
        Some(kms) => Ok((kms, e.kms_key.clone().filter(|k| !k.is_empty()))),
        None => Err(RegistryError::InvalidParameter(format!(
            "Invalid parameter at 'encryptionType' failed to satisfy constraint: 'Member must satisfy enum value set: [AES256, KMS, KMS_DSSE]' (got {:?})",
            e.encryption_type
        ))),
    }
}

/// A template prefix: `ROOT`, or a repository namespace (`prod`, `prod/team`, a trailing slash
/// allowed).
pub fn check_template_prefix(prefix: &str) -> Result<(), RegistryError> {
    let trimmed = prefix.strip_suffix('/').unwrap_or(prefix);
    let ok = prefix == ROOT_PREFIX
        || (!trimmed.is_empty() && prefix.len() <= 256 && berth_oci::validate_repository_name(trimmed).is_ok());
    if ok {
        Ok(())
    } else {
        Err(RegistryError::InvalidParameter(format!(
            "Invalid parameter at 'prefix': {prefix:?} must be ROOT or a repository namespace such as 'prod' or 'prod/team'"
        )))
    }
}

fn check_template(prefix: &str, spec: &TemplateSpec) -> Result<(), RegistryError> {
    check_template_prefix(prefix)?;
    if let Some(a) =
        spec.applied_for.iter().find(|a| !matches!(a.as_str(), "REPLICATION" | "PULL_THROUGH_CACHE" | "CREATE_ON_PUSH"))
    {
        return Err(RegistryError::InvalidParameter(format!(
            "Invalid parameter at 'appliedFor' failed to satisfy constraint: 'Member must satisfy enum value set: [REPLICATION, PULL_THROUGH_CACHE, CREATE_ON_PUSH]' (got {a:?})"
        )));
    }
    if let Some(m) = &spec.image_tag_mutability {
        tag_mutability_rule(m, &spec.image_tag_mutability_exclusion_filters)?;
    }
    check_resource_tags(&spec.resource_tags)?;
    encryption_settings(spec.encryption_configuration.as_ref())?;
    Ok(())
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

/// The ARN of the repository with key `key`, in `region`.
pub fn repository_arn(default_account: &str, region: &str, key: &str) -> String {
    let (account, name) = split_repository_key(default_account, key);
    format!("arn:aws:ecr:{region}:{account}:repository/{name}")
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
        let registry = Registry::new(meta.clone(), blobs, "111111111111".into(), crate::test_master_keys());
        let default = ["0-first", "9lives", "alpha", "beta/app", "zeta"];
        let other = ["app", "lib/x", "zz"];
        let third = ["only"];
        use berth_meta::RepositoryStore;
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
                let (names, _) = registry.account_repository_keys(account, None, 100).await.unwrap();
                assert_eq!(names, keys, "account {account}: the catalog's keys page the same way");
            }
        }
        let (none, more) = registry.account_repositories("444444444444", None, 10).await.unwrap();
        assert!(none.is_empty() && !more);
    }

    fn tags(n: usize, prefix: &str) -> Vec<ResourceTag> {
        (0..n).map(|i| ResourceTag { key: format!("{prefix}{i}"), value: "v".into() }).collect()
    }

    #[tokio::test]
    async fn a_kms_repository_records_its_key_and_grants_ecr_for_its_lifetime() {
        let (_dir, registry) = crate::test_registry().await;
        let settings = RepositorySettings { encryption_type: EncryptionType::Kms, ..RepositorySettings::default() };
        // No key named: the account's alias/aws/ecr, made on first use.
        let r = registry.create_repository("app", &settings, &[], None).await.unwrap();
        let key = r.settings.kms_key.clone().expect("the key's ARN is recorded");
        assert!(key.starts_with("arn:aws:kms:us-east-1:111111111111:key/"), "{key}");
        let key_id = key.rsplit_once("/").unwrap().1.to_string();
        let grants = registry.meta().kms_grants(&key_id).await.unwrap();
        assert_eq!(grants.len(), 1);
        assert_eq!(grants[0].grantee_principal, "ecr.us-east-1.amazonaws.com");
        // A second repository on the same key has a grant of its own; deleting one retires only its.
        let second = registry.create_repository("other", &settings, &[], None).await.unwrap();
        assert_eq!(second.settings.kms_key.as_deref(), Some(key.as_str()));
        assert_eq!(registry.meta().kms_grants(&key_id).await.unwrap().len(), 2);
        registry.delete_repository("app", false).await.unwrap();
        assert_eq!(registry.meta().kms_grants(&key_id).await.unwrap().len(), 1);
        // A key that does not exist is KMS's refusal, and nothing is created.
        let missing = RepositorySettings { kms_key: Some("alias/none".into()), ..settings.clone() };
        assert!(matches!(
            registry.create_repository("third", &missing, &[], None).await,
            Err(RegistryError::Kms(crate::kms::KmsError::NotFound(_)))
        ));
        assert!(registry.find_repository("third").await.unwrap().is_none());
    }

    #[tokio::test]
    async fn create_repository_is_the_path_create_on_push_takes() {
        let (_dir, registry) = crate::test_registry().await;
        let settings = RepositorySettings::default();
        registry.create_repository("app", &settings, &tags(2, "k"), None).await.unwrap();
        assert!(matches!(
            registry.create_repository("app", &settings, &[], None).await,
            Err(RegistryError::RepositoryAlreadyExists { name }) if name == "app"
        ));
        assert!(matches!(
            registry.create_repository("many", &settings, &tags(51, "k"), None).await,
            Err(RegistryError::TooManyTags)
        ));
        let bad = [ResourceTag { key: "aws:reserved".into(), value: String::new() }];
        assert!(matches!(
            registry.create_repository("bad", &settings, &bad, None).await,
            Err(RegistryError::InvalidResourceTag(_))
        ));
        // A push creates a repository only from a CREATE_ON_PUSH template, with its settings and tags.
        assert!(matches!(
            registry.repository_for_push("prod/api").await,
            Err(RegistryError::RepositoryNotFound { name }) if name == "prod/api"
        ));
        let spec = TemplateSpec {
            applied_for: vec!["CREATE_ON_PUSH".into()],
            image_tag_mutability: Some("IMMUTABLE".into()),
            resource_tags: tags(1, "team"),
            ..Default::default()
        };
        registry.create_creation_template(registry.registry_id(), "prod", &spec).await.unwrap();
        let created = registry.repository_for_push("prod/api").await.unwrap();
        assert_eq!(created.settings.tag_mutability, TagMutabilityMode::Immutable);
        assert_eq!(registry.repository_tags("prod/api").await.unwrap(), [("team0".to_string(), "v".to_string())]);
        // A second push finds it.
        assert_eq!(registry.repository_for_push("prod/api").await.unwrap().created_at, created.created_at);
    }

    #[tokio::test]
    async fn a_repository_keeps_at_most_fifty_resource_tags() {
        let (_dir, registry) = crate::test_registry().await;
        registry.create_repository("app", &RepositorySettings::default(), &tags(49, "k"), None).await.unwrap();
        // Replacing existing keys adds none.
        registry.tag_repository("app", &tags(49, "k")).await.unwrap();
        assert!(matches!(registry.tag_repository("app", &tags(2, "new")).await, Err(RegistryError::TooManyTags)));
        registry.tag_repository("app", &tags(1, "new")).await.unwrap();
        assert_eq!(registry.repository_tags("app").await.unwrap().len(), 50);
        assert!(matches!(
            registry.untag_repository("app", &[String::new()]).await,
            Err(RegistryError::InvalidResourceTag(_))
        ));
        assert!(matches!(
            registry.tag_repository("gone", &tags(1, "k")).await,
            Err(RegistryError::RepositoryNotFound { name }) if name == "gone"
        ));
    }

    #[tokio::test]
    async fn a_template_update_keeps_what_it_does_not_name() {
        let (_dir, registry) = crate::test_registry().await;
        let spec = TemplateSpec {
            description: Some("team images".into()),
            applied_for: vec!["CREATE_ON_PUSH".into()],
            ..Default::default()
        };
        assert!(matches!(
            registry.create_creation_template(registry.registry_id(), "prod", &TemplateSpec::default()).await,
            Err(RegistryError::InvalidParameter(_))
        ));
        registry.create_creation_template(registry.registry_id(), "prod", &spec).await.unwrap();
        assert!(matches!(
            registry.create_creation_template(registry.registry_id(), "prod", &spec).await,
            Err(RegistryError::TemplateAlreadyExists { prefix }) if prefix == "prod"
        ));
        let change = TemplateSpec { image_tag_mutability: Some("IMMUTABLE".into()), ..Default::default() };
        let updated = registry.update_creation_template(registry.registry_id(), "prod", &change).await.unwrap();
        assert_eq!(updated.spec.description.as_deref(), Some("team images"));
        assert_eq!(updated.spec.applied_for, ["CREATE_ON_PUSH"]);
        assert_eq!(updated.spec.image_tag_mutability.as_deref(), Some("IMMUTABLE"));
        assert!(matches!(
            registry.update_creation_template(registry.registry_id(), "dev", &change).await,
            Err(RegistryError::TemplateNotFound { prefix }) if prefix == "dev"
        ));
        assert!(matches!(
            registry.delete_creation_template(registry.registry_id(), "not a prefix").await,
            Err(RegistryError::InvalidParameter(_))
        ));
        assert_eq!(registry.delete_creation_template(registry.registry_id(), "prod").await.unwrap().prefix, "prod");
        assert!(registry.creation_templates(registry.registry_id()).await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn a_repository_with_images_is_deleted_only_by_force() {
        let (_dir, registry) = crate::test_registry().await;
        registry.create_repository("app", &RepositorySettings::default(), &[], None).await.unwrap();
        let manifest = crate::images::tests::image_manifest(&registry, "app", b"layer").await;
        registry.put_image(None, "app", manifest, None, Some("v1"), None).await.unwrap();
        assert!(matches!(
            registry.delete_repository("app", false).await,
            Err(RegistryError::RepositoryNotEmpty { name }) if name == "app"
        ));
        registry.delete_repository("app", true).await.unwrap();
        assert!(matches!(
            registry.delete_repository("app", true).await,
            Err(RegistryError::RepositoryNotFound { name }) if name == "app"
        ));
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
        // Per account: a template covers its own account's repositories only.
        assert!(prefix_covers("@222222222222/ROOT", "@222222222222/app"));
        assert!(prefix_covers("@222222222222/prod", "@222222222222/prod/app"));
        assert!(!prefix_covers("ROOT", "@222222222222/app"));
        assert!(!prefix_covers("@222222222222/ROOT", "app"));
        assert!(!prefix_covers("@222222222222/prod", "@333333333333/prod/app"));
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
        assert_eq!(s.tag_mutability, TagMutabilityMode::ImmutableWithExclusion);
        assert_eq!(s.tag_mutability_exclusions, ["latest"]);
        assert_eq!((s.encryption_type, s.kms_key), (EncryptionType::Kms, None));
    }
}
