//! SQLite: accounts, their principals and access keys, and the registry secrets.

use super::*;

#[async_trait]
impl AccountStore for SqliteMeta {
    async fn ensure_account(&self, account_id: &str) -> Result<()> {
        sqlx::query("INSERT INTO accounts (id, created_at) VALUES ($1, $2) ON CONFLICT (id) DO NOTHING")
            .bind(account_id)
            .bind(now_ms())
            .execute(&self.writer)
            .await
            .map_err(backend)?;
        Ok(())
    }

    async fn first_account(&self) -> Result<Option<String>> {
        sqlx::query_scalar("SELECT id FROM accounts ORDER BY created_at, id LIMIT 1")
            .fetch_optional(&self.reader)
            .await
            .map_err(backend)
    }

    async fn create_principal(&self, p: &Principal) -> Result<()> {
        sqlx::query("INSERT INTO principals (id, account_id, name, kind, created_at) VALUES ($1, $2, $3, $4, $5)")
            .bind(&p.id)
            .bind(&p.account_id)
            .bind(&p.name)
            .bind(p.kind.as_str())
            .bind(p.created_at)
            .execute(&self.writer)
            .await
            .map_err(|e| if is_unique_violation(&e) { MetaError::AlreadyExists } else { backend(e) })?;
        Ok(())
    }

    async fn principal_by_name(&self, account_id: &str, name: &str) -> Result<Option<Principal>> {
        let row = sqlx::query(
            "SELECT id, account_id, name, kind, created_at FROM principals WHERE account_id = $1 AND name = $2",
        )
        .bind(account_id)
        .bind(name)
        .fetch_optional(&self.reader)
        .await
        .map_err(backend)?;
        Ok(row.map(|r| principal_from_row(&r, 0)))
    }

    async fn list_principals(&self, account_id: &str) -> Result<Vec<Principal>> {
        let rows = sqlx::query(
            "SELECT id, account_id, name, kind, created_at FROM principals WHERE account_id = $1 ORDER BY name",
        )
        .bind(account_id)
        .fetch_all(&self.reader)
        .await
        .map_err(backend)?;
        Ok(rows.iter().map(|r| principal_from_row(r, 0)).collect())
    }

    async fn create_access_key(&self, k: &AccessKey) -> Result<()> {
        sqlx::query(
            "INSERT INTO access_keys (access_key_id, principal_id, secret, status, created_at) VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(&k.access_key_id)
        .bind(&k.principal_id)
        .bind(&k.secret)
        .bind(if k.active { "Active" } else { "Inactive" })
        .bind(k.created_at)
        .execute(&self.writer)
        .await
        .map_err(|e| if is_unique_violation(&e) { MetaError::AlreadyExists } else { backend(e) })?;
        Ok(())
    }

    async fn access_key(&self, access_key_id: &str) -> Result<Option<(AccessKey, Principal)>> {
        let row = sqlx::query(
            "SELECT k.access_key_id, k.principal_id, k.secret, k.status, k.created_at, \
             p.id, p.account_id, p.name, p.kind, p.created_at \
             FROM access_keys k JOIN principals p ON p.id = k.principal_id WHERE k.access_key_id = $1",
        )
        .bind(access_key_id)
        .fetch_optional(&self.reader)
        .await
        .map_err(backend)?;
        Ok(row.map(|r| (access_key_from_row(&r), principal_from_row(&r, 5))))
    }

    async fn list_access_keys(&self, principal_id: &str) -> Result<Vec<AccessKey>> {
        let rows = sqlx::query(
            "SELECT access_key_id, principal_id, secret, status, created_at FROM access_keys \
             WHERE principal_id = $1 ORDER BY created_at, access_key_id",
        )
        .bind(principal_id)
        .fetch_all(&self.reader)
        .await
        .map_err(backend)?;
        Ok(rows.iter().map(access_key_from_row).collect())
    }

    async fn registry_secret(&self, name: &str, initial: &[u8]) -> Result<Vec<u8>> {
        sqlx::query(
            "INSERT INTO registry_secrets (name, value, created_at) VALUES ($1, $2, $3) ON CONFLICT (name) DO NOTHING",
        )
        .bind(name)
        .bind(initial)
        .bind(now_ms())
        .execute(&self.writer)
        .await
        .map_err(backend)?;
        sqlx::query_scalar("SELECT value FROM registry_secrets WHERE name = $1")
            .bind(name)
            .fetch_one(&self.writer)
            .await
            .map_err(backend)
    }

    async fn delete_principal(&self, principal_id: &str) -> Result<bool> {
        let mut tx = self.writer.begin().await.map_err(backend)?;
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
        tx.commit().await.map_err(backend)?;
        Ok(r.rows_affected() > 0)
    }
}
