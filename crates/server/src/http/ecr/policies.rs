//! Resource policies where ECR keeps them: one per repository (`SetRepositoryPolicy`, with
//! `force` and the lockout check) and one per registry (`PutRegistryPolicy`). Every policy is
//! parsed and validated by `berth-iam` before it is stored; a policy that does not parse is
//! refused with `InvalidParameterException` saying what is wrong and where.

use berth_iam::{PolicyDocument, PolicyKind};
use serde::Deserialize;
use serde_json::json;

use super::{Ctx, EcrError, EcrResult};

/// Repository and registry policies are at most 10,240 characters, as in ECR.
const MAX_POLICY: usize = 10_240;

fn validated(text: &str, what: &str) -> Result<PolicyDocument, EcrError> {
    if text.is_empty() || text.len() > MAX_POLICY {
        return Err(EcrError::invalid(format!(
            "Invalid parameter at 'PolicyText' failed to satisfy constraint: 'Member must have length between 1 and {MAX_POLICY}'"
        )));
    }
    PolicyDocument::parse(text, PolicyKind::Resource).map_err(|e| {
        EcrError::invalid(format!(
            "Invalid parameter at 'PolicyText' failed to satisfy constraint: 'Invalid {what} provided': {e}"
        ))
    })
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct SetRepositoryPolicyInput {
    repository_name: String,
    policy_text: String,
    #[serde(default)]
    force: bool,
}

pub(super) async fn set_repository_policy(ctx: &Ctx<'_>, input: SetRepositoryPolicyInput) -> EcrResult {
    let repo = &input.repository_name;
    ctx.existing_repository(repo).await?;
    let policy = validated(&input.policy_text, "repository policy")?;
    // The lockout check: refuse, unless forced, a policy under which the caller could no longer
    // change the policy.
    if !input.force
        && let Err(denied) = ctx
            .app
            .authorizer
            .authorize_with_repository_policy(&ctx.caller, "ecr:SetRepositoryPolicy", repo, &ctx.env, &policy)
            .await?
    {
        return Err(EcrError::invalid(format!(
            "Invalid parameter at 'PolicyText' failed to satisfy constraint: 'The repository policy would prevent you from \
             setting the policy in the future ({})'; use force to set it anyway",
            denied.message
        )));
    }
    ctx.app.registry.meta().set_repository_policy(repo, Some(&input.policy_text)).await?;
    Ok(json!({ "registryId": ctx.registry_id(), "repositoryName": repo, "policyText": input.policy_text }))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct RepositoryPolicyInput {
    repository_name: String,
}

fn no_repository_policy(ctx: &Ctx<'_>, repo: &str) -> EcrError {
    EcrError::new(
        "RepositoryPolicyNotFoundException",
        format!(
            "Repository policy does not exist for the repository with name '{repo}' in the registry with id '{}'",
            ctx.registry_id()
        ),
    )
}

pub(super) async fn get_repository_policy(ctx: &Ctx<'_>, input: RepositoryPolicyInput) -> EcrResult {
    let repo = &input.repository_name;
    ctx.existing_repository(repo).await?;
    let text = ctx.app.registry.meta().repository_policy(repo).await?.ok_or_else(|| no_repository_policy(ctx, repo))?;
    Ok(json!({ "registryId": ctx.registry_id(), "repositoryName": repo, "policyText": text }))
}

pub(super) async fn delete_repository_policy(ctx: &Ctx<'_>, input: RepositoryPolicyInput) -> EcrResult {
    let repo = &input.repository_name;
    ctx.existing_repository(repo).await?;
    let previous = ctx
        .app
        .registry
        .meta()
        .set_repository_policy(repo, None)
        .await?
        .ok_or_else(|| no_repository_policy(ctx, repo))?;
    Ok(json!({ "registryId": ctx.registry_id(), "repositoryName": repo, "policyText": previous }))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct PutRegistryPolicyInput {
    policy_text: String,
}

fn no_registry_policy(ctx: &Ctx<'_>) -> EcrError {
    EcrError::new(
        "RegistryPolicyNotFoundException",
        format!("Registry policy does not exist in the registry with id '{}'", ctx.registry_id()),
    )
}

pub(super) async fn put_registry_policy(ctx: &Ctx<'_>, input: PutRegistryPolicyInput) -> EcrResult {
    validated(&input.policy_text, "registry policy")?;
    ctx.app.registry.meta().set_registry_policy(ctx.registry_id(), Some(&input.policy_text)).await?;
    Ok(json!({ "registryId": ctx.registry_id(), "policyText": input.policy_text }))
}

pub(super) async fn get_registry_policy(ctx: &Ctx<'_>) -> EcrResult {
    let text =
        ctx.app.registry.meta().registry_policy(ctx.registry_id()).await?.ok_or_else(|| no_registry_policy(ctx))?;
    Ok(json!({ "registryId": ctx.registry_id(), "policyText": text }))
}

pub(super) async fn delete_registry_policy(ctx: &Ctx<'_>) -> EcrResult {
    let previous = ctx
        .app
        .registry
        .meta()
        .set_registry_policy(ctx.registry_id(), None)
        .await?
        .ok_or_else(|| no_registry_policy(ctx))?;
    Ok(json!({ "registryId": ctx.registry_id(), "policyText": previous }))
}
