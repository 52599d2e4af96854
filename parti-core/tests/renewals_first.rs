//! Renewals leave before heavy work: a turn of the state machine that queues
//! a renewal (or in which the leader's controller would evaluate while its
//! leadership could use one) ends there, and the controller's work follows a
//! millisecond later. A driver carries out commands only between turns, so
//! a renewal queued in the same turn as a rebalance of a million partitions
//! would leave seconds late on a starved machine, and the leadership lease
//! (measured from the renewal's start) would lapse under a live leader.
//! Driven by hand through the public sans-IO API, with a store that applies
//! every write at once.

// Test code: unwrap, expect and panic are how it asserts.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use parti_core::backend::{AssignmentSnapshot, Change, WatchEvent};
use parti_core::strategy::validate_input;
use parti_core::{
    AssignmentInput, AssignmentStrategy, Command, Config, Event, InstanceId, Instant, Outcome,
    Partition, Placement, StrategyError, Worker,
};
use std::sync::Arc;
use std::time::Duration;

#[derive(Debug)]
struct AllToFirst;

impl AssignmentStrategy for AllToFirst {
    fn name(&self) -> &str {
        "all-to-first"
    }

    fn assign(&self, input: &AssignmentInput<'_>) -> Result<Placement, StrategyError> {
        validate_input(input)?;
        Ok(Placement {
            owners: vec![0; input.partitions.len()],
        })
    }
}

/// One worker alone in its group, and a store that answers at once.
struct Solo {
    worker: Worker,
    now: Instant,
    revision: u64,
    /// When the last leadership renewal was carried out.
    renewed_at: Option<Instant>,
    /// Publications carried out.
    published: usize,
}

impl Solo {
    fn new() -> Self {
        Solo {
            worker: Worker::new(
                Config::for_tests(),
                Arc::new(AllToFirst),
                InstanceId(7),
                Instant::ZERO,
            ),
            now: Instant::ZERO,
            revision: 10,
            renewed_at: None,
            published: 0,
        }
    }

    /// The commands queued now, without carrying them out.
    fn queued(&mut self) -> Vec<Command> {
        std::iter::from_fn(|| self.worker.poll_command()).collect()
    }

    /// Carries out `commands` and whatever they lead to.
    fn carry_out(&mut self, commands: Vec<Command>) {
        let mut pending = commands;
        while !pending.is_empty() {
            for command in pending {
                self.answer(command);
            }
            pending = self.queued();
        }
    }

    fn answer(&mut self, command: Command) {
        self.revision += 1;
        let rev = self.revision;
        let (op, outcome, echo) = match command {
            Command::Watch { .. } => {
                self.worker
                    .handle(Event::Watch(WatchEvent::CaughtUp), self.now);
                return;
            }
            Command::ClaimId { op, id, record, .. }
            | Command::RenewLease { op, id, record, .. } => {
                let echo = WatchEvent::Member {
                    id,
                    revision: rev,
                    change: Change::Put(record),
                };
                (op, Outcome::Written(rev), Some(echo))
            }
            Command::RenewLeadership { op, .. } => {
                self.renewed_at = Some(self.now);
                (op, Outcome::Written(rev), None)
            }
            Command::Publish { op, .. } => {
                self.published += 1;
                (op, Outcome::Written(rev), None)
            }
            Command::Campaign { op, .. } => (op, Outcome::Written(rev), None),
            Command::LoadAssignments { op } => {
                (op, Outcome::Loaded(AssignmentSnapshot::default()), None)
            }
            Command::ListPartitions { op } => {
                let list = (0..4)
                    .map(|i| Partition::new(["t".to_string(), format!("p-{i}")]))
                    .collect();
                (op, Outcome::Partitions(list), None)
            }
            _ => return,
        };
        self.worker
            .handle(Event::Completed { op, outcome }, self.now);
        if let Some(item) = echo {
            self.worker.handle(Event::Watch(item), self.now);
        }
    }

    /// One turn at `at`; returns what it queued (not carried out yet).
    fn turn_at(&mut self, at: Instant) -> Vec<Command> {
        self.now = at;
        self.worker.handle_timeout(at);
        self.queued()
    }

    /// Turns at the worker's own deadlines, carrying everything out, until
    /// `until`.
    fn run_until(&mut self, until: Instant) {
        while let Some(next) = self.worker.poll_timeout().filter(|t| *t < until) {
            let commands = self.turn_at(next);
            self.carry_out(commands);
        }
    }
}

fn count(commands: &[Command], what: fn(&Command) -> bool) -> usize {
    commands.iter().filter(|c| what(c)).count()
}

fn is_renewal(c: &Command) -> bool {
    matches!(c, Command::RenewLeadership { .. })
}

fn is_publication(c: &Command) -> bool {
    matches!(c, Command::Publish { .. })
}

/// Elects the solo worker; returns when it leads, with nothing queued.
fn elected() -> Solo {
    let mut solo = Solo::new();
    solo.worker.handle(Event::Start, solo.now);
    let commands = solo.queued();
    solo.carry_out(commands);
    let commands = solo.turn_at(Instant::from_millis(1));
    solo.carry_out(commands);
    assert!(solo.worker.is_leader(), "a worker alone is elected");
    solo
}

#[test]
fn the_turn_that_ends_the_cold_start_renews_leadership_first() {
    let mut solo = elected();
    let config = Config::for_tests();
    // Until just before the end of the cold-start window, everything as
    // usual; then one turn far enough on that a renewal is due too.
    let window_end = Instant::ZERO + config.cold_start_window;
    solo.run_until(window_end);
    let late = window_end + config.election_ttl / 3;
    let first = solo.turn_at(late);
    assert_eq!(
        count(&first, is_renewal),
        1,
        "the turn renews leadership: {first:?}"
    );
    assert_eq!(
        count(&first, is_publication),
        0,
        "the rebalance waits for the next turn, after the renewal left: {first:?}"
    );
    let resume = solo.worker.poll_timeout().expect("a deadline");
    assert_eq!(resume, late + Duration::from_millis(1));
    let before = solo.published;
    solo.carry_out(first);
    let second = solo.turn_at(resume);
    solo.carry_out(second);
    assert_eq!(solo.published, before + 1, "then it publishes");
}

/// A leader past its cold start gets a new partition list `after` its last
/// leadership renewal; returns the time and what that turn queued.
fn new_list_after_renewal(after: Duration) -> (Solo, Instant, Vec<Command>) {
    let mut solo = elected();
    let config = Config::for_tests();
    let settled = Instant::ZERO + config.cold_start_window * 2;
    solo.run_until(settled);
    let last = solo.renewed_at.expect("renewals");
    let at = last + after;
    assert!(
        at < last + config.election_ttl / 3,
        "before the next renewal"
    );
    assert!(at >= solo.now);
    solo.now = at;
    let list = (0..6)
        .map(|i| Partition::new(["t".to_string(), format!("p-{i}")]))
        .collect();
    solo.worker.handle(Event::PartitionsChanged(list), at);
    let first = solo.queued();
    (solo, at, first)
}

#[test]
fn a_leader_about_to_rebalance_renews_ahead_of_its_schedule() {
    // A sixth of the TTL after the last renewal: the lease is not fresh.
    let after = Config::for_tests().election_ttl / 6 + Duration::from_millis(10);
    let (mut solo, at, first) = new_list_after_renewal(after);
    assert_eq!(
        count(&first, is_renewal),
        1,
        "it renews ahead of its schedule: {first:?}"
    );
    assert_eq!(count(&first, is_publication), 0, "{first:?}");
    let before = solo.published;
    solo.carry_out(first);
    let second = solo.turn_at(at + Duration::from_millis(1));
    solo.carry_out(second);
    assert_eq!(solo.published, before + 1, "then it publishes");
}

#[test]
fn a_fresh_lease_is_not_renewed_ahead() {
    // Within a sixth of the TTL of the last renewal: no extra write.
    let after = Duration::from_millis(10);
    assert!(after < Config::for_tests().election_ttl / 6);
    let (_, _, first) = new_list_after_renewal(after);
    assert_eq!(count(&first, is_renewal), 0, "{first:?}");
    assert_eq!(count(&first, is_publication), 1, "{first:?}");
}
