//! The simulator: N core workers, the simulated store, a simulated network and
//! clock, injected faults, and the guarantees checked after every step.

use super::checks::{self, Commits, Epochs, Guarantee, Ownership, RestartWatch, Violation};
use super::faults::{FaultKind, FaultSet, draw_schedule};
use super::rng::Rng;
use super::store::{Key, SimStore, Value, WriteError, watched};
#[cfg(feature = "planted-bugs")]
use parti_core::PlantedBug;
use parti_core::backend::{AssignmentSnapshot, Change, WatchEvent};
use parti_core::records::WorkerAssignment;
use parti_core::{
    AssignmentStrategy, Command, Config, DegradedPolicy, Event, InstanceId, Instant, Notification,
    Outcome, Partition, PartitionId, State, StopMode, Worker, WorkerId,
};
use std::cmp::Ordering;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap, VecDeque};
use std::fmt::Write as _;
use std::sync::Arc;

/// Parameters of one simulated run.
#[derive(Clone, Debug)]
pub struct SimConfig {
    /// The seed; the same seed replays exactly.
    pub seed: u64,
    /// Workers at start.
    pub workers: usize,
    /// Partitions at start.
    pub partitions: usize,
    /// Simulated duration, ms.
    pub duration_ms: u64,
    /// Final period without faults in which convergence is checked, ms.
    pub quiet_ms: u64,
    /// Mean time between faults, ms.
    pub fault_gap_ms: u64,
    /// Enabled faults.
    pub faults: FaultSet,
    /// Worker configuration.
    pub config: Config,
    /// Planted bug, if any.
    #[cfg(feature = "planted-bugs")]
    pub plant: Option<PlantedBug>,
    /// Keep a readable trace of the last events (printed on a violation).
    pub trace: bool,
    /// Print a readable timeline of notable events as they happen.
    pub timeline: bool,
    /// How many trace lines to keep.
    pub trace_len: usize,
    /// A fixed scenario instead of random faults: (time in ms, step).
    pub script: Option<Vec<(u64, Scripted)>>,
}

/// A step of a scripted scenario.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Scripted {
    /// The current leader crashes (not restarted).
    CrashLeader,
    /// A worker that does not lead crashes (not restarted).
    CrashFollower,
    /// A new worker joins.
    Join,
    /// A worker that does not lead leaves (`StopMode::Leave`).
    LeaveFollower,
    /// A worker that does not lead stops gracefully and restarts under its ID.
    RestartFollower,
    /// Partitions are added to and removed from the list.
    Refresh {
        /// How many to add.
        add: usize,
        /// How many to remove.
        remove: usize,
    },
    /// The leader is cut off from the store for this many ms.
    CutLeader(u64),
}

impl SimConfig {
    /// Defaults: 5 workers, 64 partitions, 5 minutes, all faults, default config.
    pub fn new(seed: u64) -> Self {
        SimConfig {
            seed,
            workers: 5,
            partitions: 64,
            duration_ms: 5 * 60_000,
            quiet_ms: 90_000,
            fault_gap_ms: 12_000,
            faults: FaultSet::all(),
            config: Config::default(),
            #[cfg(feature = "planted-bugs")]
            plant: None,
            trace: false,
            timeline: false,
            trace_len: 400,
            script: None,
        }
    }

    /// The bound within which the group must converge after the last fault.
    pub fn convergence_bound_ms(&self) -> u64 {
        let c = &self.config;
        let ms = |d: std::time::Duration| d.as_millis() as u64;
        ms(c.lease_expiry_wait())
            + ms(c.effective_emergency_grace())
            + ms(c.cold_start_window)
            + ms(c.planned_scale_window)
            + ms(c.rebalance_cooldown)
            + ms(c.election_ttl)
            + 5_000
    }
}

/// What a run found.
#[derive(Clone, Debug, Default)]
pub struct SimReport {
    /// The seed.
    pub seed: u64,
    /// Violations (empty when every guarantee held).
    pub violations: Vec<Violation>,
    /// Time from the start of the quiet period to convergence, ms.
    pub convergence_ms: Option<u64>,
    /// Partition moves (a partition granted to a worker other than its last
    /// holder).
    pub moved: u64,
    /// Accepted commits.
    pub commits: u64,
    /// Simulator events processed.
    pub steps: u64,
    /// Faults injected.
    pub faults: BTreeMap<String, u32>,
    /// Longest time two processes both held one partition while one of them was
    /// cut off under `KeepProcessing` (the documented exception), ms.
    pub tolerated_overlap_ms: u64,
    /// The trace of the last events (when tracing).
    pub trace: Vec<String>,
    /// Every accepted commit: (time ms, version, lifecycle).
    pub commit_log: Vec<(u64, u64, parti_core::records::Lifecycle)>,
    /// When each partition move happened (ms).
    pub move_times: Vec<u64>,
}

#[derive(Debug)]
enum Ev {
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

struct Scheduled {
    at: u64,
    seq: u64,
    ev: Ev,
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

struct Proc {
    worker: Worker,
    inc: u64,
    alive: bool,
    started_at: u64,
    rate: f64,
    paused_until: Option<u64>,
    cut_until: Option<u64>,
    watch_gen: u64,
    watch_worker: Option<WorkerId>,
    last_watch_at: u64,
    held: BTreeMap<PartitionId, u64>,
    timer_at: Option<u64>,
    restart_after_stop: bool,
    restart_preferred: Option<u32>,
    /// Newest revision scheduled for delivery per key (to coalesce).
    latest_pending: std::collections::HashMap<Key, u64>,
    label: String,
}

impl Proc {
    fn local(&self, now: u64) -> Instant {
        Instant::from_millis(((now.saturating_sub(self.started_at)) as f64 * self.rate) as u64)
    }

    fn global(&self, local: Instant) -> u64 {
        self.started_at + (local.as_millis() as f64 / self.rate).ceil() as u64
    }

    /// Paused until its `Heal` event has run (not merely until the instant:
    /// other events at that same instant come first).
    fn paused(&self, now: u64) -> bool {
        let _ = now;
        self.paused_until.is_some()
    }

    fn cut(&self, now: u64) -> bool {
        self.cut_until.is_some_and(|t| now < t)
    }
}

/// The simulator.
pub struct Simulator {
    cfg: SimConfig,
    strategy: Arc<dyn AssignmentStrategy>,
    rng: Rng,
    now: u64,
    seq: u64,
    queue: BinaryHeap<Scheduled>,
    store: SimStore,
    procs: Vec<Proc>,
    next_inc: u64,
    partitions: Vec<Partition>,
    next_partition: usize,
    ownership: Ownership,
    commits: Commits,
    epochs: Epochs,
    last_holder: BTreeMap<PartitionId, WorkerId>,
    restart_watch: Option<RestartWatch>,
    violations: Vec<Violation>,
    trace: VecDeque<String>,
    report: SimReport,
    quiet_from: u64,
    overlap_since: BTreeMap<PartitionId, u64>,
    reported_overlaps: BTreeSet<PartitionId>,
    expire_at: Option<u64>,
    last_commit_at: u64,
    last_fault_at: u64,
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
            seq: 0,
            queue: BinaryHeap::new(),
            store,
            procs: Vec::new(),
            next_inc: 0,
            next_partition: cfg.partitions,
            partitions,
            ownership: Ownership::default(),
            commits: Commits::default(),
            epochs: Epochs::default(),
            last_holder: BTreeMap::new(),
            restart_watch: None,
            violations: Vec::new(),
            trace: VecDeque::new(),
            report: SimReport {
                seed: cfg.seed,
                ..SimReport::default()
            },
            quiet_from,
            overlap_since: BTreeMap::new(),
            reported_overlaps: BTreeSet::new(),
            expire_at: None,
            last_commit_at: 0,
            last_fault_at: 0,
            cfg,
        };
        let listed = sim.partitions.iter().map(Partition::id).collect();
        sim.ownership.set_listed(listed, 0);
        sim
    }

    fn schedule(&mut self, at: u64, ev: Ev) {
        self.seq += 1;
        self.queue.push(Scheduled {
            at,
            seq: self.seq,
            ev,
        });
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

    fn net_delay(&mut self) -> u64 {
        if self.cfg.faults.has(FaultKind::Delay) && self.rng.chance(0.02) {
            self.rng.range(20, 200)
        } else {
            self.rng.range(1, 8)
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
            last_watch_at: 0,
            held: BTreeMap::new(),
            timer_at: None,
            restart_after_stop: false,
            restart_preferred: None,
            latest_pending: std::collections::HashMap::new(),
            label: format!("p{slot}.{inc}"),
        };
        if slot < self.procs.len() {
            self.procs[slot] = proc;
        } else {
            self.procs.push(proc);
        }
        self.log(|| {
            format!("p{slot}.{inc} starts (preferred id {preferred:?}, clock rate {rate:.4})")
        });
        self.deliver_now(slot, Event::Start);
    }

    /// Runs the whole simulation.
    pub fn run(mut self) -> SimReport {
        for slot in 0..self.cfg.workers {
            self.spawn(slot, None);
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
        while let Some(item) = self.queue.pop() {
            if item.at > self.cfg.duration_ms {
                break;
            }
            if item.at == self.now {
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
            self.now = item.at;
            self.report.steps += 1;
            self.dispatch(item.ev);
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
        match ev {
            Ev::Deliver { slot, inc, event } => {
                if !self.live(slot, inc) {
                    return;
                }
                if let Some(until) = self.blocked_until(slot, &event) {
                    self.schedule(until, Ev::Deliver { slot, inc, event });
                    return;
                }
                self.deliver_now(slot, event);
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
                let p = &self.procs[slot];
                let until = match (p.paused_until, p.cut_until) {
                    (Some(t), _) if self.now < t => Some(t),
                    (_, Some(t)) if self.now < t => Some(t),
                    _ => None,
                };
                if let Some(until) = until {
                    self.schedule(
                        until,
                        Ev::WatchItem {
                            slot,
                            inc,
                            generation,
                            key,
                            revision,
                            item,
                        },
                    );
                    return;
                }
                // Like a NATS KV watch on a history-1 bucket: a value replaced
                // before it was delivered is never delivered.
                if let Some(key) = &key
                    && self.procs[slot]
                        .latest_pending
                        .get(key)
                        .is_some_and(|r| *r > revision)
                {
                    return;
                }
                self.deliver_now(slot, Event::Watch(item));
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
                let alive = self.procs.iter().filter(|p| p.alive).count();
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

    fn live(&self, slot: usize, inc: u64) -> bool {
        self.procs
            .get(slot)
            .is_some_and(|p| p.alive && p.inc == inc)
    }

    fn blocked_until(&self, slot: usize, event: &Event) -> Option<u64> {
        let p = &self.procs[slot];
        if let Some(t) = p.paused_until.filter(|t| self.now < *t) {
            return Some(t);
        }
        let _ = event;
        None
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
                    if self.cfg.trace && !self.cfg.timeline {
                        let text = format!("{} -> {:?}", self.procs[slot].label, short(&other));
                        self.trace(|| text);
                    }
                    let d = self.net_delay();
                    self.schedule(
                        self.now + d,
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

    fn respond(&mut self, slot: usize, inc: u64, op: parti_core::OpId, outcome: Outcome) {
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

    fn write_outcome(&mut self, r: Result<u64, WriteError>) -> Outcome {
        match r {
            Ok(rev) if self.cfg.faults.has(FaultKind::Lost) && self.rng.chance(0.02) => {
                let _ = rev;
                Outcome::Unknown
            }
            Ok(rev) => Outcome::Written(rev),
            Err(WriteError::AlreadyExists) => Outcome::AlreadyExists,
            Err(WriteError::Conflict) => Outcome::Conflict,
        }
    }

    /// A command reaches the store.
    fn execute(&mut self, slot: usize, inc: u64, command: Command) {
        let cut = self
            .procs
            .get(slot)
            .is_some_and(|p| p.inc == inc && p.cut(self.now));
        let now = self.now;
        if cut {
            if let Some(op) = command.op() {
                self.respond(slot, inc, op, Outcome::Unavailable);
            }
            return;
        }
        match command {
            Command::Watch { worker } => {
                if !self.live(slot, inc) {
                    return;
                }
                let p = &mut self.procs[slot];
                p.watch_gen += 1;
                p.watch_worker = worker.clone();
                let generation = p.watch_gen;
                let snapshot = self.store.snapshot(worker.as_ref());
                let d = self.net_delay();
                let at = (self.now + d).max(self.procs[slot].last_watch_at);
                self.procs[slot].last_watch_at = at;
                for (key, entry) in snapshot {
                    let revision = entry.revision;
                    if let Some(item) = to_watch_item(&key, revision, Some(entry.value)) {
                        self.procs[slot]
                            .latest_pending
                            .insert(key.clone(), revision);
                        self.schedule(
                            at,
                            Ev::WatchItem {
                                slot,
                                inc,
                                generation,
                                key: Some(key),
                                revision,
                                item,
                            },
                        );
                    }
                }
                self.schedule(
                    at,
                    Ev::WatchItem {
                        slot,
                        inc,
                        generation,
                        key: None,
                        revision: 0,
                        item: WatchEvent::CaughtUp,
                    },
                );
            }
            Command::ClaimId {
                op,
                id,
                record,
                takeover,
            } => {
                let key = Key::Member(id);
                let r = match takeover {
                    Some(rev) => self.store.update(key, Value::Member(record), rev, now),
                    None => self.store.create(key, Value::Member(record), now),
                };
                let outcome = self.write_outcome(r);
                self.respond(slot, inc, op, outcome);
            }
            Command::RenewLease {
                op,
                id,
                record,
                expected,
            }
            | Command::Evict {
                op,
                id,
                record,
                expected,
            } => {
                let r = self
                    .store
                    .update(Key::Member(id), Value::Member(record), expected, now);
                let outcome = self.write_outcome(r);
                self.respond(slot, inc, op, outcome);
            }
            Command::ReadMember { op, id } => {
                let found = self
                    .store
                    .get(&Key::Member(id))
                    .and_then(|e| match &e.value {
                        Value::Member(m) => Some((m.clone(), e.revision)),
                        _ => None,
                    });
                self.respond(slot, inc, op, Outcome::Member(found));
            }
            Command::ReleaseId { op, id, expected } => {
                let r = self.store.delete(&Key::Member(id), expected).map(|()| 0);
                let outcome = self.write_outcome(r);
                self.respond(slot, inc, op, outcome);
            }
            Command::Campaign { op, record } => {
                let r = self.store.create(Key::Leader, Value::Leader(record), now);
                let outcome = self.write_outcome(r);
                self.respond(slot, inc, op, outcome);
            }
            Command::RenewLeadership {
                op,
                record,
                expected,
            } => {
                let r = self
                    .store
                    .update(Key::Leader, Value::Leader(record), expected, now);
                let outcome = self.write_outcome(r);
                self.respond(slot, inc, op, outcome);
            }
            Command::Resign { op, expected } => {
                let r = self.store.delete(&Key::Leader, expected).map(|()| 0);
                let outcome = self.write_outcome(r);
                self.respond(slot, inc, op, outcome);
            }
            Command::LoadAssignments { op } => {
                let snapshot = self.load_snapshot();
                self.respond(slot, inc, op, Outcome::Loaded(snapshot));
            }
            Command::Publish {
                op,
                records,
                meta,
                expected,
            } => {
                for r in records {
                    self.store.put(
                        Key::Assignment(r.term, r.worker.clone()),
                        Value::Assignment(r),
                        now,
                    );
                }
                let (term, version, lifecycle) = (meta.term, meta.version, meta.lifecycle);
                let r = match expected {
                    Some(rev) => self.store.update(Key::Meta, Value::Meta(meta), rev, now),
                    None => self.store.create(Key::Meta, Value::Meta(meta), now),
                };
                if r.is_ok() {
                    self.last_commit_at = now;
                    self.report.commit_log.push((now, version, lifecycle));
                    let max_term = self.store.max_leader_term;
                    self.commits
                        .on_commit(term, version, max_term, now, &mut self.violations);
                }
                let outcome = self.write_outcome(r);
                self.respond(slot, inc, op, outcome);
            }
            Command::CleanupAssignments { keep_term } => self.store.purge_other_terms(keep_term),
            Command::ListPartitions { op } => {
                let list = self.partitions.clone();
                self.respond(slot, inc, op, Outcome::Partitions(list));
            }
            Command::Notify(_) => {}
        }
        self.fan_out();
    }

    fn load_snapshot(&self) -> AssignmentSnapshot {
        let Some(entry) = self.store.get(&Key::Meta) else {
            return AssignmentSnapshot::default();
        };
        let Value::Meta(meta) = &entry.value else {
            return AssignmentSnapshot::default();
        };
        let records: Vec<WorkerAssignment> = meta
            .records
            .keys()
            .filter_map(|w| self.store.get(&Key::Assignment(meta.term, w.clone())))
            .filter_map(|e| match &e.value {
                Value::Assignment(a) => Some(a.clone()),
                _ => None,
            })
            .collect();
        AssignmentSnapshot {
            meta: Some((meta.clone(), entry.revision)),
            records,
        }
    }

    /// Sends the store's new changes to every watcher, in order.
    fn fan_out(&mut self) {
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
        for slot in 0..self.procs.len() {
            if !self.procs[slot].alive || self.procs[slot].watch_gen == 0 {
                continue;
            }
            let mut any = false;
            for change in &changes {
                if watched(&change.key, self.procs[slot].watch_worker.as_ref()) {
                    any = true;
                    break;
                }
            }
            if !any {
                continue;
            }
            let d = self.net_delay();
            let at = (self.now + d).max(self.procs[slot].last_watch_at);
            self.procs[slot].last_watch_at = at;
            let (inc, generation) = (self.procs[slot].inc, self.procs[slot].watch_gen);
            for change in &changes {
                if watched(&change.key, self.procs[slot].watch_worker.as_ref())
                    && let Some(item) =
                        to_watch_item(&change.key, change.revision, change.value.clone())
                {
                    self.procs[slot]
                        .latest_pending
                        .insert(change.key.clone(), change.revision);
                    self.schedule(
                        at,
                        Ev::WatchItem {
                            slot,
                            inc,
                            generation,
                            key: Some(change.key.clone()),
                            revision: change.revision,
                            item,
                        },
                    );
                }
            }
        }
    }

    fn on_notification(&mut self, slot: usize, n: Notification) {
        let label = self.procs[slot].label.clone();
        match n {
            Notification::StateChanged { from, to } => {
                let at = self.now;
                checks::check_transition(from, to, &label, at, &mut self.violations);
                if self.cfg.timeline
                    && (to == State::Stable
                        || to == State::Emergency
                        || to == State::Shutdown
                        || to == State::Degraded)
                {
                    self.log(|| format!("{label} {from} -> {to}"));
                } else {
                    self.trace(|| format!("{label} state {from} -> {to}"));
                }
            }
            Notification::IdChanged { id } => {
                if let Some(id) = &id {
                    self.procs[slot].label = format!("p{slot}({id})");
                    self.check_unique_id(slot, id);
                }
                let label = self.procs[slot].label.clone();
                self.log(|| {
                    format!(
                        "{label} {}",
                        match &id {
                            Some(id) => format!("claims {id}"),
                            None => "lost its ID".into(),
                        }
                    )
                });
            }
            Notification::LeadershipChanged { leader, term } => {
                self.log(|| {
                    format!(
                        "{label} {} (term {term})",
                        if leader {
                            "becomes leader"
                        } else {
                            "is no longer leader"
                        }
                    )
                });
            }
            Notification::Published {
                version,
                granted,
                revoked,
            } => {
                self.log(|| {
                    format!(
                        "{label} publishes version {version}: {granted} granted, {revoked} revoked"
                    )
                });
            }
            Notification::AssignmentChanged {
                added,
                removed,
                version,
            } => {
                let now = self.now;
                for p in &removed {
                    let id = p.partition.id();
                    self.procs[slot].held.remove(&id);
                    self.ownership.remove(slot, id, now);
                }
                let who = self.procs[slot].worker.worker_id().cloned();
                for p in &added {
                    let id = p.partition.id();
                    self.procs[slot].held.insert(id, p.epoch);
                    self.ownership.add(slot, id, now);
                    self.epochs
                        .on_grant(id, p.epoch, &label, now, &mut self.violations);
                    if let Some(w) = &who
                        && let Some(prev) = self.last_holder.insert(id, w.clone())
                        && &prev != w
                    {
                        self.report.moved += 1;
                        self.report.move_times.push(now);
                    }
                }
                if !added.is_empty() {
                    self.check_restart(slot, version);
                }
                if self.cfg.timeline {
                    let held = self.procs[slot].held.len();
                    self.log(|| {
                        format!(
                            "{label} applies version {version}: +{} -{} (owns {held})",
                            added.len(),
                            removed.len()
                        )
                    });
                } else {
                    self.trace(|| {
                        format!(
                            "{label} assignment v{version} +{} -{}",
                            added.len(),
                            removed.len()
                        )
                    });
                }
            }
            Notification::DegradedAlert { level, elapsed } => {
                self.log(|| format!("{label} degraded alert {level:?} after {:?}", elapsed));
            }
            Notification::Error(e) => self.log(|| format!("{label} error: {e}")),
            Notification::Fatal(e) => self.log(|| format!("{label} fatal: {e}")),
            Notification::Stopped => {
                self.log(|| format!("{label} stopped"));
                let p = &mut self.procs[slot];
                p.alive = false;
                let restart = p.restart_after_stop;
                let preferred = p.restart_preferred;
                let held: Vec<PartitionId> = p.held.keys().copied().collect();
                p.held.clear();
                for id in held {
                    self.ownership.remove(slot, id, self.now);
                }
                if restart {
                    self.schedule(self.now + 1, Ev::Spawn { slot, preferred });
                }
            }
        }
    }

    /// S1: no two live processes hold the same ID with a valid reservation.
    fn check_unique_id(&mut self, slot: usize, id: &WorkerId) {
        let reservation = self.cfg.config.id_reservation();
        for (other, p) in self.procs.iter().enumerate() {
            if other == slot || !p.alive || p.worker.worker_id() != Some(id) {
                continue;
            }
            let local = p.local(self.now);
            let valid = p
                .worker
                .last_renewal()
                .is_some_and(|t| local < t + reservation);
            if valid {
                self.violations.push(Violation {
                    guarantee: Guarantee::S1,
                    at: self.now,
                    detail: format!("p{slot} claimed {id} while p{other} still holds it"),
                });
            }
        }
    }

    /// S5: the first assignment after a graceful restart equals what was held.
    fn check_restart(&mut self, slot: usize, version: u64) {
        let Some(watch) = &self.restart_watch else {
            return;
        };
        if watch.slot != slot {
            return;
        }
        let Some(watch) = self.restart_watch.take() else {
            return;
        };
        let within =
            self.now < watch.stopped_at + self.cfg.config.planned_scale_window.as_millis() as u64;
        let same_id = self.procs[slot].worker.worker_id() == Some(&watch.id);
        if !within || !same_id {
            return;
        }
        let got: BTreeSet<PartitionId> = self.procs[slot].held.keys().copied().collect();
        if got != watch.held {
            let lost = watch.held.difference(&got).count();
            let extra = got.difference(&watch.held).count();
            self.violations.push(Violation {
                guarantee: Guarantee::S5,
                at: self.now,
                detail: format!(
                    "{} restarted gracefully and applied version {version} with {} partitions ({lost} missing, {extra} new) instead of its {}",
                    watch.id,
                    got.len(),
                    watch.held.len()
                ),
            });
        }
    }

    /// S3 after every step: no partition effectively held twice.
    fn check_exclusive(&mut self) {
        if self.ownership.contested.is_empty() {
            if !self.overlap_since.is_empty() || !self.reported_overlaps.is_empty() {
                self.overlap_since.clear();
                self.reported_overlaps.clear();
            }
            return;
        }
        let contested: Vec<PartitionId> = self.ownership.contested.iter().copied().collect();
        let keep = self.cfg.config.degraded.policy == DegradedPolicy::KeepProcessing;
        for p in contested {
            let holders: Vec<usize> = self.ownership.holders(&p).to_vec();
            let mut effective = Vec::new();
            let mut tolerated = false;
            for &h in &holders {
                let proc = &self.procs[h];
                let local = proc.local(self.now);
                let lease_ok = proc.worker.lease_deadline().is_some_and(|d| local < d);
                if proc.paused(self.now) && !lease_ok {
                    continue; // it cannot act, and will drop before acting
                }
                // Under KeepProcessing a running worker holds past its lease only
                // while it believes itself cut off: the documented exception.
                if keep && !lease_ok {
                    tolerated = true;
                }
                effective.push(h);
            }
            if effective.len() > 1 {
                if tolerated {
                    let since = *self.overlap_since.entry(p).or_insert(self.now);
                    self.report.tolerated_overlap_ms =
                        self.report.tolerated_overlap_ms.max(self.now - since);
                } else if self.reported_overlaps.insert(p) {
                    let names: Vec<String> = effective
                        .iter()
                        .map(|h| self.procs[*h].label.clone())
                        .collect();
                    self.violations.push(Violation {
                        guarantee: Guarantee::S3,
                        at: self.now,
                        detail: format!("partition {p} owned by {} at once", names.join(" and ")),
                    });
                }
            } else {
                self.overlap_since.remove(&p);
                self.reported_overlaps.remove(&p);
            }
        }
    }

    fn after_step(&mut self) {
        self.check_exclusive();
    }

    fn alive_slots(&self, with_id: bool) -> Vec<usize> {
        (0..self.procs.len())
            .filter(|&s| {
                let p = &self.procs[s];
                p.alive && !p.restart_after_stop && (!with_id || p.worker.worker_id().is_some())
            })
            .collect()
    }

    fn inject(&mut self, kind: FaultKind) {
        let previous_fault_at = self.last_fault_at;
        self.last_fault_at = self.now;
        *self
            .report
            .faults
            .entry(kind.name().to_string())
            .or_default() += 1;
        let alive = self.alive_slots(true);
        let gap = self.cfg.fault_gap_ms;
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
                    && self.now >= previous_fault_at + quiet_needed;
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
                for _ in 0..add {
                    self.partitions.push(Partition::new([
                        "sim".to_string(),
                        format!("p-{}", self.next_partition),
                    ]));
                    self.next_partition += 1;
                }
                self.partitions.sort();
                self.log(|| format!("the partition list changes: +{add} -{remove}"));
                let listed = self.partitions.iter().map(Partition::id).collect();
                self.ownership.set_listed(listed, self.now);
                for slot in self.alive_slots(false) {
                    let inc = self.procs[slot].inc;
                    let list = self.partitions.clone();
                    let d = self.net_delay();
                    self.schedule(
                        self.now + d,
                        Ev::Deliver {
                            slot,
                            inc,
                            event: Event::PartitionsChanged(list),
                        },
                    );
                }
            }
            FaultKind::Drift | FaultKind::Lost | FaultKind::Delay => {}
        }
        // Any other disturbance voids a pending graceful-restart comparison.
        if kind != FaultKind::Restart {
            self.restart_watch = None;
        }
        let _ = gap;
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

    fn run_script(&mut self, step: Scripted) {
        self.last_fault_at = self.now;
        self.restart_watch = None;
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
                for _ in 0..add {
                    self.partitions.push(Partition::new([
                        "sim".to_string(),
                        format!("p-{}", self.next_partition),
                    ]));
                    self.next_partition += 1;
                }
                let listed = self.partitions.iter().map(Partition::id).collect();
                self.ownership.set_listed(listed, self.now);
                for slot in self.alive_slots(false) {
                    let inc = self.procs[slot].inc;
                    let list = self.partitions.clone();
                    self.schedule(
                        self.now + 1,
                        Ev::Deliver {
                            slot,
                            inc,
                            event: Event::PartitionsChanged(list),
                        },
                    );
                }
            }
            Scripted::CutLeader(ms) => {
                if let Some(slot) = self.leader_slot() {
                    self.cut_off(slot, ms);
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

    /// Cuts `slot` off from the store for `ms`.
    fn cut_off(&mut self, slot: usize, ms: u64) {
        let label = self.procs[slot].label.clone();
        self.log(|| format!("{label} is cut off from the store for {ms} ms"));
        let until = (self.now + ms).max(self.procs[slot].cut_until.unwrap_or(0));
        self.procs[slot].cut_until = Some(until);
        let inc = self.procs[slot].inc;
        self.schedule(self.now + ms, Ev::Heal { slot, inc });
        self.schedule(
            self.now + 1,
            Ev::Deliver {
                slot,
                inc,
                event: Event::Disconnected,
            },
        );
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

    fn finish_at_violation(self) -> SimReport {
        let mut report = self.report;
        report.trace = self.trace.into_iter().collect();
        report
    }

    fn finish(mut self) -> SimReport {
        // S4: every partition owned by exactly one live worker within the bound.
        let bound = self.cfg.convergence_bound_ms();
        match self.ownership.complete_since {
            Some(since) => {
                let conv = since.saturating_sub(self.quiet_from);
                self.report.convergence_ms = Some(conv);
                if conv > bound {
                    self.violations.push(Violation {
                        guarantee: Guarantee::S4,
                        at: self.now,
                        detail: format!(
                            "converged {conv} ms after the last fault (bound {bound} ms)"
                        ),
                    });
                }
            }
            None => {
                let mut detail = format!(
                    "{} of {} partitions not owned by exactly one live worker at the end",
                    self.ownership.bad(),
                    self.partitions.len()
                );
                let alive = self.procs.iter().filter(|p| p.alive).count();
                let _ = write!(detail, " ({alive} live processes)");
                for p in self.procs.iter().filter(|p| p.alive) {
                    let _ = write!(
                        detail,
                        "\n    {} state {} leader {} owns {} version {} cut {} paused {}",
                        p.label,
                        p.worker.state(),
                        p.worker.is_leader(),
                        p.held.len(),
                        p.worker.assignment_version(),
                        p.cut(self.now),
                        p.paused(self.now)
                    );
                }
                let mut shown = 0;
                for part in &self.partitions {
                    let id = part.id();
                    let holders = self.ownership.holders(&id);
                    if holders.len() != 1 && shown < 5 {
                        shown += 1;
                        let names: Vec<&str> = holders
                            .iter()
                            .map(|h| self.procs[*h].label.as_str())
                            .collect();
                        let _ = write!(detail, "\n    {part} held by [{}]", names.join(", "));
                    }
                }
                self.violations.push(Violation {
                    guarantee: Guarantee::S4,
                    at: self.now,
                    detail,
                });
            }
        }
        for p in &self.procs {
            for (from, to) in p.worker.invalid_transitions() {
                let detail = format!("{}: invalid transition {from} -> {to}", p.label);
                if !self.violations.iter().any(|v| v.detail == detail) {
                    self.violations.push(Violation {
                        guarantee: Guarantee::Transitions,
                        at: self.now,
                        detail,
                    });
                }
            }
        }
        self.report.violations = self.violations;
        self.report.commits = self.commits.count;
        self.report.trace = self.trace.into_iter().collect();
        self.report
    }
}

fn short(c: &Command) -> String {
    match c {
        Command::Publish {
            meta,
            records,
            expected,
            ..
        } => {
            format!(
                "Publish v{} term {} ({} records staged, expected {:?})",
                meta.version,
                meta.term,
                records.len(),
                expected
            )
        }
        Command::Notify(n) => format!("{n:?}"),
        other => {
            let mut s = format!("{other:?}");
            s.truncate(160);
            s
        }
    }
}

fn to_watch_item(key: &Key, revision: u64, value: Option<Value>) -> Option<WatchEvent> {
    Some(match (key, value) {
        (Key::Member(id), Some(Value::Member(m))) => WatchEvent::Member {
            id: id.clone(),
            revision,
            change: Change::Put(m),
        },
        (Key::Member(id), _) => WatchEvent::Member {
            id: id.clone(),
            revision,
            change: Change::Removed,
        },
        (Key::Leader, Some(Value::Leader(l))) => WatchEvent::Leader {
            revision,
            change: Change::Put(l),
        },
        (Key::Leader, _) => WatchEvent::Leader {
            revision,
            change: Change::Removed,
        },
        (Key::Meta, Some(Value::Meta(meta))) => WatchEvent::Meta { revision, meta },
        (Key::Assignment(..), Some(Value::Assignment(record))) => {
            WatchEvent::Assignment { revision, record }
        }
        // Removals of assignment records (housekeeping) do not matter.
        _ => return None,
    })
}
