//! The work `berth serve` does on its own: GC and lifecycle runs on their intervals (on the one
//! node holding the scheduler lease), and reloading the master keyring on `SIGHUP`.

use std::sync::Arc;

use berth_registry::{GcPolicy, Registry};

use crate::admin_socket;

/// `SIGHUP` re-reads the master keyring file (a version added for a rotation).
/// The handler is installed before this returns (not inside the task): a `SIGHUP` that arrives
/// once the node answers must never meet the default action, which ends the process.
pub(crate) fn spawn_keyring_reload_on_sighup(admin: admin_socket::Admin) {
    let Ok(mut hup) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) else {
        tracing::warn!("no SIGHUP handler: reload the keyring through `berth admin rotate-master-key`");
        return;
    };
    tokio::spawn(async move {
        while hup.recv().await.is_some() {
            if let Err(e) = admin.reload_keyring() {
                tracing::error!(error = %e, "SIGHUP: the master keyring was not reloaded");
            }
        }
    });
}

/// Collects garbage every `interval`, online, beside the pushes and pulls it serves.
/// The lease that says which node runs the scheduled work.
pub(crate) const SCHEDULER_LEASE: &str = "scheduler";

/// Scheduled work (GC, lifecycle) runs on one node at a time: the one holding the scheduler
/// lease, renewed every third of its lifetime. Returns the flag that says whether this node
/// holds it now.
pub(crate) fn spawn_scheduler_lease(
    registry: Arc<Registry>,
    node: String,
    ttl: std::time::Duration,
) -> Arc<std::sync::atomic::AtomicBool> {
    use std::sync::atomic::Ordering;
    let held = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flag = held.clone();
    tokio::spawn(async move {
        loop {
            let holds = match registry.try_lease(SCHEDULER_LEASE, &node, ttl).await {
                Ok(h) => h,
                Err(e) => {
                    // Unsure whether the lease is still ours: stop the scheduled work until it is.
                    tracing::warn!(error = %e, "could not renew the scheduler lease");
                    false
                }
            };
            match (flag.swap(holds, Ordering::SeqCst), holds) {
                (false, true) => tracing::info!(node, "this node runs the scheduled work (GC, lifecycle)"),
                (true, false) => tracing::warn!(node, "this node no longer runs the scheduled work"),
                _ => {}
            }
            tokio::time::sleep(ttl / 3).await;
        }
    });
    held
}

pub(crate) fn spawn_gc_schedule(
    registry: Arc<Registry>,
    interval: std::time::Duration,
    policy: GcPolicy,
    scheduler: Arc<std::sync::atomic::AtomicBool>,
) {
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(interval).await;
            if !scheduler.load(std::sync::atomic::Ordering::SeqCst) {
                continue;
            }
            match registry.gc(berth_meta::now_ms(), policy, false).await {
                Ok(r) => {
                    tracing::info!(
                        blobs_removed = r.blobs_removed,
                        bytes_freed = r.bytes_freed,
                        "garbage collection run"
                    );
                    metrics::counter!("berth_gc_runs_total").increment(1);
                    metrics::counter!("berth_gc_blobs_removed_total").increment(r.blobs_removed + r.unrecorded_removed);
                    metrics::counter!("berth_gc_bytes_freed_total").increment(r.bytes_freed);
                    metrics::counter!("berth_gc_uploads_removed_total").increment(r.uploads_removed);
                }
                Err(e) => tracing::error!(error = %e, "garbage collection failed"),
            }
        }
    });
}

/// Applies every repository's lifecycle policy shortly after start and then every `interval`.
pub(crate) fn spawn_lifecycle_schedule(
    registry: Arc<Registry>,
    interval: std::time::Duration,
    scheduler: Arc<std::sync::atomic::AtomicBool>,
) {
    tokio::spawn(async move {
        tokio::time::sleep(std::time::Duration::from_secs(60).min(interval)).await;
        loop {
            if !scheduler.load(std::sync::atomic::Ordering::SeqCst) {
                // Look again soon: this node may take the lease over.
                tokio::time::sleep(interval.min(std::time::Duration::from_secs(10))).await;
                continue;
            }
            match registry.run_all_lifecycles(berth_meta::now_ms(), false).await {
                Ok(runs) => {
                    let expired: usize = runs.iter().map(|r| r.expired.len()).sum();
                    let archived: usize = runs.iter().map(|r| r.archived.len()).sum();
                    metrics::counter!("berth_lifecycle_runs_total").increment(1);
                    metrics::counter!("berth_lifecycle_images_expired_total").increment(expired as u64);
                    metrics::counter!("berth_lifecycle_images_archived_total").increment(archived as u64);
                    tracing::info!(repositories = runs.len(), expired, archived, "lifecycle run");
                }
                Err(e) => tracing::error!(error = %e, "lifecycle run failed"),
            }
            tokio::time::sleep(interval).await;
        }
    });
}
