//! Regressions from the outside review's security findings, against the real binary: an upload
//! disguised as a mount, SigV4 that AWS would refuse (wrong region, unsigned `X-Amz-Target`,
//! a second `Authorization` header), and metrics kept off the public port.

use std::process::{Command, Stdio};

use berth_e2e::*;
use reqwest::Client;
use serde_json::{Value, json};

fn header(r: &reqwest::Response, name: &str) -> String {
    r.headers().get(name).map(|v| v.to_str().unwrap().to_string()).unwrap_or_default()
}

fn now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64
}

async fn error_code(r: reqwest::Response) -> String {
    let v: Value = r.json().await.unwrap();
    v["errors"][0]["code"].as_str().unwrap_or_default().to_string()
}

/// A user of the default account with an inline policy; returns its key id and secret.
fn user_with_policy(b: &Berth, name: &str, policy: Value) -> (String, String) {
    ok(b.run(&["admin", "create-user", name]), "create-user");
    let file = b.data_dir.with_extension(format!("{name}.json"));
    std::fs::write(&file, policy.to_string()).unwrap();
    ok(b.run(&["admin", "put-user-policy", name, "p", file.to_str().unwrap()]), "put-user-policy");
    let out = ok(b.run(&["admin", "create-access-key", name]), "create-access-key");
    let v: Value = serde_json::from_str(&out).unwrap();
    let key = &v["AccessKey"];
    (key["AccessKeyId"].as_str().unwrap().to_string(), key["SecretAccessKey"].as_str().unwrap().to_string())
}

/// A client sending the registry token of the given key.
fn client_for(b: &Berth, key: &str, secret: &str) -> Client {
    let (status, v) = b.ecr_as(key, secret, "GetAuthorizationToken", json!({}));
    assert_eq!(status, 200, "{v}");
    let token = v["authorizationData"][0]["authorizationToken"].as_str().unwrap();
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert(reqwest::header::AUTHORIZATION, format!("Basic {token}").parse().unwrap());
    Client::builder().default_headers(headers).build().unwrap()
}

#[tokio::test]
async fn a_mount_never_stores_the_request_body() {
    let b = Berth::start();
    let c = b.client();
    let (status, _) = b.ecr("PutAccountSetting", json!({"name": "BLOB_MOUNTING", "value": "ENABLED"}));
    assert_eq!(status, 200);
    push_blob(&c, &b, "other", b"something else").await;
    // A blob `other` does not hold, "mounted" with a digest and a body: the body is ignored and
    // the answer is a new, empty upload session, not a monolithic upload.
    let body = b"smuggled bytes".to_vec();
    let d = sha256(&body);
    let r = c
        .post(b.url(&format!("/v2/target/blobs/uploads/?mount={d}&from=other&digest={d}")))
        .body(body.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    assert_eq!(header(&r, "range"), "0-0");
    let location = header(&r, "location");
    assert!(location.starts_with("/v2/target/blobs/uploads/"), "{location}");
    let r = c.head(b.url(&format!("/v2/target/blobs/{d}"))).send().await.unwrap();
    assert_eq!(r.status(), 404, "the body was not stored");
    let r = c.get(b.url(&location)).send().await.unwrap();
    assert_eq!((r.status().as_u16(), header(&r, "range")), (204, "0-0".into()), "the session is empty");
    // The same with `from` naming no repository, and with `mount` alone.
    for query in [format!("mount={d}&from=nowhere&digest={d}"), format!("mount={d}&digest={d}")] {
        let r = c.post(b.url(&format!("/v2/target/blobs/uploads/?{query}"))).body(body.clone()).send().await.unwrap();
        assert_eq!(r.status(), 202, "{query}");
        assert_eq!(c.head(b.url(&format!("/v2/target/blobs/{d}"))).send().await.unwrap().status(), 404, "{query}");
    }
    // Only `?digest=` without `mount` is a monolithic upload.
    let r = c.post(b.url(&format!("/v2/target/blobs/uploads/?digest={d}"))).body(body).send().await.unwrap();
    assert_eq!(r.status(), 201);
}

#[tokio::test]
async fn a_mount_needs_pull_on_its_source_and_push_on_the_target() {
    let b = Berth::start();
    let c = b.client();
    let (status, _) = b.ecr("PutAccountSetting", json!({"name": "BLOB_MOUNTING", "value": "ENABLED"}));
    assert_eq!(status, 200);
    let d = push_blob(&c, &b, "private/base", b"private layer").await;
    push_blob(&c, &b, "mine/app", b"x").await;
    // May push to mine/*, may not read private/*.
    let push_only = json!({"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Action": ["ecr:GetAuthorizationToken"], "Resource": "*"},
        {"Effect": "Allow", "Action": ["ecr:InitiateLayerUpload", "ecr:UploadLayerPart", "ecr:CompleteLayerUpload",
            "ecr:BatchCheckLayerAvailability", "ecr:GetDownloadUrlForLayer"],
         "Resource": "arn:aws:ecr:us-east-1:123456789012:repository/mine/*"}]});
    let (key, secret) = user_with_policy(&b, "pusher", push_only);
    let u = client_for(&b, &key, &secret);
    let r = u.post(b.url(&format!("/v2/mine/app/blobs/uploads/?mount={d}&from=private/base"))).send().await.unwrap();
    assert_eq!(r.status(), 202, "not mounted: the caller may not read the source");
    let r = u.head(b.url(&format!("/v2/mine/app/blobs/{d}"))).send().await.unwrap();
    assert_eq!(r.status(), 404, "the private layer did not become readable through mine/app");
    let r = u.get(b.url(&format!("/v2/mine/app/blobs/{d}"))).send().await.unwrap();
    assert_eq!(r.status(), 404);
    // Without push on the target, even a mount is refused.
    let r = u.post(b.url(&format!("/v2/private/base/blobs/uploads/?mount={d}&from=mine/app"))).send().await.unwrap();
    assert_eq!(r.status(), 403);
    assert_eq!(error_code(r).await, "DENIED");
    // Root may read the source: the mount is done.
    let r = c.post(b.url(&format!("/v2/mine/app/blobs/uploads/?mount={d}&from=private/base"))).send().await.unwrap();
    assert_eq!(r.status(), 201);
}

/// Signs an ECR API call as the root, for `region` and `service`; `unsigned` headers are added
/// after signing.
fn signed(
    b: &Berth,
    op: &str,
    body: &[u8],
    region: &str,
    service: &str,
    unsigned: &[(&str, &str)],
) -> reqwest::RequestBuilder {
    let mut headers =
        vec![("host".to_string(), b.host()), ("content-type".to_string(), "application/x-amz-json-1.1".to_string())];
    if !op.is_empty() {
        headers.push(("x-amz-target".to_string(), format!("AmazonEC2ContainerRegistry_V20150921.{op}")));
    }
    let (date, auth) =
        berth_auth::sigv4::sign("POST", "/", "", &headers, body, ROOT_KEY_ID, ROOT_SECRET, region, service, now());
    let mut req =
        Client::new().post(b.url("/")).body(body.to_vec()).header("x-amz-date", date).header("authorization", auth);
    for (k, v) in headers.iter().filter(|(k, _)| k != "host") {
        req = req.header(k, v);
    }
    for (k, v) in unsigned {
        req = req.header(*k, *v);
    }
    req
}

async fn exception(r: reqwest::Response) -> (u16, String, String) {
    let status = r.status().as_u16();
    let v: Value = r.json().await.unwrap_or(Value::Null);
    (
        status,
        v["__type"].as_str().unwrap_or_default().to_string(),
        v["message"].as_str().unwrap_or_default().to_string(),
    )
}

#[tokio::test]
async fn sigv4_is_refused_where_aws_refuses_it() {
    let b = Berth::start_env(&[("BERTH_REGION", "eu-west-1")]);
    let body = br#"{"repositoryName":"kept"}"#;
    let r = signed(&b, "CreateRepository", body, "eu-west-1", "ecr", &[]).send().await.unwrap();
    assert_eq!(r.status(), 200);

    // Another region's signature: InvalidSignatureException, as AWS answers.
    let r = signed(&b, "DescribeRepositories", b"{}", "us-west-2", "ecr", &[]).send().await.unwrap();
    let (status, kind, message) = exception(r).await;
    assert_eq!((status, kind.as_str()), (400, "InvalidSignatureException"), "{message}");
    assert!(message.contains("Credential should be scoped to a valid region"), "{message}");
    // ECR is regional: us-east-1 is not accepted for an eu-west-1 Berth either.
    let r = signed(&b, "DescribeRepositories", b"{}", "us-east-1", "ecr", &[]).send().await.unwrap();
    assert_eq!(exception(r).await.1, "InvalidSignatureException");

    // An operation header that the signature does not cover: a man in the middle could have
    // swapped it. Refused, and the repository is still there.
    let delete = br#"{"repositoryName":"kept","force":true}"#;
    let r = signed(
        &b,
        "",
        delete,
        "eu-west-1",
        "ecr",
        &[("x-amz-target", "AmazonEC2ContainerRegistry_V20150921.DeleteRepository")],
    )
    .send()
    .await
    .unwrap();
    let (status, kind, message) = exception(r).await;
    assert_eq!((status, kind.as_str()), (400, "IncompleteSignatureException"), "{message}");
    assert!(message.contains("x-amz-target"), "{message}");
    // Any other x-amz-* header too.
    let r = signed(&b, "DescribeRepositories", b"{}", "eu-west-1", "ecr", &[("x-amz-security-token", "x")])
        .send()
        .await
        .unwrap();
    assert_eq!(exception(r).await.1, "IncompleteSignatureException");

    // A second Authorization header after a valid one.
    let r = signed(&b, "DescribeRepositories", b"{}", "eu-west-1", "ecr", &[])
        .header("authorization", "AWS4-HMAC-SHA256 Credential=AKIAOTHER/20260101/eu-west-1/ecr/aws4_request, SignedHeaders=host, Signature=00")
        .send()
        .await
        .unwrap();
    let (status, kind, _) = exception(r).await;
    if cluster_run() {
        // nginx refuses a request with two Authorization headers itself, before any node.
        assert_eq!(status, 400);
    } else {
        assert_eq!((status, kind.as_str()), (400, "IncompleteSignatureException"));
    }
    let r = signed(&b, "DescribeRepositories", br#"{"repositoryNames":["kept"]}"#, "eu-west-1", "ecr", &[])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "the repository was not deleted");

    // IAM is global: signed for us-east-1 or for the deployment's region, not for another.
    let iam = |region: &str| {
        let body = b"Action=ListUsers&Version=2010-05-08";
        let headers = vec![
            ("host".to_string(), b.host()),
            ("content-type".to_string(), "application/x-www-form-urlencoded; charset=utf-8".to_string()),
        ];
        let (date, auth) =
            berth_auth::sigv4::sign("POST", "/", "", &headers, body, ROOT_KEY_ID, ROOT_SECRET, region, "iam", now());
        Client::new()
            .post(b.url("/"))
            .header("content-type", "application/x-www-form-urlencoded; charset=utf-8")
            .header("x-amz-date", date)
            .header("authorization", auth)
            .body(body.to_vec())
            .send()
    };
    assert_eq!(iam("us-east-1").await.unwrap().status(), 200);
    assert_eq!(iam("eu-west-1").await.unwrap().status(), 200);
    let r = iam("us-west-2").await.unwrap();
    assert_eq!(r.status(), 403);
    assert!(r.text().await.unwrap().contains("Credential should be scoped to a valid region"));

    // /v2/: two Authorization headers are a 400 UNAUTHORIZED, whatever the first says.
    let token = b.token();
    use base64::Engine;
    let basic = format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("AWS:{token}")));
    let r = Client::new()
        .get(b.url("/v2/"))
        .header("authorization", &basic)
        .header("authorization", "Basic eDp5")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    if !cluster_run() {
        // (nginx, in front of the cluster, refuses it itself.)
        assert_eq!(error_code(r).await, "UNAUTHORIZED");
    }
    let r = Client::new().get(b.url("/v2/")).header("authorization", &basic).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r, "x-berth-region"), "eu-west-1");
}

/// `docker-credential-berth` beside the `berth` binary under test.
fn credential_helper() -> std::path::PathBuf {
    berth_bin().with_file_name("docker-credential-berth")
}

#[tokio::test]
async fn the_credential_helper_signs_for_the_hosts_region() {
    let b = Berth::start_env(&[("BERTH_REGION", "ap-southeast-2")]);
    use std::io::Write;
    // The user's configured region is another one: the helper learns the host's from /v2/.
    let mut child = Command::new(credential_helper())
        .arg("get")
        .env("AWS_ACCESS_KEY_ID", ROOT_KEY_ID)
        .env("AWS_SECRET_ACCESS_KEY", ROOT_SECRET)
        .env("AWS_REGION", "us-east-1")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(b.host().as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    let v: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(v["Username"], "AWS");
    use base64::Engine;
    let basic = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("AWS:{}", v["Secret"].as_str().unwrap()))
    );
    let r = Client::new().get(b.url("/v2/")).header("authorization", basic).send().await.unwrap();
    assert_eq!(r.status(), 200, "the helper's token works");
}

#[tokio::test]
async fn metrics_are_off_the_public_port_and_name_no_internal_key() {
    if single_node("reads one node's /metrics, which counts only what nginx sent that node") {
        return;
    }
    let b = Berth::start_with(&["--metrics-listen", "127.0.0.1:0"]);
    b.create_on_push();
    let out = ok(b.run(&["admin", "create-account", "987654321098"]), "create-account");
    let v: Value = serde_json::from_str(&out).unwrap();
    let (key, secret) = (
        v["AccessKey"]["AccessKeyId"].as_str().unwrap().to_string(),
        v["AccessKey"]["SecretAccessKey"].as_str().unwrap().to_string(),
    );
    let (status, v) = b.ecr_as(&key, &secret, "CreateRepository", json!({"repositoryName": "theirs"}));
    assert_eq!(status, 200, "{v}");
    push_image(&b.client(), &b, "ours", "v1", 1).await;

    for path in ["/metrics", "/metrics/"] {
        assert_eq!(Client::new().get(b.url(path)).send().await.unwrap().status(), 404, "{path}");
    }
    let text = reqwest::get(format!("http://{}/metrics", b.metrics_addr.unwrap())).await.unwrap().text().await.unwrap();
    assert!(text.contains(r#"berth_repository_images{account="123456789012",repository="ours"} 1"#), "{text}");
    assert!(text.contains(r#"berth_repository_images{account="987654321098",repository="theirs"} 0"#), "{text}");
    assert!(!text.contains('@'), "an internal key in the metrics:\n{text}");
}
