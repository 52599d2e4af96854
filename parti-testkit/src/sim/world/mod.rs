//! The simulator: N core workers, the simulated store, a simulated network and
//! clock, injected faults, and the guarantees checked after every step.
//!
//! This module is the scheduler: the agenda of timed events and their
//! dispatch to the processes. The rest lives beside it, one concern each:
//! [`config`] (what a run is asked and what it reports), [`process`] (a
//! simulated process and the agenda's events), [`store_link`] (commands on
//! the store through the production translation, watches), [`inject`]
//! (faults and scripted steps), [`observe`] (what the notifications tell the
//! checks) and [`report`] (the end of a run). The guarantees themselves are
//! checked in [`crate::sim::checks`].

mod agenda;
mod config;
mod inject;
mod observe;
mod process;
mod report;
mod store_link;

pub use config::{Move, Removal, Scripted, SimConfig, SimReport, VersionMoves};

use super::checks::{Commits, Epochs, Exclusivity, Guarantee, Ownership, RestartWatch, Violation};
use super::faults::FaultKind;
use super::faults::draw_schedule;
use super::idmap::IdMap;
use super::rng::Rng;
use super::store::SimStore;
use agenda::Agenda;
use parti_core::backend::{MemberScope, WatchEvent};
use parti_core::{
    AssignmentStrategy, Command, DegradedPolicy, Event, InstanceId, Instant, Partition, Worker,
    WorkerId,
};
use process::{Ev, KeyNumbers, Proc, WatchFilter, WorkerNumbers};
use report::short;
use std::collections::VecDeque;
use std::sync::Arc;

/// The simulator.
pub struct Simulator {
    cfg: SimConfig,
    strategy: Arc<dyn AssignmentStrategy>,
    rng: Rng,
    now: u64,
    agenda: Agenda,
    store: SimStore,
    key_numbers: KeyNumbers,
    worker_numbers: WorkerNumbers,
    procs: Vec<Proc>,
    /// Per slot, what the current watch of its process selects: kept beside
    /// the processes so that a fan-out scans a small array.
    watch_filters: Vec<WatchFilter>,
    next_inc: u64,
    partitions: Vec<Partition>,
    next_partition: usize,
    ownership: Ownership,
    commits: Commits,
    epochs: Epochs,
    last_holder: IdMap<WorkerId>,
    restart_watch: Option<RestartWatch>,
    violations: Vec<Violation>,
    trace: VecDeque<String>,
    report: SimReport,
    quiet_from: u64,
    exclusivity: Exclusivity,
    expire_at: Option<u64>,
    last_commit_at: u64,
    last_fault_at: u64,
    /// The store is down for everybody until then (processes started
    /// meanwhile cannot reach it either).
    outage_until: u64,
}

impl Simulator {
    /// A simulator for `cfg` using `strategy` on every worker.
    pub fn new(cfg: SimConfig, strategy: Arc<dyn AssignmentStrategy>) -> Self {
        let c = &cfg.config;
        let store = SimStore::new(
            c.worker_id_ttl.as_millis() as u64,
            c.election_ttl.as_millis() as u64,
        );
        let rng = Rng::new(cfg.seed);
        let partitions: Vec<Partition> = (0..cfg.partitions)
            .map(|i| Partition::new(["sim".to_string(), format!("p-{i}")]))
            .collect();
        let quiet_from = cfg.duration_ms.saturating_sub(cfg.quiet_ms);
        let mut sim = Simulator {
            strategy,
            rng,
            now: 0,
            agenda: Agenda::default(),
            store,
            key_numbers: KeyNumbers::default(),
            worker_numbers: WorkerNumbers::default(),
            procs: Vec::new(),
            watch_filters: Vec::new(),
            next_inc: 0,
            next_partition: cfg.partitions,
            partitions,
            ownership: Ownership::default(),
            commits: Commits::default(),
            epochs: Epochs::default(),
            last_holder: IdMap::default(),
            restart_watch: None,
            violations: Vec::new(),
            trace: VecDeque::new(),
            report: SimReport {
                seed: cfg.seed,
                ..SimReport::default()
            },
            quiet_from,
            exclusivity: Exclusivity::default(),
            expire_at: None,
            last_commit_at: 0,
            last_fault_at: 0,
            outage_until: 0,
            cfg,
        };
        let listed = sim.partitions.iter().map(Partition::id).collect();
        sim.ownership.set_listed(listed, 0);
        sim
    }

    fn schedule(&mut self, at: u64, ev: Ev) {
        self.agenda.push(at, ev);
    }

    fn log(&mut self, line: impl FnOnce() -> String) {
        if self.cfg.timeline {
            println!("{:>8.3}s  {}", self.now as f64 / 1000.0, line());
        } else if self.cfg.trace {
            let text = format!("{:>8.3}s  {}", self.now as f64 / 1000.0, line());
            if self.trace.len() >= self.cfg.trace_len {
                self.trace.pop_front();
            }
            self.trace.push_back(text);
        }
    }

    fn trace(&mut self, line: impl FnOnce() -> String) {
        if self.cfg.trace && !self.cfg.timeline {
            self.log(line);
        }
    }

    fn spawn(&mut self, slot: usize, preferred: Option<u32>) {
        let mut config = self.cfg.config.clone();
        config.preferred_worker_id = preferred;
        let rho = config.max_clock_drift * 0.9;
        let rate = if self.cfg.faults.has(FaultKind::Drift) {
            1.0 + (self.rng.unit() * 2.0 - 1.0) * rho
        } else {
            1.0
        };
        self.next_inc += 1;
        let inc = self.next_inc;
        let instance = InstanceId(self.rng.next_u64());
        #[allow(unused_mut)]
        let mut worker = Worker::new(config, self.strategy.clone(), instance, Instant::ZERO);
        #[cfg(feature = "planted-bugs")]
        if let Some(bug) = self.cfg.plant {
            worker.plant(bug);
        }
        let proc = Proc {
            worker,
            inc,
            alive: true,
            started_at: self.now,
            rate,
            paused_until: None,
            cut_until: None,
            watch_gen: 0,
            watch_worker: None,
            watch_members: MemberScope::All,
            last_watch_at: 0,
            watch_lag: None,
            held: IdMap::default(),
            timer_at: None,
            restart_after_stop: false,
            leaving: false,
            restart_preferred: None,
            latest_pending: Default::default(),
            watch_lost: false,
            store_lost_at: None,
            watch_asked_at: 0,
            max_version: 0,
            label: format!("p{slot}.{inc}"),
        };
        if slot < self.procs.len() {
            self.procs[slot] = proc;
            self.watch_filters[slot] = WatchFilter::NONE;
        } else {
            self.procs.push(proc);
            self.watch_filters.push(WatchFilter::NONE);
        }
        self.log(|| {
            format!("p{slot}.{inc} starts (preferred id {preferred:?}, clock rate {rate:.4})")
        });
        if self.outage_until > self.now {
            self.cut_off_until_outage_ends(slot);
        }
        self.deliver_now(slot, Event::Start);
    }

    /// Runs the whole simulation.
    pub fn run(mut self) -> SimReport {
        for slot in 0..self.cfg.workers {
            let preferred = self.cfg.preferred_ids.then(|| {
                let offset = u32::try_from(slot).unwrap_or(u32::MAX);
                self.cfg.config.worker_id_min.saturating_add(offset)
            });
            self.spawn(slot, preferred);
        }
        let first = self.cfg.config.cold_start_window.as_millis() as u64 + 15_000;
        if let Some(script) = self.cfg.script.clone() {
            for (at, step) in script {
                self.schedule(at, Ev::Script(step));
            }
        } else {
            let schedule = draw_schedule(
                &mut self.rng,
                &self.cfg.faults,
                first,
                self.quiet_from,
                self.cfg.fault_gap_ms,
            );
            for (at, kind) in schedule {
                self.schedule(at, Ev::Fault(kind));
            }
        }
        self.schedule(self.quiet_from, Ev::EnsureAlive);
        let mut same_instant = 0u32;
        while let Some((at, ev)) = self.agenda.pop() {
            if at > self.cfg.duration_ms {
                break;
            }
            if at == self.now {
                same_instant += 1;
                if same_instant > 50_000 {
                    self.violations.push(Violation {
                        guarantee: Guarantee::S4,
                        at: self.now,
                        detail: "livelock: more than 50000 events at one instant".into(),
                    });
                    break;
                }
            } else {
                same_instant = 0;
            }
            self.now = at;
            self.report.steps += 1;
            self.dispatch(ev);
            self.after_step();
            if self.cfg.trace && !self.violations.is_empty() {
                // Stop at the first violation so the trace ends where it happened.
                let violations = std::mem::take(&mut self.violations);
                let mut report = self.finish_at_violation();
                report.violations = violations;
                return report;
            }
        }
        self.now = self.cfg.duration_ms;
        self.finish()
    }

    fn dispatch(&mut self, ev: Ev) {
        if let Some(until) = self.held_back_until(&ev) {
            self.schedule(until, ev);
            return;
        }
        match ev {
            Ev::Deliver { slot, inc, event } => {
                if self.live(slot, inc) {
                    self.deliver_now(slot, event);
                }
            }
            Ev::WatchItem {
                slot,
                inc,
                generation,
                key,
                revision,
                item,
            } => {
                if !self.live(slot, inc) || self.procs[slot].watch_gen != generation {
                    return;
                }
                // Like a NATS KV watch on a history-1 bucket: a value replaced
                // before it was delivered is never delivered.
                if let Some(key) = key
                    && self.procs[slot]
                        .latest_pending
                        .get(key)
                        .is_some_and(|r| r > revision)
                {
                    return;
                }
                if self.now >= self.quiet_from {
                    self.count_foreign_member_item(slot, &item);
                }
                if self.report.commit_log.is_empty() && matches!(*item, WatchEvent::Member { .. }) {
                    self.report.cold_start_member_items += 1;
                }
                self.deliver_now(slot, Event::Watch(Arc::unwrap_or_clone(item)));
            }
            Ev::Arrive { slot, inc, command } => self.execute(slot, inc, command),
            Ev::Timer { slot, inc } => {
                if !self.live(slot, inc) {
                    return;
                }
                let p = &mut self.procs[slot];
                if p.timer_at != Some(self.now) {
                    return;
                }
                p.timer_at = None;
                if let Some(t) = p.paused_until.filter(|t| self.now < *t) {
                    self.schedule(t, Ev::Timer { slot, inc });
                    self.procs[slot].timer_at = Some(t);
                    return;
                }
                let local = p.local(self.now);
                p.worker.handle_timeout(local);
                self.drain(slot);
            }
            Ev::Fault(kind) => self.inject(kind),
            Ev::Script(step) => self.run_script(step),
            Ev::Spawn { slot, preferred } => {
                if slot < self.procs.len() && self.procs[slot].alive {
                    return;
                }
                self.spawn(slot, preferred);
            }
            Ev::Heal { slot, inc } => {
                if !self.live(slot, inc) {
                    return;
                }
                let p = &mut self.procs[slot];
                if p.cut_until.is_some_and(|t| t <= self.now) {
                    p.cut_until = None;
                    self.log(|| format!("p{slot} reconnects to the store"));
                    self.deliver_now(slot, Event::Reconnected);
                    self.end_lost_watch(slot, inc);
                }
                let p = &mut self.procs[slot];
                if p.paused_until.is_some_and(|t| t <= self.now) {
                    p.paused_until = None;
                    self.log(|| format!("p{slot} resumes after its pause"));
                    let local = self.procs[slot].local(self.now);
                    self.procs[slot].worker.handle_timeout(local);
                    self.drain(slot);
                }
            }
            Ev::EnsureAlive => {
                // Processes on their way out do not count.
                let alive = self.procs.iter().filter(|p| p.alive && !p.leaving).count();
                let want = self.cfg.workers.min(2);
                for _ in alive..want {
                    let slot = self.procs.len();
                    self.spawn(slot, None);
                }
            }
            Ev::Expire => {
                self.expire_at = None;
                self.store.expire(self.now);
                self.fan_out();
            }
        }
    }

    /// Counts a member record of a member other than itself and the leader
    /// delivered to `slot` while it holds an ID and does not lead: a
    /// heartbeat its watch should not carry (see
    /// [`parti_core::backend::MemberScope`]).
    fn count_foreign_member_item(&mut self, slot: usize, item: &WatchEvent) {
        let worker = &self.procs[slot].worker;
        if let WatchEvent::Member { id, .. } = item
            && !worker.is_leader()
            && worker.worker_id().is_some_and(|me| me != id)
            && worker.leader().is_none_or(|(leader, _)| &leader != id)
        {
            self.report.follower_member_items += 1;
        }
    }

    pub(super) fn live(&self, slot: usize, inc: u64) -> bool {
        self.procs
            .get(slot)
            .is_some_and(|p| p.alive && p.inc == inc)
    }

    /// Until when an event for a live process must wait: a paused process
    /// takes nothing, and a cut-off one receives no watch items.
    fn held_back_until(&self, ev: &Ev) -> Option<u64> {
        let waiting = |t: &u64| self.now < *t;
        match *ev {
            Ev::Deliver { slot, inc, .. } if self.live(slot, inc) => {
                self.procs[slot].paused_until.filter(waiting)
            }
            Ev::WatchItem {
                slot,
                inc,
                generation,
                ..
            } if self.live(slot, inc) && self.procs[slot].watch_gen == generation => {
                let p = &self.procs[slot];
                p.paused_until
                    .filter(waiting)
                    .or(p.cut_until.filter(waiting))
            }
            _ => None,
        }
    }

    /// Schedules `event` for the current incarnation of `slot` at `at`.
    fn send(&mut self, slot: usize, at: u64, event: Event) {
        let inc = self.procs[slot].inc;
        self.schedule(at, Ev::Deliver { slot, inc, event });
    }

    fn deliver_now(&mut self, slot: usize, event: Event) {
        let p = &mut self.procs[slot];
        let local = p.local(self.now);
        if self.cfg.trace && !self.cfg.timeline {
            let text = format!("{} <- {event:?}", p.label);
            self.trace(|| text);
        }
        self.procs[slot].worker.handle(event, local);
        self.drain(slot);
    }

    /// Takes every command the worker produced and routes it.
    fn drain(&mut self, slot: usize) {
        while let Some(cmd) = self.procs[slot].worker.poll_command() {
            let inc = self.procs[slot].inc;
            match cmd {
                Command::Notify(n) => self.on_notification(slot, n),
                other => {
                    if matches!(other, Command::Watch { worker: None, .. }) {
                        self.report.claim_watches += 1;
                    }
                    if matches!(other, Command::ClaimId { .. }) {
                        self.report.claims += 1;
                        if self.report.commit_log.is_empty() {
                            self.report.cold_start_claims += 1;
                        }
                    }
                    if self.cfg.trace && !self.cfg.timeline {
                        let text = format!("{} -> {:?}", self.procs[slot].label, short(&other));
                        self.trace(|| text);
                    }
                    let d = self.net_delay();
                    let mut at = self.now + d;
                    if matches!(other, Command::Watch { .. }) {
                        // A driver replaces its watch in the order asked
                        // (the last one asked is the one that runs).
                        at = at.max(self.procs[slot].watch_asked_at);
                        self.procs[slot].watch_asked_at = at;
                    }
                    self.schedule(
                        at,
                        Ev::Arrive {
                            slot,
                            inc,
                            command: other,
                        },
                    );
                }
            }
        }
        self.arm_timer(slot);
    }

    fn arm_timer(&mut self, slot: usize) {
        let p = &self.procs[slot];
        if !p.alive {
            return;
        }
        let Some(local) = p.worker.poll_timeout() else {
            return;
        };
        let at = p.global(local).max(self.now);
        if p.timer_at.is_some_and(|t| t <= at && t >= self.now) {
            return;
        }
        let inc = p.inc;
        self.procs[slot].timer_at = Some(at);
        self.schedule(at, Ev::Timer { slot, inc });
    }

    /// Checks S3 after every step.
    fn after_step(&mut self) {
        let keep = self.cfg.config.degraded.policy == DegradedPolicy::KeepProcessing;
        let (procs, now) = (&self.procs, self.now);
        self.exclusivity.check(
            &self.ownership,
            |slot| procs[slot].view(now),
            keep,
            now,
            &mut self.violations,
        );
        self.report.tolerated_overlap_ms = self.exclusivity.tolerated_ms;
    }
}
