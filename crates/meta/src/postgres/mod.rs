//! The metadata store for several nodes: PostgreSQL, one pool for reads and writes,
//! transactions at READ COMMITTED. The roles' implementations are the SQLite store's, written
//! once (`crate::sql`, `include!`d below); SQLite's one writer orders every write transaction
//! by construction, so here the dialect hooks take the locks that give the same order: rows
//! locked `FOR UPDATE` / `FOR SHARE` where a contract (`crate::roles`) names a locking read,
//! conditional statements, and one advisory lock between GC and pushes.

use std::collections::BTreeMap;
use std::time::Duration;

use async_trait::async_trait;
use berth_oci::{Algorithm, Digest};
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::{Postgres, Row, Transaction};

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

type Meta = PgMeta;
type Db = Postgres;
type DbRow = sqlx::postgres::PgRow;

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations-postgres");

pub struct PgMeta {
    pool: PgPool,
    /// Connections that hold blob-bytes locks (`lock_blob_bytes`), apart from `pool`.
    locks: PgPool,
}

fn backend(e: sqlx::Error) -> MetaError {
    // 53100 disk_full, 53400 configuration_limit_exceeded (a full tablespace shows as either).
    let full = matches!(&e, sqlx::Error::Database(d) if d.code().is_some_and(|c| c == "53100"));
    if full {
        MetaError::StorageFull(e.to_string())
    } else if matches!(e, sqlx::Error::PoolTimedOut) {
        MetaError::Busy(e.to_string())
    } else if is_transient(&e) {
        MetaError::Unavailable(e.to_string())
    } else {
        MetaError::Backend(e.to_string())
    }
}

/// Whether an error is the database's passing state rather than the request's: the connection
/// lost or refused, the server shutting down or starting (SQLSTATE class 08, 57P01-57P03, 53300
/// too many connections), or the transaction rolled back by a deadlock (40P01) or serialization
/// failure (40001). (No connection free within the pool's timeout is `Busy`, not retried.)
fn is_transient(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Io(_) | sqlx::Error::WorkerCrashed => true,
        sqlx::Error::Database(d) => d.code().is_some_and(|c| {
            c.starts_with("08") || matches!(c.as_ref(), "40001" | "40P01" | "57P01" | "57P02" | "57P03" | "53300")
        }),
        _ => false,
    }
}

/// A failed COMMIT: if the connection was lost on the way, whether the transaction committed is
/// unknown, so it is never retried here (the protocol's 5xx; the client decides).
fn commit_failed(e: sqlx::Error) -> MetaError {
    match backend(e) {
        MetaError::Unavailable(m) => MetaError::Backend(format!("the commit's outcome is unknown: {m}")),
        other => other,
    }
}

/// Runs a role method's body again after a transient error (`is_transient`), a few times with a
/// growing pause (about 2 s in all): used for the methods a retry cannot change the outcome of,
/// the reads and the single transactions whose COMMIT was not reached (`commit_failed`).
macro_rules! retry_transient {
    ($body:block) => {
        dialect::retry_transient(|| async $body).await
    };
}

impl PgMeta {
    pub(crate) fn writes(&self) -> &PgPool {
        &self.pool
    }

    pub(crate) fn reads(&self) -> &PgPool {
        &self.pool
    }

    /// A write transaction (row locks are taken by the statements that need them).
    pub(crate) async fn begin_write(&self) -> sqlx::Result<sqlx::Transaction<'static, Postgres>> {
        self.pool.begin().await
    }

    /// Connects to `url` (`postgres://user[:password]@host[:port]/database[?sslmode=…]`) with at
    /// most `max_connections`, and applies pending migrations (under PostgreSQL's advisory lock,
    /// which sqlx takes: nodes starting together migrate once). Every statement is bounded by
    /// `statement_timeout`.
    pub async fn open(url: &str, max_connections: u32, statement_timeout: Duration) -> Result<Self> {
        let options: PgConnectOptions = url.parse().map_err(|e: sqlx::Error| MetaError::Backend(format!("{e}")))?;
        let options = options.options([("statement_timeout", format!("{}", statement_timeout.as_millis()))]);
        // One connection first: its error names the cause (refused, unknown host, password),
        // where the pool would only time out.
        use sqlx::Connection as _;
        sqlx::postgres::PgConnection::connect_with(&options)
            .await
            .map_err(|e| MetaError::Backend(format!("cannot connect: {e}")))?
            .close()
            .await
            .map_err(backend)?;
        let pool = PgPoolOptions::new()
            .max_connections(max_connections.max(1))
            .acquire_timeout(Duration::from_secs(10))
            .connect_with(options.clone())
            .await
            .map_err(|e| MetaError::Backend(format!("cannot connect: {e}")))?;
        // A quarter of the pool again, opened as commits need them: each is held while one
        // blob is published or a GC batch is deleted.
        let locks = PgPoolOptions::new()
            .max_connections((max_connections / 4).max(2))
            .min_connections(0)
            .acquire_timeout(Duration::from_secs(120))
            .connect_lazy_with(options);
        MIGRATOR.run(&pool).await.map_err(|e| match e {
            sqlx::migrate::MigrateError::VersionMissing(v) => MetaError::Backend(format!(
                "the database's schema is newer than this berth (it has migration {v}, which this berth does not know): \
                 run a berth at least as new as the one that migrated it"
            )),
            other => MetaError::Backend(format!("migrating the schema: {other}")),
        })?;
        Ok(PgMeta { pool, locks })
    }
}

/// What PostgreSQL spells its own way, and the locks that stand in for SQLite's one writer.
mod dialect {
    use super::*;

    /// Pauses before the retries of `retry_transient!`.
    const RETRY_PAUSES_MS: [u64; 4] = [50, 150, 450, 1350];

    pub(super) async fn retry_transient<T, F, Fut>(mut attempt: F) -> Result<T>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<T>>,
    {
        for pause in RETRY_PAUSES_MS {
            match attempt().await {
                Err(MetaError::Unavailable(why)) => {
                    tracing::debug!(error = %why, pause_ms = pause, "the metadata database is unavailable; retrying");
                    tokio::time::sleep(Duration::from_millis(pause)).await;
                }
                done => return done,
            }
        }
        attempt().await
    }

    /// Advisory locks of the two-key space (which no one-key lock overlaps), one per digest,
    /// in the transaction of a connection from the lock pool: commits wait here while holding
    /// no connection of the main pool, so lock holders can always get one to finish.
    const BLOB_BYTES_LOCK_CLASS: i32 = 0x6265;

    pub(super) async fn lock_blob_bytes(meta: &Meta, digests: &[String]) -> Result<BlobBytesLock> {
        let mut sorted = digests.to_vec();
        sorted.sort();
        sorted.dedup();
        let mut tx = meta.locks.begin().await.map_err(backend)?;
        // A commit may wait on another's copy of a large blob: no statement timeout here.
        sqlx::query("SET LOCAL statement_timeout = 0").execute(&mut *tx).await.map_err(backend)?;
        // A volatile function in the select list runs after the sort: the locks come in order.
        sqlx::query(
            "SELECT pg_advisory_xact_lock($1, hashtext(d)) FROM unnest($2::text[]) WITH ORDINALITY AS t(d, n) ORDER BY n",
        )
        .bind(BLOB_BYTES_LOCK_CLASS)
        .bind(&sorted)
        .execute(&mut *tx)
        .await
        .map_err(backend)?;
        Ok(BlobBytesLock(Some(Box::new(tx))))
    }

    /// The advisory lock that orders garbage collection against pushes across nodes: a push's
    /// linking transaction (`link_blob`, `mount_blob`, `put_manifest`) holds it shared, GC's
    /// unlinking and blob-record removal hold it exclusively. Taken as the transaction's first
    /// statement, so the statements after it (READ COMMITTED: a snapshot each) see everything the
    /// other side committed — SQLite's single writer gives the same order by construction.
    const GC_LOCK: i64 = 0x6265_7274_685f_6763;

    pub(super) async fn push_lock(tx: &mut Transaction<'_, Db>) -> Result<()> {
        sqlx::query("SELECT pg_advisory_xact_lock_shared($1)")
            .bind(GC_LOCK)
            .execute(&mut **tx)
            .await
            .map_err(backend)?;
        Ok(())
    }

    pub(super) async fn gc_lock(tx: &mut Transaction<'_, Db>) -> Result<()> {
        sqlx::query("SELECT pg_advisory_xact_lock($1)").bind(GC_LOCK).execute(&mut **tx).await.map_err(backend)?;
        Ok(())
    }

    /// Locks every key of the principal `access_key_id` belongs to, so that guarded changes of
    /// one principal's keys run one after another and each sees the others' outcome (READ
    /// COMMITTED alone would let two deactivations each see the other key still active).
    pub(super) async fn lock_principal_keys(tx: &mut Transaction<'_, Db>, access_key_id: &str) -> Result<()> {
        sqlx::query(
            "SELECT 1 FROM access_keys WHERE principal_id = \
             (SELECT principal_id FROM access_keys WHERE access_key_id = $1) ORDER BY access_key_id FOR UPDATE",
        )
        .bind(access_key_id)
        .fetch_all(&mut **tx)
        .await
        .map_err(backend)?;
        Ok(())
    }

    pub(super) async fn lock_manifest(tx: &mut Transaction<'_, Db>, repository: &str, digest: &Digest) -> Result<()> {
        sqlx::query(
            "SELECT 1 FROM manifests WHERE digest = $2 AND repository_id = (SELECT id FROM repositories WHERE name = $1) \
             FOR UPDATE",
        )
        .bind(repository)
        .bind(digest.as_str())
        .fetch_optional(&mut **tx)
        .await
        .map_err(backend)?;
        Ok(())
    }

    /// Serializes first-start bootstraps: `first_account_or_create` of nodes starting together.
    pub(super) async fn lock_accounts(tx: &mut Transaction<'_, Db>) -> Result<()> {
        sqlx::query("LOCK TABLE accounts IN SHARE ROW EXCLUSIVE MODE").execute(&mut **tx).await.map_err(backend)?;
        Ok(())
    }

    pub(super) async fn lock_managed_secret(tx: &mut Transaction<'_, Db>, arn: &str) -> Result<()> {
        sqlx::query("SELECT 1 FROM managed_secrets WHERE arn = $1 FOR UPDATE")
            .bind(arn)
            .fetch_optional(&mut **tx)
            .await
            .map_err(backend)?;
        Ok(())
    }

    /// One account's list with a quota (`list` names it: pull-through cache rules, pull-time
    /// update exclusions), while an entry is added against the quota.
    pub(super) async fn lock_account_list(tx: &mut Transaction<'_, Db>, list: &str, account_id: &str) -> Result<()> {
        sqlx::query("SELECT pg_advisory_xact_lock(hashtext($1), hashtext($2))")
            .bind(list)
            .bind(account_id)
            .execute(&mut **tx)
            .await
            .map_err(backend)?;
        Ok(())
    }

    pub(super) async fn lock_principal(tx: &mut Transaction<'_, Db>, principal_id: &str) -> Result<()> {
        sqlx::query("SELECT 1 FROM principals WHERE id = $1 FOR UPDATE")
            .bind(principal_id)
            .fetch_optional(&mut **tx)
            .await
            .map_err(backend)?;
        Ok(())
    }

    pub(super) const SHARE_LOCK: &str = " FOR SHARE";

    /// Links a blob into a repository; whether the link was there already — what the upsert
    /// did (an update sets `xmax`), so a racing link of the same blob, which waits on the row,
    /// is told it was.
    pub(super) async fn link(
        tx: &mut Transaction<'_, Db>,
        repository_id: i64,
        digest: &Digest,
        now: i64,
    ) -> Result<bool> {
        let inserted: bool = sqlx::query_scalar(
            "INSERT INTO repository_blobs (repository_id, digest, linked_at) VALUES ($1, $2, $3) \
             ON CONFLICT (repository_id, digest) DO UPDATE SET linked_at = excluded.linked_at RETURNING (xmax = 0)",
        )
        .bind(repository_id)
        .bind(digest.as_str())
        .bind(now)
        .fetch_one(&mut **tx)
        .await
        .map_err(backend)?;
        Ok(!inserted)
    }

    pub(super) const TAG_PAGE: &str = "SELECT COALESCE(json_agg(tag ORDER BY tag), '[]')::text FROM (SELECT t.tag FROM tags t \
         WHERE t.repository_id = (SELECT id FROM repositories WHERE name = $1) AND t.tag > $2 \
         ORDER BY t.tag LIMIT $3) page";

    /// `= ANY` of the text array bound as `$n` (see [`list`]).
    pub(super) fn in_list(n: usize) -> String {
        format!("= ANY(${n})")
    }

    pub(super) fn list(items: &[String]) -> Result<Vec<String>> {
        Ok(items.to_vec())
    }

    pub(super) const CLAIM_REPLICATIONS: &str = "UPDATE replication_jobs SET claimed_by = $1, claimed_at = $2, \
         attempts = attempts + 1 WHERE (repository, digest, destination_region, destination_registry) IN \
         (SELECT repository, digest, destination_region, destination_registry FROM replication_jobs \
           WHERE status = 'IN_PROGRESS' AND claimed_by IS NULL AND due_at <= $2 ORDER BY due_at LIMIT $3 \
           FOR UPDATE SKIP LOCKED) \
         RETURNING repository, digest, destination_region, destination_registry, tags, attempts, generation, queued_at, action";

    pub(super) const CLAIM_SCANS: &str = "UPDATE image_scans SET status = 'IN_PROGRESS', claimed_by = $1, claimed_at = $2 \
         WHERE (repository_id, digest) IN (SELECT repository_id, digest FROM image_scans WHERE status = 'PENDING' \
           ORDER BY queued_at LIMIT $3 FOR UPDATE SKIP LOCKED) \
         RETURNING (SELECT name FROM repositories WHERE id = repository_id), digest, scan_type, generation";

    pub(super) const MANAGED_SECRET_VALUES_PAGE: &str = "SELECT id, convert_to(sealed_value, 'UTF8') FROM managed_secret_versions \
         WHERE id > $1 ORDER BY id LIMIT $2";

    pub(super) const KMS_MATERIALS_PAGE: &str = "SELECT key_id || '/' || material_id, convert_to(sealed_material, 'UTF8') \
         FROM kms_key_materials WHERE key_id || '/' || material_id > $1 ORDER BY key_id || '/' || material_id LIMIT $2";

    pub(super) const ACCESS_KEY_SECRETS_PAGE: &str = "SELECT access_key_id, convert_to(sealed_secret, 'UTF8') FROM access_keys \
         WHERE access_key_id > $1 ORDER BY access_key_id LIMIT $2";

    pub(super) const REPLICATION_PEER_SECRETS_PAGE: &str = "SELECT access_key_id, convert_to(sealed_secret, 'UTF8') \
         FROM replication_peers WHERE access_key_id > $1 ORDER BY access_key_id LIMIT $2";

    pub(super) const SIGNING_PROFILE_KEYS_PAGE: &str = "SELECT arn, convert_to(sealed_private_key, 'UTF8') \
         FROM signing_profiles WHERE arn > $1 ORDER BY arn LIMIT $2";

    pub(super) async fn erase_freed_space(meta: &Meta) -> Result<()> {
        // VACUUM FULL rewrites the tables that hold secrets (and manifests, which `berth encrypt`
        // seals in place) from their live rows, so the old
        // row versions leave the table files. (The server's WAL and its archives are the
        // operator's: PostgreSQL keeps them for recovery.)
        sqlx::query(
            "VACUUM FULL access_keys, registry_secrets, deleted_access_keys, managed_secret_versions, manifests, uploads",
        )
            .execute(meta.writes())
            .await
            .map_err(backend)?;
        Ok(())
    }

    pub(super) async fn vulndb_lookup(meta: &Meta, keys: &[(String, String)]) -> Result<Vec<(String, String)>> {
        let (ecosystems, names): (Vec<String>, Vec<String>) = keys.iter().cloned().unzip();
        sqlx::query_as::<_, (String, String)>(
            "SELECT DISTINCT r.id, r.record FROM vuln_packages p JOIN vuln_records r ON r.id = p.record_id \
             WHERE (p.ecosystem, p.name) IN (SELECT * FROM UNNEST($1::text[], $2::text[]))",
        )
        .bind(ecosystems)
        .bind(names)
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

/// The channel nodes announce changes on.
const CHANGES_CHANNEL: &str = "berth_changes";

#[async_trait]
impl ChangeFeed for PgMeta {
    async fn announce_change(&self, topic: &str) -> Result<()> {
        sqlx::query("SELECT pg_notify($1, $2)")
            .bind(CHANGES_CHANNEL)
            .bind(topic)
            .execute(self.writes())
            .await
            .map_err(backend)?;
        Ok(())
    }

    async fn watch_changes(&self) -> Result<Option<tokio::sync::mpsc::Receiver<String>>> {
        let mut listener = sqlx::postgres::PgListener::connect_with(&self.pool).await.map_err(backend)?;
        // A lost connection is reconnected (and LISTEN issued again) by the listener; what was
        // announced meanwhile is unknown, so the gap reads as a change of everything.
        listener.ignore_pool_close_event(false);
        listener.listen(CHANGES_CHANNEL).await.map_err(backend)?;
        let (tx, rx) = tokio::sync::mpsc::channel(256);
        tokio::spawn(async move {
            loop {
                let topic = match listener.try_recv().await {
                    Ok(Some(n)) => n.payload().to_string(),
                    Ok(None) => crate::ANY_CHANGE.to_string(),
                    // The store is closing: let its connection go.
                    Err(sqlx::Error::PoolClosed) => return,
                    Err(e) => {
                        tracing::warn!(error = %e, "listening for changes other nodes announce; retrying");
                        tokio::time::sleep(Duration::from_secs(1)).await;
                        crate::ANY_CHANGE.to_string()
                    }
                };
                if tx.send(topic).await.is_err() {
                    return;
                }
            }
        });
        Ok(Some(rx))
    }
}

#[async_trait]
impl MetaStore for PgMeta {
    async fn close(&self) {
        self.pool.close().await;
        self.locks.close().await;
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use std::sync::Arc;

    use super::*;

    /// A fresh database on the PostgreSQL server that `BERTH_TEST_POSTGRES` names (a URL of its
    /// maintenance database, e.g. `postgres://postgres@127.0.0.1:5433/postgres`; `scripts/test`
    /// starts one), dropped when the guard goes.
    pub(crate) struct Scratch {
        admin: String,
        name: String,
    }

    impl Drop for Scratch {
        fn drop(&mut self) {
            let (admin, name) = (self.admin.clone(), self.name.clone());
            // Dropped inside a test's runtime: drop the database from a thread of its own.
            std::thread::spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
                rt.block_on(async {
                    if let Ok(pool) = PgPoolOptions::new().max_connections(1).connect(&admin).await {
                        let _ =
                            sqlx::query(sqlx::AssertSqlSafe(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")))
                                .execute(&pool)
                                .await;
                    }
                });
            })
            .join()
            .ok();
        }
    }

    async fn fixture() -> (Scratch, Arc<dyn MetaStore>) {
        let (scratch, meta) = scratch().await;
        (scratch, Arc::new(meta))
    }

    pub(crate) async fn scratch() -> (Scratch, PgMeta) {
        let admin = std::env::var("BERTH_TEST_POSTGRES")
            .expect("BERTH_TEST_POSTGRES must name a PostgreSQL server (scripts/test starts one)");
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let name = format!("berth_test_{}_{nanos}_{n}", std::process::id());
        let pool = PgPoolOptions::new().max_connections(1).connect(&admin).await.expect("the test PostgreSQL server");
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}"))).execute(&pool).await.unwrap();
        pool.close().await;
        let url = match admin.rsplit_once('/') {
            Some((server, _)) => format!("{server}/{name}"),
            None => panic!("BERTH_TEST_POSTGRES must end in /<database>"),
        };
        let meta = PgMeta::open(&url, 16, Duration::from_secs(30)).await.unwrap();
        (Scratch { admin, name }, meta)
    }

    crate::meta_store_conformance!(fixture);
}
