//! The member keys a worker watches (`MemberScope`): every member while it
//! claims an ID, only its own and the leader's once it holds one, every
//! member again when it is elected (and its controller acts only once that
//! watch caught up), and only its own and the leader's again when it is
//! deposed. Driven by hand through the public
//! sans-IO API, with a store that answers every write at once.

// Test code: unwrap, expect and panic are how it asserts.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use parti_core::backend::{AssignmentSnapshot, Change, MemberScope, WatchEvent};
use parti_core::records::{LeaderRecord, MemberRecord, WIRE_VERSION};
use parti_core::{
    Command, Config, Event, InstanceId, Instant, Outcome, Partition, Worker, WorkerId,
};
use std::sync::Arc;
use std::time::Duration;

mod common;

use common::RoundRobin;

/// A worker and a store that applies every write at once. Writes of the
/// worker's own member key come back through its watch (both scopes include
/// it), as they would from a real store.
struct Harness {
    worker: Worker,
    now: Instant,
    revision: u64,
    /// Every command the worker gave, in order.
    log: Vec<Command>,
}

impl Harness {
    fn new() -> Self {
        let worker = Worker::new(
            Config::for_tests(),
            Arc::new(RoundRobin),
            InstanceId(7),
            Instant::ZERO,
        );
        Harness {
            worker,
            now: Instant::ZERO,
            revision: 100,
            log: Vec::new(),
        }
    }

    fn next_revision(&mut self) -> u64 {
        self.revision += 1;
        self.revision
    }

    /// Carries out every pending command.
    fn pump(&mut self) {
        while let Some(command) = self.worker.poll_command() {
            self.log.push(command.clone());
            let (op, outcome, echo) = match command {
                Command::ClaimId { op, id, record, .. }
                | Command::RenewLease { op, id, record, .. } => {
                    let rev = self.next_revision();
                    (op, Outcome::Written(rev), Some((id, record, rev)))
                }
                Command::Campaign { op, .. }
                | Command::RenewLeadership { op, .. }
                | Command::Evict { op, .. }
                | Command::Publish { op, .. } => (op, Outcome::Written(self.next_revision()), None),
                Command::LoadAssignments { op } => {
                    (op, Outcome::Loaded(AssignmentSnapshot::default()), None)
                }
                Command::ListPartitions { op } => {
                    let list = (0..8)
                        .map(|i| Partition::new(["t".to_string(), format!("p-{i}")]))
                        .collect();
                    (op, Outcome::Partitions(list), None)
                }
                _ => continue,
            };
            self.worker
                .handle(Event::Completed { op, outcome }, self.now);
            if let Some((id, record, revision)) = echo {
                self.watch(WatchEvent::Member {
                    id,
                    revision,
                    change: Change::Put(record),
                });
            }
        }
    }

    /// Watch items: worker-1's member record (revision 1) and the leader
    /// key naming it (revision 2, term 2).
    fn leader_is_worker_1(&mut self, record: &MemberRecord, instance: InstanceId) {
        self.watch(WatchEvent::Member {
            id: wid(1),
            revision: 1,
            change: Change::Put(record.clone()),
        });
        self.watch(WatchEvent::Leader {
            revision: 2,
            change: Change::Put(leader(wid(1), instance, 2)),
        });
    }

    fn watch(&mut self, item: WatchEvent) {
        self.worker.handle(Event::Watch(item), self.now);
        self.pump();
    }

    /// Lets `d` pass in steps of 50 ms.
    fn advance(&mut self, d: Duration) {
        let end = self.now + d;
        while self.now < end {
            self.now = self.now + Duration::from_millis(50);
            self.worker.handle_timeout(self.now);
            self.pump();
        }
    }

    /// The scopes of the watches asked since command `from` of the log.
    fn watches_since(&self, from: usize) -> Vec<(Option<WorkerId>, MemberScope)> {
        self.log[from..]
            .iter()
            .filter_map(|c| match c {
                Command::Watch { worker, members } => Some((worker.clone(), members.clone())),
                _ => None,
            })
            .collect()
    }

    fn acted_since(&self, from: usize) -> (usize, usize) {
        let evictions = self.log[from..]
            .iter()
            .filter(|c| matches!(c, Command::Evict { .. }))
            .count();
        let publications = self.log[from..]
            .iter()
            .filter(|c| matches!(c, Command::Publish { .. }))
            .count();
        (evictions, publications)
    }
}

fn wid(n: u32) -> WorkerId {
    WorkerId::new("worker", n)
}

fn leader(worker: WorkerId, instance: InstanceId, term: u64) -> LeaderRecord {
    LeaderRecord {
        v: WIRE_VERSION,
        worker,
        instance,
        term: Some(term),
    }
}

#[test]
fn a_follower_watches_its_own_key_and_a_new_leader_acts_only_once_it_sees_every_member() {
    let mut h = Harness::new();
    let other = InstanceId(99);
    let other_record = MemberRecord::fresh(other, 1);

    // Claiming: every member (which IDs are free?).
    h.worker.handle(Event::Start, h.now);
    h.pump();
    assert_eq!(h.watches_since(0), vec![(None, MemberScope::All)]);
    h.leader_is_worker_1(&other_record, other);
    let claimed_at = h.log.len();
    h.watch(WatchEvent::CaughtUp);
    let me = h.worker.worker_id().cloned().expect("an ID");
    assert_ne!(me, wid(1));

    // Holding an ID, not leading: only its own member key.
    let own_and_leader = MemberScope::Own {
        leader: Some(wid(1)),
    };
    assert_eq!(
        h.watches_since(claimed_at),
        vec![(Some(me.clone()), own_and_leader.clone())]
    );
    // Its snapshot: its own record (already echoed), the leader's member
    // record, unchanged since it was seen while claiming, and the leader key.
    let seen_at = h.worker.roster().get(&wid(1)).map(|v| v.last_change);
    assert!(seen_at.is_some());
    h.leader_is_worker_1(&other_record, other);
    h.watch(WatchEvent::CaughtUp);
    h.advance(Duration::from_secs(1));
    assert!(!h.worker.is_leader());

    // The leader key goes: this worker campaigns and wins. It watches every
    // member again, and its controller waits for that watch to catch up.
    let elected_at = h.log.len();
    h.watch(WatchEvent::Leader {
        revision: 3,
        change: Change::Removed,
    });
    h.advance(Duration::from_millis(100));
    assert!(h.worker.is_leader());
    assert_eq!(
        h.watches_since(elected_at),
        vec![(Some(me.clone()), MemberScope::All)]
    );
    // Longer than the cold-start window and than the wait before an
    // eviction: a controller acting on the roster it has (itself only)
    // would publish an assignment without worker-1, and evict nobody it
    // cannot see.
    let config = Config::for_tests();
    assert!(Duration::from_secs(3) > config.cold_start_window);
    assert!(Duration::from_secs(3) > config.heartbeat_ttl + config.lease_expiry_wait());
    h.advance(Duration::from_secs(3));
    assert_eq!(
        h.acted_since(elected_at),
        (0, 0),
        "the leader acted before its watch of every member caught up"
    );

    // The snapshot of every member arrives: worker-1 (the old leader, which
    // no longer renews), its own record, its leader key.
    let caught_up_at = h.log.len();
    h.watch(WatchEvent::Member {
        id: wid(1),
        revision: 1,
        change: Change::Put(other_record),
    });
    let term = h.worker.term().expect("a term");
    let campaigned = h.log[elected_at..]
        .iter()
        .find_map(|c| match c {
            Command::Campaign { record, .. } => Some(record.instance),
            _ => None,
        })
        .expect("a campaign");
    h.watch(WatchEvent::Leader {
        revision: term,
        change: Change::Put(leader(me.clone(), campaigned, term)),
    });
    h.watch(WatchEvent::CaughtUp);
    assert_eq!(h.worker.roster().members().count(), 2);
    // Unchanged since it was first seen: silent since then.
    assert_eq!(
        h.worker.roster().get(&wid(1)).map(|v| v.last_change),
        seen_at
    );
    h.advance(Duration::from_secs(5));
    let (evictions, publications) = h.acted_since(caught_up_at);
    assert!(evictions >= 1, "the silent worker-1 was never evicted");
    assert!(publications >= 1, "the leader never published");

    // Deposed by a higher term: back to its own key.
    let deposed_at = h.log.len();
    h.watch(WatchEvent::Leader {
        revision: h.revision + 10,
        change: Change::Put(leader(wid(1), other, h.revision + 10)),
    });
    assert!(!h.worker.is_leader());
    assert_eq!(
        h.watches_since(deposed_at),
        vec![(Some(me), own_and_leader)]
    );
}
