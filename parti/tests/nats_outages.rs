//! The whole group loses a real nats-server (killed, then restarted on the
//! same port with the same file store) for longer than the ID TTL. Under
//! `KeepProcessing` (the default) no partition is released or moved, every
//! worker keeps its ID, and the group is Stable again soon after the server
//! returns, without a cold-start wait.

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
    let Some(mut server) = server() else { return };
    let client = connect(&[server.client_url()]).await;
    let g = group("outage");
    let cfg = config(&g);
    let mut fleet = Fleet::new(client, cfg.clone(), partitions("o", 0..P));
    fleet.start(WORKERS).await;
    fleet.wait_converged(SETTLE, "three workers converge").await;
    let owners_before = fleet.owners();
    let ids_before: Vec<_> = (0..WORKERS).map(|i| fleet.id(i)).collect();
    let calls_before = fleet.rec.calls().len();

    // The outage: the server is down for longer than the ID TTL, so every
    // member key has expired when it comes back.
    let outage = cfg.worker_id_ttl + Duration::from_secs(1);
    let down_at = Instant::now();
    server.kill();
    wait_until(SETTLE, "every worker reports Degraded", || {
        (0..WORKERS).all(|i| fleet.manager(i).state() == State::Degraded)
    })
    .await;
    // The fault lasts its planned time (this is the scenario, not a wait for
    // a condition).
    tokio::time::sleep_until((down_at + outage).into()).await;
    server.restart().expect("the server restarts");
    let back_at = Instant::now();
    let stable = wait_until(SETTLE, "every worker is Stable again", || {
        (0..WORKERS).all(|i| fleet.manager(i).state() == State::Stable)
    })
    .await;
    fleet
        .wait_converged(SETTLE, "the group owns everything again")
        .await;
    println!(
        "outage {} ms; Stable again {} ms after the server returned",
        ms(outage),
        ms(stable)
    );

    let released: Vec<_> = fleet.rec.calls()[calls_before..]
        .iter()
        .filter(|c| c.removed > 0)
        .cloned()
        .collect();
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
    assert!(released.is_empty(), "partitions were released: {when:?}");
    assert_eq!(fleet.owners(), owners_before, "nothing moved");
    let ids_after: Vec<_> = (0..WORKERS).map(|i| fleet.id(i)).collect();
    assert_eq!(ids_after, ids_before, "every worker kept its ID");
    fleet.rec.assert_exclusive();
    assert!(
        back_at.elapsed() < SETTLE,
        "recovered within the settle bound"
    );
}
