use super::*;

fn record(id: &str, modified: &str, keys: &[(&str, &str)]) -> VulnRecord {
    VulnRecord {
        id: id.into(),
        modified: modified.into(),
        json: format!("{{\"id\":\"{id}\",\"modified\":\"{modified}\"}}"),
        keys: keys.iter().map(|(e, n)| (e.to_string(), n.to_string())).collect(),
    }
}

fn keys(k: &[(&str, &str)]) -> Vec<(String, String)> {
    k.iter().map(|(e, n)| (e.to_string(), n.to_string())).collect()
}

fn complete(version: i64) -> ScanOutcome {
    ScanOutcome {
        status: ScanStatus::Complete,
        description: Some("The scan was completed successfully.".into()),
        findings: Some("[]".into()),
        counts: Some("{}".into()),
        vulndb_version: Some(version),
        vulndb_updated_at: Some(5),
    }
}

/// A repository with one image to scan; its digest.
async fn image(meta: &dyn MetaStore) -> String {
    repository(meta, "scan/app").await;
    let m = manifest("scan-1", &[], &[], None);
    meta.put_manifest("scan/app", &m, &["v1".into()], &[]).await.unwrap();
    m.digest.to_string()
}

pub async fn imports_and_looks_up_vulnerability_records(meta: Store) {
    assert_eq!(meta.vulndb_state().await.unwrap(), VulnDbState::default());
    let batch = [
        record("A-1", "2024-01-01", &[("Alpine", "openssl"), ("Alpine", "libssl")]),
        record("A-2", "2024-01-01", &[("Alpine", "openssl")]),
        record("P-1", "2024-01-01", &[("PyPI", "requests")]),
    ];
    assert_eq!(meta.vulndb_put(&batch).await.unwrap(), 3);
    assert_eq!(meta.vulndb_put(&batch).await.unwrap(), 0, "unchanged records are left alone");
    let state = meta.vulndb_finish_import(3).await.unwrap();
    assert_eq!((state.version, state.records), (1, 3));
    assert_eq!(meta.vulndb_finish_import(0).await.unwrap().version, 1, "an import that changed nothing");
    let mut ids: Vec<String> = meta
        .vulndb_lookup(&keys(&[("Alpine", "openssl"), ("Alpine", "libssl"), ("PyPI", "nothing")]))
        .await
        .unwrap()
        .into_iter()
        .map(|(id, _)| id)
        .collect();
    ids.sort();
    assert_eq!(ids, ["A-1", "A-2"], "each record once");
    // A re-import that changes a record's packages re-files it.
    assert_eq!(meta.vulndb_put(&[record("A-1", "2024-02-01", &[("Alpine", "zlib")])]).await.unwrap(), 1);
    assert_eq!(meta.vulndb_finish_import(1).await.unwrap().version, 2);
    let found = meta.vulndb_lookup(&keys(&[("Alpine", "libssl")])).await.unwrap();
    assert!(found.is_empty(), "{found:?}");
    let found = meta.vulndb_lookup(&keys(&[("Alpine", "zlib")])).await.unwrap();
    assert_eq!(found, [("A-1".to_string(), "{\"id\":\"A-1\",\"modified\":\"2024-02-01\"}".to_string())]);
}

pub async fn queues_claims_and_finishes_scans(meta: Store) {
    let d = image(meta.as_ref()).await;
    assert!(meta.image_scan("scan/app", &d).await.unwrap().is_none());
    assert!(meta.request_scan("scan/app", &d, ScanType::Basic, true).await.unwrap());
    assert!(!meta.request_scan("scan/app", &d, ScanType::Basic, true).await.unwrap(), "only if new");
    assert_eq!(meta.image_scan("scan/app", &d).await.unwrap().unwrap().status, ScanStatus::Pending);
    let jobs = meta.claim_scans("node-a", 10).await.unwrap();
    assert_eq!(
        jobs,
        [ScanJob { repository: "scan/app".into(), digest: d.clone(), scan_type: ScanType::Basic, generation: 1 }]
    );
    assert!(meta.claim_scans("node-b", 10).await.unwrap().is_empty(), "a claimed scan is not claimed twice");
    // The node dies; on restart it puts its scans back.
    assert_eq!(meta.release_scans(Some("node-b"), 0).await.unwrap(), 0);
    assert_eq!(meta.release_scans(Some("node-a"), 0).await.unwrap(), 1);
    let job = meta.claim_scans("node-a", 10).await.unwrap().pop().unwrap();
    assert!(meta.finish_scan(&job, &complete(2)).await.unwrap());
    let scan = meta.image_scan("scan/app", &d).await.unwrap().unwrap();
    assert_eq!(
        (scan.status.as_str(), scan.findings.as_deref(), scan.vulndb_version),
        ("COMPLETE", Some("[]"), Some(2))
    );
    assert!(scan.completed_at.is_some());
    let summaries = meta.image_scan_summaries("scan/app", &[d.clone(), "sha256:none".into()]).await.unwrap();
    assert_eq!(summaries.len(), 1);
    assert_eq!(summaries[0].findings, None);
}

pub async fn a_newer_request_wins_over_a_running_scan(meta: Store) {
    let d = image(meta.as_ref()).await;
    meta.request_scan("scan/app", &d, ScanType::Basic, false).await.unwrap();
    let job = meta.claim_scans("node-a", 10).await.unwrap().pop().unwrap();
    // A new request while it runs: the running scan's result is dropped, the scan stays queued.
    assert!(meta.request_scan("scan/app", &d, ScanType::Enhanced, false).await.unwrap());
    assert!(!meta.finish_scan(&job, &complete(2)).await.unwrap());
    assert_eq!(meta.image_scan("scan/app", &d).await.unwrap().unwrap().status, ScanStatus::Pending);
    let job = meta.claim_scans("node-a", 10).await.unwrap().pop().unwrap();
    assert_eq!((job.generation, job.scan_type.as_str()), (2, "ENHANCED"));
    assert!(meta.finish_scan(&job, &complete(2)).await.unwrap());
}

pub async fn a_failure_keeps_the_last_complete_findings(meta: Store) {
    let d = image(meta.as_ref()).await;
    meta.request_scan("scan/app", &d, ScanType::Basic, false).await.unwrap();
    let job = meta.claim_scans("node-a", 10).await.unwrap().pop().unwrap();
    assert!(meta.finish_scan(&job, &complete(2)).await.unwrap());
    assert!(meta.request_scan("scan/app", &d, ScanType::Enhanced, false).await.unwrap());
    let again = meta.claim_scans("node-a", 10).await.unwrap().pop().unwrap();
    let failure = ScanOutcome {
        status: ScanStatus::Failed,
        description: Some("broken layer".into()),
        findings: None,
        counts: None,
        vulndb_version: None,
        vulndb_updated_at: None,
    };
    assert!(meta.finish_scan(&again, &failure).await.unwrap());
    let scan = meta.image_scan("scan/app", &d).await.unwrap().unwrap();
    assert_eq!((scan.status.as_str(), scan.counts.as_deref(), scan.vulndb_version), ("FAILED", Some("{}"), Some(2)));
}

pub async fn a_released_claim_is_a_new_request(meta: Store) {
    let d = image(meta.as_ref()).await;
    meta.request_scan("scan/app", &d, ScanType::Enhanced, false).await.unwrap();
    let running = meta.claim_scans("node-a", 10).await.unwrap().pop().unwrap();
    assert_eq!(meta.release_scans(None, i64::MAX).await.unwrap(), 1);
    assert!(!meta.finish_scan(&running, &complete(2)).await.unwrap(), "the released run's result is dropped");
    let rerun = meta.claim_scans("node-b", 10).await.unwrap().pop().unwrap();
    assert!(meta.finish_scan(&rerun, &complete(2)).await.unwrap());
}

pub async fn rescans_what_an_older_database_found(meta: Store) {
    let d = image(meta.as_ref()).await;
    meta.request_scan("scan/app", &d, ScanType::Basic, false).await.unwrap();
    let job = meta.claim_scans("node-a", 10).await.unwrap().pop().unwrap();
    meta.finish_scan(&job, &complete(2)).await.unwrap();
    assert_eq!(meta.request_rescans("scan/app", 2).await.unwrap(), 0);
    assert_eq!(meta.request_rescans("scan/app", 3).await.unwrap(), 1);
    assert_eq!(meta.image_scan("scan/app", &d).await.unwrap().unwrap().status, ScanStatus::Pending);
}

pub async fn an_image_deleted_takes_its_scan(meta: Store) {
    let d = image(meta.as_ref()).await;
    meta.request_scan("scan/app", &d, ScanType::Basic, false).await.unwrap();
    meta.delete_manifest("scan/app", &digest("scan-1")).await.unwrap();
    assert!(meta.image_scan("scan/app", &d).await.unwrap().is_none());
}

/// Workers claiming from one queue at once: every scan is claimed exactly once.
pub async fn concurrent_workers_never_claim_a_scan_twice(meta: Store) {
    repository(meta.as_ref(), "scan/app").await;
    let mut queued = Vec::new();
    for i in 0..40 {
        let m = manifest(&format!("scan-{i}"), &[], &[], None);
        meta.put_manifest("scan/app", &m, &[], &[]).await.unwrap();
        meta.request_scan("scan/app", m.digest.as_str(), ScanType::Basic, false).await.unwrap();
        queued.push(m.digest.to_string());
    }
    let claimed = race(&meta, |meta, i| async move {
        let mut mine = Vec::new();
        loop {
            let jobs = meta.claim_scans(&format!("worker-{i}"), 3).await.unwrap();
            if jobs.is_empty() {
                break mine;
            }
            mine.extend(jobs.into_iter().map(|j| j.digest));
        }
    })
    .await;
    let mut all: Vec<String> = claimed.into_iter().flatten().collect();
    all.sort();
    queued.sort();
    assert_eq!(all, queued, "each scan claimed once, none lost");
}

/// Results recorded while new requests arrive: a result is recorded only for the
/// generation it was claimed at, so a stale one never overwrites a newer request.
pub async fn concurrent_stale_results_are_refused(meta: Store) {
    let d = image(meta.as_ref()).await;
    for round in 0..ROUNDS {
        meta.request_scan("scan/app", &d, ScanType::Basic, false).await.unwrap();
        let job = meta.claim_scans("node-a", 10).await.unwrap().pop().unwrap();
        let (meta_a, meta_b, d2) = (meta.clone(), meta.clone(), d.clone());
        let finish = tokio::spawn(async move { meta_a.finish_scan(&job, &complete(2)).await.unwrap() });
        let request = tokio::spawn(async move { meta_b.request_scan("scan/app", &d2, ScanType::Basic, false).await });
        let (recorded, _) = (finish.await.unwrap(), request.await.unwrap().unwrap());
        // The newer request always survives: the scan is pending again whichever came first.
        let scan = meta.image_scan("scan/app", &d).await.unwrap().unwrap();
        assert_eq!(scan.status, ScanStatus::Pending, "round {round} (result recorded: {recorded})");
        // Drain the newer request so the next round starts from a finished scan.
        let job = meta.claim_scans("node-a", 10).await.unwrap().pop().unwrap();
        assert!(meta.finish_scan(&job, &complete(2)).await.unwrap());
    }
}
