// Leases, written once for both SQL backends (`include!`d by sqlite/mod.rs and postgres/mod.rs).

#[async_trait]
impl LeaseStore for Meta {
    async fn try_lease(&self, name: &str, holder: &str, now: i64, ttl_ms: i64) -> Result<bool> {
        // One upsert: taken when free, renewed by its holder, taken over once expired. On a
        // server database the conflict locks the row, so racing nodes see each other's result.
        let r = sqlx::query(
            "INSERT INTO leases (name, holder, expires_at) VALUES ($1, $2, $3) \
             ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, expires_at = excluded.expires_at \
             WHERE leases.holder = excluded.holder OR leases.expires_at <= $4",
        )
        .bind(name)
        .bind(holder)
        .bind(now + ttl_ms)
        .bind(now)
        .execute(self.writes())
        .await
        .map_err(backend)?;
        Ok(r.rows_affected() > 0)
    }

    async fn release_lease(&self, name: &str, holder: &str) -> Result<()> {
        sqlx::query("DELETE FROM leases WHERE name = $1 AND holder = $2")
            .bind(name)
            .bind(holder)
            .execute(self.writes())
            .await
            .map_err(backend)?;
        Ok(())
    }
}
