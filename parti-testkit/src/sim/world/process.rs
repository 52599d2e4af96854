//! The simulator's agenda (scheduled events) and its processes: a core
//! worker with its own drifting clock, pause and cut-off state, and the
//! watch it has open.

use super::super::faults::FaultKind;
use super::super::store::Key;
use super::config::Scripted;
use crate::sim::checks::ProcessView;
use crate::sim::idmap::IdMap;
use parti_core::backend::{MemberScope, WatchEvent};
use parti_core::{Command, Event, Instant, Worker, WorkerId};
use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::Arc;

#[derive(Debug)]
pub(super) enum Ev {
    /// Deliver an event to a process.
    Deliver { slot: usize, inc: u64, event: Event },
    /// Deliver a watch item (dropped if the watch generation changed).
    /// `key` is the item's key by its number ([`KeyNumbers`]); the item is
    /// shared by every watcher of one change.
    WatchItem {
        slot: usize,
        inc: u64,
        generation: u64,
        key: Option<u32>,
        revision: u64,
        item: Arc<WatchEvent>,
    },
    /// A command reaches the store.
    Arrive {
        slot: usize,
        inc: u64,
        command: Command,
    },
    /// Wake a process for its timeout.
    Timer { slot: usize, inc: u64 },
    /// A planned fault.
    Fault(FaultKind),
    /// A scripted step.
    Script(Scripted),
    /// Start a new process in a slot.
    Spawn { slot: usize, preferred: Option<u32> },
    /// A pause or cut ends.
    Heal { slot: usize, inc: u64 },
    /// Keys may expire.
    Expire,
    /// Start of the quiet period: make sure some workers run.
    EnsureAlive,
}

/// Numbers for the store's keys, so that per-process bookkeeping of keys
/// neither clones nor hashes their text. A key keeps its number for the run.
/// The keys every watcher sees (members, leader, commit record) are numbered
/// densely from 0; a worker's own assignment records, seen by its watcher
/// only, carry [`OWN_KEY`] in their number.
#[derive(Default)]
pub(super) struct KeyNumbers {
    shared: HashMap<Key, u32>,
    own: HashMap<Key, u32>,
}

/// Marks the number of a key only one worker's watch sees.
pub(super) const OWN_KEY: u32 = 1 << 31;

impl KeyNumbers {
    /// The number of `key`, given on first sight.
    pub(super) fn of(&mut self, key: &Key) -> u32 {
        let (map, mark) = match key {
            Key::Assignment(..) => (&mut self.own, OWN_KEY),
            _ => (&mut self.shared, 0),
        };
        if let Some(n) = map.get(key) {
            return *n;
        }
        let n = u32::try_from(map.len())
            .unwrap_or(OWN_KEY - 1)
            .min(OWN_KEY - 1)
            | mark;
        map.insert(key.clone(), n);
        n
    }
}

/// Numbers for worker IDs, given on first sight and kept for the run: the
/// fan-out decides who sees a change by comparing numbers rather than the
/// IDs' text (once per watcher and change).
#[derive(Default)]
pub(super) struct WorkerNumbers {
    map: HashMap<WorkerId, u32>,
}

impl WorkerNumbers {
    /// The number of `id`.
    pub(super) fn of(&mut self, id: &WorkerId) -> u32 {
        if let Some(n) = self.map.get(id) {
            return *n;
        }
        let n = u32::try_from(self.map.len()).unwrap_or(u32::MAX);
        self.map.insert(id.clone(), n);
        n
    }
}

/// Which keys a watch selects, by worker number (see [`WorkerNumbers`]):
/// the same selection as [`crate::sim::watched`] with the watch's worker
/// and member scope.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct WatchFilter {
    /// The watching worker's number, if the watch is for a worker.
    pub(super) worker: Option<u32>,
    /// Whether every member key is included ([`MemberScope::All`]).
    pub(super) all_members: bool,
    /// The leader's number, if the scope includes the leader's key.
    pub(super) leader: Option<u32>,
}

impl WatchFilter {
    /// The filter of a process that has not opened a watch yet.
    pub(super) const NONE: WatchFilter = WatchFilter {
        worker: None,
        all_members: true,
        leader: None,
    };

    /// The filter of a watch for `worker` with the member keys `members`.
    pub(super) fn new(
        numbers: &mut WorkerNumbers,
        worker: Option<&WorkerId>,
        members: &MemberScope,
    ) -> Self {
        let (all_members, leader) = match members {
            MemberScope::All => (true, None),
            MemberScope::Own { leader } => (false, leader.as_ref().map(|l| numbers.of(l))),
        };
        WatchFilter {
            worker: worker.map(|w| numbers.of(w)),
            all_members,
            leader,
        }
    }

    /// Whether a change of `key`, whose worker (member or addressee) has
    /// the number `subject`, is selected.
    pub(super) fn sees(&self, key: &Key, subject: Option<u32>) -> bool {
        match key {
            Key::Assignment(..) => subject.is_some() && subject == self.worker,
            Key::Member(_) => {
                self.all_members
                    || (subject.is_some() && (subject == self.worker || subject == self.leader))
            }
            Key::Leader | Key::Meta => true,
        }
    }
}

/// Hashes a key number (a small integer) by one multiplication.
#[derive(Default)]
pub(super) struct KeyNumberHasher(u64);

impl Hasher for KeyNumberHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(*b)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        }
    }

    fn write_u32(&mut self, n: u32) {
        self.0 = (self.0 ^ u64::from(n)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
}

/// Newest revision scheduled for delivery per key number: the shared keys
/// in a vector by number (0: none scheduled; revisions start at 1), the
/// process's own records in a small map.
#[derive(Default)]
pub(super) struct PendingRevisions {
    shared: Vec<u64>,
    own: HashMap<u32, u64, BuildHasherDefault<KeyNumberHasher>>,
}

impl PendingRevisions {
    /// The newest revision of key `number` scheduled, if any.
    pub(super) fn get(&self, number: u32) -> Option<u64> {
        if number & OWN_KEY != 0 {
            return self.own.get(&number).copied();
        }
        self.shared
            .get(number as usize)
            .copied()
            .filter(|r| *r != 0)
    }

    /// Key `number` has `revision` scheduled.
    pub(super) fn insert(&mut self, number: u32, revision: u64) {
        if number & OWN_KEY != 0 {
            self.own.insert(number, revision);
            return;
        }
        let i = number as usize;
        if i >= self.shared.len() {
            self.shared.resize(i + 1, 0);
        }
        self.shared[i] = revision;
    }

    /// Forgets every scheduled revision.
    pub(super) fn clear(&mut self) {
        self.shared.fill(0);
        self.own.clear();
    }
}

pub(super) struct Proc {
    pub(super) worker: Worker,
    pub(super) inc: u64,
    pub(super) alive: bool,
    pub(super) started_at: u64,
    pub(super) rate: f64,
    pub(super) paused_until: Option<u64>,
    pub(super) cut_until: Option<u64>,
    pub(super) watch_gen: u64,
    pub(super) watch_worker: Option<WorkerId>,
    /// The member keys its current watch includes.
    pub(super) watch_members: MemberScope,
    /// The store lost its buckets while this process watched: its watch
    /// ends when it reaches the store again.
    pub(super) watch_lost: bool,
    /// When (on this process's clock) the store last lost its buckets while
    /// this process ran: reservations it wrote before then are gone.
    pub(super) store_lost_at: Option<Instant>,
    /// When its last `Watch` command reaches the store: the next one never
    /// overtakes it.
    pub(super) watch_asked_at: u64,
    pub(super) last_watch_at: u64,
    /// Until when (global ms) and by how much its watch falls behind: an
    /// overloaded process whose timers still run on time but which sees
    /// every change late.
    pub(super) watch_lag: Option<(u64, u64)>,
    pub(super) held: IdMap<u64>,
    /// The highest assignment version this process applied.
    pub(super) max_version: u64,
    pub(super) timer_at: Option<u64>,
    pub(super) restart_after_stop: bool,
    /// It was told to leave the group (it may take a while to finish: its
    /// last writes wait for the store).
    pub(super) leaving: bool,
    pub(super) restart_preferred: Option<u32>,
    /// Newest revision scheduled for delivery per key (to coalesce).
    pub(super) latest_pending: PendingRevisions,
    pub(super) label: String,
}

impl Proc {
    pub(super) fn local(&self, now: u64) -> Instant {
        Instant::from_millis(((now.saturating_sub(self.started_at)) as f64 * self.rate) as u64)
    }

    pub(super) fn global(&self, local: Instant) -> u64 {
        self.started_at + (local.as_millis() as f64 / self.rate).ceil() as u64
    }

    /// Paused until its `Heal` event has run (not merely until the instant:
    /// other events at that same instant come first).
    pub(super) fn paused(&self) -> bool {
        self.paused_until.is_some()
    }

    pub(super) fn cut(&self, now: u64) -> bool {
        self.cut_until.is_some_and(|t| now < t)
    }

    /// This process as the checks see it at global time `now`.
    pub(super) fn view(&self, now: u64) -> ProcessView<'_> {
        ProcessView {
            label: &self.label,
            alive: self.alive,
            paused: self.paused(),
            local: self.local(now),
            store_lost_at: self.store_lost_at,
            worker: &self.worker,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sim::watched;

    /// The numbered filter selects exactly what [`watched`] selects, for
    /// every kind of key, watch and scope.
    #[test]
    fn the_watch_filter_selects_what_watched_selects() {
        let ids: Vec<WorkerId> = (0..3).map(|i| WorkerId::new("w", i)).collect();
        let mut keys = vec![Key::Leader, Key::Meta];
        for id in &ids {
            keys.push(Key::Member(id.clone()));
            keys.push(Key::Assignment(7, id.clone()));
        }
        let mut scopes = vec![MemberScope::All, MemberScope::Own { leader: None }];
        scopes.extend(ids.iter().map(|l| MemberScope::Own {
            leader: Some(l.clone()),
        }));
        let mut watchers: Vec<Option<WorkerId>> = vec![None];
        watchers.extend(ids.iter().cloned().map(Some));
        let mut numbers = WorkerNumbers::default();
        let mut compared = 0;
        for worker in &watchers {
            for scope in &scopes {
                let filter = WatchFilter::new(&mut numbers, worker.as_ref(), scope);
                for key in &keys {
                    let subject = match key {
                        Key::Member(w) | Key::Assignment(_, w) => Some(numbers.of(w)),
                        Key::Leader | Key::Meta => None,
                    };
                    assert_eq!(
                        filter.sees(key, subject),
                        watched(key, worker.as_ref(), scope),
                        "{key:?} watched by {worker:?} with {scope:?}"
                    );
                    compared += 1;
                }
            }
        }
        assert_eq!(compared, 4 * 5 * 8);
    }
}
