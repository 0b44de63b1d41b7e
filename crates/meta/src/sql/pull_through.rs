// Pull-through cache rules, per account. Written once for both SQL backends: `include!`d by
// sqlite/mod.rs and postgres/mod.rs, where `Meta`, `Db`, `DbRow` and the dialect hooks
// (`dialect::…`) are their own.

const PULL_THROUGH_RULE_COLUMNS: &str = "account_id, prefix, upstream_url, upstream_registry, upstream_prefix, \
     credential_arn, refresh_seconds, created_at, updated_at";

fn pull_through_rule_from_row(r: &DbRow) -> PullThroughRule {
    PullThroughRule {
        account_id: r.get(0),
        prefix: r.get(1),
        upstream_url: r.get(2),
        upstream_registry: r.get(3),
        upstream_prefix: r.get(4),
        credential_arn: r.get(5),
        refresh_seconds: r.get(6),
        created_at: r.get(7),
        updated_at: r.get(8),
    }
}

#[async_trait]
impl PullThroughStore for Meta {
    async fn create_pull_through_rule(&self, rule: &PullThroughRule, limit: usize) -> Result<CappedInsert> {
        retry_transient!({
            let mut tx = self.begin_write().await.map_err(backend)?;
            if let Some(refused) =
                capped_list_refusal(&mut tx, "pull_through_rules", &rule.account_id, "prefix", &rule.prefix, limit).await?
            {
                return Ok(refused);
            }
            let sql = format!(
                "INSERT INTO pull_through_rules ({PULL_THROUGH_RULE_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) \
                 ON CONFLICT DO NOTHING"
            );
            let inserted = sqlx::query(sqlx::AssertSqlSafe(sql))
                .bind(&rule.account_id)
                .bind(&rule.prefix)
                .bind(&rule.upstream_url)
                .bind(&rule.upstream_registry)
                .bind(&rule.upstream_prefix)
                .bind(&rule.credential_arn)
                .bind(rule.refresh_seconds)
                .bind(rule.created_at)
                .bind(rule.updated_at)
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

    async fn update_pull_through_rule(&self, rule: &PullThroughRule) -> Result<()> {
        retry_transient!({
            let updated = sqlx::query(
                "UPDATE pull_through_rules SET credential_arn = $3, refresh_seconds = $4, updated_at = $5 \
                 WHERE account_id = $1 AND prefix = $2",
            )
            .bind(&rule.account_id)
            .bind(&rule.prefix)
            .bind(&rule.credential_arn)
            .bind(rule.refresh_seconds)
            .bind(rule.updated_at)
            .execute(self.writes())
            .await
            .map_err(backend)?;
            if updated.rows_affected() == 0 {
                return Err(MetaError::NotFound);
            }
            Ok(())
        })
    }

    async fn delete_pull_through_rule(&self, account_id: &str, prefix: &str) -> Result<PullThroughRule> {
        retry_transient!({
            let sql = format!(
                "DELETE FROM pull_through_rules WHERE account_id = $1 AND prefix = $2 RETURNING {PULL_THROUGH_RULE_COLUMNS}"
            );
            let row = sqlx::query(sqlx::AssertSqlSafe(sql))
                .bind(account_id)
                .bind(prefix)
                .fetch_optional(self.writes())
                .await
                .map_err(backend)?;
            row.as_ref().map(pull_through_rule_from_row).ok_or(MetaError::NotFound)
        })
    }

    async fn pull_through_rules(&self, account_id: &str) -> Result<Vec<PullThroughRule>> {
        retry_transient!({
            let sql = format!(
                "SELECT {PULL_THROUGH_RULE_COLUMNS} FROM pull_through_rules WHERE account_id = $1 ORDER BY prefix"
            );
            let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
                .bind(account_id)
                .fetch_all(self.reads())
                .await
                .map_err(backend)?;
            Ok(rows.iter().map(pull_through_rule_from_row).collect())
        })
    }

    async fn claim_tag_check(&self, repository: &str, tag: &str, now: i64, due: i64) -> Result<bool> {
        retry_transient!({
            let claimed = sqlx::query(
                "INSERT INTO pull_through_tag_checks (repository_id, tag, checked_at) \
                 SELECT id, $2, $3 FROM repositories WHERE name = $1 \
                 ON CONFLICT (repository_id, tag) DO UPDATE SET checked_at = excluded.checked_at \
                 WHERE pull_through_tag_checks.checked_at <= $4",
            )
            .bind(repository)
            .bind(tag)
            .bind(now)
            .bind(due)
            .execute(self.writes())
            .await
            .map_err(backend)?;
            Ok(claimed.rows_affected() > 0)
        })
    }
}

/// Within a write transaction, before an insert into an account's list with a quota (`table`,
/// keyed by `account_id` and `key_column`): takes the list's lock, then says why the insert of
/// `key` is refused — `Taken` if the list holds it, `LimitReached` if it holds `limit` entries —
/// or `None` to go ahead.
async fn capped_list_refusal(
    tx: &mut sqlx::Transaction<'static, Db>,
    table: &str,
    account_id: &str,
    key_column: &str,
    key: &str,
    limit: usize,
) -> Result<Option<CappedInsert>> {
    dialect::lock_account_list(tx, table, account_id).await?;
    let taken = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT 1 FROM {table} WHERE account_id = $1 AND {key_column} = $2"
    )))
    .bind(account_id)
    .bind(key)
    .fetch_optional(&mut **tx)
    .await
    .map_err(backend)?;
    if taken.is_some() {
        return Ok(Some(CappedInsert::Taken));
    }
    let (count,): (i64,) = sqlx::query_as(sqlx::AssertSqlSafe(format!("SELECT COUNT(*) FROM {table} WHERE account_id = $1")))
        .bind(account_id)
        .fetch_one(&mut **tx)
        .await
        .map_err(backend)?;
    Ok((count as usize >= limit).then_some(CappedInsert::LimitReached))
}
