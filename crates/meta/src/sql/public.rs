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
}
