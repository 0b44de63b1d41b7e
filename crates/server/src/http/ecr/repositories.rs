//! Repository operations: create, describe, delete, tag mutability and scan-on-push
//! settings, and resource tags.

use berth_meta::RepositorySettings;
use berth_registry::repositories::{
    EncryptionConfiguration, ExclusionFilter, ResourceTag, encryption_settings, tag_mutability_rule,
};
use serde::{Deserialize, Serialize};

use super::shapes::{Empty, RepositoryShape, ScanningConfiguration};
use super::{Ctx, EcrError, check_repository_name, no_paging_with, page_size};

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct ScanningInput {
    scan_on_push: Option<bool>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct CreateRepositoryInput {
    repository_name: String,
    tags: Option<Vec<ResourceTag>>,
    image_tag_mutability: Option<String>,
    image_tag_mutability_exclusion_filters: Option<Vec<ExclusionFilter>>,
    image_scanning_configuration: Option<ScanningInput>,
    encryption_configuration: Option<EncryptionConfiguration>,
}

/// The answer of `CreateRepository` and `DeleteRepository`.
#[derive(Serialize)]
pub(super) struct RepositoryOutput {
    repository: RepositoryShape,
}

pub(super) async fn create_repository(
    ctx: &Ctx<'_>,
    input: CreateRepositoryInput,
) -> Result<RepositoryOutput, EcrError> {
    check_repository_name(&input.repository_name)?;
    let rule = tag_mutability_rule(
        input.image_tag_mutability.as_deref().unwrap_or("MUTABLE"),
        input.image_tag_mutability_exclusion_filters.as_deref().unwrap_or_default(),
    )?;
    let (encryption_type, kms_key) = encryption_settings(input.encryption_configuration.as_ref())?;
    let settings = RepositorySettings {
        tag_mutability: rule.mode,
        tag_mutability_exclusions: rule.exclusions,
        scan_on_push: input.image_scanning_configuration.and_then(|s| s.scan_on_push).unwrap_or(false),
        encryption_type,
        kms_key,
        pull_block_severity: None,
    };
    let tags = input.tags.unwrap_or_default();
    let creator = ctx.kms_caller();
    let r = ctx.app.registry.create_repository(&input.repository_name, &settings, &tags, Some(&creator)).await?;
    Ok(RepositoryOutput { repository: ctx.repository_shape(&r) })
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct DescribeRepositoriesInput {
    repository_names: Option<Vec<String>>,
    next_token: Option<String>,
    max_results: Option<i64>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct DescribeRepositoriesOutput {
    repositories: Vec<RepositoryShape>,
    #[serde(skip_serializing_if = "Option::is_none")]
    next_token: Option<String>,
}

pub(super) async fn describe_repositories(
    ctx: &Ctx<'_>,
    input: DescribeRepositoriesInput,
) -> Result<DescribeRepositoriesOutput, EcrError> {
    no_paging_with(input.repository_names.is_some(), &input.max_results, &input.next_token, "repositoryNames")?;
    if let Some(names) = &input.repository_names {
        let mut repositories = Vec::new();
        for n in names {
            check_repository_name(n)?;
            repositories.push(ctx.repository_shape(&ctx.repository(n).await?));
        }
        return Ok(DescribeRepositoriesOutput { repositories, next_token: None });
    }
    let limit = page_size(input.max_results, 100);
    // Tokens hold the last name, never an internal key.
    let after = ctx.decode_token(&input.next_token)?.map(|name| ctx.ns.key(&name));
    let (repos, more) = ctx.app.registry.account_repositories(&ctx.ns.account, after.as_deref(), limit).await?;
    if let (Some(first), Some(last)) = (repos.first(), repos.last()) {
        ctx.app.authorizer.prime_repository_facts(&first.name, &last.name).await?;
    }
    let mut repositories = Vec::with_capacity(repos.len());
    for r in &repos {
        if ctx.may_describe(&r.name).await? {
            repositories.push(ctx.repository_shape(r));
        }
    }
    let next_token = repos.last().filter(|_| more).map(|last| ctx.encode_token(&ctx.ns.unkey(&last.name)));
    Ok(DescribeRepositoriesOutput { repositories, next_token })
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct DeleteRepositoryInput {
    repository_name: String,
    force: Option<bool>,
}

pub(super) async fn delete_repository(
    ctx: &Ctx<'_>,
    input: DeleteRepositoryInput,
) -> Result<RepositoryOutput, EcrError> {
    check_repository_name(&input.repository_name)?;
    let r = ctx.app.registry.delete_repository(&input.repository_name, input.force.unwrap_or(false)).await?;
    Ok(RepositoryOutput { repository: ctx.repository_shape(&r) })
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct PutImageTagMutabilityInput {
    repository_name: String,
    image_tag_mutability: String,
    image_tag_mutability_exclusion_filters: Option<Vec<ExclusionFilter>>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct PutImageTagMutabilityOutput {
    registry_id: String,
    repository_name: String,
    image_tag_mutability: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    image_tag_mutability_exclusion_filters: Vec<ExclusionFilter>,
}

pub(super) async fn put_image_tag_mutability(
    ctx: &Ctx<'_>,
    input: PutImageTagMutabilityInput,
) -> Result<PutImageTagMutabilityOutput, EcrError> {
    check_repository_name(&input.repository_name)?;
    let rule = tag_mutability_rule(
        &input.image_tag_mutability,
        input.image_tag_mutability_exclusion_filters.as_deref().unwrap_or_default(),
    )?;
    let r = ctx
        .app
        .registry
        .update_repository_settings(&input.repository_name, |s| {
            s.tag_mutability = rule.mode;
            s.tag_mutability_exclusions = rule.exclusions;
        })
        .await?;
    Ok(PutImageTagMutabilityOutput {
        registry_id: ctx.registry_id().to_string(),
        image_tag_mutability_exclusion_filters: super::shapes::exclusion_filters(&r.settings.tag_mutability_exclusions),
        image_tag_mutability: r.settings.tag_mutability.as_str().to_string(),
        repository_name: r.name,
    })
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct PutImageScanningConfigurationInput {
    repository_name: String,
    image_scanning_configuration: ScanningInput,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct PutImageScanningConfigurationOutput {
    registry_id: String,
    repository_name: String,
    image_scanning_configuration: ScanningConfiguration,
}

pub(super) async fn put_image_scanning_configuration(
    ctx: &Ctx<'_>,
    input: PutImageScanningConfigurationInput,
) -> Result<PutImageScanningConfigurationOutput, EcrError> {
    check_repository_name(&input.repository_name)?;
    let scan_on_push = input.image_scanning_configuration.scan_on_push.unwrap_or(false);
    let r =
        ctx.app.registry.update_repository_settings(&input.repository_name, |s| s.scan_on_push = scan_on_push).await?;
    Ok(PutImageScanningConfigurationOutput {
        registry_id: ctx.registry_id().to_string(),
        image_scanning_configuration: ScanningConfiguration { scan_on_push: r.settings.scan_on_push },
        repository_name: r.name,
    })
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct ListTagsForResourceInput {
    resource_arn: String,
}

#[derive(Serialize)]
pub(super) struct ListTagsForResourceOutput {
    tags: Vec<ResourceTag>,
}

/// The repository a resource ARN names (after checking it exists).
async fn arn_repository(ctx: &Ctx<'_>, arn: &str) -> Result<String, EcrError> {
    let prefix = format!("arn:aws:ecr:{}:{}:repository/", ctx.app.identity.region(), ctx.registry_id());
    let name = arn.strip_prefix(&prefix).ok_or_else(|| {
        EcrError::invalid(format!(
            "Invalid parameter at 'resourceArn': {arn:?} is not a repository ARN of this registry"
        ))
    })?;
    ctx.repository(name).await?;
    Ok(name.to_string())
}

pub(super) async fn list_tags_for_resource(
    ctx: &Ctx<'_>,
    input: ListTagsForResourceInput,
) -> Result<ListTagsForResourceOutput, EcrError> {
    let name = arn_repository(ctx, &input.resource_arn).await?;
    let tags = ctx.app.registry.repository_tags(&name).await?;
    Ok(ListTagsForResourceOutput { tags: tags.into_iter().map(|(key, value)| ResourceTag { key, value }).collect() })
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct TagResourceInput {
    resource_arn: String,
    tags: Vec<ResourceTag>,
}

pub(super) async fn tag_resource(ctx: &Ctx<'_>, input: TagResourceInput) -> Result<Empty, EcrError> {
    let name = arn_repository(ctx, &input.resource_arn).await?;
    ctx.app.registry.tag_repository(&name, &input.tags).await?;
    Ok(Empty {})
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct UntagResourceInput {
    resource_arn: String,
    tag_keys: Vec<String>,
}

pub(super) async fn untag_resource(ctx: &Ctx<'_>, input: UntagResourceInput) -> Result<Empty, EcrError> {
    let name = arn_repository(ctx, &input.resource_arn).await?;
    ctx.app.registry.untag_repository(&name, &input.tag_keys).await?;
    Ok(Empty {})
}
