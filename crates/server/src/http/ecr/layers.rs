//! Layer operations of the ECR API: the three-step upload, layer download URLs. The upload
//! steps are the same registry calls as `POST/PATCH/PUT …/blobs/uploads/` on `/v2/`.

use base64::Engine;
use berth_oci::{ContentRange, Digest};
use berth_registry::RegistryError;
use berth_registry::pull_through::FillGrant;
use bytes::Bytes;
use serde::{Deserialize, Serialize};

use super::{Ctx, EcrError, check_repository_name};
use crate::http::now_seconds;

/// The part size Berth suggests; parts are at most 20 MiB (the model's limit).
const PART_SIZE: u64 = 10 * 1024 * 1024;
/// How long a download URL stays valid.
const DOWNLOAD_URL_SECONDS: i64 = 3600;

/// A refusal of an upload step: a missing upload is named with its repository.
fn upload_error(ctx: &Ctx<'_>, repo: &str, id: &str, e: RegistryError) -> EcrError {
    match e {
        RegistryError::UploadNotFound { .. } => EcrError::new(
            "UploadNotFoundException",
            format!(
                "The upload with id '{id}' does not exist in the repository with name '{repo}' in the registry with id '{}'",
                ctx.registry_id()
            ),
        ),
        other => other.into(),
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct InitiateInput {
    repository_name: String,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct InitiateOutput {
    upload_id: String,
    part_size: u64,
}

pub(super) async fn initiate_layer_upload(ctx: &Ctx<'_>, input: InitiateInput) -> Result<InitiateOutput, EcrError> {
    check_repository_name(&input.repository_name)?;
    let upload_id = ctx.app.registry.start_upload(&input.repository_name, None).await?;
    Ok(InitiateOutput { upload_id, part_size: PART_SIZE })
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

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct UploadPartOutput {
    registry_id: String,
    repository_name: String,
    upload_id: String,
    last_byte_received: u64,
}

pub(super) async fn upload_layer_part(ctx: &Ctx<'_>, input: UploadPartInput) -> Result<UploadPartOutput, EcrError> {
    let repo = &input.repository_name;
    ctx.existing_repository(repo).await?;
    let data = base64::engine::general_purpose::STANDARD
        .decode(input.layer_part_blob.as_bytes())
        .map_err(|_| EcrError::invalid("Invalid parameter at 'layerPartBlob': not base64"))?;
    let range = ContentRange { start: input.part_first_byte, end: input.part_last_byte };
    let size = ctx
        .app
        .registry
        .upload_layer_part(repo, &input.upload_id, range, Bytes::from(data))
        .await
        .map_err(|e| upload_error(ctx, repo, &input.upload_id, e))?;
    Ok(UploadPartOutput {
        registry_id: ctx.registry_id().to_string(),
        repository_name: input.repository_name,
        upload_id: input.upload_id,
        last_byte_received: size.saturating_sub(1),
    })
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct CompleteInput {
    repository_name: String,
    upload_id: String,
    layer_digests: Vec<String>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct CompleteOutput {
    registry_id: String,
    repository_name: String,
    upload_id: String,
    layer_digest: String,
}

pub(super) async fn complete_layer_upload(ctx: &Ctx<'_>, input: CompleteInput) -> Result<CompleteOutput, EcrError> {
    let repo = &input.repository_name;
    ctx.existing_repository(repo).await?;
    let [digest] = input.layer_digests.as_slice() else {
        return Err(EcrError::invalid("layerDigests must name exactly one digest"));
    };
    let done = ctx.app.registry.complete_layer_upload(repo, &input.upload_id, digest).await.map_err(|e| match e {
        RegistryError::DigestInvalid(m) => EcrError::new("InvalidLayerException", format!("Invalid layer digest: {m}")),
        other => upload_error(ctx, repo, &input.upload_id, other),
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
    Ok(CompleteOutput {
        registry_id: ctx.registry_id().to_string(),
        repository_name: input.repository_name,
        upload_id: input.upload_id,
        layer_digest: done.digest.to_string(),
    })
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct DownloadUrlInput {
    repository_name: String,
    layer_digest: String,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct DownloadUrlOutput {
    download_url: String,
    layer_digest: String,
}

pub(super) async fn get_download_url_for_layer(
    ctx: &Ctx<'_>,
    input: DownloadUrlInput,
) -> Result<DownloadUrlOutput, EcrError> {
    let repo = &input.repository_name;
    let registry = &ctx.app.registry;
    let cache = match registry.is_cache_repository(repo).await {
        Ok(cache) => cache,
        // A malformed name is that, before it is a missing repository.
        Err(missing) => {
            check_repository_name(repo)?;
            return Err(missing.into());
        }
    };
    let digest = Digest::parse(&input.layer_digest)
        .map_err(|e| EcrError::invalid(format!("Invalid parameter at 'layerDigest': {e}")))?;
    let held = registry.layer_size(repo, &digest).await?;
    if held.is_none() && cache {
        // A cache repository's layer not stored yet: fetched whole before its URL is given.
        let grant = FillGrant { authorizer: &ctx.app.authorizer, caller: Some(&ctx.caller), env: &ctx.env };
        match registry.pull_blob(repo, digest.as_str(), &grant, true).await {
            Ok(_) => {}
            Err(RegistryError::Upstream { message, .. }) => {
                return Err(EcrError::new("UnableToGetUpstreamLayerException", message));
            }
            Err(e) => return Err(e.into()),
        }
    }
    if held.is_none() && registry.layer_size(repo, &digest).await?.is_none() {
        return Err(EcrError::new(
            "LayersNotFoundException",
            format!(
                "The layer '{digest}' does not exist in the repository with name '{repo}' in the registry with id '{}'",
                ctx.registry_id()
            ),
        ));
    }
    let expires = now_seconds() + DOWNLOAD_URL_SECONDS;
    // The blob store's own URL where it has one; otherwise a presigned /v2/ URL of Berth's.
    let url = match ctx.app.registry.direct_download_url(&digest, expires).await? {
        Some(url) => url,
        None => {
            let signature = ctx.app.identity.presign_download(&ctx.caller, repo, digest.as_str(), expires);
            format!(
                "{}/v2/{repo}/blobs/{digest}?X-Berth-Credential={}&X-Berth-Expires={expires}&X-Berth-Signature={signature}",
                ctx.endpoint, ctx.caller.access_key_id
            )
        }
    };
    Ok(DownloadUrlOutput { download_url: url, layer_digest: digest.to_string() })
}
