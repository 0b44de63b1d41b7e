//! The IAM Query API subset Berth serves, so that `aws iam … --endpoint-url` manages Berth's
//! users, groups, access keys and policies: `POST /` with a form body (`Action=…&Version=
//! 2010-05-08&…`), SigV4 for the service `iam`, XML answers in IAM's shapes and IAM's error
//! codes. Each call is authorized as `iam:<Action>` (the root may do everything; a user needs an
//! identity policy allowing it) and then carried out by `registry::iam::IamAdmin`, the same
//! code `berth admin` uses.

use std::fmt::Write as _;

use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use berth_meta::{Group, ManagedPolicy, Principal};
use berth_registry::authz::{RequestEnv, Target};
use berth_registry::iam::{IamAdmin, IamError, KeyStatus, Owner};
use berth_registry::identity::{AuthError, Caller, principal_arn};

use super::{AppState, now_seconds};

const XMLNS: &str = "https://iam.amazonaws.com/doc/2010-05-08/";

fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c => out.push(c),
        }
    }
    out
}

fn date(ms: i64) -> String {
    berth_iam::format_iso8601(ms / 1000)
}

fn request_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

fn xml(status: StatusCode, body: String) -> Response {
    (status, [(header::CONTENT_TYPE, "text/xml")], body).into_response()
}

/// An IAM error: its code and message.
struct Failure {
    code: String,
    message: String,
}

fn error(code: &str, message: &str) -> Failure {
    Failure { code: code.to_string(), message: message.to_string() }
}

impl IntoResponse for Failure {
    /// `<ErrorResponse><Error><Type/><Code/><Message/></Error>…`, with IAM's status.
    fn into_response(self) -> Response {
        let (code, message) = (self.code.as_str(), self.message.as_str());
        let status = match code {
            "NoSuchEntity" => StatusCode::NOT_FOUND,
            "EntityAlreadyExists" | "DeleteConflict" | "LimitExceeded" => StatusCode::CONFLICT,
            "AccessDenied" | "InvalidClientTokenId" | "SignatureDoesNotMatch" | "MissingAuthenticationToken" => {
                StatusCode::FORBIDDEN
            }
            "ServiceFailure" => StatusCode::INTERNAL_SERVER_ERROR,
            _ => StatusCode::BAD_REQUEST,
        };
        let kind = if status.is_server_error() { "Receiver" } else { "Sender" };
        xml(
            status,
            format!(
                "<ErrorResponse xmlns=\"{XMLNS}\"><Error><Type>{kind}</Type><Code>{code}</Code><Message>{}</Message></Error>\
                 <RequestId>{}</RequestId></ErrorResponse>",
                esc(message),
                request_id()
            ),
        )
    }
}

fn iam_error(e: IamError) -> Failure {
    if let IamError::ServiceFailure(m) = &e {
        tracing::error!(error = %m, "IAM API internal error");
    }
    error(e.code(), &e.to_string())
}

fn auth_error(e: AuthError) -> Failure {
    let code = match e {
        AuthError::Missing => "MissingAuthenticationToken",
        AuthError::UnknownKey => "InvalidClientTokenId",
        AuthError::Incomplete(_) => "IncompleteSignature",
        AuthError::Signature(_) | AuthError::Token(_) => "SignatureDoesNotMatch",
        AuthError::Backend(_) => "ServiceFailure",
    };
    error(code, &e.message())
}

/// A successful answer: `<{Action}Response><{Action}Result>{result}</…Result><ResponseMetadata/>`.
fn ok(action: &str, result: Option<String>) -> Response {
    let result = result.map(|r| format!("<{action}Result>{r}</{action}Result>")).unwrap_or_default();
    xml(
        StatusCode::OK,
        format!(
            "<{action}Response xmlns=\"{XMLNS}\">{result}<ResponseMetadata><RequestId>{}</RequestId></ResponseMetadata></{action}Response>",
            request_id()
        ),
    )
}

fn user_xml(p: &Principal) -> String {
    format!(
        "<Path>/</Path><UserName>{}</UserName><UserId>{}</UserId><Arn>{}</Arn><CreateDate>{}</CreateDate>",
        esc(&p.name),
        esc(&p.id),
        esc(&principal_arn(p)),
        date(p.created_at)
    )
}

fn group_xml(g: &Group) -> String {
    format!(
        "<Path>/</Path><GroupName>{}</GroupName><GroupId>{}</GroupId><Arn>arn:aws:iam::{}:group/{}</Arn><CreateDate>{}</CreateDate>",
        esc(&g.name),
        esc(&g.id),
        g.account_id,
        esc(&g.name),
        date(g.created_at)
    )
}

fn policy_xml(p: &ManagedPolicy, attachments: u64) -> String {
    format!(
        "<PolicyName>{}</PolicyName><PolicyId>{}</PolicyId><Arn>{}</Arn><Path>{}</Path><DefaultVersionId>v1</DefaultVersionId>\
         <AttachmentCount>{attachments}</AttachmentCount><PermissionsBoundaryUsageCount>0</PermissionsBoundaryUsageCount>\
         <IsAttachable>true</IsAttachable><CreateDate>{}</CreateDate><UpdateDate>{}</UpdateDate>",
        esc(&p.name),
        esc(&p.id),
        esc(&p.arn),
        esc(&p.path),
        date(p.created_at),
        date(p.updated_at)
    )
}

fn members<T>(items: &[T], render: impl Fn(&T) -> String) -> String {
    items.iter().fold(String::new(), |mut s, i| {
        let _ = write!(s, "<member>{}</member>", render(i));
        s
    })
}

/// The form's parameters.
struct Params(Vec<(String, String)>);

impl Params {
    fn get(&self, k: &str) -> Option<&str> {
        self.0.iter().find(|(key, _)| key == k).map(|(_, v)| v.as_str())
    }

    fn required(&self, k: &str) -> Result<&str, Failure> {
        self.get(k).filter(|v| !v.is_empty()).ok_or_else(|| {
            error("ValidationError", &format!("1 validation error detected: Value null at '{k}' failed to satisfy constraint: Member must not be null"))
        })
    }
}

/// Whether a request to `POST /` is an IAM Query API call (a form body and no
/// `X-Amz-Target`, which marks the ECR API).
pub fn is_iam_request(headers: &HeaderMap) -> bool {
    !headers.contains_key("x-amz-target")
        && headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"))
}

pub async fn handle(app: &AppState, req: &berth_auth::sigv4::Request<'_>, body: &[u8], env: RequestEnv) -> Response {
    let caller = match app.identity.authenticate_sigv4(req, "iam", now_seconds()).await {
        Ok(c) => c,
        Err(e) => return auth_error(e).into_response(),
    };
    let params = Params(form_urlencoded::parse(body).into_owned().collect());
    let Some(action) = params.get("Action").map(str::to_string) else {
        return error("MissingAction", "Missing Action").into_response();
    };
    let iam = app.registry.iam(&caller.account_id);
    if let Err((code, message)) = authorize(app, &caller, &action, &env).await {
        return error(code, &message).into_response();
    }
    let response = serve(&iam, &caller, &action, &params).await.unwrap_or_else(IntoResponse::into_response);
    if !action.starts_with("Get") && !action.starts_with("List") {
        // Users, groups and policies feed authorization: forget the cached ones after a change.
        app.authorizer.policies_changed().await;
    }
    response
}

/// Authorizes the IAM `action` for `caller`. IAM is per account: the caller manages its own
/// account, authorized against `*` there. A refusal is IAM's (code, message). The web console
/// asks this too before it calls `IamAdmin` as the signed-in principal.
pub async fn authorize(
    app: &AppState,
    caller: &Caller,
    action: &str,
    env: &RequestEnv,
) -> Result<(), (&'static str, String)> {
    let target = Target::Registry(&caller.account_id);
    match app.authorizer.authorize(caller, &format!("iam:{action}"), target, env).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(denied)) => Err(("AccessDenied", denied.message)),
        Err(e) => Err(("ServiceFailure", e.to_string())),
    }
}

async fn serve(iam: &IamAdmin, caller: &Caller, action: &str, p: &Params) -> Result<Response, Failure> {
    let user_or_caller = |name: Option<&str>| {
        let name = name.map(str::to_string);
        async move {
            match name {
                Some(n) => iam.user(&n).await.map_err(iam_error),
                None => iam.key_owner(&caller.access_key_id).await.map_err(iam_error),
            }
        }
    };
    let e = iam_error;
    Ok(match action {
        "CreateUser" => {
            let u = iam.create_user(p.required("UserName")?).await.map_err(e)?;
            ok(action, Some(format!("<User>{}</User>", user_xml(&u))))
        }
        "GetUser" => {
            let u = user_or_caller(p.get("UserName")).await?;
            ok(action, Some(format!("<User>{}</User>", user_xml(&u))))
        }
        "ListUsers" => {
            let users = iam.list_users().await.map_err(e)?;
            ok(action, Some(format!("<Users>{}</Users><IsTruncated>false</IsTruncated>", members(&users, user_xml))))
        }
        "DeleteUser" => {
            iam.delete_user(p.required("UserName")?).await.map_err(e)?;
            ok(action, None)
        }
        "CreateAccessKey" => {
            let u = user_or_caller(p.get("UserName")).await?;
            iam.check_key_quota(&u).await.map_err(e)?;
            let new = iam.create_access_key(&u).await.map_err(e)?;
            ok(
                action,
                Some(format!(
                    "<AccessKey><UserName>{}</UserName><AccessKeyId>{}</AccessKeyId><Status>Active</Status>\
                     <SecretAccessKey>{}</SecretAccessKey><CreateDate>{}</CreateDate></AccessKey>",
                    esc(&u.name),
                    new.key.access_key_id,
                    esc(&new.secret),
                    date(new.key.created_at)
                )),
            )
        }
        "UpdateAccessKey" => {
            let u = user_or_caller(p.get("UserName")).await?;
            let status = KeyStatus::parse(p.required("Status")?).map_err(e)?;
            iam.update_access_key(&u, p.required("AccessKeyId")?, status, false).await.map_err(e)?;
            ok(action, None)
        }
        "DeleteAccessKey" => {
            let u = user_or_caller(p.get("UserName")).await?;
            iam.delete_access_key(&u, p.required("AccessKeyId")?, false).await.map_err(e)?;
            ok(action, None)
        }
        "GetAccessKeyLastUsed" => {
            let (owner, key) = iam.access_key_last_used(p.required("AccessKeyId")?).await.map_err(e)?;
            // A key never used has no date, and N/A for where.
            let used = match &key.last_used {
                Some(u) => format!(
                    "<LastUsedDate>{}</LastUsedDate><ServiceName>{}</ServiceName><Region>{}</Region>",
                    date(u.at),
                    esc(&u.service),
                    esc(&u.region)
                ),
                None => "<ServiceName>N/A</ServiceName><Region>N/A</Region>".into(),
            };
            ok(
                action,
                Some(format!("<UserName>{}</UserName><AccessKeyLastUsed>{used}</AccessKeyLastUsed>", esc(&owner.name))),
            )
        }
        "ListAccessKeys" => {
            let u = user_or_caller(p.get("UserName")).await?;
            let keys = iam.access_keys(&u).await.map_err(e)?;
            let list = members(&keys, |k| {
                format!(
                    "<UserName>{}</UserName><AccessKeyId>{}</AccessKeyId><Status>{}</Status><CreateDate>{}</CreateDate>",
                    esc(&u.name),
                    k.access_key_id,
                    if k.active { "Active" } else { "Inactive" },
                    date(k.created_at)
                )
            });
            ok(action, Some(format!("<AccessKeyMetadata>{list}</AccessKeyMetadata><IsTruncated>false</IsTruncated>")))
        }
        "PutUserPolicy" | "PutGroupPolicy" => {
            let owner = owner(action, p)?;
            iam.put_inline_policy(owner, p.required("PolicyName")?, p.required("PolicyDocument")?).await.map_err(e)?;
            ok(action, None)
        }
        "GetUserPolicy" | "GetGroupPolicy" => {
            let owner = owner(action, p)?;
            let name = p.required("PolicyName")?;
            let doc = iam.inline_policy(owner, name).await.map_err(e)?;
            let (tag, who) = match owner {
                Owner::User(u) => ("UserName", u),
                Owner::Group(g) => ("GroupName", g),
            };
            // IAM returns policy documents URL-encoded; the AWS CLI decodes them.
            let encoded: String =
                form_urlencoded::byte_serialize(doc.as_bytes()).collect::<String>().replace('+', "%20");
            ok(
                action,
                Some(format!(
                    "<{tag}>{}</{tag}><PolicyName>{}</PolicyName><PolicyDocument>{}</PolicyDocument>",
                    esc(who),
                    esc(name),
                    esc(&encoded)
                )),
            )
        }
        "ListUserPolicies" | "ListGroupPolicies" => {
            let names = iam.list_inline_policies(owner(action, p)?).await.map_err(e)?;
            ok(
                action,
                Some(format!(
                    "<PolicyNames>{}</PolicyNames><IsTruncated>false</IsTruncated>",
                    members(&names, |n| esc(n))
                )),
            )
        }
        "DeleteUserPolicy" | "DeleteGroupPolicy" => {
            iam.delete_inline_policy(owner(action, p)?, p.required("PolicyName")?).await.map_err(e)?;
            ok(action, None)
        }
        "AttachUserPolicy" | "AttachGroupPolicy" => {
            iam.attach_policy(owner(action, p)?, p.required("PolicyArn")?).await.map_err(e)?;
            ok(action, None)
        }
        "DetachUserPolicy" | "DetachGroupPolicy" => {
            iam.detach_policy(owner(action, p)?, p.required("PolicyArn")?).await.map_err(e)?;
            ok(action, None)
        }
        "ListAttachedUserPolicies" | "ListAttachedGroupPolicies" => {
            let arns = iam.attached_policies(owner(action, p)?).await.map_err(e)?;
            let list = members(&arns, |a| {
                let name = a.rsplit('/').next().unwrap_or(a);
                format!("<PolicyName>{}</PolicyName><PolicyArn>{}</PolicyArn>", esc(name), esc(a))
            });
            ok(action, Some(format!("<AttachedPolicies>{list}</AttachedPolicies><IsTruncated>false</IsTruncated>")))
        }
        "CreatePolicy" => {
            let policy = iam
                .create_policy(p.required("PolicyName")?, p.get("Path"), p.required("PolicyDocument")?)
                .await
                .map_err(e)?;
            ok(action, Some(format!("<Policy>{}</Policy>", policy_xml(&policy, 0))))
        }
        "GetPolicy" => {
            let arn = p.required("PolicyArn")?;
            let (policy, n) = iam.managed_policy(arn).await.map_err(e)?;
            ok(action, Some(format!("<Policy>{}</Policy>", policy_xml(&policy, n))))
        }
        "ListPolicies" => {
            let mut list = String::new();
            for (policy, n) in iam.managed_policies().await.map_err(e)? {
                let _ = write!(list, "<member>{}</member>", policy_xml(&policy, n));
            }
            ok(action, Some(format!("<Policies>{list}</Policies><IsTruncated>false</IsTruncated>")))
        }
        "DeletePolicy" => {
            iam.delete_policy(p.required("PolicyArn")?).await.map_err(e)?;
            ok(action, None)
        }
        "CreateGroup" => {
            let g = iam.create_group(p.required("GroupName")?).await.map_err(e)?;
            ok(action, Some(format!("<Group>{}</Group>", group_xml(&g))))
        }
        "GetGroup" => {
            let g = iam.group(p.required("GroupName")?).await.map_err(e)?;
            let users = iam.group_members(&g).await.map_err(e)?;
            ok(
                action,
                Some(format!(
                    "<Group>{}</Group><Users>{}</Users><IsTruncated>false</IsTruncated>",
                    group_xml(&g),
                    members(&users, user_xml)
                )),
            )
        }
        "ListGroups" => {
            let groups = iam.list_groups().await.map_err(e)?;
            ok(
                action,
                Some(format!("<Groups>{}</Groups><IsTruncated>false</IsTruncated>", members(&groups, group_xml))),
            )
        }
        "AddUserToGroup" => {
            iam.add_user_to_group(p.required("GroupName")?, p.required("UserName")?).await.map_err(e)?;
            ok(action, None)
        }
        "RemoveUserFromGroup" => {
            iam.remove_user_from_group(p.required("GroupName")?, p.required("UserName")?).await.map_err(e)?;
            ok(action, None)
        }
        _ => return Err(error("InvalidAction", &format!("Berth does not serve the IAM action {action:?}"))),
    })
}

/// The user or group an inline-policy or attachment action is about.
fn owner<'a>(action: &str, p: &'a Params) -> Result<Owner<'a>, Failure> {
    if action.contains("Group") {
        p.required("GroupName").map(Owner::Group)
    } else {
        p.required("UserName").map(Owner::User)
    }
}
