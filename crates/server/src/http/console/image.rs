//! One image (`/console/image?repository=…&digest=…`): its manifest or index (children with
//! platforms), layers with sizes, config (entrypoint, command, environment, labels), and its
//! scan findings as a table sorted and filtered by the query string (severity, package,
//! installed and fixed version, the advisory's link); a rescan button. The manifest and config
//! are looked at, not pulled (`inspect`); the findings are `DescribeImageScanFindings` as the
//! signed-in principal.

use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::http::Uri;
use axum::response::{IntoResponse, Redirect, Response};
use berth_registry::authz::Target;
use berth_registry::kms::KmsCaller;
use berth_registry::repositories::repository_key;
use futures_util::TryStreamExt;
use maud::{Markup, html};
use serde_json::{Value, json};

use super::images::{SEVERITIES, severity_badges, short, time};
use super::{Form, Signed, csrf_field, human_bytes, may, page_response, refusal, signed_form, urlencode};
use crate::http::AppState;
use crate::http::ecr::EcrError;

/// Config blobs larger than this are not shown.
const MAX_CONFIG_BYTES: u64 = 1024 * 1024;
/// `DescribeImageScanFindings` pages read at most (1,000 findings each).
const MAX_FINDING_PAGES: usize = 5;

struct View {
    repository: String,
    digest: String,
    sort: &'static str,
    severity: String,
    package: String,
    notice: Option<String>,
}

impl View {
    fn of(query: Option<&str>) -> View {
        let q = Form::query(query);
        let get = |k: &str| q.text(k);
        View {
            repository: get("repository"),
            digest: get("digest"),
            sort: match get("sort").as_str() {
                "package" => "package",
                "name" => "name",
                _ => "severity",
            },
            severity: get("severity"),
            package: get("package"),
            notice: Some(get("done")).filter(|d| !d.is_empty()),
        }
    }

    fn base(&self) -> String {
        format!("/console/image?repository={}&digest={}", urlencode(&self.repository), urlencode(&self.digest))
    }
}

/// One finding as the table shows it.
struct Finding {
    severity: String,
    name: String,
    uri: String,
    package: String,
    installed: String,
    fixed: String,
    description: String,
}

fn rank(severity: &str) -> usize {
    SEVERITIES.iter().position(|s| *s == severity).unwrap_or(SEVERITIES.len())
}

pub async fn show(State(app): State<AppState>, signed: Signed, uri: Uri) -> Response {
    let view = View::of(uri.query());
    let user = &signed.user;
    let (media_type, manifest) = match inspect(&app, &signed, &view).await {
        Ok(found) => found,
        Err((status, message)) => return page_response(status, "Image", Some(user), message),
    };
    let config = match manifest["config"]["digest"].as_str() {
        Some(d) if manifest["config"]["size"].as_u64().is_some_and(|s| s <= MAX_CONFIG_BYTES) => {
            read_config(&app, &signed, &view.repository, d).await
        }
        _ => None,
    };
    let findings = findings(&app, &signed, &view).await;
    let may_scan = may(&app, &signed, "ecr:StartImageScan", &view.repository).await;
    let referrers = signed
        .call(
            &app,
            "ListImageReferrers",
            json!({ "repositoryName": view.repository, "subjectId": { "imageDigest": view.digest } }),
        )
        .await
        .map(|out| out["referrers"].as_array().cloned().unwrap_or_default())
        .unwrap_or_default();
    let title = format!("{}@{}", view.repository, short(&view.digest));
    let body = html! {
        p { a href=(format!("/console/images?repository={}", urlencode(&view.repository))) { "\u{2190} Images of " (view.repository) } }
        @if let Some(n) = &view.notice { p.notice role="status" { (n) } }
        section.panel aria-labelledby="manifest-heading" {
            h2 #manifest-heading { "Manifest" }
            p { "Digest " code { (view.digest) } br; "Media type " code { (media_type) } }
            @if let Some(children) = manifest["manifests"].as_array() {
                table {
                    caption { "Index: " (children.len()) " manifests" }
                    thead { tr { th scope="col" { "Platform" } th scope="col" { "Digest" } th scope="col" class="num" { "Size" } } }
                    tbody {
                        @for c in children {
                            @let d = c["digest"].as_str().unwrap_or_default();
                            tr {
                                td { (platform(&c["platform"])) }
                                td { a href=(format!("/console/image?repository={}&digest={}", urlencode(&view.repository), urlencode(d))) { code { (short(d)) } } }
                                td.num { (human_bytes(c["size"].as_i64().unwrap_or(0))) }
                            }
                        }
                    }
                }
            }
            @if let Some(layers) = manifest["layers"].as_array() {
                @let total: i64 = layers.iter().filter_map(|l| l["size"].as_i64()).sum();
                table {
                    caption { (layers.len()) " layers, " (human_bytes(total)) }
                    thead { tr { th scope="col" { "#" } th scope="col" { "Digest" } th scope="col" class="optional" { "Media type" } th scope="col" class="num" { "Size" } } }
                    tbody {
                        @for (i, l) in layers.iter().enumerate() {
                            tr {
                                td { (i + 1) }
                                td { code { (short(l["digest"].as_str().unwrap_or_default())) } }
                                td.optional { (l["mediaType"].as_str().unwrap_or("")) }
                                td.num { (human_bytes(l["size"].as_i64().unwrap_or(0))) }
                            }
                        }
                    }
                }
            }
        }
        @if let Some(c) = &config { (config_section(c)) }
        @if !referrers.is_empty() { (referrers_section(&view, &referrers)) }
        (findings_section(&view, findings, may_scan, user))
    };
    page_response(StatusCode::OK, &title, Some(user), body)
}

/// The image's manifest, looked at without pulling it (no pull is recorded, so viewing an image
/// does not keep it from "not pulled for N days" rules): the principal must be allowed
/// `ecr:BatchGetImage` on the repository, as a pull is, and the KMS decrypt check must pass.
async fn inspect(app: &AppState, signed: &Signed, view: &View) -> Result<(String, Value), (StatusCode, Markup)> {
    let key = repository_key(app.identity.account_id(), &signed.user.caller.account_id, &view.repository);
    let caller = &signed.user.caller;
    match app.authorizer.authorize(caller, "ecr:BatchGetImage", Target::Repository(&key), &signed.env).await {
        Ok(Ok(())) => {}
        Ok(Err(denied)) => {
            let message = html! { p.alert role="alert" { strong { "AccessDeniedException" } ": " (denied.message) } };
            return Err((StatusCode::FORBIDDEN, message));
        }
        Err(e) => return Err((StatusCode::SERVICE_UNAVAILABLE, html! { p.alert { (e.to_string()) } })),
    }
    let who = KmsCaller { authorizer: &app.authorizer, caller, env: &signed.env, via_service: None };
    let found = match app.registry.check_pull_decrypt(&who, &key).await {
        Ok(()) => app.registry.inspect_manifest(&key, &view.digest).await,
        Err(e) => Err(e),
    };
    match found {
        Ok(m) => Ok((m.media_type, serde_json::from_slice(&m.content).unwrap_or(Value::Null))),
        Err(e) => {
            let status = if e.is_not_found() { StatusCode::NOT_FOUND } else { StatusCode::BAD_REQUEST };
            Err((status, refusal(&EcrError::Registry(e).worded_for(app.identity.account_id()))))
        }
    }
}

/// Whether an artifact type is a software bill of materials (CycloneDX or SPDX).
fn is_sbom(artifact_type: &str) -> bool {
    artifact_type.contains("cyclonedx") || artifact_type.contains("spdx")
}

/// The image's referrers (signatures, SBOMs, attestations); an SBOM can be downloaded.
fn referrers_section(view: &View, referrers: &[Value]) -> Markup {
    html! {
        section.panel aria-labelledby="referrers-heading" {
            h2 #referrers-heading { "Referrers" }
            table {
                thead { tr { th scope="col" { "Artifact type" } th scope="col" { "Digest" } th scope="col" class="num" { "Size" } th scope="col" { span.skip { "Download" } } } }
                tbody {
                    @for r in referrers {
                        @let d = r["digest"].as_str().unwrap_or_default();
                        @let kind = r["artifactType"].as_str().unwrap_or("");
                        tr {
                            td { (kind) }
                            td { code { (short(d)) } }
                            td.num { (human_bytes(r["size"].as_i64().unwrap_or(0))) }
                            td {
                                @if is_sbom(kind) {
                                    a href=(format!("/console/image/sbom?repository={}&digest={}", urlencode(&view.repository), urlencode(d))) download {
                                        "Download SBOM"
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

/// `GET /console/image/sbom`: an SBOM referrer's document, downloaded — the principal must be
/// allowed to pull the repository's images and layers (`ecr:BatchGetImage`,
/// `ecr:GetDownloadUrlForLayer`); the document streams from storage.
pub async fn sbom(State(app): State<AppState>, signed: Signed, uri: Uri) -> Response {
    let view = View::of(uri.query());
    let user = &signed.user;
    if !may(&app, &signed, "ecr:GetDownloadUrlForLayer", &view.repository).await {
        let message = html! { p.alert role="alert" { strong { "AccessDeniedException" } ": not authorized to perform ecr:GetDownloadUrlForLayer on " (view.repository) } };
        return page_response(StatusCode::FORBIDDEN, "SBOM", Some(user), message);
    }
    let (_, manifest) = match inspect(&app, &signed, &view).await {
        Ok(found) => found,
        Err((status, message)) => return page_response(status, "SBOM", Some(user), message),
    };
    let layer = &manifest["layers"][0];
    let kind = manifest["artifactType"].as_str().or(manifest["config"]["mediaType"].as_str()).unwrap_or("");
    let (Some(digest), true) = (layer["digest"].as_str(), is_sbom(kind)) else {
        return page_response(
            StatusCode::NOT_FOUND,
            "SBOM",
            Some(user),
            html! { p.alert { "This artifact is not an SBOM." } },
        );
    };
    let key = repository_key(app.identity.account_id(), &signed.user.caller.account_id, &view.repository);
    match app.registry.read_blob(&key, digest, None).await {
        Ok(read) => {
            let content_type = layer["mediaType"].as_str().unwrap_or("application/json").to_string();
            let name = format!(
                "attachment; filename=\"sbom-{}.json\"",
                &view.digest.replace(':', "-")[..19.min(view.digest.len())]
            );
            let mut resp = axum::body::Body::from_stream(read.body).into_response();
            for (h, v) in
                [(axum::http::header::CONTENT_TYPE, content_type), (axum::http::header::CONTENT_DISPOSITION, name)]
            {
                if let Ok(v) = axum::http::HeaderValue::from_str(&v) {
                    resp.headers_mut().insert(h, v);
                }
            }
            resp
        }
        Err(e) => page_response(
            StatusCode::NOT_FOUND,
            "SBOM",
            Some(user),
            refusal(&EcrError::Registry(e).worded_for(app.identity.account_id())),
        ),
    }
}

async fn read_config(app: &AppState, signed: &Signed, repository: &str, digest: &str) -> Option<Value> {
    let key = repository_key(app.identity.account_id(), &signed.user.caller.account_id, repository);
    let who =
        KmsCaller { authorizer: &app.authorizer, caller: &signed.user.caller, env: &signed.env, via_service: None };
    app.registry.check_pull_decrypt(&who, &key).await.ok()?;
    let read = app.registry.read_blob(&key, digest, None).await.ok()?;
    let chunks: Vec<bytes::Bytes> = read.body.try_collect().await.ok()?;
    serde_json::from_slice(&chunks.concat()).ok()
}

fn platform(p: &Value) -> String {
    let mut s = format!("{}/{}", p["os"].as_str().unwrap_or("?"), p["architecture"].as_str().unwrap_or("?"));
    if let Some(v) = p["variant"].as_str() {
        s.push('/');
        s.push_str(v);
    }
    s
}

fn config_section(c: &Value) -> Markup {
    let cfg = &c["config"];
    let list = |v: &Value| -> Vec<String> {
        v.as_array().into_iter().flatten().filter_map(|x| x.as_str().map(str::to_string)).collect()
    };
    let labels: Vec<(String, String)> = cfg["Labels"]
        .as_object()
        .into_iter()
        .flatten()
        .map(|(k, v)| (k.clone(), v.as_str().unwrap_or("").to_string()))
        .collect();
    html! {
        section.panel aria-labelledby="config-heading" {
            h2 #config-heading { "Configuration" }
            dl {
                dt { "Platform" } dd { (platform(c)) }
                @if let Some(created) = c["created"].as_str() { dt { "Created" } dd { (created) } }
                dt { "Entrypoint" } dd { code { (list(&cfg["Entrypoint"]).join(" ")) } }
                dt { "Command" } dd { code { (list(&cfg["Cmd"]).join(" ")) } }
                dt { "Environment" } dd { ul { @for e in list(&cfg["Env"]) { li { code { (e) } } } } }
                dt { "Labels" } dd { ul { @for (k, v) in &labels { li { code { (k) "=" (v) } } } } }
            }
        }
    }
}

/// The image's scan: its status and findings, or the refusal.
async fn findings(app: &AppState, signed: &Signed, view: &View) -> Result<(Value, Vec<Finding>), Markup> {
    let mut all = Vec::new();
    let mut first: Option<Value> = None;
    let mut token: Option<String> = None;
    for _ in 0..MAX_FINDING_PAGES {
        let mut input = json!({
            "repositoryName": view.repository,
            "imageId": { "imageDigest": view.digest },
            "maxResults": 1000,
        });
        if let Some(t) = &token {
            input["nextToken"] = json!(t);
        }
        let out = signed.call(app, "DescribeImageScanFindings", input).await.map_err(|e| refusal(&e))?;
        for f in out["imageScanFindings"]["findings"].as_array().into_iter().flatten() {
            let attr = |k: &str| {
                f["attributes"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .find(|a| a["key"] == k)
                    .and_then(|a| a["value"].as_str())
                    .unwrap_or("")
                    .to_string()
            };
            all.push(Finding {
                severity: f["severity"].as_str().unwrap_or("UNDEFINED").to_string(),
                name: f["name"].as_str().unwrap_or("").to_string(),
                uri: f["uri"].as_str().unwrap_or("").to_string(),
                package: attr("package_name"),
                installed: attr("package_version"),
                fixed: attr("fixed_in_version"),
                description: f["description"].as_str().unwrap_or("").to_string(),
            });
        }
        token = out["nextToken"].as_str().map(str::to_string);
        first.get_or_insert(out);
        if token.is_none() {
            break;
        }
    }
    Ok((first.unwrap_or(Value::Null), all))
}

fn findings_section(
    view: &View,
    found: Result<(Value, Vec<Finding>), Markup>,
    may_scan: bool,
    user: &berth_registry::console::ConsoleUser,
) -> Markup {
    let rescan = html! {
        @if may_scan {
            form method="post" action="/console/image/scan" {
                (csrf_field(user))
                input type="hidden" name="repository" value=(view.repository);
                input type="hidden" name="digest" value=(view.digest);
                button.secondary type="submit" { "Scan again" }
            }
        }
    };
    let (out, mut rows) = match found {
        Ok(x) => x,
        Err(refused) => {
            return html! { section.panel aria-labelledby="findings-heading" { h2 #findings-heading { "Scan findings" } (refused) (rescan) } };
        }
    };
    let package = view.package.to_lowercase();
    rows.retain(|f| {
        (view.severity.is_empty() || f.severity == view.severity)
            && (package.is_empty() || f.package.to_lowercase().contains(&package))
    });
    match view.sort {
        "package" => rows.sort_by(|a, b| a.package.cmp(&b.package).then(a.name.cmp(&b.name))),
        "name" => rows.sort_by(|a, b| a.name.cmp(&b.name)),
        _ => rows.sort_by(|a, b| rank(&a.severity).cmp(&rank(&b.severity)).then(a.name.cmp(&b.name))),
    }
    let sort_link = |key: &str| {
        let mut s = format!("{}&sort={key}", view.base());
        if !view.severity.is_empty() {
            s.push_str(&format!("&severity={}", urlencode(&view.severity)));
        }
        if !view.package.is_empty() {
            s.push_str(&format!("&package={}", urlencode(&view.package)));
        }
        s
    };
    let header = |label: &str, key: &str| {
        let state = if view.sort == key { "ascending" } else { "none" };
        html! { th scope="col" aria-sort=(state) { a href=(sort_link(key)) { (label) } } }
    };
    html! {
        section.panel aria-labelledby="findings-heading" {
            h2 #findings-heading { "Scan findings" }
            p {
                "Status: " (out["imageScanStatus"]["status"].as_str().unwrap_or("\u{2014}"))
                @if let Some(d) = out["imageScanStatus"]["description"].as_str() { " \u{2014} " (d) }
                @if out["imageScanFindings"]["imageScanCompletedAt"].is_number() { ". Completed " (time(&out["imageScanFindings"]["imageScanCompletedAt"])) "." }
            }
            (severity_badges(&out["imageScanFindings"]["findingSeverityCounts"]))
            (rescan)
            form.toolbar method="get" action="/console/image" {
                input type="hidden" name="repository" value=(view.repository);
                input type="hidden" name="digest" value=(view.digest);
                input type="hidden" name="sort" value=(view.sort);
                div {
                    label for="severity" { "Severity" }
                    select #severity name="severity" {
                        option value="" selected[view.severity.is_empty()] { "any" }
                        @for s in SEVERITIES { option value=(s) selected[view.severity == s] { (s) } }
                    }
                }
                div {
                    label for="package" { "Package" }
                    input #package type="search" name="package" value=(view.package);
                }
                button type="submit" { "Filter" }
            }
            table.findings {
                caption { (rows.len()) " findings shown" }
                thead { tr {
                    (header("Severity", "severity"))
                    (header("Vulnerability", "name"))
                    (header("Package", "package"))
                    th scope="col" { "Installed" }
                    th scope="col" { "Fixed in" }
                    th scope="col" class="optional" { "Description" }
                } }
                tbody {
                    @for f in &rows {
                        tr {
                            td { span class={"badge sev-" (f.severity.to_lowercase())} { (f.severity) } }
                            td { @if f.uri.starts_with("https://") || f.uri.starts_with("http://") { a href=(f.uri) rel="noopener noreferrer" { (f.name) } } @else { (f.name) } }
                            td { (f.package) }
                            td { code { (f.installed) } }
                            td { @if f.fixed.is_empty() { "\u{2014}" } @else { code { (f.fixed) } } }
                            td.optional { (f.description.chars().take(160).collect::<String>()) }
                        }
                    }
                }
            }
        }
    }
}

/// `POST /console/image/scan`: `StartImageScan` as the principal.
pub async fn scan(State(app): State<AppState>, req: Request) -> Response {
    let (signed, form) = match signed_form(&app, req).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    let (repository, digest) = (form.text("repository"), form.text("digest"));
    let input = json!({ "repositoryName": repository, "imageId": { "imageDigest": digest } });
    let back = format!("/console/image?repository={}&digest={}", urlencode(&repository), urlencode(&digest));
    match signed.call(&app, "StartImageScan", input).await {
        Ok(_) => Redirect::to(&format!("{back}&done={}", urlencode("Scan started."))).into_response(),
        Err(e) => page_response(
            StatusCode::BAD_REQUEST,
            "Scan refused",
            Some(&signed.user),
            html! { (refusal(&e)) p { a href=(back) { "Back to the image" } } },
        ),
    }
}
