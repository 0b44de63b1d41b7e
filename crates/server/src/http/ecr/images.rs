//! The image operations: listing, describing, getting, putting and deleting images, and
//! checking layers. `BatchGetImage` and `PutImage` go through the same registry calls as the
//! `/v2/` manifest GET and PUT.

use berth_meta::{ImageFilter, StatusFilter, TagFilter};
use berth_oci::Digest;
use berth_registry::RegistryError;
use berth_registry::images::{ImageDetail, ImageIdFailure, listing_filter};
use berth_registry::pull_through::FillGrant;
use berth_rules::lifecycle::StorageClass;
use serde::{Deserialize, Serialize};

use super::shapes::{FindingsSummary, ImageFailure, ImageId, ImageScanStatus, image_not_found, seconds};
use super::{Ctx, EcrError, check_repository_name, no_paging_with, page_size};

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct Filter {
    tag_status: Option<String>,
    image_status: Option<String>,
}

/// A listing filter from the request (the registry decides what is listed without one).
fn image_filter(f: &Option<Filter>) -> Result<ImageFilter, EcrError> {
    let tags = match f.as_ref().and_then(|f| f.tag_status.as_deref()) {
        None => None,
        Some("ANY") => Some(TagFilter::Any),
        Some("TAGGED") => Some(TagFilter::Tagged),
        Some("UNTAGGED") => Some(TagFilter::Untagged),
        Some(other) => {
            return Err(EcrError::invalid(format!(
                "Invalid parameter at 'tagStatus' failed to satisfy constraint: 'Member must satisfy enum value set: [TAGGED, UNTAGGED, ANY]' (got {other:?})"
            )));
        }
    };
    let status = match f.as_ref().and_then(|f| f.image_status.as_deref()) {
        None => None,
        Some("ACTIVE") => Some(StatusFilter::Active),
        Some("ARCHIVED") => Some(StatusFilter::Archived),
        Some("ACTIVATING") => Some(StatusFilter::Activating),
        Some("ANY") => Some(StatusFilter::Any),
        Some(other) => {
            return Err(EcrError::invalid(format!(
                "Invalid parameter at 'imageStatus' failed to satisfy constraint: 'Member must satisfy enum value set: [ACTIVE, ARCHIVED, ACTIVATING, ANY]' (got {other:?})"
            )));
        }
    };
    Ok(listing_filter(tags, status))
}

impl Ctx<'_> {
    /// Resolves one image id for an operation on a single image: a missing image is
    /// `ImageNotFoundException`, a malformed id `InvalidParameterException`.
    pub(super) async fn resolve_one(&self, repo: &str, id: &ImageId) -> Result<Digest, EcrError> {
        match self.app.registry.resolve_image(repo, id.as_ref()).await? {
            Ok(d) => Ok(d),
            Err(ImageIdFailure::NotFound) => Err(image_not_found(self, repo, id)),
            Err(f) => Err(EcrError::invalid(ImageFailure::of(id, f).failure_reason)),
        }
    }

    fn image_detail(&self, repo: &str, detail: &ImageDetail) -> ImageDetailShape {
        let image = &detail.record;
        ImageDetailShape {
            registry_id: self.registry_id().to_string(),
            repository_name: repo.to_string(),
            image_digest: image.digest.clone(),
            image_tags: image.tags.clone(),
            image_size_in_bytes: detail.size,
            image_pushed_at: seconds(image.pushed_at),
            image_manifest_media_type: image.media_type.clone(),
            artifact_media_type: image.artifact_type.clone(),
            image_status: image_status(image.archived),
            last_archived_at: image.last_archived_at.map(seconds),
            last_activated_at: image.last_activated_at.map(seconds),
            last_recorded_pull_time: image.last_pulled_at.map(seconds),
            subject_manifest_digest: image.subject.clone(),
            image_scan_status: detail.scan.as_ref().map(ImageScanStatus::of),
            image_scan_findings_summary: detail.scan.as_ref().and_then(FindingsSummary::of),
        }
    }
}

fn image_status(archived: bool) -> &'static str {
    if archived { "ARCHIVED" } else { "ACTIVE" }
}

/// `ImageDetail`.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct ImageDetailShape {
    registry_id: String,
    repository_name: String,
    image_digest: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    image_tags: Vec<String>,
    image_size_in_bytes: i64,
    image_pushed_at: f64,
    image_manifest_media_type: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    artifact_media_type: Option<String>,
    image_status: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    last_archived_at: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    last_activated_at: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    last_recorded_pull_time: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    subject_manifest_digest: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    image_scan_status: Option<ImageScanStatus>,
    #[serde(skip_serializing_if = "Option::is_none")]
    image_scan_findings_summary: Option<FindingsSummary>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct ListImagesInput {
    repository_name: String,
    next_token: Option<String>,
    max_results: Option<i64>,
    filter: Option<Filter>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct ListImagesOutput {
    image_ids: Vec<ImageId>,
    #[serde(skip_serializing_if = "Option::is_none")]
    next_token: Option<String>,
}

pub(super) async fn list_images(ctx: &Ctx<'_>, input: ListImagesInput) -> Result<ListImagesOutput, EcrError> {
    check_repository_name(&input.repository_name)?;
    let limit = page_size(input.max_results, 100);
    let filter = image_filter(&input.filter)?;
    let after = ctx.decode_token(&input.next_token)?;
    let after = after.as_deref().map(|t| t.split_once(' ').unwrap_or((t, "")));
    let (ids, more) = ctx.app.registry.list_image_ids(&input.repository_name, after, limit, filter).await?;
    let next_token =
        ids.last().filter(|_| more).map(|(d, t)| ctx.encode_token(&format!("{d} {}", t.as_deref().unwrap_or(""))));
    let image_ids = ids.into_iter().map(|(d, t)| ImageId { image_digest: Some(d), image_tag: t }).collect();
    Ok(ListImagesOutput { image_ids, next_token })
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct DescribeImagesInput {
    repository_name: String,
    image_ids: Option<Vec<ImageId>>,
    next_token: Option<String>,
    max_results: Option<i64>,
    filter: Option<Filter>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct DescribeImagesOutput {
    image_details: Vec<ImageDetailShape>,
    #[serde(skip_serializing_if = "Option::is_none")]
    next_token: Option<String>,
}

pub(super) async fn describe_images(
    ctx: &Ctx<'_>,
    input: DescribeImagesInput,
) -> Result<DescribeImagesOutput, EcrError> {
    let repo = &input.repository_name;
    ctx.existing_repository(repo).await?;
    let registry = &ctx.app.registry;
    no_paging_with(input.image_ids.is_some(), &input.max_results, &input.next_token, "imageIds")?;
    if let Some(ids) = &input.image_ids {
        let mut details = Vec::new();
        for id in ids {
            let Ok(digest) = registry.resolve_image(repo, id.as_ref()).await? else {
                return Err(image_not_found(ctx, repo, id));
            };
            let detail = registry.describe_image(repo, &digest).await?.ok_or_else(|| image_not_found(ctx, repo, id))?;
            details.push(ctx.image_detail(repo, &detail));
        }
        return Ok(DescribeImagesOutput { image_details: details, next_token: None });
    }
    let limit = page_size(input.max_results, 100);
    let after = ctx.decode_token(&input.next_token)?;
    let (images, more) = registry.describe_images(repo, after.as_deref(), limit, image_filter(&input.filter)?).await?;
    let next_token = images.last().filter(|_| more).map(|last| ctx.encode_token(&last.record.digest));
    let image_details = images.iter().map(|d| ctx.image_detail(repo, d)).collect();
    Ok(DescribeImagesOutput { image_details, next_token })
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct BatchGetImageInput {
    repository_name: String,
    image_ids: Vec<ImageId>,
    accepted_media_types: Option<Vec<String>>,
}

/// `Image`: a manifest as `BatchGetImage` and `PutImage` return it.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct ImageShape {
    registry_id: String,
    repository_name: String,
    image_id: ImageId,
    image_manifest: String,
    image_manifest_media_type: String,
}

#[derive(Serialize)]
pub(super) struct BatchGetImageOutput {
    images: Vec<ImageShape>,
    failures: Vec<ImageFailure>,
}

pub(super) async fn batch_get_image(ctx: &Ctx<'_>, input: BatchGetImageInput) -> Result<BatchGetImageOutput, EcrError> {
    check_repository_name(&input.repository_name)?;
    let repo = &input.repository_name;
    let registry = &ctx.app.registry;
    let cache = registry.is_cache_repository(repo).await?;
    let accepted: Vec<&str> = input.accepted_media_types.iter().flatten().map(String::as_str).collect();
    let accept = if accepted.is_empty() { vec!["*/*"] } else { accepted };
    let grant = FillGrant { authorizer: &ctx.app.authorizer, caller: Some(&ctx.caller), env: &ctx.env };
    let (mut images, mut failures) = (Vec::new(), Vec::new());
    // Another account's caller the key policy does not let decrypt: every image fails so.
    if let Err(RegistryError::Kms(e)) = ctx.check_pull_decrypt(repo).await {
        let failures = input.image_ids.iter().map(|id| ImageFailure::new(id, "KmsError", e.to_string())).collect();
        return Ok(BatchGetImageOutput { images, failures });
    }
    for id in &input.image_ids {
        let reference = match registry.resolve_image(repo, id.as_ref()).await {
            Ok(Ok(d)) => d.to_string(),
            // Not cached yet: filled from the upstream by tag or digest.
            Ok(Err(ImageIdFailure::NotFound)) | Err(RegistryError::RepositoryNotFound { .. })
                if cache && let Some(r) = id.image_digest.as_ref().or(id.image_tag.as_ref()) =>
            {
                r.clone()
            }
            Ok(Err(f)) => {
                failures.push(ImageFailure::of(id, f));
                continue;
            }
            Err(e) => return Err(e.into()),
        };
        // The same call as GET /v2/<name>/manifests/<reference>, Accept and all.
        match registry.pull_manifest(repo, &reference, &accept, &grant).await {
            Ok(m) => {
                ctx.app.registry.record_pull(repo, &m.digest, Some(&ctx.caller.arn));
                images.push(ImageShape {
                    registry_id: ctx.registry_id().to_string(),
                    repository_name: repo.clone(),
                    image_id: ImageId::resolved(&m.digest, id),
                    image_manifest: String::from_utf8_lossy(&m.content).into_owned(),
                    image_manifest_media_type: m.media_type,
                });
            }
            Err(RegistryError::ManifestArchived { .. }) => {
                failures.push(ImageFailure::new(
                    id,
                    "ImageNotFound",
                    "Requested image is archived; restore it with UpdateImageStorageClass to pull it",
                ));
            }
            Err(e @ (RegistryError::ManifestNotAccepted { .. } | RegistryError::ManifestNotFound { .. })) => {
                failures.push(ImageFailure::new(id, "UnsupportedImageType", e.to_string()));
            }
            // The pull policy or the verification on pull refused it.
            Err(e @ (RegistryError::PullBlocked { .. } | RegistryError::PullUnverified { .. })) => {
                failures.push(ImageFailure::new(id, "ImageInaccessible", e.to_string()));
            }
            // The repository's key refused (disabled, pending deletion, its grant retired).
            Err(RegistryError::Kms(e)) => {
                failures.push(ImageFailure::new(id, "KmsError", e.to_string()));
            }
            // A fill the upstream failed, in ECR's failure codes.
            Err(RegistryError::Upstream { failure, message }) => {
                failures.push(ImageFailure::new(id, failure.code(), message));
            }
            Err(RegistryError::RepositoryNotFound { .. }) if cache => {
                failures.push(ImageFailure::of(id, ImageIdFailure::NotFound));
            }
            Err(e) => return Err(e.into()),
        }
    }
    Ok(BatchGetImageOutput { images, failures })
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct BatchDeleteImageInput {
    repository_name: String,
    image_ids: Vec<ImageId>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct BatchDeleteImageOutput {
    image_ids: Vec<ImageId>,
    failures: Vec<ImageFailure>,
}

pub(super) async fn batch_delete_image(
    ctx: &Ctx<'_>,
    input: BatchDeleteImageInput,
) -> Result<BatchDeleteImageOutput, EcrError> {
    check_repository_name(&input.repository_name)?;
    let repo = &input.repository_name;
    ctx.repository(repo).await?;
    let (mut deleted, mut failures) = (Vec::new(), Vec::new());
    for id in &input.image_ids {
        let removed = match ctx.app.registry.delete_image_by_id(repo, id.as_ref()).await? {
            Ok(removed) => removed,
            Err(f) => {
                failures.push(ImageFailure::of(id, f));
                continue;
            }
        };
        if removed.tags.is_empty() {
            deleted.push(ImageId::resolved(&removed.digest, id));
        }
        for t in removed.tags {
            deleted.push(ImageId { image_digest: Some(removed.digest.to_string()), image_tag: Some(t) });
        }
    }
    Ok(BatchDeleteImageOutput { image_ids: deleted, failures })
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct PutImageInput {
    repository_name: String,
    image_manifest: String,
    image_manifest_media_type: Option<String>,
    image_tag: Option<String>,
    image_digest: Option<String>,
}

#[derive(Serialize)]
pub(super) struct PutImageOutput {
    image: ImageShape,
}

pub(super) async fn put_image(ctx: &Ctx<'_>, input: PutImageInput) -> Result<PutImageOutput, EcrError> {
    check_repository_name(&input.repository_name)?;
    let repo = &input.repository_name;
    let body = input.image_manifest.into_bytes();
    let (digest, media_type) = ctx
        .app
        .registry
        .put_image(
            Some(&ctx.kms_caller()),
            repo,
            body.clone(),
            input.image_manifest_media_type.as_deref(),
            input.image_tag.as_deref(),
            input.image_digest.as_deref(),
        )
        .await
        .map_err(|e| match e {
            RegistryError::DigestInvalid(m) => EcrError::invalid(format!("Invalid parameter at 'imageDigest': {m}")),
            other => other.into(),
        })?;
    let image_id = ImageId { image_digest: Some(digest.to_string()), image_tag: input.image_tag };
    Ok(PutImageOutput {
        image: ImageShape {
            registry_id: ctx.registry_id().to_string(),
            repository_name: input.repository_name,
            image_id,
            image_manifest: String::from_utf8_lossy(&body).into_owned(),
            image_manifest_media_type: media_type,
        },
    })
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct BatchCheckLayerAvailabilityInput {
    repository_name: String,
    layer_digests: Vec<String>,
}

/// `Layer`.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct Layer {
    layer_digest: String,
    layer_availability: &'static str,
    layer_size: u64,
    media_type: &'static str,
}

/// `LayerFailure`.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct LayerFailure {
    layer_digest: String,
    failure_code: &'static str,
    failure_reason: &'static str,
}

#[derive(Serialize)]
pub(super) struct BatchCheckLayerAvailabilityOutput {
    layers: Vec<Layer>,
    failures: Vec<LayerFailure>,
}

pub(super) async fn batch_check_layer_availability(
    ctx: &Ctx<'_>,
    input: BatchCheckLayerAvailabilityInput,
) -> Result<BatchCheckLayerAvailabilityOutput, EcrError> {
    check_repository_name(&input.repository_name)?;
    let repo = &input.repository_name;
    ctx.repository(repo).await?;
    let (mut layers, mut failures) = (Vec::new(), Vec::new());
    for d in &input.layer_digests {
        let Ok(digest) = Digest::parse(d) else {
            failures.push(LayerFailure {
                layer_digest: d.clone(),
                failure_code: "InvalidLayerDigest",
                failure_reason: "Invalid layer digest",
            });
            continue;
        };
        match ctx.app.registry.layer_size(repo, &digest).await? {
            Some(size) => layers.push(Layer {
                layer_digest: d.clone(),
                layer_availability: "AVAILABLE",
                layer_size: size,
                media_type: "application/vnd.docker.image.rootfs.diff.tar.gzip",
            }),
            None => failures.push(LayerFailure {
                layer_digest: d.clone(),
                failure_code: "MissingLayerDigest",
                failure_reason: "Could not find layer",
            }),
        }
    }
    Ok(BatchCheckLayerAvailabilityOutput { layers, failures })
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct SubjectId {
    image_digest: String,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct ReferrersFilter {
    artifact_types: Option<Vec<String>>,
    artifact_status: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct ListImageReferrersInput {
    repository_name: String,
    subject_id: SubjectId,
    filter: Option<ReferrersFilter>,
    next_token: Option<String>,
    max_results: Option<i64>,
}

/// The same listing as `GET /v2/<name>/referrers/<digest>`, paginated as the ECR API does.
/// `ImageReferrer`.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct ImageReferrer {
    digest: String,
    media_type: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    artifact_type: Option<String>,
    size: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    annotations: Option<std::collections::BTreeMap<String, String>>,
    artifact_status: &'static str,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct ListImageReferrersOutput {
    referrers: Vec<ImageReferrer>,
    #[serde(skip_serializing_if = "Option::is_none")]
    next_token: Option<String>,
}

pub(super) async fn list_image_referrers(
    ctx: &Ctx<'_>,
    input: ListImageReferrersInput,
) -> Result<ListImageReferrersOutput, EcrError> {
    let repo = &input.repository_name;
    ctx.existing_repository(repo).await?;
    let filter = input.filter.unwrap_or_default();
    let types = filter.artifact_types.unwrap_or_default();
    if let Some(s) = &filter.artifact_status
        && !matches!(s.as_str(), "ACTIVE" | "ANY")
    {
        // Berth keeps every image ACTIVE until the archive storage class exists.
        return Ok(ListImageReferrersOutput { referrers: Vec::new(), next_token: None });
    }
    let limit = input.max_results.map_or(50, |n| n as usize);
    let after = ctx.decode_token(&input.next_token)?;
    let mut found =
        ctx.app.registry.referrers(repo, &input.subject_id.image_digest, None).await.map_err(|e| match e {
            RegistryError::DigestInvalid(m) => {
                EcrError::invalid(format!("Invalid parameter at 'subjectId.imageDigest': {m}"))
            }
            other => other.into(),
        })?;
    found.retain(|m| types.is_empty() || m.artifact_type.as_ref().is_some_and(|a| types.contains(a)));
    found.retain(|m| after.as_ref().is_none_or(|a| m.digest.as_str() > a.as_str()));
    let more = found.len() > limit;
    found.truncate(limit);
    let next_token = found.last().filter(|_| more).map(|last| ctx.encode_token(&last.digest));
    let referrers = found
        .into_iter()
        .map(|m| ImageReferrer {
            annotations: m.annotations.as_deref().and_then(|a| serde_json::from_str(a).ok()),
            digest: m.digest,
            media_type: m.media_type,
            artifact_type: m.artifact_type,
            size: m.size,
            artifact_status: "ACTIVE",
        })
        .collect();
    Ok(ListImageReferrersOutput { referrers, next_token })
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct UpdateImageStorageClassInput {
    repository_name: String,
    image_id: ImageId,
    target_storage_class: String,
}

/// Archives an image (no longer pullable, still listed) or restores it. Berth keeps archived
/// bytes where they were, so a restore completes at once and the image is `ACTIVE` again.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct UpdateImageStorageClassOutput {
    registry_id: String,
    repository_name: String,
    image_id: ImageId,
    image_status: &'static str,
}

pub(super) async fn update_image_storage_class(
    ctx: &Ctx<'_>,
    input: UpdateImageStorageClassInput,
) -> Result<UpdateImageStorageClassOutput, EcrError> {
    let repo = &input.repository_name;
    ctx.existing_repository(repo).await?;
    let target = match input.target_storage_class.as_str() {
        "ARCHIVE" => StorageClass::Archive,
        "STANDARD" => StorageClass::Standard,
        other => {
            return Err(EcrError::invalid(format!(
                "Invalid parameter at 'targetStorageClass' failed to satisfy constraint: 'Member must satisfy enum value set: [STANDARD, ARCHIVE]' (got {other:?})"
            )));
        }
    };
    let digest = ctx.resolve_one(repo, &input.image_id).await?;
    let image = ctx
        .app
        .registry
        .update_image_storage_class(repo, digest.as_str(), target, berth_meta::now_ms())
        .await?
        .ok_or_else(|| image_not_found(ctx, repo, &input.image_id))?;
    Ok(UpdateImageStorageClassOutput {
        registry_id: ctx.registry_id().to_string(),
        repository_name: repo.clone(),
        image_id: ImageId::resolved(&digest, &input.image_id),
        image_status: image_status(image.archived),
    })
}
