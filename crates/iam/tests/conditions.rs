//! Condition operators, one table row each: an identity policy allowing `ecr:*` on `*` under
//! the given `Condition`, evaluated for alice (same account) with the given context keys.

use berth_iam::{Decision, PolicyDocument, PolicyKind, Principal, RequestContext, authorize};

const ACCT: &str = "111122223333";
const REPO: &str = "arn:aws:ecr:us-east-1:111122223333:repository/app";

type Keys = &'static [(&'static str, &'static [&'static str])];

struct Case {
    name: &'static str,
    condition: &'static str,
    keys: Keys,
    allowed: bool,
}

const fn case(name: &'static str, condition: &'static str, keys: Keys, allowed: bool) -> Case {
    Case { name, condition, keys, allowed }
}

fn decide(version: &str, condition: &str, keys: Keys) -> Decision {
    let text = format!(
        r#"{{{version}"Statement": {{"Effect": "Allow", "Action": "ecr:*", "Resource": "*",
            "Condition": {condition}}}}}"#
    );
    let policy = PolicyDocument::parse(&text, PolicyKind::Identity).unwrap_or_else(|e| panic!("{condition}: {e}"));
    let mut ctx = RequestContext::new(Principal::user(ACCT, "alice", "AIDAALICE"), "ecr:BatchGetImage", REPO, ACCT);
    for (k, v) in keys {
        ctx.insert(k, v.iter().map(|s| s.to_string()).collect());
    }
    authorize(&ctx, &[&policy], &[]).decision
}

const V2012: &str = r#""Version": "2012-10-17", "#;

#[rustfmt::skip]
const CASES: &[Case] = &[
    // String operators. `aws:username`, `aws:PrincipalArn`, `aws:PrincipalAccount` and
    // `aws:userid` come from the principal.
    case("StringEquals matches", r#"{"StringEquals": {"aws:username": "alice"}}"#, &[], true),
    case("StringEquals is case-sensitive in values", r#"{"StringEquals": {"aws:username": "Alice"}}"#, &[], false),
    case("condition keys are case-insensitive", r#"{"StringEquals": {"AWS:UserName": "alice"}}"#, &[], true),
    case("context keys are case-insensitive", r#"{"StringEquals": {"ecr:resourcetag/env": "prod"}}"#, &[("ECR:ResourceTag/Env", &["prod"])], true),
    case("StringEquals values are OR", r#"{"StringEquals": {"aws:username": ["bob", "alice"]}}"#, &[], true),
    case("StringEquals on a missing key is false", r#"{"StringEquals": {"ecr:ResourceTag/team": "x"}}"#, &[], false),
    case("StringNotEquals with another value", r#"{"StringNotEquals": {"aws:username": "bob"}}"#, &[], true),
    case("StringNotEquals with the same value", r#"{"StringNotEquals": {"aws:username": "alice"}}"#, &[], false),
    case("StringNotEquals on a missing key is true", r#"{"StringNotEquals": {"ecr:ResourceTag/team": "x"}}"#, &[], true),
    case("StringEqualsIgnoreCase", r#"{"StringEqualsIgnoreCase": {"aws:username": "ALICE"}}"#, &[], true),
    case("StringEqualsIgnoreCase, upper-case request", r#"{"StringEqualsIgnoreCase": {"ecr:ResourceTag/env": "prod"}}"#, &[("ecr:ResourceTag/env", &["PROD"])], true),
    case("StringNotEqualsIgnoreCase", r#"{"StringNotEqualsIgnoreCase": {"aws:username": "ALICE"}}"#, &[], false),
    case("StringLike with *", r#"{"StringLike": {"aws:PrincipalArn": "arn:aws:iam::111122223333:user/a*"}}"#, &[], true),
    case("StringLike with ?", r#"{"StringLike": {"aws:username": "?lice"}}"#, &[], true),
    case("StringLike ? is exactly one character", r#"{"StringLike": {"aws:username": "?lic"}}"#, &[], false),
    case("StringEquals takes * literally", r#"{"StringEquals": {"aws:username": "a*"}}"#, &[], false),
    case("StringNotLike", r#"{"StringNotLike": {"aws:username": "b*"}}"#, &[], true),
    case("StringNotLike matching", r#"{"StringNotLike": {"aws:username": "a*"}}"#, &[], false),
    case("two keys in one operator are AND", r#"{"StringEquals": {"aws:username": "alice", "aws:PrincipalAccount": "999999999999"}}"#, &[], false),
    case("two operators are AND (both hold)", r#"{"StringEquals": {"aws:username": "alice"}, "Bool": {"aws:SecureTransport": "true"}}"#, &[("aws:SecureTransport", &["true"])], true),
    case("two operators are AND (one fails)", r#"{"StringEquals": {"aws:username": "alice"}, "Bool": {"aws:SecureTransport": "true"}}"#, &[("aws:SecureTransport", &["false"])], false),
    case("StringEqualsIfExists on a missing key", r#"{"StringEqualsIfExists": {"ecr:ResourceTag/team": "x"}}"#, &[], true),
    case("StringEqualsIfExists on a present key", r#"{"StringEqualsIfExists": {"ecr:ResourceTag/team": "x"}}"#, &[("ecr:ResourceTag/team", &["y"])], false),
    case("StringNotEqualsIfExists on an equal key", r#"{"StringNotEqualsIfExists": {"aws:username": "alice"}}"#, &[], false),
    case("single operator on a multi-valued key: any", r#"{"StringEquals": {"aws:TagKeys": "env"}}"#, &[("aws:TagKeys", &["owner", "env"])], true),
    case("negated operator on a multi-valued key: none", r#"{"StringNotEquals": {"aws:TagKeys": "env"}}"#, &[("aws:TagKeys", &["owner", "env"])], false),
    // Numeric.
    case("NumericLessThan", r#"{"NumericLessThan": {"aws:MultiFactorAuthAge": "3600"}}"#, &[("aws:MultiFactorAuthAge", &["100"])], true),
    case("NumericLessThan, larger", r#"{"NumericLessThan": {"aws:MultiFactorAuthAge": "3600"}}"#, &[("aws:MultiFactorAuthAge", &["4000"])], false),
    case("NumericLessThan, equal", r#"{"NumericLessThan": {"aws:MultiFactorAuthAge": "3600"}}"#, &[("aws:MultiFactorAuthAge", &["3600"])], false),
    case("NumericLessThanEquals, equal", r#"{"NumericLessThanEquals": {"aws:MultiFactorAuthAge": 3600}}"#, &[("aws:MultiFactorAuthAge", &["3600"])], true),
    case("NumericGreaterThan", r#"{"NumericGreaterThan": {"ecr:count": "10"}}"#, &[("ecr:count", &["11"])], true),
    case("NumericGreaterThanEquals", r#"{"NumericGreaterThanEquals": {"ecr:count": "10"}}"#, &[("ecr:count", &["9.5"])], false),
    case("NumericEquals compares numbers, not text", r#"{"NumericEquals": {"ecr:count": 10}}"#, &[("ecr:count", &["10.0"])], true),
    case("NumericNotEquals", r#"{"NumericNotEquals": {"ecr:count": "10"}}"#, &[("ecr:count", &["12"])], true),
    case("a non-numeric request value matches nothing", r#"{"NumericLessThan": {"ecr:count": "10"}}"#, &[("ecr:count", &["ten"])], false),
    // Dates: ISO 8601 or epoch seconds, on either side.
    case("DateGreaterThan", r#"{"DateGreaterThan": {"aws:CurrentTime": "2024-01-01T00:00:00Z"}}"#, &[("aws:CurrentTime", &["2024-06-01T12:00:00Z"])], true),
    case("DateLessThan", r#"{"DateLessThan": {"aws:CurrentTime": "2024-01-01T00:00:00Z"}}"#, &[("aws:CurrentTime", &["2024-06-01T12:00:00Z"])], false),
    case("DateLessThanEquals with epoch seconds", r#"{"DateLessThanEquals": {"aws:CurrentTime": 1717243200}}"#, &[("aws:CurrentTime", &["2024-06-01T12:00:00Z"])], true),
    case("DateEquals across offsets", r#"{"DateEquals": {"aws:CurrentTime": "2024-06-01T14:00:00+02:00"}}"#, &[("aws:CurrentTime", &["2024-06-01T12:00:00Z"])], true),
    case("DateNotEquals", r#"{"DateNotEquals": {"aws:CurrentTime": "2024-06-01"}}"#, &[("aws:CurrentTime", &["2024-06-01T12:00:00Z"])], true),
    case("DateGreaterThanEquals, date only", r#"{"DateGreaterThanEquals": {"aws:EpochTime": "2024-06-02"}}"#, &[("aws:EpochTime", &["1717243200"])], false),
    // Bool.
    case("Bool true", r#"{"Bool": {"aws:SecureTransport": "true"}}"#, &[("aws:SecureTransport", &["true"])], true),
    case("Bool false against true", r#"{"Bool": {"aws:SecureTransport": "false"}}"#, &[("aws:SecureTransport", &["true"])], false),
    case("Bool with a JSON boolean", r#"{"Bool": {"aws:SecureTransport": true}}"#, &[("aws:SecureTransport", &["true"])], true),
    case("Bool on a missing key", r#"{"Bool": {"aws:SecureTransport": "true"}}"#, &[], false),
    case("BoolIfExists on a missing key", r#"{"BoolIfExists": {"aws:MultiFactorAuthPresent": "true"}}"#, &[], true),
    // Binary.
    case("BinaryEquals", r#"{"BinaryEquals": {"ecr:blob": "QmVydGg="}}"#, &[("ecr:blob", &["QmVydGg="])], true),
    case("BinaryEquals, different", r#"{"BinaryEquals": {"ecr:blob": "QmVydGg="}}"#, &[("ecr:blob", &["QmVydGk="])], false),
    // IP addresses.
    case("IpAddress in an IPv4 CIDR", r#"{"IpAddress": {"aws:SourceIp": "10.0.0.0/8"}}"#, &[("aws:SourceIp", &["10.1.2.3"])], true),
    case("IpAddress outside an IPv4 CIDR", r#"{"IpAddress": {"aws:SourceIp": "10.0.0.0/8"}}"#, &[("aws:SourceIp", &["192.168.0.1"])], false),
    case("IpAddress, plain address", r#"{"IpAddress": {"aws:SourceIp": "127.0.0.2"}}"#, &[("aws:SourceIp", &["127.0.0.2"])], true),
    case("NotIpAddress outside", r#"{"NotIpAddress": {"aws:SourceIp": "10.0.0.0/8"}}"#, &[("aws:SourceIp", &["192.168.0.1"])], true),
    case("NotIpAddress inside", r#"{"NotIpAddress": {"aws:SourceIp": "10.0.0.0/8"}}"#, &[("aws:SourceIp", &["10.0.0.1"])], false),
    case("IpAddress in an IPv6 CIDR", r#"{"IpAddress": {"aws:SourceIp": "2001:db8::/32"}}"#, &[("aws:SourceIp", &["2001:db8:0:1::5"])], true),
    case("IpAddress outside an IPv6 CIDR", r#"{"IpAddress": {"aws:SourceIp": "2001:db8::/32"}}"#, &[("aws:SourceIp", &["2001:db9::5"])], false),
    case("IPv6 CIDR against an IPv4 caller", r#"{"IpAddress": {"aws:SourceIp": "::/0"}}"#, &[("aws:SourceIp", &["10.0.0.1"])], false),
    case("IpAddress with IPv4 and IPv6 CIDRs", r#"{"IpAddress": {"aws:SourceIp": ["10.0.0.0/8", "2001:db8::/32"]}}"#, &[("aws:SourceIp", &["2001:db8::1"])], true),
    // ARNs.
    case("ArnLike", r#"{"ArnLike": {"aws:PrincipalArn": "arn:aws:iam::*:user/*"}}"#, &[], true),
    case("ArnLike wildcards stay in their part", r#"{"ArnLike": {"aws:SourceArn": "arn:aws:logs:*:log-group:*"}}"#, &[("aws:SourceArn", &["arn:aws:logs:us-east-1:111122223333:log-group:name"])], false),
    case("ArnEquals", r#"{"ArnEquals": {"aws:PrincipalArn": "arn:aws:iam::111122223333:user/alice"}}"#, &[], true),
    case("ArnNotLike", r#"{"ArnNotLike": {"aws:PrincipalArn": "arn:aws:iam::*:role/*"}}"#, &[], true),
    case("ArnNotEquals, equal", r#"{"ArnNotEquals": {"aws:PrincipalArn": "arn:aws:iam::111122223333:user/alice"}}"#, &[], false),
    case("ArnLike on a request value that is no ARN", r#"{"ArnLike": {"aws:SourceArn": "arn:aws:*:*:*:*"}}"#, &[("aws:SourceArn", &["alice"])], false),
    // Null.
    case("Null true on a missing key", r#"{"Null": {"aws:TokenIssueTime": "true"}}"#, &[], true),
    case("Null false on a present key", r#"{"Null": {"aws:username": "false"}}"#, &[], true),
    case("Null true on a present key", r#"{"Null": {"aws:username": true}}"#, &[], false),
    // Set qualifiers.
    case("ForAllValues, every value listed", r#"{"ForAllValues:StringEquals": {"aws:TagKeys": ["env", "team"]}}"#, &[("aws:TagKeys", &["env"])], true),
    case("ForAllValues, one value not listed", r#"{"ForAllValues:StringEquals": {"aws:TagKeys": ["env", "team"]}}"#, &[("aws:TagKeys", &["env", "owner"])], false),
    case("ForAllValues on a missing key is true", r#"{"ForAllValues:StringEquals": {"aws:TagKeys": ["env"]}}"#, &[], true),
    case("ForAllValues on an empty key is true", r#"{"ForAllValues:StringEquals": {"aws:TagKeys": ["env"]}}"#, &[("aws:TagKeys", &[])], true),
    case("ForAllValues:StringLike", r#"{"ForAllValues:StringLike": {"aws:TagKeys": ["team-*"]}}"#, &[("aws:TagKeys", &["team-a", "team-b"])], true),
    case("ForAnyValue, one value listed", r#"{"ForAnyValue:StringEquals": {"aws:TagKeys": "env"}}"#, &[("aws:TagKeys", &["owner", "env"])], true),
    case("ForAnyValue, none listed", r#"{"ForAnyValue:StringEquals": {"aws:TagKeys": "env"}}"#, &[("aws:TagKeys", &["owner"])], false),
    case("ForAnyValue on a missing key is false", r#"{"ForAnyValue:StringEquals": {"aws:TagKeys": "env"}}"#, &[], false),
    case("ForAnyValue...IfExists on a missing key is true", r#"{"ForAnyValue:StringEqualsIfExists": {"aws:TagKeys": "env"}}"#, &[], true),
    case("ForAnyValue:StringNotEquals, one other value", r#"{"ForAnyValue:StringNotEquals": {"aws:TagKeys": "env"}}"#, &[("aws:TagKeys", &["env", "x"])], true),
    case("ForAllValues:StringNotEquals, one listed value", r#"{"ForAllValues:StringNotEquals": {"aws:TagKeys": "env"}}"#, &[("aws:TagKeys", &["env", "x"])], false),
    // Policy variables in condition values.
    case("variable in a value", r#"{"StringEquals": {"ecr:ResourceTag/owner": "${aws:username}"}}"#, &[("ecr:ResourceTag/owner", &["alice"])], true),
    case("variable in a value, other owner", r#"{"StringEquals": {"ecr:ResourceTag/owner": "${aws:username}"}}"#, &[("ecr:ResourceTag/owner", &["bob"])], false),
    case("variable inside a StringLike pattern", r#"{"StringLike": {"ecr:ResourceTag/owner": "${aws:username}-*"}}"#, &[("ecr:ResourceTag/owner", &["alice-team"])], true),
    case("variable default value", r#"{"StringEquals": {"ecr:ResourceTag/team": "${aws:PrincipalTag/team, 'none'}"}}"#, &[("ecr:ResourceTag/team", &["none"])], true),
    case("variable value wins over its default", r#"{"StringEquals": {"ecr:ResourceTag/team": "${aws:PrincipalTag/team, 'none'}"}}"#, &[("ecr:ResourceTag/team", &["none"]), ("aws:PrincipalTag/team", &["blue"])], false),
    case("variable without value or default matches nothing", r#"{"StringEquals": {"ecr:ResourceTag/team": "${aws:PrincipalTag/team}"}}"#, &[("ecr:ResourceTag/team", &[""])], false),
    case("variable in a numeric value", r#"{"NumericLessThan": {"aws:EpochTime": "${ecr:ResourceTag/expires}"}}"#, &[("aws:EpochTime", &["100"]), ("ecr:ResourceTag/expires", &["200"])], true),
    case("${*} is a literal star", r#"{"StringLike": {"ecr:ResourceTag/x": "a${*}"}}"#, &[("ecr:ResourceTag/x", &["ab"])], false),
    case("${*} matches a star", r#"{"StringLike": {"ecr:ResourceTag/x": "a${*}"}}"#, &[("ecr:ResourceTag/x", &["a*"])], true),
    case("${$} and ${?} are literal", r#"{"StringEquals": {"ecr:ResourceTag/x": "${$}${?}"}}"#, &[("ecr:ResourceTag/x", &["$?"])], true),
];

#[test]
fn condition_operators() {
    let mut failures = Vec::new();
    for c in CASES {
        let want = if c.allowed { Decision::Allow } else { Decision::ImplicitDeny };
        let got = decide(V2012, c.condition, c.keys);
        if got != want {
            failures.push(format!("{}: {} gave {got:?}, want {want:?}", c.name, c.condition));
        }
    }
    assert!(failures.is_empty(), "{} of {} failed:\n{}", failures.len(), CASES.len(), failures.join("\n"));
    assert!(CASES.len() >= 60);
}

#[test]
fn version_2008_has_no_policy_variables() {
    let cond = r#"{"StringEquals": {"ecr:ResourceTag/owner": "${aws:username}"}}"#;
    assert_eq!(decide("", cond, &[("ecr:ResourceTag/owner", &["alice"])]), Decision::ImplicitDeny);
    assert_eq!(decide("", cond, &[("ecr:ResourceTag/owner", &["${aws:username}"])]), Decision::Allow);
    let explicit = r#""Version": "2008-10-17", "#;
    assert_eq!(decide(explicit, cond, &[("ecr:ResourceTag/owner", &["alice"])]), Decision::ImplicitDeny);
}
