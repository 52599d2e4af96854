//! The controller: the leader's part. It tracks the members, decides when to
//! rebalance (cold start, planned scale with its window and cooldown, emergency
//! after a grace, partition refresh with the imbalance threshold), asks the
//! strategy for a target, and walks the committed assignment towards it with
//! fenced stage-then-commit publications (see [`handoff`]).

mod balance;
mod handoff;
mod holdings;

use super::planted::{PlantedBug, PlantedBugs};
use crate::backend::AssignmentSnapshot;
use crate::command::{Command, Notification};
use crate::config::Config;
use crate::event::{OpId, Outcome};
use crate::ids::WorkerId;
use crate::outbox::Outbox;
use crate::partition::{Partition, PartitionId};
use crate::records::{
    AssignmentMeta, Lifecycle, MemberRecord, MemberStatus, OwnedPartition, Revision, WIRE_VERSION,
    WorkerAssignment,
};
use crate::roster::Roster;
use crate::strategy::{AssignmentInput, AssignmentStrategy, WorkerSpec};
use crate::time::Instant;
use handoff::Owners;
use holdings::{Holdings, KnownRecords};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

/// What the controller wants the worker to know.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Signal {
    None,
    /// A commit of a higher term exists: this worker is no longer leader.
    Superseded,
}

/// What the leader is doing, for the state a user sees.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Activity {
    /// Loading state or waiting for the partition list.
    Starting,
    /// A stabilisation window is open.
    Scaling,
    /// Publishing or in the middle of a handoff.
    Rebalancing,
    /// Reassigning the partitions of a vanished worker.
    Emergency,
    /// Nothing to do.
    Idle,
}

#[derive(Debug, Clone)]
struct Committed {
    meta: AssignmentMeta,
    revision: Revision,
    records: BTreeMap<WorkerId, WorkerAssignment>,
    owners: Owners,
}

impl Committed {
    fn from_parts(
        meta: AssignmentMeta,
        revision: Revision,
        records: BTreeMap<WorkerId, WorkerAssignment>,
    ) -> Self {
        let mut owners = Owners::new();
        for (w, rec) in &records {
            for p in &rec.partitions {
                owners.insert(p.partition.id(), (w.clone(), p.epoch));
            }
        }
        Committed {
            meta,
            revision,
            records,
            owners,
        }
    }
}

#[derive(Debug)]
struct Publishing {
    op: OpId,
    next: Committed,
    granted: usize,
    revoked: usize,
    awaiting: BTreeSet<WorkerId>,
    reconciling: bool,
}

/// The controller machine (exists only while the worker leads).
#[derive(Debug)]
pub(crate) struct Controller {
    me: WorkerId,
    term: u64,
    since: Instant,
    strategy: Arc<dyn AssignmentStrategy>,
    /// Planted bugs (simulator self-tests; always empty in production).
    pub(crate) planted: PlantedBugs,
    load_op: Option<OpId>,
    loaded: bool,
    committed: Option<Committed>,
    takeover_pending: bool,
    partitions: Option<BTreeMap<PartitionId, Partition>>,
    list_op: Option<OpId>,
    list_retry_at: Option<Instant>,
    partitions_dirty: bool,
    target: Option<BTreeMap<PartitionId, WorkerId>>,
    target_workers: BTreeSet<WorkerId>,
    lifecycle: Lifecycle,
    cold_until: Option<Instant>,
    planned_since: Option<Instant>,
    ghost_since: BTreeMap<WorkerId, Instant>,
    last_rebalance: Option<Instant>,
    publishing: Option<Publishing>,
    reconcile_op: Option<OpId>,
    retry_at: Option<Instant>,
    hold_until: Option<Instant>,
    awaiting: BTreeSet<WorkerId>,
    evicting: BTreeMap<WorkerId, OpId>,
    known: KnownRecords,
    recovery_until: Option<Instant>,
    emergency: bool,
    dirty: bool,
    restart_detected: bool,
    restart_ratio: f64,
    /// Something happened since the last evaluation.
    changed: bool,
    /// When the last evaluation said to look again.
    next_due: Option<Instant>,
    /// Whether committed differs from target (cached after each evaluation).
    pending_handoff: bool,
    handoff_hold: Duration,
}

impl Controller {
    /// A new leader's controller: first loads the committed assignment and the
    /// partition list.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        config: &Config,
        me: WorkerId,
        term: u64,
        strategy: Arc<dyn AssignmentStrategy>,
        planted: PlantedBugs,
        partitions: Option<Vec<Partition>>,
        out: &mut Outbox,
        now: Instant,
    ) -> Self {
        let load_op = out.op();
        out.push(Command::LoadAssignments { op: load_op });
        let mut c = Controller {
            me,
            term,
            since: now,
            strategy,
            planted,
            load_op: Some(load_op),
            loaded: false,
            committed: None,
            takeover_pending: false,
            partitions: None,
            list_op: None,
            list_retry_at: None,
            partitions_dirty: false,
            target: None,
            target_workers: BTreeSet::new(),
            lifecycle: Lifecycle::ColdStart,
            cold_until: None,
            planned_since: None,
            ghost_since: BTreeMap::new(),
            last_rebalance: None,
            publishing: None,
            reconcile_op: None,
            retry_at: None,
            hold_until: None,
            awaiting: BTreeSet::new(),
            evicting: BTreeMap::new(),
            known: KnownRecords::default(),
            recovery_until: None,
            emergency: false,
            dirty: true,
            restart_detected: false,
            restart_ratio: config.restart_detection_ratio,
            changed: true,
            next_due: None,
            pending_handoff: false,
            handoff_hold: config.heartbeat_interval,
        };
        match partitions {
            Some(list) => c.set_partitions(list, out),
            None => c.request_partitions(out),
        }
        c
    }

    /// The term this controller publishes under.
    pub(crate) fn term(&self) -> u64 {
        self.term
    }

    /// What the leader is busy with.
    pub(crate) fn activity(&self, now: Instant) -> Activity {
        if !self.loaded || self.partitions.is_none() {
            return Activity::Starting;
        }
        if self.emergency && (self.publishing.is_some() || self.pending_handoff) {
            return Activity::Emergency;
        }
        if self.publishing.is_some() || self.pending_handoff || self.takeover_pending {
            return Activity::Rebalancing;
        }
        if self.target.is_none()
            || self.planned_since.is_some()
            || self.cold_until.is_some_and(|t| now < t)
        {
            return Activity::Scaling;
        }
        Activity::Idle
    }

    fn compute_handoff_pending(&self) -> bool {
        match (&self.target, &self.committed) {
            (Some(target), Some(c)) => {
                target.len() != c.owners.len()
                    || target
                        .iter()
                        .any(|(p, w)| c.owners.get(p).map(|o| &o.0) != Some(w))
            }
            (Some(t), None) => !t.is_empty(),
            _ => false,
        }
    }

    fn request_partitions(&mut self, out: &mut Outbox) {
        let op = out.op();
        self.list_op = Some(op);
        self.list_retry_at = None;
        out.push(Command::ListPartitions { op });
    }

    /// A new partition list (from the source or a refresh).
    pub(crate) fn set_partitions(&mut self, list: Vec<Partition>, out: &mut Outbox) {
        self.changed = true;
        let mut map = BTreeMap::new();
        let mut duplicates = 0usize;
        for p in list {
            if map.insert(p.id(), p).is_some() {
                duplicates += 1;
            }
        }
        if duplicates > 0 {
            out.notify(Notification::Error(format!(
                "{duplicates} duplicate partitions in the partition list were ignored"
            )));
        }
        if self.partitions.as_ref() != Some(&map) {
            let had = self.partitions.is_some();
            self.partitions = Some(map);
            if had {
                self.partitions_dirty = true;
            }
            self.dirty = true;
        }
    }

    /// After the store was unreachable: observations are stale, so emergencies
    /// wait for the recovery grace.
    pub(crate) fn on_recovered(&mut self, config: &Config, now: Instant) {
        self.recovery_until = Some(now + config.degraded.recovery_grace);
        self.changed = true;
    }

    /// A member record changed in a way that matters (status, acknowledgement,
    /// instance) or a member left.
    pub(crate) fn on_roster_changed(&mut self) {
        self.dirty = true;
        self.changed = true;
    }

    /// Result of a controller command; `None` if `op` is not ours.
    pub(crate) fn on_completed(
        &mut self,
        config: &Config,
        roster: &Roster,
        op: OpId,
        outcome: Outcome,
        out: &mut Outbox,
        now: Instant,
    ) -> Option<Signal> {
        self.changed = true;
        if self.load_op == Some(op) || self.reconcile_op == Some(op) {
            let reconciling = self.reconcile_op == Some(op);
            self.load_op = None;
            self.reconcile_op = None;
            return Some(match outcome {
                Outcome::Loaded(snapshot) => self.on_loaded(snapshot, reconciling, roster),
                _ => {
                    // Try again shortly.
                    let retry = out.op();
                    out.push(Command::LoadAssignments { op: retry });
                    if reconciling {
                        self.reconcile_op = Some(retry)
                    } else {
                        self.load_op = Some(retry)
                    }
                    Signal::None
                }
            });
        }
        if self.list_op == Some(op) {
            self.list_op = None;
            match outcome {
                Outcome::Partitions(list) => self.set_partitions(list, out),
                Outcome::Failed(e) => {
                    out.notify(Notification::Error(format!("partition source failed: {e}")));
                    self.list_retry_at = Some(now + config.heartbeat_interval);
                }
                _ => self.list_retry_at = Some(now + config.heartbeat_interval),
            }
            return Some(Signal::None);
        }
        if let Some(w) = self
            .evicting
            .iter()
            .find(|(_, o)| **o == op)
            .map(|(w, _)| w.clone())
        {
            self.evicting.remove(&w);
            self.dirty = true;
            return Some(Signal::None);
        }
        if self
            .publishing
            .as_ref()
            .is_some_and(|p| p.op == op && !p.reconciling)
        {
            let Some(mut publishing) = self.publishing.take() else {
                return Some(Signal::None);
            };
            match outcome {
                Outcome::Written(revision) => {
                    publishing.next.revision = revision;
                    self.commit_done(publishing, out, now);
                }
                Outcome::Unavailable | Outcome::Failed(_) => {
                    self.retry_at =
                        Some(now + (config.heartbeat_interval / 2).max(Duration::from_millis(10)));
                    self.dirty = true;
                }
                _ => {
                    // Conflict or unknown outcome: read back and reconcile.
                    let read = out.op();
                    out.push(Command::LoadAssignments { op: read });
                    publishing.op = read;
                    publishing.reconciling = true;
                    self.publishing = Some(publishing);
                }
            }
            return Some(Signal::None);
        }
        if self
            .publishing
            .as_ref()
            .is_some_and(|p| p.op == op && p.reconciling)
        {
            let Some(publishing) = self.publishing.take() else {
                return Some(Signal::None);
            };
            return Some(match outcome {
                Outcome::Loaded(snapshot) => {
                    let landed = snapshot.meta.as_ref().is_some_and(|(m, _)| {
                        m.term == publishing.next.meta.term
                            && m.version == publishing.next.meta.version
                    });
                    if landed {
                        let mut publishing = publishing;
                        if let Some((_, rev)) = &snapshot.meta {
                            publishing.next.revision = *rev;
                        }
                        self.commit_done(publishing, out, now);
                        Signal::None
                    } else {
                        self.on_loaded(snapshot, true, roster)
                    }
                }
                _ => {
                    let read = out.op();
                    out.push(Command::LoadAssignments { op: read });
                    self.publishing = Some(Publishing {
                        op: read,
                        ..publishing
                    });
                    Signal::None
                }
            });
        }
        None
    }

    fn on_loaded(
        &mut self,
        snapshot: AssignmentSnapshot,
        reconciling: bool,
        roster: &Roster,
    ) -> Signal {
        self.dirty = true;
        let Some((meta, revision)) = snapshot.meta else {
            self.loaded = true;
            self.committed = None;
            return Signal::None;
        };
        if meta.term > self.term && !self.planted.has(PlantedBug::IgnoreTerms) {
            return Signal::Superseded;
        }
        let records: BTreeMap<WorkerId, WorkerAssignment> = snapshot
            .records
            .into_iter()
            .filter(|r| r.term == meta.term && meta.records.get(&r.worker) == Some(&r.version))
            .map(|r| (r.worker.clone(), r))
            .collect();
        // A worker named in meta whose record is missing owns nothing we can
        // see; it is treated like one whose record is empty.
        for (w, rec) in &records {
            let set: BTreeSet<PartitionId> =
                rec.partitions.iter().map(|p| p.partition.id()).collect();
            self.known
                .insert(w, rec.version, rec.instance, Arc::new(set));
        }
        let mut committed = Committed::from_parts(meta, revision, records);
        if self.planted.has(PlantedBug::VersionReset) && !reconciling {
            committed.meta.version = 0;
        }
        self.takeover_pending = committed.meta.term != self.term;
        if !reconciling {
            // Restart detection: of the workers the last assignment names, far
            // fewer than `restart_detection_ratio` are still the same running
            // incarnation (a full restart brings new claims, or new IDs).
            let before = committed.meta.records.len();
            let alive = committed
                .records
                .iter()
                .filter(|(w, rec)| {
                    roster.get(w).is_some_and(|v| {
                        v.record.status == MemberStatus::Active && v.record.instance == rec.instance
                    })
                })
                .count();
            self.restart_detected =
                before > 0 && (alive as f64) < self.restart_ratio * before as f64;
        }
        self.committed = Some(committed);
        self.loaded = true;
        Signal::None
    }

    fn commit_done(&mut self, publishing: Publishing, out: &mut Outbox, now: Instant) {
        let next = publishing.next;
        for (w, rec) in &next.records {
            let set: BTreeSet<PartitionId> =
                rec.partitions.iter().map(|p| p.partition.id()).collect();
            self.known
                .insert(w, rec.version, rec.instance, Arc::new(set));
        }
        let version = next.meta.version;
        if self.takeover_pending {
            self.takeover_pending = false;
            out.push(Command::CleanupAssignments {
                keep_term: self.term,
            });
        }
        self.committed = Some(next);
        self.pending_handoff = self.compute_handoff_pending();
        self.awaiting = publishing.awaiting;
        self.hold_until = if publishing.revoked > 0 {
            Some(now + self.handoff_hold)
        } else {
            None
        };
        self.dirty = true;
        if !self.pending_handoff {
            self.emergency = false;
        }
        out.notify(Notification::Published {
            version,
            granted: publishing.granted,
            revoked: publishing.revoked,
        });
    }
}

impl Controller {
    /// Periodic work and reaction to changes: evictions, rebalance decisions,
    /// handoff steps, publications. `leads` says whether the leadership lease is
    /// valid now; without it the controller does nothing.
    pub(crate) fn on_timeout(
        &mut self,
        config: &Config,
        roster: &Roster,
        leads: bool,
        out: &mut Outbox,
        now: Instant,
    ) {
        if !leads || !roster.caught_up() {
            self.changed = true;
            return;
        }
        // Nothing changed and no deadline passed: the last evaluation stands.
        // (Every time-dependent decision below has its deadline in
        // `poll_timeout`.)
        let due = self.next_due.is_none_or(|t| now >= t);
        if !self.changed && !due {
            return;
        }
        self.changed = false;
        self.evaluate(config, roster, out, now);
        self.pending_handoff = self.compute_handoff_pending();
        self.next_due = self.poll_timeout(config, roster, now);
    }

    fn evaluate(&mut self, config: &Config, roster: &Roster, out: &mut Outbox, now: Instant) {
        if self.partitions.is_none()
            && self.list_op.is_none()
            && self.list_retry_at.is_none_or(|t| now >= t)
        {
            self.request_partitions(out);
        }
        if !self.loaded || self.partitions.is_none() {
            return;
        }
        self.evict_vanished(config, roster, out, now);
        if self.publishing.is_some() {
            return;
        }
        self.decide(config, roster, now, out);
        if self.retry_at.is_some_and(|t| now < t) {
            return;
        }
        self.retry_at = None;
        self.publish_step(config, roster, out, now);
    }

    /// Members whose record has not changed for the heartbeat TTL plus the
    /// emergency grace (and at least the time after which their ownership lease
    /// has certainly expired) are evicted with compare-and-set.
    fn evict_vanished(&mut self, config: &Config, roster: &Roster, out: &mut Outbox, now: Instant) {
        if self.planted.has(PlantedBug::IgnoreEmergencies)
            || self.recovery_until.is_some_and(|t| now < t)
        {
            return;
        }
        let wait = (config.heartbeat_ttl + config.effective_emergency_grace())
            .max(config.lease_expiry_wait());
        let vanished: Vec<(WorkerId, MemberRecord, Revision)> = roster
            .members()
            .filter(|(w, v)| {
                **w != self.me
                    && v.record.status == MemberStatus::Active
                    && now >= v.last_change + wait
                    && !self.evicting.contains_key(*w)
            })
            .map(|(w, v)| (w.clone(), v.record.clone(), v.revision))
            .collect();
        for (worker, mut record, expected) in vanished {
            record.status = MemberStatus::Evicted;
            let op = out.op();
            self.evicting.insert(worker.clone(), op);
            self.emergency = true;
            out.push(Command::Evict {
                op,
                id: worker,
                record,
                expected,
            });
        }
    }

    /// The workers a target is computed for: active members seen within the
    /// heartbeat TTL plus the emergency grace.
    fn basis(&self, config: &Config, roster: &Roster, now: Instant) -> Vec<WorkerSpec> {
        let ttl = config.heartbeat_ttl + config.effective_emergency_grace();
        roster
            .members()
            .filter(|(w, v)| {
                v.record.status == MemberStatus::Active
                    && (now.saturating_since(v.last_change) < ttl || **w == self.me)
                    && !self.evicting.contains_key(*w)
            })
            .map(|(w, v)| WorkerSpec {
                id: w.clone(),
                capacity: v.record.capacity.max(1),
            })
            .collect()
    }

    /// Workers that left gracefully (or whose departure reason is unknown) and
    /// whose partitions are kept for them during the planned-scale window.
    fn ghosts(
        &mut self,
        config: &Config,
        roster: &Roster,
        basis: &BTreeSet<WorkerId>,
        now: Instant,
    ) -> BTreeSet<WorkerId> {
        let mut ghosts = BTreeSet::new();
        let candidates: BTreeSet<WorkerId> = self
            .target_workers
            .iter()
            .chain(self.committed.iter().flat_map(|c| c.records.keys()))
            .filter(|w| !basis.contains(*w))
            .cloned()
            .collect();
        for w in candidates {
            // Only a member deletes its own key, and only when it stops; an
            // expired key belongs to a member evicted long before. So a key that
            // disappeared while `Active` is a graceful stop whose `Stopping`
            // write the watch skipped (the bucket keeps one entry per key).
            let graceful = match roster.get(&w) {
                Some(v) => v.record.status == MemberStatus::Stopping,
                None => roster.departure(&w).is_none_or(|d| {
                    matches!(d.last.status, MemberStatus::Stopping | MemberStatus::Active)
                }),
            };
            if !graceful || self.planted.has(PlantedBug::NoStickyRestart) {
                self.ghost_since.remove(&w);
                continue;
            }
            let since = *self.ghost_since.entry(w.clone()).or_insert(now);
            if now < since + config.planned_scale_window {
                ghosts.insert(w);
            }
        }
        self.ghost_since.retain(|w, _| !basis.contains(w));
        ghosts
    }

    /// Decides whether to compute a new target now.
    fn decide(&mut self, config: &Config, roster: &Roster, now: Instant, out: &mut Outbox) {
        let specs = self.basis(config, roster, now);
        let basis: BTreeSet<WorkerId> = specs.iter().map(|w| w.id.clone()).collect();
        let ghosts = self.ghosts(config, roster, &basis, now);
        if self.target.is_none() {
            let cold = self.committed.is_none() || self.restart_detected;
            if cold {
                let until = *self
                    .cold_until
                    .get_or_insert(self.since + config.cold_start_window);
                if now >= until {
                    self.rebalance(Lifecycle::ColdStart, &specs, &ghosts, out, now);
                }
            } else if let Some(c) = &self.committed {
                self.target = Some(c.owners.iter().map(|(p, (w, _))| (*p, w.clone())).collect());
                self.target_workers = c.records.keys().cloned().collect();
                self.lifecycle = Lifecycle::Takeover;
                self.dirty = true;
                // The list may have changed while no one led: reconcile it.
                let listed = self
                    .partitions
                    .as_ref()
                    .map(|m| m.keys().copied().collect::<BTreeSet<_>>());
                let owned: BTreeSet<PartitionId> = c.owners.keys().copied().collect();
                if listed.is_some_and(|l| l != owned) {
                    self.partitions_dirty = true;
                }
            }
            return;
        }
        let gone: Vec<&WorkerId> = self
            .target_workers
            .iter()
            .filter(|w| !basis.contains(*w) && !ghosts.contains(*w))
            .collect();
        let joined = basis.iter().any(|w| !self.target_workers.contains(w));
        let cooled = self
            .last_rebalance
            .is_none_or(|t| now >= t + config.rebalance_cooldown);
        if !gone.is_empty() && self.planted.has(PlantedBug::IgnoreEmergencies) {
            // Planted bug: forget vanished workers without reassigning their
            // partitions (the Go original's "lastWorkers updated first").
            let gone: Vec<WorkerId> = gone.into_iter().cloned().collect();
            self.target_workers.retain(|w| !gone.contains(w));
        } else if !gone.is_empty() {
            let crashed = gone.iter().any(|w| match roster.get(w) {
                Some(v) => {
                    v.record.status == MemberStatus::Active
                        || v.record.status == MemberStatus::Evicted
                }
                None => false,
            });
            let left = gone.iter().any(|w| {
                roster.get(w).map(|v| v.record.status) == Some(MemberStatus::Leaving)
                    || roster
                        .departure(w)
                        .is_some_and(|d| d.last.status == MemberStatus::Leaving)
            });
            let survivors = self
                .target_workers
                .iter()
                .filter(|w| basis.contains(*w))
                .count();
            let total = self.target_workers.len();
            let mass_outage = total > 1 && (survivors as f64) < self.restart_ratio * total as f64;
            if crashed && mass_outage {
                // Most of the assignment's workers vanished at once: a cluster
                // restart. Wait for the cold-start window for them to come back
                // rather than piling everything on the survivors.
                self.target = None;
                self.restart_detected = true;
                self.cold_until = Some(now + config.cold_start_window);
                self.dirty = true;
            } else if crashed {
                self.emergency = true;
                self.rebalance(Lifecycle::Emergency, &specs, &ghosts, out, now);
            } else if left || cooled {
                self.rebalance(Lifecycle::PlannedScale, &specs, &ghosts, out, now);
            }
        } else if self.partitions_dirty {
            self.refresh(config, &specs, &ghosts, out, now);
        } else if joined {
            let since = *self.planned_since.get_or_insert(now);
            if now >= since + config.planned_scale_window && cooled {
                self.rebalance(Lifecycle::PlannedScale, &specs, &ghosts, out, now);
            }
        } else {
            self.planned_since = None;
        }
    }

    fn pinned(&self, ghosts: &BTreeSet<WorkerId>) -> BTreeMap<PartitionId, WorkerId> {
        let mut pinned = BTreeMap::new();
        if let Some(target) = &self.target {
            for (p, w) in target {
                if ghosts.contains(w) {
                    pinned.insert(*p, w.clone());
                }
            }
        }
        pinned
    }

    /// A partition-list change: keep the current placement if the imbalance stays
    /// within the threshold, otherwise rebalance.
    fn refresh(
        &mut self,
        config: &Config,
        specs: &[WorkerSpec],
        ghosts: &BTreeSet<WorkerId>,
        out: &mut Outbox,
        now: Instant,
    ) {
        self.partitions_dirty = false;
        let (Some(partitions), Some(target)) = (&self.partitions, &self.target) else {
            return;
        };
        let pinned = self.pinned(ghosts);
        let free: BTreeMap<PartitionId, Partition> = partitions
            .iter()
            .filter(|(p, _)| !pinned.contains_key(*p))
            .map(|(p, v)| (*p, v.clone()))
            .collect();
        if let Some(mut minimal) = balance::minimal_placement(specs, &free, target)
            && balance::imbalance(specs, &free, &minimal) <= config.imbalance_threshold
        {
            minimal.extend(pinned);
            self.target = Some(minimal);
            self.lifecycle = Lifecycle::Refresh;
            self.dirty = true;
            return;
        }
        self.rebalance(Lifecycle::Refresh, specs, ghosts, out, now);
    }

    /// Asks the strategy for a new target over `specs`; ghosts keep their
    /// partitions.
    fn rebalance(
        &mut self,
        lifecycle: Lifecycle,
        specs: &[WorkerSpec],
        ghosts: &BTreeSet<WorkerId>,
        out: &mut Outbox,
        now: Instant,
    ) {
        let Some(partitions) = &self.partitions else {
            return;
        };
        let pinned = self.pinned(ghosts);
        let list: Vec<Partition> = partitions
            .iter()
            .filter(|(p, _)| !pinned.contains_key(*p))
            .map(|(_, v)| v.clone())
            .collect();
        let index: BTreeMap<&WorkerId, u32> = specs
            .iter()
            .enumerate()
            .map(|(i, w)| (&w.id, i as u32))
            .collect();
        let current: Option<BTreeMap<PartitionId, WorkerId>> = self.target.clone().or_else(|| {
            self.committed
                .as_ref()
                .map(|c| c.owners.iter().map(|(p, (w, _))| (*p, w.clone())).collect())
        });
        let previous: Vec<Option<u32>> = match &current {
            Some(cur) => list
                .iter()
                .map(|p| cur.get(&p.id()).and_then(|w| index.get(w).copied()))
                .collect(),
            None => Vec::new(),
        };
        let mut target: BTreeMap<PartitionId, WorkerId> = pinned;
        if !specs.is_empty() {
            let input = AssignmentInput {
                workers: specs,
                partitions: &list,
                previous: &previous,
            };
            match self.strategy.assign(&input) {
                Ok(placement) if placement.owners.len() == list.len() => {
                    for (p, owner) in list.iter().zip(placement.owners) {
                        if let Some(w) = specs.get(owner as usize) {
                            target.insert(p.id(), w.id.clone());
                        }
                    }
                }
                Ok(_) => {
                    out.notify(Notification::Error(format!(
                        "strategy {} returned a wrong number of owners",
                        self.strategy.name()
                    )));
                    return;
                }
                Err(e) => {
                    out.notify(Notification::Error(format!(
                        "strategy {} failed: {e}",
                        self.strategy.name()
                    )));
                    return;
                }
            }
        }
        self.target = Some(target);
        self.target_workers = specs
            .iter()
            .map(|w| w.id.clone())
            .chain(ghosts.iter().cloned())
            .collect();
        self.lifecycle = lifecycle;
        self.last_rebalance = Some(now);
        self.planned_since = None;
        self.cold_until = None;
        self.restart_detected = false;
        self.partitions_dirty = false;
        self.hold_until = None;
        self.dirty = true;
    }

    /// Publishes the next step towards the target if it differs from what is
    /// committed (or if a takeover must re-stage everything under our term).
    fn publish_step(&mut self, config: &Config, roster: &Roster, out: &mut Outbox, now: Instant) {
        if !self.dirty {
            return;
        }
        let Some(target) = &self.target else { return };
        // After revocations, give the old owners a moment to confirm so that the
        // grants go out in one version rather than one per acknowledgement.
        if let Some(hold) = self.hold_until {
            let pending = self.awaiting.iter().any(|w| {
                roster.get(w).is_some_and(|v| {
                    v.record.status == MemberStatus::Active
                        && v.record.applied
                            != self
                                .committed
                                .as_ref()
                                .and_then(|c| c.meta.records.get(w).copied())
                })
            });
            if pending && now < hold {
                return;
            }
            self.hold_until = None;
        }
        let empty = Owners::new();
        let committed_owners = self.committed.as_ref().map_or(&empty, |c| &c.owners);
        let current_records: BTreeMap<WorkerId, u64> = self
            .committed
            .as_ref()
            .map(|c| c.meta.records.clone())
            .unwrap_or_default();
        self.known.prune(roster, &current_records);
        let holdings = Holdings::build(roster, &self.known, &current_records);
        let base_version = self.committed.as_ref().map_or(0, |c| c.meta.version);
        let version = base_version + 1;
        let live: BTreeSet<WorkerId> = self
            .basis(config, roster, now)
            .into_iter()
            .map(|w| w.id)
            .collect();
        let step = handoff::next_step(
            committed_owners,
            target,
            &holdings,
            &live,
            version,
            self.planted,
        );
        self.dirty = false;
        // Group by worker.
        let partitions = self.partitions.as_ref();
        let mut shares: BTreeMap<WorkerId, Vec<OwnedPartition>> = BTreeMap::new();
        for (p, (w, epoch)) in &step.owners {
            let partition = partitions.and_then(|m| m.get(p).cloned()).or_else(|| {
                self.committed
                    .as_ref()
                    .and_then(|c| find_partition(c, w, p))
            });
            if let Some(partition) = partition {
                shares.entry(w.clone()).or_default().push(OwnedPartition {
                    partition,
                    epoch: *epoch,
                });
            }
        }
        // Live members that had a record keep one (possibly empty) so that they
        // can acknowledge; members that hold nothing any more are dropped.
        if let Some(c) = &self.committed {
            for w in c.records.keys() {
                let active = roster
                    .get(w)
                    .is_some_and(|v| v.record.status == MemberStatus::Active);
                if active {
                    shares.entry(w.clone()).or_default();
                }
            }
        }
        let mut records_meta = BTreeMap::new();
        let mut staged = Vec::new();
        let mut next_records = BTreeMap::new();
        let mut awaiting = BTreeSet::new();
        for (w, mut parts) in shares {
            parts.sort_by(|a, b| a.partition.keys.cmp(&b.partition.keys));
            let previous = self.committed.as_ref().and_then(|c| c.records.get(&w));
            // Address the record to the member's current claim; a member that is
            // away keeps the record of its last claim.
            let Some(instance) = roster
                .get(&w)
                .map(|v| v.record.instance)
                .or(previous.map(|r| r.instance))
            else {
                continue;
            };
            // A record re-addressed to a new claim of the ID is a grant to another
            // process: it gets fresh epochs, so downstream can fence the old one.
            if previous.is_some_and(|r| r.instance != instance) {
                for p in &mut parts {
                    p.epoch = version;
                }
            }
            let same = !self.takeover_pending
                && previous.is_some_and(|r| r.partitions == parts && r.instance == instance);
            let record = match previous {
                Some(r) if same => r.clone(),
                _ => {
                    let r = WorkerAssignment {
                        v: WIRE_VERSION,
                        worker: w.clone(),
                        instance,
                        version,
                        term: self.term,
                        partitions: parts,
                    };
                    staged.push(r.clone());
                    awaiting.insert(w.clone());
                    r
                }
            };
            records_meta.insert(w.clone(), record.version);
            next_records.insert(w, record);
        }
        let unchanged = staged.is_empty()
            && self
                .committed
                .as_ref()
                .is_some_and(|c| c.meta.records == records_meta);
        if unchanged && !self.takeover_pending {
            if !self.compute_handoff_pending() {
                self.emergency = false;
            }
            return;
        }
        let lifecycle = if self.takeover_pending {
            Lifecycle::Takeover
        } else if step.revoked == 0 && step.granted > 0 && self.lifecycle_done() {
            Lifecycle::Handoff
        } else {
            self.lifecycle
        };
        let meta = AssignmentMeta {
            v: WIRE_VERSION,
            version,
            term: self.term,
            lifecycle,
            records: records_meta,
            partitions: self.partitions.as_ref().map_or(0, |m| m.len() as u32),
        };
        let expected = self.committed.as_ref().map(|c| c.revision);
        let next = Committed::from_parts(meta.clone(), 0, next_records);
        let op = out.op();
        out.push(Command::Publish {
            op,
            records: staged,
            meta,
            expected,
        });
        self.publishing = Some(Publishing {
            op,
            next,
            granted: step.granted,
            revoked: step.revoked,
            awaiting,
            reconciling: false,
        });
    }

    fn lifecycle_done(&self) -> bool {
        self.committed.as_ref().is_some_and(|c| {
            c.meta.lifecycle == self.lifecycle || c.meta.lifecycle == Lifecycle::Handoff
        })
    }

    /// Next instant after `now` with work (changes are handled as they come:
    /// the worker runs the controller after every event).
    pub(crate) fn poll_timeout(
        &self,
        config: &Config,
        roster: &Roster,
        now: Instant,
    ) -> Option<Instant> {
        if !self.loaded || self.publishing.is_some() {
            return None;
        }
        let mut candidates: Vec<Option<Instant>> = vec![
            self.list_retry_at,
            self.retry_at,
            self.hold_until,
            self.recovery_until,
        ];
        if self.partitions.is_some() {
            if self.target.is_none() {
                candidates.push(Some(
                    self.cold_until
                        .unwrap_or(self.since + config.cold_start_window),
                ));
            }
            if let Some(since) = self.planned_since {
                candidates.push(Some(since + config.planned_scale_window));
            }
            if let Some(t) = self.last_rebalance {
                candidates.push(Some(t + config.rebalance_cooldown));
            }
            candidates.extend(
                self.ghost_since
                    .values()
                    .map(|s| Some(*s + config.planned_scale_window)),
            );
            let basis_ttl = config.heartbeat_ttl + config.effective_emergency_grace();
            let wait = basis_ttl.max(config.lease_expiry_wait());
            for (w, v) in roster.members() {
                if *w != self.me
                    && v.record.status == MemberStatus::Active
                    && !self.evicting.contains_key(w)
                {
                    candidates.push(Some(v.last_change + basis_ttl));
                    candidates.push(Some(v.last_change + wait));
                }
            }
        }
        candidates.into_iter().flatten().filter(|t| *t > now).min()
    }
}

fn find_partition(c: &Committed, w: &WorkerId, p: &PartitionId) -> Option<Partition> {
    c.records
        .get(w)?
        .partitions
        .iter()
        .find(|o| o.partition.id() == *p)
        .map(|o| o.partition.clone())
}
