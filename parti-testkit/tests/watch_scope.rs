//! Steady-state watch traffic: a worker that holds its ID and does not lead
//! watches only its own member key and the leader's (`MemberScope::Own`), so
//! the other members' heartbeats never reach it and a group of N workers
//! makes O(N) watch deliveries per heartbeat interval, not N². Checked on simulated
//! clusters at rest, after a leader crash and after a leader is deposed (cut
//! off, then back as a follower); every run also checks S1–S6.

// Test code: unwrap, expect and panic are how it asserts.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use parti_core::{Config, DegradedPolicy};
use parti_strategies::Sticky;
use parti_testkit::sim::{FaultSet, Scripted, SimConfig, SimReport, Simulator};
use std::sync::Arc;

const WORKERS: usize = 6;
const QUIET_MS: u64 = 60_000;

/// A 3-minute run without random faults whose last minute is the quiet
/// period in which follower deliveries are counted.
fn run(seed: u64, script: Vec<(u64, Scripted)>) -> SimReport {
    let mut cfg = SimConfig::new(seed);
    cfg.workers = WORKERS;
    cfg.partitions = 64;
    cfg.faults = FaultSet::none();
    cfg.config = Config::default();
    cfg.config.degraded.policy = DegradedPolicy::StopWhenLeaseExpires;
    cfg.duration_ms = 180_000;
    cfg.quiet_ms = QUIET_MS;
    cfg.script = Some(script);
    let report = Simulator::new(cfg, Arc::new(Sticky::default())).run();
    assert!(
        report.violations.is_empty(),
        "seed {seed}: {:?}",
        report.violations
    );
    assert!(
        report.convergence_ms.is_some(),
        "seed {seed}: no convergence"
    );
    let followers = (WORKERS - 1) as f64;
    let beats = QUIET_MS as f64 / Config::default().heartbeat_interval.as_millis() as f64;
    println!(
        "seed {seed}: {} member records of members other than themselves and the leader \
         delivered to followers in {} s ({:.2} per follower per heartbeat interval)",
        report.follower_member_items,
        QUIET_MS / 1000,
        report.follower_member_items as f64 / followers / beats
    );
    report
}

#[test]
fn a_follower_at_rest_receives_no_other_members_heartbeats() {
    for seed in 1..=3 {
        let r = run(seed, Vec::new());
        assert_eq!(r.follower_member_items, 0, "seed {seed}");
    }
}

#[test]
fn after_a_leader_crash_the_followers_watch_only_their_own_and_the_new_leaders_keys() {
    for seed in 1..=3 {
        let r = run(seed, vec![(60_000, Scripted::CrashLeader)]);
        assert_eq!(r.follower_member_items, 0, "seed {seed}");
    }
}

#[test]
fn a_deposed_leader_narrows_its_watch_again() {
    // Cut off for longer than the election TTL: its leadership lapses and
    // another worker takes over; it comes back as a follower, either still
    // holding its ID (back before its eviction) or after claiming one anew.
    // The others switch to the new leader's key (the old one still renews).
    let election_ttl = Config::default().election_ttl.as_millis() as u64;
    for cut in [election_ttl * 3 / 2, election_ttl * 4] {
        for seed in 1..=3 {
            let r = run(seed, vec![(60_000, Scripted::CutLeader(cut))]);
            assert_eq!(r.follower_member_items, 0, "seed {seed}, cut {cut} ms");
        }
    }
}
