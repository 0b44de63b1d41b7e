//! HTTPS with `--tls-cert` / `--tls-key`, checked with curl against a self-signed certificate.

use std::process::Command;

use berth_e2e::*;

#[test]
fn serves_https_with_the_given_certificate() {
    if single_node("a node's own TLS listener: behind nginx, TLS would end at nginx") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    ok(
        Command::new("openssl")
            .args(["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-days", "1"])
            .args(["-subj", "/CN=berth-test", "-addext", "subjectAltName=IP:127.0.0.1"])
            .arg("-keyout")
            .arg(&key)
            .arg("-out")
            .arg(&cert)
            .output()
            .expect("openssl"),
        "openssl req",
    );
    let b = Berth::start_with(&["--tls-cert", cert.to_str().unwrap(), "--tls-key", key.to_str().unwrap()]);
    // No creation template over plain HTTP here: the test pushes into a repository it creates.
    let create = Command::new("curl")
        .args([
            "-sS",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "--aws-sigv4",
            "aws:amz:us-east-1:ecr",
            "--user",
            &format!("{ROOT_KEY_ID}:{ROOT_SECRET}"),
        ])
        .args(["-H", "X-Amz-Target: AmazonEC2ContainerRegistry_V20150921.CreateRepository"])
        .args(["-H", "Content-Type: application/x-amz-json-1.1", "--data", r#"{"repositoryName":"tls"}"#, "--cacert"])
        .arg(&cert)
        .arg(format!("https://{}/", b.host()))
        .output()
        .unwrap();
    assert_eq!(ok(create, "CreateRepository over TLS"), "200");
    // The ECR API over TLS, signed by curl's own SigV4: a registry token.
    let out = Command::new("curl")
        .args(["-sS", "--aws-sigv4", "aws:amz:us-east-1:ecr", "--user", &format!("{ROOT_KEY_ID}:{ROOT_SECRET}")])
        .args(["-H", "X-Amz-Target: AmazonEC2ContainerRegistry_V20150921.GetAuthorizationToken"])
        .args(["-H", "Content-Type: application/x-amz-json-1.1", "--data", "{}", "--cacert"])
        .arg(&cert)
        .arg(format!("https://{}/", b.host()))
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_str(&ok(out, "GetAuthorizationToken over TLS")).unwrap();
    assert!(v["authorizationData"][0]["proxyEndpoint"].as_str().unwrap().starts_with("https://"), "{v}");
    use base64::Engine;
    let encoded = v["authorizationData"][0]["authorizationToken"].as_str().unwrap();
    let basic = String::from_utf8(base64::engine::general_purpose::STANDARD.decode(encoded).unwrap()).unwrap();
    let url = format!("https://{}/v2/", b.host());
    let curl = |extra: &[&str]| {
        let out = Command::new("curl")
            .args(["-sS", "-o", "/dev/null"])
            .args(extra)
            .arg("--cacert")
            .arg(&cert)
            .arg(&url)
            .output();
        ok(out.unwrap(), "curl https")
    };
    assert_eq!(curl(&["-w", "%{http_code} %{http_version}", "-u", &basic]), "200 2", "HTTP/2 negotiated by ALPN");
    assert_eq!(curl(&["--http1.1", "-w", "%{http_code}", "-u", &basic]), "200");
    assert_eq!(curl(&["-w", "%{http_code}"]), "401", "no credentials");
    // A blob pushed and read back over TLS.
    let digest = sha256(b"over tls");
    let out = Command::new("curl")
        .args([
            "-sS",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "-u",
            &basic,
            "-X",
            "POST",
            "--data-binary",
            "over tls",
            "--cacert",
        ])
        .arg(&cert)
        .arg(format!("https://{}/v2/tls/blobs/uploads/?digest={digest}", b.host()))
        .output()
        .unwrap();
    assert_eq!(ok(out, "curl upload"), "201");
    let out = Command::new("curl")
        .args(["-sS", "-u", &basic, "--cacert"])
        .arg(&cert)
        .arg(format!("https://{}/v2/tls/blobs/{digest}", b.host()))
        .output()
        .unwrap();
    assert_eq!(ok(out, "curl download"), "over tls");
    // Plain HTTP to the TLS port gets no answer that a client could mistake for success.
    let out = Command::new("curl")
        .args(["-sS", "-m", "5", "-o", "/dev/null", "-w", "%{http_code}"])
        .arg(format!("http://{}/v2/", b.host()))
        .output()
        .unwrap();
    assert_ne!(String::from_utf8_lossy(&out.stdout), "200");
    // A key without a certificate is refused at start.
    let out = Command::new(berth_bin())
        .args(["serve", "--listen", "127.0.0.1:0", "--tls-key"])
        .arg(&key)
        .arg("--data-dir")
        .arg(dir.path().join("d"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("both a certificate"));
}
