//! Movement stays minimal at every size: a crash, a graceful stop (for good)
//! and a join each move at most 1.1 × the optimal number of partitions, also
//! while the leader is overloaded and sees every change late (a watch that
//! lags behind while its timers run on time, as 100 workers on two cores
//! do), and also after a history that leaves many workers on the edge of the
//! strategy's band (a scale-up, a crash). Simulated, with S1–S6 checked all
//! along.

// Test code: unwrap, expect and panic are how it asserts.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use parti_core::Config;
use parti_strategies::Sticky;
use parti_testkit::sim::{FaultSet, Scripted, SimConfig, SimReport, Simulator};
use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::sync::Arc;
use std::time::Duration;

/// When the scripted change happens (after the cold start settled).
const AT: u64 = 60_000;

/// When the history before the change (joins, a crash) happens: after the
/// cold start (its window is 30 s), early enough for its planned-scale window
/// (10 s) and handoff to finish before [`AT`].
const BEFORE: u64 = 34_000;

#[derive(Clone, Copy, Debug)]
enum Change {
    Crash,
    Stop,
    Join,
}

fn ms(d: Duration) -> u64 {
    d.as_millis() as u64
}

/// Runs `workers` workers (plus whatever `history` adds) over `partitions`
/// partitions through `history` at [`BEFORE`] and one `change` at [`AT`],
/// the leader lagging by `lag` ms from then on for a while; returns the
/// report, the number of moves after the change and the optimum.
fn run(
    workers: usize,
    partitions: usize,
    history: &[Scripted],
    change: Change,
    lag: u64,
    seed: u64,
) -> (SimReport, u64, u64) {
    let mut cfg = SimConfig::new(seed);
    cfg.workers = workers;
    cfg.partitions = partitions;
    cfg.faults = FaultSet::none();
    cfg.config = Config::default();
    cfg.config.worker_id_max = (workers as u32) * 2 + 10;
    cfg.duration_ms = AT + 40_000;
    cfg.quiet_ms = 20_000;
    let step = match change {
        Change::Crash => Scripted::CrashFollower,
        Change::Stop => Scripted::StopFollower,
        Change::Join => Scripted::Join,
    };
    let mut script: Vec<(u64, Scripted)> = history.iter().map(|s| (BEFORE, s.clone())).collect();
    if lag > 0 {
        script.push((
            AT,
            Scripted::LagLeader {
                lag,
                for_ms: 15_000,
            },
        ));
    }
    script.push((AT, step));
    cfg.script = Some(script);
    let report = Simulator::new(cfg, Arc::new(Sticky::default())).run();
    assert!(
        report.violations.is_empty(),
        "seed {seed}: {:?}",
        report.violations
    );
    let moved = report.move_times.iter().filter(|t| **t >= AT).count() as u64;
    let best = match change {
        // The partitions the victim held: each must move, nothing else need.
        Change::Crash | Change::Stop => {
            let removal = report
                .removals
                .iter()
                .find(|r| r.at == AT)
                .expect("the scripted change took a worker out");
            removal.held as u64
        }
        Change::Join => {
            let joined = history.iter().filter(|s| **s == Scripted::Join).count();
            optimal_join(workers + joined, partitions)
        }
    };
    (report, moved, best)
}

/// `history` in short: each step with how many times it repeats.
fn describe(history: &[Scripted]) -> String {
    if history.is_empty() {
        return "none".into();
    }
    let mut runs: Vec<(usize, &Scripted)> = Vec::new();
    for step in history {
        match runs.last_mut() {
            Some((n, s)) if *s == step => *n += 1,
            _ => runs.push((1, step)),
        }
    }
    let parts: Vec<String> = runs.iter().map(|(n, s)| format!("{n} × {s:?}")).collect();
    parts.join(", ")
}

/// The moves after [`AT`] version by version: how many, how many of them
/// left the victim, how many workers gave and took the others.
fn trace(report: &SimReport) -> String {
    let victim = report
        .removals
        .iter()
        .find(|r| r.at == AT)
        .map(|r| &r.worker);
    let mut text = String::new();
    for (version, pairs) in report.moves_by_version(AT) {
        let total: usize = pairs.iter().map(|p| p.2).sum();
        let own: usize = pairs
            .iter()
            .filter(|p| Some(&p.0) == victim)
            .map(|p| p.2)
            .sum();
        let others: Vec<_> = pairs.iter().filter(|p| Some(&p.0) != victim).collect();
        let givers: BTreeSet<_> = others.iter().map(|p| &p.0).collect();
        let takers: BTreeSet<_> = others.iter().map(|p| &p.1).collect();
        let _ = write!(text, "\n  version {version}: {total} moved, ");
        if victim.is_some() {
            let _ = write!(text, "{own} from the victim, {} from ", total - own);
        }
        let _ = write!(text, "{} workers to {} workers", givers.len(), takers.len());
    }
    text
}

/// The fewest moves a join needs: the newcomer's share. (Choose sizes where
/// the newcomer's share is above the strategy's band: Sticky leaves a
/// newcomer empty when every share is already within ±5 %, e.g. 100 workers ×
/// 10 partitions + 1.)
fn optimal_join(workers: usize, partitions: usize) -> u64 {
    (partitions / (workers + 1)) as u64
}

/// Runs `change` after `history` and asserts it moved at least the optimum
/// and at most 1.1 × it.
fn check_one(
    workers: usize,
    partitions: usize,
    history: &[Scripted],
    change: Change,
    lag: u64,
    seed: u64,
) {
    let (report, moved, best) = run(workers, partitions, history, change, lag, seed);
    println!(
        "{workers} workers, {partitions} partitions, history {}, {change:?}, leader lag {lag} ms, seed {seed}: moved {moved} (optimal {best}), {} commits{}",
        describe(history),
        report.commits,
        trace(&report)
    );
    assert!(
        moved >= best && moved * 10 <= best * 11,
        "{change:?} among {workers} workers after {} (leader lag {lag} ms, seed {seed}): moved {moved}, optimal {best}{}\n{:?}",
        describe(history),
        trace(&report),
        report.commit_log
    );
}

fn check(workers: usize, per_worker: usize, lag: u64, seed: u64) {
    for change in [Change::Crash, Change::Stop, Change::Join] {
        check_one(workers, workers * per_worker, &[], change, lag, seed);
    }
}

/// A lag that makes most members look older than the heartbeat TTL plus the
/// emergency grace to the leader, though every one of them renews on time.
fn heavy_lag() -> u64 {
    let c = Config::default();
    ms(c.heartbeat_ttl + c.effective_emergency_grace()) - ms(c.heartbeat_interval) / 2
}

#[test]
fn ten_workers() {
    check(10, 20, 0, 1);
    check(10, 20, heavy_lag(), 2);
}

#[test]
fn a_hundred_workers() {
    check(100, 20, 0, 3);
    check(100, 20, heavy_lag(), 4);
}

/// About a minute (test profile): possible since followers watch only
/// their own and the leader's member keys (the cold start of 1 000 workers
/// used to trip the simulator's livelock guard). 20 partitions per worker:
/// with 5, a newcomer's share is inside Sticky's band and it stays empty.
#[test]
fn a_thousand_workers() {
    check(1000, 20, 0, 5);
    check(1000, 20, heavy_lag(), 6);
}

/// The demo's history at 1 000 workers (issue 10): 700 workers start, 300
/// more join after the cold start (as when a loaded machine registers them
/// late), 100 partitions per worker in the end. Every newcomer used to be
/// filled to the lower edge of Sticky's band, 95; a graceful stop raises
/// every share to 100.1 and the edge to 96, so all 300 newcomers fell under
/// it and the stop moved 300 partitions instead of the stopped worker's
/// ~100 (version by version: the victim's partitions, and one partition
/// from each of about 200 donors to as many newcomers).
#[test]
fn a_graceful_stop_after_a_scale_up_of_300() {
    let history = vec![Scripted::Join; 300];
    check_one(700, 100_000, &history, Change::Stop, 0, 7);
}

/// The same history at 100 workers (30 join 70): the newcomers on the edge
/// are fewer than the stopped worker's partitions, which lift them all. A
/// crash after it too. (Not a join: at 100 partitions per worker a newcomer
/// gets less than its full share, as Sticky's band allows, and
/// [`check_one`] wants at least the share.)
#[test]
fn a_hundred_workers_after_a_scale_up_of_30() {
    let history = vec![Scripted::Join; 30];
    for change in [Change::Stop, Change::Crash] {
        check_one(70, 10_000, &history, change, 0, 8);
    }
}

/// The scale report's history (issue 10): 10 partitions per worker, a crash,
/// then a graceful stop. Rounded to whole partitions, Sticky's ±5 % band of
/// a share of 10.1 was [10, 10], which cannot hold 1 000 partitions: the ten
/// workers that took one of the crashed worker's partitions had to shed it
/// again at the stop, and it landed elsewhere (moved 15, optimal 10).
#[test]
fn a_graceful_stop_after_a_crash_at_10_per_worker() {
    check_one(100, 1_000, &[Scripted::CrashFollower], Change::Stop, 0, 9);
    check_one(
        1000,
        10_000,
        &[Scripted::CrashFollower],
        Change::Stop,
        0,
        10,
    );
}
