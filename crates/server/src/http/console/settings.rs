//! Registry settings as JSON editors (`/console/settings?doc=…`): the registry policy, the
//! registry's scanning configuration, its replication configuration and its signing
//! configuration. Each is read, saved and (where the API can) deleted with its ECR operations
//! as the signed-in principal, so validation and refusals are the API's, shown at the editor.

use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::http::Uri;
use axum::response::{IntoResponse, Redirect, Response};
use maud::{Markup, html};
use serde_json::{Value, json};

use super::{Form, Signed, csrf_field, page_response, refusal, signed_form, urlencode};
use crate::http::AppState;

/// One registry document the page edits.
struct Document {
    /// Its `doc=` name.
    id: &'static str,
    title: &'static str,
    get: &'static str,
    /// Where the document is in `get`'s answer; a string member holds JSON text.
    member: &'static str,
    /// The exception `get` answers when there is none (the editor starts empty).
    missing: Option<&'static str>,
    put: &'static str,
    /// The member of `put`'s input the document goes in; `None`: the document is the input.
    put_member: Option<&'static str>,
    /// Whether `put_member` takes JSON text rather than an object.
    as_text: bool,
    delete: Option<&'static str>,
    /// What an empty editor starts with.
    template: &'static str,
}

const DOCUMENTS: [Document; 4] = [
    Document {
        id: "registry-policy",
        title: "Registry policy",
        get: "GetRegistryPolicy",
        member: "policyText",
        missing: Some("RegistryPolicyNotFoundException"),
        put: "PutRegistryPolicy",
        put_member: Some("policyText"),
        as_text: true,
        delete: Some("DeleteRegistryPolicy"),
        template: "{\n  \"Version\": \"2012-10-17\",\n  \"Statement\": []\n}",
    },
    Document {
        id: "scanning",
        title: "Scanning configuration",
        get: "GetRegistryScanningConfiguration",
        member: "scanningConfiguration",
        missing: None,
        put: "PutRegistryScanningConfiguration",
        put_member: None,
        as_text: false,
        delete: None,
        template: "{\n  \"scanType\": \"BASIC\",\n  \"rules\": []\n}",
    },
    Document {
        id: "replication",
        title: "Replication configuration",
        get: "DescribeRegistry",
        member: "replicationConfiguration",
        missing: None,
        put: "PutReplicationConfiguration",
        put_member: Some("replicationConfiguration"),
        as_text: false,
        delete: None,
        template: "{\n  \"rules\": []\n}",
    },
    Document {
        id: "signing",
        title: "Signing configuration",
        get: "GetSigningConfiguration",
        member: "signingConfiguration",
        missing: Some("SigningConfigurationNotFoundException"),
        put: "PutSigningConfiguration",
        put_member: Some("signingConfiguration"),
        as_text: false,
        delete: Some("DeleteSigningConfiguration"),
        template: "{\n  \"rules\": []\n}",
    },
];

fn document(id: &str) -> &'static Document {
    DOCUMENTS.iter().find(|d| d.id == id).unwrap_or(&DOCUMENTS[0])
}

fn pretty(v: &Value) -> String {
    match v {
        Value::String(text) => serde_json::from_str::<Value>(text)
            .ok()
            .and_then(|v| serde_json::to_string_pretty(&v).ok())
            .unwrap_or_else(|| text.clone()),
        Value::Null => String::new(),
        other => serde_json::to_string_pretty(other).unwrap_or_default(),
    }
}

pub async fn show(State(app): State<AppState>, signed: Signed, uri: Uri) -> Response {
    let q = Form::query(uri.query());
    let doc = document(q.get("doc").unwrap_or(""));
    let (text, alert) = match signed.call(&app, doc.get, json!({})).await {
        Ok(out) => {
            let text = pretty(&out[doc.member]);
            (if text.is_empty() { doc.template.to_string() } else { text }, None)
        }
        Err(e) if doc.missing == Some(e.exception_and_message().0) => (doc.template.to_string(), None),
        Err(e) => (String::new(), Some(refusal(&e))),
    };
    let notice = q.done_notice();
    render(&app, &signed, doc, StatusCode::OK, &text, alert.or(notice)).await
}

async fn render(
    app: &AppState,
    signed: &Signed,
    doc: &Document,
    status: StatusCode,
    text: &str,
    message: Option<Markup>,
) -> Response {
    let user = &signed.user;
    let may_save = super::may_registry(app, signed, &format!("ecr:{}", doc.put)).await;
    let body = html! {
        nav aria-label="Settings" {
            ul.tabs {
                @for d in &DOCUMENTS {
                    li { a href=(format!("/console/settings?doc={}", d.id)) aria-current=[(d.id == doc.id).then_some("page")] { (d.title) } }
                }
            }
        }
        form.panel method="post" action="/console/settings" {
            (csrf_field(user))
            input type="hidden" name="doc" value=(doc.id);
            label for="document" { (doc.title) " (JSON)" }
            @if let Some(m) = &message { div #document-message { (m) } }
            textarea #document name="document" rows="18" spellcheck="false" aria-describedby="document-message" { (text) }
            @if may_save {
                div.toolbar {
                    button type="submit" name="do" value="save" { "Save" }
                    @if doc.delete.is_some() { button.danger type="submit" name="do" value="delete" { "Delete" } }
                }
            }
        }
    };
    page_response(status, doc.title, Some(user), body)
}

pub async fn post(State(app): State<AppState>, req: Request) -> Response {
    let (signed, form) = match signed_form(&app, req).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    let doc = document(form.get("doc").unwrap_or(""));
    let text = form.get("document").unwrap_or("").to_string();
    let result = match (form.get("do"), doc.delete) {
        (Some("delete"), Some(delete)) => signed.call(&app, delete, json!({})).await.map(|_| "deleted"),
        _ => {
            let parsed: Value = match serde_json::from_str(&text) {
                Ok(v) => v,
                Err(e) => {
                    let alert = html! { p.alert role="alert" { "The document is not valid JSON: " (e.to_string()) } };
                    return render(&app, &signed, doc, StatusCode::BAD_REQUEST, &text, Some(alert)).await;
                }
            };
            let input = match (doc.put_member, doc.as_text) {
                (Some(m), true) => json!({ m: text }),
                (Some(m), false) => json!({ m: parsed }),
                (None, _) => parsed,
            };
            signed.call(&app, doc.put, input).await.map(|_| "saved")
        }
    };
    match result {
        Ok(what) => {
            let done = format!("The {} was {what}.", doc.title.to_lowercase());
            Redirect::to(&format!("/console/settings?doc={}&done={}", doc.id, urlencode(&done))).into_response()
        }
        Err(e) => render(&app, &signed, doc, StatusCode::BAD_REQUEST, &text, Some(refusal(&e))).await,
    }
}
