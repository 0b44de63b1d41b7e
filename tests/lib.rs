//! Shared harness for the end-to-end tests: start the real `berth` binary on a free loopback
//! port with its own data directory, and small helpers to push content over HTTP.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use sha2::{Digest as _, Sha256};

/// The `berth` binary under test: `$BERTH_BIN`, or the one cargo built beside this test.
pub fn berth_bin() -> PathBuf {
    if let Ok(p) = std::env::var("BERTH_BIN") {
        return PathBuf::from(p);
    }
    let exe = std::env::current_exe().expect("test executable path");
    let dir = exe.parent().and_then(Path::parent).expect("target profile directory");
    let bin = dir.join("berth");
    assert!(bin.exists(), "{} not found: run `cargo build --bin berth` first (or set BERTH_BIN)", bin.display());
    bin
}

/// A running `berth serve`, killed when dropped.
pub struct Berth {
    child: Option<Child>,
    pub addr: SocketAddr,
    pub data_dir: PathBuf,
    /// Keeps the temporary directory alive for the life of the server.
    _tmp: Option<tempfile::TempDir>,
}

impl Berth {
    /// Starts Berth on a fresh data directory.
    pub fn start() -> Self {
        let tmp = tempfile::tempdir().expect("temp dir");
        let mut b = Self::start_in(&tmp.path().join("data"));
        b._tmp = Some(tmp);
        b
    }

    /// Starts Berth on `data_dir` (kept as it is: a restart sees what the last run left).
    pub fn start_in(data_dir: &Path) -> Self {
        std::fs::create_dir_all(data_dir).expect("data dir");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(data_dir.with_extension("log"))
            .expect("log file");
        let mut child = Command::new(berth_bin())
            .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(data_dir)
            .env_remove("BERTH_LISTEN")
            .env_remove("BERTH_DATA_DIR")
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .expect("spawn berth");
        let stdout = child.stdout.take().expect("stdout");
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line).expect("read berth's first line");
        let addr = line
            .trim()
            .strip_prefix("listening on ")
            .unwrap_or_else(|| {
                panic!("berth did not start: {line:?}; see {}", data_dir.with_extension("log").display())
            })
            .parse()
            .expect("address");
        Berth { child: Some(child), addr, data_dir: data_dir.to_path_buf(), _tmp: None }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// `host:port`, as image references name the registry.
    pub fn host(&self) -> String {
        self.addr.to_string()
    }

    /// Ends the server like a power cut: SIGKILL, no cleanup.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM and wait: a graceful shutdown.
    pub fn stop(&mut self) -> std::process::ExitStatus {
        let mut c = self.child.take().expect("running");
        let _ = Command::new("kill").arg("-TERM").arg(c.id().to_string()).status();
        c.wait().expect("wait")
    }

    /// Runs another `berth` command (e.g. `fsck`) on this server's data directory.
    pub fn run(&self, args: &[&str]) -> Output {
        Command::new(berth_bin()).args(args).arg("--data-dir").arg(&self.data_dir).output().expect("run berth")
    }
}

impl Drop for Berth {
    fn drop(&mut self) {
        self.kill9();
    }
}

pub fn sha256(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

/// Deterministic pseudo-random bytes (xorshift), so content differs per seed without a rand dependency.
pub fn pseudo_random(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    out
}

/// Pushes a blob with a monolithic POST; returns its digest.
pub async fn push_blob(client: &reqwest::Client, b: &Berth, repo: &str, bytes: &[u8]) -> String {
    let digest = sha256(bytes);
    let r = client
        .post(b.url(&format!("/v2/{repo}/blobs/uploads/?digest={digest}")))
        .body(bytes.to_vec())
        .send()
        .await
        .expect("blob upload");
    assert_eq!(r.status(), 201, "{:?}", r.text().await);
    digest
}

pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";

/// An OCI image manifest over the given config and layers (digest, size).
pub fn image_manifest(config: (&str, usize), layers: &[(&str, usize)]) -> Vec<u8> {
    let layers: Vec<_> = layers
        .iter()
        .map(
            |(d, s)| serde_json::json!({"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": d, "size": s}),
        )
        .collect();
    serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config.0, "size": config.1},
        "layers": layers,
    }))
    .unwrap()
}

/// Pushes a small image (config + one layer, content chosen by `seed`) and tags it; returns the manifest digest.
pub async fn push_image(client: &reqwest::Client, b: &Berth, repo: &str, tag: &str, seed: u64) -> (String, Vec<u8>) {
    let config = format!(r#"{{"architecture":"amd64","os":"linux","seed":{seed}}}"#).into_bytes();
    let layer = pseudo_random(seed, 1024);
    let c = push_blob(client, b, repo, &config).await;
    let l = push_blob(client, b, repo, &layer).await;
    let manifest = image_manifest((&c, config.len()), &[(&l, layer.len())]);
    let r = client
        .put(b.url(&format!("/v2/{repo}/manifests/{tag}")))
        .header("content-type", OCI_MANIFEST)
        .body(manifest.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201, "{:?}", r.text().await);
    (sha256(&manifest), manifest)
}

/// Waits until `f` is true or the timeout passes.
pub fn wait_until(timeout: Duration, mut f: impl FnMut() -> bool) -> bool {
    let end = std::time::Instant::now() + timeout;
    while std::time::Instant::now() < end {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    false
}
