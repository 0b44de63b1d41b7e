//! The HTTP surfaces on one port: `/v2/` (OCI distribution; on the public host, ECR Public's
//! with its `/token` endpoint and `/gallery/`), the AWS APIs at `/`, the web console at
//! `/console/`, and `/healthz`. Each
//! surface is a thin adapter that turns requests into calls on the registry services.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::extract::{ConnectInfo, Request};
use axum::http::header;
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::{any, get, post};
use berth_registry::Registry;
use berth_registry::identity::Identity;

mod accounts;
mod awsjson;
mod console;
pub mod ecr;
mod gallery;
pub mod iam;
mod kms;
pub mod metrics;
pub mod proxy;
mod replication;
mod secretsmanager;
mod v2;

/// The client's address, as every surface sees it (request logs, `aws:SourceIp`); the
/// connection layer (`listener.rs`) puts it in each request's extensions.
#[derive(Clone, Copy, Debug)]
pub struct ClientAddr(pub SocketAddr);

#[derive(Clone)]
pub struct AppState {
    pub registry: Arc<Registry>,
    pub identity: Arc<Identity>,
    /// Where every request is authorized (IAM policies).
    pub authorizer: Arc<berth_registry::authz::Authorizer>,
    /// `http` or `https`: how clients reach this listener (a trusted proxy may say otherwise).
    pub scheme: &'static str,
    /// Whose `X-Forwarded-For` / `-Proto` are believed.
    pub trusted_proxies: Arc<proxy::TrustedProxies>,
    /// Whether `/v2/` demands a registry token (the default; off only for benchmarks).
    pub auth_required: bool,
    pub metrics: metrics_exporter_prometheus::PrometheusHandle,
}

/// Who sent the request: the connection's peer, or the client a trusted proxy names.
pub fn client_of(app: &AppState, parts: &axum::http::request::Parts) -> Option<proxy::Client> {
    let peer = parts.extensions.get::<ConnectInfo<ClientAddr>>()?.0.0.ip();
    Some(app.trusted_proxies.client(peer, app.scheme, &parts.headers))
}

/// The request's own facts for policy conditions: source address, TLS (as the client used it).
pub fn request_env(app: &AppState, parts: &axum::http::request::Parts) -> berth_registry::authz::RequestEnv {
    let client = client_of(app, parts);
    berth_registry::authz::RequestEnv {
        source_ip: client.map(|c| c.ip),
        secure_transport: client.map_or(app.scheme, |c| c.scheme) == "https",
        request_tags: Vec::new(),
        tag_keys: Vec::new(),
    }
}

/// The scheme the client used, for the endpoints Berth tells it about.
pub fn client_scheme(env: &berth_registry::authz::RequestEnv) -> &'static str {
    if env.secure_transport { "https" } else { "http" }
}

/// Seconds since the Unix epoch, the clock SigV4 and tokens are checked against.
pub fn now_seconds() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64)
}

pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/v2", any(v2::handle))
        .route("/v2/", any(v2::handle))
        .route("/v2/{*rest}", any(v2::handle))
        .route("/token", get(v2::token))
        .route("/gallery", get(gallery::index))
        .route("/gallery/", get(gallery::index))
        .route("/gallery/{*rest}", get(gallery::repository))
        .route("/", post(ecr::handle))
        .route("/berth/replication/v1/{op}", any(replication::handle))
        .merge(console::routes())
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .layer(middleware::from_fn_with_state(state.clone(), log_request))
        .with_state(state)
}

/// Ready when the metadata and blob stores answer; `503` with the reason otherwise.
async fn readyz(axum::extract::State(app): axum::extract::State<AppState>) -> Response {
    use axum::response::IntoResponse;
    match app.registry.check_ready().await {
        Ok(()) => "ready\n".into_response(),
        Err(e) => {
            tracing::warn!(error = %e, "not ready");
            (axum::http::StatusCode::SERVICE_UNAVAILABLE, format!("not ready: {e}\n")).into_response()
        }
    }
}

/// `/metrics` alone, for the internal metrics address: it names every account's repositories,
/// so it is never on the public port.
pub fn metrics_router(state: AppState) -> Router {
    Router::new().route("/metrics", get(metrics::render)).with_state(state)
}

fn content_length(h: &axum::http::HeaderMap) -> u64 {
    h.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse().ok()).unwrap_or(0)
}

/// One log line per request: method, path, status, bytes in and out, duration.
async fn log_request(axum::extract::State(app): axum::extract::State<AppState>, req: Request, next: Next) -> Response {
    let start = Instant::now();
    let method = req.method().clone();
    let path = req.uri().path().to_owned();
    let (parts, body) = req.into_parts();
    let peer = client_of(&app, &parts).map(|c| c.ip);
    let req = Request::from_parts(parts, body);
    let bytes_in = content_length(req.headers());
    let route = metrics::route_label(&path, req.headers().get("x-amz-target").and_then(|v| v.to_str().ok()));
    let resp = next.run(req).await;
    let status = resp.status().as_u16();
    let bytes_out = content_length(resp.headers());
    let elapsed = start.elapsed().as_secs_f64();
    let ms = elapsed * 1000.0;
    let labels = [("route", route.to_string()), ("method", method.to_string()), ("status", status.to_string())];
    ::metrics::counter!("berth_http_requests_total", &labels).increment(1);
    ::metrics::histogram!("berth_http_request_duration_seconds", &labels[..2]).record(elapsed);
    if route == "v2_blob" || route == "v2_upload" {
        ::metrics::counter!("berth_upload_bytes_total").increment(bytes_in);
        ::metrics::counter!("berth_download_bytes_total").increment(if method == axum::http::Method::GET {
            bytes_out
        } else {
            0
        });
    }
    tracing::info!(target: "berth::request", %method, path, status, bytes_in, bytes_out, ms = format!("{ms:.2}"), peer = ?peer);
    resp
}
