//! The pull-through cache (`--pull-through-only`): a 256 MiB image (config and four 64 MiB
//! layers) in the reference registry as the upstream, pulled as a client does (manifest, then
//! the layers three at a time), in the same run:
//! - directly from the upstream, and cold through a fresh Berth's cache rule (target ≤ 1.2×);
//! - warm through the cache, and as an ordinary Berth pull of the same image (target ≥ 0.95×
//!   the ordinary pull's rate);
//! - 16 concurrent cold pulls through a fresh Berth: the bytes it fetched from the upstream
//!   (its `/metrics`), against the image's size (target 1×).

use std::path::Path;
use std::time::Instant;

use bytes::Bytes;
use futures_util::StreamExt;
use reqwest::Client;

use crate::server::{BerthOptions, Kind, Server, free_port};
use crate::{MIB, OCI_MANIFEST, download, filler, median, put_manifest, sha256, upload_whole};

const LAYERS: usize = 4;
const LAYER_MIB: usize = 64;

struct Image {
    manifest: Vec<u8>,
    blobs: Vec<(String, Bytes)>,
}

impl Image {
    fn new() -> Self {
        let config = Bytes::from(br#"{"architecture":"amd64","os":"linux"}"#.to_vec());
        let layers: Vec<Bytes> = (0..LAYERS).map(|i| Bytes::from(filler(LAYER_MIB * MIB, 100 + i as u64))).collect();
        let desc =
            |b: &Bytes, media: &str| serde_json::json!({"mediaType": media, "digest": sha256(b), "size": b.len()});
        let manifest = serde_json::to_vec(&serde_json::json!({
            "schemaVersion": 2, "mediaType": OCI_MANIFEST,
            "config": desc(&config, "application/vnd.oci.image.config.v1+json"),
            "layers": layers.iter().map(|l| desc(l, "application/vnd.oci.image.layer.v1.tar")).collect::<Vec<_>>(),
        }))
        .expect("a manifest serializes");
        let blobs = std::iter::once(config).chain(layers).map(|b| (sha256(&b), b)).collect();
        Image { manifest, blobs }
    }

    fn bytes(&self) -> usize {
        self.blobs.iter().map(|(_, b)| b.len()).sum()
    }

    async fn push(&self, c: &Client, base: &str, repo: &str) -> anyhow::Result<()> {
        for (_, b) in &self.blobs {
            upload_whole(c, base, repo, b.clone()).await?;
        }
        put_manifest(c, base, repo, "v1", self.manifest.clone()).await
    }
}

/// A client's pull: the manifest, then its blobs three at a time (as Docker does); the
/// seconds it took.
async fn pull(c: &Client, base: &str, repo: &str) -> anyhow::Result<f64> {
    let start = Instant::now();
    let r = c.get(format!("{base}/v2/{repo}/manifests/v1")).header("accept", OCI_MANIFEST).send().await?;
    anyhow::ensure!(r.status().is_success(), "manifest GET {repo}: {}", r.status());
    let m: serde_json::Value = r.json().await?;
    let digests: Vec<String> = std::iter::once(&m["config"])
        .chain(m["layers"].as_array().into_iter().flatten())
        .filter_map(|d| d["digest"].as_str().map(str::to_string))
        .collect();
    let results: Vec<anyhow::Result<usize>> = futures_util::stream::iter(digests)
        .map(|d| {
            let url = format!("{base}/v2/{repo}/blobs/{d}");
            async move { download(c, &url, None).await }
        })
        .buffer_unordered(3)
        .collect()
        .await;
    for r in results {
        r?;
    }
    Ok(start.elapsed().as_secs_f64())
}

/// A fresh Berth with a rule `cache` → the upstream, and /metrics on its own port.
/// nginx forwarding to the upstream with `proxy_buffering off`: what any cache costs at the
/// least on this machine (a second loopback hop through a third process), storing and hashing
/// nothing. `None` when nginx is not installed.
struct ForwardingProxy {
    child: std::process::Child,
    base: String,
    _dir: tempfile::TempDir,
}

impl ForwardingProxy {
    fn start(upstream: &Server) -> anyhow::Result<Option<Self>> {
        let Ok(nginx) = which("nginx") else { return Ok(None) };
        let dir = tempfile::tempdir()?;
        let host = format!("127.0.0.1:{}", free_port());
        let d = dir.path().display();
        let config = dir.path().join("nginx.conf");
        std::fs::write(
            &config,
            format!(
                "daemon off;\nworker_processes 1;\npid {d}/nginx.pid;\nerror_log {d}/error.log;\n\
                 events {{ worker_connections 64; }}\n\
                 http {{ access_log off; client_body_temp_path {d}; proxy_temp_path {d};\n\
                 server {{ listen {host}; location / {{ proxy_pass {}; proxy_buffering off; proxy_buffer_size 512k; proxy_buffers 4 512k; proxy_busy_buffers_size 1m; proxy_http_version 1.1; }} }} }}\n",
                upstream.base
            ),
        )?;
        let child = std::process::Command::new(nginx)
            .arg("-c")
            .arg(&config)
            .arg("-p")
            .arg(dir.path())
            .stderr(std::process::Stdio::null())
            .spawn()?;
        let started = Instant::now();
        while std::net::TcpStream::connect(&host).is_err() {
            anyhow::ensure!(started.elapsed().as_secs() < 10, "nginx did not start");
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        Ok(Some(ForwardingProxy { child, base: format!("http://{host}"), _dir: dir }))
    }
}

impl Drop for ForwardingProxy {
    fn drop(&mut self) {
        // TERM, not KILL: the master then stops its worker, which would outlive a killed one.
        let _ = std::process::Command::new("kill").arg("-TERM").arg(self.child.id().to_string()).status();
        let _ = self.child.wait();
    }
}

fn which(program: &str) -> anyhow::Result<std::path::PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin".into(), "/sbin".into()])
        .map(|d| d.join(program))
        .find(|p| p.is_file())
        .ok_or_else(|| anyhow::anyhow!("{program} is not installed"))
}

fn cached_berth(berth: &Path, reference: &Path, upstream: &Server) -> anyhow::Result<(Server, String)> {
    let metrics = format!("127.0.0.1:{}", std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port());
    let env = [("BERTH_METRICS_LISTEN", metrics.as_str())];
    let srv = Server::start_opts(Kind::Berth, berth, reference, BerthOptions { env: &env, ..Default::default() })?;
    srv.ecr(
        "CreatePullThroughCacheRule",
        &format!(r#"{{"ecrRepositoryPrefix":"cache","upstreamRegistryUrl":"{}"}}"#, upstream.base),
    )?;
    Ok((srv, metrics))
}

async fn upstream_bytes(metrics: &str) -> anyhow::Result<f64> {
    let text = reqwest::get(format!("http://{metrics}/metrics")).await?.text().await?;
    Ok(text
        .lines()
        .filter(|l| l.starts_with("berth_pull_through_upstream_bytes_total"))
        .filter_map(|l| l.rsplit_once(' ').and_then(|(_, v)| v.parse::<f64>().ok()))
        .sum())
}

pub async fn run(berth: &Path, reference: &Path, rounds: usize) -> anyhow::Result<String> {
    let image = Image::new();
    let size_mib = image.bytes() as f64 / MIB as f64;
    let upstream = Server::start(Kind::Reference, berth, reference)?;
    let uc = upstream.client()?;
    image.push(&uc, &upstream.base, "team/app").await?;
    let proxy = ForwardingProxy::start(&upstream)?;
    let (mut direct, mut cold, mut warm, mut ordinary, mut concurrent_ratio) = (vec![], vec![], vec![], vec![], vec![]);
    let mut forwarded = vec![];
    for round in 0..rounds {
        eprintln!("pull-through round {} / {rounds}", round + 1);
        direct.push(pull(&uc, &upstream.base, "team/app").await?);
        if let Some(p) = &proxy {
            forwarded.push(pull(&uc, &p.base, "team/app").await?);
        }
        {
            let (srv, _) = cached_berth(berth, reference, &upstream)?;
            let c = srv.client()?;
            cold.push(pull(&c, &srv.base, "cache/team/app").await?);
            // Warm once the image is stored (the fill completes in the background).
            for _ in 0..100 {
                let listed = srv.ecr("ListImages", r#"{"repositoryName":"cache/team/app"}"#)?;
                if listed.contains("sha256:") {
                    break;
                }
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
            warm.push(pull(&c, &srv.base, "cache/team/app").await?);
            image.push(&c, &srv.base, "plain/app").await?;
            ordinary.push(pull(&c, &srv.base, "plain/app").await?);
        }
        {
            let (srv, metrics) = cached_berth(berth, reference, &upstream)?;
            let c = srv.client()?;
            let pulls: Vec<anyhow::Result<f64>> =
                futures_util::future::join_all((0..16).map(|_| pull(&c, &srv.base, "cache/team/app"))).await;
            for p in pulls {
                p?;
            }
            concurrent_ratio.push(upstream_bytes(&metrics).await? / image.bytes() as f64);
        }
    }
    let (d, c, w, o) = (median(&direct), median(&cold), median(&warm), median(&ordinary));
    let mut t = String::new();
    t.push_str(&format!(
        "Pull-through cache: a {size_mib:.0} MiB image ({LAYERS} layers of {LAYER_MIB} MiB) in the reference registry, pulled as a client does (manifest, layers 3 at a time); median of {rounds} rounds, release build.\n\n"
    ));
    t.push_str("| measure | time (s) | MiB/s | against | target |\n|---|---|---|---|---|\n");
    t.push_str(&format!("| pull directly from the upstream (distribution 2.8) | {d:.2} | {:.0} | | |\n", size_mib / d));
    if !forwarded.is_empty() {
        let f = median(&forwarded);
        t.push_str(&format!(
            "| pull through a forwarding proxy (nginx, unbuffered; stores and hashes nothing) | {f:.2} | {:.0} | {:.2}x the direct time: the floor for any cache here | |\n",
            size_mib / f,
            f / d
        ));
    }
    t.push_str(&format!(
        "| cold pull through Berth's cache | {c:.2} | {:.0} | {:.2}x the direct time | <= 1.2x |\n",
        size_mib / c,
        c / d
    ));
    t.push_str(&format!("| ordinary Berth pull of the same image | {o:.2} | {:.0} | | |\n", size_mib / o));
    t.push_str(&format!(
        "| warm pull through Berth's cache | {w:.2} | {:.0} | {:.2}x the ordinary pull's rate | >= 0.95x |\n",
        size_mib / w,
        o / w
    ));
    let ratios: Vec<String> = concurrent_ratio.iter().map(|r| format!("{r:.2}")).collect();
    t.push_str(&format!(
        "| 16 concurrent cold pulls: bytes fetched from the upstream | | | {:.2}x the image (rounds: {}) | 1x |\n",
        median(&concurrent_ratio),
        ratios.join(", ")
    ));
    Ok(t)
}
