//! Users and access keys (`/console/users`), for a principal allowed to manage IAM: the
//! account's users with their keys (status, created, last used), create a user, create a key
//! (its secret shown once), deactivate, activate and delete keys. Each action is authorized as
//! the IAM API authorizes it (`iam:<Action>` in the caller's account) and carried out by the
//! same `IamAdmin` code; deactivating or deleting a key ends its console sessions.

use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::http::Uri;
use axum::response::{IntoResponse, Redirect, Response};
use berth_registry::iam::{IamAdmin, KeyStatus};
use maud::{Markup, html};

use super::{Form, Signed, csrf_field, page_response, signed_form, urlencode};
use crate::http::AppState;

/// IAM's refusal as the console shows it.
fn iam_refusal(code: &str, message: &str) -> Markup {
    html! { p.alert role="alert" { strong { (code) } ": " (message) } }
}

async fn allowed(app: &AppState, signed: &Signed, action: &str) -> Result<(), Markup> {
    crate::http::iam::authorize(app, &signed.user.caller, action, &signed.env)
        .await
        .map_err(|(code, message)| iam_refusal(code, &message))
}

pub async fn list(State(app): State<AppState>, signed: Signed, uri: Uri) -> Response {
    render(&app, &signed, StatusCode::OK, Form::query(uri.query()).done_notice()).await
}

async fn render(app: &AppState, signed: &Signed, status: StatusCode, message: Option<Markup>) -> Response {
    let user = &signed.user;
    if let Err(refused) = allowed(app, signed, "ListUsers").await {
        return page_response(StatusCode::FORBIDDEN, "Users and access keys", Some(user), refused);
    }
    let iam = app.registry.iam(&user.caller.account_id);
    let users = match iam.list_users().await {
        Ok(u) => u,
        Err(e) => {
            return page_response(status, "Users and access keys", Some(user), iam_refusal(e.code(), &e.to_string()));
        }
    };
    let mut rows = Vec::new();
    for u in users {
        let keys = iam.access_keys(&u).await.unwrap_or_default();
        rows.push((u, keys));
    }
    let may_create_user = allowed(app, signed, "CreateUser").await.is_ok();
    let may_create_key = allowed(app, signed, "CreateAccessKey").await.is_ok();
    let may_update_key = allowed(app, signed, "UpdateAccessKey").await.is_ok();
    let may_delete_key = allowed(app, signed, "DeleteAccessKey").await.is_ok();
    let body = html! {
        @if let Some(m) = &message { (m) }
        table {
            caption.skip { "Users and their access keys" }
            thead { tr {
                th scope="col" { "User" } th scope="col" { "Access key" } th scope="col" { "Status" }
                th scope="col" class="optional" { "Created" } th scope="col" { "Last used" } th scope="col" { "Actions" }
            } }
            tbody {
                @for (u, keys) in &rows {
                    @if keys.is_empty() {
                        tr { td { (u.name) } td { em { "no access keys" } } td {} td.optional {} td {}
                             td { @if may_create_key { (key_form(user, &u.name, "", "create", "Create access key")) } } }
                    }
                    @for (i, k) in keys.iter().enumerate() {
                        tr {
                            td { @if i == 0 { (u.name) } }
                            td { code { (k.access_key_id) } }
                            td { (if k.active { "Active" } else { "Inactive" }) }
                            td.optional { (berth_iam::format_iso8601(k.created_at / 1000)) }
                            td {
                                @match &k.last_used {
                                    Some(used) => { (berth_iam::format_iso8601(used.at / 1000)) " (" (used.service) ")" }
                                    None => { "never" }
                                }
                            }
                            td {
                                div.toolbar {
                                    @if may_update_key {
                                        @if k.active { (key_form(user, &u.name, &k.access_key_id, "deactivate", "Deactivate")) }
                                        @else { (key_form(user, &u.name, &k.access_key_id, "activate", "Activate")) }
                                    }
                                    @if may_delete_key { (key_form(user, &u.name, &k.access_key_id, "delete", "Delete")) }
                                    @if may_create_key && i + 1 == keys.len() && keys.len() < 2 {
                                        (key_form(user, &u.name, "", "create", "Create access key"))
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
        @if may_create_user {
            section.panel aria-labelledby="new-user-heading" {
                h2 #new-user-heading { "Create a user" }
                form method="post" action="/console/users" {
                    (csrf_field(user))
                    input type="hidden" name="do" value="create-user";
                    label for="user_name" { "User name" }
                    input #user_name type="text" name="user_name" required;
                    p { button type="submit" { "Create user" } }
                }
            }
        }
    };
    page_response(status, "Users and access keys", Some(user), body)
}

fn key_form(user: &berth_registry::console::ConsoleUser, name: &str, key: &str, action: &str, label: &str) -> Markup {
    let class = if action == "delete" { "danger" } else { "secondary" };
    html! {
        form method="post" action="/console/users" {
            (csrf_field(user))
            input type="hidden" name="user_name" value=(name);
            input type="hidden" name="access_key_id" value=(key);
            input type="hidden" name="do" value=(action);
            button class=(class) type="submit" aria-label={(label) " " (key) " of " (name)} { (label) }
        }
    }
}

pub async fn post(State(app): State<AppState>, req: Request) -> Response {
    let (signed, form) = match signed_form(&app, req).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    let (name, key) = (form.text("user_name"), form.text("access_key_id"));
    let action = match form.get("do") {
        Some("create-user") => "CreateUser",
        Some("create") => "CreateAccessKey",
        Some("deactivate" | "activate") => "UpdateAccessKey",
        Some("delete") => "DeleteAccessKey",
        _ => {
            return render(
                &app,
                &signed,
                StatusCode::BAD_REQUEST,
                Some(iam_refusal("InvalidAction", "no such action")),
            )
            .await;
        }
    };
    if let Err(refused) = allowed(&app, &signed, action).await {
        return render(&app, &signed, StatusCode::FORBIDDEN, Some(refused)).await;
    }
    let iam = app.registry.iam(&signed.user.caller.account_id);
    let result = act(&iam, action, form.get("do").unwrap_or(""), &name, &key).await;
    // Users and keys feed authorization: forget what was cached.
    app.authorizer.policies_changed().await;
    match result {
        Ok(Done::Message(m)) => Redirect::to(&format!("/console/users?done={}", urlencode(&m))).into_response(),
        // The secret is shown once, on this answer, never in a URL.
        Ok(Done::NewKey { id, secret }) => {
            let shown = html! {
                div.notice role="status" {
                    p { "Access key " code { (id) } " was created for " (name) ". Its secret is shown only now:" }
                    p { code #new-secret { (secret) } }
                }
            };
            render(&app, &signed, StatusCode::OK, Some(shown)).await
        }
        Err(e) => render(&app, &signed, StatusCode::BAD_REQUEST, Some(iam_refusal(e.code(), &e.to_string()))).await,
    }
}

enum Done {
    Message(String),
    NewKey { id: String, secret: String },
}

async fn act(
    iam: &IamAdmin,
    action: &str,
    what: &str,
    name: &str,
    key: &str,
) -> Result<Done, berth_registry::iam::IamError> {
    match action {
        "CreateUser" => {
            iam.create_user(name).await?;
            Ok(Done::Message(format!("User {name} was created.")))
        }
        "CreateAccessKey" => {
            let u = iam.user(name).await?;
            iam.check_key_quota(&u).await?;
            let new = iam.create_access_key(&u).await?;
            Ok(Done::NewKey { id: new.key.access_key_id, secret: new.secret })
        }
        "UpdateAccessKey" => {
            let u = iam.user(name).await?;
            let status = if what == "activate" { KeyStatus::Active } else { KeyStatus::Inactive };
            iam.update_access_key(&u, key, status, false).await?;
            Ok(Done::Message(format!("Access key {key} was {what}d.")))
        }
        _ => {
            let u = iam.user(name).await?;
            iam.delete_access_key(&u, key, false).await?;
            Ok(Done::Message(format!("Access key {key} was deleted.")))
        }
    }
}
