//! Registry replication: the configuration each account's registry keeps
//! (`PutReplicationConfiguration`, `DescribeRegistry`), checked against what this deployment
//! can reach; which destinations a push is queued for; and the worker that runs the queue.
//! A destination in this deployment's own region is another account it serves: the copy is
//! made in-process (blobs linked, never sent; each manifest put under the destination's
//! rules). Destinations in other regions (peers) come with the next part of issue 17.

use std::sync::Arc;
use std::time::Duration;

use berth_meta::{ImageReplication, ReplicationJob, ReplicationOutcome, ReplicationTarget};
use berth_oci::Digest;
use berth_oci::manifest::parse_manifest;
use berth_rules::replication::{Destination, ReplicationConfiguration};

use crate::identity::Caller;
use crate::repositories::{repository_key, split_repository_key, template_for};
use crate::{Registry, RegistryError};

/// Berth's failure codes of a replication (ECR names none; ARCHITECTURE.md lists them).
pub mod failure {
    /// The destination registry's policy does not allow the source account
    /// `ecr:ReplicateImage` on the repository.
    pub const NOT_AUTHORIZED: &str = "REPLICATION_NOT_AUTHORIZED";
    /// The destination repository is missing and its policy does not allow the source account
    /// `ecr:CreateRepository`.
    pub const REPOSITORY_CREATE_DENIED: &str = "REPOSITORY_CREATE_DENIED";
    /// The destination cannot be reached (another region, no peer for it).
    pub const DESTINATION_UNREACHABLE: &str = "DESTINATION_UNREACHABLE";
    /// The destination repository's KMS key refused (disabled, pending deletion, no grant).
    pub const KMS_KEY_UNAVAILABLE: &str = "KMS_KEY_UNAVAILABLE";
    /// The image is gone from the source repository since it was pushed.
    pub const SOURCE_IMAGE_NOT_FOUND: &str = "SOURCE_IMAGE_NOT_FOUND";
    /// Anything else (the metadata store failing, …): retried.
    pub const INTERNAL_ERROR: &str = "INTERNAL_ERROR";
}

/// Attempts before a job that keeps failing in a way that may pass is `FAILED`, and the
/// backoff between them: 1 s doubling up to 5 minutes (about 40 minutes in all).
const MAX_ATTEMPTS: u32 = 12;
const FIRST_BACKOFF_MS: i64 = 1_000;
const MAX_BACKOFF_MS: i64 = 300_000;
/// A claim older than this is a dead node's: released for another node to run.
const STALE_CLAIM_MS: i64 = 10 * 60 * 1000;
/// Jobs one node runs at once.
const CONCURRENCY: usize = 4;

/// The wait before attempt `attempts + 1`.
fn backoff_ms(attempts: u32) -> i64 {
    FIRST_BACKOFF_MS.saturating_mul(1 << attempts.saturating_sub(1).min(20)).min(MAX_BACKOFF_MS)
}

/// Why one run of a job did not finish it.
enum Failure {
    /// For good: the job is `FAILED` with this code.
    Final(&'static str),
    /// Perhaps for now: tried again after a backoff.
    Retry(&'static str),
}

impl From<RegistryError> for Failure {
    fn from(e: RegistryError) -> Self {
        match e {
            RegistryError::Kms(_) => Failure::Final(failure::KMS_KEY_UNAVAILABLE),
            other => {
                tracing::warn!(error = %other, "replication attempt failed");
                Failure::Retry(failure::INTERNAL_ERROR)
            }
        }
    }
}

impl From<berth_meta::MetaError> for Failure {
    fn from(e: berth_meta::MetaError) -> Self {
        RegistryError::from(e).into()
    }
}

/// The account setting that holds a registry's replication configuration (JSON, ECR's shape).
const REPLICATION_SETTING: &str = "berth:replication-configuration";

impl Registry {
    /// The replication configuration of `account`'s registry (no rules until one is put).
    pub async fn replication_configuration(&self, account: &str) -> Result<ReplicationConfiguration, RegistryError> {
        match self.meta().account_setting(account, REPLICATION_SETTING).await? {
            Some(text) => serde_json::from_str(&text)
                .map_err(|e| RegistryError::Internal(format!("stored replication configuration: {e}"))),
            None => Ok(ReplicationConfiguration::default()),
        }
    }

    /// Replaces the replication configuration of `account`'s registry, as
    /// `PutReplicationConfiguration` does. A destination in this deployment's region must be
    /// an account it serves (a copy there is made in-process); other regions are those of
    /// replication peers (none can be configured yet: issue 17).
    pub async fn put_replication_configuration(
        &self,
        account: &str,
        config: &ReplicationConfiguration,
    ) -> Result<(), RegistryError> {
        let region = self.region().to_string();
        let source = Destination { region: region.clone(), registry_id: account.to_string() };
        config.validate(&source, |r| r == region).map_err(RegistryError::InvalidParameter)?;
        for d in config.rules.iter().flat_map(|r| &r.destinations) {
            if d.region == region && !self.serves_account(&d.registry_id).await? {
                return Err(RegistryError::InvalidParameter(format!(
                    "Invalid parameter at 'replicationConfiguration' failed to satisfy constraint: 'Registry \
                     '{}' is not served in region '{region}'",
                    d.registry_id
                )));
            }
        }
        let text = serde_json::to_string(config).map_err(|e| RegistryError::Internal(e.to_string()))?;
        self.meta().put_account_setting(account, REPLICATION_SETTING, &text).await?;
        Ok(())
    }

    /// Where the replications of an image of `repository` stand, one per destination.
    pub async fn image_replications(
        &self,
        repository: &str,
        digest: &Digest,
    ) -> Result<Vec<ImageReplication>, RegistryError> {
        Ok(self.meta().image_replications(repository, digest.as_str()).await?)
    }

    /// The replication queue per destination: jobs waiting, running, complete and failed.
    pub async fn replication_queue(
        &self,
    ) -> Result<Vec<(ReplicationTarget, berth_meta::ReplicationQueueCounts)>, RegistryError> {
        Ok(self.meta().replication_queue().await?)
    }

    /// Where a push to the repository `name` (a store key) is replicated: the destinations of
    /// its account's rules that cover the repository's name.
    pub(crate) async fn replication_targets(&self, name: &str) -> Result<Vec<ReplicationTarget>, RegistryError> {
        let (account, repository) = split_repository_key(self.registry_id(), name);
        let config = self.replication_configuration(account).await?;
        Ok(config
            .destinations_for(repository)
            .into_iter()
            .map(|d| ReplicationTarget { region: d.region, registry_id: d.registry_id })
            .collect())
    }

    /// Runs the replication queue on this node, as `worker`, until the process ends: its own
    /// claims left by the last run and any dead node's stale claims are released first (and
    /// the stale ones again at every look), then due jobs are claimed and run,
    /// `CONCURRENCY` at once, whenever a push wakes the worker or every `poll`.
    pub async fn run_replication_queue(self: Arc<Self>, worker: String, poll: Duration) {
        let meta = self.meta().clone();
        match meta.release_replications(Some(&worker), i64::MAX).await {
            Ok(n) if n > 0 => tracing::info!(jobs = n, "resuming replications interrupted by the last stop"),
            Ok(_) => {}
            Err(e) => tracing::error!(error = %e, "could not release this node's replications"),
        }
        let permits = Arc::new(tokio::sync::Semaphore::new(CONCURRENCY));
        loop {
            if let Err(e) = meta.release_replications(None, berth_meta::now_ms() - STALE_CLAIM_MS).await {
                tracing::error!(error = %e, "could not release stale replications");
            }
            let free = permits.available_permits();
            if free > 0 {
                match meta.claim_replications(&worker, berth_meta::now_ms(), free as u32).await {
                    Ok(jobs) => {
                        for job in jobs {
                            let permit = permits.clone().acquire_owned().await.expect("semaphore never closes");
                            let (registry, worker) = (self.clone(), worker.clone());
                            tokio::spawn(async move {
                                let outcome = registry.replicate(&job).await;
                                let status = match &outcome {
                                    ReplicationOutcome::Complete { .. } => "COMPLETE",
                                    ReplicationOutcome::Failed { .. } => "FAILED",
                                    ReplicationOutcome::Retry { .. } => "RETRY",
                                };
                                let destination = format!("{}/{}", job.target.region, job.target.registry_id);
                                metrics::counter!(
                                    "berth_replications_total", "destination" => destination.clone(), "status" => status
                                )
                                .increment(1);
                                if status == "COMPLETE" {
                                    // From the acknowledged push to the replica's arrival.
                                    let lag = (berth_meta::now_ms() - job.queued_at).max(0) as f64 / 1000.0;
                                    metrics::histogram!("berth_replication_lag_seconds", "destination" => destination)
                                        .record(lag);
                                }
                                tracing::info!(
                                    repository = %job.repository, digest = %job.digest,
                                    region = %job.target.region, registry = %job.target.registry_id,
                                    attempt = job.attempts, ?outcome, "replication {status}"
                                );
                                match registry.meta().finish_replication(&job, &worker, &outcome).await {
                                    Ok(true) => {}
                                    Ok(false) => {
                                        tracing::debug!(digest = %job.digest, "replication queued again meanwhile")
                                    }
                                    Err(e) => tracing::error!(error = %e, "could not record a replication"),
                                }
                                drop(permit);
                                registry.replication_wakeup().notify_one();
                            });
                        }
                    }
                    Err(e) => tracing::error!(error = %e, "could not claim replications"),
                }
            }
            tokio::select! {
                _ = self.replication_wakeup().notified() => {}
                _ = tokio::time::sleep(poll) => {}
            }
        }
    }

    /// One run of a claimed job: its outcome, a retry after a backoff for what may pass.
    pub(crate) async fn replicate(&self, job: &ReplicationJob) -> ReplicationOutcome {
        match self.replicate_in_region(job).await {
            Ok(dropped_tags) => ReplicationOutcome::Complete { dropped_tags },
            Err(Failure::Final(code)) => ReplicationOutcome::Failed { failure_code: code.to_string() },
            Err(Failure::Retry(code)) if job.attempts >= MAX_ATTEMPTS => {
                ReplicationOutcome::Failed { failure_code: code.to_string() }
            }
            Err(Failure::Retry(code)) => ReplicationOutcome::Retry {
                failure_code: code.to_string(),
                due_at: berth_meta::now_ms() + backoff_ms(job.attempts),
            },
        }
    }

    /// Copies the job's image into another account of this region, as ECR does it: the
    /// source account's root must be allowed `ecr:ReplicateImage` on the destination
    /// repository (always, within one account; across accounts, by the destination's
    /// registry policy), and `ecr:CreateRepository` if the repository is missing (created with
    /// the settings of the destination's `REPLICATION` template covering it, else ECR's
    /// defaults). Index children first, then the image with the tags it was pushed with
    /// (an immutable tag the destination has on another image stays there: the image arrives
    /// without it), then its referrers. Returns the tags left out.
    async fn replicate_in_region(&self, job: &ReplicationJob) -> Result<Vec<String>, Failure> {
        if job.target.region != self.region() {
            // Peers are the next part of issue 17: until then no other region is reachable.
            return Err(Failure::Retry(failure::DESTINATION_UNREACHABLE));
        }
        let (source_account, name) = split_repository_key(self.registry_id(), &job.repository);
        let destination = repository_key(self.registry_id(), &job.target.registry_id, name);
        let digest = Digest::parse(&job.digest).map_err(|_| Failure::Final(failure::SOURCE_IMAGE_NOT_FOUND))?;
        let replicator = Caller {
            account_id: source_account.to_string(),
            principal_id: source_account.to_string(),
            arn: format!("arn:aws:iam::{source_account}:root"),
            access_key_id: String::new(),
            kind: berth_meta::PrincipalKind::Root,
        };
        let authorizer = self.authorizer(self.region());
        let allowed = |action: &'static str| {
            let (authorizer, replicator, destination) = (&authorizer, &replicator, &destination);
            async move {
                let env = crate::authz::RequestEnv::default();
                authorizer
                    .authorize(replicator, action, crate::authz::Target::Repository(destination), &env)
                    .await
                    .map(|d| d.is_ok())
            }
        };
        if !allowed("ecr:ReplicateImage").await? {
            return Err(Failure::Final(failure::NOT_AUTHORIZED));
        }
        let repository = match self.find_repository(&destination).await? {
            Some(r) => r,
            None => {
                if !allowed("ecr:CreateRepository").await? {
                    return Err(Failure::Final(failure::REPOSITORY_CREATE_DENIED));
                }
                let templates = self.templates().await?;
                let (settings, tags) = match template_for(&templates, &destination, "REPLICATION") {
                    Some((_, spec)) => (spec.settings(), spec.resource_tags.clone()),
                    None => (Default::default(), Vec::new()),
                };
                match self.create_repository(&destination, &settings, &tags, None).await {
                    Ok(r) => r,
                    Err(RegistryError::RepositoryAlreadyExists { .. }) => self.repository(&destination).await?,
                    Err(e) => return Err(e.into()),
                }
            }
        };
        let dropped = self.copy_image(&job.repository, &repository, &digest, &job.tags).await?;
        for referrer in self.meta().referrers(&job.repository, &digest, None).await? {
            let Ok(d) = Digest::parse(&referrer.digest) else { continue };
            self.copy_image(&job.repository, &repository, &d, &[]).await?;
        }
        Ok(dropped)
    }

    /// Copies one manifest of `source` (its children first, for an index) into `target` with
    /// `tags`, its blobs linked; returns the immutable tags left where they were. (Boxed: an
    /// index copies its children through it.)
    fn copy_image<'a>(
        &'a self,
        source: &'a str,
        target: &'a berth_meta::Repository,
        digest: &'a Digest,
        tags: &'a [String],
    ) -> futures_util::future::BoxFuture<'a, Result<Vec<String>, Failure>> {
        Box::pin(async move {
            let Some(stored) = self.meta().manifest(source, digest).await? else {
                return Err(Failure::Final(failure::SOURCE_IMAGE_NOT_FOUND));
            };
            let manifest = self.at_rest().open_manifest(source, stored).await?;
            let parsed = parse_manifest(Some(manifest.media_type.as_str()), &manifest.content)
                .map_err(|e| RegistryError::Internal(format!("stored manifest {digest} of {source}: {e}")))?;
            for child in &parsed.manifests {
                self.copy_image(source, target, child, &[]).await?;
            }
            for blob in &parsed.blobs {
                self.link_replica_blob(source, target, blob).await?;
            }
            let rule = crate::repositories::tag_mutability(&target.settings);
            let (mut kept, mut dropped) = (Vec::new(), Vec::new());
            for tag in tags {
                let elsewhere = match self.meta().resolve_tag(&target.name, tag).await? {
                    Some(d) => d != *digest,
                    None => false,
                };
                if elsewhere && rule.is_immutable(tag) { dropped.push(tag.clone()) } else { kept.push(tag.clone()) }
            }
            // No chaining: what arrives by replication is not replicated again.
            match self.store_manifest(target, digest.clone(), parsed, manifest.content, kept, Vec::new()).await {
                Ok(_) => Ok(dropped),
                // An immutable tag given to another image meanwhile: tried again, and then dropped.
                Err(RegistryError::TagImmutable { .. }) => Err(Failure::Retry(failure::INTERNAL_ERROR)),
                Err(e) => Err(e.into()),
            }
        })
    }

    /// Links a blob of `source` into `target`, as a commit of the same digest would: a sealed
    /// blob keeps its one ciphertext and gets its keys wrapped under the target's key too, if
    /// it has no wrapping under it yet (a key that refuses is `KMS_KEY_UNAVAILABLE`).
    async fn link_replica_blob(
        &self,
        source: &str,
        target: &berth_meta::Repository,
        digest: &Digest,
    ) -> Result<(), Failure> {
        let Some(size) = self.meta().linked_blob(source, digest).await? else {
            return Err(Failure::Final(failure::SOURCE_IMAGE_NOT_FOUND));
        };
        let at_rest = self.at_rest();
        if let Some(p) = at_rest.protection(target)? {
            let existing = self.meta().blob_keys(digest).await?;
            at_rest.add_wrapping_if_missing(digest, &existing, &p).await?;
        }
        self.meta().link_blob(&target.name, digest, size, None).await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_from_a_second_up_to_five_minutes() {
        let waits: Vec<i64> = (1..=12).map(backoff_ms).collect();
        assert_eq!(&waits[..4], &[1_000, 2_000, 4_000, 8_000]);
        assert!(waits.windows(2).all(|w| w[1] >= w[0]));
        assert_eq!(waits[11], MAX_BACKOFF_MS);
        assert_eq!(backoff_ms(0), 1_000);
        assert_eq!(backoff_ms(u32::MAX), MAX_BACKOFF_MS);
    }
}
