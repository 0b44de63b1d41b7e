//! What a KMS grant allows, and the key policies Berth's KMS writes itself. Pure.

use std::collections::BTreeMap;

use berth_meta::KmsGrant;
use serde_json::{Map, Value};

/// The grant operations a symmetric encryption key takes.
pub const GRANT_OPERATIONS: [&str; 9] = [
    "Decrypt",
    "Encrypt",
    "GenerateDataKey",
    "GenerateDataKeyWithoutPlaintext",
    "ReEncryptFrom",
    "ReEncryptTo",
    "CreateGrant",
    "RetireGrant",
    "DescribeKey",
];

/// The operations that take an encryption context, to which a grant's constraints apply.
const CRYPTOGRAPHIC: [&str; 6] =
    ["Decrypt", "Encrypt", "GenerateDataKey", "GenerateDataKeyWithoutPlaintext", "ReEncryptFrom", "ReEncryptTo"];

/// A grant's encryption-context constraints.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GrantConstraints {
    /// The request's context must hold every one of these pairs (and may hold more).
    pub subset: Option<BTreeMap<String, String>>,
    /// The request's context must be exactly this.
    pub equals: Option<BTreeMap<String, String>>,
}

impl GrantConstraints {
    pub fn is_empty(&self) -> bool {
        self.subset.is_none() && self.equals.is_none()
    }

    /// KMS's JSON shape (`{"EncryptionContextSubset": {…}, "EncryptionContextEquals": {…}}`).
    pub fn to_json(&self) -> Value {
        let mut o = Map::new();
        if let Some(s) = &self.subset {
            o.insert("EncryptionContextSubset".into(), serde_json::to_value(s).expect("a map"));
        }
        if let Some(e) = &self.equals {
            o.insert("EncryptionContextEquals".into(), serde_json::to_value(e).expect("a map"));
        }
        Value::Object(o)
    }

    /// From the stored JSON; what does not parse constrains to nothing a request can meet.
    pub fn from_stored(text: Option<&str>) -> Option<Self> {
        let Some(text) = text else { return Some(GrantConstraints::default()) };
        let v: Value = serde_json::from_str(text).ok()?;
        let map = |k: &str| match v.get(k) {
            None => Some(None),
            Some(m) => serde_json::from_value::<BTreeMap<String, String>>(m.clone()).ok().map(Some),
        };
        Some(GrantConstraints { subset: map("EncryptionContextSubset")?, equals: map("EncryptionContextEquals")? })
    }

    /// Whether every context these constraints let through is one `other` lets through too: a
    /// grant may pass on no more than it holds.
    pub fn at_least_as_strict_as(&self, other: &GrantConstraints) -> bool {
        let pinned = |pairs: &BTreeMap<String, String>| match (&self.equals, &self.subset) {
            (Some(e), _) => pairs.iter().all(|(k, v)| e.get(k) == Some(v)),
            (None, Some(s)) => pairs.iter().all(|(k, v)| s.get(k) == Some(v)),
            (None, None) => pairs.is_empty(),
        };
        let subset_ok = other.subset.as_ref().is_none_or(pinned);
        let equals_ok = other.equals.as_ref().is_none_or(|e| self.equals.as_ref() == Some(e));
        subset_ok && equals_ok
    }

    /// Whether a request with encryption context `context` meets them.
    pub fn allow(&self, context: &BTreeMap<String, String>) -> bool {
        let subset = self.subset.as_ref().is_none_or(|s| s.iter().all(|(k, v)| context.get(k) == Some(v)));
        let equals = self.equals.as_ref().is_none_or(|e| e == context);
        subset && equals
    }
}

/// Whether `grant` lets `grantee` (a principal's ARN) perform `operation` (KMS's name, e.g.
/// `Decrypt`) with encryption context `context`. A grant with constraints allows only the
/// cryptographic operations whose context meets them (and the others it names, which take none).
pub fn grant_allows(grant: &KmsGrant, grantee: &str, operation: &str, context: &BTreeMap<String, String>) -> bool {
    if grant.grantee_principal != grantee || !grant.operations.iter().any(|o| o == operation) {
        return false;
    }
    if !CRYPTOGRAPHIC.contains(&operation) {
        return true;
    }
    GrantConstraints::from_stored(grant.constraints.as_deref()).is_some_and(|c| c.allow(context))
}

/// KMS's default key policy: the account's root may do everything, which lets IAM policies
/// decide for the account's principals.
pub fn default_key_policy(account: &str) -> String {
    serde_json::json!({
        "Version": "2012-10-17",
        "Id": "key-default-1",
        "Statement": [{
            "Sid": "Enable IAM User Permissions",
            "Effect": "Allow",
            "Principal": {"AWS": format!("arn:aws:iam::{account}:root")},
            "Action": "kms:*",
            "Resource": "*"
        }]
    })
    .to_string()
}

/// The policy of an AWS-managed key such as `aws/ecr`: the account's principals may use it
/// only through the service (`kms:ViaService`), and the root may read its metadata and revoke
/// grants; nobody may change, disable or delete it.
pub fn aws_managed_key_policy(account: &str, service: &str, region: &str) -> String {
    serde_json::json!({
        "Version": "2012-10-17",
        "Id": format!("auto-{service}-1"),
        "Statement": [
            {
                "Sid": format!("Allow access through {service} for all principals in the account that are authorized to use it"),
                "Effect": "Allow",
                "Principal": {"AWS": "*"},
                "Action": ["kms:Encrypt", "kms:Decrypt", "kms:ReEncrypt*", "kms:GenerateDataKey*", "kms:CreateGrant", "kms:DescribeKey", "kms:RetireGrant"],
                "Resource": "*",
                "Condition": {"StringEquals": {"kms:CallerAccount": account, "kms:ViaService": format!("{service}.{region}.amazonaws.com")}}
            },
            {
                "Sid": "Allow direct access to key metadata to the account",
                "Effect": "Allow",
                "Principal": {"AWS": format!("arn:aws:iam::{account}:root")},
                "Action": ["kms:Describe*", "kms:Get*", "kms:List*", "kms:RevokeGrant"],
                "Resource": "*"
            }
        ]
    })
    .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    fn grant(operations: &[&str], constraints: Option<GrantConstraints>) -> KmsGrant {
        KmsGrant {
            grant_id: "g".into(),
            key_id: "k".into(),
            name: None,
            grantee_principal: "arn:aws:iam::111122223333:user/alice".into(),
            retiring_principal: None,
            operations: operations.iter().map(|s| s.to_string()).collect(),
            constraints: constraints.map(|c| c.to_json().to_string()),
            issuing_account: "arn:aws:iam::111122223333:root".into(),
            grant_token: "t".into(),
            created_at: 0,
        }
    }

    const ALICE: &str = "arn:aws:iam::111122223333:user/alice";

    #[test]
    fn a_grant_allows_its_grantee_its_operations() {
        let g = grant(&["Decrypt", "DescribeKey"], None);
        assert!(grant_allows(&g, ALICE, "Decrypt", &ctx(&[])));
        assert!(grant_allows(&g, ALICE, "DescribeKey", &ctx(&[])));
        assert!(!grant_allows(&g, ALICE, "Encrypt", &ctx(&[])));
        assert!(!grant_allows(&g, "arn:aws:iam::111122223333:user/bob", "Decrypt", &ctx(&[])));
        assert!(!grant_allows(&g, "arn:aws:iam::111122223333:root", "Decrypt", &ctx(&[])), "not its account's root");
    }

    #[test]
    fn constraints_bind_the_encryption_context() {
        let subset = GrantConstraints { subset: Some(ctx(&[("repo", "app")])), equals: None };
        let g = grant(&["Decrypt", "DescribeKey"], Some(subset));
        assert!(grant_allows(&g, ALICE, "Decrypt", &ctx(&[("repo", "app")])));
        assert!(grant_allows(&g, ALICE, "Decrypt", &ctx(&[("repo", "app"), ("more", "x")])));
        assert!(!grant_allows(&g, ALICE, "Decrypt", &ctx(&[("repo", "other")])));
        assert!(!grant_allows(&g, ALICE, "Decrypt", &ctx(&[])));
        assert!(grant_allows(&g, ALICE, "DescribeKey", &ctx(&[])), "no context to constrain");
        let equals = GrantConstraints { subset: None, equals: Some(ctx(&[("repo", "app")])) };
        let g = grant(&["Decrypt"], Some(equals.clone()));
        assert!(grant_allows(&g, ALICE, "Decrypt", &ctx(&[("repo", "app")])));
        assert!(!grant_allows(&g, ALICE, "Decrypt", &ctx(&[("repo", "app"), ("more", "x")])));
        let stored = equals.to_json().to_string();
        assert_eq!(GrantConstraints::from_stored(Some(&stored)), Some(equals));
        assert_eq!(GrantConstraints::from_stored(None), Some(GrantConstraints::default()));
        let mut broken = grant(&["Decrypt"], None);
        broken.constraints = Some("not json".into());
        assert!(!grant_allows(&broken, ALICE, "Decrypt", &ctx(&[])), "unreadable constraints allow nothing");
    }

    #[test]
    fn a_grant_passes_on_no_looser_constraints_than_it_holds() {
        let none = GrantConstraints::default();
        let app = GrantConstraints { subset: Some(ctx(&[("repo", "app")])), equals: None };
        let app_more = GrantConstraints { subset: Some(ctx(&[("repo", "app"), ("x", "1")])), equals: None };
        let exactly_app = GrantConstraints { subset: None, equals: Some(ctx(&[("repo", "app")])) };
        assert!(none.at_least_as_strict_as(&none));
        assert!(app.at_least_as_strict_as(&none));
        assert!(!none.at_least_as_strict_as(&app));
        assert!(app_more.at_least_as_strict_as(&app));
        assert!(!app.at_least_as_strict_as(&app_more));
        assert!(exactly_app.at_least_as_strict_as(&app));
        assert!(exactly_app.at_least_as_strict_as(&exactly_app));
        assert!(!app.at_least_as_strict_as(&exactly_app));
        let other = GrantConstraints { subset: Some(ctx(&[("repo", "other")])), equals: None };
        assert!(!other.at_least_as_strict_as(&app));
    }

    #[test]
    fn the_written_policies_parse() {
        for text in [default_key_policy("111122223333"), aws_managed_key_policy("111122223333", "ecr", "us-east-1")] {
            berth_iam::PolicyDocument::parse(&text, berth_iam::PolicyKind::Resource).unwrap();
        }
    }
}
