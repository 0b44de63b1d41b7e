//! The embedded metadata store: SQLite in WAL mode with `synchronous=FULL` (a commit is on disk
//! before it is acknowledged), one writer connection and a pool of readers.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use async_trait::async_trait;
use berth_oci::Digest;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Row, Sqlite, Transaction};

use crate::{
    AccessKey, CreationTemplate, Group, IdentityPolicySource, ImageFilter, ImageRecord, ImageScan, LifecycleEvent,
    ManagedPolicy, ManifestReferences, ManifestSummary, MetaError, MetaStore, NewManifest, Principal, PrincipalKind,
    PullGate, Repository, RepositorySettings, Result, ScanJob, ScanOutcome, StatusFilter, StoredManifest, TagFilter,
    Upload, VulnDbState, VulnRecord, now_ms,
};

/// SQL with `{unreferenced}` standing for "no manifest of its repository references the link
/// `<link>`"; the template and the table name are always literals of ours.
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
            tag_mutability: r.get(3),
            tag_mutability_exclusions: serde_json::from_str(&exclusions)
                .map_err(|e| MetaError::Backend(format!("stored exclusion filters: {e}")))?,
            scan_on_push: r.get(5),
            encryption_type: r.get(6),
            kms_key: r.get(7),
            pull_block_severity: r.get(8),
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

fn access_key_from_row(r: &sqlx::sqlite::SqliteRow) -> AccessKey {
    let status: String = r.get(3);
    AccessKey {
        access_key_id: r.get(0),
        principal_id: r.get(1),
        secret: r.get(2),
        active: status == "Active",
        created_at: r.get(4),
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

fn image_scan_from_row(r: &sqlx::sqlite::SqliteRow, with_findings: bool) -> ImageScan {
    ImageScan {
        digest: r.get(0),
        scan_type: r.get(1),
        status: r.get(2),
        description: r.get(3),
        queued_at: r.get(4),
        completed_at: r.get(5),
        vulndb_version: r.get(6),
        vulndb_updated_at: r.get(7),
        findings: if with_findings { r.get(8) } else { None },
        counts: r.get(9),
    }
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
    async fn repository(&self, name: &str) -> Result<Option<Repository>> {
        let row = sqlx::query(repo_sql("SELECT {cols} FROM repositories WHERE name = $1"))
            .bind(name)
            .fetch_optional(&self.reader)
            .await
            .map_err(backend)?;
        row.as_ref().map(repository_from_row).transpose()
    }

    async fn create_repository(
        &self,
        name: &str,
        settings: &RepositorySettings,
        tags: &[(String, String)],
    ) -> Result<Repository> {
        let mut tx = self.writer.begin().await.map_err(backend)?;
        let row = sqlx::query(repo_sql(
            "INSERT INTO repositories (name, created_at, tag_mutability, tag_mutability_exclusions, scan_on_push, \
             encryption_type, kms_key, pull_block_severity) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING {cols}",
        ))
        .bind(name)
        .bind(now_ms())
        .bind(&settings.tag_mutability)
        .bind(serde_json::to_string(&settings.tag_mutability_exclusions).expect("strings serialize"))
        .bind(settings.scan_on_push)
        .bind(&settings.encryption_type)
        .bind(&settings.kms_key)
        .bind(&settings.pull_block_severity)
        .fetch_one(&mut *tx)
        .await
        .map_err(|e| if is_unique_violation(&e) { MetaError::RepositoryAlreadyExists } else { backend(e) })?;
        let repo = repository_from_row(&row)?;
        for (k, v) in tags {
            sqlx::query(
                "INSERT INTO repository_resource_tags (repository_id, key, value) VALUES ($1, $2, $3) \
                 ON CONFLICT (repository_id, key) DO UPDATE SET value = excluded.value",
            )
            .bind(repo.id)
            .bind(k)
            .bind(v)
            .execute(&mut *tx)
            .await
            .map_err(backend)?;
        }
        tx.commit().await.map_err(backend)?;
        Ok(repo)
    }

    async fn describe_repositories(&self, last: Option<&str>, limit: u32) -> Result<Vec<Repository>> {
        let rows = sqlx::query(repo_sql("SELECT {cols} FROM repositories WHERE name > $1 ORDER BY name LIMIT $2"))
            .bind(last.unwrap_or(""))
            .bind(limit as i64)
            .fetch_all(&self.reader)
            .await
            .map_err(backend)?;
        rows.iter().map(repository_from_row).collect()
    }

    async fn update_repository_settings(&self, name: &str, settings: &RepositorySettings) -> Result<Repository> {
        let row = sqlx::query(repo_sql(
            "UPDATE repositories SET tag_mutability = $2, tag_mutability_exclusions = $3, scan_on_push = $4, \
             encryption_type = $5, kms_key = $6, pull_block_severity = $7 WHERE name = $1 RETURNING {cols}",
        ))
        .bind(name)
        .bind(&settings.tag_mutability)
        .bind(serde_json::to_string(&settings.tag_mutability_exclusions).expect("strings serialize"))
        .bind(settings.scan_on_push)
        .bind(&settings.encryption_type)
        .bind(&settings.kms_key)
        .bind(&settings.pull_block_severity)
        .fetch_optional(&self.writer)
        .await
        .map_err(backend)?
        .ok_or(MetaError::RepositoryNotFound)?;
        repository_from_row(&row)
    }

    async fn delete_repository(&self, name: &str, force: bool) -> Result<Repository> {
        let mut tx = self.writer.begin().await.map_err(backend)?;
        let row = sqlx::query(repo_sql("SELECT {cols} FROM repositories WHERE name = $1"))
            .bind(name)
            .fetch_optional(&mut *tx)
            .await
            .map_err(backend)?
            .ok_or(MetaError::RepositoryNotFound)?;
        let repo = repository_from_row(&row)?;
        if !force {
            let images: Option<i64> = sqlx::query_scalar("SELECT 1 FROM manifests WHERE repository_id = $1 LIMIT 1")
                .bind(repo.id)
                .fetch_optional(&mut *tx)
                .await
                .map_err(backend)?;
            if images.is_some() {
                return Err(MetaError::RepositoryNotEmpty);
            }
        }
        // Tags and references go first so the cascade never meets a row it must keep.
        for sql in [
            "DELETE FROM tags WHERE repository_id = $1",
            "DELETE FROM manifest_references WHERE repository_id = $1",
            "DELETE FROM manifests WHERE repository_id = $1",
            "DELETE FROM repositories WHERE id = $1",
        ] {
            sqlx::query(sql).bind(repo.id).execute(&mut *tx).await.map_err(backend)?;
        }
        tx.commit().await.map_err(backend)?;
        Ok(repo)
    }

    async fn tag_repository(&self, name: &str, tags: &[(String, String)]) -> Result<()> {
        let mut tx = self.writer.begin().await.map_err(backend)?;
        let id = repo_id(&mut tx, name).await?;
        for (k, v) in tags {
            sqlx::query(
                "INSERT INTO repository_resource_tags (repository_id, key, value) VALUES ($1, $2, $3) \
                 ON CONFLICT (repository_id, key) DO UPDATE SET value = excluded.value",
            )
            .bind(id)
            .bind(k)
            .bind(v)
            .execute(&mut *tx)
            .await
            .map_err(backend)?;
        }
        tx.commit().await.map_err(backend)
    }

    async fn untag_repository(&self, name: &str, keys: &[String]) -> Result<()> {
        let mut tx = self.writer.begin().await.map_err(backend)?;
        let id = repo_id(&mut tx, name).await?;
        for k in keys {
            sqlx::query("DELETE FROM repository_resource_tags WHERE repository_id = $1 AND key = $2")
                .bind(id)
                .bind(k)
                .execute(&mut *tx)
                .await
                .map_err(backend)?;
        }
        tx.commit().await.map_err(backend)
    }

    async fn repository_resource_tags(&self, name: &str) -> Result<Vec<(String, String)>> {
        sqlx::query_as(
            "SELECT t.key, t.value FROM repository_resource_tags t JOIN repositories r ON r.id = t.repository_id \
             WHERE r.name = $1 ORDER BY t.key",
        )
        .bind(name)
        .fetch_all(&self.reader)
        .await
        .map_err(backend)
    }

    async fn list_repositories(&self, last: Option<&str>, limit: u32) -> Result<Vec<String>> {
        sqlx::query_scalar("SELECT name FROM repositories WHERE name > $1 ORDER BY name LIMIT $2")
            .bind(last.unwrap_or(""))
            .bind(limit as i64)
            .fetch_all(&self.reader)
            .await
            .map_err(backend)
    }

    async fn link_blob(
        &self,
        repository: &str,
        digest: &Digest,
        size: u64,
        finished_upload: Option<&str>,
    ) -> Result<bool> {
        let mut tx = self.writer.begin().await.map_err(backend)?;
        let id = repo_id(&mut tx, repository).await?;
        let now = now_ms();
        let held: bool = sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM repository_blobs WHERE repository_id = $1 AND digest = $2)",
        )
        .bind(id)
        .bind(digest.as_str())
        .fetch_one(&mut *tx)
        .await
        .map_err(backend)?;
        sqlx::query("INSERT INTO blobs (digest, size, created_at) VALUES ($1, $2, $3) ON CONFLICT (digest) DO NOTHING")
            .bind(digest.as_str())
            .bind(size as i64)
            .bind(now)
            .execute(&mut *tx)
            .await
            .map_err(backend)?;
        sqlx::query(
            "INSERT INTO repository_blobs (repository_id, digest, linked_at) VALUES ($1, $2, $3) \
             ON CONFLICT (repository_id, digest) DO UPDATE SET linked_at = excluded.linked_at",
        )
        .bind(id)
        .bind(digest.as_str())
        .bind(now)
        .execute(&mut *tx)
        .await
        .map_err(backend)?;
        if let Some(upload) = finished_upload {
            sqlx::query("DELETE FROM uploads WHERE id = $1").bind(upload).execute(&mut *tx).await.map_err(backend)?;
        }
        tx.commit().await.map_err(backend)?;
        Ok(held)
    }

    async fn mount_blob(&self, from: &str, to: &str, digest: &Digest) -> Result<bool> {
        let mut tx = self.writer.begin().await.map_err(backend)?;
        let to_id = repo_id(&mut tx, to).await?;
        let held: Option<i64> = sqlx::query_scalar(
            "SELECT 1 FROM repository_blobs rb JOIN repositories r ON r.id = rb.repository_id \
             WHERE r.name = $1 AND rb.digest = $2",
        )
        .bind(from)
        .bind(digest.as_str())
        .fetch_optional(&mut *tx)
        .await
        .map_err(backend)?;
        if held.is_none() {
            return Ok(false);
        }
        sqlx::query(
            "INSERT INTO repository_blobs (repository_id, digest, linked_at) VALUES ($1, $2, $3) \
             ON CONFLICT (repository_id, digest) DO UPDATE SET linked_at = excluded.linked_at",
        )
        .bind(to_id)
        .bind(digest.as_str())
        .bind(now_ms())
        .execute(&mut *tx)
        .await
        .map_err(backend)?;
        tx.commit().await.map_err(backend)?;
        Ok(true)
    }

    async fn linked_blob(&self, repository: &str, digest: &Digest) -> Result<Option<u64>> {
        let size: Option<i64> = sqlx::query_scalar(
            "SELECT b.size FROM repository_blobs rb \
             JOIN repositories r ON r.id = rb.repository_id JOIN blobs b ON b.digest = rb.digest \
             WHERE r.name = $1 AND rb.digest = $2",
        )
        .bind(repository)
        .bind(digest.as_str())
        .fetch_optional(&self.reader)
        .await
        .map_err(backend)?;
        Ok(size.map(|s| s as u64))
    }

    async fn all_blobs(&self) -> Result<Vec<(String, i64)>> {
        sqlx::query_as("SELECT digest, size FROM blobs ORDER BY digest").fetch_all(&self.reader).await.map_err(backend)
    }

    async fn put_manifest(
        &self,
        repository: &str,
        m: &NewManifest,
        tags: &[String],
        immutable_tags: &[String],
    ) -> Result<()> {
        let mut tx = self.writer.begin().await.map_err(backend)?;
        let id = repo_id(&mut tx, repository).await?;
        for tag in immutable_tags {
            let current: Option<String> =
                sqlx::query_scalar("SELECT digest FROM tags WHERE repository_id = $1 AND tag = $2")
                    .bind(id)
                    .bind(tag)
                    .fetch_optional(&mut *tx)
                    .await
                    .map_err(backend)?;
            if current.is_some_and(|d| d != m.digest.as_str()) {
                return Err(MetaError::TagImmutable(tag.clone()));
            }
        }
        let missing_blobs =
            missing(&mut tx, "SELECT 1 FROM repository_blobs WHERE repository_id = $1 AND digest = $2", id, &m.blobs)
                .await?;
        let missing_manifests =
            missing(&mut tx, "SELECT 1 FROM manifests WHERE repository_id = $1 AND digest = $2", id, &m.manifests)
                .await?;
        if !missing_blobs.is_empty() || !missing_manifests.is_empty() {
            return Err(MetaError::MissingReferences { blobs: missing_blobs, manifests: missing_manifests });
        }
        let now = now_ms();
        sqlx::query(
            "INSERT INTO manifests (repository_id, digest, media_type, artifact_type, subject, annotations, size, content, pushed_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) ON CONFLICT (repository_id, digest) DO UPDATE \
             SET storage_class = 'STANDARD', last_activated_at = excluded.pushed_at WHERE manifests.storage_class = 'ARCHIVE'",
        )
        .bind(id)
        .bind(m.digest.as_str())
        .bind(&m.media_type)
        .bind(&m.artifact_type)
        .bind(m.subject.as_ref().map(|s| s.as_str()))
        .bind(&m.annotations)
        .bind(m.content.len() as i64)
        .bind(&m.content)
        .bind(now)
        .execute(&mut *tx)
        .await
        .map_err(backend)?;
        let refs = m.blobs.iter().map(|d| (d, "blob")).chain(m.manifests.iter().map(|d| (d, "manifest")));
        for (child, kind) in refs {
            sqlx::query(
                "INSERT INTO manifest_references (repository_id, manifest_digest, child_digest, child_kind) \
                 VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING",
            )
            .bind(id)
            .bind(m.digest.as_str())
            .bind(child.as_str())
            .bind(kind)
            .execute(&mut *tx)
            .await
            .map_err(backend)?;
        }
        for tag in tags {
            sqlx::query(
                "INSERT INTO tags (repository_id, tag, digest, updated_at) VALUES ($1, $2, $3, $4) \
                 ON CONFLICT (repository_id, tag) DO UPDATE SET digest = excluded.digest, updated_at = excluded.updated_at",
            )
            .bind(id)
            .bind(tag)
            .bind(m.digest.as_str())
            .bind(now)
            .execute(&mut *tx)
            .await
            .map_err(backend)?;
        }
        tx.commit().await.map_err(backend)
    }

    async fn manifest(&self, repository: &str, digest: &Digest) -> Result<Option<StoredManifest>> {
        type Row = (String, Vec<u8>, String, Option<String>, Option<String>, Option<String>);
        let row = sqlx::query_as::<_, Row>(
            "SELECT m.media_type, m.content, m.storage_class, r.pull_block_severity, s.status, s.counts \
             FROM manifests m JOIN repositories r ON r.id = m.repository_id \
             LEFT JOIN image_scans s ON s.repository_id = m.repository_id AND s.digest = m.digest \
             WHERE r.name = $1 AND m.digest = $2",
        )
        .bind(repository)
        .bind(digest.as_str())
        .fetch_optional(&self.reader)
        .await
        .map_err(backend)?;
        Ok(row.map(|(media_type, content, class, block_severity, scan_status, scan_counts)| StoredManifest {
            digest: digest.clone(),
            media_type,
            content,
            archived: class == "ARCHIVE",
            pull_gate: PullGate { block_severity, scan_status, scan_counts },
        }))
    }

    async fn resolve_tag(&self, repository: &str, tag: &str) -> Result<Option<Digest>> {
        let d: Option<String> = sqlx::query_scalar(
            "SELECT t.digest FROM tags t JOIN repositories r ON r.id = t.repository_id WHERE r.name = $1 AND t.tag = $2",
        )
        .bind(repository)
        .bind(tag)
        .fetch_optional(&self.reader)
        .await
        .map_err(backend)?;
        d.map(parse_digest).transpose()
    }

    async fn delete_manifest(&self, repository: &str, digest: &Digest) -> Result<bool> {
        let mut tx = self.writer.begin().await.map_err(backend)?;
        let parents: Vec<String> = sqlx::query_scalar(
            "SELECT mr.manifest_digest FROM manifest_references mr JOIN repositories r ON r.id = mr.repository_id \
             WHERE r.name = $1 AND mr.child_digest = $2 AND mr.child_kind = 'manifest' ORDER BY mr.manifest_digest",
        )
        .bind(repository)
        .bind(digest.as_str())
        .fetch_all(&mut *tx)
        .await
        .map_err(backend)?;
        if !parents.is_empty() {
            return Err(MetaError::ReferencedByIndex(parents));
        }
        let r = sqlx::query(
            "DELETE FROM manifests WHERE digest = $2 AND repository_id = (SELECT id FROM repositories WHERE name = $1)",
        )
        .bind(repository)
        .bind(digest.as_str())
        .execute(&mut *tx)
        .await
        .map_err(backend)?;
        tx.commit().await.map_err(backend)?;
        Ok(r.rows_affected() > 0)
    }

    async fn delete_tag(&self, repository: &str, tag: &str) -> Result<bool> {
        let r = sqlx::query(
            "DELETE FROM tags WHERE tag = $2 AND repository_id = (SELECT id FROM repositories WHERE name = $1)",
        )
        .bind(repository)
        .bind(tag)
        .execute(&self.writer)
        .await
        .map_err(backend)?;
        Ok(r.rows_affected() > 0)
    }

    async fn list_tags(&self, repository: &str, last: Option<&str>, limit: u32) -> Result<Vec<String>> {
        // One row holding the page as a JSON array: rows cross from SQLite's thread one by one,
        // which made a page of thousands of tags several times slower than the query itself.
        let page: String = sqlx::query_scalar(
            "SELECT json_group_array(tag) FROM (SELECT t.tag FROM tags t \
             WHERE t.repository_id = (SELECT id FROM repositories WHERE name = $1) AND t.tag > $2 \
             ORDER BY t.tag LIMIT $3)",
        )
        .bind(repository)
        .bind(last.unwrap_or(""))
        .bind(limit as i64)
        .fetch_one(&self.reader)
        .await
        .map_err(backend)?;
        let mut tags: Vec<String> =
            serde_json::from_str(&page).map_err(|e| MetaError::Backend(format!("tag page: {e}")))?;
        // The aggregate keeps the subquery's order in practice; sorting is cheap insurance.
        tags.sort_unstable();
        Ok(tags)
    }

    async fn referrers(
        &self,
        repository: &str,
        subject: &Digest,
        artifact_type: Option<&str>,
    ) -> Result<Vec<ManifestSummary>> {
        let rows = sqlx::query(
            "SELECT m.digest, m.media_type, m.size, m.artifact_type, m.annotations FROM manifests m \
             JOIN repositories r ON r.id = m.repository_id \
             WHERE r.name = $1 AND m.subject = $2 AND ($3 IS NULL OR m.artifact_type = $3) ORDER BY m.digest",
        )
        .bind(repository)
        .bind(subject.as_str())
        .bind(artifact_type)
        .fetch_all(&self.reader)
        .await
        .map_err(backend)?;
        Ok(rows
            .into_iter()
            .map(|r| ManifestSummary {
                digest: r.get(0),
                media_type: r.get(1),
                size: r.get(2),
                artifact_type: r.get(3),
                annotations: r.get(4),
            })
            .collect())
    }

    async fn all_manifest_references(&self) -> Result<Vec<ManifestReferences>> {
        let rows = sqlx::query_as::<_, (String, String, Option<String>, Option<String>)>(
            "SELECT r.name, m.digest, mr.child_digest, mr.child_kind FROM manifests m \
             JOIN repositories r ON r.id = m.repository_id \
             LEFT JOIN manifest_references mr ON mr.repository_id = m.repository_id AND mr.manifest_digest = m.digest \
             ORDER BY r.name, m.digest",
        )
        .fetch_all(&self.reader)
        .await
        .map_err(backend)?;
        let mut out: BTreeMap<(String, String), ManifestReferences> = BTreeMap::new();
        for (repo, digest, child, kind) in rows {
            let e = out.entry((repo.clone(), digest.clone())).or_insert_with(|| ManifestReferences {
                repository: repo,
                digest,
                blobs: Vec::new(),
                manifests: Vec::new(),
            });
            match (child, kind.as_deref()) {
                (Some(c), Some("blob")) => e.blobs.push(c),
                (Some(c), Some("manifest")) => e.manifests.push(c),
                _ => {}
            }
        }
        Ok(out.into_values().collect())
    }

    async fn list_image_ids(
        &self,
        repository: &str,
        after: Option<(&str, &str)>,
        limit: u32,
        filter: ImageFilter,
    ) -> Result<Vec<(String, Option<String>)>> {
        let (d, t) = after.unwrap_or(("", ""));
        let sql = format!(
            "SELECT m.digest, t.tag FROM manifests m \
             JOIN repositories r ON r.id = m.repository_id \
             LEFT JOIN tags t ON t.repository_id = m.repository_id AND t.digest = m.digest \
             WHERE r.name = $1 AND (m.digest > $2 OR (m.digest = $2 AND COALESCE(t.tag, '') > $3)) \
             AND ($4 = 0 OR ($4 = 1 AND t.tag IS NOT NULL) OR ($4 = 2 AND t.tag IS NULL)) AND {} \
             ORDER BY m.digest, COALESCE(t.tag, '') LIMIT $5",
            status_condition(6)
        );
        let rows = sqlx::query_as::<_, (String, Option<String>)>(sqlx::AssertSqlSafe(sql))
            .bind(repository)
            .bind(d)
            .bind(t)
            .bind(filter_code(filter.tags))
            .bind(limit as i64)
            .bind(status_code(filter.status))
            .fetch_all(&self.reader)
            .await
            .map_err(backend)?;
        Ok(rows)
    }

    async fn list_images(
        &self,
        repository: &str,
        after: Option<&str>,
        limit: u32,
        filter: ImageFilter,
    ) -> Result<Vec<ImageRecord>> {
        let sql = format!(
            "SELECT m.digest, m.media_type, m.artifact_type, m.subject, m.pushed_at, m.last_pulled_at, m.repository_id, \
             m.storage_class, m.last_archived_at, m.last_activated_at \
             FROM manifests m JOIN repositories r ON r.id = m.repository_id \
             WHERE r.name = $1 AND m.digest > $2 AND {} AND ($3 = 0 \
               OR ($3 = 1 AND EXISTS (SELECT 1 FROM tags t WHERE t.repository_id = m.repository_id AND t.digest = m.digest)) \
               OR ($3 = 2 AND NOT EXISTS (SELECT 1 FROM tags t WHERE t.repository_id = m.repository_id AND t.digest = m.digest))) \
             ORDER BY m.digest LIMIT $4",
            status_condition(5)
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(repository)
            .bind(after.unwrap_or(""))
            .bind(filter_code(filter.tags))
            .bind(limit as i64)
            .bind(status_code(filter.status))
            .fetch_all(&self.reader)
            .await
            .map_err(backend)?;
        self.images_from_rows(&rows).await
    }

    async fn image(&self, repository: &str, digest: &str) -> Result<Option<ImageRecord>> {
        // One image is a page of one.
        let row = sqlx::query(
            "SELECT m.digest, m.media_type, m.artifact_type, m.subject, m.pushed_at, m.last_pulled_at, m.repository_id, \
             m.storage_class, m.last_archived_at, m.last_activated_at \
             FROM manifests m JOIN repositories r ON r.id = m.repository_id WHERE r.name = $1 AND m.digest = $2",
        )
        .bind(repository)
        .bind(digest)
        .fetch_optional(&self.reader)
        .await
        .map_err(backend)?;
        match row {
            Some(r) => Ok(self.images_from_rows(&[r]).await?.pop()),
            None => Ok(None),
        }
    }

    async fn image_blob_bytes(&self, repository: &str, digests: &[String]) -> Result<Vec<(String, i64)>> {
        let digests = serde_json::to_string(digests).map_err(|e| MetaError::Backend(e.to_string()))?;
        sqlx::query_as(
            "SELECT mr.manifest_digest, SUM(b.size) FROM manifest_references mr JOIN blobs b ON b.digest = mr.child_digest \
             JOIN repositories r ON r.id = mr.repository_id WHERE r.name = $1 AND mr.child_kind = 'blob' \
             AND mr.manifest_digest IN (SELECT value FROM json_each($2)) GROUP BY mr.manifest_digest",
        )
        .bind(repository)
        .bind(digests)
        .fetch_all(&self.reader)
        .await
        .map_err(backend)
    }

    async fn manifest_parents(&self, repository: &str, digest: &str) -> Result<Vec<String>> {
        sqlx::query_scalar(
            "SELECT mr.manifest_digest FROM manifest_references mr JOIN repositories r ON r.id = mr.repository_id \
             WHERE r.name = $1 AND mr.child_digest = $2 AND mr.child_kind = 'manifest' ORDER BY mr.manifest_digest",
        )
        .bind(repository)
        .bind(digest)
        .fetch_all(&self.reader)
        .await
        .map_err(backend)
    }

    async fn record_pull(&self, repository: &str, digest: &str, at: i64) -> Result<()> {
        sqlx::query(
            "UPDATE manifests SET last_pulled_at = $3 WHERE digest = $2 \
             AND repository_id = (SELECT id FROM repositories WHERE name = $1) \
             AND (last_pulled_at IS NULL OR last_pulled_at < $3)",
        )
        .bind(repository)
        .bind(digest)
        .bind(at)
        .execute(&self.writer)
        .await
        .map_err(backend)?;
        Ok(())
    }

    async fn set_image_archived(
        &self,
        repository: &str,
        digest: &str,
        archived: bool,
        at: i64,
    ) -> Result<Option<bool>> {
        let mut tx = self.writer.begin().await.map_err(backend)?;
        let class: Option<String> = sqlx::query_scalar(
            "SELECT m.storage_class FROM manifests m JOIN repositories r ON r.id = m.repository_id \
             WHERE r.name = $1 AND m.digest = $2",
        )
        .bind(repository)
        .bind(digest)
        .fetch_optional(&mut *tx)
        .await
        .map_err(backend)?;
        let Some(class) = class else { return Ok(None) };
        let target = if archived { "ARCHIVE" } else { "STANDARD" };
        if class == target {
            return Ok(Some(false));
        }
        let column = if archived { "last_archived_at" } else { "last_activated_at" };
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "UPDATE manifests SET storage_class = $3, {column} = $4 WHERE digest = $2 \
             AND repository_id = (SELECT id FROM repositories WHERE name = $1)"
        )))
        .bind(repository)
        .bind(digest)
        .bind(target)
        .bind(at)
        .execute(&mut *tx)
        .await
        .map_err(backend)?;
        tx.commit().await.map_err(backend)?;
        Ok(Some(true))
    }

    async fn record_lifecycle_event(&self, e: &LifecycleEvent) -> Result<()> {
        let tags = serde_json::to_string(&e.tags).map_err(|e| MetaError::Backend(e.to_string()))?;
        sqlx::query(
            "INSERT INTO lifecycle_events (repository, digest, tags, action, rule_priority, at) \
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(&e.repository)
        .bind(&e.digest)
        .bind(tags)
        .bind(&e.action)
        .bind(e.rule_priority)
        .bind(e.at)
        .execute(&self.writer)
        .await
        .map_err(backend)?;
        Ok(())
    }

    async fn lifecycle_events(&self, repository: Option<&str>, limit: u32) -> Result<Vec<LifecycleEvent>> {
        let rows = sqlx::query_as::<_, (String, String, String, String, i64, i64)>(
            "SELECT repository, digest, tags, action, rule_priority, at FROM lifecycle_events \
             WHERE $1 IS NULL OR repository = $1 ORDER BY at DESC, id DESC LIMIT $2",
        )
        .bind(repository)
        .bind(limit as i64)
        .fetch_all(&self.reader)
        .await
        .map_err(backend)?;
        Ok(rows
            .into_iter()
            .map(|(repository, digest, tags, action, rule_priority, at)| LifecycleEvent {
                repository,
                digest,
                tags: serde_json::from_str(&tags).unwrap_or_default(),
                action,
                rule_priority,
                at,
            })
            .collect())
    }

    async fn vulndb_put(&self, records: &[VulnRecord]) -> Result<u64> {
        let mut tx = self.writer.begin().await.map_err(backend)?;
        let mut changed = 0;
        for r in records {
            let stored: Option<String> = sqlx::query_scalar("SELECT modified FROM vuln_records WHERE id = $1")
                .bind(&r.id)
                .fetch_optional(&mut *tx)
                .await
                .map_err(backend)?;
            if stored.as_deref() == Some(r.modified.as_str()) {
                continue;
            }
            sqlx::query("DELETE FROM vuln_packages WHERE record_id = $1")
                .bind(&r.id)
                .execute(&mut *tx)
                .await
                .map_err(backend)?;
            sqlx::query(
                "INSERT INTO vuln_records (id, modified, record) VALUES ($1, $2, $3) \
                 ON CONFLICT (id) DO UPDATE SET modified = excluded.modified, record = excluded.record",
            )
            .bind(&r.id)
            .bind(&r.modified)
            .bind(&r.json)
            .execute(&mut *tx)
            .await
            .map_err(backend)?;
            for (ecosystem, name) in &r.keys {
                sqlx::query(
                    "INSERT INTO vuln_packages (ecosystem, name, record_id) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
                )
                .bind(ecosystem)
                .bind(name)
                .bind(&r.id)
                .execute(&mut *tx)
                .await
                .map_err(backend)?;
            }
            changed += 1;
        }
        tx.commit().await.map_err(backend)?;
        Ok(changed)
    }

    async fn vulndb_finish_import(&self, changed: u64) -> Result<VulnDbState> {
        if changed > 0 {
            sqlx::query(
                "INSERT INTO vuln_db_state (id, version, updated_at) VALUES (1, 1, $1) \
                 ON CONFLICT (id) DO UPDATE SET version = vuln_db_state.version + 1, updated_at = excluded.updated_at",
            )
            .bind(now_ms())
            .execute(&self.writer)
            .await
            .map_err(backend)?;
        }
        self.vulndb_state().await
    }

    async fn vulndb_state(&self) -> Result<VulnDbState> {
        let row = sqlx::query_as::<_, (Option<i64>, Option<i64>, i64)>(
            "SELECT (SELECT version FROM vuln_db_state WHERE id = 1), (SELECT updated_at FROM vuln_db_state WHERE id = 1), \
             (SELECT COUNT(*) FROM vuln_records)",
        )
        .fetch_one(&self.reader)
        .await
        .map_err(backend)?;
        Ok(VulnDbState { version: row.0.unwrap_or(0), updated_at: row.1, records: row.2 })
    }

    async fn vulndb_lookup(&self, keys: &[(String, String)]) -> Result<Vec<(String, String)>> {
        let mut out = Vec::new();
        let mut seen = std::collections::HashSet::new();
        for chunk in keys.chunks(500) {
            let keys = serde_json::to_string(chunk).map_err(|e| MetaError::Backend(e.to_string()))?;
            let rows = sqlx::query_as::<_, (String, String)>(
                "SELECT DISTINCT r.id, r.record FROM vuln_packages p JOIN vuln_records r ON r.id = p.record_id \
                 WHERE (p.ecosystem, p.name) IN (SELECT value ->> 0, value ->> 1 FROM json_each($1))",
            )
            .bind(keys)
            .fetch_all(&self.reader)
            .await
            .map_err(backend)?;
            out.extend(rows.into_iter().filter(|(id, _)| seen.insert(id.clone())));
        }
        Ok(out)
    }

    async fn request_scan(&self, repository: &str, digest: &str, scan_type: &str, only_if_new: bool) -> Result<bool> {
        let on_conflict = if only_if_new {
            "DO NOTHING"
        } else {
            "DO UPDATE SET scan_type = excluded.scan_type, status = 'PENDING', generation = image_scans.generation + 1, \
             queued_at = excluded.queued_at, description = NULL, claimed_by = NULL"
        };
        let done = sqlx::query(sqlx::AssertSqlSafe(format!(
            "INSERT INTO image_scans (repository_id, digest, scan_type, status, generation, queued_at) \
             SELECT r.id, $2, $3, 'PENDING', 1, $4 FROM repositories r WHERE r.name = $1 \
             ON CONFLICT (repository_id, digest) {on_conflict}"
        )))
        .bind(repository)
        .bind(digest)
        .bind(scan_type)
        .bind(now_ms())
        .execute(&self.writer)
        .await
        .map_err(backend)?;
        Ok(done.rows_affected() > 0)
    }

    async fn claim_scans(&self, worker: &str, limit: u32) -> Result<Vec<ScanJob>> {
        let rows = sqlx::query_as::<_, (String, String, String, i64)>(
            "UPDATE image_scans SET status = 'IN_PROGRESS', claimed_by = $1, claimed_at = $2 \
             WHERE rowid IN (SELECT rowid FROM image_scans WHERE status = 'PENDING' ORDER BY queued_at LIMIT $3) \
             RETURNING (SELECT name FROM repositories WHERE id = repository_id), digest, scan_type, generation",
        )
        .bind(worker)
        .bind(now_ms())
        .bind(limit as i64)
        .fetch_all(&self.writer)
        .await
        .map_err(backend)?;
        Ok(rows
            .into_iter()
            .map(|(repository, digest, scan_type, generation)| ScanJob { repository, digest, scan_type, generation })
            .collect())
    }

    async fn finish_scan(&self, job: &ScanJob, o: &ScanOutcome) -> Result<bool> {
        let done = sqlx::query(
            "UPDATE image_scans SET status = $4, description = $5, findings = COALESCE($6, findings), \
             counts = COALESCE($7, counts), vulndb_version = COALESCE($8, vulndb_version), \
             vulndb_updated_at = COALESCE($9, vulndb_updated_at), completed_at = $10, claimed_by = NULL \
             WHERE repository_id = (SELECT id FROM repositories WHERE name = $1) AND digest = $2 AND generation = $3",
        )
        .bind(&job.repository)
        .bind(&job.digest)
        .bind(job.generation)
        .bind(&o.status)
        .bind(&o.description)
        .bind(&o.findings)
        .bind(&o.counts)
        .bind(o.vulndb_version)
        .bind(o.vulndb_updated_at)
        .bind(now_ms())
        .execute(&self.writer)
        .await
        .map_err(backend)?;
        Ok(done.rows_affected() > 0)
    }

    async fn release_scans(&self, worker: Option<&str>, before: i64) -> Result<u64> {
        let done = sqlx::query(
            "UPDATE image_scans SET status = 'PENDING', claimed_by = NULL, generation = generation + 1 \
             WHERE status = 'IN_PROGRESS' AND (claimed_by = $1 OR ($1 IS NULL AND claimed_at < $2))",
        )
        .bind(worker)
        .bind(before)
        .execute(&self.writer)
        .await
        .map_err(backend)?;
        Ok(done.rows_affected())
    }

    async fn image_scan(&self, repository: &str, digest: &str) -> Result<Option<ImageScan>> {
        let row = sqlx::query(
            "SELECT s.digest, s.scan_type, s.status, s.description, s.queued_at, s.completed_at, s.vulndb_version, \
             s.vulndb_updated_at, s.findings, s.counts FROM image_scans s JOIN repositories r ON r.id = s.repository_id \
             WHERE r.name = $1 AND s.digest = $2",
        )
        .bind(repository)
        .bind(digest)
        .fetch_optional(&self.reader)
        .await
        .map_err(backend)?;
        Ok(row.map(|r| image_scan_from_row(&r, true)))
    }

    async fn image_scan_summaries(&self, repository: &str, digests: &[String]) -> Result<Vec<ImageScan>> {
        let digests = serde_json::to_string(digests).map_err(|e| MetaError::Backend(e.to_string()))?;
        let rows = sqlx::query(
            "SELECT s.digest, s.scan_type, s.status, s.description, s.queued_at, s.completed_at, s.vulndb_version, \
             s.vulndb_updated_at, NULL, s.counts FROM image_scans s JOIN repositories r ON r.id = s.repository_id \
             WHERE r.name = $1 AND s.digest IN (SELECT value FROM json_each($2))",
        )
        .bind(repository)
        .bind(digests)
        .fetch_all(&self.reader)
        .await
        .map_err(backend)?;
        Ok(rows.iter().map(|r| image_scan_from_row(r, false)).collect())
    }

    async fn request_rescans(&self, repository: &str, version: i64) -> Result<u64> {
        let done = sqlx::query(
            "UPDATE image_scans SET status = 'PENDING', generation = generation + 1, queued_at = $3, claimed_by = NULL, \
             description = NULL WHERE repository_id = (SELECT id FROM repositories WHERE name = $1) \
             AND status = 'COMPLETE' AND (vulndb_version IS NULL OR vulndb_version < $2)",
        )
        .bind(repository)
        .bind(version)
        .bind(now_ms())
        .execute(&self.writer)
        .await
        .map_err(backend)?;
        Ok(done.rows_affected())
    }

    async fn create_upload(&self, repository: &str, id: &str, algorithm: &str) -> Result<()> {
        let mut tx = self.writer.begin().await.map_err(backend)?;
        let rid = repo_id(&mut tx, repository).await?;
        sqlx::query("INSERT INTO uploads (id, repository_id, algorithm, started_at) VALUES ($1, $2, $3, $4)")
            .bind(id)
            .bind(rid)
            .bind(algorithm)
            .bind(now_ms())
            .execute(&mut *tx)
            .await
            .map_err(backend)?;
        tx.commit().await.map_err(backend)
    }

    async fn upload(&self, id: &str) -> Result<Option<Upload>> {
        let row = sqlx::query_as::<_, (String, String, String, i64, bool)>(
            "SELECT u.id, r.name, u.algorithm, u.started_at, u.part_too_small FROM uploads u \
             JOIN repositories r ON r.id = u.repository_id WHERE u.id = $1",
        )
        .bind(id)
        .fetch_optional(&self.writer)
        .await
        .map_err(backend)?;
        Ok(row.map(|(id, repository, algorithm, started_at, part_too_small)| Upload {
            id,
            repository,
            algorithm,
            started_at,
            part_too_small,
        }))
    }

    async fn delete_upload(&self, id: &str) -> Result<()> {
        sqlx::query("DELETE FROM uploads WHERE id = $1").bind(id).execute(&self.writer).await.map_err(backend)?;
        Ok(())
    }

    async fn ensure_account(&self, account_id: &str) -> Result<()> {
        sqlx::query("INSERT INTO accounts (id, created_at) VALUES ($1, $2) ON CONFLICT (id) DO NOTHING")
            .bind(account_id)
            .bind(now_ms())
            .execute(&self.writer)
            .await
            .map_err(backend)?;
        Ok(())
    }

    async fn first_account(&self) -> Result<Option<String>> {
        sqlx::query_scalar("SELECT id FROM accounts ORDER BY created_at, id LIMIT 1")
            .fetch_optional(&self.reader)
            .await
            .map_err(backend)
    }

    async fn create_principal(&self, p: &Principal) -> Result<()> {
        sqlx::query("INSERT INTO principals (id, account_id, name, kind, created_at) VALUES ($1, $2, $3, $4, $5)")
            .bind(&p.id)
            .bind(&p.account_id)
            .bind(&p.name)
            .bind(p.kind.as_str())
            .bind(p.created_at)
            .execute(&self.writer)
            .await
            .map_err(|e| if is_unique_violation(&e) { MetaError::AlreadyExists } else { backend(e) })?;
        Ok(())
    }

    async fn principal_by_name(&self, account_id: &str, name: &str) -> Result<Option<Principal>> {
        let row = sqlx::query(
            "SELECT id, account_id, name, kind, created_at FROM principals WHERE account_id = $1 AND name = $2",
        )
        .bind(account_id)
        .bind(name)
        .fetch_optional(&self.reader)
        .await
        .map_err(backend)?;
        Ok(row.map(|r| principal_from_row(&r, 0)))
    }

    async fn list_principals(&self, account_id: &str) -> Result<Vec<Principal>> {
        let rows = sqlx::query(
            "SELECT id, account_id, name, kind, created_at FROM principals WHERE account_id = $1 ORDER BY name",
        )
        .bind(account_id)
        .fetch_all(&self.reader)
        .await
        .map_err(backend)?;
        Ok(rows.iter().map(|r| principal_from_row(r, 0)).collect())
    }

    async fn create_access_key(&self, k: &AccessKey) -> Result<()> {
        sqlx::query(
            "INSERT INTO access_keys (access_key_id, principal_id, secret, status, created_at) VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(&k.access_key_id)
        .bind(&k.principal_id)
        .bind(&k.secret)
        .bind(if k.active { "Active" } else { "Inactive" })
        .bind(k.created_at)
        .execute(&self.writer)
        .await
        .map_err(|e| if is_unique_violation(&e) { MetaError::AlreadyExists } else { backend(e) })?;
        Ok(())
    }

    async fn access_key(&self, access_key_id: &str) -> Result<Option<(AccessKey, Principal)>> {
        let row = sqlx::query(
            "SELECT k.access_key_id, k.principal_id, k.secret, k.status, k.created_at, \
             p.id, p.account_id, p.name, p.kind, p.created_at \
             FROM access_keys k JOIN principals p ON p.id = k.principal_id WHERE k.access_key_id = $1",
        )
        .bind(access_key_id)
        .fetch_optional(&self.reader)
        .await
        .map_err(backend)?;
        Ok(row.map(|r| (access_key_from_row(&r), principal_from_row(&r, 5))))
    }

    async fn list_access_keys(&self, principal_id: &str) -> Result<Vec<AccessKey>> {
        let rows = sqlx::query(
            "SELECT access_key_id, principal_id, secret, status, created_at FROM access_keys \
             WHERE principal_id = $1 ORDER BY created_at, access_key_id",
        )
        .bind(principal_id)
        .fetch_all(&self.reader)
        .await
        .map_err(backend)?;
        Ok(rows.iter().map(access_key_from_row).collect())
    }

    async fn registry_secret(&self, name: &str, initial: &[u8]) -> Result<Vec<u8>> {
        sqlx::query(
            "INSERT INTO registry_secrets (name, value, created_at) VALUES ($1, $2, $3) ON CONFLICT (name) DO NOTHING",
        )
        .bind(name)
        .bind(initial)
        .bind(now_ms())
        .execute(&self.writer)
        .await
        .map_err(backend)?;
        sqlx::query_scalar("SELECT value FROM registry_secrets WHERE name = $1")
            .bind(name)
            .fetch_one(&self.writer)
            .await
            .map_err(backend)
    }

    async fn create_creation_template(&self, prefix: &str, body: &str) -> Result<CreationTemplate> {
        let now = now_ms();
        let row = sqlx::query_as::<_, (String, String, i64, i64)>(
            "INSERT INTO repository_creation_templates (prefix, body, created_at, updated_at) VALUES ($1, $2, $3, $3) \
             RETURNING prefix, body, created_at, updated_at",
        )
        .bind(prefix)
        .bind(body)
        .bind(now)
        .fetch_one(&self.writer)
        .await
        .map_err(|e| if is_unique_violation(&e) { MetaError::AlreadyExists } else { backend(e) })?;
        Ok(template_from_row(row))
    }

    async fn update_creation_template(&self, prefix: &str, body: &str) -> Result<CreationTemplate> {
        let row = sqlx::query_as::<_, (String, String, i64, i64)>(
            "UPDATE repository_creation_templates SET body = $2, updated_at = $3 WHERE prefix = $1 \
             RETURNING prefix, body, created_at, updated_at",
        )
        .bind(prefix)
        .bind(body)
        .bind(now_ms())
        .fetch_optional(&self.writer)
        .await
        .map_err(backend)?
        .ok_or(MetaError::NotFound)?;
        Ok(template_from_row(row))
    }

    async fn delete_creation_template(&self, prefix: &str) -> Result<CreationTemplate> {
        let row = sqlx::query_as::<_, (String, String, i64, i64)>(
            "DELETE FROM repository_creation_templates WHERE prefix = $1 RETURNING prefix, body, created_at, updated_at",
        )
        .bind(prefix)
        .fetch_optional(&self.writer)
        .await
        .map_err(backend)?
        .ok_or(MetaError::NotFound)?;
        Ok(template_from_row(row))
    }

    async fn creation_templates(&self) -> Result<Vec<CreationTemplate>> {
        let rows = sqlx::query_as::<_, (String, String, i64, i64)>(
            "SELECT prefix, body, created_at, updated_at FROM repository_creation_templates ORDER BY prefix",
        )
        .fetch_all(&self.reader)
        .await
        .map_err(backend)?;
        Ok(rows.into_iter().map(template_from_row).collect())
    }

    async fn note_upload_part(&self, id: &str, small: bool) -> Result<()> {
        sqlx::query(
            "UPDATE uploads SET part_too_small = (part_too_small OR last_part_small), last_part_small = $2 WHERE id = $1",
        )
        .bind(id)
        .bind(small)
        .execute(&self.writer)
        .await
        .map_err(backend)?;
        Ok(())
    }

    async fn set_lifecycle_policy(
        &self,
        repository: &str,
        text: Option<&str>,
    ) -> Result<Option<(String, Option<i64>)>> {
        let mut tx = self.writer.begin().await.map_err(backend)?;
        let id = repo_id(&mut tx, repository).await?;
        let previous = sqlx::query_as::<_, (Option<String>, Option<i64>)>(
            "SELECT lifecycle_policy, lifecycle_evaluated_at FROM repositories WHERE id = $1",
        )
        .bind(id)
        .fetch_one(&mut *tx)
        .await
        .map_err(backend)?;
        sqlx::query("UPDATE repositories SET lifecycle_policy = $2 WHERE id = $1")
            .bind(id)
            .bind(text)
            .execute(&mut *tx)
            .await
            .map_err(backend)?;
        tx.commit().await.map_err(backend)?;
        Ok(previous.0.map(|t| (t, previous.1)))
    }

    async fn lifecycle_policy(&self, repository: &str) -> Result<Option<(String, Option<i64>)>> {
        let row = sqlx::query_as::<_, (Option<String>, Option<i64>)>(
            "SELECT lifecycle_policy, lifecycle_evaluated_at FROM repositories WHERE name = $1",
        )
        .bind(repository)
        .fetch_optional(&self.reader)
        .await
        .map_err(backend)?
        .ok_or(MetaError::RepositoryNotFound)?;
        Ok(row.0.map(|t| (t, row.1)))
    }

    async fn set_lifecycle_evaluated(&self, repository: &str, at: i64) -> Result<()> {
        sqlx::query("UPDATE repositories SET lifecycle_evaluated_at = $2 WHERE name = $1")
            .bind(repository)
            .bind(at)
            .execute(&self.writer)
            .await
            .map_err(backend)?;
        Ok(())
    }

    async fn put_lifecycle_preview(
        &self,
        repository: &str,
        policy_text: &str,
        status: &str,
        results: &str,
    ) -> Result<()> {
        let mut tx = self.writer.begin().await.map_err(backend)?;
        let id = repo_id(&mut tx, repository).await?;
        sqlx::query(
            "INSERT INTO lifecycle_previews (repository_id, policy_text, status, results, created_at) \
             VALUES ($1, $2, $3, $4, $5) ON CONFLICT (repository_id) DO UPDATE SET policy_text = excluded.policy_text, \
             status = excluded.status, results = excluded.results, created_at = excluded.created_at",
        )
        .bind(id)
        .bind(policy_text)
        .bind(status)
        .bind(results)
        .bind(now_ms())
        .execute(&mut *tx)
        .await
        .map_err(backend)?;
        tx.commit().await.map_err(backend)
    }

    async fn lifecycle_preview(&self, repository: &str) -> Result<Option<(String, String, String)>> {
        sqlx::query_as(
            "SELECT p.policy_text, p.status, p.results FROM lifecycle_previews p \
             JOIN repositories r ON r.id = p.repository_id WHERE r.name = $1",
        )
        .bind(repository)
        .fetch_optional(&self.reader)
        .await
        .map_err(backend)
    }

    async fn repository_usage(&self) -> Result<Vec<(String, i64, i64)>> {
        sqlx::query_as(
            "SELECT r.name, \
               (SELECT COUNT(*) FROM manifests m WHERE m.repository_id = r.id), \
               (SELECT COALESCE(SUM(b.size), 0) FROM repository_blobs rb JOIN blobs b ON b.digest = rb.digest \
                WHERE rb.repository_id = r.id) \
             FROM repositories r ORDER BY r.name",
        )
        .fetch_all(&self.reader)
        .await
        .map_err(backend)
    }

    async fn gc_preview(&self, before: i64) -> Result<(u64, Vec<(String, i64)>)> {
        let links: i64 = sqlx::query_scalar(unreferenced_sql(
            "SELECT COUNT(*) FROM repository_blobs rb WHERE rb.linked_at < $1 AND {unreferenced}",
            "rb",
        ))
        .bind(before)
        .fetch_one(&self.reader)
        .await
        .map_err(backend)?;
        let blobs = sqlx::query_as::<_, (String, i64)>(unreferenced_sql(
            "SELECT b.digest, b.size FROM blobs b WHERE b.created_at < $1 AND NOT EXISTS \
             (SELECT 1 FROM repository_blobs rb WHERE rb.digest = b.digest AND (rb.linked_at >= $1 OR NOT {unreferenced})) \
             ORDER BY b.digest",
            "rb",
        ))
        .bind(before)
        .fetch_all(&self.reader)
        .await
        .map_err(backend)?;
        Ok((links as u64, blobs))
    }

    async fn gc_unlink_unreferenced(&self, before: i64) -> Result<u64> {
        let r = sqlx::query(unreferenced_sql(
            "DELETE FROM repository_blobs WHERE linked_at < $1 AND {unreferenced}",
            "repository_blobs",
        ))
        .bind(before)
        .execute(&self.writer)
        .await
        .map_err(backend)?;
        Ok(r.rows_affected())
    }

    async fn gc_remove_unlinked_blobs(&self, before: i64) -> Result<Vec<(String, i64)>> {
        sqlx::query_as(
            "DELETE FROM blobs WHERE created_at < $1 \
             AND NOT EXISTS (SELECT 1 FROM repository_blobs rb WHERE rb.digest = blobs.digest) RETURNING digest, size",
        )
        .bind(before)
        .fetch_all(&self.writer)
        .await
        .map_err(backend)
    }

    async fn blobs_recorded(&self, digests: &[String]) -> Result<Vec<String>> {
        let list = serde_json::to_string(digests).map_err(|e| MetaError::Backend(e.to_string()))?;
        sqlx::query_scalar("SELECT digest FROM blobs WHERE digest IN (SELECT value FROM json_each($1))")
            .bind(list)
            .fetch_all(&self.writer)
            .await
            .map_err(backend)
    }

    async fn stale_uploads(&self, before: i64) -> Result<Vec<String>> {
        sqlx::query_scalar("SELECT id FROM uploads WHERE started_at < $1 ORDER BY id")
            .bind(before)
            .fetch_all(&self.reader)
            .await
            .map_err(backend)
    }

    async fn account_setting(&self, account_id: &str, name: &str) -> Result<Option<String>> {
        sqlx::query_scalar("SELECT value FROM account_settings WHERE account_id = $1 AND name = $2")
            .bind(account_id)
            .bind(name)
            .fetch_optional(&self.reader)
            .await
            .map_err(backend)
    }

    async fn put_account_setting(&self, account_id: &str, name: &str, value: &str) -> Result<()> {
        sqlx::query(
            "INSERT INTO account_settings (account_id, name, value) VALUES ($1, $2, $3) \
             ON CONFLICT (account_id, name) DO UPDATE SET value = excluded.value",
        )
        .bind(account_id)
        .bind(name)
        .bind(value)
        .execute(&self.writer)
        .await
        .map_err(backend)?;
        Ok(())
    }

    async fn create_group(&self, g: &Group) -> Result<()> {
        sqlx::query("INSERT INTO iam_groups (id, account_id, name, created_at) VALUES ($1, $2, $3, $4)")
            .bind(&g.id)
            .bind(&g.account_id)
            .bind(&g.name)
            .bind(g.created_at)
            .execute(&self.writer)
            .await
            .map_err(|e| if is_unique_violation(&e) { MetaError::AlreadyExists } else { backend(e) })?;
        Ok(())
    }

    async fn group_by_name(&self, account_id: &str, name: &str) -> Result<Option<Group>> {
        let row = sqlx::query_as::<_, (String, String, String, i64)>(
            "SELECT id, account_id, name, created_at FROM iam_groups WHERE account_id = $1 AND name = $2",
        )
        .bind(account_id)
        .bind(name)
        .fetch_optional(&self.reader)
        .await
        .map_err(backend)?;
        Ok(row.map(|(id, account_id, name, created_at)| Group { id, account_id, name, created_at }))
    }

    async fn list_groups(&self, account_id: &str) -> Result<Vec<Group>> {
        let rows = sqlx::query_as::<_, (String, String, String, i64)>(
            "SELECT id, account_id, name, created_at FROM iam_groups WHERE account_id = $1 ORDER BY name",
        )
        .bind(account_id)
        .fetch_all(&self.reader)
        .await
        .map_err(backend)?;
        Ok(rows
            .into_iter()
            .map(|(id, account_id, name, created_at)| Group { id, account_id, name, created_at })
            .collect())
    }

    async fn delete_group(&self, group_id: &str) -> Result<bool> {
        let mut tx = self.writer.begin().await.map_err(backend)?;
        for sql in [
            "DELETE FROM iam_inline_policies WHERE owner_id = $1",
            "DELETE FROM iam_policy_attachments WHERE owner_id = $1",
            "DELETE FROM iam_group_members WHERE group_id = $1",
        ] {
            sqlx::query(sql).bind(group_id).execute(&mut *tx).await.map_err(backend)?;
        }
        let r = sqlx::query("DELETE FROM iam_groups WHERE id = $1")
            .bind(group_id)
            .execute(&mut *tx)
            .await
            .map_err(backend)?;
        tx.commit().await.map_err(backend)?;
        Ok(r.rows_affected() > 0)
    }

    async fn add_group_member(&self, group_id: &str, principal_id: &str) -> Result<()> {
        sqlx::query("INSERT INTO iam_group_members (group_id, principal_id) VALUES ($1, $2) ON CONFLICT DO NOTHING")
            .bind(group_id)
            .bind(principal_id)
            .execute(&self.writer)
            .await
            .map_err(backend)?;
        Ok(())
    }

    async fn remove_group_member(&self, group_id: &str, principal_id: &str) -> Result<bool> {
        let r = sqlx::query("DELETE FROM iam_group_members WHERE group_id = $1 AND principal_id = $2")
            .bind(group_id)
            .bind(principal_id)
            .execute(&self.writer)
            .await
            .map_err(backend)?;
        Ok(r.rows_affected() > 0)
    }

    async fn groups_of(&self, principal_id: &str) -> Result<Vec<Group>> {
        let rows = sqlx::query_as::<_, (String, String, String, i64)>(
            "SELECT g.id, g.account_id, g.name, g.created_at FROM iam_groups g \
             JOIN iam_group_members m ON m.group_id = g.id WHERE m.principal_id = $1 ORDER BY g.name",
        )
        .bind(principal_id)
        .fetch_all(&self.reader)
        .await
        .map_err(backend)?;
        Ok(rows
            .into_iter()
            .map(|(id, account_id, name, created_at)| Group { id, account_id, name, created_at })
            .collect())
    }

    async fn group_members(&self, group_id: &str) -> Result<Vec<Principal>> {
        let rows = sqlx::query(
            "SELECT p.id, p.account_id, p.name, p.kind, p.created_at FROM principals p \
             JOIN iam_group_members m ON m.principal_id = p.id WHERE m.group_id = $1 ORDER BY p.name",
        )
        .bind(group_id)
        .fetch_all(&self.reader)
        .await
        .map_err(backend)?;
        Ok(rows.iter().map(|r| principal_from_row(r, 0)).collect())
    }

    async fn put_inline_policy(&self, owner_id: &str, name: &str, document: &str) -> Result<()> {
        sqlx::query(
            "INSERT INTO iam_inline_policies (owner_id, name, document) VALUES ($1, $2, $3) \
             ON CONFLICT (owner_id, name) DO UPDATE SET document = excluded.document",
        )
        .bind(owner_id)
        .bind(name)
        .bind(document)
        .execute(&self.writer)
        .await
        .map_err(backend)?;
        Ok(())
    }

    async fn inline_policy(&self, owner_id: &str, name: &str) -> Result<Option<String>> {
        sqlx::query_scalar("SELECT document FROM iam_inline_policies WHERE owner_id = $1 AND name = $2")
            .bind(owner_id)
            .bind(name)
            .fetch_optional(&self.reader)
            .await
            .map_err(backend)
    }

    async fn list_inline_policies(&self, owner_id: &str) -> Result<Vec<String>> {
        sqlx::query_scalar("SELECT name FROM iam_inline_policies WHERE owner_id = $1 ORDER BY name")
            .bind(owner_id)
            .fetch_all(&self.reader)
            .await
            .map_err(backend)
    }

    async fn delete_inline_policy(&self, owner_id: &str, name: &str) -> Result<bool> {
        let r = sqlx::query("DELETE FROM iam_inline_policies WHERE owner_id = $1 AND name = $2")
            .bind(owner_id)
            .bind(name)
            .execute(&self.writer)
            .await
            .map_err(backend)?;
        Ok(r.rows_affected() > 0)
    }

    async fn create_managed_policy(&self, p: &ManagedPolicy) -> Result<()> {
        sqlx::query(
            "INSERT INTO iam_managed_policies (arn, id, account_id, name, path, document, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(&p.arn)
        .bind(&p.id)
        .bind(&p.account_id)
        .bind(&p.name)
        .bind(&p.path)
        .bind(&p.document)
        .bind(p.created_at)
        .bind(p.updated_at)
        .execute(&self.writer)
        .await
        .map_err(|e| if is_unique_violation(&e) { MetaError::AlreadyExists } else { backend(e) })?;
        Ok(())
    }

    async fn managed_policy(&self, arn: &str) -> Result<Option<ManagedPolicy>> {
        let row = sqlx::query(
            "SELECT arn, id, account_id, name, path, document, created_at, updated_at FROM iam_managed_policies WHERE arn = $1",
        )
        .bind(arn)
        .fetch_optional(&self.reader)
        .await
        .map_err(backend)?;
        Ok(row.map(|r| managed_policy_from_row(&r)))
    }

    async fn list_managed_policies(&self, account_id: &str) -> Result<Vec<ManagedPolicy>> {
        let rows = sqlx::query(
            "SELECT arn, id, account_id, name, path, document, created_at, updated_at FROM iam_managed_policies \
             WHERE account_id = $1 ORDER BY name",
        )
        .bind(account_id)
        .fetch_all(&self.reader)
        .await
        .map_err(backend)?;
        Ok(rows.iter().map(managed_policy_from_row).collect())
    }

    async fn update_managed_policy(&self, arn: &str, document: &str) -> Result<bool> {
        let r = sqlx::query("UPDATE iam_managed_policies SET document = $2, updated_at = $3 WHERE arn = $1")
            .bind(arn)
            .bind(document)
            .bind(now_ms())
            .execute(&self.writer)
            .await
            .map_err(backend)?;
        Ok(r.rows_affected() > 0)
    }

    async fn delete_managed_policy(&self, arn: &str) -> Result<bool> {
        let r = sqlx::query("DELETE FROM iam_managed_policies WHERE arn = $1")
            .bind(arn)
            .execute(&self.writer)
            .await
            .map_err(backend)?;
        Ok(r.rows_affected() > 0)
    }

    async fn attach_policy(&self, owner_id: &str, arn: &str) -> Result<()> {
        sqlx::query("INSERT INTO iam_policy_attachments (owner_id, policy_arn) VALUES ($1, $2) ON CONFLICT DO NOTHING")
            .bind(owner_id)
            .bind(arn)
            .execute(&self.writer)
            .await
            .map_err(backend)?;
        Ok(())
    }

    async fn detach_policy(&self, owner_id: &str, arn: &str) -> Result<bool> {
        let r = sqlx::query("DELETE FROM iam_policy_attachments WHERE owner_id = $1 AND policy_arn = $2")
            .bind(owner_id)
            .bind(arn)
            .execute(&self.writer)
            .await
            .map_err(backend)?;
        Ok(r.rows_affected() > 0)
    }

    async fn attached_policies(&self, owner_id: &str) -> Result<Vec<String>> {
        sqlx::query_scalar("SELECT policy_arn FROM iam_policy_attachments WHERE owner_id = $1 ORDER BY policy_arn")
            .bind(owner_id)
            .fetch_all(&self.reader)
            .await
            .map_err(backend)
    }

    async fn policy_attachment_count(&self, arn: &str) -> Result<u64> {
        let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM iam_policy_attachments WHERE policy_arn = $1")
            .bind(arn)
            .fetch_one(&self.reader)
            .await
            .map_err(backend)?;
        Ok(n as u64)
    }

    async fn identity_policies(&self, principal_id: &str) -> Result<Vec<IdentityPolicySource>> {
        // The principal and its groups, in one statement each for inline and attached policies.
        let owners = "SELECT $1 UNION SELECT group_id FROM iam_group_members WHERE principal_id = $1";
        let inline = sqlx::query_as::<_, (String, String, String)>(sqlx::AssertSqlSafe(format!(
            "SELECT owner_id, name, document FROM iam_inline_policies WHERE owner_id IN ({owners}) ORDER BY owner_id, name"
        )))
        .bind(principal_id)
        .fetch_all(&self.reader)
        .await
        .map_err(backend)?;
        let attached = sqlx::query_as::<_, (String, String, Option<String>)>(sqlx::AssertSqlSafe(format!(
            "SELECT a.owner_id, a.policy_arn, p.document FROM iam_policy_attachments a \
             LEFT JOIN iam_managed_policies p ON p.arn = a.policy_arn \
             WHERE a.owner_id IN ({owners}) ORDER BY a.owner_id, a.policy_arn"
        )))
        .bind(principal_id)
        .fetch_all(&self.reader)
        .await
        .map_err(backend)?;
        Ok(inline
            .into_iter()
            .map(|(owner, name, document)| IdentityPolicySource::Inline { owner, name, document })
            .chain(attached.into_iter().map(|(owner, arn, document)| IdentityPolicySource::Attached {
                owner,
                arn,
                document,
            }))
            .collect())
    }

    async fn repository_policy(&self, repository: &str) -> Result<Option<String>> {
        let row: Option<Option<String>> =
            sqlx::query_scalar("SELECT repository_policy FROM repositories WHERE name = $1")
                .bind(repository)
                .fetch_optional(&self.reader)
                .await
                .map_err(backend)?;
        row.ok_or(MetaError::RepositoryNotFound)
    }

    async fn set_repository_policy(&self, repository: &str, text: Option<&str>) -> Result<Option<String>> {
        let mut tx = self.writer.begin().await.map_err(backend)?;
        let previous: Option<Option<String>> =
            sqlx::query_scalar("SELECT repository_policy FROM repositories WHERE name = $1")
                .bind(repository)
                .fetch_optional(&mut *tx)
                .await
                .map_err(backend)?;
        let previous = previous.ok_or(MetaError::RepositoryNotFound)?;
        sqlx::query("UPDATE repositories SET repository_policy = $2 WHERE name = $1")
            .bind(repository)
            .bind(text)
            .execute(&mut *tx)
            .await
            .map_err(backend)?;
        tx.commit().await.map_err(backend)?;
        Ok(previous)
    }

    async fn registry_policy(&self, account_id: &str) -> Result<Option<String>> {
        sqlx::query_scalar("SELECT policy_text FROM registry_policies WHERE account_id = $1")
            .bind(account_id)
            .fetch_optional(&self.reader)
            .await
            .map_err(backend)
    }

    async fn set_registry_policy(&self, account_id: &str, text: Option<&str>) -> Result<Option<String>> {
        let mut tx = self.writer.begin().await.map_err(backend)?;
        let previous: Option<String> =
            sqlx::query_scalar("SELECT policy_text FROM registry_policies WHERE account_id = $1")
                .bind(account_id)
                .fetch_optional(&mut *tx)
                .await
                .map_err(backend)?;
        match text {
            Some(t) => sqlx::query(
                "INSERT INTO registry_policies (account_id, policy_text) VALUES ($1, $2) \
                 ON CONFLICT (account_id) DO UPDATE SET policy_text = excluded.policy_text",
            )
            .bind(account_id)
            .bind(t),
            None => sqlx::query("DELETE FROM registry_policies WHERE account_id = $1").bind(account_id),
        }
        .execute(&mut *tx)
        .await
        .map_err(backend)?;
        tx.commit().await.map_err(backend)?;
        Ok(previous)
    }

    async fn delete_principal(&self, principal_id: &str) -> Result<bool> {
        let mut tx = self.writer.begin().await.map_err(backend)?;
        for sql in [
            "DELETE FROM iam_inline_policies WHERE owner_id = $1",
            "DELETE FROM iam_policy_attachments WHERE owner_id = $1",
            "DELETE FROM iam_group_members WHERE principal_id = $1",
            "DELETE FROM access_keys WHERE principal_id = $1",
        ] {
            sqlx::query(sql).bind(principal_id).execute(&mut *tx).await.map_err(backend)?;
        }
        let r = sqlx::query("DELETE FROM principals WHERE id = $1 AND kind = 'user'")
            .bind(principal_id)
            .execute(&mut *tx)
            .await
            .map_err(backend)?;
        tx.commit().await.map_err(backend)?;
        Ok(r.rows_affected() > 0)
    }

    async fn close(&self) {
        self.reader.close().await;
        self.writer.close().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn passes_the_meta_store_suite() {
        let dir = tempfile::tempdir().unwrap();
        let meta = SqliteMeta::open(&dir.path().join("meta.db")).await.unwrap();
        crate::testing::meta_store_suite(&meta).await;
        meta.close().await;
    }
}
