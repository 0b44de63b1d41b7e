//! Talking to an upstream registry: finding out how it authenticates (`GET /v2/` and its
//! `WWW-Authenticate` challenge), and answering that challenge — anonymously, with Basic
//! credentials, through the Bearer token flow (Docker Hub, ghcr.io, quay.io), or, for another
//! Berth or ECR (`Basic … service="ecr.amazonaws.com"`), with a registry token from a
//! SigV4-signed `GetAuthorizationToken`.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use base64::Engine as _;
use berth_oci::Challenge;
use berth_rules::pull_through::UpstreamUrl;
use futures_util::{StreamExt, TryStreamExt};
use reqwest::header::{ACCEPT, AUTHORIZATION, WWW_AUTHENTICATE};
use reqwest::{Method, StatusCode};

/// What a rule's secret holds: a user name and an access token (for another Berth or ECR, an
/// access key id and its secret key; `region` optionally names the region its signatures are
/// scoped to).
#[derive(Clone, PartialEq, Eq)]
pub struct UpstreamCredential {
    pub username: String,
    pub secret: String,
    pub region: Option<String>,
}

impl std::fmt::Debug for UpstreamCredential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UpstreamCredential").field("username", &self.username).finish_non_exhaustive()
    }
}

/// Why an upstream request failed, in the classes ECR reports (`UpstreamUnavailable`,
/// `UpstreamAccessDenied`, `UpstreamTooManyRequests`) and what a probe needs besides.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UpstreamError {
    /// No answer, a timeout, or a server error.
    #[error("the upstream registry is unavailable: {0}")]
    Unavailable(String),
    /// An answer, but not a registry's (`/v2/` is not the distribution API there).
    #[error("the upstream registry does not serve the registry API: {0}")]
    NotARegistry(String),
    /// The credentials were refused, or the upstream needs credentials the rule lacks.
    #[error("the upstream registry refused access: {0}")]
    AccessDenied(String),
    #[error("the upstream registry is rate-limiting requests: {0}")]
    TooManyRequests(String),
}

/// The HTTP client every upstream request goes through (one connection pool), with the
/// settings of `[pull_through]`.
pub struct UpstreamHttp {
    client: reqwest::Client,
    /// Whether plain-http upstreams on hosts other than loopback are allowed.
    pub allow_plain_http: bool,
    /// Answers to upstream challenges, per (registry, user, scope), until they expire: a fill
    /// asks the token service once, not once per blob.
    authorizations: Mutex<HashMap<String, (String, Instant)>>,
}

/// `[pull_through]` settings.
#[derive(Debug, Clone, Default)]
pub struct UpstreamSettings {
    pub allow_plain_http: bool,
    /// PEM certificates trusted for upstreams, besides the system's (a private CA).
    pub ca_bundle: Option<Vec<u8>>,
    /// Where blobs being fetched are spooled for the clients reading them meanwhile (the
    /// system's temporary directory when unset).
    pub spool_dir: Option<std::path::PathBuf>,
}

impl UpstreamHttp {
    pub fn new(settings: &UpstreamSettings) -> Result<Self, String> {
        let mut builder = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .read_timeout(Duration::from_secs(60))
            .user_agent(concat!("berth/", env!("CARGO_PKG_VERSION"), " (pull-through cache)"))
            // Redirects (blob downloads to storage) are followed, and never carry credentials
            // to another host (reqwest drops Authorization across hosts).
            .redirect(reqwest::redirect::Policy::limited(5));
        if let Some(pem) = &settings.ca_bundle {
            let certs = reqwest::Certificate::from_pem_bundle(pem).map_err(|e| format!("the CA bundle: {e}"))?;
            if certs.is_empty() {
                return Err("the CA bundle holds no certificate".into());
            }
            builder = builder.tls_certs_merge(certs);
        }
        let client = builder.build().map_err(|e| format!("the upstream HTTP client: {e}"))?;
        Ok(UpstreamHttp {
            client,
            allow_plain_http: settings.allow_plain_http,
            authorizations: Mutex::new(HashMap::new()),
        })
    }

    fn cached_authorization(&self, key: &str) -> Option<String> {
        let mut cache = self.authorizations.lock().expect("authorization cache");
        match cache.get(key) {
            Some((value, until)) if Instant::now() < *until => Some(value.clone()),
            Some(_) => {
                cache.remove(key);
                None
            }
            None => None,
        }
    }

    fn remember_authorization(&self, key: String, value: String, lifetime: Duration) {
        let mut cache = self.authorizations.lock().expect("authorization cache");
        if cache.len() > 4096 {
            let now = Instant::now();
            cache.retain(|_, (_, until)| *until > now);
        }
        cache.insert(key, (value, Instant::now() + lifetime));
    }
}

/// A manifest as the upstream answered it.
#[derive(Debug, Clone)]
pub struct UpstreamManifest {
    pub content: Vec<u8>,
    pub media_type: Option<String>,
    /// The `Docker-Content-Digest` the upstream sent, if any.
    pub digest: Option<String>,
}

/// A blob's bytes as they arrive, with the length the upstream announced.
pub struct UpstreamBlob {
    pub size: Option<u64>,
    pub body: berth_store::ByteStream,
}

/// One upstream registry as a rule names it, with the rule's credential.
pub struct Upstream<'a> {
    http: &'a UpstreamHttp,
    url: UpstreamUrl,
    credential: Option<UpstreamCredential>,
    /// The rule says the upstream is ECR (or another Berth): registry tokens by SigV4.
    ecr: bool,
}

/// How the upstream answers an anonymous `GET /v2/`.
enum Probe {
    Open,
    Challenged(Challenge),
}

impl<'a> Upstream<'a> {
    pub fn new(http: &'a UpstreamHttp, url: UpstreamUrl, credential: Option<UpstreamCredential>, ecr: bool) -> Self {
        Upstream { http, url, credential, ecr }
    }

    fn v2(&self) -> String {
        format!("{}/v2/", self.url.base())
    }

    /// Whether the upstream answers `/v2/` as a registry does: 200, or 401 with a challenge.
    pub async fn answers(&self) -> Result<(), UpstreamError> {
        self.probe().await.map(|_| ())
    }

    async fn probe(&self) -> Result<Probe, UpstreamError> {
        let resp = self.http.client.get(self.v2()).send().await.map_err(unavailable)?;
        let status = resp.status();
        if status.is_success() {
            return Ok(Probe::Open);
        }
        if status == StatusCode::UNAUTHORIZED {
            let header = resp.headers().get(WWW_AUTHENTICATE).and_then(|v| v.to_str().ok()).unwrap_or("");
            return berth_oci::parse_challenge(header).map(Probe::Challenged).ok_or_else(|| {
                UpstreamError::NotARegistry(format!(
                    "GET /v2/ answered 401 without a challenge Berth can answer ({header:?})"
                ))
            });
        }
        Err(status_error(status, "GET /v2/"))
    }

    /// Checks that the rule's credential opens the upstream: the challenge answered and
    /// `GET /v2/` accepted with it.
    pub async fn check_access(&self) -> Result<(), UpstreamError> {
        let (authorization, _) = match self.probe().await? {
            Probe::Open => return Ok(()),
            Probe::Challenged(c) => self.answer(&c, None).await?,
        };
        let resp =
            self.http.client.get(self.v2()).header(AUTHORIZATION, authorization).send().await.map_err(unavailable)?;
        match resp.status() {
            s if s.is_success() => Ok(()),
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => Err(UpstreamError::AccessDenied(format!(
                "GET /v2/ answered {} with the {}",
                resp.status(),
                if self.credential.is_some() { "credentials of the rule's secret" } else { "anonymous token" }
            ))),
            s => Err(status_error(s, "GET /v2/")),
        }
    }

    /// The `Authorization` value that answers `challenge` for `scope` (`repository:<name>:pull`),
    /// and how long it may be reused.
    async fn answer(&self, challenge: &Challenge, scope: Option<&str>) -> Result<(String, Duration), UpstreamError> {
        match challenge {
            Challenge::Basic { service, .. } if self.ecr || service.as_deref() == Some("ecr.amazonaws.com") => {
                // Registry tokens live 12 hours; one is asked for again well before.
                self.ecr_token().await.map(|t| (t, Duration::from_secs(3600)))
            }
            Challenge::Basic { .. } => match &self.credential {
                Some(c) => Ok((basic(&c.username, &c.secret), Duration::from_secs(3600))),
                None => Err(UpstreamError::AccessDenied(
                    "the upstream asks for credentials and the rule names no credentialArn".into(),
                )),
            },
            Challenge::Bearer { realm, service, scope: challenged } => {
                self.bearer_token(realm, service.as_deref(), scope.or(challenged.as_deref())).await
            }
        }
    }

    /// What a remembered authorization is kept under: the upstream, the whole credential (a
    /// hash of it: a rule whose secret is wrong must never borrow a token another rule's right
    /// secret obtained for the same user name) and the scope.
    fn authorization_key(&self, scope: &str) -> String {
        let credential = self.credential.as_ref().map_or_else(String::new, |c| {
            let pair = format!("{}\0{}", c.username, c.secret);
            berth_oci::Digest::from_bytes(berth_oci::Algorithm::Sha256, pair.as_bytes()).to_string()
        });
        format!("{} {credential} {scope}", self.url.base())
    }

    /// A request for `path` under the upstream's base, authorized for `scope`: with the answer
    /// remembered for it, else anonymously; a 401 is answered (its challenge, for the scope)
    /// and the request sent once more.
    async fn send(
        &self,
        method: Method,
        path: &str,
        accept: Option<&str>,
        scope: &str,
    ) -> Result<reqwest::Response, UpstreamError> {
        let url = format!("{}{path}", self.url.base());
        let key = self.authorization_key(scope);
        let request = |authorization: Option<&str>| {
            let mut req = self.http.client.request(method.clone(), &url);
            if let Some(a) = accept {
                req = req.header(ACCEPT, a);
            }
            if let Some(a) = authorization {
                req = req.header(AUTHORIZATION, a);
            }
            req
        };
        let cached = self.http.cached_authorization(&key);
        let resp = request(cached.as_deref()).send().await.map_err(unavailable)?;
        if resp.status() != StatusCode::UNAUTHORIZED {
            return Ok(resp);
        }
        let header = resp.headers().get(WWW_AUTHENTICATE).and_then(|v| v.to_str().ok()).unwrap_or("");
        let Some(challenge) = berth_oci::parse_challenge(header) else { return Ok(resp) };
        let (authorization, lifetime) = self.answer(&challenge, Some(scope)).await?;
        let resp = request(Some(&authorization)).send().await.map_err(unavailable)?;
        if resp.status().is_success() {
            self.http.remember_authorization(key, authorization, lifetime);
        }
        Ok(resp)
    }

    /// `GET /v2/<repository>/manifests/<reference>`, asking for every manifest type Berth
    /// stores; `None` if the upstream has no such manifest.
    pub async fn manifest(&self, repository: &str, reference: &str) -> Result<Option<UpstreamManifest>, UpstreamError> {
        let accept = berth_oci::media_types::ALL_MANIFESTS.join(", ");
        let path = format!("/v2/{repository}/manifests/{reference}");
        let resp = self.send(Method::GET, &path, Some(&accept), &pull_scope(repository)).await?;
        match resp.status() {
            s if s.is_success() => {}
            StatusCode::NOT_FOUND => return Ok(None),
            s => return Err(status_error(s, &format!("GET {path}"))),
        }
        let header = |name: &str| resp.headers().get(name).and_then(|v| v.to_str().ok()).map(str::to_string);
        let media_type = header("content-type").map(|t| t.split(';').next().unwrap_or_default().trim().to_string());
        let digest = header("docker-content-digest");
        // Read up to the largest manifest Berth stores, and no further.
        let limit = berth_oci::manifest::MAX_MANIFEST_BYTES;
        let mut content = Vec::new();
        let mut body = resp.bytes_stream();
        while let Some(chunk) = body.next().await {
            let chunk = chunk.map_err(unavailable)?;
            if content.len() + chunk.len() > limit {
                return Err(UpstreamError::NotARegistry(format!("the manifest {path} is larger than {limit} bytes")));
            }
            content.extend_from_slice(&chunk);
        }
        Ok(Some(UpstreamManifest { content, media_type, digest }))
    }

    /// The digest `reference` names upstream (`HEAD`, as Docker's clients check; a `GET` and
    /// the hash of the body when the upstream sends no digest); `None` if it names nothing.
    pub async fn manifest_digest(&self, repository: &str, reference: &str) -> Result<Option<String>, UpstreamError> {
        let accept = berth_oci::media_types::ALL_MANIFESTS.join(", ");
        let path = format!("/v2/{repository}/manifests/{reference}");
        let resp = self.send(Method::HEAD, &path, Some(&accept), &pull_scope(repository)).await?;
        match resp.status() {
            s if s.is_success() => {}
            StatusCode::NOT_FOUND => return Ok(None),
            s => return Err(status_error(s, &format!("HEAD {path}"))),
        }
        if let Some(d) = resp.headers().get("docker-content-digest").and_then(|v| v.to_str().ok()) {
            return Ok(Some(d.to_string()));
        }
        Ok(self
            .manifest(repository, reference)
            .await?
            .map(|m| berth_oci::Digest::from_bytes(berth_oci::Algorithm::Sha256, &m.content).to_string()))
    }

    /// The manifests that name `digest` as their subject upstream: the referrers API
    /// (`GET /v2/<repository>/referrers/<digest>`), or, where the upstream does not serve it,
    /// the referrers tag schema's index (`sha256-<hex>`). Empty when there are none.
    pub async fn referrers(&self, repository: &str, digest: &str) -> Result<Vec<String>, UpstreamError> {
        let path = format!("/v2/{repository}/referrers/{digest}");
        let resp =
            self.send(Method::GET, &path, Some(berth_oci::media_types::OCI_INDEX), &pull_scope(repository)).await?;
        let index: serde_json::Value = if resp.status().is_success() {
            resp.json().await.unwrap_or_default()
        } else if matches!(
            resp.status(),
            StatusCode::NOT_FOUND | StatusCode::METHOD_NOT_ALLOWED | StatusCode::BAD_REQUEST
        ) {
            let tag = digest.replacen(':', "-", 1);
            match self.manifest(repository, &tag).await? {
                Some(m) => serde_json::from_slice(&m.content).unwrap_or_default(),
                None => return Ok(Vec::new()),
            }
        } else {
            return Err(status_error(resp.status(), &format!("GET {path}")));
        };
        let listed = index["manifests"].as_array().cloned().unwrap_or_default();
        Ok(listed.iter().filter_map(|d| d["digest"].as_str().map(str::to_string)).collect())
    }

    /// `GET /v2/<repository>/blobs/<digest>` (redirects to storage followed); `None` if the
    /// upstream has no such blob.
    pub async fn blob(&self, repository: &str, digest: &str) -> Result<Option<UpstreamBlob>, UpstreamError> {
        let path = format!("/v2/{repository}/blobs/{digest}");
        let resp = self.send(Method::GET, &path, None, &pull_scope(repository)).await?;
        match resp.status() {
            s if s.is_success() => {}
            StatusCode::NOT_FOUND => return Ok(None),
            s => return Err(status_error(s, &format!("GET {path}"))),
        }
        let size = resp.content_length();
        let body = resp.bytes_stream().map_err(std::io::Error::other);
        Ok(Some(UpstreamBlob { size, body: Box::pin(body) }))
    }

    /// The token flow: `GET <realm>?service=…&scope=…`, with Basic credentials when the rule
    /// has them, answers `{"token": …}` (or `access_token`).
    async fn bearer_token(
        &self,
        realm: &str,
        service: Option<&str>,
        scope: Option<&str>,
    ) -> Result<(String, Duration), UpstreamError> {
        let mut url = reqwest::Url::parse(realm)
            .map_err(|e| UpstreamError::NotARegistry(format!("the token realm {realm:?} is not a URL: {e}")))?;
        if !matches!(url.scheme(), "https" | "http") {
            return Err(UpstreamError::NotARegistry(format!("the token realm {realm:?} is not an http(s) URL")));
        }
        {
            let mut q = url.query_pairs_mut();
            if let Some(s) = service {
                q.append_pair("service", s);
            }
            if let Some(s) = scope {
                q.append_pair("scope", s);
            }
        }
        let mut req = self.http.client.get(url);
        if let Some(c) = &self.credential {
            req = req.basic_auth(&c.username, Some(&c.secret));
        }
        let resp = req.send().await.map_err(unavailable)?;
        let status = resp.status();
        if !status.is_success() {
            return Err(match status {
                StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => UpstreamError::AccessDenied(format!(
                    "the token service answered {status}{}",
                    if self.credential.is_some() { " to the rule's credentials" } else { " to an anonymous request" }
                )),
                s => status_error(s, "the token request"),
            });
        }
        #[derive(serde::Deserialize)]
        struct TokenAnswer {
            token: Option<String>,
            access_token: Option<String>,
            expires_in: Option<u64>,
        }
        let answer: TokenAnswer = resp
            .json()
            .await
            .map_err(|e| UpstreamError::NotARegistry(format!("the token service's answer is not a token: {e}")))?;
        // The token specification's default lifetime is 60 s; reused until shortly before.
        let lifetime = Duration::from_secs(answer.expires_in.unwrap_or(60).clamp(10, 3600) * 9 / 10);
        let token = answer
            .token
            .or(answer.access_token)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| UpstreamError::NotARegistry("the token service's answer holds no token".into()))?;
        Ok((format!("Bearer {token}"), lifetime))
    }

    /// A registry token from the upstream's `GetAuthorizationToken`, signed with the access
    /// key the rule's secret holds; the answer is Basic `AWS:<token>`, base64 as ECR gives it.
    async fn ecr_token(&self) -> Result<String, UpstreamError> {
        let Some(c) = &self.credential else {
            return Err(UpstreamError::AccessDenied(
                "the upstream is ECR or Berth, whose registry tokens need an access key: the rule names no credentialArn"
                    .into(),
            ));
        };
        let region = c.region.clone().unwrap_or_else(|| ecr_region(&self.url.authority));
        let body = b"{}";
        let host = self.url.authority.clone();
        let headers = vec![
            ("host".to_string(), host),
            ("content-type".to_string(), "application/x-amz-json-1.1".to_string()),
            ("x-amz-target".to_string(), "AmazonEC2ContainerRegistry_V20150921.GetAuthorizationToken".to_string()),
        ];
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64);
        let api_path = if self.url.path.is_empty() { "/".to_string() } else { format!("{}/", self.url.path) };
        let (amz_date, authorization) =
            berth_auth::sigv4::sign("POST", &api_path, "", &headers, body, &c.username, &c.secret, &region, "ecr", now);
        let resp = self
            .http
            .client
            .post(format!("{}/", self.url.base()))
            .header("content-type", "application/x-amz-json-1.1")
            .header("x-amz-target", "AmazonEC2ContainerRegistry_V20150921.GetAuthorizationToken")
            .header("x-amz-date", amz_date)
            .header(AUTHORIZATION, authorization)
            .body(body.to_vec())
            .send()
            .await
            .map_err(unavailable)?;
        let status = resp.status();
        let answer: serde_json::Value = resp.json().await.unwrap_or_default();
        if !status.is_success() {
            let kind = answer["__type"].as_str().unwrap_or_default();
            let message = answer["message"].as_str().or(answer["Message"].as_str()).unwrap_or_default();
            return Err(if status.is_client_error() && !matches!(status, StatusCode::TOO_MANY_REQUESTS) {
                UpstreamError::AccessDenied(format!("GetAuthorizationToken answered {status} {kind}: {message}"))
            } else {
                status_error(status, "GetAuthorizationToken")
            });
        }
        let token = answer["authorizationData"][0]["authorizationToken"].as_str().ok_or_else(|| {
            UpstreamError::NotARegistry("GetAuthorizationToken answered without an authorization token".into())
        })?;
        Ok(format!("Basic {token}"))
    }
}

/// The token scope of pulling from `repository`.
fn pull_scope(repository: &str) -> String {
    format!("repository:{repository}:pull")
}

fn basic(user: &str, secret: &str) -> String {
    format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("{user}:{secret}")))
}

/// The region of an ECR registry host (`<account>.dkr.ecr.<region>.amazonaws.com`); other
/// hosts (another Berth) sign for us-east-1 unless the secret names a region.
fn ecr_region(authority: &str) -> String {
    let host = authority.split(':').next().unwrap_or_default();
    let parts: Vec<&str> = host.split('.').collect();
    match parts.iter().position(|p| *p == "ecr") {
        Some(i) if i >= 1 && parts[i - 1] == "dkr" && i + 1 < parts.len() && parts[i + 1] != "amazonaws" => {
            parts[i + 1].to_string()
        }
        _ => "us-east-1".to_string(),
    }
}

fn unavailable(e: reqwest::Error) -> UpstreamError {
    let what = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "could not connect"
    } else {
        "request failed"
    };
    // reqwest's chain names the cause (refused, TLS, DNS).
    let mut detail = e.to_string();
    let mut source = std::error::Error::source(&e);
    while let Some(s) = source {
        detail = format!("{detail}: {s}");
        source = s.source();
    }
    UpstreamError::Unavailable(format!("{what}: {detail}"))
}

fn status_error(status: StatusCode, what: &str) -> UpstreamError {
    match status {
        StatusCode::TOO_MANY_REQUESTS => UpstreamError::TooManyRequests(format!("{what} answered {status}")),
        StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => {
            UpstreamError::AccessDenied(format!("{what} answered {status}"))
        }
        s if s.is_server_error() => UpstreamError::Unavailable(format!("{what} answered {s}")),
        s => UpstreamError::NotARegistry(format!("{what} answered {s}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ecr_hosts_name_their_region() {
        assert_eq!(ecr_region("123456789012.dkr.ecr.eu-west-1.amazonaws.com"), "eu-west-1");
        assert_eq!(ecr_region("123456789012.dkr.ecr.us-gov-west-1.amazonaws.com:443"), "us-gov-west-1");
        assert_eq!(ecr_region("127.0.0.1:5000"), "us-east-1");
        assert_eq!(ecr_region("ecr.example.com"), "us-east-1");
    }

    #[test]
    fn remembered_tokens_are_kept_per_whole_credential() {
        let http = UpstreamHttp::new(&UpstreamSettings::default()).expect("a client");
        let url = UpstreamUrl::parse("registry.example.com", false).expect("a URL");
        let with = |secret: &str| {
            let c = UpstreamCredential { username: "u".into(), secret: secret.into(), region: None };
            Upstream::new(&http, url.clone(), Some(c), false).authorization_key("repository:a:pull")
        };
        assert_ne!(with("right"), with("wrong"));
        assert_eq!(with("right"), with("right"));
        assert!(!with("right").contains("right"));
        let anonymous = Upstream::new(&http, url.clone(), None, false).authorization_key("repository:a:pull");
        assert_ne!(anonymous, with("right"));
    }

    #[test]
    fn a_credential_never_prints_its_secret() {
        let c = UpstreamCredential { username: "u".into(), secret: "hunter2".into(), region: None };
        assert!(!format!("{c:?}").contains("hunter2"));
    }
}
