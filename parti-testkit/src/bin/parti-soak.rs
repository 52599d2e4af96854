//! `parti-soak`: a chaos soak of real `worker` processes on a real nats-server
//! (see `parti_testkit::soak`). Prints one summary line; exits 1 on a violation
//! (after printing each one), 2 when the harness itself cannot run.
//!
//! ```text
//! parti-soak --worker-bin PATH [--minutes N] [--cluster] [--seed S] [--workers W]
//!            [--partitions P] [--reown-bound SECS] [--log-dir DIR]
//! ```
//!
//! `scripts/soak` builds the worker example and this binary and runs it.

use parti_testkit::soak::run::{SoakOptions, run};
use parti_testkit::soak::summary::summary_line;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

const USAGE: &str = "usage: parti-soak --worker-bin PATH [--minutes N] [--cluster] [--seed S] \
     [--workers W] [--partitions P] [--reown-bound SECS] [--log-dir DIR]";

/// Default bound on the re-own latency, from the worker's test timings: a
/// leader that just recovered from Degraded declares no emergency for
/// `degraded.recovery_grace` (5 s), a dead leader is replaced after its
/// `election_ttl`, a dead member is noticed after `heartbeat_ttl` plus the
/// emergency grace; plus 1 s for the grant to land on a loaded machine. (A kill
/// soon after a cut or a server restart meets all of these at once: seed 42
/// measured 6.7 s.)
fn default_reown_bound() -> Duration {
    let c = parti_core::Config::for_tests();
    c.degraded.recovery_grace
        + c.election_ttl
        + c.heartbeat_ttl
        + c.effective_emergency_grace()
        + Duration::from_secs(1)
}

fn parse() -> Result<SoakOptions, String> {
    let mut minutes = 1.0_f64;
    let mut cluster = false;
    let mut seed = None;
    let mut workers = 4_usize;
    let mut partitions = 24_usize;
    let mut worker_bin = None;
    let mut bound = default_reown_bound().as_secs_f64();
    let mut log_dir = None;
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or_else(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--minutes" => minutes = number(&flag, &value()?)?,
            "--cluster" => cluster = true,
            "--seed" => seed = Some(number(&flag, &value()?)?),
            "--workers" => workers = number(&flag, &value()?)?,
            "--partitions" => partitions = number(&flag, &value()?)?,
            "--worker-bin" => worker_bin = Some(PathBuf::from(value()?)),
            "--reown-bound" => bound = number(&flag, &value()?)?,
            "--log-dir" => log_dir = Some(PathBuf::from(value()?)),
            "-h" | "--help" => return Err(USAGE.into()),
            other => return Err(format!("unknown argument {other}\n{USAGE}")),
        }
    }
    if !(minutes.is_finite() && minutes > 0.0 && minutes <= 24.0 * 60.0) {
        return Err(format!("--minutes must be in (0, 1440] (got {minutes})"));
    }
    if !(bound.is_finite() && bound > 0.0 && bound <= 3600.0) {
        return Err(format!(
            "--reown-bound must be in (0, 3600] seconds (got {bound})"
        ));
    }
    if !(2..=64).contains(&workers) {
        return Err(format!("--workers must be in 2..=64 (got {workers})"));
    }
    if partitions == 0 || partitions > 10_000 {
        return Err(format!(
            "--partitions must be in 1..=10000 (got {partitions})"
        ));
    }
    let worker_bin = worker_bin.ok_or_else(|| format!("--worker-bin is required\n{USAGE}"))?;
    let seed = seed.unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| d.as_nanos() as u64 % 1_000_000)
    });
    let log_dir =
        log_dir.unwrap_or_else(|| std::env::temp_dir().join(format!("parti-soak-{seed}")));
    Ok(SoakOptions {
        duration: Duration::from_secs_f64(minutes * 60.0),
        cluster,
        seed,
        workers,
        partitions,
        worker_bin,
        reown_bound: Duration::from_secs_f64(bound),
        log_dir,
    })
}

fn number<T: std::str::FromStr>(flag: &str, text: &str) -> Result<T, String>
where
    T::Err: std::fmt::Display,
{
    text.parse()
        .map_err(|e| format!("{flag}: {e} (got {text:?})"))
}

fn main() -> ExitCode {
    let opts = match parse() {
        Ok(opts) => opts,
        Err(e) => {
            eprintln!("parti-soak: {e}");
            return ExitCode::from(2);
        }
    };
    let minutes = opts.duration.as_secs_f64() / 60.0;
    let (seed, cluster) = (opts.seed, opts.cluster);
    println!(
        "soak: seed {seed}, {minutes} min, {} workers, {} partitions, {}, re-own bound {:?}, logs in {} (replay: --seed {seed})",
        opts.workers,
        opts.partitions,
        if cluster {
            "3-node cluster, R3"
        } else {
            "one server, file storage"
        },
        opts.reown_bound,
        opts.log_dir.display()
    );
    let log_dir = opts.log_dir.clone();
    match run(opts) {
        Ok(verdict) => {
            for v in verdict.violations.iter().take(50) {
                println!("violation: {v}");
            }
            for t in &verdict.tolerated {
                println!(
                    "tolerated cut-off overlap: {} kept by {} while {} had it, {:.3} s",
                    t.partition,
                    t.cut_off,
                    t.new_owner,
                    t.duration as f64 / 1e6
                );
            }
            println!("{}", summary_line(&verdict, minutes, seed, cluster));
            if verdict.violations.is_empty() {
                ExitCode::SUCCESS
            } else {
                println!("soak: timeline and worker stderr in {}", log_dir.display());
                ExitCode::FAILURE
            }
        }
        Err(e) => {
            eprintln!("parti-soak: {e}");
            ExitCode::from(2)
        }
    }
}
