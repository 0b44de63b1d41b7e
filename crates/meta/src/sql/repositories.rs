// repositories and what is configured on them and on accounts: settings, resource tags, resource policies, account settings and repository creation templates. Written once for both SQL backends:
// `include!`d by sqlite/mod.rs and postgres/mod.rs, where `Meta`, `Db`, `DbRow` and the
// dialect hooks (`dialect::…`) are their own.


#[async_trait]
impl RepositoryStore for Meta {
    async fn repository(&self, name: &str) -> Result<Option<Repository>> {
        retry_transient!({
            let row = sqlx::query(repo_sql("SELECT {cols} FROM repositories WHERE name = $1"))
                .bind(name)
                .fetch_optional(self.reads())
                .await
                .map_err(backend)?;
            row.as_ref().map(repository_from_row).transpose()
        })
    }

    async fn create_repository(
        &self,
        name: &str,
        settings: &RepositorySettings,
        tags: &[(String, String)],
    ) -> Result<Repository> {
        retry_transient!({
            let mut tx = self.begin_write().await.map_err(backend)?;
            let row = sqlx::query(repo_sql(
                "INSERT INTO repositories (name, created_at, tag_mutability, tag_mutability_exclusions, scan_on_push, \
                 encryption_type, kms_key, pull_block_severity) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING {cols}",
            ))
            .bind(name)
            .bind(now_ms())
            .bind(settings.tag_mutability.as_str())
            .bind(serde_json::to_string(&settings.tag_mutability_exclusions).expect("strings serialize"))
            .bind(settings.scan_on_push)
            .bind(settings.encryption_type.as_str())
            .bind(&settings.kms_key)
            .bind(settings.pull_block_severity.map(PullBlock::as_str))
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
            tx.commit().await.map_err(commit_failed)?;
            Ok(repo)
        })
    }

    async fn describe_repositories(&self, last: Option<&str>, limit: u32) -> Result<Vec<Repository>> {
        retry_transient!({
            let rows = sqlx::query(repo_sql("SELECT {cols} FROM repositories WHERE name > $1 ORDER BY name LIMIT $2"))
                .bind(last.unwrap_or(""))
                .bind(limit as i64)
                .fetch_all(self.reads())
                .await
                .map_err(backend)?;
            rows.iter().map(repository_from_row).collect()
        })
    }

    async fn update_repository_settings(&self, name: &str, settings: &RepositorySettings) -> Result<Repository> {
        let row = sqlx::query(repo_sql(
            "UPDATE repositories SET tag_mutability = $2, tag_mutability_exclusions = $3, scan_on_push = $4, \
             encryption_type = $5, kms_key = $6, pull_block_severity = $7 WHERE name = $1 RETURNING {cols}",
        ))
        .bind(name)
        .bind(settings.tag_mutability.as_str())
        .bind(serde_json::to_string(&settings.tag_mutability_exclusions).expect("strings serialize"))
        .bind(settings.scan_on_push)
        .bind(settings.encryption_type.as_str())
        .bind(&settings.kms_key)
        .bind(settings.pull_block_severity.map(PullBlock::as_str))
        .fetch_optional(self.writes())
        .await
        .map_err(backend)?
        .ok_or(MetaError::RepositoryNotFound)?;
        repository_from_row(&row)
    }

    async fn delete_repository(&self, name: &str, force: bool) -> Result<Repository> {
        retry_transient!({
            let mut tx = self.begin_write().await.map_err(backend)?;
            let row = sqlx::query(repo_sql("SELECT {cols} FROM repositories WHERE name = $1"))
                .bind(name)
                .fetch_optional(&mut *tx)
                .await
                .map_err(backend)?
                .ok_or(MetaError::RepositoryNotFound)?;
            let repo = repository_from_row(&row)?;
            if !force {
                let images: Option<i64> = sqlx::query_scalar("SELECT CAST(1 AS BIGINT) FROM manifests WHERE repository_id = $1 LIMIT 1")
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
            tx.commit().await.map_err(commit_failed)?;
            Ok(repo)
        })
    }

    async fn tag_repository(&self, name: &str, tags: &[(String, String)]) -> Result<()> {
        retry_transient!({
            let mut tx = self.begin_write().await.map_err(backend)?;
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
            tx.commit().await.map_err(commit_failed)
        })
    }

    async fn untag_repository(&self, name: &str, keys: &[String]) -> Result<()> {
        retry_transient!({
            let mut tx = self.begin_write().await.map_err(backend)?;
            let id = repo_id(&mut tx, name).await?;
            for k in keys {
                sqlx::query("DELETE FROM repository_resource_tags WHERE repository_id = $1 AND key = $2")
                    .bind(id)
                    .bind(k)
                    .execute(&mut *tx)
                    .await
                    .map_err(backend)?;
            }
            tx.commit().await.map_err(commit_failed)
        })
    }

    async fn repository_resource_tags(&self, name: &str) -> Result<Vec<(String, String)>> {
        retry_transient!({
            sqlx::query_as(
                "SELECT t.key, t.value FROM repository_resource_tags t JOIN repositories r ON r.id = t.repository_id \
                 WHERE r.name = $1 ORDER BY t.key",
            )
            .bind(name)
            .fetch_all(self.reads())
            .await
            .map_err(backend)
        })
    }

    async fn repository_facts_between(&self, first: &str, last: &str) -> Result<Vec<RepositoryFactsRow>> {
        retry_transient!({
            let policies: Vec<(String, Option<String>)> = sqlx::query_as(
                "SELECT name, repository_policy FROM repositories WHERE name >= $1 AND name <= $2 ORDER BY name",
            )
            .bind(first)
            .bind(last)
            .fetch_all(self.reads())
            .await
            .map_err(backend)?;
            let tags: Vec<(String, String, String)> = sqlx::query_as(
                "SELECT r.name, t.key, t.value FROM repository_resource_tags t JOIN repositories r ON r.id = t.repository_id \
                 WHERE r.name >= $1 AND r.name <= $2 ORDER BY r.name, t.key",
            )
            .bind(first)
            .bind(last)
            .fetch_all(self.reads())
            .await
            .map_err(backend)?;
            let mut tags = tags.into_iter().peekable();
            Ok(policies
                .into_iter()
                .map(|(name, policy)| {
                    let mut own = Vec::new();
                    while let Some((_, k, v)) = tags.next_if(|(n, _, _)| *n == name) {
                        own.push((k, v));
                    }
                    RepositoryFactsRow { name, policy, tags: own }
                })
                .collect())
        })
    }

    async fn list_repositories(&self, last: Option<&str>, limit: u32) -> Result<Vec<String>> {
        retry_transient!({
            sqlx::query_scalar("SELECT name FROM repositories WHERE name > $1 ORDER BY name LIMIT $2")
                .bind(last.unwrap_or(""))
                .bind(limit as i64)
                .fetch_all(self.reads())
                .await
                .map_err(backend)
        })
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
        .fetch_one(self.writes())
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
        .fetch_optional(self.writes())
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
        .fetch_optional(self.writes())
        .await
        .map_err(backend)?
        .ok_or(MetaError::NotFound)?;
        Ok(template_from_row(row))
    }

    async fn creation_templates(&self) -> Result<Vec<CreationTemplate>> {
        retry_transient!({
            let rows = sqlx::query_as::<_, (String, String, i64, i64)>(
                "SELECT prefix, body, created_at, updated_at FROM repository_creation_templates ORDER BY prefix",
            )
            .fetch_all(self.reads())
            .await
            .map_err(backend)?;
            Ok(rows.into_iter().map(template_from_row).collect())
        })
    }

    async fn repository_usage(&self) -> Result<Vec<(String, i64, i64)>> {
        retry_transient!({
            sqlx::query_as(
                "SELECT r.name, \
                   (SELECT COUNT(*) FROM manifests m WHERE m.repository_id = r.id), \
                   (SELECT CAST(COALESCE(SUM(b.size), 0) AS BIGINT) FROM repository_blobs rb JOIN blobs b ON b.digest = rb.digest \
                    WHERE rb.repository_id = r.id) \
                 FROM repositories r ORDER BY r.name",
            )
            .fetch_all(self.reads())
            .await
            .map_err(backend)
        })
    }

    async fn account_setting(&self, account_id: &str, name: &str) -> Result<Option<String>> {
        retry_transient!({
            sqlx::query_scalar("SELECT value FROM account_settings WHERE account_id = $1 AND name = $2")
                .bind(account_id)
                .bind(name)
                .fetch_optional(self.reads())
                .await
                .map_err(backend)
        })
    }

    async fn add_pull_time_exclusion(
        &self,
        account_id: &str,
        principal_arn: &str,
        at: i64,
        limit: usize,
    ) -> Result<CappedInsert> {
        retry_transient!({
            let mut tx = self.begin_write().await.map_err(backend)?;
            if let Some(refused) =
                capped_list_refusal(&mut tx, "pull_time_exclusions", account_id, "principal_arn", principal_arn, limit)
                    .await?
            {
                return Ok(refused);
            }
            let inserted = sqlx::query(
                "INSERT INTO pull_time_exclusions (account_id, principal_arn, created_at) VALUES ($1, $2, $3) \
                 ON CONFLICT DO NOTHING",
            )
            .bind(account_id)
            .bind(principal_arn)
            .bind(at)
            .execute(&mut *tx)
            .await
            .map_err(backend)?;
            if inserted.rows_affected() == 0 {
                return Ok(CappedInsert::Taken);
            }
            tx.commit().await.map_err(backend)?;
            Ok(CappedInsert::Inserted)
        })
    }

    async fn remove_pull_time_exclusion(&self, account_id: &str, principal_arn: &str) -> Result<bool> {
        let done = sqlx::query("DELETE FROM pull_time_exclusions WHERE account_id = $1 AND principal_arn = $2")
            .bind(account_id)
            .bind(principal_arn)
            .execute(self.writes())
            .await
            .map_err(backend)?;
        Ok(done.rows_affected() > 0)
    }

    async fn pull_time_exclusions(&self, account_id: &str) -> Result<Vec<(String, i64)>> {
        retry_transient!({
            sqlx::query_as(
                "SELECT principal_arn, created_at FROM pull_time_exclusions WHERE account_id = $1 \
                 ORDER BY principal_arn",
            )
            .bind(account_id)
            .fetch_all(self.reads())
            .await
            .map_err(backend)
        })
    }

    async fn set_pull_verification(&self, repository: &str, config: Option<&str>) -> Result<()> {
        let done = sqlx::query("UPDATE repositories SET pull_verification = $2 WHERE name = $1")
            .bind(repository)
            .bind(config)
            .execute(self.writes())
            .await
            .map_err(backend)?;
        if done.rows_affected() == 0 { Err(MetaError::RepositoryNotFound) } else { Ok(()) }
    }

    async fn pull_verification(&self, repository: &str) -> Result<Option<String>> {
        retry_transient!({
            let row: Option<(Option<String>,)> =
                sqlx::query_as("SELECT pull_verification FROM repositories WHERE name = $1")
                    .bind(repository)
                    .fetch_optional(self.reads())
                    .await
                    .map_err(backend)?;
            row.map(|(v,)| v).ok_or(MetaError::RepositoryNotFound)
        })
    }

    async fn put_account_setting(&self, account_id: &str, name: &str, value: &str) -> Result<()> {
        sqlx::query(
            "INSERT INTO account_settings (account_id, name, value) VALUES ($1, $2, $3) \
             ON CONFLICT (account_id, name) DO UPDATE SET value = excluded.value",
        )
        .bind(account_id)
        .bind(name)
        .bind(value)
        .execute(self.writes())
        .await
        .map_err(backend)?;
        Ok(())
    }

    async fn repository_policy(&self, repository: &str) -> Result<Option<String>> {
        retry_transient!({
            let row: Option<Option<String>> =
                sqlx::query_scalar("SELECT repository_policy FROM repositories WHERE name = $1")
                    .bind(repository)
                    .fetch_optional(self.reads())
                    .await
                    .map_err(backend)?;
            row.ok_or(MetaError::RepositoryNotFound)
        })
    }

    async fn set_repository_policy(&self, repository: &str, text: Option<&str>) -> Result<Option<String>> {
        retry_transient!({
            let mut tx = self.begin_write().await.map_err(backend)?;
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
            tx.commit().await.map_err(commit_failed)?;
            Ok(previous)
        })
    }

    async fn registry_policy(&self, account_id: &str) -> Result<Option<String>> {
        retry_transient!({
            sqlx::query_scalar("SELECT policy_text FROM registry_policies WHERE account_id = $1")
                .bind(account_id)
                .fetch_optional(self.reads())
                .await
                .map_err(backend)
        })
    }

    async fn set_registry_policy(&self, account_id: &str, text: Option<&str>) -> Result<Option<String>> {
        retry_transient!({
            let mut tx = self.begin_write().await.map_err(backend)?;
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
            tx.commit().await.map_err(commit_failed)?;
            Ok(previous)
        })
    }
}
