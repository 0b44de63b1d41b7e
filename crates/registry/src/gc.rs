//! Online garbage collection: reclaims the storage of blobs no remaining manifest references,
//! of blob files nothing records, and of abandoned upload sessions, while pushes and pulls go on.
//!
//! Why it never deletes what a push relies on (the argument is in ARCHITECTURE.md too):
//! - A blob is only reachable through a repository link. Links are removed only when no
//!   manifest of their repository references the blob *and* the link is older than the grace
//!   period; a push links each blob when its upload completes (re-linking refreshes the time),
//!   so a push has the grace period between uploading a blob and putting its manifest. A
//!   manifest PUT checks its blobs' links inside its own transaction, so it either sees the link
//!   (and its reference then protects the blob) or fails with MANIFEST_BLOB_UNKNOWN: an
//!   acknowledged push never references a collected blob.
//! - A blob's record is removed (in a transaction) only once it has no link at all; its bytes
//!   are deleted afterwards, under the per-digest commit lock that an upload's final step
//!   (publish the file, then record and link it) also holds — in this process, and across
//!   nodes in the metadata store (`lock_blob_bytes`) — and only if the record is still
//!   absent. So a concurrent upload of the same content either finishes first (the record is
//!   back, the bytes stay) or starts after (it publishes the file again).
//! - A sealed blob's data keys are recorded before its bytes are published and deleted after
//!   them, under the same locks: stored bytes always have their keys.

use std::collections::HashSet;

use berth_oci::Digest;
use futures_util::StreamExt;

use crate::{Registry, RegistryError};

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct GcReport {
    pub dry_run: bool,
    pub links_removed: u64,
    pub blobs_removed: u64,
    pub bytes_freed: u64,
    /// Stored blob files no record names (left by a crash between publishing and recording).
    pub unrecorded_removed: u64,
    pub uploads_removed: u64,
}

/// Blobs deleted per batch: one database query and one round of locks per batch.
const DELETE_BATCH: usize = 256;

/// How old things must be before a collection may take them.
#[derive(Debug, Clone, Copy)]
pub struct GcPolicy {
    /// Links and blobs younger than this are kept (the window a push has between a blob upload
    /// and its manifest).
    pub grace_ms: i64,
    /// Upload sessions older than this are abandoned.
    pub upload_age_ms: i64,
}

impl Registry {
    pub async fn gc(&self, now_ms: i64, policy: GcPolicy, dry_run: bool) -> Result<GcReport, RegistryError> {
        let cutoff = now_ms - policy.grace_ms;
        let mut report = GcReport { dry_run, ..Default::default() };
        if dry_run {
            let (links, blobs) = self.meta().gc_preview(cutoff).await?;
            report.links_removed = links;
            report.blobs_removed = blobs.len() as u64;
            report.bytes_freed = blobs.iter().map(|(_, s)| *s as u64).sum();
            return Ok(report);
        }
        report.links_removed = self.meta().gc_unlink_unreferenced(cutoff).await?;
        let removed: Vec<(Digest, i64)> = self
            .meta()
            .gc_remove_unlinked_blobs(cutoff)
            .await?
            .into_iter()
            .filter_map(|(d, size)| Digest::parse(&d).ok().map(|d| (d, size)))
            .collect();
        for batch in removed.chunks(DELETE_BATCH) {
            let (count, bytes) = self.delete_batch_if_unrecorded(batch).await?;
            report.blobs_removed += count;
            report.bytes_freed += bytes;
        }
        let recorded: HashSet<String> = self.meta().all_blobs().await?.into_iter().map(|(d, _)| d).collect();
        let mut unrecorded: Vec<(Digest, i64)> = Vec::new();
        let mut stored = self.blobs().list();
        while let Some(d) = stored.next().await {
            let d = d?;
            if !recorded.contains(d.as_str()) {
                unrecorded.push((d, 0));
            }
        }
        // Data keys whose blob has no record (a sealed commit interrupted before its record,
        // whether or not its bytes were published), removed the same way.
        let listed: HashSet<String> = unrecorded.iter().map(|(d, _)| d.to_string()).collect();
        for d in self.meta().unrecorded_blob_keys().await? {
            if !listed.contains(&d)
                && let Ok(d) = Digest::parse(&d)
            {
                unrecorded.push((d, 0));
            }
        }
        for batch in unrecorded.chunks(DELETE_BATCH) {
            report.unrecorded_removed += self.delete_batch_if_unrecorded(batch).await?.0;
        }
        let upload_cutoff = now_ms - policy.upload_age_ms;
        for id in self.meta().stale_uploads(upload_cutoff).await? {
            self.drop_upload(&id).await;
            report.uploads_removed += 1;
        }
        // Upload files with no session record (a crash between creating one and the other).
        let age_s = (policy.upload_age_ms / 1000).max(0) as u64;
        let mut sessions = self.blobs().upload_list();
        while let Some(session) = sessions.next().await {
            let (id, age) = session?;
            if age >= age_s && self.meta().upload(&id).await?.is_none() {
                self.drop_upload(&id).await;
                report.uploads_removed += 1;
            }
        }
        tracing::info!(?report, "garbage collection");
        Ok(report)
    }

    /// Deletes the bytes of a batch of blobs whose records GC removed, under their commit locks
    /// (taken in digest order, so two collections cannot deadlock), except those recorded
    /// again meanwhile: one query for the batch, the deletions concurrently. Returns how many
    /// blobs and bytes were freed.
    async fn delete_batch_if_unrecorded(&self, batch: &[(Digest, i64)]) -> Result<(u64, u64), RegistryError> {
        use futures_util::{StreamExt, TryStreamExt};
        let mut sorted: Vec<&(Digest, i64)> = batch.iter().collect();
        sorted.sort_by(|a, b| a.0.as_str().cmp(b.0.as_str()));
        sorted.dedup_by(|a, b| a.0 == b.0);
        let locks: Vec<_> = sorted.iter().map(|(d, _)| self.commit_lock(d)).collect();
        let mut held = Vec::with_capacity(locks.len());
        for lock in &locks {
            held.push(lock.lock().await);
        }
        let names: Vec<String> = sorted.iter().map(|(d, _)| d.to_string()).collect();
        let across_nodes = self.meta().lock_blob_bytes(&names).await?;
        let recorded: HashSet<String> = self.meta().blobs_recorded(&names).await?.into_iter().collect();
        let doomed: Vec<&(Digest, i64)> = sorted.into_iter().filter(|(d, _)| !recorded.contains(d.as_str())).collect();
        let count = doomed.len() as u64;
        let bytes: u64 = doomed.iter().map(|(_, s)| *s as u64).sum();
        let deletions: Vec<_> = doomed
            .iter()
            .map(|(d, _)| {
                let (store, digest) = (self.blobs().clone(), d.clone());
                async move { store.delete(&digest).await }
            })
            .collect();
        futures_util::stream::iter(deletions).buffer_unordered(16).try_collect::<Vec<()>>().await?;
        // A sealed blob's keys go with its bytes (after them: bytes are never without keys).
        let doomed_names: Vec<String> = doomed.iter().map(|(d, _)| d.to_string()).collect();
        self.meta().delete_blob_keys(&doomed_names).await?;
        drop(across_nodes);
        drop(held);
        Ok((count, bytes))
    }
}
