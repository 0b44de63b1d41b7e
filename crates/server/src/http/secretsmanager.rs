//! The Secrets Manager API subset Berth serves, so that `aws secretsmanager … --endpoint-url`
//! keeps the pull-through cache's upstream credentials: `POST /` with
//! `X-Amz-Target: secretsmanager.<Operation>` (JSON 1.1), SigV4 for the service
//! `secretsmanager`. Each call is authorized as `secretsmanager:<Operation>` on the secret's ARN
//! (`*` for `ListSecrets`) and then carried out by `registry::secrets_manager`.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use berth_meta::ManagedSecret;
use berth_registry::authz::{RequestEnv, Target};
use berth_registry::secrets_manager::{ListFilter, ListRequest, SecretValue, SecretsManager, SecretsManagerError};
use serde_json::{Map, Value, json};

use super::{AppState, now_seconds};

const TARGET_PREFIX: &str = "secretsmanager.";
const OPERATIONS: [&str; 8] = [
    "CreateSecret",
    "GetSecretValue",
    "PutSecretValue",
    "DescribeSecret",
    "ListSecrets",
    "UpdateSecret",
    "DeleteSecret",
    "RestoreSecret",
];

/// Whether a request is for Secrets Manager (by its `X-Amz-Target`).
pub fn is_secretsmanager_request(headers: &axum::http::HeaderMap) -> bool {
    headers.get("x-amz-target").and_then(|v| v.to_str().ok()).is_some_and(|t| t.starts_with(TARGET_PREFIX))
}

struct Failure {
    code: String,
    message: String,
}

fn failure(code: &str, message: impl Into<String>) -> Failure {
    Failure { code: code.to_string(), message: message.into() }
}

impl From<SecretsManagerError> for Failure {
    fn from(e: SecretsManagerError) -> Self {
        if let SecretsManagerError::Internal(m) = &e {
            tracing::error!(error = %m, "Secrets Manager API internal error");
        }
        failure(e.code(), e.to_string())
    }
}

impl IntoResponse for Failure {
    fn into_response(self) -> Response {
        let status = if self.code == "InternalServiceError" {
            StatusCode::INTERNAL_SERVER_ERROR
        } else {
            StatusCode::BAD_REQUEST
        };
        json_response(status, json!({"__type": self.code, "Message": self.message}))
    }
}

fn json_response(status: StatusCode, body: Value) -> Response {
    let mut r = (status, [(header::CONTENT_TYPE, "application/x-amz-json-1.1")], body.to_string()).into_response();
    if let Ok(id) = HeaderValue::from_str(&uuid::Uuid::new_v4().to_string()) {
        r.headers_mut().insert("x-amzn-requestid", id);
    }
    r
}

pub async fn handle(
    app: &AppState,
    req: &berth_auth::sigv4::Request<'_>,
    target: &str,
    body: &[u8],
    env: RequestEnv,
) -> Response {
    match serve(app, req, target, body, env).await {
        Ok(v) => json_response(StatusCode::OK, v),
        Err(f) => f.into_response(),
    }
}

fn text<'a>(input: &'a Value, key: &str) -> Result<Option<&'a str>, Failure> {
    match input.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(failure("InvalidParameterException", format!("{key} must be a string."))),
    }
}

fn required<'a>(input: &'a Value, key: &str) -> Result<&'a str, Failure> {
    text(input, key)?.ok_or_else(|| failure("InvalidParameterException", format!("You must provide {key}.")))
}

fn value_of(input: &Value) -> Result<Option<SecretValue>, Failure> {
    Ok(SecretValue::from_request(text(input, "SecretString")?, text(input, "SecretBinary")?)?)
}

fn seconds(ms: i64) -> Value {
    json!(ms as f64 / 1000.0)
}

fn tags_json(s: &ManagedSecret) -> Value {
    Value::Array(s.tags.iter().map(|(k, v)| json!({"Key": k, "Value": v})).collect())
}

fn versions_json(s: &ManagedSecret) -> Value {
    Value::Object(s.versions.iter().map(|(id, stages)| (id.clone(), json!(stages))).collect::<Map<_, _>>())
}

/// `DescribeSecret`'s answer, and a `ListSecrets` entry (which names the versions map
/// `SecretVersionsToStages`).
fn describe_json(s: &ManagedSecret, versions_key: &str) -> Value {
    let mut out = json!({
        "ARN": s.arn,
        "Name": s.name,
        "LastChangedDate": seconds(s.changed_at),
        "CreatedDate": seconds(s.created_at),
        "Tags": tags_json(s),
    });
    let o = out.as_object_mut().expect("an object");
    if let Some(d) = &s.description {
        o.insert("Description".into(), json!(d));
    }
    if let Some(k) = &s.kms_key_id {
        o.insert("KmsKeyId".into(), json!(k));
    }
    if let Some(a) = s.accessed_at {
        o.insert("LastAccessedDate".into(), seconds(a));
    }
    if let Some(d) = s.deletion_date {
        o.insert("DeletedDate".into(), seconds(d));
    }
    if !s.versions.is_empty() {
        o.insert(versions_key.into(), versions_json(s));
    }
    out
}

async fn serve(
    app: &AppState,
    req: &berth_auth::sigv4::Request<'_>,
    target: &str,
    body: &[u8],
    env: RequestEnv,
) -> Result<Value, Failure> {
    let op = target.strip_prefix(TARGET_PREFIX).unwrap_or_default();
    if !OPERATIONS.contains(&op) {
        return Err(failure("UnknownOperationException", format!("Unknown operation {target:?}")));
    }
    let caller = app
        .identity
        .authenticate_sigv4(req, "secretsmanager", now_seconds())
        .await
        .map_err(|e| failure(e.exception(), e.message()))?;
    let input: Value = if body.is_empty() {
        json!({})
    } else {
        serde_json::from_slice(body).map_err(|e| failure("SerializationException", format!("invalid JSON: {e}")))?
    };
    if !input.is_object() {
        return Err(failure("SerializationException", "the request body must be a JSON object"));
    }
    let sm = app.registry.secrets_manager(&caller.account_id, app.identity.region());
    let resource = match op {
        "ListSecrets" => "*".to_string(),
        "CreateSecret" => sm.resource_arn(required(&input, "Name")?).await?,
        _ => sm.resource_arn(required(&input, "SecretId")?).await?,
    };
    let action = format!("secretsmanager:{op}");
    let target = Target::Resource { arn: &resource, account: &caller.account_id };
    match app.authorizer.authorize(&caller, &action, target, &env).await {
        Ok(Ok(())) => {}
        Ok(Err(denied)) => return Err(failure("AccessDeniedException", denied.message)),
        Err(e) => return Err(failure("InternalServiceError", e.to_string())),
    }
    dispatch(&sm, op, &input).await
}

async fn dispatch(sm: &SecretsManager, op: &str, input: &Value) -> Result<Value, Failure> {
    let token = text(input, "ClientRequestToken")?;
    Ok(match op {
        "CreateSecret" => {
            if input.get("AddReplicaRegions").is_some_and(|v| v.as_array().is_some_and(|a| !a.is_empty())) {
                return Err(failure("InvalidParameterException", "Berth does not replicate secrets to other regions."));
            }
            let tags = match input.get("Tags") {
                None | Some(Value::Null) => Vec::new(),
                Some(Value::Array(list)) => list
                    .iter()
                    .map(|t| match (t.get("Key").and_then(Value::as_str), t.get("Value").and_then(Value::as_str)) {
                        (Some(k), Some(v)) => Ok((k.to_string(), v.to_string())),
                        _ => Err(failure("InvalidParameterException", "Each tag needs a Key and a Value.")),
                    })
                    .collect::<Result<Vec<_>, _>>()?,
                Some(_) => return Err(failure("InvalidParameterException", "Tags must be a list.")),
            };
            let (secret, version) = sm
                .create(
                    required(input, "Name")?,
                    text(input, "Description")?,
                    text(input, "KmsKeyId")?,
                    value_of(input)?,
                    tags,
                    token,
                )
                .await?;
            let mut out = json!({"ARN": secret.arn, "Name": secret.name});
            if let Some(v) = version {
                out["VersionId"] = json!(v);
            }
            out
        }
        "GetSecretValue" => {
            let (secret, version, value) = sm
                .get_value(required(input, "SecretId")?, text(input, "VersionId")?, text(input, "VersionStage")?)
                .await?;
            let mut out = json!({
                "ARN": secret.arn,
                "Name": secret.name,
                "VersionId": version.version_id,
                "VersionStages": version.stages,
                "CreatedDate": seconds(version.created_at),
            });
            match value {
                SecretValue::String(s) => out["SecretString"] = json!(s),
                SecretValue::Binary(b) => {
                    out["SecretBinary"] = json!(base64::engine::general_purpose::STANDARD.encode(b))
                }
            }
            out
        }
        "PutSecretValue" => {
            let stages = match input.get("VersionStages") {
                None | Some(Value::Null) => None,
                Some(Value::Array(list)) => Some(
                    list.iter()
                        .map(|s| {
                            s.as_str()
                                .map(str::to_string)
                                .ok_or_else(|| failure("InvalidParameterException", "VersionStages must be strings."))
                        })
                        .collect::<Result<Vec<_>, _>>()?,
                ),
                Some(_) => return Err(failure("InvalidParameterException", "VersionStages must be a list.")),
            };
            let (secret, version, stages) =
                sm.put_value(required(input, "SecretId")?, token, value_of(input)?, stages).await?;
            json!({"ARN": secret.arn, "Name": secret.name, "VersionId": version, "VersionStages": stages})
        }
        "DescribeSecret" => describe_json(&sm.describe(required(input, "SecretId")?).await?, "VersionIdsToStages"),
        "ListSecrets" => {
            let filters = match input.get("Filters") {
                None | Some(Value::Null) => Vec::new(),
                Some(Value::Array(list)) => list
                    .iter()
                    .map(|f| {
                        let key = f.get("Key").and_then(Value::as_str).unwrap_or_default().to_string();
                        let values: Vec<String> = f
                            .get("Values")
                            .and_then(Value::as_array)
                            .map(|v| v.iter().filter_map(Value::as_str).map(str::to_string).collect())
                            .unwrap_or_default();
                        ListFilter { key, values }
                    })
                    .collect(),
                Some(_) => return Err(failure("InvalidParameterException", "Filters must be a list.")),
            };
            let req = ListRequest {
                include_planned_deletion: input.get("IncludePlannedDeletion").and_then(Value::as_bool).unwrap_or(false),
                filters,
                descending: text(input, "SortOrder")? == Some("desc"),
                sort_by: text(input, "SortBy")?.map(str::to_string),
                max_results: input.get("MaxResults").and_then(Value::as_i64),
                next_token: text(input, "NextToken")?.map(str::to_string),
            };
            let (page, next) = sm.list(&req).await?;
            let mut out = json!({"SecretList": page.iter().map(|s| describe_json(s, "SecretVersionsToStages")).collect::<Vec<_>>()});
            if let Some(n) = next {
                out["NextToken"] = json!(n);
            }
            out
        }
        "UpdateSecret" => {
            let (secret, version) = sm
                .update(
                    required(input, "SecretId")?,
                    token,
                    text(input, "Description")?,
                    text(input, "KmsKeyId")?,
                    value_of(input)?,
                )
                .await?;
            let mut out = json!({"ARN": secret.arn, "Name": secret.name});
            if let Some(v) = version {
                out["VersionId"] = json!(v);
            }
            out
        }
        "DeleteSecret" => {
            let window =
                match input.get("RecoveryWindowInDays") {
                    None | Some(Value::Null) => None,
                    Some(v) => Some(v.as_i64().ok_or_else(|| {
                        failure("InvalidParameterException", "RecoveryWindowInDays must be a number.")
                    })?),
                };
            let force = input.get("ForceDeleteWithoutRecovery").and_then(Value::as_bool).unwrap_or(false);
            let (secret, at) = sm.delete(required(input, "SecretId")?, window, force).await?;
            json!({"ARN": secret.arn, "Name": secret.name, "DeletionDate": seconds(at)})
        }
        "RestoreSecret" => {
            let secret = sm.restore(required(input, "SecretId")?).await?;
            json!({"ARN": secret.arn, "Name": secret.name})
        }
        _ => return Err(failure("UnknownOperationException", format!("Unknown operation {op:?}"))),
    })
}
