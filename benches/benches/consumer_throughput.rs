//! Throughput of Parti's `PartitionConsumer` against a plain async-nats pull
//! consumer, on a real nats-server, in the same run and on the same stream.
//!
//! ```text
//! NATS_SERVER_BIN=… cargo bench -p parti-benches --bench consumer_throughput
//! ```
//!
//! The stream (file storage) holds `MESSAGES` small messages spread over 64
//! partition subjects. Every consumer pulls batches of [`BATCH`] messages
//! (`messages()` with `max_messages_per_batch`; the partition consumer's
//! `prefetch`) and keeps its state in memory. Each round measures, on fresh
//! consumers:
//!
//! - `plain`: one pull consumer over every subject, explicit acks (the
//!   async-nats default), each message acknowledged: a plain at-least-once
//!   consumer, the reference of the ratios;
//! - `plain-no-ack`: the same with `AckPolicy::None` (at-most-once: what the
//!   server can deliver at best);
//! - `plain-per-partition`: 64 pull consumers, one per partition subject,
//!   `AckPolicy::None`, each read by a task of its own: the partition
//!   consumer's layout without Parti;
//! - `parti-1` and `parti-4`: 1 and 4 in-process workers (`Manager` with
//!   `ManagerBuilder::consumer`, no-op handler); the workers first settle on an
//!   empty partition list, then the 64 partitions are published with
//!   `refresh_partitions`, and the clock runs from there until every message
//!   was handled. The partition consumer acknowledges nothing to the server;
//!   it records each partition's progress in its KV bucket (as messages are
//!   handled, at most every 20 ms per busy partition, and at each revoke):
//!   at-least-once, as `plain`.
//!
//! The figure is messages per second (median of the rounds) and the ratio to
//! `plain`. Under `cargo test` (no `--bench` argument) it runs one small round
//! as a smoke test, and nothing without a nats-server binary.
//! `BENCH_MESSAGES=N` changes the message count, `BENCH_ROUNDS=R` the number
//! of rounds.

// Bench code: unwrap, expect and panic are how it reports setup failures.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use futures_util::StreamExt;
use parti::nats::async_nats::{self, jetstream};
use parti::{Config, Manager, Partition, PartitionConsumer, StaticSource};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

const PARTITIONS: usize = 64;
/// Pull batch of every consumer (the partition consumer's default prefetch).
const BATCH: usize = 256;

struct Setup {
    url: String,
    stream: String,
    prefix: String,
    messages: u64,
}

async fn publish(setup: &Setup) {
    let client = async_nats::connect(setup.url.as_str()).await.unwrap();
    let js = jetstream::new(client);
    js.create_stream(jetstream::stream::Config {
        name: setup.stream.clone(),
        subjects: vec![format!("{}.>", setup.prefix)],
        ..Default::default()
    })
    .await
    .unwrap();
    let mut acks = Vec::with_capacity(512);
    for j in 0..setup.messages as usize {
        let i = j % PARTITIONS;
        acks.push(
            js.publish(
                format!("{}.p-{i}", setup.prefix),
                format!("p-{i}:{j}").into(),
            )
            .await
            .unwrap(),
        );
        if acks.len() == 512 {
            for ack in acks.drain(..) {
                ack.await.unwrap();
            }
        }
    }
    for ack in acks {
        ack.await.unwrap();
    }
}

/// One pull consumer over every subject: messages per second.
async fn plain(setup: &Setup, round: usize, ack_policy: jetstream::consumer::AckPolicy) -> f64 {
    let acked = ack_policy != jetstream::consumer::AckPolicy::None;
    let client = async_nats::connect(setup.url.as_str()).await.unwrap();
    let js = jetstream::new(client);
    let stream = js.get_stream(&setup.stream).await.unwrap();
    let began = Instant::now();
    let consumer = stream
        .create_consumer(jetstream::consumer::pull::Config {
            durable_name: Some(format!("plain-{round}-{acked}")),
            ack_policy,
            memory_storage: true,
            ..Default::default()
        })
        .await
        .unwrap();
    let mut messages = batches(&consumer).await;
    let mut n = 0;
    while n < setup.messages {
        let message = messages.next().await.unwrap().unwrap();
        if acked {
            message.ack().await.unwrap();
        }
        n += 1;
    }
    let rate = n as f64 / began.elapsed().as_secs_f64();
    stream
        .delete_consumer(&format!("plain-{round}-{acked}"))
        .await
        .unwrap();
    rate
}

/// One pull consumer per partition subject (no acks), each read by a task of
/// its own: messages per second (what the partition consumer's layout costs
/// by itself).
async fn plain_per_partition(setup: &Setup, round: usize) -> f64 {
    let client = async_nats::connect(setup.url.as_str()).await.unwrap();
    let js = jetstream::new(client);
    let stream = js.get_stream(&setup.stream).await.unwrap();
    let began = Instant::now();
    let mut tasks = Vec::new();
    for i in 0..PARTITIONS {
        let name = format!("plain64-{round}-{i}");
        let consumer = stream
            .create_consumer(jetstream::consumer::pull::Config {
                name: Some(name),
                filter_subject: format!("{}.p-{i}", setup.prefix),
                ack_policy: jetstream::consumer::AckPolicy::None,
                inactive_threshold: Duration::from_secs(5),
                memory_storage: true,
                ..Default::default()
            })
            .await
            .unwrap();
        let expected = setup.messages / PARTITIONS as u64
            + u64::from((i as u64) < setup.messages % PARTITIONS as u64);
        tasks.push(tokio::spawn(async move {
            let mut messages = batches(&consumer).await;
            for _ in 0..expected {
                messages.next().await.unwrap().unwrap();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    setup.messages as f64 / began.elapsed().as_secs_f64()
}

/// `workers` in-process Parti workers with a no-op handler: messages per second.
async fn parti(setup: &Setup, workers: usize, round: usize) -> f64 {
    let group = format!("bench-{workers}-{round}-{}", std::process::id());
    let handled = Arc::new(AtomicU64::new(0));
    let grants = Arc::new(std::sync::Mutex::new(std::collections::HashSet::new()));
    let first = Arc::new(std::sync::OnceLock::new());
    let source = StaticSource::new(Vec::new());
    let mut managers = Vec::new();
    let mut config = Config::for_tests();
    config.group = group.clone();
    for _ in 0..workers {
        let client = async_nats::connect(setup.url.as_str()).await.unwrap();
        let count = handled.clone();
        let first = first.clone();
        let grants = grants.clone();
        let consumer = PartitionConsumer::builder(client.clone(), &group, &setup.stream)
            .subject_template(&format!("{}.{{key}}", setup.prefix))
            .max_concurrency(64)
            .prefetch(BATCH)
            .handler(move |d: parti::Delivery| {
                if count.fetch_add(1, Ordering::Relaxed) == 0 {
                    let _ = first.set(Instant::now());
                }
                if d.attempt == 1 && d.stream_sequence.is_multiple_of(61) {
                    grants.lock().unwrap().insert((d.partition.name(), d.epoch));
                }
                async { Ok::<(), std::io::Error>(()) }
            })
            .build()
            .await
            .unwrap();
        let manager = Manager::builder_nats(client)
            .config(config.clone())
            .partitions(source.clone())
            .consumer(consumer)
            .start()
            .await
            .unwrap();
        managers.push(manager);
    }
    let began = Instant::now();
    source.set(
        (0..PARTITIONS)
            .map(|i| Partition::new([format!("p-{i}")]))
            .collect(),
    );
    for m in &managers {
        m.refresh_partitions().await.unwrap();
    }
    let deadline = began + Duration::from_secs(120);
    while handled.load(Ordering::Relaxed) < setup.messages {
        assert!(Instant::now() < deadline, "parti-{workers} did not finish");
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let took = began.elapsed();
    let rate = handled.load(Ordering::Relaxed) as f64 / took.as_secs_f64();
    let to_first = first
        .get()
        .map(|f| f.duration_since(began))
        .unwrap_or_default();
    let owners: Vec<usize> = managers
        .iter()
        .map(|m| m.assignment().partitions.len())
        .collect();
    for m in managers {
        m.leave().await.unwrap();
    }
    eprintln!(
        "  parti-{workers}: first message after {} ms, all after {} ms; partitions per worker {owners:?}; {} (partition, epoch) pairs seen",
        to_first.as_millis(),
        took.as_millis(),
        grants.lock().unwrap().len()
    );
    rate
}

/// CPU time used so far, in ms: (this process, its nats-server children).
/// Read from `/proc` (Linux; zeros elsewhere), at the clock-tick resolution
/// (10 ms).
fn cpu_ms() -> (f64, f64) {
    fn ticks(pid: &str) -> Option<(u64, String)> {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        let (head, rest) = stat.rsplit_once(')')?;
        let fields: Vec<&str> = rest.split_whitespace().collect();
        let used = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
        let comm = head.rsplit_once('(').map(|(_, c)| c.to_string())?;
        Some((used, format!("{comm} {}", fields.get(1)?)))
    }
    let me = std::process::id().to_string();
    let client = ticks(&me).map_or(0, |(t, _)| t);
    let mut server = 0;
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if let Some((t, comm)) = ticks(&name)
            && comm == format!("nats-server {me}")
        {
            server += t;
        }
    }
    // 100 ticks per second on Linux.
    (client as f64 * 10.0, server as f64 * 10.0)
}

/// Rate of one measurement, and the CPU ms it cost per 100 000 messages.
struct Measured {
    rate: f64,
    client_ms: f64,
    server_ms: f64,
}

async fn measure(messages: u64, run: impl Future<Output = f64>) -> Measured {
    let before = cpu_ms();
    let rate = run.await;
    let after = cpu_ms();
    let per = 100_000.0 / messages as f64;
    Measured {
        rate,
        client_ms: (after.0 - before.0) * per,
        server_ms: (after.1 - before.1) * per,
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let bench = std::env::args().any(|a| a == "--bench");
    let Some(server) = parti_testkit::nats_server::start_or_skip() else {
        return;
    };
    let (messages, rounds) = if bench { (100_000, 3) } else { (2_000, 1) };
    // BENCH_MESSAGES overrides the message count.
    let messages = std::env::var("BENCH_MESSAGES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(messages);
    // BENCH_ROUNDS overrides the number of rounds.
    let rounds = std::env::var("BENCH_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(rounds);
    let setup = Setup {
        url: server.client_url(),
        stream: "BENCH".into(),
        prefix: "bench".into(),
        messages,
    };
    let t = Instant::now();
    publish(&setup).await;
    eprintln!(
        "published {messages} messages over {PARTITIONS} partitions in {} ms",
        t.elapsed().as_millis()
    );
    let names = [
        "plain pull consumer, acked",
        "plain pull consumer, no acks",
        "plain, one pull consumer per partition, no acks",
        "parti, 1 worker",
        "parti, 4 workers",
    ];
    let mut rows: Vec<Vec<Measured>> = (0..names.len()).map(|_| Vec::new()).collect();
    for round in 0..rounds {
        use jetstream::consumer::AckPolicy;
        let n = setup.messages;
        rows[0].push(measure(n, plain(&setup, round, AckPolicy::Explicit)).await);
        rows[1].push(measure(n, plain(&setup, round, AckPolicy::None)).await);
        rows[2].push(measure(n, plain_per_partition(&setup, round)).await);
        rows[3].push(measure(n, parti(&setup, 1, round)).await);
        rows[4].push(measure(n, parti(&setup, 4, round)).await);
        let rates: Vec<String> = rows
            .iter()
            .map(|r| format!("{:.0}", r[round].rate))
            .collect();
        eprintln!("round {round}: msg/s {}", rates.join(", "));
    }
    println!(
        "consumer throughput ({messages} messages, {PARTITIONS} partitions, batch {BATCH}, median of {rounds} rounds; CPU ms per 100 000 messages):"
    );
    let reference = median(rows[0].iter().map(|m| m.rate).collect());
    for (name, row) in names.iter().zip(&rows) {
        let rate = median(row.iter().map(|m| m.rate).collect());
        let client = median(row.iter().map(|m| m.client_ms).collect());
        let server = median(row.iter().map(|m| m.server_ms).collect());
        println!(
            "  {name}: {rate:.0} msg/s ({:.2}x plain); CPU: client {client:.0} ms, nats-server {server:.0} ms",
            rate / reference
        );
    }
}

/// The consumer's messages, pulled [`BATCH`] at a time.
async fn batches(
    consumer: &jetstream::consumer::PullConsumer,
) -> jetstream::consumer::pull::Stream {
    consumer
        .stream()
        .max_messages_per_batch(BATCH)
        .messages()
        .await
        .unwrap()
}
