// lifecycle policies, their previews and the events of their runs. Written once for both SQL backends:
// `include!`d by sqlite/mod.rs and postgres/mod.rs, where `Meta`, `Db`, `DbRow` and the
// dialect hooks (`dialect::…`) are their own.


#[async_trait]
impl LifecycleStore for Meta {
    async fn record_lifecycle_event(&self, e: &LifecycleEvent) -> Result<()> {
        let tags = serde_json::to_string(&e.tags).map_err(|e| MetaError::Backend(e.to_string()))?;
        sqlx::query(
            "INSERT INTO lifecycle_events (repository, digest, tags, action, rule_priority, at) \
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(&e.repository)
        .bind(&e.digest)
        .bind(tags)
        .bind(e.action.as_api_str())
        .bind(e.rule_priority)
        .bind(e.at)
        .execute(self.writes())
        .await
        .map_err(backend)?;
        Ok(())
    }

    async fn lifecycle_events(&self, repository: Option<&str>, limit: u32) -> Result<Vec<LifecycleEvent>> {
        retry_transient!({
            let rows = sqlx::query_as::<_, (String, String, String, String, i64, i64)>(
                "SELECT repository, digest, tags, action, rule_priority, at FROM lifecycle_events \
                 WHERE $1 IS NULL OR repository = $1 ORDER BY at DESC, id DESC LIMIT $2",
            )
            .bind(repository)
            .bind(limit as i64)
            .fetch_all(self.reads())
            .await
            .map_err(backend)?;
            rows.into_iter()
                .map(|(repository, digest, tags, action, rule_priority, at)| {
                    Ok(LifecycleEvent {
                        repository,
                        digest,
                        tags: serde_json::from_str(&tags).unwrap_or_default(),
                        action: stored("lifecycle action", &action, ActionKind::parse)?,
                        rule_priority,
                        at,
                    })
                })
                .collect()
        })
    }

    async fn set_lifecycle_policy(
        &self,
        repository: &str,
        text: Option<&str>,
    ) -> Result<Option<(String, Option<i64>)>> {
        retry_transient!({
            let mut tx = self.begin_write().await.map_err(backend)?;
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
            tx.commit().await.map_err(commit_failed)?;
            Ok(previous.0.map(|t| (t, previous.1)))
        })
    }

    async fn lifecycle_policy(&self, repository: &str) -> Result<Option<(String, Option<i64>)>> {
        retry_transient!({
            let row = sqlx::query_as::<_, (Option<String>, Option<i64>)>(
                "SELECT lifecycle_policy, lifecycle_evaluated_at FROM repositories WHERE name = $1",
            )
            .bind(repository)
            .fetch_optional(self.reads())
            .await
            .map_err(backend)?
            .ok_or(MetaError::RepositoryNotFound)?;
            Ok(row.0.map(|t| (t, row.1)))
        })
    }

    async fn set_lifecycle_evaluated(&self, repository: &str, at: i64) -> Result<()> {
        sqlx::query("UPDATE repositories SET lifecycle_evaluated_at = $2 WHERE name = $1")
            .bind(repository)
            .bind(at)
            .execute(self.writes())
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
        retry_transient!({
            let mut tx = self.begin_write().await.map_err(backend)?;
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
            tx.commit().await.map_err(commit_failed)
        })
    }

    async fn lifecycle_preview(&self, repository: &str) -> Result<Option<(String, String, String)>> {
        retry_transient!({
            sqlx::query_as(
                "SELECT p.policy_text, p.status, p.results FROM lifecycle_previews p \
                 JOIN repositories r ON r.id = p.repository_id WHERE r.name = $1",
            )
            .bind(repository)
            .fetch_optional(self.reads())
            .await
            .map_err(backend)
        })
    }
}
