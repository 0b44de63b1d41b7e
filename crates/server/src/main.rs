//! `berth`: a self-hosted registry with the Amazon ECR API.

use std::io::IsTerminal;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use berth_meta::{MetaStore, PgMeta, SqliteMeta};
use berth_registry::identity::{Identity, NewRootKey};
use berth_registry::scan::{ScanSettings, Scanner, parse_block_severity};
use berth_registry::secrets::MasterKeys;
use berth_registry::{GcPolicy, Registry};
use berth_store::FsBlobStore;
use clap::{Args, Parser, Subcommand};

/// mimalloc keeps freed pages mapped for reuse; with glibc's allocator every large request
/// buffer was a fresh mmap, and page faults plus zeroing raised upload CPU from 1.25 to 1.6 s/GB.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

mod admin_socket;
mod config;
mod http;
mod listener;
mod tls;

use config::{Config, Overrides};

#[derive(Parser)]
#[command(name = "berth", version, about = "A self-hosted OCI registry with the Amazon ECR API")]
struct Cli {
    /// TOML configuration file.
    #[arg(long, global = true)]
    config: Option<PathBuf>,
    #[command(flatten)]
    common: CommonArgs,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Args, Default)]
struct CommonArgs {
    /// Address to listen on [default: 127.0.0.1:5000].
    #[arg(long, global = true)]
    listen: Option<SocketAddr>,
    /// Data directory [default: ./berth-data].
    #[arg(long, global = true)]
    data_dir: Option<PathBuf>,
    /// Log format: text or json.
    #[arg(long, global = true)]
    log_format: Option<String>,
    /// PEM certificate chain: serve HTTPS (with --tls-key).
    #[arg(long, global = true)]
    tls_cert: Option<PathBuf>,
    /// PEM private key for --tls-cert.
    #[arg(long, global = true)]
    tls_key: Option<PathBuf>,
    /// The default account's 12-digit id [default: chosen at first start].
    #[arg(long, global = true)]
    account_id: Option<String>,
    /// Region named in ARNs and signatures [default: us-east-1].
    #[arg(long, global = true)]
    region: Option<String>,
    /// Serve /v2/ without authentication (benchmarks only).
    #[arg(long, global = true)]
    insecure_no_auth: bool,
    /// Serve Prometheus /metrics on this (internal) address [default: not served].
    #[arg(long, global = true)]
    metrics_listen: Option<SocketAddr>,
    /// The master keyring file [default: <data-dir>/master.key, generated at first start].
    #[arg(long, global = true)]
    master_key_file: Option<PathBuf>,
    /// The metadata store: a PostgreSQL URL [default: the embedded SQLite file in the data
    /// directory].
    #[arg(long, global = true)]
    meta: Option<String>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the registry (the default when no command is given).
    Serve,
    /// Check that every manifest's blobs exist and every blob hashes to its digest.
    Fsck,
    /// Apply lifecycle policies now (they also run on a schedule inside `berth serve`).
    Lifecycle {
        #[command(subcommand)]
        command: LifecycleCommand,
    },
    /// Collect garbage now, offline (a running `berth serve` collects on its own schedule and
    /// holds the data directory; see BERTH_GC_INTERVAL_SECONDS).
    Gc {
        /// Report what would be reclaimed without deleting anything (works while serving).
        #[arg(long)]
        dry_run: bool,
        /// Override the grace period (seconds) for fresh blobs.
        #[arg(long)]
        grace_seconds: Option<u64>,
        /// Override the age (seconds) after which upload sessions are abandoned.
        #[arg(long)]
        upload_age_seconds: Option<u64>,
    },
    /// The vulnerability database that image scans match against (works while serving).
    Vulndb {
        #[command(subcommand)]
        command: VulndbCommand,
    },
    /// Manage users and access keys of the account (works while the server runs).
    Admin {
        #[command(subcommand)]
        command: AdminCommand,
    },
}

#[derive(Subcommand)]
enum LifecycleCommand {
    /// Apply the lifecycle policy of one repository, or of every repository that has one.
    Run {
        #[arg(long)]
        repository: Option<String>,
        /// Report what would expire without deleting anything.
        #[arg(long)]
        dry_run: bool,
        /// Evaluate as of this time: epoch seconds, or `+Nd` for N days from now.
        #[arg(long)]
        now: Option<String>,
    },
    /// Show what lifecycle runs did (expired or archived images), newest first.
    Events {
        #[arg(long)]
        repository: Option<String>,
        #[arg(long, default_value_t = 100)]
        limit: u32,
    },
}

#[derive(Subcommand)]
enum VulndbCommand {
    /// Load OSV records: zip files as osv.dev publishes them (`<Ecosystem>/all.zip`),
    /// directories of record files, or single `.json` records. Re-importing updates in place;
    /// a running server rescans CONTINUOUS_SCAN repositories when the database changed.
    Import {
        #[arg(required = true)]
        paths: Vec<PathBuf>,
    },
    /// How many records the database holds, its version and when it last changed.
    Status,
}

#[derive(Subcommand)]
enum AdminCommand {
    /// Create another account with its root user and root access key (the secret is printed
    /// once). Its principals authenticate to this Berth; repository and registry policies
    /// decide what they may do with this registry's repositories (cross-account access).
    /// Manage its users with `--account-id ACCOUNT`.
    CreateAccount {
        account_id: String,
    },
    /// Set a repository's pull policy: pulls of images whose scan found vulnerabilities at or
    /// above SEVERITY (CRITICAL, HIGH, MEDIUM, LOW, INFORMATIONAL) are refused; NONE turns it
    /// off, DEFAULT falls back to the configured default (scan_pull_block_severity). With
    /// `--account-id`, a repository of that account.
    SetPullPolicy {
        repository: String,
        severity: String,
    },
    /// Create a user. A user may do nothing until a policy allows it (identity policies, or a
    /// repository policy naming it).
    CreateUser {
        name: String,
    },
    /// Create or replace a user's inline policy from a JSON file (`-` for standard input).
    PutUserPolicy {
        user: String,
        policy_name: String,
        file: PathBuf,
    },
    DeleteUserPolicy {
        user: String,
        policy_name: String,
    },
    /// Attach a managed policy (an ARN: the account's own, or
    /// `arn:aws:iam::aws:policy/AmazonEC2ContainerRegistry{ReadOnly,PowerUser,FullAccess}`).
    AttachUserPolicy {
        user: String,
        policy_arn: String,
    },
    DetachUserPolicy {
        user: String,
        policy_arn: String,
    },
    /// Create a customer-managed policy from a JSON file.
    CreatePolicy {
        policy_name: String,
        file: PathBuf,
    },
    CreateGroup {
        name: String,
    },
    AddUserToGroup {
        group: String,
        user: String,
    },
    PutGroupPolicy {
        group: String,
        policy_name: String,
        file: PathBuf,
    },
    AttachGroupPolicy {
        group: String,
        policy_arn: String,
    },
    /// A user's inline policy names, attached policies and groups.
    ShowUser {
        user: String,
    },
    ListUsers,
    /// Create an access key for a user (or `root`); the secret is printed once.
    CreateAccessKey {
        user: String,
    },
    /// List a user's access keys (never their secrets).
    ListAccessKeys {
        user: String,
    },
    /// Activate or deactivate an access key of a user (or `root`). The account root's last
    /// active key is kept unless `--force`.
    UpdateAccessKey {
        user: String,
        access_key_id: String,
        /// Active or Inactive.
        #[arg(long)]
        status: String,
        #[arg(long)]
        force: bool,
    },
    /// Delete an access key of a user (or `root`) for good. The account root's last active key
    /// is kept unless `--force`.
    DeleteAccessKey {
        user: String,
        access_key_id: String,
        #[arg(long)]
        force: bool,
    },
    /// When, for which service and in which region an access key was last used.
    GetAccessKeyLastUsed {
        access_key_id: String,
    },
    /// Re-seal every stored secret under a new master key version, done by the running server,
    /// online and resumably. With the embedded keyring (`<data-dir>/master.key`) a new version
    /// is added to it first; with `--master-key-file`, add the version to every node's file and
    /// reload them (SIGHUP), then name it with `--to`.
    RotateMasterKey {
        #[arg(long)]
        to: Option<u32>,
        /// Wait until every secret is sealed under the new version.
        #[arg(long)]
        wait: bool,
    },
    /// How many stored secrets each master key version seals, and which versions seal nothing
    /// any more (they may be removed from the keyring file).
    MasterKeyStatus,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let overrides = Overrides {
        listen: cli.common.listen,
        data_dir: cli.common.data_dir.clone(),
        log_format: cli.common.log_format.clone(),
        tls_cert: cli.common.tls_cert.clone(),
        tls_key: cli.common.tls_key.clone(),
        account_id: cli.common.account_id.clone(),
        region: cli.common.region.clone(),
        auth: cli.common.insecure_no_auth.then_some(false),
        metrics_listen: cli.common.metrics_listen,
        master_key_file: cli.common.master_key_file.clone(),
        meta: cli.common.meta.clone(),
    };
    let config = match config::load(cli.config.as_ref(), &overrides) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("berth: configuration: {e}");
            return ExitCode::from(2);
        }
    };
    init_logging(&config);
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("tokio runtime");
    let result = runtime.block_on(async {
        match cli.command.unwrap_or(Command::Serve) {
            Command::Serve => serve(config).await.map(|_| ExitCode::SUCCESS),
            Command::Fsck => fsck(config).await,
            Command::Admin { command } => admin(config, command).await.map(|_| ExitCode::SUCCESS),
            Command::Vulndb { command } => vulndb(config, command).await.map(|_| ExitCode::SUCCESS),
            Command::Lifecycle { command } => lifecycle(config, command).await.map(|_| ExitCode::SUCCESS),
            Command::Gc { dry_run, grace_seconds, upload_age_seconds } => {
                gc(config, dry_run, grace_seconds, upload_age_seconds).await.map(|_| ExitCode::SUCCESS)
            }
        }
    });
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("berth: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn init_logging(config: &Config) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("BERTH_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,sqlx=warn"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    if config.log_format == "json" {
        builder.json().init();
    } else {
        builder.init();
    }
}

/// `url` with its password, if any, left out (for messages).
fn redacted(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let userinfo = &url[scheme + 3..at];
            let user = userinfo.split(':').next().unwrap_or("");
            format!("{}{user}{}", &url[..scheme + 3], &url[at..])
        }
        _ => url.to_string(),
    }
}

async fn open_meta(config: &Config) -> anyhow::Result<Arc<dyn MetaStore>> {
    match config.meta.as_deref() {
        None => Ok(Arc::new(
            SqliteMeta::open(&config.data_dir.join("meta.db")).await.context("opening the metadata database")?,
        )),
        Some(url) if config.shared_meta() => {
            let timeout = std::time::Duration::from_secs(config.meta_statement_timeout_seconds.max(1));
            let meta = PgMeta::open(url, config.meta_max_connections, timeout)
                .await
                .map_err(|e| anyhow::anyhow!("the metadata database {}: {e}", redacted(url)))?;
            Ok(Arc::new(meta))
        }
        Some(other) => anyhow::bail!(
            "--meta {:?}: expected a postgres:// URL (or none, for the embedded SQLite store)",
            redacted(other)
        ),
    }
}

async fn open_stores(config: &Config) -> anyhow::Result<(Arc<dyn MetaStore>, FsBlobStore)> {
    std::fs::create_dir_all(&config.data_dir)
        .with_context(|| format!("creating data directory {}", config.data_dir.display()))?;
    let meta = open_meta(config).await?;
    let blobs = FsBlobStore::open(config.data_dir.clone()).await.context("opening the blob store")?;
    Ok((meta, blobs))
}

/// Where the master keyring is: the configured file, or `<data-dir>/master.key`.
fn master_key_path(config: &Config) -> PathBuf {
    config.master_key_file.clone().unwrap_or_else(|| config.data_dir.join("master.key"))
}

/// The master keyring. A configured file must exist; the embedded default is generated (0600,
/// never printed) the first time any `berth` command opens the data directory.
fn master_keys(config: &Config) -> anyhow::Result<Arc<MasterKeys>> {
    if config.shared_meta() && config.master_key_file.is_none() {
        // A keyring generated here would be this node's alone: values it sealed would not open
        // on the others.
        anyhow::bail!(
            "the metadata store is PostgreSQL: give the master keyring with --master-key-file (BERTH_MASTER_KEY_FILE), \
             the same file on every node"
        );
    }
    let path = master_key_path(config);
    if config.master_key_file.is_none() {
        std::fs::create_dir_all(&config.data_dir)
            .with_context(|| format!("creating data directory {}", config.data_dir.display()))?;
        let (_, created) = berth_keyring::load_or_create(&path).map_err(|e| anyhow::anyhow!("master keyring: {e}"))?;
        if created {
            tracing::info!(path = %path.display(), "generated the master keyring");
        }
    }
    Ok(Arc::new(MasterKeys::from_file(path).map_err(|e| anyhow::anyhow!("{e}"))?))
}

/// The registry with its identity store; the first start creates the account and root key. A
/// data directory of a release before the master keyring has its secrets sealed first.
async fn open_registry(config: &Config) -> anyhow::Result<(Registry, Identity)> {
    let keys = master_keys(config)?;
    let (meta, blobs) = open_stores(config).await?;
    let sealed = berth_registry::secrets::seal_plaintext_secrets(meta.as_ref(), &keys)
        .await
        .map_err(|e| anyhow::anyhow!("sealing the stored secrets: {e}"))?;
    if sealed > 0 {
        tracing::warn!(sealed, "sealed the secrets a previous release stored in plain text, and erased the old bytes");
    }
    let root_key = match (&config.root_access_key_id, &config.root_secret_access_key) {
        (Some(id), Some(secret)) => Some((id.as_str(), secret.as_str())),
        (None, None) => None,
        _ => anyhow::bail!("give both BERTH_ROOT_ACCESS_KEY_ID and BERTH_ROOT_SECRET_ACCESS_KEY, or neither"),
    };
    let (identity, created) =
        Identity::open(meta.clone(), keys.clone(), config.account_id.as_deref(), &config.region, root_key)
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?;
    if let Some(key) = created {
        announce_root_key(config, identity.account_id(), &key)?;
    }
    let registry = Registry::new(meta, Arc::new(blobs), identity.account_id().to_string(), keys)
        .with_scan_settings(scan_settings(config)?);
    Ok((registry, identity))
}

fn scan_settings(config: &Config) -> anyhow::Result<ScanSettings> {
    let pull_block_default = match &config.scan_pull_block_severity {
        Some(s) => parse_block_severity(s).map_err(|e| anyhow::anyhow!("scan_pull_block_severity: {e}"))?,
        None => None,
    };
    // rpm databases are spooled under the data directory, not a possibly memory-backed /tmp;
    // files a killed process left there are removed at start.
    let spool_dir = config.data_dir.join("scan-spool");
    let _ = std::fs::remove_dir_all(&spool_dir);
    std::fs::create_dir_all(&spool_dir).with_context(|| format!("creating {}", spool_dir.display()))?;
    Ok(ScanSettings { attach_sbom: config.scan_attach_sbom, pull_block_default, spool_dir: Some(spool_dir) })
}

/// This node's stable name in the scan queue's claims: made once per data directory.
fn node_id(config: &Config) -> anyhow::Result<String> {
    let path = config.data_dir.join("node-id");
    if let Ok(id) = std::fs::read_to_string(&path) {
        let id = id.trim();
        if !id.is_empty() {
            return Ok(id.to_string());
        }
    }
    let id = format!("node-{}", uuid::Uuid::new_v4());
    let tmp = config.data_dir.join("node-id.tmp");
    std::fs::write(&tmp, &id).and_then(|_| std::fs::File::open(&tmp)?.sync_all()).context("writing node-id")?;
    std::fs::rename(&tmp, &path).context("writing node-id")?;
    Ok(id)
}

async fn vulndb(config: Config, command: VulndbCommand) -> anyhow::Result<()> {
    let (meta, blobs) = open_stores(&config).await?;
    let registry = Registry::new(meta, Arc::new(blobs), String::new(), master_keys(&config)?);
    let state = match command {
        VulndbCommand::Import { paths } => {
            let started = std::time::Instant::now();
            let state = registry
                .import_vulndb(paths, |p, skipped| match skipped {
                    Some(why) => eprintln!("skipped {why}"),
                    None if !p.source.is_empty() => {
                        eprintln!(
                            "{}: {} records read, {} new or changed, {} skipped",
                            p.source, p.read, p.changed, p.skipped
                        )
                    }
                    None => eprint!("\r{} records read, {} new or changed", p.read, p.changed),
                })
                .await
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            eprintln!("imported in {:.1} s", started.elapsed().as_secs_f64());
            state
        }
        VulndbCommand::Status => registry.vulndb_state().await.map_err(|e| anyhow::anyhow!("{e}"))?,
    };
    registry.close().await;
    println!(
        "{}",
        serde_json::to_string_pretty(&serde_json::json!({
            "records": state.records,
            "version": state.version,
            "updatedAt": state.updated_at.map(|t| t as f64 / 1000.0),
        }))?
    );
    Ok(())
}

/// Shows a newly created root key once and keeps it in a 0600 file in the data directory.
fn announce_root_key(config: &Config, account: &str, key: &NewRootKey) -> anyhow::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let path = config.data_dir.join("admin-credentials");
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&path)
        .with_context(|| format!("writing {}", path.display()))?;
    writeln!(
        f,
        "# Berth account {account} root key, created at first start. AWS shared-credentials format.\n[berth]\naws_access_key_id = {}\naws_secret_access_key = {}\nregion = {}",
        key.access_key_id, key.secret_access_key, config.region
    )?;
    f.sync_all()?;
    eprintln!(
        "berth: created the root access key of account {account} (shown once; also in {}):\n  AWS_ACCESS_KEY_ID={}\n  AWS_SECRET_ACCESS_KEY={}",
        path.display(),
        key.access_key_id,
        key.secret_access_key
    );
    Ok(())
}

async fn serve(config: Config) -> anyhow::Result<()> {
    let _data_lock = lock_data_dir(&config)?;
    let (registry, identity) = open_registry(&config).await?;
    let registry = Arc::new(registry);
    if !config.auth {
        tracing::warn!("authentication is off: anyone can push and pull (--insecure-no-auth)");
    }
    let node = node_id(&config)?;
    let scheduler = spawn_scheduler_lease(
        registry.clone(),
        node.clone(),
        std::time::Duration::from_secs(config.scheduler_lease_seconds.max(3)),
    );
    if config.gc_interval_seconds > 0 {
        spawn_gc_schedule(
            registry.clone(),
            std::time::Duration::from_secs(config.gc_interval_seconds),
            gc_policy(&config),
            scheduler.clone(),
        );
    }
    if config.lifecycle_interval_seconds > 0 {
        spawn_lifecycle_schedule(
            registry.clone(),
            std::time::Duration::from_secs(config.lifecycle_interval_seconds),
            scheduler.clone(),
        );
    }
    // A node with no scan concurrency only queues scans, for other nodes to run.
    if config.scan_concurrency > 0 {
        tokio::spawn(Scanner::new(registry.clone(), config.scan_concurrency, node.clone()).run());
    }
    let admin = admin_socket::Admin::new(
        registry.clone(),
        berth_registry::secrets::ResealPace {
            batch: config.master_key_rotation_batch.max(1),
            pause: std::time::Duration::from_millis(config.master_key_rotation_pause_ms),
        },
    );
    admin_socket::serve(admin_socket::socket_path(&config.data_dir), admin.clone())?;
    admin.resume_rotation().await;
    spawn_keyring_reload_on_sighup(admin);
    let tls_configured = config.tls_cert.is_some();
    let authorizer = Arc::new(registry.authorizer(identity.region()));
    let state = http::AppState {
        registry: registry.clone(),
        identity: Arc::new(identity),
        authorizer,
        scheme: if tls_configured { "https" } else { "http" },
        trusted_proxies: Arc::new(
            http::proxy::TrustedProxies::parse(&config.trusted_proxies).map_err(|e| anyhow::anyhow!("{e}"))?,
        ),
        auth_required: config.auth,
        metrics: http::metrics::install(),
    };
    match listener::raise_nofile_limit() {
        Ok(soft) => tracing::debug!(open_files = soft, "open-files limit"),
        Err(e) => tracing::warn!(error = %e, "could not raise the open-files limit"),
    }
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("listening on {}", config.listen))?;
    let addr = listener.local_addr()?;
    let tls = match (&config.tls_cert, &config.tls_key) {
        (Some(cert), Some(key)) => Some(tls::server_config(cert, key)?),
        (None, None) => None,
        _ => anyhow::bail!("TLS needs both a certificate (--tls-cert) and a key (--tls-key)"),
    };
    let scheme = if tls.is_some() { "https" } else { "http" };
    let limits = connection_limits(&config);
    // Metrics name every repository: they are served only on their own (internal) address.
    let metrics_task = match config.metrics_listen {
        Some(metrics_addr) => {
            let metrics_listener = tokio::net::TcpListener::bind(metrics_addr)
                .await
                .with_context(|| format!("listening on {metrics_addr} for metrics"))?;
            let metrics_addr = metrics_listener.local_addr()?;
            tracing::info!(%metrics_addr, "serving /metrics");
            let (router, limits) = (http::metrics_router(state.clone()), limits.clone());
            let task = tokio::spawn(listener::serve(metrics_listener, None, router, limits, std::future::pending()));
            Some((task, metrics_addr))
        }
        None => None,
    };
    tracing::info!(%addr, scheme, data_dir = %config.data_dir.display(), "berth is serving");
    // Scripts that ask for port 0 read the chosen address from this line (and the next).
    println!("listening on {addr}");
    if let Some((_, metrics_addr)) = &metrics_task {
        println!("metrics on {metrics_addr}");
    }
    listener::serve(listener, tls, http::router(state), limits, shutdown_signal()).await;
    if let Some((task, _)) = metrics_task {
        task.abort();
    }
    // Another node takes the scheduled work over at once instead of after the lease expires.
    if scheduler.load(std::sync::atomic::Ordering::SeqCst)
        && let Err(e) = registry.release_lease(SCHEDULER_LEASE, &node).await
    {
        tracing::warn!(error = %e, "could not give the scheduler lease up");
    }
    registry.close().await;
    tracing::info!("berth stopped");
    Ok(())
}

/// `SIGHUP` re-reads the master keyring file (a version added for a rotation).
fn spawn_keyring_reload_on_sighup(admin: admin_socket::Admin) {
    tokio::spawn(async move {
        let Ok(mut hup) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) else {
            tracing::warn!("no SIGHUP handler: reload the keyring through `berth admin rotate-master-key`");
            return;
        };
        while hup.recv().await.is_some() {
            if let Err(e) = admin.reload_keyring() {
                tracing::error!(error = %e, "SIGHUP: the master keyring was not reloaded");
            }
        }
    });
}

fn connection_limits(config: &Config) -> listener::Limits {
    listener::Limits {
        header_read_timeout: std::time::Duration::from_secs(config.header_read_timeout_seconds.max(1)),
        idle_timeout: std::time::Duration::from_secs(config.idle_timeout_seconds.max(1)),
        max_connections: config.max_connections.max(1),
        min_body_rate: listener::MinRate {
            bytes_per_second: config.min_upload_bytes_per_second,
            window: std::time::Duration::from_secs(config.min_upload_window_seconds.max(1)),
        },
        drain: std::time::Duration::from_secs(config.shutdown_drain_seconds),
    }
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).expect("SIGTERM handler");
    tokio::select! {
        _ = ctrl_c => {}
        _ = term.recv() => {}
    }
    tracing::info!("shutting down: finishing in-flight requests");
}

/// The account the admin commands act on: the configured one, or the one created first.
async fn admin_account(config: &Config, meta: &Arc<dyn MetaStore>) -> anyhow::Result<String> {
    if let Some(a) = &config.account_id {
        return Ok(a.clone());
    }
    meta.first_account().await?.ok_or_else(|| anyhow::anyhow!("no account yet: start `berth serve` once first"))
}

/// The admin commands the running server carries out (over its admin socket).
async fn admin_of_server(config: &Config, command: &AdminCommand) -> anyhow::Result<Option<serde_json::Value>> {
    use serde_json::json;
    let out = match command {
        AdminCommand::RotateMasterKey { to, wait } => {
            let target = match (to, &config.master_key_file) {
                (Some(v), _) => *v,
                (None, None) => {
                    // Ask first, so that a server that is not running leaves the file alone.
                    admin_socket::request(&config.data_dir, json!({ "op": "master-key-status" })).await?;
                    let (_, v) = berth_keyring::append_new_version(&master_key_path(config))
                        .map_err(|e| anyhow::anyhow!("master keyring: {e}"))?;
                    v
                }
                (None, Some(file)) => {
                    berth_keyring::load(file).map_err(|e| anyhow::anyhow!("master keyring: {e}"))?.current_version()
                }
            };
            let mut report =
                admin_socket::request(&config.data_dir, json!({ "op": "rotate-master-key", "to": target })).await?;
            while *wait && (report["running"] == json!(true) || report["rotationTarget"] == json!(target)) {
                tokio::time::sleep(std::time::Duration::from_millis(200)).await;
                report = admin_socket::request(&config.data_dir, json!({ "op": "master-key-status" })).await?;
            }
            report
        }
        AdminCommand::MasterKeyStatus => {
            admin_socket::request(&config.data_dir, json!({ "op": "master-key-status" })).await?
        }
        _ => return Ok(None),
    };
    Ok(Some(out))
}

async fn admin(config: Config, command: AdminCommand) -> anyhow::Result<()> {
    use berth_meta::PrincipalKind;
    use berth_registry::iam::{IamAdmin, IamError, KeyStatus, Owner};
    use berth_registry::identity::principal_arn;
    if let Some(out) = admin_of_server(&config, &command).await? {
        println!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(());
    }
    let keys = master_keys(&config)?;
    let (meta, _) = open_stores(&config).await?;
    let account = admin_account(&config, &meta).await?;
    let user = |name: &str| {
        let (meta, account, name) = (meta.clone(), account.clone(), name.to_string());
        async move {
            meta.principal_by_name(&account, &name)
                .await?
                .ok_or_else(|| anyhow::anyhow!("no user {name:?} in account {account}"))
        }
    };
    let iam = IamAdmin::new(meta.clone(), meta.clone(), keys.clone(), account.clone());
    let read = |file: &std::path::Path| -> anyhow::Result<String> {
        if file.as_os_str() == "-" {
            let mut s = String::new();
            std::io::Read::read_to_string(&mut std::io::stdin(), &mut s)?;
            Ok(s)
        } else {
            std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))
        }
    };
    let iam_err = |e: IamError| anyhow::anyhow!("{}: {e}", e.code());
    let out = match command {
        AdminCommand::CreateAccount { account_id } => {
            let created = berth_registry::identity::ensure_account_root(meta.as_ref(), &keys, &account_id, None)
                .await
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            match created {
                Some(key) => serde_json::json!({
                    "Account": account_id,
                    "Arn": format!("arn:aws:iam::{account_id}:root"),
                    "AccessKey": { "AccessKeyId": key.access_key_id, "SecretAccessKey": key.secret_access_key },
                }),
                None => anyhow::bail!("account {account_id} already exists with a root key"),
            }
        }
        AdminCommand::SetPullPolicy { repository, severity } => {
            // `--account-id` names the account whose repository it is.
            let default = meta.first_account().await?.unwrap_or_else(|| account.clone());
            let key = berth_registry::repositories::repository_key(&default, &account, &repository);
            let mut repo =
                meta.repository(&key).await?.ok_or_else(|| anyhow::anyhow!("no repository {repository:?}"))?;
            repo.settings.pull_block_severity = if severity.eq_ignore_ascii_case("DEFAULT") {
                None
            } else {
                Some(berth_meta::PullBlock::parse(&severity).map_err(|e| anyhow::anyhow!("{e}"))?)
            };
            let repo = meta.update_repository_settings(&key, &repo.settings).await?;
            let shown = repo.settings.pull_block_severity.map(berth_meta::PullBlock::as_str);
            serde_json::json!({ "repositoryName": repository, "berthPullBlockSeverity": shown })
        }
        AdminCommand::CreateUser { name } => {
            let p = iam.create_user(&name).await.map_err(iam_err)?;
            serde_json::json!({ "User": { "UserName": p.name, "UserId": p.id, "Arn": principal_arn(&p) } })
        }
        AdminCommand::PutUserPolicy { user, policy_name, file } => {
            iam.put_inline_policy(Owner::User(&user), &policy_name, &read(&file)?).await.map_err(iam_err)?;
            serde_json::json!({})
        }
        AdminCommand::DeleteUserPolicy { user, policy_name } => {
            iam.delete_inline_policy(Owner::User(&user), &policy_name).await.map_err(iam_err)?;
            serde_json::json!({})
        }
        AdminCommand::AttachUserPolicy { user, policy_arn } => {
            iam.attach_policy(Owner::User(&user), &policy_arn).await.map_err(iam_err)?;
            serde_json::json!({})
        }
        AdminCommand::DetachUserPolicy { user, policy_arn } => {
            iam.detach_policy(Owner::User(&user), &policy_arn).await.map_err(iam_err)?;
            serde_json::json!({})
        }
        AdminCommand::CreatePolicy { policy_name, file } => {
            let p = iam.create_policy(&policy_name, None, &read(&file)?).await.map_err(iam_err)?;
            serde_json::json!({ "Policy": { "PolicyName": p.name, "PolicyId": p.id, "Arn": p.arn } })
        }
        AdminCommand::CreateGroup { name } => {
            let g = iam.create_group(&name).await.map_err(iam_err)?;
            serde_json::json!({ "Group": { "GroupName": g.name, "GroupId": g.id,
                "Arn": format!("arn:aws:iam::{account}:group/{}", g.name) } })
        }
        AdminCommand::AddUserToGroup { group, user } => {
            iam.add_user_to_group(&group, &user).await.map_err(iam_err)?;
            serde_json::json!({})
        }
        AdminCommand::PutGroupPolicy { group, policy_name, file } => {
            iam.put_inline_policy(Owner::Group(&group), &policy_name, &read(&file)?).await.map_err(iam_err)?;
            serde_json::json!({})
        }
        AdminCommand::AttachGroupPolicy { group, policy_arn } => {
            iam.attach_policy(Owner::Group(&group), &policy_arn).await.map_err(iam_err)?;
            serde_json::json!({})
        }
        AdminCommand::ShowUser { user } => {
            let p = iam.user(&user).await.map_err(iam_err)?;
            let groups: Vec<String> = meta.groups_of(&p.id).await?.into_iter().map(|g| g.name).collect();
            serde_json::json!({
                "User": { "UserName": p.name, "UserId": p.id, "Arn": principal_arn(&p) },
                "PolicyNames": iam.list_inline_policies(Owner::User(&user)).await.map_err(iam_err)?,
                "AttachedPolicies": iam.attached_policies(Owner::User(&user)).await.map_err(iam_err)?,
                "Groups": groups,
            })
        }
        AdminCommand::ListUsers => {
            let users: Vec<_> = meta
                .list_principals(&account)
                .await?
                .iter()
                .filter(|p| p.kind == PrincipalKind::User)
                .map(|p| serde_json::json!({ "UserName": p.name, "UserId": p.id, "Arn": principal_arn(p) }))
                .collect();
            serde_json::json!({ "Users": users })
        }
        AdminCommand::CreateAccessKey { user: name } => {
            let p = user(&name).await?;
            let new = iam.create_access_key(&p).await.map_err(iam_err)?;
            serde_json::json!({ "AccessKey": {
                "UserName": p.name, "AccessKeyId": new.key.access_key_id, "SecretAccessKey": new.secret, "Status": "Active",
            }})
        }
        AdminCommand::UpdateAccessKey { user: name, access_key_id, status, force } => {
            let p = user(&name).await?;
            let status = KeyStatus::parse(&status).map_err(iam_err)?;
            iam.update_access_key(&p, &access_key_id, status, force).await.map_err(iam_err)?;
            serde_json::json!({})
        }
        AdminCommand::DeleteAccessKey { user: name, access_key_id, force } => {
            let p = user(&name).await?;
            iam.delete_access_key(&p, &access_key_id, force).await.map_err(iam_err)?;
            serde_json::json!({})
        }
        AdminCommand::GetAccessKeyLastUsed { access_key_id } => {
            let (owner, key) = iam.access_key_last_used(&access_key_id).await.map_err(iam_err)?;
            let used = match &key.last_used {
                Some(u) => serde_json::json!({
                    "LastUsedDate": berth_iam::format_iso8601(u.at / 1000), "ServiceName": u.service, "Region": u.region,
                }),
                None => serde_json::json!({ "ServiceName": "N/A", "Region": "N/A" }),
            };
            serde_json::json!({ "UserName": owner.name, "AccessKeyLastUsed": used })
        }
        AdminCommand::RotateMasterKey { .. } | AdminCommand::MasterKeyStatus => {
            unreachable!("carried out by the running server")
        }
        AdminCommand::ListAccessKeys { user: name } => {
            let p = user(&name).await?;
            let keys: Vec<_> = meta
                .list_access_keys(&p.id)
                .await?
                .iter()
                .map(|k| serde_json::json!({
                    "UserName": p.name, "AccessKeyId": k.access_key_id, "Status": if k.active { "Active" } else { "Inactive" },
                }))
                .collect();
            serde_json::json!({ "AccessKeyMetadata": keys })
        }
    };
    meta.close().await;
    println!("{}", serde_json::to_string_pretty(&out)?);
    Ok(())
}

/// `--now`: epoch seconds, or `+Nd` for N days from now; returned in epoch milliseconds.
fn parse_now(value: Option<&str>) -> anyhow::Result<i64> {
    let now = berth_meta::now_ms();
    let Some(v) = value else { return Ok(now) };
    if let Some(days) = v.strip_prefix('+').and_then(|d| d.strip_suffix('d')) {
        let days: i64 = days.parse().map_err(|_| anyhow::anyhow!("--now {v:?}: expected +<days>d"))?;
        return Ok(now + days * 24 * 3600 * 1000);
    }
    let secs: i64 = v.parse().map_err(|_| anyhow::anyhow!("--now {v:?}: expected epoch seconds or +<days>d"))?;
    Ok(secs * 1000)
}

async fn lifecycle(config: Config, command: LifecycleCommand) -> anyhow::Result<()> {
    let (repository, dry_run, now) = match command {
        LifecycleCommand::Run { repository, dry_run, now } => (repository, dry_run, now),
        LifecycleCommand::Events { repository, limit } => {
            let (meta, _) = open_stores(&config).await?;
            let events = meta.lifecycle_events(repository.as_deref(), limit).await?;
            meta.close().await;
            let out: Vec<_> = events
                .iter()
                .map(|e| {
                    serde_json::json!({ "repositoryName": e.repository, "imageDigest": e.digest, "imageTags": e.tags,
                        "action": e.action, "appliedRulePriority": e.rule_priority, "at": e.at as f64 / 1000.0 })
                })
                .collect();
            println!("{}", serde_json::to_string_pretty(&out)?);
            return Ok(());
        }
    };
    let now = parse_now(now.as_deref())?;
    let (meta, blobs) = open_stores(&config).await?;
    let registry_id = admin_account(&config, &meta).await?;
    let registry = Registry::new(meta, Arc::new(blobs), registry_id, master_keys(&config)?);
    let runs = match repository {
        Some(r) => vec![registry.run_lifecycle(&r, now, dry_run).await.map_err(|e| anyhow::anyhow!("{e}"))?],
        None => registry.run_all_lifecycles(now, dry_run).await.map_err(|e| anyhow::anyhow!("{e}"))?,
    };
    registry.close().await;
    let out: Vec<_> = runs
        .iter()
        .map(|r| {
            let images = |list: &[(String, Vec<String>, i64)]| -> Vec<serde_json::Value> {
                list.iter()
                    .map(|(d, tags, rule)| serde_json::json!({ "imageDigest": d, "imageTags": tags, "appliedRulePriority": rule }))
                    .collect()
            };
            serde_json::json!({ "repositoryName": r.repository, "dryRun": dry_run,
                "expired": images(&r.expired), "archived": images(&r.archived) })
        })
        .collect();
    println!("{}", serde_json::to_string_pretty(&out)?);
    Ok(())
}

fn gc_policy(config: &Config) -> GcPolicy {
    GcPolicy {
        grace_ms: config.gc_grace_seconds as i64 * 1000,
        upload_age_ms: config.gc_upload_age_seconds as i64 * 1000,
    }
}

/// The data directory's lock: held by `berth serve` for its lifetime and by an offline
/// `berth gc`, because GC's exclusion of concurrent uploads is in-process (see gc.rs).
fn lock_data_dir(config: &Config) -> anyhow::Result<std::fs::File> {
    std::fs::create_dir_all(&config.data_dir)?;
    let path = config.data_dir.join("berth.lock");
    let file = std::fs::OpenOptions::new().create(true).truncate(false).write(true).open(&path)?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => anyhow::bail!(
            "{} is in use by a running berth serve (it collects garbage itself every BERTH_GC_INTERVAL_SECONDS)",
            config.data_dir.display()
        ),
        Err(std::fs::TryLockError::Error(e)) => Err(e.into()),
    }
}

async fn gc(config: Config, dry_run: bool, grace: Option<u64>, upload_age: Option<u64>) -> anyhow::Result<()> {
    let _lock = if dry_run { None } else { Some(lock_data_dir(&config)?) };
    let mut policy = gc_policy(&config);
    if let Some(g) = grace {
        policy.grace_ms = g as i64 * 1000;
    }
    if let Some(a) = upload_age {
        policy.upload_age_ms = a as i64 * 1000;
    }
    let (meta, blobs) = open_stores(&config).await?;
    let registry = Registry::new(meta, Arc::new(blobs), String::new(), master_keys(&config)?);
    let report = registry.gc(berth_meta::now_ms(), policy, dry_run).await.map_err(|e| anyhow::anyhow!("{e}"))?;
    registry.close().await;
    println!(
        "{}",
        serde_json::to_string_pretty(&serde_json::json!({
            "dryRun": report.dry_run,
            "linksRemoved": report.links_removed,
            "blobsRemoved": report.blobs_removed,
            "bytesFreed": report.bytes_freed,
            "unrecordedBlobsRemoved": report.unrecorded_removed,
            "uploadsRemoved": report.uploads_removed,
        }))?
    );
    Ok(())
}

/// Collects garbage every `interval`, online, beside the pushes and pulls it serves.
/// The lease that says which node runs the scheduled work.
const SCHEDULER_LEASE: &str = "scheduler";

/// Scheduled work (GC, lifecycle) runs on one node at a time: the one holding the scheduler
/// lease, renewed every third of its lifetime. Returns the flag that says whether this node
/// holds it now.
fn spawn_scheduler_lease(
    registry: Arc<Registry>,
    node: String,
    ttl: std::time::Duration,
) -> Arc<std::sync::atomic::AtomicBool> {
    use std::sync::atomic::Ordering;
    let held = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flag = held.clone();
    tokio::spawn(async move {
        loop {
            let holds = match registry.try_lease(SCHEDULER_LEASE, &node, ttl).await {
                Ok(h) => h,
                Err(e) => {
                    // Unsure whether the lease is still ours: stop the scheduled work until it is.
                    tracing::warn!(error = %e, "could not renew the scheduler lease");
                    false
                }
            };
            match (flag.swap(holds, Ordering::SeqCst), holds) {
                (false, true) => tracing::info!(node, "this node runs the scheduled work (GC, lifecycle)"),
                (true, false) => tracing::warn!(node, "this node no longer runs the scheduled work"),
                _ => {}
            }
            tokio::time::sleep(ttl / 3).await;
        }
    });
    held
}

fn spawn_gc_schedule(
    registry: Arc<Registry>,
    interval: std::time::Duration,
    policy: GcPolicy,
    scheduler: Arc<std::sync::atomic::AtomicBool>,
) {
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(interval).await;
            if !scheduler.load(std::sync::atomic::Ordering::SeqCst) {
                continue;
            }
            match registry.gc(berth_meta::now_ms(), policy, false).await {
                Ok(r) => {
                    tracing::info!(
                        blobs_removed = r.blobs_removed,
                        bytes_freed = r.bytes_freed,
                        "garbage collection run"
                    );
                    metrics::counter!("berth_gc_runs_total").increment(1);
                    metrics::counter!("berth_gc_blobs_removed_total").increment(r.blobs_removed + r.unrecorded_removed);
                    metrics::counter!("berth_gc_bytes_freed_total").increment(r.bytes_freed);
                    metrics::counter!("berth_gc_uploads_removed_total").increment(r.uploads_removed);
                }
                Err(e) => tracing::error!(error = %e, "garbage collection failed"),
            }
        }
    });
}

/// Applies every repository's lifecycle policy shortly after start and then every `interval`.
fn spawn_lifecycle_schedule(
    registry: Arc<Registry>,
    interval: std::time::Duration,
    scheduler: Arc<std::sync::atomic::AtomicBool>,
) {
    tokio::spawn(async move {
        tokio::time::sleep(std::time::Duration::from_secs(60).min(interval)).await;
        loop {
            if !scheduler.load(std::sync::atomic::Ordering::SeqCst) {
                // Look again soon: this node may take the lease over.
                tokio::time::sleep(interval.min(std::time::Duration::from_secs(10))).await;
                continue;
            }
            match registry.run_all_lifecycles(berth_meta::now_ms(), false).await {
                Ok(runs) => {
                    let expired: usize = runs.iter().map(|r| r.expired.len()).sum();
                    let archived: usize = runs.iter().map(|r| r.archived.len()).sum();
                    metrics::counter!("berth_lifecycle_runs_total").increment(1);
                    metrics::counter!("berth_lifecycle_images_expired_total").increment(expired as u64);
                    metrics::counter!("berth_lifecycle_images_archived_total").increment(archived as u64);
                    tracing::info!(repositories = runs.len(), expired, archived, "lifecycle run");
                }
                Err(e) => tracing::error!(error = %e, "lifecycle run failed"),
            }
            tokio::time::sleep(interval).await;
        }
    });
}

async fn fsck(config: Config) -> anyhow::Result<ExitCode> {
    let (meta, blobs) = open_stores(&config).await?;
    let registry = Registry::new(meta, Arc::new(blobs), String::new(), master_keys(&config)?);
    let report = registry.fsck().await?;
    registry.close().await;
    for p in &report.problems {
        println!("DAMAGE {p}");
    }
    println!(
        "checked {} blobs ({} bytes) and {} manifests: {} problems, {} stored blobs without a record",
        report.blobs_checked,
        report.bytes_checked,
        report.manifests_checked,
        report.problems.len(),
        report.unrecorded_blobs
    );
    Ok(if report.is_clean() { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}
