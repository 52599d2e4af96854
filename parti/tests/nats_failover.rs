//! Crashes against a real nats-server: a worker's manager dropped (its
//! partitions are re-owned by the others within heartbeat TTL + emergency
//! grace + 1 s, with no overlap), and the leader's (a new leader within the
//! election TTL + 1 s, versions keep growing, only the dead leader's partitions
//! move).

// Test code: unwrap, expect and panic are how it asserts.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::*;
use parti::{Partition, WorkerId};
use parti_core::records::Lifecycle;
use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

const P: usize = 24;
const WORKERS: usize = 4;

/// Partitions per worker ID.
fn sets(owners: &BTreeMap<Partition, WorkerId>) -> BTreeMap<WorkerId, BTreeSet<Partition>> {
    let mut out: BTreeMap<WorkerId, BTreeSet<Partition>> = BTreeMap::new();
    for (p, w) in owners {
        out.entry(w.clone()).or_default().insert(p.clone());
    }
    out
}

/// When the last of `lost` was acquired again (after `since`) by another label.
fn reowned_at(fleet: &Fleet, lost: &BTreeSet<Partition>, since: Instant) -> Instant {
    let mut last = since;
    for p in lost {
        let first = fleet
            .rec
            .acquired_since(since)
            .into_iter()
            .filter(|iv| &iv.partition == p)
            .map(|iv| iv.acquired)
            .min()
            .unwrap_or_else(|| panic!("{} never re-acquired", p.name()));
        last = last.max(first);
    }
    last
}

/// 4. A worker crash (manager dropped): re-owned within heartbeat TTL +
/// emergency grace + 1 s of the drop, nothing else moves, no overlap.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn worker_crash_is_reowned_within_bound() {
    let Some(server) = server() else { return };
    let client = connect(&[server.client_url()]).await;
    let g = group("crash");
    let cfg = config(&g);
    let observer = Observer::start(client.clone(), &cfg).await;
    let mut fleet = Fleet::new(client, cfg.clone(), partitions("c", 0..P));
    fleet.start(WORKERS).await;
    fleet.wait_converged(SETTLE, "four workers converge").await;
    let before = fleet.owners();

    let victim = fleet.follower();
    let victim_id = fleet.id(victim);
    let lost = fleet.owned(victim);
    let crashed = fleet.crash(victim);
    let waited = fleet
        .wait_converged(SETTLE, "the survivors own everything")
        .await;
    let reowned = reowned_at(&fleet, &lost, crashed) - crashed;
    let bound = cfg.heartbeat_ttl + cfg.effective_emergency_grace() + Duration::from_secs(1);
    println!(
        "worker crash: {} partitions of {victim_id} re-owned {} ms after the drop (bound {} ms; group stable after {} ms)",
        lost.len(),
        ms(reowned),
        ms(bound),
        ms(waited)
    );
    assert!(reowned <= bound, "re-owned after {reowned:?} > {bound:?}");

    let after = fleet.owners();
    let moved = moved(&before, &after);
    println!(
        "worker crash: {moved} partitions moved (the victim held {})",
        lost.len()
    );
    assert_eq!(moved, lost.len(), "partitions of survivors moved too");
    let (b, a) = (sets(&before), sets(&after));
    for (w, set) in &b {
        if *w != victim_id {
            assert!(set.is_subset(&a[w]), "{w} lost partitions in the emergency");
        }
    }
    let emergencies = observer
        .metas()
        .iter()
        .filter(|(_, m)| m.lifecycle == Lifecycle::Emergency)
        .count();
    println!("worker crash: commits {}", observer.history());
    assert!(
        emergencies >= 1,
        "no emergency commit: {}",
        observer.history()
    );
    observer.assert_monotonic();
    for i in fleet.live() {
        fleet.stop(i).await;
    }
    fleet.rec.assert_exclusive();
}

/// 5. A leader crash: a new leader within election TTL + 1 s, versions and
/// terms keep growing, survivors keep their partitions, only the dead
/// leader's move.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leader_crash_fails_over() {
    let Some(server) = server() else { return };
    let client = connect(&[server.client_url()]).await;
    let g = group("leadercrash");
    let cfg = config(&g);
    let observer = Observer::start(client.clone(), &cfg).await;
    let mut fleet = Fleet::new(client, cfg.clone(), partitions("l", 0..P));
    fleet.start(WORKERS).await;
    fleet.wait_converged(SETTLE, "four workers converge").await;
    let before = fleet.owners();
    let leader = fleet.leader().expect("one leader");
    let leader_id = fleet.id(leader);
    let lost = fleet.owned(leader);
    // The observer's watch may lag the workers by a moment.
    wait_until(SETTLE, "the observer saw a commit", || {
        !observer.metas().is_empty()
    })
    .await;
    let last_meta = observer.metas().last().expect("a commit").1.clone();

    let crashed = fleet.crash(leader);
    let failover = wait_until_or(
        SETTLE,
        "a new leader is elected",
        || fleet.leader().is_some(),
        || fleet.describe(),
    )
    .await;
    let new_leader = fleet.leader().unwrap();
    let waited = fleet
        .wait_converged(SETTLE, "the survivors own everything")
        .await;
    let reowned = reowned_at(&fleet, &lost, crashed) - crashed;
    let election_bound = cfg.election_ttl + Duration::from_secs(1);
    let reown_bound = cfg.election_ttl
        + cfg.heartbeat_ttl
        + cfg.effective_emergency_grace()
        + Duration::from_secs(1);
    println!(
        "leader crash: {} leads {} ms after {leader_id} was dropped (bound {} ms); its {} partitions re-owned after {} ms (bound {} ms); stable after {} ms",
        fleet.id(new_leader),
        ms(failover),
        ms(election_bound),
        lost.len(),
        ms(reowned),
        ms(reown_bound),
        ms(failover + waited)
    );
    assert!(failover <= election_bound, "failover took {failover:?}");
    assert!(reowned <= reown_bound, "re-owned after {reowned:?}");

    let after = fleet.owners();
    let moved = moved(&before, &after);
    println!(
        "leader crash: {moved} partitions moved (the dead leader held {}); commits {}",
        lost.len(),
        observer.history()
    );
    assert_eq!(moved, lost.len(), "partitions of survivors moved too");
    let (b, a) = (sets(&before), sets(&after));
    for (w, set) in &b {
        if *w != leader_id {
            assert!(set.is_subset(&a[w]), "{w} lost partitions in the failover");
        }
    }
    // Versions continue upward under a higher term.
    observer.assert_monotonic();
    let newer: Vec<_> = observer
        .metas()
        .into_iter()
        .filter(|(t, _)| *t > crashed)
        .map(|(_, m)| m)
        .collect();
    assert!(!newer.is_empty(), "no commit after the failover");
    assert!(
        newer
            .iter()
            .all(|m| m.version > last_meta.version && m.term > last_meta.term)
    );
    let final_version = fleet
        .live()
        .iter()
        .map(|&i| fleet.manager(i).assignment().version)
        .max()
        .unwrap();
    assert!(final_version > last_meta.version);
    for i in fleet.live() {
        fleet.stop(i).await;
    }
    fleet.rec.assert_exclusive();
}
