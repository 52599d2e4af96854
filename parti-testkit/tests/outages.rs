//! Store outages on a scripted simulated cluster: the whole group loses the
//! store at once (the server is down for everybody; keys still expire).
//! Under `KeepProcessing` nothing is released or moved, however long the
//! outage; under `StopWhenLeaseExpires` every worker gets its own partitions
//! back. Either way each worker keeps its ID and there is no cold-start
//! wait after the return. Every run also checks S1–S6.

// Test code: unwrap, expect and panic are how it asserts.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use parti_core::records::Lifecycle;
use parti_core::{Config, DegradedPolicy};
use parti_strategies::Sticky;
use parti_testkit::sim::{FaultSet, Scripted, SimConfig, SimReport, Simulator};
use std::sync::Arc;

/// When the outage starts: long after the cold start settled.
const OUTAGE_AT: u64 = 60_000;

fn run(policy: DegradedPolicy, outage_ms: u64) -> SimReport {
    let mut config = Config::default();
    config.degraded.policy = policy;
    run_with(config, 5, outage_ms)
}

fn run_with(config: Config, seed: u64, outage_ms: u64) -> SimReport {
    let mut cfg = SimConfig::new(seed);
    cfg.workers = 4;
    cfg.partitions = 24;
    cfg.faults = FaultSet::none();
    cfg.config = config;
    cfg.duration_ms = OUTAGE_AT + outage_ms + 120_000;
    cfg.quiet_ms = 100_000;
    cfg.script = Some(vec![(OUTAGE_AT, Scripted::CutAll(outage_ms))]);
    let report = Simulator::new(cfg, Arc::new(Sticky::default())).run();
    assert!(
        report.violations.is_empty(),
        "seed {seed}: {:?}",
        report.violations
    );
    report
}

/// The bound on recovery after the store returns: heartbeat TTL + 1 s.
fn recovery_bound() -> u64 {
    Config::default().heartbeat_ttl.as_millis() as u64 + 1_000
}

/// The first commit after the store returned: a takeover under a new term,
/// never a cold start, within the bound.
fn assert_prompt_takeover(r: &SimReport, back_at: u64) {
    let after: Vec<_> = r
        .commit_log
        .iter()
        .filter(|(t, _, _)| *t >= back_at)
        .collect();
    let first = after.first().expect("a commit after the store returned");
    assert_ne!(first.2, Lifecycle::ColdStart, "{:?}", r.commit_log);
    assert!(
        first.0 <= back_at + recovery_bound(),
        "first commit {} ms after the return: {:?}",
        first.0 - back_at,
        r.commit_log
    );
    assert!(
        after.iter().all(|c| c.2 != Lifecycle::ColdStart),
        "{:?}",
        r.commit_log
    );
}

#[test]
fn keep_processing_releases_nothing_through_outages_of_any_length() {
    for outage in [8_000, 20_000, 45_000, 300_000] {
        let r = run(DegradedPolicy::KeepProcessing, outage);
        assert!(r.releases.is_empty(), "{outage} ms: {:?}", r.releases);
        assert_eq!(r.moved, 0, "{outage} ms");
        assert_prompt_takeover(&r, OUTAGE_AT + outage);
    }
}

#[test]
fn stop_when_lease_expires_gets_the_same_partitions_back_without_a_cold_start() {
    for outage in [20_000, 45_000, 300_000] {
        let r = run(DegradedPolicy::StopWhenLeaseExpires, outage);
        let back_at = OUTAGE_AT + outage;
        assert!(
            r.releases.iter().all(|(t, _, _)| *t < back_at),
            "{outage} ms: released after the return: {:?}",
            r.releases
        );
        assert!(
            !r.releases.is_empty(),
            "the lease expired: partitions were given up"
        );
        assert_eq!(r.moved, 0, "{outage} ms: same owners after the return");
        assert_prompt_takeover(&r, back_at);
    }
}

#[test]
fn test_timings_release_nothing_although_workers_reconnect_seconds_apart() {
    // Test timings have windows (recovery grace, cold start, planned scale)
    // far shorter than a NATS client's reconnect backoff (up to 4 s): the
    // workers of the group return seconds apart.
    for seed in 1..=40 {
        for outage in [3_000, 8_000, 20_000] {
            let r = run_with(Config::for_tests(), seed, outage);
            assert!(
                r.releases.is_empty(),
                "seed {seed}, {outage} ms: {:?}",
                r.releases
            );
            assert_eq!(r.moved, 0, "seed {seed}, {outage} ms");
        }
    }
}
