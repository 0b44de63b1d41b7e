use super::*;
use crate::{
    ReplicationAction, ReplicationJob, ReplicationOutcome, ReplicationPeer, ReplicationQueueCounts, ReplicationStatus,
    ReplicationTarget,
};

fn target(region: &str, registry: &str) -> ReplicationTarget {
    ReplicationTarget { region: region.into(), registry_id: registry.into() }
}

fn tags(t: &[&str]) -> Vec<String> {
    t.iter().map(|s| s.to_string()).collect()
}

/// Every destination's counts added up.
async fn totals(meta: &dyn MetaStore) -> ReplicationQueueCounts {
    let mut t = ReplicationQueueCounts::default();
    for (_, c) in meta.replication_queue().await.unwrap() {
        t.waiting += c.waiting;
        t.running += c.running;
        t.complete += c.complete;
        t.failed += c.failed;
    }
    t
}

/// Pushes the image `content` to `repo/app` with `t` tags, replicated to `targets`.
async fn push(meta: &dyn MetaStore, content: &str, t: &[&str], targets: &[ReplicationTarget]) -> NewManifest {
    let m = NewManifest { replicate_to: targets.to_vec(), ..manifest(content, &[], &[], None) };
    meta.put_manifest("repo/app", &m, &tags(t), &[]).await.unwrap();
    m
}

pub async fn a_push_queues_a_job_per_destination_in_its_transaction(meta: Store) {
    repository(meta.as_ref(), "repo/app").await;
    let (eu, b) = (target("eu-west-1", "111111111111"), target("us-east-1", "222222222222"));
    let m = push(meta.as_ref(), "img-1", &["v1"], &[eu.clone(), b.clone()]).await;
    let statuses = meta.image_replications("repo/app", m.digest.as_str()).await.unwrap();
    assert_eq!(
        statuses.iter().map(|s| (&s.target, s.status)).collect::<Vec<_>>(),
        [(&eu, ReplicationStatus::InProgress), (&b, ReplicationStatus::InProgress)]
    );
    assert!(statuses.iter().all(|s| s.failure_code.is_none() && s.attempts == 0 && s.completed_at.is_none()));
    let one = ReplicationQueueCounts { waiting: 1, ..Default::default() };
    assert_eq!(meta.replication_queue().await.unwrap(), vec![(eu.clone(), one), (b.clone(), one)]);
    // A push refused as a whole queues nothing: the jobs are written in its transaction.
    let missing = NewManifest { replicate_to: vec![eu.clone()], ..manifest("img-2", &[&digest("absent")], &[], None) };
    assert!(meta.put_manifest("repo/app", &missing, &tags(&["v2"]), &[]).await.is_err());
    assert!(meta.image_replications("repo/app", missing.digest.as_str()).await.unwrap().is_empty());
    // A push without destinations queues nothing.
    let plain = push(meta.as_ref(), "img-3", &["v3"], &[]).await;
    assert!(meta.image_replications("repo/app", plain.digest.as_str()).await.unwrap().is_empty());
}

pub async fn claims_retries_and_finishes_jobs(meta: Store) {
    repository(meta.as_ref(), "repo/app").await;
    let eu = target("eu-west-1", "111111111111");
    let m = push(meta.as_ref(), "img-1", &["v1", "latest"], std::slice::from_ref(&eu)).await;
    let now = now_ms();
    let jobs = meta.claim_replications("node-a", now, 10).await.unwrap();
    assert_eq!(
        jobs,
        vec![ReplicationJob {
            repository: "repo/app".into(),
            digest: m.digest.to_string(),
            target: eu.clone(),
            action: ReplicationAction::Replicate,
            tags: tags(&["v1", "latest"]),
            attempts: 1,
            generation: 0,
            queued_at: jobs[0].queued_at,
        }]
    );
    assert!(jobs[0].queued_at > 0 && jobs[0].queued_at <= now, "the push's time");
    assert!(meta.claim_replications("node-b", now, 10).await.unwrap().is_empty(), "claimed once");
    assert_eq!(totals(meta.as_ref()).await.running, 1);
    // Another worker's outcome is not recorded.
    let done = ReplicationOutcome::Complete { dropped_tags: vec![] };
    assert!(!meta.finish_replication(&jobs[0], "node-b", &done).await.unwrap());
    // A retry waits until it is due, with its failure shown, still IN_PROGRESS.
    let retry = ReplicationOutcome::Retry { failure_code: "DESTINATION_UNREACHABLE".into(), due_at: now + 60_000 };
    assert!(meta.finish_replication(&jobs[0], "node-a", &retry).await.unwrap());
    let s = &meta.image_replications("repo/app", m.digest.as_str()).await.unwrap()[0];
    assert_eq!(
        (s.status, s.failure_code.as_deref(), s.attempts),
        (ReplicationStatus::InProgress, Some("DESTINATION_UNREACHABLE"), 1)
    );
    assert!(meta.claim_replications("node-a", now + 59_000, 10).await.unwrap().is_empty(), "not due yet");
    let again = meta.claim_replications("node-b", now + 60_000, 10).await.unwrap();
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].attempts, 2);
    let done = ReplicationOutcome::Complete { dropped_tags: tags(&["latest"]) };
    assert!(meta.finish_replication(&again[0], "node-b", &done).await.unwrap());
    let s = &meta.image_replications("repo/app", m.digest.as_str()).await.unwrap()[0];
    assert_eq!((s.status, s.failure_code.as_deref()), (ReplicationStatus::Complete, None));
    assert_eq!(s.dropped_tags, tags(&["latest"]));
    assert!(s.completed_at.is_some());
    assert!(!meta.finish_replication(&again[0], "node-b", &done).await.unwrap(), "finished once");
    // A failure for good.
    let m2 = push(meta.as_ref(), "img-2", &["v2"], std::slice::from_ref(&eu)).await;
    let jobs = meta.claim_replications("node-a", now_ms(), 10).await.unwrap();
    let failed = ReplicationOutcome::Failed { failure_code: "REPLICATION_NOT_AUTHORIZED".into() };
    assert!(meta.finish_replication(&jobs[0], "node-a", &failed).await.unwrap());
    let s = &meta.image_replications("repo/app", m2.digest.as_str()).await.unwrap()[0];
    assert_eq!((s.status, s.failure_code.as_deref()), (ReplicationStatus::Failed, Some("REPLICATION_NOT_AUTHORIZED")));
    assert!(meta.claim_replications("node-a", now_ms() + 3_600_000, 10).await.unwrap().is_empty(), "never again");
    assert_eq!(totals(meta.as_ref()).await, ReplicationQueueCounts { complete: 1, failed: 1, ..Default::default() });
}

pub async fn a_push_again_queues_the_image_again_with_its_tags(meta: Store) {
    repository(meta.as_ref(), "repo/app").await;
    let eu = target("eu-west-1", "111111111111");
    // Two pushes before the job runs: one job, the tags of both.
    push(meta.as_ref(), "img-1", &["v1"], std::slice::from_ref(&eu)).await;
    let m = push(meta.as_ref(), "img-1", &["stable"], std::slice::from_ref(&eu)).await;
    let jobs = meta.claim_replications("node-a", now_ms(), 10).await.unwrap();
    assert_eq!(jobs.len(), 1);
    assert_eq!(jobs[0].tags, tags(&["v1", "stable"]));
    // Pushed again while it runs: the running job's outcome is refused, the job is queued
    // again (a new generation), with the tags it had and the new one.
    push(meta.as_ref(), "img-1", &["v2"], std::slice::from_ref(&eu)).await;
    let done = ReplicationOutcome::Complete { dropped_tags: vec![] };
    assert!(!meta.finish_replication(&jobs[0], "node-a", &done).await.unwrap(), "a stale run");
    let next = meta.claim_replications("node-b", now_ms(), 10).await.unwrap();
    assert_eq!(
        (next[0].tags.clone(), next[0].generation, next[0].attempts),
        (tags(&["v1", "stable", "v2"]), jobs[0].generation + 1, 1)
    );
    assert!(meta.finish_replication(&next[0], "node-b", &done).await.unwrap());
    // Pushed again once complete: the new push's tags only.
    push(meta.as_ref(), "img-1", &["v3"], std::slice::from_ref(&eu)).await;
    let s = &meta.image_replications("repo/app", m.digest.as_str()).await.unwrap()[0];
    assert_eq!((s.status, s.completed_at), (ReplicationStatus::InProgress, None));
    assert_eq!(meta.claim_replications("node-a", now_ms(), 10).await.unwrap()[0].tags, tags(&["v3"]));
}

pub async fn released_claims_run_again(meta: Store) {
    repository(meta.as_ref(), "repo/app").await;
    let eu = target("eu-west-1", "111111111111");
    push(meta.as_ref(), "img-1", &["v1"], std::slice::from_ref(&eu)).await;
    push(meta.as_ref(), "img-2", &["v2"], std::slice::from_ref(&eu)).await;
    let t0 = now_ms();
    let mine = meta.claim_replications("node-a", t0, 1).await.unwrap();
    let theirs = meta.claim_replications("node-b", t0 + 10, 1).await.unwrap();
    // A restarted node puts its own jobs back; a run it had going cannot record its outcome.
    assert_eq!(meta.release_replications(Some("node-a"), t0 + 20).await.unwrap(), 1);
    let done = ReplicationOutcome::Complete { dropped_tags: vec![] };
    assert!(!meta.finish_replication(&mine[0], "node-a", &done).await.unwrap());
    let resumed = meta.claim_replications("node-c", t0 + 20, 10).await.unwrap();
    assert_eq!(resumed.iter().map(|j| j.digest.clone()).collect::<Vec<_>>(), [mine[0].digest.clone()]);
    // A dead node's claims, older than the cut-off, are taken over; newer ones are left, and
    // so are those whose node renews them (it is alive).
    assert_eq!(meta.release_replications(None, t0 + 5).await.unwrap(), 0, "claimed after the cut-off");
    assert_eq!(meta.renew_replication_claims("node-b", &theirs, t0 + 16).await.unwrap(), 1);
    assert_eq!(meta.release_replications(None, t0 + 15).await.unwrap(), 0, "renewed after the cut-off");
    assert_eq!(meta.renew_replication_claims("node-x", &theirs, t0 + 40).await.unwrap(), 0);
    assert_eq!(meta.release_replications(None, t0 + 17).await.unwrap(), 1);
    assert!(!meta.finish_replication(&theirs[0], "node-b", &done).await.unwrap());
    assert_eq!(meta.claim_replications("node-c", t0 + 30, 10).await.unwrap()[0].digest, theirs[0].digest);
}

pub async fn concurrent_workers_never_claim_a_job_twice(meta: Store) {
    repository(meta.as_ref(), "repo/app").await;
    let targets = [target("eu-west-1", "111111111111"), target("us-east-1", "222222222222")];
    let mut queued = Vec::new();
    for i in 0..20 {
        let m = push(meta.as_ref(), &format!("img-{i}"), &[], &targets).await;
        for t in &targets {
            queued.push(format!("{} {}", m.digest, t.registry_id));
        }
    }
    let claimed = race(&meta, |meta, i| async move {
        let mut mine = Vec::new();
        loop {
            let jobs = meta.claim_replications(&format!("worker-{i}"), now_ms(), 3).await.unwrap();
            if jobs.is_empty() {
                break mine;
            }
            mine.extend(jobs.into_iter().map(|j| format!("{} {}", j.digest, j.target.registry_id)));
        }
    })
    .await;
    let mut all: Vec<String> = claimed.into_iter().flatten().collect();
    all.sort();
    queued.sort();
    assert_eq!(all, queued, "each job claimed once, none lost");
}

pub async fn an_ended_replication_is_recorded_as_an_event(meta: Store) {
    repository(meta.as_ref(), "repo/app").await;
    repository(meta.as_ref(), "repo/other").await;
    let (eu, b) = (target("eu-west-1", "111111111111"), target("us-east-1", "222222222222"));
    let m = push(meta.as_ref(), "img-1", &["v1"], &[eu.clone(), b.clone()]).await;
    let now = now_ms();
    let jobs = meta.claim_replications("node-a", now, 10).await.unwrap();
    let (to_eu, to_b) = if jobs[0].target == eu { (&jobs[0], &jobs[1]) } else { (&jobs[1], &jobs[0]) };
    // A retry is no event; a completion and a failure are, in the order they ended.
    let retry = ReplicationOutcome::Retry { failure_code: "DESTINATION_UNREACHABLE".into(), due_at: now };
    assert!(meta.finish_replication(to_eu, "node-a", &retry).await.unwrap());
    assert!(meta.replication_events(None, 0, 10).await.unwrap().is_empty());
    let done = ReplicationOutcome::Complete { dropped_tags: tags(&["v1"]) };
    assert!(meta.finish_replication(to_b, "node-a", &done).await.unwrap());
    let again = meta.claim_replications("node-a", now_ms(), 10).await.unwrap();
    let failed = ReplicationOutcome::Failed { failure_code: "REPLICATION_NOT_AUTHORIZED".into() };
    assert!(meta.finish_replication(&again[0], "node-a", &failed).await.unwrap());
    let events = meta.replication_events(None, 0, 10).await.unwrap();
    assert_eq!(
        events
            .iter()
            .map(|e| (&e.target, e.status, e.failure_code.as_deref(), &e.tags, &e.dropped_tags))
            .collect::<Vec<_>>(),
        [
            (&b, ReplicationStatus::Complete, None, &tags(&["v1"]), &tags(&["v1"])),
            (&eu, ReplicationStatus::Failed, Some("REPLICATION_NOT_AUTHORIZED"), &tags(&["v1"]), &tags(&[])),
        ]
    );
    assert!(events.iter().all(|e| e.repository == "repo/app" && e.digest == m.digest.as_str() && e.at > 0));
    assert!(events[0].id < events[1].id);
    // Paged by id, and per repository.
    assert_eq!(meta.replication_events(None, events[0].id, 10).await.unwrap(), events[1..]);
    assert_eq!(meta.replication_events(None, 0, 1).await.unwrap(), events[..1]);
    assert_eq!(meta.replication_events(Some("repo/app"), 0, 10).await.unwrap(), events);
    assert!(meta.replication_events(Some("repo/other"), 0, 10).await.unwrap().is_empty());
    // An outcome that is not recorded (another worker's) is no event either.
    assert!(!meta.finish_replication(&again[0], "node-b", &done).await.unwrap());
    assert_eq!(meta.replication_events(None, 0, 10).await.unwrap().len(), 2);
}

pub async fn peers_are_kept_per_region_and_found_by_their_key(meta: Store) {
    let peer = |region: &str, key: &str| ReplicationPeer {
        region: region.into(),
        endpoint: Some(format!("https://{region}.example")),
        ca_pem: None,
        access_key_id: key.into(),
        sealed_secret: format!("sealed-{key}"),
        accounts: tags(&["111111111111", "222222222222"]),
        created_at: 1_000,
    };
    assert!(meta.replication_peers().await.unwrap().is_empty());
    let eu = peer("eu-west-1", "AKIAPEEREU");
    let ap = ReplicationPeer { endpoint: None, ca_pem: Some("PEM".into()), ..peer("ap-northeast-1", "AKIAPEERAP") };
    meta.put_replication_peer(&eu).await.unwrap();
    meta.put_replication_peer(&ap).await.unwrap();
    assert_eq!(meta.replication_peers().await.unwrap(), [ap.clone(), eu.clone()]);
    assert_eq!(meta.replication_peer("eu-west-1").await.unwrap(), Some(eu.clone()));
    assert_eq!(meta.replication_peer_by_key("AKIAPEERAP").await.unwrap(), Some(ap.clone()));
    assert_eq!(meta.replication_peer_by_key("AKIAOTHER").await.unwrap(), None);
    // Replaced as a whole by region; one key belongs to one peer.
    let renewed = ReplicationPeer { accounts: tags(&["111111111111"]), ..peer("eu-west-1", "AKIAPEEREU2") };
    meta.put_replication_peer(&renewed).await.unwrap();
    assert_eq!(meta.replication_peer("eu-west-1").await.unwrap(), Some(renewed));
    assert_eq!(meta.replication_peer_by_key("AKIAPEEREU").await.unwrap(), None);
    assert!(matches!(meta.put_replication_peer(&peer("us-west-2", "AKIAPEERAP")).await, Err(MetaError::AlreadyExists)));
    // Its secret is among those a master key rotation re-seals.
    let sealed = meta.stored_secrets(SealedKind::ReplicationPeerSecret, "", 10).await.unwrap();
    assert_eq!(sealed.iter().map(|s| s.id.as_str()).collect::<Vec<_>>(), ["AKIAPEERAP", "AKIAPEEREU2"]);
    assert!(
        meta.replace_stored_secret(SealedKind::ReplicationPeerSecret, "AKIAPEERAP", b"sealed-AKIAPEERAP", b"again")
            .await
            .unwrap()
    );
    assert_eq!(meta.replication_peer("ap-northeast-1").await.unwrap().unwrap().sealed_secret, "again");
    assert!(meta.delete_replication_peer("ap-northeast-1").await.unwrap());
    assert!(!meta.delete_replication_peer("ap-northeast-1").await.unwrap());
    assert_eq!(meta.replication_peers().await.unwrap().len(), 1);
}

pub async fn an_image_already_stored_is_queued_by_a_backfill(meta: Store) {
    repository(meta.as_ref(), "repo/app").await;
    let eu = target("eu-west-1", "111111111111");
    let m = push(meta.as_ref(), "img-1", &["v1"], &[]).await;
    assert!(meta.image_replications("repo/app", m.digest.as_str()).await.unwrap().is_empty());
    meta.queue_replications("repo/app", m.digest.as_str(), &tags(&["v1"]), std::slice::from_ref(&eu)).await.unwrap();
    let statuses = meta.image_replications("repo/app", m.digest.as_str()).await.unwrap();
    assert_eq!(
        statuses.iter().map(|s| (&s.target, s.status)).collect::<Vec<_>>(),
        [(&eu, ReplicationStatus::InProgress)]
    );
    let jobs = meta.claim_replications("node-a", now_ms(), 10).await.unwrap();
    assert_eq!((jobs.len(), jobs[0].tags.clone()), (1, tags(&["v1"])));
    // Only an image the repository holds.
    let absent = digest("absent");
    assert!(matches!(
        meta.queue_replications("repo/app", absent.as_str(), &[], std::slice::from_ref(&eu)).await,
        Err(MetaError::NotFound)
    ));
}

pub async fn removals_are_queued_as_the_latest_change_decides(meta: Store) {
    repository(meta.as_ref(), "repo/app").await;
    let eu = target("eu-west-1", "111111111111");
    let eu_only = std::slice::from_ref(&eu);
    let m = push(meta.as_ref(), "img-1", &["v1", "v2"], eu_only).await;
    let d = m.digest.to_string();
    // Queued ahead of the removal, due at a horizon; due at once when the source has removed.
    let later = now_ms() + 60_000;
    let remove = |tag: Option<&'static str>| {
        let (meta, d, eu) = (meta.clone(), d.clone(), eu.clone());
        async move { meta.queue_replication_removal("repo/app", &d, tag, &[eu], later).await.unwrap() }
    };
    let run = |want: ReplicationAction, want_tags: &'static [&'static str]| {
        let (meta, d) = (meta.clone(), d.clone());
        async move {
            meta.hasten_replications("repo/app", &d, now_ms()).await.unwrap();
            let jobs = meta.claim_replications("node-a", now_ms(), 10).await.unwrap();
            assert_eq!(jobs.iter().map(|j| (j.action, j.tags.clone())).collect::<Vec<_>>(), [(want, tags(want_tags))]);
            let done = ReplicationOutcome::Complete { dropped_tags: vec![] };
            assert!(meta.finish_replication(&jobs[0], "node-a", &done).await.unwrap());
        }
    };
    // A tag removed while the image is still to be sent: it is sent without it.
    remove(Some("v1")).await;
    run(ReplicationAction::Replicate, &["v2"]).await;
    // Once it arrived, removals are jobs of their own, not due before the horizon unless
    // hastened; two waiting together merge.
    remove(Some("v2")).await;
    remove(Some("v3")).await;
    assert!(meta.claim_replications("node-a", now_ms(), 10).await.unwrap().is_empty(), "not due yet");
    run(ReplicationAction::Untag, &["v2", "v3"]).await;
    // A delete replaces what waits; a tag removal after it changes nothing.
    remove(Some("v4")).await;
    remove(None).await;
    remove(Some("v5")).await;
    run(ReplicationAction::Delete, &[]).await;
    // A push after the delete sends the image again.
    push(meta.as_ref(), "img-1", &["v6"], eu_only).await;
    run(ReplicationAction::Replicate, &["v6"]).await;
    let events = meta.replication_events(None, 0, 10).await.unwrap();
    assert_eq!(
        events.iter().map(|e| e.action).collect::<Vec<_>>(),
        [
            ReplicationAction::Replicate,
            ReplicationAction::Untag,
            ReplicationAction::Delete,
            ReplicationAction::Replicate
        ]
    );
    // Nothing for a destination list that is empty; a retry waiting its backoff is not hastened.
    meta.queue_replication_removal("repo/app", &d, None, &[], later).await.unwrap();
    assert!(meta.claim_replications("node-a", now_ms(), 10).await.unwrap().is_empty());
    remove(None).await;
    meta.hasten_replications("repo/app", &d, now_ms()).await.unwrap();
    let jobs = meta.claim_replications("node-a", now_ms(), 10).await.unwrap();
    let retry = ReplicationOutcome::Retry { failure_code: "DESTINATION_UNREACHABLE".into(), due_at: now_ms() + 60_000 };
    assert!(meta.finish_replication(&jobs[0], "node-a", &retry).await.unwrap());
    assert_eq!(meta.hasten_replications("repo/app", &d, now_ms()).await.unwrap(), 0);

    // A removal queued while a run sends the image keeps that run's claim (never side by side
    // with it); the run's end, not recorded, releases it, and the removal runs next.
    push(meta.as_ref(), "img-1", &["v7"], eu_only).await;
    let sending = meta.claim_replications("node-a", now_ms(), 10).await.unwrap();
    assert_eq!(sending[0].action, ReplicationAction::Replicate);
    remove(None).await;
    meta.hasten_replications("repo/app", &d, now_ms()).await.unwrap();
    assert!(meta.claim_replications("node-b", now_ms(), 10).await.unwrap().is_empty(), "still claimed");
    let done = ReplicationOutcome::Complete { dropped_tags: vec![] };
    assert!(!meta.finish_replication(&sending[0], "node-a", &done).await.unwrap());
    let next = meta.claim_replications("node-b", now_ms(), 10).await.unwrap();
    assert_eq!(next.iter().map(|j| j.action).collect::<Vec<_>>(), [ReplicationAction::Delete]);
    assert_eq!(meta.image_replications("repo/app", &d).await.unwrap()[0].action, ReplicationAction::Delete);
}
