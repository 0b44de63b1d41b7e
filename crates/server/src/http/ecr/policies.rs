//! Resource policies where ECR keeps them: one per repository (`SetRepositoryPolicy`, with
//! `force` and the lockout check) and one per registry (`PutRegistryPolicy`). Every policy is
//! parsed and validated by `berth-iam` before it is stored; a policy that does not parse is
//! refused with `InvalidParameterException` saying what is wrong and where.

use berth_registry::settings::parse_resource_policy;
use serde::{Deserialize, Serialize};

use super::{Ctx, EcrError};

/// The answer of the repository policy operations.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct RepositoryPolicyOutput {
    registry_id: String,
    repository_name: String,
    policy_text: String,
}

/// The answer of the registry policy operations.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct RegistryPolicyOutput {
    registry_id: String,
    policy_text: String,
}

impl Ctx<'_> {
    fn repository_policy(&self, repository: &str, policy_text: String) -> RepositoryPolicyOutput {
        RepositoryPolicyOutput {
            registry_id: self.registry_id().to_string(),
            repository_name: repository.to_string(),
            policy_text,
        }
    }

    fn registry_policy(&self, policy_text: String) -> RegistryPolicyOutput {
        RegistryPolicyOutput { registry_id: self.registry_id().to_string(), policy_text }
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct SetRepositoryPolicyInput {
    repository_name: String,
    policy_text: String,
    #[serde(default)]
    force: bool,
}

pub(super) async fn set_repository_policy(
    ctx: &Ctx<'_>,
    input: SetRepositoryPolicyInput,
) -> Result<RepositoryPolicyOutput, EcrError> {
    let repo = &input.repository_name;
    ctx.existing_repository(repo).await?;
    let policy = parse_resource_policy(&input.policy_text, "repository policy")?;
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
    ctx.app.registry.set_repository_policy(repo, &input.policy_text).await?;
    Ok(ctx.repository_policy(repo, input.policy_text))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct RepositoryPolicyInput {
    repository_name: String,
}

pub(super) async fn get_repository_policy(
    ctx: &Ctx<'_>,
    input: RepositoryPolicyInput,
) -> Result<RepositoryPolicyOutput, EcrError> {
    let repo = &input.repository_name;
    ctx.existing_repository(repo).await?;
    let text = ctx.app.registry.repository_policy(repo).await?;
    Ok(ctx.repository_policy(repo, text))
}

pub(super) async fn delete_repository_policy(
    ctx: &Ctx<'_>,
    input: RepositoryPolicyInput,
) -> Result<RepositoryPolicyOutput, EcrError> {
    let repo = &input.repository_name;
    ctx.existing_repository(repo).await?;
    let previous = ctx.app.registry.delete_repository_policy(repo).await?;
    Ok(ctx.repository_policy(repo, previous))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct PutRegistryPolicyInput {
    policy_text: String,
}

pub(super) async fn put_registry_policy(
    ctx: &Ctx<'_>,
    input: PutRegistryPolicyInput,
) -> Result<RegistryPolicyOutput, EcrError> {
    ctx.app.registry.put_registry_policy(ctx.registry_id(), &input.policy_text).await?;
    Ok(ctx.registry_policy(input.policy_text))
}

pub(super) async fn get_registry_policy(ctx: &Ctx<'_>) -> Result<RegistryPolicyOutput, EcrError> {
    let text = ctx.app.registry.registry_policy(ctx.registry_id()).await?;
    Ok(ctx.registry_policy(text))
}

pub(super) async fn delete_registry_policy(ctx: &Ctx<'_>) -> Result<RegistryPolicyOutput, EcrError> {
    let previous = ctx.app.registry.delete_registry_policy(ctx.registry_id()).await?;
    Ok(ctx.registry_policy(previous))
}
