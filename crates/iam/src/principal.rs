//! The `Principal` and `NotPrincipal` elements of resource-based policies.
//!
//! IAM matches principal ARNs exactly: a wildcard is allowed only as the whole value `*`. An
//! account (`arn:aws:iam::123456789012:root` or the bare `123456789012`) stands for every
//! principal of that account, but grants to the account rather than to the principal itself:
//! the account's own identity policies must then allow the request too.

use crate::context::Principal;
use crate::json::Json;

/// Whom an applicable `Allow` statement named.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Grantee {
    /// The caller itself: its user or role ARN, `*`, or (in `NotPrincipal`) everyone but the
    /// listed. Identity-policy Allows always grant to the caller.
    Caller,
    /// Only the caller's account (`arn:aws:iam::<account>:root` or the bare id): the account
    /// delegates through its own identity policies, which must then allow the request too.
    Account,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum AwsPrincipal {
    Any,
    Account(Box<str>),
    Arn(Box<str>),
}

#[derive(Debug, Clone)]
pub(crate) struct PrincipalSpec {
    negated: bool,
    /// `"Principal": "*"` or `{"AWS": "*"}`.
    any: bool,
    aws: Vec<AwsPrincipal>,
    /// `Service`, `Federated` and `CanonicalUser` principals: validated and kept, but no Berth
    /// caller is one of them, so they never match.
    #[allow(dead_code)]
    others: Vec<(&'static str, Box<str>)>,
}

fn is_account_id(s: &str) -> bool {
    s.len() == 12 && s.bytes().all(|b| b.is_ascii_digit())
}

/// Parses one `AWS` principal value.
fn aws_principal(s: &str) -> Result<AwsPrincipal, String> {
    if s == "*" {
        return Ok(AwsPrincipal::Any);
    }
    if is_account_id(s) {
        return Ok(AwsPrincipal::Account(s.into()));
    }
    let bad = || {
        format!(
            "{s:?} is not \"*\", a 12-digit account id or an IAM ARN \
             (arn:aws:iam::123456789012:user/name, :role/name or :root)"
        )
    };
    let p: Vec<&str> = s.splitn(6, ':').collect();
    if p.len() != 6 || p[0] != "arn" || p[1].is_empty() || !matches!(p[2], "iam" | "sts") {
        return Err(bad());
    }
    if !p[3].is_empty() || !is_account_id(p[4]) || p[5].is_empty() {
        return Err(bad());
    }
    if s.contains(['*', '?']) {
        return Err(format!("{s:?}: wildcards are not allowed in principal ARNs (only \"*\" alone)"));
    }
    if p[5] == "root" {
        return Ok(AwsPrincipal::Account(p[4].into()));
    }
    Ok(AwsPrincipal::Arn(s.into()))
}

/// A string or a non-empty list of strings, each with its path.
pub(crate) fn strings<'a>(value: &'a Json, path: &str) -> Result<Vec<(String, &'a str)>, (String, String)> {
    match value {
        Json::String(s) => Ok(vec![(path.to_owned(), s.as_str())]),
        Json::Array(items) if items.is_empty() => Err((path.to_owned(), "must not be an empty list".to_owned())),
        Json::Array(items) => items
            .iter()
            .enumerate()
            .map(|(i, item)| match item {
                Json::String(s) => Ok((format!("{path}[{i}]"), s.as_str())),
                other => Err((format!("{path}[{i}]"), format!("must be a string, not {}", other.kind()))),
            })
            .collect(),
        other => Err((path.to_owned(), format!("must be a string or a list of strings, not {}", other.kind()))),
    }
}

impl PrincipalSpec {
    /// Parses the value of `Principal` (or, `negated`, `NotPrincipal`) at `path`; errors are
    /// (path, message).
    pub(crate) fn parse(value: &Json, negated: bool, path: &str) -> Result<PrincipalSpec, (String, String)> {
        let mut spec = PrincipalSpec { negated, any: false, aws: Vec::new(), others: Vec::new() };
        let shape =
            || (path.to_owned(), "must be \"*\" or an object with AWS, Service, Federated or CanonicalUser".to_owned());
        match value {
            Json::String(s) if s == "*" => spec.any = true,
            Json::Object(members) if !members.is_empty() => {
                for (i, (key, v)) in members.iter().enumerate() {
                    let here = format!("{path}.{key}");
                    if members[..i].iter().any(|(k, _)| k == key) {
                        return Err((path.to_owned(), format!("duplicate key {key:?}")));
                    }
                    let kind: &'static str = match key.as_str() {
                        "AWS" => "AWS",
                        "Service" => "Service",
                        "Federated" => "Federated",
                        "CanonicalUser" => "CanonicalUser",
                        other => {
                            return Err((
                                path.to_owned(),
                                format!(
                                    "unknown principal type {other:?} (expected AWS, Service, \
                                     Federated or CanonicalUser)"
                                ),
                            ));
                        }
                    };
                    for (p, s) in strings(v, &here)? {
                        if kind == "AWS" {
                            let parsed = aws_principal(s).map_err(|m| (p, m))?;
                            spec.any |= parsed == AwsPrincipal::Any;
                            spec.aws.push(parsed);
                        } else if s.is_empty() || s.contains(char::is_whitespace) {
                            return Err((p, format!("{s:?} is not a {kind} principal")));
                        } else {
                            spec.others.push((kind, s.into()));
                        }
                    }
                }
            }
            _ => return Err(shape()),
        }
        Ok(spec)
    }

    /// How the listed principals name `caller`: [`Grantee::Caller`] for its own ARN or `*`,
    /// [`Grantee::Account`] for only its account, `None` for not at all.
    fn names(&self, caller: &Principal) -> Option<Grantee> {
        if self.any {
            return Some(Grantee::Caller);
        }
        let mut best = None;
        for p in &self.aws {
            match p {
                AwsPrincipal::Arn(arn) if **arn == *caller.arn => return Some(Grantee::Caller),
                AwsPrincipal::Account(acct) if **acct == *caller.account => {
                    // The root user is its account, so naming the account names the root.
                    if caller.is_root {
                        return Some(Grantee::Caller);
                    }
                    best = Some(Grantee::Account);
                }
                _ => {}
            }
        }
        best
    }

    /// Whether the statement applies to `caller`, and how it names the caller. `NotPrincipal`
    /// applies to everyone it does not name, and then grants like `*` would.
    pub(crate) fn applies(&self, caller: &Principal) -> Option<Grantee> {
        let named = self.names(caller);
        if self.negated { named.is_none().then_some(Grantee::Caller) } else { named }
    }
}
