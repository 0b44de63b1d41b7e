//! The web console (`/console/`): server-rendered pages (maud escapes every value it writes)
//! that work without JavaScript, over the same services as the APIs. Every action is an ECR
//! operation called as the signed-in principal through `ecr::call_as` — the model's
//! validation, Berth's one IAM evaluator and AWS's wording of refusals, exactly as `aws ecr`
//! gets them. Sessions are the registry's (`berth_registry::console`): a cookie that is
//! `HttpOnly`, `SameSite=Strict`, `Path=/console` (and `Secure` under TLS), every form carrying
//! the session's CSRF token.

use axum::Router;
use axum::body::Body;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use berth_registry::authz::{RequestEnv, Target};
use berth_registry::console::{ConsoleUser, SignInRefusal, csrf_matches};
use berth_registry::repositories::repository_key;
use maud::{DOCTYPE, Markup, html};
use serde_json::Value;

use super::ecr::{EcrError, request_host};
use super::{AppState, ClientAddr};

mod image;
mod images;
mod pull_through;
mod repositories;
mod repository;
mod settings;
mod usage;
mod users;

/// The session cookie's name.
const COOKIE: &str = "berth_console";
/// Forms are small; a larger body is refused.
const MAX_FORM_BYTES: usize = 64 * 1024;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/console", get(|| async { Redirect::to("/console/") }))
        .route("/console/", get(home))
        .route("/console/sign-in", get(sign_in_page).post(sign_in))
        .route("/console/sign-out", post(sign_out))
        .route("/console/repositories", get(repositories::list).post(repositories::create))
        .route("/console/repositories/delete", post(repositories::delete))
        .route("/console/images", get(images::list))
        .route("/console/images/action", post(images::action))
        .route("/console/image", get(image::show))
        .route("/console/image/scan", post(image::scan))
        .route("/console/image/sbom", get(image::sbom))
        .route("/console/lifecycle", get(repository::lifecycle).post(repository::lifecycle_post))
        .route("/console/permissions", get(repository::permissions).post(repository::permissions_post))
        .route("/console/pull-through", get(pull_through::list).post(pull_through::post))
        .route("/console/users", get(users::list).post(users::post))
        .route("/console/usage", get(usage::show))
        .route("/console/settings", get(settings::show).post(settings::post))
        .route("/console/static/berth.css", get(stylesheet))
        .route("/console/static/berth.js", get(script))
}

/// A signed-in request: who, from where, on which host.
pub(crate) struct Signed {
    pub user: ConsoleUser,
    pub env: RequestEnv,
    pub host: String,
}

impl Signed {
    /// Calls an ECR operation as the signed-in principal.
    pub async fn call(&self, app: &AppState, op: &str, input: Value) -> Result<Value, EcrError> {
        super::ecr::call_as(app, self.user.caller.clone(), self.env.clone(), &self.host, op, input).await
    }
}

/// Handlers of pages take the signed-in session as an argument; without one the browser is
/// sent to sign in.
impl axum::extract::FromRequestParts<AppState> for Signed {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut axum::http::request::Parts, app: &AppState) -> Result<Self, Response> {
        signed_in(app, parts).await
    }
}

/// The session of the request, or the answer that sends the browser to sign in.
pub(crate) async fn signed_in(app: &AppState, parts: &axum::http::request::Parts) -> Result<Signed, Response> {
    let Some(cookie) = cookie(&parts.headers) else { return Err(to_sign_in()) };
    match app.registry.console_session(&app.identity, &cookie).await {
        Ok(Some(user)) => {
            Ok(Signed { user, env: super::request_env(app, parts), host: request_host(&parts.headers, &parts.uri) })
        }
        Ok(None) => Err(to_sign_in()),
        Err(e) => Err(failed(&e.to_string())),
    }
}

/// A state-changing request: signed in, and its form carries the session's CSRF token.
pub(crate) async fn signed_form(app: &AppState, req: Request) -> Result<(Signed, Form), Response> {
    let (parts, body) = req.into_parts();
    let signed = signed_in(app, &parts).await?;
    let form = read_form(body).await?;
    if !form.get("csrf").is_some_and(|t| csrf_matches(&signed.user, t)) {
        return Err(page_response(
            StatusCode::FORBIDDEN,
            "Refused",
            None,
            html! { p.alert { "The form did not carry this session's security token (CSRF). Reload the page and try again." } },
        ));
    }
    Ok((signed, form))
}

/// A posted form's fields, or a query string's.
pub(crate) struct Form(Vec<(String, String)>);

impl Form {
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }

    pub fn text(&self, name: &str) -> String {
        self.get(name).unwrap_or_default().trim().to_string()
    }

    pub fn checked(&self, name: &str) -> bool {
        self.get(name).is_some()
    }

    /// Every value of a field given several times (checkboxes of one name).
    pub fn all(&self, name: &str) -> Vec<String> {
        self.0.iter().filter(|(k, _)| k == name).map(|(_, v)| v.clone()).collect()
    }
}

impl Form {
    /// A query string's fields (form-encoded, as a GET form sends them).
    pub fn query(query: Option<&str>) -> Form {
        Form(form_urlencoded::parse(query.unwrap_or("").as_bytes()).into_owned().collect())
    }

    /// The notice of a page reached by the redirect after an action (`done=`).
    pub fn done_notice(&self) -> Option<Markup> {
        self.get("done").map(|d| html! { p.notice role="status" { (d) } })
    }
}

/// Whether the principal may do `action` on the repository `name` (what buttons to show; the
/// operation itself is authorized again when called).
pub(crate) async fn may(app: &AppState, signed: &Signed, action: &str, name: &str) -> bool {
    let key = repository_key(app.identity.account_id(), &signed.user.caller.account_id, name);
    matches!(
        app.authorizer.authorize(&signed.user.caller, action, Target::Repository(&key), &signed.env).await,
        Ok(Ok(()))
    )
}

/// Whether the principal may do a registry-wide `action` (a pull-through cache rule's, …),
/// authorized as the API authorizes it: on the registry of its account.
pub(crate) async fn may_registry(app: &AppState, signed: &Signed, action: &str) -> bool {
    let account = &signed.user.caller.account_id;
    matches!(
        app.authorizer.authorize(&signed.user.caller, action, Target::Registry(account), &signed.env).await,
        Ok(Ok(()))
    )
}

pub(crate) fn urlencode(s: &str) -> String {
    form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

/// Bytes as people read them (KiB, MiB, GiB).
pub(crate) fn human_bytes(n: i64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = n.max(0) as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 { format!("{n} B") } else { format!("{value:.1} {}", UNITS[unit]) }
}

async fn read_form(body: Body) -> Result<Form, Response> {
    let bytes = axum::body::to_bytes(body, MAX_FORM_BYTES).await.map_err(|_| {
        page_response(StatusCode::PAYLOAD_TOO_LARGE, "Refused", None, html! { p.alert { "The form is too large." } })
    })?;
    Ok(Form(form_urlencoded::parse(&bytes).into_owned().collect()))
}

fn cookie(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|c| c.trim().split_once('='))
        .find(|(k, _)| *k == COOKIE)
        .map(|(_, v)| v.to_string())
}

fn to_sign_in() -> Response {
    Redirect::to("/console/sign-in").into_response()
}

async fn home(State(app): State<AppState>, req: Request) -> Response {
    let (parts, _) = req.into_parts();
    match signed_in(&app, &parts).await {
        Ok(_) => Redirect::to("/console/repositories").into_response(),
        Err(r) => r,
    }
}

async fn sign_in_page(State(app): State<AppState>, req: Request) -> Response {
    let (parts, _) = req.into_parts();
    if signed_in(&app, &parts).await.is_ok() {
        return Redirect::to("/console/repositories").into_response();
    }
    sign_in_form(StatusCode::OK, None, "")
}

fn sign_in_form(status: StatusCode, error: Option<&str>, key: &str) -> Response {
    let body = html! {
        section.panel aria-labelledby="sign-in-heading" {
            h2 #sign-in-heading { "Sign in with an access key" }
            @if let Some(e) = error { p.alert role="alert" { (e) } }
            form method="post" action="/console/sign-in" {
                label for="access_key_id" { "Access key ID" }
                input #access_key_id type="text" name="access_key_id" value=(key) autocomplete="username" required;
                label for="secret_access_key" { "Secret access key" }
                input #secret_access_key type="password" name="secret_access_key" autocomplete="current-password" required;
                p { button type="submit" { "Sign in" } }
            }
        }
    };
    page_response(status, "Sign in", None, body)
}

async fn sign_in(State(app): State<AppState>, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let form = match read_form(body).await {
        Ok(f) => f,
        Err(r) => return r,
    };
    let source = parts
        .extensions
        .get::<ConnectInfo<ClientAddr>>()
        .map(|c| c.0.0.ip())
        .map(|peer| app.trusted_proxies.client(peer, app.scheme, &parts.headers).ip);
    let key = form.text("access_key_id");
    match app.registry.console_sign_in(&app.identity, &key, form.get("secret_access_key").unwrap_or(""), source).await {
        Ok(signed) => {
            let env = super::request_env(&app, &parts);
            let secure = if super::client_scheme(&env) == "https" { "; Secure" } else { "" };
            let max_age = berth_registry::console::SESSION_LIFETIME_MS / 1000;
            let value = format!(
                "{COOKIE}={}; HttpOnly; SameSite=Strict; Path=/console; Max-Age={max_age}{secure}",
                signed.cookie
            );
            let mut resp = Redirect::to("/console/repositories").into_response();
            if let Ok(v) = HeaderValue::from_str(&value) {
                resp.headers_mut().insert(header::SET_COOKIE, v);
            }
            resp
        }
        Err(SignInRefusal::Invalid) => sign_in_form(
            StatusCode::UNAUTHORIZED,
            Some("The access key ID or the secret access key is not valid."),
            &key,
        ),
        Err(SignInRefusal::Throttled { retry_after_seconds }) => {
            let message = format!(
                "Too many failed sign-ins for this access key or from this address. Try again in {} minutes.",
                retry_after_seconds.div_ceil(60)
            );
            let mut resp = sign_in_form(StatusCode::TOO_MANY_REQUESTS, Some(&message), &key);
            if let Ok(v) = HeaderValue::from_str(&retry_after_seconds.to_string()) {
                resp.headers_mut().insert(header::RETRY_AFTER, v);
            }
            resp
        }
        Err(SignInRefusal::Failed(e)) => failed(&e.to_string()),
    }
}

async fn sign_out(State(app): State<AppState>, req: Request) -> Response {
    let cookie_value = cookie(req.headers());
    if let Err(r) = signed_form(&app, req).await {
        return r;
    }
    if let Some(c) = cookie_value
        && let Err(e) = app.registry.console_sign_out(&c).await
    {
        return failed(&e.to_string());
    }
    let mut resp = Redirect::to("/console/sign-in").into_response();
    let clear = format!("{COOKIE}=; HttpOnly; SameSite=Strict; Path=/console; Max-Age=0");
    if let Ok(v) = HeaderValue::from_str(&clear) {
        resp.headers_mut().insert(header::SET_COOKIE, v);
    }
    resp
}

async fn stylesheet() -> Response {
    (
        [(header::CONTENT_TYPE, "text/css; charset=utf-8"), (header::CACHE_CONTROL, "max-age=300")],
        include_str!("berth.css"),
    )
        .into_response()
}

async fn script() -> Response {
    (
        [(header::CONTENT_TYPE, "text/javascript; charset=utf-8"), (header::CACHE_CONTROL, "max-age=300")],
        include_str!("berth.js"),
    )
        .into_response()
}

/// An HTML document in Berth's one stylesheet: the site header (`site`: its home link and
/// name, then `header`), a skip link, and one `main` landmark holding the title and `body`.
pub(crate) fn document(title: &str, site: (&str, &str), header: Markup, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " \u{2014} " (site.1) }
                link rel="stylesheet" href="/console/static/berth.css";
                script src="/console/static/berth.js" defer {}
            }
            body {
                a.skip href="#main" { "Skip to content" }
                header.site { a href=(site.0) { (site.1) } (header) }
                main #main { h1 { (title) } (body) }
            }
        }
    }
}

/// A console page: the header shows the signed-in principal, the navigation and sign-out.
pub(crate) fn page(title: &str, user: Option<&ConsoleUser>, body: Markup) -> Markup {
    let header = html! {
        @if let Some(u) = user {
            nav aria-label="Main" {
                ul {
                    li { a href="/console/repositories" { "Repositories" } }
                    li { a href="/console/pull-through" { "Pull-through cache" } }
                    li { a href="/console/settings" { "Registry settings" } }
                    li { a href="/console/usage" { "Usage" } }
                    li { a href="/console/users" { "Users" } }
                }
            }
            div {
                span.who { "Signed in as " (u.caller.arn) " " }
                form method="post" action="/console/sign-out" {
                    input type="hidden" name="csrf" value=(u.csrf_token);
                    button.secondary type="submit" { "Sign out" }
                }
            }
        }
    };
    document(title, ("/console/", "Berth console"), header, body)
}

pub(crate) fn page_response(status: StatusCode, title: &str, user: Option<&ConsoleUser>, body: Markup) -> Response {
    let mut resp = (status, Html(page(title, user, body).into_string())).into_response();
    // Pages hold what the principal may see: not kept by shared caches, never framed.
    resp.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp.headers_mut().insert("x-frame-options", HeaderValue::from_static("DENY"));
    resp.headers_mut().insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static("default-src 'self'; frame-ancestors 'none'; form-action 'self'"),
    );
    resp
}

/// An ECR refusal as the console shows it: AWS's exception name and message.
pub(crate) fn refusal(e: &EcrError) -> Markup {
    let (kind, message) = e.exception_and_message();
    html! { p.alert role="alert" { strong { (kind) } ": " (message) } }
}

fn failed(message: &str) -> Response {
    tracing::warn!(error = %message, "console");
    page_response(
        StatusCode::SERVICE_UNAVAILABLE,
        "Unavailable",
        None,
        html! { p.alert { "The console cannot answer now; try again shortly." } },
    )
}

/// The CSRF field every form of a session carries.
pub(crate) fn csrf_field(user: &ConsoleUser) -> Markup {
    html! { input type="hidden" name="csrf" value=(user.csrf_token); }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_read_as_people_read_them() {
        assert_eq!(human_bytes(0), "0 B");
        assert_eq!(human_bytes(1023), "1023 B");
        assert_eq!(human_bytes(1536), "1.5 KiB");
        assert_eq!(human_bytes(5 * 1024 * 1024 * 1024), "5.0 GiB");
    }
}
