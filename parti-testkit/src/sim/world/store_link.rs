//! The processes' link to the simulated store: commands arrive after a
//! network delay and are carried out with the production translation
//! ([`parti_core::exec`]) on the [`SimStore`](crate::sim::SimStore);
//! results travel back after another delay, acknowledgements may be lost,
//! and the store's changes are fanned out to every watch, coalesced per key
//! like a history-1 NATS KV watch.

use super::Simulator;
use super::process::Ev;
use super::process::WatchFilter;
use crate::sim::faults::FaultKind;
use crate::sim::store::{Key, watch_event};
use parti_core::backend::{BackendError, MemberScope, StoreOp, StoreReply, WatchEvent};
use parti_core::exec::{self, Plan};
use parti_core::{Command, Event, OpId, Outcome};
use std::sync::Arc;

/// One change of the store as its watchers get it: built once, shared by all.
struct Fanned {
    key: Key,
    /// The number of the key's worker (member or addressee), if any.
    subject: Option<u32>,
    number: u32,
    revision: u64,
    item: Option<Arc<WatchEvent>>,
}

impl Simulator {
    /// A network delay: a few ms, now and then a spike when delays are
    /// among the faults.
    pub(super) fn net_delay(&mut self) -> u64 {
        if self.cfg.faults.has(FaultKind::Delay) && self.rng.chance(0.02) {
            self.rng.range(20, 200)
        } else {
            self.rng.range(1, 8)
        }
    }

    fn respond(&mut self, slot: usize, inc: u64, op: OpId, outcome: Outcome) {
        let d = self.net_delay();
        self.schedule(
            self.now + d,
            Ev::Deliver {
                slot,
                inc,
                event: Event::Completed { op, outcome },
            },
        );
    }

    /// A command of process `slot` (incarnation `inc`) reaches the store.
    pub(super) fn execute(&mut self, slot: usize, inc: u64, command: Command) {
        let cut = self
            .procs
            .get(slot)
            .is_some_and(|p| p.inc == inc && p.cut(self.now));
        if cut {
            match command.op() {
                Some(op) => self.respond(slot, inc, op, Outcome::Unavailable),
                // The driver's watch task retries until the store answers.
                None if matches!(command, Command::Watch { .. }) => {
                    let at = self.procs[slot].cut_until.unwrap_or(self.now);
                    self.schedule(at, Ev::Arrive { slot, inc, command });
                }
                None => {}
            }
            return;
        }
        match Plan::of(command) {
            Plan::Watch { worker, members } => self.open_watch(slot, inc, worker, members),
            Plan::ListPartitions { op } => {
                let list = self.partitions.clone();
                let outcome = exec::listed::<BackendError>(Ok(list));
                self.respond(slot, inc, op, outcome);
            }
            Plan::Notify(_) => {}
            Plan::Store(mut execution) => {
                while let Some(op) = execution.next_op() {
                    let result = self.perform(op);
                    execution.complete(result);
                }
                if let Some((op, outcome)) = execution.finish() {
                    self.respond(slot, inc, op, outcome);
                }
            }
        }
        self.fan_out();
    }

    /// Performs one operation on the store. An accepted commit is checked
    /// (S2, S6); the acknowledgement of a write may be lost.
    fn perform(&mut self, op: StoreOp) -> Result<StoreReply, BackendError> {
        let commit = match &op {
            StoreOp::CommitMeta { meta, .. } => Some((meta.term, meta.version, meta.lifecycle)),
            _ => None,
        };
        // Acknowledgements that may be lost: those of the guarded writes.
        // (Staging and housekeeping are never answered Unknown by the
        // translation anyway, and a lost read is just a retry.)
        let may_lose = !matches!(
            op,
            StoreOp::GetMember { .. }
                | StoreOp::LoadAssignments
                | StoreOp::Stage { .. }
                | StoreOp::RemoveStaleAssignments { .. }
        );
        let result = self.store.apply(op, self.now);
        if let (Some((term, version, lifecycle)), Ok(_)) = (commit, &result) {
            self.last_commit_at = self.now;
            self.report.commit_log.push((self.now, version, lifecycle));
            let max_term = self.store.max_leader_term;
            self.commits
                .on_commit(term, version, max_term, self.now, &mut self.violations);
        }
        match result {
            Ok(_) if may_lose && self.cfg.faults.has(FaultKind::Lost) && self.rng.chance(0.02) => {
                Err(BackendError::Timeout)
            }
            other => other,
        }
    }

    /// Opens a watch for process `slot`: a new generation (items of older
    /// watches are dropped), the current value of every watched key, then
    /// `CaughtUp`.
    pub(super) fn open_watch(
        &mut self,
        slot: usize,
        inc: u64,
        worker: Option<parti_core::WorkerId>,
        members: MemberScope,
    ) {
        if !self.live(slot, inc) {
            return;
        }
        let p = &mut self.procs[slot];
        p.watch_gen += 1;
        self.watch_filters[slot] =
            WatchFilter::new(&mut self.worker_numbers, worker.as_ref(), &members);
        p.watch_worker = worker.clone();
        p.watch_members = members.clone();
        // Items of older watches are dropped anyway; what they superseded
        // says nothing about this one's (after lost buckets, revisions
        // start again from 1).
        p.latest_pending.clear();
        let snapshot = self.store.watch_snapshot(worker.as_ref(), &members);
        let at = self.watch_delivery_time(slot);
        for (key, revision, item) in snapshot {
            let number = self.key_numbers.of(&key);
            self.queue_watch_item(slot, at, Some(number), revision, Arc::new(item));
        }
        self.queue_watch_item(slot, at, None, 0, Arc::new(WatchEvent::CaughtUp));
    }

    /// When the next batch of watch items reaches `slot`: after a network
    /// delay, and never before an earlier batch (a watch keeps its order).
    fn watch_delivery_time(&mut self, slot: usize) -> u64 {
        let lag = match self.procs[slot].watch_lag {
            Some((until, lag)) if self.now < until => lag,
            _ => 0,
        };
        let d = self.net_delay() + lag;
        let at = (self.now + d).max(self.procs[slot].last_watch_at);
        self.procs[slot].last_watch_at = at;
        at
    }

    /// Schedules one item of the current watch of `slot`; an item of `key`
    /// supersedes the items of that key still in flight.
    fn queue_watch_item(
        &mut self,
        slot: usize,
        at: u64,
        key: Option<u32>,
        revision: u64,
        item: Arc<WatchEvent>,
    ) {
        let p = &mut self.procs[slot];
        let (inc, generation) = (p.inc, p.watch_gen);
        if let Some(key) = key {
            p.latest_pending.insert(key, revision);
        }
        self.schedule(
            at,
            Ev::WatchItem {
                slot,
                inc,
                generation,
                key,
                revision,
                item,
            },
        );
    }

    /// Sends the store's new changes to every watcher, in order, and arms the
    /// next expiry.
    pub(super) fn fan_out(&mut self) {
        let changes = self.store.take_changes();
        if let Some(at) = self.store.next_expiry()
            && self.expire_at.is_none_or(|t| at < t)
        {
            self.expire_at = Some(at);
            self.schedule(at.max(self.now), Ev::Expire);
        }
        if changes.is_empty() {
            return;
        }
        let changes: Vec<Fanned> = changes
            .into_iter()
            .map(|c| Fanned {
                subject: match &c.key {
                    Key::Member(w) | Key::Assignment(_, w) => Some(self.worker_numbers.of(w)),
                    Key::Leader | Key::Meta => None,
                },
                number: self.key_numbers.of(&c.key),
                revision: c.revision,
                item: watch_event(&c.key, c.revision, c.value.as_ref()).map(Arc::new),
                key: c.key,
            })
            .collect();
        for slot in 0..self.procs.len() {
            let filter = self.watch_filters[slot];
            let sees = |c: &Fanned| filter.sees(&c.key, c.subject);
            if !changes.iter().any(sees) {
                continue;
            }
            if !self.procs[slot].alive || self.procs[slot].watch_gen == 0 {
                continue;
            }
            let at = self.watch_delivery_time(slot);
            for change in &changes {
                if sees(change)
                    && let Some(item) = &change.item
                {
                    let (key, revision) = (Some(change.number), change.revision);
                    self.queue_watch_item(slot, at, key, revision, item.clone());
                }
            }
        }
    }
}
