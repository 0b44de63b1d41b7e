//! The embedded metadata store: SQLite in WAL mode with `synchronous=FULL` (a commit is on disk
//! before it is acknowledged), one writer connection and a pool of readers. The roles'
//! implementations are written once for both SQL backends (`crate::sql`, `include!`d below);
//! what is SQLite's own — opening the file, error codes, the dialect hooks — is here. The one
//! writer serializes every write transaction, so the hooks that lock rows on PostgreSQL are
//! no-ops here.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use async_trait::async_trait;
use berth_oci::{Algorithm, Digest};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Row, Sqlite, Transaction};

use crate::roles::*;
use crate::sql::*;
use crate::{
    AccessKey, BlobBytesLock, BlobKeyWrapping, CreationTemplate, Group, IdentityPolicySource, ImageFilter, ImageRecord,
    ImageScan, KeyChange, KeyUse, LifecycleEvent, ManagedPolicy, ManifestKeys, ManifestReferences, ManifestSummary,
    MetaError, MetaStore, NewManifest, Principal, Repository, RepositoryFactsRow, RepositorySettings, Result, ScanJob,
    ScanOutcome, SealedKind, StoredManifest, StoredSecret, UnsealedManifest, Upload, UploadCipher, VulnDbState,
    VulnRecord, now_ms,
};
use crate::{ActionKind, PullBlock, ScanType};
use crate::{
    CappedInsert, KmsAlias, KmsGrant, KmsKey, KmsKeyMaterial, KmsKeyState, ManagedSecret, NewSecretVersion,
    PullThroughRule, SecretCreated, SecretVersion, VersionPut, managed_secret_version_key, restage,
};
use crate::{
    ConsoleSession, ImageReplication, ImageSigning, ReplicationAction, ReplicationEvent, ReplicationJob,
    ReplicationOutcome, ReplicationPeer, ReplicationQueueCounts, ReplicationStatus, ReplicationTarget, SigningProfile,
};

type Meta = SqliteMeta;
type Db = Sqlite;
type DbRow = sqlx::sqlite::SqliteRow;

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

pub struct SqliteMeta {
    writer: SqlitePool,
    reader: SqlitePool,
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

impl SqliteMeta {
    pub(crate) fn writes(&self) -> &SqlitePool {
        &self.writer
    }

    pub(crate) fn reads(&self) -> &SqlitePool {
        &self.reader
    }

    /// A write transaction. `BEGIN IMMEDIATE` takes the write lock first, waiting out the busy
    /// timeout: a deferred `BEGIN` that reads before it writes gets `SQLITE_BUSY` at once (no
    /// wait) when another process (`berth vulndb import`, `berth admin` beside `serve`) wrote
    /// since its read.
    pub(crate) async fn begin_write(&self) -> sqlx::Result<sqlx::Transaction<'static, sqlx::Sqlite>> {
        match self.writer.begin_with("BEGIN IMMEDIATE").await {
            // sqlx counts a transaction that SQLite rolled back by itself (SQLITE_FULL, a full
            // disk) as still open, and refuses a `BEGIN` on that connection from then on: close
            // it, so the pool opens a fresh one.
            Err(sqlx::Error::InvalidSavePointStatement) => {
                self.writer.acquire().await?.close().await?;
                self.writer.begin_with("BEGIN IMMEDIATE").await
            }
            other => other,
        }
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

/// A COMMIT's error (PostgreSQL tells an unknown outcome apart; here the one writer's commit
/// either happened or did not).
fn commit_failed(e: sqlx::Error) -> MetaError {
    backend(e)
}

/// PostgreSQL retries these bodies after transient errors; SQLite, a file, has none.
macro_rules! retry_transient {
    ($body:block) => {
        $body
    };
}

/// What SQLite spells its own way, and the locks it needs none of.
mod dialect {
    use super::*;

    /// One node opens an SQLite store: the registry's own per-digest lock is the whole of it.
    pub(super) async fn lock_blob_bytes(_: &Meta, _: &[String]) -> Result<BlobBytesLock> {
        Ok(BlobBytesLock::local())
    }

    pub(super) async fn push_lock(_: &mut Transaction<'_, Db>) -> Result<()> {
        Ok(())
    }

    pub(super) async fn gc_lock(_: &mut Transaction<'_, Db>) -> Result<()> {
        Ok(())
    }

    pub(super) async fn lock_principal_keys(_: &mut Transaction<'_, Db>, _: &str) -> Result<()> {
        Ok(())
    }

    pub(super) async fn lock_manifest(_: &mut Transaction<'_, Db>, _: &str, _: &Digest) -> Result<()> {
        Ok(())
    }

    pub(super) async fn lock_accounts(_: &mut Transaction<'_, Db>) -> Result<()> {
        Ok(())
    }

    pub(super) async fn lock_managed_secret(_: &mut Transaction<'_, Db>, _: &str) -> Result<()> {
        Ok(())
    }

    pub(super) async fn lock_account_list(_: &mut Transaction<'_, Db>, _: &str, _: &str) -> Result<()> {
        Ok(())
    }

    pub(super) async fn lock_principal(_: &mut Transaction<'_, Db>, _: &str) -> Result<()> {
        Ok(())
    }

    pub(super) const SHARE_LOCK: &str = "";

    /// Links a blob into a repository; whether the link was there already.
    pub(super) async fn link(
        tx: &mut Transaction<'_, Db>,
        repository_id: i64,
        digest: &Digest,
        now: i64,
    ) -> Result<bool> {
        let held: bool = sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM repository_blobs WHERE repository_id = $1 AND digest = $2)",
        )
        .bind(repository_id)
        .bind(digest.as_str())
        .fetch_one(&mut **tx)
        .await
        .map_err(backend)?;
        sqlx::query(
            "INSERT INTO repository_blobs (repository_id, digest, linked_at) VALUES ($1, $2, $3) \
             ON CONFLICT (repository_id, digest) DO UPDATE SET linked_at = excluded.linked_at",
        )
        .bind(repository_id)
        .bind(digest.as_str())
        .bind(now)
        .execute(&mut **tx)
        .await
        .map_err(backend)?;
        Ok(held)
    }

    pub(super) const TAG_PAGE: &str = "SELECT json_group_array(tag) FROM (SELECT t.tag FROM tags t \
         WHERE t.repository_id = (SELECT id FROM repositories WHERE name = $1) AND t.tag > $2 \
         ORDER BY t.tag LIMIT $3)";

    /// `IN` the list bound as `$n` (a JSON array: see [`list`]).
    pub(super) fn in_list(n: usize) -> String {
        format!("IN (SELECT value FROM json_each(${n}))")
    }

    pub(super) fn list(items: &[String]) -> Result<String> {
        serde_json::to_string(items).map_err(|e| MetaError::Backend(e.to_string()))
    }

    pub(super) const CLAIM_REPLICATIONS: &str = "UPDATE replication_jobs SET claimed_by = $1, claimed_at = $2, \
         attempts = attempts + 1 WHERE rowid IN (SELECT rowid FROM replication_jobs WHERE status = 'IN_PROGRESS' \
         AND claimed_by IS NULL AND due_at <= $2 ORDER BY due_at LIMIT $3) \
         RETURNING repository, digest, destination_region, destination_registry, tags, attempts, generation, queued_at, action";

    pub(super) const CLAIM_SCANS: &str = "UPDATE image_scans SET status = 'IN_PROGRESS', claimed_by = $1, claimed_at = $2 \
         WHERE rowid IN (SELECT rowid FROM image_scans WHERE status = 'PENDING' ORDER BY queued_at LIMIT $3) \
         RETURNING (SELECT name FROM repositories WHERE id = repository_id), digest, scan_type, generation";

    pub(super) const MANAGED_SECRET_VALUES_PAGE: &str = "SELECT id, CAST(sealed_value AS BLOB) FROM managed_secret_versions \
         WHERE id > $1 ORDER BY id LIMIT $2";

    pub(super) const KMS_MATERIALS_PAGE: &str = "SELECT key_id || '/' || material_id, CAST(sealed_material AS BLOB) \
         FROM kms_key_materials WHERE key_id || '/' || material_id > $1 ORDER BY key_id || '/' || material_id LIMIT $2";

    pub(super) const ACCESS_KEY_SECRETS_PAGE: &str = "SELECT access_key_id, CAST(sealed_secret AS BLOB) FROM access_keys \
         WHERE access_key_id > $1 ORDER BY access_key_id LIMIT $2";

    pub(super) const REPLICATION_PEER_SECRETS_PAGE: &str = "SELECT access_key_id, CAST(sealed_secret AS BLOB) \
         FROM replication_peers WHERE access_key_id > $1 ORDER BY access_key_id LIMIT $2";

    pub(super) const SIGNING_PROFILE_KEYS_PAGE: &str = "SELECT arn, CAST(sealed_private_key AS BLOB) \
         FROM signing_profiles WHERE arn > $1 ORDER BY arn LIMIT $2";

    pub(super) async fn erase_freed_space(meta: &Meta) -> Result<()> {
        // VACUUM rewrites the file from live rows only; the checkpoint then moves the rewrite
        // into it and truncates the write-ahead log, which held the old pages.
        sqlx::query("VACUUM").execute(meta.writes()).await.map_err(backend)?;
        sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)").execute(meta.writes()).await.map_err(backend)?;
        Ok(())
    }

    pub(super) async fn vulndb_lookup(meta: &Meta, keys: &[(String, String)]) -> Result<Vec<(String, String)>> {
        let keys = serde_json::to_string(keys).map_err(|e| MetaError::Backend(e.to_string()))?;
        sqlx::query_as::<_, (String, String)>(
            "SELECT DISTINCT r.id, r.record FROM vuln_packages p JOIN vuln_records r ON r.id = p.record_id \
             WHERE (p.ecosystem, p.name) IN (SELECT value ->> 0, value ->> 1 FROM json_each($1))",
        )
        .bind(keys)
        .fetch_all(meta.reads())
        .await
        .map_err(backend)
    }
}

include!("../sql/shared.rs");
include!("../sql/accounts.rs");
include!("../sql/content.rs");
include!("../sql/gc.rs");
include!("../sql/iam.rs");
include!("../sql/lifecycle.rs");
include!("../sql/repositories.rs");
include!("../sql/scans.rs");
include!("../sql/replication.rs");
include!("../sql/leases.rs");
include!("../sql/managed_secrets.rs");
include!("../sql/pull_through.rs");
include!("../sql/kms.rs");
include!("../sql/signing.rs");
include!("../sql/public.rs");
include!("../sql/console.rs");

/// One node opens an SQLite store: its own invalidation is all there is.
#[async_trait]
impl ChangeFeed for SqliteMeta {
    async fn announce_change(&self, _: &str) -> Result<()> {
        Ok(())
    }

    async fn watch_changes(&self) -> Result<Option<tokio::sync::mpsc::Receiver<String>>> {
        Ok(None)
    }
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

    /// Two processes on one file (`serve` and `berth vulndb import`): a transaction that reads
    /// before it writes waits for the other's writes instead of failing with "database is locked".
    #[tokio::test]
    async fn a_read_then_write_transaction_waits_for_another_processs_writes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("meta.db");
        let importer = SqliteMeta::open(&path).await.unwrap();
        let server = SqliteMeta::open(&path).await.unwrap();
        let imports = async {
            for i in 0..200 {
                let record = VulnRecord {
                    id: "CVE-1".into(),
                    modified: format!("2026-01-01T00:00:{i:03}Z"),
                    json: "{}".into(),
                    keys: vec![("Debian".into(), "openssl".into())],
                };
                importer.vulndb_put(&[record]).await.unwrap();
            }
        };
        let writes = async {
            for _ in 0..200 {
                server.vulndb_finish_import(1).await.unwrap();
                tokio::task::yield_now().await;
            }
        };
        tokio::join!(imports, writes);
        assert_eq!(server.vulndb_state().await.unwrap().version, 200);
    }
}
