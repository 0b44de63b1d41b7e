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
//!   (publish the file, then record and link it) also holds, and only if the record is still
//!   absent. So a concurrent upload of the same content either finishes first (the record is
//!   back, the bytes stay) or starts after (it publishes the file again).

use std::collections::HashSet;

use berth_oci::Digest;

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
        for (digest, size) in self.meta().gc_remove_unlinked_blobs(cutoff).await? {
            let Ok(digest) = Digest::parse(&digest) else { continue };
            if self.delete_blob_bytes_if_unrecorded(&digest).await? {
                report.blobs_removed += 1;
                report.bytes_freed += size as u64;
            }
        }
        let recorded: HashSet<String> = self.meta().all_blobs().await?.into_iter().map(|(d, _)| d).collect();
        for digest in self.blobs().list().await? {
            if !recorded.contains(digest.as_str()) && self.delete_blob_bytes_if_unrecorded(&digest).await? {
                report.unrecorded_removed += 1;
            }
        }
        let upload_cutoff = now_ms - policy.upload_age_ms;
        for id in self.meta().stale_uploads(upload_cutoff).await? {
            self.drop_upload(&id).await;
            report.uploads_removed += 1;
        }
        // Upload files with no session record (a crash between creating one and the other).
        let age_s = (policy.upload_age_ms / 1000).max(0) as u64;
        for (id, age) in self.blobs().upload_list().await? {
            if age >= age_s && self.meta().upload(&id).await?.is_none() {
                self.drop_upload(&id).await;
                report.uploads_removed += 1;
            }
        }
        tracing::info!(?report, "garbage collection");
        Ok(report)
    }

    /// Deletes a blob's bytes under its commit lock, unless it has been recorded again.
    async fn delete_blob_bytes_if_unrecorded(&self, digest: &Digest) -> Result<bool, RegistryError> {
        let lock = self.commit_lock(digest);
        let _held = lock.lock().await;
        if self.meta().blob_recorded(digest.as_str()).await? {
            return Ok(false);
        }
        self.blobs().delete(digest).await?;
        Ok(true)
    }
}
