//! `docker-credential-berth`: Docker's credential-helper protocol for any Berth host.
//!
//! Docker runs `docker-credential-berth get` with the registry host on standard input; the helper
//! signs `GetAuthorizationToken` with the user's AWS credentials (environment, then the shared
//! credentials file), calls that host's ECR API, and answers with user `AWS` and the token.
//! Unlike ECR's own helper it does not insist on `*.dkr.ecr.<region>.amazonaws.com` hosts.
//! `store`, `erase` and `list` are accepted and keep nothing: tokens are fetched when needed.

use std::io::Read;
use std::process::ExitCode;

use base64::Engine;

struct Credentials {
    key: String,
    secret: String,
    region: String,
}

/// Environment first, then `~/.aws/credentials` (profile `AWS_PROFILE` or `default`).
fn credentials() -> Result<Credentials, String> {
    let region = std::env::var("AWS_REGION")
        .or_else(|_| std::env::var("AWS_DEFAULT_REGION"))
        .unwrap_or_else(|_| "us-east-1".into());
    if let (Ok(key), Ok(secret)) = (std::env::var("AWS_ACCESS_KEY_ID"), std::env::var("AWS_SECRET_ACCESS_KEY")) {
        return Ok(Credentials { key, secret, region });
    }
    let path = std::env::var("AWS_SHARED_CREDENTIALS_FILE")
        .unwrap_or_else(|_| format!("{}/.aws/credentials", std::env::var("HOME").unwrap_or_default()));
    let profile = std::env::var("AWS_PROFILE").unwrap_or_else(|_| "default".into());
    let text =
        std::fs::read_to_string(&path).map_err(|e| format!("no AWS credentials in the environment or {path}: {e}"))?;
    let (mut key, mut secret, mut in_profile) = (None, None, false);
    for line in text.lines().map(str::trim) {
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            in_profile = name.trim() == profile;
        } else if in_profile && let Some((k, v)) = line.split_once('=') {
            match k.trim() {
                "aws_access_key_id" => key = Some(v.trim().to_string()),
                "aws_secret_access_key" => secret = Some(v.trim().to_string()),
                _ => {}
            }
        }
    }
    match (key, secret) {
        (Some(key), Some(secret)) => Ok(Credentials { key, secret, region }),
        _ => Err(format!("profile {profile:?} in {path} has no access key")),
    }
}

fn now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64)
}

/// Asks `endpoint` (`scheme://host`) for a registry token; returns the password part.
/// The region the Berth at `endpoint` signs for: it names it on every `/v2/` answer
/// (`x-berth-region`), so one set of credentials works with Berths in different regions.
/// `None` when nothing answers there.
async fn host_region(client: &reqwest::Client, endpoint: &str) -> Result<Option<String>, String> {
    let resp = client.get(format!("{endpoint}/v2/")).send().await.map_err(|e| e.to_string())?;
    Ok(resp.headers().get("x-berth-region").and_then(|v| v.to_str().ok()).map(str::to_string))
}

async fn token(client: &reqwest::Client, endpoint: &str, host: &str, creds: &Credentials) -> Result<String, String> {
    let region = host_region(client, endpoint).await?.unwrap_or_else(|| creds.region.clone());
    let body = b"{}";
    let headers = vec![
        ("host".to_string(), host.to_string()),
        ("content-type".to_string(), "application/x-amz-json-1.1".to_string()),
        ("x-amz-target".to_string(), "AmazonEC2ContainerRegistry_V20150921.GetAuthorizationToken".to_string()),
    ];
    let (date, auth) =
        berth_auth::sigv4::sign("POST", "/", "", &headers, body, &creds.key, &creds.secret, &region, "ecr", now());
    let mut req = client.post(format!("{endpoint}/")).body(body.to_vec());
    for (k, v) in headers.iter().filter(|(k, _)| k != "host") {
        req = req.header(k, v);
    }
    let resp = req.header("x-amz-date", date).header("authorization", auth).send().await.map_err(|e| e.to_string())?;
    let status = resp.status();
    let v: serde_json::Value = resp.json().await.map_err(|e| e.to_string())?;
    if !status.is_success() {
        return Err(format!("{}: {}", v["__type"].as_str().unwrap_or("error"), v["message"].as_str().unwrap_or("")));
    }
    let encoded = v["authorizationData"][0]["authorizationToken"].as_str().ok_or("no authorizationToken")?;
    let decoded = base64::engine::general_purpose::STANDARD.decode(encoded).map_err(|e| e.to_string())?;
    let text = String::from_utf8(decoded).map_err(|e| e.to_string())?;
    text.strip_prefix("AWS:").map(str::to_string).ok_or_else(|| "unexpected token format".into())
}

async fn get(server: &str) -> Result<serde_json::Value, String> {
    let creds = credentials()?;
    let server = server.trim();
    let (schemes, host): (Vec<&str>, &str) = match server.split_once("://") {
        Some((scheme, rest)) => (vec![scheme], rest.trim_end_matches('/')),
        // HTTPS first; plain HTTP only if no TLS server answers (as Docker does for insecure registries).
        None => (vec!["https", "http"], server.trim_end_matches('/')),
    };
    let client =
        reqwest::Client::builder().timeout(std::time::Duration::from_secs(30)).build().map_err(|e| e.to_string())?;
    let mut last = String::new();
    for scheme in schemes {
        match token(&client, &format!("{scheme}://{host}"), host, &creds).await {
            Ok(secret) => return Ok(serde_json::json!({ "ServerURL": server, "Username": "AWS", "Secret": secret })),
            Err(e) => last = format!("{scheme}://{host}: {e}"),
        }
    }
    Err(last)
}

fn main() -> ExitCode {
    let action = std::env::args().nth(1).unwrap_or_default();
    let mut input = String::new();
    let _ = std::io::stdin().read_to_string(&mut input);
    let result = match action.as_str() {
        "get" => {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
            runtime.block_on(get(&input)).map(|v| v.to_string())
        }
        "store" | "erase" => Ok(String::new()),
        "list" => Ok("{}".to_string()),
        "version" | "--version" => Ok(format!("docker-credential-berth {}", env!("CARGO_PKG_VERSION"))),
        other => Err(format!("unknown action {other:?}: use get, store, erase or list")),
    };
    match result {
        Ok(out) => {
            println!("{out}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            println!("{e}");
            ExitCode::FAILURE
        }
    }
}
