// The web console: sessions and failed sign-ins. Written once for both SQL backends:
// `include!`d by sqlite/mod.rs and postgres/mod.rs, where `Meta`, `Db`, `DbRow` and the dialect
// hooks (`dialect::…`) are their own.

#[async_trait]
impl ConsoleStore for Meta {
    async fn create_console_session(&self, s: &ConsoleSession) -> Result<()> {
        sqlx::query(
            "INSERT INTO console_sessions (id_hash, access_key_id, csrf_token, created_at, expires_at) \
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(&s.id_hash)
        .bind(&s.access_key_id)
        .bind(&s.csrf_token)
        .bind(s.created_at)
        .bind(s.expires_at)
        .execute(self.writes())
        .await
        .map_err(|e| if is_unique_violation(&e) { MetaError::AlreadyExists } else { backend(e) })?;
        Ok(())
    }

    async fn console_session(&self, id_hash: &str) -> Result<Option<ConsoleSession>> {
        retry_transient!({
            let row = sqlx::query(
                "SELECT id_hash, access_key_id, csrf_token, created_at, expires_at FROM console_sessions \
                 WHERE id_hash = $1",
            )
            .bind(id_hash)
            .fetch_optional(self.reads())
            .await
            .map_err(backend)?;
            Ok(row.map(|r| ConsoleSession {
                id_hash: r.get(0),
                access_key_id: r.get(1),
                csrf_token: r.get(2),
                created_at: r.get(3),
                expires_at: r.get(4),
            }))
        })
    }

    async fn delete_console_session(&self, id_hash: &str) -> Result<bool> {
        let done = sqlx::query("DELETE FROM console_sessions WHERE id_hash = $1")
            .bind(id_hash)
            .execute(self.writes())
            .await
            .map_err(backend)?;
        Ok(done.rows_affected() > 0)
    }

    async fn delete_console_sessions(&self, access_key_id: &str) -> Result<u64> {
        let done = sqlx::query("DELETE FROM console_sessions WHERE access_key_id = $1")
            .bind(access_key_id)
            .execute(self.writes())
            .await
            .map_err(backend)?;
        Ok(done.rows_affected())
    }

    async fn delete_expired_console_sessions(&self, now: i64) -> Result<u64> {
        let done = sqlx::query("DELETE FROM console_sessions WHERE expires_at <= $1")
            .bind(now)
            .execute(self.writes())
            .await
            .map_err(backend)?;
        Ok(done.rows_affected())
    }

    async fn record_console_sign_in_failure(&self, subjects: &[String], at: i64, forget_before: i64) -> Result<()> {
        let mut tx = self.writes().begin().await.map_err(backend)?;
        sqlx::query("DELETE FROM console_sign_in_failures WHERE at < $1")
            .bind(forget_before)
            .execute(&mut *tx)
            .await
            .map_err(backend)?;
        for subject in subjects {
            sqlx::query("INSERT INTO console_sign_in_failures (subject, at) VALUES ($1, $2)")
                .bind(subject)
                .bind(at)
                .execute(&mut *tx)
                .await
                .map_err(backend)?;
        }
        tx.commit().await.map_err(backend)?;
        Ok(())
    }

    async fn console_sign_in_failures(&self, subject: &str, since: i64) -> Result<Vec<i64>> {
        retry_transient!({
            sqlx::query_scalar("SELECT at FROM console_sign_in_failures WHERE subject = $1 AND at >= $2 ORDER BY at")
                .bind(subject)
                .bind(since)
                .fetch_all(self.reads())
                .await
                .map_err(backend)
        })
    }
}
