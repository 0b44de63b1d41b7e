//! A repository's lifecycle policy and permissions. Lifecycle: the policy as raw JSON with a
//! rule form that adds a rule to the draft (no script needed), a preview of what the draft
//! would expire or archive (`StartLifecyclePolicyPreview` with the draft's text, before saving),
//! save (`PutLifecyclePolicy`, validated as the API validates) and delete. Permissions: the
//! repository policy as JSON, saved with `SetRepositoryPolicy` (its validation and lockout
//! check, errors shown at the editor) or deleted.

use std::time::Duration;

use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::http::Uri;
use axum::response::{IntoResponse, Redirect, Response};
use maud::{Markup, html};
use serde_json::{Value, json};

use super::images::{short, time};
use super::{Form, Signed, csrf_field, page_response, refusal, signed_form, urlencode};
use crate::http::AppState;

/// How long a preview is waited for before the page shows it as still running.
const PREVIEW_WAIT: Duration = Duration::from_secs(10);

fn repository_of(query: Option<&str>) -> (String, Option<String>) {
    let q = Form::query(query);
    (q.text("repository"), q.get("done").map(str::to_string))
}

pub(crate) fn tabs(repository: &str) -> Markup {
    let r = urlencode(repository);
    html! {
        nav aria-label="Repository" {
            ul.tabs {
                li { a href=(format!("/console/images?repository={r}")) { "Images" } }
                li { a href=(format!("/console/lifecycle?repository={r}")) { "Lifecycle policy" } }
                li { a href=(format!("/console/permissions?repository={r}")) { "Permissions" } }
            }
        }
    }
}

/// What the lifecycle page shows besides the draft.
#[derive(Default)]
struct LifecycleState {
    draft: String,
    alert: Option<Markup>,
    notice: Option<String>,
    preview: Option<Value>,
}

pub async fn lifecycle(State(app): State<AppState>, signed: Signed, uri: Uri) -> Response {
    let (repository, done) = repository_of(uri.query());
    let mut state = LifecycleState { notice: done, ..Default::default() };
    match signed.call(&app, "GetLifecyclePolicy", json!({ "repositoryName": repository })).await {
        Ok(out) => state.draft = pretty(out["lifecyclePolicyText"].as_str().unwrap_or("")),
        Err(e) if e.exception_and_message().0 == "LifecyclePolicyNotFoundException" => {
            state.draft = "{\n  \"rules\": []\n}".into()
        }
        Err(e) => state.alert = Some(refusal(&e)),
    }
    lifecycle_page(&app, &signed, &repository, StatusCode::OK, state).await
}

async fn lifecycle_page(
    app: &AppState,
    signed: &Signed,
    repository: &str,
    status: StatusCode,
    state: LifecycleState,
) -> Response {
    let may_save = super::may(app, signed, "ecr:PutLifecyclePolicy", repository).await;
    let user = &signed.user;
    let body = html! {
        (tabs(repository))
        @if let Some(n) = &state.notice { p.notice role="status" { (n) } }
        @if let Some(a) = &state.alert { (a) }
        form.panel method="post" action="/console/lifecycle" {
            (csrf_field(user))
            input type="hidden" name="repository" value=(repository);
            fieldset {
                legend { "Add a rule to the draft" }
                label for="priority" { "Rule priority" }
                input #priority type="text" name="priority" inputmode="numeric";
                label for="description" { "Description" }
                input #description type="text" name="description";
                label for="tag_status" { "Images" }
                select #tag_status name="tag_status" {
                    option value="untagged" { "untagged" }
                    option value="tagged" { "tagged (matching the patterns below)" }
                    option value="any" { "any" }
                }
                label for="patterns" { "Tag patterns (comma-separated wildcards, for tagged images)" }
                input #patterns type="text" name="patterns";
                label for="count_type" { "When" }
                select #count_type name="count_type" {
                    option value="imageCountMoreThan" { "more images than (count)" }
                    option value="sinceImagePushed" { "pushed more than (days) ago" }
                    option value="sinceImagePulled" { "last pulled more than (days) ago" }
                }
                label for="count" { "Count / days" }
                input #count type="text" name="count" inputmode="numeric";
                label for="rule_action" { "Action" }
                select #rule_action name="rule_action" {
                    option value="expire" { "expire (delete)" }
                    option value="archive" { "archive" }
                }
                p { button.secondary type="submit" name="do" value="add-rule" { "Add rule to draft" } }
            }
            label for="policy" { "Lifecycle policy (JSON)" }
            textarea #policy name="policy" rows="16" spellcheck="false" aria-describedby="policy-help" { (state.draft) }
            p #policy-help { "Preview shows what the draft would do now; nothing is saved until you save." }
            div.toolbar {
                button type="submit" name="do" value="preview" { "Preview" }
                @if may_save {
                    button type="submit" name="do" value="save" { "Save policy" }
                    button.danger type="submit" name="do" value="delete" { "Delete policy" }
                }
            }
        }
        @if let Some(p) = &state.preview { (preview_section(p)) }
    };
    page_response(status, &format!("Lifecycle policy of {repository}"), Some(user), body)
}

fn preview_section(p: &Value) -> Markup {
    let results: Vec<&Value> = p["previewResults"].as_array().into_iter().flatten().collect();
    html! {
        section.panel aria-labelledby="preview-heading" {
            h2 #preview-heading { "Preview" }
            p { "Status: " (p["status"].as_str().unwrap_or("")) ". "
                (results.len()) " images would be acted on." }
            @if !results.is_empty() {
                table.preview {
                    thead { tr {
                        th scope="col" { "Image" } th scope="col" { "Tags" } th scope="col" { "Pushed" }
                        th scope="col" { "Action" } th scope="col" { "Rule" }
                    } }
                    tbody {
                        @for r in results {
                            tr {
                                td { code { (short(r["imageDigest"].as_str().unwrap_or(""))) } }
                                td { (r["imageTags"].as_array().into_iter().flatten().filter_map(Value::as_str).collect::<Vec<_>>().join(", ")) }
                                td { (time(&r["imagePushedAt"])) }
                                td { (action_words(&r["action"])) }
                                td { (r["appliedRulePriority"].as_i64().unwrap_or(0)) }
                            }
                        }
                    }
                }
            }
        }
    }
}

fn action_words(a: &Value) -> String {
    match (a["type"].as_str(), a["targetStorageClass"].as_str()) {
        (Some("TRANSITION"), Some(c)) => format!("transition to {}", c.to_lowercase()),
        (Some(t), _) => t.to_lowercase(),
        _ => String::new(),
    }
}

pub async fn lifecycle_post(State(app): State<AppState>, req: Request) -> Response {
    let (signed, form) = match signed_form(&app, req).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    let repository = form.text("repository");
    let draft = form.get("policy").unwrap_or("").to_string();
    let mut state = LifecycleState { draft: draft.clone(), ..Default::default() };
    let back = format!("/console/lifecycle?repository={}", urlencode(&repository));
    match form.get("do") {
        Some("add-rule") => match with_rule(&draft, &form) {
            Ok(d) => state.draft = d,
            Err(m) => state.alert = Some(html! { p.alert role="alert" { (m) } }),
        },
        Some("save") => {
            let input = json!({ "repositoryName": repository, "lifecyclePolicyText": draft });
            match signed.call(&app, "PutLifecyclePolicy", input).await {
                Ok(_) => {
                    return Redirect::to(&format!("{back}&done={}", urlencode("The policy was saved.")))
                        .into_response();
                }
                Err(e) => state.alert = Some(refusal(&e)),
            }
        }
        Some("delete") => {
            match signed.call(&app, "DeleteLifecyclePolicy", json!({ "repositoryName": repository })).await {
                Ok(_) => {
                    return Redirect::to(&format!("{back}&done={}", urlencode("The policy was deleted.")))
                        .into_response();
                }
                Err(e) => state.alert = Some(refusal(&e)),
            }
        }
        _ => {
            let input = json!({ "repositoryName": repository, "lifecyclePolicyText": draft });
            match signed.call(&app, "StartLifecyclePolicyPreview", input).await {
                Ok(_) => match wait_preview(&app, &signed, &repository).await {
                    Ok(p) => state.preview = Some(p),
                    Err(e) => state.alert = Some(refusal(&e)),
                },
                Err(e) => state.alert = Some(refusal(&e)),
            }
        }
    }
    let status = if state.alert.is_some() { StatusCode::BAD_REQUEST } else { StatusCode::OK };
    lifecycle_page(&app, &signed, &repository, status, state).await
}

/// The preview's results once it is complete (or as it is after `PREVIEW_WAIT`).
async fn wait_preview(app: &AppState, signed: &Signed, repository: &str) -> Result<Value, super::EcrError> {
    let deadline = tokio::time::Instant::now() + PREVIEW_WAIT;
    loop {
        let out = signed
            .call(app, "GetLifecyclePolicyPreview", json!({ "repositoryName": repository, "maxResults": 100 }))
            .await?;
        if out["status"] != "IN_PROGRESS" || tokio::time::Instant::now() >= deadline {
            return more_results(app, signed, repository, out).await;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A preview's first page with the results of the next ones (at most 1,000 in all).
async fn more_results(
    app: &AppState,
    signed: &Signed,
    repository: &str,
    mut out: Value,
) -> Result<Value, super::EcrError> {
    let mut token = out["nextToken"].as_str().map(str::to_string);
    for _ in 0..9 {
        let Some(t) = token.take() else { break };
        let input = json!({ "repositoryName": repository, "maxResults": 100, "nextToken": t });
        let page = signed.call(app, "GetLifecyclePolicyPreview", input).await?;
        if let (Some(all), Some(more)) = (out["previewResults"].as_array_mut(), page["previewResults"].as_array()) {
            all.extend(more.iter().cloned());
        }
        token = page["nextToken"].as_str().map(str::to_string);
    }
    Ok(out)
}

/// The draft with the rule the form describes added (the draft must be a JSON object).
fn with_rule(draft: &str, form: &Form) -> Result<String, String> {
    let mut policy: Value = serde_json::from_str(draft)
        .map_err(|e| format!("The draft is not valid JSON ({e}); fix it before adding rules."))?;
    let priority: i64 =
        form.text("priority").parse().map_err(|_| "The rule priority must be a whole number.".to_string())?;
    let count: i64 = form.text("count").parse().map_err(|_| "The count must be a whole number.".to_string())?;
    let count_type = form.text("count_type");
    let mut selection = json!({ "tagStatus": form.text("tag_status"), "countType": count_type, "countNumber": count });
    if count_type != "imageCountMoreThan" {
        selection["countUnit"] = json!("days");
    }
    let patterns: Vec<String> =
        form.text("patterns").split(',').map(str::trim).filter(|p| !p.is_empty()).map(str::to_string).collect();
    if !patterns.is_empty() {
        selection["tagPatternList"] = json!(patterns);
    }
    let action = match form.text("rule_action").as_str() {
        "archive" => json!({ "type": "transition", "targetStorageClass": "archive" }),
        _ => json!({ "type": "expire" }),
    };
    let mut rule = json!({ "rulePriority": priority, "selection": selection, "action": action });
    let description = form.text("description");
    if !description.is_empty() {
        rule["description"] = json!(description);
    }
    let Some(obj) = policy.as_object_mut() else { return Err("The draft must be a JSON object.".into()) };
    match obj.entry("rules").or_insert_with(|| json!([])).as_array_mut() {
        Some(rules) => rules.push(rule),
        None => return Err("The draft's \"rules\" must be a list.".into()),
    }
    Ok(serde_json::to_string_pretty(&policy).unwrap_or_default())
}

fn pretty(text: &str) -> String {
    serde_json::from_str::<Value>(text).ok().and_then(|v| serde_json::to_string_pretty(&v).ok()).unwrap_or(text.into())
}

pub async fn permissions(State(app): State<AppState>, signed: Signed, uri: Uri) -> Response {
    let (repository, done) = repository_of(uri.query());
    let (text, alert) = match signed.call(&app, "GetRepositoryPolicy", json!({ "repositoryName": repository })).await {
        Ok(out) => (pretty(out["policyText"].as_str().unwrap_or("")), None),
        Err(e) if e.exception_and_message().0 == "RepositoryPolicyNotFoundException" => (String::new(), None),
        Err(e) => (String::new(), Some(refusal(&e))),
    };
    permissions_page(&app, &signed, &repository, StatusCode::OK, &text, alert, done).await
}

async fn permissions_page(
    app: &AppState,
    signed: &Signed,
    repository: &str,
    status: StatusCode,
    text: &str,
    alert: Option<Markup>,
    notice: Option<String>,
) -> Response {
    let may_save = super::may(app, signed, "ecr:SetRepositoryPolicy", repository).await;
    let user = &signed.user;
    let body = html! {
        (tabs(repository))
        @if let Some(n) = &notice { p.notice role="status" { (n) } }
        form.panel method="post" action="/console/permissions" {
            (csrf_field(user))
            input type="hidden" name="repository" value=(repository);
            label for="policy" { "Repository policy (JSON)" }
            @if let Some(a) = &alert { div #policy-error { (a) } }
            textarea #policy name="policy" rows="16" spellcheck="false" aria-describedby="policy-error" { (text) }
            @if may_save {
                div.check {
                    input #force type="checkbox" name="force";
                    label for="force" { " Save even if it would lock me out (force)" }
                }
                div.toolbar {
                    button type="submit" name="do" value="save" { "Save policy" }
                    button.danger type="submit" name="do" value="delete" { "Delete policy" }
                }
            }
        }
    };
    page_response(status, &format!("Permissions of {repository}"), Some(user), body)
}

pub async fn permissions_post(State(app): State<AppState>, req: Request) -> Response {
    let (signed, form) = match signed_form(&app, req).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    let repository = form.text("repository");
    let text = form.get("policy").unwrap_or("").to_string();
    let back = format!("/console/permissions?repository={}", urlencode(&repository));
    let result = match form.get("do") {
        Some("delete") => signed.call(&app, "DeleteRepositoryPolicy", json!({ "repositoryName": repository })).await,
        _ => {
            let input = json!({ "repositoryName": repository, "policyText": text, "force": form.checked("force") });
            signed.call(&app, "SetRepositoryPolicy", input).await
        }
    };
    match result {
        Ok(_) => {
            let done =
                if form.get("do") == Some("delete") { "The policy was deleted." } else { "The policy was saved." };
            Redirect::to(&format!("{back}&done={}", urlencode(done))).into_response()
        }
        Err(e) => {
            permissions_page(&app, &signed, &repository, StatusCode::BAD_REQUEST, &text, Some(refusal(&e)), None).await
        }
    }
}
