//! Usage (`/console/usage?days=N`): the quarterly review the seeds recommend — stored bytes
//! and image count per repository (the same figures `/metrics` reports), a chart of the largest
//! repositories, the registry's deduplicated total, the largest images and the images not
//! pulled for N days (or never). Only repositories `DescribeRepositories` shows the principal
//! count; images are read with `DescribeImages` as the principal, from the largest
//! repositories first.

use axum::extract::State;
use axum::http::StatusCode;
use axum::http::Uri;
use axum::response::Response;
use maud::{Markup, html};
use serde_json::{Value, json};

use super::images::{short, time};
use super::{Form, Signed, human_bytes, page_response, refusal, urlencode};
use crate::http::AppState;

/// Repositories whose images are read for the image lists (the largest first).
const IMAGE_REPOSITORIES: usize = 100;
/// Bars in the chart.
const BARS: usize = 20;

struct Image {
    repository: String,
    digest: String,
    tags: String,
    bytes: i64,
    pushed: f64,
    pulled: Option<f64>,
}

pub async fn show(State(app): State<AppState>, signed: Signed, uri: Uri) -> Response {
    let days: i64 = Form::query(uri.query()).text("days").parse().unwrap_or(90).clamp(1, 3650);
    let user = &signed.user;
    let mut rows = match super::repositories::rows(&app, &signed).await {
        Ok(r) => r,
        Err(e) => return page_response(StatusCode::OK, "Usage", Some(user), refusal(&e)),
    };
    rows.sort_by(|a, b| b.bytes.cmp(&a.bytes).then(a.name.cmp(&b.name)));
    let total_bytes: i64 = rows.iter().map(|r| r.bytes).sum();
    let total_images: i64 = rows.iter().map(|r| r.images).sum();
    let dedup = if super::may_registry(&app, &signed, "ecr:DescribeRegistry").await {
        app.registry.storage_usage().await.ok().map(|u| (u.blob_bytes, u.blobs))
    } else {
        None
    };
    let images = images(&app, &signed, &rows).await;
    let now = berth_meta::now_ms() as f64 / 1000.0;
    let cutoff = now - (days * 86_400) as f64;
    let mut stale: Vec<&Image> =
        images.iter().filter(|i| i.pulled.unwrap_or(0.0) < cutoff && i.pushed < cutoff).collect();
    stale.sort_by_key(|i| std::cmp::Reverse(i.bytes));
    let never = images.iter().filter(|i| i.pulled.is_none()).count();
    let mut largest: Vec<&Image> = images.iter().collect();
    largest.sort_by_key(|i| std::cmp::Reverse(i.bytes));
    largest.truncate(20);
    let body = html! {
        section.panel aria-labelledby="totals-heading" {
            h2 #totals-heading { "Totals" }
            dl {
                dt { "Repositories" } dd { (rows.len()) }
                dt { "Images" } dd { (total_images) }
                dt { "Stored, counted per repository" } dd { (human_bytes(total_bytes)) }
                @if let Some((bytes, blobs)) = dedup {
                    dt { "Stored once (the registry's blobs, deduplicated)" } dd { (human_bytes(bytes)) " in " (blobs) " blobs" }
                }
                dt { "Images never pulled" } dd { (never) }
            }
        }
        section.panel aria-labelledby="chart-heading" {
            h2 #chart-heading { "Largest repositories" }
            (chart(&rows[..rows.len().min(BARS)]))
        }
        section.panel aria-labelledby="stale-heading" {
            h2 #stale-heading { "Images not pulled for " (days) " days" }
            form.toolbar method="get" action="/console/usage" {
                div { label for="days" { "Days" } input #days type="text" name="days" inputmode="numeric" value=(days); }
                button type="submit" { "Show" }
            }
            p { (stale.len()) " images, " (human_bytes(stale.iter().map(|i| i.bytes).sum())) "." }
            (image_table("Images not pulled recently", &stale[..stale.len().min(50)]))
        }
        section.panel aria-labelledby="largest-heading" {
            h2 #largest-heading { "Largest images" }
            (image_table("Largest images", &largest))
        }
        section.panel aria-labelledby="all-heading" {
            h2 #all-heading { "Every repository" }
            table {
                caption.skip { "Storage per repository" }
                thead { tr { th scope="col" { "Repository" } th scope="col" class="num" { "Images" } th scope="col" class="num" { "Stored" } } }
                tbody {
                    @for r in &rows {
                        tr {
                            td { a href=(format!("/console/images?repository={}", urlencode(&r.name))) { (r.name) } }
                            td.num { (r.images) }
                            td.num { (human_bytes(r.bytes)) }
                        }
                    }
                }
            }
        }
    };
    page_response(StatusCode::OK, "Usage", Some(user), body)
}

/// The images of the largest repositories, as `DescribeImages` shows them to the principal.
async fn images(app: &AppState, signed: &Signed, rows: &[super::repositories::Row]) -> Vec<Image> {
    let mut out = Vec::new();
    for r in rows.iter().filter(|r| r.images > 0).take(IMAGE_REPOSITORIES) {
        let mut token: Option<String> = None;
        for _ in 0..5 {
            let mut input = json!({ "repositoryName": r.name, "maxResults": 1000, "filter": { "imageStatus": "ANY" } });
            if let Some(t) = &token {
                input["nextToken"] = json!(t);
            }
            let Ok(page) = signed.call(app, "DescribeImages", input).await else { break };
            for d in page["imageDetails"].as_array().into_iter().flatten() {
                out.push(Image {
                    repository: r.name.clone(),
                    digest: d["imageDigest"].as_str().unwrap_or("").to_string(),
                    tags: d["imageTags"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .filter_map(Value::as_str)
                        .collect::<Vec<_>>()
                        .join(", "),
                    bytes: d["imageSizeInBytes"].as_i64().unwrap_or(0),
                    pushed: d["imagePushedAt"].as_f64().unwrap_or(0.0),
                    pulled: d["lastRecordedPullTime"].as_f64(),
                });
            }
            token = page["nextToken"].as_str().map(str::to_string);
            if token.is_none() {
                break;
            }
        }
    }
    out
}

fn image_table(caption: &str, images: &[&Image]) -> Markup {
    html! {
        table {
            caption.skip { (caption) }
            thead { tr {
                th scope="col" { "Repository" } th scope="col" { "Image" } th scope="col" { "Tags" }
                th scope="col" class="num" { "Size" } th scope="col" class="optional" { "Pushed" } th scope="col" { "Last pulled" }
            } }
            tbody {
                @for i in images {
                    tr {
                        td { (i.repository) }
                        td { a href=(format!("/console/image?repository={}&digest={}", urlencode(&i.repository), urlencode(&i.digest))) { code { (short(&i.digest)) } } }
                        td { (i.tags) }
                        td.num { (human_bytes(i.bytes)) }
                        td.optional { (time(&json!(i.pushed))) }
                        td { @match i.pulled { Some(p) => { (time(&json!(p))) } None => { "never" } } }
                    }
                }
            }
        }
    }
}

/// A horizontal bar chart of stored bytes per repository, as SVG (the figures are also in the
/// table below, so the chart is an image with a summary for screen readers).
fn chart(rows: &[super::repositories::Row]) -> Markup {
    let max = rows.iter().map(|r| r.bytes).max().unwrap_or(0).max(1) as f64;
    let (bar_h, gap, label_w, width) = (18.0, 6.0, 260.0, 720.0);
    let height = rows.len() as f64 * (bar_h + gap) + gap;
    let summary: Vec<String> = rows.iter().take(3).map(|r| format!("{} {}", r.name, human_bytes(r.bytes))).collect();
    html! {
        svg.chart role="img" aria-label={"Stored bytes per repository; largest: " (summary.join(", "))}
            viewBox=(format!("0 0 {width} {height}")) width="100%" preserveAspectRatio="xMinYMin meet" {
            @for (i, r) in rows.iter().enumerate() {
                @let y = gap + i as f64 * (bar_h + gap);
                @let w = ((width - label_w - 90.0) * r.bytes as f64 / max).max(1.0);
                text x="0" y=(y + bar_h - 4.0) font-size="13" fill="#16191f" { (r.name) }
                rect x=(label_w) y=(y) width=(w) height=(bar_h) fill="#0972d3" {}
                text x=(label_w + w + 6.0) y=(y + bar_h - 4.0) font-size="13" fill="#16191f" { (human_bytes(r.bytes)) }
            }
        }
    }
}
