//! The smallest complete Parti worker: join a group, print the partitions it
//! gains and gives up, stop gracefully on Ctrl-C.
//!
//! ```text
//! cargo run -p parti-examples --example basic                         # in memory, no server needed
//! cargo run -p parti-examples --example basic -- --nats nats://127.0.0.1:4222 --group orders
//! ```
//!
//! Without `--nats` the worker runs on an in-memory store, alone in its group
//! (a quick way to see the API work). With `--nats`, start it in several
//! terminals with the same `--group` and watch the partitions spread out and
//! move back when one stops.

use clap::Parser;
use parti::{Config, ConfigBuilder, Hooks, Manager, OwnedPartition, State, StaticSource};
use std::process::ExitCode;
use std::time::Duration;

/// The smallest complete Parti worker.
#[derive(Parser, Debug)]
#[command(name = "basic", version, about)]
struct Args {
    /// NATS server URL. Without it the worker runs on an in-memory store
    /// (this process only) with test timings.
    #[arg(long)]
    nats: Option<String>,
    /// Group name (workers of one group share the partitions).
    #[arg(long, default_value = "basic")]
    group: String,
    /// Number of partitions (`<group>/p-0` ...).
    #[arg(long, default_value_t = 8)]
    partitions: usize,
    /// Use the short test timings on NATS too (a group forms in about a
    /// second; not for production).
    #[arg(long)]
    test_timings: bool,
    /// Stop after this long (e.g. `10s`); by default run until Ctrl-C.
    #[arg(long, value_parser = humantime::parse_duration)]
    run_for: Option<Duration>,
}

/// What the application does when its partitions change.
struct Printer;

#[parti::async_trait]
impl Hooks for Printer {
    async fn on_assignment_changed(
        &self,
        added: &[OwnedPartition],
        removed: &[OwnedPartition],
        version: u64,
    ) {
        // Stop work on `removed` before returning; start work on `added`,
        // passing each epoch downstream as a fencing token.
        for p in removed {
            println!("version {version}: release {}", p.partition);
        }
        for p in added {
            println!("version {version}: own {} (epoch {})", p.partition, p.epoch);
        }
    }

    async fn on_state_changed(&self, from: State, to: State) {
        println!("state {from} -> {to}");
    }
}

async fn run(args: Args) -> Result<(), Box<dyn std::error::Error>> {
    let timings = if args.nats.is_none() || args.test_timings {
        Config::for_tests()
    } else {
        Config::default()
    };
    let config = ConfigBuilder::from_config(timings)
        .group(&args.group)
        .build()?;
    let builder = match &args.nats {
        Some(url) => {
            let client = parti::nats::async_nats::connect(url.as_str())
                .await
                .map_err(|e| format!("cannot connect to NATS: {e}"))?;
            Manager::builder_nats(client)
        }
        None => Manager::builder(parti_testkit::MemoryBackend::new(&config)),
    };
    let manager = builder
        .config(config)
        .partitions(StaticSource::numbered(&args.group, args.partitions))
        .hooks(Printer)
        .start()
        .await?;
    println!(
        "{} is stable and owns {} partitions",
        manager
            .worker_id()
            .map(|w| w.to_string())
            .unwrap_or_default(),
        manager.assignment().len()
    );
    let mut state = manager.subscribe_state();
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = sleep_or_forever(args.run_for) => {}
        // A fatal error (a hook that panicked) ends the manager by itself.
        _ = state.wait_for(|s| *s == State::Shutdown) => {}
    }
    manager.stop().await?;
    println!("stopped");
    Ok(())
}

async fn sleep_or_forever(d: Option<Duration>) {
    match d {
        Some(d) => tokio::time::sleep(d).await,
        None => std::future::pending().await,
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    match run(Args::parse()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("basic: {e}");
            ExitCode::FAILURE
        }
    }
}
