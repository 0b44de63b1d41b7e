//! The authorization decision over all policies that bear on a request.

use std::fmt;

use crate::context::RequestContext;
use crate::policy::{PolicyDocument, PolicyKind, PolicyOutcome, Req};
use crate::principal::Grantee;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Decision {
    Allow,
    /// Nothing allowed the request (the default).
    ImplicitDeny,
    /// A `Deny` statement applied.
    ExplicitDeny,
}

impl fmt::Display for Decision {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str(match self {
            Decision::Allow => "allowed",
            Decision::ImplicitDeny => "implicitly denied",
            Decision::ExplicitDeny => "explicitly denied",
        })
    }
}

/// A statement of one of the policies passed to [`authorize`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatementRef {
    pub kind: PolicyKind,
    /// Index into the identity or resource policy slice.
    pub policy: usize,
    /// The policy's `Id`.
    pub policy_id: Option<String>,
    /// Index into the policy's statements.
    pub statement: usize,
    pub sid: Option<String>,
}

impl fmt::Display for StatementRef {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "Statement[{}]", self.statement)?;
        if let Some(sid) = &self.sid {
            write!(f, " (Sid {sid:?})")?;
        }
        write!(f, " of {} #{}", self.kind, self.policy)?;
        if let Some(id) = &self.policy_id {
            write!(f, " (Id {id:?})")?;
        }
        Ok(())
    }
}

/// Why [`authorize`] decided as it did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reason {
    /// A Deny statement applied.
    ExplicitDeny(StatementRef),
    /// The root user acting in its own account, with no resource-policy Deny.
    RootOfResourceAccount,
    /// Same account: an identity-policy Allow.
    IdentityAllow(StatementRef),
    /// Same account: a resource-policy Allow naming the caller itself.
    ResourceAllow(StatementRef),
    /// Across accounts: both sides allow. `identity` is `None` when the caller is its account's
    /// root, which needs no identity policy.
    CrossAccountAllow { identity: Option<StatementRef>, resource: StatementRef },
    /// No policy allowed the request.
    NoAllow,
    /// Same account: the resource policy grants to the account only, and no identity policy
    /// allows the request.
    AccountGrantWithoutIdentityAllow(StatementRef),
    /// Across accounts: the resource policy allows, the caller's identity policies do not.
    CrossAccountWithoutIdentityAllow(StatementRef),
    /// Across accounts: the caller's side allows (`None`: it is the root), the resource
    /// policies do not.
    CrossAccountWithoutResourceAllow(Option<StatementRef>),
    /// A KMS key: its key policy allows nothing to the caller or its account, so no identity
    /// policy (nor being the account's root) can allow the request.
    KeyPolicyWithoutAllow,
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        match self {
            Reason::ExplicitDeny(s) => write!(f, "explicit deny in {s}"),
            Reason::RootOfResourceAccount => f.write_str("the account's root user in its own account"),
            Reason::IdentityAllow(s) => write!(f, "allowed by {s}"),
            Reason::ResourceAllow(s) => write!(f, "allowed by {s}"),
            Reason::CrossAccountAllow { identity: Some(i), resource } => {
                write!(f, "cross-account: allowed by {i} and by {resource}")
            }
            Reason::CrossAccountAllow { identity: None, resource } => {
                write!(f, "cross-account: the caller's account root, allowed by {resource}")
            }
            Reason::NoAllow => f.write_str("no policy allows the action"),
            Reason::AccountGrantWithoutIdentityAllow(s) => {
                write!(f, "{s} grants the action only to the account, and no identity policy allows it")
            }
            Reason::CrossAccountWithoutIdentityAllow(s) => {
                write!(f, "cross-account: {s} allows the action, but no identity policy of the caller does")
            }
            Reason::CrossAccountWithoutResourceAllow(Some(s)) => {
                write!(f, "cross-account: {s} allows the action, but no resource policy does")
            }
            Reason::CrossAccountWithoutResourceAllow(None) => {
                f.write_str("cross-account: no resource policy allows the action to the caller's account")
            }
            Reason::KeyPolicyWithoutAllow => {
                f.write_str("the key policy allows the action neither to the caller nor to its account")
            }
        }
    }
}

/// The decision on a request, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Authorization {
    pub decision: Decision,
    pub reason: Reason,
}

impl Authorization {
    pub fn is_allowed(&self) -> bool {
        self.decision == Decision::Allow
    }
}

impl fmt::Display for Authorization {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "{}: {}", self.decision, self.reason)
    }
}

fn statement_ref(kind: PolicyKind, policies: &[&PolicyDocument], (policy, statement): (usize, usize)) -> StatementRef {
    let doc = policies[policy];
    StatementRef {
        kind,
        policy,
        policy_id: doc.id().map(str::to_owned),
        statement,
        sid: doc.statements()[statement].sid().map(str::to_owned),
    }
}

/// Decides a request as AWS does for identity-based and resource-based policies:
///
/// 1. an applicable `Deny` in any policy denies (explicitly);
/// 2. the root user of the resource's account is allowed;
/// 3. same account: an identity-policy Allow, or a resource-policy Allow naming the caller
///    itself, allows. A resource-policy Allow naming only the account delegates to the account,
///    whose identity policies must then allow;
/// 4. across accounts: the caller's identity policies (or its being its account's root) and a
///    resource policy (naming the caller or its account) must both allow;
/// 5. otherwise the request is implicitly denied.
///
/// Pass only the identity policies attached to the caller (none for a root user) and the
/// resource policies attached to the resource.
pub fn authorize(
    ctx: &RequestContext,
    identity_policies: &[&PolicyDocument],
    resource_policies: &[&PolicyDocument],
) -> Authorization {
    decide(ctx, identity_policies, resource_policies, Rule::Standard)
}

/// Decides a request on a KMS key as KMS does: the key policy is the root of the decision.
///
/// 1. an applicable `Deny` in any policy denies (explicitly);
/// 2. a key-policy Allow naming the caller itself allows in the key's account — the account's
///    root user included, which, unlike other resources, has no access the key policy does not
///    give it;
/// 3. a key-policy Allow naming the caller's account (the default key policy's
///    `arn:aws:iam::<account>:root` statement) delegates to that account's identity policies,
///    which must then allow (a root user needs none);
/// 4. across accounts, the caller's identity policies must allow as well, whatever the key
///    policy names;
/// 5. otherwise the request is implicitly denied.
///
/// Grants are not policies: the caller checks them itself when this denies implicitly.
pub fn authorize_with_key_policy(
    ctx: &RequestContext,
    identity_policies: &[&PolicyDocument],
    key_policy: &PolicyDocument,
) -> Authorization {
    decide(ctx, identity_policies, &[key_policy], Rule::KeyPolicy)
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Rule {
    Standard,
    /// The resource policy must allow, as a KMS key policy must.
    KeyPolicy,
}

fn decide(
    ctx: &RequestContext,
    identity_policies: &[&PolicyDocument],
    resource_policies: &[&PolicyDocument],
    rule: Rule,
) -> Authorization {
    let req = Req::new(ctx);
    let deny = |kind, policies: &[&PolicyDocument], at| Authorization {
        decision: Decision::ExplicitDeny,
        reason: Reason::ExplicitDeny(statement_ref(kind, policies, at)),
    };
    let allow = |reason| Authorization { decision: Decision::Allow, reason };
    let implicit = |reason| Authorization { decision: Decision::ImplicitDeny, reason };

    let mut identity_allow = None;
    for (i, p) in identity_policies.iter().enumerate() {
        match p.evaluate_req(&req) {
            PolicyOutcome::ExplicitDeny { statement } => {
                return deny(PolicyKind::Identity, identity_policies, (i, statement));
            }
            PolicyOutcome::Allow { statement, .. } => {
                identity_allow.get_or_insert((i, statement));
            }
            PolicyOutcome::NotApplicable => {}
        }
    }
    let (mut to_caller, mut to_account) = (None, None);
    for (i, p) in resource_policies.iter().enumerate() {
        match p.evaluate_req(&req) {
            PolicyOutcome::ExplicitDeny { statement } => {
                return deny(PolicyKind::Resource, resource_policies, (i, statement));
            }
            PolicyOutcome::Allow { statement, grantee: Grantee::Caller } => {
                to_caller.get_or_insert((i, statement));
            }
            PolicyOutcome::Allow { statement, grantee: Grantee::Account } => {
                to_account.get_or_insert((i, statement));
            }
            PolicyOutcome::NotApplicable => {}
        }
    }

    let caller = &ctx.principal;
    let identity_ref = |at| statement_ref(PolicyKind::Identity, identity_policies, at);
    let resource_ref = |at| statement_ref(PolicyKind::Resource, resource_policies, at);
    if rule == Rule::KeyPolicy && caller.account == ctx.resource_account {
        if let Some(at) = to_caller {
            return allow(Reason::ResourceAllow(resource_ref(at)));
        }
        return match (to_account, identity_allow) {
            (None, _) => implicit(Reason::KeyPolicyWithoutAllow),
            (Some(_), Some(at)) => allow(Reason::IdentityAllow(identity_ref(at))),
            (Some(at), None) => implicit(Reason::AccountGrantWithoutIdentityAllow(resource_ref(at))),
        };
    }
    if caller.account == ctx.resource_account {
        if caller.is_root {
            return allow(Reason::RootOfResourceAccount);
        }
        if let Some(at) = identity_allow {
            return allow(Reason::IdentityAllow(identity_ref(at)));
        }
        if let Some(at) = to_caller {
            return allow(Reason::ResourceAllow(resource_ref(at)));
        }
        if let Some(at) = to_account {
            return implicit(Reason::AccountGrantWithoutIdentityAllow(resource_ref(at)));
        }
        return implicit(Reason::NoAllow);
    }
    let identity_ok = identity_allow.is_some() || caller.is_root;
    match (identity_ok, to_caller.or(to_account)) {
        (true, Some(at)) => {
            allow(Reason::CrossAccountAllow { identity: identity_allow.map(identity_ref), resource: resource_ref(at) })
        }
        (false, Some(at)) => implicit(Reason::CrossAccountWithoutIdentityAllow(resource_ref(at))),
        (true, None) => implicit(Reason::CrossAccountWithoutResourceAllow(identity_allow.map(identity_ref))),
        (false, None) => implicit(Reason::NoAllow),
    }
}
