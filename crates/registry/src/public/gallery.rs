//! The gallery's view of ECR Public: every account's public repositories with their catalog
//! data, found by a search over alias, name and description — what `/gallery/` on the public
//! host shows to anyone, signed in or not.

use super::{RepositoryCatalogData, public_repository_key};
use crate::{Registry, RegistryError};

/// How many repositories one search reads at most: the gallery is a browsing aid, not an index.
const SEARCH_SCAN_LIMIT: usize = 5_000;

/// A public repository as the gallery shows it.
#[derive(Debug, Clone)]
pub struct GalleryEntry {
    pub account: String,
    pub alias: String,
    /// The registry's display name (its catalog data), if set.
    pub registry_display_name: Option<String>,
    pub name: String,
    pub created_at: i64,
    pub catalog: RepositoryCatalogData,
}

/// One page of search results, in (alias, name) order.
#[derive(Debug, Clone, Default)]
pub struct GalleryPage {
    pub entries: Vec<GalleryEntry>,
    /// Whether more repositories matched than the page holds.
    pub more: bool,
}

impl GalleryEntry {
    /// Whether every word of `search` appears (case-insensitively) in the alias, the name or
    /// the description.
    fn matches(&self, words: &[String]) -> bool {
        let text = format!(
            "{}/{} {} {}",
            self.alias,
            self.name,
            self.catalog.description.as_deref().unwrap_or(""),
            self.registry_display_name.as_deref().unwrap_or("")
        )
        .to_lowercase();
        words.iter().all(|w| text.contains(w.as_str()))
    }
}

impl Registry {
    /// Public repositories of every account matching `search` (all when it is blank), at most
    /// `limit`.
    pub async fn gallery(&self, search: &str, limit: usize) -> Result<GalleryPage, RegistryError> {
        let words: Vec<String> = search.split_whitespace().map(str::to_lowercase).collect();
        let mut page = GalleryPage::default();
        let mut scanned = 0usize;
        for (account, alias) in self.meta().registry_aliases().await? {
            let display_name = self.registry_catalog_data(&account).await?.display_name;
            let mut after: Option<String> = None;
            loop {
                let (repositories, more) = self.public_repositories(&account, after.as_deref(), 100).await?;
                for r in &repositories {
                    scanned += 1;
                    let entry = GalleryEntry {
                        account: account.clone(),
                        alias: alias.clone(),
                        registry_display_name: display_name.clone(),
                        name: r.name.clone(),
                        created_at: r.created_at,
                        catalog: self.public_catalog_data(&account, &r.name).await.unwrap_or_default(),
                    };
                    if entry.matches(&words) {
                        if page.entries.len() == limit {
                            page.more = true;
                            return Ok(page);
                        }
                        page.entries.push(entry);
                    }
                    if scanned >= SEARCH_SCAN_LIMIT {
                        page.more = true;
                        return Ok(page);
                    }
                }
                match (more, repositories.last()) {
                    (true, Some(last)) => after = Some(last.name.clone()),
                    _ => break,
                }
            }
        }
        Ok(page)
    }

    /// One public repository by alias and name, with its first tags (at most `tags`); `None`
    /// when there is no such repository.
    pub async fn gallery_repository(
        &self,
        alias: &str,
        name: &str,
        tags: u32,
    ) -> Result<Option<(GalleryEntry, Vec<String>)>, RegistryError> {
        let Some(account) = self.meta().account_of_registry_alias(alias).await? else { return Ok(None) };
        let repository = match self.public_repository(&account, name).await {
            Ok(r) => r,
            Err(RegistryError::RepositoryNotFound { .. }) => return Ok(None),
            Err(e) => return Err(e),
        };
        let entry = GalleryEntry {
            registry_display_name: self.registry_catalog_data(&account).await?.display_name,
            catalog: self.public_catalog_data(&account, name).await?,
            account: account.clone(),
            alias: alias.to_string(),
            name: repository.name,
            created_at: repository.created_at,
        };
        let listed = self.list_tags(&public_repository_key(&account, name), Some(tags), None).await?;
        Ok(Some((entry, listed.items)))
    }
}
