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
use berth_registry::identity::Caller;

use super::accounts::{Namespace, account_of_host};
use super::ecr::request_host;
use super::{AppState, now_seconds};

mod errors;

/// Blob responses up to this size are read whole before the head is sent.
const SMALL_READ: u64 = 64 * 1024;

const API_VERSION: (&str, &str) = ("docker-distribution-api-version", "registry/2.0");

type Result<T> = std::result::Result<T, RegistryError>;

pub async fn handle(State(app): State<AppState>, req: axum::extract::Request) -> Response {
    let (parts, body) = req.into_parts();
    let (method, uri, headers) = (parts.method, parts.uri, parts.headers);
    let env = super::request_env(&app, &parts.extensions);
    let path = uri.path();
    let tail = path.strip_prefix("/v2/").or_else(|| path.strip_prefix("/v2")).unwrap_or("");
    let query: Vec<(String, String)> =
        form_urlencoded::parse(uri.query().unwrap_or("").as_bytes()).into_owned().collect();
    // `<account>.<host>` selects that account's registry; repository names become the store's
    // keys here, and go back to names on the way out.
    let ns = Namespace::new(app.identity.account_id(), &account_of_host(&app, &request_host(&headers, &uri)).await);
    let caller = if app.auth_required && !presigned_download(&app, &method, tail, &query, &ns) {
        match authenticate(&app, &headers, &uri).await {
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
    let mut resp = result.unwrap_or_else(|e| errors::error_response(e, &ns));
    for name in [header::LOCATION, header::LINK] {
        if !ns.is_default()
            && let Some(value) = resp.headers().get(&name).and_then(|v| v.to_str().ok())
            && let Ok(v) = HeaderValue::from_str(&ns.unkey(value))
        {
            resp.headers_mut().insert(name, v);
        }
    }
    resp.headers_mut().insert(API_VERSION.0, HeaderValue::from_static(API_VERSION.1));
    add_region(&app, &mut resp);
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

/// A blob GET carrying a valid signature from `GetDownloadUrlForLayer` needs no other credentials.
fn presigned_download(app: &AppState, method: &Method, tail: &str, query: &[(String, String)], ns: &Namespace) -> bool {
    let (Some(expires), Some(signature)) = (param(query, "X-Berth-Expires"), param(query, "X-Berth-Signature")) else {
        return false;
    };
    let Ok(V2Route::Blob { name, digest }) = parse_v2_path(tail) else { return false };
    let Ok(expires) = expires.parse() else { return false };
    (*method == Method::GET || *method == Method::HEAD)
        && app.identity.check_download(&ns.key(name), digest, expires, signature, now_seconds())
}

/// Checks the Basic credentials (user `AWS`, a registry token as the password). A request
/// without valid ones gets 401 with the Basic challenge, as ECR answers, so that `docker login`
/// and credential helpers know to send them.
async fn authenticate(app: &AppState, headers: &HeaderMap, uri: &Uri) -> std::result::Result<Caller, Response> {
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
    if let Ok(v) =
        HeaderValue::from_str(&format!("Basic realm=\"{}://{host}/\",service=\"ecr.amazonaws.com\"", app.scheme))
    {
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
    }
    Ok(())
}

/// Whether the caller may read the source of a mount (`authz::MOUNT_SOURCE_ACTION`). A refusal
/// is no error: the mount is not done and an ordinary upload session starts instead.
async fn may_read_mount_source(app: &AppState, caller: Option<&Caller>, from: &str, env: &RequestEnv) -> Result<bool> {
    match caller {
        None => Ok(true),
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

async fn dispatch(
    app: &AppState,
    route: V2Route<'_>,
    method: &Method,
    query: &[(String, String)],
    headers: &HeaderMap,
    body: Body,
    access: Access<'_>,
) -> Result<Response> {
    let Access { caller, env, ns, upload } = access;
    let reg = &app.registry;
    let head = *method == Method::HEAD;
    match (route, method.clone()) {
        (V2Route::Base, Method::GET | Method::HEAD) => Ok(json_response(StatusCode::OK, "{}".into())),
        (V2Route::Catalog, Method::GET) => {
            let (n, last) = page_params(query)?;
            // One page of this account's repositories (the registry steps over other accounts').
            let page = reg.catalog(&ns.account, n, last.map(|l| ns.key(l)).as_deref()).await?;
            let names: Vec<String> = page.items.iter().map(|k| ns.unkey(k)).collect();
            let link = next_link("/v2/_catalog", n, &Page { items: names.clone(), more: page.more });
            // Only the repositories the caller may describe.
            let mut visible = Vec::with_capacity(page.items.len());
            for (name, key) in names.iter().zip(&page.items) {
                let allowed = match caller {
                    None => true,
                    Some(c) => app
                        .authorizer
                        .authorize(c, "ecr:DescribeRepositories", Target::Repository(key), env)
                        .await?
                        .is_ok(),
                };
                if allowed {
                    visible.push(name);
                }
            }
            let body = serde_json::json!({ "repositories": visible });
            Ok(with_link(json_response(StatusCode::OK, body.to_string()), link))
        }
        (V2Route::Tags { name }, Method::GET) => {
            let (n, last) = page_params(query)?;
            let page = reg.list_tags(name, n, last).await?;
            let link = next_link(&format!("/v2/{name}/tags/list"), n, &page);
            let body = serde_json::json!({ "name": ns.unkey(name), "tags": page.items });
            Ok(with_link(json_response(StatusCode::OK, body.to_string()), link))
        }
        (V2Route::Manifest { name, reference }, Method::GET | Method::HEAD) => {
            let accept: Vec<&str> = headers.get_all(header::ACCEPT).iter().filter_map(|v| v.to_str().ok()).collect();
            let m = reg.get_manifest(name, reference, &accept).await?;
            if !head {
                reg.record_pull(name, &m.digest);
            }
            let len = m.content.len();
            let resp = Response::builder()
                .status(StatusCode::OK)
                .header(header::CONTENT_TYPE, &m.media_type)
                .header(header::CONTENT_LENGTH, len)
                .header("docker-content-digest", m.digest.as_str())
                .header(header::ETAG, format!("\"{}\"", m.digest));
            let body = if head { Body::empty() } else { Body::from(m.content) };
            Ok(resp.body(body).expect("valid response"))
        }
        (V2Route::Manifest { name, reference }, Method::PUT) => {
            let Some(bytes) = read_manifest_body(body).await? else {
                return Ok(too_large());
            };
            let tags: Vec<String> = query.iter().filter(|(k, _)| k == "tag").map(|(_, v)| v.clone()).collect();
            let by_digest = reference.contains(':');
            let put = reg.put_manifest(name, reference, header_str(headers, "content-type"), bytes, &tags).await?;
            let mut resp = Response::builder()
                .status(StatusCode::CREATED)
                .header(header::LOCATION, format!("/v2/{name}/manifests/{}", put.digest))
                .header("docker-content-digest", put.digest.as_str())
                .header(header::CONTENT_LENGTH, 0);
            if let Some(s) = &put.subject {
                resp = resp.header("oci-subject", s.as_str());
            }
            if by_digest {
                for t in &put.tags {
                    resp = resp.header("oci-tag", t);
                }
            }
            Ok(resp.body(Body::empty()).expect("valid response"))
        }
        (V2Route::Manifest { name, reference }, Method::DELETE) => {
            reg.delete_manifest(name, reference).await?;
            Ok(empty(StatusCode::ACCEPTED))
        }
        (V2Route::Blob { name, digest }, Method::HEAD) => {
            let (digest, size) = reg.stat_blob(name, digest).await?;
            Ok(Response::builder()
                .status(StatusCode::OK)
                .header(header::CONTENT_LENGTH, size)
                .header(header::CONTENT_TYPE, "application/octet-stream")
                .header(header::ACCEPT_RANGES, "bytes")
                .header("docker-content-digest", digest.as_str())
                .header(header::ETAG, format!("\"{digest}\""))
                .body(Body::empty())
                .expect("valid response"))
        }
        (V2Route::Blob { name, digest }, Method::GET) => {
            let (d, size) = reg.stat_blob(name, digest).await?;
            let (status, range) = match parse_range(header_str(headers, "range"), size) {
                RangeRequest::Full => (StatusCode::OK, None),
                RangeRequest::Partial(r) => (StatusCode::PARTIAL_CONTENT, Some(r)),
                RangeRequest::Unsatisfiable => {
                    return Ok(Response::builder()
                        .status(StatusCode::RANGE_NOT_SATISFIABLE)
                        .header(header::CONTENT_RANGE, format!("bytes */{size}"))
                        .header(header::CONTENT_LENGTH, 0)
                        .body(Body::empty())
                        .expect("valid response"));
                }
            };
            let read = reg.read_blob(name, d.as_str(), range).await?;
            let mut resp = Response::builder()
                .status(status)
                .header(header::CONTENT_TYPE, "application/octet-stream")
                .header(header::ACCEPT_RANGES, "bytes")
                .header("docker-content-digest", read.digest.as_str())
                .header(header::ETAG, format!("\"{}\"", read.digest));
            resp = match range {
                Some(r) => resp
                    .header(header::CONTENT_LENGTH, r.len())
                    .header(header::CONTENT_RANGE, format!("bytes {}-{}/{}", r.start, r.end, read.size)),
                None => resp.header(header::CONTENT_LENGTH, read.size),
            };
            let len = range.map_or(read.size, |r| r.len());
            let body = if len <= SMALL_READ {
                // Read first, so the head and the bytes leave in one write: a small response
                // sent as two would wait on the client's delayed ACK.
                let bytes: Vec<bytes::Bytes> = read
                    .body
                    .try_collect()
                    .await
                    .map_err(|e| RegistryError::Internal(format!("reading blob {}: {e}", read.digest)))?;
                Body::from(bytes.concat())
            } else {
                Body::from_stream(read.body)
            };
            Ok(resp.body(body).expect("valid response"))
        }
        // Images are deleted by manifest and GC reclaims their blobs: a blob delete could break
        // an image that still references the blob, so it is refused as distribution refuses
        // deletes it does not allow.
        (V2Route::Blob { .. }, Method::DELETE) => Err(RegistryError::Unsupported(
            "blobs are not deleted one by one: delete the image's manifest, and garbage collection reclaims its blobs"
                .into(),
        )),
        (V2Route::UploadStart { name }, Method::POST) => {
            match upload {
                UploadStart::Mount { from: Some(from) } => {
                    let mount = param(query, "mount").unwrap_or_default();
                    let source_named =
                        param(query, "from").is_some_and(|f| berth_oci::validate_repository_name(f).is_ok());
                    if source_named
                        && may_read_mount_source(app, caller, from, env).await?
                        && let Some(d) = reg.mount_blob(name, mount, from).await?
                    {
                        return Ok(blob_created(name, &d));
                    }
                }
                UploadStart::Mount { from: None } | UploadStart::Session => {}
                UploadStart::Monolithic => {
                    let digest = param(query, "digest").unwrap_or_default();
                    let done = reg.upload_blob(name, digest, body_stream(body)).await?;
                    return Ok(blob_created(name, &done.digest));
                }
            }
            // A mount that cannot be done is a new, empty session; its body (if any) is ignored.
            let id = reg.start_upload(name, param(query, "digest-algorithm")).await?;
            Ok(upload_response(StatusCode::ACCEPTED, name, &id, 0))
        }
        (V2Route::Upload { name, id }, Method::PATCH) => {
            let range = match header_str(headers, "content-range") {
                Some(h) => Some(
                    parse_content_range(h)
                        .ok_or_else(|| RegistryError::ChunkRangeInvalid(format!("invalid Content-Range {h:?}")))?,
                ),
                None => None,
            };
            let offset = reg.append_upload(name, id, range, content_length(headers), body_stream(body)).await?;
            Ok(upload_response(StatusCode::ACCEPTED, name, id, offset))
        }
        (V2Route::Upload { name, id }, Method::PUT) => {
            let digest = param(query, "digest")
                .ok_or_else(|| RegistryError::DigestInvalid("the digest query parameter is required".into()))?;
            let done = reg.complete_upload(name, id, digest, Some(body_stream(body)), content_length(headers)).await?;
            Ok(blob_created(name, &done.digest))
        }
        (V2Route::Upload { name, id }, Method::GET) => {
            let offset = reg.upload_status(name, id).await?;
            Ok(upload_response(StatusCode::NO_CONTENT, name, id, offset))
        }
        (V2Route::Upload { name, id }, Method::DELETE) => {
            reg.cancel_upload(name, id).await?;
            Ok(empty(StatusCode::NO_CONTENT))
        }
        (V2Route::Referrers { name, digest }, Method::GET) => {
            let filter = param(query, "artifactType");
            let found = reg.referrers(name, digest, filter).await?;
            let manifests: Vec<serde_json::Value> = found
                .into_iter()
                .map(|m| {
                    let mut d = serde_json::json!({ "mediaType": m.media_type, "digest": m.digest, "size": m.size });
                    if let Some(a) = m.artifact_type {
                        d["artifactType"] = a.into();
                    }
                    if let Some(a) = m.annotations.and_then(|a| serde_json::from_str::<serde_json::Value>(&a).ok()) {
                        d["annotations"] = a;
                    }
                    d
                })
                .collect();
            let index =
                serde_json::json!({ "schemaVersion": 2, "mediaType": media_types::OCI_INDEX, "manifests": manifests });
            let mut resp = json_response(StatusCode::OK, index.to_string());
            resp.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(media_types::OCI_INDEX));
            if filter.is_some() {
                resp.headers_mut().insert("oci-filters-applied", HeaderValue::from_static("artifactType"));
            }
            Ok(resp)
        }
        _ => Err(unsupported()),
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
