//! What IAM policies cost on the hottest path: manifest GET at 32 connections, on one Berth,
//! as the root (no policy to evaluate), and as a user whose identity policy holds 10 or 100
//! statements and the repository's policy 10 (conditions on source address and tags,
//! the allowing statement last), beside the same GET with authentication off.

use std::path::Path;

use bytes::Bytes;
use reqwest::Client;

use crate::server::{BerthOptions, Kind, Server};
use crate::{OCI_MANIFEST, filler, load, manifest, median, put_manifest, upload_whole};

const ACCOUNT: &str = "123456789012";

/// A policy of `n` statements: `n - 1` that do not apply to the request (other repositories,
/// other actions, a source-address condition that fails) and the Allow last.
fn policy(n: usize, resource_policy: bool) -> String {
    let principal = if resource_policy {
        format!(r#""Principal":{{"AWS":"arn:aws:iam::{ACCOUNT}:user/puller"}},"#)
    } else {
        String::new()
    };
    let resource = |r: &str| if resource_policy { String::new() } else { format!(r#","Resource":"{r}""#) };
    let mut statements: Vec<String> = (0..n - 1)
        .map(|i| match i % 3 {
            0 => format!(
                r#"{{"Sid":"Other{i}","Effect":"Allow",{principal}"Action":["ecr:PutImage","ecr:InitiateLayerUpload"]{}}}"#,
                resource(&format!("arn:aws:ecr:us-east-1:{ACCOUNT}:repository/team-{i}/*"))
            ),
            1 => format!(
                r#"{{"Sid":"Net{i}","Effect":"Deny",{principal}"Action":"ecr:*"{},"Condition":{{"IpAddress":{{"aws:SourceIp":["10.{i}.0.0/16","192.168.{}.0/24"]}}}}}}"#,
                resource("*"),
                i % 250
            ),
            _ => format!(
                r#"{{"Sid":"Tag{i}","Effect":"Allow",{principal}"Action":"ecr:BatchGetImage"{},"Condition":{{"StringEquals":{{"ecr:ResourceTag/team":"team-{i}"}}}}}}"#,
                resource("*")
            ),
        })
        .collect();
    statements.push(format!(
        r#"{{"Sid":"Pull","Effect":"Allow",{principal}"Action":["ecr:GetAuthorizationToken","ecr:BatchGetImage","ecr:GetDownloadUrlForLayer"]{}}}"#,
        resource("*")
    ));
    format!(r#"{{"Version":"2012-10-17","Statement":[{}]}}"#, statements.join(","))
}

fn token_of(srv: &Server, key: &str, secret: &str) -> anyhow::Result<String> {
    let v: serde_json::Value = serde_json::from_str(&srv.ecr_as(key, secret, "GetAuthorizationToken", "{}")?)?;
    Ok(v["authorizationData"][0]["authorizationToken"].as_str().unwrap_or_default().to_string())
}

fn admin(berth: &Path, data: &Path, args: &[&str], stdin: Option<&str>) -> anyhow::Result<serde_json::Value> {
    use std::io::Write;
    let mut child = std::process::Command::new(berth)
        .arg("admin")
        .args(args)
        .arg("--data-dir")
        .arg(data)
        .env("BERTH_ACCOUNT_ID", ACCOUNT)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()?;
    child.stdin.take().expect("stdin").write_all(stdin.unwrap_or("").as_bytes())?;
    let out = child.wait_with_output()?;
    anyhow::ensure!(out.status.success(), "berth admin {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    Ok(serde_json::from_slice(&out.stdout)?)
}

pub async fn run(berth: &Path, reference: &Path, rounds: usize, seconds: u32) -> anyhow::Result<String> {
    let dir = tempfile::tempdir()?;
    let data = dir.path().join("data");
    let env: &[(&str, &str)] = &[("BERTH_ACCOUNT_ID", ACCOUNT)];
    let srv = Server::start_opts(
        Kind::Berth,
        berth,
        reference,
        BerthOptions { env, data_dir: Some(&data), ..Default::default() },
    )?;
    srv.ecr("CreateRepository", r#"{"repositoryName":"bench/app","tags":[{"Key":"team","Value":"bench"}]}"#)?;
    let c = srv.client()?;
    let (config, layer) = (br#"{"architecture":"amd64","os":"linux"}"#.to_vec(), filler(4096, 3));
    let cd = (upload_whole(&c, &srv.base, "bench/app", Bytes::from(config.clone())).await?, config.len());
    let ld = (upload_whole(&c, &srv.base, "bench/app", Bytes::from(layer.clone())).await?, layer.len());
    put_manifest(&c, &srv.base, "bench/app", "v1", manifest(&cd, &ld)).await?;
    let url = format!("{}/v2/bench/app/manifests/v1", srv.base);
    let accept = format!("Accept: {OCI_MANIFEST}");
    let root_auth = format!("Authorization: {}", srv.auth.clone().unwrap_or_default());
    let open = Server::start_with(Kind::Berth, berth, reference, &["--insecure-no-auth"])?;
    let oc = Client::new();
    let ocd = (upload_whole(&oc, &open.base, "bench/app", Bytes::from(config.clone())).await?, config.len());
    let old = (upload_whole(&oc, &open.base, "bench/app", Bytes::from(layer.clone())).await?, layer.len());
    put_manifest(&oc, &open.base, "bench/app", "v1", manifest(&ocd, &old)).await?;
    let open_url = format!("{}/v2/bench/app/manifests/v1", open.base);

    // Per caller: req/s and the server's CPU per request, which is what policies cost and
    // moves far less than req/s on a shared machine. The order rotates every round.
    let mut rows: Vec<(String, Vec<f64>, Vec<f64>)> = Vec::new();
    let mut record = |label: &str, rps: f64, cpu_us: f64| match rows.iter_mut().find(|(l, _, _)| l == label) {
        Some((_, r, c)) => {
            r.push(rps);
            c.push(cpu_us);
        }
        None => rows.push((label.to_string(), vec![rps], vec![cpu_us])),
    };
    let measure = |srv: &Server, url: &str, headers: &[&str]| -> anyhow::Result<(f64, f64)> {
        let cpu0 = srv.cpu_seconds();
        let rate = load::wrk(url, 32, seconds, headers, None)?;
        anyhow::ensure!(rate.errors == 0.0, "refused GETs during the run");
        Ok((rate.rps, (srv.cpu_seconds() - cpu0) * 1e6 / rate.requests.max(1.0)))
    };
    let mut users = Vec::new();
    for n in [10usize, 100] {
        // A user per policy size, so that both are measured in every round.
        let name = format!("puller{n}");
        admin(berth, &data, &["create-user", &name], None)?;
        admin(
            berth,
            &data,
            &["put-user-policy", &name, "pull", "-"],
            Some(&policy(n, false).replace("user/puller", &format!("user/{name}"))),
        )?;
        let key = admin(berth, &data, &["create-access-key", &name], None)?;
        let (id, secret) = (
            key["AccessKey"]["AccessKeyId"].as_str().unwrap_or_default().to_string(),
            key["AccessKey"]["SecretAccessKey"].as_str().unwrap_or_default().to_string(),
        );
        users.push((n, id, secret));
    }
    // The repository policy (at most 10,240 characters: 10 statements) names both users.
    let repo_policy = policy(10, true).replace(
        r#""AWS":"arn:aws:iam::123456789012:user/puller""#,
        r#""AWS":["arn:aws:iam::123456789012:user/puller10","arn:aws:iam::123456789012:user/puller100"]"#,
    );
    srv.ecr(
        "SetRepositoryPolicy",
        &serde_json::json!({ "repositoryName": "bench/app", "policyText": repo_policy }).to_string(),
    )?;
    let mut user_auth = Vec::new();
    for (n, id, secret) in &users {
        user_auth.push((*n, format!("Authorization: Basic {}", token_of(&srv, id, secret)?)));
    }
    for round in 0..rounds {
        eprintln!("policy bench round {} / {rounds}", round + 1);
        for step in 0..4 {
            match (step + round) % 4 {
                0 => {
                    let (rps, cpu) = measure(&open, &open_url, &[&accept])?;
                    record("authentication off (a second Berth)", rps, cpu);
                }
                1 => {
                    let (rps, cpu) = measure(&srv, &url, &[&root_auth, &accept])?;
                    record("root (no policy to evaluate)", rps, cpu);
                }
                k => {
                    let (n, auth) = &user_auth[k - 2];
                    let (rps, cpu) = measure(&srv, &url, &[auth, &accept])?;
                    record(&format!("user: identity policy of {n} statements, repository policy of 10"), rps, cpu);
                }
            }
        }
    }
    let base = rows.iter().find(|(l, _, _)| l.starts_with("root")).map(|(_, _, c)| median(c)).unwrap_or(f64::NAN);
    let mut table = format!(
        "## Policy evaluation on manifest GET\n\nManifest GET, 32 connections, {seconds} s per run, median of {rounds} \
         (order rotated each round; target: policies cost under 10 %):\n\n\
         | caller | req/s | server CPU µs/req | CPU vs root |\n|---|---:|---:|---:|\n"
    );
    for (label, rps, cpu) in &rows {
        table.push_str(&format!("| {label} | {:.0} | {:.1} | {:.2} |\n", median(rps), median(cpu), median(cpu) / base));
    }
    Ok(table)
}
