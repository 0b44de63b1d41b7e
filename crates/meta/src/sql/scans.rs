// the vulnerability database and the scan queue with its results. Written once for both SQL backends:
// `include!`d by sqlite/mod.rs and postgres/mod.rs, where `Meta`, `Db`, `DbRow` and the
// dialect hooks (`dialect::…`) are their own.


#[async_trait]
impl ScanStore for Meta {
    async fn vulndb_put(&self, records: &[VulnRecord]) -> Result<u64> {
        retry_transient!({
            let mut tx = self.begin_write().await.map_err(backend)?;
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
            tx.commit().await.map_err(commit_failed)?;
            Ok(changed)
        })
    }

    async fn vulndb_finish_import(&self, changed: u64) -> Result<VulnDbState> {
        if changed > 0 {
            sqlx::query(
                "INSERT INTO vuln_db_state (id, version, updated_at) VALUES (1, 1, $1) \
                 ON CONFLICT (id) DO UPDATE SET version = vuln_db_state.version + 1, updated_at = excluded.updated_at",
            )
            .bind(now_ms())
            .execute(self.writes())
            .await
            .map_err(backend)?;
        }
        self.vulndb_state().await
    }

    async fn vulndb_state(&self) -> Result<VulnDbState> {
        retry_transient!({
            let row = sqlx::query_as::<_, (Option<i64>, Option<i64>, i64)>(
                "SELECT (SELECT version FROM vuln_db_state WHERE id = 1), (SELECT updated_at FROM vuln_db_state WHERE id = 1), \
                 (SELECT COUNT(*) FROM vuln_records)",
            )
            .fetch_one(self.reads())
            .await
            .map_err(backend)?;
            Ok(VulnDbState { version: row.0.unwrap_or(0), updated_at: row.1, records: row.2 })
        })
    }

    async fn vulndb_lookup(&self, keys: &[(String, String)]) -> Result<Vec<(String, String)>> {
        retry_transient!({
            let mut out = Vec::new();
            let mut seen = std::collections::HashSet::new();
            for chunk in keys.chunks(500) {
                let rows = dialect::vulndb_lookup(self, chunk).await?;
                out.extend(rows.into_iter().filter(|(id, _)| seen.insert(id.clone())));
            }
            Ok(out)
        })
    }

    async fn request_scan(
        &self,
        repository: &str,
        digest: &str,
        scan_type: ScanType,
        only_if_new: bool,
    ) -> Result<bool> {
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
        .bind(scan_type.as_str())
        .bind(now_ms())
        .execute(self.writes())
        .await
        .map_err(backend)?;
        Ok(done.rows_affected() > 0)
    }

    async fn claim_scans(&self, worker: &str, limit: u32) -> Result<Vec<ScanJob>> {
        let rows = sqlx::query_as::<_, (String, String, String, i64)>(dialect::CLAIM_SCANS)
        .bind(worker)
        .bind(now_ms())
        .bind(limit as i64)
        .fetch_all(self.writes())
        .await
        .map_err(backend)?;
        rows.into_iter()
            .map(|(repository, digest, scan_type, generation)| {
                let scan_type = stored("scan type", &scan_type, ScanType::parse)?;
                Ok(ScanJob { repository, digest, scan_type, generation })
            })
            .collect()
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
        .bind(o.status.as_str())
        .bind(&o.description)
        .bind(&o.findings)
        .bind(&o.counts)
        .bind(o.vulndb_version)
        .bind(o.vulndb_updated_at)
        .bind(now_ms())
        .execute(self.writes())
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
        .execute(self.writes())
        .await
        .map_err(backend)?;
        Ok(done.rows_affected())
    }

    async fn image_scan(&self, repository: &str, digest: &str) -> Result<Option<ImageScan>> {
        retry_transient!({
            let row = sqlx::query(
                "SELECT s.digest, s.scan_type, s.status, s.description, s.queued_at, s.completed_at, s.vulndb_version, \
                 s.vulndb_updated_at, s.findings, s.counts FROM image_scans s JOIN repositories r ON r.id = s.repository_id \
                 WHERE r.name = $1 AND s.digest = $2",
            )
            .bind(repository)
            .bind(digest)
            .fetch_optional(self.reads())
            .await
            .map_err(backend)?;
            row.map(|r| image_scan_from_row(&r, true)).transpose()
        })
    }

    async fn image_scan_summaries(&self, repository: &str, digests: &[String]) -> Result<Vec<ImageScan>> {
        retry_transient!({
            let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
                "SELECT s.digest, s.scan_type, s.status, s.description, s.queued_at, s.completed_at, s.vulndb_version, \
                 s.vulndb_updated_at, CAST(NULL AS TEXT), s.counts FROM image_scans s JOIN repositories r ON r.id = s.repository_id \
                 WHERE r.name = $1 AND s.digest {}",
                dialect::in_list(2)
            )))
            .bind(repository)
            .bind(dialect::list(digests)?)
            .fetch_all(self.reads())
            .await
            .map_err(backend)?;
            rows.iter().map(|r| image_scan_from_row(r, false)).collect()
        })
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
        .execute(self.writes())
        .await
        .map_err(backend)?;
        Ok(done.rows_affected())
    }
}
