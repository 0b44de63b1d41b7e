//! The KMS API subset Berth serves, so that `aws kms … --endpoint-url` manages the keys
//! repositories are encrypted with: `POST /` with `X-Amz-Target: TrentService.<Operation>`
//! (JSON 1.1), SigV4 for the service `kms`. Each call is parsed here and carried out — and
//! authorized, by the key policy and grants — by `registry::kms`.

use axum::response::Response;
use base64::Engine as _;
use berth_meta::{KmsAlias, KmsGrant, KmsKey, KmsKeyState};
use berth_registry::authz::RequestEnv;
use berth_registry::kms::{GrantConstraints, Kms, KmsCaller, KmsError, Listed, NewGrant, NewKey};
use serde_json::{Value, json};

use super::AppState;
use super::awsjson::{Failure, Input, caller, failure, internal, operation, respond, seconds, targets};

const TARGET_PREFIX: &str = "TrentService.";
const OPERATIONS: [&str; 24] = [
    "CreateKey",
    "DescribeKey",
    "ListKeys",
    "EnableKey",
    "DisableKey",
    "ScheduleKeyDeletion",
    "CancelKeyDeletion",
    "EnableKeyRotation",
    "DisableKeyRotation",
    "GetKeyRotationStatus",
    "RotateKeyOnDemand",
    "ListKeyRotations",
    "CreateAlias",
    "ListAliases",
    "DeleteAlias",
    "PutKeyPolicy",
    "GetKeyPolicy",
    "CreateGrant",
    "ListGrants",
    "RetireGrant",
    "RevokeGrant",
    "GenerateDataKey",
    "Encrypt",
    "Decrypt",
];

/// Whether a request is for KMS (by its `X-Amz-Target`).
pub fn is_kms_request(headers: &axum::http::HeaderMap) -> bool {
    targets(headers, TARGET_PREFIX)
}

impl From<KmsError> for Failure {
    fn from(e: KmsError) -> Self {
        match &e {
            KmsError::Internal(m) => internal(e.code(), m.clone()),
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

fn missing(key: &str) -> String {
    let mut member = key.to_string();
    if let Some(first) = member.get_mut(..1) {
        first.make_ascii_lowercase();
    }
    format!(
        "1 validation error detected: Value null at '{member}' failed to satisfy constraint: Member must not be null"
    )
}

async fn serve(
    app: &AppState,
    req: &berth_auth::sigv4::Request<'_>,
    target: &str,
    body: &[u8],
    env: RequestEnv,
) -> Result<Value, Failure> {
    let op = operation(target, TARGET_PREFIX, &OPERATIONS)?;
    let caller = caller(app, req, "kms").await?;
    let input = Input::parse(body, "ValidationException", missing)?;
    let kms = app.registry.kms();
    let who = KmsCaller { authorizer: &app.authorizer, caller: &caller, env: &env, via_service: None };
    dispatch(&kms, &who, op, &input).await
}

fn key_metadata(k: &KmsKey) -> Value {
    let mut m = json!({
        "AWSAccountId": k.account_id,
        "KeyId": k.key_id,
        "Arn": k.arn,
        "CreationDate": seconds(k.created_at),
        "Enabled": k.state == KmsKeyState::Enabled,
        "Description": k.description,
        "KeyUsage": "ENCRYPT_DECRYPT",
        "KeyState": k.state.as_str(),
        "Origin": "AWS_KMS",
        "KeyManager": k.key_manager,
        "CustomerMasterKeySpec": "SYMMETRIC_DEFAULT",
        "KeySpec": "SYMMETRIC_DEFAULT",
        "EncryptionAlgorithms": ["SYMMETRIC_DEFAULT"],
        "MultiRegion": false,
        "CurrentKeyMaterialId": k.current_material,
    });
    if let Some(d) = k.deletion_date {
        m["DeletionDate"] = seconds(d);
    }
    if let Some(w) = k.pending_window_days {
        m["PendingDeletionWindowInDays"] = json!(w);
    }
    json!({"KeyMetadata": m})
}

fn alias_json(kms: &Kms, a: &KmsAlias) -> Value {
    json!({
        "AliasName": a.alias_name,
        "AliasArn": kms.alias_arn(&a.account_id, &a.alias_name),
        "TargetKeyId": a.target_key_id,
        "CreationDate": seconds(a.created_at),
        "LastUpdatedDate": seconds(a.updated_at),
    })
}

fn grant_json(g: &KmsGrant) -> Value {
    let mut out = json!({
        "KeyId": g.key_id,
        "GrantId": g.grant_id,
        "CreationDate": seconds(g.created_at),
        "GranteePrincipal": g.grantee_principal,
        "IssuingAccount": g.issuing_account,
        "Operations": g.operations,
    });
    if let Some(n) = &g.name {
        out["Name"] = json!(n);
    }
    if let Some(r) = &g.retiring_principal {
        out["RetiringPrincipal"] = json!(r);
    }
    if let Some(c) = GrantConstraints::from_stored(g.constraints.as_deref()).filter(|c| !c.is_empty()) {
        out["Constraints"] = c.to_json();
    }
    out
}

/// A listing's answer: `list_key` holds the items, then `NextMarker` and `Truncated`.
fn listed<T>(list_key: &str, page: &Listed<T>, item: impl Fn(&T) -> Value) -> Value {
    let mut out =
        json!({list_key: page.items.iter().map(item).collect::<Vec<_>>(), "Truncated": page.next_marker.is_some()});
    if let Some(m) = &page.next_marker {
        out["NextMarker"] = json!(m);
    }
    out
}

fn blob(input: &Input, key: &str) -> Result<Vec<u8>, Failure> {
    base64::engine::general_purpose::STANDARD
        .decode(input.required(key)?)
        .map_err(|_| failure("ValidationException", format!("{key} is not valid base64.")))
}

fn b64(bytes: &[u8]) -> Value {
    json!(base64::engine::general_purpose::STANDARD.encode(bytes))
}

async fn dispatch(kms: &Kms, who: &KmsCaller<'_>, op: &str, input: &Input) -> Result<Value, Failure> {
    let context = || -> Result<_, Failure> { Ok(input.string_map("EncryptionContext")?.unwrap_or_default()) };
    let key_id = || input.required("KeyId");
    let limit = || input.int("Limit");
    let marker = || input.text("Marker");
    Ok(match op {
        "CreateKey" => {
            let req = NewKey {
                policy: input.text("Policy")?.map(str::to_string),
                description: input.text("Description")?.map(str::to_string),
                key_usage: input.text("KeyUsage")?.map(str::to_string),
                key_spec: input.text("KeySpec")?.or(input.text("CustomerMasterKeySpec")?).map(str::to_string),
                origin: input.text("Origin")?.map(str::to_string),
                multi_region: input.flag("MultiRegion")?,
                bypass_policy_lockout_safety_check: input.flag("BypassPolicyLockoutSafetyCheck")?,
                tags: input.tags("Tags", "TagKey", "TagValue")?,
            };
            if input.get("CustomKeyStoreId").is_some() || input.get("XksKeyId").is_some() {
                return Err(failure("UnsupportedOperationException", "Berth's KMS has no custom key stores."));
            }
            key_metadata(&kms.create_key(who, req).await?)
        }
        "DescribeKey" => key_metadata(&kms.describe_key(who, key_id()?).await?),
        "ListKeys" => {
            let page = kms.list_keys(who, limit()?, marker()?).await?;
            listed("Keys", &page, |k| json!({"KeyId": k.key_id, "KeyArn": k.arn}))
        }
        "EnableKey" => {
            kms.enable_key(who, key_id()?).await?;
            json!({})
        }
        "DisableKey" => {
            kms.disable_key(who, key_id()?).await?;
            json!({})
        }
        "ScheduleKeyDeletion" => {
            let key = kms.schedule_key_deletion(who, key_id()?, input.int("PendingWindowInDays")?).await?;
            json!({
                "KeyId": key.arn,
                "DeletionDate": seconds(key.deletion_date.unwrap_or_default()),
                "KeyState": key.state.as_str(),
                "PendingWindowInDays": key.pending_window_days,
            })
        }
        "CancelKeyDeletion" => json!({"KeyId": kms.cancel_key_deletion(who, key_id()?).await?.arn}),
        "EnableKeyRotation" => {
            kms.enable_key_rotation(who, key_id()?, input.int("RotationPeriodInDays")?).await?;
            json!({})
        }
        "DisableKeyRotation" => {
            kms.disable_key_rotation(who, key_id()?).await?;
            json!({})
        }
        "GetKeyRotationStatus" => {
            let s = kms.key_rotation_status(who, key_id()?).await?;
            let mut out = json!({"KeyRotationEnabled": s.enabled, "KeyId": s.key_arn});
            if let Some(p) = s.period_days {
                out["RotationPeriodInDays"] = json!(p);
            }
            if let Some(n) = s.next_rotation_at {
                out["NextRotationDate"] = seconds(n);
            }
            out
        }
        "RotateKeyOnDemand" => json!({"KeyId": kms.rotate_key_on_demand(who, key_id()?).await?}),
        "ListKeyRotations" => {
            let all = match input.text("IncludeKeyMaterial")? {
                None | Some("ROTATIONS_ONLY") => false,
                Some("ALL_KEY_MATERIAL") => true,
                Some(other) => {
                    return Err(failure(
                        "ValidationException",
                        format!("IncludeKeyMaterial must be ALL_KEY_MATERIAL or ROTATIONS_ONLY, not {other}."),
                    ));
                }
            };
            let (key, page) = kms.list_key_rotations(who, key_id()?, all, limit()?, marker()?).await?;
            listed("Rotations", &page, |m| {
                let mut r = json!({
                    "KeyId": key.arn,
                    "KeyMaterialId": m.material_id,
                    "KeyMaterialState": if m.material_id == key.current_material { "CURRENT" } else { "NON_CURRENT" },
                    "RotationDate": seconds(m.created_at),
                });
                if let Some(t) = &m.rotation_type {
                    r["RotationType"] = json!(t);
                }
                r
            })
        }
        "CreateAlias" => {
            kms.create_alias(who, input.required("AliasName")?, input.required("TargetKeyId")?).await?;
            json!({})
        }
        "ListAliases" => {
            let page = kms.list_aliases(who, input.text("KeyId")?, limit()?, marker()?).await?;
            listed("Aliases", &page, |a| alias_json(kms, a))
        }
        "DeleteAlias" => {
            kms.delete_alias(who, input.required("AliasName")?).await?;
            json!({})
        }
        "GetKeyPolicy" => {
            let policy = kms.key_policy(who, key_id()?, input.text("PolicyName")?).await?;
            json!({"Policy": policy, "PolicyName": "default"})
        }
        "PutKeyPolicy" => {
            kms.put_key_policy(
                who,
                key_id()?,
                input.text("PolicyName")?,
                input.required("Policy")?,
                input.flag("BypassPolicyLockoutSafetyCheck")?,
            )
            .await?;
            json!({})
        }
        "CreateGrant" => {
            let constraints = match input.get("Constraints") {
                None => GrantConstraints::default(),
                Some(c) => {
                    let map = |k: &str| -> Result<_, Failure> {
                        match c.get(k) {
                            None | Some(Value::Null) => Ok(None),
                            Some(m) => serde_json::from_value(m.clone())
                                .map(Some)
                                .map_err(|_| failure("ValidationException", format!("{k} must be a map of strings."))),
                        }
                    };
                    GrantConstraints {
                        subset: map("EncryptionContextSubset")?,
                        equals: map("EncryptionContextEquals")?,
                    }
                }
            };
            let req = NewGrant {
                key_id: key_id()?.to_string(),
                grantee_principal: input.required("GranteePrincipal")?.to_string(),
                retiring_principal: input.text("RetiringPrincipal")?.map(str::to_string),
                operations: input
                    .strings("Operations")?
                    .ok_or_else(|| failure("ValidationException", missing("Operations")))?,
                constraints,
                name: input.text("Name")?.map(str::to_string),
                dry_run: input.flag("DryRun")?,
            };
            let (grant_id, token) = kms.create_grant(who, req).await?;
            json!({"GrantId": grant_id, "GrantToken": token})
        }
        "ListGrants" => {
            let (_, page) = kms
                .list_grants(
                    who,
                    key_id()?,
                    input.text("GrantId")?,
                    input.text("GranteePrincipal")?,
                    limit()?,
                    marker()?,
                )
                .await?;
            listed("Grants", &page, grant_json)
        }
        "RetireGrant" => {
            kms.retire_grant(
                who,
                input.text("GrantToken")?,
                input.text("KeyId")?,
                input.text("GrantId")?,
                input.flag("DryRun")?,
            )
            .await?;
            json!({})
        }
        "RevokeGrant" => {
            kms.revoke_grant(who, key_id()?, input.required("GrantId")?, input.flag("DryRun")?).await?;
            json!({})
        }
        "GenerateDataKey" => {
            if input.get("Recipient").is_some() {
                return Err(failure("UnsupportedOperationException", "Berth's KMS has no Nitro Enclaves recipients."));
            }
            let key = kms
                .generate_data_key(
                    who,
                    key_id()?,
                    input.int("NumberOfBytes")?,
                    input.text("KeySpec")?,
                    &context()?,
                    input.flag("DryRun")?,
                )
                .await?;
            json!({
                "KeyId": key.key_arn,
                "KeyMaterialId": key.material_id,
                "Plaintext": b64(&key.plaintext),
                "CiphertextBlob": b64(&key.ciphertext),
            })
        }
        "Encrypt" => {
            let (arn, blob) = kms
                .encrypt(
                    who,
                    key_id()?,
                    &blob(input, "Plaintext")?,
                    &context()?,
                    input.text("EncryptionAlgorithm")?,
                    input.flag("DryRun")?,
                )
                .await?;
            json!({"KeyId": arn, "CiphertextBlob": b64(&blob), "EncryptionAlgorithm": "SYMMETRIC_DEFAULT"})
        }
        "Decrypt" => {
            if input.get("Recipient").is_some() {
                return Err(failure("UnsupportedOperationException", "Berth's KMS has no Nitro Enclaves recipients."));
            }
            let out = kms
                .decrypt(
                    who,
                    &blob(input, "CiphertextBlob")?,
                    input.text("KeyId")?,
                    &context()?,
                    input.text("EncryptionAlgorithm")?,
                    input.flag("DryRun")?,
                )
                .await?;
            json!({
                "KeyId": out.key_arn,
                "KeyMaterialId": out.material_id,
                "Plaintext": b64(&out.plaintext),
                "EncryptionAlgorithm": "SYMMETRIC_DEFAULT",
            })
        }
        _ => return Err(failure("UnknownOperationException", format!("Unknown operation {op:?}"))),
    })
}
