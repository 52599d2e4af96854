//! Leaving Kafka consumer groups for NATS: a worker that consumes exactly the
//! partitions it owns from a JetStream stream, keeps per-partition state, and
//! fences stale work with the partition's epoch.
//!
//! ```text
//! # a server with JetStream: nats-server -js
//! cargo run -p parti-examples --example kafka_replacement -- --produce 1000 --poison
//! cargo run -p parti-examples --example kafka_replacement            # in a second terminal
//! ```
//!
//! Start it in several terminals (same `--group`): the partitions spread over
//! the workers, and move back when one stops, each continuing exactly where
//! the previous owner left it.
//!
//! | Kafka | Parti on NATS |
//! |---|---|
//! | topic `orders` with 12 partitions | stream `ORDERS`, subjects `orders.p-0` … `orders.p-11` |
//! | consumer group | Parti group (`--group`) |
//! | group coordinator's rebalance | the Parti leader's assignment (sticky, revoke before grant) |
//! | `ConsumerRebalanceListener` | [`Hooks::on_assignment_changed`] (the consumer has already stopped a revoked partition when it runs) |
//! | committed offset (auto-commit) | the last handled stream sequence in the progress bucket, written as messages are handled (at most every `progress_interval` for a busy partition) and at each revoke, with the epoch as a fence |
//! | generation id / zombie fencing | the partition's fencing epoch ([`Delivery::epoch`]) |
//! | `max.poll.records` / per-partition ordering | one message at a time per partition, partitions in parallel |
//! | dead-letter topic | [`PartitionConsumerBuilder::dead_letter`] after `max_deliver` attempts |
//!
//! Each message is an order `{"order":K,"cents":C}`; the worker keeps a
//! running total per partition, as a stateful Kafka consumer keeps a local
//! store. A message that is not an order is "poison": the handler fails it,
//! and after three attempts it goes to the dead-letter callback while the
//! partition goes on.
//!
//! [`PartitionConsumerBuilder::dead_letter`]: parti::PartitionConsumerBuilder::dead_letter

use clap::Parser;
use parti::nats::async_nats::jetstream;
use parti::{
    Config, Delivery, Hooks, Manager, OwnedPartition, Partition, PartitionConsumer, State,
    StaticSource, async_trait,
};
use parti_nats::connect::ConnectArgs;
use std::collections::HashMap;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A Kafka-style consumer of owned partitions on NATS JetStream.
#[derive(Parser, Debug)]
#[command(name = "kafka_replacement", version, about)]
struct Args {
    #[command(flatten)]
    connect: ConnectArgs,
    /// Group name (the consumer group).
    #[arg(long, default_value = "orders")]
    group: String,
    /// The stream (the topic); created with the subjects `<prefix>.>` when
    /// `--produce` is given and it does not exist.
    #[arg(long, default_value = "ORDERS")]
    stream: String,
    /// Subject prefix: partition `p-<i>` is the subject `<prefix>.p-<i>`.
    #[arg(long, default_value = "orders")]
    subject_prefix: String,
    /// Number of partitions.
    #[arg(long, default_value_t = 12)]
    partitions: usize,
    /// Publish this many demo orders (spread over the partitions) before
    /// consuming.
    #[arg(long, default_value_t = 0)]
    produce: usize,
    /// With --produce: also publish one message that is not an order.
    #[arg(long)]
    poison: bool,
    /// Short timings (a group forms in about a second; not for production).
    #[arg(long)]
    test_timings: bool,
    /// Stop once this many messages were handled or dead-lettered by this
    /// worker (for scripted runs).
    #[arg(long)]
    stop_after: Option<u64>,
    /// Stop after this long (e.g. `30s`); by default run until Ctrl-C.
    #[arg(long, value_parser = humantime::parse_duration)]
    run_for: Option<Duration>,
}

/// One order, the payload of every well-formed message.
#[derive(serde::Serialize, serde::Deserialize)]
struct Order {
    order: u64,
    cents: u64,
}

/// What the worker knows about one partition it owns: the local state a
/// Kafka consumer would keep next to its offsets.
#[derive(Default)]
struct PartitionTotals {
    /// The epoch under which the totals were last updated.
    epoch: u64,
    orders: u64,
    cents: u64,
}

/// The application's state, shared by the handler and the hooks.
#[derive(Default)]
struct Ledger {
    partitions: Mutex<HashMap<String, PartitionTotals>>,
    handled: std::sync::atomic::AtomicU64,
    dead: std::sync::atomic::AtomicU64,
}

impl Ledger {
    /// Applies one order, refusing work from an older ownership of the
    /// partition (a zombie's late write, in Kafka terms).
    fn apply(&self, delivery: &Delivery, order: &Order) -> Result<(), String> {
        let mut partitions = self
            .partitions
            .lock()
            .map_err(|_| "ledger lock poisoned".to_string())?;
        let totals = partitions.entry(delivery.partition.name()).or_default();
        if delivery.epoch < totals.epoch {
            return Err(format!(
                "stale epoch {} < {} for {}",
                delivery.epoch,
                totals.epoch,
                delivery.partition.name()
            ));
        }
        totals.epoch = delivery.epoch;
        totals.orders += 1;
        totals.cents += order.cents;
        Ok(())
    }

    fn done(&self) -> u64 {
        use std::sync::atomic::Ordering::Relaxed;
        self.handled.load(Relaxed) + self.dead.load(Relaxed)
    }
}

/// The rebalance listener: by the time it runs, the consumer has stopped the
/// revoked partitions (their last message finished and its progress saved).
struct Rebalance {
    ledger: Arc<Ledger>,
}

#[async_trait]
impl Hooks for Rebalance {
    async fn on_assignment_changed(
        &self,
        added: &[OwnedPartition],
        removed: &[OwnedPartition],
        version: u64,
    ) {
        let Ok(mut partitions) = self.ledger.partitions.lock() else {
            return;
        };
        for p in removed {
            // Kafka's onPartitionsRevoked: hand over or drop local state.
            if let Some(t) = partitions.remove(&p.partition.name()) {
                println!(
                    "revoked {} (version {version}): {} orders, {} cents",
                    p.partition, t.orders, t.cents
                );
            }
        }
        for p in added {
            // Kafka's onPartitionsAssigned: the epoch fences older owners.
            println!(
                "assigned {} (version {version}, epoch {})",
                p.partition, p.epoch
            );
        }
    }

    async fn on_state_changed(&self, from: State, to: State) {
        println!("state {from} -> {to}");
    }
}

/// Publishes `count` demo orders round-robin over the partitions (plus one
/// poison message), creating the stream if it does not exist.
async fn produce(client: &parti::nats::async_nats::Client, args: &Args) -> Result<(), String> {
    let js = jetstream::new(client.clone());
    js.get_or_create_stream(jetstream::stream::Config {
        name: args.stream.clone(),
        subjects: vec![format!("{}.>", args.subject_prefix)],
        ..Default::default()
    })
    .await
    .map_err(|e| format!("stream {}: {e}", args.stream))?;
    let mut acks = Vec::with_capacity(args.produce + 1);
    for k in 0..args.produce {
        let order = Order {
            order: k as u64,
            cents: 100 + (k as u64 * 37) % 900,
        };
        let payload = serde_json::to_vec(&order).map_err(|e| e.to_string())?;
        let subject = format!("{}.p-{}", args.subject_prefix, k % args.partitions);
        acks.push(
            js.publish(subject, payload.into())
                .await
                .map_err(|e| format!("publishing: {e}"))?,
        );
    }
    if args.poison {
        let subject = format!("{}.p-0", args.subject_prefix);
        acks.push(
            js.publish(subject, "not an order".into())
                .await
                .map_err(|e| format!("publishing: {e}"))?,
        );
    }
    for ack in acks {
        ack.await.map_err(|e| format!("publish not stored: {e}"))?;
    }
    println!(
        "produced {} orders{} on {}",
        args.produce,
        if args.poison {
            " and one poison message"
        } else {
            ""
        },
        args.stream
    );
    Ok(())
}

async fn run(args: Args) -> Result<(), String> {
    if args.partitions == 0 {
        return Err("--partitions: must be at least 1".into());
    }
    let mut config = if args.test_timings {
        Config::for_tests()
    } else {
        Config::default()
    };
    config.group = args.group.clone();
    let client = args.connect.connect().await.map_err(|e| e.to_string())?;
    if args.produce > 0 || args.poison {
        produce(&client, &args).await?;
    }

    let ledger = Arc::new(Ledger::default());
    let handler_ledger = ledger.clone();
    let dead_ledger = ledger.clone();
    let consumer = PartitionConsumer::builder(client.clone(), &args.group, &args.stream)
        .subject_template(&format!("{}.{{key}}", args.subject_prefix))
        .max_deliver(3)
        .backoff(Duration::from_millis(50), Duration::from_millis(200))
        .handler(move |d: Delivery| {
            let ledger = handler_ledger.clone();
            async move {
                let order: Order =
                    serde_json::from_slice(&d.payload).map_err(|e| format!("not an order: {e}"))?;
                ledger.apply(&d, &order)?;
                ledger
                    .handled
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                Ok::<(), String>(())
            }
        })
        .dead_letter(move |d: Delivery, error| {
            let ledger = dead_ledger.clone();
            async move {
                println!(
                    "dead letter: {} seq {} after {} attempts: {error}",
                    d.partition, d.stream_sequence, d.attempt
                );
                ledger
                    .dead
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
        })
        .build()
        .await
        .map_err(|e| e.to_string())?;

    let partitions: Vec<Partition> = (0..args.partitions)
        .map(|i| Partition::new([format!("p-{i}")]))
        .collect();
    let manager = Manager::builder_nats(client)
        .config(config)
        .partitions(StaticSource::new(partitions))
        .hooks(Rebalance {
            ledger: ledger.clone(),
        })
        .consumer(consumer.clone())
        .start()
        .await
        .map_err(|e| e.to_string())?;
    let worker = manager
        .worker_id()
        .map_or_else(String::new, |w| w.to_string());
    println!(
        "{worker} consumes {} of {} partitions",
        manager.assignment().len(),
        args.partitions
    );

    let began = Instant::now();
    let mut state = manager.subscribe_state();
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = state.wait_for(|s| *s == State::Shutdown) => {}
        _ = until_done(&ledger, args.stop_after, args.run_for) => {}
    }
    let stopped = manager.stop().await;
    consumer.shutdown().await;
    let secs = began.elapsed().as_secs_f64();
    println!(
        "{worker} handled {} orders and dead-lettered {} in {secs:.1} s",
        ledger.handled.load(std::sync::atomic::Ordering::Relaxed),
        ledger.dead.load(std::sync::atomic::Ordering::Relaxed),
    );
    stopped.map_err(|e| e.to_string())
}

/// Returns when `stop_after` messages are done or `run_for` has passed;
/// never when neither is given.
async fn until_done(ledger: &Ledger, stop_after: Option<u64>, run_for: Option<Duration>) {
    let deadline = run_for.map(|d| tokio::time::Instant::now() + d);
    loop {
        if stop_after.is_some_and(|n| ledger.done() >= n) {
            return;
        }
        if deadline.is_some_and(|d| tokio::time::Instant::now() >= d) {
            return;
        }
        if stop_after.is_none() && deadline.is_none() {
            std::future::pending::<()>().await;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    match run(Args::parse()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("kafka_replacement: {e}");
            ExitCode::FAILURE
        }
    }
}
