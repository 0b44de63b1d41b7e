//! Berth's own operations, beyond ECR's model: `POST /` with
//! `X-Amz-Target: Berth_20261201.<Operation>`, JSON 1.1, SigV4 service `ecr` — the ECR API's
//! front door (authentication, the registry a request acts on, authorization), with each
//! operation's input checked here since botocore's model does not know them. Every Berth
//! extension of the ECR API is an operation of this target.
//!
//! - `UpdatePullThroughCacheRuleRefresh` {`ecrRepositoryPrefix`, `refreshIntervalSeconds`
//!   (1 s to a year, or null for ECR's 24 hours), `registryId`?}: authorized as
//!   `ecr:UpdatePullThroughCacheRule`.
//! - `RefreshCachedImage` {`repositoryName`, `imageTag`, `registryId`?}: checks the tag
//!   upstream now and fills it anew if it moved; answers once the image is stored.
//!   Authorized as `ecr:BatchImportUpstreamImage` on the repository.
//! - `PutReplicationRuleExtensions` {`ruleIndex` (from 0), `repositoryNames`?, `tagFilters`?,
//!   `propagateDeletes`?, `registryId`?}: sets a replication rule's exact repository names,
//!   tag filters and whether deletes and tag removals are propagated (all replaced; empty
//!   lists and false remove them); returns the configuration with its extensions.
//!   Authorized as `ecr:PutReplicationConfiguration`.
//! - `GetReplicationConfiguration` {`registryId`?}: the configuration with Berth's extensions
//!   (`berthRepositoryNames`, `berthTagFilters` on a rule). Authorized as `ecr:DescribeRegistry`.
//! - `ListReplicationEvents` {`repositoryName`, `maxResults`? (1–1000, 100), `nextToken`?,
//!   `registryId`?}: the replications of the repository's images that ended (`COMPLETE` or
//!   `FAILED`), oldest first, with the tags sent and those left out.
//!   Authorized as `ecr:DescribeImageReplicationStatus` on the repository.
//! - `PutPullVerification` {`repositoryName`, `trustedSigningProfileArns`?, `trustedPublicKeys`?
//!   (PEM, ECDSA P-256), `registryId`?}: manifest reads of the repository's images (`/v2/` GET
//!   and HEAD, `BatchGetImage`) are refused unless a trusted key signed them in the tag scheme
//!   (signatures, attestations, referrers and children of a signed index exempt). Authorized
//!   as `ecr:SetRepositoryPolicy` (it decides who can pull, as the policy does).
//! - `GetPullVerification` / `DeletePullVerification` {`repositoryName`, `registryId`?}:
//!   authorized as `ecr:GetRepositoryPolicy` / `ecr:DeleteRepositoryPolicy`;
//!   `PullVerificationNotFoundException` when there is none.

use berth_meta::PullThroughRule;
use berth_registry::signing::verify::PullVerification;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::shapes::seconds;
use super::{Ctx, EcrError, EcrResult, parse, reply};

pub const TARGET_PREFIX: &str = "Berth_20261201.";

/// The operations of the target.
pub const OPERATIONS: &[&str] = &[
    "UpdatePullThroughCacheRuleRefresh",
    "RefreshCachedImage",
    "PutReplicationRuleExtensions",
    "GetReplicationConfiguration",
    "ListReplicationEvents",
    "PutPullVerification",
    "GetPullVerification",
    "DeletePullVerification",
];

/// The ECR action each operation is authorized as.
pub fn action(op: &str) -> &'static str {
    match op {
        "UpdatePullThroughCacheRuleRefresh" => "ecr:UpdatePullThroughCacheRule",
        "PutReplicationRuleExtensions" => "ecr:PutReplicationConfiguration",
        "GetReplicationConfiguration" => "ecr:DescribeRegistry",
        "ListReplicationEvents" => "ecr:DescribeImageReplicationStatus",
        "PutPullVerification" => "ecr:SetRepositoryPolicy",
        "GetPullVerification" => "ecr:GetRepositoryPolicy",
        "DeletePullVerification" => "ecr:DeleteRepositoryPolicy",
        _ => berth_registry::pull_through::IMPORT_ACTION,
    }
}

/// The operation's input shape, before anything else looks at it (as the model's check does
/// for ECR's operations): a JSON object with the members it requires, of their types.
pub fn validate(op: &str, input: &Value) -> Result<(), EcrError> {
    let Some(obj) = input.as_object() else {
        return Err(EcrError::new("SerializationException", "the request body must be a JSON object"));
    };
    let (required, known): (&[&str], &[&str]) = match op {
        "UpdatePullThroughCacheRuleRefresh" => {
            (&["ecrRepositoryPrefix"], &["ecrRepositoryPrefix", "refreshIntervalSeconds", "registryId"])
        }
        "RefreshCachedImage" => (&["repositoryName", "imageTag"], &["repositoryName", "imageTag", "registryId"]),
        "PutReplicationRuleExtensions" => {
            (&["ruleIndex"], &["ruleIndex", "repositoryNames", "tagFilters", "propagateDeletes", "registryId"])
        }
        "GetReplicationConfiguration" => (&[], &["registryId"]),
        "ListReplicationEvents" => (&["repositoryName"], &["repositoryName", "maxResults", "nextToken", "registryId"]),
        "PutPullVerification" => {
            (&["repositoryName"], &["repositoryName", "trustedSigningProfileArns", "trustedPublicKeys", "registryId"])
        }
        "GetPullVerification" | "DeletePullVerification" => (&["repositoryName"], &["repositoryName", "registryId"]),
        _ => {
            return Err(EcrError::new(
                "UnknownOperationException",
                format!("Unknown operation {TARGET_PREFIX}{op}: the target serves {}", OPERATIONS.join(", ")),
            ));
        }
    };
    for r in required {
        if obj.get(*r).is_none_or(Value::is_null) {
            return Err(EcrError::new(
                "ValidationException",
                format!(
                    "1 validation error detected: Value null at '{r}' failed to satisfy constraint: Member must not be null"
                ),
            ));
        }
    }
    if let Some(unknown) = obj.keys().find(|k| !known.contains(&k.as_str())) {
        return Err(EcrError::new("SerializationException", format!("Unknown member {unknown:?} of {op}")));
    }
    Ok(())
}

pub async fn dispatch(ctx: &Ctx<'_>, op: &str, input: Value) -> EcrResult {
    match op {
        "UpdatePullThroughCacheRuleRefresh" => reply(update_refresh(ctx, parse(input)?).await),
        "RefreshCachedImage" => reply(refresh_image(ctx, parse(input)?).await),
        "PutReplicationRuleExtensions" => reply(put_rule_extensions(ctx, parse(input)?).await),
        "GetReplicationConfiguration" => reply(get_replication_configuration(ctx).await),
        "ListReplicationEvents" => reply(list_replication_events(ctx, parse(input)?).await),
        "PutPullVerification" => reply(put_pull_verification(ctx, parse(input)?).await),
        "GetPullVerification" => reply(get_pull_verification(ctx, parse(input)?).await),
        "DeletePullVerification" => reply(delete_pull_verification(ctx, parse(input)?).await),
        _ => Err(EcrError::new("UnknownOperationException", format!("Unknown operation {TARGET_PREFIX}{op}"))),
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct UpdateRefreshInput {
    ecr_repository_prefix: String,
    refresh_interval_seconds: Option<i64>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct RefreshRuleOutput {
    registry_id: String,
    ecr_repository_prefix: String,
    upstream_registry_url: String,
    /// The interval in effect (ECR's 24 hours when the rule sets none).
    refresh_interval_seconds: i64,
    updated_at: f64,
}

fn refresh_output(ctx: &Ctx<'_>, rule: PullThroughRule) -> RefreshRuleOutput {
    RefreshRuleOutput {
        registry_id: ctx.registry_id().to_string(),
        ecr_repository_prefix: rule.prefix,
        upstream_registry_url: rule.upstream_url,
        refresh_interval_seconds: rule.refresh_seconds.unwrap_or(berth_registry::pull_through::DEFAULT_REFRESH_SECONDS),
        updated_at: seconds(rule.updated_at),
    }
}

async fn update_refresh(ctx: &Ctx<'_>, input: UpdateRefreshInput) -> Result<RefreshRuleOutput, EcrError> {
    let rule = ctx
        .app
        .registry
        .set_pull_through_refresh(&ctx.ns.account, &input.ecr_repository_prefix, input.refresh_interval_seconds)
        .await?;
    Ok(refresh_output(ctx, rule))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RefreshImageInput {
    repository_name: String,
    image_tag: String,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct RefreshImageOutput {
    registry_id: String,
    repository_name: String,
    image_tag: String,
    image_digest: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    previous_image_digest: Option<String>,
    /// Whether the tag names another image than before.
    changed: bool,
}

async fn refresh_image(ctx: &Ctx<'_>, input: RefreshImageInput) -> Result<RefreshImageOutput, EcrError> {
    super::check_repository_name(&input.repository_name)?;
    let refresh = ctx.app.registry.refresh_cached_tag(&input.repository_name, &input.image_tag).await?;
    Ok(RefreshImageOutput {
        registry_id: ctx.registry_id().to_string(),
        repository_name: input.repository_name,
        image_tag: input.image_tag,
        changed: refresh.previous.as_ref() != Some(&refresh.digest),
        image_digest: refresh.digest.to_string(),
        previous_image_digest: refresh.previous.map(|d| d.to_string()),
    })
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RuleExtensionsInput {
    rule_index: i64,
    #[serde(default)]
    repository_names: Vec<String>,
    #[serde(default)]
    tag_filters: Vec<String>,
    #[serde(default)]
    propagate_deletes: bool,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ReplicationConfigurationOutput {
    registry_id: String,
    replication_configuration: berth_rules::replication::ReplicationConfiguration,
}

async fn put_rule_extensions(
    ctx: &Ctx<'_>,
    input: RuleExtensionsInput,
) -> Result<ReplicationConfigurationOutput, EcrError> {
    let index = usize::try_from(input.rule_index)
        .map_err(|_| EcrError::new("InvalidParameterException", "ruleIndex counts the configuration's rules from 0"))?;
    let config = ctx
        .app
        .registry
        .put_replication_rule_extensions(
            &ctx.ns.account,
            index,
            input.repository_names,
            input.tag_filters,
            input.propagate_deletes,
        )
        .await?;
    Ok(ReplicationConfigurationOutput { registry_id: ctx.registry_id().to_string(), replication_configuration: config })
}

async fn get_replication_configuration(ctx: &Ctx<'_>) -> Result<ReplicationConfigurationOutput, EcrError> {
    let config = ctx.app.registry.replication_configuration(&ctx.ns.account).await?;
    Ok(ReplicationConfigurationOutput { registry_id: ctx.registry_id().to_string(), replication_configuration: config })
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ListEventsInput {
    repository_name: String,
    max_results: Option<i64>,
    next_token: Option<String>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ReplicationEventOutput {
    image_digest: String,
    region: String,
    registry_id: String,
    /// `REPLICATE`, or `DELETE` / `UNTAG` where deletes are propagated.
    action: &'static str,
    status: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    failure_code: Option<String>,
    image_tags: Vec<String>,
    dropped_tags: Vec<String>,
    ended_at: f64,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ListEventsOutput {
    events: Vec<ReplicationEventOutput>,
    #[serde(skip_serializing_if = "Option::is_none")]
    next_token: Option<String>,
}

async fn list_replication_events(ctx: &Ctx<'_>, input: ListEventsInput) -> Result<ListEventsOutput, EcrError> {
    super::check_repository_name(&input.repository_name)?;
    ctx.existing_repository(&input.repository_name).await?;
    let limit = match input.max_results {
        None => 100,
        Some(n @ 1..=1000) => n as u32,
        Some(n) => {
            return Err(EcrError::new("InvalidParameterException", format!("maxResults is 1 to 1000, not {n}")));
        }
    };
    let after = match &input.next_token {
        None => 0,
        Some(t) => t.parse::<i64>().map_err(|_| EcrError::new("InvalidParameterException", "Invalid nextToken"))?,
    };
    let mut events = ctx.app.registry.replication_events(Some(&input.repository_name), after, limit + 1).await?;
    let more = events.len() > limit as usize;
    events.truncate(limit as usize);
    let next_token = more.then(|| events.last().map(|e| e.id.to_string())).flatten();
    Ok(ListEventsOutput {
        events: events
            .into_iter()
            .map(|e| ReplicationEventOutput {
                image_digest: e.digest,
                action: e.action.as_str(),
                region: e.target.region,
                registry_id: e.target.registry_id,
                status: e.status.as_str(),
                failure_code: e.failure_code,
                image_tags: e.tags,
                dropped_tags: e.dropped_tags,
                ended_at: seconds(e.at),
            })
            .collect(),
        next_token,
    })
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct PutPullVerificationInput {
    repository_name: String,
    #[serde(flatten)]
    verification: PullVerification,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct PullVerificationInput {
    repository_name: String,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct PullVerificationOutput {
    registry_id: String,
    repository_name: String,
    #[serde(flatten)]
    verification: PullVerification,
}

async fn put_pull_verification(
    ctx: &Ctx<'_>,
    input: PutPullVerificationInput,
) -> Result<PullVerificationOutput, EcrError> {
    ctx.existing_repository(&input.repository_name).await?;
    ctx.app.registry.set_pull_verification(&ctx.ns.account, &input.repository_name, Some(&input.verification)).await?;
    Ok(PullVerificationOutput {
        registry_id: ctx.registry_id().to_string(),
        repository_name: input.repository_name,
        verification: input.verification,
    })
}

async fn get_pull_verification(
    ctx: &Ctx<'_>,
    input: PullVerificationInput,
) -> Result<PullVerificationOutput, EcrError> {
    ctx.existing_repository(&input.repository_name).await?;
    let verification = ctx.app.registry.pull_verification(&input.repository_name).await?.ok_or_else(|| {
        EcrError::new("PullVerificationNotFoundException", "The repository does not verify signatures on pull")
    })?;
    Ok(PullVerificationOutput {
        registry_id: ctx.registry_id().to_string(),
        repository_name: input.repository_name,
        verification,
    })
}

async fn delete_pull_verification(
    ctx: &Ctx<'_>,
    input: PullVerificationInput,
) -> Result<PullVerificationOutput, EcrError> {
    let output = get_pull_verification(ctx, PullVerificationInput { repository_name: input.repository_name }).await?;
    ctx.app.registry.set_pull_verification(&ctx.ns.account, &output.repository_name, None).await?;
    Ok(output)
}
