//! Parsing: accepted shapes, and one table row per malformed policy with its exact message.

use berth_iam::{Effect, PolicyDocument, PolicyError, PolicyKind, Version};

use PolicyKind::{Identity, Resource};

/// A policy with one statement whose body is `body` (without braces).
fn one(body: &str) -> String {
    format!(r#"{{"Version": "2012-10-17", "Statement": [{{{body}}}]}}"#)
}

const ID_BASE: &str = r#""Effect": "Allow", "Action": "ecr:*", "Resource": "*""#;

#[test]
fn malformed_policies() {
    let cases: Vec<(PolicyKind, String, &str)> = vec![
        (Identity, "[]".into(), "the policy must be a JSON object, not a list"),
        (Identity, r#"{"Version": "2013-01-01", "Statement": []}"#.into(),
            r#"Version: "2013-01-01" is not a policy language version (2012-10-17 or 2008-10-17)"#),
        (Identity, r#"{"Version": 2012, "Statement": []}"#.into(),
            "Version: 2012 is not a policy language version (2012-10-17 or 2008-10-17)"),
        (Identity, r#"{"Statements": []}"#.into(),
            r#"unknown top-level key "Statements" (expected Version, Id, Statement)"#),
        (Identity, r#"{"Version": "2012-10-17"}"#.into(), "the policy has no Statement"),
        (Identity, r#"{"Version": "2012-10-17", "Statement": []}"#.into(), "Statement: must not be an empty list"),
        (Identity, r#"{"Statement": "Allow"}"#.into(), "Statement: must be an object or a list of objects, not a string"),
        (Identity, r#"{"Version": "2012-10-17", "Version": "2012-10-17", "Statement": {}}"#.into(), r#"duplicate key "Version""#),
        (Identity, r#"{"Statement": [1]}"#.into(), "Statement[0]: a statement must be an object, not a number"),
        (Identity, one(r#""Effect": "allow", "Action": "ecr:*", "Resource": "*""#),
            r#"Statement[0].Effect: "allow" is not Allow or Deny"#),
        (Identity, one(r#""Action": "ecr:*", "Resource": "*""#), "Statement[0]: has no Effect"),
        (Identity, one(r#""Effect": "Allow", "Effect": "Deny", "Action": "ecr:*", "Resource": "*""#),
            r#"Statement[0]: duplicate key "Effect""#),
        (Identity, one(r#""Effect": "Allow", "Action": "ecr:*", "NotAction": "s3:*", "Resource": "*""#),
            "Statement[0]: has both Action and NotAction"),
        (Identity, one(r#""Effect": "Allow", "NotResource": "*", "Action": "ecr:*", "Resource": "*""#),
            "Statement[0]: has both Resource and NotResource"),
        (Identity, one(r#""Effect": "Allow", "Resource": "*""#), "Statement[0]: has neither Action nor NotAction"),
        (Identity, one(r#""Effect": "Allow", "Action": "ecr:*""#), "Statement[0]: has neither Resource nor NotResource"),
        (Identity, one(&format!(r#"{ID_BASE}, "Principal": "*""#)),
            "Statement[0]: Principal is not allowed in an identity-based policy"),
        (Resource, one(r#""Effect": "Allow", "Action": "ecr:*""#),
            "Statement[0]: has neither Principal nor NotPrincipal (a resource-based policy needs one)"),
        (Resource, one(r#""Effect": "Allow", "Action": "ecr:*", "Principal": "*", "NotPrincipal": {"AWS": "*"}"#),
            "Statement[0]: has both Principal and NotPrincipal"),
        (Identity, one(&format!(r#"{ID_BASE}, "Actions": "ecr:*""#)),
            r#"Statement[0]: unknown key "Actions" (expected Sid, Effect, Principal, NotPrincipal, Action, NotAction, Resource, NotResource, Condition)"#),
        (Identity, r#"{"Statement": [{"Sid": "A", "Effect": "Allow", "Action": "ecr:*", "Resource": "*"},
                                    {"Sid": "A", "Effect": "Deny", "Action": "ecr:*", "Resource": "*"}]}"#.into(),
            r#"Statement[1].Sid: duplicate Sid "A" (also Statement[0])"#),
        (Identity, one(r#""Effect": "Allow", "Action": "ecr", "Resource": "*""#),
            r#"Statement[0].Action: "ecr" is not an action (service:Action, wildcards allowed, or "*")"#),
        (Identity, one(r#""Effect": "Allow", "Action": ["ecr:BatchGetImage", "ecr:"], "Resource": "*""#),
            r#"Statement[0].Action[1]: "ecr:" is not an action (service:Action, wildcards allowed, or "*")"#),
        (Identity, one(r#""Effect": "Allow", "Action": [], "Resource": "*""#), "Statement[0].Action: must not be an empty list"),
        (Identity, one(r#""Effect": "Allow", "Action": "ecr:*", "Resource": 5"#),
            "Statement[0].Resource: must be a string or a list of strings, not a number"),
        (Identity, one(r#""Effect": "Allow", "Action": "ecr:*", "Resource": ["*", "repository/app"]"#),
            r#"Statement[0].Resource[1]: "repository/app" is not "*" or an ARN (arn:partition:service:region:account:resource)"#),
        (Identity, one(r#""Effect": "Allow", "Action": "ecr:*", "Resource": "arn:aws:ecr:*:*:repository/${aws:username""#),
            r#"Statement[0].Resource: missing closing brace in policy variable at "${aws:username""#),
        (Resource, one(r#""Effect": "Allow", "Action": "ecr:*", "Principal": "alice""#),
            r#"Statement[0].Principal: must be "*" or an object with AWS, Service, Federated or CanonicalUser"#),
        (Resource, one(r#""Effect": "Allow", "Action": "ecr:*", "Principal": {"IAM": "x"}"#),
            r#"Statement[0].Principal: unknown principal type "IAM" (expected AWS, Service, Federated or CanonicalUser)"#),
        (Resource, one(r#""Effect": "Allow", "Action": "ecr:*", "Principal": {"AWS": ["arn:aws:iam::111122223333:user/*"]}"#),
            r#"Statement[0].Principal.AWS[0]: "arn:aws:iam::111122223333:user/*": wildcards are not allowed in principal ARNs (only "*" alone)"#),
        (Resource, one(r#""Effect": "Allow", "Action": "ecr:*", "Principal": {"AWS": "1234"}"#),
            r#"Statement[0].Principal.AWS: "1234" is not "*", a 12-digit account id or an IAM ARN (arn:aws:iam::123456789012:user/name, :role/name or :root)"#),
        (Identity, one(&format!(r#"{ID_BASE}, "Condition": {{"StringEqualz": {{"aws:username": "a"}}}}"#)),
            r#"Statement[0].Condition: unknown condition operator "StringEqualz""#),
        (Identity, one(&format!(r#"{ID_BASE}, "Condition": {{"NullIfExists": {{"aws:username": "true"}}}}"#)),
            r#"Statement[0].Condition: "NullIfExists": Null cannot take IfExists (it already tests whether the key exists)"#),
        (Identity, r#"{"Statement": [{"Effect": "Allow", "Action": "ecr:*", "Resource": "*"},
            {"Effect": "Allow", "Action": "ecr:*", "Resource": "*", "Condition": {"IpAddress": {"aws:SourceIp": "10.0.0.300/8"}}}]}"#.into(),
            r#"Statement[1].Condition.IpAddress."aws:SourceIp": "10.0.0.300/8" is not an IPv4 or IPv6 address or CIDR"#),
        (Identity, one(&format!(r#"{ID_BASE}, "Condition": {{"NotIpAddress": {{"aws:SourceIp": ["::1", "2001:db8::/129"]}}}}"#)),
            r#"Statement[0].Condition.NotIpAddress."aws:SourceIp"[1]: "2001:db8::/129" is not an IPv4 or IPv6 address or CIDR"#),
        (Identity, one(&format!(r#"{ID_BASE}, "Condition": {{"NumericLessThan": {{"aws:MultiFactorAuthAge": [1, "ten"]}}}}"#)),
            r#"Statement[0].Condition.NumericLessThan."aws:MultiFactorAuthAge"[1]: "ten" is not a number"#),
        (Identity, one(&format!(r#"{ID_BASE}, "Condition": {{"DateLessThan": {{"aws:CurrentTime": "2024-02-30"}}}}"#)),
            r#"Statement[0].Condition.DateLessThan."aws:CurrentTime": "2024-02-30" is not an ISO 8601 date or epoch seconds"#),
        (Identity, one(&format!(r#"{ID_BASE}, "Condition": {{"Bool": {{"aws:SecureTransport": "yes"}}}}"#)),
            r#"Statement[0].Condition.Bool."aws:SecureTransport": "yes" is not true or false"#),
        (Identity, one(&format!(r#"{ID_BASE}, "Condition": {{"ArnLike": {{"aws:SourceArn": "repository/*"}}}}"#)),
            r#"Statement[0].Condition.ArnLike."aws:SourceArn": "repository/*" is not an ARN (arn:partition:service:region:account:resource)"#),
        (Identity, one(&format!(r#"{ID_BASE}, "Condition": {{"BinaryEquals": {{"ecr:blob": "not base64!"}}}}"#)),
            r#"Statement[0].Condition.BinaryEquals."ecr:blob": "not base64!" is not base64"#),
        (Identity, one(&format!(r#"{ID_BASE}, "Condition": {{"StringEquals": {{"username": "a"}}}}"#)),
            r#"Statement[0].Condition.StringEquals: "username" is not a condition key (service:name, e.g. aws:SourceIp)"#),
        (Identity, one(&format!(r#"{ID_BASE}, "Condition": {{"StringEquals": {{"aws:username": []}}}}"#)),
            r#"Statement[0].Condition.StringEquals."aws:username": has no values"#),
        (Identity, one(&format!(r#"{ID_BASE}, "Condition": {{"StringEquals": {{"aws:username": {{"a": 1}}}}}}"#)),
            r#"Statement[0].Condition.StringEquals."aws:username": must be a string, number, boolean or a list of them, not an object"#),
        (Identity, one(&format!(r#"{ID_BASE}, "Condition": {{"StringEquals": {{}}}}"#)),
            "Statement[0].Condition.StringEquals: has no condition keys"),
        (Identity, one(&format!(r#"{ID_BASE}, "Condition": {{"StringEquals": {{"aws:username": "a"}}, "StringEquals": {{"aws:username": "b"}}}}"#)),
            r#"Statement[0].Condition: duplicate key "StringEquals""#),
        (Identity, one(&format!(r#"{ID_BASE}, "Condition": {{"StringEquals": {{"aws:username": "${{aws:username, nobody}}"}}}}"#)),
            r#"Statement[0].Condition.StringEquals."aws:username": default value not in single quotes in policy variable at "${aws:username, nobody}""#),
        (Identity, one(&format!(r#"{ID_BASE}, "Sid": 1"#)), "Statement[0].Sid: must be a string, not a number"),
    ];
    let mut failures = Vec::new();
    for (kind, text, want) in &cases {
        match PolicyDocument::parse(text, *kind) {
            Ok(_) => failures.push(format!("accepted: {text}")),
            Err(e) if e.to_string() != *want => failures.push(format!("{text}\n  got:  {e}\n  want: {want}")),
            Err(_) => {}
        }
    }
    assert!(failures.is_empty(), "{} of {}:\n{}", failures.len(), cases.len(), failures.join("\n"));
    assert!(cases.len() >= 40);
}

#[test]
fn invalid_json() {
    let e = PolicyDocument::parse("{\"Statement\": ", Identity).unwrap_err();
    assert!(matches!(e, PolicyError::Json(_)));
    assert!(e.to_string().starts_with("the policy is not valid JSON: EOF while parsing a value at line 1"), "{e}");
}

#[test]
fn error_paths_are_structured() {
    let e = PolicyDocument::parse(&one(r#""Effect": "Maybe""#), Identity).unwrap_err();
    assert_eq!(
        e,
        PolicyError::Invalid { path: "Statement[0].Effect".into(), message: r#""Maybe" is not Allow or Deny"#.into() }
    );
}

#[test]
fn accepted_shapes() {
    // A typical ECR repository policy: no Resource, a list of principals, a single statement
    // object, numbers and booleans as condition values.
    let p = PolicyDocument::parse(
        r#"{
          "Version": "2012-10-17",
          "Id": "repo-policy",
          "Statement": {
            "Sid": "AllowPull",
            "Effect": "Allow",
            "Principal": {"AWS": ["arn:aws:iam::444455556666:root", "111122223333",
                                  "arn:aws:iam::111122223333:role/ci", "arn:aws:sts::111122223333:assumed-role/ci/s"],
                          "Service": "codebuild.amazonaws.com"},
            "Action": ["ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer", "ecr:BatchCheckLayerAvailability"],
            "Condition": {"NumericLessThan": {"aws:MultiFactorAuthAge": 3600},
                          "Bool": {"aws:SecureTransport": true},
                          "ForAnyValue:StringLike": {"aws:TagKeys": ["team-*"]},
                          "stringequalsifexists": {"aws:username": "x"}}
          }
        }"#,
        Resource,
    )
    .unwrap();
    assert_eq!(p.kind(), Resource);
    assert_eq!(p.version(), Version::V2012);
    assert_eq!(p.id(), Some("repo-policy"));
    assert_eq!(p.statements().len(), 1);
    assert_eq!(p.statements()[0].sid(), Some("AllowPull"));
    assert_eq!(p.statements()[0].effect(), Effect::Allow);

    let p = PolicyDocument::parse(
        r#"{"Statement": [{"Effect": "Deny", "NotAction": "ecr:Get*", "NotResource": ["arn:aws:ecr:*:*:repository/*"]}]}"#,
        Identity,
    )
    .unwrap();
    assert_eq!(p.version(), Version::V2008);
    assert_eq!(p.statements()[0].effect(), Effect::Deny);

    // 2008-10-17: `${` is plain text, so an unterminated one is no error.
    assert!(
        PolicyDocument::parse(
            r#"{"Version": "2008-10-17", "Statement": {"Effect": "Allow", "Action": "*", "Resource": "arn:aws:s3:::a${b"}}"#,
            Identity
        )
        .is_ok()
    );
    // Empty Condition objects are allowed (no conditions).
    assert!(PolicyDocument::parse(&one(&format!(r#"{ID_BASE}, "Condition": {{}}"#)), Identity).is_ok());
}
