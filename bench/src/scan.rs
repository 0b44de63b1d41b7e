//! Image scanning: an image of 500 MiB in 5 gzip layers listing 2,000 packages (1,400 dpkg,
//! 200 each of Cargo, npm and Python), scanned (ENHANCED) against 200,000 OSV records made
//! from the real records' shapes; scan time and the server's peak memory during the scan; and
//! layer-blob pulls/s with and without scans running back to back, beside the reference
//! registry's pulls/s of the same blob.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use reqwest::Client;
use serde_json::{Value, json};

use crate::server::{BerthOptions, Kind, ROOT_KEY_ID, ROOT_SECRET, Server, ecr_call};
use crate::{MIB, OCI_MANIFEST, filler, load, median, put_manifest, sha256, upload_whole};

const RECORDS: usize = 200_000;
const DPKG: usize = 1_400;
const LANG: usize = 200;
const LAYERS: usize = 5;
const LAYER_MIB: usize = 100;

/// Real OSV records to take shapes from (severity, aliases, details, references).
pub(crate) fn templates(dir: &Path) -> anyhow::Result<Vec<Value>> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d)? {
            let p = e?.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == "json") {
                out.push(serde_json::from_slice(&std::fs::read(&p)?)?);
            }
        }
    }
    anyhow::ensure!(!out.is_empty(), "no OSV records under {}", dir.display());
    Ok(out)
}

/// (ecosystem, package name, installed version) of package `i` of family `f`.
fn image_package(f: usize, i: usize) -> (&'static str, String) {
    match f {
        0 => ("Debian:12", format!("srcbench{}", i % (DPKG / 2))),
        1 => ("crates.io", format!("crate-bench-{}", i % LANG)),
        2 => ("npm", format!("npm-bench-{}", i % LANG)),
        _ => ("PyPI", format!("py-bench-{}", i % LANG)),
    }
}

/// Record `i`: a real record's shape with a new id and one affected entry. One record in ten
/// names a package of the image (about 14 candidates per package), and one of those in twenty
/// affects the installed version.
fn record(template: &Value, i: usize) -> Value {
    let mut r = template.clone();
    let f = i % 4;
    let (ecosystem, name) =
        if i.is_multiple_of(10) { image_package(f, i / 10) } else { (image_package(f, 0).0, format!("other-{f}-{i}")) };
    let affected = (i / 10).is_multiple_of(20);
    let fixed = match (f, affected) {
        (0, true) => "99.0-1",
        (0, false) => "0.1-1",
        (_, true) => "99.0.0",
        (_, false) => "0.0.1",
    };
    r["id"] = json!(format!("BENCH-{i}"));
    r["aliases"] = json!([format!("CVE-2099-{i}")]);
    r["modified"] = json!("2026-01-01T00:00:00Z");
    r["affected"] = json!([{
        "package": { "ecosystem": ecosystem, "name": name },
        "ranges": [{ "type": "ECOSYSTEM", "events": [{ "introduced": "0" }, { "fixed": fixed }] }],
    }]);
    r
}

fn write_records(templates: &[Value], path: &Path) -> anyhow::Result<()> {
    let file = std::fs::File::create(path)?;
    let mut zip = zip::ZipWriter::new(std::io::BufWriter::new(file));
    let options = zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Deflated);
    for i in 0..RECORDS {
        zip.start_file(format!("bench/BENCH-{i}.json"), options)?;
        zip.write_all(&serde_json::to_vec(&record(&templates[i % templates.len()], i))?)?;
    }
    zip.finish()?;
    Ok(())
}

pub(crate) fn tar_gz(files: &[(String, Vec<u8>)]) -> anyhow::Result<(Vec<u8>, Vec<u8>)> {
    let mut builder = tar::Builder::new(Vec::new());
    for (path, data) in files {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_mtime(1_700_000_000);
        builder.append_data(&mut h, path, data.as_slice())?;
    }
    let raw = builder.into_inner()?;
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(&raw)?;
    Ok((gz.finish()?, raw))
}

/// The image's five layers (gzip, raw tar), each about 100 MiB of incompressible files and
/// 1,000 small ones, with the package lists spread over them.
fn layers() -> anyhow::Result<Vec<(Vec<u8>, Vec<u8>)>> {
    let mut out = Vec::new();
    for l in 0..LAYERS {
        let mut files: Vec<(String, Vec<u8>)> = Vec::new();
        match l {
            0 => {
                files.push(("etc/os-release".into(), b"ID=debian\nVERSION_ID=\"12\"\n".to_vec()));
                let status: String = (0..DPKG)
                    .map(|i| {
                        format!(
                            "Package: libbench{i}\nStatus: install ok installed\nArchitecture: amd64\nSource: srcbench{}\nVersion: 1.{}.{}-1\n\n",
                            i % (DPKG / 2),
                            i % 50,
                            i % 7
                        )
                    })
                    .collect();
                files.push(("var/lib/dpkg/status".into(), status.into_bytes()));
            }
            1 => {
                let lock: String = (0..LANG)
                    .map(|i| {
                        format!("[[package]]\nname = \"crate-bench-{i}\"\nversion = \"0.{}.{}\"\n\n", i % 20, i % 5)
                    })
                    .collect();
                files.push(("app/Cargo.lock".into(), format!("version = 3\n\n{lock}").into_bytes()));
            }
            2 => {
                let packages: serde_json::Map<String, Value> = std::iter::once(("".to_string(), json!({})))
                    .chain((0..LANG).map(|i| {
                        (format!("node_modules/npm-bench-{i}"), json!({ "version": format!("1.{}.0", i % 20) }))
                    }))
                    .collect();
                let lock = json!({ "name": "srv", "lockfileVersion": 3, "packages": packages });
                files.push(("srv/package-lock.json".into(), serde_json::to_vec(&lock)?));
            }
            3 => {
                for i in 0..LANG {
                    files.push((
                        format!("usr/lib/python3/dist-packages/py_bench_{i}-2.{}.0.dist-info/METADATA", i % 20),
                        format!("Metadata-Version: 2.1\nName: py-bench-{i}\nVersion: 2.{}.0\n", i % 20).into_bytes(),
                    ));
                }
            }
            _ => {}
        }
        for f in 0..LAYER_MIB {
            files.push((format!("data/layer{l}/blob{f}.bin"), filler(MIB, (l * 1000 + f) as u64 + 11)));
        }
        for f in 0..1000 {
            files.push((format!("data/layer{l}/small/{f}.txt"), format!("file {f} of layer {l}\n").into_bytes()));
        }
        out.push(tar_gz(&files)?);
    }
    Ok(out)
}

/// `berth vulndb import` of a zip of `records` OSV records into the stopped-or-running Berth's
/// data directory.
pub(crate) fn import_records(berth: &Path, zip: &Path, data: &Path, records: usize) -> anyhow::Result<()> {
    let out = std::process::Command::new(berth)
        .args(["vulndb", "import"])
        .arg(zip)
        .arg("--data-dir")
        .arg(data)
        .stderr(std::process::Stdio::null())
        .output()?;
    anyhow::ensure!(out.status.success(), "vulndb import failed");
    let state: Value = serde_json::from_slice(&out.stdout)?;
    anyhow::ensure!(state["records"].as_u64() == Some(records as u64), "imported {state}");
    Ok(())
}

/// Starts a scan of bench/app:v1 on the Berth at `host` and waits for it; returns seconds and
/// the findings count.
pub(crate) fn scan_once(host: &str) -> anyhow::Result<(f64, u64)> {
    let ecr = |op: &str, body: &str| ecr_call(host, ROOT_KEY_ID, ROOT_SECRET, op, body);
    let id = r#"{"repositoryName":"bench/app","imageId":{"imageTag":"v1"}}"#;
    let page = r#"{"repositoryName":"bench/app","imageId":{"imageTag":"v1"},"maxResults":1}"#;
    let t0 = Instant::now();
    ecr("StartImageScan", id)?;
    loop {
        let v: Value = serde_json::from_str(&ecr("DescribeImageScanFindings", page)?)?;
        match v["imageScanStatus"]["status"].as_str() {
            Some("COMPLETE") => {
                let counts = v["imageScanFindings"]["findingSeverityCounts"].as_object().cloned().unwrap_or_default();
                return Ok((t0.elapsed().as_secs_f64(), counts.values().filter_map(Value::as_u64).sum()));
            }
            Some("FAILED") | Some("UNSUPPORTED_IMAGE") => anyhow::bail!("scan ended: {v}"),
            _ => std::thread::sleep(Duration::from_millis(20)),
        }
        anyhow::ensure!(t0.elapsed() < Duration::from_secs(600), "scan did not finish");
    }
}

pub async fn run(berth: &Path, reference: &Path, rounds: usize, seconds: u32, osv: &Path) -> anyhow::Result<String> {
    let dir = tempfile::tempdir()?;
    let data = dir.path().join("data");
    eprintln!("scan bench: generating {RECORDS} records from the shapes under {}", osv.display());
    let templates = templates(osv)?;
    let zip = dir.path().join("records.zip");
    write_records(&templates, &zip)?;
    eprintln!("scan bench: building {LAYERS} layers of {LAYER_MIB} MiB");
    let layers = layers()?;
    let image_bytes: usize = layers.iter().map(|(gz, _)| gz.len()).sum();

    let env: &[(&str, &str)] = &[("BERTH_SCAN_CONCURRENCY", "1")];
    let srv = Server::start_opts(
        Kind::Berth,
        berth,
        reference,
        BerthOptions { env, data_dir: Some(&data), ..Default::default() },
    )?;
    srv.ecr("PutRegistryScanningConfiguration", r#"{"scanType":"ENHANCED","rules":[]}"#)?;
    srv.ecr("CreateRepository", r#"{"repositoryName":"bench/app"}"#)?;
    srv.ecr("CreateRepository", r#"{"repositoryName":"bench/pull"}"#)?;
    let t0 = Instant::now();
    import_records(berth, &zip, &data, RECORDS)?;
    let import_s = t0.elapsed().as_secs_f64();

    let c = srv.client()?;
    let diff_ids: Vec<String> = layers.iter().map(|(_, raw)| sha256(raw)).collect();
    let config = serde_json::to_vec(&json!({
        "architecture": "amd64", "os": "linux", "rootfs": { "type": "layers", "diff_ids": diff_ids }, "config": {},
    }))?;
    let cd = upload_whole(&c, &srv.base, "bench/app", Bytes::from(config.clone())).await?;
    let mut descs = Vec::new();
    for (gz, _) in &layers {
        let d = upload_whole(&c, &srv.base, "bench/app", Bytes::from(gz.clone())).await?;
        descs
            .push(json!({ "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": d, "size": gz.len() }));
    }
    let manifest = serde_json::to_vec(&json!({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "config": { "mediaType": "application/vnd.oci.image.config.v1+json", "digest": cd, "size": config.len() },
        "layers": descs,
    }))?;
    put_manifest(&c, &srv.base, "bench/app", "v1", manifest).await?;
    // A 4 MiB layer blob to pull while scanning.
    let pull_blob = filler(4 * MIB, 99);
    let pull_digest = upload_whole(&c, &srv.base, "bench/pull", Bytes::from(pull_blob.clone())).await?;
    let pull_url = format!("{}/v2/bench/pull/blobs/{pull_digest}", srv.base);
    let auth = format!("Authorization: {}", srv.auth.clone().unwrap_or_default());
    drop(layers);

    let pid = srv.pid();
    let (mut times, mut peaks, mut findings) = (Vec::new(), Vec::new(), 0);
    let rss_before = srv.rss_mib();
    for round in 0..rounds {
        // Resets the peak resident set size to the current one, so the peak is this scan's.
        std::fs::write(format!("/proc/{pid}/clear_refs"), "5")?;
        let (s, n) = scan_once(&srv.host)?;
        eprintln!("scan round {} / {rounds}: {s:.2} s, {n} findings, peak {:.0} MiB", round + 1, srv.peak_rss_mib());
        times.push(s);
        peaks.push(srv.peak_rss_mib());
        findings = n;
    }

    // Pulls with and without scans running back to back, alternating; then the reference.
    let (mut quiet, mut busy) = (Vec::new(), Vec::new());
    for round in 0..rounds {
        eprintln!("pull round {} / {rounds}", round + 1);
        quiet.push(load::wrk(&pull_url, 8, seconds, &[&auth], None)?.rps);
        let stop = Arc::new(AtomicBool::new(false));
        let scans = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let scanner = {
            let (stop, scans, host) = (stop.clone(), scans.clone(), srv.host.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    if scan_once(&host).is_ok() {
                        scans.fetch_add(1, Ordering::Relaxed);
                    }
                }
            })
        };
        std::thread::sleep(Duration::from_millis(300));
        busy.push(load::wrk(&pull_url, 8, seconds, &[&auth], None)?.rps);
        stop.store(true, Ordering::Relaxed);
        let _ = scanner.join();
        eprintln!("  {} scans ran during the pulls", scans.load(Ordering::Relaxed));
    }
    drop(srv);
    let reference_srv = Server::start(Kind::Reference, berth, reference)?;
    let rc = Client::new();
    let rd = upload_whole(&rc, &reference_srv.base, "bench/pull", Bytes::from(pull_blob)).await?;
    let mut reference_rps = Vec::new();
    for _ in 0..rounds {
        reference_rps
            .push(load::wrk(&format!("{}/v2/bench/pull/blobs/{rd}", reference_srv.base), 8, seconds, &[], None)?.rps);
    }
    let (q, b) = (median(&quiet), median(&busy));
    let scan_s = median(&times);
    let peak = peaks.iter().cloned().fold(0.0, f64::max);
    Ok(format!(
        "## Image scanning\n\n\
         An image of {:.0} MiB in {LAYERS} gzip layers listing 2,000 packages (1,400 dpkg, 200 each of Cargo, npm \
         and Python), ENHANCED scan against {RECORDS} OSV records generated from the shapes of the real records in \
         `shared/data/osv` ({findings} findings); median of {rounds}. Import of the {RECORDS} records: {import_s:.1} s.\n\n\
         | metric | Berth | distribution 2.8 | target |\n|---|---:|---:|---|\n\
         | scan time | {scan_s:.2} s | — | < 10 s {} |\n\
         | server peak RSS during the scan (resident before: {rss_before:.0} MiB) | {peak:.0} MiB | — | < 300 MiB {} |\n\
         | 4 MiB layer pulls/s, 8 connections, no scan | {q:.0} | {:.0} | |\n\
         | the same, scans running back to back | {b:.0} | — | ≥ 80 % of no scan: {:.0} % {} |\n",
        image_bytes as f64 / MIB as f64,
        if scan_s < 10.0 { "met" } else { "not met" },
        if peak < 300.0 { "met" } else { "not met" },
        median(&reference_rps),
        100.0 * b / q,
        if b >= 0.8 * q { "met" } else { "not met" },
    ))
}

/// Where the shared OSV data is, relative to a checkout in `/work/main` or a clone beside it.
pub fn default_osv_dir() -> PathBuf {
    for p in ["../shared/data/osv", "../../shared/data/osv", "tests/fixtures/osv"] {
        if Path::new(p).is_dir() {
            return PathBuf::from(p);
        }
    }
    PathBuf::from("tests/fixtures/osv")
}
