// ECR Public: each account's public registry alias. Written once for both SQL backends:
// `include!`d by sqlite/mod.rs and postgres/mod.rs, where `Meta`, `Db`, `DbRow` and the dialect
// hooks (`dialect::…`) are their own.

#[async_trait]
impl PublicRegistryStore for Meta {
    async fn registry_alias(&self, account_id: &str) -> Result<Option<String>> {
        retry_transient!({
            sqlx::query_scalar("SELECT alias FROM public_registry_aliases WHERE account_id = $1")
                .bind(account_id)
                .fetch_optional(self.reads())
                .await
                .map_err(backend)
        })
    }

    async fn set_registry_alias(&self, account_id: &str, alias: &str, at: i64) -> Result<()> {
        sqlx::query(
            "INSERT INTO public_registry_aliases (account_id, alias, created_at) VALUES ($1, $2, $3) \
             ON CONFLICT (account_id) DO UPDATE SET alias = excluded.alias, created_at = excluded.created_at",
        )
        .bind(account_id)
        .bind(alias)
        .bind(at)
        .execute(self.writes())
        .await
        .map_err(|e| if is_unique_violation(&e) { MetaError::AlreadyExists } else { backend(e) })?;
        Ok(())
    }

    async fn ensure_registry_alias(&self, account_id: &str, candidate: &str, at: i64) -> Result<String> {
        sqlx::query(
            "INSERT INTO public_registry_aliases (account_id, alias, created_at) VALUES ($1, $2, $3) \
             ON CONFLICT (account_id) DO NOTHING",
        )
        .bind(account_id)
        .bind(candidate)
        .bind(at)
        .execute(self.writes())
        .await
        .map_err(|e| if is_unique_violation(&e) { MetaError::AlreadyExists } else { backend(e) })?;
        self.registry_alias(account_id).await?.ok_or(MetaError::NotFound)
    }

    async fn account_of_registry_alias(&self, alias: &str) -> Result<Option<String>> {
        retry_transient!({
            sqlx::query_scalar("SELECT account_id FROM public_registry_aliases WHERE alias = $1")
                .bind(alias)
                .fetch_optional(self.reads())
                .await
                .map_err(backend)
        })
    }

    async fn registry_aliases(&self) -> Result<Vec<(String, String)>> {
        retry_transient!({
            sqlx::query_as("SELECT account_id, alias FROM public_registry_aliases ORDER BY alias")
                .fetch_all(self.reads())
                .await
                .map_err(backend)
        })
    }

    async fn anonymous_pull_bytes(&self, source: &str, month: &str) -> Result<u64> {
        let bytes: Option<i64> = retry_transient!({
            sqlx::query_scalar("SELECT bytes FROM anonymous_pull_usage WHERE source = $1 AND month = $2")
                .bind(source)
                .bind(month)
                .fetch_optional(self.reads())
                .await
                .map_err(backend)
        })?;
        Ok(bytes.unwrap_or(0).max(0) as u64)
    }

    async fn add_anonymous_pull_bytes(&self, source: &str, month: &str, bytes: u64) -> Result<()> {
        let bytes = i64::try_from(bytes).unwrap_or(i64::MAX);
        sqlx::query(
            "INSERT INTO anonymous_pull_usage (source, month, bytes) VALUES ($1, $2, $3) \
             ON CONFLICT (source, month) DO UPDATE SET bytes = anonymous_pull_usage.bytes + excluded.bytes",
        )
        .bind(source)
        .bind(month)
        .bind(bytes)
        .execute(self.writes())
        .await
        .map_err(backend)?;
        Ok(())
    }
}
