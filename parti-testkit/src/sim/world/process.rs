//! The simulator's agenda (scheduled events) and its processes: a core
//! worker with its own drifting clock, pause and cut-off state, and the
//! watch it has open.

use super::super::faults::FaultKind;
use super::super::store::Key;
use super::config::Scripted;
use crate::sim::checks::ProcessView;
use parti_core::backend::WatchEvent;
use parti_core::{Command, Event, Instant, PartitionId, Worker, WorkerId};
use std::cmp::Ordering;
use std::collections::BTreeMap;

#[derive(Debug)]
pub(super) enum Ev {
    /// Deliver an event to a process.
    Deliver { slot: usize, inc: u64, event: Event },
    /// Deliver a watch item (dropped if the watch generation changed).
    WatchItem {
        slot: usize,
        inc: u64,
        generation: u64,
        key: Option<Key>,
        revision: u64,
        item: WatchEvent,
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

pub(super) struct Scheduled {
    pub(super) at: u64,
    pub(super) seq: u64,
    pub(super) ev: Ev,
}

impl PartialEq for Scheduled {
    fn eq(&self, other: &Self) -> bool {
        self.at == other.at && self.seq == other.seq
    }
}
impl Eq for Scheduled {}
impl PartialOrd for Scheduled {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Scheduled {
    fn cmp(&self, other: &Self) -> Ordering {
        (other.at, other.seq).cmp(&(self.at, self.seq))
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
    pub(super) held: BTreeMap<PartitionId, u64>,
    /// The highest assignment version this process applied.
    pub(super) max_version: u64,
    pub(super) timer_at: Option<u64>,
    pub(super) restart_after_stop: bool,
    /// It was told to leave the group (it may take a while to finish: its
    /// last writes wait for the store).
    pub(super) leaving: bool,
    pub(super) restart_preferred: Option<u32>,
    /// Newest revision scheduled for delivery per key (to coalesce).
    pub(super) latest_pending: std::collections::HashMap<Key, u64>,
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
