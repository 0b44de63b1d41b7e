//! Backfill (a Berth extension): replicating images pushed before a rule covered them, which
//! ECR never does. Every image of the account's repositories that the rules cover is queued
//! for the destinations its tags take, as if pushed now; an index's untagged children and an
//! image's referrers are left out (they go with the image that holds them), and so is a
//! destination that has the image already or is replicating it (only failed or never-run
//! replications are queued again; a removal job there does not count as the image).

use berth_meta::{ImageFilter, ReplicationAction, ReplicationStatus, ReplicationTarget, StatusFilter, TagFilter};
use serde::Serialize;

use crate::repositories::{account_key_prefix, split_repository_key};
use crate::{Registry, RegistryError};

const PAGE: u32 = 500;

/// One image × destination a backfill queued.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct BackfillJob {
    /// The repository's key.
    pub repository: String,
    pub digest: String,
    pub region: String,
    pub registry_id: String,
}

impl Registry {
    /// Queues the account's images the rules cover and that have not reached a destination
    /// (see the module's comment), in repositories whose name starts with `prefix` if given.
    pub async fn backfill_replication(
        &self,
        account: &str,
        prefix: Option<&str>,
    ) -> Result<Vec<BackfillJob>, RegistryError> {
        let config = self.replication_configuration(account).await?;
        let key_prefix = account_key_prefix(self.registry_id(), account);
        let mut queued = Vec::new();
        let mut last: Option<String> = None;
        loop {
            let names = self.meta().list_repositories(last.as_deref(), PAGE).await?;
            let Some(end) = names.last().cloned() else { break };
            for key in &names {
                let (owner, name) = split_repository_key(self.registry_id(), key);
                if owner != account || !key.starts_with(&key_prefix) || prefix.is_some_and(|p| !name.starts_with(p)) {
                    continue;
                }
                if !config.rules.iter().any(|r| r.covers(name)) {
                    continue;
                }
                let images = self.all_images(key).await?;
                let held_by_others: std::collections::HashSet<&str> =
                    images.iter().flat_map(|i| i.children.iter().map(String::as_str)).collect();
                for image in &images {
                    let rides_along = image.subject.is_some() || held_by_others.contains(image.digest.as_str());
                    if rides_along && image.tags.is_empty() {
                        continue;
                    }
                    let there: Vec<ReplicationTarget> = self
                        .meta()
                        .image_replications(key, &image.digest)
                        .await?
                        .into_iter()
                        .filter(|r| r.action == ReplicationAction::Replicate && r.status != ReplicationStatus::Failed)
                        .map(|r| r.target)
                        .collect();
                    let targets: Vec<ReplicationTarget> = config
                        .destinations_for(name, &image.tags)
                        .into_iter()
                        .map(|d| ReplicationTarget { region: d.region, registry_id: d.registry_id })
                        .filter(|t| !there.contains(t))
                        .collect();
                    if targets.is_empty() {
                        continue;
                    }
                    match self.meta().queue_replications(key, &image.digest, &image.tags, &targets).await {
                        Ok(()) => {}
                        // Deleted since it was listed.
                        Err(berth_meta::MetaError::NotFound) => continue,
                        Err(e) => return Err(e.into()),
                    }
                    queued.extend(targets.into_iter().map(|t| BackfillJob {
                        repository: key.clone(),
                        digest: image.digest.clone(),
                        region: t.region,
                        registry_id: t.registry_id,
                    }));
                }
            }
            last = Some(end);
        }
        if !queued.is_empty() {
            self.replication.wakeup.notify_one();
        }
        Ok(queued)
    }

    /// Every active image of a repository (archived ones are not pulled, so not replicated).
    async fn all_images(&self, key: &str) -> Result<Vec<berth_meta::ImageRecord>, RegistryError> {
        let filter = ImageFilter { tags: TagFilter::Any, status: StatusFilter::Active };
        let mut out: Vec<berth_meta::ImageRecord> = Vec::new();
        loop {
            let after = out.last().map(|i| i.digest.clone());
            let page = self.meta().list_images(key, after.as_deref(), PAGE, filter).await?;
            let done = page.len() < PAGE as usize;
            out.extend(page);
            if done {
                return Ok(out);
            }
        }
    }
}
