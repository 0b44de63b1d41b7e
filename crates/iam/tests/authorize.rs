//! The whole decision: actions, resources, principals, deny-overrides, root, same-account and
//! cross-account rules. One table row per case.

use berth_iam::{
    Authorization, Decision, PolicyDocument, PolicyKind, PolicyOutcome, Principal, Reason, RequestContext, authorize,
};

const ACCT: &str = "111122223333";
const OTHER: &str = "444455556666";
const REPO: &str = "arn:aws:ecr:us-east-1:111122223333:repository/app";

#[derive(Clone, Copy)]
enum Caller {
    Alice,
    Bob,
    Root,
    /// carol, an IAM user of the other account.
    Carol,
    OtherRoot,
    /// The role ci of ACCT: no `aws:username`.
    Role,
}

impl Caller {
    fn principal(self) -> Principal {
        match self {
            Caller::Alice => Principal::user(ACCT, "alice", "AIDAALICE"),
            Caller::Bob => Principal::user(ACCT, "bob", "AIDABOB"),
            Caller::Root => Principal::root(ACCT),
            Caller::Carol => Principal::user(OTHER, "carol", "AIDACAROL"),
            Caller::OtherRoot => Principal::root(OTHER),
            Caller::Role => Principal::role(ACCT, "ci", "AROACI"),
        }
    }
}

struct Case {
    name: &'static str,
    identity: &'static [&'static str],
    resource: &'static [&'static str],
    caller: Caller,
    action: &'static str,
    /// An ARN in ACCT, or `*`.
    target: &'static str,
    keys: &'static [(&'static str, &'static str)],
    want: Decision,
}

use Caller::*;
use Decision::{Allow, ExplicitDeny, ImplicitDeny};

const ALLOW_ALL: &str =
    r#"{"Version": "2012-10-17", "Statement": {"Effect": "Allow", "Action": "ecr:*", "Resource": "*"}}"#;
const PULL_REPO_TO_CAROL: &str = r#"{"Version": "2012-10-17", "Statement": {"Effect": "Allow", "Principal": {"AWS": "arn:aws:iam::444455556666:user/carol"}, "Action": "ecr:BatchGetImage"}}"#;
const PULL_REPO_TO_OTHER_ACCOUNT: &str = r#"{"Version": "2012-10-17", "Statement": {"Effect": "Allow", "Principal": {"AWS": "arn:aws:iam::444455556666:root"}, "Action": "ecr:BatchGetImage"}}"#;
const DENY_FROM_127_0_0_2: &str = r#"{"Version": "2012-10-17", "Statement": {"Sid": "NoLocal2", "Effect": "Deny", "Principal": "*", "Action": "ecr:*", "Condition": {"IpAddress": {"aws:SourceIp": "127.0.0.2/32"}}}}"#;

// One argument per column keeps each table row on one line.
#[allow(clippy::too_many_arguments)]
const fn case(
    name: &'static str,
    identity: &'static [&'static str],
    resource: &'static [&'static str],
    caller: Caller,
    action: &'static str,
    target: &'static str,
    keys: &'static [(&'static str, &'static str)],
    want: Decision,
) -> Case {
    Case { name, identity, resource, caller, action, target, keys, want }
}

#[rustfmt::skip]
const CASES: &[Case] = &[
    case("no policy: implicit deny", &[], &[], Alice, "ecr:BatchGetImage", REPO, &[], ImplicitDeny),
    case("identity Allow", &[ALLOW_ALL], &[], Alice, "ecr:BatchGetImage", REPO, &[], Allow),
    case("action * wildcard", &[r#"{"Statement": {"Effect": "Allow", "Action": "ecr:Batch*", "Resource": "*"}}"#], &[], Alice, "ecr:BatchGetImage", REPO, &[], Allow),
    case("action * wildcard, other action", &[r#"{"Statement": {"Effect": "Allow", "Action": "ecr:Batch*", "Resource": "*"}}"#], &[], Alice, "ecr:PutImage", REPO, &[], ImplicitDeny),
    case("action ? wildcard", &[r#"{"Statement": {"Effect": "Allow", "Action": "ecr:?etDownloadUrlForLayer", "Resource": "*"}}"#], &[], Alice, "ecr:GetDownloadUrlForLayer", REPO, &[], Allow),
    case("action alone *", &[r#"{"Statement": {"Effect": "Allow", "Action": "*", "Resource": "*"}}"#], &[], Alice, "ecr:PutImage", REPO, &[], Allow),
    case("actions are case-insensitive", &[r#"{"Statement": {"Effect": "Allow", "Action": "ECR:batchgetIMAGE", "Resource": "*"}}"#], &[], Alice, "ecr:BatchGetImage", REPO, &[], Allow),
    case("the request action's case does not matter", &[r#"{"Statement": {"Effect": "Allow", "Action": "ecr:BatchGetImage", "Resource": "*"}}"#], &[], Alice, "ECR:BATCHGETIMAGE", REPO, &[], Allow),
    case("action of another service", &[r#"{"Statement": {"Effect": "Allow", "Action": "s3:*", "Resource": "*"}}"#], &[], Alice, "ecr:BatchGetImage", REPO, &[], ImplicitDeny),
    case("NotAction allows the others", &[r#"{"Statement": {"Effect": "Allow", "NotAction": "ecr:Delete*", "Resource": "*"}}"#], &[], Alice, "ecr:BatchGetImage", REPO, &[], Allow),
    case("NotAction leaves out the listed", &[r#"{"Statement": {"Effect": "Allow", "NotAction": "ecr:Delete*", "Resource": "*"}}"#], &[], Alice, "ecr:DeleteRepository", REPO, &[], ImplicitDeny),
    case("resource * wildcard", &[ r#"{"Statement": {"Effect": "Allow", "Action": "ecr:*", "Resource": "arn:aws:ecr:*:111122223333:repository/ap*"}}"#, ], &[], Alice, "ecr:BatchGetImage", REPO, &[], Allow),
    case("resource * wildcard, other repository", &[ r#"{"Statement": {"Effect": "Allow", "Action": "ecr:*", "Resource": "arn:aws:ecr:*:111122223333:repository/ap*"}}"#, ], &[], Alice, "ecr:BatchGetImage", "arn:aws:ecr:us-east-1:111122223333:repository/web", &[], ImplicitDeny),
    case("resource ? wildcard", &[ r#"{"Statement": {"Effect": "Allow", "Action": "ecr:*", "Resource": "arn:aws:ecr:us-east-?:111122223333:repository/ap?"}}"#, ], &[], Alice, "ecr:BatchGetImage", REPO, &[], Allow),
    case("resources are case-sensitive", &[ r#"{"Statement": {"Effect": "Allow", "Action": "ecr:*", "Resource": "arn:aws:ecr:us-east-1:111122223333:repository/App"}}"#, ], &[], Alice, "ecr:BatchGetImage", REPO, &[], ImplicitDeny),
    case("resource list", &[ r#"{"Statement": {"Effect": "Allow", "Action": "ecr:*", "Resource": ["arn:aws:ecr:us-east-1:111122223333:repository/web", "arn:aws:ecr:us-east-1:111122223333:repository/app"]}}"#, ], &[], Alice, "ecr:BatchGetImage", REPO, &[], Allow),
    case("NotResource allows the others", &[ r#"{"Statement": {"Effect": "Allow", "Action": "ecr:*", "NotResource": "arn:aws:ecr:*:*:repository/secret*"}}"#, ], &[], Alice, "ecr:BatchGetImage", REPO, &[], Allow),
    case("NotResource leaves out the listed", &[ r#"{"Statement": {"Effect": "Allow", "Action": "ecr:*", "NotResource": "arn:aws:ecr:*:*:repository/secret*"}}"#, ], &[], Alice, "ecr:BatchGetImage", "arn:aws:ecr:us-east-1:111122223333:repository/secret-app", &[], ImplicitDeny),
    case("resource * for actions without a resource", &[ALLOW_ALL], &[], Alice, "ecr:GetAuthorizationToken", "*", &[], Allow),
    case("an ARN pattern does not match the resource *", &[r#"{"Statement": {"Effect": "Allow", "Action": "ecr:*", "Resource": "arn:aws:ecr:*:*:*"}}"#], &[], Alice, "ecr:GetAuthorizationToken", "*", &[], ImplicitDeny),
    case("the second identity policy allows", &[r#"{"Statement": {"Effect": "Allow", "Action": "s3:*", "Resource": "*"}}"#, ALLOW_ALL], &[], Alice, "ecr:BatchGetImage", REPO, &[], Allow),
    // Policy variables in Resource.
    case("${aws:username} in Resource", &[ r#"{"Version": "2012-10-17", "Statement": {"Effect": "Allow", "Action": "ecr:*", "Resource": "arn:aws:ecr:*:*:repository/${aws:username}/*"}}"#, ], &[], Alice, "ecr:BatchGetImage", "arn:aws:ecr:us-east-1:111122223333:repository/alice/app", &[], Allow),
    case("${aws:username} in Resource, someone else's", &[ r#"{"Version": "2012-10-17", "Statement": {"Effect": "Allow", "Action": "ecr:*", "Resource": "arn:aws:ecr:*:*:repository/${aws:username}/*"}}"#, ], &[], Alice, "ecr:BatchGetImage", "arn:aws:ecr:us-east-1:111122223333:repository/bob/app", &[], ImplicitDeny),
    case("variable default in Resource", &[ r#"{"Version": "2012-10-17", "Statement": {"Effect": "Allow", "Action": "ecr:*", "Resource": "arn:aws:ecr:*:*:repository/${aws:PrincipalTag/team, 'shared'}/*"}}"#, ], &[], Alice, "ecr:BatchGetImage", "arn:aws:ecr:us-east-1:111122223333:repository/shared/app", &[], Allow),
    case("variable from a tag in Resource", &[ r#"{"Version": "2012-10-17", "Statement": {"Effect": "Allow", "Action": "ecr:*", "Resource": "arn:aws:ecr:*:*:repository/${aws:PrincipalTag/team, 'shared'}/*"}}"#, ], &[], Alice, "ecr:BatchGetImage", "arn:aws:ecr:us-east-1:111122223333:repository/blue/app", &[("aws:PrincipalTag/team", "blue")], Allow),
    case("variable without value in Resource", &[ r#"{"Version": "2012-10-17", "Statement": {"Effect": "Allow", "Action": "ecr:*", "Resource": "arn:aws:ecr:*:*:repository/${aws:username}/*"}}"#, ], &[], Role, "ecr:BatchGetImage", "arn:aws:ecr:us-east-1:111122223333:repository/alice/app", &[], ImplicitDeny),
    case("variable without value, resource policy naming the role", &[], &[ r#"{"Version": "2012-10-17", "Statement": {"Effect": "Allow", "Principal": {"AWS": "arn:aws:iam::111122223333:role/ci"}, "Action": "ecr:*", "Resource": "arn:aws:ecr:*:*:repository/${aws:username, 'ci'}/*"}}"#, ], Role, "ecr:BatchGetImage", "arn:aws:ecr:us-east-1:111122223333:repository/ci/app", &[], Allow),
    case("2008-10-17: ${...} is literal in Resource", &[ r#"{"Statement": {"Effect": "Allow", "Action": "ecr:*", "Resource": "arn:aws:ecr:*:*:repository/${aws:username}"}}"#, ], &[], Alice, "ecr:BatchGetImage", "arn:aws:ecr:us-east-1:111122223333:repository/alice", &[], ImplicitDeny),
    // Explicit deny.
    case("identity Deny overrides identity Allow", &[ALLOW_ALL, r#"{"Statement": {"Effect": "Deny", "Action": "ecr:BatchGetImage", "Resource": "*"}}"#], &[], Alice, "ecr:BatchGetImage", REPO, &[], ExplicitDeny),
    case("Deny in the same policy overrides Allow", &[ r#"{"Statement": [{"Effect": "Allow", "Action": "ecr:*", "Resource": "*"}, {"Effect": "Deny", "Action": "ecr:Delete*", "Resource": "*"}]}"#, ], &[], Alice, "ecr:DeleteRepository", REPO, &[], ExplicitDeny),
    case("resource Deny overrides identity Allow", &[ALLOW_ALL], &[ r#"{"Statement": {"Effect": "Deny", "Principal": {"AWS": "arn:aws:iam::111122223333:user/alice"}, "Action": "ecr:*"}}"#, ], Alice, "ecr:BatchGetImage", REPO, &[], ExplicitDeny),
    case("identity Deny overrides resource Allow", &[r#"{"Statement": {"Effect": "Deny", "Action": "ecr:*", "Resource": "*"}}"#], &[r#"{"Statement": {"Effect": "Allow", "Principal": "*", "Action": "ecr:*"}}"#], Alice, "ecr:BatchGetImage", REPO, &[], ExplicitDeny),
    case("a Deny for others does not apply", &[ALLOW_ALL], &[ r#"{"Statement": {"Effect": "Deny", "Principal": {"AWS": "arn:aws:iam::111122223333:user/bob"}, "Action": "ecr:*"}}"#, ], Alice, "ecr:BatchGetImage", REPO, &[], Allow),
    case("Deny from 127.0.0.2/32: caller 127.0.0.2", &[ALLOW_ALL], &[DENY_FROM_127_0_0_2], Alice, "ecr:BatchGetImage", REPO, &[("aws:SourceIp", "127.0.0.2")], ExplicitDeny),
    case("Deny from 127.0.0.2/32: caller 127.0.0.1", &[ALLOW_ALL], &[DENY_FROM_127_0_0_2], Alice, "ecr:BatchGetImage", REPO, &[("aws:SourceIp", "127.0.0.1")], Allow),
    case("Deny outside 2001:db8::/32: caller inside", &[ALLOW_ALL], &[ r#"{"Statement": {"Effect": "Deny", "Principal": "*", "Action": "ecr:*", "Condition": {"NotIpAddress": {"aws:SourceIp": "2001:db8::/32"}}}}"#, ], Alice, "ecr:BatchGetImage", REPO, &[("aws:SourceIp", "2001:db8::5")], Allow),
    case("Deny outside 2001:db8::/32: caller outside", &[ALLOW_ALL], &[ r#"{"Statement": {"Effect": "Deny", "Principal": "*", "Action": "ecr:*", "Condition": {"NotIpAddress": {"aws:SourceIp": "2001:db8::/32"}}}}"#, ], Alice, "ecr:BatchGetImage", REPO, &[("aws:SourceIp", "::1")], ExplicitDeny),
    case("Deny without TLS: plain HTTP", &[ALLOW_ALL], &[ r#"{"Statement": {"Effect": "Deny", "Principal": "*", "Action": "ecr:*", "Condition": {"Bool": {"aws:SecureTransport": "false"}}}}"#, ], Alice, "ecr:BatchGetImage", REPO, &[("aws:SecureTransport", "false")], ExplicitDeny),
    case("Deny without TLS: TLS", &[ALLOW_ALL], &[ r#"{"Statement": {"Effect": "Deny", "Principal": "*", "Action": "ecr:*", "Condition": {"Bool": {"aws:SecureTransport": "false"}}}}"#, ], Alice, "ecr:BatchGetImage", REPO, &[("aws:SecureTransport", "true")], Allow),
    case("Deny after a date, before it", &[ALLOW_ALL], &[ r#"{"Statement": {"Effect": "Deny", "Principal": "*", "Action": "ecr:*", "Condition": {"DateGreaterThan": {"aws:CurrentTime": "2030-01-01T00:00:00Z"}}}}"#, ], Alice, "ecr:BatchGetImage", REPO, &[("aws:CurrentTime", "2029-12-31T23:59:59Z")], Allow),
    case("Deny after a date, after it", &[ALLOW_ALL], &[ r#"{"Statement": {"Effect": "Deny", "Principal": "*", "Action": "ecr:*", "Condition": {"DateGreaterThan": {"aws:CurrentTime": "2030-01-01T00:00:00Z"}}}}"#, ], Alice, "ecr:BatchGetImage", REPO, &[("aws:CurrentTime", "2030-01-01T00:00:01Z")], ExplicitDeny),
    case("Deny unless tagged prod (StringNotEquals on a missing tag)", &[ALLOW_ALL], &[ r#"{"Statement": {"Effect": "Deny", "Principal": "*", "Action": "ecr:PutImage", "Condition": {"StringNotEquals": {"ecr:ResourceTag/env": "prod"}}}}"#, ], Alice, "ecr:PutImage", REPO, &[], ExplicitDeny),
    case("Deny unless tagged prod, tagged prod", &[ALLOW_ALL], &[ r#"{"Statement": {"Effect": "Deny", "Principal": "*", "Action": "ecr:PutImage", "Condition": {"StringNotEquals": {"ecr:ResourceTag/env": "prod"}}}}"#, ], Alice, "ecr:PutImage", REPO, &[("ecr:ResourceTag/env", "prod")], Allow),
    // The root user.
    case("root in its own account, no policy", &[], &[], Root, "ecr:DeleteRepository", REPO, &[], Allow),
    case("root in its own account, resource policy for others", &[], &[PULL_REPO_TO_CAROL], Root, "ecr:DeleteRepository", REPO, &[], Allow),
    case("root denied by a resource policy", &[], &[ r#"{"Statement": {"Effect": "Deny", "Principal": {"AWS": "111122223333"}, "Action": "ecr:DeleteRepository"}}"#, ], Root, "ecr:DeleteRepository", REPO, &[], ExplicitDeny),
    case("root denied by a resource policy for *", &[], &[DENY_FROM_127_0_0_2], Root, "ecr:BatchGetImage", REPO, &[("aws:SourceIp", "127.0.0.2")], ExplicitDeny),
    // Same account, resource policies.
    case("resource policy naming the user", &[], &[ r#"{"Statement": {"Effect": "Allow", "Principal": {"AWS": ["arn:aws:iam::111122223333:user/alice"]}, "Action": "ecr:BatchGetImage"}}"#, ], Alice, "ecr:BatchGetImage", REPO, &[], Allow),
    case("resource policy naming *", &[], &[r#"{"Statement": {"Effect": "Allow", "Principal": "*", "Action": "ecr:BatchGetImage"}}"#], Alice, "ecr:BatchGetImage", REPO, &[], Allow),
    case("resource policy naming AWS *", &[], &[r#"{"Statement": {"Effect": "Allow", "Principal": {"AWS": "*"}, "Action": "ecr:BatchGetImage"}}"#], Alice, "ecr:BatchGetImage", REPO, &[], Allow),
    case("resource policy naming the account root only", &[], &[ r#"{"Statement": {"Effect": "Allow", "Principal": {"AWS": "arn:aws:iam::111122223333:root"}, "Action": "ecr:BatchGetImage"}}"#, ], Alice, "ecr:BatchGetImage", REPO, &[], ImplicitDeny),
    case("resource policy naming the bare account id only", &[], &[r#"{"Statement": {"Effect": "Allow", "Principal": {"AWS": "111122223333"}, "Action": "ecr:BatchGetImage"}}"#], Alice, "ecr:BatchGetImage", REPO, &[], ImplicitDeny),
    case("resource policy naming the account, identity allows", &[ r#"{"Statement": {"Effect": "Allow", "Action": "ecr:BatchGetImage", "Resource": "arn:aws:ecr:*:*:repository/*"}}"#, ], &[r#"{"Statement": {"Effect": "Allow", "Principal": {"AWS": "111122223333"}, "Action": "ecr:BatchGetImage"}}"#], Alice, "ecr:BatchGetImage", REPO, &[], Allow),
    case("resource policy naming someone else", &[], &[ r#"{"Statement": {"Effect": "Allow", "Principal": {"AWS": "arn:aws:iam::111122223333:user/bob"}, "Action": "ecr:BatchGetImage"}}"#, ], Alice, "ecr:BatchGetImage", REPO, &[], ImplicitDeny),
    case("resource policy: principal ARNs are not wildcards (role vs user)", &[], &[ r#"{"Statement": {"Effect": "Allow", "Principal": {"AWS": "arn:aws:iam::111122223333:role/alice"}, "Action": "ecr:BatchGetImage"}}"#, ], Alice, "ecr:BatchGetImage", REPO, &[], ImplicitDeny),
    case("resource policy with a Resource for another repository", &[], &[ r#"{"Statement": {"Effect": "Allow", "Principal": "*", "Action": "ecr:*", "Resource": "arn:aws:ecr:us-east-1:111122223333:repository/web"}}"#, ], Alice, "ecr:BatchGetImage", REPO, &[], ImplicitDeny),
    case("resource policy for another action", &[], &[r#"{"Statement": {"Effect": "Allow", "Principal": "*", "Action": "ecr:BatchGetImage"}}"#], Alice, "ecr:PutImage", REPO, &[], ImplicitDeny),
    // NotPrincipal.
    case("NotPrincipal Deny spares the listed", &[ALLOW_ALL], &[ r#"{"Statement": {"Effect": "Deny", "NotPrincipal": {"AWS": "arn:aws:iam::111122223333:user/alice"}, "Action": "ecr:*"}}"#, ], Alice, "ecr:BatchGetImage", REPO, &[], Allow),
    case("NotPrincipal Deny hits the others", &[ALLOW_ALL], &[ r#"{"Statement": {"Effect": "Deny", "NotPrincipal": {"AWS": "arn:aws:iam::111122223333:user/alice"}, "Action": "ecr:*"}}"#, ], Bob, "ecr:BatchGetImage", REPO, &[], ExplicitDeny),
    case("NotPrincipal Allow grants the others", &[], &[ r#"{"Statement": {"Effect": "Allow", "NotPrincipal": {"AWS": "arn:aws:iam::111122223333:user/bob"}, "Action": "ecr:*"}}"#, ], Alice, "ecr:BatchGetImage", REPO, &[], Allow),
    case("NotPrincipal Allow leaves out the listed", &[], &[ r#"{"Statement": {"Effect": "Allow", "NotPrincipal": {"AWS": "arn:aws:iam::111122223333:user/bob"}, "Action": "ecr:*"}}"#, ], Bob, "ecr:BatchGetImage", REPO, &[], ImplicitDeny),
    case("NotPrincipal naming the account spares all of it", &[ALLOW_ALL], &[r#"{"Statement": {"Effect": "Deny", "NotPrincipal": {"AWS": "111122223333"}, "Action": "ecr:*"}}"#], Bob, "ecr:BatchGetImage", REPO, &[], Allow),
    // Cross-account.
    case("cross-account: both sides allow", &[ALLOW_ALL], &[PULL_REPO_TO_CAROL], Carol, "ecr:BatchGetImage", REPO, &[], Allow),
    case("cross-account: resource policy alone", &[], &[PULL_REPO_TO_CAROL], Carol, "ecr:BatchGetImage", REPO, &[], ImplicitDeny),
    case("cross-account: identity policy alone", &[ALLOW_ALL], &[], Carol, "ecr:BatchGetImage", REPO, &[], ImplicitDeny),
    case("cross-account: resource policy names the account", &[ALLOW_ALL], &[PULL_REPO_TO_OTHER_ACCOUNT], Carol, "ecr:BatchGetImage", REPO, &[], Allow),
    case("cross-account: account grant without identity Allow", &[], &[PULL_REPO_TO_OTHER_ACCOUNT], Carol, "ecr:BatchGetImage", REPO, &[], ImplicitDeny),
    case("cross-account: the other account's root, account named", &[], &[PULL_REPO_TO_OTHER_ACCOUNT], OtherRoot, "ecr:BatchGetImage", REPO, &[], Allow),
    case("cross-account: the other account's root, no resource policy", &[], &[], OtherRoot, "ecr:BatchGetImage", REPO, &[], ImplicitDeny),
    case("cross-account: resource policy naming this account only", &[ALLOW_ALL], &[r#"{"Statement": {"Effect": "Allow", "Principal": {"AWS": "111122223333"}, "Action": "ecr:*"}}"#], Carol, "ecr:BatchGetImage", REPO, &[], ImplicitDeny),
    case("cross-account: outside the allowed action", &[ALLOW_ALL], &[PULL_REPO_TO_CAROL], Carol, "ecr:PutImage", REPO, &[], ImplicitDeny),
    case("cross-account: Principal * and identity Allow", &[ALLOW_ALL], &[r#"{"Statement": {"Effect": "Allow", "Principal": "*", "Action": "ecr:BatchGetImage"}}"#], Carol, "ecr:BatchGetImage", REPO, &[], Allow),
    case("cross-account: condition on the caller's account", &[ALLOW_ALL], &[ r#"{"Statement": {"Effect": "Allow", "Principal": "*", "Action": "ecr:BatchGetImage", "Condition": {"StringEquals": {"aws:PrincipalAccount": "444455556666"}}}}"#, ], Carol, "ecr:BatchGetImage", REPO, &[], Allow),
];

fn context(c: &Case) -> RequestContext {
    let account = c.target.split(':').nth(4).unwrap_or(ACCT);
    let mut ctx = RequestContext::new(c.caller.principal(), c.action, c.target, account);
    for (k, v) in c.keys {
        ctx.insert(k, vec![v.to_string()]);
    }
    ctx
}

fn run(c: &Case) -> Authorization {
    let parse = |texts: &[&str], kind| -> Vec<PolicyDocument> {
        texts
            .iter()
            .map(|t| PolicyDocument::parse(t, kind).unwrap_or_else(|e| panic!("{}: {e}\n{t}", c.name)))
            .collect()
    };
    let identity = parse(c.identity, PolicyKind::Identity);
    let resource = parse(c.resource, PolicyKind::Resource);
    let identity: Vec<&PolicyDocument> = identity.iter().collect();
    let resource: Vec<&PolicyDocument> = resource.iter().collect();
    authorize(&context(c), &identity, &resource)
}

#[test]
fn decisions() {
    let mut failures = Vec::new();
    for c in CASES {
        let got = run(c);
        if got.decision != c.want {
            failures.push(format!("{}: got {got}, want {:?}", c.name, c.want));
        }
    }
    assert!(failures.is_empty(), "{} of {} failed:\n{}", failures.len(), CASES.len(), failures.join("\n"));
    assert!(CASES.len() >= 60);
}

fn find(name: &str) -> &'static Case {
    CASES.iter().find(|c| c.name == name).unwrap()
}

#[test]
fn reasons_name_the_deciding_statement() {
    let got = run(find("Deny from 127.0.0.2/32: caller 127.0.0.2"));
    assert_eq!(
        got.to_string(),
        "explicitly denied: explicit deny in Statement[0] (Sid \"NoLocal2\") of resource policy #0"
    );
    assert!(matches!(got.reason, Reason::ExplicitDeny(ref s) if s.kind == PolicyKind::Resource));
    assert_eq!(
        run(find("root in its own account, no policy")).to_string(),
        "allowed: the account's root user in its own account"
    );
    assert_eq!(
        run(find("resource policy naming the account root only")).to_string(),
        "implicitly denied: Statement[0] of resource policy #0 grants the action only to the \
         account, and no identity policy allows it"
    );
    assert_eq!(
        run(find("cross-account: resource policy alone")).reason,
        Reason::CrossAccountWithoutIdentityAllow(berth_iam::StatementRef {
            kind: PolicyKind::Resource,
            policy: 0,
            policy_id: None,
            statement: 0,
            sid: None,
        })
    );
    assert_eq!(
        run(find("cross-account: identity policy alone")).to_string(),
        "implicitly denied: cross-account: Statement[0] of identity policy #0 allows the action, \
         but no resource policy does"
    );
    assert_eq!(run(find("no policy: implicit deny")).reason, Reason::NoAllow);
    assert!(matches!(run(find("resource policy naming the user")).reason, Reason::ResourceAllow(_)));
    assert!(matches!(
        run(find("cross-account: the other account's root, account named")).reason,
        Reason::CrossAccountAllow { identity: None, .. }
    ));
}

#[test]
fn a_policy_prefers_the_allow_that_names_the_caller() {
    let policy = PolicyDocument::parse(
        r#"{"Id": "repo", "Statement": [
            {"Sid": "Account", "Effect": "Allow", "Principal": {"AWS": "111122223333"}, "Action": "ecr:*"},
            {"Sid": "Alice", "Effect": "Allow", "Principal": {"AWS": "arn:aws:iam::111122223333:user/alice"}, "Action": "ecr:*"}
        ]}"#,
        PolicyKind::Resource,
    )
    .unwrap();
    let ctx = RequestContext::new(Caller::Alice.principal(), "ecr:PutImage", REPO, ACCT);
    assert_eq!(policy.evaluate(&ctx), PolicyOutcome::Allow { statement: 1, grantee: berth_iam::Grantee::Caller });
    let got = authorize(&ctx, &[], &[&policy]);
    assert_eq!(got.to_string(), "allowed: allowed by Statement[1] (Sid \"Alice\") of resource policy #0 (Id \"repo\")");
    let ctx = RequestContext::new(Caller::Bob.principal(), "ecr:PutImage", REPO, ACCT);
    assert_eq!(policy.evaluate(&ctx), PolicyOutcome::Allow { statement: 0, grantee: berth_iam::Grantee::Account });
}

#[test]
fn context_helpers_fill_the_global_keys() {
    let mut ctx = RequestContext::new(Caller::Alice.principal(), "ecr:PutImage", REPO, ACCT);
    ctx.set_source_ip("::ffff:10.0.0.7".parse().unwrap());
    ctx.set_secure_transport(true);
    ctx.set_current_time(1_717_243_200);
    let k = ctx.keys();
    assert_eq!(k.get("AWS:PRINCIPALARN").unwrap(), ["arn:aws:iam::111122223333:user/alice"]);
    assert_eq!(k.get("aws:username").unwrap(), ["alice"]);
    assert_eq!(k.get("aws:userid").unwrap(), ["AIDAALICE"]);
    assert_eq!(k.get("aws:PrincipalAccount").unwrap(), [ACCT]);
    assert_eq!(k.get("aws:SecureTransport").unwrap(), ["true"]);
    assert_eq!(k.get("aws:CurrentTime").unwrap(), ["2024-06-01T12:00:00Z"]);
    assert_eq!(k.get("aws:EpochTime").unwrap(), ["1717243200"]);
    let policy = PolicyDocument::parse(
        r#"{"Version": "2012-10-17", "Statement": {"Effect": "Allow", "Action": "ecr:*", "Resource": "*",
            "Condition": {"IpAddress": {"aws:SourceIp": "10.0.0.0/24"}, "Bool": {"aws:SecureTransport": true},
                          "DateLessThan": {"aws:CurrentTime": "2025-01-01"}}}}"#,
        PolicyKind::Identity,
    )
    .unwrap();
    assert!(authorize(&ctx, &[&policy], &[]).is_allowed(), "an IPv4-mapped address is IPv4");
    let ctx = ctx.with("aws:SecureTransport", "false");
    assert!(!authorize(&ctx, &[&policy], &[]).is_allowed());
    let root = RequestContext::new(Principal::root(ACCT), "ecr:PutImage", REPO, ACCT);
    assert!(root.keys().get("aws:username").is_none());
}
