//! The Secrets Manager API subset Berth serves, so that `aws secretsmanager … --endpoint-url`
//! keeps the pull-through cache's upstream credentials: `POST /` with
//! `X-Amz-Target: secretsmanager.<Operation>` (JSON 1.1), SigV4 for the service
//! `secretsmanager`. Each call is authorized as `secretsmanager:<Operation>` on the secret's ARN
//! (`*` for `ListSecrets`) and then carried out by `registry::secrets_manager`.

use axum::response::Response;
use base64::Engine as _;
use berth_meta::ManagedSecret;
use berth_registry::authz::{RequestEnv, Target};
use berth_registry::secrets_manager::{ListFilter, ListRequest, SecretValue, SecretsManager, SecretsManagerError};
use serde_json::{Map, Value, json};

use super::AppState;
use super::awsjson::{Failure, Input, caller, failure, internal, operation, respond, seconds, targets};

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
    targets(headers, TARGET_PREFIX)
}

impl From<SecretsManagerError> for Failure {
    fn from(e: SecretsManagerError) -> Self {
        match &e {
            SecretsManagerError::Internal(m) => internal(e.code(), m.clone()),
            _ => failure(e.code(), e.to_string()),
        }
    }
}

pub async fn handle(
    app: &AppState,
    req: &berth_auth::sigv4::Request<'_>,
    target: &str,
    body: &[u8],
    env: RequestEnv,
) -> Response {
    respond(serve(app, req, target, body, env).await)
}

fn value_of(input: &Input) -> Result<Option<SecretValue>, Failure> {
    Ok(SecretValue::from_request(input.text("SecretString")?, input.text("SecretBinary")?)?)
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
    let op = operation(target, TARGET_PREFIX, &OPERATIONS)?;
    let caller = caller(app, req, "secretsmanager").await?;
    let input = Input::parse(body, "InvalidParameterException", |key| format!("You must provide {key}."))?;
    let sm = app.registry.secrets_manager(&caller.account_id, app.identity.region());
    let resource = match op {
        "ListSecrets" => "*".to_string(),
        "CreateSecret" => sm.resource_arn(input.required("Name")?).await?,
        _ => sm.resource_arn(input.required("SecretId")?).await?,
    };
    let action = format!("secretsmanager:{op}");
    let target = Target::Resource { arn: &resource, account: &caller.account_id };
    match app.authorizer.authorize(&caller, &action, target, &env).await {
        Ok(Ok(())) => {}
        Ok(Err(denied)) => return Err(failure("AccessDeniedException", denied.message)),
        Err(e) => return Err(internal("InternalServiceError", e.to_string())),
    }
    dispatch(&sm, op, &input).await
}

async fn dispatch(sm: &SecretsManager, op: &str, input: &Input) -> Result<Value, Failure> {
    let token = input.text("ClientRequestToken")?;
    Ok(match op {
        "CreateSecret" => {
            if input.get("AddReplicaRegions").is_some_and(|v| v.as_array().is_some_and(|a| !a.is_empty())) {
                return Err(failure("InvalidParameterException", "Berth does not replicate secrets to other regions."));
            }
            let tags = input.tags("Tags", "Key", "Value")?;
            let (secret, version) = sm
                .create(
                    input.required("Name")?,
                    input.text("Description")?,
                    input.text("KmsKeyId")?,
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
                .get_value(input.required("SecretId")?, input.text("VersionId")?, input.text("VersionStage")?)
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
            let stages = input.strings("VersionStages")?;
            let (secret, version, stages) =
                sm.put_value(input.required("SecretId")?, token, value_of(input)?, stages).await?;
            json!({"ARN": secret.arn, "Name": secret.name, "VersionId": version, "VersionStages": stages})
        }
        "DescribeSecret" => describe_json(&sm.describe(input.required("SecretId")?).await?, "VersionIdsToStages"),
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
                descending: input.text("SortOrder")? == Some("desc"),
                sort_by: input.text("SortBy")?.map(str::to_string),
                max_results: input.get("MaxResults").and_then(Value::as_i64),
                next_token: input.text("NextToken")?.map(str::to_string),
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
                    input.required("SecretId")?,
                    token,
                    input.text("Description")?,
                    input.text("KmsKeyId")?,
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
            let window = input.int("RecoveryWindowInDays")?;
            let force = input.get("ForceDeleteWithoutRecovery").and_then(Value::as_bool).unwrap_or(false);
            let (secret, at) = sm.delete(input.required("SecretId")?, window, force).await?;
            json!({"ARN": secret.arn, "Name": secret.name, "DeletionDate": seconds(at)})
        }
        "RestoreSecret" => {
            let secret = sm.restore(input.required("SecretId")?).await?;
            json!({"ARN": secret.arn, "Name": secret.name})
        }
        _ => return Err(failure("UnknownOperationException", format!("Unknown operation {op:?}"))),
    })
}
