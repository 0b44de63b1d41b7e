//! The embedded metadata store: SQLite in WAL mode with `synchronous=FULL` (a commit is on disk
//! before it is acknowledged), one writer connection and a pool of readers. One module per
//! role (`crate::roles`); the row and statement helpers they share are here.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use async_trait::async_trait;
use berth_oci::{Algorithm, Digest};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Row, Sqlite, Transaction};

use crate::roles::*;
use crate::{
    AccessKey, CreationTemplate, Group, IdentityPolicySource, ImageFilter, ImageRecord, ImageScan, KeyChange, KeyUse,
    LifecycleEvent, ManagedPolicy, ManifestReferences, ManifestSummary, MetaError, MetaStore, NewManifest, Principal,
    PrincipalKind, PullGate, Repository, RepositorySettings, Result, ScanJob, ScanOutcome, SealedKind, StatusFilter,
    StoredManifest, StoredSecret, TagFilter, Upload, VulnDbState, VulnRecord, now_ms,
};
use crate::{ActionKind, EncryptionType, PullBlock, ScanStatus, ScanType, TagMutabilityMode};

mod accounts;
mod content;
mod gc;
mod iam;
mod lifecycle;
/// SQL with `{unreferenced}` standing for "no manifest of its repository references the link
/// `<link>`"; the template and the table name are always literals of ours.
mod repositories;
mod scans;

fn unreferenced_sql(template: &str, link: &str) -> sqlx::AssertSqlSafe<String> {
    let cond = format!(
        "NOT EXISTS (SELECT 1 FROM manifest_references mr WHERE mr.repository_id = {link}.repository_id \
         AND mr.child_digest = {link}.digest AND mr.child_kind = 'blob')"
    );
    sqlx::AssertSqlSafe(template.replace("{unreferenced}", &cond))
}

const REPOSITORY_COLUMNS: &str = "id, name, created_at, tag_mutability, tag_mutability_exclusions, scan_on_push, encryption_type, kms_key, \
     pull_block_severity";

/// SQL naming the repository columns as `{cols}`; the template is always a literal of ours.
fn repo_sql(template: &str) -> sqlx::AssertSqlSafe<String> {
    sqlx::AssertSqlSafe(template.replace("{cols}", REPOSITORY_COLUMNS))
}

fn repository_from_row(r: &sqlx::sqlite::SqliteRow) -> Result<Repository> {
    let exclusions: String = r.get(4);
    Ok(Repository {
        id: r.get(0),
        name: r.get(1),
        created_at: r.get(2),
        settings: RepositorySettings {
            tag_mutability: stored("tag mutability", &r.get::<String, _>(3), TagMutabilityMode::parse)?,
            tag_mutability_exclusions: serde_json::from_str(&exclusions)
                .map_err(|e| MetaError::Backend(format!("stored exclusion filters: {e}")))?,
            scan_on_push: r.get(5),
            encryption_type: stored("encryption type", &r.get::<String, _>(6), EncryptionType::parse)?,
            kms_key: r.get(7),
            pull_block_severity: r
                .get::<Option<String>, _>(8)
                .map(|s| stored("pull policy", &s, |s| PullBlock::parse(s).ok()))
                .transpose()?,
        },
    })
}

fn principal_from_row(r: &sqlx::sqlite::SqliteRow, offset: usize) -> Principal {
    let kind: String = r.get(offset + 3);
    Principal {
        id: r.get(offset),
        account_id: r.get(offset + 1),
        name: r.get(offset + 2),
        kind: if kind == "root" { PrincipalKind::Root } else { PrincipalKind::User },
        created_at: r.get(offset + 4),
    }
}

fn managed_policy_from_row(r: &sqlx::sqlite::SqliteRow) -> ManagedPolicy {
    ManagedPolicy {
        arn: r.get(0),
        id: r.get(1),
        account_id: r.get(2),
        name: r.get(3),
        path: r.get(4),
        document: r.get(5),
        created_at: r.get(6),
        updated_at: r.get(7),
    }
}

/// The columns `access_key_from_row` reads, in order.
const ACCESS_KEY_COLUMNS: &str = "k.access_key_id, k.principal_id, k.sealed_secret, k.status, k.created_at, k.last_used_at, k.last_used_service, k.last_used_region";

fn access_key_from_row(r: &sqlx::sqlite::SqliteRow) -> AccessKey {
    let status: String = r.get(3);
    let last_used_at: Option<i64> = r.get(5);
    AccessKey {
        access_key_id: r.get(0),
        principal_id: r.get(1),
        sealed_secret: r.get(2),
        active: status == "Active",
        created_at: r.get(4),
        last_used: last_used_at.map(|at| KeyUse {
            at,
            service: r.get::<Option<String>, _>(6).unwrap_or_default(),
            region: r.get::<Option<String>, _>(7).unwrap_or_default(),
        }),
    }
}

fn is_unique_violation(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(d) if d.is_unique_violation())
}

fn template_from_row(r: (String, String, i64, i64)) -> CreationTemplate {
    CreationTemplate { prefix: r.0, body: r.1, created_at: r.2, updated_at: r.3 }
}

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

pub struct SqliteMeta {
    writer: SqlitePool,
    reader: SqlitePool,
}

/// A stored spelling of an enum, or a backend error naming what could not be read.
fn stored<T>(what: &str, text: &str, parse: impl FnOnce(&str) -> Option<T>) -> Result<T> {
    parse(text).ok_or_else(|| MetaError::Backend(format!("stored {what} {text:?} is not one Berth knows")))
}

fn image_scan_from_row(r: &sqlx::sqlite::SqliteRow, with_findings: bool) -> Result<ImageScan> {
    Ok(ImageScan {
        digest: r.get(0),
        scan_type: stored("scan type", &r.get::<String, _>(1), ScanType::parse)?,
        status: stored("scan status", &r.get::<String, _>(2), ScanStatus::parse)?,
        description: r.get(3),
        queued_at: r.get(4),
        completed_at: r.get(5),
        vulndb_version: r.get(6),
        vulndb_updated_at: r.get(7),
        findings: if with_findings { r.get(8) } else { None },
        counts: r.get(9),
    })
}

fn backend(e: sqlx::Error) -> MetaError {
    // SQLITE_FULL (13): "database or disk is full".
    let full = match &e {
        sqlx::Error::Database(d) => d.code().is_some_and(|c| c == "13"),
        sqlx::Error::Io(io) => matches!(io.kind(), std::io::ErrorKind::StorageFull | std::io::ErrorKind::QuotaExceeded),
        _ => false,
    };
    if full { MetaError::StorageFull(e.to_string()) } else { MetaError::Backend(e.to_string()) }
}

fn parse_digest(s: String) -> Result<Digest> {
    Digest::parse(&s).map_err(|e| MetaError::Backend(format!("stored digest {s:?} is invalid: {e}")))
}

fn filter_code(f: TagFilter) -> i64 {
    match f {
        TagFilter::Any => 0,
        TagFilter::Tagged => 1,
        TagFilter::Untagged => 2,
    }
}

fn status_code(f: StatusFilter) -> i64 {
    match f {
        StatusFilter::Any => 0,
        StatusFilter::Active => 1,
        StatusFilter::Archived => 2,
        StatusFilter::Activating => 3,
    }
}

/// SQL condition on `m` (a manifests row) for a `status_code` bound as `$n`.
fn status_condition(n: usize) -> String {
    format!("(${n} = 0 OR (${n} = 1 AND m.storage_class = 'STANDARD') OR (${n} = 2 AND m.storage_class = 'ARCHIVE'))")
}

impl SqliteMeta {
    /// Completes a page of manifest rows (digest, media type, artifact type, subject, pushed at,
    /// last pulled at, repository id; in digest order) with their tags, referenced bytes and
    /// children: three range queries over the page's digest span, not three per image.
    async fn images_from_rows(&self, rows: &[sqlx::sqlite::SqliteRow]) -> Result<Vec<ImageRecord>> {
        let (Some(first), Some(last)) = (rows.first(), rows.last()) else { return Ok(Vec::new()) };
        let repository_id: i64 = first.get(6);
        let (lo, hi): (String, String) = (first.get(0), last.get(0));
        let tags = sqlx::query_as::<_, (String, String)>(
            "SELECT digest, tag FROM tags WHERE repository_id = $1 AND digest >= $2 AND digest <= $3 ORDER BY digest, tag",
        )
        .bind(repository_id)
        .bind(&lo)
        .bind(&hi)
        .fetch_all(&self.reader)
        .await
        .map_err(backend)?;
        let sizes = sqlx::query_as::<_, (String, i64)>(
            "SELECT mr.manifest_digest, SUM(b.size) FROM manifest_references mr JOIN blobs b ON b.digest = mr.child_digest \
             WHERE mr.repository_id = $1 AND mr.child_kind = 'blob' AND mr.manifest_digest >= $2 AND mr.manifest_digest <= $3 \
             GROUP BY mr.manifest_digest",
        )
        .bind(repository_id)
        .bind(&lo)
        .bind(&hi)
        .fetch_all(&self.reader)
        .await
        .map_err(backend)?;
        let children = sqlx::query_as::<_, (String, String)>(
            "SELECT manifest_digest, child_digest FROM manifest_references WHERE repository_id = $1 \
             AND child_kind = 'manifest' AND manifest_digest >= $2 AND manifest_digest <= $3 ORDER BY manifest_digest, child_digest",
        )
        .bind(repository_id)
        .bind(&lo)
        .bind(&hi)
        .fetch_all(&self.reader)
        .await
        .map_err(backend)?;
        let mut tags_of: std::collections::HashMap<String, Vec<String>> = std::collections::HashMap::new();
        for (d, t) in tags {
            tags_of.entry(d).or_default().push(t);
        }
        let size_of: std::collections::HashMap<String, i64> = sizes.into_iter().collect();
        let mut children_of: std::collections::HashMap<String, Vec<String>> = std::collections::HashMap::new();
        for (d, c) in children {
            children_of.entry(d).or_default().push(c);
        }
        Ok(rows
            .iter()
            .map(|row| {
                let digest: String = row.get(0);
                ImageRecord {
                    tags: tags_of.remove(&digest).unwrap_or_default(),
                    blob_bytes: size_of.get(&digest).copied().unwrap_or(0),
                    children: children_of.remove(&digest).unwrap_or_default(),
                    media_type: row.get(1),
                    artifact_type: row.get(2),
                    subject: row.get(3),
                    pushed_at: row.get(4),
                    last_pulled_at: row.get(5),
                    archived: row.get::<String, _>(7) == "ARCHIVE",
                    last_archived_at: row.get(8),
                    last_activated_at: row.get(9),
                    digest,
                }
            })
            .collect())
    }

    /// Opens (creating if needed) the database file and applies pending migrations.
    pub async fn open(path: &Path) -> Result<Self> {
        let options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .foreign_keys(true)
            // Deleted rows (an old sealed secret, a deleted key) are overwritten, not left in
            // free pages.
            .pragma("secure_delete", "ON")
            .busy_timeout(Duration::from_secs(10));
        let writer =
            SqlitePoolOptions::new().max_connections(1).connect_with(options.clone()).await.map_err(backend)?;
        MIGRATOR.run(&writer).await.map_err(|e| MetaError::Backend(e.to_string()))?;
        let reader =
            SqlitePoolOptions::new().max_connections(8).connect_with(options.read_only(true)).await.map_err(backend)?;
        Ok(SqliteMeta { writer, reader })
    }
}

/// The digests (each once) for which `exists_sql` ($1 repository id, $2 digest) finds no row.
async fn missing(
    tx: &mut Transaction<'_, Sqlite>,
    exists_sql: &'static str,
    repository_id: i64,
    digests: &[Digest],
) -> Result<Vec<Digest>> {
    let mut out: Vec<Digest> = Vec::new();
    for d in digests {
        let held: Option<i64> = sqlx::query_scalar(exists_sql)
            .bind(repository_id)
            .bind(d.as_str())
            .fetch_optional(&mut **tx)
            .await
            .map_err(backend)?;
        if held.is_none() && !out.contains(d) {
            out.push(d.clone());
        }
    }
    Ok(out)
}

async fn repo_id(tx: &mut Transaction<'_, Sqlite>, name: &str) -> Result<i64> {
    sqlx::query_scalar::<_, i64>("SELECT id FROM repositories WHERE name = $1")
        .bind(name)
        .fetch_optional(&mut **tx)
        .await
        .map_err(backend)?
        .ok_or(MetaError::RepositoryNotFound)
}

#[async_trait]
impl MetaStore for SqliteMeta {
    async fn close(&self) {
        self.reader.close().await;
        self.writer.close().await;
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    async fn fixture() -> (tempfile::TempDir, Arc<dyn MetaStore>) {
        let dir = tempfile::tempdir().unwrap();
        let meta = SqliteMeta::open(&dir.path().join("meta.db")).await.unwrap();
        (dir, Arc::new(meta))
    }

    crate::meta_store_conformance!(fixture);
}
