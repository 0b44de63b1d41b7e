//! Pull-through cache rules, per account: create, describe, update, delete, validate.

use berth_meta::PullThroughRule;
use berth_registry::pull_through::RuleSpec;
use serde::{Deserialize, Serialize};

use super::shapes::seconds;
use super::{Ctx, EcrError, page_size};

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct CreateRuleInput {
    ecr_repository_prefix: String,
    upstream_registry_url: String,
    upstream_registry: Option<String>,
    credential_arn: Option<String>,
    custom_role_arn: Option<String>,
    upstream_repository_prefix: Option<String>,
}

/// The members every rule answer carries (`PullThroughCacheRule` and the operations' outputs).
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct RuleShape {
    registry_id: String,
    ecr_repository_prefix: String,
    upstream_registry_url: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    upstream_registry: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    credential_arn: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    upstream_repository_prefix: Option<String>,
    created_at: f64,
    updated_at: f64,
}

impl RuleShape {
    fn of(ctx: &Ctx<'_>, r: PullThroughRule) -> Self {
        RuleShape {
            registry_id: ctx.registry_id().to_string(),
            ecr_repository_prefix: r.prefix,
            upstream_registry_url: r.upstream_url,
            upstream_registry: r.upstream_registry,
            credential_arn: r.credential_arn,
            upstream_repository_prefix: r.upstream_prefix,
            created_at: seconds(r.created_at),
            updated_at: seconds(r.updated_at),
        }
    }
}

pub(super) async fn create_rule(ctx: &Ctx<'_>, input: CreateRuleInput) -> Result<RuleShape, EcrError> {
    let spec = RuleSpec {
        prefix: input.ecr_repository_prefix,
        upstream_url: input.upstream_registry_url,
        upstream_registry: input.upstream_registry,
        credential_arn: input.credential_arn,
        custom_role_arn: input.custom_role_arn,
        upstream_prefix: input.upstream_repository_prefix,
    };
    let rule = ctx.app.registry.create_pull_through_rule(&ctx.ns.account, ctx.app.identity.region(), &spec).await?;
    Ok(RuleShape::of(ctx, rule))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct UpdateRuleInput {
    ecr_repository_prefix: String,
    credential_arn: Option<String>,
    custom_role_arn: Option<String>,
}

pub(super) async fn update_rule(ctx: &Ctx<'_>, input: UpdateRuleInput) -> Result<RuleShape, EcrError> {
    let rule = ctx
        .app
        .registry
        .update_pull_through_rule(
            &ctx.ns.account,
            ctx.app.identity.region(),
            &input.ecr_repository_prefix,
            input.credential_arn.as_deref(),
            input.custom_role_arn.as_deref(),
        )
        .await?;
    Ok(RuleShape::of(ctx, rule))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct RulePrefixInput {
    ecr_repository_prefix: String,
}

pub(super) async fn delete_rule(ctx: &Ctx<'_>, input: RulePrefixInput) -> Result<RuleShape, EcrError> {
    let rule = ctx.app.registry.delete_pull_through_rule(&ctx.ns.account, &input.ecr_repository_prefix).await?;
    Ok(RuleShape::of(ctx, rule))
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct ValidateRuleOutput {
    #[serde(flatten)]
    rule: RuleShape,
    is_valid: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    failure: Option<String>,
}

pub(super) async fn validate_rule(ctx: &Ctx<'_>, input: RulePrefixInput) -> Result<ValidateRuleOutput, EcrError> {
    let v = ctx
        .app
        .registry
        .validate_pull_through_rule(&ctx.ns.account, ctx.app.identity.region(), &input.ecr_repository_prefix)
        .await?;
    Ok(ValidateRuleOutput { rule: RuleShape::of(ctx, v.rule), is_valid: v.failure.is_none(), failure: v.failure })
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct DescribeRulesInput {
    ecr_repository_prefixes: Option<Vec<String>>,
    next_token: Option<String>,
    max_results: Option<i64>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct DescribeRulesOutput {
    pull_through_cache_rules: Vec<RuleShape>,
    #[serde(skip_serializing_if = "Option::is_none")]
    next_token: Option<String>,
}

/// Every rule, or those named (each must exist, as in ECR), a page at a time in prefix order.
pub(super) async fn describe_rules(ctx: &Ctx<'_>, input: DescribeRulesInput) -> Result<DescribeRulesOutput, EcrError> {
    let limit = page_size(input.max_results, 100) as usize;
    let after = ctx.decode_token(&input.next_token)?;
    let rules = ctx.app.registry.pull_through_rules(&ctx.ns.account).await?;
    let named: Option<Vec<&str>> = input
        .ecr_repository_prefixes
        .as_ref()
        .map(|ps| ps.iter().map(|p| berth_rules::pull_through::normalize_prefix(p)).collect());
    if let Some(named) = &named
        && let Some(missing) = named.iter().find(|p| !rules.iter().any(|r| r.prefix == **p))
    {
        return Err(berth_registry::RegistryError::PullThroughRuleNotFound { prefix: missing.to_string() }.into());
    }
    let mut selected: Vec<PullThroughRule> = rules
        .into_iter()
        .filter(|r| named.as_ref().is_none_or(|n| n.contains(&r.prefix.as_str())))
        .filter(|r| after.as_ref().is_none_or(|a| r.prefix.as_str() > a.as_str()))
        .collect();
    let more = selected.len() > limit;
    selected.truncate(limit);
    let next_token = selected.last().filter(|_| more).map(|last| ctx.encode_token(&last.prefix));
    Ok(DescribeRulesOutput {
        pull_through_cache_rules: selected.into_iter().map(|r| RuleShape::of(ctx, r)).collect(),
        next_token,
    })
}
