//! A user-written assignment strategy, checked against the strategy contract
//! of `parti-testkit` before it is used.
//!
//! ```text
//! cargo run -p parti-examples --example custom_strategy                 # check, then run 3 workers in memory
//! cargo run -p parti-examples --example custom_strategy -- --check-only
//! cargo run -p parti-examples --example custom_strategy -- --nats nats://127.0.0.1:4222 --group g
//! ```
//!
//! The strategy is rendezvous hashing (highest random weight): every worker
//! draws a pseudo-random score for every partition from a hash of both IDs
//! (scaled by the worker's capacity) and the highest score wins. It needs no
//! ring and no state, and it is *consistent*: when a worker joins, only
//! partitions it now wins move (to it); when one leaves, only its partitions
//! move. It ignores partition weights, so it promises no weighted balance.
//!
//! A strategy must be a pure, deterministic function of its input as *sets*
//! (the order of `workers` and `partitions` must not matter), must refuse bad
//! input with a typed error instead of panicking, and must give every partition
//! exactly one owner. `parti_testkit::strategy_contract::check_strategy` checks
//! all of that on edge cases and on generated inputs, plus the balance,
//! movement and stability the strategy claims: run it in the strategy's own
//! tests.

use clap::Parser;
use parti::{
    AssignmentInput, AssignmentStrategy, ConfigBuilder, Manager, Placement, StaticSource,
    StrategyError, WorkerSpec,
};
use parti_testkit::strategy_contract::{Contract, FixedPoint, Movement, check_strategy};
use std::process::ExitCode;
use std::time::Duration;

/// Rendezvous (highest random weight) hashing, capacity-aware.
#[derive(Debug, Default, Clone, Copy)]
struct Rendezvous;

/// 64-bit FNV-1a: a stable hash of the worker ID (std's `DefaultHasher` may
/// change between Rust releases, and every leader must compute the same).
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// SplitMix64 finaliser: spreads the bits of a combined hash.
fn mix(mut x: u64) -> u64 {
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

impl Rendezvous {
    /// The score of `worker` for the partition hashed to `partition`:
    /// `capacity / -ln(u)` with `u` uniform in (0, 1], the weighted form of
    /// rendezvous hashing (a worker of capacity 2 wins twice as often).
    fn score(worker: &WorkerSpec, worker_hash: u64, partition: u64) -> f64 {
        let h = mix(worker_hash ^ mix(partition));
        // 53 random bits, shifted away from 0 so that ln(u) is finite.
        let u = ((h >> 11) as f64 + 1.0) / (1u64 << 53) as f64;
        worker.effective_capacity() as f64 / -u.ln()
    }
}

impl AssignmentStrategy for Rendezvous {
    fn name(&self) -> &str {
        "rendezvous"
    }

    fn assign(&self, input: &AssignmentInput<'_>) -> Result<Placement, StrategyError> {
        // No workers, duplicate IDs or keys, a malformed `previous`: typed errors.
        parti::validate_input(input)?;
        let hashes: Vec<u64> = input
            .workers
            .iter()
            .map(|w| fnv1a(w.id.as_str().as_bytes()))
            .collect();
        let owners = input
            .partitions
            .iter()
            .map(|p| {
                let key = p.id().0;
                let mut best = 0usize;
                let mut best_score = f64::MIN;
                for (i, w) in input.workers.iter().enumerate() {
                    let score = Self::score(w, hashes[i], key);
                    // Ties (vanishingly rare) go to the smaller ID, so the
                    // answer does not depend on the order of `workers`.
                    let wins = score > best_score
                        || (score == best_score && w.id < input.workers[best].id);
                    if wins {
                        best = i;
                        best_score = score;
                    }
                }
                best as u32
            })
            .collect();
        Ok(Placement { owners })
    }
}

/// A user strategy, checked with the testkit's contract checker, then used.
#[derive(Parser, Debug)]
#[command(name = "custom_strategy", version, about)]
struct Args {
    /// NATS server URL. Without it, `--workers` workers run in this process on
    /// an in-memory store.
    #[arg(long)]
    nats: Option<String>,
    /// Group name.
    #[arg(long, default_value = "custom-strategy")]
    group: String,
    /// Number of partitions.
    #[arg(long, default_value_t = 24)]
    partitions: usize,
    /// Workers to run in memory (ignored with `--nats`: one per process).
    #[arg(long, default_value_t = 3)]
    workers: usize,
    /// Generated cases for the contract check.
    #[arg(long, default_value_t = 16)]
    cases: u32,
    /// Only run the contract check.
    #[arg(long)]
    check_only: bool,
    /// With `--nats`: stop after this long (e.g. `30s`) instead of on Ctrl-C.
    #[arg(long, value_parser = humantime::parse_duration)]
    run_for: Option<Duration>,
}

/// What Rendezvous promises: every universal check, consistent movement, and
/// (it ignores `previous`) the same answer when fed its own output.
fn contract(cases: u32) -> Contract {
    Contract {
        movement: Movement::Consistent,
        fixed_point: FixedPoint::Always,
        cases,
        max_workers: 20,
        max_partitions: 300,
        ..Contract::default()
    }
}

async fn run(args: Args) -> Result<(), Box<dyn std::error::Error>> {
    check_strategy(&Rendezvous, &contract(args.cases))?;
    println!(
        "rendezvous passes the strategy contract ({} generated cases and the edge cases)",
        args.cases
    );
    if args.check_only {
        return Ok(());
    }
    let source = StaticSource::numbered(&args.group, args.partitions);
    if let Some(url) = &args.nats {
        let client = parti::nats::async_nats::connect(url.as_str())
            .await
            .map_err(|e| format!("cannot connect to NATS: {e}"))?;
        let manager = Manager::builder_nats(client)
            .config(
                ConfigBuilder::from_config(parti::Config::default())
                    .group(&args.group)
                    .build()?,
            )
            .strategy(Rendezvous)
            .partitions(source)
            .start()
            .await?;
        println!("owns {} partitions", manager.assignment().len());
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = async { match args.run_for { Some(d) => tokio::time::sleep(d).await, None => std::future::pending().await } } => {}
        }
        manager.stop().await?;
        return Ok(());
    }
    let config = ConfigBuilder::from_config(parti::Config::for_tests())
        .group(&args.group)
        .build()?;
    let store = parti_testkit::MemoryBackend::new(&config);
    let mut managers = Vec::new();
    for _ in 0..args.workers.max(1) {
        let manager = Manager::builder(store.handle())
            .config(config.clone())
            .strategy(Rendezvous)
            .partitions(source.clone())
            .start()
            .await?;
        managers.push(manager);
    }
    // The group has settled once every partition is owned and every worker
    // owns some (the last one to join waits for the planned-scale window).
    let settle = tokio::time::Instant::now() + config.startup_timeout;
    loop {
        let owned: Vec<usize> = managers.iter().map(|m| m.assignment().len()).collect();
        let done = owned.iter().sum::<usize>() == args.partitions && owned.iter().all(|&n| n > 0);
        if done || tokio::time::Instant::now() > settle {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for m in &managers {
        let a = m.assignment();
        println!(
            "{} owns {:>2} partitions{}",
            m.worker_id().map(|w| w.to_string()).unwrap_or_default(),
            a.len(),
            if m.is_leader() { " (leader)" } else { "" }
        );
    }
    for m in managers {
        m.stop().await?;
    }
    println!("stopped");
    Ok(())
}

#[tokio::main]
async fn main() -> ExitCode {
    match run(Args::parse()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("custom_strategy: {e}");
            ExitCode::FAILURE
        }
    }
}
