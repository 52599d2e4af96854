//! One Parti worker that consumes the partitions it owns from a JetStream
//! stream with `PartitionConsumer`, for multi-process tests and as a template.
//!
//! ```text
//! cargo run --release --example consume -- --nats URL --group G --stream NAME \
//!     --subject-prefix PREFIX --partitions N [--test-timings] [--work-ms W] \
//!     [--leave-on-signal] [--config FILE.toml|FILE.yaml]
//! ```
//!
//! Partitions are `p-0` … `p-<N-1>` on the subjects `PREFIX.p-<i>` (see the
//! `produce` example). Each message is "worked" by sleeping W ms (default 0).
//! On stdout, one JSON object per line:
//!
//! - `{"event":"processed","worker":"worker-2","partition":"p-17","payload":"p-17:42","stream_seq":1234,"epoch":3,"start_us":…,"end_us":…}`
//!   per handled message (Unix µs around the handler);
//! - the `acquired` / `released` / `state` / `started` / `stopped` lines of the
//!   `worker` example (a `released` line is printed once the partition's
//!   message in flight finished and its progress was recorded).
//!
//! SIGTERM or SIGINT stops the worker gracefully (`stop()`; with
//! `--leave-on-signal`, `leave()`, which also removes its consumers).

use parti::nats::async_nats;
use parti::{
    Config, Delivery, Hooks, Manager, OwnedPartition, Partition, PartitionConsumer, State,
    StaticSource, async_trait,
};
use serde_json::json;
use std::process::ExitCode;
use std::time::Duration;
use tokio::sync::watch;

fn ts_us() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}

/// Writes one line to stdout without panicking (stdout may be closed).
fn emit(line: &serde_json::Value) -> std::io::Result<()> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    writeln!(out, "{line}")?;
    out.flush()
}

struct PrintHooks {
    worker: watch::Receiver<String>,
}

#[async_trait]
impl Hooks for PrintHooks {
    async fn on_assignment_changed(
        &self,
        added: &[OwnedPartition],
        removed: &[OwnedPartition],
        version: u64,
    ) {
        let worker = self.worker.borrow().clone();
        for (event, list) in [("released", removed), ("acquired", added)] {
            for p in list {
                let _ = emit(
                    &json!({"event": event, "worker": worker, "partition": p.partition.name(), "epoch": p.epoch, "version": version, "ts_us": ts_us()}),
                );
            }
        }
    }

    async fn on_state_changed(&self, from: State, to: State) {
        let worker = self.worker.borrow().clone();
        let _ = emit(
            &json!({"event": "state", "worker": worker, "from": from.to_string(), "to": to.to_string(), "ts_us": ts_us()}),
        );
    }
}

struct Args {
    nats: String,
    group: String,
    stream: String,
    prefix: String,
    partitions: usize,
    config: Option<String>,
    test_timings: bool,
    work: Duration,
    leave: bool,
}

/// What `--help` prints.
const USAGE: &str = "Usage: consume --nats URL --group G --stream NAME --subject-prefix PREFIX [--partitions N] [--config FILE] [--test-timings] [--work-ms W] [--leave-on-signal]

One worker that consumes the partitions it owns from the stream and prints one
JSON line per handled message, plus the acquired/released lines of `worker`.

Options:
  --nats URL               server (default nats://127.0.0.1:4222)
  --group G                group name (default parti)
  --stream NAME            the stream (required)
  --subject-prefix PREFIX  subject prefix (required)
  --partitions N           partitions (default 16)
  --config FILE            a TOML or YAML Parti config
  --test-timings           short timings (tests)
  --work-ms W              simulated work per message, ms
  --leave-on-signal        leave() instead of stop() on SIGTERM/SIGINT
  -h, --help               this text";

fn parse() -> Result<Args, String> {
    let mut a = Args {
        nats: "nats://127.0.0.1:4222".into(),
        group: "parti".into(),
        stream: String::new(),
        prefix: String::new(),
        partitions: 16,
        config: None,
        test_timings: false,
        work: Duration::ZERO,
        leave: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or_else(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "-h" | "--help" => {
                println!("{USAGE}");
                std::process::exit(0);
            }
            "--nats" => a.nats = value()?,
            "--group" => a.group = value()?,
            "--stream" => a.stream = value()?,
            "--subject-prefix" => a.prefix = value()?,
            "--partitions" => {
                a.partitions = value()?.parse().map_err(|e| format!("--partitions: {e}"))?
            }
            "--config" => a.config = Some(value()?),
            "--test-timings" => a.test_timings = true,
            "--work-ms" => {
                let ms: u64 = value()?.parse().map_err(|e| format!("--work-ms: {e}"))?;
                a.work = Duration::from_millis(ms);
            }
            "--leave-on-signal" => a.leave = true,
            other => return Err(format!("unknown argument {other}")),
        }
    }
    if a.stream.is_empty() {
        return Err("--stream is required".into());
    }
    if a.prefix.is_empty() {
        return Err("--subject-prefix is required".into());
    }
    Ok(a)
}

async fn run(args: Args) -> Result<(), String> {
    let mut config = match &args.config {
        Some(path) => {
            let text = std::fs::read_to_string(path).map_err(|e| format!("{path}: {e}"))?;
            if path.ends_with(".yaml") || path.ends_with(".yml") {
                Config::from_yaml(&text)
            } else {
                Config::from_toml(&text)
            }
            .map_err(|e| e.to_string())?
        }
        None if args.test_timings => Config::for_tests(),
        None => Config::default(),
    };
    config.group = args.group.clone();
    let client = async_nats::connect(args.nats.as_str())
        .await
        .map_err(|e| format!("cannot connect to {}: {e}", args.nats))?;
    let partitions: Vec<Partition> = (0..args.partitions)
        .map(|i| Partition::new([format!("p-{i}")]))
        .collect();
    // The worker's name is known once `start()` returned; a message handled
    // before that waits for it.
    let (name_tx, name_rx) = watch::channel(String::new());
    let work = args.work;
    let names = name_rx.clone();
    let consumer = PartitionConsumer::builder(client.clone(), &args.group, &args.stream)
        .subject_template(&format!("{}.{{key}}", args.prefix))
        .handler(move |d: Delivery| {
            let mut names = names.clone();
            async move {
                let worker = names
                    .wait_for(|n| !n.is_empty())
                    .await
                    .map(|n| n.clone())
                    .unwrap_or_default();
                let start_us = ts_us();
                if !work.is_zero() {
                    tokio::time::sleep(work).await;
                }
                let end_us = ts_us();
                emit(&json!({
                    "event": "processed",
                    "worker": worker,
                    "partition": d.partition.name(),
                    "payload": String::from_utf8_lossy(&d.payload),
                    "stream_seq": d.stream_sequence,
                    "epoch": d.epoch,
                    "start_us": start_us,
                    "end_us": end_us,
                }))
            }
        })
        .build()
        .await
        .map_err(|e| e.to_string())?;
    let manager = Manager::builder_nats(client)
        .config(config)
        .partitions(StaticSource::new(partitions))
        .hooks(PrintHooks {
            worker: name_rx.clone(),
        })
        .consumer(consumer.clone())
        .start()
        .await
        .map_err(|e| e.to_string())?;
    let id = manager
        .worker_id()
        .map_or_else(String::new, |w| w.to_string());
    let _ = name_tx.send(id.clone());
    let started = emit(
        &json!({"event": "started", "worker": id, "leader": manager.is_leader(), "ts_us": ts_us()}),
    );
    if started.is_ok() {
        let mut state = manager.subscribe_state();
        tokio::select! {
            _ = wait_for_signal() => {}
            _ = state.wait_for(|s| *s == State::Shutdown) => {}
        }
    }
    let result = if args.leave {
        manager.leave().await
    } else {
        manager.stop().await
    };
    consumer.shutdown().await;
    let _ = emit(&json!({"event": "stopped", "worker": id, "ts_us": ts_us()}));
    result.map_err(|e| e.to_string())?;
    started.map_err(|e| format!("cannot write to stdout: {e}"))
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = tokio::signal::ctrl_c() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    match parse() {
        Ok(args) => match run(args).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("consume: {e}");
                ExitCode::FAILURE
            }
        },
        Err(e) => {
            eprintln!("consume: {e}");
            ExitCode::from(2)
        }
    }
}
