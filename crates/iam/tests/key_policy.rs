//! KMS's rule: a key's policy must allow, directly or by delegating to the account's IAM
//! policies, even for the account's root user; across accounts both sides must allow.

use berth_iam::{Decision, PolicyDocument, PolicyKind, Principal, Reason, RequestContext, authorize_with_key_policy};

const ACCT: &str = "111122223333";
const OTHER: &str = "444455556666";
const KEY: &str = "arn:aws:kms:us-east-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab";

/// KMS's default key policy: the account's root may do everything, which enables IAM policies.
const DEFAULT: &str = r#"{"Version": "2012-10-17", "Id": "key-default-1", "Statement": [{"Sid": "Enable IAM User Permissions", "Effect": "Allow", "Principal": {"AWS": "arn:aws:iam::111122223333:root"}, "Action": "kms:*", "Resource": "*"}]}"#;
/// Only alice, by name: no delegation to IAM.
const ALICE_ONLY: &str = r#"{"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Principal": {"AWS": "arn:aws:iam::111122223333:user/alice"}, "Action": ["kms:Decrypt", "kms:DescribeKey"], "Resource": "*"}]}"#;
const DEFAULT_AND_OTHER_DECRYPTS: &str = r#"{"Version": "2012-10-17", "Statement": [
    {"Effect": "Allow", "Principal": {"AWS": "arn:aws:iam::111122223333:root"}, "Action": "kms:*", "Resource": "*"},
    {"Sid": "AccountB", "Effect": "Allow", "Principal": {"AWS": "arn:aws:iam::444455556666:root"}, "Action": "kms:Decrypt", "Resource": "*"}]}"#;
const DEFAULT_AND_DENY_DISABLE: &str = r#"{"Version": "2012-10-17", "Statement": [
    {"Effect": "Allow", "Principal": {"AWS": "arn:aws:iam::111122223333:root"}, "Action": "kms:*", "Resource": "*"},
    {"Effect": "Deny", "Principal": "*", "Action": "kms:DisableKey", "Resource": "*"}]}"#;
const IAM_KMS_ALL: &str =
    r#"{"Version": "2012-10-17", "Statement": {"Effect": "Allow", "Action": "kms:*", "Resource": "*"}}"#;
const IAM_DECRYPT: &str =
    r#"{"Version": "2012-10-17", "Statement": {"Effect": "Allow", "Action": "kms:Decrypt", "Resource": "*"}}"#;

fn decide(caller: Principal, action: &str, identity: &[&str], key_policy: &str) -> (Decision, Reason) {
    let identity: Vec<PolicyDocument> =
        identity.iter().map(|t| PolicyDocument::parse(t, PolicyKind::Identity).unwrap()).collect();
    let refs: Vec<&PolicyDocument> = identity.iter().collect();
    let key = PolicyDocument::parse(key_policy, PolicyKind::Resource).unwrap();
    let ctx = RequestContext::new(caller, action, KEY, ACCT);
    let a = authorize_with_key_policy(&ctx, &refs, &key);
    (a.decision, a.reason)
}

fn alice() -> Principal {
    Principal::user(ACCT, "alice", "AIDAALICE")
}

fn bob() -> Principal {
    Principal::user(ACCT, "bob", "AIDABOB")
}

fn carol() -> Principal {
    Principal::user(OTHER, "carol", "AIDACAROL")
}

#[test]
fn the_default_key_policy_delegates_to_iam_policies() {
    assert_eq!(decide(alice(), "kms:Decrypt", &[IAM_DECRYPT], DEFAULT).0, Decision::Allow);
    let (d, r) = decide(alice(), "kms:Decrypt", &[], DEFAULT);
    assert_eq!(d, Decision::ImplicitDeny);
    assert!(matches!(r, Reason::AccountGrantWithoutIdentityAllow(_)), "{r:?}");
    assert_eq!(decide(alice(), "kms:DisableKey", &[IAM_DECRYPT], DEFAULT).0, Decision::ImplicitDeny);
    assert_eq!(decide(Principal::root(ACCT), "kms:ScheduleKeyDeletion", &[], DEFAULT).0, Decision::Allow);
}

#[test]
fn a_key_policy_that_names_neither_the_caller_nor_its_account_leaves_iam_powerless() {
    // Bob's IAM policy allows every KMS action; the key policy does not delegate.
    let (d, r) = decide(bob(), "kms:Decrypt", &[IAM_KMS_ALL], ALICE_ONLY);
    assert_eq!((d, r), (Decision::ImplicitDeny, Reason::KeyPolicyWithoutAllow));
    // Not even the root user: unlike other resources, a key's account root has only what the
    // key policy gives it.
    assert_eq!(decide(Principal::root(ACCT), "kms:Decrypt", &[], ALICE_ONLY).1, Reason::KeyPolicyWithoutAllow);
    // Alice is named: allowed without any IAM policy, for what is named only.
    assert!(matches!(decide(alice(), "kms:Decrypt", &[], ALICE_ONLY), (Decision::Allow, Reason::ResourceAllow(_))));
    assert_eq!(decide(alice(), "kms:Encrypt", &[IAM_KMS_ALL], ALICE_ONLY).0, Decision::ImplicitDeny);
}

#[test]
fn another_account_needs_the_key_policy_and_its_own_iam_policies() {
    // The seed's scenario: account B's user may pull by the repository policy, but the key
    // policy does not let B decrypt.
    let (d, r) = decide(carol(), "kms:Decrypt", &[IAM_KMS_ALL], DEFAULT);
    assert_eq!(d, Decision::ImplicitDeny);
    assert!(matches!(r, Reason::CrossAccountWithoutResourceAllow(_)), "{r:?}");
    // The key policy changed to allow B's kms:Decrypt: B's IAM policy must allow too.
    assert_eq!(decide(carol(), "kms:Decrypt", &[IAM_DECRYPT], DEFAULT_AND_OTHER_DECRYPTS).0, Decision::Allow);
    assert_eq!(decide(carol(), "kms:Decrypt", &[], DEFAULT_AND_OTHER_DECRYPTS).0, Decision::ImplicitDeny);
    assert_eq!(decide(Principal::root(OTHER), "kms:Decrypt", &[], DEFAULT_AND_OTHER_DECRYPTS).0, Decision::Allow);
    assert_eq!(decide(carol(), "kms:Encrypt", &[IAM_KMS_ALL], DEFAULT_AND_OTHER_DECRYPTS).0, Decision::ImplicitDeny);
}

#[test]
fn an_explicit_deny_in_the_key_policy_wins_even_for_the_root() {
    assert_eq!(decide(alice(), "kms:DisableKey", &[IAM_KMS_ALL], DEFAULT_AND_DENY_DISABLE).0, Decision::ExplicitDeny);
    assert_eq!(
        decide(Principal::root(ACCT), "kms:DisableKey", &[], DEFAULT_AND_DENY_DISABLE).0,
        Decision::ExplicitDeny
    );
    assert_eq!(decide(alice(), "kms:EnableKey", &[IAM_KMS_ALL], DEFAULT_AND_DENY_DISABLE).0, Decision::Allow);
}
