//! `berth migrate --to-meta URL --to-blobs URL`: copies a stopped embedded data directory (its
//! SQLite metadata and blob files) into PostgreSQL and an S3 bucket — every table, rows as
//! stored (sealed secrets stay sealed under the same master keyring), every recorded blob
//! verified against its digest on the way. Run it again after an interruption: it carries on
//! where the last run stopped. Nodes refuse to start on the database until it has finished.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use berth_meta::transfer::{self, NOT_CARRIED, TableProgress};
use berth_meta::{GcStore, MetaStore, SqliteMeta};
use berth_oci::Digest;
use berth_registry::transfer::{BlobCopy, Stored, copy_blob};
use berth_store::{BlobStore, FsBlobStore};
use futures_util::StreamExt;
use indicatif::{ProgressBar, ProgressStyle};

use crate::config::Config;
use crate::stores::{lock_data_dir, master_key_path, open_blobs, open_postgres, redacted};

/// Blobs copied at once: S3 latency, not bandwidth, bounds one copy of a small blob.
const BLOB_COPIES: usize = 4;

/// How the source stores a blob recorded as `size` plaintext bytes: sealed (with as many
/// layers as its data keys have) when it has data keys, else as sent.
async fn stored_as(meta: &SqliteMeta, digest: &Digest, size: u64) -> anyhow::Result<Stored> {
    use berth_meta::ContentStore;
    let keys = meta.blob_keys(digest).await.map_err(|e| anyhow::anyhow!("{e}"))?;
    Ok(match keys.first() {
        Some(k) => Stored::sealed(k.layers, size),
        None => Stored::AsSent(size),
    })
}

pub(crate) async fn migrate(config: Config, to_meta: String, to_blobs: String) -> anyhow::Result<ExitCode> {
    if config.meta.is_some() || config.blobs.is_some() {
        anyhow::bail!(
            "berth migrate reads the embedded stores of --data-dir: name the targets with --to-meta and --to-blobs, \
             not --meta/--blobs"
        );
    }
    let target = Config { meta: Some(to_meta.clone()), blobs: Some(to_blobs), ..config.clone() };
    if !target.shared_meta() {
        anyhow::bail!("--to-meta {:?}: expected a postgres:// URL", redacted(&to_meta));
    }
    let db_path = config.data_dir.join("meta.db");
    if !db_path.exists() {
        anyhow::bail!("{} holds no Berth data (no meta.db)", config.data_dir.display());
    }
    // A running server would go on changing what is being copied.
    let _lock = lock_data_dir(&config)?;
    let source_name = std::fs::canonicalize(&config.data_dir)?.display().to_string();
    let from_meta = SqliteMeta::open(&db_path).await.context("opening the embedded metadata database")?;
    let from_blobs = FsBlobStore::open(config.data_dir.clone()).await.context("opening the blob files")?;
    let to_blobs = open_blobs(&target).await?;
    let to_meta = open_postgres(&target, &to_meta).await?;

    transfer::begin(&from_meta, &to_meta, &source_name).await.map_err(|e| anyhow::anyhow!("{e}"))?;

    let bar = ProgressBar::new(0).with_style(
        ProgressStyle::with_template("{msg:>30} [{bar:30}] {pos}/{len} rows").expect("template").progress_chars("=> "),
    );
    let tables = {
        let bar = bar.clone();
        let mut on_progress = move |p: TableProgress<'_>| match p {
            TableProgress::Started { table, rows } => {
                if bar.is_hidden() {
                    eprintln!("copying {table}: {rows} rows");
                }
                bar.reset();
                bar.set_length(rows);
                bar.set_message(table.to_string());
            }
            TableProgress::Rows(n) => bar.inc(n),
        };
        transfer::copy_tables(&from_meta, &to_meta, &mut on_progress).await.map_err(|e| anyhow::anyhow!("{e}"))?
    };
    bar.finish_and_clear();

    let recorded = from_meta.all_blobs().await.map_err(|e| anyhow::anyhow!("{e}"))?;
    let total: u64 = recorded.iter().map(|(_, s)| *s as u64).sum();
    if ProgressBar::new(0).is_hidden() {
        eprintln!("copying {} blobs ({total} bytes)", recorded.len());
    }
    let bytes_bar = ProgressBar::new(total).with_style(
        ProgressStyle::with_template("{msg:>30} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}")
            .expect("template")
            .progress_chars("=> "),
    );
    bytes_bar.set_message("blobs");
    bytes_bar.enable_steady_tick(Duration::from_millis(200));
    let outcomes: Vec<(String, anyhow::Result<BlobCopy>)> = {
        let on_bytes: Arc<dyn Fn(u64) + Send + Sync> = {
            let bar = bytes_bar.clone();
            Arc::new(move |n| bar.inc(n))
        };
        let (from, to) = (&from_blobs as &dyn BlobStore, to_blobs.as_ref());
        futures_util::stream::iter(recorded.iter())
            .map(|(digest, size)| {
                let on_bytes = on_bytes.clone();
                let from_meta = &from_meta;
                async move {
                    let outcome = match Digest::parse(digest) {
                        Ok(d) => match stored_as(from_meta, &d, *size as u64).await {
                            Ok(stored) => copy_blob(from, to, &d, stored, on_bytes).await.map_err(anyhow::Error::from),
                            Err(e) => Err(e),
                        },
                        Err(e) => Ok(BlobCopy::Damaged(format!("an invalid digest: {e}"))),
                    };
                    (digest.clone(), outcome)
                }
            })
            .buffer_unordered(BLOB_COPIES)
            .collect()
            .await
    };
    bytes_bar.finish_and_clear();

    let (mut copied, mut copied_bytes, mut present) = (0u64, 0u64, 0u64);
    let mut problems = Vec::new();
    for (digest, outcome) in outcomes {
        match outcome {
            Ok(BlobCopy::Copied(n)) => {
                copied += 1;
                copied_bytes += n;
            }
            Ok(BlobCopy::Present) => present += 1,
            Ok(BlobCopy::Missing) => {
                problems.push(format!("blob {digest}: recorded, but not in the source's blob files"))
            }
            Ok(BlobCopy::Damaged(why)) => problems.push(format!("blob {digest}: {why}")),
            Err(e) => problems.push(format!("blob {digest}: copying failed: {e:#}")),
        }
    }
    for t in &tables {
        if t.target_rows.is_some_and(|n| n != t.source_rows) {
            problems.push(format!(
                "table {}: {} rows in the source, {:?} in PostgreSQL",
                t.table, t.source_rows, t.target_rows
            ));
        }
    }

    println!("{:<32} {:>10} {:>10} {:>10}", "table", "embedded", "postgres", "copied now");
    for t in &tables {
        match t.target_rows {
            Some(n) => println!("{:<32} {:>10} {:>10} {:>10}", t.table, t.source_rows, n, t.copied),
            None => {
                let why = NOT_CARRIED.iter().find(|(n, _)| *n == t.table).map(|(_, w)| *w).unwrap_or_default();
                println!("{:<32} {:>10} {:>10} {:>10}  not carried: {why}", t.table, t.source_rows, "-", "-");
            }
        }
    }
    println!(
        "blobs: {} recorded, {copied} copied now ({copied_bytes} bytes), {present} there already, {} problems",
        recorded.len(),
        problems.iter().filter(|p| p.starts_with("blob ")).count()
    );
    for p in &problems {
        println!("PROBLEM {p}");
    }
    from_meta.close().await;
    if !problems.is_empty() {
        eprintln!(
            "berth: the import is not finished and nodes refuse to start on the database: mend the source \
             (`berth fsck --data-dir {}`) or the connection, and run berth migrate again",
            config.data_dir.display()
        );
        return Ok(ExitCode::FAILURE);
    }
    transfer::finish(&to_meta, &source_name).await.map_err(|e| anyhow::anyhow!("{e}"))?;
    to_meta.close().await;
    eprintln!(
        "berth: migrated. Start every node with --meta and --blobs naming these stores and --master-key-file naming a \
         copy of {} (the keyring that seals the copied secrets).",
        master_key_path(&config).display()
    );
    Ok(ExitCode::SUCCESS)
}
