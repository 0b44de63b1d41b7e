//! Image scanning: which images are scanned and how (the registry scanning configuration and
//! each repository's `scanOnPush`), running one scan (layers → inventory → records → findings,
//! and the SBOM referrer), and the pull policy by severity. The queue that runs scans is in
//! `queue.rs`; importing the vulnerability database in `vulndb.rs`.

mod layers;
mod queue;
pub mod vulndb;

use std::collections::BTreeMap;

use berth_meta::{Repository, ScanJob, ScanOutcome, ScanStatus};
use berth_oci::{Digest, media_types};
use berth_rules::scanning::{RegistryScanning, RepositoryScanning, ScanType};
use berth_vuln::findings::{Finding, match_inventory, severity_counts, sort_findings};
use berth_vuln::image::Inventory;
use berth_vuln::{Record, Severity};
use serde::{Deserialize, Serialize};

pub use queue::Scanner;

use crate::{Registry, RegistryError};

/// Where the registry scanning configuration is kept: an account setting of Berth's own (not
/// one `GetAccountSetting` serves), as the JSON `PutRegistryScanningConfiguration` received.
const REGISTRY_SCANNING_SETTING: &str = "berth:registry-scanning-configuration";

/// Config media types of container images (anything else is an artifact, not scanned).
const IMAGE_CONFIG_TYPES: [&str; 2] = [media_types::OCI_IMAGE_CONFIG, media_types::DOCKER_IMAGE_CONFIG];

/// The annotation that marks an SBOM artifact as Berth's own (deleted with its image).
const SBOM_ANNOTATION: &str = "dev.berth.sbom.format";

/// Node-wide scanning settings (from the configuration file).
#[derive(Debug, Clone)]
pub struct ScanSettings {
    /// Attach each scanned image's CycloneDX SBOM as an OCI referrer.
    pub attach_sbom: bool,
    /// Pull policy for repositories without their own: refuse images with findings at or
    /// above this severity.
    pub pull_block_default: Option<Severity>,
}

impl Default for ScanSettings {
    fn default() -> Self {
        ScanSettings { attach_sbom: true, pull_block_default: None }
    }
}

/// What a complete scan stores: the findings and what is needed to render them.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ScanReport {
    /// The image's layer digests, bottom first (findings name theirs by index).
    pub layers: Vec<String>,
    pub architecture: Option<String>,
    pub os: Option<String>,
    pub author: Option<String>,
    /// The distribution, as os-release names it.
    pub distribution: Option<String>,
    pub packages: usize,
    pub findings: Vec<Finding>,
    /// The SBOM referrer's manifest digest, when one was attached.
    pub sbom: Option<String>,
}

/// Parses a severity name for the pull policy (`NONE`/empty turns it off).
pub fn parse_block_severity(s: &str) -> Result<Option<Severity>, String> {
    berth_meta::PullBlock::parse(s).map(berth_meta::PullBlock::threshold)
}

fn failed(description: String) -> ScanOutcome {
    ScanOutcome {
        status: ScanStatus::Failed,
        description: Some(description),
        findings: None,
        counts: None,
        vulndb_version: None,
        vulndb_updated_at: None,
    }
}

fn unsupported(description: &str) -> ScanOutcome {
    ScanOutcome { status: ScanStatus::UnsupportedImage, ..failed(description.into()) }
}

impl Registry {
    /// The registry scanning configuration (BASIC with no rules until one is put).
    pub async fn registry_scanning(&self) -> Result<RegistryScanning, RegistryError> {
        match self.meta().account_setting(self.registry_id(), REGISTRY_SCANNING_SETTING).await? {
            Some(text) => serde_json::from_str(&text)
                .map_err(|e| RegistryError::Internal(format!("stored registry scanning configuration: {e}"))),
            None => Ok(RegistryScanning { scan_type: ScanType::Basic, rules: Vec::new() }),
        }
    }

    pub async fn put_registry_scanning(&self, config: &RegistryScanning) -> Result<(), RegistryError> {
        let text = serde_json::to_string(config).map_err(|e| RegistryError::Internal(e.to_string()))?;
        self.meta().put_account_setting(self.registry_id(), REGISTRY_SCANNING_SETTING, &text).await?;
        self.wake_scanner();
        Ok(())
    }

    /// The scan type (`BASIC`, `ENHANCED`) and frequency that apply to a repository.
    pub async fn repository_scanning(
        &self,
        repository: &Repository,
    ) -> Result<(ScanType, RepositoryScanning), RegistryError> {
        let config = self.registry_scanning().await?;
        // ECR Public scans nothing: its repositories meet no scanning rule.
        if crate::public::split_public_key(&repository.name).is_some() {
            let manual =
                RepositoryScanning { scan_on_push: false, scan_frequency: "MANUAL", applied_filters: Vec::new() };
            return Ok((config.scan_type, manual));
        }
        let scanning = config.for_repository(&repository.name, repository.settings.scan_on_push);
        Ok((config.scan_type, scanning))
    }

    /// Queues a scan of an image with the scan type its repository gets. With `only_if_new`,
    /// an image scanned (or queued) before is left alone.
    pub async fn request_scan(
        &self,
        repository: &Repository,
        digest: &str,
        only_if_new: bool,
    ) -> Result<bool, RegistryError> {
        let (scan_type, _) = self.repository_scanning(repository).await?;
        self.queue_scan(repository, digest, scan_type, only_if_new).await
    }

    async fn queue_scan(
        &self,
        repository: &Repository,
        digest: &str,
        scan_type: ScanType,
        only_if_new: bool,
    ) -> Result<bool, RegistryError> {
        let queued = self.meta().request_scan(&repository.name, digest, scan_type, only_if_new).await?;
        if queued {
            self.wake_scanner();
        }
        Ok(queued)
    }

    /// After a push: queues a scan when the repository scans on push and the manifest is an
    /// image (not an index, not an artifact such as an SBOM).
    pub(crate) async fn scan_on_push(
        &self,
        repository: &Repository,
        digest: &Digest,
        artifact_type: Option<&str>,
        is_index: bool,
    ) {
        if is_index || artifact_type.is_some_and(|t| !IMAGE_CONFIG_TYPES.contains(&t)) {
            return;
        }
        let result = async {
            let (scan_type, scanning) = self.repository_scanning(repository).await?;
            if scanning.scan_on_push {
                self.queue_scan(repository, digest.as_str(), scan_type, true).await?;
            }
            Ok::<_, RegistryError>(())
        }
        .await;
        if let Err(e) = result {
            // The push succeeded; a scan can still be started by hand.
            tracing::error!(repository = %repository.name, %digest, error = %e, "could not queue the scan on push");
        }
    }

    /// Runs one claimed scan to its outcome; never fails (a failure is a `FAILED` outcome).
    pub async fn run_scan(&self, job: &ScanJob) -> ScanOutcome {
        match self.scan(job).await {
            Ok(outcome) => outcome,
            Err(e) => {
                tracing::warn!(repository = %job.repository, digest = %job.digest, error = %e, "scan failed");
                failed(e)
            }
        }
    }

    /// The outcome of a scan that ran past its time.
    pub(crate) fn scan_timed_out(&self) -> ScanOutcome {
        failed("The scan took longer than 30 minutes and was abandoned.".into())
    }

    async fn scan(&self, job: &ScanJob) -> Result<ScanOutcome, String> {
        let digest = Digest::parse(&job.digest).map_err(|e| format!("stored digest: {e}"))?;
        let manifest = self
            .meta()
            .manifest(&job.repository, &digest)
            .await
            .map_err(|e| e.to_string())?
            .ok_or_else(|| "the image was deleted".to_string())?;
        if manifest.archived {
            return Ok(failed("The image is archived; restore it to scan it.".into()));
        }
        let manifest = self.at_rest().open_manifest(&job.repository, manifest).await.map_err(|e| e.to_string())?;
        if let Some(why) = unscannable(&manifest.content) {
            return Ok(unsupported(why));
        }
        let doc: serde_json::Value =
            serde_json::from_slice(&manifest.content).map_err(|e| format!("manifest is not JSON: {e}"))?;
        let config_digest = doc["config"]["digest"].as_str().unwrap_or("");
        let config = self.read_small_blob(&job.repository, config_digest).await.unwrap_or_default();
        let config: serde_json::Value = serde_json::from_slice(&config).unwrap_or_default();
        let mut layers = Vec::new();
        for l in doc["layers"].as_array().into_iter().flatten() {
            let media_type = l["mediaType"].as_str().unwrap_or("");
            // Layers are tar streams; foreign or non-tar layers (nondistributable, artifacts) are skipped.
            if !media_type.contains("tar")
                || media_type == media_types::DOCKER_FOREIGN_LAYER
                || media_type.starts_with(media_types::OCI_NONDISTRIBUTABLE_PREFIX)
            {
                continue;
            }
            let d = l["digest"].as_str().and_then(|d| Digest::parse(d).ok()).ok_or("a layer without a valid digest")?;
            layers.push(d);
        }
        let state = self.meta().vulndb_state().await.map_err(|e| e.to_string())?;
        let (at_rest, meta, handle) = (self.at_rest(), self.meta().clone(), tokio::runtime::Handle::current());
        let (enhanced, layer_list, repository) =
            (job.scan_type == ScanType::Enhanced, layers.clone(), job.repository.clone());
        let analysis = layers::on_background_thread(move || {
            let source = LayerSource { at_rest: &at_rest, repository: &repository };
            analyze(&handle, source, meta.as_ref(), &layer_list, enhanced)
        })
        .await??;
        let Some(Analysis { full, inventory, findings }) = analysis else {
            return Ok(unsupported(if enhanced {
                "UnsupportedImageError: no operating system or language packages were found."
            } else {
                "UnsupportedImageError: The operating system and/or package manager are not supported."
            }));
        };
        let counts = severity_counts(&findings);
        // An image deleted while it was scanned gets no SBOM (it would be a dangling referrer).
        let still_there = self.meta().manifest(&job.repository, &digest).await.map_err(|e| e.to_string())?.is_some();
        let sbom = if self.scan_settings().attach_sbom && still_there {
            match self.attach_sbom(&job.repository, &manifest, &full).await {
                Ok(d) => Some(d),
                Err(e) => {
                    tracing::warn!(repository = %job.repository, digest = %job.digest, error = %e, "could not attach the SBOM");
                    None
                }
            }
        } else {
            None
        };
        let report = ScanReport {
            layers: layers.iter().map(|d| d.to_string()).collect(),
            architecture: config["architecture"].as_str().map(str::to_string),
            os: config["os"].as_str().map(str::to_string),
            author: config["author"].as_str().map(str::to_string),
            distribution: inventory.os_ecosystem.clone(),
            packages: inventory.packages.len(),
            findings,
            sbom,
        };
        let mut description = "The scan was completed successfully.".to_string();
        if !inventory.problems.is_empty() {
            description.push_str(&format!(" Unreadable: {}", inventory.problems.join("; ")));
        }
        Ok(ScanOutcome {
            status: ScanStatus::Complete,
            description: Some(description),
            findings: Some(serde_json::to_string(&report).map_err(|e| e.to_string())?),
            counts: Some(serde_json::to_string(&counts).map_err(|e| e.to_string())?),
            vulndb_version: Some(state.version),
            vulndb_updated_at: state.updated_at,
        })
    }

    /// Stores the inventory as a CycloneDX document and pushes an OCI artifact manifest whose
    /// subject is the image; returns the artifact's digest. The same inventory gives the same
    /// bytes, so scanning again does not add referrers.
    async fn attach_sbom(
        &self,
        repository: &str,
        image: &berth_meta::StoredManifest,
        inventory: &Inventory,
    ) -> Result<String, RegistryError> {
        let doc = berth_vuln::sbom::cyclonedx(inventory, repository, image.digest.as_str());
        let sbom = serde_json::to_vec(&doc).map_err(|e| RegistryError::Internal(e.to_string()))?;
        let empty = b"{}".to_vec();
        let (sbom_digest, sbom_size) = self.store_small_blob(repository, sbom).await?;
        let (empty_digest, _) = self.store_small_blob(repository, empty).await?;
        let manifest = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": media_types::OCI_MANIFEST,
            "artifactType": berth_vuln::sbom::CYCLONEDX_JSON,
            "config": { "mediaType": media_types::OCI_EMPTY, "digest": empty_digest.as_str(), "size": 2, "data": "e30=" },
            "layers": [ { "mediaType": berth_vuln::sbom::CYCLONEDX_JSON, "digest": sbom_digest.as_str(), "size": sbom_size } ],
            "subject": { "mediaType": image.media_type, "digest": image.digest.as_str(), "size": image.content.len() },
            "annotations": { SBOM_ANNOTATION: "CycloneDX 1.5" },
        });
        let body = serde_json::to_vec(&manifest).map_err(|e| RegistryError::Internal(e.to_string()))?;
        let digest = Digest::from_bytes(berth_oci::Algorithm::Sha256, &body);
        self.put_manifest(repository, digest.as_str(), Some(media_types::OCI_MANIFEST), body, &[]).await?;
        Ok(digest.to_string())
    }

    /// The pull policy: refuses an image whose complete scan has findings at or above the
    /// repository's threshold (or the configured default). Images not scanned yet pass.
    pub(crate) fn check_pull_gate(&self, manifest: &berth_meta::StoredManifest) -> Result<(), RegistryError> {
        let gate = &manifest.pull_gate;
        let threshold = match gate.block_severity {
            Some(policy) => policy.threshold(),
            None => self.scan_settings().pull_block_default,
        };
        let Some(threshold) = threshold else { return Ok(()) };
        let blocking = blocking_counts(gate.scan_counts.as_deref(), threshold);
        if blocking.is_empty() {
            return Ok(());
        }
        let digest = &manifest.digest;
        let listed: Vec<String> = blocking.iter().map(|(s, n)| format!("{n} {s}")).collect();
        Err(RegistryError::PullBlocked {
            digest: digest.clone(),
            findings: listed.join(", "),
            threshold: threshold.as_str().to_string(),
        })
    }
}

/// What a scan found: the whole inventory (for the SBOM), the part the scan type covers, and
/// the findings in it.
struct Analysis {
    full: Inventory,
    inventory: Inventory,
    findings: Vec<Finding>,
}

/// Packages whose records are looked up and matched at a time, so memory holds one chunk's
/// records, not every candidate record of the image.
const MATCH_CHUNK: usize = 250;

/// The CPU-heavy part of a scan, on the scan thread: the layers read into an inventory, then
/// matched chunk by chunk against the records filed under its packages. `None` when the image
/// has nothing the scan type covers.
/// Where a scan reads an image's layers from: the repository's blobs as it serves them.
struct LayerSource<'a> {
    at_rest: &'a crate::at_rest::AtRest,
    repository: &'a str,
}

fn analyze(
    handle: &tokio::runtime::Handle,
    source: LayerSource<'_>,
    meta: &dyn berth_meta::MetaStore,
    layers: &[Digest],
    enhanced: bool,
) -> Result<Option<Analysis>, String> {
    let files = layers::read_layers(handle, source.at_rest, source.repository, layers).map_err(|e| e.to_string())?;
    let mut rpm = Vec::new();
    let mut texts = Vec::new();
    for (path, layer, kind, content) in files.files() {
        match content {
            layers::Content::Bytes(b) => texts.push((path, layer, kind, b.as_slice())),
            layers::Content::Database(d) => match handle.block_on(layers::rpm_packages(d)) {
                Ok(list) => rpm.push((path.to_string(), layer, list)),
                Err(e) => tracing::warn!(path, error = %e, "unreadable rpm database"),
            },
        }
    }
    let full = Inventory::from_files(texts, rpm);
    drop(files);
    let inventory = if enhanced { full.clone() } else { full.clone().os_only() };
    // OS packages count only from a distribution Berth knows and a package database it read: an
    // unknown distribution, or a known one whose database it cannot read (rpm's Berkeley DB),
    // is not reported as a clean image.
    let os_packages = inventory.packages.iter().any(|p| p.package_manager == "OS");
    let os_scanned = inventory.os_ecosystem.is_some() && os_packages;
    let language_packages = inventory.packages.iter().any(|p| p.package_manager != "OS");
    if !(os_scanned || (enhanced && language_packages)) {
        return Ok(None);
    }
    let mut keys: Vec<(String, String)> = inventory.packages.iter().map(|p| p.index_key()).collect();
    keys.sort();
    keys.dedup();
    let mut findings = Vec::new();
    for chunk in keys.chunks(MATCH_CHUNK) {
        let records: Vec<Record> = handle
            .block_on(meta.vulndb_lookup(chunk))
            .map_err(|e| e.to_string())?
            .into_iter()
            .filter_map(|(id, json)| match Record::from_json(&json) {
                Ok(r) => Some(r),
                Err(e) => {
                    tracing::warn!(id, error = %e, "unreadable stored vulnerability record");
                    None
                }
            })
            .collect();
        let wanted: std::collections::HashSet<&(String, String)> = chunk.iter().collect();
        let part = Inventory {
            packages: inventory.packages.iter().filter(|p| wanted.contains(&p.index_key())).cloned().collect(),
            ..Inventory::default()
        };
        findings.extend(match_inventory(&part, &records));
    }
    sort_findings(&mut findings);
    Ok(Some(Analysis { full, inventory, findings }))
}

/// Why a manifest cannot be scanned (an index, or an artifact rather than a container image),
/// or `None` for an image.
pub fn unscannable(manifest: &[u8]) -> Option<&'static str> {
    let Ok(doc) = serde_json::from_slice::<serde_json::Value>(manifest) else {
        return Some("UnsupportedImageError: the manifest is not JSON.");
    };
    if doc.get("manifests").is_some() {
        return Some("UnsupportedImageError: an image index is not scanned; its images are.");
    }
    let config_type = doc["config"]["mediaType"].as_str().unwrap_or("");
    if !IMAGE_CONFIG_TYPES.contains(&config_type) {
        return Some("UnsupportedImageError: the manifest is an artifact, not a container image.");
    }
    None
}

/// The severity counts of a complete scan at or above `threshold`, highest first.
/// The counts are the last complete scan's, whatever the current status: a rescan queued,
/// running or failed does not let the image through.
fn blocking_counts(counts: Option<&str>, threshold: Severity) -> Vec<(&'static str, u64)> {
    let counts: BTreeMap<String, u64> = counts.and_then(|c| serde_json::from_str(c).ok()).unwrap_or_default();
    [Severity::Critical, Severity::High, Severity::Medium, Severity::Low, Severity::Informational]
        .into_iter()
        .filter(|s| *s >= threshold)
        .filter_map(|s| counts.get(s.as_str()).filter(|n| **n > 0).map(|n| (s.as_str(), *n)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn severities_for_the_pull_policy() {
        assert_eq!(parse_block_severity("high"), Ok(Some(Severity::High)));
        assert_eq!(parse_block_severity("NONE"), Ok(None));
        assert!(parse_block_severity("severe").is_err());
        let counts = Some(r#"{"CRITICAL":1,"MEDIUM":3,"LOW":2}"#);
        assert_eq!(blocking_counts(counts, Severity::High), vec![("CRITICAL", 1)]);
        assert_eq!(blocking_counts(counts, Severity::Medium), vec![("CRITICAL", 1), ("MEDIUM", 3)]);
        assert!(blocking_counts(None, Severity::Low).is_empty());
        assert!(blocking_counts(Some("{}"), Severity::Informational).is_empty());
    }
}
