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
