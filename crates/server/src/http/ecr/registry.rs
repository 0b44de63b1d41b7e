//! Operations on a registry as a whole: authorization tokens, the registry's description,
//! account settings, the registry scanning configuration and pull-time update exclusions.

use berth_auth::token::docker_authorization;
use berth_rules::replication::ReplicationConfiguration;
use berth_rules::scanning::{RegistryScanning, RepositoryFilter};
use serde::{Deserialize, Serialize};

use super::shapes::seconds;
use super::{Ctx, EcrError, check_repository_name, page_size};
use crate::http::now_seconds;

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct GetAuthorizationTokenInput {
    registry_ids: Option<Vec<String>>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct AuthorizationData {
    authorization_token: String,
    expires_at: i64,
    proxy_endpoint: String,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct GetAuthorizationTokenOutput {
    authorization_data: Vec<AuthorizationData>,
}

pub(super) async fn get_authorization_token(
    ctx: &Ctx<'_>,
    input: GetAuthorizationTokenInput,
) -> Result<GetAuthorizationTokenOutput, EcrError> {
    // Between 1 and 10 ids: the model's bound, checked at the front door (model.rs).
    let ids = input.registry_ids.unwrap_or_else(|| vec![ctx.registry_id().to_string()]);
    let mut authorization_data = Vec::new();
    for id in ids {
        // A token is the caller's, good for any registry its policies let it use.
        if !crate::http::accounts::account_exists(ctx.app, &id).await {
            return Err(EcrError::invalid(format!(
                "Invalid parameter at 'registryIds': registry '{id}' is not served here"
            )));
        }
        let (token, expires_at) = ctx.app.identity.issue_token(&ctx.caller, now_seconds());
        let host = if id == ctx.ns.default_account { ctx.host.clone() } else { format!("{id}.{}", ctx.host) };
        authorization_data.push(AuthorizationData {
            authorization_token: docker_authorization(&token),
            expires_at,
            proxy_endpoint: format!("{}://{host}", crate::http::client_scheme(&ctx.env)),
        });
    }
    Ok(GetAuthorizationTokenOutput { authorization_data })
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct DescribeRegistryOutput {
    registry_id: String,
    replication_configuration: ReplicationConfiguration,
}

pub(super) async fn describe_registry(ctx: &Ctx<'_>) -> Result<DescribeRegistryOutput, EcrError> {
    // Berth's extensions of the rules are the extension target's to show.
    let replication_configuration = ctx.app.registry.replication_configuration(ctx.registry_id()).await?.ecr_view();
    Ok(DescribeRegistryOutput { registry_id: ctx.registry_id().to_string(), replication_configuration })
}

#[derive(Deserialize)]
pub(super) struct GetAccountSettingInput {
    name: String,
}

/// The answer of `GetAccountSetting` and `PutAccountSetting`.
#[derive(Serialize)]
pub(super) struct AccountSetting {
    name: &'static str,
    value: String,
}

pub(super) async fn get_account_setting(
    ctx: &Ctx<'_>,
    input: GetAccountSettingInput,
) -> Result<AccountSetting, EcrError> {
    let (name, value) = ctx.app.registry.account_setting(ctx.registry_id(), &input.name).await?;
    Ok(AccountSetting { name, value })
}

#[derive(Deserialize)]
pub(super) struct PutAccountSettingInput {
    name: String,
    value: String,
}

pub(super) async fn put_account_setting(
    ctx: &Ctx<'_>,
    input: PutAccountSettingInput,
) -> Result<AccountSetting, EcrError> {
    let name = ctx.app.registry.put_account_setting(ctx.registry_id(), &input.name, &input.value).await?;
    Ok(AccountSetting { name, value: input.value })
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct PutRegistryScanningConfigurationOutput {
    registry_scanning_configuration: RegistryScanning,
}

pub(super) async fn put_registry_scanning_configuration(
    ctx: &Ctx<'_>,
    input: RegistryScanning,
) -> Result<PutRegistryScanningConfigurationOutput, EcrError> {
    input.validate().map_err(|m| EcrError::invalid(format!("Invalid parameter: {m}")))?;
    ctx.app.registry.put_registry_scanning(&input).await?;
    Ok(PutRegistryScanningConfigurationOutput { registry_scanning_configuration: input })
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct GetRegistryScanningConfigurationOutput {
    registry_id: String,
    scanning_configuration: RegistryScanning,
}

pub(super) async fn get_registry_scanning_configuration(
    ctx: &Ctx<'_>,
) -> Result<GetRegistryScanningConfigurationOutput, EcrError> {
    Ok(GetRegistryScanningConfigurationOutput {
        registry_id: ctx.registry_id().to_string(),
        scanning_configuration: ctx.app.registry.registry_scanning().await?,
    })
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct BatchGetRepositoryScanningConfigurationInput {
    repository_names: Vec<String>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct RepositoryScanningConfiguration {
    repository_arn: String,
    repository_name: String,
    scan_on_push: bool,
    scan_frequency: &'static str,
    applied_scan_filters: Vec<RepositoryFilter>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct RepositoryScanningConfigurationFailure {
    repository_name: String,
    failure_code: &'static str,
    failure_reason: &'static str,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct BatchGetRepositoryScanningConfigurationOutput {
    scanning_configurations: Vec<RepositoryScanningConfiguration>,
    failures: Vec<RepositoryScanningConfigurationFailure>,
}

pub(super) async fn batch_get_repository_scanning_configuration(
    ctx: &Ctx<'_>,
    input: BatchGetRepositoryScanningConfigurationInput,
) -> Result<BatchGetRepositoryScanningConfigurationOutput, EcrError> {
    let registry = ctx.app.registry.registry_scanning().await?;
    let (mut scanning_configurations, mut failures) = (Vec::new(), Vec::new());
    for name in input.repository_names {
        check_repository_name(&name)?;
        let Some(repo) = ctx.app.registry.find_repository(&name).await? else {
            failures.push(RepositoryScanningConfigurationFailure {
                repository_name: name,
                failure_code: "REPOSITORY_NOT_FOUND",
                failure_reason: "REPOSITORY_NOT_FOUND",
            });
            continue;
        };
        let effective = registry.for_repository(&name, repo.settings.scan_on_push);
        scanning_configurations.push(RepositoryScanningConfiguration {
            repository_arn: ctx.app.authorizer.repository_arn(&name),
            repository_name: name,
            scan_on_push: effective.scan_on_push,
            scan_frequency: effective.scan_frequency,
            applied_scan_filters: effective.applied_filters,
        });
    }
    Ok(BatchGetRepositoryScanningConfigurationOutput { scanning_configurations, failures })
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct ExclusionInput {
    principal_arn: String,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct ExclusionOutput {
    principal_arn: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    created_at: Option<f64>,
}

pub(super) async fn register_pull_time_exclusion(
    ctx: &Ctx<'_>,
    input: ExclusionInput,
) -> Result<ExclusionOutput, EcrError> {
    let at = ctx.app.registry.register_pull_time_exclusion(&ctx.ns.account, &input.principal_arn).await?;
    Ok(ExclusionOutput { principal_arn: input.principal_arn, created_at: Some(seconds(at)) })
}

pub(super) async fn deregister_pull_time_exclusion(
    ctx: &Ctx<'_>,
    input: ExclusionInput,
) -> Result<ExclusionOutput, EcrError> {
    ctx.app.registry.deregister_pull_time_exclusion(&ctx.ns.account, &input.principal_arn).await?;
    Ok(ExclusionOutput { principal_arn: input.principal_arn, created_at: None })
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct ListExclusionsInput {
    max_results: Option<i64>,
    next_token: Option<String>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct ListExclusionsOutput {
    pull_time_update_exclusions: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    next_token: Option<String>,
}

pub(super) async fn list_pull_time_exclusions(
    ctx: &Ctx<'_>,
    input: ListExclusionsInput,
) -> Result<ListExclusionsOutput, EcrError> {
    let arns: Vec<String> =
        ctx.app.registry.pull_time_exclusions(&ctx.ns.account).await?.into_iter().map(|(arn, _)| arn).collect();
    let (pull_time_update_exclusions, next_token) =
        ctx.page_of(arns, page_size(input.max_results, 100), &input.next_token, |a| a)?;
    Ok(ListExclusionsOutput { pull_time_update_exclusions, next_token })
}
