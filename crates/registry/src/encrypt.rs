//! `berth encrypt`: seals what was stored before Berth sealed blobs and manifests (ARCHITECTURE.md,
//! "Encryption at rest"). Run by the server (the admin channel), so it takes the same per-digest
//! commit locks as uploads and GC. For each recorded blob stored as sent: its plaintext is read
//! back through its hash into a new upload session, sealed under new data keys as it streams,
//! and — only if it hashes to its digest and numbers its recorded size — its keys are recorded
//! (wrapped under the key of every repository that links it) and the sealed bytes put in place
//! of the plaintext atomically. Every manifest stored as sent is sealed in place in the
//! metadata store. Then the freed space of the metadata store is erased. Resumable: a run
//! stopped at any point leaves each blob either as sent, or with keys and its plaintext still
//! stored (the next run seals it anew), or sealed.

use std::sync::{Arc, Mutex};

use berth_envelope::{BlobKeys, Envelope};
use berth_oci::Digest;
use berth_store::StoreError;

use crate::RegistryError;

/// What a run did, and what it found wrong (left as it was).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct EncryptReport {
    pub blobs_checked: u64,
    pub blobs_sealed: u64,
    pub bytes_sealed: u64,
    /// Sealed before this run, or left to a store that encrypts them itself.
    pub blobs_already_protected: u64,
    pub manifests_sealed: u64,
    pub problems: Vec<String>,
}

/// What became of one blob.
enum Outcome {
    Sealed,
    AlreadyProtected,
    /// Deleted meanwhile (GC), or linked by no repository.
    Gone,
    Problem(String),
}

const MANIFEST_PAGE: u32 = 200;

impl crate::Registry {
    /// Seals every blob and manifest stored as sent, pausing `pause` after each blob it seals
    /// (to spare a busy store); `progress` hears of the report after each blob and each page of
    /// manifests.
    pub async fn encrypt_at_rest(
        &self,
        pause: std::time::Duration,
        progress: &(dyn Fn(&EncryptReport) + Send + Sync),
    ) -> Result<EncryptReport, RegistryError> {
        let mut report = EncryptReport::default();
        let mut recorded = self.meta().all_blobs().await?;
        recorded.sort();
        for (digest, size) in recorded {
            report.blobs_checked += 1;
            let Ok(d) = Digest::parse(&digest) else {
                report.problems.push(format!("blob {digest}: an invalid digest"));
                continue;
            };
            match self.seal_stored_blob(&d, size as u64).await? {
                Outcome::Sealed => {
                    report.blobs_sealed += 1;
                    report.bytes_sealed += size as u64;
                    progress(&report);
                    tokio::time::sleep(pause).await;
                    continue;
                }
                Outcome::AlreadyProtected => report.blobs_already_protected += 1,
                Outcome::Gone => {}
                Outcome::Problem(why) => report.problems.push(format!("blob {digest}: {why}")),
            }
            progress(&report);
        }
        let at_rest = self.at_rest();
        let mut after: Option<(String, String)> = None;
        loop {
            let page = self
                .meta()
                .unsealed_manifests(after.as_ref().map(|(r, d)| (r.as_str(), d.as_str())), MANIFEST_PAGE)
                .await?;
            let Some(last) = page.last() else { break };
            after = Some((last.repository.clone(), last.digest.clone()));
            for m in page {
                let (Some(repo), Ok(digest)) = (self.meta().repository(&m.repository).await?, Digest::parse(&m.digest))
                else {
                    continue;
                };
                let sealed = at_rest.seal_manifest(&repo, &digest, m.content, m.annotations).await?;
                let Some(keys) = &sealed.keys else { continue };
                if self
                    .meta()
                    .seal_stored_manifest(
                        &m.repository,
                        &m.digest,
                        &sealed.content,
                        sealed.annotations.as_deref(),
                        keys,
                    )
                    .await?
                {
                    report.manifests_sealed += 1;
                }
            }
            progress(&report);
        }
        // The plaintext the metadata store held (manifests, staged chunks) leaves its files.
        self.meta().erase_freed_space().await?;
        Ok(report)
    }

    /// Seals one recorded blob stored as sent, under its commit locks.
    async fn seal_stored_blob(&self, digest: &Digest, size: u64) -> Result<Outcome, RegistryError> {
        let at_rest = self.at_rest();
        // One wrapping per key of a repository that links it; as many layers as the most of them.
        let protections = at_rest.linking_protections(digest, None).await?;
        if protections.is_empty() {
            return Ok(Outcome::AlreadyProtected);
        }
        let lock = self.commit_lock(digest);
        let _committing = lock.lock().await;
        let _across_nodes = self.meta().lock_blob_bytes(&[digest.to_string()]).await?;
        if self.meta().blobs_recorded(&[digest.to_string()]).await?.is_empty() {
            return Ok(Outcome::Gone);
        }
        let existing = self.meta().blob_keys(digest).await?;
        let stored = self.blobs().stat(digest).await?;
        // (Keys recorded with the plaintext still stored: a run stopped between the two, sealed anew.)
        if let Some(k) = existing.first()
            && stored == Some(Envelope::sealed_len_of(k.layers as usize, size))
        {
            return Ok(Outcome::AlreadyProtected);
        }
        if stored != Some(size) {
            return Ok(Outcome::Problem(format!("stored as {stored:?} bytes, recorded as {size}: left as it is")));
        }
        let layers = protections.values().map(|p| p.layers).max().unwrap_or(1);
        let keys = BlobKeys::generate(layers);
        let id = format!("encrypt-{}", uuid::Uuid::new_v4().simple());
        let state = self.blobs().upload_create(&id).await?;
        let plain = match self.blobs().read(digest, None).await {
            Ok(s) => s,
            Err(StoreError::NotFound) => return Ok(Outcome::Gone),
            Err(e) => return Err(e.into()),
        };
        let hasher = Arc::new(Mutex::new(digest.algorithm().hasher()));
        let hashed = crate::service::hashing(plain, hasher.clone());
        let (sealed, _) = crate::blob_cipher::sealing(hashed, keys.envelope().sealer(), true);
        let (sealed_len, state) = match self.blobs().upload_append(&id, 0, &state, sealed).await {
            Ok(done) => done,
            Err(e) => {
                let _ = self.blobs().upload_delete(&id, Some(&state)).await;
                return Err(e.into());
            }
        };
        let actual = std::mem::replace(&mut *hasher.lock().expect("hasher lock"), digest.algorithm().hasher()).finish();
        // The plaintext's length follows from the sealed length.
        let counted = keys.envelope().plain_len(sealed_len);
        let damage = if counted != Some(size) {
            Some(format!("{counted:?} bytes stored, {size} recorded"))
        } else if actual != *digest {
            Some(format!("the stored bytes hash to {actual}"))
        } else {
            None
        };
        if let Some(why) = damage {
            self.blobs().upload_delete(&id, Some(&state)).await?;
            return Ok(Outcome::Problem(format!("{why}: left as it is")));
        }
        // Keys before bytes, as every commit records them: a read between the two fails once
        // (the plaintext does not open as sealed) and never serves wrong bytes.
        let wrappings = at_rest.wrap_for_all(digest, &keys, protections.values()).await?;
        at_rest.record_new_keys(digest, &wrappings).await?;
        self.blobs().upload_replace(&id, sealed_len, &state, digest).await?;
        Ok(Outcome::Sealed)
    }
}
