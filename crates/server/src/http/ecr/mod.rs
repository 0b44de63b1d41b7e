//! The ECR API: `POST /` with `X-Amz-Target: AmazonEC2ContainerRegistry_V20150921.<Op>`, JSON
//! 1.1 bodies, SigV4-signed. Verified first, then dispatched to the registry services; every
//! failure is answered as `{"__type": …, "message": …}` with the exception the botocore model
//! names.

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use berth_meta::Repository;
use berth_registry::RegistryError;
use berth_registry::authz::{self, RequestEnv, Target};
use berth_registry::identity::{AuthError, Caller};
use berth_registry::kms::KmsCaller;
use berth_registry::repositories::EncryptionConfiguration;
use serde::Deserialize;
use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};

use super::accounts::Namespace;
use super::{AppState, now_seconds};

mod berth;
mod errors;
mod images;
mod layers;
mod lifecycle;
mod model;
mod policies;
mod public;
mod pull_through;
mod registry;
mod replication;
mod repositories;
mod scanning;
mod shapes;
mod signing;
mod templates;

pub const TARGET_PREFIX: &str = "AmazonEC2ContainerRegistry_V20150921.";
const CONTENT_TYPE: &str = "application/x-amz-json-1.1";
/// Bodies are small JSON documents (UploadLayerPart carries base64 parts, at most ~20 MB).
const MAX_BODY: usize = 32 * 1024 * 1024;

/// An ECR exception (`__type`, message and HTTP status), or a registry refusal that `serve`
/// words for the request's registry (errors.rs), so that operations can pass the registry's
/// errors on with `?`.
#[derive(Debug)]
pub enum EcrError {
    Exception {
        kind: &'static str,
        message: String,
        status: StatusCode,
    },
    /// `KmsException`, which also names KMS's own exception (`kmsError`).
    Kms {
        kms_error: &'static str,
        message: String,
    },
    Registry(RegistryError),
}

impl EcrError {
    pub fn new(kind: &'static str, message: impl Into<String>) -> Self {
        let status = match kind {
            "ServerException" => StatusCode::INTERNAL_SERVER_ERROR,
            "MissingAuthenticationTokenException" | "AccessDeniedException" => StatusCode::FORBIDDEN,
            _ => StatusCode::BAD_REQUEST,
        };
        EcrError::Exception { kind, message: message.into(), status }
    }

    /// The exception, a registry refusal worded for `registry_id`.
    fn worded(self, registry_id: &str) -> Self {
        match self {
            EcrError::Registry(e) => errors::exception(e, registry_id),
            other => other,
        }
    }

    /// A registry refusal worded as ECR words it for `registry_id` (for the web console).
    pub fn worded_for(self, registry_id: &str) -> Self {
        self.worded(registry_id)
    }

    /// The exception's name and message, as AWS words them (for the web console).
    pub fn exception_and_message(&self) -> (&'static str, String) {
        match self {
            EcrError::Exception { kind, message, .. } => (kind, message.clone()),
            EcrError::Kms { message, .. } => ("KmsException", message.clone()),
            EcrError::Registry(e) => ("ServerException", e.to_string()),
        }
    }

    fn invalid(message: impl Into<String>) -> Self {
        EcrError::new("InvalidParameterException", message)
    }

    fn server(e: impl std::fmt::Display) -> Self {
        tracing::error!(error = %e, "ECR API internal error");
        EcrError::new("ServerException", "An internal error occurred")
    }
}

impl From<AuthError> for EcrError {
    fn from(e: AuthError) -> Self {
        EcrError::new(e.exception(), e.message())
    }
}

impl From<RegistryError> for EcrError {
    fn from(e: RegistryError) -> Self {
        EcrError::Registry(e)
    }
}

/// The authorizer's reads of the store.
impl From<berth_meta::MetaError> for EcrError {
    fn from(e: berth_meta::MetaError) -> Self {
        EcrError::Registry(e.into())
    }
}

/// The body of an ECR error answer.
#[derive(serde::Serialize)]
#[serde(rename_all = "camelCase")]
struct ErrorBody<'a> {
    #[serde(rename = "__type")]
    kind: &'a str,
    message: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    kms_error: Option<&'a str>,
}

impl IntoResponse for EcrError {
    fn into_response(self) -> Response {
        // Worded by `serve`; a refusal met before the registry is known names the default one.
        let (kind, message, status, kms_error) = match self.worded("") {
            EcrError::Exception { kind, message, status } => (kind, message, status, None),
            EcrError::Kms { kms_error, message } => ("KmsException", message, StatusCode::BAD_REQUEST, Some(kms_error)),
            EcrError::Registry(_) => unreachable!("worded errors are exceptions"),
        };
        let body = serde_json::to_string(&ErrorBody { kind, message: &message, kms_error }).expect("errors serialize");
        let mut r = (status, [(header::CONTENT_TYPE, CONTENT_TYPE)], body).into_response();
        r.headers_mut().insert("x-amzn-errortype", HeaderValue::from_static(kind));
        r
    }
}

type EcrResult = Result<Value, EcrError>;

/// Everything an operation needs to know about its request.
struct Ctx<'a> {
    app: &'a AppState,
    /// The operation, e.g. `DescribeRepositories`.
    op: &'a str,
    caller: Caller,
    /// Source address and transport, for policy conditions.
    env: RequestEnv,
    /// `scheme://host` of the request's registry (`<account>.<host>` for another account), for
    /// URIs and proxy endpoints.
    endpoint: String,
    host: String,
    /// The registry (account) the request acts on.
    ns: Namespace,
}

pub async fn handle(State(app): State<AppState>, req: axum::extract::Request) -> Response {
    let (parts, body) = req.into_parts();
    let env = super::request_env(&app, &parts);
    let (method, uri, headers) = (parts.method, parts.uri, parts.headers);
    if super::iam::is_iam_request(&headers) {
        let Ok(bytes) = axum::body::to_bytes(body, MAX_BODY).await else {
            return EcrError::new("SerializationException", "request body too large or unreadable").into_response();
        };
        let signed = SignedParts::of(&headers, &uri, &bytes);
        return super::iam::handle(&app, &signed.request(&method, &uri), &bytes, env).await;
    }
    let target = headers.get("x-amz-target").and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
    // The other AWS JSON 1.1 services on this port, told apart by their target prefix.
    let kms = super::kms::is_kms_request(&headers);
    if kms || super::secretsmanager::is_secretsmanager_request(&headers) {
        let Ok(bytes) = axum::body::to_bytes(body, MAX_BODY).await else {
            return EcrError::new("SerializationException", "request body too large or unreadable").into_response();
        };
        let signed = SignedParts::of(&headers, &uri, &bytes);
        let req = signed.request(&method, &uri);
        return if kms {
            super::kms::handle(&app, &req, &target, &bytes, env).await
        } else {
            super::secretsmanager::handle(&app, &req, &target, &bytes, env).await
        };
    }
    match serve(&app, &method, &uri, &headers, &target, body, env).await {
        Ok(v) => {
            let mut r = (StatusCode::OK, [(header::CONTENT_TYPE, CONTENT_TYPE)], v.to_string()).into_response();
            if let Ok(id) = HeaderValue::from_str(&uuid::Uuid::new_v4().to_string()) {
                r.headers_mut().insert("x-amzn-requestid", id);
            }
            r
        }
        Err(e) => e.worded(app.identity.account_id()).into_response(),
    }
}

async fn serve(
    app: &AppState,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    target: &str,
    body: Body,
    env: RequestEnv,
) -> EcrResult {
    let bytes = axum::body::to_bytes(body, MAX_BODY)
        .await
        .map_err(|_| EcrError::new("SerializationException", "request body too large or unreadable"))?;
    if let Some(op) = target.strip_prefix(public::TARGET_PREFIX) {
        return public::serve(app, method, uri, headers, op, &bytes, env).await;
    }
    // ECR's operations, or Berth's own (berth.rs) under their target.
    let (op, extension) = match (target.strip_prefix(TARGET_PREFIX), target.strip_prefix(berth::TARGET_PREFIX)) {
        (Some(op), _) => (op, false),
        (None, Some(op)) => (op, true),
        (None, None) => {
            return Err(EcrError::new("UnknownOperationException", format!("Unknown operation {target:?}")));
        }
    };
    let signed = SignedParts::of(headers, uri, &bytes);
    let host = signed.host.clone();
    let req = signed.request(method, uri);
    let caller = app.identity.authenticate_sigv4(&req, "ecr", now_seconds()).await?;
    let input: Value = if bytes.is_empty() {
        json!({})
    } else {
        serde_json::from_slice(&bytes)
            .map_err(|e| EcrError::new("SerializationException", format!("invalid JSON: {e}")))?
    };
    call(app, caller, env, &host, op, extension, input).await
}

/// Calls an ECR operation (or, with `extension`, one of Berth's own) as `caller`, as the API
/// does for a signed request: the input checked against the model, the registry it acts on,
/// authorization, the operation, the answer with names (not keys) and errors worded as ECR's.
/// The web console calls the operations through this as its signed-in principal.
pub async fn call_as(app: &AppState, caller: Caller, env: RequestEnv, host: &str, op: &str, input: Value) -> EcrResult {
    call(app, caller, env, host, op, false, input).await.map_err(|e| e.worded(app.identity.account_id()))
}

async fn call(
    app: &AppState,
    caller: Caller,
    mut env: RequestEnv,
    host: &str,
    op: &str,
    extension: bool,
    input: Value,
) -> EcrResult {
    let host = host.to_string();
    // Types, required members and the model's constraints, before anything else looks at it.
    if extension {
        berth::validate(op, &input)?;
    } else {
        model::validate(op, &input)?;
    }
    env.request_tags = request_tags(&input);
    env.tag_keys = tag_keys(&input, &env.request_tags);
    let ns = namespace(app, &caller, op, &input).await?;
    let input = if ns.is_default() { input } else { keyed_input(input, &ns) };
    let scheme = super::client_scheme(&env);
    let endpoint =
        if ns.is_default() { format!("{scheme}://{host}") } else { format!("{scheme}://{}.{host}", ns.account) };
    let ctx = Ctx { app, op, caller, env, endpoint, host, ns };
    ctx.authorize_operation(op, extension, &input).await?;
    let result = if extension { berth::dispatch(&ctx, op, input).await } else { dispatch(&ctx, op, input).await };
    let result = result.map_err(|e| e.worded(ctx.registry_id()));
    // Keys never leave: another account's repositories go back to their names.
    let result = if ctx.ns.is_default() {
        result
    } else {
        match result {
            Ok(mut v) => {
                unkey_fields(&mut v, &ctx.ns);
                Ok(v)
            }
            Err(EcrError::Exception { kind, message, status }) => {
                Err(EcrError::Exception { kind, message: ctx.ns.unkey(&message), status })
            }
            Err(e) => Err(e),
        }
    };
    if POLICY_INPUTS.contains(&op) {
        // Policies, settings, tags and repositories feed policy decisions: forget cached ones
        // once the change is made.
        app.authorizer.policies_changed().await;
    }
    result
}

/// Settings Berth keeps once, for the default account's registry: other accounts may neither
/// change nor read them.
const DEFAULT_ACCOUNT_ONLY: &[&str] = &[
    "PutRegistryScanningConfiguration",
    "GetRegistryScanningConfiguration",
    "BatchGetRepositoryScanningConfiguration",
];

/// Operations on a registry as a whole: authorized against `*` in the registry's account.
const REGISTRY_OPERATIONS: &[&str] = &[
    "GetAuthorizationToken",
    "DescribeRegistry",
    "PutReplicationConfiguration",
    "PutRegistryPolicy",
    "GetRegistryPolicy",
    "DeleteRegistryPolicy",
    "GetAccountSetting",
    "PutAccountSetting",
    "PutRegistryScanningConfiguration",
    "GetRegistryScanningConfiguration",
    "CreateRepositoryCreationTemplate",
    "UpdateRepositoryCreationTemplate",
    "DeleteRepositoryCreationTemplate",
    "DescribeRepositoryCreationTemplates",
    "CreatePullThroughCacheRule",
    "DescribePullThroughCacheRules",
    "UpdatePullThroughCacheRule",
    "DeletePullThroughCacheRule",
    "ValidatePullThroughCacheRule",
    "RegisterPullTimeUpdateExclusion",
    "DeregisterPullTimeUpdateExclusion",
    "ListPullTimeUpdateExclusions",
    "PutSigningConfiguration",
    "GetSigningConfiguration",
    "DeleteSigningConfiguration",
];

/// Operations on the repository a `resourceArn` names.
const RESOURCE_ARN_OPERATIONS: &[&str] = &["TagResource", "UntagResource", "ListTagsForResource"];

/// The registry a request acts on: its `registryId`, else the account of its `resourceArn`,
/// else the caller's own account (as in ECR).
async fn namespace(app: &AppState, caller: &Caller, op: &str, input: &Value) -> Result<Namespace, EcrError> {
    let arn_account = input["resourceArn"].as_str().and_then(|a| a.split(':').nth(4));
    let account = input["registryId"].as_str().or(arn_account).unwrap_or(&caller.account_id);
    if !super::accounts::account_exists(app, account).await {
        return Err(EcrError::invalid(format!(
            "Invalid parameter at 'registryId': registry '{account}' is not served here"
        )));
    }
    // Every name a request carries is checked here, before anything is authorized or keyed:
    // only the adapter makes keys, and a name shaped like one (`@…`) is an invalid name.
    let arn_name = input["resourceArn"].as_str().and_then(|a| a.split_once(":repository/")).map(|(_, n)| n);
    let names = input["repositoryNames"].as_array().into_iter().flatten().filter_map(Value::as_str);
    for name in input["repositoryName"].as_str().into_iter().chain(names).chain(arn_name) {
        check_repository_name_strict(name)?;
    }
    let ns = Namespace::new(app.identity.account_id(), account);
    if !ns.is_default() && DEFAULT_ACCOUNT_ONLY.contains(&op) {
        return Err(EcrError::invalid(format!(
            "{op}: this setting is kept for the default account's registry ({}) only",
            ns.default_account
        )));
    }
    Ok(ns)
}

/// Response fields that can carry a repository key (names, ARNs, URIs, URLs, reasons); other
/// fields — manifests, policy texts, tags — are returned exactly as stored.
const NAME_FIELDS: &[&str] =
    &["repositoryName", "repositoryArn", "repositoryUri", "resourceArn", "downloadUrl", "failureReason", "id"];

fn unkey_fields(v: &mut Value, ns: &Namespace) {
    match v {
        Value::Object(map) => {
            for (k, field) in map.iter_mut() {
                match field {
                    Value::String(s) if NAME_FIELDS.contains(&k.as_str()) => *s = ns.unkey(s),
                    other => unkey_fields(other, ns),
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(|i| unkey_fields(i, ns)),
        _ => {}
    }
}

/// The request with its repository names as the account's keys. Names are checked first, so
/// a name can never pass for a key.
fn keyed_input(mut input: Value, ns: &Namespace) -> Value {
    let key = |v: &Value| match v.as_str() {
        Some(n) => Value::String(ns.key(n)),
        None => v.clone(),
    };
    if let Some(n) = input.get("repositoryName") {
        input["repositoryName"] = key(n);
    }
    if let Some(list) = input.get("repositoryNames").and_then(Value::as_array) {
        input["repositoryNames"] = list.iter().map(key).collect();
    }
    if let Some(arn) = input["resourceArn"].as_str()
        && let Some((head, name)) = arn.split_once(":repository/")
    {
        input["resourceArn"] = format!("{head}:repository/{}", ns.key(name)).into();
    }
    input
}

/// The operations that change what authorization decisions read.
const POLICY_INPUTS: &[&str] = &[
    "SetRepositoryPolicy",
    "DeleteRepositoryPolicy",
    "PutRegistryPolicy",
    "DeleteRegistryPolicy",
    "PutAccountSetting",
    "TagResource",
    "UntagResource",
    "CreateRepository",
    "DeleteRepository",
];

/// The tags a request sets (`tags: [{Key, Value}]`), for `aws:RequestTag/*`.
fn request_tags(input: &Value) -> Vec<(String, String)> {
    input["tags"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|t| Some((t["Key"].as_str()?.to_string(), t["Value"].as_str().unwrap_or_default().to_string())))
        .collect()
}

/// The tag keys a request names, set or removed (`tagKeys`), for `aws:TagKeys`.
fn tag_keys(input: &Value, set: &[(String, String)]) -> Vec<String> {
    let removed = input["tagKeys"].as_array().into_iter().flatten().filter_map(|k| k.as_str().map(str::to_string));
    set.iter().map(|(k, _)| k.clone()).chain(removed).collect()
}

/// What SigV4 covers of a request: its headers as signed (HTTP/2's `:authority` as `host`) and
/// the SHA-256 of its body. Shared by the ECR API and the IAM Query API.
pub struct SignedParts {
    pub headers: Vec<(String, String)>,
    pub payload_sha256: String,
    pub host: String,
}

impl SignedParts {
    pub fn of(headers: &HeaderMap, uri: &Uri, body: &[u8]) -> SignedParts {
        // Every header, also one whose value is not UTF-8 (kept lossily, so it cannot sign
        // correctly but still counts: a second Authorization, an unsigned x-amz-* header).
        let mut list: Vec<(String, String)> = headers
            .iter()
            .map(|(k, v)| (k.as_str().to_string(), String::from_utf8_lossy(v.as_bytes()).into_owned()))
            .collect();
        let host = request_host(headers, uri);
        if !headers.contains_key(header::HOST) {
            list.push(("host".into(), host.clone()));
        }
        SignedParts { headers: list, payload_sha256: hex::encode(Sha256::digest(body)), host }
    }

    pub fn request<'a>(&'a self, method: &'a Method, uri: &'a Uri) -> berth_auth::sigv4::Request<'a> {
        berth_auth::sigv4::Request {
            method: method.as_str(),
            path: uri.path(),
            query: uri.query().unwrap_or(""),
            headers: &self.headers,
            payload_sha256: &self.payload_sha256,
        }
    }
}

/// The host the client addressed: the Host header (HTTP/1.1) or the URI authority (HTTP/2).
pub fn request_host(headers: &HeaderMap, uri: &Uri) -> String {
    headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
        .or_else(|| uri.authority().map(|a| a.to_string()))
        .unwrap_or_else(|| "localhost".into())
}

fn parse<T: for<'de> Deserialize<'de>>(input: Value) -> Result<T, EcrError> {
    serde_json::from_value(input).map_err(|e| EcrError::new("SerializationException", e.to_string()))
}

/// An operation's typed answer as the JSON the adapter sends (and unkeys).
fn reply<T: serde::Serialize>(answer: Result<T, EcrError>) -> EcrResult {
    answer.map(|v| serde_json::to_value(v).expect("answers serialize"))
}

async fn dispatch(ctx: &Ctx<'_>, op: &str, input: Value) -> EcrResult {
    match op {
        "GetAuthorizationToken" => reply(registry::get_authorization_token(ctx, parse(input)?).await),
        "DescribeRegistry" => reply(registry::describe_registry(ctx).await),
        "PutReplicationConfiguration" => reply(replication::put_replication_configuration(ctx, parse(input)?).await),
        "DescribeImageReplicationStatus" => {
            reply(replication::describe_image_replication_status(ctx, parse(input)?).await)
        }
        "GetAccountSetting" => reply(registry::get_account_setting(ctx, parse(input)?).await),
        "RegisterPullTimeUpdateExclusion" => reply(registry::register_pull_time_exclusion(ctx, parse(input)?).await),
        "DeregisterPullTimeUpdateExclusion" => {
            reply(registry::deregister_pull_time_exclusion(ctx, parse(input)?).await)
        }
        "ListPullTimeUpdateExclusions" => reply(registry::list_pull_time_exclusions(ctx, parse(input)?).await),
        "PutSigningConfiguration" => reply(signing::put_signing_configuration(ctx, parse(input)?).await),
        "GetSigningConfiguration" => reply(signing::get_signing_configuration(ctx).await),
        "DeleteSigningConfiguration" => reply(signing::delete_signing_configuration(ctx).await),
        "DescribeImageSigningStatus" => reply(signing::describe_image_signing_status(ctx, parse(input)?).await),
        "PutAccountSetting" => reply(registry::put_account_setting(ctx, parse(input)?).await),
        "PutRegistryScanningConfiguration" => {
            reply(registry::put_registry_scanning_configuration(ctx, parse(input)?).await)
        }
        "GetRegistryScanningConfiguration" => reply(registry::get_registry_scanning_configuration(ctx).await),
        "BatchGetRepositoryScanningConfiguration" => {
            reply(registry::batch_get_repository_scanning_configuration(ctx, parse(input)?).await)
        }
        "CreateRepository" => reply(repositories::create_repository(ctx, parse(input)?).await),
        "DescribeRepositories" => reply(repositories::describe_repositories(ctx, parse(input)?).await),
        "DeleteRepository" => reply(repositories::delete_repository(ctx, parse(input)?).await),
        "PutImageTagMutability" => reply(repositories::put_image_tag_mutability(ctx, parse(input)?).await),
        "PutImageScanningConfiguration" => {
            reply(repositories::put_image_scanning_configuration(ctx, parse(input)?).await)
        }
        "ListTagsForResource" => reply(repositories::list_tags_for_resource(ctx, parse(input)?).await),
        "TagResource" => reply(repositories::tag_resource(ctx, parse(input)?).await),
        "UntagResource" => reply(repositories::untag_resource(ctx, parse(input)?).await),
        "SetRepositoryPolicy" => reply(policies::set_repository_policy(ctx, parse(input)?).await),
        "GetRepositoryPolicy" => reply(policies::get_repository_policy(ctx, parse(input)?).await),
        "DeleteRepositoryPolicy" => reply(policies::delete_repository_policy(ctx, parse(input)?).await),
        "PutRegistryPolicy" => reply(policies::put_registry_policy(ctx, parse(input)?).await),
        "GetRegistryPolicy" => reply(policies::get_registry_policy(ctx).await),
        "DeleteRegistryPolicy" => reply(policies::delete_registry_policy(ctx).await),
        "ListImages" => reply(images::list_images(ctx, parse(input)?).await),
        "UpdateImageStorageClass" => reply(images::update_image_storage_class(ctx, parse(input)?).await),
        "DescribeImages" => reply(images::describe_images(ctx, parse(input)?).await),
        "BatchGetImage" => reply(images::batch_get_image(ctx, parse(input)?).await),
        "BatchDeleteImage" => reply(images::batch_delete_image(ctx, parse(input)?).await),
        "PutImage" => reply(images::put_image(ctx, parse(input)?).await),
        "BatchCheckLayerAvailability" => reply(images::batch_check_layer_availability(ctx, parse(input)?).await),
        "ListImageReferrers" => reply(images::list_image_referrers(ctx, parse(input)?).await),
        "StartImageScan" => reply(scanning::start_image_scan(ctx, parse(input)?).await),
        "DescribeImageScanFindings" => reply(scanning::describe_image_scan_findings(ctx, parse(input)?).await),
        "InitiateLayerUpload" => reply(layers::initiate_layer_upload(ctx, parse(input)?).await),
        "UploadLayerPart" => reply(layers::upload_layer_part(ctx, parse(input)?).await),
        "CompleteLayerUpload" => reply(layers::complete_layer_upload(ctx, parse(input)?).await),
        "GetDownloadUrlForLayer" => reply(layers::get_download_url_for_layer(ctx, parse(input)?).await),
        "PutLifecyclePolicy" => reply(lifecycle::put_lifecycle_policy(ctx, parse(input)?).await),
        "GetLifecyclePolicy" => reply(lifecycle::get_lifecycle_policy(ctx, parse(input)?).await),
        "DeleteLifecyclePolicy" => reply(lifecycle::delete_lifecycle_policy(ctx, parse(input)?).await),
        "StartLifecyclePolicyPreview" => reply(lifecycle::start_lifecycle_policy_preview(ctx, parse(input)?).await),
        "GetLifecyclePolicyPreview" => reply(lifecycle::get_lifecycle_policy_preview(ctx, parse(input)?).await),
        "CreateRepositoryCreationTemplate" => reply(templates::put_template(ctx, parse(input)?, true).await),
        "UpdateRepositoryCreationTemplate" => reply(templates::put_template(ctx, parse(input)?, false).await),
        "DeleteRepositoryCreationTemplate" => reply(templates::delete_template(ctx, parse(input)?).await),
        "DescribeRepositoryCreationTemplates" => reply(templates::describe_templates(ctx, parse(input)?).await),
        "CreatePullThroughCacheRule" => reply(pull_through::create_rule(ctx, parse(input)?).await),
        "DescribePullThroughCacheRules" => reply(pull_through::describe_rules(ctx, parse(input)?).await),
        "UpdatePullThroughCacheRule" => reply(pull_through::update_rule(ctx, parse(input)?).await),
        "DeletePullThroughCacheRule" => reply(pull_through::delete_rule(ctx, parse(input)?).await),
        "ValidatePullThroughCacheRule" => reply(pull_through::validate_rule(ctx, parse(input)?).await),
        _ => Err(EcrError::new("UnknownOperationException", format!("Berth does not serve the operation {op:?}"))),
    }
}

impl Ctx<'_> {
    /// Authorizes an operation once, before it reads or writes anything: the action is
    /// `ecr:<Operation>`, the resource the repository the input names (`repositoryName`, or the
    /// `resourceArn` of the tagging operations), otherwise `*`. `DescribeRepositories` without
    /// names is authorized per repository instead: it lists what the caller may describe.
    async fn authorize_operation(&self, op: &str, extension: bool, input: &Value) -> Result<(), EcrError> {
        let arn_name = input["resourceArn"].as_str().and_then(|a| a.split_once(":repository/").map(|(_, n)| n));
        let list = || input["repositoryNames"].as_array().into_iter().flatten().filter_map(Value::as_str).collect();
        // Exactly what each operation acts on, whatever else the request carries.
        let names: Vec<&str> = if REGISTRY_OPERATIONS.contains(&op) || op == "UpdatePullThroughCacheRuleRefresh" {
            Vec::new()
        } else if RESOURCE_ARN_OPERATIONS.contains(&op) {
            arn_name.into_iter().collect()
        } else if op == "DescribeRepositories" {
            match input["repositoryNames"].as_array() {
                Some(_) => list(),
                // Without names it lists what the caller may describe, decided per repository.
                None => return Ok(()),
            }
        } else if op == "BatchGetRepositoryScanningConfiguration" {
            list()
        } else {
            input["repositoryName"].as_str().into_iter().collect()
        };
        let action = if extension { berth::action(op).to_string() } else { authz::ecr_action(op) };
        let targets: Vec<Target> = if names.is_empty() {
            vec![Target::Registry(&self.ns.account)]
        } else {
            names.into_iter().map(Target::Repository).collect()
        };
        for target in targets {
            if let Err(denied) = self.app.authorizer.authorize(&self.caller, &action, target, &self.env).await? {
                return Err(EcrError::new("AccessDeniedException", denied.message));
            }
            // (BatchGetImage reports a refused decrypt per image, as the failure code KmsError.)
            if authz::decrypts(&action)
                && op != "BatchGetImage"
                && let Target::Repository(name) = target
            {
                self.check_pull_decrypt(name).await.map_err(|e| match e {
                    RegistryError::Kms(e) => EcrError::new("AccessDeniedException", e.to_string()),
                    other => other.into(),
                })?;
            }
        }
        Ok(())
    }

    /// The caller as the registry's services authorize it (KMS, signing).
    fn kms_caller(&self) -> KmsCaller<'_> {
        KmsCaller { authorizer: &self.app.authorizer, caller: &self.caller, env: &self.env, via_service: None }
    }

    /// The registry's rule for another account's pull from a repository a KMS key protects.
    async fn check_pull_decrypt(&self, name: &str) -> Result<(), RegistryError> {
        self.app.registry.check_pull_decrypt(&self.kms_caller(), name).await
    }

    /// Whether the caller may `ecr:DescribeRepositories` this repository (listings show only those).
    async fn may_describe(&self, name: &str) -> Result<bool, EcrError> {
        Ok(self
            .app
            .authorizer
            .authorize(&self.caller, "ecr:DescribeRepositories", Target::Repository(name), &self.env)
            .await?
            .is_ok())
    }

    fn registry_id(&self) -> &str {
        &self.ns.account
    }

    /// The registry's host name as clients address it: `<account>.<host>` for an account other
    /// than the default one.
    fn registry_host(&self) -> String {
        if self.ns.is_default() { self.host.clone() } else { format!("{}.{}", self.ns.account, self.host) }
    }

    fn repository_shape(&self, r: &Repository) -> shapes::RepositoryShape {
        let s = &r.settings;
        shapes::RepositoryShape {
            repository_arn: format!(
                "arn:aws:ecr:{}:{}:repository/{}",
                self.app.identity.region(),
                self.registry_id(),
                r.name
            ),
            registry_id: self.registry_id().to_string(),
            repository_name: r.name.clone(),
            repository_uri: format!("{}/{}", self.registry_host(), r.name),
            created_at: shapes::seconds(r.created_at),
            image_tag_mutability: s.tag_mutability.as_str().to_string(),
            image_tag_mutability_exclusion_filters: shapes::exclusion_filters(&s.tag_mutability_exclusions),
            image_scanning_configuration: shapes::ScanningConfiguration { scan_on_push: s.scan_on_push },
            encryption_configuration: EncryptionConfiguration {
                encryption_type: s.encryption_type.as_str().to_string(),
                kms_key: s.kms_key.clone(),
            },
            pull_block_severity: s.pull_block_severity.map(|p| p.as_str()),
        }
    }

    /// The usual preamble of a repository operation: the name is valid and the repository
    /// exists (the registry was resolved with the request, see `namespace`).
    async fn existing_repository(&self, name: &str) -> Result<Repository, EcrError> {
        check_repository_name(name)?;
        self.repository(name).await
    }

    async fn repository(&self, name: &str) -> Result<Repository, EcrError> {
        Ok(self.app.registry.repository(name).await?)
    }
}

fn check_repository_name(name: &str) -> Result<(), EcrError> {
    // Handlers see another account's repositories as keys (`@<account>/<name>`), made from
    // names already checked at the edge (`namespace`, `keyed_input`).
    check_repository_name_strict(name.strip_prefix('@').and_then(|k| k.split_once('/')).map_or(name, |(_, n)| n))
}

/// The repository name grammar and length, as ECR checks them.
fn check_repository_name_strict(name: &str) -> Result<(), EcrError> {
    if name.len() < 2 || name.len() > 256 || berth_oci::validate_repository_name(name).is_err() {
        return Err(EcrError::invalid(format!(
            "Invalid parameter at 'repositoryName' failed to satisfy constraint: 'must satisfy regular expression '(?:[a-z0-9]+(?:[._-][a-z0-9]+)*/)*[a-z0-9]+(?:[._-][a-z0-9]+)*' and be 2 to 256 characters long' (got {name:?})"
        )));
    }
    Ok(())
}

/// A listing asked for by name (`repositoryNames`, `imageIds`) is not paged: ECR refuses
/// `maxResults` or `nextToken` beside the names.
fn no_paging_with(
    named: bool,
    max_results: &Option<i64>,
    next_token: &Option<String>,
    names: &str,
) -> Result<(), EcrError> {
    if named && (max_results.is_some() || next_token.is_some()) {
        return Err(EcrError::invalid(format!("maxResults and nextToken cannot be used when you specify {names}")));
    }
    Ok(())
}

/// A page's size: `maxResults`, else the operation's default. The model's bounds on
/// `maxResults` were checked at the front door (model.rs), as every list length was.
fn page_size(max_results: Option<i64>, default: u32) -> u32 {
    max_results.map_or(default, |n| n as u32)
}

impl Ctx<'_> {
    /// A pagination token holding the previous page's last position, sealed for this operation
    /// in this registry.
    fn encode_token(&self, last: &str) -> String {
        self.app.identity.seal_page_token(&self.token_scope(), last)
    }

    /// The position a `nextToken` holds; a token this registry did not issue for this
    /// operation is an `InvalidParameterException`, as in ECR.
    fn decode_token(&self, token: &Option<String>) -> Result<Option<String>, EcrError> {
        match token {
            None => Ok(None),
            Some(t) => self.app.identity.open_page_token(&self.token_scope(), t).map(Some).ok_or_else(|| {
                EcrError::invalid("Invalid parameter at 'nextToken': the token is not one this registry issued")
            }),
        }
    }

    /// One page of `items` (in `key` order, whole): those after the token's position, at most
    /// `limit`, with the token of the next page if there is more.
    fn page_of<T>(
        &self,
        items: Vec<T>,
        limit: u32,
        token: &Option<String>,
        key: impl Fn(&T) -> &str,
    ) -> Result<(Vec<T>, Option<String>), EcrError> {
        let after = self.decode_token(token)?;
        let mut page: Vec<T> = items.into_iter().filter(|i| after.as_deref().is_none_or(|a| key(i) > a)).collect();
        let more = page.len() > limit as usize;
        page.truncate(limit as usize);
        let next = page.last().filter(|_| more).map(|last| self.encode_token(key(last)));
        Ok((page, next))
    }

    fn token_scope(&self) -> String {
        format!("{} {}", self.op, self.ns.account)
    }
}
