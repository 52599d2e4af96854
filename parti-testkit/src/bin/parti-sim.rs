//! `parti-sim`: runs the deterministic simulator over many seeds and checks the
//! guarantees S1–S6. Prints one summary line; exits 1 on any violation, after
//! printing the first failing seed and a trace of its last events.
//!
//! ```text
//! parti-sim --seeds N [--first-seed S] [--workers W] [--partitions P] [--minutes M]
//!           [--faults all|none|crash,pause,cut,drift,restart,leave,join,refresh,lost,delay,outage,wipe]
//!           [--policy keep|stop] [--plant BUG] [--list-plants] [--timeline] [--trace] [--per-seed]
//!           [--threads T] [--preferred-ids]
//! ```
//!
//! `--preferred-ids` gives the workers started at the beginning a preferred
//! ID each (worker `i` prefers ID `i`, as a StatefulSet's ordinal would).
//! The summary line counts the ID claims sent (`claims_total`, of which
//! `cold_start_claims_total` before each seed's first commit, `max_claims`
//! in one seed) and the highest ID held at the end of any seed.
//!
//! `--per-seed` prints one line per seed (moves, commits, steps, convergence
//! and a fingerprint of the run, then the ID claims sent) before the summary:
//! two builds that print the same lines simulated the same thing.
//!
//! `--plant` and `--list-plants` need the `planted-bugs` feature:
//! `cargo run --release -p parti-testkit --features planted-bugs --bin parti-sim -- --plant BUG`.

use parti_core::DegradedPolicy;
#[cfg(feature = "planted-bugs")]
use parti_core::PlantedBug;
use parti_testkit::sim::{FaultSet, SimConfig, Simulator, run_seeds};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Instant;

struct Args {
    seeds: u64,
    first_seed: u64,
    workers: usize,
    partitions: usize,
    minutes: f64,
    faults: FaultSet,
    policy: DegradedPolicy,
    #[cfg(feature = "planted-bugs")]
    plant: Option<PlantedBug>,
    timeline: bool,
    per_seed: bool,
    trace: bool,
    threads: usize,
    preferred_ids: bool,
}

fn usage() -> &'static str {
    "usage: parti-sim --seeds N [--first-seed S] [--workers W] [--partitions P] [--minutes M] \
     [--faults all|none|LIST] [--policy keep|stop] [--plant BUG] [--list-plants] [--timeline] [--trace] [--per-seed] [--threads T] [--preferred-ids]\n\
     (--plant and --list-plants need a build with `--features planted-bugs`)"
}

/// What `--plant` says in a build without planted bugs.
#[cfg(not(feature = "planted-bugs"))]
const NO_PLANTS: &str = "this parti-sim was built without planted bugs; rebuild it with \
     `cargo run --release -p parti-testkit --features planted-bugs --bin parti-sim -- --plant BUG`";

fn parse() -> Result<Option<Args>, String> {
    let mut args = Args {
        seeds: 100,
        first_seed: 1,
        workers: 5,
        partitions: 64,
        minutes: 5.0,
        faults: FaultSet::all(),
        policy: DegradedPolicy::StopWhenLeaseExpires,
        #[cfg(feature = "planted-bugs")]
        plant: None,
        timeline: false,
        per_seed: false,
        trace: false,
        threads: std::thread::available_parallelism().map_or(1, |n| n.get()),
        preferred_ids: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = |name: &str| it.next().ok_or_else(|| format!("{name} needs a value"));
        match flag.as_str() {
            "--seeds" => {
                args.seeds = value("--seeds")?
                    .parse()
                    .map_err(|e| format!("--seeds: {e}"))?
            }
            "--first-seed" => {
                args.first_seed = value("--first-seed")?
                    .parse()
                    .map_err(|e| format!("--first-seed: {e}"))?
            }
            "--workers" => {
                args.workers = value("--workers")?
                    .parse()
                    .map_err(|e| format!("--workers: {e}"))?
            }
            "--partitions" => {
                args.partitions = value("--partitions")?
                    .parse()
                    .map_err(|e| format!("--partitions: {e}"))?
            }
            "--minutes" => {
                args.minutes = value("--minutes")?
                    .parse()
                    .map_err(|e| format!("--minutes: {e}"))?
            }
            "--threads" => {
                args.threads = value("--threads")?
                    .parse()
                    .map_err(|e| format!("--threads: {e}"))?
            }
            "--faults" => args.faults = FaultSet::parse(&value("--faults")?)?,
            "--policy" => {
                args.policy = match value("--policy")?.as_str() {
                    "keep" => DegradedPolicy::KeepProcessing,
                    "stop" => DegradedPolicy::StopWhenLeaseExpires,
                    other => return Err(format!("--policy: expected keep or stop, got {other}")),
                }
            }
            #[cfg(feature = "planted-bugs")]
            "--plant" => {
                let name = value("--plant")?;
                args.plant =
                    Some(PlantedBug::from_name(&name).ok_or_else(|| {
                        format!("unknown planted bug {name:?} (see --list-plants)")
                    })?);
            }
            #[cfg(feature = "planted-bugs")]
            "--list-plants" => {
                for bug in PlantedBug::ALL {
                    println!("{}", bug.name());
                }
                return Ok(None);
            }
            #[cfg(not(feature = "planted-bugs"))]
            "--plant" | "--list-plants" => return Err(NO_PLANTS.into()),
            "--timeline" => args.timeline = true,
            "--per-seed" => args.per_seed = true,
            "--trace" => args.trace = true,
            "--preferred-ids" => args.preferred_ids = true,
            "--help" | "-h" => {
                println!("{}", usage());
                return Ok(None);
            }
            other => return Err(format!("unknown argument {other}\n{}", usage())),
        }
    }
    if args.workers == 0 || args.partitions == 0 {
        return Err("--workers and --partitions must be at least 1".into());
    }
    Ok(Some(args))
}

fn main() -> ExitCode {
    let args = match parse() {
        Ok(Some(a)) => a,
        Ok(None) => return ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("parti-sim: {e}");
            return ExitCode::from(2);
        }
    };
    let mut base = SimConfig::new(args.first_seed);
    base.workers = args.workers;
    base.partitions = args.partitions;
    base.duration_ms = (args.minutes * 60_000.0) as u64;
    base.quiet_ms = (base.duration_ms / 3)
        .max(base.convergence_bound_ms() + 10_000)
        .min(base.duration_ms);
    base.faults = args.faults;
    base.preferred_ids = args.preferred_ids;
    base.config.degraded.policy = args.policy;
    // Every worker of the group can hold an ID: the default range (100 IDs)
    // grows to the group's size (a range holds at most 1 000 000 IDs).
    let group = u32::try_from(args.workers)
        .unwrap_or(u32::MAX)
        .min(1_000_000);
    let last_id = base.config.worker_id_min.saturating_add(group - 1);
    base.config.worker_id_max = base.config.worker_id_max.max(last_id);
    #[cfg(feature = "planted-bugs")]
    {
        base.plant = args.plant;
    }
    let strategy = Arc::new(parti_strategies::default_strategy());
    if args.trace {
        // Every event of the first seed, up to its first violation.
        base.trace = true;
        base.trace_len = usize::MAX;
        let report = Simulator::new(base, strategy).run();
        for line in &report.trace {
            println!("{line}");
        }
        for v in &report.violations {
            println!("VIOLATION {v}");
        }
        return if report.violations.is_empty() {
            ExitCode::SUCCESS
        } else {
            ExitCode::FAILURE
        };
    }
    if args.timeline {
        base.timeline = true;
        println!(
            "parti-sim timeline: seed {}, {} workers, {} partitions, {} simulated minutes",
            args.first_seed, args.workers, args.partitions, args.minutes
        );
        let report = Simulator::new(base, strategy).run();
        println!("---");
        if report.violations.is_empty() {
            println!(
                "every guarantee held (S1 unique IDs, S2 one leader, S3 exclusive ownership, S4 convergence in {} ms, S5 stable restarts, S6 monotonic versions); {} commits, {} partition moves",
                report.convergence_ms.unwrap_or(0),
                report.commits,
                report.moved
            );
            return ExitCode::SUCCESS;
        }
        for v in &report.violations {
            println!("VIOLATION {v}");
        }
        return ExitCode::FAILURE;
    }
    let started = Instant::now();
    #[cfg(feature = "planted-bugs")]
    let stop_at_first = args.plant.is_some();
    #[cfg(not(feature = "planted-bugs"))]
    let stop_at_first = false;
    let summary = run_seeds(
        &base,
        args.first_seed,
        args.seeds,
        strategy.clone(),
        args.threads,
        stop_at_first,
    );
    let wall = started.elapsed().as_secs_f64();
    if args.per_seed {
        for (_, line) in &summary.outcomes {
            println!("{line}");
        }
    }
    println!("{}", summary.line());
    let cluster_minutes = summary.seeds as f64 * args.minutes;
    eprintln!(
        "parti-sim: {:.1} s wall, {:.0} simulated cluster-minutes/s, {} steps, longest tolerated overlap {} ms",
        wall,
        cluster_minutes / wall.max(1e-9),
        summary.steps,
        summary.tolerated_overlap_ms
    );
    if let Some(seed) = summary.failing_seeds.first() {
        println!("failing seeds: {:?}", summary.failing_seeds);
        println!("first failing seed: {seed}");
        let mut cfg = base.clone();
        cfg.seed = *seed;
        cfg.trace = true;
        let report = Simulator::new(cfg, strategy).run();
        println!("--- last events of seed {seed} ---");
        for line in &report.trace {
            println!("{line}");
        }
        for v in &report.violations {
            println!("VIOLATION {v}");
        }
        println!("replay: parti-sim --seeds 1 --first-seed {seed} (same other flags)");
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}
