//! Assignments far larger than one NATS message, on a real nats-server with
//! its default 1 MiB `max_payload`: one worker owning 150 000 partitions (its
//! record is written in several pieces), a second one joining and taking half
//! with no overlap; and a value that cannot be cut at all (one partition name
//! larger than the limit) reported through `on_error`, naming its size and
//! the limit, instead of being retried silently.

// Test code: unwrap, expect and panic are how it asserts.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use async_trait::async_trait;
use common::*;
use futures_util::StreamExt;
use parti::{Error, Hooks, Manager, Partition, StaticSource};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Above the old ceiling: the plain record of this many partitions was
/// about 7 MB; compact, it still needs two values.
const P: usize = 150_000;

/// Converging with this many partitions takes longer than with a few dozen
/// (every partition goes through the hooks and the recorder).
const LARGE_SETTLE: Duration = Duration::from_secs(60);

/// The test timings, slowed down so that handing 150 000 partitions to the
/// hooks and the recorder (in a debug-ish test build) fits in a heartbeat.
fn large_config(group: &str) -> parti::Config {
    let mut cfg = config(group);
    cfg.heartbeat_interval = Duration::from_secs(1);
    cfg.heartbeat_ttl = Duration::from_secs(5);
    cfg.lease_safety_margin = Duration::from_millis(500);
    cfg.hook_budget = Some(Duration::from_secs(3));
    cfg.worker_id_ttl = Duration::from_secs(10);
    cfg.election_ttl = Duration::from_secs(3);
    cfg.emergency_grace = Some(Duration::from_millis(1500));
    cfg.operation_timeout = Duration::from_secs(5);
    cfg.startup_timeout = Duration::from_secs(30);
    cfg
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_worker_owns_150k_partitions_and_a_second_takes_half() {
    let Some(server) = server() else { return };
    let client = connect(&[server.client_url()]).await;
    let g = group("large");
    let cfg = large_config(&g);
    let mut fleet = Fleet::new(client.clone(), cfg, partitions("big", 0..P));

    let t = Instant::now();
    fleet.start(1).await;
    let waited = fleet
        .wait_converged(LARGE_SETTLE, "one worker owns every partition")
        .await;
    println!(
        "1 worker, {P} partitions: started and converged in {} ms ({} ms after start returned)",
        ms(t.elapsed()),
        ms(waited)
    );
    assert_eq!(
        fleet.shares(),
        vec![P],
        "{}\n{:?}",
        fleet.describe(),
        fleet.manager(0).fatal_error()
    );
    let before = fleet.owners();

    // The record was cut into pieces, each below the server's limit.
    let max_payload = client.server_info().max_payload;
    let bucket = raw_bucket(&client, &g, "assignments").await;
    let keys: Vec<String> = bucket
        .keys()
        .await
        .unwrap()
        .map(|k| k.unwrap())
        .collect()
        .await;
    let pieces: Vec<&String> = keys.iter().filter(|k| k.starts_with("w.")).collect();
    let mut total = 0;
    for key in &pieces {
        let value = bucket.get(key.as_str()).await.unwrap().unwrap();
        assert!(value.len() < max_payload, "{key}: {} bytes", value.len());
        total += value.len();
    }
    println!(
        "stored record: {} pieces, {total} bytes ({:.1} bytes per partition), max_payload {max_payload}",
        pieces.len(),
        total as f64 / P as f64
    );
    assert!(pieces.len() >= 2, "one value cannot hold it: {pieces:?}");

    let t = Instant::now();
    fleet.start(1).await;
    fleet
        .wait_converged(LARGE_SETTLE, "two workers share the partitions")
        .await;
    println!(
        "second worker joined: converged in {} ms, shares {:?}",
        ms(t.elapsed()),
        fleet.shares()
    );
    // The default strategy (consistent hashing with bounded load) gives the
    // newcomer about half; exactly its share moved, nothing else.
    let shares = fleet.shares();
    assert!(
        shares.iter().all(|&s| s.abs_diff(P / 2) <= P / 10),
        "{shares:?}"
    );
    let moved = moved(&before, &fleet.owners());
    assert_eq!(moved, shares[1], "only the new worker's share moved");
    fleet.rec.assert_exclusive();
}

/// Collects what `on_error` reports.
#[derive(Clone, Default)]
struct ErrorHooks(Arc<Mutex<Vec<String>>>);

#[async_trait]
impl Hooks for ErrorHooks {
    async fn on_error(&self, error: &Error) {
        lock(&self.0).push(error.to_string());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partition_too_large_for_any_message_reaches_on_error() {
    let Some(server) = server() else { return };
    let client = connect(&[server.client_url()]).await;
    let mut cfg = config(&group("huge"));
    cfg.startup_timeout = Duration::from_secs(5);
    let limit = client.server_info().max_payload;
    let huge = Partition::new(["x".repeat(limit + 10)]);
    let hooks = ErrorHooks::default();
    let start = Manager::builder_nats(client)
        .config(cfg)
        .partitions(StaticSource::new(vec![Partition::new(["small"]), huge]))
        .hooks(hooks.clone())
        .start();
    let start = tokio::spawn(start);
    wait_until(SETTLE, "on_error reports the oversized record", || {
        lock(&hooks.0)
            .iter()
            .any(|e| e.contains("above the store's limit"))
    })
    .await;
    let errors = lock(&hooks.0).clone();
    let report = errors
        .iter()
        .find(|e| e.contains("above the store's limit"))
        .unwrap();
    println!("on_error: {report}");
    assert!(report.contains(&format!("{}", limit - 1024)), "{report}");
    assert!(report.contains("assignment record of worker-"), "{report}");
    // Nothing could be published: the start gives up.
    let result = start.await.unwrap();
    assert!(
        matches!(result, Err(Error::StartupTimeout { .. })),
        "{result:?}"
    );
}
