//! Lifecycle policy operations: put, get, delete, and the preview of what a policy would do.

use berth_meta::ActionKind;
use berth_registry::settings::PreviewResult;
use serde::{Deserialize, Serialize};

use super::shapes::{ImageId, seconds};
use super::{Ctx, EcrError, no_paging_with};

/// The answer of putting, getting and deleting a lifecycle policy, and of starting a preview.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct LifecyclePolicyOutput {
    registry_id: String,
    repository_name: String,
    lifecycle_policy_text: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    last_evaluated_at: Option<f64>,
    /// `StartLifecyclePolicyPreview` only.
    #[serde(skip_serializing_if = "Option::is_none")]
    status: Option<&'static str>,
}

impl Ctx<'_> {
    fn lifecycle_policy(&self, repository: &str, text: String, evaluated: Option<i64>) -> LifecyclePolicyOutput {
        LifecyclePolicyOutput {
            registry_id: self.registry_id().to_string(),
            repository_name: repository.to_string(),
            lifecycle_policy_text: text,
            last_evaluated_at: evaluated.map(seconds),
            status: None,
        }
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct PutInput {
    repository_name: String,
    lifecycle_policy_text: String,
}

pub(super) async fn put_lifecycle_policy(ctx: &Ctx<'_>, input: PutInput) -> Result<LifecyclePolicyOutput, EcrError> {
    let repo = &input.repository_name;
    ctx.existing_repository(repo).await?;
    ctx.app.registry.put_lifecycle_policy(repo, &input.lifecycle_policy_text).await?;
    Ok(ctx.lifecycle_policy(repo, input.lifecycle_policy_text, None))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct RepoInput {
    repository_name: String,
}

pub(super) async fn get_lifecycle_policy(ctx: &Ctx<'_>, input: RepoInput) -> Result<LifecyclePolicyOutput, EcrError> {
    let repo = &input.repository_name;
    ctx.existing_repository(repo).await?;
    let (text, evaluated) = ctx.app.registry.lifecycle_policy(repo).await?;
    Ok(ctx.lifecycle_policy(repo, text, evaluated))
}

pub(super) async fn delete_lifecycle_policy(
    ctx: &Ctx<'_>,
    input: RepoInput,
) -> Result<LifecyclePolicyOutput, EcrError> {
    let repo = &input.repository_name;
    ctx.existing_repository(repo).await?;
    let (text, evaluated) = ctx.app.registry.delete_lifecycle_policy(repo).await?;
    Ok(ctx.lifecycle_policy(repo, text, evaluated))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct StartPreviewInput {
    repository_name: String,
    lifecycle_policy_text: Option<String>,
}

/// Evaluates at once (a preview is a read of the image list), so the preview is COMPLETE as
/// soon as this call returns.
pub(super) async fn start_lifecycle_policy_preview(
    ctx: &Ctx<'_>,
    input: StartPreviewInput,
) -> Result<LifecyclePolicyOutput, EcrError> {
    let repo = &input.repository_name;
    ctx.existing_repository(repo).await?;
    let text = ctx.app.registry.start_lifecycle_preview(repo, input.lifecycle_policy_text).await?;
    Ok(LifecyclePolicyOutput { status: Some("COMPLETE"), ..ctx.lifecycle_policy(repo, text, None) })
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

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct TransitioningCount {
    target_storage_class: &'static str,
    image_total_count: usize,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct PreviewSummary {
    expiring_image_total_count: usize,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    transitioning_image_total_counts: Vec<TransitioningCount>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct GetPreviewOutput {
    registry_id: String,
    repository_name: String,
    lifecycle_policy_text: String,
    status: String,
    preview_results: Vec<PreviewResult>,
    summary: PreviewSummary,
    #[serde(skip_serializing_if = "Option::is_none")]
    next_token: Option<String>,
}

pub(super) async fn get_lifecycle_policy_preview(
    ctx: &Ctx<'_>,
    input: GetPreviewInput,
) -> Result<GetPreviewOutput, EcrError> {
    no_paging_with(input.image_ids.is_some(), &input.max_results, &input.next_token, "imageIds")?;
    let repo = &input.repository_name;
    ctx.existing_repository(repo).await?;
    let preview = ctx.app.registry.lifecycle_preview_results(repo).await?;
    let (text, status, all) = (preview.policy_text, preview.status, preview.results);
    let transitioning = all.iter().filter(|r| r.action.kind == ActionKind::Transition).count();
    let summary = PreviewSummary {
        expiring_image_total_count: all.len() - transitioning,
        transitioning_image_total_counts: (transitioning > 0)
            .then_some(TransitioningCount { target_storage_class: "ARCHIVE", image_total_count: transitioning })
            .into_iter()
            .collect(),
    };
    let tag_status = input.filter.unwrap_or_default().tag_status;
    let wanted = |r: &PreviewResult| {
        let tagged = !r.image_tags.is_empty();
        let by_status = match tag_status.as_deref() {
            Some("TAGGED") => tagged,
            Some("UNTAGGED") => !tagged,
            _ => true,
        };
        let by_id =
            input.image_ids.as_ref().is_none_or(|ids| ids.iter().any(|id| id.matches(&r.image_digest, &r.image_tags)));
        by_status && by_id
    };
    let limit = input.max_results.map_or(100, |n| n as usize);
    let start: usize = ctx.decode_token(&input.next_token)?.and_then(|t| t.parse().ok()).unwrap_or(0);
    let selected: Vec<PreviewResult> = all.into_iter().filter(wanted).collect();
    let page: Vec<PreviewResult> = selected.iter().skip(start).take(limit).cloned().collect();
    let next_token = (start + limit < selected.len()).then(|| ctx.encode_token(&(start + limit).to_string()));
    Ok(GetPreviewOutput {
        registry_id: ctx.registry_id().to_string(),
        repository_name: repo.clone(),
        lifecycle_policy_text: text,
        status,
        preview_results: page,
        summary,
        next_token,
    })
}
