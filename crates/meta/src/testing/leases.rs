use super::*;

pub async fn a_lease_has_one_holder_until_it_expires(meta: Store) {
    assert!(meta.try_lease("gc", "node-a", 1_000, 100).await.unwrap());
    assert!(!meta.try_lease("gc", "node-b", 1_050, 100).await.unwrap(), "held");
    assert!(meta.try_lease("gc", "node-a", 1_090, 100).await.unwrap(), "renewed by its holder");
    assert!(!meta.try_lease("gc", "node-b", 1_150, 100).await.unwrap(), "the renewal counts");
    assert!(meta.try_lease("gc", "node-b", 1_190, 100).await.unwrap(), "taken over once expired");
    assert!(!meta.try_lease("gc", "node-a", 1_200, 100).await.unwrap());
    assert!(meta.try_lease("lifecycle", "node-a", 1_200, 100).await.unwrap(), "leases are per name");
    meta.release_lease("gc", "node-a").await.unwrap();
    assert!(!meta.try_lease("gc", "node-c", 1_210, 100).await.unwrap(), "only the holder releases");
    meta.release_lease("gc", "node-b").await.unwrap();
    assert!(meta.try_lease("gc", "node-c", 1_210, 100).await.unwrap());
}

/// Nodes asking for a free lease at once: one gets it.
pub async fn concurrent_takers_of_a_lease_one_holds_it(meta: Store) {
    for round in 0..ROUNDS {
        let name = format!("lease-{round}");
        let got = race(&meta, |meta, i| {
            let name = name.clone();
            async move { meta.try_lease(&name, &format!("node-{i}"), 1_000, 60_000).await.unwrap() }
        })
        .await;
        assert_eq!(got.iter().filter(|g| **g).count(), 1, "round {round}: {got:?}");
    }
}

/// A change announced through the store reaches every watcher (two here, as two nodes), in
/// order; a store only one node opens has no watchers and announces nothing.
pub async fn announced_changes_reach_every_watcher(meta: Store) {
    let Some(mut first) = meta.watch_changes().await.unwrap() else {
        meta.announce_change("authz").await.unwrap();
        return;
    };
    let mut second = meta.watch_changes().await.unwrap().expect("a second watcher");
    meta.announce_change("authz").await.unwrap();
    meta.announce_change("settings").await.unwrap();
    for watcher in [&mut first, &mut second] {
        for topic in ["authz", "settings"] {
            let got = tokio::time::timeout(std::time::Duration::from_secs(10), watcher.recv()).await;
            assert_eq!(got.expect("announced within 10 s").as_deref(), Some(topic));
        }
    }
}
