//! Garbage collection: storage of deleted images is reclaimed, shared and referenced blobs are
//! kept, abandoned uploads go; and online, GC running every second never takes anything an
//! acknowledged push relies on while clients push, pull and delete.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use berth_e2e::*;
use reqwest::Client;
use serde_json::{Value, json};

fn blob_file(b: &Berth, digest: &str) -> std::path::PathBuf {
    b.data_dir.join("blobs/sha256").join(&digest[7..9]).join(&digest[7..])
}

/// Pushes an image with a shared layer and a layer of its own; returns (manifest digest, blobs).
async fn push_with_shared(
    c: &Client,
    b: &Berth,
    repo: &str,
    tag: &str,
    seed: u64,
    shared: &[u8],
) -> (String, Vec<u8>, Vec<String>) {
    let config = format!(r#"{{"architecture":"amd64","os":"linux","seed":{seed}}}"#).into_bytes();
    let own = pseudo_random(seed, 50_000);
    let cd = push_blob(c, b, repo, &config).await;
    let sd = push_blob(c, b, repo, shared).await;
    let od = push_blob(c, b, repo, &own).await;
    let manifest = image_manifest((&cd, config.len()), &[(&sd, shared.len()), (&od, own.len())]);
    put_manifest(c, b, repo, tag, &manifest).await;
    (sha256(&manifest), manifest, vec![cd, sd, od])
}

/// GET of a manifest of the stress test's repository.
async fn stress_manifest(c: &Client, b: &Berth, tag: &str) -> reqwest::Response {
    c.get(b.url(&format!("/v2/stress/app/manifests/{tag}"))).header("accept", OCI_MANIFEST).send().await.unwrap()
}

fn gc_json(b: &Berth, args: &[&str]) -> Value {
    let out = b.run(&[&["gc"], args].concat());
    assert!(out.status.success(), "gc {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

#[tokio::test]
async fn offline_gc_reclaims_deleted_images_and_abandoned_uploads() {
    if single_node("offline `berth gc` holds one data directory's lock and reads its blob files") {
        return;
    }
    let mut b = Berth::start();
    let c = b.client();
    let shared = pseudo_random(1, 80_000);
    let (_, _, a_blobs) = push_with_shared(&c, &b, "gc/app", "a", 10, &shared).await;
    let (b_digest, b_manifest, b_blobs) = push_with_shared(&c, &b, "gc/app", "b", 20, &shared).await;
    let r = c.post(b.url("/v2/gc/app/blobs/uploads/")).send().await.unwrap();
    let abandoned = b.url(r.headers()["location"].to_str().unwrap());
    c.patch(&abandoned).body(vec![7u8; 1000]).send().await.unwrap();

    // While serving, only a dry run may run; nothing is unreferenced yet.
    let out = b.run(&["gc", "--grace-seconds", "0"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("in use by a running berth serve"));
    assert_eq!(gc_json(&b, &["--dry-run", "--grace-seconds", "0"])["blobsRemoved"], 0);

    let (status, v) = b.ecr("BatchDeleteImage", json!({"repositoryName": "gc/app", "imageIds": [{"imageTag": "a"}]}));
    assert_eq!(status, 200, "{v}");
    let dry = gc_json(&b, &["--dry-run", "--grace-seconds", "0"]);
    assert_eq!(dry["blobsRemoved"], 2, "{dry}");
    // The default grace period protects fresh blobs.
    assert_eq!(gc_json(&b, &["--dry-run"])["blobsRemoved"], 0);

    assert!(b.stop().success());
    let report = gc_json(&b, &["--grace-seconds", "0", "--upload-age-seconds", "0"]);
    assert_eq!(report["blobsRemoved"], 2, "{report}");
    assert_eq!(report["uploadsRemoved"], 1, "{report}");
    // A's own layer (50,000 bytes) and its config.
    let config_len = r#"{"architecture":"amd64","os":"linux","seed":10}"#.len() as u64;
    assert_eq!(report["bytesFreed"].as_u64().unwrap(), 50_000 + config_len, "{report}");
    for gone in [&a_blobs[0], &a_blobs[2]] {
        assert!(!blob_file(&b, gone).exists(), "{gone} should be reclaimed");
    }
    for kept in &b_blobs {
        assert!(blob_file(&b, kept).exists(), "{kept} must stay");
    }

    let b2 = Berth::start_in(&b.data_dir);
    let c2 = b2.client();
    let r = c2.get(b2.url("/v2/gc/app/manifests/b")).header("accept", OCI_MANIFEST).send().await.unwrap();
    assert_eq!(r.headers()["docker-content-digest"].to_str().unwrap(), b_digest);
    assert_eq!(r.bytes().await.unwrap(), b_manifest);
    for d in &b_blobs {
        let bytes = c2.get(b2.url(&format!("/v2/gc/app/blobs/{d}"))).send().await.unwrap().bytes().await.unwrap();
        assert_eq!(&sha256(&bytes), d);
    }
    let out = b2.run(&["fsck"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stdout));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn online_gc_never_takes_what_a_push_relies_on() {
    if single_node(
        "reads blob files in the data directory and one node's /metrics (the multi-node GC stress is tests/py/test_cluster.py)",
    ) {
        return;
    }
    let b = Berth::start_env(&[
        ("BERTH_GC_INTERVAL_SECONDS", "1"),
        ("BERTH_GC_GRACE_SECONDS", "3"),
        ("BERTH_METRICS_LISTEN", "127.0.0.1:0"),
    ]);
    let c = b.client();
    let shared = Arc::new(pseudo_random(2, 100_000));
    let acked: Arc<Mutex<Vec<Pushed>>> = Arc::new(Mutex::new(Vec::new()));
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut workers = Vec::new();
    for w in 0..3u64 {
        let (c, shared, acked, base) = (c.clone(), shared.clone(), acked.clone(), b.url(""));
        let host = b.host();
        workers.push(tokio::spawn(async move {
            let b = BerthRef { base, host };
            let mut i = 0u64;
            while Instant::now() < deadline {
                let tag = format!("w{w}-{i}");
                let (d, m, blobs) = b.push(&c, "stress/app", &tag, w * 10_000 + i, &shared).await;
                acked.lock().unwrap().push((tag, d, m, blobs));
                i += 1;
            }
        }));
    }
    // Meanwhile: delete every other acknowledged image, and pull the rest back.
    let mut deleted: Vec<(String, Vec<String>)> = Vec::new();
    while Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(300)).await;
        let snapshot = acked.lock().unwrap().clone();
        for (n, (tag, digest, _, _)) in snapshot.iter().enumerate() {
            if n % 2 == 0 && !deleted.iter().any(|(t, _)| t == tag) {
                let (status, v) =
                    b.ecr("BatchDeleteImage", json!({"repositoryName": "stress/app", "imageIds": [{"imageTag": tag}]}));
                assert_eq!(status, 200, "{v}");
                deleted.push((tag.clone(), snapshot[n].3.clone()));
            } else if n % 2 == 1 {
                let r = stress_manifest(&c, &b, tag).await;
                assert_eq!(r.status(), 200, "{tag} acknowledged and not deleted");
                assert_eq!(&sha256(&r.bytes().await.unwrap()), digest);
            }
        }
    }
    for w in workers {
        w.await.unwrap();
    }
    // Two more collections after the grace period, then every kept image pulls back whole.
    tokio::time::sleep(Duration::from_secs(6)).await;
    let acked = acked.lock().unwrap().clone();
    assert!(acked.len() > 20, "only {} pushes in a minute", acked.len());
    let kept: Vec<_> = acked.iter().filter(|(t, ..)| !deleted.iter().any(|(d, _)| d == t)).collect();
    for (tag, digest, manifest, blobs) in &kept {
        let r = stress_manifest(&c, &b, tag).await;
        assert_eq!(r.status(), 200, "{tag}");
        assert_eq!(&r.bytes().await.unwrap().to_vec(), manifest);
        assert_eq!(&sha256(manifest), digest);
        for d in blobs {
            let bytes = c.get(b.url(&format!("/v2/stress/app/blobs/{d}"))).send().await.unwrap().bytes().await.unwrap();
            assert_eq!(&sha256(&bytes), d, "{tag}: blob {d}");
        }
    }
    // The deleted images' own layers were reclaimed; the shared layer was not.
    let kept_blobs: std::collections::HashSet<&String> = kept.iter().flat_map(|(.., blobs)| blobs.iter()).collect();
    let mut reclaimed = 0;
    for (_, blobs) in &deleted {
        for d in blobs.iter().filter(|d| !kept_blobs.contains(d)) {
            assert!(!blob_file(&b, d).exists(), "{d} of a deleted image was not reclaimed");
            reclaimed += 1;
        }
    }
    assert!(reclaimed > 10, "reclaimed {reclaimed}");
    assert!(blob_file(&b, &sha256(&shared)).exists());

    // /metrics, on its own internal address (never on the public port), shows the collections
    // and the repository's figures.
    assert_eq!(reqwest::get(b.url("/metrics")).await.unwrap().status(), 404);
    let metrics_url = format!("http://{}/metrics", b.metrics_addr.expect("metrics address"));
    let text = reqwest::get(&metrics_url).await.unwrap().text().await.unwrap();
    let value = |name: &str| -> f64 {
        text.lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("{name} missing from /metrics:\n{text}"))
    };
    assert!(value("berth_gc_runs_total") >= 10.0);
    assert!(value("berth_gc_bytes_freed_total") > 0.0);
    assert_eq!(
        value("berth_repository_images{account=\"123456789012\",repository=\"stress/app\"}") as usize,
        kept.len()
    );
    assert!(value("berth_registry_storage_bytes") >= shared.len() as f64);
    assert!(
        value("berth_http_requests_total{route=\"v2_manifest\",method=\"PUT\",status=\"201\"}") >= acked.len() as f64
    );
    assert!(text.contains("berth_http_request_duration_seconds_bucket"));
    assert!(value("berth_upload_bytes_total") > 0.0);
    let out = b.run(&["fsck"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stdout));
}

/// An acknowledged push: tag, manifest digest, manifest bytes, blob digests.
type Pushed = (String, String, Vec<u8>, Vec<String>);

/// What a worker task needs of a server (the `Berth` itself stays with the test).
struct BerthRef {
    base: String,
    host: String,
}

impl BerthRef {
    async fn push(
        &self,
        c: &Client,
        repo: &str,
        tag: &str,
        seed: u64,
        shared: &[u8],
    ) -> (String, Vec<u8>, Vec<String>) {
        let blob = |bytes: Vec<u8>| {
            let c = c.clone();
            let url = format!("{}/v2/{repo}/blobs/uploads/?digest={}", self.base, sha256(&bytes));
            async move {
                let r = c.post(url).body(bytes).send().await.unwrap();
                assert_eq!(r.status(), 201);
            }
        };
        let config = format!(r#"{{"architecture":"amd64","os":"linux","seed":{seed}}}"#).into_bytes();
        let own = pseudo_random(seed + 1, 30_000);
        let digests = vec![sha256(&config), sha256(shared), sha256(&own)];
        blob(config.clone()).await;
        blob(shared.to_vec()).await;
        blob(own.clone()).await;
        let manifest =
            image_manifest((&digests[0], config.len()), &[(&digests[1], shared.len()), (&digests[2], own.len())]);
        let r = c
            .put(format!("{}/v2/{repo}/manifests/{tag}", self.base))
            .header("content-type", OCI_MANIFEST)
            .body(manifest.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201, "{} {:?}", self.host, r.text().await);
        (sha256(&manifest), manifest, digests)
    }
}
