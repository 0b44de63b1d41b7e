//! The AWS IAM policy language for Berth: parse and validate identity-based and resource-based
//! (repository) policies, and decide requests against them. Pure: no IO.
//!
//! # Evaluation
//!
//! A statement applies to a request when its `Action`/`NotAction`, `Resource`/`NotResource`
//! (absent in a resource policy: the resource it is attached to), `Principal`/`NotPrincipal`
//! (resource policies only) and every `Condition` match. [`authorize`] then decides:
//!
//! * by default a request is denied (implicitly);
//! * an applicable `Deny` in any policy denies explicitly, whatever allows it;
//! * the root user of the account owning the resource may do anything with it, unless a Deny
//!   applies;
//! * within one account, an Allow in the caller's identity policies suffices, and so does an
//!   Allow in a resource policy that names the caller (its ARN or `*`); a resource policy that
//!   names only the account (`arn:aws:iam::<id>:root` or `<id>`) delegates to it, so an
//!   identity-policy Allow is needed as well;
//! * across accounts both sides must allow: the caller's identity policies (its account's root
//!   needs none) and a resource policy naming the caller or the caller's account.
//!
//! Policies are compiled when parsed (lowercased action patterns, split wildcards, parsed
//! CIDRs, numbers and dates), so a decision does not allocate unless a policy variable has to be
//! substituted or a case-insensitive comparison meets upper-case request text.
//!
//! ```
//! use berth_iam::{PolicyDocument, PolicyKind, Principal, RequestContext, authorize};
//!
//! let repo_policy = PolicyDocument::parse(r#"{
//!   "Version": "2012-10-17",
//!   "Statement": [{"Sid": "Pull", "Effect": "Allow",
//!     "Principal": {"AWS": "arn:aws:iam::111122223333:user/alice"},
//!     "Action": ["ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer"]}]
//! }"#, PolicyKind::Resource).unwrap();
//! let alice = Principal::user("111122223333", "alice", "AIDAALICE");
//! let mut ctx = RequestContext::new(alice, "ecr:BatchGetImage",
//!     "arn:aws:ecr:us-east-1:111122223333:repository/app", "111122223333");
//! ctx.set_source_ip("10.1.2.3".parse().unwrap());
//! let decision = authorize(&ctx, &[], &[&repo_policy]);
//! assert!(decision.is_allowed(), "{decision}");
//! ```

mod condition;
mod context;
mod eval;
mod json;
mod net;
mod policy;
mod principal;
mod template;
mod time;
mod wildcard;

pub use context::{ContextKeys, Principal, RequestContext};
pub use eval::{Authorization, Decision, Reason, StatementRef, authorize, authorize_with_key_policy};
pub use net::Cidr;
pub use policy::{Effect, PolicyDocument, PolicyError, PolicyKind, PolicyOutcome, Statement, Version};
pub use principal::Grantee;
pub use time::{format_iso8601, parse_date};
