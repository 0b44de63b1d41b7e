//! The OCI distribution API (`/v2/`). The path is parsed once, right to left (repository names
//! contain slashes), then dispatched on route and method.

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use berth_oci::manifest::MAX_MANIFEST_BYTES;
use berth_oci::path::PathError;
use berth_oci::{ErrorCode, RangeRequest, V2Route, media_types, parse_content_range, parse_range, parse_v2_path};
use berth_registry::{Page, RegistryError};
use berth_store::ByteStream;
use futures_util::{StreamExt, TryStreamExt};

use berth_auth::token::parse_basic;
use berth_registry::authz::{self, RequestEnv, Target, UploadStart};
use berth_registry::identity::{Caller, PresignedDownload};
use berth_registry::kms::KmsCaller;
use berth_registry::pull_through::FillGrant;

use super::accounts::{Namespace, account_of_host};
use super::ecr::request_host;
use super::{AppState, now_seconds};

mod blobs;
mod errors;
mod listings;
mod manifests;
mod public;
mod uploads;

pub use public::token;

/// Blob responses up to this size are read whole before the head is sent.
const SMALL_READ: u64 = 64 * 1024;

const API_VERSION: (&str, &str) = ("docker-distribution-api-version", "registry/2.0");

type Result<T> = std::result::Result<T, RegistryError>;

pub async fn handle(State(app): State<AppState>, req: axum::extract::Request) -> Response {
    let (parts, body) = req.into_parts();
    let env = super::request_env(&app, &parts);
    let (method, uri, headers) = (parts.method, parts.uri, parts.headers);
    let path = uri.path();
    let tail = path.strip_prefix("/v2/").or_else(|| path.strip_prefix("/v2")).unwrap_or("");
    let host = request_host(&headers, &uri);
    if app.registry.public_host_config().is_some_and(|p| p.serves(&host)) {
        return public::handle(&app, &env, &method, &uri, &headers, body, &host).await;
    }
    let query: Vec<(String, String)> =
        form_urlencoded::parse(uri.query().unwrap_or("").as_bytes()).into_owned().collect();
    // `<account>.<host>` selects that account's registry; repository names become the store's
    // keys here, and go back to names on the way out.
    let ns = Namespace::new(app.identity.account_id(), &account_of_host(&app, &host).await);
    let caller = if app.auth_required && !presigned_download(&app, &method, tail, &query, &ns).await {
        match authenticate(&app, &headers, &uri, super::client_scheme(&env)).await {
            Ok(caller) => Some(caller),
            Err(mut denied) => {
                add_region(&app, &mut denied);
                return denied;
            }
        }
    } else {
        None
    };
    let from_key = param(&query, "from").map(|f| ns.key(f));
    let result = match parse_v2_path(tail) {
        Ok(route) => {
            let key = route.name().map(|n| ns.key(n));
            let route = match &key {
                Some(k) => route.with_name(k),
                None => route,
            };
            let upload = UploadStart::of(param(&query, "mount"), from_key.as_deref(), param(&query, "digest"));
            let access = Access { caller: caller.as_ref(), env: &env, ns: &ns, upload };
            match authorize(&app, &route, &method, access).await {
                Ok(()) => dispatch(&app, route, &method, &query, &headers, body, access).await,
                Err(e) => Err(e),
            }
        }
        Err(PathError::NameInvalid(m)) => Err(RegistryError::NameInvalid(m)),
        Err(PathError::NotFound) => Ok(error_response(StatusCode::NOT_FOUND, "NOT_FOUND", "no such route", None)),
    };
    let resp = result.unwrap_or_else(|e| errors::error_response(e, &ns));
    finish(&app, resp, &ns)
}

/// What every `/v2/` answer gets: keys in its links turned back into names, the API version
/// and the region.
fn finish(app: &AppState, mut resp: Response, ns: &Namespace) -> Response {
    for name in [header::LOCATION, header::LINK] {
        if !ns.is_default()
            && let Some(value) = resp.headers().get(&name).and_then(|v| v.to_str().ok())
            && let Ok(v) = HeaderValue::from_str(&ns.unkey(value))
        {
            resp.headers_mut().insert(name, v);
        }
    }
    resp.headers_mut().insert(API_VERSION.0, HeaderValue::from_static(API_VERSION.1));
    add_region(app, &mut resp);
    resp
}

/// Which region to sign ECR API calls for (docker-credential-berth reads it).
fn add_region(app: &AppState, resp: &mut Response) {
    if let Ok(region) = HeaderValue::from_str(app.identity.region()) {
        resp.headers_mut().insert(REGION_HEADER, region);
    }
}

/// The response header naming the deployment's region, on every `/v2/` answer.
pub const REGION_HEADER: &str = "x-berth-region";

/// A blob GET carrying a valid signature from `GetDownloadUrlForLayer`, issued under a key
/// that is still active, needs no other credentials. A URL of the format before key
/// management (no `X-Berth-Credential`) is not one.
async fn presigned_download(
    app: &AppState,
    method: &Method,
    tail: &str,
    query: &[(String, String)],
    ns: &Namespace,
) -> bool {
    let (Some(access_key_id), Some(expires), Some(signature)) =
        (param(query, "X-Berth-Credential"), param(query, "X-Berth-Expires"), param(query, "X-Berth-Signature"))
    else {
        return false;
    };
    let Ok(V2Route::Blob { name, digest }) = parse_v2_path(tail) else { return false };
    let Ok(expires) = expires.parse() else { return false };
    let url = PresignedDownload { access_key_id, expires, signature };
    (*method == Method::GET || *method == Method::HEAD)
        && app.identity.check_download(&url, &ns.key(name), digest, now_seconds()).await
}

/// Checks the Basic credentials (user `AWS`, a registry token as the password). A request
/// without valid ones gets 401 with the Basic challenge, as ECR answers, so that `docker login`
/// and credential helpers know to send them.
async fn authenticate(
    app: &AppState,
    headers: &HeaderMap,
    uri: &Uri,
    scheme: &str,
) -> std::result::Result<Caller, Response> {
    if headers.get_all(header::AUTHORIZATION).iter().count() > 1 {
        // Which of two credentials counts would depend on who reads them: refused outright.
        return Err(error_response(
            StatusCode::BAD_REQUEST,
            ErrorCode::Unauthorized.as_str(),
            "the request must carry exactly one Authorization header",
            None,
        ));
    }
    let failure = match header_str(headers, "authorization").and_then(parse_basic) {
        Some((user, token)) if user == "AWS" => match app.identity.authenticate_token(&token, now_seconds()).await {
            Ok(caller) => return Ok(caller),
            Err(e) => {
                tracing::debug!(error = ?e, "registry token refused");
                "the authorization token is not valid or has expired"
            }
        },
        Some(_) => "the user name must be AWS",
        None => "authentication required",
    };
    let host = super::ecr::request_host(headers, uri);
    let mut resp = error_response(StatusCode::UNAUTHORIZED, ErrorCode::Unauthorized.as_str(), failure, None);
    if let Ok(v) = HeaderValue::from_str(&format!("Basic realm=\"{scheme}://{host}/\",service=\"ecr.amazonaws.com\"")) {
        resp.headers_mut().insert(header::WWW_AUTHENTICATE, v);
    }
    resp.headers_mut().insert(API_VERSION.0, HeaderValue::from_static(API_VERSION.1));
    Err(resp)
}

/// Who is asking, from where, in which account's registry: what listings filter by.
#[derive(Clone, Copy)]
struct Access<'a> {
    caller: Option<&'a Caller>,
    env: &'a RequestEnv,
    ns: &'a Namespace,
    /// What an upload start asks for (its mount's `from` as a repository key).
    upload: UploadStart<'a>,
}

/// Authorizes a `/v2/` request once, before anything is read or written: every (action,
/// repository) the route needs must be allowed (`authz::v2_permissions`). A refusal is `DENIED`
/// (403), which Docker shows as `denied: <message>`.
async fn authorize(app: &AppState, route: &V2Route<'_>, method: &Method, access: Access<'_>) -> Result<()> {
    let Access { caller, env, upload, .. } = access;
    let Some(caller) = caller else { return Ok(()) };
    for (action, repository) in authz::v2_permissions(route, method.as_str(), upload) {
        if let Err(denied) = app.authorizer.authorize(caller, action, Target::Repository(repository), env).await? {
            return Err(RegistryError::Denied(denied.message));
        }
        if authz::decrypts(action) {
            let who = KmsCaller { authorizer: &app.authorizer, caller, env, via_service: None };
            app.registry.check_pull_decrypt(&who, repository).await?;
        }
    }
    Ok(())
}

/// What a pull of a cache repository needs to fill it: the caller, to be authorized for the
/// import by the registry before anything is asked of the upstream.
fn fill_grant<'a>(app: &'a AppState, access: Access<'a>) -> FillGrant<'a> {
    FillGrant { authorizer: &app.authorizer, caller: access.caller, env: access.env }
}

/// Whether the caller may read the source of a mount (`authz::MOUNT_SOURCE_ACTION`). A refusal
/// is no error: the mount is not done and an ordinary upload session starts instead. A public
/// repository anyone may read.
async fn may_read_mount_source(app: &AppState, access: Access<'_>, from: &str) -> Result<bool> {
    let Access { caller, env, ns, .. } = access;
    match caller {
        None => Ok(true),
        Some(_) if ns.is_public() => Ok(true),
        Some(c) => {
            Ok(app.authorizer.authorize(c, authz::MOUNT_SOURCE_ACTION, Target::Repository(from), env).await?.is_ok())
        }
    }
}

fn param<'a>(query: &'a [(String, String)], key: &str) -> Option<&'a str> {
    query.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
}

fn header_str<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

fn content_length(headers: &HeaderMap) -> Option<u64> {
    header_str(headers, "content-length").and_then(|v| v.parse().ok())
}

fn body_stream(body: Body) -> ByteStream {
    Box::pin(body.into_data_stream().map_err(std::io::Error::other))
}

fn unsupported() -> RegistryError {
    RegistryError::Unsupported("the operation is unsupported".into())
}

/// One request, to the handler of its route family.
async fn dispatch(
    app: &AppState,
    route: V2Route<'_>,
    method: &Method,
    query: &[(String, String)],
    headers: &HeaderMap,
    body: Body,
    access: Access<'_>,
) -> Result<Response> {
    match route {
        V2Route::Base | V2Route::Catalog | V2Route::Tags { .. } => {
            listings::serve(app, route, method, query, access).await
        }
        V2Route::Manifest { .. } | V2Route::Referrers { .. } => {
            manifests::serve(app, route, method, query, headers, body, access).await
        }
        V2Route::Blob { .. } => blobs::serve(app, route, method, headers, access).await,
        V2Route::UploadStart { .. } | V2Route::Upload { .. } => {
            uploads::serve(app, route, method, query, headers, body, access).await
        }
    }
}

/// Reads a manifest body of at most `MAX_MANIFEST_BYTES`. A larger one is read on (and thrown
/// away) up to a bound, so the client sees the 413 instead of a reset connection; `None` then.
async fn read_manifest_body(body: Body) -> Result<Option<Vec<u8>>> {
    const DRAIN_LIMIT: usize = 4 * MAX_MANIFEST_BYTES;
    let mut stream = body.into_data_stream();
    let mut buf = Vec::new();
    let mut total = 0usize;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| RegistryError::ManifestInvalid(format!("reading the manifest: {e}")))?;
        total += chunk.len();
        if total <= MAX_MANIFEST_BYTES {
            buf.extend_from_slice(&chunk);
        } else if total > DRAIN_LIMIT {
            break;
        }
    }
    Ok((total <= MAX_MANIFEST_BYTES).then_some(buf))
}

fn page_params(query: &[(String, String)]) -> Result<(Option<u32>, Option<&str>)> {
    let n = match param(query, "n") {
        Some(v) => {
            Some(v.parse::<u32>().map_err(|_| RegistryError::Unsupported(format!("invalid page size n={v:?}")))?)
        }
        None => None,
    };
    Ok((n, param(query, "last")))
}

fn next_link(path: &str, n: Option<u32>, page: &Page) -> Option<String> {
    let last = page.items.last().filter(|_| page.more)?;
    let mut q = form_urlencoded::Serializer::new(String::new());
    if let Some(n) = n {
        q.append_pair("n", &n.to_string());
    }
    q.append_pair("last", last);
    Some(format!("<{path}?{}>; rel=\"next\"", q.finish()))
}

fn with_link(mut resp: Response, link: Option<String>) -> Response {
    if let Some(l) = link.and_then(|l| HeaderValue::from_str(&l).ok()) {
        resp.headers_mut().insert(header::LINK, l);
    }
    resp
}

fn json_response(status: StatusCode, body: String) -> Response {
    (status, [(header::CONTENT_TYPE, "application/json")], body).into_response()
}

fn empty(status: StatusCode) -> Response {
    Response::builder().status(status).header(header::CONTENT_LENGTH, 0).body(Body::empty()).expect("valid response")
}

fn blob_created(name: &str, digest: &berth_oci::Digest) -> Response {
    Response::builder()
        .status(StatusCode::CREATED)
        .header(header::LOCATION, format!("/v2/{name}/blobs/{digest}"))
        .header("docker-content-digest", digest.as_str())
        .header(header::CONTENT_LENGTH, 0)
        .body(Body::empty())
        .expect("valid response")
}

/// Upload progress as distribution reports it: `Range: 0-<last byte>` (`0-0` when empty).
fn upload_response(status: StatusCode, name: &str, id: &str, offset: u64) -> Response {
    Response::builder()
        .status(status)
        .header(header::LOCATION, format!("/v2/{name}/blobs/uploads/{id}"))
        .header(header::RANGE, format!("0-{}", offset.saturating_sub(1)))
        .header("docker-upload-uuid", id)
        .header(header::CONTENT_LENGTH, 0)
        .body(Body::empty())
        .expect("valid response")
}

fn too_large() -> Response {
    error_response(
        StatusCode::PAYLOAD_TOO_LARGE,
        ErrorCode::ManifestInvalid.as_str(),
        &format!("manifest is larger than {MAX_MANIFEST_BYTES} bytes"),
        None,
    )
}

fn error_response(status: StatusCode, code: &str, message: &str, detail: Option<serde_json::Value>) -> Response {
    let mut e = serde_json::json!({ "code": code, "message": message });
    if let Some(d) = detail {
        e["detail"] = d;
    }
    json_response(status, serde_json::json!({ "errors": [e] }).to_string())
}
