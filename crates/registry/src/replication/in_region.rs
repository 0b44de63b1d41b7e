//! Replication into another account of this deployment's region: done in-process, the
//! blobs linked (never copied), each manifest stored under the destination's rules.

use berth_meta::ReplicationJob;
use berth_oci::Digest;

use super::{Failure, failure};
use crate::Registry;
use crate::repositories::repository_key;

impl Registry {
    /// Copies the job's image into another account of this region: index children first,
    /// then the image with the tags it was pushed with, then its referrers. Returns the tags
    /// left out (see `store_replica`).
    pub(super) async fn replicate_in_region(
        &self,
        job: &ReplicationJob,
        tags: &[String],
    ) -> Result<Vec<String>, Failure> {
        let (source_account, name, digest) = self.job_image(job)?;
        let destination = repository_key(self.registry_id(), &job.target.registry_id, &name);
        let repository = self.replica_repository(&source_account, &destination).await?;
        let dropped = self.copy_image(&job.repository, &repository, &digest, tags).await?;
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
            let (parsed, content) = self.source_manifest(source, digest).await?;
            for child in &parsed.manifests {
                self.copy_image(source, target, child, &[]).await?;
            }
            for blob in &parsed.blobs {
                self.link_replica_blob(source, target, blob).await?;
            }
            self.store_replica(target, digest, parsed, content, tags).await
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
