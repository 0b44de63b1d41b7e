//! Importing OSV data into the vulnerability database: zip files as osv.dev publishes them
//! (`<Ecosystem>/all.zip`), directories of record files (searched recursively, zips inside
//! included) or single `.json` records. Records are read on a blocking thread and written in
//! batches, one transaction each; a record whose `modified` is unchanged is left alone, so a
//! re-import only rewrites what changed, and the database version goes up only if something did.

use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};

use berth_meta::{VulnDbState, VulnRecord};
use berth_vuln::Record;
use berth_vuln::image::record_keys;

use crate::{Registry, RegistryError};

const BATCH: usize = 1000;
/// Largest single record file accepted (real records are kilobytes).
const MAX_RECORD: u64 = 16 << 20;

/// Progress of an import, reported after each batch and at the end of each source.
#[derive(Debug, Clone, Default)]
pub struct ImportProgress {
    pub source: String,
    pub read: u64,
    pub changed: u64,
    pub skipped: u64,
}

enum Item {
    Record(VulnRecord),
    Skipped(String),
    SourceDone(String),
}

fn to_record(bytes: &[u8]) -> Result<VulnRecord, String> {
    let record = Record::from_slice(bytes).map_err(|e| e.to_string())?;
    if record.id.trim().is_empty() {
        return Err("no id".into());
    }
    let json = String::from_utf8(bytes.to_vec()).map_err(|e| e.to_string())?;
    Ok(VulnRecord {
        keys: record_keys(&record),
        modified: record.modified.clone().unwrap_or_default(),
        id: record.id,
        json,
    })
}

fn send_bytes(tx: &tokio::sync::mpsc::Sender<Item>, name: &str, bytes: &[u8]) -> bool {
    let item = match to_record(bytes) {
        Ok(r) => Item::Record(r),
        Err(e) => Item::Skipped(format!("{name}: {e}")),
    };
    tx.blocking_send(item).is_ok()
}

fn read_zip(tx: &tokio::sync::mpsc::Sender<Item>, path: &Path) -> Result<(), String> {
    let file = File::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut zip = zip::ZipArchive::new(file).map_err(|e| format!("{}: {e}", path.display()))?;
    for i in 0..zip.len() {
        let mut entry = zip.by_index(i).map_err(|e| format!("{}: {e}", path.display()))?;
        let entry_name = entry.name().map_err(|e| format!("{}: {e}", path.display()))?.into_owned();
        if !entry.is_file() || !entry_name.ends_with(".json") {
            continue;
        }
        let name = format!("{}:{entry_name}", path.display());
        if entry.size() > MAX_RECORD {
            if tx.blocking_send(Item::Skipped(format!("{name}: too large"))).is_err() {
                return Ok(());
            }
            continue;
        }
        let mut bytes = Vec::with_capacity(entry.size() as usize);
        entry.read_to_end(&mut bytes).map_err(|e| format!("{name}: {e}"))?;
        if !send_bytes(tx, &name, &bytes) {
            return Ok(());
        }
    }
    Ok(())
}

fn read_source(tx: &tokio::sync::mpsc::Sender<Item>, path: &Path) -> Result<(), String> {
    let meta = std::fs::metadata(path).map_err(|e| format!("{}: {e}", path.display()))?;
    if meta.is_dir() {
        let mut entries: Vec<PathBuf> = std::fs::read_dir(path)
            .map_err(|e| format!("{}: {e}", path.display()))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .collect();
        entries.sort();
        for p in entries {
            // Links to directories inside a tree are not followed (a link loop would never end).
            if std::fs::symlink_metadata(&p).is_ok_and(|m| m.file_type().is_symlink()) && p.is_dir() {
                continue;
            }
            let is_data = p.is_dir() || p.extension().is_some_and(|e| e == "json" || e == "zip");
            if is_data {
                read_source(tx, &p)?;
            }
        }
        Ok(())
    } else if path.extension().is_some_and(|e| e == "zip") {
        read_zip(tx, path)
    } else {
        if meta.len() > MAX_RECORD {
            let _ = tx.blocking_send(Item::Skipped(format!("{}: too large", path.display())));
            return Ok(());
        }
        let bytes = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
        send_bytes(tx, &path.display().to_string(), &bytes);
        Ok(())
    }
}

impl Registry {
    /// The vulnerability database's version and last import.
    pub async fn vulndb_state(&self) -> Result<berth_meta::VulnDbState, RegistryError> {
        Ok(self.meta().vulndb_state().await?)
    }

    /// Imports OSV records from `paths`, calling `progress` as it goes. Unreadable records are
    /// skipped (and counted); an unreadable source stops the import with an error, after the
    /// batches already written (which stay: each is a complete set of records).
    pub async fn import_vulndb(
        &self,
        paths: Vec<PathBuf>,
        mut progress: impl FnMut(&ImportProgress, Option<&str>),
    ) -> Result<VulnDbState, RegistryError> {
        let (tx, mut rx) = tokio::sync::mpsc::channel::<Item>(4 * BATCH);
        let reader = tokio::task::spawn_blocking(move || {
            for p in &paths {
                read_source(&tx, p)?;
                if tx.blocking_send(Item::SourceDone(p.display().to_string())).is_err() {
                    break;
                }
            }
            Ok::<(), String>(())
        });
        let mut total_changed = 0;
        let mut current = ImportProgress::default();
        let mut batch = Vec::with_capacity(BATCH);
        while let Some(item) = rx.recv().await {
            match item {
                Item::Record(r) => {
                    batch.push(r);
                    current.read += 1;
                    if batch.len() == BATCH {
                        current.changed += self.meta().vulndb_put(&batch).await?;
                        batch.clear();
                        progress(&current, None);
                    }
                }
                Item::Skipped(why) => {
                    current.skipped += 1;
                    progress(&current, Some(&why));
                }
                Item::SourceDone(source) => {
                    current.changed += self.meta().vulndb_put(&batch).await?;
                    batch.clear();
                    current.source = source;
                    progress(&current, None);
                    total_changed += current.changed;
                    current = ImportProgress::default();
                }
            }
        }
        let read = reader.await.map_err(|e| RegistryError::Internal(e.to_string()));
        if !batch.is_empty() {
            total_changed += self.meta().vulndb_put(&batch).await?;
        }
        // Whatever stopped the import, what was written counts: the version moves with it.
        let state = self.meta().vulndb_finish_import(total_changed + current.changed).await?;
        let read = read?;
        read.map_err(|e| RegistryError::Internal(format!("import stopped: {e}")))?;
        self.wake_scanner();
        Ok(state)
    }
}
