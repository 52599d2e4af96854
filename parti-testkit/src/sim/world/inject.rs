//! Fault injection: random faults drawn from the schedule and the steps of
//! scripted scenarios (crash, graceful restart, leave, join, pause, cut-off,
//! partition refresh).

use super::Simulator;
use super::config::{Removal, Scripted};
use super::process::Ev;
use crate::sim::checks::{RestartWatch, Witness};
use crate::sim::faults::FaultKind;
use parti_core::backend::{Change, WatchEvent};
use parti_core::records::MemberRecord;
use parti_core::{Event, InstanceId, Partition, PartitionId, State, StopMode, WorkerId};
use std::collections::BTreeSet;
use std::sync::Arc;

impl Simulator {
    fn alive_slots(&self, with_id: bool) -> Vec<usize> {
        (0..self.procs.len())
            .filter(|&s| {
                let p = &self.procs[s];
                p.alive
                    && !p.restart_after_stop
                    && !p.leaving
                    && (!with_id || p.worker.worker_id().is_some())
            })
            .collect()
    }

    pub(super) fn inject(&mut self, kind: FaultKind) {
        let previous_fault_at = self.last_fault_at;
        self.last_fault_at = self.now;
        *self
            .report
            .faults
            .entry(kind.name().to_string())
            .or_default() += 1;
        let alive = self.alive_slots(true);
        match kind {
            FaultKind::Crash => {
                let Some(&slot) = self.rng.pick(&alive) else {
                    return;
                };
                self.crash(slot);
                if self.rng.chance(0.7) {
                    let preferred = self.procs[slot]
                        .worker
                        .worker_id()
                        .and_then(|w| w.index(&self.cfg.config.worker_id_prefix))
                        .filter(|_| self.rng.chance(0.5));
                    let delay = self.rng.range(1_000, 20_000);
                    self.schedule(self.now + delay, Ev::Spawn { slot, preferred });
                }
            }
            FaultKind::Restart => {
                let Some(&slot) = self.rng.pick(&alive) else {
                    return;
                };
                let Some(id) = self.procs[slot].worker.worker_id().cloned() else {
                    return;
                };
                let index = id.index(&self.cfg.config.worker_id_prefix);
                let label = self.procs[slot].label.clone();
                self.log(|| format!("{label} restarts gracefully (rolling update)"));
                let held: BTreeSet<PartitionId> = self.procs[slot].held.keys().copied().collect();
                // Compare only when nothing else is in flight: no recent commit and
                // no recent fault whose stabilisation window could still close.
                let c = &self.cfg.config;
                let quiet_needed =
                    (c.planned_scale_window + c.rebalance_cooldown).as_millis() as u64 + 5_000;
                let settled = self
                    .ownership
                    .complete_since
                    .is_some_and(|t| self.now >= t + 5_000)
                    && self.now >= self.last_commit_at + 5_000
                    && self.now >= previous_fault_at + quiet_needed
                    // A store outage disturbs until everybody is back (as
                    // S4 counts it), not only when it starts.
                    && self.now
                        >= self.outage_until + self.cfg.reconnect_lag_ms + quiet_needed;
                let stable = self.procs[slot].worker.state() == State::Stable;
                let p = &mut self.procs[slot];
                p.restart_after_stop = true;
                // The next incarnation asks for the same ID.
                p.restart_preferred = index;
                if self.restart_watch.is_none() && stable && !held.is_empty() && settled {
                    self.restart_watch = Some(RestartWatch {
                        slot,
                        id,
                        held,
                        stopped_at: self.now,
                    });
                }
                self.deliver_now(slot, Event::Stop(StopMode::Graceful));
            }
            FaultKind::Leave => {
                if alive.len() <= 1 {
                    return;
                }
                let Some(&slot) = self.rng.pick(&alive) else {
                    return;
                };
                let label = self.procs[slot].label.clone();
                self.log(|| format!("{label} leaves the group (scale-down)"));
                self.procs[slot].leaving = true;
                self.deliver_now(slot, Event::Stop(StopMode::Leave));
            }
            FaultKind::Join => {
                if self.procs.iter().filter(|p| p.alive).count() >= self.cfg.workers * 2 {
                    return;
                }
                let slot = self.procs.len();
                self.log(|| "a new worker joins".to_string());
                self.spawn(slot, None);
            }
            FaultKind::Pause => {
                let Some(&slot) = self.rng.pick(&alive) else {
                    return;
                };
                let dur = self.rng.range(1_000, 15_000);
                self.pause(slot, dur);
            }
            FaultKind::Cut => {
                let Some(&slot) = self.rng.pick(&alive) else {
                    return;
                };
                let dur = self.rng.range(1_000, 20_000);
                self.cut_off(slot, dur);
            }
            FaultKind::Refresh => {
                let add = self
                    .rng
                    .range(0, (self.partitions.len() as u64 / 10).max(1))
                    as usize;
                let remove = self
                    .rng
                    .range(0, (self.partitions.len() as u64 / 10).max(1))
                    as usize;
                for _ in 0..remove.min(self.partitions.len().saturating_sub(1)) {
                    let i = self.rng.range(0, self.partitions.len() as u64 - 1) as usize;
                    self.partitions.swap_remove(i);
                }
                self.add_partitions(add);
                self.partitions.sort();
                self.log(|| format!("the partition list changes: +{add} -{remove}"));
                self.announce_partitions(true);
            }
            FaultKind::Outage => {
                let ms = self.rng.range(1_000, 45_000);
                self.store_down_for_everybody(ms);
            }
            FaultKind::Wipe => {
                let ms = self.rng.range(1_000, 10_000);
                self.lose_buckets(ms);
            }
            FaultKind::Drift | FaultKind::Lost | FaultKind::Delay => {}
        }
        // Any other disturbance voids a pending graceful-restart comparison.
        if kind != FaultKind::Restart {
            self.restart_watch = None;
        }
    }

    fn leader_slot(&self) -> Option<usize> {
        (0..self.procs.len()).find(|&s| self.procs[s].alive && self.procs[s].worker.is_leader())
    }

    fn follower_slot(&self) -> Option<usize> {
        (0..self.procs.len()).find(|&s| {
            let p = &self.procs[s];
            p.alive
                && !p.worker.is_leader()
                && p.worker.worker_id().is_some()
                && !p.restart_after_stop
        })
    }

    pub(super) fn run_script(&mut self, step: Scripted) {
        self.last_fault_at = self.now;
        self.restart_watch = None;
        let victim = match step {
            Scripted::CrashLeader => self.leader_slot(),
            Scripted::CrashFollower | Scripted::LeaveFollower | Scripted::StopFollower => {
                self.follower_slot()
            }
            _ => None,
        };
        if let Some(slot) = victim
            && let Some(worker) = self.procs[slot].worker.worker_id().cloned()
        {
            self.report.removals.push(Removal {
                at: self.now,
                step: step.clone(),
                worker,
                held: self.procs[slot].held.len(),
            });
        }
        match step {
            Scripted::CrashLeader => {
                if let Some(slot) = self.leader_slot() {
                    self.crash(slot);
                }
            }
            Scripted::CrashFollower => {
                if let Some(slot) = self.follower_slot() {
                    self.crash(slot);
                }
            }
            Scripted::Join => {
                let slot = self.procs.len();
                self.spawn(slot, None);
            }
            Scripted::LeaveFollower => {
                if let Some(slot) = self.follower_slot() {
                    self.deliver_now(slot, Event::Stop(StopMode::Leave));
                }
            }
            Scripted::StopFollower => {
                if let Some(slot) = self.follower_slot() {
                    self.deliver_now(slot, Event::Stop(StopMode::Graceful));
                }
            }
            Scripted::RestartFollower => {
                if let Some(slot) = self.follower_slot() {
                    let index = self.procs[slot]
                        .worker
                        .worker_id()
                        .and_then(|w| w.index(&self.cfg.config.worker_id_prefix));
                    let held: BTreeSet<PartitionId> =
                        self.procs[slot].held.keys().copied().collect();
                    if let Some(id) = self.procs[slot].worker.worker_id().cloned() {
                        self.restart_watch = Some(RestartWatch {
                            slot,
                            id,
                            held,
                            stopped_at: self.now,
                        });
                    }
                    let p = &mut self.procs[slot];
                    p.restart_after_stop = true;
                    p.restart_preferred = index;
                    self.deliver_now(slot, Event::Stop(StopMode::Graceful));
                }
            }
            Scripted::Refresh { add, remove } => {
                for _ in 0..remove.min(self.partitions.len().saturating_sub(1)) {
                    self.partitions.remove(0);
                }
                self.add_partitions(add);
                self.announce_partitions(false);
            }
            Scripted::CutAll(ms) => self.store_down_for_everybody(ms),
            Scripted::LoseBuckets(ms) => self.lose_buckets(ms),
            Scripted::CutLeader(ms) => {
                if let Some(slot) = self.leader_slot() {
                    self.cut_off(slot, ms);
                }
            }
            Scripted::PhantomMember => {
                if let Some(slot) = self.leader_slot() {
                    let config = &self.cfg.config;
                    let id = WorkerId::new(&config.worker_id_prefix, config.worker_id_max);
                    let label = self.procs[slot].label.clone();
                    self.log(|| {
                        format!("{label}'s watch shows {id}, which the store does not hold")
                    });
                    let record = MemberRecord::fresh(InstanceId(u64::MAX), 1);
                    let change = Change::Put(record);
                    let item = WatchEvent::Member {
                        id,
                        revision: 1,
                        change,
                    };
                    self.deliver_now(slot, Event::Watch(item));
                }
            }
            Scripted::LagLeader { lag, for_ms } => {
                if let Some(slot) = self.leader_slot() {
                    let label = self.procs[slot].label.clone();
                    self.log(|| format!("{label} sees changes {lag} ms late for {for_ms} ms"));
                    self.procs[slot].watch_lag = Some((self.now + for_ms, lag));
                }
            }
        }
    }

    /// Stops the world for `slot` for `ms` (a GC pause, SIGSTOP).
    fn pause(&mut self, slot: usize, ms: u64) {
        let label = self.procs[slot].label.clone();
        self.log(|| format!("{label} pauses for {ms} ms"));
        let until = (self.now + ms).max(self.procs[slot].paused_until.unwrap_or(0));
        self.procs[slot].paused_until = Some(until);
        let inc = self.procs[slot].inc;
        self.schedule(self.now + ms, Ev::Heal { slot, inc });
    }

    /// The store is unreachable for every process, running or started in
    /// the next `ms` ms (its keys still expire); each process reaches it
    /// again up to `reconnect_lag_ms` later (its client's reconnect backoff).
    fn store_down_for_everybody(&mut self, ms: u64) {
        self.log(|| format!("the store is down for everybody for {ms} ms"));
        self.outage_until = self.outage_until.max(self.now + ms);
        for slot in 0..self.procs.len() {
            if self.procs[slot].alive {
                self.cut_off_until_outage_ends(slot);
            }
        }
    }

    /// The store goes down for everybody for `ms` and comes back empty.
    fn lose_buckets(&mut self, ms: u64) {
        self.store_down_for_everybody(ms);
        self.log(|| "the store loses every bucket".to_string());
        self.store.wipe();
        self.commits.on_store_wiped();
        let now = self.now;
        let mut witnesses = Vec::new();
        for (slot, p) in self.procs.iter_mut().enumerate().filter(|(_, p)| p.alive) {
            p.store_lost_at = Some(p.local(now));
            witnesses.push(Witness {
                slot,
                inc: p.inc,
                known: p.worker.highest_seen_version(),
            });
        }
        self.epochs.on_store_lost(witnesses);
        for p in self.procs.iter_mut().filter(|p| p.alive && p.watch_gen > 0) {
            // Items of the old watch still on their way are dropped.
            p.watch_gen += 1;
            p.watch_lost = true;
        }
    }

    /// Back in reach of a store that lost its buckets: the process's watch
    /// ends (`WatchLost`) and its driver opens a new one.
    pub(super) fn end_lost_watch(&mut self, slot: usize, inc: u64) {
        let p = &mut self.procs[slot];
        if !std::mem::take(&mut p.watch_lost) {
            return;
        }
        let (worker, members) = (p.watch_worker.clone(), p.watch_members.clone());
        self.deliver_now(slot, Event::WatchLost);
        if self.live(slot, inc) {
            self.open_watch(slot, inc, worker, members);
        }
    }

    /// Cuts `slot` off until the current store outage ended, plus its own
    /// reconnect lag.
    pub(super) fn cut_off_until_outage_ends(&mut self, slot: usize) {
        let lag = (self.rng.unit() * self.cfg.reconnect_lag_ms as f64) as u64;
        let ms = self.outage_until.saturating_sub(self.now) + lag;
        self.cut_off(slot, ms);
    }

    /// Cuts `slot` off from the store for `ms`.
    pub(super) fn cut_off(&mut self, slot: usize, ms: u64) {
        let label = self.procs[slot].label.clone();
        self.log(|| format!("{label} is cut off from the store for {ms} ms"));
        let until = (self.now + ms).max(self.procs[slot].cut_until.unwrap_or(0));
        self.procs[slot].cut_until = Some(until);
        let inc = self.procs[slot].inc;
        self.schedule(self.now + ms, Ev::Heal { slot, inc });
        self.send(slot, self.now + 1, Event::Disconnected);
    }

    fn crash(&mut self, slot: usize) {
        let label = self.procs[slot].label.clone();
        self.log(|| format!("{label} crashes"));
        let p = &mut self.procs[slot];
        p.alive = false;
        let held: Vec<PartitionId> = p.held.keys().copied().collect();
        p.held.clear();
        for id in held {
            self.ownership.remove(slot, id, self.now);
        }
    }

    /// Appends `count` new partitions to the list.
    fn add_partitions(&mut self, count: usize) {
        for _ in 0..count {
            let key = format!("p-{}", self.next_partition);
            self.partitions
                .push(Partition::new(["sim".to_string(), key]));
            self.next_partition += 1;
        }
    }

    /// The checks learn the new partition list, and every live process gets
    /// it after a network delay (`random_delay`) or 1 ms.
    fn announce_partitions(&mut self, random_delay: bool) {
        let listed = self.partitions.iter().map(Partition::id).collect();
        self.ownership.set_listed(listed, self.now);
        // One shared list for every process (a copy each is the cost of a
        // refresh at a thousand workers).
        let shared: Arc<[Partition]> = self.partitions.clone().into();
        for slot in self.alive_slots(false) {
            let list = Arc::clone(&shared);
            let delay = if random_delay { self.net_delay() } else { 1 };
            self.send(slot, self.now + delay, Event::PartitionsChanged(list));
        }
    }
}
