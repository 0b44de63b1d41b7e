// Helpers of the role implementations, written once for both SQL backends (`include!`d by
// sqlite/mod.rs and postgres/mod.rs, where `Meta`, `Db`, `DbRow` and `dialect` are their own).

impl Meta {
    /// Completes a page of manifest rows (digest, media type, artifact type, subject, pushed at,
    /// last pulled at, repository id; in digest order) with their tags, referenced bytes and
    /// children: three range queries over the page's digest span, not three per image.
    async fn images_from_rows(&self, rows: &[DbRow]) -> Result<Vec<ImageRecord>> {
        let (Some(first), Some(last)) = (rows.first(), rows.last()) else { return Ok(Vec::new()) };
        let repository_id: i64 = first.get(6);
        let (lo, hi): (String, String) = (first.get(0), last.get(0));
        let tags = sqlx::query_as::<_, (String, String)>(
            "SELECT digest, tag FROM tags WHERE repository_id = $1 AND digest >= $2 AND digest <= $3 ORDER BY digest, tag",
        )
        .bind(repository_id)
        .bind(&lo)
        .bind(&hi)
        .fetch_all(self.reads())
        .await
        .map_err(backend)?;
        let sizes = sqlx::query_as::<_, (String, i64)>(
            "SELECT mr.manifest_digest, CAST(SUM(b.size) AS BIGINT) FROM manifest_references mr JOIN blobs b ON b.digest = mr.child_digest \
             WHERE mr.repository_id = $1 AND mr.child_kind = 'blob' AND mr.manifest_digest >= $2 AND mr.manifest_digest <= $3 \
             GROUP BY mr.manifest_digest",
        )
        .bind(repository_id)
        .bind(&lo)
        .bind(&hi)
        .fetch_all(self.reads())
        .await
        .map_err(backend)?;
        let children = sqlx::query_as::<_, (String, String)>(
            "SELECT manifest_digest, child_digest FROM manifest_references WHERE repository_id = $1 \
             AND child_kind = 'manifest' AND manifest_digest >= $2 AND manifest_digest <= $3 ORDER BY manifest_digest, child_digest",
        )
        .bind(repository_id)
        .bind(&lo)
        .bind(&hi)
        .fetch_all(self.reads())
        .await
        .map_err(backend)?;
        let mut tags_of: std::collections::HashMap<String, Vec<String>> = std::collections::HashMap::new();
        for (d, t) in tags {
            tags_of.entry(d).or_default().push(t);
        }
        let size_of: std::collections::HashMap<String, i64> = sizes.into_iter().collect();
        let mut children_of: std::collections::HashMap<String, Vec<String>> = std::collections::HashMap::new();
        for (d, c) in children {
            children_of.entry(d).or_default().push(c);
        }
        Ok(rows
            .iter()
            .map(|row| {
                let digest: String = row.get(0);
                ImageRecord {
                    tags: tags_of.remove(&digest).unwrap_or_default(),
                    blob_bytes: size_of.get(&digest).copied().unwrap_or(0),
                    children: children_of.remove(&digest).unwrap_or_default(),
                    media_type: row.get(1),
                    artifact_type: row.get(2),
                    subject: row.get(3),
                    pushed_at: row.get(4),
                    last_pulled_at: row.get(5),
                    archived: row.get::<String, _>(7) == "ARCHIVE",
                    last_archived_at: row.get(8),
                    last_activated_at: row.get(9),
                    digest,
                }
            })
            .collect())
    }

}

/// Locks the rows `exists_sql` finds against a concurrent delete (`dialect::SHARE_LOCK`) and
/// returns the digests (each once) for which `exists_sql` ($1 repository id, $2 digest) finds no row.
async fn missing(
    tx: &mut Transaction<'_, Db>,
    exists_sql: &'static str,
    repository_id: i64,
    digests: &[Digest],
) -> Result<Vec<Digest>> {
    let mut out: Vec<Digest> = Vec::new();
    for d in digests {
        let held: Option<i64> = sqlx::query_scalar(sqlx::AssertSqlSafe(format!("{exists_sql}{}", dialect::SHARE_LOCK)))
            .bind(repository_id)
            .bind(d.as_str())
            .fetch_optional(&mut **tx)
            .await
            .map_err(backend)?;
        if held.is_none() && !out.contains(d) {
            out.push(d.clone());
        }
    }
    Ok(out)
}

async fn repo_id(tx: &mut Transaction<'_, Db>, name: &str) -> Result<i64> {
    sqlx::query_scalar::<_, i64>("SELECT id FROM repositories WHERE name = $1")
        .bind(name)
        .fetch_optional(&mut **tx)
        .await
        .map_err(backend)?
        .ok_or(MetaError::RepositoryNotFound)
}

