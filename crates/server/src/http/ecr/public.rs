//! The ECR Public API (`aws ecr-public …`): JSON 1.1 on `POST /` with
//! `X-Amz-Target: SpencerFrontendService.<Operation>`, SigV4 for the service `ecr-public`, signed
//! for `us-east-1` (where ECR Public lives) or this deployment's region. Each request is checked
//! against the ECR Public model (`public-model.json`), authorized as `ecr-public:<Operation>` in
//! the caller's account, and answered in ECR's error shapes.
//!
//! Served so far: the public registry itself — `GetAuthorizationToken` (which also needs
//! `sts:GetServiceBearerToken`, as in AWS), `DescribeRegistries`, `GetRegistryCatalogData`,
//! `PutRegistryCatalogData`. The public repositories' operations answer
//! `UnknownOperationException` until they are served. Without a configured public host
//! (`--public-host`) ECR Public is off: every operation answers `UnsupportedCommandException`.

use axum::http::{HeaderMap, Method, Uri};
use berth_auth::token::docker_authorization;
use berth_registry::authz::{RequestEnv, Target};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::{EcrError, EcrResult, SignedParts, model, parse, reply};
use crate::http::{AppState, now_seconds};

pub const TARGET_PREFIX: &str = "SpencerFrontendService.";

/// The operations served so far.
const SERVED: &[&str] =
    &["GetAuthorizationToken", "DescribeRegistries", "GetRegistryCatalogData", "PutRegistryCatalogData"];

pub async fn serve(
    app: &AppState,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    op: &str,
    bytes: &[u8],
    env: RequestEnv,
) -> EcrResult {
    let signed = SignedParts::of(headers, uri, bytes);
    let caller = app.identity.authenticate_sigv4(&signed.request(method, uri), "ecr-public", now_seconds()).await?;
    let Some(public_host) = app.registry.public_host() else {
        return Err(EcrError::new(
            "UnsupportedCommandException",
            "ECR Public is not enabled on this registry: give it a public host (--public-host)",
        ));
    };
    let input: Value = if bytes.is_empty() {
        json!({})
    } else {
        serde_json::from_slice(bytes)
            .map_err(|e| EcrError::new("SerializationException", format!("invalid JSON: {e}")))?
    };
    model::validate_public(op, &input)?;
    if !SERVED.contains(&op) {
        return Err(EcrError::new(
            "UnknownOperationException",
            format!("Berth does not serve the ECR Public operation {op:?} yet"),
        ));
    }
    let account = caller.account_id.clone();
    let mut actions = vec![format!("ecr-public:{op}")];
    if op == "GetAuthorizationToken" {
        actions.push("sts:GetServiceBearerToken".into());
    }
    for action in &actions {
        if let Err(denied) = app.authorizer.authorize(&caller, action, Target::Registry(&account), &env).await? {
            return Err(EcrError::new("AccessDeniedException", denied.message));
        }
    }
    let registry = &app.registry;
    match op {
        "GetAuthorizationToken" => {
            let (token, expires_at) = app.identity.issue_token(&caller, now_seconds());
            Ok(json!({ "authorizationData": {
                "authorizationToken": docker_authorization(&token),
                "expiresAt": expires_at,
            }}))
        }
        "DescribeRegistries" => {
            let r = registry.public_registry(&account).await?;
            Ok(json!({ "registries": [{
                "registryId": account,
                "registryArn": format!("arn:aws:ecr-public::{account}:registry/{account}"),
                "registryUri": format!("{public_host}/{}", r.alias),
                "verified": false,
                // One alias per registry here: it is both the primary and the default.
                "aliases": [{
                    "name": r.alias,
                    "status": "ACTIVE",
                    "primaryRegistryAlias": true,
                    "defaultRegistryAlias": true,
                }],
            }]}))
        }
        "GetRegistryCatalogData" => {
            let data = registry.registry_catalog_data(&account).await?;
            Ok(json!({ "registryCatalogData": data }))
        }
        "PutRegistryCatalogData" => reply(put_registry_catalog_data(app, &account, parse(input)?).await),
        _ => unreachable!("only served operations get here"),
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct PutRegistryCatalogDataInput {
    display_name: Option<String>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct RegistryCatalogDataOutput {
    registry_catalog_data: berth_registry::public::RegistryCatalogData,
}

async fn put_registry_catalog_data(
    app: &AppState,
    account: &str,
    input: PutRegistryCatalogDataInput,
) -> Result<RegistryCatalogDataOutput, EcrError> {
    let data = app.registry.put_registry_catalog_data(account, input.display_name).await?;
    Ok(RegistryCatalogDataOutput { registry_catalog_data: data })
}
