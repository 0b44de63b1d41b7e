//! Garbage collection at scale: a registry with 100,000 blobs (20,000 small images, 60,000
//! blobs no manifest references, and 5,000 of the images deleted), one offline `berth gc` pass
//! over it (dry run and real), then small-image pushes/s with GC running back to back (every
//! second) against the same push load without GC.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use bytes::Bytes;
use reqwest::Client;

use crate::server::{BerthOptions, Kind, Server};
use crate::{filler, median, push_small_image_to, sha256, small_image_digest};

const IMAGES: usize = 20_000;
const LOOSE_BLOBS: usize = 60_000;
const DELETED_IMAGES: usize = 5_000;
const LOAD_IMAGES: usize = 1_500;
const WORKERS: usize = 16;

/// Runs `n` jobs over `workers` tasks; `job(client, base, i)`.
async fn parallel<F, Fut>(srv: &Server, n: usize, workers: usize, job: F) -> anyhow::Result<f64>
where
    F: Fn(Client, String, usize) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = anyhow::Result<()>> + Send,
{
    let (c, job, next) = (srv.client()?, Arc::new(job), Arc::new(AtomicUsize::new(0)));
    let t0 = Instant::now();
    let tasks: Vec<_> = (0..workers)
        .map(|_| {
            let (c, base, job, next) = (c.clone(), srv.base.clone(), job.clone(), next.clone());
            tokio::spawn(async move {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= n {
                        return anyhow::Ok(());
                    }
                    job(c.clone(), base.clone(), i).await?;
                }
            })
        })
        .collect();
    for t in tasks {
        t.await??;
    }
    Ok(t0.elapsed().as_secs_f64())
}

/// Wall-clock seconds of `berth gc` on `data`, and its JSON report.
fn offline_gc(berth: &Path, data: &Path, dry_run: bool) -> anyhow::Result<(f64, serde_json::Value)> {
    let mut cmd = std::process::Command::new(berth);
    cmd.args(["gc", "--grace-seconds", "0", "--data-dir"]).arg(data);
    if dry_run {
        cmd.arg("--dry-run");
    }
    let t0 = Instant::now();
    let out = cmd.output()?;
    let secs = t0.elapsed().as_secs_f64();
    anyhow::ensure!(out.status.success(), "berth gc: {}", String::from_utf8_lossy(&out.stderr));
    Ok((secs, serde_json::from_slice(&out.stdout)?))
}

pub async fn run(berth: &Path, reference: &Path, rounds: usize) -> anyhow::Result<String> {
    let dir = tempfile::tempdir()?;
    let data = dir.path().join("data");
    let no_gc: &[(&str, &str)] = &[("BERTH_GC_INTERVAL_SECONDS", "0"), ("BERTH_LIFECYCLE_INTERVAL_SECONDS", "0")];
    let srv = Server::start_opts(
        Kind::Berth,
        berth,
        reference,
        BerthOptions { env: no_gc, data_dir: Some(&data), ..Default::default() },
    )?;
    srv.ecr("CreateRepositoryCreationTemplate", r#"{"prefix":"ROOT","appliedFor":["CREATE_ON_PUSH"]}"#)?;
    eprintln!("gc bench: pushing {IMAGES} small images");
    let t = parallel(&srv, IMAGES, WORKERS, |c, base, i| async move {
        push_small_image_to(&c, &base, &format!("gc/app{}", i % 10), i).await
    })
    .await?;
    eprintln!("  {:.0} images/s", IMAGES as f64 / t);
    eprintln!("gc bench: uploading {LOOSE_BLOBS} blobs no manifest references");
    let t = parallel(&srv, LOOSE_BLOBS, WORKERS, |c, base, i| async move {
        let blob = filler(512, 1_000_000 + i as u64);
        let digest = sha256(&blob);
        let r = c
            .post(format!("{base}/v2/gc/loose{}/blobs/uploads/?digest={digest}", i % 10))
            .body(Bytes::from(blob))
            .send()
            .await?;
        anyhow::ensure!(r.status() == 201, "monolithic upload: {}", r.status());
        Ok(())
    })
    .await?;
    eprintln!("  {:.0} blobs/s", LOOSE_BLOBS as f64 / t);
    eprintln!("gc bench: deleting {DELETED_IMAGES} images");
    parallel(&srv, DELETED_IMAGES, WORKERS, |c, base, i| async move {
        let r = c.delete(format!("{base}/v2/gc/app{}/manifests/{}", i % 10, small_image_digest(i))).send().await?;
        anyhow::ensure!(r.status() == 202, "manifest DELETE: {}", r.status());
        Ok(())
    })
    .await?;
    drop(srv);

    let (dry_s, dry) = offline_gc(berth, &data, true)?;
    let (gc_s, report) = offline_gc(berth, &data, false)?;
    eprintln!("gc pass: dry run {dry_s:.2} s {dry}, real {gc_s:.2} s {report}");
    let (again_s, _) = offline_gc(berth, &data, false)?;

    // Pushes/s: without GC, then with GC every second (a pass over the ~90,000 remaining blobs
    // each time), alternating.
    let gc_loop: &[(&str, &str)] = &[
        ("BERTH_GC_INTERVAL_SECONDS", "1"),
        ("BERTH_GC_GRACE_SECONDS", "3600"),
        ("BERTH_LIFECYCLE_INTERVAL_SECONDS", "0"),
    ];
    let (mut without, mut with, mut gc_runs) = (Vec::new(), Vec::new(), Vec::new());
    let mut offset = 10_000_000;
    for round in 0..rounds {
        for (label, env) in [("without GC", no_gc), ("with GC", gc_loop)] {
            let srv = Server::start_opts(
                Kind::Berth,
                berth,
                reference,
                BerthOptions { env, data_dir: Some(&data), ..Default::default() },
            )?;
            let start = offset;
            let t = parallel(&srv, LOAD_IMAGES, 8, move |c, base, i| async move {
                push_small_image_to(&c, &base, "gc/load", start + i).await
            })
            .await?;
            offset += LOAD_IMAGES;
            let rate = LOAD_IMAGES as f64 / t;
            let metrics = reqwest::get(format!("{}/metrics", srv.base)).await?.text().await?;
            let runs = metrics
                .lines()
                .find_map(|l| l.strip_prefix("berth_gc_runs_total "))
                .and_then(|v| v.trim().parse::<f64>().ok())
                .unwrap_or(0.0);
            eprintln!("round {}: {label}: {rate:.1} pushes/s ({runs} GC passes during {t:.1} s)", round + 1);
            if env == gc_loop {
                with.push(rate);
                gc_runs.push(runs / t);
            } else {
                without.push(rate);
            }
        }
    }
    let (a, b) = (median(&without), median(&with));
    Ok(format!(
        "## Garbage collection\n\n\
         A registry of 100,000 blobs: {IMAGES} small images (config + 1 KiB layer), {LOOSE_BLOBS} blobs no \
         manifest references, {DELETED_IMAGES} of the images deleted. One offline `berth gc` pass, wall clock \
         including process start (target < 10 s):\n\n\
         | pass | seconds | what it found |\n|---|---:|---|\n\
         | dry run | {dry_s:.2} | {dry} |\n| real | {gc_s:.2} | {report} |\n| again (nothing left) | {again_s:.2} | |\n\n\
         Small-image pushes/s (8 workers, {LOAD_IMAGES} images per run, median of {rounds}) on that registry, \
         without GC and with a GC pass every second ({:.2} passes/s completed under load) (target: under 20 % slower):\n\n\
         | without GC | with GC | ratio |\n|---:|---:|---:|\n| {a:.1} | {b:.1} | {:.2} |\n",
        median(&gc_runs),
        b / a
    ))
}
