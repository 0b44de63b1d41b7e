//! ECR Public: each account's public registry — its alias (pull URIs are
//! `<public host>/<alias>/<repository>`, as `public.ecr.aws/<alias>/…` are ECR's), its catalog
//! data, and its repositories; the public host's rules and anonymous allowance (`host.rs`) and
//! the gallery's view (`gallery.rs`).
//!
//! A public repository is a repository of the store under the key `@<account>+public/<name>`:
//! its images, tags and blobs are kept as any repository's, and the same services serve them,
//! but no private listing ever meets it (the default account's listings step over every
//! `@…` key, another account's range is `@<account>/…`), no private name can address it (names
//! never start with `@`), and its ARN is ECR Public's.

use berth_meta::{MetaError, now_ms};

mod gallery;
mod host;
pub use gallery::{GalleryEntry, GalleryPage};
pub use host::{DEFAULT_ANONYMOUS_BYTES_PER_MONTH, PublicAccess, PublicHost, month_and_rest, public_v2_access};
use serde::{Deserialize, Serialize};

use crate::{Registry, RegistryError};

/// The account setting holding the registry's catalog data (JSON).
const CATALOG_SETTING: &str = "berth:public-registry-catalog";

/// What `DescribeRegistries` and the catalog operations show of an account's public registry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublicRegistry {
    pub account: String,
    pub alias: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RegistryCatalogData {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub display_name: Option<String>,
}

/// The store's key of `account`'s public repository `name`.
pub fn public_repository_key(account: &str, name: &str) -> String {
    format!("@{account}+public/{name}")
}

/// The (account, name) of a public repository key; `None` for any other key.
pub fn split_public_key(key: &str) -> Option<(&str, &str)> {
    let (account, name) = key.strip_prefix('@')?.split_once('/')?;
    Some((account.strip_suffix("+public")?, name))
}

/// A public repository's ARN (ECR Public's have no region).
pub fn public_repository_arn(account: &str, name: &str) -> String {
    format!("arn:aws:ecr-public::{account}:repository/{name}")
}

/// The account setting holding a public repository's catalog data (removed with it).
fn repository_catalog_setting(name: &str) -> String {
    format!("berth:public-catalog:{name}")
}

/// A public repository's catalog data, as stored and shown (`logoImageBlob` is kept as given,
/// base64; `GetRepositoryCatalogData` shows a `logoUrl` for it once the public host serves it).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RepositoryCatalogData {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub architectures: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operating_systems: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub logo_image_blob: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub about_text: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usage_text: Option<String>,
}

impl RepositoryCatalogData {
    /// `given` over `self`: what it sets replaces, what it leaves out stays.
    fn updated(mut self, given: RepositoryCatalogData) -> RepositoryCatalogData {
        macro_rules! take {
            ($($f:ident),*) => { $( if given.$f.is_some() { self.$f = given.$f; } )* };
        }
        take!(description, architectures, operating_systems, logo_image_blob, about_text, usage_text);
        self
    }
}

/// A public repository as the API shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublicRepository {
    pub account: String,
    pub name: String,
    pub created_at: i64,
}

impl Registry {
    /// `CreateRepository` (ECR Public): the account's registry (and its alias) made if need be,
    /// the repository with its tags and catalog data.
    pub async fn create_public_repository(
        &self,
        account: &str,
        name: &str,
        tags: &[(String, String)],
        catalog: RepositoryCatalogData,
    ) -> Result<(PublicRepository, RepositoryCatalogData), RegistryError> {
        let as_resource: Vec<crate::repositories::ResourceTag> =
            tags.iter().map(|(k, v)| crate::repositories::ResourceTag { key: k.clone(), value: v.clone() }).collect();
        crate::repositories::check_resource_tags(&as_resource)?;
        if tags.len() > 50 {
            return Err(RegistryError::TooManyTags);
        }
        self.public_registry(account).await?;
        let key = public_repository_key(account, name);
        let created = self
            .meta()
            .create_repository(&key, &berth_meta::RepositorySettings::default(), tags)
            .await
            .map_err(|e| match e {
                MetaError::RepositoryAlreadyExists => RegistryError::RepositoryAlreadyExists { name: name.to_string() },
                other => other.into(),
            })?;
        let catalog = RepositoryCatalogData::default().updated(catalog);
        let text = serde_json::to_string(&catalog).expect("catalog data serializes");
        self.meta().put_account_setting(account, &repository_catalog_setting(name), &text).await?;
        Ok((
            PublicRepository { account: account.to_string(), name: name.to_string(), created_at: created.created_at },
            catalog,
        ))
    }

    /// A public repository of `account`; `RepositoryNotFound` if there is none.
    pub async fn public_repository(&self, account: &str, name: &str) -> Result<PublicRepository, RegistryError> {
        match self.meta().repository(&public_repository_key(account, name)).await? {
            Some(r) => {
                Ok(PublicRepository { account: account.to_string(), name: name.to_string(), created_at: r.created_at })
            }
            None => Err(RegistryError::RepositoryNotFound { name: name.to_string() }),
        }
    }

    /// An account's public repositories in name order, after `after`, at most `limit` (and
    /// whether there are more).
    pub async fn public_repositories(
        &self,
        account: &str,
        after: Option<&str>,
        limit: u32,
    ) -> Result<(Vec<PublicRepository>, bool), RegistryError> {
        let prefix = public_repository_key(account, "");
        let cursor = match after {
            Some(a) => public_repository_key(account, a),
            None => prefix.clone(),
        };
        let page = self.meta().describe_repositories(Some(&cursor), limit + 1).await?;
        let mut found: Vec<PublicRepository> = page
            .into_iter()
            .take_while(|r| r.name.starts_with(&prefix))
            .map(|r| PublicRepository {
                account: account.to_string(),
                name: r.name[prefix.len()..].to_string(),
                created_at: r.created_at,
            })
            .collect();
        let more = found.len() > limit as usize;
        found.truncate(limit as usize);
        Ok((found, more))
    }

    /// `DeleteRepository` (ECR Public): with `force`, also one holding images.
    pub async fn delete_public_repository(
        &self,
        account: &str,
        name: &str,
        force: bool,
    ) -> Result<PublicRepository, RegistryError> {
        let key = public_repository_key(account, name);
        let deleted = self.meta().delete_repository(&key, force).await.map_err(|e| match e {
            MetaError::RepositoryNotEmpty => RegistryError::RepositoryNotEmpty { name: name.to_string() },
            MetaError::RepositoryNotFound => RegistryError::RepositoryNotFound { name: name.to_string() },
            other => other.into(),
        })?;
        self.forget_catalog_of_missing(account, name).await?;
        Ok(PublicRepository { account: account.to_string(), name: name.to_string(), created_at: deleted.created_at })
    }

    /// `ListTagsForResource` (ECR Public).
    pub async fn public_repository_tags(
        &self,
        account: &str,
        name: &str,
    ) -> Result<Vec<(String, String)>, RegistryError> {
        self.repository_tags(&public_repository_key(account, name)).await.map_err(|e| named(e, name))
    }

    /// `TagResource` (ECR Public): adds or replaces tags, at most 50 in all.
    pub async fn tag_public_repository(
        &self,
        account: &str,
        name: &str,
        tags: &[crate::repositories::ResourceTag],
    ) -> Result<(), RegistryError> {
        self.tag_repository(&public_repository_key(account, name), tags).await.map_err(|e| named(e, name))
    }

    /// `UntagResource` (ECR Public).
    pub async fn untag_public_repository(
        &self,
        account: &str,
        name: &str,
        keys: &[String],
    ) -> Result<(), RegistryError> {
        self.untag_repository(&public_repository_key(account, name), keys).await.map_err(|e| named(e, name))
    }

    /// `GetRepositoryCatalogData`.
    pub async fn public_catalog_data(&self, account: &str, name: &str) -> Result<RepositoryCatalogData, RegistryError> {
        self.public_repository(account, name).await?;
        match self.meta().account_setting(account, &repository_catalog_setting(name)).await? {
            Some(text) if !text.is_empty() => serde_json::from_str(&text)
                .map_err(|e| RegistryError::Internal(format!("stored catalog data of {name}: {e}"))),
            _ => Ok(RepositoryCatalogData::default()),
        }
    }

    /// `PutRepositoryCatalogData`: what is given replaces, what is left out stays.
    pub async fn put_public_catalog_data(
        &self,
        account: &str,
        name: &str,
        given: RepositoryCatalogData,
    ) -> Result<RepositoryCatalogData, RegistryError> {
        let data = self.public_catalog_data(account, name).await?.updated(given);
        let text = serde_json::to_string(&data).expect("catalog data serializes");
        self.meta().put_account_setting(account, &repository_catalog_setting(name), &text).await?;
        // Deleted meanwhile: what was just written must not outlive it.
        self.forget_catalog_of_missing(account, name).await?;
        Ok(data)
    }

    /// Clears a public repository's catalog data if the repository does not exist (now): after
    /// a delete, a create of the same name in between keeps its own.
    async fn forget_catalog_of_missing(&self, account: &str, name: &str) -> Result<(), RegistryError> {
        if self.meta().repository(&public_repository_key(account, name)).await?.is_none() {
            self.meta().put_account_setting(account, &repository_catalog_setting(name), "").await?;
        }
        Ok(())
    }

    /// The public registry host (`--public-host`), if ECR Public is on.
    pub fn public_host(&self) -> Option<&str> {
        self.public_host.get().map(|h| h.name.as_str())
    }

    /// Turns ECR Public on, under `host` (once, at start).
    pub fn set_public_host(&self, host: PublicHost) {
        let _ = self.public_host.set(host);
    }

    /// The account's public registry, its default alias chosen now if it has none (eight
    /// random lowercase letters, as ECR Public's defaults look).
    pub async fn public_registry(&self, account: &str) -> Result<PublicRegistry, RegistryError> {
        if let Some(alias) = self.meta().registry_alias(account).await? {
            return Ok(PublicRegistry { account: account.to_string(), alias });
        }
        for _ in 0..16 {
            match self.meta().ensure_registry_alias(account, &random_alias(), now_ms()).await {
                Ok(alias) => return Ok(PublicRegistry { account: account.to_string(), alias }),
                // Another account holds that one: draw again.
                Err(MetaError::AlreadyExists) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Err(RegistryError::Internal("could not choose a free registry alias".into()))
    }

    /// `berth admin set-registry-alias` (the API has no operation for it): refused when the
    /// alias is not one ECR Public allows or another account holds it.
    pub async fn set_registry_alias(&self, account: &str, alias: &str) -> Result<PublicRegistry, RegistryError> {
        check_alias(alias)?;
        match self.meta().set_registry_alias(account, alias, now_ms()).await {
            Ok(()) => Ok(PublicRegistry { account: account.to_string(), alias: alias.to_string() }),
            Err(MetaError::AlreadyExists) => {
                Err(RegistryError::InvalidParameter(format!("the registry alias {alias:?} is held by another account")))
            }
            Err(e) => Err(e.into()),
        }
    }

    /// `GetRegistryCatalogData`.
    pub async fn registry_catalog_data(&self, account: &str) -> Result<RegistryCatalogData, RegistryError> {
        match self.meta().account_setting(account, CATALOG_SETTING).await? {
            Some(text) => serde_json::from_str(&text)
                .map_err(|e| RegistryError::Internal(format!("stored registry catalog data: {e}"))),
            None => Ok(RegistryCatalogData::default()),
        }
    }

    /// `PutRegistryCatalogData`: a display name given replaces the one stored; none leaves it.
    pub async fn put_registry_catalog_data(
        &self,
        account: &str,
        display_name: Option<String>,
    ) -> Result<RegistryCatalogData, RegistryError> {
        let mut data = self.registry_catalog_data(account).await?;
        if display_name.is_some() {
            data.display_name = display_name;
        }
        let text = serde_json::to_string(&data).expect("catalog data serializes");
        self.meta().put_account_setting(account, CATALOG_SETTING, &text).await?;
        Ok(data)
    }
}

/// A public repository's errors name it as the API does, not by its store key.
pub fn named(e: RegistryError, name: &str) -> RegistryError {
    match e {
        RegistryError::RepositoryNotFound { .. } => RegistryError::RepositoryNotFound { name: name.to_string() },
        RegistryError::RepositoryPolicyNotFound { .. } => {
            RegistryError::RepositoryPolicyNotFound { name: name.to_string() }
        }
        other => other,
    }
}

/// ECR Public's alias rule: 2 to 50 characters, a lowercase letter first, then lowercase
/// letters and digits in runs joined by single `.`, `_` or `-`.
fn check_alias(alias: &str) -> Result<(), RegistryError> {
    let b = alias.as_bytes();
    let word = |c: &u8| c.is_ascii_lowercase() || c.is_ascii_digit();
    let sep = |c: &u8| matches!(c, b'.' | b'_' | b'-');
    let ok = (2..=50).contains(&b.len())
        && b[0].is_ascii_lowercase()
        && word(&b[b.len() - 1])
        && b.iter().all(|c| word(c) || sep(c))
        && !b.windows(2).any(|w| sep(&w[0]) && sep(&w[1]));
    if ok {
        Ok(())
    } else {
        Err(RegistryError::InvalidParameter(format!(
            "the registry alias {alias:?} must be 2 to 50 lowercase letters, digits and single '.', '_' or '-' \
             separators, starting with a letter"
        )))
    }
}

fn random_alias() -> String {
    uuid::Uuid::new_v4().as_bytes()[..8].iter().map(|b| char::from(b'a' + b % 26)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn public_keys_never_meet_private_ones() {
        let key = public_repository_key("123456789012", "team/app");
        assert_eq!(key, "@123456789012+public/team/app");
        assert_eq!(split_public_key(&key), Some(("123456789012", "team/app")));
        assert_eq!(split_public_key("@123456789012/team/app"), None);
        assert_eq!(split_public_key("team/app"), None);
        // The private view of such a key is no account of a private listing.
        let (account, _) = crate::repositories::split_repository_key("123456789012", &key);
        assert_ne!(account, "123456789012");
        // Sorted before the account's private range, so its listings never reach it.
        assert!(key.as_str() < crate::repositories::account_key_prefix("", "123456789012").as_str());
        assert_eq!(public_repository_arn("123456789012", "x/y"), "arn:aws:ecr-public::123456789012:repository/x/y");
    }

    #[test]
    fn catalog_data_updates_what_is_given() {
        let stored = RepositoryCatalogData {
            description: Some("a".into()),
            about_text: Some("about".into()),
            ..Default::default()
        };
        let given = RepositoryCatalogData { description: Some("b".into()), ..Default::default() };
        let now = stored.updated(given);
        assert_eq!((now.description.as_deref(), now.about_text.as_deref()), (Some("b"), Some("about")));
    }

    #[test]
    fn aliases_follow_ecr_publics_rule() {
        for ok in ["ab", "team-a", "a1.b2_c3", &"a".repeat(50)] {
            assert!(check_alias(ok).is_ok(), "{ok}");
        }
        for bad in ["a", "1abc", "Team", "a--b", "a-", "a b", &"a".repeat(51)] {
            assert!(check_alias(bad).is_err(), "{bad}");
        }
        let drawn = random_alias();
        assert_eq!(drawn.len(), 8);
        assert!(check_alias(&drawn).is_ok());
    }
}
