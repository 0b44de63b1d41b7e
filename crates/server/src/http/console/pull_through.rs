//! Pull-through cache rules (`/console/pull-through`): the account's rules, create (validated as
//! `CreatePullThroughCacheRule` validates), "validate" (`ValidatePullThroughCacheRule`: Berth
//! asks the upstream with the rule's credential and says whether it answered) and delete —
//! each the ECR operation called as the signed-in principal.

use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::http::Uri;
use axum::response::{IntoResponse, Redirect, Response};
use maud::{Markup, html};
use serde_json::{Value, json};

use super::images::time;
use super::{Form, Signed, csrf_field, page_response, refusal, signed_form, urlencode};
use crate::http::AppState;

/// The upstream kinds the ECR model names.
const UPSTREAMS: [&str; 9] = [
    "docker-hub",
    "ecr",
    "ecr-public",
    "quay",
    "k8s",
    "github-container-registry",
    "azure-container-registry",
    "gitlab-container-registry",
    "chainguard",
];

pub async fn list(State(app): State<AppState>, signed: Signed, uri: Uri) -> Response {
    let notice = Form::query(uri.query()).done_notice();
    render(&app, &signed, StatusCode::OK, notice, None).await
}

async fn render(
    app: &AppState,
    signed: &Signed,
    status: StatusCode,
    message: Option<Markup>,
    form: Option<&Form>,
) -> Response {
    let user = &signed.user;
    let mut rules: Vec<Value> = Vec::new();
    let mut refused = None;
    let mut token: Option<String> = None;
    loop {
        let mut input = json!({ "maxResults": 1000 });
        if let Some(t) = &token {
            input["nextToken"] = json!(t);
        }
        match signed.call(app, "DescribePullThroughCacheRules", input).await {
            Ok(out) => {
                rules.extend(out["pullThroughCacheRules"].as_array().cloned().unwrap_or_default());
                token = out["nextToken"].as_str().map(str::to_string);
            }
            Err(e) => {
                refused = Some(refusal(&e));
                token = None;
            }
        }
        if token.is_none() {
            break;
        }
    }
    let may_create = super::may_registry(app, signed, "ecr:CreatePullThroughCacheRule").await;
    let may_delete = super::may_registry(app, signed, "ecr:DeletePullThroughCacheRule").await;
    let may_validate = super::may_registry(app, signed, "ecr:ValidatePullThroughCacheRule").await;
    let given = |k: &str| form.map(|f| f.text(k)).unwrap_or_default();
    let body = html! {
        @if let Some(m) = &message { (m) }
        @if let Some(r) = &refused { (r) }
        table {
            caption.skip { "Pull-through cache rules" }
            thead { tr {
                th scope="col" { "Repository prefix" } th scope="col" { "Upstream" }
                th scope="col" class="optional" { "Credential" } th scope="col" class="optional" { "Created" }
                th scope="col" { "Actions" }
            } }
            tbody {
                @for r in &rules {
                    @let prefix = r["ecrRepositoryPrefix"].as_str().unwrap_or("");
                    tr {
                        td { code { (prefix) } }
                        td { (r["upstreamRegistryUrl"].as_str().unwrap_or(""))
                             @if let Some(k) = r["upstreamRegistry"].as_str() { " (" (k) ")" } }
                        td.optional { (r["credentialArn"].as_str().unwrap_or("\u{2014}")) }
                        td.optional { (time(&r["createdAt"])) }
                        td { div.toolbar {
                            @if may_validate { (rule_form(user, prefix, "validate", "Validate")) }
                            @if may_delete { (rule_form(user, prefix, "delete", "Delete")) }
                        } }
                    }
                }
            }
        }
        @if rules.is_empty() && refused.is_none() { p { "No pull-through cache rules yet." } }
        @if may_create {
            section.panel aria-labelledby="create-rule-heading" {
                h2 #create-rule-heading { "Create a rule" }
                form method="post" action="/console/pull-through" {
                    (csrf_field(user))
                    input type="hidden" name="do" value="create";
                    label for="prefix" { "Repository prefix" }
                    input #prefix type="text" name="prefix" value=(given("prefix")) required;
                    label for="upstream_url" { "Upstream registry URL" }
                    input #upstream_url type="text" name="upstream_url" value=(given("upstream_url")) required;
                    label for="upstream_kind" { "Upstream registry" }
                    select #upstream_kind name="upstream_kind" {
                        option value="" { "(from the URL)" }
                        @for u in UPSTREAMS { option value=(u) selected[given("upstream_kind") == u] { (u) } }
                    }
                    label for="credential_arn" { "Credential (Secrets Manager ARN, optional)" }
                    input #credential_arn type="text" name="credential_arn" value=(given("credential_arn"));
                    label for="upstream_prefix" { "Upstream repository prefix (optional)" }
                    input #upstream_prefix type="text" name="upstream_prefix" value=(given("upstream_prefix"));
                    p { button type="submit" { "Create rule" } }
                }
            }
        }
    };
    page_response(status, "Pull-through cache rules", Some(user), body)
}

fn rule_form(user: &berth_registry::console::ConsoleUser, prefix: &str, action: &str, label: &str) -> Markup {
    let class = if action == "delete" { "danger" } else { "secondary" };
    html! {
        form method="post" action="/console/pull-through" {
            (csrf_field(user))
            input type="hidden" name="prefix" value=(prefix);
            input type="hidden" name="do" value=(action);
            button class=(class) type="submit" aria-label={(label) " " (prefix)} { (label) }
        }
    }
}

pub async fn post(State(app): State<AppState>, req: Request) -> Response {
    let (signed, form) = match signed_form(&app, req).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    let prefix = form.text("prefix");
    match form.get("do") {
        Some("create") => {
            let mut input = json!({ "ecrRepositoryPrefix": prefix, "upstreamRegistryUrl": form.text("upstream_url") });
            for (field, member) in [
                ("upstream_kind", "upstreamRegistry"),
                ("credential_arn", "credentialArn"),
                ("upstream_prefix", "upstreamRepositoryPrefix"),
            ] {
                let v = form.text(field);
                if !v.is_empty() {
                    input[member] = json!(v);
                }
            }
            match signed.call(&app, "CreatePullThroughCacheRule", input).await {
                Ok(_) => done(&format!("Rule {prefix} was created.")),
                Err(e) => render(&app, &signed, StatusCode::BAD_REQUEST, Some(refusal(&e)), Some(&form)).await,
            }
        }
        Some("validate") => {
            match signed.call(&app, "ValidatePullThroughCacheRule", json!({ "ecrRepositoryPrefix": prefix })).await {
                Ok(out) => {
                    let shown = if out["isValid"].as_bool() == Some(true) {
                        html! { p.notice role="status" { "Rule " code { (prefix) } " is valid: the upstream answered with its credential." } }
                    } else {
                        html! { p.alert role="alert" { "Rule " code { (prefix) } " is not valid: " (out["failure"].as_str().unwrap_or("")) } }
                    };
                    render(&app, &signed, StatusCode::OK, Some(shown), None).await
                }
                Err(e) => render(&app, &signed, StatusCode::BAD_REQUEST, Some(refusal(&e)), None).await,
            }
        }
        Some("delete") => {
            match signed.call(&app, "DeletePullThroughCacheRule", json!({ "ecrRepositoryPrefix": prefix })).await {
                Ok(_) => done(&format!("Rule {prefix} was deleted.")),
                Err(e) => render(&app, &signed, StatusCode::BAD_REQUEST, Some(refusal(&e)), None).await,
            }
        }
        _ => render(&app, &signed, StatusCode::BAD_REQUEST, None, None).await,
    }
}

fn done(message: &str) -> Response {
    Redirect::to(&format!("/console/pull-through?done={}", urlencode(message))).into_response()
}
