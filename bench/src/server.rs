//! Starting the registries under test and reading their CPU time and memory from /proc.

use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Berth,
    Reference,
    /// Another Berth build in the reference's place (`--baseline`): an A/B of two builds.
    Baseline,
}

impl Kind {
    pub fn label(self) -> &'static str {
        match self {
            Kind::Berth => "Berth",
            Kind::Reference => "distribution 2.8",
            Kind::Baseline => "Berth (baseline)",
        }
    }

    /// Whether this is a Berth (the build under test or the baseline).
    pub fn is_berth(self) -> bool {
        self != Kind::Reference
    }
}

pub struct Server {
    child: Child,
    pub base: String,
    pub host: String,
    /// `Authorization` value for `/v2/` (Berth's registry token), if the server needs one.
    pub auth: Option<String>,
    /// A Berth's data directory (for `berth admin` beside it).
    pub data_dir: std::path::PathBuf,
    /// The region its API calls are signed for (`BERTH_REGION` among the options' environment).
    pub region: String,
    _dir: tempfile::TempDir,
}

/// How to start a Berth beyond the defaults.
#[derive(Default)]
pub struct BerthOptions<'a> {
    /// Extra `berth serve` arguments.
    pub args: &'a [&'a str],
    /// Extra environment (e.g. `BERTH_GC_INTERVAL_SECONDS`).
    pub env: &'a [(&'a str, &'a str)],
    /// Serve this data directory (kept afterwards) instead of a fresh one.
    pub data_dir: Option<&'a Path>,
}

pub const ROOT_KEY_ID: &str = "AKIABERTHBENCHROOT01";
pub const ROOT_SECRET: &str = "berth-bench-root-secret-0123456789abcdef";

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

impl Server {
    pub fn start(kind: Kind, berth: &Path, reference: &Path) -> anyhow::Result<Self> {
        Self::start_with(kind, berth, reference, &[])
    }

    pub fn start_with(kind: Kind, berth: &Path, reference: &Path, extra: &[&str]) -> anyhow::Result<Self> {
        Self::start_opts(kind, berth, reference, BerthOptions { args: extra, ..Default::default() })
    }

    pub fn start_opts(kind: Kind, berth: &Path, reference: &Path, opts: BerthOptions<'_>) -> anyhow::Result<Self> {
        let extra = opts.args;
        let dir = tempfile::tempdir()?;
        let data_dir = opts.data_dir.map_or_else(|| dir.path().join("data"), Path::to_path_buf);
        let port = free_port();
        let host = format!("127.0.0.1:{port}");
        let log = std::fs::File::create(dir.path().join("server.log"))?;
        let child = match kind {
            // The baseline is the binary given in the reference's place.
            Kind::Berth | Kind::Baseline => Command::new(if kind == Kind::Baseline { reference } else { berth })
                .args(["serve", "--listen", &host, "--data-dir"])
                .arg(&data_dir)
                .args(extra)
                .envs(opts.env.iter().copied())
                .env("BERTH_ROOT_ACCESS_KEY_ID", ROOT_KEY_ID)
                .env("BERTH_ROOT_SECRET_ACCESS_KEY", ROOT_SECRET)
                .stdout(Stdio::null())
                .stderr(log)
                .spawn()?,
            Kind::Reference => {
                // The packaged default: filesystem storage, in-memory blob descriptor cache,
                // deletes enabled.
                let config = dir.path().join("config.yml");
                std::fs::write(
                    &config,
                    format!(
                        "version: 0.1\nlog:\n  level: info\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\n  cache:\n    blobdescriptor: inmemory\nhttp:\n  addr: {host}\n",
                        dir.path().join("data").display()
                    ),
                )?;
                Command::new(reference).arg("serve").arg(&config).stdout(Stdio::null()).stderr(log).spawn()?
            }
        };
        let region = opts.env.iter().find(|(k, _)| *k == "BERTH_REGION").map_or("us-east-1", |(_, v)| v).to_string();
        let mut server =
            Server { child, base: format!("http://{host}"), host, auth: None, data_dir, region, _dir: dir };
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(&server.host).is_err() {
            anyhow::ensure!(Instant::now() < deadline, "{} did not start", kind.label());
            std::thread::sleep(Duration::from_millis(50));
        }
        if kind.is_berth() && !extra.contains(&"--insecure-no-auth") {
            // Pushes create their repositories, as they do on the reference registry.
            if opts.data_dir.is_none() {
                server
                    .ecr("CreateRepositoryCreationTemplate", r#"{"prefix":"ROOT","appliedFor":["CREATE_ON_PUSH"]}"#)?;
            }
            let v: serde_json::Value = serde_json::from_str(&server.ecr("GetAuthorizationToken", "{}")?)?;
            let token = v["authorizationData"][0]["authorizationToken"].as_str().unwrap_or_default().to_string();
            server.auth = Some(format!("Basic {token}"));
        } else if kind.is_berth() {
            server.ecr("CreateRepositoryCreationTemplate", r#"{"prefix":"ROOT","appliedFor":["CREATE_ON_PUSH"]}"#).ok();
        }
        Ok(server)
    }

    /// One signed ECR API call with the root key; returns the response body.
    pub fn ecr(&self, op: &str, body: &str) -> anyhow::Result<String> {
        self.ecr_as(ROOT_KEY_ID, ROOT_SECRET, op, body)
    }

    /// One ECR API call signed with the given key.
    pub fn ecr_as(&self, key_id: &str, secret: &str, op: &str, body: &str) -> anyhow::Result<String> {
        signed_call(&self.host, &self.region, key_id, secret, &format!("{ECR_TARGET}{op}"), body)
    }

    /// One call of Berth's extension target, signed with the root key.
    pub fn berth_op(&self, op: &str, body: &str) -> anyhow::Result<String> {
        signed_call(&self.host, &self.region, ROOT_KEY_ID, ROOT_SECRET, &format!("Berth_20261201.{op}"), body)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// User + system CPU seconds the server has used so far.
    pub fn cpu_seconds(&self) -> f64 {
        cpu_seconds(self.pid())
    }

    /// Peak resident set size in MiB.
    pub fn peak_rss_mib(&self) -> f64 {
        self.status_mib("VmHWM:")
    }

    /// Resident set size now, in MiB.
    pub fn rss_mib(&self) -> f64 {
        self.status_mib("VmRSS:")
    }

    /// A kB field of `/proc/<pid>/status`, in MiB.
    fn status_mib(&self, field: &str) -> f64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap_or_default();
        status
            .lines()
            .find_map(|l| l.strip_prefix(field))
            .and_then(|v| v.split_whitespace().next().and_then(|k| k.parse::<f64>().ok()))
            .map_or(0.0, |kib| kib / 1024.0)
    }

    /// An HTTP client that sends the server's `/v2/` credentials, if it needs any.
    pub fn client(&self) -> anyhow::Result<reqwest::Client> {
        let mut headers = reqwest::header::HeaderMap::new();
        if let Some(a) = &self.auth {
            headers.insert(reqwest::header::AUTHORIZATION, a.parse()?);
        }
        Ok(reqwest::Client::builder().default_headers(headers).pool_max_idle_per_host(64).build()?)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = Command::new("kill").arg("-TERM").arg(self.child.id().to_string()).status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

const ECR_TARGET: &str = "AmazonEC2ContainerRegistry_V20150921.";

/// One signed ECR API call to the Berth at `host` (in us-east-1); returns the response body.
pub fn ecr_call(host: &str, key_id: &str, secret: &str, op: &str, body: &str) -> anyhow::Result<String> {
    signed_call(host, "us-east-1", key_id, secret, &format!("{ECR_TARGET}{op}"), body)
}

/// One JSON 1.1 call of `target` (`<prefix>.<Operation>`), SigV4-signed for `ecr` in `region`.
fn signed_call(
    host: &str,
    region: &str,
    key_id: &str,
    secret: &str,
    target: &str,
    body: &str,
) -> anyhow::Result<String> {
    use std::io::{Read, Write};
    let op = target;
    let headers = vec![
        ("host".to_string(), host.to_string()),
        ("content-type".to_string(), "application/x-amz-json-1.1".to_string()),
        ("x-amz-target".to_string(), target.to_string()),
    ];
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_secs() as i64;
    let (date, auth) =
        berth_auth::sigv4::sign("POST", "/", "", &headers, body.as_bytes(), key_id, secret, region, "ecr", now);
    let mut s = std::net::TcpStream::connect(host)?;
    let mut req = String::from("POST / HTTP/1.0\r\n");
    for (k, v) in &headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str(&format!(
        "x-amz-date: {date}\r\nauthorization: {auth}\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    ));
    s.write_all(req.as_bytes())?;
    let mut resp = String::new();
    s.read_to_string(&mut resp)?;
    let (head, body) = resp.split_once("\r\n\r\n").ok_or_else(|| anyhow::anyhow!("bad response"))?;
    anyhow::ensure!(head.starts_with("HTTP/1.0 200") || head.starts_with("HTTP/1.1 200"), "{op}: {head}\n{body}");
    Ok(body.to_string())
}

pub fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name (which may contain spaces) start at ") ".
    let rest = stat.rsplit_once(") ").map_or("", |(_, r)| r);
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| fields.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    // utime and stime are fields 14 and 15 of stat, i.e. 11 and 12 after the state field.
    (ticks(11) + ticks(12)) / clock_ticks()
}

fn clock_ticks() -> f64 {
    let out = Command::new("getconf").arg("CLK_TCK").output();
    out.ok().and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok()).unwrap_or(100.0)
}
