//! `berth`: a self-hosted registry with the Amazon ECR API.

use std::io::IsTerminal;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use berth_registry::scan::Scanner;
use berth_registry::{GcPolicy, Registry};
use clap::{Args, Parser, Subcommand};

/// mimalloc keeps freed pages mapped for reuse; with glibc's allocator every large request
/// buffer was a fresh mmap, and page faults plus zeroing raised upload CPU from 1.25 to 1.6 s/GB.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

mod admin;
mod admin_socket;
mod config;
mod http;
mod listener;
mod migrate;
mod schedule;
mod stores;
mod tls;

use admin::AdminCommand;
use config::{Config, Overrides};
use schedule::{
    SCHEDULER_LEASE, spawn_gc_schedule, spawn_keyring_reload_on_sighup, spawn_lifecycle_schedule, spawn_scheduler_lease,
};
use stores::{lock_data_dir, master_keys, node_id, open_registry, open_stores};

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
    /// The host[:port] clients pull from, as image signatures name it [default: the listen
    /// address].
    #[arg(long, global = true)]
    registry_host: Option<String>,
    /// The public registry's host name (ECR Public, as `public.ecr.aws` is AWS's) [default:
    /// ECR Public is off].
    #[arg(long, global = true)]
    public_host: Option<String>,
    /// The metadata store: a PostgreSQL URL [default: the embedded SQLite file in the data
    /// directory].
    #[arg(long, global = true)]
    meta: Option<String>,
    /// The blob store: an S3 URL, `s3://bucket[/prefix]?endpoint=…&region=…` [default: files
    /// in the data directory].
    #[arg(long, global = true)]
    blobs: Option<String>,
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
    /// Image replication (works while serving).
    Replication {
        #[command(subcommand)]
        command: ReplicationCommand,
    },
    /// Seal what was stored before Berth encrypted at rest: every blob and manifest stored as
    /// sent, verified against its digest on the way (asks the running server; resumable: run
    /// it again after an interruption).
    Encrypt,
    /// Copy this (stopped) embedded data directory into PostgreSQL and S3: every table and
    /// every blob, verified; run it again to resume an interrupted copy.
    Migrate {
        /// The PostgreSQL metadata store to copy into (an empty database).
        #[arg(long)]
        to_meta: String,
        /// The S3 blob store to copy into, `s3://bucket[/prefix]?endpoint=…&region=…`.
        #[arg(long)]
        to_blobs: String,
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
enum ReplicationCommand {
    /// The replication queue per destination: jobs waiting (queued, or retrying after a
    /// failure), running on a node, complete and failed.
    Status,
    /// The replications that ended (COMPLETE or FAILED), oldest first: the image, the
    /// destination, the failure code, the tags sent and the immutable ones left out.
    Events {
        /// Only this repository's (of the account `--account-id` names, else the default one).
        #[arg(long)]
        repository: Option<String>,
        /// Only events after this id (the last one a listing showed).
        #[arg(long, default_value_t = 0)]
        after: i64,
        #[arg(long, default_value_t = 100)]
        limit: u32,
    },
    /// Queue the account's images that the replication rules cover but that never reached a
    /// destination (pushed before a rule existed, or failed): ECR replicates only new pushes.
    /// The running server does the copies; `--wait` shows their progress until none is left.
    Backfill {
        /// Only repositories whose name starts with this.
        #[arg(long)]
        repository_prefix: Option<String>,
        #[arg(long)]
        wait: bool,
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

fn main() -> ExitCode {
    let mut cli = Cli::parse();
    if let Some(Command::Admin { command }) = &mut cli.command
        && let Err(e) = admin::take_peer_region(command, &mut cli.common.region)
    {
        eprintln!("berth: {e}");
        return ExitCode::from(2);
    }
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
        blobs: cli.common.blobs.clone(),
        registry_host: cli.common.registry_host.clone(),
        public_host: cli.common.public_host.clone(),
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
            Command::Encrypt => encrypt(config).await,
            Command::Migrate { to_meta, to_blobs } => migrate::migrate(config, to_meta, to_blobs).await,
            Command::Admin { command } => admin::admin(config, command).await.map(|_| ExitCode::SUCCESS),
            Command::Vulndb { command } => vulndb(config, command).await.map(|_| ExitCode::SUCCESS),
            Command::Replication { command } => replication(config, command).await.map(|_| ExitCode::SUCCESS),
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

/// `berth replication status`: the queue per destination, as JSON.
async fn replication(config: Config, command: ReplicationCommand) -> anyhow::Result<()> {
    let (meta, blobs) = open_stores(&config).await?;
    let account = admin::admin_account(&config, &meta).await?;
    let default = meta.first_account().await?.unwrap_or_else(|| account.clone());
    let registry =
        Registry::new(meta.clone(), blobs, default.clone(), master_keys(&config)?).with_region(&config.region);
    let out = match command {
        ReplicationCommand::Status => {
            let queue = registry.replication_queue().await?;
            let rows: Vec<_> = queue
                .iter()
                .map(|(t, c)| {
                    serde_json::json!({ "region": t.region, "registryId": t.registry_id, "waiting": c.waiting,
                        "running": c.running, "complete": c.complete, "failed": c.failed })
                })
                .collect();
            serde_json::json!(rows)
        }
        ReplicationCommand::Events { repository, after, limit } => {
            let key = repository.map(|r| berth_registry::repositories::repository_key(&default, &account, &r));
            let events = registry.replication_events(key.as_deref(), after, limit).await?;
            let rows: Vec<_> = events
                .iter()
                .map(|e| {
                    serde_json::json!({ "id": e.id, "at": berth_iam::format_iso8601(e.at / 1000),
                        "repository": e.repository, "digest": e.digest, "region": e.target.region,
                        "registryId": e.target.registry_id, "action": e.action.as_str(), "status": e.status.as_str(),
                        "failureCode": e.failure_code, "tags": e.tags, "droppedTags": e.dropped_tags })
                })
                .collect();
            serde_json::json!(rows)
        }
        ReplicationCommand::Backfill { repository_prefix, wait } => {
            let jobs = registry.backfill_replication(&account, repository_prefix.as_deref()).await?;
            eprintln!("queued {} replications", jobs.len());
            let mut counts = serde_json::json!({ "queued": jobs.len() });
            if wait {
                loop {
                    let (complete, failed, waiting) = backfill_progress(&registry, &jobs).await?;
                    counts = serde_json::json!({ "queued": jobs.len(), "complete": complete, "failed": failed,
                        "waiting": waiting });
                    eprintln!("{counts}");
                    if waiting == 0 {
                        break;
                    }
                    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
                }
            }
            counts["jobs"] = serde_json::json!(jobs);
            counts
        }
    };
    meta.close().await;
    println!("{}", serde_json::to_string_pretty(&out)?);
    Ok(())
}

/// How many of a backfill's jobs are complete, failed, and still waiting or running.
async fn backfill_progress(
    registry: &Registry,
    jobs: &[berth_registry::replication::backfill::BackfillJob],
) -> anyhow::Result<(usize, usize, usize)> {
    let (mut complete, mut failed, mut waiting) = (0, 0, 0);
    for job in jobs {
        let digest = berth_oci::Digest::parse(&job.digest).map_err(|e| anyhow::anyhow!("{e}"))?;
        let status = registry
            .image_replications(&job.repository, &digest)
            .await?
            .into_iter()
            .find(|r| r.target.region == job.region && r.target.registry_id == job.registry_id)
            .map(|r| r.status);
        match status {
            Some(berth_meta::ReplicationStatus::Complete) => complete += 1,
            Some(berth_meta::ReplicationStatus::Failed) => failed += 1,
            _ => waiting += 1,
        }
    }
    Ok((complete, failed, waiting))
}

async fn vulndb(config: Config, command: VulndbCommand) -> anyhow::Result<()> {
    let (meta, blobs) = open_stores(&config).await?;
    let registry = Registry::new(meta, blobs, String::new(), master_keys(&config)?);
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
    // Every node runs the replication queue; a job is claimed by one of them.
    tokio::spawn(registry.clone().run_replication_queue(node.clone(), std::time::Duration::from_secs(2)));
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
    tokio::spawn(authorizer.clone().follow_changes());
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
    registry.set_registry_host(config.registry_host.as_deref().unwrap_or(&addr.to_string()));
    if let Some(host) = &config.public_host {
        registry.set_public_host(berth_registry::public::PublicHost {
            name: host.clone(),
            anonymous_bytes_per_month: config.public_anonymous_bytes_per_month,
        });
    }
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
    let registry_id = admin::admin_account(&config, &meta).await?;
    let registry = Registry::new(meta, blobs, registry_id, master_keys(&config)?);
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
    let registry = Registry::new(meta, blobs, String::new(), master_keys(&config)?);
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

/// `berth encrypt`: the running server seals what is stored as sent; progress on stderr, the
/// report on stdout; failure if any blob could not be sealed.
async fn encrypt(config: Config) -> anyhow::Result<ExitCode> {
    let report = admin_socket::request_with_progress(&config.data_dir, serde_json::json!({ "op": "encrypt" }), |p| {
        eprintln!(
            "blobs: {} checked, {} sealed ({} bytes), {} already protected; manifests: {} sealed",
            p["blobsChecked"], p["blobsSealed"], p["bytesSealed"], p["blobsAlreadyProtected"], p["manifestsSealed"]
        );
    })
    .await?;
    println!("{}", serde_json::to_string_pretty(&report)?);
    let problems = report["problems"].as_array().map_or(0, Vec::len);
    Ok(if problems == 0 { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

async fn fsck(config: Config) -> anyhow::Result<ExitCode> {
    let (meta, blobs) = open_stores(&config).await?;
    let registry = Registry::new(meta, blobs, String::new(), master_keys(&config)?);
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
