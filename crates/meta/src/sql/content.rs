// what repositories hold: blob links, manifests with their references, tags, image records, and upload sessions. Written once for both SQL backends:
// `include!`d by sqlite/mod.rs and postgres/mod.rs, where `Meta`, `Db`, `DbRow` and the
// dialect hooks (`dialect::…`) are their own.


async fn insert_blob_keys(tx: &mut sqlx::Transaction<'_, Db>, digest: &Digest, keys: &BlobKeyWrapping) -> Result<()> {
    sqlx::query(
        "INSERT INTO blob_keys (digest, wrapping, layers, wrapped, created_at) VALUES ($1, $2, $3, $4, $5) \
         ON CONFLICT (digest, wrapping) DO NOTHING",
    )
    .bind(digest.as_str())
    .bind(&keys.wrapping)
    .bind(i64::from(keys.layers))
    .bind(&keys.wrapped)
    .bind(now_ms())
    .execute(&mut **tx)
    .await
    .map_err(backend)?;
    Ok(())
}

#[async_trait]
impl ContentStore for Meta {
    async fn link_blob(
        &self,
        repository: &str,
        digest: &Digest,
        size: u64,
        finished_upload: Option<&str>,
    ) -> Result<bool> {
        retry_transient!({
            let mut tx = self.begin_write().await.map_err(backend)?;
            dialect::push_lock(&mut tx).await?;
            let id = repo_id(&mut tx, repository).await?;
            let now = now_ms();
            sqlx::query("INSERT INTO blobs (digest, size, created_at) VALUES ($1, $2, $3) ON CONFLICT (digest) DO NOTHING")
                .bind(digest.as_str())
                .bind(size as i64)
                .bind(now)
                .execute(&mut *tx)
                .await
                .map_err(backend)?;
            let held = dialect::link(&mut tx, id, digest, now).await?;
            if let Some(upload) = finished_upload {
                sqlx::query("DELETE FROM uploads WHERE id = $1").bind(upload).execute(&mut *tx).await.map_err(backend)?;
            }
            tx.commit().await.map_err(commit_failed)?;
            Ok(held)
        })
    }

    async fn mount_blob(&self, from: &str, to: &str, digest: &Digest) -> Result<bool> {
        retry_transient!({
            let mut tx = self.begin_write().await.map_err(backend)?;
            dialect::push_lock(&mut tx).await?;
            let to_id = repo_id(&mut tx, to).await?;
            let held: Option<i64> = sqlx::query_scalar(
                "SELECT CAST(1 AS BIGINT) FROM repository_blobs rb JOIN repositories r ON r.id = rb.repository_id \
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
            tx.commit().await.map_err(commit_failed)?;
            Ok(true)
        })
    }

    async fn linked_blob(&self, repository: &str, digest: &Digest) -> Result<Option<u64>> {
        retry_transient!({
            let size: Option<i64> = sqlx::query_scalar(
                "SELECT b.size FROM repository_blobs rb \
                 JOIN repositories r ON r.id = rb.repository_id JOIN blobs b ON b.digest = rb.digest \
                 WHERE r.name = $1 AND rb.digest = $2",
            )
            .bind(repository)
            .bind(digest.as_str())
            .fetch_optional(self.reads())
            .await
            .map_err(backend)?;
            Ok(size.map(|s| s as u64))
        })
    }

    async fn put_manifest(
        &self,
        repository: &str,
        m: &NewManifest,
        tags: &[String],
        immutable_tags: &[String],
    ) -> Result<()> {
        retry_transient!({
            let mut tx = self.begin_write().await.map_err(backend)?;
            dialect::push_lock(&mut tx).await?;
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
                missing(&mut tx, "SELECT CAST(1 AS BIGINT) FROM repository_blobs WHERE repository_id = $1 AND digest = $2", id, &m.blobs)
                    .await?;
            let missing_manifests =
                missing(&mut tx, "SELECT CAST(1 AS BIGINT) FROM manifests WHERE repository_id = $1 AND digest = $2", id, &m.manifests)
                    .await?;
            if !missing_blobs.is_empty() || !missing_manifests.is_empty() {
                return Err(MetaError::MissingReferences { blobs: missing_blobs, manifests: missing_manifests });
            }
            let now = now_ms();
            sqlx::query(
                "INSERT INTO manifests (repository_id, digest, media_type, artifact_type, subject, annotations, size, content, \
                 pushed_at, key_wrapping, wrapped_keys) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) ON CONFLICT (repository_id, digest) DO UPDATE \
                 SET storage_class = 'STANDARD', last_activated_at = excluded.pushed_at WHERE manifests.storage_class = 'ARCHIVE'",
            )
            .bind(id)
            .bind(m.digest.as_str())
            .bind(&m.media_type)
            .bind(&m.artifact_type)
            .bind(m.subject.as_ref().map(|s| s.as_str()))
            .bind(&m.annotations)
            .bind(m.size as i64)
            .bind(&m.content)
            .bind(now)
            .bind(m.keys.as_ref().map(|k| k.wrapping.clone()))
            .bind(m.keys.as_ref().map(|k| k.wrapped.clone()))
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
                // An immutable tag moves only onto its own digest: checked in the upsert itself, so a
                // racing push of the same tag (which waits on the row) finds the winner's digest.
                let immutable = immutable_tags.contains(tag);
                let written = sqlx::query(
                    "INSERT INTO tags (repository_id, tag, digest, updated_at) VALUES ($1, $2, $3, $4) \
                     ON CONFLICT (repository_id, tag) DO UPDATE SET digest = excluded.digest, updated_at = excluded.updated_at \
                     WHERE NOT $5 OR tags.digest = excluded.digest",
                )
                .bind(id)
                .bind(tag)
                .bind(m.digest.as_str())
                .bind(now)
                .bind(immutable)
                .execute(&mut *tx)
                .await
                .map_err(backend)?;
                if written.rows_affected() == 0 {
                    return Err(MetaError::TagImmutable(tag.clone()));
                }
            }
            queue_jobs(&mut tx, repository, m.digest.as_str(), tags, &m.replicate_to, now).await?;
            tx.commit().await.map_err(commit_failed)
        })
    }

    async fn manifest(&self, repository: &str, digest: &Digest) -> Result<Option<StoredManifest>> {
        retry_transient!({
            let row = sqlx::query_as::<_, StoredManifestRow>(
                "SELECT m.digest, m.media_type, m.content, m.storage_class, r.pull_block_severity, s.status, s.counts, \
                 m.key_wrapping, m.wrapped_keys, r.pull_verification FROM manifests m JOIN repositories r ON r.id = m.repository_id \
                 LEFT JOIN image_scans s ON s.repository_id = m.repository_id AND s.digest = m.digest \
                 WHERE r.name = $1 AND m.digest = $2",
            )
            .bind(repository)
            .bind(digest.as_str())
            .fetch_optional(self.reads())
            .await
            .map_err(backend)?;
            row.map(stored_manifest_from_row).transpose()
        })
    }

    async fn tagged_manifest(&self, repository: &str, tag: &str) -> Result<Option<StoredManifest>> {
        retry_transient!({
            let row = sqlx::query_as::<_, StoredManifestRow>(
                "SELECT m.digest, m.media_type, m.content, m.storage_class, r.pull_block_severity, s.status, s.counts, \
                 m.key_wrapping, m.wrapped_keys, r.pull_verification FROM tags t JOIN repositories r ON r.id = t.repository_id \
                 JOIN manifests m ON m.repository_id = t.repository_id AND m.digest = t.digest \
                 LEFT JOIN image_scans s ON s.repository_id = m.repository_id AND s.digest = m.digest \
                 WHERE r.name = $1 AND t.tag = $2",
            )
            .bind(repository)
            .bind(tag)
            .fetch_optional(self.reads())
            .await
            .map_err(backend)?;
            row.map(stored_manifest_from_row).transpose()
        })
    }

    async fn resolve_tag(&self, repository: &str, tag: &str) -> Result<Option<Digest>> {
        retry_transient!({
            let d: Option<String> = sqlx::query_scalar(
                "SELECT t.digest FROM tags t JOIN repositories r ON r.id = t.repository_id WHERE r.name = $1 AND t.tag = $2",
            )
            .bind(repository)
            .bind(tag)
            .fetch_optional(self.reads())
            .await
            .map_err(backend)?;
            d.map(parse_digest).transpose()
        })
    }

    async fn delete_manifest(&self, repository: &str, digest: &Digest) -> Result<bool> {
        retry_transient!({
            let mut tx = self.begin_write().await.map_err(backend)?;
            // Lock the manifest first: an index put that references it holds it shared (see
            // `missing`), so its references are committed — and seen below — before this goes on.
            dialect::lock_manifest(&mut tx, repository, digest).await?;
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
            tx.commit().await.map_err(commit_failed)?;
            Ok(r.rows_affected() > 0)
        })
    }

    async fn delete_tag(&self, repository: &str, tag: &str) -> Result<bool> {
        let r = sqlx::query(
            "DELETE FROM tags WHERE tag = $2 AND repository_id = (SELECT id FROM repositories WHERE name = $1)",
        )
        .bind(repository)
        .bind(tag)
        .execute(self.writes())
        .await
        .map_err(backend)?;
        Ok(r.rows_affected() > 0)
    }

    async fn list_tags(&self, repository: &str, last: Option<&str>, limit: u32) -> Result<Vec<String>> {
        retry_transient!({
            // One row holding the page as a JSON array: on SQLite rows cross from its thread one by
            // one, which made a page of thousands of tags several times slower than the query.
            let page: String = sqlx::query_scalar(dialect::TAG_PAGE)
            .bind(repository)
            .bind(last.unwrap_or(""))
            .bind(limit as i64)
            .fetch_one(self.reads())
            .await
            .map_err(backend)?;
            let mut tags: Vec<String> =
                serde_json::from_str(&page).map_err(|e| MetaError::Backend(format!("tag page: {e}")))?;
            // The aggregate keeps the subquery's order in practice; sorting is cheap insurance.
            tags.sort_unstable();
            Ok(tags)
        })
    }

    async fn referrers(
        &self,
        repository: &str,
        subject: &Digest,
        artifact_type: Option<&str>,
    ) -> Result<Vec<ManifestSummary>> {
        retry_transient!({
            let rows = sqlx::query(
                "SELECT m.digest, m.media_type, m.size, m.artifact_type, m.annotations, m.key_wrapping, m.wrapped_keys \
                 FROM manifests m \
                 JOIN repositories r ON r.id = m.repository_id \
                 WHERE r.name = $1 AND m.subject = $2 AND ($3 IS NULL OR m.artifact_type = $3) ORDER BY m.digest",
            )
            .bind(repository)
            .bind(subject.as_str())
            .bind(artifact_type)
            .fetch_all(self.reads())
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
                    keys: manifest_keys(r.get(5), r.get(6)),
                })
                .collect())
        })
    }

    async fn list_image_ids(
        &self,
        repository: &str,
        after: Option<(&str, &str)>,
        limit: u32,
        filter: ImageFilter,
    ) -> Result<Vec<(String, Option<String>)>> {
        retry_transient!({
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
                .fetch_all(self.reads())
                .await
                .map_err(backend)?;
            Ok(rows)
        })
    }

    async fn list_images(
        &self,
        repository: &str,
        after: Option<&str>,
        limit: u32,
        filter: ImageFilter,
    ) -> Result<Vec<ImageRecord>> {
        retry_transient!({
            let sql = format!(
                "SELECT m.digest, m.media_type, m.artifact_type, m.subject, m.pushed_at, m.last_pulled_at, m.repository_id, \
                 m.storage_class, m.last_archived_at, m.last_activated_at \
                 FROM manifests m JOIN repositories r ON r.id = m.repository_id \
                 WHERE r.name = $1 AND m.digest > $2 AND {} AND ($3 = 0 \
                   OR ($3 = 1 AND EXISTS (SELECT CAST(1 AS BIGINT) FROM tags t WHERE t.repository_id = m.repository_id AND t.digest = m.digest)) \
                   OR ($3 = 2 AND NOT EXISTS (SELECT CAST(1 AS BIGINT) FROM tags t WHERE t.repository_id = m.repository_id AND t.digest = m.digest))) \
                 ORDER BY m.digest LIMIT $4",
                status_condition(5)
            );
            let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
                .bind(repository)
                .bind(after.unwrap_or(""))
                .bind(filter_code(filter.tags))
                .bind(limit as i64)
                .bind(status_code(filter.status))
                .fetch_all(self.reads())
                .await
                .map_err(backend)?;
            self.images_from_rows(&rows).await
        })
    }

    async fn image(&self, repository: &str, digest: &str) -> Result<Option<ImageRecord>> {
        retry_transient!({
            // One image is a page of one.
            let row = sqlx::query(
                "SELECT m.digest, m.media_type, m.artifact_type, m.subject, m.pushed_at, m.last_pulled_at, m.repository_id, \
                 m.storage_class, m.last_archived_at, m.last_activated_at \
                 FROM manifests m JOIN repositories r ON r.id = m.repository_id WHERE r.name = $1 AND m.digest = $2",
            )
            .bind(repository)
            .bind(digest)
            .fetch_optional(self.reads())
            .await
            .map_err(backend)?;
            match row {
                Some(r) => Ok(self.images_from_rows(&[r]).await?.pop()),
                None => Ok(None),
            }
        })
    }

    async fn image_blob_bytes(&self, repository: &str, digests: &[String]) -> Result<Vec<(String, i64)>> {
        retry_transient!({
            sqlx::query_as(sqlx::AssertSqlSafe(format!(
                "SELECT mr.manifest_digest, CAST(SUM(b.size) AS BIGINT) FROM manifest_references mr JOIN blobs b ON b.digest = mr.child_digest \
                 JOIN repositories r ON r.id = mr.repository_id WHERE r.name = $1 AND mr.child_kind = 'blob' \
                 AND mr.manifest_digest {} GROUP BY mr.manifest_digest",
                dialect::in_list(2)
            )))
            .bind(repository)
            .bind(dialect::list(digests)?)
            .fetch_all(self.reads())
            .await
            .map_err(backend)
        })
    }

    async fn manifest_parents(&self, repository: &str, digest: &str) -> Result<Vec<String>> {
        retry_transient!({
            sqlx::query_scalar(
                "SELECT mr.manifest_digest FROM manifest_references mr JOIN repositories r ON r.id = mr.repository_id \
                 WHERE r.name = $1 AND mr.child_digest = $2 AND mr.child_kind = 'manifest' ORDER BY mr.manifest_digest",
            )
            .bind(repository)
            .bind(digest)
            .fetch_all(self.reads())
            .await
            .map_err(backend)
        })
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
        .execute(self.writes())
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
        retry_transient!({
            let mut tx = self.begin_write().await.map_err(backend)?;
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
            tx.commit().await.map_err(commit_failed)?;
            Ok(Some(true))
        })
    }

    async fn create_upload(
        &self,
        repository: &str,
        id: &str,
        algorithm: Algorithm,
        store_state: &str,
        cipher: Option<&UploadCipher>,
    ) -> Result<()> {
        retry_transient!({
            let mut tx = self.begin_write().await.map_err(backend)?;
            let rid = repo_id(&mut tx, repository).await?;
            sqlx::query(
                "INSERT INTO uploads (id, repository_id, algorithm, started_at, store_state, key_wrapping, wrapped_keys) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7)",
            )
            .bind(id)
            .bind(rid)
            .bind(algorithm.as_str())
            .bind(now_ms())
            .bind(store_state)
            .bind(cipher.map(|c| c.wrapping.clone()))
            .bind(cipher.map(|c| c.wrapped_keys.clone()))
            .execute(&mut *tx)
            .await
            .map_err(backend)?;
            tx.commit().await.map_err(commit_failed)
        })
    }

    async fn upload(&self, id: &str) -> Result<Option<Upload>> {
        let row = sqlx::query(
            "SELECT u.id, r.name, u.algorithm, u.started_at, u.part_too_small, u.acknowledged_bytes, u.hash_state, \
             u.store_state, u.key_wrapping, u.wrapped_keys, u.staged_chunk \
             FROM uploads u JOIN repositories r ON r.id = u.repository_id WHERE u.id = $1",
        )
        .bind(id)
        .fetch_optional(self.writes())
        .await
        .map_err(backend)?;
        let Some(row) = row else { return Ok(None) };
        let algorithm: String = row.get(2);
        let algorithm = stored("digest algorithm", &algorithm, |a| Algorithm::parse(a).ok())?;
        let (wrapping, wrapped_keys): (Option<String>, Option<Vec<u8>>) = (row.get(8), row.get(9));
        let cipher = match (wrapping, wrapped_keys) {
            (Some(wrapping), Some(wrapped_keys)) => Some(UploadCipher { wrapping, wrapped_keys, staged_chunk: row.get(10) }),
            _ => None,
        };
        Ok(Some(Upload {
            id: row.get(0),
            repository: row.get(1),
            algorithm,
            started_at: row.get(3),
            part_too_small: row.get(4),
            acknowledged_bytes: row.get::<i64, _>(5) as u64,
            hash_state: row.get(6),
            store_state: row.get(7),
            cipher,
        }))
    }

    async fn record_upload_progress(
        &self,
        id: &str,
        from: u64,
        to: u64,
        hash_state: &[u8],
        store_state: &str,
        staged_chunk: Option<&[u8]>,
    ) -> Result<bool> {
        let done = sqlx::query(
            "UPDATE uploads SET acknowledged_bytes = $3, hash_state = $4, store_state = $5, staged_chunk = $6 \
             WHERE id = $1 AND acknowledged_bytes = $2",
        )
        .bind(id)
        .bind(from as i64)
        .bind(to as i64)
        .bind(hash_state)
        .bind(store_state)
        .bind(staged_chunk)
        .execute(self.writes())
        .await
        .map_err(backend)?;
        Ok(done.rows_affected() == 1)
    }

    async fn delete_upload(&self, id: &str) -> Result<()> {
        sqlx::query("DELETE FROM uploads WHERE id = $1").bind(id).execute(self.writes()).await.map_err(backend)?;
        Ok(())
    }

    async fn blob_keys(&self, digest: &Digest) -> Result<Vec<BlobKeyWrapping>> {
        retry_transient!({
            let rows = sqlx::query_as::<_, (String, i64, Vec<u8>)>(
                "SELECT wrapping, layers, wrapped FROM blob_keys WHERE digest = $1 ORDER BY wrapping",
            )
            .bind(digest.as_str())
            .fetch_all(self.reads())
            .await
            .map_err(backend)?;
            Ok(rows
                .into_iter()
                .map(|(wrapping, layers, wrapped)| BlobKeyWrapping { wrapping, layers: layers as u32, wrapped })
                .collect())
        })
    }

    async fn claim_blob_keys(&self, digest: &Digest, keys: &BlobKeyWrapping) -> Result<()> {
        retry_transient!({
            let mut tx = self.begin_write().await.map_err(backend)?;
            sqlx::query("DELETE FROM blob_keys WHERE digest = $1")
                .bind(digest.as_str())
                .execute(&mut *tx)
                .await
                .map_err(backend)?;
            insert_blob_keys(&mut tx, digest, keys).await?;
            tx.commit().await.map_err(commit_failed)
        })
    }

    async fn add_blob_key_wrapping(&self, digest: &Digest, keys: &BlobKeyWrapping) -> Result<()> {
        retry_transient!({
            let mut tx = self.begin_write().await.map_err(backend)?;
            insert_blob_keys(&mut tx, digest, keys).await?;
            tx.commit().await.map_err(commit_failed)
        })
    }

    async fn repositories_linking(&self, digest: &Digest) -> Result<Vec<String>> {
        retry_transient!({
            sqlx::query_scalar(
                "SELECT r.name FROM repository_blobs b JOIN repositories r ON r.id = b.repository_id \
                 WHERE b.digest = $1 ORDER BY r.name",
            )
            .bind(digest.as_str())
            .fetch_all(self.reads())
            .await
            .map_err(backend)
        })
    }

    async fn unsealed_manifests(&self, after: Option<(&str, &str)>, limit: u32) -> Result<Vec<UnsealedManifest>> {
        let (after_repository, after_digest) = after.unwrap_or(("", ""));
        retry_transient!({
            let rows = sqlx::query(
                "SELECT r.name, m.digest, m.content, m.annotations FROM manifests m JOIN repositories r ON r.id = m.repository_id \
                 WHERE m.key_wrapping IS NULL AND (r.name > $1 OR (r.name = $1 AND m.digest > $2)) \
                 ORDER BY r.name, m.digest LIMIT $3",
            )
            .bind(after_repository)
            .bind(after_digest)
            .bind(i64::from(limit))
            .fetch_all(self.reads())
            .await
            .map_err(backend)?;
            Ok(rows
                .into_iter()
                .map(|r| UnsealedManifest {
                    repository: r.get(0),
                    digest: r.get(1),
                    content: r.get(2),
                    annotations: r.get(3),
                })
                .collect())
        })
    }

    async fn seal_stored_manifest(
        &self,
        repository: &str,
        digest: &str,
        content: &[u8],
        annotations: Option<&str>,
        keys: &ManifestKeys,
    ) -> Result<bool> {
        retry_transient!({
            let done = sqlx::query(
                "UPDATE manifests SET content = $3, annotations = $4, key_wrapping = $5, wrapped_keys = $6 \
                 WHERE repository_id = (SELECT id FROM repositories WHERE name = $1) AND digest = $2 \
                 AND key_wrapping IS NULL",
            )
            .bind(repository)
            .bind(digest)
            .bind(content)
            .bind(annotations)
            .bind(&keys.wrapping)
            .bind(&keys.wrapped)
            .execute(self.writes())
            .await
            .map_err(backend)?;
            Ok(done.rows_affected() > 0)
        })
    }

    async fn note_upload_part(&self, id: &str, small: bool) -> Result<()> {
        sqlx::query(
            "UPDATE uploads SET part_too_small = (part_too_small OR last_part_small), last_part_small = $2 WHERE id = $1",
        )
        .bind(id)
        .bind(small)
        .execute(self.writes())
        .await
        .map_err(backend)?;
        Ok(())
    }
}
