//! The image operations: listing, describing, getting, putting and deleting images, and
//! checking layers. `BatchGetImage` and `PutImage` go through the same registry calls as the
//! `/v2/` manifest GET and PUT.

use berth_meta::{ImageFilter, ImageRecord, ImageScan, StatusFilter, TagFilter};
use berth_oci::{Digest, ErrorCode, validate_tag};
use berth_policy::lifecycle::StorageClass;
use berth_registry::RegistryError;
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

/// A listing filter; without `imageStatus`, ECR lists only `ACTIVE` images.
fn image_filter(f: &Option<Filter>) -> Result<ImageFilter, EcrError> {
    let tags = match f.as_ref().and_then(|f| f.tag_status.as_deref()) {
        None | Some("ANY") => TagFilter::Any,
        Some("TAGGED") => TagFilter::Tagged,
        Some("UNTAGGED") => TagFilter::Untagged,
        Some(other) => {
            return Err(EcrError::invalid(format!(
                "Invalid parameter at 'tagStatus' failed to satisfy constraint: 'Member must satisfy enum value set: [TAGGED, UNTAGGED, ANY]' (got {other:?})"
            )));
        }
    };
    let status = match f.as_ref().and_then(|f| f.image_status.as_deref()) {
        None | Some("ACTIVE") => StatusFilter::Active,
        Some("ARCHIVED") => StatusFilter::Archived,
        Some("ACTIVATING") => StatusFilter::Activating,
        Some("ANY") => StatusFilter::Any,
        Some(other) => {
            return Err(EcrError::invalid(format!(
                "Invalid parameter at 'imageStatus' failed to satisfy constraint: 'Member must satisfy enum value set: [ACTIVE, ARCHIVED, ACTIVATING, ANY]' (got {other:?})"
            )));
        }
    };
    Ok(ImageFilter { tags, status })
}

impl Ctx<'_> {
    /// Resolves an image id to its digest (and the tag it named), or an `ImageFailure`.
    async fn resolve(&self, repo: &str, id: &ImageId) -> Result<Result<Digest, Value>, EcrError> {
        let meta = self.app.registry.meta();
        let by_tag = match &id.image_tag {
            Some(t) if validate_tag(t).is_err() => {
                return Ok(Err(failure(id, "InvalidImageTag", format!("Invalid image tag {t:?}"))));
            }
            Some(t) => match meta.resolve_tag(repo, t).await? {
                Some(d) => Some(d),
                None => return Ok(Err(failure(id, "ImageNotFound", "Requested image not found"))),
            },
            None => None,
        };
        let by_digest = match &id.image_digest {
            Some(d) => match Digest::parse(d) {
                Ok(d) => Some(d),
                Err(_) => return Ok(Err(failure(id, "InvalidImageDigest", format!("Invalid image digest {d:?}")))),
            },
            None => None,
        };
        let digest = match (by_tag, by_digest) {
            (None, None) => {
                return Ok(Err(failure(
                    id,
                    "MissingDigestAndTag",
                    "Invalid request parameters: both tag and digest cannot be null",
                )));
            }
            (Some(t), Some(d)) if t != d => {
                return Ok(Err(failure(
                    id,
                    "ImageTagDoesNotMatchDigest",
                    "Invalid request parameters: image tag digest did not match image digest",
                )));
            }
            (Some(d), _) | (None, Some(d)) => d,
        };
        if meta.manifest(repo, &digest).await?.is_none() {
            return Ok(Err(failure(id, "ImageNotFound", "Requested image not found")));
        }
        Ok(Ok(digest))
    }

    /// Resolves one image id for an operation on a single image: a missing image is
    /// `ImageNotFoundException`, a malformed id `InvalidParameterException`.
    pub(super) async fn resolve_one(&self, repo: &str, id: &ImageId) -> Result<Digest, EcrError> {
        match self.resolve(repo, id).await? {
            Ok(d) => Ok(d),
            Err(f) if f["failureCode"] == "ImageNotFound" => Err(image_not_found(self, repo, id)),
            Err(f) => Err(EcrError::invalid(f["failureReason"].as_str().unwrap_or("invalid imageId").to_string())),
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

    async fn image_detail(&self, repo: &str, image: &ImageRecord, scan: Option<&ImageScan>) -> Result<Value, EcrError> {
        // A multi-architecture index is as large as its largest image.
        let mut size = image.blob_bytes;
        for child in &image.children {
            if let Some(c) = self.app.registry.meta().image(repo, child).await? {
                size = size.max(c.blob_bytes);
            }
        }
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
        if let Some(scan) = scan {
            v["imageScanStatus"] = super::scanning::status_json(scan);
            if let Some(summary) = super::scanning::summary_json(scan) {
                v["imageScanFindingsSummary"] = summary;
            }
        }
        Ok(v)
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
    ctx.existing_repository(&input.repository_name).await?;
    let limit = page_size(input.max_results, 100)?;
    let filter = image_filter(&input.filter)?;
    let after = ctx.decode_token(&input.next_token)?;
    let after = after.as_deref().map(|t| t.split_once(' ').unwrap_or((t, "")));
    let mut ids = ctx.app.registry.meta().list_image_ids(&input.repository_name, after, limit + 1, filter).await?;
    let more = ids.len() > limit as usize;
    ids.truncate(limit as usize);
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
    let meta = ctx.app.registry.meta();
    no_paging_with(input.image_ids.is_some(), &input.max_results, &input.next_token, "imageIds")?;
    if let Some(ids) = &input.image_ids {
        check_ids(ids)?;
        let mut details = Vec::new();
        for id in ids {
            match ctx.resolve(repo, id).await? {
                Ok(d) => {
                    let image = meta.image(repo, d.as_str()).await?.ok_or_else(|| image_not_found(ctx, repo, id))?;
                    let scan = meta.image_scan_summaries(repo, std::slice::from_ref(&image.digest)).await?.pop();
                    details.push(ctx.image_detail(repo, &image, scan.as_ref()).await?);
                }
                Err(_) => return Err(image_not_found(ctx, repo, id)),
            }
        }
        return Ok(json!({ "imageDetails": details }));
    }
    let limit = page_size(input.max_results, 100)?;
    let after = ctx.decode_token(&input.next_token)?;
    let mut images = meta.list_images(repo, after.as_deref(), limit + 1, image_filter(&input.filter)?).await?;
    let more = images.len() > limit as usize;
    images.truncate(limit as usize);
    let digests: Vec<String> = images.iter().map(|i| i.digest.clone()).collect();
    let scans: std::collections::HashMap<String, ImageScan> =
        meta.image_scan_summaries(repo, &digests).await?.into_iter().map(|s| (s.digest.clone(), s)).collect();
    let mut details = Vec::with_capacity(images.len());
    for image in &images {
        details.push(ctx.image_detail(repo, image, scans.get(&image.digest)).await?);
    }
    let mut out = json!({ "imageDetails": details });
    if more && let Some(last) = images.last() {
        out["nextToken"] = ctx.encode_token(&last.digest).into();
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
        let digest = match ctx.resolve(repo, id).await? {
            Ok(d) => d,
            Err(f) => {
                failures.push(f);
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
            Err(RegistryError::Oci { code: ErrorCode::ManifestUnknown, detail: Some(d), .. })
                if d["imageStatus"] == "ARCHIVED" =>
            {
                failures.push(failure(
                    id,
                    "ImageNotFound",
                    "Requested image is archived; restore it with UpdateImageStorageClass to pull it",
                ));
            }
            Err(RegistryError::Oci { code: ErrorCode::ManifestUnknown, message, .. }) => {
                failures.push(failure(id, "UnsupportedImageType", message));
            }
            // The pull policy refused it.
            Err(RegistryError::Oci { code: ErrorCode::Denied, message, .. }) => {
                failures.push(failure(id, "ImageInaccessible", message));
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
    let meta = ctx.app.registry.meta();
    let (mut deleted, mut failures) = (Vec::new(), Vec::new());
    for id in &input.image_ids {
        let digest = match ctx.resolve(repo, id).await? {
            Ok(d) => d,
            Err(f) => {
                failures.push(f);
                continue;
            }
        };
        // A tag alone removes that tag; the image goes with its last tag, as in ECR.
        if let (Some(tag), None) = (&id.image_tag, &id.image_digest) {
            meta.delete_tag(repo, tag).await?;
            let remaining = meta.image(repo, digest.as_str()).await?.map(|i| i.tags.len()).unwrap_or(0);
            if remaining > 0 {
                deleted.push(json!({ "imageDigest": digest.as_str(), "imageTag": tag }));
                continue;
            }
        }
        let tags = match ctx.app.registry.delete_image(repo, &digest).await? {
            Ok(tags) => tags,
            Err(parents) => {
                failures.push(failure(
                    id,
                    "ImageReferencedByManifestList",
                    format!("Requested image referenced by manifest list: [{}]", parents.join(", ")),
                ));
                continue;
            }
        };
        if tags.is_empty() {
            let mut v = json!({ "imageDigest": digest.as_str() });
            if let Some(t) = &id.image_tag {
                v["imageTag"] = t.clone().into();
            }
            deleted.push(v);
        }
        for t in tags {
            deleted.push(json!({ "imageDigest": digest.as_str(), "imageTag": t }));
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
    if ctx.app.registry.meta().repository(repo).await?.is_none() {
        // As on /v2/: only a CREATE_ON_PUSH template may create it.
        ctx.app.registry.repository_for_push(repo).await.map_err(|_| ctx.not_found(repo))?;
    }
    let body = input.image_manifest.into_bytes();
    let expected = match &input.image_digest {
        Some(d) => {
            Some(Digest::parse(d).map_err(|e| EcrError::invalid(format!("Invalid parameter at 'imageDigest': {e}")))?)
        }
        None => None,
    };
    let digest = Digest::from_bytes(expected.as_ref().map_or(berth_oci::Algorithm::Sha256, |d| d.algorithm()), &body);
    if let Some(e) = &expected
        && *e != digest
    {
        return Err(EcrError::new(
            "ImageDigestDoesNotMatchException",
            format!("Invalid parameter at 'imageDigest': the digest {e} does not match the manifest's digest {digest}"),
        ));
    }
    let meta = ctx.app.registry.meta();
    // Putting an archived image again restores it, as a re-push does in ECR.
    let stored = meta.manifest(repo, &digest).await?;
    let exists = match (&stored, &input.image_tag) {
        (Some(m), _) if m.archived => false,
        (_, Some(t)) => meta.resolve_tag(repo, t).await?.as_ref() == Some(&digest),
        (stored, None) => stored.is_some(),
    };
    if exists {
        return Err(EcrError::new(
            "ImageAlreadyExistsException",
            format!(
                "Image with digest '{digest}' and tag '{}' already exists in the repository with name '{repo}' in registry with id '{}'",
                input.image_tag.as_deref().unwrap_or("null"),
                ctx.registry_id()
            ),
        ));
    }
    let reference = input.image_tag.clone().unwrap_or_else(|| digest.to_string());
    let put = ctx
        .app
        .registry
        .put_manifest(repo, &reference, input.image_manifest_media_type.as_deref(), body.clone(), &[])
        .await
        .map_err(|e| put_error(ctx, repo, e))?;
    let mut image_id = json!({ "imageDigest": put.digest.as_str() });
    if let Some(t) = &input.image_tag {
        image_id["imageTag"] = t.clone().into();
    }
    let stored = meta.manifest(repo, &put.digest).await?.map(|m| m.media_type).unwrap_or_default();
    Ok(json!({ "image": {
        "registryId": ctx.registry_id(),
        "repositoryName": repo,
        "imageId": image_id,
        "imageManifest": String::from_utf8_lossy(&body),
        "imageManifestMediaType": stored,
    }}))
}

/// The registry's refusal of a manifest, as PutImage names it.
fn put_error(ctx: &Ctx<'_>, repo: &str, e: RegistryError) -> EcrError {
    let RegistryError::Oci { code, message, detail } = e else { return e.into() };
    let list = |key: &str| -> Vec<String> {
        detail
            .as_ref()
            .and_then(|d| d[key].as_array().cloned())
            .unwrap_or_default()
            .iter()
            .filter_map(|v| v.as_str().map(String::from))
            .collect()
    };
    match code {
        ErrorCode::TagInvalid if detail.as_ref().is_some_and(|d| d["immutable"] == true) => {
            EcrError::new("ImageTagAlreadyExistsException", message)
        }
        ErrorCode::ManifestBlobUnknown if !list("manifests").is_empty() => EcrError::new(
            "ReferencedImagesNotFoundException",
            format!(
                "Manifests with digests '{:?}' referenced by the image do not exist in the repository with name '{repo}'",
                list("manifests")
            ),
        ),
        ErrorCode::ManifestBlobUnknown => EcrError::new(
            "LayersNotFoundException",
            format!(
                "Layers with digests '{:?}' required for pushing image into repository with name '{repo}' in the registry with id '{}' do not exist",
                list("blobs"),
                ctx.registry_id()
            ),
        ),
        ErrorCode::NameUnknown => ctx.not_found(repo),
        _ => EcrError::invalid(format!("Invalid parameter: {message}")),
    }
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
        match ctx.app.registry.meta().linked_blob(repo, &digest).await? {
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
            RegistryError::Oci { code: ErrorCode::DigestInvalid, message, .. } => {
                EcrError::invalid(format!("Invalid parameter at 'subjectId.imageDigest': {message}"))
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
    if target == StorageClass::Archive
        && !ctx.app.registry.meta().manifest_parents(repo, digest.as_str()).await?.is_empty()
    {
        return Err(EcrError::new(
            "ImageStorageClassUpdateNotSupportedException",
            "An image listed by a multi-architecture index is archived with its index, not on its own",
        ));
    }
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
