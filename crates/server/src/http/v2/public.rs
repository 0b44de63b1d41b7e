//! `/v2/` on the public host (ECR Public's `public.ecr.aws`): repositories named
//! `<alias>/<repository>`, a Bearer challenge pointing at the host's own token endpoint, anyone
//! pulling, signed-in principals pushing with the `ecr-public:` actions, and the anonymous
//! allowance. What may be done is the registry's rule (`berth_registry::public`); this adapter
//! reads the request, asks, and answers in the distribution API's terms.

use berth_registry::public::{PublicAccess, public_v2_access};

use super::*;
use crate::http::accounts::Namespace;

/// Serves one `/v2/` request that arrived on the public host (`host` as the client named it).
pub(super) async fn handle(
    app: &AppState,
    env: &RequestEnv,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: Body,
    host: &str,
) -> Response {
    let tail = uri.path().strip_prefix("/v2/").or_else(|| uri.path().strip_prefix("/v2")).unwrap_or("");
    let query: Vec<(String, String)> =
        form_urlencoded::parse(uri.query().unwrap_or("").as_bytes()).into_owned().collect();
    let route = match parse_v2_path(tail) {
        Ok(route) => route,
        Err(PathError::NameInvalid(m)) => {
            return errors::error_response(RegistryError::NameInvalid(m), &no_registry(app));
        }
        Err(PathError::NotFound) => return error_response(StatusCode::NOT_FOUND, "NOT_FOUND", "no such route", None),
    };
    let scope =
        route.name().map(|n| (n, if matches!(*method, Method::GET | Method::HEAD) { "pull" } else { "push,pull" }));
    let caller = match bearer(app, headers).await {
        Bearer::Anonymous => None,
        Bearer::Caller(c) => Some(c),
        Bearer::Missing(why) => return challenge(app, env, host, scope, why, None),
    };
    // The repository's public registry, by the alias its name starts with.
    let (ns, key) = match route.name() {
        Some(name) => match app.registry.resolve_public_name(name).await {
            Ok(Some((registry, key))) => {
                (Namespace::public(app.identity.account_id(), &registry.account, &registry.alias), Some(key))
            }
            Ok(None) => {
                let message = format!("The repository with name '{name}' does not exist in the public registry");
                return error_response(StatusCode::NOT_FOUND, ErrorCode::NameUnknown.as_str(), &message, None);
            }
            Err(e) => return errors::error_response(e, &no_registry(app)),
        },
        None => (no_registry(app), None),
    };
    let route = match &key {
        Some(k) => route.with_name(k),
        None => route,
    };
    // A mount only from a repository of the same public registry.
    let from_key = param(&query, "from").and_then(|f| ns.public_key(f));
    let upload = UploadStart::of(param(&query, "mount"), from_key.as_deref(), param(&query, "digest"));
    let anonymous_source = if caller.is_none() { env.source_ip } else { None };
    let result = async {
        match public_v2_access(&route, method.as_str(), upload) {
            PublicAccess::Closed => {
                return Err(RegistryError::Denied(
                    "the public registry has no catalog: its repositories are listed in the gallery at /gallery/"
                        .into(),
                ));
            }
            PublicAccess::Read => {}
            PublicAccess::Write(actions) => {
                let Some(caller) = &caller else {
                    return Ok(challenge(
                        app,
                        env,
                        host,
                        scope,
                        "pushing to the public registry needs credentials",
                        Some("insufficient_scope"),
                    ));
                };
                for (action, repository) in actions {
                    let target = Target::PublicRepository(repository);
                    if let Err(denied) = app.authorizer.authorize(caller, action, target, env).await? {
                        return Err(RegistryError::Denied(denied.message));
                    }
                }
            }
        }
        let transfers = *method == Method::GET && matches!(route, V2Route::Manifest { .. } | V2Route::Blob { .. });
        let counted = match anonymous_source {
            Some(source) if transfers => {
                app.registry.check_anonymous_pull(source, now_seconds()).await?;
                Some(source)
            }
            _ => None,
        };
        let blob = match route {
            V2Route::Blob { name, digest } => Some((name, digest)),
            _ => None,
        };
        let access = Access { caller: caller.as_ref(), env, ns: &ns, upload };
        let resp = dispatch(app, route, method, &query, headers, body, access).await?;
        if let Some(source) = counted {
            let sent = match resp.status() {
                StatusCode::OK | StatusCode::PARTIAL_CONTENT => content_length(resp.headers()).unwrap_or(0),
                // Redirected to the storage: counted by the blob's size.
                StatusCode::TEMPORARY_REDIRECT => match blob {
                    Some((name, digest)) => app.registry.stat_blob(name, digest).await.map_or(0, |(_, size)| size),
                    None => 0,
                },
                _ => 0,
            };
            app.registry.record_anonymous_pull(source, sent, now_seconds());
        }
        Ok(resp)
    }
    .await;
    let resp = result.unwrap_or_else(|e| errors::error_response(e, &ns));
    finish(app, resp, &ns)
}

/// The namespace of a request that names no repository (the base, the catalog).
fn no_registry(app: &AppState) -> Namespace {
    Namespace::public(app.identity.account_id(), "", "")
}

enum Bearer {
    Anonymous,
    Caller(Caller),
    /// No usable token: why, for the challenge.
    Missing(&'static str),
}

/// The request's Bearer token from the public host's token endpoint.
async fn bearer(app: &AppState, headers: &HeaderMap) -> Bearer {
    if headers.get_all(header::AUTHORIZATION).iter().count() > 1 {
        return Bearer::Missing("the request must carry exactly one Authorization header");
    }
    let Some(token) = header_str(headers, "authorization")
        .and_then(|h| h.strip_prefix("Bearer ").or_else(|| h.strip_prefix("bearer ")))
    else {
        return Bearer::Missing("authentication required");
    };
    match app.identity.authenticate_public_token(token.trim(), now_seconds()).await {
        Ok(None) => Bearer::Anonymous,
        Ok(Some(caller)) => Bearer::Caller(caller),
        Err(e) => {
            tracing::debug!(error = ?e, "public registry token refused");
            Bearer::Missing("the authorization token is not valid or has expired")
        }
    }
}

/// `401` with the Bearer challenge that sends clients to the token endpoint (anonymous pulls
/// get a token there without credentials; pushes with `AWS:<ecr-public token>`).
fn challenge(
    app: &AppState,
    env: &RequestEnv,
    host: &str,
    scope: Option<(&str, &str)>,
    message: &str,
    error: Option<&str>,
) -> Response {
    let service = app.registry.public_host().unwrap_or(host);
    let mut value =
        format!("Bearer realm=\"{}://{host}/token\",service=\"{service}\"", super::super::client_scheme(env));
    if let Some((name, actions)) = scope {
        value.push_str(&format!(",scope=\"repository:{name}:{actions}\""));
    }
    if let Some(error) = error {
        value.push_str(&format!(",error=\"{error}\""));
    }
    let mut resp = error_response(StatusCode::UNAUTHORIZED, ErrorCode::Unauthorized.as_str(), message, None);
    if let Ok(v) = HeaderValue::from_str(&value) {
        resp.headers_mut().insert(header::WWW_AUTHENTICATE, v);
    }
    resp.headers_mut().insert(API_VERSION.0, HeaderValue::from_static(API_VERSION.1));
    resp
}

/// The public host's token endpoint (`GET /token`, the realm of its challenge): without
/// credentials an anonymous pull token; with Basic `AWS:<ecr-public token>` (what `docker
/// login` sends after `aws ecr-public get-login-password`) that token back as the Bearer
/// token, so pushes act as its principal. Not served on the private host.
pub async fn token(State(app): State<AppState>, req: axum::extract::Request) -> Response {
    let (parts, _) = req.into_parts();
    let host = request_host(&parts.headers, &parts.uri);
    if !app.registry.public_host_config().is_some_and(|p| p.serves(&host)) {
        return error_response(StatusCode::NOT_FOUND, "NOT_FOUND", "no such route", None);
    }
    let now = now_seconds();
    let (token, expires_at) = match header_str(&parts.headers, "authorization") {
        None => app.identity.issue_anonymous_public_token(now),
        Some(h) => match parse_basic(h) {
            Some((user, password)) if user == "AWS" => {
                match app.identity.authenticate_public_token(&password, now).await {
                    Ok(Some(_)) => match berth_auth::token::expiry(&password) {
                        Some(expires_at) => (password, expires_at),
                        None => return token_refused("the authorization token is not valid"),
                    },
                    Ok(None) | Err(_) => {
                        return token_refused(
                            "the password must be a token of `aws ecr-public get-login-password` that has not expired",
                        );
                    }
                }
            }
            Some(_) => return token_refused("the user name must be AWS"),
            None => return token_refused("only Basic credentials are accepted here"),
        },
    };
    let body = serde_json::json!({
        "token": token,
        "access_token": token,
        "expires_in": (expires_at - now).max(0),
        "issued_at": berth_iam::format_iso8601(now),
    });
    json_response(StatusCode::OK, body.to_string())
}

fn token_refused(message: &str) -> Response {
    error_response(StatusCode::UNAUTHORIZED, ErrorCode::Unauthorized.as_str(), message, None)
}
