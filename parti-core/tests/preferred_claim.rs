//! The ID a worker wants — its `preferred_worker_id`, or after a loss the ID
//! it held last — is claimed at once with a plain create, before any watch
//! of the members; only if that claim is not won does the worker watch every
//! member and choose another ID from the roster. Driven by hand through the
//! public sans-IO API: every command the worker gives is answered by the
//! test.

// Test code: unwrap, expect and panic are how it asserts.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use parti_core::backend::{Change, MemberScope, WatchEvent};
use parti_core::records::MemberRecord;
use parti_core::{Command, Config, Event, InstanceId, Instant, OpId, Outcome, Worker, WorkerId};
use std::sync::Arc;
use std::time::Duration;

mod common;

use common::RoundRobin;

fn wid(n: u32) -> WorkerId {
    WorkerId::new("worker", n)
}

/// A worker whose every command the test answers.
struct Harness {
    worker: Worker,
    now: Instant,
    /// Every command the worker gave, in order (notifications left out).
    log: Vec<Command>,
    /// Commands not yet looked at by the test.
    pending: usize,
}

impl Harness {
    fn new(preferred: Option<u32>) -> Self {
        let mut config = Config::for_tests();
        config.preferred_worker_id = preferred;
        let worker = Worker::new(config, Arc::new(RoundRobin), InstanceId(7), Instant::ZERO);
        Harness {
            worker,
            now: Instant::ZERO,
            log: Vec::new(),
            pending: 0,
        }
    }

    fn collect(&mut self) {
        while let Some(c) = self.worker.poll_command() {
            if !matches!(c, Command::Notify(_)) {
                self.log.push(c);
            }
        }
    }

    fn start(&mut self) {
        self.worker.handle(Event::Start, self.now);
        self.collect();
    }

    fn complete(&mut self, op: OpId, outcome: Outcome) {
        self.worker
            .handle(Event::Completed { op, outcome }, self.now);
        self.collect();
    }

    fn watch(&mut self, item: WatchEvent) {
        self.worker.handle(Event::Watch(item), self.now);
        self.collect();
    }

    fn advance(&mut self, d: Duration) {
        let end = self.now + d;
        while self.now < end {
            self.now = self.now + Duration::from_millis(10);
            self.worker.handle_timeout(self.now);
            self.collect();
        }
    }

    /// The commands given since the last call.
    fn fresh(&mut self) -> Vec<Command> {
        let fresh = self.log[self.pending..].to_vec();
        self.pending = self.log.len();
        fresh
    }

    /// The next claim among the fresh commands; panics if a watch comes
    /// first or there is none.
    fn claim_without_watch(&mut self) -> (OpId, WorkerId, MemberRecord, Option<u64>) {
        for c in self.fresh() {
            match c {
                Command::Watch { members, .. } => {
                    panic!("a watch ({members:?}) before the claim: {:?}", self.log)
                }
                Command::ClaimId {
                    op,
                    id,
                    record,
                    takeover,
                } => return (op, id, record, takeover),
                _ => {}
            }
        }
        panic!("no claim: {:?}", self.log)
    }

    /// The watches asked for among the fresh commands (kept fresh).
    fn watches(&self) -> Vec<(Option<WorkerId>, MemberScope)> {
        self.log[self.pending..]
            .iter()
            .filter_map(|c| match c {
                Command::Watch { worker, members } => Some((worker.clone(), members.clone())),
                _ => None,
            })
            .collect()
    }

    fn all_watches(&self) -> usize {
        self.log
            .iter()
            .filter(|c| {
                matches!(
                    c,
                    Command::Watch {
                        members: MemberScope::All,
                        ..
                    }
                )
            })
            .count()
    }
}

fn other_record() -> MemberRecord {
    MemberRecord::fresh(InstanceId(99), 1)
}

#[test]
fn the_preferred_id_is_claimed_before_any_watch_and_then_only_its_own_key_is_watched() {
    let mut h = Harness::new(Some(3));
    h.start();
    let (op, id, _, takeover) = h.claim_without_watch();
    assert_eq!(id, wid(3));
    assert_eq!(takeover, None, "a plain create");
    h.complete(op, Outcome::Written(5));
    assert_eq!(h.worker.worker_id(), Some(&wid(3)));
    assert_eq!(
        h.watches(),
        vec![(Some(wid(3)), MemberScope::Own { leader: None })]
    );
    assert_eq!(h.all_watches(), 0, "{:?}", h.log);
}

#[test]
fn a_taken_preferred_id_falls_back_to_the_roster_and_is_not_tried_again() {
    let mut h = Harness::new(Some(3));
    h.start();
    let (op, id, _, _) = h.claim_without_watch();
    assert_eq!(id, wid(3));
    h.complete(op, Outcome::AlreadyExists);
    assert_eq!(h.worker.worker_id(), None);
    // Now every member is watched, to choose another ID.
    assert_eq!(h.watches(), vec![(None, MemberScope::All)]);
    h.fresh();
    h.watch(WatchEvent::Member {
        id: wid(3),
        revision: 4,
        change: Change::Put(other_record()),
    });
    h.watch(WatchEvent::Member {
        id: wid(0),
        revision: 2,
        change: Change::Put(other_record()),
    });
    h.watch(WatchEvent::CaughtUp);
    // Alone, the worker takes the lowest free ID; the preferred one, held
    // by another process, is not created a second time.
    let (op, id, _, takeover) = h.claim_without_watch();
    assert_eq!(id, wid(1));
    assert_eq!(takeover, None);
    h.complete(op, Outcome::Written(6));
    assert_eq!(h.worker.worker_id(), Some(&wid(1)));
    let claims: Vec<WorkerId> = h
        .log
        .iter()
        .filter_map(|c| match c {
            Command::ClaimId { id, .. } => Some(id.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(claims, vec![wid(3), wid(1)]);
}

#[test]
fn an_unknown_outcome_is_reconciled_by_reading_the_key_back() {
    // The write landed: the ID is held, still without a watch of every member.
    let mut h = Harness::new(Some(3));
    h.start();
    let (op, _, record, _) = h.claim_without_watch();
    h.complete(op, Outcome::Unknown);
    let read = match h.fresh().as_slice() {
        [Command::ReadMember { op, id }] if *id == wid(3) => *op,
        other => panic!("expected a read of worker-3, got {other:?}"),
    };
    h.complete(read, Outcome::Member(Some((record, 8))));
    assert_eq!(h.worker.worker_id(), Some(&wid(3)));
    assert_eq!(h.all_watches(), 0, "{:?}", h.log);

    // The write did not land and another process holds the key: fall back.
    let mut h = Harness::new(Some(3));
    h.start();
    let (op, _, _, _) = h.claim_without_watch();
    h.complete(op, Outcome::Unknown);
    let read = match h.fresh().as_slice() {
        [Command::ReadMember { op, .. }] => *op,
        other => panic!("expected a read, got {other:?}"),
    };
    h.complete(read, Outcome::Member(Some((other_record(), 8))));
    assert_eq!(h.worker.worker_id(), None);
    assert_eq!(h.watches(), vec![(None, MemberScope::All)]);
}

#[test]
fn an_unreachable_store_gets_the_same_claim_again_still_without_a_watch() {
    let mut h = Harness::new(Some(3));
    h.start();
    let (op, _, _, _) = h.claim_without_watch();
    h.complete(op, Outcome::Unavailable);
    assert!(h.fresh().is_empty());
    h.advance(Duration::from_millis(200));
    let (op, id, _, takeover) = h.claim_without_watch();
    assert_eq!((id, takeover), (wid(3), None));
    h.complete(op, Outcome::Written(5));
    assert_eq!(h.worker.worker_id(), Some(&wid(3)));
    assert_eq!(h.all_watches(), 0, "{:?}", h.log);
}

#[test]
fn after_a_loss_the_id_held_last_is_claimed_again_at_once() {
    // No preferred ID: the first claim comes from the roster.
    let mut h = Harness::new(None);
    h.start();
    assert_eq!(h.watches(), vec![(None, MemberScope::All)]);
    h.fresh();
    h.watch(WatchEvent::CaughtUp);
    let (op, id, record, _) = h.claim_without_watch();
    assert_eq!(id, wid(0));
    h.complete(op, Outcome::Written(5));
    h.fresh();
    // Its record is overwritten by another process: the ID is lost.
    h.watch(WatchEvent::Member {
        id: wid(0),
        revision: 9,
        change: Change::Put(other_record()),
    });
    assert_eq!(h.worker.worker_id(), None);
    // The ID held last is claimed again at once, with a fresh instance,
    // before any watch of every member.
    let all_before = h.all_watches();
    let (op, id, again, takeover) = h.claim_without_watch();
    assert_eq!((id, takeover), (wid(0), None));
    assert_ne!(again.instance, record.instance);
    h.complete(op, Outcome::AlreadyExists);
    assert_eq!(h.all_watches(), all_before + 1, "fell back to the roster");
}
