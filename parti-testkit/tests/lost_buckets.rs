//! Lost buckets (memory storage and a server restart, an operator's delete):
//! the store comes back empty, its revisions (hence the terms) starting again
//! from 1. The group must rebuild its state, and no version or epoch may go
//! back as any worker sees it. Scripted scenarios and replays of seeds that
//! once failed with `parti-sim --faults wipe`; every run checks S1–S6.

// Test code: unwrap, expect and panic are how it asserts.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use parti_core::{Config, DegradedPolicy};
use parti_strategies::Sticky;
use parti_testkit::sim::{FaultSet, Scripted, SimConfig, SimReport, Simulator};
use std::sync::Arc;

fn policies() -> [DegradedPolicy; 2] {
    [
        DegradedPolicy::KeepProcessing,
        DegradedPolicy::StopWhenLeaseExpires,
    ]
}

fn assert_clean(r: &SimReport, what: &str) {
    assert!(
        r.violations.is_empty(),
        "{what} (seed {}): {:#?}",
        r.seed,
        r.violations
    );
}

/// A scripted run: 4 workers, 24 partitions, the buckets lost at 60 s for
/// `outage_ms`.
fn lose_buckets(policy: DegradedPolicy, outage_ms: u64, seed: u64) -> SimReport {
    let mut cfg = SimConfig::new(seed);
    cfg.workers = 4;
    cfg.partitions = 24;
    cfg.faults = FaultSet::none();
    cfg.config = Config::default();
    cfg.config.degraded.policy = policy;
    cfg.duration_ms = 60_000 + outage_ms + 120_000;
    cfg.quiet_ms = 100_000;
    cfg.script = Some(vec![(60_000, Scripted::LoseBuckets(outage_ms))]);
    Simulator::new(cfg, Arc::new(Sticky::default())).run()
}

#[test]
fn a_store_lost_for_longer_than_the_id_reservation_is_rebuilt() {
    // Past the reservation, the workers take their IDs back as the same
    // claims (they were cut off): what they knew of the lost store's
    // commit record must not be applied again.
    for policy in policies() {
        for seed in 1..=5 {
            for outage in [5_000, 35_000] {
                let r = lose_buckets(policy, outage, seed);
                assert_clean(&r, &format!("{policy:?}, {outage} ms"));
                assert!(
                    r.convergence_ms.is_some(),
                    "{policy:?}, {outage} ms, seed {seed}: never converged"
                );
            }
        }
    }
}

/// Replays seed `seed` of `parti-sim --faults LIST --workers W --policy P`.
fn replay(faults: &str, workers: usize, policy: DegradedPolicy, seed: u64) -> SimReport {
    let mut cfg = SimConfig::new(seed);
    cfg.workers = workers;
    cfg.faults = FaultSet::parse(faults).unwrap();
    cfg.config.degraded.policy = policy;
    cfg.quiet_ms = (cfg.duration_ms / 3)
        .max(cfg.convergence_bound_ms() + 10_000)
        .min(cfg.duration_ms);
    Simulator::new(cfg, Arc::new(Sticky::default())).run()
}

#[test]
fn seeds_that_once_failed_with_lost_buckets_hold_every_guarantee() {
    use DegradedPolicy::{KeepProcessing as Keep, StopWhenLeaseExpires as Stop};
    // A worker that took its ID back after the store was lost applied the
    // lost store's commit record again (527), or ignored the new store's
    // commit records of a lower term (152, 726).
    let cases = [
        // A worker that took its ID back after the store was lost applied
        // the lost store's commit record again (527), or ignored the new
        // store's commit records of a lower term (152, 726).
        ("wipe", 3, Stop, 527),
        ("wipe", 5, Stop, 152),
        ("wipe", 5, Keep, 321),
        ("wipe", 10, Stop, 726),
        ("wipe", 10, Keep, 742),
        // A leader ignored the new records of a member missing from its
        // snapshot (their revisions were below the lost store's): S3.
        ("all", 5, Keep, 8),
        // The only member that had seen version 5 was cut off while its
        // record expired; epochs went back (S6).
        ("all", 5, Keep, 785),
        // A roster kept a lost store's record that shared its revision with
        // another process's claim in the new store: S1.
        ("all", 10, Keep, 278),
        // Watch commands overtaking each other in the simulator (S4).
        ("all", 10, Keep, 69),
        // Every process that knew the lost store's epochs was gone (the
        // checks must not ask for what nothing remembers).
        ("all", 5, Keep, 66),
        ("all", 3, Stop, 23),
        // A worker cut off while its partitions moved took its ID back in a
        // lost store and held them again under a valid lease (S3).
        ("all", 5, Keep, 108),
        // A graceful restart right after a long outage with lost buckets,
        // before the new leader's first publication (S5 compared too early).
        ("all", 5, Keep, 185),
        // Both workers left during an outage; nobody was started (S4).
        ("all", 5, Stop, 1812),
    ];
    for (faults, workers, policy, seed) in cases {
        let r = replay(faults, workers, policy, seed);
        assert_clean(
            &r,
            &format!("--faults {faults} --workers {workers} {policy:?}"),
        );
    }
}
