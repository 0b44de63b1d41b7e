// KMS keys, their sealed materials, aliases and grants. Written once for both SQL backends:
// `include!`d by sqlite/mod.rs and postgres/mod.rs, where `Meta`, `Db`, `DbRow` and the
// dialect hooks are their own.

const KMS_KEY_COLUMNS: &str = "key_id, account_id, arn, description, key_manager, key_state, policy, created_at, \
     deletion_date, pending_window_days, rotation_period_days, next_rotation_at, current_material";

fn kms_key_from_row(r: &DbRow) -> Result<KmsKey> {
    Ok(KmsKey {
        key_id: r.text(0),
        account_id: r.text(1),
        arn: r.text(2),
        description: r.text(3),
        key_manager: r.text(4),
        state: stored("KMS key state", &r.text(5), KmsKeyState::parse)?,
        policy: r.text(6),
        created_at: r.int(7),
        deletion_date: r.opt_int(8),
        pending_window_days: r.opt_int(9),
        rotation_period_days: r.opt_int(10),
        next_rotation_at: r.opt_int(11),
        current_material: r.text(12),
    })
}

const KMS_GRANT_COLUMNS: &str = "grant_id, key_id, name, grantee_principal, retiring_principal, operations, constraints, \
     issuing_account, grant_token, created_at";

fn kms_grant_from_row(r: &DbRow) -> Result<KmsGrant> {
    Ok(KmsGrant {
        grant_id: r.text(0),
        key_id: r.text(1),
        name: r.opt_text(2),
        grantee_principal: r.text(3),
        retiring_principal: r.opt_text(4),
        operations: serde_json::from_str(&r.text(5))
            .map_err(|e| MetaError::Backend(format!("stored grant operations are not a JSON list: {e}")))?,
        constraints: r.opt_text(6),
        issuing_account: r.text(7),
        grant_token: r.text(8),
        created_at: r.int(9),
    })
}

async fn insert_kms_material(tx: &mut sqlx::Transaction<'_, Db>, m: &KmsKeyMaterial) -> Result<()> {
    sqlx::query(
        "INSERT INTO kms_key_materials (key_id, material_id, sealed_material, rotation_type, created_at) \
         VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(&m.key_id)
    .bind(&m.material_id)
    .bind(&m.sealed_material)
    .bind(&m.rotation_type)
    .bind(m.created_at)
    .execute(&mut **tx)
    .await
    .map_err(backend)?;
    Ok(())
}

#[async_trait]
impl KmsStore for Meta {
    async fn create_kms_key(&self, key: &KmsKey, material: &KmsKeyMaterial) -> Result<()> {
        retry_transient!({
            let mut tx = self.begin_write().await.map_err(backend)?;
            let sql = format!(
                "INSERT INTO kms_keys ({KMS_KEY_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)"
            );
            sqlx::query(sqlx::AssertSqlSafe(sql))
                .bind(&key.key_id)
                .bind(&key.account_id)
                .bind(&key.arn)
                .bind(&key.description)
                .bind(&key.key_manager)
                .bind(key.state.as_str())
                .bind(&key.policy)
                .bind(key.created_at)
                .bind(key.deletion_date)
                .bind(key.pending_window_days)
                .bind(key.rotation_period_days)
                .bind(key.next_rotation_at)
                .bind(&key.current_material)
                .execute(&mut *tx)
                .await
                .map_err(backend)?;
            insert_kms_material(&mut tx, material).await?;
            tx.commit().await.map_err(commit_failed)?;
            Ok(())
        })
    }

    async fn kms_key(&self, key_id: &str) -> Result<Option<KmsKey>> {
        retry_transient!({
            let sql = format!("SELECT {KMS_KEY_COLUMNS} FROM kms_keys WHERE key_id = $1");
            let row =
                sqlx::query(sqlx::AssertSqlSafe(sql)).bind(key_id).fetch_optional(self.reads()).await.map_err(backend)?;
            row.as_ref().map(kms_key_from_row).transpose()
        })
    }

    async fn kms_keys(&self, account_id: &str, after: &str, limit: usize) -> Result<Vec<KmsKey>> {
        retry_transient!({
            let sql = format!(
                "SELECT {KMS_KEY_COLUMNS} FROM kms_keys WHERE account_id = $1 AND key_id > $2 ORDER BY key_id LIMIT $3"
            );
            let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
                .bind(account_id)
                .bind(after)
                .bind(i64::try_from(limit).unwrap_or(i64::MAX))
                .fetch_all(self.reads())
                .await
                .map_err(backend)?;
            rows.iter().map(kms_key_from_row).collect()
        })
    }

    async fn update_kms_key(&self, key: &KmsKey, expected: &KmsKey) -> Result<bool> {
        // Null-safe comparisons of the nullable columns, the same on both backends.
        let done = sqlx::query(
            "UPDATE kms_keys SET description = $2, key_state = $3, policy = $4, deletion_date = $5, \
             pending_window_days = $6, rotation_period_days = $7, next_rotation_at = $8 \
             WHERE key_id = $1 AND description = $9 AND key_state = $10 AND policy = $11 \
             AND COALESCE(deletion_date, -1) = COALESCE($12, -1) \
             AND COALESCE(pending_window_days, -1) = COALESCE($13, -1) \
             AND COALESCE(rotation_period_days, -1) = COALESCE($14, -1) \
             AND COALESCE(next_rotation_at, -1) = COALESCE($15, -1) AND current_material = $16",
        )
        .bind(&key.key_id)
        .bind(&key.description)
        .bind(key.state.as_str())
        .bind(&key.policy)
        .bind(key.deletion_date)
        .bind(key.pending_window_days)
        .bind(key.rotation_period_days)
        .bind(key.next_rotation_at)
        .bind(&expected.description)
        .bind(expected.state.as_str())
        .bind(&expected.policy)
        .bind(expected.deletion_date)
        .bind(expected.pending_window_days)
        .bind(expected.rotation_period_days)
        .bind(expected.next_rotation_at)
        .bind(&expected.current_material)
        .execute(self.writes())
        .await
        .map_err(backend)?;
        Ok(done.rows_affected() > 0)
    }

    async fn rotate_kms_key(&self, material: &KmsKeyMaterial, next_rotation_at: Option<i64>) -> Result<bool> {
        retry_transient!({
            let mut tx = self.begin_write().await.map_err(backend)?;
            let updated = sqlx::query(
                "UPDATE kms_keys SET current_material = $2, next_rotation_at = COALESCE($3, next_rotation_at) \
                 WHERE key_id = $1",
            )
            .bind(&material.key_id)
            .bind(&material.material_id)
            .bind(next_rotation_at)
            .execute(&mut *tx)
            .await
            .map_err(backend)?
            .rows_affected();
            if updated == 0 {
                return Ok(false);
            }
            insert_kms_material(&mut tx, material).await?;
            tx.commit().await.map_err(commit_failed)?;
            Ok(true)
        })
    }

    async fn kms_key_materials(&self, key_id: &str) -> Result<Vec<KmsKeyMaterial>> {
        retry_transient!({
            let rows = sqlx::query_as::<_, (String, String, String, Option<String>, i64)>(
                "SELECT key_id, material_id, sealed_material, rotation_type, created_at FROM kms_key_materials \
                 WHERE key_id = $1 ORDER BY created_at, material_id",
            )
            .bind(key_id)
            .fetch_all(self.reads())
            .await
            .map_err(backend)?;
            Ok(rows
                .into_iter()
                .map(|(key_id, material_id, sealed_material, rotation_type, created_at)| KmsKeyMaterial {
                    key_id,
                    material_id,
                    sealed_material,
                    rotation_type,
                    created_at,
                })
                .collect())
        })
    }

    async fn delete_kms_key(&self, key_id: &str) -> Result<bool> {
        retry_transient!({
            let mut tx = self.begin_write().await.map_err(backend)?;
            for table in ["kms_grants", "kms_aliases", "kms_key_materials"] {
                let sql = format!("DELETE FROM {table} WHERE {} = $1", if table == "kms_aliases" { "target_key_id" } else { "key_id" });
                sqlx::query(sqlx::AssertSqlSafe(sql)).bind(key_id).execute(&mut *tx).await.map_err(backend)?;
            }
            let gone = sqlx::query("DELETE FROM kms_keys WHERE key_id = $1")
                .bind(key_id)
                .execute(&mut *tx)
                .await
                .map_err(backend)?
                .rows_affected();
            tx.commit().await.map_err(commit_failed)?;
            Ok(gone > 0)
        })
    }

    async fn create_kms_alias(&self, alias: &KmsAlias) -> Result<bool> {
        let done = sqlx::query(
            "INSERT INTO kms_aliases (account_id, alias_name, target_key_id, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING",
        )
        .bind(&alias.account_id)
        .bind(&alias.alias_name)
        .bind(&alias.target_key_id)
        .bind(alias.created_at)
        .bind(alias.updated_at)
        .execute(self.writes())
        .await
        .map_err(backend)?;
        Ok(done.rows_affected() > 0)
    }

    async fn kms_alias(&self, account_id: &str, alias_name: &str) -> Result<Option<KmsAlias>> {
        Ok(self.kms_aliases_where(account_id, Some(alias_name)).await?.pop())
    }

    async fn kms_aliases(&self, account_id: &str) -> Result<Vec<KmsAlias>> {
        self.kms_aliases_where(account_id, None).await
    }

    async fn delete_kms_alias(&self, account_id: &str, alias_name: &str) -> Result<bool> {
        let done = sqlx::query("DELETE FROM kms_aliases WHERE account_id = $1 AND alias_name = $2")
            .bind(account_id)
            .bind(alias_name)
            .execute(self.writes())
            .await
            .map_err(backend)?;
        Ok(done.rows_affected() > 0)
    }

    async fn create_kms_grant(&self, grant: &KmsGrant) -> Result<()> {
        let sql = format!("INSERT INTO kms_grants ({KMS_GRANT_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)");
        sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(&grant.grant_id)
            .bind(&grant.key_id)
            .bind(&grant.name)
            .bind(&grant.grantee_principal)
            .bind(&grant.retiring_principal)
            .bind(serde_json::to_string(&grant.operations).expect("a list of strings is JSON"))
            .bind(&grant.constraints)
            .bind(&grant.issuing_account)
            .bind(&grant.grant_token)
            .bind(grant.created_at)
            .execute(self.writes())
            .await
            .map_err(backend)?;
        Ok(())
    }

    async fn kms_grants(&self, key_id: &str) -> Result<Vec<KmsGrant>> {
        retry_transient!({
            let sql = format!("SELECT {KMS_GRANT_COLUMNS} FROM kms_grants WHERE key_id = $1 ORDER BY grant_id");
            let rows =
                sqlx::query(sqlx::AssertSqlSafe(sql)).bind(key_id).fetch_all(self.reads()).await.map_err(backend)?;
            rows.iter().map(kms_grant_from_row).collect()
        })
    }

    async fn delete_kms_grant(&self, grant_id: &str) -> Result<bool> {
        let done = sqlx::query("DELETE FROM kms_grants WHERE grant_id = $1")
            .bind(grant_id)
            .execute(self.writes())
            .await
            .map_err(backend)?;
        Ok(done.rows_affected() > 0)
    }
}

impl Meta {
    async fn kms_aliases_where(&self, account_id: &str, alias_name: Option<&str>) -> Result<Vec<KmsAlias>> {
        retry_transient!({
            let rows = sqlx::query_as::<_, (String, String, String, i64, i64)>(
                "SELECT account_id, alias_name, target_key_id, created_at, updated_at FROM kms_aliases \
                 WHERE account_id = $1 AND ($2 IS NULL OR alias_name = $2) ORDER BY alias_name",
            )
            .bind(account_id)
            .bind(alias_name)
            .fetch_all(self.reads())
            .await
            .map_err(backend)?;
            Ok(rows
                .into_iter()
                .map(|(account_id, alias_name, target_key_id, created_at, updated_at)| KmsAlias {
                    account_id,
                    alias_name,
                    target_key_id,
                    created_at,
                    updated_at,
                })
                .collect())
        })
    }
}
