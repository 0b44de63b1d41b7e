//! The image operations: listing, describing, getting, putting and deleting images, and
//! checking layers. `BatchGetImage` and `PutImage` go through the same registry calls as the
//! `/v2/` manifest GET and PUT.

use berth_meta::{ImageFilter, StatusFilter, TagFilter};
use berth_oci::Digest;
use berth_policy::lifecycle::StorageClass;
use berth_registry::RegistryError;
use berth_registry::images::{ImageDetail, ImageIdFailure, ImageRef, listing_filter};
use serde::Deserialize;
use serde_json::{Value, json};

use super::{Ctx, EcrError, EcrResult, check_repository_name, no_paging_with, page_size};

#[derive(Deserialize, Clone, Debug, Default)]
#[serde(rename_all = "camelCase")]
pub(super) struct ImageId {
    pub(super) image_digest: Option<String>,
    pub(super) image_tag: Option<String>,
}

impl ImageId {
    /// Whether this id names the image with `digest` and `tags`.
    pub(super) fn matches(&self, digest: &str, tags: Option<&Vec<Value>>) -> bool {
        let digest_ok = self.image_digest.as_deref().is_none_or(|d| d == digest);
        let tag_ok = self.image_tag.as_deref().is_none_or(|t| tags.is_some_and(|ts| ts.iter().any(|x| x == t)));
        (self.image_digest.is_some() || self.image_tag.is_some()) && digest_ok && tag_ok
    }

    fn json(&self) -> Value {
        let mut v = json!({});
        if let Some(d) = &self.image_digest {
            v["imageDigest"] = d.clone().into();
        }
        if let Some(t) = &self.image_tag {
            v["imageTag"] = t.clone().into();
        }
        v
    }
}

fn failure(id: &ImageId, code: &str, reason: impl Into<String>) -> Value {
    json!({ "imageId": id.json(), "failureCode": code, "failureReason": reason.into() })
}

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

impl ImageId {
    pub(super) fn as_ref(&self) -> ImageRef<'_> {
        ImageRef { tag: self.image_tag.as_deref(), digest: self.image_digest.as_deref() }
    }
}

/// An id that names no image, as `ImageFailure` reports it.
fn id_failure(id: &ImageId, f: ImageIdFailure) -> Value {
    match f {
        ImageIdFailure::InvalidTag(t) => failure(id, "InvalidImageTag", format!("Invalid image tag {t:?}")),
        ImageIdFailure::InvalidDigest(d) => failure(id, "InvalidImageDigest", format!("Invalid image digest {d:?}")),
        ImageIdFailure::MissingDigestAndTag => {
            failure(id, "MissingDigestAndTag", "Invalid request parameters: both tag and digest cannot be null")
        }
        ImageIdFailure::TagDoesNotMatchDigest => failure(
            id,
            "ImageTagDoesNotMatchDigest",
            "Invalid request parameters: image tag digest did not match image digest",
        ),
        ImageIdFailure::NotFound => failure(id, "ImageNotFound", "Requested image not found"),
        ImageIdFailure::ReferencedByIndex(parents) => failure(
            id,
            "ImageReferencedByManifestList",
            format!("Requested image referenced by manifest list: [{}]", parents.join(", ")),
        ),
    }
}

impl Ctx<'_> {
    /// Resolves one image id for an operation on a single image: a missing image is
    /// `ImageNotFoundException`, a malformed id `InvalidParameterException`.
    pub(super) async fn resolve_one(&self, repo: &str, id: &ImageId) -> Result<Digest, EcrError> {
        match self.app.registry.resolve_image(repo, id.as_ref()).await? {
            Ok(d) => Ok(d),
            Err(ImageIdFailure::NotFound) => Err(image_not_found(self, repo, id)),
            Err(f) => Err(EcrError::invalid(
                id_failure(id, f)["failureReason"].as_str().unwrap_or("invalid imageId").to_string(),
            )),
        }
    }

    /// The `imageId` of a response: the digest, and the tag if the request named one.
    pub(super) fn image_id_json(&self, digest: &Digest, id: &ImageId) -> Value {
        let mut v = json!({ "imageDigest": digest.as_str() });
        if let Some(t) = &id.image_tag {
            v["imageTag"] = t.clone().into();
        }
        v
    }

    fn image_detail(&self, repo: &str, detail: &ImageDetail) -> Value {
        let (image, size) = (&detail.record, detail.size);
        let mut v = json!({
            "registryId": self.registry_id(),
            "repositoryName": repo,
            "imageDigest": image.digest,
            "imageSizeInBytes": size,
            "imagePushedAt": image.pushed_at as f64 / 1000.0,
            "imageManifestMediaType": image.media_type,
            "imageStatus": if image.archived { "ARCHIVED" } else { "ACTIVE" },
        });
        if let Some(t) = image.last_archived_at {
            v["lastArchivedAt"] = (t as f64 / 1000.0).into();
        }
        if let Some(t) = image.last_activated_at {
            v["lastActivatedAt"] = (t as f64 / 1000.0).into();
        }
        if !image.tags.is_empty() {
            v["imageTags"] = image.tags.clone().into();
        }
        if let Some(a) = &image.artifact_type {
            v["artifactMediaType"] = a.clone().into();
        }
        if let Some(t) = image.last_pulled_at {
            v["lastRecordedPullTime"] = (t as f64 / 1000.0).into();
        }
        if let Some(s) = &image.subject {
            v["subjectManifestDigest"] = s.clone().into();
        }
        if let Some(scan) = &detail.scan {
            v["imageScanStatus"] = super::scanning::status_json(scan);
            if let Some(summary) = super::scanning::summary_json(scan) {
                v["imageScanFindingsSummary"] = summary;
            }
        }
        v
    }
}

fn check_ids(ids: &[ImageId]) -> Result<(), EcrError> {
    if ids.is_empty() || ids.len() > 100 {
        return Err(EcrError::invalid("imageIds must hold between 1 and 100 image ids"));
    }
    Ok(())
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct ListImagesInput {
    repository_name: String,
    next_token: Option<String>,
    max_results: Option<i64>,
    filter: Option<Filter>,
}

pub(super) async fn list_images(ctx: &Ctx<'_>, input: ListImagesInput) -> EcrResult {
    check_repository_name(&input.repository_name)?;
    let limit = page_size(input.max_results, 100)?;
    let filter = image_filter(&input.filter)?;
    let after = ctx.decode_token(&input.next_token)?;
    let after = after.as_deref().map(|t| t.split_once(' ').unwrap_or((t, "")));
    let (ids, more) = ctx.app.registry.list_image_ids(&input.repository_name, after, limit, filter).await?;
    let items: Vec<Value> = ids
        .iter()
        .map(|(d, t)| match t {
            Some(t) => json!({ "imageDigest": d, "imageTag": t }),
            None => json!({ "imageDigest": d }),
        })
        .collect();
    let mut out = json!({ "imageIds": items });
    if more && let Some((d, t)) = ids.last() {
        out["nextToken"] = ctx.encode_token(&format!("{d} {}", t.as_deref().unwrap_or(""))).into();
    }
    Ok(out)
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

pub(super) async fn describe_images(ctx: &Ctx<'_>, input: DescribeImagesInput) -> EcrResult {
    let repo = &input.repository_name;
    ctx.existing_repository(repo).await?;
    let registry = &ctx.app.registry;
    no_paging_with(input.image_ids.is_some(), &input.max_results, &input.next_token, "imageIds")?;
    if let Some(ids) = &input.image_ids {
        check_ids(ids)?;
        let mut details = Vec::new();
        for id in ids {
            let Ok(digest) = registry.resolve_image(repo, id.as_ref()).await? else {
                return Err(image_not_found(ctx, repo, id));
            };
            let detail = registry.describe_image(repo, &digest).await?.ok_or_else(|| image_not_found(ctx, repo, id))?;
            details.push(ctx.image_detail(repo, &detail));
        }
        return Ok(json!({ "imageDetails": details }));
    }
    let limit = page_size(input.max_results, 100)?;
    let after = ctx.decode_token(&input.next_token)?;
    let (images, more) = registry.describe_images(repo, after.as_deref(), limit, image_filter(&input.filter)?).await?;
    let details: Vec<Value> = images.iter().map(|d| ctx.image_detail(repo, d)).collect();
    let mut out = json!({ "imageDetails": details });
    if more && let Some(last) = images.last() {
        out["nextToken"] = ctx.encode_token(&last.record.digest).into();
    }
    Ok(out)
}

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

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct BatchGetImageInput {
    repository_name: String,
    image_ids: Vec<ImageId>,
    accepted_media_types: Option<Vec<String>>,
}

pub(super) async fn batch_get_image(ctx: &Ctx<'_>, input: BatchGetImageInput) -> EcrResult {
    check_repository_name(&input.repository_name)?;
    check_ids(&input.image_ids)?;
    let repo = &input.repository_name;
    ctx.repository(repo).await?;
    let accepted: Vec<&str> = input.accepted_media_types.iter().flatten().map(String::as_str).collect();
    let accept = if accepted.is_empty() { vec!["*/*"] } else { accepted };
    let (mut images, mut failures) = (Vec::new(), Vec::new());
    for id in &input.image_ids {
        let digest = match ctx.app.registry.resolve_image(repo, id.as_ref()).await? {
            Ok(d) => d,
            Err(f) => {
                failures.push(id_failure(id, f));
                continue;
            }
        };
        // The same call as GET /v2/<name>/manifests/<digest>, Accept and all.
        match ctx.app.registry.get_manifest(repo, digest.as_str(), &accept).await {
            Ok(m) => {
                ctx.app.registry.record_pull(repo, &m.digest);
                let mut image_id = json!({ "imageDigest": m.digest.as_str() });
                if let Some(t) = &id.image_tag {
                    image_id["imageTag"] = t.clone().into();
                }
                images.push(json!({
                    "registryId": ctx.registry_id(),
                    "repositoryName": repo,
                    "imageId": image_id,
                    "imageManifest": String::from_utf8_lossy(&m.content),
                    "imageManifestMediaType": m.media_type,
                }));
            }
            Err(RegistryError::ManifestArchived { .. }) => {
                failures.push(failure(
                    id,
                    "ImageNotFound",
                    "Requested image is archived; restore it with UpdateImageStorageClass to pull it",
                ));
            }
            Err(e @ (RegistryError::ManifestNotAccepted { .. } | RegistryError::ManifestNotFound { .. })) => {
                failures.push(failure(id, "UnsupportedImageType", e.to_string()));
            }
            // The pull policy refused it.
            Err(e @ RegistryError::PullBlocked { .. }) => {
                failures.push(failure(id, "ImageInaccessible", e.to_string()));
            }
            Err(e) => return Err(e.into()),
        }
    }
    Ok(json!({ "images": images, "failures": failures }))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct BatchDeleteImageInput {
    repository_name: String,
    image_ids: Vec<ImageId>,
}

pub(super) async fn batch_delete_image(ctx: &Ctx<'_>, input: BatchDeleteImageInput) -> EcrResult {
    check_repository_name(&input.repository_name)?;
    check_ids(&input.image_ids)?;
    let repo = &input.repository_name;
    ctx.repository(repo).await?;
    let (mut deleted, mut failures) = (Vec::new(), Vec::new());
    for id in &input.image_ids {
        let removed = match ctx.app.registry.delete_image_by_id(repo, id.as_ref()).await? {
            Ok(removed) => removed,
            Err(f) => {
                failures.push(id_failure(id, f));
                continue;
            }
        };
        if removed.tags.is_empty() {
            deleted.push(ctx.image_id_json(&removed.digest, id));
        }
        for t in removed.tags {
            deleted.push(json!({ "imageDigest": removed.digest.as_str(), "imageTag": t }));
        }
    }
    Ok(json!({ "imageIds": deleted, "failures": failures }))
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

pub(super) async fn put_image(ctx: &Ctx<'_>, input: PutImageInput) -> EcrResult {
    check_repository_name(&input.repository_name)?;
    let repo = &input.repository_name;
    let body = input.image_manifest.into_bytes();
    let (digest, media_type) = ctx
        .app
        .registry
        .put_image(
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
    let mut image_id = json!({ "imageDigest": digest.as_str() });
    if let Some(t) = &input.image_tag {
        image_id["imageTag"] = t.clone().into();
    }
    Ok(json!({ "image": {
        "registryId": ctx.registry_id(),
        "repositoryName": repo,
        "imageId": image_id,
        "imageManifest": String::from_utf8_lossy(&body),
        "imageManifestMediaType": media_type,
    }}))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct BatchCheckLayerAvailabilityInput {
    repository_name: String,
    layer_digests: Vec<String>,
}

pub(super) async fn batch_check_layer_availability(
    ctx: &Ctx<'_>,
    input: BatchCheckLayerAvailabilityInput,
) -> EcrResult {
    check_repository_name(&input.repository_name)?;
    if input.layer_digests.is_empty() || input.layer_digests.len() > 100 {
        return Err(EcrError::invalid("layerDigests must hold between 1 and 100 digests"));
    }
    let repo = &input.repository_name;
    ctx.repository(repo).await?;
    let (mut layers, mut failures) = (Vec::new(), Vec::new());
    for d in &input.layer_digests {
        let Ok(digest) = Digest::parse(d) else {
            failures.push(json!({ "layerDigest": d, "failureCode": "InvalidLayerDigest", "failureReason": "Invalid layer digest" }));
            continue;
        };
        match ctx.app.registry.layer_size(repo, &digest).await? {
            Some(size) => layers.push(json!({
                "layerDigest": d,
                "layerAvailability": "AVAILABLE",
                "layerSize": size,
                "mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip",
            })),
            None => failures.push(json!({ "layerDigest": d, "failureCode": "MissingLayerDigest", "failureReason": "Could not find layer" })),
        }
    }
    Ok(json!({ "layers": layers, "failures": failures }))
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
pub(super) async fn list_image_referrers(ctx: &Ctx<'_>, input: ListImageReferrersInput) -> EcrResult {
    let repo = &input.repository_name;
    ctx.existing_repository(repo).await?;
    let filter = input.filter.unwrap_or_default();
    let types = filter.artifact_types.unwrap_or_default();
    if types.len() > 5 {
        return Err(EcrError::invalid("artifactTypes may hold at most 5 types"));
    }
    if let Some(s) = &filter.artifact_status
        && !matches!(s.as_str(), "ACTIVE" | "ANY")
    {
        // Berth keeps every image ACTIVE until the archive storage class exists.
        return Ok(json!({ "referrers": [] }));
    }
    let limit = match input.max_results {
        None => 50,
        Some(n) if (1..=50).contains(&n) => n as usize,
        Some(n) => {
            return Err(EcrError::invalid(format!(
                "Invalid parameter at 'maxResults' failed to satisfy constraint: 'Member must have value between 1 and 50' (got {n})"
            )));
        }
    };
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
    let referrers: Vec<Value> = found
        .iter()
        .map(|m| {
            let mut v =
                json!({ "digest": m.digest, "mediaType": m.media_type, "size": m.size, "artifactStatus": "ACTIVE" });
            if let Some(a) = &m.artifact_type {
                v["artifactType"] = a.clone().into();
            }
            if let Some(a) = m.annotations.as_ref().and_then(|a| serde_json::from_str::<Value>(a).ok()) {
                v["annotations"] = a;
            }
            v
        })
        .collect();
    let mut out = json!({ "referrers": referrers });
    if more && let Some(last) = found.last() {
        out["nextToken"] = ctx.encode_token(&last.digest).into();
    }
    Ok(out)
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
pub(super) async fn update_image_storage_class(ctx: &Ctx<'_>, input: UpdateImageStorageClassInput) -> EcrResult {
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
    Ok(json!({
        "registryId": ctx.registry_id(),
        "repositoryName": repo,
        "imageId": ctx.image_id_json(&digest, &input.image_id),
        "imageStatus": if image.archived { "ARCHIVED" } else { "ACTIVE" },
    }))
}
