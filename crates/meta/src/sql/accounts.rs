// accounts, their principals and access keys, and the registry secrets. Written once for both SQL backends:
// `include!`d by sqlite/mod.rs and postgres/mod.rs, where `Meta`, `Db`, `DbRow` and the
// dialect hooks (`dialect::…`) are their own.


#[async_trait]
impl AccountStore for Meta {
    async fn ensure_account(&self, account_id: &str) -> Result<()> {
        sqlx::query("INSERT INTO accounts (id, created_at) VALUES ($1, $2) ON CONFLICT (id) DO NOTHING")
            .bind(account_id)
            .bind(now_ms())
            .execute(self.writes())
            .await
            .map_err(backend)?;
        Ok(())
    }

    async fn first_account(&self) -> Result<Option<String>> {
        retry_transient!({
            sqlx::query_scalar("SELECT id FROM accounts ORDER BY created_at, id LIMIT 1")
                .fetch_optional(self.reads())
                .await
                .map_err(backend)
        })
    }

    async fn accounts(&self) -> Result<Vec<String>> {
        retry_transient!({
            sqlx::query_scalar("SELECT id FROM accounts ORDER BY id").fetch_all(self.reads()).await.map_err(backend)
        })
    }

    async fn first_account_or_create(&self, candidate: &str) -> Result<(String, bool)> {
        retry_transient!({
            let mut tx = self.begin_write().await.map_err(backend)?;
            dialect::lock_accounts(&mut tx).await?;
            let first: Option<String> = sqlx::query_scalar("SELECT id FROM accounts ORDER BY created_at, id LIMIT 1")
                .fetch_optional(&mut *tx)
                .await
                .map_err(backend)?;
            let answer = match first {
                Some(id) => (id, false),
                None => {
                    sqlx::query("INSERT INTO accounts (id, created_at) VALUES ($1, $2)")
                        .bind(candidate)
                        .bind(now_ms())
                        .execute(&mut *tx)
                        .await
                        .map_err(backend)?;
                    (candidate.to_string(), true)
                }
            };
            tx.commit().await.map_err(commit_failed)?;
            Ok(answer)
        })
    }

    async fn create_principal(&self, p: &Principal) -> Result<()> {
        sqlx::query("INSERT INTO principals (id, account_id, name, kind, created_at) VALUES ($1, $2, $3, $4, $5)")
            .bind(&p.id)
            .bind(&p.account_id)
            .bind(&p.name)
            .bind(p.kind.as_str())
            .bind(p.created_at)
            .execute(self.writes())
            .await
            .map_err(|e| if is_unique_violation(&e) { MetaError::AlreadyExists } else { backend(e) })?;
        Ok(())
    }

    async fn principal_by_name(&self, account_id: &str, name: &str) -> Result<Option<Principal>> {
        retry_transient!({
            let row = sqlx::query(
                "SELECT id, account_id, name, kind, created_at FROM principals WHERE account_id = $1 AND name = $2",
            )
            .bind(account_id)
            .bind(name)
            .fetch_optional(self.reads())
            .await
            .map_err(backend)?;
            Ok(row.map(|r| principal_from_row(&r, 0)))
        })
    }

    async fn list_principals(&self, account_id: &str) -> Result<Vec<Principal>> {
        retry_transient!({
            let rows = sqlx::query(
                "SELECT id, account_id, name, kind, created_at FROM principals WHERE account_id = $1 ORDER BY name",
            )
            .bind(account_id)
            .fetch_all(self.reads())
            .await
            .map_err(backend)?;
            Ok(rows.iter().map(|r| principal_from_row(r, 0)).collect())
        })
    }

    async fn create_access_key(&self, k: &AccessKey) -> Result<()> {
        sqlx::query(
            "INSERT INTO access_keys (access_key_id, principal_id, sealed_secret, status, created_at) VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(&k.access_key_id)
        .bind(&k.principal_id)
        .bind(&k.sealed_secret)
        .bind(if k.active { "Active" } else { "Inactive" })
        .bind(k.created_at)
        .execute(self.writes())
        .await
        .map_err(|e| if is_unique_violation(&e) { MetaError::AlreadyExists } else { backend(e) })?;
        Ok(())
    }

    async fn create_first_access_key(&self, k: &AccessKey) -> Result<bool> {
        retry_transient!({
            let mut tx = self.begin_write().await.map_err(backend)?;
            dialect::lock_principal(&mut tx, &k.principal_id).await?;
            let has_key: Option<i64> =
                sqlx::query_scalar("SELECT CAST(1 AS BIGINT) FROM access_keys WHERE principal_id = $1 LIMIT 1")
                    .bind(&k.principal_id)
                    .fetch_optional(&mut *tx)
                    .await
                    .map_err(backend)?;
            if has_key.is_some() {
                return Ok(false);
            }
            sqlx::query(
                "INSERT INTO access_keys (access_key_id, principal_id, sealed_secret, status, created_at) VALUES ($1, $2, $3, $4, $5)",
            )
            .bind(&k.access_key_id)
            .bind(&k.principal_id)
            .bind(&k.sealed_secret)
            .bind(if k.active { "Active" } else { "Inactive" })
            .bind(k.created_at)
            .execute(&mut *tx)
            .await
            .map_err(|e| if is_unique_violation(&e) { MetaError::AlreadyExists } else { backend(e) })?;
            tx.commit().await.map_err(commit_failed)?;
            Ok(true)
        })
    }

    async fn access_key(&self, access_key_id: &str) -> Result<Option<(AccessKey, Principal)>> {
        retry_transient!({
            // A constant column list, no input: safe to format in.
            let row = sqlx::query(sqlx::AssertSqlSafe(format!(
                "SELECT {ACCESS_KEY_COLUMNS}, p.id, p.account_id, p.name, p.kind, p.created_at \
                 FROM access_keys k JOIN principals p ON p.id = k.principal_id WHERE k.access_key_id = $1"
            )))
            .bind(access_key_id)
            .fetch_optional(self.reads())
            .await
            .map_err(backend)?;
            Ok(row.map(|r| (access_key_from_row(&r), principal_from_row(&r, 8))))
        })
    }

    async fn list_access_keys(&self, principal_id: &str) -> Result<Vec<AccessKey>> {
        retry_transient!({
            let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
                "SELECT {ACCESS_KEY_COLUMNS} FROM access_keys k \
                 WHERE k.principal_id = $1 ORDER BY k.created_at, k.access_key_id"
            )))
            .bind(principal_id)
            .fetch_all(self.reads())
            .await
            .map_err(backend)?;
            Ok(rows.iter().map(access_key_from_row).collect())
        })
    }

    async fn update_access_key_status(
        &self,
        access_key_id: &str,
        active: bool,
        keep_another_active: bool,
    ) -> Result<KeyChange> {
        retry_transient!({
            let guard = keep_another_active && !active;
            let mut tx = self.begin_write().await.map_err(backend)?;
            dialect::lock_principal_keys(&mut tx, access_key_id).await?;
            let r = sqlx::query(
                "UPDATE access_keys SET status = $2 WHERE access_key_id = $1 \
                 AND (NOT $3 OR status <> 'Active' OR EXISTS (SELECT CAST(1 AS BIGINT) FROM access_keys o \
                      WHERE o.principal_id = access_keys.principal_id AND o.access_key_id <> access_keys.access_key_id \
                      AND o.status = 'Active'))",
            )
            .bind(access_key_id)
            .bind(if active { "Active" } else { "Inactive" })
            .bind(guard)
            .execute(&mut *tx)
            .await
            .map_err(backend)?;
            let change = key_change(&mut tx, access_key_id, r.rows_affected()).await?;
            tx.commit().await.map_err(commit_failed)?;
            Ok(change)
        })
    }

    async fn delete_access_key(&self, access_key_id: &str, keep_another_active: bool) -> Result<KeyChange> {
        retry_transient!({
            let mut tx = self.begin_write().await.map_err(backend)?;
            dialect::lock_principal_keys(&mut tx, access_key_id).await?;
            let principal: Option<String> = sqlx::query_scalar(
                "DELETE FROM access_keys WHERE access_key_id = $1 \
                 AND (NOT $2 OR status <> 'Active' OR EXISTS (SELECT CAST(1 AS BIGINT) FROM access_keys o \
                      WHERE o.principal_id = access_keys.principal_id AND o.access_key_id <> access_keys.access_key_id \
                      AND o.status = 'Active')) RETURNING principal_id",
            )
            .bind(access_key_id)
            .bind(keep_another_active)
            .fetch_optional(&mut *tx)
            .await
            .map_err(backend)?;
            let change = match principal {
                Some(principal) => {
                    sqlx::query(
                        "INSERT INTO deleted_access_keys (access_key_id, principal_id, deleted_at) VALUES ($1, $2, $3) \
                         ON CONFLICT (access_key_id) DO NOTHING",
                    )
                    .bind(access_key_id)
                    .bind(principal)
                    .bind(now_ms())
                    .execute(&mut *tx)
                    .await
                    .map_err(backend)?;
                    KeyChange::Done
                }
                None => key_change(&mut tx, access_key_id, 0).await?,
            };
            tx.commit().await.map_err(commit_failed)?;
            Ok(change)
        })
    }

    async fn access_key_deleted(&self, access_key_id: &str) -> Result<bool> {
        retry_transient!({
            let found: Option<i64> = sqlx::query_scalar("SELECT CAST(1 AS BIGINT) FROM deleted_access_keys WHERE access_key_id = $1")
                .bind(access_key_id)
                .fetch_optional(self.reads())
                .await
                .map_err(backend)?;
            Ok(found.is_some())
        })
    }

    async fn record_access_key_use(&self, access_key_id: &str, used: &KeyUse) -> Result<()> {
        sqlx::query(
            "UPDATE access_keys SET last_used_at = $2, last_used_service = $3, last_used_region = $4 \
             WHERE access_key_id = $1 AND (last_used_at IS NULL OR last_used_at < $2)",
        )
        .bind(access_key_id)
        .bind(used.at)
        .bind(&used.service)
        .bind(&used.region)
        .execute(self.writes())
        .await
        .map_err(backend)?;
        Ok(())
    }

    async fn registry_secret(&self, name: &str, initial: &[u8]) -> Result<Vec<u8>> {
        sqlx::query(
            "INSERT INTO registry_secrets (name, value, created_at) VALUES ($1, $2, $3) ON CONFLICT (name) DO NOTHING",
        )
        .bind(name)
        .bind(initial)
        .bind(now_ms())
        .execute(self.writes())
        .await
        .map_err(backend)?;
        sqlx::query_scalar("SELECT value FROM registry_secrets WHERE name = $1")
            .bind(name)
            .fetch_one(self.writes())
            .await
            .map_err(backend)
    }

    async fn delete_principal(&self, principal_id: &str) -> Result<bool> {
        retry_transient!({
            let mut tx = self.begin_write().await.map_err(backend)?;
            for sql in [
                "DELETE FROM iam_inline_policies WHERE owner_id = $1",
                "DELETE FROM iam_policy_attachments WHERE owner_id = $1",
                "DELETE FROM iam_group_members WHERE principal_id = $1",
                "DELETE FROM access_keys WHERE principal_id = $1",
            ] {
                sqlx::query(sql).bind(principal_id).execute(&mut *tx).await.map_err(backend)?;
            }
            let r = sqlx::query("DELETE FROM principals WHERE id = $1 AND kind = 'user'")
                .bind(principal_id)
                .execute(&mut *tx)
                .await
                .map_err(backend)?;
            tx.commit().await.map_err(commit_failed)?;
            Ok(r.rows_affected() > 0)
        })
    }
}

/// What a guarded key change that touched `affected` rows did: done, or why not.
async fn key_change(tx: &mut Transaction<'_, Db>, access_key_id: &str, affected: u64) -> Result<KeyChange> {
    if affected > 0 {
        return Ok(KeyChange::Done);
    }
    let exists: Option<i64> = sqlx::query_scalar("SELECT CAST(1 AS BIGINT) FROM access_keys WHERE access_key_id = $1")
        .bind(access_key_id)
        .fetch_optional(&mut **tx)
        .await
        .map_err(backend)?;
    Ok(if exists.is_some() { KeyChange::LastActiveKey } else { KeyChange::NotFound })
}

#[async_trait]
impl SecretStore for Meta {
    async fn stored_secrets(&self, kind: SealedKind, after: &str, limit: usize) -> Result<Vec<StoredSecret>> {
        let sql = match kind {
            SealedKind::AccessKeySecret => {
                dialect::ACCESS_KEY_SECRETS_PAGE
            }
            SealedKind::RegistrySecret => {
                "SELECT name, value FROM registry_secrets WHERE name > $1 ORDER BY name LIMIT $2"
            }
            SealedKind::ManagedSecretValue => dialect::MANAGED_SECRET_VALUES_PAGE,
            SealedKind::ReplicationPeerSecret => dialect::REPLICATION_PEER_SECRETS_PAGE,
            SealedKind::SigningProfileKey => dialect::SIGNING_PROFILE_KEYS_PAGE,
            SealedKind::KmsKeyMaterial => dialect::KMS_MATERIALS_PAGE,
            // Only blobs' master wrappings: an upload's keys live as long as the upload.
            SealedKind::BlobDataKeys => {
                "SELECT digest, wrapped FROM blob_keys WHERE wrapping = 'AES256' AND digest > $1 ORDER BY digest LIMIT $2"
            }
            SealedKind::ManifestDataKeys => {
                "SELECT r.name || '@' || m.digest, m.wrapped_keys FROM manifests m JOIN repositories r ON r.id = m.repository_id \
                 WHERE m.key_wrapping = 'AES256' AND r.name || '@' || m.digest > $1 ORDER BY r.name || '@' || m.digest LIMIT $2"
            }
        };
        let rows = sqlx::query(sql)
            .bind(after)
            .bind(i64::try_from(limit).unwrap_or(i64::MAX))
            .fetch_all(self.writes())
            .await
            .map_err(backend)?;
        Ok(rows.iter().map(|r| StoredSecret { kind, id: r.get(0), stored: r.get(1) }).collect())
    }

    async fn replace_stored_secret(&self, kind: SealedKind, id: &str, expected: &[u8], new: &[u8]) -> Result<bool> {
        let q = match kind {
            SealedKind::AccessKeySecret => {
                // The column is text: compare and store as text.
                let (Ok(expected), Ok(new)) = (std::str::from_utf8(expected), std::str::from_utf8(new)) else {
                    return Err(MetaError::Backend("an access-key secret must be text".into()));
                };
                sqlx::query("UPDATE access_keys SET sealed_secret = $3 WHERE access_key_id = $1 AND sealed_secret = $2")
                    .bind(id.to_string())
                    .bind(expected.to_string())
                    .bind(new.to_string())
            }
            SealedKind::ManagedSecretValue => {
                let (Ok(expected), Ok(new)) = (std::str::from_utf8(expected), std::str::from_utf8(new)) else {
                    return Err(MetaError::Backend("a secret's sealed value must be text".into()));
                };
                sqlx::query("UPDATE managed_secret_versions SET sealed_value = $3 WHERE id = $1 AND sealed_value = $2")
                    .bind(id.to_string())
                    .bind(expected.to_string())
                    .bind(new.to_string())
            }
            SealedKind::ReplicationPeerSecret => {
                let (Ok(expected), Ok(new)) = (std::str::from_utf8(expected), std::str::from_utf8(new)) else {
                    return Err(MetaError::Backend("a peer credential's secret must be text".into()));
                };
                sqlx::query(
                    "UPDATE replication_peers SET sealed_secret = $3 WHERE access_key_id = $1 AND sealed_secret = $2",
                )
                .bind(id.to_string())
                .bind(expected.to_string())
                .bind(new.to_string())
            }
            SealedKind::SigningProfileKey => {
                let (Ok(expected), Ok(new)) = (std::str::from_utf8(expected), std::str::from_utf8(new)) else {
                    return Err(MetaError::Backend("a signing profile's sealed key must be text".into()));
                };
                sqlx::query(
                    "UPDATE signing_profiles SET sealed_private_key = $3 WHERE arn = $1 AND sealed_private_key = $2",
                )
                .bind(id.to_string())
                .bind(expected.to_string())
                .bind(new.to_string())
            }
            SealedKind::KmsKeyMaterial => {
                let (Ok(expected), Ok(new)) = (std::str::from_utf8(expected), std::str::from_utf8(new)) else {
                    return Err(MetaError::Backend("a key's sealed material must be text".into()));
                };
                sqlx::query(
                    "UPDATE kms_key_materials SET sealed_material = $3 \
                     WHERE key_id || '/' || material_id = $1 AND sealed_material = $2",
                )
                .bind(id.to_string())
                .bind(expected.to_string())
                .bind(new.to_string())
            }
            SealedKind::BlobDataKeys => sqlx::query(
                "UPDATE blob_keys SET wrapped = $3 WHERE digest = $1 AND wrapping = 'AES256' AND wrapped = $2",
            )
            .bind(id.to_string())
            .bind(expected.to_vec())
            .bind(new.to_vec()),
            SealedKind::ManifestDataKeys => {
                // `<repository key>@<digest>`: a digest holds no '@', a repository key may.
                let Some((repository, digest)) = id.rsplit_once('@') else {
                    return Err(MetaError::Backend(format!("{id:?} names no manifest")));
                };
                sqlx::query(
                    "UPDATE manifests SET wrapped_keys = $4 WHERE repository_id = (SELECT id FROM repositories WHERE name = $1) \
                     AND digest = $2 AND key_wrapping = 'AES256' AND wrapped_keys = $3",
                )
                .bind(repository.to_string())
                .bind(digest.to_string())
                .bind(expected.to_vec())
                .bind(new.to_vec())
            }
            SealedKind::RegistrySecret => {
                sqlx::query("UPDATE registry_secrets SET value = $3 WHERE name = $1 AND value = $2")
                    .bind(id.to_string())
                    .bind(expected.to_vec())
                    .bind(new.to_vec())
            }
        };
        Ok(q.execute(self.writes()).await.map_err(backend)?.rows_affected() > 0)
    }

    async fn rotation_target(&self) -> Result<Option<u32>> {
        let v: Option<i64> = sqlx::query_scalar("SELECT target_version FROM master_key_rotation WHERE id = 1")
            .fetch_optional(self.writes())
            .await
            .map_err(backend)?;
        Ok(v.and_then(|v| u32::try_from(v).ok()))
    }

    async fn set_rotation_target(&self, version: Option<u32>) -> Result<()> {
        match version {
            Some(v) => sqlx::query(
                "INSERT INTO master_key_rotation (id, target_version, started_at) VALUES (1, $1, $2) \
                 ON CONFLICT (id) DO UPDATE SET target_version = excluded.target_version, started_at = excluded.started_at",
            )
            .bind(i64::from(v))
            .bind(now_ms()),
            None => sqlx::query("DELETE FROM master_key_rotation"),
        }
        .execute(self.writes())
        .await
        .map_err(backend)?;
        Ok(())
    }

    async fn erase_freed_space(&self) -> Result<()> {
        retry_transient!({
            dialect::erase_freed_space(self).await
        })
    }
}
