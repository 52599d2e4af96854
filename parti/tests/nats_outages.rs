//! The whole group loses a real nats-server: killed, then restarted on the
//! same port with the same file store for longer than the ID TTL (under
//! `KeepProcessing`, the default, no partition should be released or moved,
//! every worker keeps its ID, and the group is Stable again soon after the
//! server returns); or restarted with memory storage, so that every bucket
//! is lost (the workers rebuild them, and versions never go back).

// Test code: unwrap, expect and panic are how it asserts.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::*;
use parti::State;
use std::time::{Duration, Instant};

const P: usize = 24;
const WORKERS: usize = 3;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_outage_longer_than_the_id_ttl_releases_nothing() {
    let Some(server) = server() else { return };
    let cfg = config(&group("outage"));
    // Longer than the ID TTL: every member key has expired when it returns.
    let outage = cfg.worker_id_ttl + Duration::from_secs(1);
    let stable = ride_out_an_outage(server, cfg, outage).await;
    assert!(stable < SETTLE, "recovered within the settle bound");
}

/// The same scenario with the default (production) timings, for outages of
/// 8 s, 20 s, 45 s and 5 minutes (or the seconds listed, comma-separated, in
/// `PARTI_OUTAGES`). It takes minutes, so it runs by hand:
/// `cargo test -p parti --test nats_outages -- --ignored --nocapture`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "minutes long: run by hand to measure outages with default timings"]
async fn outages_with_default_timings() {
    let list = std::env::var("PARTI_OUTAGES").unwrap_or_else(|_| "8,20,45,300".to_string());
    for secs in list.split(',').filter_map(|s| s.trim().parse::<u64>().ok()) {
        let Some(server) = server() else { return };
        let mut cfg = parti::Config::default();
        cfg.group = group("outagedefault");
        ride_out_an_outage(server, cfg, Duration::from_secs(secs)).await;
    }
}

/// Three workers converge; the server is killed for `outage` and restarted
/// with the same file store. Asserts that no partition was released or
/// moved and every worker kept its ID; returns how long after the return
/// every worker was Stable again.
async fn ride_out_an_outage(
    mut server: parti_testkit::nats_server::NatsServer,
    cfg: parti::Config,
    outage: Duration,
) -> Duration {
    let client = connect(&[server.client_url()]).await;
    let settle = SETTLE + cfg.cold_start_window;
    let mut fleet = Fleet::new(client, cfg.clone(), partitions("o", 0..P));
    fleet.start(WORKERS).await;
    fleet.wait_converged(settle, "three workers converge").await;
    let owners_before = fleet.owners();
    let ids_before: Vec<_> = (0..WORKERS).map(|i| fleet.id(i)).collect();
    let calls_before = fleet.rec.calls().len();

    let down_at = Instant::now();
    server.kill();
    wait_until(settle, "every worker reports Degraded", || {
        (0..WORKERS).all(|i| fleet.manager(i).state() == State::Degraded)
    })
    .await;
    // The fault lasts its planned time (this is the scenario, not a wait for
    // a condition).
    tokio::time::sleep_until((down_at + outage).into()).await;
    server.restart().expect("the server restarts");
    let back_at = Instant::now();
    let stable = wait_until(settle, "every worker is Stable again", || {
        (0..WORKERS).all(|i| fleet.manager(i).state() == State::Stable)
    })
    .await;
    fleet
        .wait_converged(settle, "the group owns everything again")
        .await;
    let released: Vec<_> = fleet.rec.calls()[calls_before..]
        .iter()
        .filter(|c| c.removed > 0)
        .cloned()
        .collect();
    println!(
        "outage {} ms (heartbeat TTL {} ms, ID TTL {} ms): {} partitions released, {} moved; Stable again {} ms after the server returned",
        ms(outage),
        ms(cfg.heartbeat_ttl),
        ms(cfg.worker_id_ttl),
        released.iter().map(|c| c.removed).sum::<usize>(),
        moved(&owners_before, &fleet.owners()),
        ms(stable)
    );
    let when: Vec<String> = released
        .iter()
        .map(|c| {
            format!(
                "{} -{} at {} ms after the kill ({} ms after the return)",
                c.label,
                c.removed,
                ms(c.at.saturating_duration_since(down_at)),
                ms(c.at.saturating_duration_since(back_at))
            )
        })
        .collect();
    assert!(
        released.is_empty(),
        "partitions were released: {when:?}; hook calls since the outage: {:?}",
        &fleet.rec.calls()[calls_before..]
    );
    assert_eq!(fleet.owners(), owners_before, "nothing moved");
    let ids_after: Vec<_> = (0..WORKERS).map(|i| fleet.id(i)).collect();
    assert_eq!(ids_after, ids_before, "every worker kept its ID");
    fleet.rec.assert_exclusive();
    for i in fleet.live() {
        fleet.stop(i).await;
    }
    stable
}

/// Memory storage: a server restart loses every bucket. The workers recreate
/// them and the group recovers; no worker ever receives a lower assignment
/// version or a lower epoch for a partition than one it saw before.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lost_buckets_are_rebuilt_and_versions_never_go_back() {
    let Some(mut server) = server() else { return };
    let client = connect(&[server.client_url()]).await;
    let g = group("lostbuckets");
    let mut cfg = config(&g);
    cfg.buckets.storage = parti::Storage::Memory;
    let mut fleet = Fleet::new(client, cfg.clone(), partitions("l", 0..P));
    fleet.start(WORKERS).await;
    fleet.wait_converged(SETTLE, "three workers converge").await;
    // A join and a leave: the versions grow past what a new bucket starts at.
    let extra = fleet.start(1).await[0];
    fleet.wait_converged(SETTLE, "four workers converge").await;
    fleet.leave(extra).await;
    fleet.wait_converged(SETTLE, "three workers again").await;
    let version_before = (0..WORKERS)
        .map(|i| fleet.manager(i).assignment().version)
        .max()
        .unwrap_or(0);
    server.restart().expect("the server restarts, empty");
    // Recovered: every worker Stable again on a version committed in the new
    // buckets (above every version seen before), and everything owned once.
    let recovered = wait_until(SETTLE, "the group works on the new buckets", || {
        (0..WORKERS).all(|i| {
            let m = fleet.manager(i);
            m.state() == State::Stable && m.assignment().version > version_before
        })
    })
    .await;
    fleet
        .wait_converged(SETTLE, "the group owns everything again")
        .await;
    println!(
        "versions continue above {version_before}; recovered {} ms after the server came back empty",
        ms(recovered)
    );
    fleet.rec.assert_exclusive();
    // Versions each worker applied (0 marks a local drop) only grow.
    let mut last: std::collections::BTreeMap<String, u64> = Default::default();
    for call in fleet.rec.calls().iter().filter(|c| c.version > 0) {
        let seen = last.entry(call.label.clone()).or_default();
        assert!(
            call.version >= *seen,
            "{} applied version {} after {}",
            call.label,
            call.version,
            seen
        );
        *seen = call.version;
    }
}
