//! Image signing: the registry's signing configuration (`PutSigningConfiguration`,
//! `GetSigningConfiguration`, `DeleteSigningConfiguration`) and an image's signing status per
//! profile (`DescribeImageSigningStatus`).

use berth_rules::signing::SigningConfiguration;
use serde::{Deserialize, Serialize};

use super::shapes::ImageId;
use super::{Ctx, EcrError};

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct PutSigningConfigurationInput {
    signing_configuration: SigningConfiguration,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct PutSigningConfigurationOutput {
    signing_configuration: SigningConfiguration,
}

pub(super) async fn put_signing_configuration(
    ctx: &Ctx<'_>,
    input: PutSigningConfigurationInput,
) -> Result<PutSigningConfigurationOutput, EcrError> {
    ctx.app.registry.put_signing_configuration(ctx.registry_id(), &input.signing_configuration).await?;
    Ok(PutSigningConfigurationOutput { signing_configuration: input.signing_configuration })
}

/// `GetSigningConfiguration`'s and `DeleteSigningConfiguration`'s answer.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct SigningConfigurationOutput {
    registry_id: String,
    signing_configuration: SigningConfiguration,
}

pub(super) async fn get_signing_configuration(ctx: &Ctx<'_>) -> Result<SigningConfigurationOutput, EcrError> {
    let config = ctx
        .app
        .registry
        .signing_configuration(ctx.registry_id())
        .await?
        .ok_or(berth_registry::RegistryError::SigningConfigurationNotFound)?;
    Ok(SigningConfigurationOutput { registry_id: ctx.registry_id().to_string(), signing_configuration: config })
}

pub(super) async fn delete_signing_configuration(ctx: &Ctx<'_>) -> Result<SigningConfigurationOutput, EcrError> {
    let config = ctx.app.registry.delete_signing_configuration(ctx.registry_id()).await?;
    Ok(SigningConfigurationOutput { registry_id: ctx.registry_id().to_string(), signing_configuration: config })
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct DescribeImageSigningStatusInput {
    repository_name: String,
    image_id: ImageId,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct ImageSigningStatus {
    signing_profile_arn: String,
    status: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    failure_code: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    failure_reason: Option<String>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct DescribeImageSigningStatusOutput {
    repository_name: String,
    image_id: ImageId,
    registry_id: String,
    signing_statuses: Vec<ImageSigningStatus>,
}

pub(super) async fn describe_image_signing_status(
    ctx: &Ctx<'_>,
    input: DescribeImageSigningStatusInput,
) -> Result<DescribeImageSigningStatusOutput, EcrError> {
    let name = &input.repository_name;
    ctx.existing_repository(name).await?;
    let digest = ctx.resolve_one(name, &input.image_id).await?;
    let statuses = ctx.app.registry.image_signing_statuses(name, &digest).await?;
    Ok(DescribeImageSigningStatusOutput {
        repository_name: name.clone(),
        image_id: ImageId::resolved(&digest, &input.image_id),
        registry_id: ctx.registry_id().to_string(),
        signing_statuses: statuses
            .into_iter()
            .map(|s| ImageSigningStatus {
                signing_profile_arn: s.profile_arn,
                status: s.status,
                failure_code: s.failure_code,
                failure_reason: s.failure_reason,
            })
            .collect(),
    })
}
