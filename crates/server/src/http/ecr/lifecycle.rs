//! Lifecycle policy operations: put, get, delete, and the preview of what a policy would do.

use serde::Deserialize;
use serde_json::{Value, json};

use super::images::ImageId;
use super::{Ctx, EcrError, EcrResult, no_paging_with};

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct PutInput {
    repository_name: String,
    lifecycle_policy_text: String,
}

pub(super) async fn put_lifecycle_policy(ctx: &Ctx<'_>, input: PutInput) -> EcrResult {
    let repo = &input.repository_name;
    ctx.existing_repository(repo).await?;
    ctx.app.registry.put_lifecycle_policy(repo, &input.lifecycle_policy_text).await?;
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
    let (text, evaluated) = ctx.app.registry.lifecycle_policy(repo).await?;
    Ok(policy_json(ctx, repo, text, evaluated))
}

pub(super) async fn delete_lifecycle_policy(ctx: &Ctx<'_>, input: RepoInput) -> EcrResult {
    let repo = &input.repository_name;
    ctx.existing_repository(repo).await?;
    let (text, evaluated) = ctx.app.registry.delete_lifecycle_policy(repo).await?;
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
    let text = ctx.app.registry.start_lifecycle_preview(repo, input.lifecycle_policy_text).await?;
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
    let preview = ctx.app.registry.lifecycle_preview_results(repo).await?;
    let (text, status) = (preview.policy_text, preview.status);
    let all: Vec<Value> = preview.results.iter().map(|r| serde_json::to_value(r).expect("serializes")).collect();
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
