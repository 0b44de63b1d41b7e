//! Configuration: embedded defaults, then a TOML file (`--config`), then `BERTH_*` environment
//! variables, then command-line flags, each overriding the one before.

use std::net::SocketAddr;
use std::path::PathBuf;

use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Config {
    /// Address to listen on.
    pub listen: SocketAddr,
    /// Where blobs, upload sessions and the metadata database live.
    pub data_dir: PathBuf,
    /// Where metadata lives: unset, the embedded SQLite store `<data_dir>/meta.db`; or a
    /// PostgreSQL URL, `postgres://user[:password]@host[:port]/database[?sslmode=require]`.
    #[serde(default, deserialize_with = "text")]
    pub meta: Option<String>,
    /// Where blobs live: unset, files under `<data_dir>/blobs`; or an S3 bucket,
    /// `s3://bucket[/prefix]?endpoint=http://host:port&region=…` (path-style requests).
    #[serde(default, deserialize_with = "text")]
    pub blobs: Option<String>,
    /// The S3 credentials for `blobs` (or in its URL). Never read from `AWS_*`, which name
    /// the caller's Berth credentials.
    #[serde(default, deserialize_with = "text")]
    pub s3_access_key_id: Option<String>,
    #[serde(default, deserialize_with = "text")]
    pub s3_secret_access_key: Option<String>,
    /// Connections to a PostgreSQL metadata store at most, per node.
    pub meta_max_connections: u32,
    /// A statement on a PostgreSQL metadata store is cancelled after this long.
    pub meta_statement_timeout_seconds: u64,
    /// Log format: `text` or `json`.
    pub log_format: String,
    /// PEM certificate chain; with `tls_key`, Berth serves HTTPS.
    pub tls_cert: Option<PathBuf>,
    /// PEM private key for `tls_cert`.
    pub tls_key: Option<PathBuf>,
    /// The default account's 12-digit id (its registry id); chosen at first start if unset.
    #[serde(default, deserialize_with = "text")]
    pub account_id: Option<String>,
    /// The region ARNs and signatures name.
    pub region: String,
    /// The account root's access key id; with the secret, created or checked at start.
    #[serde(default, deserialize_with = "text")]
    pub root_access_key_id: Option<String>,
    #[serde(default, deserialize_with = "text")]
    pub root_secret_access_key: Option<String>,
    /// The master keyring file (`version:base64-key` lines) that seals every stored secret;
    /// unset, `<data_dir>/master.key`, generated at first start.
    pub master_key_file: Option<PathBuf>,
    /// A master-key rotation re-seals this many values at a time…
    pub master_key_rotation_batch: usize,
    /// …and pauses this long between batches (0: none), to stay out of the way of requests.
    pub master_key_rotation_pause_ms: u64,
    /// Whether `/v2/` requires a registry token. Turning it off is for benchmarks only.
    pub auth: bool,
    /// How often lifecycle policies are applied (also a minute after start); 0 turns it off.
    pub lifecycle_interval_seconds: u64,
    /// Scheduled work (GC, lifecycle) runs on the one node holding the scheduler lease, which
    /// lives this long unless renewed: when its holder dies, another node takes over within it.
    pub scheduler_lease_seconds: u64,
    /// How often garbage collection runs inside `serve`; 0 turns it off.
    pub gc_interval_seconds: u64,
    /// Blob links and blobs younger than this are never collected: the time a push has between
    /// uploading a blob and putting the manifest that references it.
    pub gc_grace_seconds: u64,
    /// Upload sessions older than this are abandoned and reclaimed.
    pub gc_upload_age_seconds: u64,
    /// How many image scans run at once on this node; 0 leaves queued scans to other nodes.
    pub scan_concurrency: usize,
    /// Attach each scanned image's CycloneDX SBOM to it as an OCI referrer.
    pub scan_attach_sbom: bool,
    /// Pull policy for repositories without their own (`berth admin set-pull-policy`): refuse
    /// pulls of images with findings at or above this severity (CRITICAL, HIGH, MEDIUM, LOW,
    /// INFORMATIONAL); unset, nothing is refused.
    #[serde(default, deserialize_with = "text")]
    pub scan_pull_block_severity: Option<String>,
    /// Where Prometheus `/metrics` is served, apart from the public port (an internal
    /// network's address, as exporters usually are); unset, metrics are not served.
    pub metrics_listen: Option<SocketAddr>,
    /// A request's headers must arrive within this time of its first byte.
    pub header_read_timeout_seconds: u64,
    /// A keep-alive connection with no request for this long is closed.
    pub idle_timeout_seconds: u64,
    /// Open connections at most; past it a new one gets `503` and is closed.
    pub max_connections: usize,
    /// A request body slower than this, averaged over `min_upload_window_seconds`, is cut off:
    /// slow but live pushes finish, stalled ones do not hold a connection forever.
    pub min_upload_bytes_per_second: u64,
    pub min_upload_window_seconds: u64,
    /// On SIGTERM, in-flight requests get this long to finish before the rest are closed.
    pub shutdown_drain_seconds: u64,
    /// Load balancers whose `X-Forwarded-For` / `X-Forwarded-Proto` are believed: addresses or
    /// CIDR blocks, a list or one comma-separated string. Empty: the headers are ignored.
    #[serde(default, deserialize_with = "list")]
    pub trusted_proxies: Vec<String>,
    /// Pull-through cache rules may name plain-http upstreams on any host (unset: loopback
    /// hosts only; everything else must be https).
    pub pull_through_allow_plain_http: bool,
    /// PEM certificates trusted for pull-through cache upstreams besides the system's: the
    /// private CA of a self-hosted upstream.
    pub pull_through_ca_bundle: Option<PathBuf>,
    /// The filesystem under the data directory is encrypted at rest by the operator (dm-crypt,
    /// LUKS): `AES256` repositories' blobs and manifests are then left to it, as to an S3
    /// bucket written with SSE-S3 (`server_side_encryption=AES256` in `blobs`), and only what a
    /// KMS key protects is sealed by Berth.
    pub blobs_encrypted_at_rest: bool,
    /// The most bytes per second this node sends to replication peers, all jobs together
    /// (unset: no limit). Keeps cross-region replication from crowding out pulls.
    pub replication_max_bytes_per_second: Option<u64>,
    /// The host (and port) clients pull this registry's images from, as signatures name them
    /// (`critical.identity.docker-reference` = `<registry host>/<repository>:<tag>`); unset,
    /// the listen address. Set it to the load balancer's name behind one.
    #[serde(default, deserialize_with = "text")]
    pub registry_host: Option<String>,
    /// The public registry's host name (ECR Public, as `public.ecr.aws` is AWS's); unset, ECR
    /// Public is off.
    #[serde(default, deserialize_with = "text")]
    pub public_host: Option<String>,
    /// Bytes each source address may pull anonymously from the public host per calendar month
    /// (UTC); ECR Public's figure, 500 GB, by default.
    pub public_anonymous_bytes_per_month: u64,
}

impl Config {
    /// Whether the metadata store is a server database that several nodes share.
    pub fn shared_meta(&self) -> bool {
        self.meta.as_deref().is_some_and(|m| m.starts_with("postgres://") || m.starts_with("postgresql://"))
    }
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: "127.0.0.1:5000".parse().expect("valid default address"),
            data_dir: PathBuf::from("berth-data"),
            meta: None,
            blobs: None,
            s3_access_key_id: None,
            s3_secret_access_key: None,
            meta_max_connections: 16,
            meta_statement_timeout_seconds: 30,
            log_format: "text".into(),
            tls_cert: None,
            tls_key: None,
            account_id: None,
            region: "us-east-1".into(),
            root_access_key_id: None,
            root_secret_access_key: None,
            master_key_file: None,
            master_key_rotation_batch: 200,
            master_key_rotation_pause_ms: 0,
            auth: true,
            scheduler_lease_seconds: 60,
            lifecycle_interval_seconds: 3600,
            gc_interval_seconds: 3600,
            gc_grace_seconds: 3600,
            gc_upload_age_seconds: 24 * 3600,
            scan_concurrency: 2,
            scan_attach_sbom: true,
            scan_pull_block_severity: None,
            metrics_listen: None,
            header_read_timeout_seconds: 10,
            idle_timeout_seconds: 60,
            max_connections: 4096,
            min_upload_bytes_per_second: 1024,
            min_upload_window_seconds: 30,
            shutdown_drain_seconds: 30,
            trusted_proxies: Vec::new(),
            pull_through_allow_plain_http: false,
            pull_through_ca_bundle: None,
            blobs_encrypted_at_rest: false,
            replication_max_bytes_per_second: None,
            registry_host: None,
            public_host: None,
            public_anonymous_bytes_per_month: berth_registry::public::DEFAULT_ANONYMOUS_BYTES_PER_MONTH,
        }
    }
}

/// Flags given on the command line; `None` leaves the lower layers' value.
#[derive(Debug, Default, Serialize)]
pub struct Overrides {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub listen: Option<SocketAddr>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data_dir: Option<PathBuf>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub log_format: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_cert: Option<PathBuf>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_key: Option<PathBuf>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub account_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub auth: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metrics_listen: Option<SocketAddr>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub master_key_file: Option<PathBuf>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub meta: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub blobs: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub registry_host: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub public_host: Option<String>,
}

/// Environment values arrive typed (`123456789012` as a number); ids and secrets are text.
fn text<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Text {
        S(String),
        U(u64),
        I(i64),
    }
    Ok(Option::<Text>::deserialize(d)?.map(|t| match t {
        Text::S(s) => s,
        Text::U(u) => u.to_string(),
        Text::I(i) => i.to_string(),
    }))
}

/// A list given as a list (TOML) or as one comma-separated string (the environment).
fn list<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum List {
        One(String),
        Many(Vec<String>),
    }
    Ok(match Option::<List>::deserialize(d)? {
        None => Vec::new(),
        Some(List::Many(v)) => v,
        Some(List::One(s)) => s.split(',').map(str::trim).filter(|s| !s.is_empty()).map(String::from).collect(),
    })
}

/// Ids and secrets from the environment, taken as the text they are: figment would read
/// `012345678901` as a number and lose the leading zero.
fn text_env() -> std::collections::BTreeMap<&'static str, String> {
    [
        "account_id",
        "root_access_key_id",
        "root_secret_access_key",
        "s3_access_key_id",
        "s3_secret_access_key",
        "registry_host",
        "public_host",
    ]
    .into_iter()
    .filter_map(|k| std::env::var(format!("BERTH_{}", k.to_ascii_uppercase())).ok().map(|v| (k, v)))
    .collect()
}

pub fn load(file: Option<&PathBuf>, overrides: &Overrides) -> Result<Config, Box<figment::Error>> {
    let mut f = Figment::from(Serialized::defaults(Config::default()));
    if let Some(path) = file {
        if !path.exists() {
            return Err(Box::new(figment::Error::from(format!("config file {} does not exist", path.display()))));
        }
        f = f.merge(Toml::file(path));
    }
    f.merge(Env::prefixed("BERTH_").only(&[
        "listen",
        "data_dir",
        "meta",
        "blobs",
        "meta_max_connections",
        "meta_statement_timeout_seconds",
        "log_format",
        "tls_cert",
        "tls_key",
        "region",
        "master_key_file",
        "master_key_rotation_batch",
        "master_key_rotation_pause_ms",
        "auth",
        "scheduler_lease_seconds",
        "lifecycle_interval_seconds",
        "gc_interval_seconds",
        "gc_grace_seconds",
        "gc_upload_age_seconds",
        "scan_concurrency",
        "scan_attach_sbom",
        "scan_pull_block_severity",
        "metrics_listen",
        "header_read_timeout_seconds",
        "idle_timeout_seconds",
        "max_connections",
        "min_upload_bytes_per_second",
        "min_upload_window_seconds",
        "shutdown_drain_seconds",
        "trusted_proxies",
        "pull_through_allow_plain_http",
        "pull_through_ca_bundle",
        "blobs_encrypted_at_rest",
        "replication_max_bytes_per_second",
        "registry_host",
        "public_host",
        "public_anonymous_bytes_per_month",
    ]))
    .merge(Serialized::defaults(text_env()))
    .merge(Serialized::defaults(overrides))
    .extract()
    .map_err(Box::new)
}

#[cfg(test)]
#[allow(clippy::result_large_err)] // figment::Jail's closure signature is not ours
mod tests {
    use super::*;

    #[test]
    fn layers_override_in_order() {
        figment::Jail::expect_with(|jail| {
            jail.create_file(
                "berth.toml",
                "listen = \"127.0.0.1:6000\"\ndata_dir = \"/from-file\"\nlog_format = \"json\"",
            )?;
            jail.set_env("BERTH_DATA_DIR", "/from-env");
            jail.set_env("BERTH_ACCOUNT_ID", "012345678901");
            jail.set_env("BERTH_ROOT_SECRET_ACCESS_KEY", "12345");
            jail.set_env("BERTH_TRUSTED_PROXIES", "127.0.0.1, 10.0.0.0/8");
            let file = PathBuf::from("berth.toml");
            let c = load(Some(&file), &Overrides::default()).unwrap();
            assert_eq!(c.listen.port(), 6000);
            assert_eq!(c.data_dir, PathBuf::from("/from-env"));
            assert_eq!(c.log_format, "json");
            assert_eq!(c.account_id.as_deref(), Some("012345678901"));
            assert_eq!(c.root_secret_access_key.as_deref(), Some("12345"));
            assert_eq!(c.trusted_proxies, ["127.0.0.1", "10.0.0.0/8"]);
            let o = Overrides { data_dir: Some("/from-flag".into()), ..Default::default() };
            assert_eq!(load(Some(&file), &o).unwrap().data_dir, PathBuf::from("/from-flag"));
            assert!(load(Some(&PathBuf::from("missing.toml")), &o).is_err());
            Ok(())
        });
    }

    #[test]
    fn defaults() {
        figment::Jail::expect_with(|_| {
            let c = load(None, &Overrides::default()).unwrap();
            assert_eq!(c.listen.to_string(), "127.0.0.1:5000");
            assert_eq!(c.data_dir, PathBuf::from("berth-data"));
            Ok(())
        });
    }
}
