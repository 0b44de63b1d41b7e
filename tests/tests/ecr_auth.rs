//! Authentication on both surfaces, against the real binary: registry tokens on `/v2/`, SigV4
//! on the ECR API, and the bad cases each refused with the error AWS gives and nothing changed.
//! Also ECR's repository rules on `/v2/`: no push into a missing repository without a creation
//! template, and immutable tags.

use berth_e2e::*;
use reqwest::Client;
use serde_json::{Value, json};

fn header(r: &reqwest::Response, name: &str) -> String {
    r.headers().get(name).map(|v| v.to_str().unwrap().to_string()).unwrap_or_default()
}

fn basic(user: &str, password: &str) -> String {
    use base64::Engine;
    format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}")))
}

#[tokio::test]
async fn registry_tokens_guard_v2() {
    let b = Berth::start();
    let c = Client::new();
    // No credentials: 401 with the Basic challenge docker login follows.
    let r = c.get(b.url("/v2/")).send().await.unwrap();
    assert_eq!(r.status(), 401);
    let challenge = header(&r, "www-authenticate");
    assert!(challenge.starts_with("Basic realm=\"http://"), "{challenge}");
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["errors"][0]["code"], "UNAUTHORIZED");

    let token = b.token();
    let cases = [
        ("valid", basic("AWS", &token), 200),
        ("garbled", basic("AWS", "not-a-token"), 401),
        ("other user", basic("admin", &token), 401),
        ("bearer", format!("Bearer {token}"), 401),
        ("truncated", basic("AWS", &token[..token.len() - 3]), 401),
    ];
    for (what, auth, want) in cases {
        let r = c.get(b.url("/v2/_catalog")).header("authorization", auth).send().await.unwrap();
        assert_eq!(r.status(), want, "{what}");
    }
    // A token whose claims were edited (a later expiry) no longer matches its signature.
    let (prefix_payload, mac) = token.rsplit_once('.').unwrap();
    let (prefix, payload) = prefix_payload.split_once('.').unwrap();
    use base64::Engine;
    let engine = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let mut claims: Value = serde_json::from_slice(&engine.decode(payload).unwrap()).unwrap();
    claims["e"] = json!(claims["e"].as_i64().unwrap() + 86400);
    let forged = format!("{prefix}.{}.{mac}", engine.encode(serde_json::to_vec(&claims).unwrap()));
    let r = c.get(b.url("/v2/_catalog")).header("authorization", basic("AWS", &forged)).send().await.unwrap();
    assert_eq!(r.status(), 401);
    // Nothing was pushed on the way.
    let r = b.client().get(b.url("/v2/_catalog")).send().await.unwrap();
    assert_eq!(r.json::<Value>().await.unwrap()["repositories"], json!([]));
}

#[test]
fn sigv4_failures_are_refused_with_aws_errors() {
    let b = Berth::start_bare();
    let create = json!({"repositoryName": "guarded"});
    let (status, v) = b.ecr_as(ROOT_KEY_ID, "wrong-secret", "CreateRepository", create.clone());
    assert_eq!((status, v["__type"].as_str().unwrap()), (400, "InvalidSignatureException"), "{v}");
    assert!(v["message"].as_str().unwrap().starts_with("The request signature we calculated does not match"));
    let (status, v) = b.ecr_as("AKIAUNKNOWNKEY000000", ROOT_SECRET, "CreateRepository", create.clone());
    assert_eq!((status, v["__type"].as_str().unwrap()), (400, "UnrecognizedClientException"), "{v}");
    let (_, v) = b.ecr("NoSuchOperation", json!({}));
    assert_eq!(v["__type"], "UnknownOperationException");

    // A body changed after signing, and a request replayed 20 minutes late: refused.
    let sign = |body: &[u8], at: i64| {
        let headers = vec![
            ("host".to_string(), b.host()),
            ("content-type".to_string(), "application/x-amz-json-1.1".to_string()),
            ("x-amz-target".to_string(), "AmazonEC2ContainerRegistry_V20150921.CreateRepository".to_string()),
        ];
        berth_auth::sigv4::sign("POST", "/", "", &headers, body, ROOT_KEY_ID, ROOT_SECRET, REGION, "ecr", at)
    };
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64;
    let send = |body: &str, date: &str, auth: &str| {
        let out = std::process::Command::new("curl")
            .args(["-sS", "-X", "POST", "-H", "Content-Type: application/x-amz-json-1.1"])
            .args(["-H", "X-Amz-Target: AmazonEC2ContainerRegistry_V20150921.CreateRepository"])
            .args(["-H", &format!("X-Amz-Date: {date}"), "-H", &format!("Authorization: {auth}"), "--data", body])
            .arg(b.url("/"))
            .output()
            .unwrap();
        serde_json::from_slice::<Value>(&out.stdout).unwrap()
    };
    let (date, auth) = sign(br#"{"repositoryName":"guarded"}"#, now);
    let v = send(r#"{"repositoryName":"tampered"}"#, &date, &auth);
    assert_eq!(v["__type"], "InvalidSignatureException", "{v}");
    let (date, auth) = sign(br#"{"repositoryName":"guarded"}"#, now - 20 * 60);
    let v = send(r#"{"repositoryName":"guarded"}"#, &date, &auth);
    assert_eq!(v["__type"], "InvalidSignatureException", "{v}");
    assert!(v["message"].as_str().unwrap().starts_with("Signature expired: "), "{v}");
    // The same request, signed now, goes through: the refusals changed nothing.
    let (_, v) = b.ecr("DescribeRepositories", json!({}));
    assert_eq!(v["repositories"], json!([]));
    let (date, auth) = sign(br#"{"repositoryName":"guarded"}"#, now);
    let v = send(r#"{"repositoryName":"guarded"}"#, &date, &auth);
    assert_eq!(v["repository"]["repositoryName"], "guarded", "{v}");
    // No signature at all.
    let out = std::process::Command::new("curl")
        .args([
            "-sS",
            "-X",
            "POST",
            "-H",
            "X-Amz-Target: AmazonEC2ContainerRegistry_V20150921.DescribeRepositories",
            "--data",
            "{}",
        ])
        .arg(b.url("/"))
        .output()
        .unwrap();
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["__type"], "MissingAuthenticationTokenException");
}

#[tokio::test]
async fn pushes_need_a_repository_or_a_creation_template() {
    let b = Berth::start_bare();
    let c = b.client();
    let r = c.post(b.url("/v2/team/app/blobs/uploads/")).send().await.unwrap();
    assert_eq!(r.status(), 404);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["errors"][0]["code"], "NAME_UNKNOWN");
    assert_eq!(
        v["errors"][0]["message"],
        format!("The repository with name 'team/app' does not exist in the registry with id '{ACCOUNT_ID}'")
    );
    // A template for the `team` prefix creates team/… repositories with its settings.
    let (status, v) = b.ecr(
        "CreateRepositoryCreationTemplate",
        json!({"prefix": "team", "appliedFor": ["CREATE_ON_PUSH"], "imageTagMutability": "IMMUTABLE",
               "resourceTags": [{"Key": "owner", "Value": "team"}]}),
    );
    assert_eq!(status, 200, "{v}");
    push_image(&c, &b, "team/app", "v1", 1).await;
    let (_, v) = b.ecr("DescribeRepositories", json!({"repositoryNames": ["team/app"]}));
    assert_eq!(v["repositories"][0]["imageTagMutability"], "IMMUTABLE", "{v}");
    let r = c.post(b.url("/v2/other/blobs/uploads/")).send().await.unwrap();
    assert_eq!(r.status(), 404, "the template covers team/ only");
}

#[tokio::test]
async fn immutable_tags_refuse_other_content_on_v2() {
    let b = Berth::start_bare();
    let (status, v) = b.ecr(
        "CreateRepository",
        json!({"repositoryName": "frozen", "imageTagMutability": "IMMUTABLE_WITH_EXCLUSION",
        "imageTagMutabilityExclusionFilters": [{"filterType": "WILDCARD", "filter": "latest"}]}),
    );
    assert_eq!(status, 200, "{v}");
    let c = b.client();
    let (d1, m1) = push_image(&c, &b, "frozen", "v1", 1).await;
    // Same content again under the same tag: fine, as Docker expects.
    let r = c
        .put(b.url("/v2/frozen/manifests/v1"))
        .header("content-type", OCI_MANIFEST)
        .body(m1.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    // Other content under v1: refused with TAG_INVALID and ECR's message; v1 unchanged.
    let (_, m2) = push_image(&c, &b, "frozen", "v2", 2).await;
    let r = c
        .put(b.url("/v2/frozen/manifests/v1"))
        .header("content-type", OCI_MANIFEST)
        .body(m2.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["errors"][0]["code"], "TAG_INVALID");
    assert_eq!(
        v["errors"][0]["message"],
        "The image tag 'v1' already exists in the 'frozen' repository and cannot be overwritten because the repository is immutable."
    );
    let r = c.head(b.url("/v2/frozen/manifests/v1")).send().await.unwrap();
    assert_eq!(header(&r, "docker-content-digest"), d1);
    // The excluded tag moves freely.
    for m in [&m1, &m2] {
        let r = c
            .put(b.url("/v2/frozen/manifests/latest"))
            .header("content-type", OCI_MANIFEST)
            .body(m.to_vec())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201);
    }
    // Back to MUTABLE: v1 moves.
    let (status, _) =
        b.ecr("PutImageTagMutability", json!({"repositoryName": "frozen", "imageTagMutability": "MUTABLE"}));
    assert_eq!(status, 200);
    let r = c.put(b.url("/v2/frozen/manifests/v1")).header("content-type", OCI_MANIFEST).body(m2).send().await.unwrap();
    assert_eq!(r.status(), 201);
}

#[test]
fn admin_creates_users_whose_keys_work() {
    let b = Berth::start_bare();
    let run = |args: &[&str]| -> Value {
        let out = b.run(args);
        assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
        serde_json::from_slice(&out.stdout).unwrap()
    };
    let user = run(&["admin", "create-user", "alice"]);
    assert_eq!(user["User"]["Arn"], format!("arn:aws:iam::{ACCOUNT_ID}:user/alice"));
    assert!(!b.run(&["admin", "create-user", "alice"]).status.success(), "names are unique");
    assert!(!b.run(&["admin", "create-user", "bad/name"]).status.success());
    let key = run(&["admin", "create-access-key", "alice"]);
    let (id, secret) =
        (key["AccessKey"]["AccessKeyId"].as_str().unwrap(), key["AccessKey"]["SecretAccessKey"].as_str().unwrap());
    let listed = run(&["admin", "list-access-keys", "alice"]);
    assert_eq!(listed["AccessKeyMetadata"][0]["AccessKeyId"], id);
    assert!(listed.to_string().find(secret).is_none(), "secrets are never listed");
    assert_eq!(run(&["admin", "list-users"])["Users"][0]["UserName"], "alice");
    // The running server accepts the new key at once; a new user may do nothing until a policy
    // allows it.
    let (status, v) = b.ecr_as(id, secret, "CreateRepository", json!({"repositoryName": "alice-app"}));
    assert_eq!((status, v["__type"].as_str().unwrap()), (403, "AccessDeniedException"), "{v}");
    run(&["admin", "attach-user-policy", "alice", "arn:aws:iam::aws:policy/AmazonEC2ContainerRegistryFullAccess"]);
    assert_eq!(
        run(&["admin", "show-user", "alice"])["AttachedPolicies"][0],
        "arn:aws:iam::aws:policy/AmazonEC2ContainerRegistryFullAccess"
    );
    assert!(!b.run(&["admin", "attach-user-policy", "alice", "arn:aws:iam::aws:policy/Nope"]).status.success());
    // Policies the server has read are cached for up to two seconds.
    std::thread::sleep(std::time::Duration::from_secs(3)); // authz::CACHE_SECONDS is 2
    let (status, v) = b.ecr_as(id, secret, "CreateRepository", json!({"repositoryName": "alice-app"}));
    assert_eq!(status, 200, "{v}");
    let (status, v) = b.ecr_as(id, "wrong", "DescribeRepositories", json!({}));
    assert_eq!((status, v["__type"].as_str().unwrap()), (400, "InvalidSignatureException"));
}

#[test]
fn query_string_signatures_work_on_the_ecr_api() {
    let b = Berth::start_bare();
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64;
    let post = |query: &str| {
        let out = std::process::Command::new("curl")
            .args([
                "-sS",
                "-X",
                "POST",
                "-H",
                "X-Amz-Target: AmazonEC2ContainerRegistry_V20150921.DescribeRepositories",
            ])
            .args(["-H", "Content-Type: application/x-amz-json-1.1"])
            .arg(b.url(&format!("/?{query}")))
            .output()
            .unwrap();
        serde_json::from_slice::<Value>(&out.stdout).unwrap()
    };
    // An empty body, signed in the query string: the form presigned URLs use. The operation
    // header must be among the signed ones.
    let target = "AmazonEC2ContainerRegistry_V20150921.DescribeRepositories";
    let headers = [("host".to_string(), b.host()), ("x-amz-target".to_string(), target.to_string())];
    let presign = |headers: &[(String, String)], at: i64| {
        berth_auth::sigv4::presign("POST", "/", headers, "", ROOT_KEY_ID, ROOT_SECRET, REGION, "ecr", at, 60)
    };
    let q = presign(&headers, now);
    assert_eq!(post(&q)["repositories"], json!([]));
    let host_only = presign(&headers[..1], now);
    assert_eq!(post(&host_only)["__type"], "IncompleteSignatureException");
    let expired = presign(&headers, now - 120);
    assert_eq!(post(&expired)["__type"], "InvalidSignatureException");
    let forged = q.replace("X-Amz-Expires=60", "X-Amz-Expires=600");
    assert_eq!(post(&forged)["__type"], "InvalidSignatureException");
}
