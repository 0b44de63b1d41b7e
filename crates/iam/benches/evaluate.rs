//! How long one decision takes over 10 and 100 realistic ECR statements with conditions, the
//! statement that allows being the last one (so every statement is looked at).
//!
//! `cargo bench -p berth-iam`

use berth_iam::{PolicyDocument, PolicyKind, Principal, Reason, RequestContext, authorize};
use divan::{Bencher, black_box};

fn main() {
    divan::main();
}

const ACCT: &str = "111122223333";
const REPO: &str = "arn:aws:ecr:us-east-1:111122223333:repository/platform/app";

/// `n - 1` statements that do not apply, in three kinds (right action but another repository;
/// right action and repository but a failing tag condition; a Deny for other actions), then
/// the Allow that applies.
fn policy_text(n: usize) -> String {
    let mut statements = Vec::with_capacity(n);
    for i in 0..n - 1 {
        statements.push(match i % 3 {
            0 => format!(
                r#"{{"Sid": "Pull{i}", "Effect": "Allow",
                    "Action": ["ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer", "ecr:BatchCheckLayerAvailability"],
                    "Resource": "arn:aws:ecr:us-east-1:111122223333:repository/team-{i}/*",
                    "Condition": {{"Bool": {{"aws:SecureTransport": "true"}}}}}}"#
            ),
            1 => format!(
                r#"{{"Sid": "Team{i}", "Effect": "Allow", "Action": "ecr:*",
                    "Resource": "arn:aws:ecr:*:111122223333:repository/*",
                    "Condition": {{"StringEquals": {{"aws:PrincipalTag/team": "team-{i}",
                                                     "ecr:ResourceTag/team": "team-{i}"}},
                                   "IpAddress": {{"aws:SourceIp": ["10.0.0.0/8", "2001:db8::/32"]}}}}}}"#
            ),
            _ => format!(
                r#"{{"Sid": "NoDelete{i}", "Effect": "Deny",
                    "Action": ["ecr:DeleteRepository", "ecr:BatchDeleteImage", "ecr:SetRepositoryPolicy"],
                    "Resource": "arn:aws:ecr:*:111122223333:repository/prod-{i}*",
                    "Condition": {{"StringNotEquals": {{"aws:PrincipalTag/role": "admin"}}}}}}"#
            ),
        });
    }
    statements.push(
        r#"{"Sid": "PlatformPull", "Effect": "Allow",
            "Action": ["ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer"],
            "Resource": "arn:aws:ecr:us-east-1:${aws:PrincipalAccount}:repository/${aws:PrincipalTag/team}/*",
            "Condition": {"StringEquals": {"ecr:ResourceTag/team": "${aws:PrincipalTag/team}"},
                          "IpAddress": {"aws:SourceIp": ["10.0.0.0/8", "2001:db8::/32"]},
                          "Bool": {"aws:SecureTransport": "true"},
                          "DateLessThan": {"aws:CurrentTime": "2030-01-01T00:00:00Z"}}}"#
            .to_owned(),
    );
    format!(r#"{{"Version": "2012-10-17", "Statement": [{}]}}"#, statements.join(","))
}

fn identity_policy(n: usize) -> PolicyDocument {
    PolicyDocument::parse(&policy_text(n), PolicyKind::Identity).unwrap()
}

/// What the server builds per request.
fn context() -> RequestContext {
    let mut ctx = RequestContext::new(Principal::user(ACCT, "alice", "AIDAALICE"), "ecr:BatchGetImage", REPO, ACCT);
    ctx.set_source_ip("10.1.2.3".parse().unwrap());
    ctx.set_secure_transport(true);
    ctx.set_current_time(1_717_243_200);
    ctx.insert("aws:PrincipalTag/team", vec!["platform".into()]);
    ctx.insert("ecr:ResourceTag/team", vec!["platform".into()]);
    ctx
}

#[divan::bench(args = [10, 100])]
fn authorize_identity_policy(bencher: Bencher, n: usize) {
    let policy = identity_policy(n);
    let ctx = context();
    let got = authorize(&ctx, &[&policy], &[]);
    assert!(matches!(&got.reason, Reason::IdentityAllow(s) if s.statement == n - 1), "{got}");
    bencher.bench_local(|| authorize(black_box(&ctx), black_box(&[&policy]), &[]));
}

/// The same decision plus building the context, as a request handler does it.
#[divan::bench(args = [10, 100])]
fn build_context_and_authorize(bencher: Bencher, n: usize) {
    let policy = identity_policy(n);
    bencher.bench_local(|| authorize(&context(), black_box(&[&policy]), &[]));
}

#[divan::bench]
fn parse_policy_100_statements(bencher: Bencher) {
    let text = policy_text(100);
    bencher.bench_local(|| PolicyDocument::parse(black_box(&text), PolicyKind::Identity).unwrap());
}
