//! The repositories page: the principal's repositories (those `DescribeRepositories` shows it)
//! with their image counts and stored bytes, searchable, sortable and paged; create (validated
//! as `CreateRepository` validates, errors next to their field) and delete (with `force` and a
//! typed confirmation), each an ECR operation called as the principal.

use std::collections::HashMap;

use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::http::Uri;
use axum::response::{IntoResponse, Redirect, Response};
use berth_registry::repositories::repository_key;
use maud::{Markup, html};
use serde_json::{Value, json};

use super::{Form, Signed, csrf_field, human_bytes, may, page_response, refusal, signed_form, urlencode};
use crate::http::AppState;
use crate::http::ecr::EcrError;

/// Rows on one page.
const PAGE_SIZE: usize = 50;
/// `DescribeRepositories` pages read at most (1,000 repositories each).
const MAX_PAGES: usize = 20;

const MUTABILITIES: [&str; 4] = ["MUTABLE", "IMMUTABLE", "MUTABLE_WITH_EXCLUSION", "IMMUTABLE_WITH_EXCLUSION"];
const ENCRYPTIONS: [&str; 3] = ["AES256", "KMS", "KMS_DSSE"];

/// The list's search, sort and page, from the query string.
struct View {
    q: String,
    sort: &'static str,
    descending: bool,
    page: usize,
    notice: Option<String>,
}

impl View {
    fn of(query: Option<&str>) -> View {
        let q = Form::query(query);
        let get = |k: &str| q.get(k);
        let sort = match get("sort") {
            Some("images") => "images",
            Some("size") => "size",
            Some("created") => "created",
            _ => "name",
        };
        View {
            q: get("q").unwrap_or("").trim().to_string(),
            sort,
            descending: get("order") == Some("desc"),
            page: get("page").and_then(|p| p.parse().ok()).unwrap_or(1).max(1),
            notice: get("deleted").map(|n| format!("Repository {n} was deleted.")),
        }
    }

    fn link(&self, sort: &str, descending: bool, page: usize) -> String {
        let mut s = form_urlencoded::Serializer::new(String::new());
        if !self.q.is_empty() {
            s.append_pair("q", &self.q);
        }
        s.append_pair("sort", sort);
        s.append_pair("order", if descending { "desc" } else { "asc" });
        s.append_pair("page", &page.to_string());
        format!("/console/repositories?{}", s.finish())
    }
}

/// What the create form was given and what was wrong with it.
#[derive(Default)]
struct CreateForm {
    name: String,
    mutability: String,
    exclusions: String,
    scan_on_push: bool,
    encryption: String,
    kms_key: String,
    /// (field, message) of the refusal; field `""` for one about no field in particular.
    error: Option<(&'static str, Markup)>,
}

/// One row of the list.
pub(crate) struct Row {
    pub name: String,
    uri: String,
    created_at: f64,
    mutability: String,
    scan_on_push: bool,
    encryption: String,
    pub images: i64,
    pub bytes: i64,
    may_delete: bool,
}

pub async fn list(State(app): State<AppState>, signed: Signed, uri: Uri) -> Response {
    render(&app, &signed, View::of(uri.query()), StatusCode::OK, CreateForm::default(), None).await
}

async fn render(
    app: &AppState,
    signed: &Signed,
    view: View,
    status: StatusCode,
    create: CreateForm,
    alert: Option<Markup>,
) -> Response {
    let (rows, refused) = match rows(app, signed).await {
        Ok(rows) => (rows, None),
        Err(e) => (Vec::new(), Some(refusal(&e))),
    };
    let words = view.q.to_lowercase();
    let mut rows: Vec<Row> = rows.into_iter().filter(|r| r.name.to_lowercase().contains(&words)).collect();
    match view.sort {
        "images" => rows.sort_by(|a, b| a.images.cmp(&b.images).then(a.name.cmp(&b.name))),
        "size" => rows.sort_by(|a, b| a.bytes.cmp(&b.bytes).then(a.name.cmp(&b.name))),
        "created" => rows.sort_by(|a, b| a.created_at.total_cmp(&b.created_at).then(a.name.cmp(&b.name))),
        _ => rows.sort_by(|a, b| a.name.cmp(&b.name)),
    }
    if view.descending {
        rows.reverse();
    }
    let total = rows.len();
    let pages = total.div_ceil(PAGE_SIZE).max(1);
    let page = view.page.min(pages);
    let mut shown: Vec<Row> = rows.into_iter().skip((page - 1) * PAGE_SIZE).take(PAGE_SIZE).collect();
    for row in &mut shown {
        row.may_delete = may(app, signed, "ecr:DeleteRepository", &row.name).await;
    }
    let may_create = may(app, signed, "ecr:CreateRepository", "new-repository").await;
    let user = &signed.user;
    let scheme = crate::http::client_scheme(&signed.env);
    let login = format!(
        "aws ecr get-login-password --region {} --endpoint-url {scheme}://{} | docker login --username AWS --password-stdin {}",
        app.identity.region(),
        signed.host,
        signed.host
    );
    let sort_header = |label: &str, key: &str, numeric: bool| {
        let active = view.sort == key;
        let next_desc = active && !view.descending;
        let state = match (active, view.descending) {
            (false, _) => "none",
            (true, false) => "ascending",
            (true, true) => "descending",
        };
        html! {
            th scope="col" class=[numeric.then_some("num")] aria-sort=(state) {
                a href=(view.link(key, next_desc, 1)) { (label) }
            }
        }
    };
    let body = html! {
        @if let Some(n) = &view.notice { p.notice role="status" { (n) } }
        @if let Some(a) = &alert { (a) }
        @if let Some(r) = &refused { (r) }
        form.toolbar role="search" method="get" action="/console/repositories" {
            div {
                label for="q" { "Find repositories" }
                input #q type="search" name="q" value=(view.q) placeholder="name contains";
            }
            input type="hidden" name="sort" value=(view.sort);
            input type="hidden" name="order" value=(if view.descending { "desc" } else { "asc" });
            button type="submit" { "Search" }
        }
        p { (total) " repositories" @if !view.q.is_empty() { " matching \u{201c}" (view.q) "\u{201d}" } "." }
        table {
            caption.skip { "Repositories" }
            thead { tr {
                (sort_header("Name", "name", false))
                (sort_header("Images", "images", true))
                (sort_header("Size", "size", true))
                (sort_header("Created", "created", false))
                th scope="col" class="optional" { "Tag mutability" }
                th scope="col" class="optional" { "Scan on push" }
                th scope="col" class="optional" { "Encryption" }
                th scope="col" { "Actions" }
            } }
            tbody {
                @for r in &shown {
                    tr {
                        td {
                            a href=(format!("/console/images?repository={}", urlencode(&r.name))) { strong { (r.name) } }
                            br;
                            code.uri data-copy="repository URI" { (r.uri) }
                            details {
                                summary { "View push commands" }
                                pre { code data-copy="push commands" {
                                    (login) "\n"
                                    "docker tag <image> " (r.uri) ":latest\n"
                                    "docker push " (r.uri) ":latest"
                                } }
                            }
                        }
                        td.num { (r.images) }
                        td.num { (human_bytes(r.bytes)) }
                        td { (berth_iam::format_iso8601(r.created_at as i64)) }
                        td.optional { (r.mutability) }
                        td.optional { (if r.scan_on_push { "on" } else { "off" }) }
                        td.optional { (r.encryption) }
                        td {
                            @if r.may_delete {
                                details {
                                    summary { "Delete\u{2026}" }
                                    form method="post" action="/console/repositories/delete" {
                                        (csrf_field(user))
                                        input type="hidden" name="name" value=(r.name);
                                        label for={"confirm-" (r.name)} { "Type " code { (r.name) } " to confirm" }
                                        input id={"confirm-" (r.name)} type="text" name="confirm" autocomplete="off";
                                        div.check {
                                            input id={"force-" (r.name)} type="checkbox" name="force";
                                            label for={"force-" (r.name)} { " also delete its images (force)" }
                                        }
                                        button.danger type="submit" { "Delete repository" }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
        nav.pager aria-label="Pages" {
            @if page > 1 { a href=(view.link(view.sort, view.descending, page - 1)) rel="prev" { "\u{2190} Previous" } }
            span { "Page " (page) " of " (pages) }
            @if page < pages { a href=(view.link(view.sort, view.descending, page + 1)) rel="next" { "Next \u{2192}" } }
        }
        @if may_create { (create_form(user, &create)) }
    };
    page_response(status, "Repositories", Some(user), body)
}

fn create_form(user: &berth_registry::console::ConsoleUser, f: &CreateForm) -> Markup {
    let error_for = |field: &str| f.error.as_ref().filter(|(k, _)| *k == field).map(|(_, m)| m.clone());
    let mutability = if f.mutability.is_empty() { "MUTABLE" } else { f.mutability.as_str() };
    let encryption = if f.encryption.is_empty() { "AES256" } else { f.encryption.as_str() };
    html! {
        section.panel aria-labelledby="create-heading" {
            h2 #create-heading { "Create a repository" }
            @if let Some(m) = error_for("") { (m) }
            form method="post" action="/console/repositories" {
                (csrf_field(user))
                label for="name" { "Repository name" }
                input #name type="text" name="name" value=(f.name) required aria-describedby="name-error";
                @if let Some(m) = error_for("name") { div #name-error .field-error { (m) } }
                label for="mutability" { "Tag immutability" }
                select #mutability name="mutability" {
                    @for m in MUTABILITIES { option value=(m) selected[m == mutability] { (m) } }
                }
                label for="exclusions" { "Exclusion filters (one wildcard pattern per line, for the *_WITH_EXCLUSION settings)" }
                textarea #exclusions name="exclusions" rows="2" aria-describedby="exclusions-error" { (f.exclusions) }
                @if let Some(m) = error_for("exclusions") { div #exclusions-error .field-error { (m) } }
                div.check {
                    input #scan_on_push type="checkbox" name="scan_on_push" checked[f.scan_on_push];
                    label for="scan_on_push" { " Scan on push" }
                }
                label for="encryption" { "Encryption" }
                select #encryption name="encryption" {
                    @for e in ENCRYPTIONS { option value=(e) selected[e == encryption] { (e) } }
                }
                label for="kms_key" { "KMS key (for KMS encryption; empty: the AWS managed key)" }
                input #kms_key type="text" name="kms_key" value=(f.kms_key) aria-describedby="kms-error";
                @if let Some(m) = error_for("kms") { div #kms-error .field-error { (m) } }
                p { button type="submit" { "Create repository" } }
            }
        }
    }
}

/// Every repository `DescribeRepositories` shows the principal, with its usage.
pub(crate) async fn rows(app: &AppState, signed: &Signed) -> Result<Vec<Row>, EcrError> {
    let usage: HashMap<String, (i64, i64)> = match app.registry.repository_usage().await {
        Ok(u) => u.into_iter().map(|(key, images, bytes)| (key, (images, bytes))).collect(),
        Err(e) => return Err(e.into()),
    };
    let account = &signed.user.caller.account_id;
    let mut rows = Vec::new();
    let mut token: Option<String> = None;
    for _ in 0..MAX_PAGES {
        let mut input = json!({ "maxResults": 1000 });
        if let Some(t) = &token {
            input["nextToken"] = json!(t);
        }
        let out = signed.call(app, "DescribeRepositories", input).await?;
        for r in out["repositories"].as_array().into_iter().flatten() {
            let name = r["repositoryName"].as_str().unwrap_or_default().to_string();
            let key = repository_key(app.identity.account_id(), account, &name);
            let (images, bytes) = usage.get(&key).copied().unwrap_or((0, 0));
            rows.push(Row {
                uri: r["repositoryUri"].as_str().unwrap_or_default().to_string(),
                created_at: r["createdAt"].as_f64().unwrap_or(0.0),
                mutability: r["imageTagMutability"].as_str().unwrap_or_default().to_string(),
                scan_on_push: r["imageScanningConfiguration"]["scanOnPush"].as_bool().unwrap_or(false),
                encryption: r["encryptionConfiguration"]["encryptionType"].as_str().unwrap_or("AES256").to_string(),
                images,
                bytes,
                may_delete: false,
                name,
            });
        }
        token = out["nextToken"].as_str().map(str::to_string);
        if token.is_none() {
            break;
        }
    }
    Ok(rows)
}

pub async fn create(State(app): State<AppState>, req: Request) -> Response {
    let view = View::of(req.uri().query());
    let (signed, form) = match signed_form(&app, req).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    let mut f = CreateForm {
        name: form.text("name"),
        mutability: form.text("mutability"),
        exclusions: form.text("exclusions"),
        scan_on_push: form.checked("scan_on_push"),
        encryption: form.text("encryption"),
        kms_key: form.text("kms_key"),
        error: None,
    };
    let mut input = json!({
        "repositoryName": f.name,
        "imageTagMutability": if f.mutability.is_empty() { "MUTABLE" } else { f.mutability.as_str() },
        "imageScanningConfiguration": { "scanOnPush": f.scan_on_push },
        "encryptionConfiguration": { "encryptionType": if f.encryption.is_empty() { "AES256" } else { f.encryption.as_str() } },
    });
    let filters: Vec<Value> = f
        .exclusions
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(|l| json!({ "filterType": "WILDCARD", "filter": l }))
        .collect();
    if !filters.is_empty() {
        input["imageTagMutabilityExclusionFilters"] = json!(filters);
    }
    if !f.kms_key.is_empty() {
        input["encryptionConfiguration"]["kmsKey"] = json!(f.kms_key);
    }
    match signed.call(&app, "CreateRepository", input).await {
        Ok(_) => Redirect::to(&format!("/console/repositories?q={}", urlencode(&f.name))).into_response(),
        Err(e) => {
            let (_, message) = e.exception_and_message();
            let field = if message.contains("repositoryName") || message.contains("already exists") {
                "name"
            } else if message.contains("ExclusionFilter") || message.contains("exclusion") {
                "exclusions"
            } else if message.contains("kmsKey") || message.contains("KMS") || message.contains("encryption") {
                "kms"
            } else {
                ""
            };
            f.error = Some((field, refusal(&e)));
            render(&app, &signed, view, StatusCode::BAD_REQUEST, f, None).await
        }
    }
}

pub async fn delete(State(app): State<AppState>, req: Request) -> Response {
    let view = View::of(req.uri().query());
    let (signed, form) = match signed_form(&app, req).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    let name = form.text("name");
    if form.text("confirm") != name {
        let alert = html! { p.alert role="alert" { "To delete " code { (name) } ", type its name to confirm." } };
        return render(&app, &signed, view, StatusCode::BAD_REQUEST, CreateForm::default(), Some(alert)).await;
    }
    let input = json!({ "repositoryName": name, "force": form.checked("force") });
    match signed.call(&app, "DeleteRepository", input).await {
        Ok(_) => Redirect::to(&format!("/console/repositories?deleted={}", urlencode(&name))).into_response(),
        Err(e) => render(&app, &signed, view, StatusCode::BAD_REQUEST, CreateForm::default(), Some(refusal(&e))).await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_view_reads_its_query() {
        let v = View::of(Some("q=web&sort=size&order=desc&page=3"));
        assert_eq!((v.q.as_str(), v.sort, v.descending, v.page), ("web", "size", true, 3));
        let v = View::of(Some("sort=evil&page=-1"));
        assert_eq!((v.sort, v.page), ("name", 1));
        assert_eq!(View::of(None).link("images", true, 2), "/console/repositories?sort=images&order=desc&page=2");
    }
}
