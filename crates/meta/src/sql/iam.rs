// iAM groups and identity policies (inline and managed, with their attachments). Written once for both SQL backends:
// `include!`d by sqlite/mod.rs and postgres/mod.rs, where `Meta`, `Db`, `DbRow` and the
// dialect hooks (`dialect::…`) are their own.


#[async_trait]
impl IamPolicyStore for Meta {
    async fn create_group(&self, g: &Group) -> Result<()> {
        sqlx::query("INSERT INTO iam_groups (id, account_id, name, created_at) VALUES ($1, $2, $3, $4)")
            .bind(&g.id)
            .bind(&g.account_id)
            .bind(&g.name)
            .bind(g.created_at)
            .execute(self.writes())
            .await
            .map_err(|e| if is_unique_violation(&e) { MetaError::AlreadyExists } else { backend(e) })?;
        Ok(())
    }

    async fn group_by_name(&self, account_id: &str, name: &str) -> Result<Option<Group>> {
        retry_transient!({
            let row = sqlx::query_as::<_, (String, String, String, i64)>(
                "SELECT id, account_id, name, created_at FROM iam_groups WHERE account_id = $1 AND name = $2",
            )
            .bind(account_id)
            .bind(name)
            .fetch_optional(self.reads())
            .await
            .map_err(backend)?;
            Ok(row.map(|(id, account_id, name, created_at)| Group { id, account_id, name, created_at }))
        })
    }

    async fn list_groups(&self, account_id: &str) -> Result<Vec<Group>> {
        retry_transient!({
            let rows = sqlx::query_as::<_, (String, String, String, i64)>(
                "SELECT id, account_id, name, created_at FROM iam_groups WHERE account_id = $1 ORDER BY name",
            )
            .bind(account_id)
            .fetch_all(self.reads())
            .await
            .map_err(backend)?;
            Ok(rows
                .into_iter()
                .map(|(id, account_id, name, created_at)| Group { id, account_id, name, created_at })
                .collect())
        })
    }

    async fn delete_group(&self, group_id: &str) -> Result<bool> {
        retry_transient!({
            let mut tx = self.begin_write().await.map_err(backend)?;
            for sql in [
                "DELETE FROM iam_inline_policies WHERE owner_id = $1",
                "DELETE FROM iam_policy_attachments WHERE owner_id = $1",
                "DELETE FROM iam_group_members WHERE group_id = $1",
            ] {
                sqlx::query(sql).bind(group_id).execute(&mut *tx).await.map_err(backend)?;
            }
            let r = sqlx::query("DELETE FROM iam_groups WHERE id = $1")
                .bind(group_id)
                .execute(&mut *tx)
                .await
                .map_err(backend)?;
            tx.commit().await.map_err(commit_failed)?;
            Ok(r.rows_affected() > 0)
        })
    }

    async fn add_group_member(&self, group_id: &str, principal_id: &str) -> Result<()> {
        sqlx::query("INSERT INTO iam_group_members (group_id, principal_id) VALUES ($1, $2) ON CONFLICT DO NOTHING")
            .bind(group_id)
            .bind(principal_id)
            .execute(self.writes())
            .await
            .map_err(backend)?;
        Ok(())
    }

    async fn remove_group_member(&self, group_id: &str, principal_id: &str) -> Result<bool> {
        let r = sqlx::query("DELETE FROM iam_group_members WHERE group_id = $1 AND principal_id = $2")
            .bind(group_id)
            .bind(principal_id)
            .execute(self.writes())
            .await
            .map_err(backend)?;
        Ok(r.rows_affected() > 0)
    }

    async fn groups_of(&self, principal_id: &str) -> Result<Vec<Group>> {
        retry_transient!({
            let rows = sqlx::query_as::<_, (String, String, String, i64)>(
                "SELECT g.id, g.account_id, g.name, g.created_at FROM iam_groups g \
                 JOIN iam_group_members m ON m.group_id = g.id WHERE m.principal_id = $1 ORDER BY g.name",
            )
            .bind(principal_id)
            .fetch_all(self.reads())
            .await
            .map_err(backend)?;
            Ok(rows
                .into_iter()
                .map(|(id, account_id, name, created_at)| Group { id, account_id, name, created_at })
                .collect())
        })
    }

    async fn group_members(&self, group_id: &str) -> Result<Vec<Principal>> {
        retry_transient!({
            let rows = sqlx::query(
                "SELECT p.id, p.account_id, p.name, p.kind, p.created_at FROM principals p \
                 JOIN iam_group_members m ON m.principal_id = p.id WHERE m.group_id = $1 ORDER BY p.name",
            )
            .bind(group_id)
            .fetch_all(self.reads())
            .await
            .map_err(backend)?;
            Ok(rows.iter().map(|r| principal_from_row(r, 0)).collect())
        })
    }

    async fn put_inline_policy(&self, owner_id: &str, name: &str, document: &str) -> Result<()> {
        sqlx::query(
            "INSERT INTO iam_inline_policies (owner_id, name, document) VALUES ($1, $2, $3) \
             ON CONFLICT (owner_id, name) DO UPDATE SET document = excluded.document",
        )
        .bind(owner_id)
        .bind(name)
        .bind(document)
        .execute(self.writes())
        .await
        .map_err(backend)?;
        Ok(())
    }

    async fn inline_policy(&self, owner_id: &str, name: &str) -> Result<Option<String>> {
        retry_transient!({
            sqlx::query_scalar("SELECT document FROM iam_inline_policies WHERE owner_id = $1 AND name = $2")
                .bind(owner_id)
                .bind(name)
                .fetch_optional(self.reads())
                .await
                .map_err(backend)
        })
    }

    async fn list_inline_policies(&self, owner_id: &str) -> Result<Vec<String>> {
        retry_transient!({
            sqlx::query_scalar("SELECT name FROM iam_inline_policies WHERE owner_id = $1 ORDER BY name")
                .bind(owner_id)
                .fetch_all(self.reads())
                .await
                .map_err(backend)
        })
    }

    async fn delete_inline_policy(&self, owner_id: &str, name: &str) -> Result<bool> {
        let r = sqlx::query("DELETE FROM iam_inline_policies WHERE owner_id = $1 AND name = $2")
            .bind(owner_id)
            .bind(name)
            .execute(self.writes())
            .await
            .map_err(backend)?;
        Ok(r.rows_affected() > 0)
    }

    async fn create_managed_policy(&self, p: &ManagedPolicy) -> Result<()> {
        sqlx::query(
            "INSERT INTO iam_managed_policies (arn, id, account_id, name, path, document, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(&p.arn)
        .bind(&p.id)
        .bind(&p.account_id)
        .bind(&p.name)
        .bind(&p.path)
        .bind(&p.document)
        .bind(p.created_at)
        .bind(p.updated_at)
        .execute(self.writes())
        .await
        .map_err(|e| if is_unique_violation(&e) { MetaError::AlreadyExists } else { backend(e) })?;
        Ok(())
    }

    async fn managed_policy(&self, arn: &str) -> Result<Option<ManagedPolicy>> {
        retry_transient!({
            let row = sqlx::query(
                "SELECT arn, id, account_id, name, path, document, created_at, updated_at FROM iam_managed_policies WHERE arn = $1",
            )
            .bind(arn)
            .fetch_optional(self.reads())
            .await
            .map_err(backend)?;
            Ok(row.map(|r| managed_policy_from_row(&r)))
        })
    }

    async fn list_managed_policies(&self, account_id: &str) -> Result<Vec<ManagedPolicy>> {
        retry_transient!({
            let rows = sqlx::query(
                "SELECT arn, id, account_id, name, path, document, created_at, updated_at FROM iam_managed_policies \
                 WHERE account_id = $1 ORDER BY name",
            )
            .bind(account_id)
            .fetch_all(self.reads())
            .await
            .map_err(backend)?;
            Ok(rows.iter().map(managed_policy_from_row).collect())
        })
    }

    async fn update_managed_policy(&self, arn: &str, document: &str) -> Result<bool> {
        let r = sqlx::query("UPDATE iam_managed_policies SET document = $2, updated_at = $3 WHERE arn = $1")
            .bind(arn)
            .bind(document)
            .bind(now_ms())
            .execute(self.writes())
            .await
            .map_err(backend)?;
        Ok(r.rows_affected() > 0)
    }

    async fn delete_managed_policy(&self, arn: &str) -> Result<bool> {
        let r = sqlx::query("DELETE FROM iam_managed_policies WHERE arn = $1")
            .bind(arn)
            .execute(self.writes())
            .await
            .map_err(backend)?;
        Ok(r.rows_affected() > 0)
    }

    async fn attach_policy(&self, owner_id: &str, arn: &str) -> Result<()> {
        sqlx::query("INSERT INTO iam_policy_attachments (owner_id, policy_arn) VALUES ($1, $2) ON CONFLICT DO NOTHING")
            .bind(owner_id)
            .bind(arn)
            .execute(self.writes())
            .await
            .map_err(backend)?;
        Ok(())
    }

    async fn detach_policy(&self, owner_id: &str, arn: &str) -> Result<bool> {
        let r = sqlx::query("DELETE FROM iam_policy_attachments WHERE owner_id = $1 AND policy_arn = $2")
            .bind(owner_id)
            .bind(arn)
            .execute(self.writes())
            .await
            .map_err(backend)?;
        Ok(r.rows_affected() > 0)
    }

    async fn attached_policies(&self, owner_id: &str) -> Result<Vec<String>> {
        retry_transient!({
            sqlx::query_scalar("SELECT policy_arn FROM iam_policy_attachments WHERE owner_id = $1 ORDER BY policy_arn")
                .bind(owner_id)
                .fetch_all(self.reads())
                .await
                .map_err(backend)
        })
    }

    async fn policy_attachment_count(&self, arn: &str) -> Result<u64> {
        retry_transient!({
            let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM iam_policy_attachments WHERE policy_arn = $1")
                .bind(arn)
                .fetch_one(self.reads())
                .await
                .map_err(backend)?;
            Ok(n as u64)
        })
    }

    async fn identity_policies(&self, principal_id: &str) -> Result<Vec<IdentityPolicySource>> {
        retry_transient!({
            // The principal and its groups, in one statement each for inline and attached policies.
            let owners = "SELECT $1 UNION SELECT group_id FROM iam_group_members WHERE principal_id = $1";
            let inline = sqlx::query_as::<_, (String, String, String)>(sqlx::AssertSqlSafe(format!(
                "SELECT owner_id, name, document FROM iam_inline_policies WHERE owner_id IN ({owners}) ORDER BY owner_id, name"
            )))
            .bind(principal_id)
            .fetch_all(self.reads())
            .await
            .map_err(backend)?;
            let attached = sqlx::query_as::<_, (String, String, Option<String>)>(sqlx::AssertSqlSafe(format!(
                "SELECT a.owner_id, a.policy_arn, p.document FROM iam_policy_attachments a \
                 LEFT JOIN iam_managed_policies p ON p.arn = a.policy_arn \
                 WHERE a.owner_id IN ({owners}) ORDER BY a.owner_id, a.policy_arn"
            )))
            .bind(principal_id)
            .fetch_all(self.reads())
            .await
            .map_err(backend)?;
            Ok(inline
                .into_iter()
                .map(|(owner, name, document)| IdentityPolicySource::Inline { owner, name, document })
                .chain(attached.into_iter().map(|(owner, arn, document)| IdentityPolicySource::Attached {
                    owner,
                    arn,
                    document,
                }))
                .collect())
        })
    }
}
