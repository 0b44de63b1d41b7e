//! Registry replication: the configuration each account's registry keeps
//! (`PutReplicationConfiguration`, `DescribeRegistry`), checked against what this deployment
//! can reach; which destinations a push is queued for; and the worker that runs the queue.
//! A destination in this deployment's own region is another account it serves: the copy is
//! made in-process (`in_region`: blobs linked, never sent). A destination in another region is
//! a peer deployment (`peers`): the image is sent to its replication route (`send`), where
//! `receive` takes it in. Either way the destination's rules decide what arrives
//! (`destination`).

pub mod backfill;
mod destination;
mod in_region;
pub mod peers;
pub mod receive;
mod send;

use std::sync::Arc;
use std::time::Duration;

use berth_meta::{ImageReplication, ReplicationAction, ReplicationJob, ReplicationOutcome, ReplicationTarget};
use berth_oci::Digest;
use berth_rules::replication::{Destination, ReplicationConfiguration};

use crate::repositories::split_repository_key;
use crate::{Registry, RegistryError};

/// Berth's failure codes of a replication (ECR names none; ARCHITECTURE.md lists them).
pub mod failure {
    /// The destination registry's policy does not allow the source account
    /// `ecr:ReplicateImage` on the repository.
    pub const NOT_AUTHORIZED: &str = "REPLICATION_NOT_AUTHORIZED";
    /// The destination repository is missing and its policy does not allow the source account
    /// `ecr:CreateRepository`.
    pub const REPOSITORY_CREATE_DENIED: &str = "REPOSITORY_CREATE_DENIED";
    /// The destination cannot be reached: no peer with an endpoint for its region, or the
    /// peer does not answer (retried).
    pub const DESTINATION_UNREACHABLE: &str = "DESTINATION_UNREACHABLE";
    /// The peer refused this deployment's credential (retried: the peer may be set up again).
    pub const PEER_REFUSED: &str = "PEER_REFUSED";
    /// The destination deployment serves no account of the destination's registry id.
    pub const DESTINATION_REGISTRY_NOT_FOUND: &str = "DESTINATION_REGISTRY_NOT_FOUND";
    /// A propagated delete found the replica listed by an index at the destination: it stays.
    pub const IMAGE_REFERENCED_BY_INDEX: &str = "IMAGE_REFERENCED_BY_INDEX";
    /// What arrived does not match its digest (retried from the start of the blob).
    pub const DIGEST_MISMATCH: &str = "DIGEST_MISMATCH";
    /// The destination no longer holds the upload a resumed transfer named: started anew.
    pub const UPLOAD_UNKNOWN: &str = "UPLOAD_UNKNOWN";
    /// The destination repository's KMS key refused (disabled, pending deletion, no grant).
    pub const KMS_KEY_UNAVAILABLE: &str = "KMS_KEY_UNAVAILABLE";
    /// The image is gone from the source repository since it was pushed.
    pub const SOURCE_IMAGE_NOT_FOUND: &str = "SOURCE_IMAGE_NOT_FOUND";
    /// Anything else (the metadata store failing, …): retried.
    pub const INTERNAL_ERROR: &str = "INTERNAL_ERROR";

    /// Every code, as a peer's answer names it.
    pub const ALL: [&str; 11] = [
        NOT_AUTHORIZED,
        IMAGE_REFERENCED_BY_INDEX,
        REPOSITORY_CREATE_DENIED,
        DESTINATION_UNREACHABLE,
        PEER_REFUSED,
        DESTINATION_REGISTRY_NOT_FOUND,
        DIGEST_MISMATCH,
        UPLOAD_UNKNOWN,
        KMS_KEY_UNAVAILABLE,
        SOURCE_IMAGE_NOT_FOUND,
        INTERNAL_ERROR,
    ];

    /// The constant a peer's answer names (`INTERNAL_ERROR` for a code this build does not know).
    pub fn known(code: &str) -> &'static str {
        ALL.iter().find(|c| **c == code).copied().unwrap_or(INTERNAL_ERROR)
    }
}

/// Attempts before a job that keeps failing in a way that may pass is `FAILED`, and the
/// backoff between them: 1 s doubling up to 5 minutes (about 40 minutes in all).
const MAX_ATTEMPTS: u32 = 12;
const FIRST_BACKOFF_MS: i64 = 1_000;
const MAX_BACKOFF_MS: i64 = 300_000;
/// A claim not renewed for this long is a dead node's: released for another node to run. A
/// live node renews its claims at every look at the queue (at most `poll` apart).
const STALE_CLAIM_MS: i64 = 30 * 1000;
/// How long after it is queued a propagated removal runs if the source never says it has
/// removed the image or tag (see `queue_replication_removal`).
const REMOVAL_HORIZON_MS: i64 = 30_000;
/// Jobs one node runs at once.
const CONCURRENCY: usize = 4;

/// The wait before attempt `attempts + 1`.
fn backoff_ms(attempts: u32) -> i64 {
    FIRST_BACKOFF_MS.saturating_mul(1 << attempts.saturating_sub(1).min(20)).min(MAX_BACKOFF_MS)
}

/// Why one run of a job (or one step of it at a peer) did not finish it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// For good: the job is `FAILED` with this code.
    Final(&'static str),
    /// Perhaps for now: tried again after a backoff.
    Retry(&'static str),
}

impl Failure {
    pub fn code(self) -> &'static str {
        match self {
            Failure::Final(c) | Failure::Retry(c) => c,
        }
    }

    pub fn retried(self) -> bool {
        matches!(self, Failure::Retry(_))
    }
}

impl From<RegistryError> for Failure {
    fn from(e: RegistryError) -> Self {
        match e {
            RegistryError::Kms(_) => Failure::Final(failure::KMS_KEY_UNAVAILABLE),
            RegistryError::UploadDigestMismatch { .. }
            | RegistryError::SizeMismatch { .. }
            | RegistryError::ManifestDigestMismatch { .. } => Failure::Retry(failure::DIGEST_MISMATCH),
            RegistryError::UploadNotFound { .. } => Failure::Retry(failure::UPLOAD_UNKNOWN),
            other => {
                tracing::warn!(error = %other, "replication attempt failed");
                Failure::Retry(failure::INTERNAL_ERROR)
            }
        }
    }
}

/// A job in `run_replication_queue`'s running set for as long as its task lives (dropped on
/// its end, a panic included).
struct RunningJob {
    running: Arc<std::sync::Mutex<std::collections::HashMap<u64, ReplicationJob>>>,
    run: u64,
}

impl Drop for RunningJob {
    fn drop(&mut self) {
        if let Ok(mut running) = self.running.lock() {
            running.remove(&self.run);
        }
    }
}

/// What the replication machinery keeps on one node: the worker's wakeup, the peers' HTTP
/// clients, transfers to resume, and the bandwidth limit.
#[derive(Default)]
pub(crate) struct ReplicationState {
    pub(crate) wakeup: tokio::sync::Notify,
    pub(crate) peer_clients: std::sync::Mutex<std::collections::HashMap<send::ClientKey, reqwest::Client>>,
    /// Uploads a peer holds part of, by (region, destination repository key, digest): a run
    /// after an interrupted one goes on from where the peer's upload stands.
    pub(crate) resumable: std::sync::Mutex<std::collections::HashMap<(String, String, String), String>>,
    pub(crate) pacer: Option<std::sync::Arc<send::Pacer>>,
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
    /// `PutReplicationConfiguration` does (which cannot name Berth's extensions: a rule the
    /// configuration keeps, with the same destinations and filters, keeps them).
    pub async fn put_replication_configuration(
        &self,
        account: &str,
        config: &ReplicationConfiguration,
    ) -> Result<(), RegistryError> {
        let previous = self.replication_configuration(account).await?;
        self.store_replication_configuration(account, &config.keeping_extensions_of(&previous)).await
    }

    /// Sets Berth's extensions of rule `index` (from 0) of `account`'s configuration: the
    /// exact repository names it covers, its tag filters, and whether it propagates deletes
    /// and tag removals (all replaced). Returns the configuration with its extensions.
    pub async fn put_replication_rule_extensions(
        &self,
        account: &str,
        index: usize,
        repository_names: Vec<String>,
        tag_filters: Vec<String>,
        propagate_deletes: bool,
    ) -> Result<ReplicationConfiguration, RegistryError> {
        let mut config = self.replication_configuration(account).await?;
        let count = config.rules.len();
        let rule = config.rules.get_mut(index).ok_or_else(|| {
            RegistryError::InvalidParameter(format!(
                "Invalid parameter at 'ruleIndex' failed to satisfy constraint: 'the configuration has {count} rules \
                 (ruleIndex counts from 0)'"
            ))
        })?;
        rule.repository_names = repository_names;
        rule.tag_filters = tag_filters;
        rule.propagate_deletes = propagate_deletes;
        self.store_replication_configuration(account, &config).await?;
        Ok(config)
    }

    /// Checks `config` against what this deployment can reach, then stores it. A destination
    /// in this deployment's region must be an account it serves (a copy there is made
    /// in-process); another region must be a replication peer's that this side sends to
    /// (`berth admin add-replication-peer`).
    async fn store_replication_configuration(
        &self,
        account: &str,
        config: &ReplicationConfiguration,
    ) -> Result<(), RegistryError> {
        let region = self.region().to_string();
        let source = Destination { region: region.clone(), registry_id: account.to_string() };
        let peers: Vec<String> = self
            .meta()
            .replication_peers()
            .await?
            .into_iter()
            .filter(|p| p.endpoint.is_some())
            .map(|p| p.region)
            .collect();
        config
            .validate(&source, |r| r == region || peers.iter().any(|p| p == r))
            .map_err(RegistryError::InvalidParameter)?;
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

    /// The replications that ended (one event per `COMPLETE` or `FAILED` outcome), oldest
    /// first, with ids above `after`; of one repository (a key) if given.
    pub async fn replication_events(
        &self,
        repository: Option<&str>,
        after: i64,
        limit: u32,
    ) -> Result<Vec<berth_meta::ReplicationEvent>, RegistryError> {
        Ok(self.meta().replication_events(repository, after, limit).await?)
    }

    /// The replication queue per destination: jobs waiting, running, complete and failed.
    pub async fn replication_queue(
        &self,
    ) -> Result<Vec<(ReplicationTarget, berth_meta::ReplicationQueueCounts)>, RegistryError> {
        Ok(self.meta().replication_queue().await?)
    }

    /// Where a push to the repository `name` (a store key) with `tags` is replicated: the
    /// destinations of its account's rules that cover the repository's name (and take one of
    /// the tags, for a rule with tag filters).
    pub(crate) async fn replication_targets(
        &self,
        name: &str,
        tags: &[String],
    ) -> Result<Vec<ReplicationTarget>, RegistryError> {
        let (account, repository) = split_repository_key(self.registry_id(), name);
        let config = self.replication_configuration(account).await?;
        Ok(config
            .destinations_for(repository, tags)
            .into_iter()
            .map(|d| ReplicationTarget { region: d.region, registry_id: d.registry_id })
            .collect())
    }

    /// Runs the replication queue on this node, as `worker`, until the process ends: its own
    /// claims left by the last run and any dead node's stale claims are released first (and
    /// the stale ones again at every look, after this node renews its own), then due jobs are
    /// claimed and run,
    /// `CONCURRENCY` at once, whenever a push wakes the worker or every `poll`.
    pub async fn run_replication_queue(self: Arc<Self>, worker: String, poll: Duration) {
        let meta = self.meta().clone();
        match meta.release_replications(Some(&worker), i64::MAX).await {
            Ok(n) if n > 0 => tracing::info!(jobs = n, "resuming replications interrupted by the last stop"),
            Ok(_) => {}
            Err(e) => tracing::error!(error = %e, "could not release this node's replications"),
        }
        let permits = Arc::new(tokio::sync::Semaphore::new(CONCURRENCY));
        // The jobs running on this node, by their run's number: only their claims are renewed
        // (a run that ended without recording, or panicked, leaves its claim to go stale).
        let running: Arc<std::sync::Mutex<std::collections::HashMap<u64, ReplicationJob>>> = Default::default();
        let mut runs = 0u64;
        loop {
            let held: Vec<ReplicationJob> = running.lock().expect("running jobs").values().cloned().collect();
            if let Err(e) = meta.renew_replication_claims(&worker, &held, berth_meta::now_ms()).await {
                tracing::error!(error = %e, "could not renew this node's replications");
            }
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
                            runs += 1;
                            running.lock().expect("running jobs").insert(runs, job.clone());
                            let run = RunningJob { running: running.clone(), run: runs };
                            tokio::spawn(async move {
                                let _running = run;
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
                                registry.replication.wakeup.notify_one();
                            });
                        }
                    }
                    Err(e) => tracing::error!(error = %e, "could not claim replications"),
                }
            }
            tokio::select! {
                _ = self.replication.wakeup.notified() => {}
                _ = tokio::time::sleep(poll) => {}
            }
        }
    }

    /// Queues, where rules propagate deletes (a Berth extension), the removal of the image
    /// `digest` of the repository `name` (a key), or of its `tag`: called just before the
    /// source removes it, then `replication_removal_done` once it did (the job removes nothing
    /// the source still has when it runs; if the source never says it is done — it crashed,
    /// or the removal was refused — the job runs after `REMOVAL_HORIZON_MS` and checks).
    pub(crate) async fn queue_replication_removal(
        &self,
        name: &str,
        digest: &Digest,
        tag: Option<&str>,
    ) -> Result<(), RegistryError> {
        let (account, repository) = split_repository_key(self.registry_id(), name);
        let targets: Vec<ReplicationTarget> = self
            .replication_configuration(account)
            .await?
            .removal_destinations(repository)
            .into_iter()
            .map(|d| ReplicationTarget { region: d.region, registry_id: d.registry_id })
            .collect();
        if !targets.is_empty() {
            let due_at = berth_meta::now_ms() + REMOVAL_HORIZON_MS;
            self.meta().queue_replication_removal(name, digest.as_str(), tag, &targets, due_at).await?;
        }
        Ok(())
    }

    /// The source has removed what `queue_replication_removal` queued: its jobs are due now.
    pub(crate) async fn replication_removal_done(&self, name: &str, digest: &Digest) -> Result<(), RegistryError> {
        if self.meta().hasten_replications(name, digest.as_str(), berth_meta::now_ms()).await? > 0 {
            self.replication.wakeup.notify_one();
        }
        Ok(())
    }

    /// One run of a claimed job: its outcome, a retry after a backoff for what may pass.
    pub(crate) async fn replicate(&self, job: &ReplicationJob) -> ReplicationOutcome {
        let run = match job.action {
            ReplicationAction::Replicate => self.send_replica(job).await,
            ReplicationAction::Delete | ReplicationAction::Untag => self.propagate_removal(job).await,
        };
        match run {
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

    /// Sends the job's image with the tags the rules take: in-process into another account of
    /// this region, else to the peer of the job's region. Returns the tags left out there.
    async fn send_replica(&self, job: &ReplicationJob) -> Result<Vec<String>, Failure> {
        let tags = self.tags_to_send(job).await?;
        if job.target.region == self.region() {
            self.replicate_in_region(job, &tags).await
        } else {
            self.replicate_to_peer(job, &tags).await
        }
    }

    /// A manifest of the source repository as pushed (opened, if sealed) and parsed: what both
    /// ways of replicating send.
    async fn source_manifest(
        &self,
        source: &str,
        digest: &Digest,
    ) -> Result<(berth_oci::manifest::ParsedManifest, Vec<u8>), Failure> {
        let Some(stored) = self.meta().manifest(source, digest).await? else {
            return Err(Failure::Final(failure::SOURCE_IMAGE_NOT_FOUND));
        };
        let manifest = self.at_rest().open_manifest(source, stored).await?;
        let parsed = berth_oci::manifest::parse_manifest(Some(manifest.media_type.as_str()), &manifest.content)
            .map_err(|e| RegistryError::Internal(format!("stored manifest {digest} of {source}: {e}")))?;
        Ok((parsed, manifest.content))
    }

    /// The tags the job's image arrives with: those the rules sending it to the destination
    /// take (tag filters, a Berth extension), or all it was pushed with if no rule does now.
    async fn tags_to_send(&self, job: &ReplicationJob) -> Result<Vec<String>, Failure> {
        let (account, repository) = split_repository_key(self.registry_id(), &job.repository);
        let config = self.replication_configuration(account).await?;
        let destination =
            Destination { region: job.target.region.clone(), registry_id: job.target.registry_id.clone() };
        let covered = config.rules.iter().any(|r| r.covers(repository) && r.destinations.contains(&destination));
        Ok(if covered { config.tags_for(repository, &destination, &job.tags) } else { job.tags.clone() })
    }

    /// A delete or tag removal at the source, done at the destination: only what the source
    /// no longer has (the job was queued just before the source removed it). A delete the
    /// source did not do after all (refused: an index lists the image) may have replaced a
    /// job still to send the image: the image is sent again, as it is now.
    async fn propagate_removal(&self, job: &ReplicationJob) -> Result<Vec<String>, Failure> {
        let (source_account, name, digest) = self.job_image(job)?;
        let tags = match job.action {
            ReplicationAction::Delete => {
                if let Some(image) = self.meta().image(&job.repository, digest.as_str()).await? {
                    let again =
                        ReplicationJob { action: ReplicationAction::Replicate, tags: image.tags, ..job.clone() };
                    return self.send_replica(&again).await;
                }
                None
            }
            _ => {
                let mut gone = Vec::new();
                for t in &job.tags {
                    if self.meta().resolve_tag(&job.repository, t).await?.as_ref() != Some(&digest) {
                        gone.push(t.clone());
                    }
                }
                if gone.is_empty() {
                    return Ok(Vec::new());
                }
                Some(gone)
            }
        };
        if job.target.region == self.region() {
            let key = crate::repositories::repository_key(self.registry_id(), &job.target.registry_id, &name);
            self.remove_replica(&source_account, &key, &digest, tags.as_deref()).await?;
        } else {
            self.remove_at_peer(job, &source_account, &name, &digest, tags.as_deref()).await?;
        }
        Ok(Vec::new())
    }

    /// The image of a job, and the account it was pushed to with the repository's name there.
    fn job_image(&self, job: &ReplicationJob) -> Result<(String, String, Digest), Failure> {
        let (source_account, name) = split_repository_key(self.registry_id(), &job.repository);
        let digest = Digest::parse(&job.digest).map_err(|_| Failure::Final(failure::SOURCE_IMAGE_NOT_FOUND))?;
        Ok((source_account.to_string(), name.to_string(), digest))
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

    #[test]
    fn a_peers_failure_code_maps_to_this_builds_constant() {
        for code in failure::ALL {
            assert_eq!(failure::known(code), code);
        }
        assert_eq!(failure::known("SOMETHING_NEW"), failure::INTERNAL_ERROR);
    }
}
