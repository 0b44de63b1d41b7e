// what garbage collection and fsck read and remove: every blob and reference, unreferenced links, unlinked blobs, stale uploads. Written once for both SQL backends:
// `include!`d by sqlite/mod.rs and postgres/mod.rs, where `Meta`, `Db`, `DbRow` and the
// dialect hooks (`dialect::…`) are their own.


#[async_trait]
impl GcStore for Meta {
    async fn all_blobs(&self) -> Result<Vec<(String, i64)>> {
        retry_transient!({
            sqlx::query_as("SELECT digest, size FROM blobs ORDER BY digest").fetch_all(self.reads()).await.map_err(backend)
        })
    }

    async fn all_manifest_references(&self) -> Result<Vec<ManifestReferences>> {
        retry_transient!({
            let rows = sqlx::query_as::<_, (String, String, Option<String>, Option<String>)>(
                "SELECT r.name, m.digest, mr.child_digest, mr.child_kind FROM manifests m \
                 JOIN repositories r ON r.id = m.repository_id \
                 LEFT JOIN manifest_references mr ON mr.repository_id = m.repository_id AND mr.manifest_digest = m.digest \
                 ORDER BY r.name, m.digest",
            )
            .fetch_all(self.reads())
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
        })
    }

    async fn gc_preview(&self, before: i64) -> Result<(u64, Vec<(String, i64)>)> {
        retry_transient!({
            let links: i64 = sqlx::query_scalar(unreferenced_sql(
                "SELECT COUNT(*) FROM repository_blobs rb WHERE rb.linked_at < $1 AND {unreferenced}",
                "rb",
            ))
            .bind(before)
            .fetch_one(self.reads())
            .await
            .map_err(backend)?;
            let blobs = sqlx::query_as::<_, (String, i64)>(unreferenced_sql(
                "SELECT b.digest, b.size FROM blobs b WHERE b.created_at < $1 AND NOT EXISTS \
                 (SELECT CAST(1 AS BIGINT) FROM repository_blobs rb WHERE rb.digest = b.digest AND (rb.linked_at >= $1 OR NOT {unreferenced})) \
                 ORDER BY b.digest",
                "rb",
            ))
            .bind(before)
            .fetch_all(self.reads())
            .await
            .map_err(backend)?;
            Ok((links as u64, blobs))
        })
    }

    async fn gc_unlink_unreferenced(&self, before: i64) -> Result<u64> {
        retry_transient!({
            let mut tx = self.begin_write().await.map_err(backend)?;
            dialect::gc_lock(&mut tx).await?;
            let r = sqlx::query(unreferenced_sql(
                "DELETE FROM repository_blobs WHERE linked_at < $1 AND {unreferenced}",
                "repository_blobs",
            ))
            .bind(before)
            .execute(&mut *tx)
            .await
            .map_err(backend)?;
            tx.commit().await.map_err(commit_failed)?;
            Ok(r.rows_affected())
        })
    }

    async fn gc_remove_unlinked_blobs(&self, before: i64) -> Result<Vec<(String, i64)>> {
        retry_transient!({
            let mut tx = self.begin_write().await.map_err(backend)?;
            dialect::gc_lock(&mut tx).await?;
            let removed = sqlx::query_as(
                "DELETE FROM blobs WHERE created_at < $1 \
                 AND NOT EXISTS (SELECT CAST(1 AS BIGINT) FROM repository_blobs rb WHERE rb.digest = blobs.digest) RETURNING digest, size",
            )
            .bind(before)
            .fetch_all(&mut *tx)
            .await
            .map_err(backend)?;
            tx.commit().await.map_err(commit_failed)?;
            Ok(removed)
        })
    }

    async fn blobs_recorded(&self, digests: &[String]) -> Result<Vec<String>> {
        sqlx::query_scalar(sqlx::AssertSqlSafe(format!("SELECT digest FROM blobs WHERE digest {}", dialect::in_list(1))))
            .bind(dialect::list(digests)?)
            .fetch_all(self.writes())
            .await
            .map_err(backend)
    }

    async fn delete_blob_keys(&self, digests: &[String]) -> Result<()> {
        if digests.is_empty() {
            return Ok(());
        }
        sqlx::query(sqlx::AssertSqlSafe(format!("DELETE FROM blob_keys WHERE digest {}", dialect::in_list(1))))
            .bind(dialect::list(digests)?)
            .execute(self.writes())
            .await
            .map_err(backend)?;
        Ok(())
    }

    async fn unrecorded_blob_keys(&self) -> Result<Vec<String>> {
        retry_transient!({
            sqlx::query_scalar(
                "SELECT DISTINCT k.digest FROM blob_keys k \
                 WHERE NOT EXISTS (SELECT CAST(1 AS BIGINT) FROM blobs b WHERE b.digest = k.digest) ORDER BY k.digest",
            )
            .fetch_all(self.reads())
            .await
            .map_err(backend)
        })
    }

    async fn stale_uploads(&self, before: i64) -> Result<Vec<String>> {
        retry_transient!({
            sqlx::query_scalar("SELECT id FROM uploads WHERE started_at < $1 ORDER BY id")
                .bind(before)
                .fetch_all(self.reads())
                .await
                .map_err(backend)
        })
    }

    async fn lock_blob_bytes(&self, digests: &[String]) -> Result<BlobBytesLock> {
        retry_transient!({
            dialect::lock_blob_bytes(self, digests).await
        })
    }
}
