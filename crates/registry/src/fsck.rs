//! `berth fsck`: checks that every manifest's blobs exist and are linked in its repository,
//! and every blob's bytes (a sealed blob's plaintext) hash to its digest.

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
        let at_rest = self.at_rest();
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
            let size = *size as u64;
            // A sealed blob is checked as it is served: opened with its keys (which must open
            // through one of their wrappings) and its plaintext hashed.
            let wrappings = self.meta().blob_keys(&digest).await?;
            let keys = if wrappings.is_empty() {
                None
            } else {
                match at_rest.unwrap_any(&digest, &wrappings).await {
                    Ok(k) => Some(k),
                    Err(e) => {
                        report.problems.push(format!("blob {digest}: its data keys do not open: {e}"));
                        continue;
                    }
                }
            };
            let expected_stored = keys.as_ref().map_or(size, |k| k.envelope().sealed_len(size));
            match self.blobs().stat(&digest).await? {
                None => {
                    report.problems.push(format!("blob {digest}: recorded but missing from storage"));
                    continue;
                }
                Some(s) if s != expected_stored => {
                    report.problems.push(format!(
                        "blob {digest}: recorded size {size}, stored size {s} (expected {expected_stored})"
                    ));
                    continue;
                }
                Some(_) => {}
            }
            let data = match &keys {
                Some(k) => at_rest.read(&digest, size, &k.envelope(), None).await,
                None => self.blobs().read(&digest, None).await.map_err(RegistryError::from),
            };
            let mut data = match data {
                Ok(d) => d,
                Err(e) => {
                    report.problems.push(format!("blob {digest}: cannot be read: {e}"));
                    continue;
                }
            };
            let mut hasher = digest.algorithm().hasher();
            let mut failed = None;
            while let Some(chunk) = data.next().await {
                match chunk {
                    Ok(chunk) => {
                        report.bytes_checked += chunk.len() as u64;
                        hasher.update(&chunk);
                    }
                    Err(e) => {
                        failed = Some(e);
                        break;
                    }
                }
            }
            if let Some(e) = failed {
                report.problems.push(format!("blob {digest}: reading it failed: {e}"));
                continue;
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
            // The manifest itself, as it is served (a sealed one opened): it must hash to its digest.
            if let Ok(d) = Digest::parse(&m.digest)
                && let Some(stored) = self.meta().manifest(&m.repository, &d).await?
            {
                match at_rest.open_manifest(&m.repository, stored).await {
                    Ok(opened) => {
                        let actual = Digest::from_bytes(d.algorithm(), &opened.content);
                        if actual != d {
                            report.problems.push(format!("manifest {}@{d}: content hashes to {actual}", m.repository));
                        }
                    }
                    Err(e) => report.problems.push(format!("manifest {}@{d}: does not open: {e}", m.repository)),
                }
            }
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
