//! Small reads on one keep-alive connection, the way every pull fetches config blobs and small
//! layers: p50/p99 of 4 KiB range GETs of a 1 MiB blob and of whole 2 KiB blob GETs, and
//! `tags/list` of a repository with 5,000 tags (`?n=5000`, one page), Berth beside the
//! reference registry, A B alternating. A response whose head and body leave in separate small
//! writes waits for the client's delayed ACK (~40 ms) under Nagle's algorithm: that is what
//! the p50 shows.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Instant;

use bytes::Bytes;
use reqwest::Client;

use crate::server::{Kind, Server};
use crate::{filler, manifest, median, put_manifest, upload_whole};

const GETS: usize = 300;
const TAGS: usize = 5000;

pub(crate) fn percentile(v: &mut [f64], p: f64) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[((v.len() - 1) as f64 * p).round() as usize]
}

/// One connection only: every request reuses it.
fn one_connection_client(srv: &Server) -> anyhow::Result<Client> {
    let mut headers = reqwest::header::HeaderMap::new();
    if let Some(a) = &srv.auth {
        headers.insert(reqwest::header::AUTHORIZATION, a.parse()?);
    }
    Ok(Client::builder().default_headers(headers).pool_max_idle_per_host(1).http1_only().build()?)
}

async fn timed_gets(c: &Client, url: &str, range: impl Fn(usize) -> Option<String>) -> anyhow::Result<Vec<f64>> {
    let mut times = Vec::with_capacity(GETS);
    for i in 0..GETS {
        let mut req = c.get(url);
        if let Some(r) = range(i) {
            req = req.header("range", r);
        }
        let t0 = Instant::now();
        let r = req.send().await?;
        anyhow::ensure!(r.status().is_success(), "GET {url}: {}", r.status());
        r.bytes().await?;
        times.push(t0.elapsed().as_secs_f64() * 1000.0);
    }
    Ok(times)
}

async fn suite(srv: &Server) -> anyhow::Result<Vec<(String, f64)>> {
    let mut out = Vec::new();
    let base = srv.base.clone();
    let c = srv.client()?;
    let big = upload_whole(&c, &base, "lat/app", Bytes::from(filler(1 << 20, 7))).await?;
    let small = upload_whole(&c, &base, "lat/app", Bytes::from(filler(2048, 8))).await?;

    let one = one_connection_client(srv)?;
    let url = format!("{base}/v2/lat/app/blobs/{big}");
    timed_gets(&one, &url, |_| Some("bytes=0-4095".into())).await?; // warm up
    let mut t = timed_gets(&one, &url, |i| {
        let start = (i * 7919 * 4096) % ((1 << 20) - 4096);
        Some(format!("bytes={start}-{}", start + 4095))
    })
    .await?;
    out.push(("4 KiB range GET, one connection, p50 ms".to_string(), percentile(&mut t, 0.5)));
    out.push(("4 KiB range GET, one connection, p99 ms".to_string(), percentile(&mut t, 0.99)));
    let url = format!("{base}/v2/lat/app/blobs/{small}");
    let mut t = timed_gets(&one, &url, |_| None).await?;
    out.push(("2 KiB blob GET, one connection, p50 ms".to_string(), percentile(&mut t, 0.5)));
    out.push(("2 KiB blob GET, one connection, p99 ms".to_string(), percentile(&mut t, 0.99)));

    // 5,000 tags on one manifest.
    let config = br#"{"architecture":"amd64","os":"linux"}"#.to_vec();
    let cd = (upload_whole(&c, &base, "lat/tags", Bytes::from(config.clone())).await?, config.len());
    let layer = filler(1024, 9);
    let ld = (upload_whole(&c, &base, "lat/tags", Bytes::from(layer.clone())).await?, layer.len());
    let m = manifest(&cd, &ld);
    let tags: Vec<String> = (0..TAGS).map(|i| format!("t{i:05}")).collect();
    let mut pending = futures_util::stream::FuturesUnordered::new();
    for tag in &tags {
        pending.push(put_manifest(&c, &base, "lat/tags", tag, m.clone()));
        if pending.len() >= 16 {
            use futures_util::StreamExt;
            pending.next().await.transpose()?;
        }
    }
    use futures_util::StreamExt;
    while let Some(r) = pending.next().await {
        r?;
    }
    let url = format!("{base}/v2/lat/tags/tags/list?n={TAGS}");
    let mut times = Vec::new();
    for _ in 0..30 {
        let t0 = Instant::now();
        let r = one.get(&url).send().await?;
        anyhow::ensure!(r.status() == 200, "tags/list: {}", r.status());
        let v: serde_json::Value = r.json().await?;
        times.push(t0.elapsed().as_secs_f64() * 1000.0);
        let n = v["tags"].as_array().map_or(0, Vec::len);
        anyhow::ensure!(n == TAGS, "tags/list returned {n} tags");
    }
    out.push((format!("tags/list of {TAGS} tags ms"), median(&times)));
    Ok(out)
}

/// Berth against `other` (the reference registry, or a baseline Berth at `reference`).
pub async fn run(berth: &Path, reference: &Path, other: Kind, rounds: usize) -> anyhow::Result<String> {
    let mut results: BTreeMap<(usize, Kind), Vec<(String, f64)>> = BTreeMap::new();
    for round in 0..rounds {
        for kind in [Kind::Berth, other] {
            eprintln!("latency round {} / {rounds}: {}", round + 1, kind.label());
            let srv = Server::start(kind, berth, reference)?;
            results.insert((round, kind), suite(&srv).await?);
        }
    }
    let names: Vec<String> =
        results.values().next().map(|r| r.iter().map(|(n, _)| n.clone()).collect()).unwrap_or_default();
    let mut table = format!(
        "Small reads on one keep-alive connection ({GETS} GETs each), medians of {rounds} rounds:\n\n| metric | Berth | {} | Berth / {} | target |\n| --- | ---: | ---: | ---: | --- |\n",
        other.label(),
        if other == Kind::Baseline { "baseline" } else { "reference" }
    );
    for (i, name) in names.iter().enumerate() {
        let of = |kind: Kind| {
            let v: Vec<f64> = (0..rounds).filter_map(|r| results.get(&(r, kind)).map(|x| x[i].1)).collect();
            median(&v)
        };
        let (b, r) = (of(Kind::Berth), of(other));
        let target = if name.contains("p50") {
            if b < 1.0 { "p50 < 1 ms met" } else { "p50 < 1 ms **not met**" }
        } else if name.starts_with("tags/list") {
            if b <= r { "≤ reference met" } else { "≤ reference **not met**" }
        } else {
            ""
        };
        table.push_str(&format!("| {name} | {b:.3} | {r:.3} | {:.2} | {target} |\n", b / r));
    }
    Ok(table)
}
