//! Layer operations of the ECR API: the three-step upload, layer download URLs. The upload
//! steps are the same registry calls as `POST/PATCH/PUT …/blobs/uploads/` on `/v2/`.

use base64::Engine;
use berth_oci::{ContentRange, Digest, ErrorCode};
use berth_registry::RegistryError;
use bytes::Bytes;
use serde::Deserialize;
use serde_json::json;

use super::{Ctx, EcrError, EcrResult, check_repository_name};
use crate::http::now_seconds;

/// Parts other than the last must be at least this large, as in ECR.
const MIN_PART: usize = 5 * 1024 * 1024;
/// The part size Berth suggests; parts are at most 20 MiB (the model's limit).
const PART_SIZE: u64 = 10 * 1024 * 1024;
/// How long a download URL stays valid.
const DOWNLOAD_URL_SECONDS: i64 = 3600;

fn upload_not_found(ctx: &Ctx<'_>, repo: &str, id: &str) -> EcrError {
    EcrError::new(
        "UploadNotFoundException",
        format!(
            "The upload with id '{id}' does not exist in the repository with name '{repo}' in the registry with id '{}'",
            ctx.registry_id()
        ),
    )
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct InitiateInput {
    repository_name: String,
}

pub(super) async fn initiate_layer_upload(ctx: &Ctx<'_>, input: InitiateInput) -> EcrResult {
    check_repository_name(&input.repository_name)?;
    let repo = &input.repository_name;
    let id = ctx.app.registry.start_upload(repo, None).await.map_err(|e| match e {
        RegistryError::Oci { code: ErrorCode::NameUnknown, .. } => ctx.not_found(repo),
        other => other.into(),
    })?;
    Ok(json!({ "uploadId": id, "partSize": PART_SIZE }))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct UploadPartInput {
    repository_name: String,
    upload_id: String,
    part_first_byte: u64,
    part_last_byte: u64,
    layer_part_blob: String,
}

pub(super) async fn upload_layer_part(ctx: &Ctx<'_>, input: UploadPartInput) -> EcrResult {
    let repo = &input.repository_name;
    ctx.existing_repository(repo).await?;
    let data = base64::engine::general_purpose::STANDARD
        .decode(input.layer_part_blob.as_bytes())
        .map_err(|_| EcrError::invalid("Invalid parameter at 'layerPartBlob': not base64"))?;
    let invalid_part = |message: String, last: Option<u64>| {
        let mut e = EcrError::new("InvalidLayerPartException", message);
        if let Some(l) = last {
            e.message = format!("{} (last valid byte received: {l})", e.message);
        }
        e
    };
    let range = ContentRange { start: input.part_first_byte, end: input.part_last_byte };
    let len = data.len();
    let body: berth_store::ByteStream = Box::pin(futures_util::stream::once(async move { Ok(Bytes::from(data)) }));
    let reg = &ctx.app.registry;
    let size = match reg.append_upload(repo, &input.upload_id, Some(range), Some(len as u64), body).await {
        Ok(size) => size,
        Err(RegistryError::Oci { code: ErrorCode::BlobUploadUnknown, .. }) => {
            return Err(upload_not_found(ctx, repo, &input.upload_id));
        }
        // A part that does not start where the upload ends, or whose range does not match its
        // bytes (the registry checks both, without wrapping arithmetic).
        Err(RegistryError::Oci { code: ErrorCode::RangeInvalid, message, detail }) => {
            return Err(match detail.and_then(|d| d["offset"].as_u64()) {
                Some(have) => invalid_part(
                    format!("The part starts at byte {} but the upload has {have} bytes", input.part_first_byte),
                    have.checked_sub(1),
                ),
                None => invalid_part(format!("The part is invalid: {message}"), None),
            });
        }
        Err(e) => return Err(e.into()),
    };
    reg.meta().note_upload_part(&input.upload_id, len < MIN_PART).await?;
    Ok(json!({
        "registryId": ctx.registry_id(),
        "repositoryName": repo,
        "uploadId": input.upload_id,
        "lastByteReceived": size.saturating_sub(1),
    }))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct CompleteInput {
    repository_name: String,
    upload_id: String,
    layer_digests: Vec<String>,
}

pub(super) async fn complete_layer_upload(ctx: &Ctx<'_>, input: CompleteInput) -> EcrResult {
    let repo = &input.repository_name;
    ctx.existing_repository(repo).await?;
    let [digest] = input.layer_digests.as_slice() else {
        return Err(EcrError::invalid("layerDigests must name exactly one digest"));
    };
    let reg = &ctx.app.registry;
    let upload = reg.meta().upload(&input.upload_id).await?.filter(|u| &u.repository == repo);
    let Some(upload) = upload else { return Err(upload_not_found(ctx, repo, &input.upload_id)) };
    if upload.part_too_small {
        reg.cancel_upload(repo, &input.upload_id).await.ok();
        return Err(EcrError::new(
            "LayerPartTooSmallException",
            format!("Layer parts must be at least {MIN_PART} bytes, but for the last part"),
        ));
    }
    if reg.upload_status(repo, &input.upload_id).await? == 0 {
        return Err(EcrError::new(
            "EmptyUploadException",
            "The specified layer upload does not contain any layer parts",
        ));
    }
    Digest::parse(digest).map_err(|e| EcrError::new("InvalidLayerException", format!("Invalid layer digest: {e}")))?;
    let done = reg.complete_upload(repo, &input.upload_id, digest, None, None).await.map_err(|e| match e {
        RegistryError::Oci { code: ErrorCode::DigestInvalid, message, .. } => {
            EcrError::new("InvalidLayerException", message)
        }
        RegistryError::Oci { code: ErrorCode::BlobUploadUnknown, .. } => upload_not_found(ctx, repo, &input.upload_id),
        other => other.into(),
    })?;
    // Decided where the link is made: of two uploads of one layer racing, one is told it
    // already exists.
    if done.already_linked {
        return Err(EcrError::new(
            "LayerAlreadyExistsException",
            format!(
                "The layer '{digest}' already exists in the repository with name '{repo}' in the registry with id '{}'",
                ctx.registry_id()
            ),
        ));
    }
    let d = done.digest;
    Ok(json!({
        "registryId": ctx.registry_id(),
        "repositoryName": repo,
        "uploadId": input.upload_id,
        "layerDigest": d.as_str(),
    }))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct DownloadUrlInput {
    repository_name: String,
    layer_digest: String,
}

pub(super) async fn get_download_url_for_layer(ctx: &Ctx<'_>, input: DownloadUrlInput) -> EcrResult {
    let repo = &input.repository_name;
    ctx.existing_repository(repo).await?;
    let digest = Digest::parse(&input.layer_digest)
        .map_err(|e| EcrError::invalid(format!("Invalid parameter at 'layerDigest': {e}")))?;
    if ctx.app.registry.meta().linked_blob(repo, &digest).await?.is_none() {
        return Err(EcrError::new(
            "LayersNotFoundException",
            format!(
                "The layer '{digest}' does not exist in the repository with name '{repo}' in the registry with id '{}'",
                ctx.registry_id()
            ),
        ));
    }
    let expires = now_seconds() + DOWNLOAD_URL_SECONDS;
    let signature = ctx.app.identity.presign_download(repo, digest.as_str(), expires);
    Ok(json!({
        "downloadUrl": format!("{}/v2/{repo}/blobs/{digest}?X-Berth-Expires={expires}&X-Berth-Signature={signature}", ctx.endpoint),
        "layerDigest": digest.as_str(),
    }))
}
