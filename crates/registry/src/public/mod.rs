//! ECR Public: each account's public registry — its alias (pull URIs are
//! `<public host>/<alias>/<repository>`, as `public.ecr.aws/<alias>/…` are ECR's) and its
//! catalog data. The public registry's repositories, the public host and anonymous pulls build
//! on this.

use berth_meta::{MetaError, now_ms};
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

impl Registry {
    /// The public registry host (`--public-host`), if ECR Public is on.
    pub fn public_host(&self) -> Option<&str> {
        self.public_host.get().map(String::as_str)
    }

    /// Turns ECR Public on, under `host` (once, at start).
    pub fn set_public_host(&self, host: &str) {
        let _ = self.public_host.set(host.to_string());
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
