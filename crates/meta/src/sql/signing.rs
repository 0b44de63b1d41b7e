// Image signing: signing profiles per account and each image's signing status per profile.
// Written once for both SQL backends: `include!`d by sqlite/mod.rs and postgres/mod.rs, where
// `Meta`, `Db`, `DbRow` and the dialect hooks (`dialect::…`) are their own.

const SIGNING_PROFILE_COLUMNS: &str =
    "arn, account_id, name, public_key_pem, sealed_private_key, created_at, revoked_at";

fn signing_profile_from_row(r: &DbRow) -> SigningProfile {
    SigningProfile {
        arn: r.get(0),
        account_id: r.get(1),
        name: r.get(2),
        public_key_pem: r.get(3),
        sealed_private_key: r.get(4),
        created_at: r.get(5),
        revoked_at: r.get(6),
    }
}

impl Meta {
    async fn signing_profiles_where(&self, condition: &str, value: &str) -> Result<Vec<SigningProfile>> {
        let sql = format!("SELECT {SIGNING_PROFILE_COLUMNS} FROM signing_profiles WHERE {condition} = $1 ORDER BY name");
        retry_transient!({
            let rows = sqlx::query(sqlx::AssertSqlSafe(sql.clone()))
                .bind(value)
                .fetch_all(self.reads())
                .await
                .map_err(backend)?;
            Ok(rows.iter().map(signing_profile_from_row).collect())
        })
    }
}

#[async_trait]
impl SigningStore for Meta {
    async fn create_signing_profile(&self, p: &SigningProfile) -> Result<()> {
        let sql = format!("INSERT INTO signing_profiles ({SIGNING_PROFILE_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7)");
        sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(&p.arn)
            .bind(&p.account_id)
            .bind(&p.name)
            .bind(&p.public_key_pem)
            .bind(&p.sealed_private_key)
            .bind(p.created_at)
            .bind(p.revoked_at)
            .execute(self.writes())
            .await
            .map_err(|e| if is_unique_violation(&e) { MetaError::AlreadyExists } else { backend(e) })?;
        Ok(())
    }

    async fn signing_profile(&self, arn: &str) -> Result<Option<SigningProfile>> {
        Ok(self.signing_profiles_where("arn", arn).await?.pop())
    }

    async fn signing_profiles(&self, account_id: &str) -> Result<Vec<SigningProfile>> {
        self.signing_profiles_where("account_id", account_id).await
    }

    async fn revoke_signing_profile(&self, arn: &str, at: i64) -> Result<SigningProfile> {
        sqlx::query("UPDATE signing_profiles SET revoked_at = COALESCE(revoked_at, $2) WHERE arn = $1")
            .bind(arn)
            .bind(at)
            .execute(self.writes())
            .await
            .map_err(backend)?;
        self.signing_profile(arn).await?.ok_or(MetaError::NotFound)
    }

    async fn put_image_signing(&self, repository: &str, digest: &str, s: &ImageSigning) -> Result<()> {
        sqlx::query(
            "INSERT INTO image_signings (repository_id, digest, profile_arn, status, failure_code, failure_reason, updated_at) \
             SELECT m.repository_id, m.digest, $3, $4, $5, $6, $7 FROM manifests m \
             JOIN repositories r ON r.id = m.repository_id WHERE r.name = $1 AND m.digest = $2 \
             ON CONFLICT (repository_id, digest, profile_arn) DO UPDATE SET status = excluded.status, \
             failure_code = excluded.failure_code, failure_reason = excluded.failure_reason, updated_at = excluded.updated_at",
        )
        .bind(repository)
        .bind(digest)
        .bind(&s.profile_arn)
        .bind(&s.status)
        .bind(&s.failure_code)
        .bind(&s.failure_reason)
        .bind(s.updated_at)
        .execute(self.writes())
        .await
        .map_err(backend)?;
        Ok(())
    }

    async fn delete_image_signing(&self, repository: &str, digest: &str, profile_arn: &str) -> Result<()> {
        sqlx::query(
            "DELETE FROM image_signings WHERE digest = $2 AND profile_arn = $3 \
             AND repository_id = (SELECT id FROM repositories WHERE name = $1)",
        )
        .bind(repository)
        .bind(digest)
        .bind(profile_arn)
        .execute(self.writes())
        .await
        .map_err(backend)?;
        Ok(())
    }

    async fn image_signings(&self, repository: &str, digest: &str) -> Result<Vec<ImageSigning>> {
        retry_transient!({
            let rows = sqlx::query(
                "SELECT s.profile_arn, s.status, s.failure_code, s.failure_reason, s.updated_at FROM image_signings s \
                 JOIN repositories r ON r.id = s.repository_id WHERE r.name = $1 AND s.digest = $2 ORDER BY s.profile_arn",
            )
            .bind(repository)
            .bind(digest)
            .fetch_all(self.reads())
            .await
            .map_err(backend)?;
            Ok(rows
                .iter()
                .map(|r| ImageSigning {
                    profile_arn: r.get(0),
                    status: r.get(1),
                    failure_code: r.get(2),
                    failure_reason: r.get(3),
                    updated_at: r.get(4),
                })
                .collect())
        })
    }
}
