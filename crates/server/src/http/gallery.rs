//! The gallery (`/gallery/` on the public host): public repositories with their catalog data,
//! searchable, readable without signing in — plain server-rendered HTML (maud escapes every
//! value it writes), no script. About and usage texts are Markdown, rendered safely: raw HTML
//! in them is shown as text, and links and images keep only http(s), mailto and relative
//! targets.

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, Uri, header};
use axum::response::{Html, IntoResponse, Response};
use base64::Engine;
use berth_registry::public::GalleryEntry;
use maud::{Markup, PreEscaped, html};
use pulldown_cmark::{CowStr, Event, Options, Parser, Tag};
use serde::Deserialize;

use super::AppState;
use super::ecr::request_host;

/// Repositories on one page of results.
const PAGE_SIZE: usize = 50;

#[derive(Deserialize)]
pub struct Search {
    #[serde(default)]
    q: String,
}

/// `GET /gallery/`: every public repository, or those matching `q`.
pub async fn index(
    State(app): State<AppState>,
    headers: HeaderMap,
    uri: Uri,
    Query(search): Query<Search>,
) -> Response {
    let Some(host) = public_host(&app, &headers, &uri) else { return not_found() };
    let page = match app.registry.gallery(&search.q, PAGE_SIZE).await {
        Ok(p) => p,
        Err(e) => return failed(e),
    };
    let q = search.q.trim();
    let body = html! {
        form.search role="search" action="/gallery/" method="get" {
            label for="q" { "Search public repositories" }
            input #q type="search" name="q" value=(q) placeholder="name, alias or description";
            button type="submit" { "Search" }
        }
        @if page.entries.is_empty() {
            p.empty { @if q.is_empty() { "No public repositories yet." } @else { "No public repository matches \u{201c}" (q) "\u{201d}." } }
        } @else {
            ul.repositories {
                @for e in &page.entries {
                    li.repository {
                        @if e.catalog.logo_image_blob.is_some() {
                            img.logo src=(logo_path(e)) alt="" width="48" height="48";
                        }
                        div {
                            h2 { a href=(repository_path(e)) { (e.alias) "/" (e.name) } }
                            @if let Some(d) = &e.catalog.description { p.description { (d) } }
                            (badges(e))
                            code.pull { "docker pull " (host) "/" (e.alias) "/" (e.name) }
                        }
                    }
                }
            }
            @if page.more { p.more { "More repositories match: narrow the search." } }
        }
    };
    Html(page_html("Public repositories", body).into_string()).into_response()
}

/// `GET /gallery/<alias>/<repository>`: one repository with its catalog data and tags;
/// `GET /gallery/-/logo/<alias>/<repository>`: its logo.
pub async fn repository(
    State(app): State<AppState>,
    headers: HeaderMap,
    uri: Uri,
    Path(rest): Path<String>,
) -> Response {
    let Some(host) = public_host(&app, &headers, &uri) else { return not_found() };
    // An alias starts with a letter, so `-/logo/…` names no repository.
    if let Some(named) = rest.strip_prefix("-/logo/") {
        return logo(&app, named).await;
    }
    let Some((alias, name)) = rest.trim_end_matches('/').split_once('/') else { return not_found() };
    let (entry, tags) = match app.registry.gallery_repository(alias, name, 100).await {
        Ok(Some(found)) => found,
        Ok(None) => return not_found(),
        Err(e) => return failed(e),
    };
    let e = &entry;
    let pull = format!("docker pull {host}/{}/{}:{}", e.alias, e.name, tags.first().map_or("latest", String::as_str));
    let body = html! {
        p.back { a href="/gallery/" { "\u{2190} All public repositories" } }
        article.repository-page {
            header {
                @if e.catalog.logo_image_blob.is_some() {
                    img.logo src=(logo_path(e)) alt="" width="64" height="64";
                }
                div {
                    @if let Some(n) = &e.registry_display_name { p.publisher { "Published by " (n) } }
                    @if let Some(d) = &e.catalog.description { p.description { (d) } }
                    (badges(e))
                }
            }
            section aria-labelledby="pull-heading" {
                h3 #pull-heading { "Pull" }
                pre.pull { code { (pull) } }
            }
            @if let Some(about) = &e.catalog.about_text {
                section.markdown aria-labelledby="about-heading" {
                    h3 #about-heading { "About" }
                    (markdown(about))
                }
            }
            @if let Some(usage) = &e.catalog.usage_text {
                section.markdown aria-labelledby="usage-heading" {
                    h3 #usage-heading { "Usage" }
                    (markdown(usage))
                }
            }
            section aria-labelledby="tags-heading" {
                h3 #tags-heading { "Image tags" }
                @if tags.is_empty() { p { "No tagged images yet." } }
                @else { ul.tags { @for t in &tags { li { code { (t) } } } } }
            }
        }
    };
    Html(page_html(&format!("{}/{}", e.alias, e.name), body).into_string()).into_response()
}

/// A repository's logo (`logoImageBlob`), served as the PNG or JPEG it is; nothing else.
async fn logo(app: &AppState, named: &str) -> Response {
    let Some((alias, name)) = named.split_once('/') else { return not_found() };
    let Ok(Some((entry, _))) = app.registry.gallery_repository(alias, name, 0).await else { return not_found() };
    let Some(bytes) =
        entry.catalog.logo_image_blob.and_then(|b| base64::engine::general_purpose::STANDARD.decode(b).ok())
    else {
        return not_found();
    };
    let content_type = if bytes.starts_with(b"\x89PNG\r\n\x1a\n") {
        "image/png"
    } else if bytes.starts_with(&[0xff, 0xd8, 0xff]) {
        "image/jpeg"
    } else {
        return not_found();
    };
    ([(header::CONTENT_TYPE, content_type), (header::CACHE_CONTROL, "max-age=300")], bytes).into_response()
}

/// The host the request named, if it is the public host (the gallery is served nowhere else).
fn public_host(app: &AppState, headers: &HeaderMap, uri: &Uri) -> Option<String> {
    let host = request_host(headers, uri);
    app.registry.public_host_config().is_some_and(|p| p.serves(&host)).then_some(host)
}

fn repository_path(e: &GalleryEntry) -> String {
    format!("/gallery/{}/{}", e.alias, e.name)
}

fn logo_path(e: &GalleryEntry) -> String {
    format!("/gallery/-/logo/{}/{}", e.alias, e.name)
}

fn badges(e: &GalleryEntry) -> Markup {
    let os = e.catalog.operating_systems.iter().flatten();
    let arch = e.catalog.architectures.iter().flatten();
    html! {
        ul.badges aria-label="Platforms" {
            @for o in os { li.badge.os { (o) } }
            @for a in arch { li.badge.arch { (a) } }
        }
    }
}

/// Markdown as HTML that cannot carry script: raw HTML becomes text, and a link or image
/// target other than http(s), mailto or a relative path becomes `#`. Its headings sit under
/// the page's own (`#` is an `h4`).
fn markdown(text: &str) -> Markup {
    use pulldown_cmark::{HeadingLevel, TagEnd};
    let under = |level: HeadingLevel| match level {
        HeadingLevel::H1 => HeadingLevel::H4,
        HeadingLevel::H2 => HeadingLevel::H5,
        _ => HeadingLevel::H6,
    };
    let options = Options::ENABLE_TABLES | Options::ENABLE_STRIKETHROUGH;
    let events = Parser::new_ext(text, options).map(|event| match event {
        Event::Html(raw) | Event::InlineHtml(raw) => Event::Text(raw),
        Event::Start(Tag::Heading { level, id, classes, attrs }) => {
            Event::Start(Tag::Heading { level: under(level), id, classes, attrs })
        }
        Event::End(TagEnd::Heading(level)) => Event::End(TagEnd::Heading(under(level))),
        Event::Start(Tag::Link { link_type, dest_url, title, id }) => {
            Event::Start(Tag::Link { link_type, dest_url: safe_url(dest_url), title, id })
        }
        Event::Start(Tag::Image { link_type, dest_url, title, id }) => {
            Event::Start(Tag::Image { link_type, dest_url: safe_url(dest_url), title, id })
        }
        other => other,
    });
    let mut out = String::new();
    pulldown_cmark::html::push_html(&mut out, events);
    PreEscaped(out)
}

fn safe_url(url: CowStr<'_>) -> CowStr<'_> {
    let lower = url.trim().to_ascii_lowercase();
    // A scheme is what comes before the first ':' if no '/', '?' or '#' precedes it.
    let scheme = lower.find(':').filter(|&i| !lower[..i].contains(['/', '?', '#'])).map(|i| &lower[..i]);
    match scheme {
        None | Some("http" | "https" | "mailto") => url,
        Some(_) => CowStr::Borrowed("#"),
    }
}

/// A gallery page, in the console's stylesheet.
fn page_html(title: &str, body: Markup) -> Markup {
    super::console::document(title, ("/gallery/", "Berth public gallery"), html! {}, body)
}

fn not_found() -> Response {
    (
        StatusCode::NOT_FOUND,
        Html(page_html("Not found", html! { p { "There is no such page or repository." } }).into_string()),
    )
        .into_response()
}

fn failed(e: berth_registry::RegistryError) -> Response {
    tracing::warn!(error = %e, "gallery");
    let status = match e {
        berth_registry::RegistryError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    };
    (
        status,
        Html(
            page_html("Unavailable", html! { p { "The gallery cannot be shown now; try again shortly." } })
                .into_string(),
        ),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markdown_keeps_no_script() {
        let out = markdown(
            "# Title\n\n<script>alert(1)</script>\n\n[x](javascript:alert(1)) [y](https://example.com) \
             [z](/relative) ![i](data:image/png;base64,AAAA) <img src=x onerror=alert(1)>\n",
        )
        .into_string();
        assert!(out.contains("<h4>Title</h4>"), "{out}");
        assert!(!out.contains("<script"), "{out}");
        assert!(out.contains("&lt;script&gt;"), "{out}");
        assert!(!out.contains("<img src=x"), "{out}");
        assert!(!out.contains("javascript:"), "{out}");
        assert!(!out.contains("data:"), "{out}");
        assert!(out.contains("href=\"https://example.com\""), "{out}");
        assert!(out.contains("href=\"/relative\""), "{out}");
        assert_eq!(safe_url(CowStr::Borrowed(" JavaScript:x")).as_ref(), "#");
        assert_eq!(safe_url(CowStr::Borrowed("a/b:c")).as_ref(), "a/b:c");
        assert_eq!(safe_url(CowStr::Borrowed("mailto:a@b")).as_ref(), "mailto:a@b");
    }
}
