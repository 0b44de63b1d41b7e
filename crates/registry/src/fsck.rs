//! `berth fsck`: checks that every manifest's blobs exist and are linked in its repository,
//! and every blob's bytes hash to its digest.

use std::collections::{HashMap, HashSet};

use berth_oci::Digest;
use futures_util::StreamExt;

use crate::{Registry, RegistryError};

#[derive(Debug, Default)]
pub struct FsckReport {
    pub blobs_checked: usize,
    pub bytes_checked: u64,
    pub manifests_checked: usize,
    /// Damage: each entry is one thing that is wrong.
    pub problems: Vec<String>,
    /// Stored blobs no metadata records (left by an interrupted push; GC reclaims them).
    pub unrecorded_blobs: usize,
}

impl FsckReport {
    pub fn is_clean(&self) -> bool {
        self.problems.is_empty()
    }
}

impl Registry {
    pub async fn fsck(&self) -> Result<FsckReport, RegistryError> {
        let mut report = FsckReport::default();
        let recorded: HashMap<String, i64> = self.meta().all_blobs().await?.into_iter().collect();
        for (digest_text, size) in &recorded {
            report.blobs_checked += 1;
            let digest = match Digest::parse(digest_text) {
                Ok(d) => d,
                Err(e) => {
                    report.problems.push(format!("blob {digest_text}: invalid digest: {e}"));
                    continue;
                }
            };
            match self.blobs().stat(&digest).await? {
                None => {
                    report.problems.push(format!("blob {digest}: recorded but missing from storage"));
                    continue;
                }
                Some(s) if s != *size as u64 => {
                    report.problems.push(format!("blob {digest}: recorded size {size}, stored size {s}"));
                }
                Some(_) => {}
            }
            let mut hasher = digest.algorithm().hasher();
            let mut data = self.blobs().read(&digest, None).await?;
            while let Some(chunk) = data.next().await {
                let chunk = chunk.map_err(|e| RegistryError::Internal(e.to_string()))?;
                report.bytes_checked += chunk.len() as u64;
                hasher.update(&chunk);
            }
            let actual = hasher.finish();
            if actual != digest {
                report.problems.push(format!("blob {digest}: content hashes to {actual}"));
            }
        }
        let mut stored: HashSet<String> = HashSet::new();
        let mut listing = self.blobs().list();
        while let Some(d) = listing.next().await {
            stored.insert(d?.to_string());
        }
        report.unrecorded_blobs = stored.iter().filter(|d| !recorded.contains_key(*d)).count();

        for m in self.meta().all_manifest_references().await? {
            report.manifests_checked += 1;
            for b in &m.blobs {
                if !recorded.contains_key(b) || !stored.contains(b) {
                    report.problems.push(format!("manifest {}@{}: blob {b} is missing", m.repository, m.digest));
                    continue;
                }
                // Stored somewhere is not enough: the repository must serve it, or pulls of
                // the image fail with BLOB_UNKNOWN.
                let linked = match Digest::parse(b) {
                    Ok(d) => self.meta().linked_blob(&m.repository, &d).await?.is_some(),
                    Err(_) => false,
                };
                if !linked {
                    report.problems.push(format!(
                        "manifest {}@{}: blob {b} is not linked in the repository",
                        m.repository, m.digest
                    ));
                }
            }
            for child in &m.manifests {
                let Ok(d) = Digest::parse(child) else { continue };
                if self.meta().manifest(&m.repository, &d).await?.is_none() {
                    report
                        .problems
                        .push(format!("index {}@{}: child manifest {child} is missing", m.repository, m.digest));
                }
            }
        }
        Ok(report)
    }
}
