//! Opening what a command works on: the master keyring, the metadata and blob stores, the
//! registry with its identity (the first start creates the account and root key), and this
//! node's own files in its data directory.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use berth_meta::{MetaStore, PgMeta, SqliteMeta};
use berth_registry::Registry;
use berth_registry::identity::{Identity, NewRootKey};
use berth_registry::pull_through::UpstreamSettings;
use berth_registry::scan::{ScanSettings, parse_block_severity};
use berth_registry::secrets::MasterKeys;
use berth_store::{BlobStore, FsBlobStore, S3BlobStore, S3Config};

use crate::config::Config;

/// `url` with its password, if any, left out (for messages).
pub(crate) fn redacted(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let userinfo = &url[scheme + 3..at];
            let user = userinfo.split(':').next().unwrap_or("");
            format!("{}{user}{}", &url[..scheme + 3], &url[at..])
        }
        _ => url.to_string(),
    }
}

pub(crate) async fn open_meta(config: &Config) -> anyhow::Result<Arc<dyn MetaStore>> {
    match config.meta.as_deref() {
        None => Ok(Arc::new(
            SqliteMeta::open(&config.data_dir.join("meta.db")).await.context("opening the metadata database")?,
        )),
        Some(url) if config.shared_meta() => {
            let meta = open_postgres(config, url).await?;
            if let Some(source) =
                berth_meta::transfer::unfinished_import(&meta).await.map_err(|e| anyhow::anyhow!("{e}"))?
            {
                anyhow::bail!(
                    "the metadata database {}: an import from {source} (berth migrate) has not finished: run it again \
                     to complete it before starting nodes",
                    redacted(url)
                );
            }
            Ok(Arc::new(meta))
        }
        Some(other) => anyhow::bail!(
            "--meta {:?}: expected a postgres:// URL (or none, for the embedded SQLite store)",
            redacted(other)
        ),
    }
}

/// The PostgreSQL metadata store at `url`, with the configured pool and timeouts.
pub(crate) async fn open_postgres(config: &Config, url: &str) -> anyhow::Result<PgMeta> {
    let timeout = std::time::Duration::from_secs(config.meta_statement_timeout_seconds.max(1));
    PgMeta::open(url, config.meta_max_connections, timeout)
        .await
        .map_err(|e| anyhow::anyhow!("the metadata database {}: {e}", redacted(url)))
}

/// The blob store the configuration names, once it has answered: a bucket that is missing, or
/// credentials it refuses, stop the start before anything is written.
pub(crate) async fn open_blobs(config: &Config) -> anyhow::Result<Arc<dyn BlobStore>> {
    match config.blobs.as_deref() {
        None => Ok(Arc::new(
            FsBlobStore::open(config.data_dir.clone())
                .await
                .context("opening the blob store")?
                .encrypted_at_rest(config.blobs_encrypted_at_rest),
        )),
        Some(_) if config.blobs_encrypted_at_rest => anyhow::bail!(
            "blobs_encrypted_at_rest is for the filesystem store: a bucket that encrypts what it stores is named in its \
             URL (&server_side_encryption=AES256)"
        ),
        Some(url) if url.starts_with("s3://") => {
            let credential = |name: &str| match name {
                "BERTH_S3_ACCESS_KEY_ID" => config.s3_access_key_id.clone(),
                "BERTH_S3_SECRET_ACCESS_KEY" => config.s3_secret_access_key.clone(),
                _ => None,
            };
            let s3 = S3Config::from_url(url, credential).map_err(|e| anyhow::anyhow!("--blobs: {e}"))?;
            let store = S3BlobStore::open(&s3).map_err(|e| anyhow::anyhow!("the blob store {}: {e}", s3.display()))?;
            store.check().await.map_err(|e| anyhow::anyhow!("the blob store {} does not answer: {e}", s3.display()))?;
            Ok(Arc::new(store))
        }
        Some(other) => anyhow::bail!(
            "--blobs {:?}: expected an s3:// URL (or none, for files in the data directory)",
            other.split('?').next().unwrap_or_default()
        ),
    }
}

pub(crate) async fn open_stores(config: &Config) -> anyhow::Result<(Arc<dyn MetaStore>, Arc<dyn BlobStore>)> {
    std::fs::create_dir_all(&config.data_dir)
        .with_context(|| format!("creating data directory {}", config.data_dir.display()))?;
    // The bucket first: a node that cannot reach it should not touch the database either.
    let blobs = open_blobs(config).await?;
    let meta = open_meta(config).await?;
    Ok((meta, blobs))
}

/// Where the master keyring is: the configured file, or `<data-dir>/master.key`.
pub(crate) fn master_key_path(config: &Config) -> PathBuf {
    config.master_key_file.clone().unwrap_or_else(|| config.data_dir.join("master.key"))
}

/// The master keyring. A configured file must exist; the embedded default is generated (0600,
/// never printed) the first time any `berth` command opens the data directory.
pub(crate) fn master_keys(config: &Config) -> anyhow::Result<Arc<MasterKeys>> {
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
pub(crate) async fn open_registry(config: &Config) -> anyhow::Result<(Registry, Identity)> {
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
    let registry = Registry::new(meta, blobs, identity.account_id().to_string(), keys)
        .with_region(identity.region())
        .with_scan_settings(scan_settings(config)?)
        .with_replication_bandwidth(config.replication_max_bytes_per_second.filter(|b| *b > 0))
        .with_upstream_settings(&upstream_settings(config)?)
        .map_err(|e| anyhow::anyhow!("pull_through_ca_bundle: {e}"))?;
    Ok((registry, identity))
}

fn upstream_settings(config: &Config) -> anyhow::Result<UpstreamSettings> {
    let ca_bundle = match &config.pull_through_ca_bundle {
        Some(path) => Some(std::fs::read(path).with_context(|| format!("reading {}", path.display()))?),
        None => None,
    };
    // Blobs being fetched are spooled under the data directory; what a killed process left
    // there is removed at start.
    let spool_dir = config.data_dir.join("pull-through-spool");
    let _ = std::fs::remove_dir_all(&spool_dir);
    std::fs::create_dir_all(&spool_dir).with_context(|| format!("creating {}", spool_dir.display()))?;
    Ok(UpstreamSettings {
        allow_plain_http: config.pull_through_allow_plain_http,
        ca_bundle,
        spool_dir: Some(spool_dir),
    })
}

pub(crate) fn scan_settings(config: &Config) -> anyhow::Result<ScanSettings> {
    let pull_block_default = match &config.scan_pull_block_severity {
        Some(s) => parse_block_severity(s).map_err(|e| anyhow::anyhow!("scan_pull_block_severity: {e}"))?,
        None => None,
    };
    // rpm databases are spooled in memory now; the directory earlier versions spooled them to
    // (in clear) goes.
    let _ = std::fs::remove_dir_all(config.data_dir.join("scan-spool"));
    Ok(ScanSettings { attach_sbom: config.scan_attach_sbom, pull_block_default })
}

/// This node's stable name in the scan queue's claims: made once per data directory.
pub(crate) fn node_id(config: &Config) -> anyhow::Result<String> {
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

/// Shows a newly created root key once and keeps it in a 0600 file in the data directory.
pub(crate) fn announce_root_key(config: &Config, account: &str, key: &NewRootKey) -> anyhow::Result<()> {
    let path = config.data_dir.join("admin-credentials");
    let text = format!(
        "# Berth account {account} root key, created at first start. AWS shared-credentials format.\n[berth]\naws_access_key_id = {}\naws_secret_access_key = {}\nregion = {}\n",
        key.access_key_id, key.secret_access_key, config.region
    );
    write_private_file(&path, text.as_bytes())?;
    eprintln!(
        "berth: created the root access key of account {account} (shown once; also in {}):\n  AWS_ACCESS_KEY_ID={}\n  AWS_SECRET_ACCESS_KEY={}",
        path.display(),
        key.access_key_id,
        key.secret_access_key
    );
    Ok(())
}

/// Writes a file only its owner may read (it holds secrets, sealed or not), durably.
pub(crate) fn write_private_file(path: &std::path::Path, data: &[u8]) -> anyhow::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("writing {}", path.display()))?;
    f.write_all(data)?;
    f.sync_all()?;
    Ok(())
}

/// The data directory's lock: held by `berth serve` for its lifetime and by an offline
/// `berth gc`, because GC's exclusion of concurrent uploads is in-process (see gc.rs).
pub(crate) fn lock_data_dir(config: &Config) -> anyhow::Result<std::fs::File> {
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
