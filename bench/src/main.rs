//! `berth-bench`: measures Berth and the CNCF reference registry (distribution 2.8) one after
//! the other on this machine, fresh storage each, alternating A B A B, and prints medians with
//! the machine's own limits (hashing, fsync'd disk writes, page-cache reads, loopback TCP).
//!
//!     cargo build --release --bin berth -p berth-bench
//!     target/release/berth-bench --rounds 3 --out BENCHMARKS.md

use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use clap::Parser;
use futures_util::StreamExt;
use reqwest::Client;
use sha2::{Digest as _, Sha256};

mod console;
mod encryption;
mod gc;
mod latency;
mod load;
mod policy;
mod pull_through;
mod replication;
mod scan;
mod server;

use server::{Kind, Server};

#[derive(Parser)]
struct Args {
    /// The berth binary (a release build); default: `berth` beside this executable.
    #[arg(long)]
    berth: Option<PathBuf>,
    /// The reference registry binary.
    #[arg(long, default_value = "docker-registry")]
    reference: PathBuf,
    /// Another Berth build (release) to run in the reference's place, alternating with this
    /// one: an A/B of two builds (the main suite and `--latency-only`).
    #[arg(long)]
    baseline: Option<PathBuf>,
    /// Rounds of A B alternation; medians are reported.
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// Seconds per request-rate measurement.
    #[arg(long, default_value_t = 4)]
    seconds: u32,
    /// Size of the large blob in MiB.
    #[arg(long, default_value_t = 256)]
    blob_mib: usize,
    /// Number of small images pushed the way docker does.
    #[arg(long, default_value_t = 1000)]
    images: usize,
    /// Also write the table to this Markdown file.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Only the pure lifecycle evaluation benchmark (no registries).
    #[arg(long)]
    lifecycle_only: bool,
    /// Only the garbage-collection benchmarks: a GC pass over 100,000 blobs, and small-image
    /// pushes/s with GC running back to back vs without.
    #[arg(long)]
    gc_only: bool,
    /// Only manifest GET as root vs as a user with 10- and 100-statement policies.
    #[arg(long)]
    policy_only: bool,
    /// Only small reads on one keep-alive connection (4 KiB ranges, 2 KiB blobs: p50/p99)
    /// and tags/list of 5,000 tags.
    #[arg(long)]
    latency_only: bool,
    /// Only the request rates on one small image (manifest PUT/GET/HEAD, blob HEAD at c=1 and
    /// c=32), against the reference or `--baseline`.
    #[arg(long)]
    rates_only: bool,
    /// Only the web console: server time of the repositories page with 2,000 repositories and
    /// of an image page with 2,000 findings (p50, p99).
    #[arg(long)]
    console_only: bool,
    /// Only image scanning: a 500 MiB, 2,000-package image against 200,000 OSV records (scan
    /// time, peak memory, pulls/s while scanning).
    #[arg(long)]
    scan_only: bool,
    /// Only the pull-through cache: a 256 MiB image pulled cold through a cache rule against
    /// directly from the upstream (the reference registry) and through a forwarding proxy
    /// (nginx, when installed: the least any cache costs), warm against an ordinary Berth
    /// pull, and the bytes 16 concurrent cold pulls fetch from the upstream.
    #[arg(long)]
    pull_through_only: bool,
    /// Only encryption at rest: Berth sealing blobs and manifests (its default) against the
    /// same build storing them as sent and the reference registry: uploads, downloads whole and
    /// in 16 MiB ranges, manifest GET at c=32, and one core's AES-GCM rate.
    #[arg(long)]
    encryption_only: bool,
    /// Only replication: two deployments paired as peers; the lag of 100 small images pushed
    /// back to back (p50, p99), and a `--blob-mib` image replicated against `skopeo copy`
    /// between the same two (throughput, CPU).
    #[arg(long)]
    replication_only: bool,
    /// Real OSV records whose shapes the scan benchmark's records copy (default: the shared
    /// data set, else tests/fixtures/osv).
    #[arg(long)]
    osv_dir: Option<PathBuf>,
}

/// Lifecycle evaluation over 100,000 images (the seed policies plus an `any` rule), median of
/// five runs, in seconds.
fn lifecycle_eval_seconds() -> f64 {
    use berth_rules::lifecycle::{Image, evaluate, parse};
    let policy = parse(
        r#"{"rules":[
        {"rulePriority":1,"selection":{"tagStatus":"tagged","tagPatternList":["prod*"],"countType":"imageCountMoreThan","countNumber":30},"action":{"type":"expire"}},
        {"rulePriority":2,"selection":{"tagStatus":"untagged","countType":"sinceImagePushed","countUnit":"days","countNumber":14},"action":{"type":"expire"}},
        {"rulePriority":3,"selection":{"tagStatus":"any","countType":"imageCountMoreThan","countNumber":50000},"action":{"type":"expire"}}]}"#,
    )
    .expect("valid policy");
    let now = 1_800_000_000_000i64;
    let images: Vec<Image> = (0..100_000)
        .map(|i| Image {
            digest: format!("sha256:{i:064x}"),
            tags: match i % 3 {
                0 => vec![format!("prod-{i}")],
                1 => vec![format!("dev-{i}"), "latest".into()],
                _ => vec![],
            },
            pushed_at_ms: now - (i as i64 % 60) * 86_400_000 - i as i64,
            ..Default::default()
        })
        .collect();
    let mut times = Vec::new();
    for _ in 0..5 {
        let t0 = Instant::now();
        let decisions = evaluate(&policy, &images, now);
        times.push(t0.elapsed().as_secs_f64());
        std::hint::black_box(decisions);
    }
    median(&times)
}

const MIB: usize = 1024 * 1024;
const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";

fn sha256(b: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(b)))
}

fn filler(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut v = Vec::with_capacity(len + 8);
    while v.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        v.extend_from_slice(&x.to_le_bytes());
    }
    v.truncate(len);
    v
}

/// Resolves a `Location` header (relative for Berth, absolute for distribution) and appends a
/// query parameter.
fn location(base: &str, resp: &reqwest::Response) -> anyhow::Result<String> {
    let loc = resp.headers().get("location").ok_or_else(|| anyhow::anyhow!("no Location"))?.to_str()?;
    Ok(if loc.starts_with("http") { loc.to_string() } else { format!("{base}{loc}") })
}

fn with_param(url: &str, kv: &str) -> String {
    format!("{url}{}{kv}", if url.contains('?') { '&' } else { '?' })
}

async fn start_upload(c: &Client, base: &str, repo: &str) -> anyhow::Result<String> {
    let r = c.post(format!("{base}/v2/{repo}/blobs/uploads/")).send().await?;
    anyhow::ensure!(r.status() == 202, "POST upload: {}", r.status());
    location(base, &r)
}

/// POST, then one PUT with the whole body: the spec's two-step monolithic upload, which every
/// registry implements.
async fn upload_whole(c: &Client, base: &str, repo: &str, data: Bytes) -> anyhow::Result<String> {
    let digest = sha256(&data);
    upload_whole_as(c, base, repo, data, digest).await
}

async fn upload_whole_as(c: &Client, base: &str, repo: &str, data: Bytes, digest: String) -> anyhow::Result<String> {
    let loc = start_upload(c, base, repo).await?;
    let r = c.put(with_param(&loc, &format!("digest={digest}"))).body(data).send().await?;
    anyhow::ensure!(r.status() == 201, "PUT upload: {} {}", r.status(), r.text().await.unwrap_or_default());
    Ok(digest)
}

/// The digest is the caller's, computed before the clock starts.
async fn upload_chunked(
    c: &Client,
    base: &str,
    repo: &str,
    data: Bytes,
    digest: String,
    chunk: usize,
) -> anyhow::Result<String> {
    let mut loc = start_upload(c, base, repo).await?;
    let mut start = 0;
    while start < data.len() {
        let end = (start + chunk).min(data.len());
        let r = c
            .patch(&loc)
            .header("content-type", "application/octet-stream")
            .header("content-range", format!("{start}-{}", end - 1))
            .body(data.slice(start..end))
            .send()
            .await?;
        anyhow::ensure!(r.status() == 202, "PATCH: {}", r.status());
        loc = location(base, &r)?;
        start = end;
    }
    let r = c.put(with_param(&loc, &format!("digest={digest}"))).send().await?;
    anyhow::ensure!(r.status() == 201, "PUT upload: {}", r.status());
    Ok(digest)
}

async fn download(c: &Client, url: &str, range: Option<(usize, usize)>) -> anyhow::Result<usize> {
    let mut req = c.get(url);
    if let Some((s, e)) = range {
        req = req.header("range", format!("bytes={s}-{e}"));
    }
    let r = req.send().await?;
    anyhow::ensure!(r.status().is_success(), "GET blob: {}", r.status());
    let mut n = 0;
    let mut s = r.bytes_stream();
    while let Some(chunk) = s.next().await {
        n += chunk?.len();
    }
    Ok(n)
}

async fn put_manifest(c: &Client, base: &str, repo: &str, tag: &str, body: Vec<u8>) -> anyhow::Result<()> {
    let r = c
        .put(format!("{base}/v2/{repo}/manifests/{tag}"))
        .header("content-type", OCI_MANIFEST)
        .body(body)
        .send()
        .await?;
    anyhow::ensure!(r.status() == 201, "manifest PUT: {} {}", r.status(), r.text().await.unwrap_or_default());
    Ok(())
}

fn manifest(config: &(String, usize), layer: &(String, usize)) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config.0, "size": config.1},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": layer.0, "size": layer.1}],
    }))
    .unwrap()
}

/// One small image pushed the way docker does: for each blob HEAD (404), POST, PUT; then the manifest.
async fn push_small_image(c: &Client, base: &str, i: usize) -> anyhow::Result<()> {
    push_small_image_to(c, base, &format!("small/app{}", i % 100), i).await
}

/// The two blobs (config, 1 KiB layer) of small image `i`; its manifest is
/// `manifest(&(sha256(config), len), &(sha256(layer), len))`.
fn small_image_blobs(i: usize) -> [Vec<u8>; 2] {
    [format!(r#"{{"architecture":"amd64","os":"linux","image":{i}}}"#).into_bytes(), filler(1024, i as u64 + 7)]
}

/// The manifest digest of small image `i`.
fn small_image_digest(i: usize) -> String {
    let [config, layer] = small_image_blobs(i);
    sha256(&manifest(&(sha256(&config), config.len()), &(sha256(&layer), layer.len())))
}

async fn push_small_image_to(c: &Client, base: &str, repo: &str, i: usize) -> anyhow::Result<()> {
    let repo = repo.to_string();
    let mut descs = Vec::new();
    for blob in small_image_blobs(i) {
        let d = sha256(&blob);
        let r = c.head(format!("{base}/v2/{repo}/blobs/{d}")).send().await?;
        anyhow::ensure!(r.status() == 404, "HEAD new blob: {}", r.status());
        descs.push((upload_whole(c, base, &repo, Bytes::from(blob.clone())).await?, blob.len()));
    }
    put_manifest(c, base, &repo, &format!("t{i}"), manifest(&descs[0], &descs[1])).await
}

fn median(v: &[f64]) -> f64 {
    let mut v: Vec<f64> = v.iter().copied().filter(|x| x.is_finite()).collect();
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let n = v.len();
    if n % 2 == 1 { v[n / 2] } else { (v[n / 2 - 1] + v[n / 2]) / 2.0 }
}

type Results = Vec<(String, f64)>;
type RateRun<'a> = Box<dyn Fn() -> anyhow::Result<load::Rate> + 'a>;

/// The config and 4 KiB layer of the image the request rates are measured on.
fn rate_image_blobs() -> (Vec<u8>, Vec<u8>) {
    (br#"{"architecture":"amd64","os":"linux"}"#.to_vec(), filler(4096, 3))
}

/// Request rates on one small image: manifest PUT, GET and HEAD and blob HEAD at c=1 and c=32
/// (`--rates-only` runs just these).
async fn request_rates(srv: &Server, args: &Args) -> anyhow::Result<Results> {
    let c = srv.client()?;
    let base = srv.base.clone();
    let auth_header = srv.auth.as_ref().map(|a| format!("Authorization: {a}"));
    let auth: Vec<&str> = auth_header.iter().map(String::as_str).collect();
    let mut out: Results = Vec::new();
    let mut rec = |k: &str, v: f64| out.push((k.to_string(), v));
    let (config, layer) = rate_image_blobs();
    let cd = (upload_whole(&c, &base, "bench/app", Bytes::from(config.clone())).await?, config.len());
    let ld = (upload_whole(&c, &base, "bench/app", Bytes::from(layer.clone())).await?, layer.len());
    let m = manifest(&cd, &ld);
    put_manifest(&c, &base, "bench/app", "v1", m.clone()).await?;
    let script = tempfile::NamedTempFile::new()?;
    std::fs::write(
        script.path(),
        format!(
            "wrk.method = \"PUT\"\nwrk.headers[\"Content-Type\"] = \"{OCI_MANIFEST}\"\nwrk.body = [[{}]]\n",
            String::from_utf8(m.clone())?
        ),
    )?;
    let accept = format!("Accept: {OCI_MANIFEST}");
    let get_headers: Vec<&str> = auth.iter().copied().chain([accept.as_str()]).collect();
    for conc in [1u32, 32] {
        let manifest_url = format!("{base}/v2/bench/app/manifests/v1");
        let put_url = format!("{base}/v2/bench/app/manifests/put");
        let blob_url = format!("{base}/v2/bench/app/blobs/{}", ld.0);
        let head_requests = 2000 * conc.min(8);
        let cases: [(&str, RateRun); 4] = [
            ("manifest PUT", Box::new(|| load::wrk(&put_url, conc, args.seconds, &auth, Some(script.path())))),
            ("manifest GET", Box::new(|| load::wrk(&manifest_url, conc, args.seconds, &get_headers, None))),
            ("manifest HEAD", Box::new(|| load::ab_head(&manifest_url, conc, head_requests, &get_headers))),
            ("blob HEAD", Box::new(|| load::ab_head(&blob_url, conc, head_requests, &auth))),
        ];
        for (name, run) in cases {
            let cpu0 = srv.cpu_seconds();
            let rate = run()?;
            let cpu = srv.cpu_seconds() - cpu0;
            rec(&format!("{name} c={conc} req/s"), rate.rps);
            rec(&format!("{name} c={conc} p99 ms"), rate.p99_ms);
            rec(&format!("{name} c={conc} server CPU ms/req"), cpu * 1000.0 / rate.requests.max(1.0));
            if rate.errors > 0.0 {
                rec(&format!("{name} c={conc} error responses"), rate.errors);
            }
        }
    }

    Ok(out)
}

async fn suite(kind: Kind, srv: &Server, args: &Args, big: &[u8], berth: &std::path::Path) -> anyhow::Result<Results> {
    let c = srv.client()?;
    let base = srv.base.clone();
    let mut out: Results = Vec::new();
    let mut rec = |k: &str, v: f64| out.push((k.to_string(), v));
    let size = big.len();
    let gb = size as f64 / 1e9;
    let mb = size as f64 / 1e6;

    // Large blob uploads: monolithic, then 16 MiB chunks; each a fresh blob.
    let mut data = big.to_vec();
    data[..8].copy_from_slice(&1u64.to_le_bytes());
    let body = Bytes::from(data.clone());
    let digest = sha256(&body);
    let (cpu0, t0) = (srv.cpu_seconds(), Instant::now());
    let big_digest = upload_whole_as(&c, &base, "bench/big", body, digest).await?;
    let (secs, cpu) = (t0.elapsed().as_secs_f64(), srv.cpu_seconds() - cpu0);
    rec("upload monolithic MB/s", mb / secs);
    rec("upload monolithic server CPU s/GB", cpu / gb);

    data[..8].copy_from_slice(&2u64.to_le_bytes());
    let body = Bytes::from(data);
    let digest = sha256(&body);
    let (cpu0, t0) = (srv.cpu_seconds(), Instant::now());
    upload_chunked(&c, &base, "bench/big", body, digest, 16 * MIB).await?;
    let (secs, cpu) = (t0.elapsed().as_secs_f64(), srv.cpu_seconds() - cpu0);
    rec("upload 16 MiB chunks MB/s", mb / secs);
    rec("upload 16 MiB chunks server CPU s/GB", cpu / gb);

    // Downloads: whole, then 16 MiB ranges.
    let url = format!("{base}/v2/bench/big/blobs/{big_digest}");
    download(&c, &url, None).await?; // warm the page cache for both equally
    let (cpu0, t0) = (srv.cpu_seconds(), Instant::now());
    let n = download(&c, &url, None).await?;
    anyhow::ensure!(n == size, "downloaded {n} of {size}");
    let (secs, cpu) = (t0.elapsed().as_secs_f64(), srv.cpu_seconds() - cpu0);
    rec("download MB/s", mb / secs);
    rec("download server CPU s/GB", cpu / gb);
    let (cpu0, t0) = (srv.cpu_seconds(), Instant::now());
    let mut got = 0;
    for start in (0..size).step_by(16 * MIB) {
        got += download(&c, &url, Some((start, (start + 16 * MIB).min(size) - 1))).await?;
    }
    anyhow::ensure!(got == size);
    let (secs, cpu) = (t0.elapsed().as_secs_f64(), srv.cpu_seconds() - cpu0);
    rec("ranged download (16 MiB ranges) MB/s", mb / secs);
    rec("ranged download server CPU s/GB", cpu / gb);

    // 16 concurrent downloads of one 64 MiB blob.
    let mid = Bytes::from(filler(64 * MIB, 99));
    let mid_digest = upload_whole(&c, &base, "bench/mid", mid).await?;
    let url = format!("{base}/v2/bench/mid/blobs/{mid_digest}");
    download(&c, &url, None).await?;
    let t0 = Instant::now();
    let tasks: Vec<_> = (0..16)
        .map(|_| {
            let (c, url) = (c.clone(), url.clone());
            tokio::spawn(async move { download(&c, &url, None).await })
        })
        .collect();
    let mut total = 0;
    for t in tasks {
        total += t.await??;
    }
    rec("16 concurrent downloads of 64 MiB, aggregate MB/s", total as f64 / 1e6 / t0.elapsed().as_secs_f64());

    out.extend(request_rates(srv, args).await?);
    let mut rec = |k: &str, v: f64| out.push((k.to_string(), v));

    // Small images, pushed as docker does, 8 workers.
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let t0 = Instant::now();
    let workers: Vec<_> = (0..8)
        .map(|_| {
            let (c, base, next, n) = (c.clone(), base.clone(), next.clone(), args.images);
            tokio::spawn(async move {
                loop {
                    let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    if i >= n {
                        return anyhow::Ok(());
                    }
                    push_small_image(&c, &base, i).await?;
                }
            })
        })
        .collect();
    for w in workers {
        w.await??;
    }
    rec("small image pushes/s (8 workers)", args.images as f64 / t0.elapsed().as_secs_f64());

    for (name, path) in [("tags/list (10 tags) ms", "/v2/small/app0/tags/list"), ("_catalog ms", "/v2/_catalog")] {
        let mut times = Vec::new();
        for _ in 0..50 {
            let t0 = Instant::now();
            let r = c.get(format!("{base}{path}")).send().await?;
            anyhow::ensure!(r.status() == 200, "{path}: {}", r.status());
            r.bytes().await?;
            times.push(t0.elapsed().as_secs_f64() * 1000.0);
        }
        rec(name, median(&times));
    }
    if kind.is_berth() {
        // The ECR API's token call, signed afresh each time (c=1).
        let n = 300;
        let t0 = Instant::now();
        for _ in 0..n {
            srv.ecr("GetAuthorizationToken", "{}")?;
        }
        rec("GetAuthorizationToken c=1 req/s", n as f64 / t0.elapsed().as_secs_f64());
        // DescribeImages over a repository of 1,000 images: a full page of 1,000, and the
        // default page of 100.
        for i in 0..1000 {
            push_small_image_to(&c, &base, "bench/many", 100_000 + i).await?;
        }
        for (label, max) in
            [("DescribeImages 1,000 images (one page of 1,000) req/s", 1000), ("DescribeImages page of 100 req/s", 100)]
        {
            let body = format!(r#"{{"repositoryName":"bench/many","maxResults":{max}}}"#);
            let n = 20;
            let t0 = Instant::now();
            for _ in 0..n {
                let out = srv.ecr("DescribeImages", &body)?;
                anyhow::ensure!(out.len() > 1000, "DescribeImages answered {out}");
            }
            rec(label, n as f64 / t0.elapsed().as_secs_f64());
        }
        // What token auth costs: the same manifest GET on a Berth with auth off.
        let open = Server::start_with(Kind::Berth, berth, &args.reference, &["--insecure-no-auth"])?;
        let (config, layer) = rate_image_blobs();
        let accept = format!("Accept: {OCI_MANIFEST}");
        let oc = Client::new();
        let ob = open.base.clone();
        let cd = (upload_whole(&oc, &ob, "bench/app", Bytes::from(config.clone())).await?, config.len());
        let ld = (upload_whole(&oc, &ob, "bench/app", Bytes::from(layer.clone())).await?, layer.len());
        put_manifest(&oc, &ob, "bench/app", "v1", manifest(&cd, &ld)).await?;
        let rate = load::wrk(&format!("{ob}/v2/bench/app/manifests/v1"), 32, args.seconds, &[&accept], None)?;
        rec("manifest GET c=32 req/s, auth off", rate.rps);
    }
    rec("peak RSS MiB", srv.peak_rss_mib());
    rec("total server CPU s", srv.cpu_seconds());
    eprintln!("  {} done", kind.label());
    Ok(out)
}

struct Limits {
    sha256_mbs: f64,
    disk_write_fsync_mbs: f64,
    page_cache_read_mbs: f64,
    loopback_mbs: f64,
}

fn measure_limits(big: &[u8]) -> anyhow::Result<Limits> {
    let t0 = Instant::now();
    std::hint::black_box(Sha256::digest(big));
    let sha256_mbs = big.len() as f64 / 1e6 / t0.elapsed().as_secs_f64();
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("disk-test");
    let t0 = Instant::now();
    let mut f = std::fs::File::create(&path)?;
    f.write_all(big)?;
    f.sync_all()?;
    let disk_write_fsync_mbs = big.len() as f64 / 1e6 / t0.elapsed().as_secs_f64();
    drop(f);
    let _ = std::fs::read(&path)?;
    let t0 = Instant::now();
    let n = std::fs::read(&path)?.len();
    let page_cache_read_mbs = n as f64 / 1e6 / t0.elapsed().as_secs_f64();
    Ok(Limits { sha256_mbs, disk_write_fsync_mbs, page_cache_read_mbs, loopback_mbs: loopback_mbs()? })
}

/// Loopback TCP throughput from iperf3 (3 s, one stream).
fn loopback_mbs() -> anyhow::Result<f64> {
    let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port().to_string();
    let mut srv = std::process::Command::new("iperf3")
        .args(["-s", "-1", "-B", "127.0.0.1", "-p", &port])
        .stdout(std::process::Stdio::null())
        .spawn()?;
    std::thread::sleep(Duration::from_millis(300));
    let out = std::process::Command::new("iperf3").args(["-c", "127.0.0.1", "-p", &port, "-t", "3", "-J"]).output()?;
    let _ = srv.wait();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    let bps = v["end"]["sum_received"]["bits_per_second"].as_f64().ok_or_else(|| anyhow::anyhow!("iperf3 output"))?;
    Ok(bps / 8.0 / 1e6)
}

/// What each ratio should reach, as issue #2 states it: (metric, target, higher is better).
const TARGETS: &[(&str, f64, bool)] = &[
    ("upload monolithic server CPU s/GB", 0.4, false),
    ("upload 16 MiB chunks server CPU s/GB", 0.4, false),
    ("upload monolithic MB/s", 1.3, true),
    ("upload 16 MiB chunks MB/s", 1.3, true),
    ("download MB/s", 1.0, true),
    ("ranged download (16 MiB ranges) MB/s", 1.0, true),
    ("manifest GET c=32 req/s", 3.0, true),
    ("manifest GET c=32 server CPU ms/req", 0.2, false),
    ("small image pushes/s (8 workers)", 2.0, true),
];

fn render(args: &Args, limits: &Limits, results: &BTreeMap<Kind, Vec<Results>>, other: Kind) -> String {
    let mut keys: Vec<String> = Vec::new();
    for rounds in results.values() {
        for (k, _) in rounds.iter().flatten() {
            if !keys.contains(k) {
                keys.push(k.clone());
            }
        }
    }
    let med = |kind: Kind, key: &str| -> f64 {
        let v: Vec<f64> = results
            .get(&kind)
            .map(|rs| rs.iter().flat_map(|r| r.iter().filter(|(k, _)| k == key).map(|(_, v)| *v)).collect())
            .unwrap_or_default();
        median(&v)
    };
    let mut s = String::new();
    s.push_str(&format!(
        "Medians of {} rounds (A B alternation, fresh storage each), {} MiB blob, {} small images, {} s per rate.\n\n",
        args.rounds, args.blob_mib, args.images, args.seconds
    ));
    s.push_str("Machine limits measured in the same run:\n\n");
    s.push_str("| limit | MB/s |\n| --- | ---: |\n");
    s.push_str(&format!("| SHA-256 (one core, sha2 crate) | {:.0} |\n", limits.sha256_mbs));
    s.push_str(&format!("| disk write + fsync | {:.0} |\n", limits.disk_write_fsync_mbs));
    s.push_str(&format!("| page-cache read | {:.0} |\n", limits.page_cache_read_mbs));
    s.push_str(&format!("| loopback TCP (iperf3, 1 stream) | {:.0} |\n\n", limits.loopback_mbs));
    s.push_str(&format!(
        "| metric | Berth | {} | Berth / {} | target |\n| --- | ---: | ---: | ---: | --- |\n",
        other.label(),
        if other == Kind::Baseline { "baseline" } else { "reference" }
    ));
    for k in &keys {
        let (a, b) = (med(Kind::Berth, k), med(other, k));
        let ratio = a / b;
        // The targets are against the reference registry, not against another Berth.
        let targets = if other == Kind::Reference { TARGETS } else { &[] };
        let target = targets.iter().find(|(t, _, _)| t == k).map_or(String::new(), |(_, t, higher)| {
            let met = if *higher { ratio >= *t } else { ratio <= *t };
            format!("{} {t} {}", if *higher { "≥" } else { "≤" }, if met { "met" } else { "**not met**" })
        });
        s.push_str(&format!("| {k} | {a:.3} | {b:.3} | {ratio:.2} | {target} |\n"));
    }
    let rss = med(Kind::Berth, "peak RSS MiB");
    if rss.is_nan() {
        // `--rates-only`: no uploads, downloads or memory figures to compare.
        return s;
    }
    s.push_str(&format!(
        "\nBerth peak RSS {rss:.1} MiB (target ≤ 100 MiB: {}). Download MB/s as a fraction of loopback TCP: Berth {:.2}, reference {:.2}. Upload MB/s as a fraction of SHA-256 speed: Berth {:.2}, reference {:.2}.\n",
        if rss <= 100.0 { "met" } else { "**not met**" },
        med(Kind::Berth, "download MB/s") / limits.loopback_mbs,
        med(other, "download MB/s") / limits.loopback_mbs,
        med(Kind::Berth, "upload monolithic MB/s") / limits.sha256_mbs,
        med(other, "upload monolithic MB/s") / limits.sha256_mbs,
    ));
    s
}

impl PartialOrd for Kind {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Kind {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (*self as u8).cmp(&(*other as u8))
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let lifecycle_s = lifecycle_eval_seconds();
    eprintln!("lifecycle evaluation of 100,000 images: {:.3} s", lifecycle_s);
    if args.lifecycle_only {
        println!("lifecycle evaluation, 100,000 images: {lifecycle_s:.3} s (target < 1 s)");
        return Ok(());
    }
    let berth = match &args.berth {
        Some(p) => p.clone(),
        None => std::env::current_exe()?.with_file_name("berth"),
    };
    anyhow::ensure!(berth.exists(), "{} not found: cargo build --release --bin berth", berth.display());
    if args.policy_only {
        let table = policy::run(&berth, &args.reference, args.rounds, args.seconds).await?;
        println!("{table}");
        return Ok(());
    }
    if args.pull_through_only {
        let table = pull_through::run(&berth, &args.reference, args.rounds).await?;
        println!("{table}");
        return Ok(());
    }
    if args.encryption_only {
        let table = encryption::run(&berth, &args.reference, args.rounds, args.seconds, args.blob_mib).await?;
        println!("{table}");
        return Ok(());
    }
    if args.replication_only {
        let table = replication::run(&berth, args.rounds, args.blob_mib).await?;
        println!("{table}");
        return Ok(());
    }
    if args.console_only {
        let osv = args.osv_dir.clone().unwrap_or_else(scan::default_osv_dir);
        let table = console::run(&berth, &args.reference, &osv).await?;
        println!("{table}");
        return Ok(());
    }
    if args.scan_only {
        let osv = args.osv_dir.clone().unwrap_or_else(scan::default_osv_dir);
        let table = scan::run(&berth, &args.reference, args.rounds, args.seconds, &osv).await?;
        println!("{table}");
        return Ok(());
    }
    let (other, other_bin) = match &args.baseline {
        Some(b) => (Kind::Baseline, b.clone()),
        None => (Kind::Reference, args.reference.clone()),
    };
    if args.latency_only {
        let table = latency::run(&berth, &other_bin, other, args.rounds).await?;
        println!("{table}");
        return Ok(());
    }
    if args.gc_only {
        let table = gc::run(&berth, &args.reference, args.rounds).await?;
        println!("{table}");
        return Ok(());
    }
    let big = filler(args.blob_mib * MIB, 1);
    eprintln!("measuring machine limits");
    let limits = measure_limits(&big)?;
    let mut results: BTreeMap<Kind, Vec<Results>> = BTreeMap::new();
    for round in 0..args.rounds {
        for kind in [Kind::Berth, other] {
            eprintln!("round {} / {}: {}", round + 1, args.rounds, kind.label());
            let srv = Server::start(kind, &berth, &other_bin)?;
            let binary = if kind == Kind::Baseline { &other_bin } else { &berth };
            let r = if args.rates_only {
                request_rates(&srv, &args).await?
            } else {
                suite(kind, &srv, &args, &big, binary).await?
            };
            drop(srv);
            results.entry(kind).or_default().push(r);
        }
    }
    let mut table = render(&args, &limits, &results, other);
    table.push_str(&format!(
        "\nLifecycle evaluation of 100,000 images (pure function, median of 5): {lifecycle_s:.3} s (target < 1 s).\n"
    ));
    println!("{table}");
    if let Some(out) = &args.out {
        std::fs::write(out, format!("# Benchmarks\n\nProduced by `berth-bench` (see README.md).\n\n{table}"))?;
    }
    Ok(())
}
