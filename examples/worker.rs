//! One Parti worker process, for multi-process tests and as a template.
//!
//! ```text
//! cargo run --release --example worker -- --nats URL --group NAME --partitions N \
//!     [--config FILE.toml|FILE.yaml] [--test-timings] [--leave-on-signal]
//! ```
//!
//! Connection options (`--creds`, `--user`/`--password`, `--token`, `--tls-*`,
//! `--context`, also from `NATS_*` variables) are those of the `parti` CLI;
//! `--help` lists them. Passwords and tokens never appear in its output.
//!
//! Partitions are named `p-0` … `p-<N-1>`. On stdout it prints one JSON object
//! per line:
//!
//! - `{"event":"acquired"|"released","worker":"worker-3","partition":"p-17","epoch":12,"version":40,"ts_us":…}`
//!   for every ownership change (released lines come first in a change);
//! - `{"event":"state","worker":"worker-3","from":"Election","to":"Stable","ts_us":…}`;
//! - `{"event":"started","worker":"worker-3","leader":true,"ts_us":…}` once running and
//!   `{"event":"stopped","worker":"worker-3","ts_us":…}` at the end.
//!
//! `ts_us` is Unix time in microseconds. SIGTERM or SIGINT stops the worker
//! gracefully (`stop()`; with `--leave-on-signal`, `leave()`).
//!
//! The worker exits non-zero when the manager ends on a fatal error: e.g. its
//! stdout is closed, so a hook's `println!` panics — the manager reports
//! `Error::HookPanicked`, gives its partitions up and goes to `Shutdown`, and
//! the process exits with the error instead of lingering as a zombie.

use clap::Parser;
use parti::{
    Config, Hooks, Manager, OwnedPartition, Partition, State, StaticSource, WorkerId, async_trait,
};
use parti_nats::connect::ConnectArgs;
use serde_json::json;
use std::process::ExitCode;
use std::sync::{Arc, OnceLock};
use tokio::sync::watch;

fn ts_us() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_micros())
}

struct PrintHooks {
    /// The manager's worker ID as it is now (set once `start()` returned; an
    /// ID lost and claimed again may be another one).
    worker: Arc<OnceLock<watch::Receiver<Option<WorkerId>>>>,
}

impl PrintHooks {
    fn name(&self) -> String {
        self.worker
            .get()
            .and_then(|id| id.borrow().as_ref().map(ToString::to_string))
            .unwrap_or_default()
    }
}

#[async_trait]
impl Hooks for PrintHooks {
    async fn on_assignment_changed(
        &self,
        added: &[OwnedPartition],
        removed: &[OwnedPartition],
        version: u64,
    ) {
        // Lines are written in chunks: a line per `println!` (a write per
        // line) takes seconds at a million partitions, past the hook budget.
        // Each line still gets its own timestamp, and like `println!` a
        // failed write panics (see the module docs).
        use std::fmt::Write;
        const CHUNK: usize = 1 << 16;
        let worker = json_string(&self.name());
        let mut chunk = String::with_capacity(CHUNK + 256);
        for (event, list) in [("released", removed), ("acquired", added)] {
            for p in list {
                let _ = writeln!(
                    chunk,
                    r#"{{"epoch":{},"event":"{event}","partition":{},"ts_us":{},"version":{version},"worker":{worker}}}"#,
                    p.epoch,
                    json_string(&p.partition.name()),
                    ts_us() as u64,
                );
                if chunk.len() >= CHUNK {
                    print!("{chunk}");
                    chunk.clear();
                }
            }
        }
        print!("{chunk}");
    }

    async fn on_state_changed(&self, from: State, to: State) {
        println!(
            "{}",
            json!({"event": "state", "worker": self.name(), "from": from.to_string(), "to": to.to_string(), "ts_us": ts_us() as u64})
        );
    }
}

/// One Parti worker process printing its ownership changes as JSON lines.
#[derive(Parser, Debug)]
#[command(
    name = "worker",
    about = "One Parti worker process (JSON events on stdout)"
)]
struct Args {
    #[command(flatten)]
    connect: ConnectArgs,
    /// Group name.
    #[arg(long, default_value = "parti")]
    group: String,
    /// Number of partitions (named p-0 … p-<N-1>).
    #[arg(long, default_value_t = 16)]
    partitions: usize,
    /// Configuration file (.toml, or .yaml/.yml); --group overrides its group.
    #[arg(long, value_name = "FILE")]
    config: Option<String>,
    /// Use the short test timings (Config::for_tests) when no --config is given.
    #[arg(long)]
    test_timings: bool,
    /// On SIGTERM/SIGINT, leave for good (leave()) instead of stopping (stop()).
    #[arg(long = "leave-on-signal")]
    leave: bool,
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
    let client = args.connect.connect().await.map_err(|e| e.to_string())?;
    let partitions: Vec<Partition> = (0..args.partitions)
        .map(|i| Partition::new([format!("p-{i}")]))
        .collect();
    let name = Arc::new(OnceLock::new());
    let manager = Manager::builder_nats(client)
        .config(config)
        .partitions(StaticSource::new(partitions))
        .hooks(PrintHooks {
            worker: name.clone(),
        })
        .start()
        .await
        .map_err(|e| e.to_string())?;
    let id = manager
        .worker_id()
        .map_or_else(String::new, |w| w.to_string());
    let _ = name.set(manager.subscribe_worker_id());
    let started = emit(
        &json!({"event": "started", "worker": id, "leader": manager.is_leader(), "ts_us": ts_us() as u64}),
    );
    if started.is_ok() {
        // Until a signal, or until the manager ends by itself (a fatal error).
        let mut state = manager.subscribe_state();
        tokio::select! {
            _ = wait_for_signal() => {}
            _ = state.wait_for(|s| *s == State::Shutdown) => {}
        }
    }
    let id = manager.worker_id().map_or(id, |w| w.to_string());
    let result = if args.leave {
        manager.leave().await
    } else {
        manager.stop().await
    };
    let _ = emit(&json!({"event": "stopped", "worker": id, "ts_us": ts_us() as u64}));
    result.map_err(|e| e.to_string())?;
    started.map_err(|e| format!("cannot write to stdout: {e}"))
}

/// `text` as a JSON string literal (quoted and escaped).
fn json_string(text: &str) -> String {
    serde_json::Value::from(text).to_string()
}

/// Writes one line to stdout without panicking (stdout may be closed).
fn emit(line: &serde_json::Value) -> std::io::Result<()> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    writeln!(out, "{line}")?;
    out.flush()
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
    // Bad arguments: clap prints the usage and exits with 2; --help exits 0.
    let args = Args::parse();
    // The library's log lines go to stderr: warnings by default, more with
    // e.g. RUST_LOG=parti=debug (the soak keeps each worker's stderr).
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .init();
    match run(args).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("worker: {e}");
            ExitCode::FAILURE
        }
    }
}
