//! Values written by a foreign client into the group's three buckets
//! (garbage bytes, JSON with an unknown `"v"`) are skipped: the group keeps
//! working, still handles a crash and a join, and even a garbage value over
//! the live leader key only costs one election.

// Test code: unwrap, expect and panic are how it asserts.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::*;
use std::time::{Duration, Instant};

const P: usize = 24;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn foreign_values_are_skipped_and_the_group_keeps_working() {
    let Some(server) = server() else { return };
    let url = server.client_url();
    let client = connect(std::slice::from_ref(&url)).await;
    let g = group("malformed");
    let cfg = config(&g);
    let observer = Observer::start(client.clone(), &cfg).await;
    let mut fleet = Fleet::new(client, cfg.clone(), partitions("m", 0..P));
    fleet.start(3).await;
    fleet.wait_converged(SETTLE, "three workers converge").await;
    let before = fleet.owners();

    // A foreign client writes junk into every bucket: member-like keys
    // (in the ID range, unclaimed), foreign keys, assignment-record-like keys
    // of a future term and of a live worker under a term nobody uses.
    let foreign = connect(&[url]).await;
    let members = raw_bucket(&foreign, &g, "members").await;
    let leader = raw_bucket(&foreign, &g, "leader").await;
    let assignments = raw_bucket(&foreign, &g, "assignments").await;
    let garbage: &'static [u8] = b"\x00\xff{not json";
    let unknown_v: &'static [u8] = br#"{"v":99,"instance":1,"status":"active"}"#;
    members.put("worker-50", garbage.into()).await.unwrap();
    members.put("worker-51", unknown_v.into()).await.unwrap();
    members.put("intruder", garbage.into()).await.unwrap();
    leader.put("not-the-leader", garbage.into()).await.unwrap();
    assignments.put("junk", garbage.into()).await.unwrap();
    for i in 0..3 {
        assignments
            .put(format!("w.999999.worker-{i}"), unknown_v.into())
            .await
            .unwrap();
        assignments
            .put(format!("w.999998.worker-{i}"), garbage.into())
            .await
            .unwrap();
    }
    wait_until_or(
        SETTLE,
        "the observer skipped the junk member values",
        || {
            let skipped = observer.skipped();
            ["worker-50", "worker-51"]
                .iter()
                .all(|k| skipped.iter().any(|(_, key)| key == k))
        },
        || format!("skipped so far: {:?}", observer.skipped()),
    )
    .await;
    println!(
        "malformed: the observer's codec skipped {:?}",
        observer.skipped()
    );

    // Nothing happened to the group.
    fleet
        .wait_converged(SETTLE, "the group is undisturbed")
        .await;
    assert_eq!(moved(&before, &fleet.owners()), 0);
    for i in fleet.live() {
        let state = fleet.manager(i).state();
        assert_eq!(state, parti::State::Stable);
    }

    // A crash is still handled.
    let victim = fleet.follower();
    let crashed = fleet.crash(victim);
    fleet
        .wait_converged(
            SETTLE,
            "the survivors re-own the crashed worker's partitions",
        )
        .await;
    let reowned = crashed.elapsed();
    let bound = cfg.heartbeat_ttl + cfg.effective_emergency_grace() + Duration::from_secs(1);
    println!(
        "malformed: crash handled, group stable {} ms after the drop (bound {} ms)",
        ms(reowned),
        ms(bound)
    );
    assert!(reowned <= bound, "took {reowned:?}");

    // A join is still handled; the junk member keys are not treated as taken
    // by live workers (the newcomer gets the crashed worker's ID once free, or
    // the next free one, never 50/51).
    let joined = fleet.start(1).await[0];
    fleet.wait_converged(SETTLE, "a newcomer joins").await;
    let id = fleet.id(joined);
    println!("malformed: the newcomer claimed {id}");
    assert!(!["worker-50", "worker-51"].contains(&id.as_str()));

    // Junk over the live leader key: the leader loses its key, nobody can
    // read it, it expires after the election TTL, and someone is elected.
    let leader_before = fleet.leader().expect("a leader");
    let t = Instant::now();
    leader.put("leader", unknown_v.into()).await.unwrap();
    wait_until_or(
        SETTLE,
        "the overwritten leader notices",
        || fleet.leader() != Some(leader_before),
        || fleet.describe(),
    )
    .await;
    let deposed = t.elapsed();
    fleet
        .wait_converged(SETTLE, "a leader is elected after the junk leader key")
        .await;
    let recovered = t.elapsed();
    println!(
        "malformed: junk over the leader key: old leader stepped down after {} ms, group stable with {} leading after {} ms (election TTL {} ms)",
        ms(deposed),
        fleet.id(fleet.leader().unwrap()),
        ms(recovered),
        ms(cfg.election_ttl)
    );
    assert!(
        recovered <= cfg.election_ttl * 2 + Duration::from_secs(1),
        "took {recovered:?} to elect a leader again"
    );

    println!("malformed: commits {}", observer.history());
    observer.assert_monotonic();
    for i in fleet.live() {
        fleet.stop(i).await;
    }
    fleet.rec.assert_exclusive();
}
