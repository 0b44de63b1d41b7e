//! Replication: a registry's replication configuration (`PutReplicationConfiguration`; it is
//! returned by `DescribeRegistry`) and where an image's replications stand
//! (`DescribeImageReplicationStatus`).

use berth_meta::ReplicationTarget;
use berth_rules::replication::ReplicationConfiguration;
use serde::{Deserialize, Serialize};

use super::shapes::ImageId;
use super::{Ctx, EcrError};

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct PutReplicationConfigurationInput {
    replication_configuration: ReplicationConfiguration,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct PutReplicationConfigurationOutput {
    replication_configuration: ReplicationConfiguration,
}

pub(super) async fn put_replication_configuration(
    ctx: &Ctx<'_>,
    input: PutReplicationConfigurationInput,
) -> Result<PutReplicationConfigurationOutput, EcrError> {
    let config = input.replication_configuration.ecr_view();
    ctx.app.registry.put_replication_configuration(ctx.registry_id(), &config).await?;
    Ok(PutReplicationConfigurationOutput { replication_configuration: config })
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct DescribeImageReplicationStatusInput {
    repository_name: String,
    image_id: ImageId,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct ImageReplicationStatus {
    region: String,
    registry_id: String,
    status: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    failure_code: Option<String>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct DescribeImageReplicationStatusOutput {
    repository_name: String,
    image_id: ImageId,
    replication_statuses: Vec<ImageReplicationStatus>,
}

pub(super) async fn describe_image_replication_status(
    ctx: &Ctx<'_>,
    input: DescribeImageReplicationStatusInput,
) -> Result<DescribeImageReplicationStatusOutput, EcrError> {
    let name = &input.repository_name;
    ctx.existing_repository(name).await?;
    let digest = ctx.resolve_one(name, &input.image_id).await?;
    let statuses = ctx.app.registry.image_replications(name, &digest).await?;
    Ok(DescribeImageReplicationStatusOutput {
        repository_name: name.clone(),
        image_id: ImageId::resolved(&digest, &input.image_id),
        replication_statuses: statuses
            .into_iter()
            .map(|s| {
                let ReplicationTarget { region, registry_id } = s.target;
                ImageReplicationStatus { region, registry_id, status: s.status.as_str(), failure_code: s.failure_code }
            })
            .collect(),
    })
}
