//! Workers started together claim their IDs without racing for the same
//! one: with a preferred ID each (a StatefulSet's ordinals) every worker
//! claims once and no worker watches every member to do so; without one,
//! the free IDs are drawn from a window that follows the competition, so
//! the claims grow about as N·log N (tried lowest-first they grew as N²:
//! 20 000 claims for 200 workers) and the IDs stay compact.

// Test code: unwrap, expect and panic are how it asserts.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use parti_strategies::Sticky;
use parti_testkit::sim::{FaultSet, SimConfig, SimReport, Simulator};
use std::sync::Arc;

/// `workers` started together on a range of 1 000 IDs, no faults, long
/// enough for the cold start to commit.
fn cold_start(workers: usize, seed: u64, preferred_ids: bool) -> SimReport {
    let mut cfg = SimConfig::new(seed);
    cfg.workers = workers;
    cfg.partitions = 64;
    cfg.faults = FaultSet::none();
    cfg.preferred_ids = preferred_ids;
    cfg.config.worker_id_min = 0;
    cfg.config.worker_id_max = 999;
    cfg.duration_ms = cfg.config.cold_start_window.as_millis() as u64 + 20_000;
    cfg.quiet_ms = cfg.duration_ms;
    let report = Simulator::new(cfg, Arc::new(Sticky::default())).run();
    assert!(
        report.violations.is_empty(),
        "seed {seed}, {workers} workers: {:?}",
        report.violations
    );
    assert_eq!(
        report.ids_at_end.len(),
        workers,
        "seed {seed}: not every worker holds an ID"
    );
    report
}

#[test]
fn with_preferred_ids_each_worker_claims_once_and_watches_no_other_member_to_do_so() {
    for (workers, seed) in [(50, 1), (200, 2)] {
        let r = cold_start(workers, seed, true);
        println!(
            "{workers} workers, preferred IDs: {} claims, {} watches of every member to claim, {} member items before the first commit",
            r.claims, r.claim_watches, r.cold_start_member_items
        );
        assert_eq!(r.claims, workers as u64, "seed {seed}");
        assert_eq!(r.claim_watches, 0, "seed {seed}");
        let expected: Vec<u32> = (0..workers as u32).collect();
        assert_eq!(r.ids_at_end, expected, "seed {seed}");
    }
}

#[test]
fn without_preferred_ids_claims_grow_far_slower_than_n_squared_and_ids_stay_compact() {
    for (workers, seeds) in [(50usize, 1..=4u64), (200, 5..=6)] {
        for seed in seeds {
            let r = cold_start(workers, seed, false);
            let highest = r.ids_at_end.last().copied().unwrap_or(0) as usize;
            let gaps = highest + 1 - workers;
            println!(
                "{workers} workers, seed {seed}: {} claims ({:.1} per worker), highest ID {highest}, {gaps} unused IDs below it",
                r.claims,
                r.claims as f64 / workers as f64
            );
            // Lowest-first: about N²/2 (1 250 at 50, 20 000 at 200).
            assert!(
                r.claims <= 15 * workers as u64,
                "seed {seed}: {} claims for {workers} workers",
                r.claims
            );
            assert!(
                gaps <= 2 + workers / 10,
                "seed {seed}: IDs up to {highest} for {workers} workers: {:?}",
                r.ids_at_end
            );
        }
    }
}
