//! A repository's images (`/console/images?repository=…`): tags, digest, type, size, pushed
//! and last-pulled times, scan status with severity counts, signing and archive status,
//! replication per destination, referrers (signatures, SBOMs) under their subject; filters by
//! tag and image status; delete, archive and restore of selected images. Every read and action
//! is the ECR operation (`DescribeImages`, `DescribeImageSigningStatus`,
//! `DescribeImageReplicationStatus`, `BatchDeleteImage`, `UpdateImageStorageClass`) called as
//! the signed-in principal.

use std::collections::BTreeMap;

use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::http::Uri;
use axum::response::{IntoResponse, Redirect, Response};
use maud::{Markup, html};
use serde_json::{Value, json};

use super::{Form, Signed, csrf_field, page_response, refusal, signed_form, urlencode};
use crate::http::AppState;
use crate::http::ecr::EcrError;

/// Images on one page.
const PAGE_SIZE: usize = 50;
/// `DescribeImages` pages read at most (1,000 images each).
const MAX_PAGES: usize = 10;

/// Severity names in the order ECR ranks them.
pub(crate) const SEVERITIES: [&str; 6] = ["CRITICAL", "HIGH", "MEDIUM", "LOW", "INFORMATIONAL", "UNDEFINED"];

struct View {
    repository: String,
    tag_status: &'static str,
    image_status: &'static str,
    page: usize,
    notice: Option<String>,
}

impl View {
    fn of(query: Option<&str>) -> View {
        let q = Form::query(query);
        let get = |k: &str| q.get(k);
        View {
            repository: get("repository").unwrap_or("").to_string(),
            tag_status: match get("tagStatus") {
                Some("TAGGED") => "TAGGED",
                Some("UNTAGGED") => "UNTAGGED",
                _ => "ANY",
            },
            image_status: match get("imageStatus") {
                Some("ARCHIVED") => "ARCHIVED",
                Some("ANY") => "ANY",
                _ => "ACTIVE",
            },
            page: get("page").and_then(|p| p.parse().ok()).unwrap_or(1).max(1),
            notice: get("done").map(str::to_string),
        }
    }

    fn link(&self, tag_status: &str, image_status: &str, page: usize) -> String {
        format!(
            "/console/images?repository={}&tagStatus={tag_status}&imageStatus={image_status}&page={page}",
            urlencode(&self.repository)
        )
    }
}

pub async fn list(State(app): State<AppState>, signed: Signed, uri: Uri) -> Response {
    render(&app, &signed, View::of(uri.query()), StatusCode::OK, None).await
}

/// Every image `DescribeImages` shows for the view's filters.
async fn images(app: &AppState, signed: &Signed, view: &View) -> Result<Vec<Value>, EcrError> {
    let mut all = Vec::new();
    let mut token: Option<String> = None;
    for _ in 0..MAX_PAGES {
        let mut input = json!({
            "repositoryName": view.repository,
            "maxResults": 1000,
            "filter": { "tagStatus": view.tag_status, "imageStatus": view.image_status },
        });
        if let Some(t) = &token {
            input["nextToken"] = json!(t);
        }
        let out = signed.call(app, "DescribeImages", input).await?;
        all.extend(out["imageDetails"].as_array().cloned().unwrap_or_default());
        token = out["nextToken"].as_str().map(str::to_string);
        if token.is_none() {
            break;
        }
    }
    Ok(all)
}

async fn render(app: &AppState, signed: &Signed, view: View, status: StatusCode, alert: Option<Markup>) -> Response {
    let user = &signed.user;
    let (all, refused) = match images(app, signed, &view).await {
        Ok(all) => (all, None),
        Err(e) => (Vec::new(), Some(refusal(&e))),
    };
    // Referrers go under their subject; the rest are the list, newest push first.
    let mut referrers: BTreeMap<String, Vec<Value>> = BTreeMap::new();
    let mut subjects = Vec::new();
    for image in all {
        match image["subjectManifestDigest"].as_str() {
            Some(s) => referrers.entry(s.to_string()).or_default().push(image),
            None => subjects.push(image),
        }
    }
    subjects.sort_by(|a, b| {
        b["imagePushedAt"].as_f64().unwrap_or(0.0).total_cmp(&a["imagePushedAt"].as_f64().unwrap_or(0.0))
    });
    let total = subjects.len();
    let pages = total.div_ceil(PAGE_SIZE).max(1);
    let page = view.page.min(pages);
    let shown: Vec<Value> = subjects.into_iter().skip((page - 1) * PAGE_SIZE).take(PAGE_SIZE).collect();
    let mut signing = Vec::new();
    let mut replication = Vec::new();
    for image in &shown {
        let id = json!({ "imageDigest": image["imageDigest"] });
        let input = json!({ "repositoryName": view.repository, "imageId": id });
        signing.push(signed.call(app, "DescribeImageSigningStatus", input.clone()).await.ok());
        replication.push(signed.call(app, "DescribeImageReplicationStatus", input).await.ok());
    }
    let may_delete = super::may(app, signed, "ecr:BatchDeleteImage", &view.repository).await;
    let may_archive = super::may(app, signed, "ecr:UpdateImageStorageClass", &view.repository).await;
    let filter = |label: &str, name: &str, options: &[&str], current: &str| {
        html! {
            div {
                label for=(name) { (label) }
                select id=(name) name=(name) {
                    @for o in options { option value=(o) selected[*o == current] { (o) } }
                }
            }
        }
    };
    let body = html! {
        p { a href="/console/repositories" { "\u{2190} Repositories" } }
        (super::repository::tabs(&view.repository))
        @if let Some(n) = &view.notice { p.notice role="status" { (n) } }
        @if let Some(a) = &alert { (a) }
        @if let Some(r) = &refused { (r) }
        form.toolbar method="get" action="/console/images" {
            input type="hidden" name="repository" value=(view.repository);
            (filter("Tags", "tagStatus", &["ANY", "TAGGED", "UNTAGGED"], view.tag_status))
            (filter("Status", "imageStatus", &["ACTIVE", "ARCHIVED", "ANY"], view.image_status))
            button type="submit" { "Filter" }
        }
        p { (total) " images." }
        form method="post" action="/console/images/action" {
            (csrf_field(user))
            input type="hidden" name="repository" value=(view.repository);
            table {
                caption.skip { "Images" }
                thead { tr {
                    th scope="col" { span.skip { "Select" } }
                    th scope="col" { "Tags" }
                    th scope="col" { "Digest" }
                    th scope="col" class="optional" { "Type" }
                    th scope="col" class="num" { "Size" }
                    th scope="col" class="optional" { "Pushed" }
                    th scope="col" class="optional" { "Last pulled" }
                    th scope="col" { "Scan" }
                    th scope="col" class="optional" { "Signing" }
                    th scope="col" { "Status" }
                    th scope="col" class="optional" { "Replication" }
                } }
                tbody {
                    @for (i, image) in shown.iter().enumerate() {
                        @let digest = image["imageDigest"].as_str().unwrap_or_default();
                        tr {
                            td { input type="checkbox" name="digest" value=(digest) aria-label={"Select " (digest)}; }
                            td { (tags(image)) }
                            td { a href=(format!("/console/image?repository={}&digest={}", urlencode(&view.repository), urlencode(digest))) { code { (short(digest)) } } }
                            td.optional { (kind(image)) }
                            td.num { (super::human_bytes(image["imageSizeInBytes"].as_i64().unwrap_or(0))) }
                            td.optional { (time(&image["imagePushedAt"])) }
                            td.optional { (time(&image["lastRecordedPullTime"])) }
                            td { (scan_cell(image)) }
                            td.optional { (signing_cell(signing[i].as_ref())) }
                            td { (image["imageStatus"].as_str().unwrap_or("ACTIVE")) }
                            td.optional { (replication_cell(replication[i].as_ref())) }
                        }
                        @for r in referrers.get(digest).into_iter().flatten() {
                            @let rd = r["imageDigest"].as_str().unwrap_or_default();
                            tr.referrer {
                                td { input type="checkbox" name="digest" value=(rd) aria-label={"Select " (rd)}; }
                                td { "\u{21b3} referrer" }
                                td { a href=(format!("/console/image?repository={}&digest={}", urlencode(&view.repository), urlencode(rd))) { code { (short(rd)) } } }
                                td.optional { (kind(r)) }
                                td.num { (super::human_bytes(r["imageSizeInBytes"].as_i64().unwrap_or(0))) }
                                td.optional { (time(&r["imagePushedAt"])) }
                                td.optional {}
                                td {} td.optional {} td { (r["imageStatus"].as_str().unwrap_or("ACTIVE")) } td.optional {}
                            }
                        }
                    }
                }
            }
            div.toolbar {
                @if may_delete { button.danger type="submit" name="action" value="delete" { "Delete selected" } }
                @if may_archive {
                    button.secondary type="submit" name="action" value="archive" { "Archive selected" }
                    button.secondary type="submit" name="action" value="restore" { "Restore selected" }
                }
            }
        }
        nav.pager aria-label="Pages" {
            @if page > 1 { a href=(view.link(view.tag_status, view.image_status, page - 1)) rel="prev" { "\u{2190} Previous" } }
            span { "Page " (page) " of " (pages) }
            @if page < pages { a href=(view.link(view.tag_status, view.image_status, page + 1)) rel="next" { "Next \u{2192}" } }
        }
    };
    page_response(status, &format!("Images of {}", view.repository), Some(user), body)
}

/// `POST /console/images/action`: delete, archive or restore the selected images.
pub async fn action(State(app): State<AppState>, req: Request) -> Response {
    let (signed, form) = match signed_form(&app, req).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    let repository = form.text("repository");
    let digests: Vec<String> = form.all("digest");
    let view =
        View { repository: repository.clone(), tag_status: "ANY", image_status: "ACTIVE", page: 1, notice: None };
    if digests.is_empty() {
        let alert = html! { p.alert role="alert" { "Select the images first." } };
        return render(&app, &signed, view, StatusCode::BAD_REQUEST, Some(alert)).await;
    }
    let ids: Vec<Value> = digests.iter().map(|d| json!({ "imageDigest": d })).collect();
    let result = match form.get("action") {
        Some("delete") => {
            let out =
                signed.call(&app, "BatchDeleteImage", json!({ "repositoryName": repository, "imageIds": ids })).await;
            out.map(|v| failures(&v))
        }
        Some(a @ ("archive" | "restore")) => {
            let class = if a == "archive" { "ARCHIVE" } else { "STANDARD" };
            let mut first_error = None;
            for id in ids {
                let input = json!({ "repositoryName": repository, "imageId": id, "targetStorageClass": class });
                if let Err(e) = signed.call(&app, "UpdateImageStorageClass", input).await {
                    first_error = Some(e);
                    break;
                }
            }
            match first_error {
                Some(e) => Err(e),
                None => Ok(Vec::new()),
            }
        }
        _ => Ok(vec!["no such action".to_string()]),
    };
    match result {
        Ok(failed) if failed.is_empty() => {
            let done = match form.get("action") {
                Some("delete") => "Deleted",
                Some("archive") => "Archived",
                _ => "Restored",
            };
            let to = format!(
                "/console/images?repository={}&imageStatus=ANY&done={}",
                urlencode(&repository),
                urlencode(&format!("{done} {} images.", digests.len()))
            );
            Redirect::to(&to).into_response()
        }
        Ok(failed) => {
            let alert = html! { div.alert role="alert" { ul { @for f in &failed { li { (f) } } } } };
            render(&app, &signed, view, StatusCode::BAD_REQUEST, Some(alert)).await
        }
        Err(e) => render(&app, &signed, view, StatusCode::BAD_REQUEST, Some(refusal(&e))).await,
    }
}

/// `BatchDeleteImage`'s per-image failures, worded.
fn failures(out: &Value) -> Vec<String> {
    out["failures"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|f| {
            format!(
                "{}: {} ({})",
                f["imageId"]["imageDigest"].as_str().or(f["imageId"]["imageTag"].as_str()).unwrap_or("?"),
                f["failureReason"].as_str().unwrap_or(""),
                f["failureCode"].as_str().unwrap_or("")
            )
        })
        .collect()
}

fn tags(image: &Value) -> Markup {
    let tags: Vec<&str> = image["imageTags"].as_array().into_iter().flatten().filter_map(Value::as_str).collect();
    html! {
        @if tags.is_empty() { em { "untagged" } }
        @for t in tags { code { (t) } " " }
    }
}

pub(crate) fn short(digest: &str) -> &str {
    let end = digest.len().min("sha256:".len() + 12);
    &digest[..end]
}

fn kind(image: &Value) -> &str {
    image["artifactMediaType"]
        .as_str()
        .or(image["imageManifestMediaType"].as_str())
        .map(|m| m.rsplit('/').next().unwrap_or(m))
        .unwrap_or("")
}

pub(crate) fn time(v: &Value) -> String {
    match v.as_f64() {
        Some(t) => berth_iam::format_iso8601(t as i64),
        None => "\u{2014}".to_string(),
    }
}

/// Severity counts as coloured badges (text first: the colour only repeats it).
pub(crate) fn severity_badges(counts: &Value) -> Markup {
    html! {
        ul.badges aria-label="Findings by severity" {
            @for s in SEVERITIES {
                @if let Some(n) = counts[s].as_i64().filter(|n| *n > 0) {
                    li class={"badge sev-" (s.to_lowercase())} { (s) " " (n) }
                }
            }
        }
    }
}

fn scan_cell(image: &Value) -> Markup {
    let status = image["imageScanStatus"]["status"].as_str();
    let counts = &image["imageScanFindingsSummary"]["findingSeverityCounts"];
    html! {
        @match status {
            Some(s) => { (s) (severity_badges(counts)) }
            None => { "\u{2014}" }
        }
    }
}

fn signing_cell(out: Option<&Value>) -> Markup {
    let statuses: Vec<&Value> = out.and_then(|o| o["signingStatuses"].as_array()).into_iter().flatten().collect();
    html! {
        @if statuses.is_empty() { "\u{2014}" }
        @for s in statuses {
            div { (s["status"].as_str().unwrap_or("")) @if let Some(c) = s["failureCode"].as_str() { " (" (c) ")" } }
        }
    }
}

fn replication_cell(out: Option<&Value>) -> Markup {
    let statuses: Vec<&Value> = out.and_then(|o| o["replicationStatuses"].as_array()).into_iter().flatten().collect();
    html! {
        @if statuses.is_empty() { "\u{2014}" }
        @for s in statuses {
            div {
                (s["region"].as_str().unwrap_or("")) "/" (s["registryId"].as_str().unwrap_or("")) ": "
                (s["status"].as_str().unwrap_or(""))
            }
        }
    }
}
