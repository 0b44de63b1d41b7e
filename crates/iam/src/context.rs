//! What a request brings to the decision: who calls, which action on which resource, and the
//! condition context keys.

use std::borrow::Cow;
use std::net::IpAddr;

use crate::time::format_iso8601;

/// The authenticated caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// The IAM identity's ARN: `arn:aws:iam::123456789012:user/alice`,
    /// `arn:aws:iam::123456789012:role/ci`, or `arn:aws:iam::123456789012:root` for the root.
    /// For a role session pass the role's ARN: policies name roles, not sessions.
    pub arn: String,
    /// The caller's 12-digit account id.
    pub account: String,
    /// Whether the caller is the account's root user.
    pub is_root: bool,
    /// The IAM user name (`aws:username`); `None` for roles and the root.
    pub username: Option<String>,
    /// The unique id (`aws:userid`), e.g. `AIDAEXAMPLE` or the account id for the root.
    pub userid: String,
}

impl Principal {
    /// The root user of `account`.
    pub fn root(account: &str) -> Principal {
        Principal {
            arn: format!("arn:aws:iam::{account}:root"),
            account: account.to_owned(),
            is_root: true,
            username: None,
            userid: account.to_owned(),
        }
    }

    /// The IAM user `name` (at path `/`) in `account`.
    pub fn user(account: &str, name: &str, userid: &str) -> Principal {
        Principal {
            arn: format!("arn:aws:iam::{account}:user/{name}"),
            account: account.to_owned(),
            is_root: false,
            username: Some(name.to_owned()),
            userid: userid.to_owned(),
        }
    }

    /// The IAM role `name` (at path `/`) in `account`.
    pub fn role(account: &str, name: &str, userid: &str) -> Principal {
        Principal {
            arn: format!("arn:aws:iam::{account}:role/{name}"),
            account: account.to_owned(),
            is_root: false,
            username: None,
            userid: userid.to_owned(),
        }
    }
}

/// A lowercased context key name and its hash, computed once (when a policy is parsed, or a
/// key inserted), so that a lookup compares integers before it compares strings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct KeyName {
    hash: u64,
    name: Cow<'static, str>,
}

/// FNV-1a: short keys, no need for anything stronger.
fn fnv1a(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3))
}

impl KeyName {
    /// `name` in any case.
    pub(crate) fn new(name: &str) -> KeyName {
        let name = name.to_lowercase();
        KeyName { hash: fnv1a(&name), name: Cow::Owned(name) }
    }

    /// An already lowercased name.
    fn lower(name: &'static str) -> KeyName {
        KeyName { hash: fnv1a(name), name: Cow::Borrowed(name) }
    }

    pub(crate) fn as_str(&self) -> &str {
        &self.name
    }
}

impl From<&str> for KeyName {
    fn from(name: &str) -> KeyName {
        KeyName::new(name)
    }
}

/// Condition context keys: case-insensitive names, each with one or more values.
///
/// A short vector scanned linearly: a request carries a dozen keys or so, and comparing a few
/// precomputed hashes beats a hash map.
#[derive(Debug, Clone, Default)]
pub struct ContextKeys {
    entries: Vec<(KeyName, Vec<String>)>,
}

impl ContextKeys {
    /// Sets `key` (any case) to `values`, replacing what it had.
    pub fn insert(&mut self, key: &str, values: Vec<String>) {
        self.insert_name(KeyName::new(key), values);
    }

    fn insert_name(&mut self, key: KeyName, values: Vec<String>) {
        match self.entries.iter_mut().find(|(k, _)| *k == key) {
            Some((_, v)) => *v = values,
            None => self.entries.push((key, values)),
        }
    }

    /// The values of `key`, in any case.
    pub fn get(&self, key: &str) -> Option<&[String]> {
        self.lookup(&KeyName::new(key))
    }

    pub(crate) fn lookup(&self, key: &KeyName) -> Option<&[String]> {
        self.entries.iter().find(|(k, _)| k.hash == key.hash && k.name == key.name).map(|(_, v)| v.as_slice())
    }

    /// Removes `key` (any case).
    pub fn remove(&mut self, key: &str) {
        let key = KeyName::new(key);
        self.entries.retain(|(k, _)| *k != key);
    }

    /// The keys (lowercased) and their values.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &[String])> {
        self.entries.iter().map(|(k, v)| (k.as_str(), v.as_slice()))
    }
}

/// One request to authorize.
#[derive(Debug, Clone)]
pub struct RequestContext {
    pub(crate) principal: Principal,
    action: String,
    /// Lowercased once here so that every action pattern compares without allocating.
    pub(crate) action_lower: String,
    pub(crate) resource: String,
    pub(crate) resource_account: String,
    pub(crate) keys: ContextKeys,
}

impl RequestContext {
    /// A request by `principal` to do `action` (`ecr:BatchGetImage`) on `resource` (an ARN, or
    /// `*` for actions without a resource such as `ecr:GetAuthorizationToken`) owned by
    /// `resource_account`.
    ///
    /// Fills `aws:PrincipalArn`, `aws:PrincipalAccount`, `aws:userid` and (for users)
    /// `aws:username` from the principal; add the rest with [`RequestContext::insert`] and the
    /// typed setters.
    pub fn new(
        principal: Principal,
        action: impl Into<String>,
        resource: impl Into<String>,
        resource_account: impl Into<String>,
    ) -> RequestContext {
        let action = action.into();
        let mut keys = ContextKeys { entries: Vec::with_capacity(12) };
        keys.insert_name(KeyName::lower("aws:principalarn"), vec![principal.arn.clone()]);
        keys.insert_name(KeyName::lower("aws:principalaccount"), vec![principal.account.clone()]);
        keys.insert_name(KeyName::lower("aws:userid"), vec![principal.userid.clone()]);
        if let Some(name) = &principal.username {
            keys.insert_name(KeyName::lower("aws:username"), vec![name.clone()]);
        }
        RequestContext {
            principal,
            action_lower: action.to_lowercase(),
            action,
            resource: resource.into(),
            resource_account: resource_account.into(),
            keys,
        }
    }

    /// Sets the condition key `key` (any case) to `values`, replacing what it had.
    pub fn insert(&mut self, key: &str, values: Vec<String>) {
        self.keys.insert(key, values);
    }

    /// Builder form of [`RequestContext::insert`] for a single value.
    pub fn with(mut self, key: &str, value: impl Into<String>) -> RequestContext {
        self.keys.insert(key, vec![value.into()]);
        self
    }

    /// Builder form of [`RequestContext::insert`] for several values.
    pub fn with_values<I, S>(mut self, key: &str, values: I) -> RequestContext
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.keys.insert(key, values.into_iter().map(Into::into).collect());
        self
    }

    /// `aws:SourceIp`.
    pub fn set_source_ip(&mut self, ip: IpAddr) {
        self.keys.insert_name(KeyName::lower("aws:sourceip"), vec![ip.to_string()]);
    }

    /// `aws:SecureTransport`.
    pub fn set_secure_transport(&mut self, tls: bool) {
        self.keys.insert_name(KeyName::lower("aws:securetransport"), vec![tls.to_string()]);
    }

    /// `aws:CurrentTime` (ISO 8601, UTC) and `aws:EpochTime` from seconds since the epoch.
    pub fn set_current_time(&mut self, epoch_seconds: i64) {
        self.keys.insert_name(KeyName::lower("aws:currenttime"), vec![format_iso8601(epoch_seconds)]);
        self.keys.insert_name(KeyName::lower("aws:epochtime"), vec![epoch_seconds.to_string()]);
    }

    pub fn principal(&self) -> &Principal {
        &self.principal
    }

    /// The action as given (not lowercased).
    pub fn action(&self) -> &str {
        &self.action
    }

    pub fn resource(&self) -> &str {
        &self.resource
    }

    pub fn resource_account(&self) -> &str {
        &self.resource_account
    }

    pub fn keys(&self) -> &ContextKeys {
        &self.keys
    }

    pub fn keys_mut(&mut self) -> &mut ContextKeys {
        &mut self.keys
    }
}
