//! Lifecycle policy operations: put, get, delete, and the preview of what a policy would do.

use berth_meta::MetaError;
use berth_policy::lifecycle::{self, ActionKind};
use serde::Deserialize;
use serde_json::{Value, json};

use super::images::ImageId;
use super::{Ctx, EcrError, EcrResult, no_paging_with};

fn not_found(ctx: &Ctx<'_>, repo: &str) -> EcrError {
    EcrError::new(
        "LifecyclePolicyNotFoundException",
        format!(
            "Lifecycle policy does not exist for the repository with name '{repo}' in the registry with id '{}'",
            ctx.registry_id()
        ),
    )
}

fn validated(text: &str) -> Result<lifecycle::LifecyclePolicy, EcrError> {
    lifecycle::parse(text).map_err(|e| {
        EcrError::invalid(format!(
            "Invalid parameter at 'LifecyclePolicyText' failed to satisfy constraint: 'Lifecycle policy validation failure: {e}'"
        ))
    })
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct PutInput {
    repository_name: String,
    lifecycle_policy_text: String,
}

pub(super) async fn put_lifecycle_policy(ctx: &Ctx<'_>, input: PutInput) -> EcrResult {
    let repo = &input.repository_name;
    ctx.existing_repository(repo).await?;
    validated(&input.lifecycle_policy_text)?;
    ctx.app.registry.meta().set_lifecycle_policy(repo, Some(&input.lifecycle_policy_text)).await?;
    Ok(
        json!({ "registryId": ctx.registry_id(), "repositoryName": repo, "lifecyclePolicyText": input.lifecycle_policy_text }),
    )
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct RepoInput {
    repository_name: String,
}

fn policy_json(ctx: &Ctx<'_>, repo: &str, text: String, evaluated: Option<i64>) -> Value {
    let mut v = json!({ "registryId": ctx.registry_id(), "repositoryName": repo, "lifecyclePolicyText": text });
    if let Some(t) = evaluated {
        v["lastEvaluatedAt"] = (t as f64 / 1000.0).into();
    }
    v
}

pub(super) async fn get_lifecycle_policy(ctx: &Ctx<'_>, input: RepoInput) -> EcrResult {
    let repo = &input.repository_name;
    ctx.existing_repository(repo).await?;
    let (text, evaluated) =
        ctx.app.registry.meta().lifecycle_policy(repo).await?.ok_or_else(|| not_found(ctx, repo))?;
    Ok(policy_json(ctx, repo, text, evaluated))
}

pub(super) async fn delete_lifecycle_policy(ctx: &Ctx<'_>, input: RepoInput) -> EcrResult {
    let repo = &input.repository_name;
    ctx.existing_repository(repo).await?;
    let previous = ctx.app.registry.meta().set_lifecycle_policy(repo, None).await.map_err(|e| match e {
        MetaError::RepositoryNotFound => ctx.not_found(repo),
        other => other.into(),
    })?;
    let (text, evaluated) = previous.ok_or_else(|| not_found(ctx, repo))?;
    Ok(policy_json(ctx, repo, text, evaluated))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct StartPreviewInput {
    repository_name: String,
    lifecycle_policy_text: Option<String>,
}

/// Evaluates at once (a preview is a read of the image list), so the preview is COMPLETE as
/// soon as this call returns.
pub(super) async fn start_lifecycle_policy_preview(ctx: &Ctx<'_>, input: StartPreviewInput) -> EcrResult {
    let repo = &input.repository_name;
    ctx.existing_repository(repo).await?;
    let meta = ctx.app.registry.meta();
    let text = match input.lifecycle_policy_text {
        Some(t) => t,
        None => meta.lifecycle_policy(repo).await?.map(|(t, _)| t).ok_or_else(|| not_found(ctx, repo))?,
    };
    let policy = validated(&text)?;
    let now = berth_meta::now_ms();
    let results: Vec<Value> = ctx
        .app
        .registry
        .lifecycle_preview(repo, &policy, now)
        .await?
        .into_iter()
        .map(|(d, image)| {
            let mut action = json!({ "type": d.action.as_api_str() });
            if d.action == ActionKind::Transition {
                action["targetStorageClass"] = "ARCHIVE".into();
            }
            json!({
                "imageDigest": image.digest,
                "imageTags": image.tags,
                "imagePushedAt": image.pushed_at as f64 / 1000.0,
                "action": action,
                "appliedRulePriority": d.rule_priority,
                "storageClass": if image.archived { "ARCHIVE" } else { "STANDARD" },
            })
        })
        .collect();
    meta.put_lifecycle_preview(repo, &text, "COMPLETE", &Value::Array(results).to_string()).await?;
    Ok(
        json!({ "registryId": ctx.registry_id(), "repositoryName": repo, "lifecyclePolicyText": text, "status": "COMPLETE" }),
    )
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct PreviewFilter {
    tag_status: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct GetPreviewInput {
    repository_name: String,
    image_ids: Option<Vec<ImageId>>,
    next_token: Option<String>,
    max_results: Option<i64>,
    filter: Option<PreviewFilter>,
}

pub(super) async fn get_lifecycle_policy_preview(ctx: &Ctx<'_>, input: GetPreviewInput) -> EcrResult {
    no_paging_with(input.image_ids.is_some(), &input.max_results, &input.next_token, "imageIds")?;
    let repo = &input.repository_name;
    ctx.existing_repository(repo).await?;
    let Some((text, status, results)) = ctx.app.registry.meta().lifecycle_preview(repo).await? else {
        return Err(EcrError::new(
            "LifecyclePolicyPreviewNotFoundException",
            format!(
                "There is no lifecycle policy preview for the repository with name '{repo}' in the registry with id '{}'",
                ctx.registry_id()
            ),
        ));
    };
    let all: Vec<Value> = serde_json::from_str(&results).map_err(EcrError::server)?;
    let transitioning = all.iter().filter(|r| r["action"]["type"] == "TRANSITION").count();
    let mut summary = json!({ "expiringImageTotalCount": all.len() - transitioning });
    if transitioning > 0 {
        summary["transitioningImageTotalCounts"] =
            json!([{ "targetStorageClass": "ARCHIVE", "imageTotalCount": transitioning }]);
    }
    let tag_status = input.filter.unwrap_or_default().tag_status;
    let wanted = |r: &Value| {
        let tagged = r["imageTags"].as_array().is_some_and(|t| !t.is_empty());
        let by_status = match tag_status.as_deref() {
            Some("TAGGED") => tagged,
            Some("UNTAGGED") => !tagged,
            _ => true,
        };
        let by_id = input.image_ids.as_ref().is_none_or(|ids| {
            ids.iter().any(|id| id.matches(r["imageDigest"].as_str().unwrap_or(""), r["imageTags"].as_array()))
        });
        by_status && by_id
    };
    let limit = match input.max_results {
        None => 100,
        Some(n) if (1..=100).contains(&n) => n as usize,
        Some(n) => {
            return Err(EcrError::invalid(format!(
                "Invalid parameter at 'maxResults': must be between 1 and 100, got {n}"
            )));
        }
    };
    let start: usize = ctx.decode_token(&input.next_token)?.and_then(|t| t.parse().ok()).unwrap_or(0);
    let selected: Vec<Value> = all.into_iter().filter(wanted).collect();
    let page: Vec<Value> = selected.iter().skip(start).take(limit).cloned().collect();
    let mut out = json!({
        "registryId": ctx.registry_id(),
        "repositoryName": repo,
        "lifecyclePolicyText": text,
        "status": status,
        "previewResults": page,
        "summary": summary,
    });
    if start + limit < selected.len() {
        out["nextToken"] = ctx.encode_token(&(start + limit).to_string()).into();
    }
    Ok(out)
}
