//! Crash safety: several clients push while Berth is killed with SIGKILL. After a restart,
//! every push acknowledged before the kill pulls back bit-identical, no blob is visible with
//! bytes other than its digest's, and `berth fsck` is clean.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use berth_e2e::*;
use reqwest::Client;

#[derive(Clone)]
struct BlobSpec {
    digest: String,
    seed: u64,
    len: usize,
}

struct Acked {
    repo: String,
    tag: String,
    manifest: Vec<u8>,
    blobs: Vec<BlobSpec>,
}

/// Uploads a blob in three chunks (POST, PATCH, PATCH, PUT), as docker and containerd do.
async fn chunked_upload(c: &Client, base: &str, repo: &str, bytes: &[u8]) -> Result<String, String> {
    let digest = sha256(bytes);
    let r = c.post(format!("{base}/v2/{repo}/blobs/uploads/")).send().await.map_err(|e| e.to_string())?;
    if r.status() != 202 {
        return Err(format!("POST {}", r.status()));
    }
    let loc = format!("{base}{}", r.headers()["location"].to_str().unwrap());
    let third = bytes.len() / 3;
    for (start, end) in [(0, third), (third, 2 * third)] {
        let r = c
            .patch(&loc)
            .header("content-range", format!("{start}-{}", end - 1))
            .body(bytes[start..end].to_vec())
            .send()
            .await
            .map_err(|e| e.to_string())?;
        if r.status() != 202 {
            return Err(format!("PATCH {}", r.status()));
        }
    }
    let r = c
        .put(format!("{loc}?digest={digest}"))
        .body(bytes[2 * third..].to_vec())
        .send()
        .await
        .map_err(|e| e.to_string())?;
    if r.status() != 201 {
        return Err(format!("PUT {}", r.status()));
    }
    Ok(digest)
}

async fn push_loop(
    c: Client,
    base: String,
    worker: u64,
    attempted: Arc<Mutex<Vec<BlobSpec>>>,
    acked: Arc<Mutex<Vec<Acked>>>,
) {
    for i in 0.. {
        let repo = format!("crash/w{worker}");
        let tag = format!("i{i}");
        let mut blobs = Vec::new();
        for (k, len) in [(0u64, 2_000usize), (1, 700_000), (2, 1_500_000)] {
            let seed = worker * 1_000_000 + i * 10 + k;
            let bytes = pseudo_random(seed, len);
            let spec = BlobSpec { digest: sha256(&bytes), seed, len };
            attempted.lock().unwrap().push(spec.clone());
            if chunked_upload(&c, &base, &repo, &bytes).await.is_err() {
                return;
            }
            blobs.push(spec);
        }
        let manifest = image_manifest(
            (&blobs[0].digest, blobs[0].len),
            &[(&blobs[1].digest, blobs[1].len), (&blobs[2].digest, blobs[2].len)],
        );
        let r = c
            .put(format!("{base}/v2/{repo}/manifests/{tag}"))
            .header("content-type", OCI_MANIFEST)
            .body(manifest.clone())
            .send()
            .await;
        match r {
            Ok(r) if r.status() == 201 => acked.lock().unwrap().push(Acked { repo, tag, manifest, blobs }),
            _ => return,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn acknowledged_pushes_survive_kill_9() {
    if single_node(
        "kills the node and restarts it on its data directory (the cluster version is tests/py/test_cluster.py)",
    ) {
        return;
    }
    let mut b = Berth::start();
    let base = b.url("");
    let client = b.client();
    let attempted = Arc::new(Mutex::new(Vec::new()));
    let acked = Arc::new(Mutex::new(Vec::new()));
    let workers: Vec<_> = (0..6)
        .map(|w| tokio::spawn(push_loop(client.clone(), base.clone(), w, attempted.clone(), acked.clone())))
        .collect();
    // Let the pushes run until a fair number are acknowledged, then pull the plug mid-push.
    for _ in 0..200 {
        if acked.lock().unwrap().len() >= 12 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    b.kill9();
    for w in workers {
        w.await.unwrap();
    }
    let acked = std::mem::take(&mut *acked.lock().unwrap());
    assert!(acked.len() >= 6, "only {} pushes were acknowledged before the kill", acked.len());

    let b2 = Berth::start_in(&b.data_dir);
    let c = b2.client();
    for a in &acked {
        let r = c.get(b2.url(&format!("/v2/{}/manifests/{}", a.repo, a.tag))).send().await.unwrap();
        assert_eq!(r.status(), 200, "{}:{} was acknowledged but is gone", a.repo, a.tag);
        assert_eq!(r.bytes().await.unwrap(), a.manifest);
        for blob in &a.blobs {
            let r = c.get(b2.url(&format!("/v2/{}/blobs/{}", a.repo, blob.digest))).send().await.unwrap();
            assert_eq!(r.status(), 200);
            assert_eq!(r.bytes().await.unwrap(), pseudo_random(blob.seed, blob.len));
        }
    }
    // Any blob that is visible at all has exactly its digest's bytes.
    let attempted = attempted.lock().unwrap().clone();
    let mut visible = 0;
    for blob in &attempted {
        let worker = blob.seed / 1_000_000;
        let r = c.get(b2.url(&format!("/v2/crash/w{worker}/blobs/{}", blob.digest))).send().await.unwrap();
        if r.status() == 200 {
            visible += 1;
            assert_eq!(sha256(&r.bytes().await.unwrap()), blob.digest);
        } else {
            assert_eq!(r.status(), 404);
        }
    }
    assert!(visible >= acked.len() * 3);
    let out = b2.run(&["fsck"]);
    assert!(out.status.success(), "fsck after the crash:\n{}", String::from_utf8_lossy(&out.stdout));
}
