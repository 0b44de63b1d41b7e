// Secrets Manager's secrets: their metadata and their versions' sealed values. Written once for
// both SQL backends: `include!`d by sqlite/mod.rs and postgres/mod.rs, where `Meta`, `Db`,
// `DbRow` and the dialect hooks (`dialect::…`) are their own.

const MANAGED_SECRET_COLUMNS: &str = "arn, account_id, name, description, kms_key_id, tags, created_at, changed_at, \
     accessed_at, deletion_date";

fn managed_secret_from_row(r: &DbRow) -> Result<ManagedSecret> {
    let tags: String = r.get(5);
    Ok(ManagedSecret {
        arn: r.get(0),
        account_id: r.get(1),
        name: r.get(2),
        description: r.get(3),
        kms_key_id: r.get(4),
        tags: serde_json::from_str(&tags).map_err(|e| MetaError::Backend(format!("stored secret tags: {e}")))?,
        created_at: r.get(6),
        changed_at: r.get(7),
        accessed_at: r.get(8),
        deletion_date: r.get(9),
        versions: Vec::new(),
    })
}

fn stages_json(stages: &[String]) -> String {
    serde_json::to_string(stages).expect("a list of strings is JSON")
}

fn stages_from(text: &str) -> Result<Vec<String>> {
    serde_json::from_str(text).map_err(|e| MetaError::Backend(format!("stored staging labels: {e}")))
}

impl Meta {
    async fn managed_secret_where(&self, condition: &str, a: &str, b: Option<&str>) -> Result<Option<ManagedSecret>> {
        retry_transient!({
            let sql = format!("SELECT {MANAGED_SECRET_COLUMNS} FROM managed_secrets WHERE {condition}");
            let mut q = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(a.to_string());
            if let Some(b) = b {
                q = q.bind(b.to_string());
            }
            let Some(row) = q.fetch_optional(self.reads()).await.map_err(backend)? else { return Ok(None) };
            let mut secret = managed_secret_from_row(&row)?;
            let versions = sqlx::query_as::<_, (String, String)>(
                "SELECT version_id, stages FROM managed_secret_versions WHERE secret_arn = $1 ORDER BY created_at, version_id",
            )
            .bind(&secret.arn)
            .fetch_all(self.reads())
            .await
            .map_err(backend)?;
            for (id, stages) in versions {
                secret.versions.push((id, stages_from(&stages)?));
            }
            Ok(Some(secret))
        })
    }
}

#[async_trait]
impl ManagedSecretStore for Meta {
    async fn create_managed_secret(&self, secret: &ManagedSecret, first: Option<&NewSecretVersion>) -> Result<SecretCreated> {
        retry_transient!({
            let mut tx = self.begin_write().await.map_err(backend)?;
            // A secret whose recovery window has passed is gone: its name is free again.
            sqlx::query(
                "DELETE FROM managed_secrets WHERE account_id = $1 AND name = $2 AND deletion_date IS NOT NULL \
                 AND deletion_date <= $3",
            )
            .bind(&secret.account_id)
            .bind(&secret.name)
            .bind(now_ms())
            .execute(&mut *tx)
            .await
            .map_err(backend)?;
            let inserted = sqlx::query(
                "INSERT INTO managed_secrets (arn, account_id, name, description, kms_key_id, tags, created_at, changed_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $7) ON CONFLICT DO NOTHING",
            )
            .bind(&secret.arn)
            .bind(&secret.account_id)
            .bind(&secret.name)
            .bind(&secret.description)
            .bind(&secret.kms_key_id)
            .bind(serde_json::to_string(&secret.tags).expect("tags are JSON"))
            .bind(secret.created_at)
            .execute(&mut *tx)
            .await
            .map_err(backend)?
            .rows_affected();
            if inserted == 0 {
                let deletion: Option<Option<i64>> = sqlx::query_scalar(
                    "SELECT deletion_date FROM managed_secrets WHERE account_id = $1 AND name = $2",
                )
                .bind(&secret.account_id)
                .bind(&secret.name)
                .fetch_optional(&mut *tx)
                .await
                .map_err(backend)?;
                return Ok(match deletion {
                    Some(Some(_)) => SecretCreated::NameScheduledForDeletion,
                    _ => SecretCreated::NameTaken,
                });
            }
            if let Some(v) = first {
                insert_secret_version(&mut tx, &secret.arn, v, &v.stages, secret.created_at).await?;
            }
            tx.commit().await.map_err(commit_failed)?;
            Ok(SecretCreated::Created)
        })
    }

    async fn managed_secret_by_name(&self, account_id: &str, name: &str) -> Result<Option<ManagedSecret>> {
        self.managed_secret_where("account_id = $1 AND name = $2", account_id, Some(name)).await
    }

    async fn managed_secret_by_arn(&self, arn: &str) -> Result<Option<ManagedSecret>> {
        self.managed_secret_where("arn = $1", arn, None).await
    }

    async fn managed_secrets(&self, account_id: &str) -> Result<Vec<ManagedSecret>> {
        retry_transient!({
            let sql = format!("SELECT {MANAGED_SECRET_COLUMNS} FROM managed_secrets WHERE account_id = $1 ORDER BY name");
            let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
                .bind(account_id)
                .fetch_all(self.reads())
                .await
                .map_err(backend)?;
            let mut secrets = rows.iter().map(managed_secret_from_row).collect::<Result<Vec<_>>>()?;
            let versions = sqlx::query_as::<_, (String, String, String)>(
                "SELECT v.secret_arn, v.version_id, v.stages FROM managed_secret_versions v \
                 JOIN managed_secrets s ON s.arn = v.secret_arn WHERE s.account_id = $1 ORDER BY v.created_at, v.version_id",
            )
            .bind(account_id)
            .fetch_all(self.reads())
            .await
            .map_err(backend)?;
            let mut by_arn: BTreeMap<String, Vec<(String, Vec<String>)>> = BTreeMap::new();
            for (arn, id, stages) in versions {
                by_arn.entry(arn).or_default().push((id, stages_from(&stages)?));
            }
            for s in &mut secrets {
                s.versions = by_arn.remove(&s.arn).unwrap_or_default();
            }
            Ok(secrets)
        })
    }

    async fn secret_version(&self, arn: &str, version_id: Option<&str>, stage: Option<&str>) -> Result<Option<SecretVersion>> {
        retry_transient!({
            let rows = sqlx::query_as::<_, (String, String, String, i64)>(
                "SELECT version_id, sealed_value, stages, created_at FROM managed_secret_versions WHERE secret_arn = $1",
            )
            .bind(arn)
            .fetch_all(self.reads())
            .await
            .map_err(backend)?;
            for (id, sealed_value, stages, created_at) in rows {
                let stages = stages_from(&stages)?;
                let id_matches = version_id.is_none_or(|v| v == id);
                let stage_matches = stage.is_none_or(|s| stages.iter().any(|x| x == s));
                if id_matches && stage_matches {
                    return Ok(Some(SecretVersion { version_id: id, sealed_value, stages, created_at }));
                }
            }
            Ok(None)
        })
    }

    async fn put_secret_version(&self, arn: &str, version: &NewSecretVersion) -> Result<VersionPut> {
        retry_transient!({
            let mut tx = self.begin_write().await.map_err(backend)?;
            dialect::lock_managed_secret(&mut tx, arn).await?;
            let exists: Option<String> = sqlx::query_scalar("SELECT arn FROM managed_secrets WHERE arn = $1")
                .bind(arn)
                .fetch_optional(&mut *tx)
                .await
                .map_err(backend)?;
            if exists.is_none() {
                return Ok(VersionPut::SecretNotFound);
            }
            let rows = sqlx::query_as::<_, (String, String, String)>(
                "SELECT version_id, sealed_value, stages FROM managed_secret_versions WHERE secret_arn = $1",
            )
            .bind(arn)
            .fetch_all(&mut *tx)
            .await
            .map_err(backend)?;
            if let Some((_, sealed, stages)) = rows.iter().find(|(id, _, _)| *id == version.version_id) {
                return Ok(VersionPut::Exists { sealed_value: sealed.clone(), stages: stages_from(stages)? });
            }
            let existing =
                rows.iter().map(|(id, _, s)| Ok((id.clone(), stages_from(s)?))).collect::<Result<Vec<_>>>()?;
            let now = now_ms();
            for (id, stages) in restage(&existing, &version.version_id, &version.stages) {
                if id == version.version_id {
                    insert_secret_version(&mut tx, arn, version, &stages, now).await?;
                } else if stages.is_empty() {
                    // A version without labels is deprecated: Berth keeps none.
                    sqlx::query("DELETE FROM managed_secret_versions WHERE id = $1")
                        .bind(managed_secret_version_key(arn, &id))
                        .execute(&mut *tx)
                        .await
                        .map_err(backend)?;
                } else {
                    sqlx::query("UPDATE managed_secret_versions SET stages = $2 WHERE id = $1")
                        .bind(managed_secret_version_key(arn, &id))
                        .bind(stages_json(&stages))
                        .execute(&mut *tx)
                        .await
                        .map_err(backend)?;
                }
            }
            sqlx::query("UPDATE managed_secrets SET changed_at = $2 WHERE arn = $1")
                .bind(arn)
                .bind(now)
                .execute(&mut *tx)
                .await
                .map_err(backend)?;
            tx.commit().await.map_err(commit_failed)?;
            Ok(VersionPut::Created)
        })
    }

    async fn update_managed_secret(&self, arn: &str, description: Option<&str>, kms_key_id: Option<&str>) -> Result<bool> {
        retry_transient!({
            let n = sqlx::query(
                "UPDATE managed_secrets SET description = COALESCE($2, description), kms_key_id = COALESCE($3, kms_key_id), \
                 changed_at = $4 WHERE arn = $1",
            )
            .bind(arn)
            .bind(description)
            .bind(kms_key_id)
            .bind(now_ms())
            .execute(self.writes())
            .await
            .map_err(backend)?
            .rows_affected();
            Ok(n > 0)
        })
    }

    async fn set_secret_deletion(&self, arn: &str, deletion_date: Option<i64>) -> Result<bool> {
        retry_transient!({
            let n = sqlx::query("UPDATE managed_secrets SET deletion_date = $2, changed_at = $3 WHERE arn = $1")
                .bind(arn)
                .bind(deletion_date)
                .bind(now_ms())
                .execute(self.writes())
                .await
                .map_err(backend)?
                .rows_affected();
            Ok(n > 0)
        })
    }

    async fn delete_managed_secret(&self, arn: &str) -> Result<bool> {
        retry_transient!({
            let mut tx = self.begin_write().await.map_err(backend)?;
            sqlx::query("DELETE FROM managed_secret_versions WHERE secret_arn = $1")
                .bind(arn)
                .execute(&mut *tx)
                .await
                .map_err(backend)?;
            let n = sqlx::query("DELETE FROM managed_secrets WHERE arn = $1")
                .bind(arn)
                .execute(&mut *tx)
                .await
                .map_err(backend)?
                .rows_affected();
            tx.commit().await.map_err(commit_failed)?;
            Ok(n > 0)
        })
    }

    async fn record_secret_access(&self, arn: &str, at: i64) -> Result<()> {
        retry_transient!({
            sqlx::query("UPDATE managed_secrets SET accessed_at = $2 WHERE arn = $1 AND (accessed_at IS NULL OR accessed_at < $2)")
                .bind(arn)
                .bind(at)
                .execute(self.writes())
                .await
                .map_err(backend)?;
            Ok(())
        })
    }
}

async fn insert_secret_version(
    tx: &mut Transaction<'_, Db>,
    arn: &str,
    v: &NewSecretVersion,
    stages: &[String],
    at: i64,
) -> Result<()> {
    sqlx::query(
        "INSERT INTO managed_secret_versions (id, secret_arn, version_id, sealed_value, stages, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(managed_secret_version_key(arn, &v.version_id))
    .bind(arn)
    .bind(&v.version_id)
    .bind(&v.sealed_value)
    .bind(stages_json(stages))
    .bind(at)
    .execute(&mut **tx)
    .await
    .map_err(backend)?;
    Ok(())
}
