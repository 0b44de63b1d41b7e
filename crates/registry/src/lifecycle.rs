//! Lifecycle policies applied to a repository's images: the images as the pure evaluator sees
//! them, what a policy would do to them (the preview), and applying it (the runner).

use std::collections::HashSet;

use berth_meta::{ImageFilter, ImageRecord, LifecycleEvent};
use berth_rules::lifecycle::{self, ActionKind, Decision, Image, LifecyclePolicy, StorageClass};

use crate::{Registry, RegistryError};

/// What one lifecycle run did to one repository.
#[derive(Debug, Default)]
pub struct LifecycleRun {
    pub repository: String,
    /// (digest, tags, rule priority) of each image expired (or, in a dry run, that would be).
    pub expired: Vec<(String, Vec<String>, i64)>,
    /// The same for each image moved to the archive storage class.
    pub archived: Vec<(String, Vec<String>, i64)>,
}

impl Registry {
    /// Every image of a repository with its record, children of an index marked as such.
    /// Attachments of images it holds are left out — referrers (a manifest with a `subject`)
    /// and what only tag-scheme attachment tags name (`sha256-<hex>.sig|.att|.sbom`): they are
    /// neither counted nor expired on their own, and go when their subject goes.
    pub async fn lifecycle_images(&self, repository: &str) -> Result<Vec<(Image, ImageRecord)>, RegistryError> {
        let mut records = Vec::new();
        let mut after: Option<String> = None;
        loop {
            let page = self.meta().list_images(repository, after.as_deref(), 1000, ImageFilter::ALL).await?;
            let done = page.len() < 1000;
            after = page.last().map(|r| r.digest.clone());
            records.extend(page);
            if done {
                break;
            }
        }
        let children: HashSet<String> = records.iter().flat_map(|r| r.children.iter().cloned()).collect();
        // An attachment whose image is gone (deleted while a removal failed or raced) is an
        // image like any other, so that rules can expire it.
        let digests: HashSet<String> = records.iter().map(|r| r.digest.clone()).collect();
        let attached_to = |r: &ImageRecord| -> Option<String> {
            if let Some(s) = &r.subject {
                return Some(s.clone());
            }
            let mut subjects = r.tags.iter().map(|t| berth_rules::signing::attachment_of(t).map(|(d, _)| d));
            let first = subjects.next()??;
            subjects.all(|s| s.as_deref() == Some(first.as_str())).then_some(first)
        };
        let attachment = |r: &ImageRecord| attached_to(r).is_some_and(|s| digests.contains(&s));
        Ok(records
            .into_iter()
            .filter(|r| !attachment(r))
            .map(|r| {
                let image = Image {
                    digest: r.digest.clone(),
                    tags: r.tags.clone(),
                    pushed_at_ms: r.pushed_at,
                    last_pulled_ms: r.last_pulled_at,
                    storage_class: if r.archived { StorageClass::Archive } else { StorageClass::Standard },
                    archived_at_ms: r.last_archived_at,
                    in_index: children.contains(&r.digest),
                };
                (image, r)
            })
            .collect())
    }

    /// Applies the repository's stored lifecycle policy at `now_ms`: every image it expires is
    /// deleted exactly as `BatchDeleteImage` deletes it, every image it transitions moves to the
    /// archive storage class, and each action is recorded as a lifecycle event. With `dry_run`,
    /// only reports.
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
            let entry = (image.digest.clone(), image.tags.clone(), decision.rule_priority);
            if !dry_run {
                let digest = berth_oci::Digest::parse(&image.digest)
                    .map_err(|e| RegistryError::Internal(format!("stored digest: {e}")))?;
                match decision.action {
                    ActionKind::Expire => {
                        if let Err(parents) = self.delete_image(repository, &digest).await? {
                            tracing::warn!(repository, digest = %digest, ?parents, "lifecycle: image still listed by an index, kept");
                            continue;
                        }
                    }
                    ActionKind::Transition => {
                        if self.meta().set_image_archived(repository, digest.as_str(), true, now_ms).await?
                            != Some(true)
                        {
                            continue;
                        }
                    }
                }
                self.meta()
                    .record_lifecycle_event(&LifecycleEvent {
                        repository: repository.to_string(),
                        digest: image.digest.clone(),
                        tags: image.tags.clone(),
                        action: decision.action,
                        rule_priority: decision.rule_priority,
                        at: now_ms,
                    })
                    .await?;
                tracing::info!(repository, digest = %digest, rule = decision.rule_priority, action = decision.action.as_api_str(), "lifecycle action");
            }
            match decision.action {
                ActionKind::Expire => run.expired.push(entry),
                ActionKind::Transition => run.archived.push(entry),
            }
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
        let (list, records): (Vec<Image>, Vec<ImageRecord>) =
            self.lifecycle_images(repository).await?.into_iter().unzip();
        let decisions = lifecycle::evaluate(policy, &list, now_ms);
        // One map, not a scan of every image per decision (100,000 images, many decisions).
        let mut by_digest: std::collections::HashMap<String, ImageRecord> =
            records.into_iter().map(|r| (r.digest.clone(), r)).collect();
        Ok(decisions.into_iter().filter_map(|d| by_digest.remove(&d.digest).map(|r| (d, r))).collect())
    }
}

impl Registry {
    /// Moves an image between storage classes as `UpdateImageStorageClass` does: to the archive
    /// (no longer pullable) or back to standard. Restoring is immediate here (the bytes never
    /// left), so the image is `ACTIVE` at once, and replicated as a push would be (ECR
    /// replicates images restored from archive; queued on every request for the standard
    /// class, so a restore retried after a failure still queues it, and a second run only
    /// finds the replica there). `Ok(None)` if there is no such image. An image an index lists
    /// is archived with its index, never alone (`ArchiveOfIndexChild`).
    pub async fn update_image_storage_class(
        &self,
        repository: &str,
        digest: &str,
        target: StorageClass,
        now_ms: i64,
    ) -> Result<Option<ImageRecord>, RegistryError> {
        let archived = target == StorageClass::Archive;
        if archived && !self.meta().manifest_parents(repository, digest).await?.is_empty() {
            return Err(RegistryError::ArchiveOfIndexChild);
        }
        if self.meta().set_image_archived(repository, digest, archived, now_ms).await?.is_none() {
            return Ok(None);
        }
        let image = self.meta().image(repository, digest).await?;
        if let Some(restored) = image.as_ref().filter(|_| !archived) {
            let targets = self.replication_targets(repository, &restored.tags).await?;
            if !targets.is_empty() {
                self.meta().queue_replications(repository, digest, &restored.tags, &targets).await?;
                self.replication.wakeup.notify_one();
            }
        }
        Ok(image)
    }
}
