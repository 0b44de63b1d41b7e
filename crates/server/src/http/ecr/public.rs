//! The ECR Public API (`aws ecr-public …`): JSON 1.1 on `POST /` with
//! `X-Amz-Target: SpencerFrontendService.<Operation>`, SigV4 for the service `ecr-public`, signed
//! for `us-east-1` (where ECR Public lives) or this deployment's region. Each request is checked
//! against the ECR Public model (`public-model.json`), authorized as `ecr-public:<Operation>` in
//! the caller's account, and answered in ECR's error shapes.
//!
//! All 23 operations of the model are served: the public registry itself —
//! `GetAuthorizationToken` (which also needs `sts:GetServiceBearerToken`, as in AWS),
//! `DescribeRegistries`, `Get`/`PutRegistryCatalogData` — and its repositories, authorized on
//! each repository's ECR Public ARN with its repository policy (`Target::PublicRepository`):
//! `Create`/`Describe`/`DeleteRepository`, `Get`/`PutRepositoryCatalogData`, the tagging
//! operations, `Set`/`Get`/`DeleteRepositoryPolicy`, and the image and layer operations
//! (`DescribeImages`, `DescribeImageTags`, `BatchDeleteImage`, `BatchCheckLayerAvailability`,
//! the layer upload operations, `PutImage`), which run the ECR API's own handlers on the
//! repository's store key. Without a configured public host (`--public-host`) ECR Public is
//! off: every operation answers `UnsupportedCommandException`.

use axum::http::{HeaderMap, Method, Uri};
use berth_auth::token::docker_authorization;
use berth_registry::authz::{RequestEnv, Target};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use berth_registry::public::{
    PublicRepository, RepositoryCatalogData, named, public_repository_arn, public_repository_key,
};
use berth_registry::settings::parse_resource_policy;

use super::shapes::seconds;
use super::{EcrError, EcrResult, SignedParts, model, parse, reply};
use crate::http::{AppState, now_seconds};

pub const TARGET_PREFIX: &str = "SpencerFrontendService.";

/// The image and layer operations ECR Public shares with ECR: answered by the ECR API's own
/// handlers on the public repository's store key, their answers given back its name.
const SHARED_WITH_ECR: &[&str] = &[
    "DescribeImages",
    "BatchDeleteImage",
    "BatchCheckLayerAvailability",
    "InitiateLayerUpload",
    "UploadLayerPart",
    "CompleteLayerUpload",
    "PutImage",
];

pub async fn serve(
    app: &AppState,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    op: &str,
    bytes: &[u8],
    mut env: RequestEnv,
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
    if !model::is_public_operation(op) {
        return Err(EcrError::new("UnknownOperationException", format!("Unknown operation {TARGET_PREFIX}{op}")));
    }
    model::validate_public(op, &input)?;
    let account = caller.account_id.clone();
    if let Some(id) = input["registryId"].as_str()
        && id != account
    {
        return Err(EcrError::new(
            "InvalidParameterException",
            format!("Invalid parameter at 'registryId': {id} is not the caller's registry"),
        ));
    }
    let mut actions = vec![format!("ecr-public:{op}")];
    if op == "GetAuthorizationToken" {
        actions.push("sts:GetServiceBearerToken".into());
    }
    env.request_tags = super::request_tags(&input);
    env.tag_keys = super::tag_keys(&input, &env.request_tags);
    // Exactly what each operation acts on, whatever else the request carries: the tagging
    // operations their `resourceArn`'s repository, the repository operations their
    // `repositoryName`'s (on its ECR Public ARN), the registry operations the registry.
    // `DescribeRepositories` is authorized per repository (it lists what the caller may see).
    let repository = if TAGGING.contains(&op) {
        Some(resource_repository(&account, &input)?)
    } else if REGISTRY_LEVEL.contains(&op) {
        None
    } else {
        input["repositoryName"].as_str().map(str::to_string)
    };
    let repository_key = repository.as_deref().map(|n| public_repository_key(&account, n));
    let target = match &repository_key {
        Some(key) => Target::PublicRepository(key),
        None => Target::Registry(&account),
    };
    if op != "DescribeRepositories" {
        for action in &actions {
            if let Err(denied) = app.authorizer.authorize(&caller, action, target, &env).await? {
                return Err(EcrError::new("AccessDeniedException", denied.message));
            }
        }
    }
    let answer = answer(app, public_host, op, &caller, env, &account, repository, input).await;
    if CHANGES_AUTHORIZATION.contains(&op) {
        // Repositories, their tags and policies feed decisions: cached ones are forgotten.
        app.authorizer.policies_changed().await;
    }
    // Keys never leave: a registry error is worded for the caller's registry, then the public
    // repository's store key is given back as its name.
    let prefix = public_repository_key(&account, "");
    match answer.map_err(|e| e.worded(&account)) {
        Err(EcrError::Exception { kind, message, status }) => {
            Err(EcrError::Exception { kind, message: message.replace(&prefix, ""), status })
        }
        other => other,
    }
}

/// The tagging operations: they name their repository by `resourceArn`.
const TAGGING: &[&str] = &["TagResource", "UntagResource", "ListTagsForResource"];

/// The operations on the public registry as a whole.
const REGISTRY_LEVEL: &[&str] = &[
    "GetAuthorizationToken",
    "DescribeRegistries",
    "GetRegistryCatalogData",
    "PutRegistryCatalogData",
    "DescribeRepositories",
];

/// The operations that change what authorization decisions read.
const CHANGES_AUTHORIZATION: &[&str] = &[
    "CreateRepository",
    "DeleteRepository",
    "TagResource",
    "UntagResource",
    "SetRepositoryPolicy",
    "DeleteRepositoryPolicy",
];

/// One authorized operation's answer.
#[allow(clippy::too_many_arguments)]
async fn answer(
    app: &AppState,
    public_host: &str,
    op: &str,
    caller: &berth_registry::identity::Caller,
    env: RequestEnv,
    account: &str,
    repository: Option<String>,
    input: Value,
) -> EcrResult {
    let caller = caller.clone();
    let account = account.to_string();
    let registry = &app.registry;
    if SHARED_WITH_ECR.contains(&op) || op == "DescribeImageTags" {
        let name = input["repositoryName"].as_str().unwrap_or_default().to_string();
        // The repository must exist (also for a push: ECR Public creates none on push).
        registry.public_repository(&account, &name).await?;
        let scheme = crate::http::client_scheme(&env);
        let ctx = super::Ctx {
            app,
            op,
            caller,
            env,
            endpoint: format!("{scheme}://{public_host}"),
            host: public_host.to_string(),
            ns: crate::http::accounts::Namespace::new(app.identity.account_id(), &account),
        };
        let key = public_repository_key(&account, &name);
        let prefix = public_repository_key(&account, "");
        let mut keyed = input.clone();
        keyed["repositoryName"] = json!(key);
        let answer = if op == "DescribeImageTags" {
            describe_image_tags(&ctx, keyed).await
        } else {
            super::dispatch(&ctx, op, keyed).await
        };
        return answer.map(|mut v| {
            unkey_public(&mut v, &prefix);
            v
        });
    }
    match op {
        "GetAuthorizationToken" => {
            let (token, expires_at) = app.identity.issue_public_token(&caller, now_seconds());
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
        "CreateRepository" => reply(create_repository(app, public_host, &env, &account, parse(input)?).await),
        "DescribeRepositories" => {
            reply(describe_repositories(app, public_host, &account, &caller, &env, parse(input)?).await)
        }
        "DeleteRepository" => reply(delete_repository(app, public_host, &account, parse(input)?).await),
        "GetRepositoryCatalogData" => {
            let input: RepositoryInput = parse(input)?;
            let data = registry.public_catalog_data(&account, &input.repository_name).await?;
            let logo = logo_url(app, public_host, &env, &account, &input.repository_name, &data).await?;
            Ok(json!({ "catalogData": catalog_shape(data, logo) }))
        }
        "PutRepositoryCatalogData" => {
            let input: PutCatalogInput = parse(input)?;
            let name = input.repository_name;
            let data = registry.put_public_catalog_data(&account, &name, input.catalog_data).await?;
            let logo = logo_url(app, public_host, &env, &account, &name, &data).await?;
            Ok(json!({ "catalogData": catalog_shape(data, logo) }))
        }
        "SetRepositoryPolicy" | "GetRepositoryPolicy" | "DeleteRepositoryPolicy" => {
            let name = repository.unwrap_or_default();
            let key = public_repository_key(&account, &name);
            registry.public_repository(&account, &name).await?;
            let text = match op {
                "SetRepositoryPolicy" => {
                    let input: SetPolicyInput = parse(input)?;
                    let policy = parse_resource_policy(&input.policy_text, "repository policy")?;
                    // The lockout check, as ECR's: refused unless forced when the caller could no
                    // longer change the policy under it.
                    if !input.force
                        && let Err(denied) = app
                            .authorizer
                            .authorize_with_repository_policy(
                                &caller,
                                "ecr-public:SetRepositoryPolicy",
                                &key,
                                &env,
                                &policy,
                            )
                            .await?
                    {
                        return Err(EcrError::invalid(format!(
                            "Invalid parameter at 'PolicyText' failed to satisfy constraint: 'The repository policy would \
                             prevent you from setting the policy in the future ({})'; use force to set it anyway",
                            denied.message.replace(&public_repository_key(&account, ""), "")
                        )));
                    }
                    registry.set_repository_policy(&key, &input.policy_text).await.map_err(|e| named(e, &name))?;
                    input.policy_text
                }
                "GetRepositoryPolicy" => registry.repository_policy(&key).await.map_err(|e| named(e, &name))?,
                _ => registry.delete_repository_policy(&key).await.map_err(|e| named(e, &name))?,
            };
            Ok(json!({ "registryId": account, "repositoryName": name, "policyText": text }))
        }
        "TagResource" | "UntagResource" | "ListTagsForResource" => {
            let name = resource_repository(&account, &input)?;
            match op {
                "TagResource" => {
                    let input: TagInput = parse(input)?;
                    registry.tag_public_repository(&account, &name, &input.tags).await?;
                    Ok(json!({}))
                }
                "UntagResource" => {
                    let input: UntagInput = parse(input)?;
                    registry.untag_public_repository(&account, &name, &input.tag_keys).await?;
                    Ok(json!({}))
                }
                _ => {
                    let tags = registry.public_repository_tags(&account, &name).await?;
                    let tags: Vec<Value> = tags.into_iter().map(|(k, v)| json!({ "Key": k, "Value": v })).collect();
                    Ok(json!({ "tags": tags }))
                }
            }
        }
        _ => unreachable!("only served operations get here"),
    }
}

/// A repository as ECR Public shows it.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct RepositoryShape {
    repository_arn: String,
    registry_id: String,
    repository_name: String,
    repository_uri: String,
    created_at: f64,
}

async fn repository_shape(
    app: &AppState,
    public_host: &str,
    r: &PublicRepository,
) -> Result<RepositoryShape, EcrError> {
    let registry = app.registry.public_registry(&r.account).await?;
    Ok(RepositoryShape {
        repository_arn: public_repository_arn(&r.account, &r.name),
        registry_id: r.account.clone(),
        repository_name: r.name.clone(),
        repository_uri: format!("{public_host}/{}/{}", registry.alias, r.name),
        created_at: seconds(r.created_at),
    })
}

/// Catalog data as the API shows it: the logo is not given back but shown by its URL on the
/// public host's gallery (`logo_url`), and Berth certifies nothing for a marketplace.
fn catalog_shape(data: RepositoryCatalogData, logo_url: Option<String>) -> Value {
    let mut v = serde_json::to_value(RepositoryCatalogData { logo_image_blob: None, ..data }).expect("serializes");
    v["marketplaceCertified"] = json!(false);
    if let Some(url) = logo_url {
        v["logoUrl"] = json!(url);
    }
    v
}

/// Where the gallery serves a repository's logo, if it has one.
async fn logo_url(
    app: &AppState,
    public_host: &str,
    env: &RequestEnv,
    account: &str,
    name: &str,
    data: &RepositoryCatalogData,
) -> Result<Option<String>, EcrError> {
    if data.logo_image_blob.is_none() {
        return Ok(None);
    }
    let alias = app.registry.public_registry(account).await?.alias;
    let scheme = crate::http::client_scheme(env);
    Ok(Some(format!("{scheme}://{public_host}/gallery/-/logo/{alias}/{name}")))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct CreateRepositoryInput {
    repository_name: String,
    #[serde(default)]
    catalog_data: RepositoryCatalogData,
    #[serde(default)]
    tags: Vec<berth_registry::repositories::ResourceTag>,
}

async fn create_repository(
    app: &AppState,
    public_host: &str,
    env: &RequestEnv,
    account: &str,
    input: CreateRepositoryInput,
) -> Result<Value, EcrError> {
    let tags: Vec<(String, String)> = input.tags.into_iter().map(|t| (t.key, t.value)).collect();
    let (created, catalog) =
        app.registry.create_public_repository(account, &input.repository_name, &tags, input.catalog_data).await?;
    let logo = logo_url(app, public_host, env, account, &created.name, &catalog).await?;
    Ok(json!({
        "repository": repository_shape(app, public_host, &created).await?,
        "catalogData": catalog_shape(catalog, logo),
    }))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct DescribeRepositoriesInput {
    repository_names: Option<Vec<String>>,
    max_results: Option<u32>,
    next_token: Option<String>,
}

async fn describe_repositories(
    app: &AppState,
    public_host: &str,
    account: &str,
    caller: &berth_registry::identity::Caller,
    env: &RequestEnv,
    input: DescribeRepositoriesInput,
) -> Result<Value, EcrError> {
    // Authorized per repository, as AWS does: named ones must each be allowed; a listing shows
    // those the caller may describe.
    let may = |name: String| async move {
        let key = public_repository_key(account, &name);
        app.authorizer.authorize(caller, "ecr-public:DescribeRepositories", Target::PublicRepository(&key), env).await
    };
    let mut shapes = Vec::new();
    let scope = format!("ecr-public DescribeRepositories {account}");
    if let Some(names) = input.repository_names {
        if input.max_results.is_some() || input.next_token.is_some() {
            return Err(EcrError::invalid(
                "Invalid parameter: repositoryNames cannot be combined with maxResults or nextToken",
            ));
        }
        for name in names {
            if let Err(denied) = may(name.clone()).await? {
                return Err(EcrError::new("AccessDeniedException", denied.message));
            }
            let r = app.registry.public_repository(account, &name).await?;
            shapes.push(repository_shape(app, public_host, &r).await?);
        }
        return Ok(json!({ "repositories": shapes }));
    }
    let after = match &input.next_token {
        Some(t) => Some(app.identity.open_page_token(&scope, t).ok_or_else(|| {
            EcrError::invalid("Invalid parameter at 'nextToken': the token is not one this registry issued")
        })?),
        None => None,
    };
    let (page, more) =
        app.registry.public_repositories(account, after.as_deref(), input.max_results.unwrap_or(100)).await?;
    for r in &page {
        if may(r.name.clone()).await?.is_ok() {
            shapes.push(repository_shape(app, public_host, r).await?);
        }
    }
    let mut out = json!({ "repositories": shapes });
    if more && let Some(last) = page.last() {
        out["nextToken"] = json!(app.identity.seal_page_token(&scope, &last.name));
    }
    Ok(out)
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct DeleteRepositoryInput {
    repository_name: String,
    #[serde(default)]
    force: bool,
}

async fn delete_repository(
    app: &AppState,
    public_host: &str,
    account: &str,
    input: DeleteRepositoryInput,
) -> Result<Value, EcrError> {
    // The URI names the alias, which outlives the repository.
    let r = app.registry.public_repository(account, &input.repository_name).await?;
    let shape = repository_shape(app, public_host, &r).await?;
    app.registry.delete_public_repository(account, &input.repository_name, input.force).await?;
    Ok(json!({ "repository": shape }))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RepositoryInput {
    repository_name: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct PutCatalogInput {
    repository_name: String,
    catalog_data: RepositoryCatalogData,
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

/// The repository a tagging operation's `resourceArn` names: one of the caller's account's
/// public repositories, by its ECR Public ARN.
fn resource_repository(account: &str, input: &Value) -> Result<String, EcrError> {
    let arn = input["resourceArn"].as_str().unwrap_or_default();
    let prefix = format!("arn:aws:ecr-public::{account}:repository/");
    match arn.strip_prefix(&prefix) {
        Some(name) if !name.is_empty() => Ok(name.to_string()),
        _ => Err(EcrError::invalid(format!(
            "Invalid parameter at 'resourceArn': {arn:?} is not a public repository of registry {account}"
        ))),
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct TagInput {
    tags: Vec<berth_registry::repositories::ResourceTag>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct UntagInput {
    tag_keys: Vec<String>,
}

/// Store keys in an answer's name fields given back as the public repository's name (a
/// manifest or a tag is never touched).
fn unkey_public(v: &mut Value, prefix: &str) {
    match v {
        Value::Array(items) => items.iter_mut().for_each(|i| unkey_public(i, prefix)),
        Value::Object(map) => {
            for (k, field) in map.iter_mut() {
                match field {
                    Value::String(s) if super::NAME_FIELDS.contains(&k.as_str()) => *s = s.replace(prefix, ""),
                    other => unkey_public(other, prefix),
                }
            }
        }
        _ => {}
    }
}

/// `DescribeImageTags`: one detail per tag of the tagged images `DescribeImages` lists, in tag
/// order, paged by tag (the tag's `createdAt` is its image's push: Berth does not date tags
/// apart).
async fn describe_image_tags(ctx: &super::Ctx<'_>, input: Value) -> EcrResult {
    let mut details: Vec<(String, Value)> = Vec::new();
    let mut next: Option<Value> = None;
    loop {
        let mut page = json!({ "repositoryName": input["repositoryName"], "maxResults": 1000,
                               "filter": { "tagStatus": "TAGGED" } });
        if let Some(t) = &next {
            page["nextToken"] = t.clone();
        }
        let listed = super::dispatch(ctx, "DescribeImages", page).await?;
        for image in listed["imageDetails"].as_array().into_iter().flatten() {
            let detail = json!({
                "imageDigest": image["imageDigest"],
                "imageSizeInBytes": image["imageSizeInBytes"],
                "imagePushedAt": image["imagePushedAt"],
                "imageManifestMediaType": image["imageManifestMediaType"],
                "artifactMediaType": image["artifactMediaType"],
            });
            for tag in image["imageTags"].as_array().into_iter().flatten().filter_map(Value::as_str) {
                let entry = json!({ "imageTag": tag, "createdAt": image["imagePushedAt"], "imageDetail": detail });
                details.push((tag.to_string(), entry));
            }
        }
        match listed.get("nextToken") {
            Some(t) => next = Some(t.clone()),
            None => break,
        }
    }
    details.sort_by(|a, b| a.0.cmp(&b.0));
    let limit = input["maxResults"].as_u64().unwrap_or(100) as u32;
    let token = input["nextToken"].as_str().map(str::to_string);
    let (page, next_token) = ctx.page_of(details, limit, &token, |(tag, _)| tag)?;
    let mut out = json!({ "imageTagDetails": page.into_iter().map(|(_, v)| v).collect::<Vec<_>>() });
    if let Some(t) = next_token {
        out["nextToken"] = json!(t);
    }
    Ok(out)
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct SetPolicyInput {
    policy_text: String,
    #[serde(default)]
    force: bool,
}
