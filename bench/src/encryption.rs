//! `--encryption-only`: #16's figures. Berth as it runs by default (every blob and manifest
//! sealed in Berth's format, `AES256` under the master keyring), the same build with the data
//! directory declared encrypted by the operator (`BERTH_BLOBS_ENCRYPTED_AT_REST=true`: stored
//! as sent, the unencrypted baseline), and the reference registry, alternating; beside them one
//! core's AES-256-GCM rate in Berth's format, the limit.

use std::path::Path;
use std::time::Instant;

use bytes::Bytes;

use crate::server::{BerthOptions, Kind, Server};
use crate::{
    MIB, OCI_MANIFEST, download, filler, load, manifest, median, put_manifest, sha256, upload_whole, upload_whole_as,
};

/// A server to measure: its label, extra environment (for Berth) and kind.
type Config<'a> = (&'a str, &'a [(&'a str, &'a str)], Kind);

/// A row of the table: its name, how to read it from a round's figures, its target.
type Row = (&'static str, fn(&Figures) -> f64, &'static str);

/// The figures of one server in one round.
#[derive(Default)]
struct Figures {
    upload_mbs: f64,
    upload_cpu: f64,
    download_mbs: f64,
    download_cpu: f64,
    ranged_mbs: f64,
    ranged_cpu: f64,
    manifest_get: f64,
    manifest_get_cpu_ms: f64,
}

/// Each transfer is repeated this many times in a round and timed as one: a single 256 MiB
/// transfer takes a few tenths of a second, about the noise of this machine's scheduler and
/// of the 10 ms CPU clock.
const REPEATS: usize = 4;

async fn measure(srv: &Server, big: &[u8], seconds: u32) -> anyhow::Result<Figures> {
    let c = srv.client()?;
    let base = srv.base.clone();
    let size = big.len();
    let (gb, mb) = ((REPEATS * size) as f64 / 1e9, (REPEATS * size) as f64 / 1e6);
    let mut f = Figures::default();
    // As many blobs, each its own (the last bytes differ), so every upload is stored and
    // committed as a new blob; their digests are computed before the clock starts.
    let bodies: Vec<(Bytes, String)> = (0..REPEATS)
        .map(|i| {
            let mut b = big.to_vec();
            let (at, n) = (b.len().saturating_sub(8), b.len().min(8));
            b[at..].copy_from_slice(&(i as u64).to_be_bytes()[..n]);
            let digest = sha256(&b);
            (Bytes::from(b), digest)
        })
        .collect();
    let (cpu0, t0) = (srv.cpu_seconds(), Instant::now());
    for (i, (body, digest)) in bodies.iter().enumerate() {
        upload_whole_as(&c, &base, &format!("enc/big{i}"), body.clone(), digest.clone()).await?;
    }
    (f.upload_mbs, f.upload_cpu) = (mb / t0.elapsed().as_secs_f64(), (srv.cpu_seconds() - cpu0) / gb);
    let digest = &bodies[0].1;
    // What the uploads left dirty is written back now, not by the kernel's flusher threads
    // while the downloads are timed.
    std::process::Command::new("sync").status()?;

    let url = format!("{base}/v2/enc/big0/blobs/{digest}");
    download(&c, &url, None).await?; // the page cache warmed for every server alike
    let (cpu0, t0) = (srv.cpu_seconds(), Instant::now());
    for _ in 0..REPEATS {
        anyhow::ensure!(download(&c, &url, None).await? == size);
    }
    (f.download_mbs, f.download_cpu) = (mb / t0.elapsed().as_secs_f64(), (srv.cpu_seconds() - cpu0) / gb);
    let (cpu0, t0) = (srv.cpu_seconds(), Instant::now());
    let mut got = 0;
    for _ in 0..REPEATS {
        for start in (0..size).step_by(16 * MIB) {
            got += download(&c, &url, Some((start, (start + 16 * MIB).min(size) - 1))).await?;
        }
    }
    anyhow::ensure!(got == REPEATS * size);
    (f.ranged_mbs, f.ranged_cpu) = (mb / t0.elapsed().as_secs_f64(), (srv.cpu_seconds() - cpu0) / gb);

    let config = br#"{"architecture":"amd64","os":"linux"}"#.to_vec();
    let layer = filler(4096, 3);
    let cd = (upload_whole(&c, &base, "enc/app", Bytes::from(config.clone())).await?, config.len());
    let ld = (upload_whole(&c, &base, "enc/app", Bytes::from(layer.clone())).await?, layer.len());
    put_manifest(&c, &base, "enc/app", "v1", manifest(&cd, &ld)).await?;
    let auth_header = srv.auth.as_ref().map(|a| format!("Authorization: {a}"));
    let accept = format!("Accept: {OCI_MANIFEST}");
    let headers: Vec<&str> = auth_header.iter().map(String::as_str).chain([accept.as_str()]).collect();
    let cpu0 = srv.cpu_seconds();
    let rate = load::wrk(&format!("{base}/v2/enc/app/manifests/v1"), 32, seconds, &headers, None)?;
    anyhow::ensure!(rate.errors == 0.0, "manifest GETs failed: {}", rate.errors);
    f.manifest_get = rate.rps;
    f.manifest_get_cpu_ms = (srv.cpu_seconds() - cpu0) * 1000.0 / rate.requests.max(1.0);
    Ok(f)
}

/// One core sealing and opening `big` in Berth's format (one layer, as `AES256` and `KMS`), in
/// GB/s, streamed as the server streams it: 1 MiB pieces in, sealed chunks out; 1 MiB pieces
/// of the sealed bytes in (each a buffer of its own, as a store read gives), plaintext out.
fn one_core_rates(big: &[u8]) -> (f64, f64) {
    let keys = berth_envelope::BlobKeys::generate(1);
    let envelope = keys.envelope();
    let (mut seal, mut open) = (Vec::new(), Vec::new());
    for _ in 0..3 {
        // Sealed chunks are dropped as they are made, as the server drops them once written.
        let t0 = Instant::now();
        let mut sealer = envelope.sealer();
        let mut out: Vec<Bytes> = Vec::new();
        for piece in big.chunks(MIB) {
            sealer.push(piece, &mut out).expect("seals");
            out.clear();
        }
        std::hint::black_box(sealer.finish().expect("seals"));
        seal.push(big.len() as f64 / 1e9 / t0.elapsed().as_secs_f64());
        let whole = envelope.seal(big).expect("seals");
        let t0 = Instant::now();
        let (_, mut opener) = envelope.open_range(big.len() as u64, None).expect("a range");
        let mut plain = Vec::new();
        for piece in whole.chunks(MIB) {
            opener.push(Bytes::copy_from_slice(piece), &mut plain).expect("opens");
            plain.clear();
        }
        opener.finish().expect("whole");
        open.push(big.len() as f64 / 1e9 / t0.elapsed().as_secs_f64());
    }
    (median(&seal), median(&open))
}

pub async fn run(
    berth: &Path,
    reference: &Path,
    rounds: usize,
    seconds: u32,
    blob_mib: usize,
) -> anyhow::Result<String> {
    let big = filler(blob_mib * MIB, 7);
    let (seal_gbs, open_gbs) = one_core_rates(&big);
    let configs: [Config; 3] = [
        ("Berth, sealed (AES256, Berth's format)", &[], Kind::Berth),
        (
            "Berth, stored as sent (BERTH_BLOBS_ENCRYPTED_AT_REST)",
            &[("BERTH_BLOBS_ENCRYPTED_AT_REST", "true")],
            Kind::Berth,
        ),
        ("distribution 2.8", &[], Kind::Reference),
    ];
    let mut figures: Vec<Vec<Figures>> = configs.iter().map(|_| Vec::new()).collect();
    for round in 0..rounds {
        // Sealed and as-sent swap places every round, so a drift of the machine during a
        // round favours neither.
        let order: [usize; 3] = if round % 2 == 0 { [0, 1, 2] } else { [1, 0, 2] };
        for i in order {
            let (label, env, kind) = &configs[i];
            eprintln!("encryption round {} / {rounds}: {label}", round + 1);
            let srv = Server::start_opts(*kind, berth, reference, BerthOptions { env, ..Default::default() })?;
            figures[i].push(measure(&srv, &big, seconds).await?);
        }
    }
    let m = |i: usize, get: fn(&Figures) -> f64| median(&figures[i].iter().map(get).collect::<Vec<_>>());
    let mut t = format!(
        "Encryption at rest: a {blob_mib} MiB blob uploaded whole ({REPEATS} such blobs, into as many repositories), \
         downloaded whole and in 16 MiB ranges ({REPEATS} times each), and manifest GET at c=32 for {seconds} s; median of {rounds} rounds (the ratios: the median of each round's), release build, fresh storage each. One core seals \
         Berth's format at {seal_gbs:.2} GB/s and opens it at {open_gbs:.2} GB/s, streamed as the server does (AES-256-GCM, 64 KiB chunks: the limit).\n\n"
    );
    t.push_str("| measure |");
    for (label, _, _) in &configs {
        t.push_str(&format!(" {label} |"));
    }
    t.push_str(" sealed / as sent | rounds' ratios | target |\n|---|---|---|---|---|---|---|\n");
    let rows: [Row; 8] = [
        ("upload MB/s", |f| f.upload_mbs, ""),
        ("upload server CPU s/GB", |f| f.upload_cpu, "<= 1.15x"),
        ("download MB/s", |f| f.download_mbs, ">= 0.9x"),
        ("download server CPU s/GB", |f| f.download_cpu, ""),
        ("ranged download (16 MiB) MB/s", |f| f.ranged_mbs, ">= 0.9x"),
        ("ranged download server CPU s/GB", |f| f.ranged_cpu, ""),
        ("manifest GET c=32 req/s", |f| f.manifest_get, ">= 0.95x"),
        ("manifest GET c=32 server CPU ms/req", |f| f.manifest_get_cpu_ms, ""),
    ];
    for (name, get, target) in rows {
        t.push_str(&format!("| {name} |"));
        for i in 0..configs.len() {
            t.push_str(&format!(" {:.2} |", m(i, get)));
        }
        // The ratio is the median of each round's own ratio (the two measured minutes
        // apart), less moved by the machine's noise than a ratio of medians.
        let mut ratios: Vec<f64> = figures[0].iter().zip(&figures[1]).map(|(a, b)| get(a) / get(b)).collect();
        ratios.sort_by(f64::total_cmp);
        let (lo, hi) = (ratios.first().copied().unwrap_or(0.0), ratios.last().copied().unwrap_or(0.0));
        t.push_str(&format!(" {:.2}x | {lo:.2}-{hi:.2}x | {target} |\n", median(&ratios)));
    }
    Ok(t)
}
