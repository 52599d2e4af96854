//! The partition consumer (`PartitionConsumer` wired with
//! `ManagerBuilder::consumer`) against a real nats-server: handoffs between
//! in-process workers lose nothing, keep per-partition order and never overlap;
//! a poison message is dead-lettered and its partition goes on; an empty
//! assignment consumes nothing; `leave()` removes the worker's consumers.

// Test code: unwrap, expect and panic are how it asserts.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use async_nats::jetstream;
use async_nats::jetstream::stream::StorageType;
use common::*;
use parti::{Manager, Partition, PartitionConsumer, StaticSource};
use parti_testkit::nats_server::{NatsCluster, require_nats_server};
use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// One handler call.
#[derive(Clone, Debug)]
struct Handled {
    worker: usize,
    partition: String,
    payload: String,
    seq: u64,
    epoch: u64,
    start: Instant,
    end: Instant,
}

type Log = Arc<Mutex<Vec<Handled>>>;

fn numbered(n: usize) -> Vec<Partition> {
    (0..n).map(|i| Partition::new([format!("p-{i}")])).collect()
}

/// Creates the stream `name` over `<prefix>.>` (memory storage).
async fn stream(
    client: &async_nats::Client,
    name: &str,
    prefix: &str,
) -> jetstream::stream::Stream {
    stream_with(client, name, prefix, StorageType::Memory, 1).await
}

async fn stream_with(
    client: &async_nats::Client,
    name: &str,
    prefix: &str,
    storage: StorageType,
    replicas: usize,
) -> jetstream::stream::Stream {
    let js = jetstream::new(client.clone());
    js.create_stream(jetstream::stream::Config {
        name: name.to_string(),
        subjects: vec![format!("{prefix}.>")],
        storage,
        num_replicas: replicas,
        ..Default::default()
    })
    .await
    .expect("stream created")
}

/// Publishes `count` messages per partition `p-0..p-<n>` starting at `from`,
/// payload `p-<i>:<k>`, round-robin over the partitions.
async fn publish(client: &async_nats::Client, prefix: &str, n: usize, from: usize, count: usize) {
    let js = jetstream::new(client.clone());
    let mut acks = Vec::new();
    for k in from..from + count {
        for i in 0..n {
            if acks.is_empty() {
                // Right after an R3 stream is created, the node this client
                // uses may not know its subjects yet ("no responders", seen as
                // StreamNotFound): the first message is retried until stored,
                // so that it and every later one keep their order.
                first_publish(&js, format!("{prefix}.p-{i}"), format!("p-{i}:{k}")).await;
                acks.push(None);
                continue;
            }
            let ack = js
                .publish(format!("{prefix}.p-{i}"), format!("p-{i}:{k}").into())
                .await
                .expect("published");
            acks.push(Some(ack));
        }
    }
    for ack in acks.into_iter().flatten() {
        ack.await.expect("stored");
    }
}

/// Publishes one message, retrying while the stream is not reachable yet,
/// for at most 10 s.
async fn first_publish(js: &jetstream::Context, subject: String, payload: String) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let stored = match js.publish(subject.clone(), payload.clone().into()).await {
            Ok(ack) => ack.await.map(|_| ()),
            Err(e) => Err(e),
        };
        match stored {
            Ok(()) => return,
            Err(e) if Instant::now() < deadline => {
                eprintln!("first publish to {subject} not stored yet ({e}), retrying");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => panic!("{subject}: not stored within 10 s: {e}"),
        }
    }
}

async fn consumer(
    client: &async_nats::Client,
    name: &str,
    stream: &str,
    prefix: &str,
    worker: usize,
    log: Log,
    work: Duration,
) -> PartitionConsumer {
    consumer_builder(client, name, stream, prefix, worker, log, work)
        .build()
        .await
        .expect("consumer built")
}

/// A consumer whose handler logs every call (after `work`) as `worker`.
fn consumer_builder(
    client: &async_nats::Client,
    name: &str,
    stream: &str,
    prefix: &str,
    worker: usize,
    log: Log,
    work: Duration,
) -> parti::PartitionConsumerBuilder {
    PartitionConsumer::builder(client.clone(), name, stream)
        .subject_template(&format!("{prefix}.{{key}}"))
        .handler(move |d: parti::Delivery| {
            let log = log.clone();
            async move {
                let start = Instant::now();
                if !work.is_zero() {
                    tokio::time::sleep(work).await;
                }
                let end = Instant::now();
                lock(&log).push(Handled {
                    worker,
                    partition: d.partition.name(),
                    payload: String::from_utf8_lossy(&d.payload).into_owned(),
                    seq: d.stream_sequence,
                    epoch: d.epoch,
                    start,
                    end,
                });
                Ok::<(), std::io::Error>(())
            }
        })
}

async fn worker(
    client: &async_nats::Client,
    group: &str,
    parts: Vec<Partition>,
    consumer: PartitionConsumer,
) -> Manager {
    Manager::builder_nats(client.clone())
        .config(config(group))
        .partitions(StaticSource::new(parts))
        .consumer(consumer)
        .start()
        .await
        .expect("manager starts")
}

/// The progress entry of `key` as JSON (`null` when absent).
async fn progress_record(bucket: &jetstream::kv::Store, key: &str) -> serde_json::Value {
    let value = bucket.get(key).await.unwrap().unwrap_or_default();
    serde_json::from_slice(&value).unwrap_or_default()
}

/// Waits until the progress entry of `key` satisfies `cond`; gives it.
async fn wait_for_progress(
    bucket: &jetstream::kv::Store,
    key: &str,
    cond: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let deadline = Instant::now() + SETTLE;
    loop {
        let record = progress_record(bucket, key).await;
        if cond(&record) {
            return record;
        }
        assert!(
            Instant::now() < deadline,
            "progress entry {key} never as expected: {record}"
        );
        tokio::time::sleep(POLL).await;
    }
}

async fn consumer_names(stream: &mut jetstream::stream::Stream) -> Vec<String> {
    use futures_util::StreamExt;
    let names: Vec<String> = stream
        .consumer_names()
        .filter_map(|n| async move { n.ok() })
        .collect()
        .await;
    names
}

/// Every expected payload handled; first handlings in payload order per
/// partition; no two workers' handler intervals of one partition overlap.
/// Returns the number of duplicate handlings.
fn check(log: &[Handled], n: usize, per_partition: usize) -> usize {
    let mut first: BTreeMap<String, Vec<(u64, usize)>> = BTreeMap::new();
    let mut seen = HashSet::new();
    let mut duplicates = 0;
    for h in log {
        if !seen.insert(h.payload.clone()) {
            duplicates += 1;
            continue;
        }
        let k: usize = h.payload.rsplit(':').next().unwrap().parse().unwrap();
        first
            .entry(h.partition.clone())
            .or_default()
            .push((h.seq, k));
    }
    for i in 0..n {
        for k in 0..per_partition {
            assert!(
                seen.contains(&format!("p-{i}:{k}")),
                "p-{i}:{k} never handled"
            );
        }
    }
    for (p, list) in &first {
        let ks: Vec<usize> = list.iter().map(|(_, k)| *k).collect();
        let mut sorted = ks.clone();
        sorted.sort_unstable();
        assert_eq!(
            ks, sorted,
            "partition {p}: first handlings out of payload order"
        );
    }
    let mut by_partition: BTreeMap<&str, Vec<&Handled>> = BTreeMap::new();
    for h in log {
        by_partition.entry(&h.partition).or_default().push(h);
    }
    for (p, mut list) in by_partition {
        list.sort_by_key(|h| h.start);
        for pair in list.windows(2) {
            assert!(
                pair[1].start >= pair[0].end,
                "partition {p}: handler intervals overlap: {:?} and {:?}",
                pair[0],
                pair[1]
            );
        }
    }
    duplicates
}

/// Workers scale 1 → 3 → 2 (one leaves) while messages keep coming: nothing
/// lost, order kept, no overlap, no duplicate (no crash), and the worker that
/// left has no consumer left on the server. `clients[w]` serves worker `w`.
async fn handoffs(clients: &[async_nats::Client], storage: StorageType, replicas: usize) {
    let client = &clients[0];
    let g = group("consume");
    let (name, prefix) = (format!("S{g}"), format!("ev{g}"));
    let mut js_stream = stream_with(client, &name, &prefix, storage, replicas).await;
    const N: usize = 16;
    const ROUNDS: usize = 5;
    const PER_ROUND: usize = 20;
    let log: Log = Arc::default();
    let work = Duration::from_millis(1);

    publish(client, &prefix, N, 0, PER_ROUND).await;
    let mut managers = Vec::new();
    for (w, worker_client) in clients.iter().enumerate() {
        let c = consumer(worker_client, &g, &name, &prefix, w, log.clone(), work).await;
        let m = worker(worker_client, &g, numbered(N), c).await;
        wait_until(SETTLE, "the new worker owns partitions", || {
            !m.assignment().partitions.is_empty()
        })
        .await;
        managers.push((w, m));
        publish(client, &prefix, N, (w + 1) * PER_ROUND, PER_ROUND).await;
    }
    wait_until(SETTLE, "worker 1 handled messages", || {
        lock(&log).iter().any(|h| h.worker == 1)
    })
    .await;
    // One worker leaves while the rest of the messages arrive.
    let (left, m) = managers.remove(1);
    let leaving = tokio::spawn(m.leave());
    publish(client, &prefix, N, 4 * PER_ROUND, PER_ROUND).await;
    leaving.await.unwrap().expect("leave");
    let total = N * ROUNDS * PER_ROUND;
    wait_until_or(
        SETTLE,
        "every message handled",
        || {
            lock(&log)
                .iter()
                .map(|h| &h.payload)
                .collect::<HashSet<_>>()
                .len()
                == total
        },
        || format!("{} handlings", lock(&log).len()),
    )
    .await;
    let log = lock(&log).clone();
    let duplicates = check(&log, N, ROUNDS * PER_ROUND);
    let moved: HashSet<&str> = log
        .iter()
        .filter(|h| h.worker == left)
        .map(|h| h.partition.as_str())
        .collect();
    println!(
        "handoffs ({storage:?}, R{replicas}): {} handlings of {total} messages, {duplicates} duplicates, {} partitions handled by the worker that left",
        log.len(),
        moved.len()
    );
    assert_eq!(duplicates, 0, "no crash, so no duplicate");
    assert!(!moved.is_empty(), "the leaving worker handled something");
    assert!(log.iter().all(|h| h.epoch > 0));
    let names = consumer_names(&mut js_stream).await;
    assert_eq!(names.len(), N, "one consumer per partition: {names:?}");
    for (_, m) in managers {
        m.leave().await.expect("leave");
    }
    let names = consumer_names(&mut js_stream).await;
    assert!(names.is_empty(), "consumers left after leave(): {names:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handoffs_lose_nothing_and_never_overlap() {
    let Some(server) = server() else { return };
    let client = connect(&[server.client_url()]).await;
    handoffs(
        &[client.clone(), client.clone(), client],
        StorageType::Memory,
        1,
    )
    .await;
}

/// The same on an R3 file-storage stream of a 3-node cluster, each worker
/// connected to another node (the progress bucket is R3 too).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handoffs_on_an_r3_file_stream() {
    if require_nats_server().is_none() {
        return;
    }
    let cluster = tokio::task::block_in_place(|| NatsCluster::start(3)).expect("cluster starts");
    let mut clients = Vec::new();
    for i in 0..3 {
        clients.push(connect(&[cluster.client_url(i).unwrap()]).await);
    }
    handoffs(&clients, StorageType::File, 3).await;
}

/// A message whose handler always fails (returns an error, or panics) is
/// retried `max_deliver` times, then handed to the dead-letter callback; the
/// partition's later messages are handled in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn poison_message_is_dead_lettered_and_the_partition_continues() {
    let Some(server) = server() else { return };
    let client = connect(&[server.client_url()]).await;
    let g = group("poison");
    let (name, prefix) = (format!("S{g}"), format!("ev{g}"));
    let _stream = stream(&client, &name, &prefix).await;
    let js = jetstream::new(client.clone());
    for payload in ["p-0:0", "poison", "p-0:1", "boom", "p-0:2"] {
        js.publish(format!("{prefix}.p-0"), payload.into())
            .await
            .unwrap()
            .await
            .unwrap();
    }
    let handled: Arc<Mutex<Vec<(String, u32)>>> = Arc::default();
    let dead: Arc<Mutex<Vec<(String, u32, String)>>> = Arc::default();
    let (h, d) = (handled.clone(), dead.clone());
    let consumer = PartitionConsumer::builder(client.clone(), &g, &name)
        .subject_template(&format!("{prefix}.{{key}}"))
        .max_deliver(3)
        .backoff(Duration::from_millis(10), Duration::from_millis(40))
        .handler(move |delivery: parti::Delivery| {
            let h = h.clone();
            async move {
                let payload = String::from_utf8_lossy(&delivery.payload).into_owned();
                lock(&h).push((payload.clone(), delivery.attempt));
                if payload == "poison" {
                    return Err(std::io::Error::other("cannot digest"));
                }
                if payload == "boom" {
                    panic!("the handler panics on boom (expected by the test)");
                }
                Ok(())
            }
        })
        .dead_letter(move |delivery: parti::Delivery, error| {
            let d = d.clone();
            async move {
                let payload = String::from_utf8_lossy(&delivery.payload).into_owned();
                lock(&d).push((payload, delivery.attempt, error.to_string()));
            }
        })
        .build()
        .await
        .unwrap();
    let m = worker(&client, &g, numbered(1), consumer.clone()).await;
    wait_until_or(
        SETTLE,
        "the messages after the poison one are handled",
        || lock(&handled).iter().any(|(p, _)| p == "p-0:2"),
        || format!("{:?}", lock(&handled)),
    )
    .await;
    let handled = lock(&handled).clone();
    assert_eq!(
        handled,
        vec![
            ("p-0:0".into(), 1),
            ("poison".into(), 1),
            ("poison".into(), 2),
            ("poison".into(), 3),
            ("p-0:1".into(), 1),
            ("boom".into(), 1),
            ("boom".into(), 2),
            ("boom".into(), 3),
            ("p-0:2".into(), 1),
        ]
    );
    assert_eq!(
        lock(&dead).clone(),
        vec![
            ("poison".to_string(), 3, "cannot digest".to_string()),
            ("boom".to_string(), 3, "the handler panicked".to_string()),
        ]
    );
    let health = consumer.health().await;
    assert_eq!(health.partitions.len(), 1);
    assert_eq!(health.partitions[0].dead_letters, 2);
    assert_eq!(health.partitions[0].retries, 4);
    assert_eq!(health.partitions[0].handled, 3);
    m.leave().await.unwrap();
}

/// A worker that owns nothing creates no consumer and handles nothing while
/// the stream is being consumed by the owner; stopping removes the consumers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn empty_assignment_consumes_nothing() {
    let Some(server) = server() else { return };
    let client = connect(&[server.client_url()]).await;
    let g = group("empty");
    let (name, prefix) = (format!("S{g}"), format!("ev{g}"));
    let mut js_stream = stream(&client, &name, &prefix).await;
    publish(&client, &prefix, 1, 0, 5).await;
    let logs: Vec<Log> = vec![Arc::default(), Arc::default()];
    let mut consumers = Vec::new();
    let mut managers = Vec::new();
    for (w, log) in logs.iter().enumerate() {
        let c = consumer(&client, &g, &name, &prefix, w, log.clone(), Duration::ZERO).await;
        consumers.push(c.clone());
        managers.push(worker(&client, &g, numbered(1), c).await);
    }
    wait_until(SETTLE, "one worker owns p-0, the other nothing", || {
        managers.iter().all(|m| m.state() == parti::State::Stable)
            && managers
                .iter()
                .map(|m| m.assignment().partitions.len())
                .sum::<usize>()
                == 1
    })
    .await;
    let owner = usize::from(managers[0].assignment().partitions.is_empty());
    let idle = 1 - owner;
    publish(&client, &prefix, 1, 5, 5).await;
    wait_until_or(
        SETTLE,
        "the owner handled all 10 messages",
        || {
            let payloads: HashSet<String> = logs
                .iter()
                .flat_map(|l| {
                    lock(l)
                        .iter()
                        .map(|h| h.payload.clone())
                        .collect::<Vec<_>>()
                })
                .collect();
            payloads.len() == 10
        },
        || format!("{:?}", lock(&logs[owner]).len()),
    )
    .await;
    // Everything since the assignment settled went to the owner alone.
    let owned = managers[owner].assignment().partitions[0].clone();
    assert!(lock(&logs[idle]).iter().all(|h| h.epoch < owned.epoch));
    assert!(consumers[idle].partitions().await.is_empty());
    assert!(consumers[idle].health().await.partitions.is_empty());
    let names = consumer_names(&mut js_stream).await;
    assert_eq!(names, vec![consumers[owner].consumer_name(&owned)]);
    for m in managers {
        m.stop().await.unwrap();
    }
    let names = consumer_names(&mut js_stream).await;
    assert!(names.is_empty(), "consumers left after stop(): {names:?}");
}

/// While a partition is consumed, its progress entry follows the messages
/// handled (at once, at most once per `progress_interval`), naming the owner's consumer: a crash
/// would make the next owner start there. Revoking it (`leave()`) records the
/// exact last sequence and clears the consumer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn progress_is_recorded_while_consuming_and_at_revoke() {
    let Some(server) = server() else { return };
    let client = connect(&[server.client_url()]).await;
    let g = group("progress");
    let (name, prefix) = (format!("S{g}"), format!("ev{g}"));
    let _stream = stream(&client, &name, &prefix).await;
    publish(&client, &prefix, 1, 0, 5).await;
    let log: Log = Arc::default();
    let consumer = PartitionConsumer::builder(client.clone(), &g, &name)
        .subject_template(&format!("{prefix}.{{key}}"))
        .progress_interval(Duration::from_millis(50))
        .handler({
            let log = log.clone();
            move |d: parti::Delivery| {
                let log = log.clone();
                async move {
                    let now = Instant::now();
                    lock(&log).push(Handled {
                        worker: 0,
                        partition: d.partition.name(),
                        payload: String::from_utf8_lossy(&d.payload).into_owned(),
                        seq: d.stream_sequence,
                        epoch: d.epoch,
                        start: now,
                        end: now,
                    });
                    Ok::<(), std::io::Error>(())
                }
            }
        })
        .build()
        .await
        .unwrap();
    let m = worker(&client, &g, numbered(1), consumer).await;
    wait_until(SETTLE, "the 5 messages handled", || lock(&log).len() == 5).await;
    let last = lock(&log).iter().map(|h| h.seq).max().unwrap();
    let js = jetstream::new(client.clone());
    let bucket = js
        .get_key_value(format!("parti-progress-{g}"))
        .await
        .unwrap();
    let recorded = wait_for_progress(&bucket, "p-0", |r| r["seq"] == last).await;
    let epoch = lock(&log)[0].epoch;
    assert_eq!(recorded["epoch"], epoch, "{recorded}");
    assert!(recorded["consumer"].is_string(), "{recorded}");
    m.leave().await.unwrap();
    let released = progress_record(&bucket, "p-0").await;
    assert_eq!(released["seq"], last, "{released}");
    assert!(released.get("consumer").is_none(), "{released}");
}

/// A quiet partition's progress is written as soon as a message was handled
/// (not after a period): with an hour between two writes, the first one
/// still comes at once. A worker that then stops without handing over (as
/// after a crash) leaves its consumer behind: the next owner starts after
/// that write, so it handles none of the messages the first worker had
/// handled. The first worker, still running (as if paused), finds its
/// consumer gone and is fenced.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_takeover_without_handover_starts_after_the_last_message_handled() {
    let Some(server) = server() else { return };
    let client = connect(&[server.client_url()]).await;
    let g = group("takeover");
    let (name, prefix) = (format!("S{g}"), format!("ev{g}"));
    let mut js_stream = stream(&client, &name, &prefix).await;
    publish(&client, &prefix, 1, 0, 1).await;
    let logs: Vec<Log> = vec![Log::default(), Log::default()];
    let build = |worker: usize| {
        consumer_builder(
            &client,
            &g,
            &name,
            &prefix,
            worker,
            logs[worker].clone(),
            Duration::ZERO,
        )
        .progress_interval(Duration::from_secs(3600))
        .build()
    };
    let (first, second) = (build(0).await.unwrap(), build(1).await.unwrap());
    let owned = |epoch| parti::OwnedPartition {
        partition: Partition::new(["p-0"]),
        epoch,
    };
    first.apply(&[owned(1)], &[]).await;
    wait_until(SETTLE, "the first owner handled the message", || {
        lock(&logs[0]).len() == 1
    })
    .await;
    let last = lock(&logs[0])[0].seq;
    let bucket = jetstream::new(client.clone())
        .get_key_value(format!("parti-progress-{g}"))
        .await
        .unwrap();
    wait_for_progress(&bucket, "p-0", |r| r["seq"] == last && r["epoch"] == 1).await;
    // The takeover: a later epoch, with no revoke on the first owner.
    second.apply(&[owned(2)], &[]).await;
    let deadline = Instant::now() + SETTLE;
    while !second.health().await.partitions.iter().all(|p| p.consuming) {
        assert!(Instant::now() < deadline, "the second owner never consumed");
        tokio::time::sleep(POLL).await;
    }
    publish(&client, &prefix, 1, 1, 3).await;
    wait_until(SETTLE, "the second owner handled 3 messages", || {
        lock(&logs[1]).len() >= 3
    })
    .await;
    let payloads: Vec<String> = lock(&logs[1]).iter().map(|h| h.payload.clone()).collect();
    assert_eq!(payloads, vec!["p-0:1", "p-0:2", "p-0:3"], "second owner");
    assert_eq!(
        lock(&logs[0]).len(),
        1,
        "the fenced first owner handled more"
    );
    second.shutdown().await;
    first.shutdown().await;
    let names = consumer_names(&mut js_stream).await;
    assert!(names.is_empty(), "consumers left: {names:?}");
}
