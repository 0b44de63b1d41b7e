//! Shapes several ECR operations share, as the model defines them (serde camelCase):
//! repositories, image ids and failures, scan status and findings summary.

use std::collections::BTreeMap;

use berth_meta::{ImageScan, ScanStatus};
use berth_registry::images::{ImageIdFailure, ImageRef};
use berth_registry::repositories::{EncryptionConfiguration, ExclusionFilter};
use serde::{Deserialize, Serialize};

use super::{Ctx, EcrError};

/// `ImageIdentifier`: a digest, a tag, or both.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub(super) struct ImageId {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) image_digest: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) image_tag: Option<String>,
}

impl ImageId {
    pub(super) fn as_ref(&self) -> ImageRef<'_> {
        ImageRef { tag: self.image_tag.as_deref(), digest: self.image_digest.as_deref() }
    }

    /// The id of a response: the digest, and the tag if the request named one.
    pub(super) fn resolved(digest: &berth_oci::Digest, asked: &ImageId) -> ImageId {
        ImageId { image_digest: Some(digest.to_string()), image_tag: asked.image_tag.clone() }
    }

    /// Whether this id names the image with `digest` and `tags`.
    pub(super) fn matches(&self, digest: &str, tags: &[String]) -> bool {
        let digest_ok = self.image_digest.as_deref().is_none_or(|d| d == digest);
        let tag_ok = self.image_tag.as_deref().is_none_or(|t| tags.iter().any(|x| x == t));
        (self.image_digest.is_some() || self.image_tag.is_some()) && digest_ok && tag_ok
    }
}

/// `ImageFailure`: an image id a batch operation could not act on, and why.
#[derive(Serialize, Clone, Debug)]
#[serde(rename_all = "camelCase")]
pub(super) struct ImageFailure {
    pub(super) image_id: ImageId,
    pub(super) failure_code: &'static str,
    pub(super) failure_reason: String,
}

impl ImageFailure {
    pub(super) fn new(id: &ImageId, code: &'static str, reason: impl Into<String>) -> Self {
        ImageFailure { image_id: id.clone(), failure_code: code, failure_reason: reason.into() }
    }

    /// An id that names no image, in ECR's codes and words.
    pub(super) fn of(id: &ImageId, f: ImageIdFailure) -> Self {
        match f {
            ImageIdFailure::InvalidTag(t) => Self::new(id, "InvalidImageTag", format!("Invalid image tag {t:?}")),
            ImageIdFailure::InvalidDigest(d) => {
                Self::new(id, "InvalidImageDigest", format!("Invalid image digest {d:?}"))
            }
            ImageIdFailure::MissingDigestAndTag => {
                Self::new(id, "MissingDigestAndTag", "Invalid request parameters: both tag and digest cannot be null")
            }
            ImageIdFailure::TagDoesNotMatchDigest => Self::new(
                id,
                "ImageTagDoesNotMatchDigest",
                "Invalid request parameters: image tag digest did not match image digest",
            ),
            ImageIdFailure::NotFound => Self::new(id, "ImageNotFound", "Requested image not found"),
            ImageIdFailure::ReferencedByIndex(parents) => Self::new(
                id,
                "ImageReferencedByManifestList",
                format!("Requested image referenced by manifest list: [{}]", parents.join(", ")),
            ),
        }
    }
}

/// `ImageNotFoundException` for an image id.
pub(super) fn image_not_found(ctx: &Ctx<'_>, repo: &str, id: &ImageId) -> EcrError {
    EcrError::new(
        "ImageNotFoundException",
        format!(
            "The image with imageId {{imageDigest:'{}', imageTag:'{}'}} does not exist within the repository with name '{repo}' in the registry with id '{}'",
            id.image_digest.as_deref().unwrap_or("null"),
            id.image_tag.as_deref().unwrap_or("null"),
            ctx.registry_id()
        ),
    )
}

/// Seconds since the epoch, as the model's timestamps are sent.
pub(super) fn seconds(ms: i64) -> f64 {
    ms as f64 / 1000.0
}

/// `ImageScanStatus`: a queued scan shows as `IN_PROGRESS`, as ECR shows it.
#[derive(Serialize, Clone, Debug, PartialEq)]
pub(super) struct ImageScanStatus {
    pub(super) status: String,
    pub(super) description: String,
}

impl ImageScanStatus {
    pub(super) fn of(scan: &ImageScan) -> Self {
        let (status, description) = match scan.status {
            ScanStatus::Pending => ("IN_PROGRESS", "The scan is queued.".to_string()),
            ScanStatus::InProgress => ("IN_PROGRESS", "The scan is in progress.".to_string()),
            other => (other.as_str(), scan.description.clone().unwrap_or_default()),
        };
        ImageScanStatus { status: status.to_string(), description }
    }
}

/// `ImageScanFindingsSummary`, for a complete scan.
#[derive(Serialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub(super) struct FindingsSummary {
    pub(super) finding_severity_counts: BTreeMap<String, u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) image_scan_completed_at: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) vulnerability_source_updated_at: Option<f64>,
}

impl FindingsSummary {
    pub(super) fn of(scan: &ImageScan) -> Option<Self> {
        if scan.status != ScanStatus::Complete {
            return None;
        }
        Some(FindingsSummary {
            finding_severity_counts: scan
                .counts
                .as_deref()
                .and_then(|c| serde_json::from_str(c).ok())
                .unwrap_or_default(),
            image_scan_completed_at: scan.completed_at.map(seconds),
            vulnerability_source_updated_at: scan.vulndb_updated_at.map(seconds),
        })
    }
}

/// An answer with no members.
#[derive(Serialize)]
pub(super) struct Empty {}

/// `ImageScanningConfiguration`.
#[derive(Serialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub(super) struct ScanningConfiguration {
    pub(super) scan_on_push: bool,
}

/// The exclusion filters of a tag mutability rule, as the model gives them.
pub(super) fn exclusion_filters(filters: &[String]) -> Vec<ExclusionFilter> {
    filters.iter().map(|f| ExclusionFilter { filter_type: "WILDCARD".into(), filter: f.clone() }).collect()
}

/// `Repository`.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct RepositoryShape {
    pub(super) repository_arn: String,
    pub(super) registry_id: String,
    pub(super) repository_name: String,
    pub(super) repository_uri: String,
    pub(super) created_at: f64,
    pub(super) image_tag_mutability: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub(super) image_tag_mutability_exclusion_filters: Vec<ExclusionFilter>,
    pub(super) image_scanning_configuration: ScanningConfiguration,
    pub(super) encryption_configuration: EncryptionConfiguration,
    /// Beyond ECR (SDKs ignore members their model lacks): the pull policy by severity.
    #[serde(rename = "berthPullBlockSeverity", skip_serializing_if = "Option::is_none")]
    pub(super) pull_block_severity: Option<&'static str>,
}
