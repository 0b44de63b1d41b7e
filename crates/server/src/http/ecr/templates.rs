//! Repository creation templates, per account: create, update, delete, describe.

use berth_registry::repositories::{StoredTemplate, TemplateSpec};
use serde::{Deserialize, Serialize};

use super::shapes::seconds;
use super::{Ctx, EcrError, page_size};

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct TemplateInput {
    prefix: String,
    #[serde(flatten)]
    spec: TemplateSpec,
}

/// `RepositoryCreationTemplate`.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct TemplateShape {
    prefix: String,
    #[serde(flatten)]
    spec: TemplateSpec,
    created_at: f64,
    updated_at: f64,
}

impl From<StoredTemplate> for TemplateShape {
    fn from(t: StoredTemplate) -> Self {
        TemplateShape {
            prefix: t.prefix,
            spec: t.spec,
            created_at: seconds(t.created_at),
            updated_at: seconds(t.updated_at),
        }
    }
}

/// The answer of creating, updating and deleting a template.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct TemplateOutput {
    registry_id: String,
    repository_creation_template: TemplateShape,
}

pub(super) async fn put_template(
    ctx: &Ctx<'_>,
    input: TemplateInput,
    create: bool,
) -> Result<TemplateOutput, EcrError> {
    let registry = &ctx.app.registry;
    let stored = if create {
        registry.create_creation_template(&ctx.ns.account, &input.prefix, &input.spec).await?
    } else {
        registry.update_creation_template(&ctx.ns.account, &input.prefix, &input.spec).await?
    };
    Ok(TemplateOutput { registry_id: ctx.registry_id().to_string(), repository_creation_template: stored.into() })
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct DeleteTemplateInput {
    prefix: String,
}

pub(super) async fn delete_template(ctx: &Ctx<'_>, input: DeleteTemplateInput) -> Result<TemplateOutput, EcrError> {
    let t = ctx.app.registry.delete_creation_template(&ctx.ns.account, &input.prefix).await?;
    Ok(TemplateOutput { registry_id: ctx.registry_id().to_string(), repository_creation_template: t.into() })
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct DescribeTemplatesInput {
    prefixes: Option<Vec<String>>,
    next_token: Option<String>,
    max_results: Option<i64>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct DescribeTemplatesOutput {
    registry_id: String,
    repository_creation_templates: Vec<TemplateShape>,
    #[serde(skip_serializing_if = "Option::is_none")]
    next_token: Option<String>,
}

pub(super) async fn describe_templates(
    ctx: &Ctx<'_>,
    input: DescribeTemplatesInput,
) -> Result<DescribeTemplatesOutput, EcrError> {
    let selected: Vec<StoredTemplate> = ctx
        .app
        .registry
        .creation_templates(&ctx.ns.account)
        .await?
        .into_iter()
        .filter(|t| input.prefixes.as_ref().is_none_or(|p| p.contains(&t.prefix)))
        .collect();
    let (selected, next_token) =
        ctx.page_of(selected, page_size(input.max_results, 100), &input.next_token, |t| &t.prefix)?;
    Ok(DescribeTemplatesOutput {
        registry_id: ctx.registry_id().to_string(),
        repository_creation_templates: selected.into_iter().map(TemplateShape::from).collect(),
        next_token,
    })
}
