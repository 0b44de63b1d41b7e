//! The scan queue's worker: scans are rows in the metadata store (`image_scans`, status
//! `PENDING`), so a queued scan survives a restart and several nodes share the queue. A node
//! claims at most `concurrency` scans at a time; at start it puts back the scans it had
//! claimed before it stopped, and any scan claimed by anyone over an hour ago (a node that
//! died). When the vulnerability database changes, images of `CONTINUOUS_SCAN` repositories
//! whose findings predate the change are queued again.

use std::sync::Arc;
use std::time::Duration;

use berth_rules::scanning::ScanType;
use tokio::sync::Semaphore;

use crate::{Registry, RegistryError};

/// A claim older than this is taken for a dead node's and released.
const STALE_CLAIM_MS: i64 = 3600 * 1000;

/// A scan still running after this is abandoned (FAILED), well before its claim goes stale.
const SCAN_TIMEOUT: Duration = Duration::from_secs(30 * 60);

pub struct Scanner {
    registry: Arc<Registry>,
    concurrency: usize,
    /// This node's name in claims; stable across restarts of the same data directory.
    worker: String,
    /// How often the queue and the database version are looked at without a wake-up.
    poll: Duration,
}

impl Scanner {
    pub fn new(registry: Arc<Registry>, concurrency: usize, worker: String) -> Scanner {
        Scanner { registry, concurrency: concurrency.max(1), worker, poll: Duration::from_secs(5) }
    }

    /// Runs forever, scanning what is queued.
    pub async fn run(self) {
        let meta = self.registry.meta().clone();
        let before = berth_meta::now_ms() - STALE_CLAIM_MS;
        match meta.release_scans(Some(&self.worker), 0).await {
            Ok(n) if n > 0 => tracing::info!(scans = n, "resuming scans interrupted by the last stop"),
            Ok(_) => {}
            Err(e) => tracing::error!(error = %e, "could not release this node's scans"),
        }
        if let Err(e) = meta.release_scans(None, before).await {
            tracing::error!(error = %e, "could not release stale scans");
        }
        let permits = Arc::new(Semaphore::new(self.concurrency));
        // Unknown at start, so the first look queues what a database change left stale.
        let mut seen_version: Option<i64> = None;
        loop {
            match meta.vulndb_state().await {
                Ok(state) if seen_version != Some(state.version) => {
                    match self.registry.rescan_continuous(state.version).await {
                        Ok(n) => {
                            if n > 0 {
                                tracing::info!(
                                    images = n,
                                    version = state.version,
                                    "rescanning after a database change"
                                );
                            }
                            seen_version = Some(state.version);
                        }
                        // Tried again at the next look.
                        Err(e) => tracing::error!(error = %e, "could not queue continuous rescans"),
                    }
                }
                Ok(_) => {}
                Err(e) => tracing::error!(error = %e, "could not read the vulnerability database state"),
            }
            // A node that died mid-scan leaves claims behind; anyone takes them over.
            if let Err(e) = meta.release_scans(None, berth_meta::now_ms() - STALE_CLAIM_MS).await {
                tracing::error!(error = %e, "could not release stale scans");
            }
            let free = permits.available_permits();
            if free > 0 {
                match meta.claim_scans(&self.worker, free as u32).await {
                    Ok(jobs) => {
                        for job in jobs {
                            let permit = permits.clone().acquire_owned().await.expect("semaphore never closes");
                            let registry = self.registry.clone();
                            tokio::spawn(async move {
                                let started = std::time::Instant::now();
                                let outcome = match tokio::time::timeout(SCAN_TIMEOUT, registry.run_scan(&job)).await {
                                    Ok(outcome) => outcome,
                                    Err(_) => registry.scan_timed_out(),
                                };
                                metrics::counter!("berth_scans_total", "status" => outcome.status.as_str())
                                    .increment(1);
                                tracing::info!(
                                    repository = %job.repository, digest = %job.digest, status = outcome.status.as_str(),
                                    seconds = started.elapsed().as_secs_f64(), "scan finished"
                                );
                                match registry.meta().finish_scan(&job, &outcome).await {
                                    Ok(true) => {}
                                    Ok(false) => {
                                        tracing::debug!(digest = %job.digest, "scan requested again meanwhile")
                                    }
                                    Err(e) => tracing::error!(error = %e, "could not record a scan"),
                                }
                                drop(permit);
                                registry.wake_scanner();
                            });
                        }
                    }
                    Err(e) => tracing::error!(error = %e, "could not claim scans"),
                }
            }
            tokio::select! {
                _ = self.registry.scan_wakeup().notified() => {}
                _ = tokio::time::sleep(self.poll) => {}
            }
        }
    }
}

impl Registry {
    /// Queues every image of a `CONTINUOUS_SCAN` repository whose complete scan is older than
    /// database `version`. Returns how many were queued.
    pub async fn rescan_continuous(&self, version: i64) -> Result<usize, RegistryError> {
        let config = self.registry_scanning().await?;
        if config.scan_type != ScanType::Enhanced || !config.rules.iter().any(|r| r.scan_frequency == "CONTINUOUS_SCAN")
        {
            return Ok(0);
        }
        let mut queued = 0;
        let mut last: Option<String> = None;
        loop {
            let page = self.meta().describe_repositories(last.as_deref(), 500).await?;
            let done = page.len() < 500;
            last = page.last().map(|r| r.name.clone());
            for repository in page {
                let public = crate::public::split_public_key(&repository.name).is_some();
                if public
                    || config.for_repository(&repository.name, repository.settings.scan_on_push).scan_frequency
                        != "CONTINUOUS_SCAN"
                {
                    continue;
                }
                queued += self.meta().request_rescans(&repository.name, version).await? as usize;
            }
            if done {
                break;
            }
        }
        if queued > 0 {
            self.wake_scanner();
        }
        Ok(queued)
    }
}
