// The replication queue (#17): claiming, finishing and releasing jobs, and the statuses
// `DescribeImageReplicationStatus` reports. Jobs are queued by `put_manifest` (content.rs).
// Written once for both SQL backends: `include!`d by sqlite/mod.rs and postgres/mod.rs, where
// `Meta` and the dialect hooks (`dialect::…`) are their own.

/// The statement selecting the replication peers `$condition` picks.
macro_rules! peers_sql {
    ($condition:literal) => {
        concat!(
            "SELECT region, endpoint, ca_pem, access_key_id, sealed_secret, accounts, created_at \
             FROM replication_peers WHERE ",
            $condition,
            " ORDER BY region"
        )
    };
}

/// The tags a job keeps, as stored (a JSON array).
fn tags_text(tags: &[String]) -> Result<String> {
    serde_json::to_string(tags).map_err(|e| MetaError::Backend(e.to_string()))
}

fn tags_of(text: Option<&str>) -> Result<Vec<String>> {
    match text {
        None => Ok(Vec::new()),
        Some(t) => serde_json::from_str(t).map_err(|e| MetaError::Backend(format!("stored replication tags: {e}"))),
    }
}

/// The (tags, status, action) of the job of an image for a destination, if there is one.
async fn job_row(
    tx: &mut Transaction<'static, Db>,
    repository: &str,
    digest: &str,
    target: &ReplicationTarget,
) -> Result<Option<(String, String, String)>> {
    sqlx::query_as(
        "SELECT tags, status, action FROM replication_jobs WHERE repository = $1 AND digest = $2 \
         AND destination_region = $3 AND destination_registry = $4",
    )
    .bind(repository)
    .bind(digest)
    .bind(&target.region)
    .bind(&target.registry_id)
    .fetch_optional(&mut **tx)
    .await
    .map_err(backend)
}

/// Queues `targets` for the image `digest` of the repository `id` names, pushed with `tags`,
/// in the push's transaction. A job still waiting keeps the tags it had too (two pushes of
/// one image before it ran); every job is a new generation, due at once.
async fn queue_jobs(
    tx: &mut Transaction<'static, Db>,
    repository: &str,
    digest: &str,
    tags: &[String],
    targets: &[ReplicationTarget],
    now: i64,
) -> Result<()> {
    for t in targets {
        let waiting = job_row(tx, repository, digest, t).await?;
        let mut all: Vec<String> = match &waiting {
            Some((kept, status, action)) if status == "IN_PROGRESS" && action == "REPLICATE" => tags_of(Some(kept))?,
            _ => Vec::new(),
        };
        for tag in tags {
            if !all.contains(tag) {
                all.push(tag.clone());
            }
        }
        sqlx::query(
            "INSERT INTO replication_jobs (repository, digest, destination_region, destination_registry, tags, status, \
             attempts, generation, queued_at, due_at) VALUES ($1, $2, $3, $4, $5, 'IN_PROGRESS', 0, 0, $6, $6) \
             ON CONFLICT (repository, digest, destination_region, destination_registry) DO UPDATE SET \
             action = 'REPLICATE', tags = excluded.tags, status = 'IN_PROGRESS', failure_code = NULL, dropped_tags = NULL, attempts = 0, \
             generation = replication_jobs.generation + 1, queued_at = excluded.queued_at, due_at = excluded.due_at, \
             claimed_by = NULL, claimed_at = NULL, completed_at = NULL",
        )
        .bind(repository)
        .bind(digest)
        .bind(&t.region)
        .bind(&t.registry_id)
        .bind(tags_text(&all)?)
        .bind(now)
        .execute(&mut **tx)
        .await
        .map_err(backend)?;
    }
    Ok(())
}

#[async_trait]
impl ReplicationStore for Meta {
    async fn claim_replications(&self, worker: &str, now: i64, limit: u32) -> Result<Vec<ReplicationJob>> {
        let rows = sqlx::query_as::<_, (String, String, String, String, String, i64, i64, i64, String)>(
            dialect::CLAIM_REPLICATIONS,
        )
            .bind(worker)
            .bind(now)
            .bind(limit as i64)
            .fetch_all(self.writes())
            .await
            .map_err(backend)?;
        rows.into_iter()
            .map(|(repository, digest, region, registry_id, tags, attempts, generation, queued_at, action)| {
                Ok(ReplicationJob {
                    repository,
                    digest,
                    target: ReplicationTarget { region, registry_id },
                    action: stored("replication action", &action, ReplicationAction::parse)?,
                    tags: tags_of(Some(&tags))?,
                    attempts: u32::try_from(attempts).unwrap_or(u32::MAX),
                    generation,
                    queued_at,
                })
            })
            .collect()
    }

    async fn finish_replication(
        &self,
        job: &ReplicationJob,
        worker: &str,
        outcome: &ReplicationOutcome,
    ) -> Result<bool> {
        let now = now_ms();
        let (status, failure, dropped, due, completed) = match outcome {
            ReplicationOutcome::Complete { dropped_tags } => {
                (ReplicationStatus::Complete, None, Some(tags_text(dropped_tags)?), now, Some(now))
            }
            ReplicationOutcome::Failed { failure_code } => {
                (ReplicationStatus::Failed, Some(failure_code.clone()), None, now, Some(now))
            }
            ReplicationOutcome::Retry { failure_code, due_at } => {
                (ReplicationStatus::InProgress, Some(failure_code.clone()), None, *due_at, None)
            }
        };
        let mut tx = self.begin_write().await.map_err(backend)?;
        let done = sqlx::query(
            "UPDATE replication_jobs SET status = $6, failure_code = $7, dropped_tags = $8, due_at = $9, \
             completed_at = $10, claimed_by = NULL, claimed_at = NULL \
             WHERE repository = $1 AND digest = $2 AND destination_region = $3 AND destination_registry = $4 \
             AND generation = $5 AND claimed_by = $11",
        )
        .bind(&job.repository)
        .bind(&job.digest)
        .bind(&job.target.region)
        .bind(&job.target.registry_id)
        .bind(job.generation)
        .bind(status.as_str())
        .bind(&failure)
        .bind(&dropped)
        .bind(due)
        .bind(completed)
        .bind(worker)
        .execute(&mut *tx)
        .await
        .map_err(backend)?;
        let recorded = done.rows_affected() > 0;
        if !recorded {
            // Queued again meanwhile (its claim was kept for this run to end): the next run may
            // start now.
            sqlx::query(
                "UPDATE replication_jobs SET claimed_by = NULL, claimed_at = NULL WHERE repository = $1 \
                 AND digest = $2 AND destination_region = $3 AND destination_registry = $4 AND claimed_by = $5",
            )
            .bind(&job.repository)
            .bind(&job.digest)
            .bind(&job.target.region)
            .bind(&job.target.registry_id)
            .bind(worker)
            .execute(&mut *tx)
            .await
            .map_err(backend)?;
        }
        if recorded && status != ReplicationStatus::InProgress {
            sqlx::query(
                "INSERT INTO replication_events (at, repository, digest, destination_region, destination_registry, \
                 status, failure_code, tags, dropped_tags, action) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
            )
            .bind(now)
            .bind(&job.repository)
            .bind(&job.digest)
            .bind(&job.target.region)
            .bind(&job.target.registry_id)
            .bind(status.as_str())
            .bind(&failure)
            .bind(tags_text(&job.tags)?)
            .bind(dropped.unwrap_or_else(|| "[]".to_string()))
            .bind(job.action.as_str())
            .execute(&mut *tx)
            .await
            .map_err(backend)?;
        }
        tx.commit().await.map_err(commit_failed)?;
        Ok(recorded)
    }

    async fn release_replications(&self, worker: Option<&str>, before: i64) -> Result<u64> {
        let done = sqlx::query(
            "UPDATE replication_jobs SET claimed_by = NULL, claimed_at = NULL, due_at = $2, generation = generation + 1 \
             WHERE status = 'IN_PROGRESS' AND claimed_by IS NOT NULL AND (claimed_by = $1 OR ($1 IS NULL AND claimed_at < $2))",
        )
        .bind(worker)
        .bind(before)
        .execute(self.writes())
        .await
        .map_err(backend)?;
        Ok(done.rows_affected())
    }

    async fn queue_replications(
        &self,
        repository: &str,
        digest: &str,
        tags: &[String],
        targets: &[ReplicationTarget],
    ) -> Result<()> {
        retry_transient!({
            let mut tx = self.begin_write().await.map_err(backend)?;
            let held: Option<i64> = sqlx::query_scalar(
                "SELECT CAST(1 AS BIGINT) FROM manifests m JOIN repositories r ON r.id = m.repository_id \
                 WHERE r.name = $1 AND m.digest = $2",
            )
            .bind(repository)
            .bind(digest)
            .fetch_optional(&mut *tx)
            .await
            .map_err(backend)?;
            if held.is_none() {
                return Err(MetaError::NotFound);
            }
            queue_jobs(&mut tx, repository, digest, tags, targets, now_ms()).await?;
            tx.commit().await.map_err(commit_failed)?;
            Ok(())
        })
    }

    async fn queue_replication_removal(
        &self,
        repository: &str,
        digest: &str,
        tag: Option<&str>,
        targets: &[ReplicationTarget],
        due_at: i64,
    ) -> Result<()> {
        retry_transient!({
            let mut tx = self.begin_write().await.map_err(backend)?;
            let now = now_ms();
            for t in targets {
                let existing = job_row(&mut tx, repository, digest, t).await?;
                let waiting = |a: &str| existing.as_ref().is_some_and(|(_, s, act)| s == "IN_PROGRESS" && act == a);
                let (action, tags) = match tag {
                    // A delete waiting stays: nothing of the image is left to remove tags from.
                    _ if waiting("DELETE") => continue,
                    None => (ReplicationAction::Delete, Vec::new()),
                    Some(tag) if waiting("REPLICATE") || waiting("UNTAG") => {
                        let mut tags = tags_of(existing.as_ref().map(|(t, _, _)| t.as_str()))?;
                        let action = if waiting("REPLICATE") {
                            tags.retain(|t| t != tag);
                            ReplicationAction::Replicate
                        } else {
                            if !tags.iter().any(|t| t == tag) {
                                tags.push(tag.to_string());
                            }
                            ReplicationAction::Untag
                        };
                        (action, tags)
                    }
                    Some(tag) => (ReplicationAction::Untag, vec![tag.to_string()]),
                };
                // A run in progress keeps its claim (its outcome is not recorded, and its end
                // releases the claim): a removal never runs beside a run sending the image.
                sqlx::query(
                    "INSERT INTO replication_jobs (repository, digest, destination_region, destination_registry, tags, \
                     status, attempts, generation, queued_at, due_at, action) \
                     VALUES ($1, $2, $3, $4, $5, 'IN_PROGRESS', 0, 0, $6, $8, $7) \
                     ON CONFLICT (repository, digest, destination_region, destination_registry) DO UPDATE SET \
                     action = excluded.action, tags = excluded.tags, status = 'IN_PROGRESS', failure_code = NULL, \
                     dropped_tags = NULL, attempts = 0, generation = replication_jobs.generation + 1, \
                     queued_at = excluded.queued_at, due_at = excluded.due_at, completed_at = NULL",
                )
                .bind(repository)
                .bind(digest)
                .bind(&t.region)
                .bind(&t.registry_id)
                .bind(tags_text(&tags)?)
                .bind(now)
                .bind(action.as_str())
                .bind(due_at)
                .execute(&mut *tx)
                .await
                .map_err(backend)?;
            }
            tx.commit().await.map_err(commit_failed)?;
            Ok(())
        })
    }

    async fn hasten_replications(&self, repository: &str, digest: &str, now: i64) -> Result<u64> {
        let done = sqlx::query(
            "UPDATE replication_jobs SET due_at = $3 WHERE repository = $1 AND digest = $2 \
             AND status = 'IN_PROGRESS' AND attempts = 0 AND due_at > $3",
        )
        .bind(repository)
        .bind(digest)
        .bind(now)
        .execute(self.writes())
        .await
        .map_err(backend)?;
        Ok(done.rows_affected())
    }

    async fn renew_replication_claims(&self, worker: &str, jobs: &[ReplicationJob], now: i64) -> Result<u64> {
        let mut renewed = 0;
        for job in jobs {
            let done = sqlx::query(
                "UPDATE replication_jobs SET claimed_at = $6 WHERE repository = $1 AND digest = $2 \
                 AND destination_region = $3 AND destination_registry = $4 AND claimed_by = $5",
            )
            .bind(&job.repository)
            .bind(&job.digest)
            .bind(&job.target.region)
            .bind(&job.target.registry_id)
            .bind(worker)
            .bind(now)
            .execute(self.writes())
            .await
            .map_err(backend)?;
            renewed += done.rows_affected();
        }
        Ok(renewed)
    }

    async fn image_replications(&self, repository: &str, digest: &str) -> Result<Vec<ImageReplication>> {
        retry_transient!({
            let rows = sqlx::query_as::<
                _,
                (String, String, String, Option<String>, Option<String>, i64, i64, Option<i64>, String),
            >(
                "SELECT destination_region, destination_registry, status, failure_code, dropped_tags, attempts, \
                 queued_at, completed_at, action FROM replication_jobs WHERE repository = $1 AND digest = $2 \
                 ORDER BY destination_region, destination_registry",
            )
            .bind(repository)
            .bind(digest)
            .fetch_all(self.reads())
            .await
            .map_err(backend)?;
            rows.into_iter()
                .map(|(region, registry_id, status, failure_code, dropped, attempts, queued_at, completed_at, action)| {
                    Ok(ImageReplication {
                        target: ReplicationTarget { region, registry_id },
                        action: stored("replication action", &action, ReplicationAction::parse)?,
                        status: stored("replication status", &status, ReplicationStatus::parse)?,
                        failure_code,
                        dropped_tags: tags_of(dropped.as_deref())?,
                        attempts: u32::try_from(attempts).unwrap_or(u32::MAX),
                        queued_at,
                        completed_at,
                    })
                })
                .collect()
        })
    }

    async fn replication_queue(&self) -> Result<Vec<(ReplicationTarget, ReplicationQueueCounts)>> {
        retry_transient!({
            let rows = sqlx::query_as::<_, (String, String, String, i64, i64)>(
                "SELECT destination_region, destination_registry, status, \
                 CAST(CASE WHEN claimed_by IS NULL THEN 0 ELSE 1 END AS BIGINT), COUNT(*) \
                 FROM replication_jobs GROUP BY 1, 2, 3, 4 ORDER BY 1, 2",
            )
            .fetch_all(self.reads())
            .await
            .map_err(backend)?;
            let mut out: Vec<(ReplicationTarget, ReplicationQueueCounts)> = Vec::new();
            for (region, registry_id, status, running, n) in rows {
                let target = ReplicationTarget { region, registry_id };
                if out.last().is_none_or(|(t, _)| *t != target) {
                    out.push((target, ReplicationQueueCounts::default()));
                }
                let c = &mut out.last_mut().expect("just pushed").1;
                let n = n as u64;
                match (status.as_str(), running) {
                    ("IN_PROGRESS", 0) => c.waiting += n,
                    ("IN_PROGRESS", _) => c.running += n,
                    ("COMPLETE", _) => c.complete += n,
                    _ => c.failed += n,
                }
            }
            Ok(out)
        })
    }

    async fn replication_events(
        &self,
        repository: Option<&str>,
        after: i64,
        limit: u32,
    ) -> Result<Vec<ReplicationEvent>> {
        retry_transient!({
            let rows = sqlx::query_as::<
                _,
                (i64, i64, String, String, String, String, String, Option<String>, String, String, String),
            >(
                "SELECT id, at, repository, digest, destination_region, destination_registry, status, failure_code, \
                 tags, dropped_tags, action FROM replication_events WHERE id > $1 AND ($2 IS NULL OR repository = $2) \
                 ORDER BY id LIMIT $3",
            )
            .bind(after)
            .bind(repository)
            .bind(i64::from(limit))
            .fetch_all(self.reads())
            .await
            .map_err(backend)?;
            rows.into_iter()
                .map(|(id, at, repository, digest, region, registry_id, status, failure_code, tags, dropped, action)| {
                    Ok(ReplicationEvent {
                        id,
                        at,
                        repository,
                        digest,
                        target: ReplicationTarget { region, registry_id },
                        action: stored("replication action", &action, ReplicationAction::parse)?,
                        status: stored("replication status", &status, ReplicationStatus::parse)?,
                        failure_code,
                        tags: tags_of(Some(&tags))?,
                        dropped_tags: tags_of(Some(&dropped))?,
                    })
                })
                .collect()
        })
    }

    async fn put_replication_peer(&self, peer: &ReplicationPeer) -> Result<()> {
        sqlx::query(
            "INSERT INTO replication_peers (region, endpoint, ca_pem, access_key_id, sealed_secret, accounts, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (region) DO UPDATE SET endpoint = excluded.endpoint, \
             ca_pem = excluded.ca_pem, access_key_id = excluded.access_key_id, sealed_secret = excluded.sealed_secret, \
             accounts = excluded.accounts, created_at = excluded.created_at",
        )
        .bind(&peer.region)
        .bind(&peer.endpoint)
        .bind(&peer.ca_pem)
        .bind(&peer.access_key_id)
        .bind(&peer.sealed_secret)
        .bind(tags_text(&peer.accounts)?)
        .bind(peer.created_at)
        .execute(self.writes())
        .await
        .map_err(|e| if is_unique_violation(&e) { MetaError::AlreadyExists } else { backend(e) })?;
        Ok(())
    }

    async fn replication_peer(&self, region: &str) -> Result<Option<ReplicationPeer>> {
        Ok(peers_where(self, peers_sql!("region = $1"), region).await?.into_iter().next())
    }

    async fn replication_peer_by_key(&self, access_key_id: &str) -> Result<Option<ReplicationPeer>> {
        Ok(peers_where(self, peers_sql!("access_key_id = $1"), access_key_id).await?.into_iter().next())
    }

    async fn replication_peers(&self) -> Result<Vec<ReplicationPeer>> {
        peers_where(self, peers_sql!("region <> $1"), "").await
    }

    async fn delete_replication_peer(&self, region: &str) -> Result<bool> {
        let done = sqlx::query("DELETE FROM replication_peers WHERE region = $1")
            .bind(region)
            .execute(self.writes())
            .await
            .map_err(backend)?;
        Ok(done.rows_affected() > 0)
    }
}

/// The peers a condition on one bound value selects, in region order (`peers_sql!`).
async fn peers_where(meta: &Meta, sql: &'static str, value: &str) -> Result<Vec<ReplicationPeer>> {
    retry_transient!({
        let rows = sqlx::query_as::<_, (String, Option<String>, Option<String>, String, String, String, i64)>(sql)
            .bind(value)
            .fetch_all(meta.reads())
            .await
            .map_err(backend)?;
        rows.into_iter()
            .map(|(region, endpoint, ca_pem, access_key_id, sealed_secret, accounts, created_at)| {
                Ok(ReplicationPeer {
                    region,
                    endpoint,
                    ca_pem,
                    access_key_id,
                    sealed_secret,
                    accounts: tags_of(Some(&accounts))?,
                    created_at,
                })
            })
            .collect()
    })
}
