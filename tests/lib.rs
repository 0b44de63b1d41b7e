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

/// The account and root key every test server runs with.
pub const ACCOUNT_ID: &str = "123456789012";
pub const ROOT_KEY_ID: &str = "AKIABERTHTESTROOT001";
pub const ROOT_SECRET: &str = "berth-test-root-secret-0123456789abcdefgh";
pub const REGION: &str = "us-east-1";

/// A prefix of its own in the bucket `BERTH_TEST_S3` names (scripts/test starts an S3 server),
/// as a `--blobs` URL with `extra` parameters appended (`&presigned_reads=true`).
pub fn test_bucket(extra: &str) -> String {
    let url = std::env::var("BERTH_TEST_S3").expect("BERTH_TEST_S3 must name an S3 bucket (scripts/test starts one)");
    let (base, query) = url.split_once('?').expect("BERTH_TEST_S3 has parameters");
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64;
    let unique = pseudo_random(nanos ^ u64::from(std::process::id()), 4);
    // Short: s3s-fs names a sidecar file after the whole key (base64), and a sha512 blob's key
    // is long already.
    format!("{base}/e{}?{query}{extra}", hex::encode(unique))
}

/// Whether this is the cluster run (`BERTH_TEST_TOPOLOGY=cluster`, scripts/test's second pass):
/// every server a test starts without choosing its own stores is then three nodes on one
/// PostgreSQL database (`BERTH_TEST_POSTGRES`) and one bucket prefix (`BERTH_TEST_S3`) behind
/// nginx round-robin, and the test talks to nginx.
pub fn cluster_run() -> bool {
    std::env::var("BERTH_TEST_TOPOLOGY").is_ok_and(|t| t == "cluster")
}

/// For a test that is single-node by nature (it reads a node's data directory, restarts or
/// kills the server, or tests one node's connection handling): true in the cluster run, where
/// the test returns at once; the reason is printed.
pub fn single_node(reason: &str) -> bool {
    if cluster_run() {
        eprintln!("skipped in the cluster run: single-node by nature: {reason}");
    }
    cluster_run()
}

/// What the cluster behind a `Berth` holds besides its first node.
struct Cluster {
    /// Nodes 2 and 3.
    others: Vec<Child>,
    nginx: Child,
    /// The PostgreSQL server's maintenance URL and the database the nodes share.
    admin_url: String,
    database: String,
    /// What every `berth` command on the cluster's stores needs.
    env: Vec<(String, String)>,
}

fn psql(url: &str, sql: &str) {
    let out =
        Command::new("psql").arg(url).args(["-q", "-c", sql]).output().expect("psql (apt-get install postgresql)");
    assert!(out.status.success(), "psql {sql}: {}", String::from_utf8_lossy(&out.stderr));
}

/// nginx (tests/fixtures/nginx.conf) in front of `upstreams`, its files in `dir`; its child
/// and address, once it accepts connections.
pub fn start_nginx(dir: &Path, upstreams: &[SocketAddr]) -> (Child, SocketAddr) {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let template = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/nginx.conf")).unwrap();
    let servers: String = upstreams.iter().map(|a| format!("server {a}; ")).collect();
    let conf = template
        .replace("@DIR@", &dir.display().to_string())
        .replace("@SERVERS@", &servers)
        .replace("@PORT@", &port.to_string());
    let path = dir.join("nginx.conf");
    std::fs::write(&path, conf).unwrap();
    let nginx = if Path::new("/usr/sbin/nginx").exists() { "/usr/sbin/nginx" } else { "nginx" };
    let child = Command::new(nginx)
        .arg("-c")
        .arg(&path)
        .arg("-p")
        .arg(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("nginx must be installed (apt-get install nginx)");
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let up = wait_until(Duration::from_secs(10), || std::net::TcpStream::connect(addr).is_ok());
    assert!(up, "nginx did not start: {}", std::fs::read_to_string(dir.join("nginx-error.log")).unwrap_or_default());
    (child, addr)
}

fn now_seconds() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64
}

/// A running `berth serve`, killed when dropped.
pub struct Berth {
    child: Option<Child>,
    pub addr: SocketAddr,
    /// Where `/metrics` is served, when started with `--metrics-listen`.
    pub metrics_addr: Option<SocketAddr>,
    /// The region the server signs for (`BERTH_REGION`).
    pub region: String,
    pub data_dir: PathBuf,
    /// In the cluster run: the other nodes, nginx and the shared stores.
    cluster: Option<Cluster>,
    /// Keeps the temporary directory alive for the life of the server.
    _tmp: Option<tempfile::TempDir>,
}

impl Berth {
    /// Starts Berth on a fresh data directory, with a `ROOT` repository creation template
    /// applied for `CREATE_ON_PUSH`, so pushes create their repositories.
    pub fn start() -> Self {
        let b = Self::start_with(&[]);
        b.create_on_push();
        b
    }

    /// Starts Berth on a fresh data directory with no creation template: pushing to a missing
    /// repository fails, as in ECR.
    pub fn start_bare() -> Self {
        Self::start_with(&[])
    }

    /// Adds the `ROOT` `CREATE_ON_PUSH` creation template.
    pub fn create_on_push(&self) {
        let (status, v) = self.ecr(
            "CreateRepositoryCreationTemplate",
            serde_json::json!({"prefix": "ROOT", "appliedFor": ["CREATE_ON_PUSH"]}),
        );
        assert_eq!(status, 200, "{v}");
    }

    /// Calls the ECR API with the root key (signed with SigV4), returning status and body.
    pub fn ecr(&self, op: &str, body: serde_json::Value) -> (u16, serde_json::Value) {
        self.ecr_as(ROOT_KEY_ID, ROOT_SECRET, op, body)
    }

    pub fn ecr_as(&self, key: &str, secret: &str, op: &str, body: serde_json::Value) -> (u16, serde_json::Value) {
        let body = serde_json::to_vec(&body).unwrap();
        let headers = vec![
            ("host".to_string(), self.host()),
            ("content-type".to_string(), "application/x-amz-json-1.1".to_string()),
            ("x-amz-target".to_string(), format!("AmazonEC2ContainerRegistry_V20150921.{op}")),
        ];
        let (date, auth) =
            berth_auth::sigv4::sign("POST", "/", "", &headers, &body, key, secret, &self.region, "ecr", now_seconds());
        let mut req = ureq_like_post(&self.url("/"), &headers, &body, &date, &auth);
        let status = req.0;
        let value = serde_json::from_slice(&std::mem::take(&mut req.1)).unwrap_or(serde_json::Value::Null);
        (status, value)
    }

    /// A registry token for the root key, from `GetAuthorizationToken`.
    pub fn token(&self) -> String {
        let (status, v) = self.ecr("GetAuthorizationToken", serde_json::json!({}));
        assert_eq!(status, 200, "{v}");
        let encoded = v["authorizationData"][0]["authorizationToken"].as_str().unwrap();
        use base64::Engine;
        let decoded = base64::engine::general_purpose::STANDARD.decode(encoded).unwrap();
        String::from_utf8(decoded).unwrap().strip_prefix("AWS:").unwrap().to_string()
    }

    /// An HTTP client that sends the root's registry token on every request.
    pub fn client(&self) -> reqwest::Client {
        use base64::Engine;
        let basic = base64::engine::general_purpose::STANDARD.encode(format!("AWS:{}", self.token()));
        let mut headers = reqwest::header::HeaderMap::new();
        headers.insert(reqwest::header::AUTHORIZATION, format!("Basic {basic}").parse().unwrap());
        reqwest::Client::builder().default_headers(headers).build().unwrap()
    }

    /// Starts Berth on a fresh data directory with extra `serve` flags.
    pub fn start_with(args: &[&str]) -> Self {
        let tmp = tempfile::tempdir().expect("temp dir");
        let mut b = Self::start_in_with(&tmp.path().join("data"), args);
        b._tmp = Some(tmp);
        b
    }

    /// Starts Berth on `data_dir` (kept as it is: a restart sees what the last run left).
    pub fn start_in(data_dir: &Path) -> Self {
        Self::start_in_with(data_dir, &[])
    }

    /// Starts Berth on a fresh data directory with extra environment, and the ROOT template.
    pub fn start_env(env: &[(&str, &str)]) -> Self {
        let tmp = tempfile::tempdir().expect("temp dir");
        let mut b = Self::spawn(&tmp.path().join("data"), &[], env);
        b._tmp = Some(tmp);
        b.create_on_push();
        b
    }

    pub fn start_in_with(data_dir: &Path, args: &[&str]) -> Self {
        Self::spawn(data_dir, args, &[])
    }

    /// Starts Berth on a fresh data directory under a wrapper command (e.g. `prlimit
    /// --nofile=256:4096`, which execs it), with extra environment.
    pub fn start_under(wrapper: &[&str], env: &[(&str, &str)]) -> Self {
        let tmp = tempfile::tempdir().expect("temp dir");
        let mut b = Self::spawn_under(wrapper, &tmp.path().join("data"), &[], env);
        b._tmp = Some(tmp);
        b
    }

    /// The server's process id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    fn spawn(data_dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Self {
        Self::spawn_under(&[], data_dir, args, env)
    }

    fn spawn_under(wrapper: &[&str], data_dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Self {
        let own_stores = env.iter().any(|(k, _)| *k == "BERTH_META" || *k == "BERTH_BLOBS");
        if cluster_run() && wrapper.is_empty() && !own_stores {
            return Self::spawn_cluster(data_dir, args, env);
        }
        let (child, addr, metrics_addr) = Self::spawn_node(wrapper, data_dir, args, env);
        let region = env.iter().find(|(k, _)| *k == "BERTH_REGION").map_or(REGION, |(_, v)| *v).to_string();
        Berth {
            child: Some(child),
            addr,
            metrics_addr,
            region,
            data_dir: data_dir.to_path_buf(),
            cluster: None,
            _tmp: None,
        }
    }

    /// Three nodes on a fresh database and bucket prefix, nginx in front; node 1 keeps
    /// `data_dir` (and the shared keyring in it), the others directories beside it.
    fn spawn_cluster(data_dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Self {
        use base64::Engine;
        assert!(!data_dir.join("meta.db").exists(), "the cluster run starts on fresh stores only");
        let admin_url = std::env::var("BERTH_TEST_POSTGRES")
            .expect("the cluster run needs BERTH_TEST_POSTGRES and BERTH_TEST_S3 (scripts/test starts both)");
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
        let database = format!("berth_e2e_{}_{nanos:x}", std::process::id());
        psql(&admin_url, &format!("CREATE DATABASE {database}"));
        std::fs::create_dir_all(data_dir).expect("data dir");
        let keyring = data_dir.join("master.key");
        let key = base64::engine::general_purpose::STANDARD.encode(pseudo_random(nanos as u64, 32));
        std::fs::write(&keyring, format!("1:{key}\n")).unwrap();
        let shared: Vec<(String, String)> = vec![
            ("BERTH_META".into(), format!("{}/{database}", admin_url.rsplit_once('/').expect("a database URL").0)),
            ("BERTH_BLOBS".into(), test_bucket("")),
            ("BERTH_MASTER_KEY_FILE".into(), keyring.display().to_string()),
            ("BERTH_TRUSTED_PROXIES".into(), "127.0.0.1".into()),
        ];
        let mut all: Vec<(&str, &str)> = shared.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        all.extend_from_slice(env);
        let (first, first_addr, metrics_addr) = Self::spawn_node(&[], data_dir, args, &all);
        let (mut others, mut addrs) = (Vec::new(), vec![first_addr]);
        for i in 2..=3 {
            let dir = data_dir.with_file_name(format!("node{i}"));
            let (child, addr, _) = Self::spawn_node(&[], &dir, args, &all);
            others.push(child);
            addrs.push(addr);
        }
        let (nginx, addr) = start_nginx(data_dir.parent().expect("a data directory in a directory"), &addrs);
        let region = env.iter().find(|(k, _)| *k == "BERTH_REGION").map_or(REGION, |(_, v)| *v).to_string();
        Berth {
            child: Some(first),
            addr,
            metrics_addr,
            region,
            data_dir: data_dir.to_path_buf(),
            cluster: Some(Cluster { others, nginx, admin_url, database, env: shared }),
            _tmp: None,
        }
    }

    /// One `berth serve`: its child, address and metrics address.
    fn spawn_node(
        wrapper: &[&str],
        data_dir: &Path,
        args: &[&str],
        env: &[(&str, &str)],
    ) -> (Child, SocketAddr, Option<SocketAddr>) {
        std::fs::create_dir_all(data_dir).expect("data dir");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(data_dir.with_extension("log"))
            .expect("log file");
        let mut command = match wrapper.split_first() {
            Some((program, rest)) => {
                let mut c = Command::new(program);
                c.args(rest).arg(berth_bin());
                c
            }
            None => Command::new(berth_bin()),
        };
        let mut child = command
            .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(data_dir)
            .args(args)
            .env("BERTH_ACCOUNT_ID", ACCOUNT_ID)
            .env("BERTH_ROOT_ACCESS_KEY_ID", ROOT_KEY_ID)
            .env("BERTH_ROOT_SECRET_ACCESS_KEY", ROOT_SECRET)
            .env("BERTH_REGION", REGION)
            .envs(env.iter().copied())
            .env_remove("BERTH_LISTEN")
            .env_remove("BERTH_DATA_DIR")
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .expect("spawn berth");
        let stdout = child.stdout.take().expect("stdout");
        let mut stdout = BufReader::new(stdout);
        let mut line = String::new();
        stdout.read_line(&mut line).expect("read berth's first line");
        let addr = line
            .trim()
            .strip_prefix("listening on ")
            .unwrap_or_else(|| {
                panic!("berth did not start: {line:?}; see {}", data_dir.with_extension("log").display())
            })
            .parse()
            .expect("address");
        let metrics = args.contains(&"--metrics-listen") || env.iter().any(|(k, _)| *k == "BERTH_METRICS_LISTEN");
        let metrics_addr = metrics.then(|| {
            let mut line = String::new();
            stdout.read_line(&mut line).expect("read berth's metrics line");
            line.trim().strip_prefix("metrics on ").expect("metrics address").parse().expect("address")
        });
        (child, addr, metrics_addr)
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// `host:port`, as image references name the registry.
    pub fn host(&self) -> String {
        self.addr.to_string()
    }

    /// Ends the server like a power cut: SIGKILL, no cleanup (every node of a cluster).
    pub fn kill9(&mut self) {
        let others = self.cluster.as_mut().map(|c| c.others.drain(..).collect::<Vec<_>>()).unwrap_or_default();
        for mut c in self.child.take().into_iter().chain(others) {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM and wait: a graceful shutdown (of every node; the first node's status).
    pub fn stop(&mut self) -> std::process::ExitStatus {
        let mut c = self.child.take().expect("running");
        let mut others = self.cluster.as_mut().map(|c| c.others.drain(..).collect::<Vec<_>>()).unwrap_or_default();
        for child in std::iter::once(&c).chain(others.iter()) {
            let _ = Command::new("kill").arg("-TERM").arg(child.id().to_string()).status();
        }
        for child in &mut others {
            let _ = child.wait();
        }
        c.wait().expect("wait")
    }

    /// Runs another `berth` command (e.g. `fsck`) on this server's data directory (and, in the
    /// cluster run, on the cluster's stores).
    pub fn run(&self, args: &[&str]) -> Output {
        let env = self.cluster.as_ref().map(|c| c.env.clone()).unwrap_or_default();
        Command::new(berth_bin())
            .args(args)
            .arg("--data-dir")
            .arg(&self.data_dir)
            .envs(env)
            .output()
            .expect("run berth")
    }
}

impl Drop for Berth {
    fn drop(&mut self) {
        self.kill9();
        if let Some(mut cluster) = self.cluster.take() {
            // SIGQUIT: the master stops its workers too (a SIGKILL would leave them running).
            let _ = Command::new("kill").arg("-QUIT").arg(cluster.nginx.id().to_string()).status();
            let _ = cluster.nginx.wait();
            // Not asserted: a drop during a failing test's unwinding must not abort the run.
            let _ = Command::new("psql")
                .arg(&cluster.admin_url)
                .args(["-q", "-c", &format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", cluster.database)])
                .output();
        }
    }
}

/// A blocking POST over a plain TCP connection (HTTP/1.0), so the harness
/// can call the ECR API from sync code without a runtime.
fn ureq_like_post(url: &str, headers: &[(String, String)], body: &[u8], date: &str, auth: &str) -> (u16, Vec<u8>) {
    use std::io::{Read, Write};
    let rest = url.strip_prefix("http://").expect("http URL");
    let (host, path) = rest.split_once('/').map(|(h, p)| (h, format!("/{p}"))).unwrap_or((rest, "/".into()));
    let mut s = std::net::TcpStream::connect(host).expect("connect");
    // HTTP/1.0, so the answer is never chunked.
    let mut req = format!("POST {path} HTTP/1.0\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str(&format!(
        "x-amz-date: {date}\r\nauthorization: {auth}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
        body.len()
    ));
    s.write_all(req.as_bytes()).unwrap();
    s.write_all(body).unwrap();
    let mut resp = Vec::new();
    s.read_to_end(&mut resp).unwrap();
    let split = resp.windows(4).position(|w| w == b"\r\n\r\n").expect("HTTP response");
    let head = String::from_utf8_lossy(&resp[..split]).to_string();
    let status = head.split_whitespace().nth(1).and_then(|c| c.parse().ok()).expect("status");
    (status, resp[split + 4..].to_vec())
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
    put_manifest(client, b, repo, tag, &manifest).await;
    (sha256(&manifest), manifest)
}

/// PUTs an OCI image manifest under `tag` and checks it was accepted (201).
pub async fn put_manifest(client: &reqwest::Client, b: &Berth, repo: &str, tag: &str, manifest: &[u8]) {
    let r = client
        .put(b.url(&format!("/v2/{repo}/manifests/{tag}")))
        .header("content-type", OCI_MANIFEST)
        .body(manifest.to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201, "{:?}", r.text().await);
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

/// A container engine daemon (dockerd or containerd) started for one test in its own
/// directories, stopped when dropped.
pub struct Daemon {
    child: Child,
    pub socket: PathBuf,
    pub dir: tempfile::TempDir,
}

impl Daemon {
    /// dockerd without iptables or a bridge: enough to push and pull, nothing is run.
    pub fn dockerd() -> Self {
        let dir = tempfile::Builder::new().prefix("dk").tempdir_in("/tmp").expect("temp dir");
        let socket = dir.path().join("docker.sock");
        let log = std::fs::File::create(dir.path().join("log")).expect("log");
        let child = Command::new("dockerd")
            .args(["--iptables=false", "--ip6tables=false", "--bridge=none"])
            .arg("--data-root")
            .arg(dir.path().join("root"))
            .arg("--exec-root")
            .arg(dir.path().join("exec"))
            .arg("--pidfile")
            .arg(dir.path().join("pid"))
            .arg("-H")
            .arg(format!("unix://{}", socket.display()))
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("dockerd must be installed (apt-get install docker.io)");
        let d = Daemon { child, socket, dir };
        let ready = wait_until(Duration::from_secs(60), || d.docker(&["info"]).status.success());
        assert!(
            ready,
            "dockerd did not start: {}",
            std::fs::read_to_string(d.dir.path().join("log")).unwrap_or_default()
        );
        d
    }

    /// The docker CLI against this daemon, with a client configuration of its own (so logins
    /// stay inside the test).
    pub fn docker(&self, args: &[&str]) -> Output {
        self.docker_env(args, &[])
    }

    /// The docker CLI with extra environment (e.g. AWS credentials for a credential helper) and
    /// the directory of the binaries under test on its PATH.
    pub fn docker_env(&self, args: &[&str], env: &[(&str, &str)]) -> Output {
        let bin_dir = berth_bin().parent().expect("bin dir").to_path_buf();
        let path = format!("{}:{}", bin_dir.display(), std::env::var("PATH").unwrap_or_default());
        Command::new("docker")
            .env("PATH", path)
            .envs(env.iter().copied())
            .arg("--config")
            .arg(self.dir.path().join("client"))
            .arg("-H")
            .arg(format!("unix://{}", self.socket.display()))
            .args(args)
            .output()
            .expect("docker CLI")
    }

    pub fn containerd() -> Self {
        let dir = tempfile::Builder::new().prefix("ctrd").tempdir_in("/tmp").expect("temp dir");
        let socket = dir.path().join("ctrd.sock");
        let config = dir.path().join("config.toml");
        // No CRI plugin: only content, images and snapshots are needed.
        std::fs::write(&config, "version = 2\ndisabled_plugins = [\"io.containerd.grpc.v1.cri\"]\n").unwrap();
        let log = std::fs::File::create(dir.path().join("log")).expect("log");
        let child = Command::new("containerd")
            .arg("--config")
            .arg(&config)
            .arg("--root")
            .arg(dir.path().join("root"))
            .arg("--state")
            .arg(dir.path().join("state"))
            .arg("--address")
            .arg(&socket)
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("containerd must be installed (apt-get install containerd)");
        let d = Daemon { child, socket, dir };
        let ready = wait_until(Duration::from_secs(30), || d.ctr(&["version"]).status.success());
        assert!(
            ready,
            "containerd did not start: {}",
            std::fs::read_to_string(d.dir.path().join("log")).unwrap_or_default()
        );
        d
    }

    pub fn ctr(&self, args: &[&str]) -> Output {
        Command::new("ctr").arg("--address").arg(&self.socket).args(args).output().expect("ctr CLI")
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = Command::new("kill").arg("-TERM").arg(self.child.id().to_string()).status();
        let stopped = wait_until(Duration::from_secs(15), || matches!(self.child.try_wait(), Ok(Some(_))));
        if !stopped {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Asserts a command succeeded and returns its stdout.
pub fn ok(out: Output, what: &str) -> String {
    assert!(
        out.status.success(),
        "{what} failed ({}):\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A tar archive (a layer) holding the given files, built by the system `tar` deterministically.
pub fn tar_layer(files: &[(&str, &[u8])]) -> Vec<u8> {
    let dir = tempfile::tempdir().unwrap();
    for (path, content) in files {
        let p = dir.path().join(path);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, content).unwrap();
    }
    let out = Command::new("tar")
        .args(["--sort=name", "--owner=0", "--group=0", "--numeric-owner", "--mtime=@0", "-C"])
        .arg(dir.path())
        .args(["-cf", "-", "."])
        .output()
        .expect("tar");
    assert!(out.status.success());
    out.stdout
}

/// Writes an OCI image layout directory, blob by blob.
pub struct OciLayout {
    pub dir: PathBuf,
}

impl OciLayout {
    pub fn create(dir: &Path) -> Self {
        std::fs::create_dir_all(dir.join("blobs/sha256")).unwrap();
        std::fs::write(dir.join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
        OciLayout { dir: dir.to_path_buf() }
    }

    /// Stores a blob; returns its descriptor fields (digest, size).
    pub fn blob(&self, bytes: &[u8]) -> (String, usize) {
        let d = sha256(bytes);
        std::fs::write(self.dir.join("blobs/sha256").join(&d[7..]), bytes).unwrap();
        (d, bytes.len())
    }

    /// Stores a two-layer image for a platform; returns the manifest's (digest, size).
    pub fn image(&self, arch: &str, seed: u64) -> (String, usize) {
        let l1 = tar_layer(&[("etc/os-release", format!("ID=berth-test\nARCH={arch}\n").as_bytes())]);
        let l2 = tar_layer(&[("app/data.bin", &pseudo_random(seed, 200_000))]);
        let diff_ids = [sha256(&l1), sha256(&l2)];
        let config = serde_json::to_vec(&serde_json::json!({
            "architecture": arch, "os": "linux",
            "config": {"Cmd": ["/app/run"]},
            "rootfs": {"type": "layers", "diff_ids": diff_ids},
        }))
        .unwrap();
        let (cd, cs) = self.blob(&config);
        let layers: Vec<_> = [l1, l2]
            .iter()
            .map(|l| {
                let (d, s) = self.blob(l);
                serde_json::json!({"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": d, "size": s})
            })
            .collect();
        let manifest = serde_json::to_vec(&serde_json::json!({
            "schemaVersion": 2, "mediaType": OCI_MANIFEST,
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cd, "size": cs},
            "layers": layers,
        }))
        .unwrap();
        self.blob(&manifest)
    }

    /// Writes index.json naming one multi-platform index under `tag`; returns the index's digest.
    pub fn index(&self, tag: &str, platforms: &[(&str, (String, usize))]) -> String {
        let manifests: Vec<_> = platforms
            .iter()
            .map(|(arch, (d, s))| {
                serde_json::json!({"mediaType": OCI_MANIFEST, "digest": d, "size": s, "platform": {"architecture": arch, "os": "linux"}})
            })
            .collect();
        let index = serde_json::to_vec(
            &serde_json::json!({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": manifests}),
        )
        .unwrap();
        let (d, s) = self.blob(&index);
        let top = serde_json::json!({"schemaVersion": 2, "manifests": [{
            "mediaType": OCI_INDEX, "digest": d, "size": s,
            "annotations": {"org.opencontainers.image.ref.name": tag}
        }]});
        std::fs::write(self.dir.join("index.json"), serde_json::to_vec(&top).unwrap()).unwrap();
        d
    }
}
