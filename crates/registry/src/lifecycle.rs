//! Lifecycle policies applied to a repository's images: the images as the pure evaluator sees
//! them, what a policy would do to them (the preview), and applying it (the runner).

use std::collections::HashSet;

use berth_meta::{ImageRecord, TagFilter};
use berth_policy::lifecycle::{self, Decision, Image, LifecyclePolicy};

use crate::{Registry, RegistryError};

/// What one lifecycle run did to one repository.
#[derive(Debug, Default)]
pub struct LifecycleRun {
    pub repository: String,
    /// (digest, tags, rule priority) of each image expired (or, in a dry run, that would be).
    pub expired: Vec<(String, Vec<String>, i64)>,
}

impl Registry {
    /// Every image of a repository with its record, children of an index marked as such.
    pub async fn lifecycle_images(&self, repository: &str) -> Result<Vec<(Image, ImageRecord)>, RegistryError> {
        let mut records = Vec::new();
        let mut after: Option<String> = None;
        loop {
            let page = self.meta().list_images(repository, after.as_deref(), 1000, TagFilter::Any).await?;
            let done = page.len() < 1000;
            after = page.last().map(|r| r.digest.clone());
            records.extend(page);
            if done {
                break;
            }
        }
        let children: HashSet<String> = records.iter().flat_map(|r| r.children.iter().cloned()).collect();
        Ok(records
            .into_iter()
            .map(|r| {
                let image = Image {
                    digest: r.digest.clone(),
                    tags: r.tags.clone(),
                    pushed_at_ms: r.pushed_at,
                    in_index: children.contains(&r.digest),
                };
                (image, r)
            })
            .collect())
    }

    /// Applies the repository's stored lifecycle policy at `now_ms`: every image it expires is
    /// deleted exactly as `BatchDeleteImage` deletes it. With `dry_run`, only reports.
    pub async fn run_lifecycle(
        &self,
        repository: &str,
        now_ms: i64,
        dry_run: bool,
    ) -> Result<LifecycleRun, RegistryError> {
        let mut run = LifecycleRun { repository: repository.to_string(), ..Default::default() };
        let Some((text, _)) = self.meta().lifecycle_policy(repository).await? else { return Ok(run) };
        let policy = lifecycle::parse(&text)
            .map_err(|e| RegistryError::Internal(format!("stored lifecycle policy of {repository}: {e}")))?;
        for (decision, image) in self.lifecycle_preview(repository, &policy, now_ms).await? {
            if !dry_run {
                let digest = berth_oci::Digest::parse(&image.digest)
                    .map_err(|e| RegistryError::Internal(format!("stored digest: {e}")))?;
                if let Err(parents) = self.delete_image(repository, &digest).await? {
                    tracing::warn!(repository, digest = %digest, ?parents, "lifecycle: image still listed by an index, kept");
                    continue;
                }
                tracing::info!(repository, digest = %digest, rule = decision.rule_priority, "lifecycle: image expired");
            }
            run.expired.push((image.digest, image.tags, decision.rule_priority));
        }
        if !dry_run {
            self.meta().set_lifecycle_evaluated(repository, now_ms).await?;
        }
        Ok(run)
    }

    /// Runs the lifecycle policy of every repository that has one.
    pub async fn run_all_lifecycles(&self, now_ms: i64, dry_run: bool) -> Result<Vec<LifecycleRun>, RegistryError> {
        let mut runs = Vec::new();
        let mut after: Option<String> = None;
        loop {
            let page = self.meta().list_repositories(after.as_deref(), 1000).await?;
            let done = page.len() < 1000;
            after = page.last().cloned();
            for repository in page {
                if self.meta().lifecycle_policy(&repository).await?.is_some() {
                    runs.push(self.run_lifecycle(&repository, now_ms, dry_run).await?);
                }
            }
            if done {
                return Ok(runs);
            }
        }
    }

    /// What `policy` would do to the repository's images at `now_ms`.
    pub async fn lifecycle_preview(
        &self,
        repository: &str,
        policy: &LifecyclePolicy,
        now_ms: i64,
    ) -> Result<Vec<(Decision, ImageRecord)>, RegistryError> {
        let images = self.lifecycle_images(repository).await?;
        let list: Vec<Image> = images.iter().map(|(i, _)| i.clone()).collect();
        let decisions = lifecycle::evaluate(policy, &list, now_ms);
        Ok(decisions
            .into_iter()
            .filter_map(|d| images.iter().find(|(i, _)| i.digest == d.digest).map(|(_, r)| (d, r.clone())))
            .collect())
    }
}
