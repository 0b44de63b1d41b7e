//! Policy documents: parsing with validation, compiled statements, and per-policy evaluation.

use std::fmt;

use crate::condition::{Condition, Operator};
use crate::context::RequestContext;
use crate::json::Json;
use crate::principal::{Grantee, PrincipalSpec, strings};
use crate::template::{ArnPattern, Template, split_arn, tokenize};

/// One policy's verdict on a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PolicyOutcome {
    ExplicitDeny { statement: usize },
    Allow { statement: usize, grantee: Grantee },
    NotApplicable,
}

/// Where a policy is attached, which decides the elements it must have.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PolicyKind {
    /// Attached to a user, group or role: no `Principal`, a `Resource` or `NotResource`.
    Identity,
    /// Attached to a resource (an ECR repository policy): a `Principal` or `NotPrincipal`;
    /// without `Resource` a statement is about the resource it is attached to.
    Resource,
}

impl fmt::Display for PolicyKind {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str(match self {
            PolicyKind::Identity => "identity policy",
            PolicyKind::Resource => "resource policy",
        })
    }
}

/// The policy language version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Version {
    /// `2008-10-17`, also what a policy without `Version` gets: no policy variables, so `${...}`
    /// is literal text.
    V2008,
    /// `2012-10-17`: policy variables in `Resource` and condition values.
    V2012,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Effect {
    Allow,
    Deny,
}

/// A policy's reason to reject a document: the JSON path of the offending element and what is
/// wrong with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PolicyError {
    /// Not JSON at all (serde_json's message, with line and column).
    Json(String),
    /// Valid JSON, but not a valid policy. `path` is empty for the document itself.
    Invalid { path: String, message: String },
}

impl fmt::Display for PolicyError {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        match self {
            PolicyError::Json(e) => write!(f, "the policy is not valid JSON: {e}"),
            PolicyError::Invalid { path, message } if path.is_empty() => f.write_str(message),
            PolicyError::Invalid { path, message } => write!(f, "{path}: {message}"),
        }
    }
}

impl std::error::Error for PolicyError {}

fn invalid(path: impl Into<String>, message: impl Into<String>) -> PolicyError {
    PolicyError::Invalid { path: path.into(), message: message.into() }
}

impl From<(String, String)> for PolicyError {
    fn from((path, message): (String, String)) -> PolicyError {
        PolicyError::Invalid { path, message }
    }
}

/// A parsed, validated and compiled policy.
#[derive(Debug, Clone)]
pub struct PolicyDocument {
    kind: PolicyKind,
    version: Version,
    id: Option<String>,
    statements: Vec<Statement>,
}

/// One compiled statement.
#[derive(Debug, Clone)]
pub struct Statement {
    sid: Option<String>,
    effect: Effect,
    /// `None` in identity policies, where the principal is whoever the policy is attached to.
    principal: Option<PrincipalSpec>,
    actions: ActionSet,
    /// `None`: a resource policy statement without `Resource` (this resource).
    resources: Option<ResourceSet>,
    conditions: Vec<Condition>,
}

#[derive(Debug, Clone)]
struct ActionSet {
    negated: bool,
    /// Lowercased: actions compare without regard to case.
    patterns: Box<[Template]>,
}

#[derive(Debug, Clone)]
enum ResourcePattern {
    Any,
    Arn(ArnPattern),
}

#[derive(Debug, Clone)]
struct ResourceSet {
    negated: bool,
    patterns: Box<[ResourcePattern]>,
}

/// The request as the statements see it, with the resource ARN split once.
pub(crate) struct Req<'a> {
    pub(crate) ctx: &'a RequestContext,
    resource: Option<[&'a str; 6]>,
}

impl<'a> Req<'a> {
    pub(crate) fn new(ctx: &'a RequestContext) -> Req<'a> {
        Req { ctx, resource: split_arn(&ctx.resource) }
    }
}

fn is_action(s: &str) -> bool {
    if s == "*" {
        return true;
    }
    let Some((service, name)) = s.split_once(':') else {
        return false;
    };
    let ok = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '*' | '?');
    !service.is_empty() && !name.is_empty() && service.chars().all(ok) && name.chars().all(ok)
}

fn is_condition_key(s: &str) -> bool {
    matches!(s.split_once(':'), Some((prefix, name)) if !prefix.is_empty() && !name.is_empty())
        && !s.contains(char::is_whitespace)
}

/// Rejects a key that occurs twice among `members`.
fn no_duplicates(members: &[(String, Json)], path: &str) -> Result<(), PolicyError> {
    for (i, (key, _)) in members.iter().enumerate() {
        if members[..i].iter().any(|(k, _)| k == key) {
            return Err(invalid(path, format!("duplicate key {key:?}")));
        }
    }
    Ok(())
}

/// A condition value as text: IAM takes strings, numbers and booleans alike.
fn scalar(v: &Json) -> Option<String> {
    match v {
        Json::String(s) => Some(s.clone()),
        Json::Number(n) => Some(n.clone()),
        Json::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

impl PolicyDocument {
    /// Parses and validates a policy of the given kind. Errors name the element, e.g.
    /// `Statement[1].Condition.IpAddress."aws:SourceIp": "10.0.0.300/8" is not an IPv4 or IPv6
    /// address or CIDR`. A single statement object counts as `Statement[0]`.
    pub fn parse(text: &str, kind: PolicyKind) -> Result<PolicyDocument, PolicyError> {
        let json: Json = serde_json::from_str(text).map_err(|e| PolicyError::Json(e.to_string()))?;
        let Json::Object(members) = &json else {
            return Err(invalid("", format!("the policy must be a JSON object, not {}", json.kind())));
        };
        no_duplicates(members, "")?;
        let (mut version, mut id, mut statement) = (Version::V2008, None, None);
        for (key, value) in members {
            match (key.as_str(), value) {
                ("Version", Json::String(v)) if v == "2012-10-17" => version = Version::V2012,
                ("Version", Json::String(v)) if v == "2008-10-17" => version = Version::V2008,
                ("Version", v) => {
                    return Err(invalid(
                        "Version",
                        format!("{} is not a policy language version (2012-10-17 or 2008-10-17)", shown(v)),
                    ));
                }
                ("Id", Json::String(v)) => id = Some(v.clone()),
                ("Id", v) => return Err(invalid("Id", format!("must be a string, not {}", v.kind()))),
                ("Statement", v) => statement = Some(v),
                (other, _) => {
                    return Err(invalid(
                        "",
                        format!("unknown top-level key {other:?} (expected Version, Id, Statement)"),
                    ));
                }
            }
        }
        let statement = statement.ok_or_else(|| invalid("", "the policy has no Statement"))?;
        let items: Vec<&Json> = match statement {
            Json::Object(_) => vec![statement],
            Json::Array(items) if items.is_empty() => {
                return Err(invalid("Statement", "must not be an empty list"));
            }
            Json::Array(items) => items.iter().collect(),
            other => {
                return Err(invalid(
                    "Statement",
                    format!("must be an object or a list of objects, not {}", other.kind()),
                ));
            }
        };
        let mut statements: Vec<Statement> = Vec::with_capacity(items.len());
        for (i, item) in items.into_iter().enumerate() {
            let path = format!("Statement[{i}]");
            let s = Statement::parse(item, &path, kind, version)?;
            if let Some(sid) = &s.sid
                && let Some(j) = statements.iter().position(|o| o.sid.as_ref() == Some(sid))
            {
                return Err(invalid(format!("{path}.Sid"), format!("duplicate Sid {sid:?} (also Statement[{j}])")));
            }
            statements.push(s);
        }
        Ok(PolicyDocument { kind, version, id, statements })
    }

    pub fn kind(&self) -> PolicyKind {
        self.kind
    }

    pub fn version(&self) -> Version {
        self.version
    }

    /// The policy's `Id`.
    pub fn id(&self) -> Option<&str> {
        self.id.as_deref()
    }

    pub fn statements(&self) -> &[Statement] {
        &self.statements
    }

    /// This policy's verdict on a request, alone: the first statement that denies it, else the
    /// statement that allows it (preferring one that names the caller over one that names only
    /// its account), else not applicable.
    pub fn evaluate(&self, ctx: &RequestContext) -> PolicyOutcome {
        self.evaluate_req(&Req::new(ctx))
    }

    pub(crate) fn evaluate_req(&self, req: &Req) -> PolicyOutcome {
        let mut allow: Option<(usize, Grantee)> = None;
        for (i, s) in self.statements.iter().enumerate() {
            match s.effect {
                Effect::Deny => {
                    if s.applies(req).is_some() {
                        return PolicyOutcome::ExplicitDeny { statement: i };
                    }
                }
                // Once an Allow names the caller, further Allows cannot improve on it; only
                // Denies remain to be looked at.
                Effect::Allow if matches!(allow, Some((_, Grantee::Caller))) => {}
                Effect::Allow => {
                    if let Some(g) = s.applies(req)
                        && (allow.is_none() || g == Grantee::Caller)
                    {
                        allow = Some((i, g));
                    }
                }
            }
        }
        match allow {
            Some((statement, grantee)) => PolicyOutcome::Allow { statement, grantee },
            None => PolicyOutcome::NotApplicable,
        }
    }
}

/// A JSON value in an error message: strings quoted, others by kind.
fn shown(v: &Json) -> String {
    match v {
        Json::String(s) => format!("{s:?}"),
        Json::Number(n) => n.clone(),
        other => other.kind().to_owned(),
    }
}

impl Statement {
    pub fn sid(&self) -> Option<&str> {
        self.sid.as_deref()
    }

    pub fn effect(&self) -> Effect {
        self.effect
    }

    fn parse(json: &Json, path: &str, kind: PolicyKind, version: Version) -> Result<Statement, PolicyError> {
        let Json::Object(members) = json else {
            return Err(invalid(path, format!("a statement must be an object, not {}", json.kind())));
        };
        no_duplicates(members, path)?;
        let variables = version == Version::V2012;
        let mut sid = None;
        let mut effect = None;
        let mut principal: Option<(&str, &Json)> = None;
        let mut action: Option<(&str, &Json)> = None;
        let mut resource: Option<(&str, &Json)> = None;
        let mut condition = None;
        for (key, value) in members {
            let here = format!("{path}.{key}");
            let slot = match key.as_str() {
                "Sid" => match value {
                    Json::String(s) => {
                        sid = Some(s.clone());
                        continue;
                    }
                    v => return Err(invalid(here, format!("must be a string, not {}", v.kind()))),
                },
                "Effect" => match value {
                    Json::String(s) if s == "Allow" => {
                        effect = Some(Effect::Allow);
                        continue;
                    }
                    Json::String(s) if s == "Deny" => {
                        effect = Some(Effect::Deny);
                        continue;
                    }
                    v => return Err(invalid(here, format!("{} is not Allow or Deny", shown(v)))),
                },
                "Condition" => {
                    condition = Some(value);
                    continue;
                }
                "Principal" | "NotPrincipal" => &mut principal,
                "Action" | "NotAction" => &mut action,
                "Resource" | "NotResource" => &mut resource,
                other => {
                    return Err(invalid(
                        path,
                        format!(
                            "unknown key {other:?} (expected Sid, Effect, Principal, NotPrincipal, \
                             Action, NotAction, Resource, NotResource, Condition)"
                        ),
                    ));
                }
            };
            if let Some((first, _)) = slot {
                let (a, b) = if first.starts_with("Not") { (key.as_str(), *first) } else { (*first, key.as_str()) };
                return Err(invalid(path, format!("has both {a} and {b}")));
            }
            *slot = Some((key.as_str(), value));
        }

        let effect = effect.ok_or_else(|| invalid(path, "has no Effect"))?;

        let principal = match (kind, principal) {
            (PolicyKind::Identity, Some((name, _))) => {
                return Err(invalid(path, format!("{name} is not allowed in an identity-based policy")));
            }
            (PolicyKind::Identity, None) => None,
            (PolicyKind::Resource, None) => {
                return Err(invalid(
                    path,
                    "has neither Principal nor NotPrincipal (a resource-based policy needs one)",
                ));
            }
            (PolicyKind::Resource, Some((name, value))) => {
                Some(PrincipalSpec::parse(value, name == "NotPrincipal", &format!("{path}.{name}"))?)
            }
        };

        let (name, value) = action.ok_or_else(|| invalid(path, "has neither Action nor NotAction"))?;
        let mut patterns = Vec::new();
        for (p, s) in strings(value, &format!("{path}.{name}"))? {
            if !is_action(s) {
                return Err(invalid(
                    p,
                    format!("{s:?} is not an action (service:Action, wildcards allowed, or \"*\")"),
                ));
            }
            patterns.push(Template::glob_lowercase(s));
        }
        let actions = ActionSet { negated: name == "NotAction", patterns: patterns.into() };

        let resources = match (kind, resource) {
            (PolicyKind::Identity, None) => {
                return Err(invalid(path, "has neither Resource nor NotResource"));
            }
            (PolicyKind::Resource, None) => None,
            (_, Some((name, value))) => {
                let mut patterns = Vec::new();
                for (p, s) in strings(value, &format!("{path}.{name}"))? {
                    if s == "*" {
                        patterns.push(ResourcePattern::Any);
                        continue;
                    }
                    let toks = tokenize(s, variables, true).map_err(|m| invalid(&p, m))?;
                    let arn = ArnPattern::compile(toks).ok_or_else(|| {
                        invalid(
                            &p,
                            format!(
                                "{s:?} is not \"*\" or an ARN \
                                 (arn:partition:service:region:account:resource)"
                            ),
                        )
                    })?;
                    patterns.push(ResourcePattern::Arn(arn));
                }
                Some(ResourceSet { negated: name == "NotResource", patterns: patterns.into() })
            }
        };

        let conditions = match condition {
            None => Vec::new(),
            Some(c) => parse_conditions(c, &format!("{path}.Condition"), variables)?,
        };

        Ok(Statement { sid, effect, principal, actions, resources, conditions })
    }

    /// Whether the statement applies to the request, and then how it names the caller. The
    /// cheap tests come first: most statements of a policy fail on the action.
    fn applies(&self, req: &Req) -> Option<Grantee> {
        let keys = &req.ctx.keys;
        let action = &req.ctx.action_lower;
        if self.actions.patterns.iter().any(|p| p.matches(action, keys)) == self.actions.negated {
            return None;
        }
        if let Some(r) = &self.resources {
            let hit = r.patterns.iter().any(|p| match p {
                ResourcePattern::Any => true,
                ResourcePattern::Arn(arn) => req.resource.is_some_and(|parts| arn.matches(&parts, keys)),
            });
            if hit == r.negated {
                return None;
            }
        }
        let grantee = match &self.principal {
            None => Grantee::Caller,
            Some(p) => p.applies(&req.ctx.principal)?,
        };
        self.conditions.iter().all(|c| c.evaluate(keys)).then_some(grantee)
    }
}

fn parse_conditions(json: &Json, path: &str, variables: bool) -> Result<Vec<Condition>, PolicyError> {
    let Json::Object(ops) = json else {
        return Err(invalid(path, format!("must be an object of condition operators, not {}", json.kind())));
    };
    no_duplicates(ops, path)?;
    let mut conditions = Vec::new();
    for (op_name, block) in ops {
        let op = Operator::parse(op_name).map_err(|m| invalid(path, m))?;
        let op_path = format!("{path}.{op_name}");
        let Json::Object(entries) = block else {
            return Err(invalid(
                op_path,
                format!("must be an object of condition keys and values, not {}", block.kind()),
            ));
        };
        if entries.is_empty() {
            return Err(invalid(op_path, "has no condition keys"));
        }
        no_duplicates(entries, &op_path)?;
        for (key, values) in entries {
            if !is_condition_key(key) {
                return Err(invalid(
                    &op_path,
                    format!("{key:?} is not a condition key (service:name, e.g. aws:SourceIp)"),
                ));
            }
            let key_path = format!("{op_path}.{key:?}");
            let (texts, listed) = match values {
                Json::Array(items) if items.is_empty() => {
                    return Err(invalid(key_path, "has no values"));
                }
                Json::Array(items) => {
                    let mut texts = Vec::with_capacity(items.len());
                    for (i, item) in items.iter().enumerate() {
                        texts.push(scalar(item).ok_or_else(|| {
                            invalid(
                                format!("{key_path}[{i}]"),
                                format!("must be a string, number or boolean, not {}", item.kind()),
                            )
                        })?);
                    }
                    (texts, true)
                }
                v => (
                    vec![scalar(v).ok_or_else(|| {
                        invalid(
                            &key_path,
                            format!("must be a string, number, boolean or a list of them, not {}", v.kind()),
                        )
                    })?],
                    false,
                ),
            };
            let condition = Condition::compile(op, key, &texts, variables).map_err(|(i, m)| {
                if listed { invalid(format!("{key_path}[{i}]"), m) } else { invalid(&key_path, m) }
            })?;
            conditions.push(condition);
        }
    }
    Ok(conditions)
}
