//! `--replication-only`: #17's figures. Two Berth deployments on loopback, `us-east-1` and
//! `eu-west-1`, one account in both, paired as replication peers, with one rule replicating
//! every repository of us-east-1 to eu-west-1:
//! - the lag of 100 small images pushed back to back, from each acknowledged manifest PUT to
//!   the end of its replication (the event's time; the same clock): p50 and p99;
//! - one 1 GiB image replicated, from the manifest PUT to `COMPLETE`, against `skopeo copy` of
//!   the same image between the same two deployments (what a user would do by hand): the
//!   throughput, and the CPU both servers (and skopeo) spent.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;

use crate::server::{BerthOptions, Kind, Server};
use crate::{MIB, filler, manifest, median, push_small_image_to, put_manifest, upload_whole};

const ACCOUNT: &str = "123456789012";

fn now_ms() -> f64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0.0, |d| d.as_secs_f64() * 1000.0)
}

/// Runs `berth admin` on a server's data directory, in its region; the JSON it prints.
fn admin(berth: &Path, srv: &Server, args: &[&str]) -> anyhow::Result<serde_json::Value> {
    let out = Command::new(berth)
        .arg("admin")
        .args(args)
        .arg("--data-dir")
        .arg(&srv.data_dir)
        .env("BERTH_REGION", &srv.region)
        .env("BERTH_ACCOUNT_ID", ACCOUNT)
        .output()?;
    anyhow::ensure!(out.status.success(), "berth admin {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    Ok(serde_json::from_slice(&out.stdout)?)
}

/// The two deployments, paired, us-east-1 replicating everything to eu-west-1.
fn deployments(berth: &Path) -> anyhow::Result<(Server, Server)> {
    let start = |region: &'static str| {
        let env = [("BERTH_REGION", region), ("BERTH_ACCOUNT_ID", ACCOUNT)];
        Server::start_opts(Kind::Berth, berth, berth, BerthOptions { env: &env, ..Default::default() })
    };
    let (us, eu) = (start("us-east-1")?, start("eu-west-1")?);
    let endpoint = eu.base.clone();
    let out = admin(berth, &us, &["add-replication-peer", "--region", "eu-west-1", "--endpoint", &endpoint])?;
    let token = out["PeerToken"].as_str().unwrap_or_default().to_string();
    admin(berth, &eu, &["add-replication-peer", "--region", "us-east-1", "--token", &token])?;
    let rule = format!(
        r#"{{"replicationConfiguration":{{"rules":[{{"destinations":[{{"region":"eu-west-1","registryId":"{ACCOUNT}"}}]}}]}}}}"#
    );
    us.ecr("PutReplicationConfiguration", &rule)?;
    Ok((us, eu))
}

/// The end times (ms) of the replications of `repository` that ended, once there are `want`.
async fn ended(us: &Server, repository: &str, want: usize, timeout: Duration) -> anyhow::Result<Vec<(String, f64)>> {
    let deadline = Instant::now() + timeout;
    loop {
        let body = format!(r#"{{"repositoryName":"{repository}","maxResults":1000}}"#);
        let v: serde_json::Value = serde_json::from_str(&us.berth_op("ListReplicationEvents", &body)?)?;
        let events: Vec<(String, f64, bool)> = v["events"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|e| {
                (
                    e["imageDigest"].as_str().unwrap_or_default().to_string(),
                    e["endedAt"].as_f64().unwrap_or(f64::NAN) * 1000.0,
                    e["status"] == "COMPLETE",
                )
            })
            .collect();
        anyhow::ensure!(events.iter().all(|e| e.2), "a replication failed: {v}");
        if events.len() >= want {
            return Ok(events.into_iter().map(|(d, t, _)| (d, t)).collect());
        }
        anyhow::ensure!(Instant::now() < deadline, "{} of {want} replications of {repository} ended", events.len());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// p50 and p99 of the lag (s) of 100 small images pushed back to back.
async fn lag(us: &Server) -> anyhow::Result<(f64, f64)> {
    let c = us.client()?;
    let mut acked = Vec::new();
    for i in 0..100 {
        push_small_image_to(&c, &us.base, "lag/app", i).await?;
        acked.push((crate::small_image_digest(i), now_ms()));
    }
    let ends = ended(us, "lag/app", 100, Duration::from_secs(300)).await?;
    let mut lags: Vec<f64> = acked
        .iter()
        .filter_map(|(d, at)| ends.iter().find(|(e, _)| e == d).map(|(_, end)| (end - at) / 1000.0))
        .collect();
    anyhow::ensure!(lags.len() == 100, "{} lags of 100", lags.len());
    lags.sort_by(|a, b| a.partial_cmp(b).unwrap());
    Ok((lags[49], lags[98]))
}

/// One transfer's figures: seconds, and CPU seconds of the servers and of skopeo.
struct Transfer {
    seconds: f64,
    server_cpu: f64,
    client_cpu: f64,
}

/// The 1 GiB image replicated: from its manifest PUT (its blobs already pushed) to COMPLETE.
async fn replicate_big(us: &Server, eu: &Server, layer: &Bytes, round: usize) -> anyhow::Result<Transfer> {
    let c = us.client()?;
    let repo = format!("big/r{round}");
    let config = format!(r#"{{"architecture":"amd64","os":"linux","round":{round}}}"#).into_bytes();
    let cfg = (upload_whole(&c, &us.base, &repo, Bytes::from(config.clone())).await?, config.len());
    let big = (upload_whole(&c, &us.base, &repo, layer.clone()).await?, layer.len());
    let (cpu0, t0) = (us.cpu_seconds() + eu.cpu_seconds(), now_ms());
    put_manifest(&c, &us.base, &repo, "v1", manifest(&cfg, &big)).await?;
    let ends = ended(us, &repo, 1, Duration::from_secs(900)).await?;
    // Both servers' CPU once the event is seen (the replica is whole at eu-west-1 by then).
    let cpu = us.cpu_seconds() + eu.cpu_seconds() - cpu0;
    Ok(Transfer { seconds: (ends[0].1 - t0) / 1000.0, server_cpu: cpu, client_cpu: 0.0 })
}

/// `skopeo copy` of the same image from us-east-1 to a new repository of eu-west-1.
fn skopeo_copy(us: &Server, eu: &Server, round: usize) -> anyhow::Result<Transfer> {
    let creds = |s: &Server| -> anyhow::Result<String> {
        use base64::Engine as _;
        let basic = s.auth.as_deref().and_then(|a| a.strip_prefix("Basic ")).unwrap_or_default();
        Ok(String::from_utf8(base64::engine::general_purpose::STANDARD.decode(basic)?)?)
    };
    let script = format!(
        "skopeo copy --quiet --src-tls-verify=false --dest-tls-verify=false --src-creds \"$SRC\" --dest-creds \"$DEST\" \
         docker://{}/big/r{round}:v1 docker://{}/manual/r{round}:v1 >/dev/null && times",
        us.host, eu.host
    );
    let cpu0 = us.cpu_seconds() + eu.cpu_seconds();
    let t0 = Instant::now();
    let out = Command::new("bash").args(["-c", &script]).env("SRC", creds(us)?).env("DEST", creds(eu)?).output()?;
    let seconds = t0.elapsed().as_secs_f64();
    anyhow::ensure!(out.status.success(), "skopeo copy: {}", String::from_utf8_lossy(&out.stderr));
    let server_cpu = us.cpu_seconds() + eu.cpu_seconds() - cpu0;
    // `times`: the shell's own user/system time, then its children's (skopeo's).
    let text = String::from_utf8_lossy(&out.stdout);
    let children = text.lines().nth(1).unwrap_or_default();
    let client_cpu = children.split_whitespace().map(parse_times).sum();
    Ok(Transfer { seconds, server_cpu, client_cpu })
}

/// `1m2.345s` → 62.345.
fn parse_times(t: &str) -> f64 {
    let Some((m, s)) = t.trim_end_matches('s').split_once('m') else { return 0.0 };
    m.parse::<f64>().unwrap_or(0.0) * 60.0 + s.parse::<f64>().unwrap_or(0.0)
}

pub async fn run(berth: &Path, rounds: usize, blob_mib: usize) -> anyhow::Result<String> {
    anyhow::ensure!(
        Command::new("skopeo").arg("--version").output().is_ok(),
        "skopeo is needed: apt-get install skopeo"
    );
    let layer = Bytes::from(filler(blob_mib * MIB, 17));
    let gib = layer.len() as f64 / (1u64 << 30) as f64;
    let (mut p50, mut p99, mut ours, mut theirs) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for round in 0..rounds {
        eprintln!("round {} / {rounds}", round + 1);
        let (us, eu) = deployments(berth)?;
        let (a, b) = lag(&us).await?;
        eprintln!("  lag p50 {a:.3} s, p99 {b:.3} s");
        p50.push(a);
        p99.push(b);
        let r = replicate_big(&us, &eu, &layer, round).await?;
        let s = skopeo_copy(&us, &eu, round)?;
        eprintln!(
            "  {blob_mib} MiB: replication {:.2} s ({:.1} CPU s), skopeo {:.2} s ({:.1} + {:.1} CPU s)",
            r.seconds, r.server_cpu, s.seconds, s.server_cpu, s.client_cpu
        );
        ours.push(r);
        theirs.push(s);
    }
    let mbs = |t: &[Transfer]| median(&t.iter().map(|x| gib * 1024.0 / x.seconds).collect::<Vec<_>>());
    let cpu = |t: &[Transfer]| median(&t.iter().map(|x| (x.server_cpu + x.client_cpu) / gib).collect::<Vec<_>>());
    let ratio = median(&ours.iter().zip(&theirs).map(|(r, s)| s.seconds / r.seconds).collect::<Vec<_>>());
    let mut t = String::new();
    t.push_str(&format!(
        "Replication between two deployments on loopback (us-east-1 → eu-west-1), median of {rounds} rounds.\n\n"
    ));
    t.push_str(
        "| measure | Berth replication | skopeo copy | replication / skopeo | target |\n|---|---|---|---|---|\n",
    );
    t.push_str(&format!("| lag, 100 small images pushed back to back, p50 | {:.3} s | | | |\n", median(&p50)));
    t.push_str(&format!("| lag, p99 | {:.3} s | | | |\n", median(&p99)));
    t.push_str(&format!(
        "| {blob_mib} MiB image, MiB/s | {:.0} | {:.0} | **{ratio:.2}x** | >= 1x |\n",
        mbs(&ours),
        mbs(&theirs)
    ));
    t.push_str(&format!(
        "| CPU s per GiB (both servers, + skopeo) | {:.2} | {:.2} | {:.2}x | lower |\n",
        cpu(&ours),
        cpu(&theirs),
        cpu(&ours) / cpu(&theirs)
    ));
    Ok(t)
}
