//! The web console's pages at size: the repositories page of an account with 2,000
//! repositories, and an image page with 2,000 findings, requested one after another on one
//! keep-alive connection by a signed-in session; p50 and p99 of the time from request to the
//! last byte on loopback (an upper bound of the server's time). The reference registry has no
//! console, so there is nothing to set beside these.

use std::path::Path;
use std::time::Instant;

use bytes::Bytes;
use serde_json::json;

use crate::latency::percentile;
use crate::scan::{import_records, scan_once, tar_gz, templates};
use crate::server::{BerthOptions, Kind, ROOT_KEY_ID, ROOT_SECRET, Server};
use crate::{OCI_MANIFEST, put_manifest, sha256, upload_whole};

const REPOSITORIES: usize = 2_000;
/// dpkg binaries in the image, two per source package.
const BINARIES: usize = 2_000;
/// Each record affects one source package, so two findings per record.
const RECORDS: usize = 1_000;
const REQUESTS: usize = 200;

fn records_zip(osv: &Path, path: &Path) -> anyhow::Result<()> {
    use std::io::Write;
    let shapes = templates(osv)?;
    let mut zip = zip::ZipWriter::new(std::io::BufWriter::new(std::fs::File::create(path)?));
    let options = zip::write::SimpleFileOptions::default();
    for i in 0..RECORDS {
        let mut r = shapes[i % shapes.len()].clone();
        r["id"] = json!(format!("CONSOLE-{i}"));
        r["aliases"] = json!([format!("CVE-2098-{i}")]);
        r["modified"] = json!("2026-01-01T00:00:00Z");
        r["affected"] = json!([{
            "package": { "ecosystem": "Debian:12", "name": format!("srcconsole{i}") },
            "ranges": [{ "type": "ECOSYSTEM", "events": [{ "introduced": "0" }, { "fixed": "99.0-1" }] }],
        }]);
        zip.start_file(format!("console/CONSOLE-{i}.json"), options)?;
        zip.write_all(&serde_json::to_vec(&r)?)?;
    }
    zip.finish()?;
    Ok(())
}

/// p50 and p99 (ms) of `REQUESTS` sequential GETs of `url`, after 10 unmeasured ones.
async fn page_times(client: &reqwest::Client, url: &str, cookie: &str) -> anyhow::Result<(f64, f64, usize)> {
    let mut times = Vec::with_capacity(REQUESTS);
    let mut size = 0;
    for i in 0..REQUESTS + 10 {
        let t0 = Instant::now();
        let resp = client.get(url).header("cookie", cookie).send().await?;
        anyhow::ensure!(resp.status() == 200, "{url}: {}", resp.status());
        size = resp.bytes().await?.len();
        if i >= 10 {
            times.push(t0.elapsed().as_secs_f64() * 1000.0);
        }
    }
    Ok((percentile(&mut times, 0.5), percentile(&mut times, 0.99), size))
}

pub async fn run(berth: &Path, reference: &Path, osv: &Path) -> anyhow::Result<String> {
    let dir = tempfile::tempdir()?;
    let data = dir.path().join("data");
    let srv = Server::start_opts(
        Kind::Berth,
        berth,
        reference,
        BerthOptions { data_dir: Some(&data), ..Default::default() },
    )?;
    eprintln!("console bench: {REPOSITORIES} repositories");
    for i in 0..REPOSITORIES {
        srv.ecr("CreateRepository", &format!(r#"{{"repositoryName":"team-{}/service-{i:04}"}}"#, i % 40))?;
    }
    srv.ecr("CreateRepository", r#"{"repositoryName":"bench/app"}"#)?;
    let zip = dir.path().join("records.zip");
    records_zip(osv, &zip)?;
    import_records(berth, &zip, &data, RECORDS)?;

    // One layer: os-release and a dpkg status of BINARIES packages, two per source.
    let status: String = (0..BINARIES)
        .map(|i| {
            format!(
                "Package: libconsole{i}\nStatus: install ok installed\nArchitecture: amd64\nSource: srcconsole{}\nVersion: 1.0-1\n\n",
                i / 2
            )
        })
        .collect();
    let (gz, raw) = tar_gz(&[
        ("etc/os-release".into(), b"ID=debian\nVERSION_ID=\"12\"\n".to_vec()),
        ("var/lib/dpkg/status".into(), status.into_bytes()),
    ])?;
    let c = srv.client()?;
    let config = serde_json::to_vec(&json!({
        "architecture": "amd64", "os": "linux", "rootfs": { "type": "layers", "diff_ids": [sha256(&raw)] }, "config": {},
    }))?;
    let cd = upload_whole(&c, &srv.base, "bench/app", Bytes::from(config.clone())).await?;
    let ld = upload_whole(&c, &srv.base, "bench/app", Bytes::from(gz.clone())).await?;
    let manifest = serde_json::to_vec(&json!({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "config": { "mediaType": "application/vnd.oci.image.config.v1+json", "digest": cd, "size": config.len() },
        "layers": [{ "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": ld, "size": gz.len() }],
    }))?;
    let digest = sha256(&manifest);
    put_manifest(&c, &srv.base, "bench/app", "v1", manifest).await?;
    let (_, findings) = scan_once(&srv.host)?;
    eprintln!("console bench: the image has {findings} findings");

    // Sign in as the root, keep the session's cookie.
    let client =
        reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).pool_max_idle_per_host(1).build()?;
    let resp = client
        .post(format!("{}/console/sign-in", srv.base))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("access_key_id={ROOT_KEY_ID}&secret_access_key={ROOT_SECRET}"))
        .send()
        .await?;
    let cookie = resp
        .headers()
        .get("set-cookie")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .ok_or_else(|| anyhow::anyhow!("sign-in gave no cookie: {}", resp.status()))?
        .to_string();

    let list = format!("{}/console/repositories", srv.base);
    let by_size = format!("{}/console/repositories?sort=size&order=desc&page=7", srv.base);
    let search = format!("{}/console/repositories?q=service-1", srv.base);
    let image = format!("{}/console/image?repository=bench%2Fapp&digest={}", srv.base, digest.replace(':', "%3A"));
    let mut rows = Vec::new();
    for (label, url) in [
        ("repositories, first page (2,000 repositories)", &list),
        ("repositories, sorted by size, page 7", &by_size),
        ("repositories, search", &search),
        ("image page (2,000 findings)", &image),
    ] {
        let (p50, p99, size) = page_times(&client, url, &cookie).await?;
        eprintln!("{label}: p50 {p50:.1} ms, p99 {p99:.1} ms, {size} bytes");
        rows.push(format!(
            "| {label} | {p50:.1} ms | {p99:.1} ms | {:.0} KiB | < 50 ms p99 {} |",
            size as f64 / 1024.0,
            if p99 < 50.0 { "met" } else { "not met" }
        ));
    }
    Ok(format!(
        "## Web console\n\n\
         {REPOSITORIES} repositories, and an image with {findings} findings; {REQUESTS} sequential GETs per page \
         on one keep-alive connection of a signed-in session (after 10 unmeasured), time to the last byte on \
         loopback. The reference registry has no console.\n\n\
         | page | p50 | p99 | size | target |\n|---|---:|---:|---:|---|\n{}\n",
        rows.join("\n")
    ))
}
