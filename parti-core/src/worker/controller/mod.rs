//! The controller: the leader's part. It tracks the members, decides when to
//! rebalance (cold start, planned scale with its window and cooldown, emergency
//! after a grace, partition refresh with the imbalance threshold), asks the
//! strategy for a target, and walks the committed assignment towards it with
//! fenced stage-then-commit publications. This module holds the machine's state,
//! its inputs and its deadlines; the rules live in the submodules: [`decide`]
//! (when and what to rebalance), [`handoff`] (one safe step towards the
//! target), [`publish`] (writing that step), [`committed`] (what the store
//! confirmed), [`balance`] and [`holdings`].

mod balance;
mod committed;
mod decide;
mod handoff;
mod holdings;
mod publish;

use super::planted::{PlantedBug, PlantedBugs};
use crate::command::{Command, Notification};
use crate::config::Config;
use crate::event::OpId;
use crate::ids::WorkerId;
use crate::outbox::Outbox;
use crate::partition::{Partition, PartitionId};
use crate::records::{
    AssignmentMeta, Lifecycle, MemberRecord, MemberStatus, Revision, WorkerAssignment,
};
use crate::roster::Roster;
use crate::strategy::AssignmentStrategy;
use crate::time::Instant;
use handoff::Owners;
use holdings::KnownRecords;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

/// What the controller wants the worker to know.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Signal {
    None,
    /// A commit of a higher term exists: this worker is no longer leader.
    Superseded,
    /// A member re-read after its eviction failed: its current record (or
    /// none), fresher than what the watch showed.
    MemberRead {
        /// The member.
        id: WorkerId,
        /// Its record and revision, `None` if the key is absent.
        found: Option<(MemberRecord, Revision)>,
    },
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
        // Collected rather than inserted one by one: the map is then built
        // from the sorted pairs at once (a million inserts at random places
        // cost the leader's thread a large share of a rebalance).
        let owners: Owners = records
            .iter()
            .flat_map(|(w, rec)| {
                rec.partitions
                    .iter()
                    .map(move |p| (p.partition.id(), (w.clone(), p.epoch)))
            })
            .collect();
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
    /// For the i-th partition of `partitions` (in ID order), its place in
    /// key order: records list their partitions by keys, and sorting a
    /// million keys per publication costs the leader's thread seconds.
    key_ranks: Vec<u32>,
    list_op: Option<OpId>,
    list_retry_at: Option<Instant>,
    partitions_dirty: bool,
    target: Option<BTreeMap<PartitionId, WorkerId>>,
    target_workers: BTreeSet<WorkerId>,
    lifecycle: Lifecycle,
    /// Whether a version of the current lifecycle was committed (the ones
    /// after it that only grant are its handoff).
    lifecycle_published: bool,
    cold_until: Option<Instant>,
    planned_since: Option<Instant>,
    ghost_since: BTreeMap<WorkerId, Instant>,
    last_rebalance: Option<Instant>,
    publishing: Option<Publishing>,
    reconcile_op: Option<OpId>,
    retry_at: Option<Instant>,
    /// After an eviction that did not go through: when to try evictions again.
    evict_retry_at: Option<Instant>,
    /// How far the leader's view of the members is known to be complete:
    /// the send time of its own latest confirmed renewal that the watch has
    /// delivered back (every write committed before it was delivered too).
    fresh_through: Option<Instant>,
    hold_until: Option<Instant>,
    awaiting: BTreeSet<WorkerId>,
    evicting: BTreeMap<WorkerId, OpId>,
    /// Members re-read after an eviction found a newer revision than the
    /// watch showed: a watch can start from a lagging replica of an R3
    /// bucket and show a value that expired there, which no later change
    /// will ever correct.
    rereading: BTreeMap<OpId, WorkerId>,
    /// Members this leader evicted, with the revision of the record it
    /// evicted and the revision its eviction wrote: gone while the watch
    /// shows either (a later record, even one of a lower revision after
    /// the buckets were lost and rebuilt, is a new claim).
    evicted: BTreeMap<WorkerId, (Revision, Revision)>,
    /// Members whose eviction failed (they wrote since, or the store could
    /// not say): alive as of then, whatever the watch shows so far.
    alive_at: BTreeMap<WorkerId, Instant>,
    known: KnownRecords,
    recovery_until: Option<Instant>,
    emergency: bool,
    dirty: bool,
    restart_detected: bool,
    /// The committed assignment was loaded at takeover: restart detection
    /// runs at the first evaluation (the roster has caught up by then).
    restart_check_pending: bool,
    restart_ratio: f64,
    /// Something happened since the last evaluation.
    changed: bool,
    /// When the last evaluation said to look again.
    next_due: Option<Instant>,
    /// Whether committed differs from target (cached after each evaluation).
    pending_handoff: bool,
    /// Bumped whenever `target` is replaced.
    target_gen: u64,
    /// Bumped whenever `committed` is replaced.
    committed_gen: u64,
    /// [`Controller::compute_handoff_pending`]'s last answer and for which
    /// generations.
    handoff_memo: Option<((u64, u64), bool)>,
    /// The partition list changed since the last full publication step.
    list_changed: bool,
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
        partitions: Option<Arc<[Partition]>>,
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
            key_ranks: Vec::new(),
            list_op: None,
            list_retry_at: None,
            partitions_dirty: false,
            target: None,
            target_workers: BTreeSet::new(),
            lifecycle: Lifecycle::ColdStart,
            lifecycle_published: false,
            cold_until: None,
            planned_since: None,
            ghost_since: BTreeMap::new(),
            last_rebalance: None,
            publishing: None,
            reconcile_op: None,
            retry_at: None,
            evict_retry_at: None,
            fresh_through: None,
            hold_until: None,
            awaiting: BTreeSet::new(),
            evicting: BTreeMap::new(),
            rereading: BTreeMap::new(),
            evicted: BTreeMap::new(),
            alive_at: BTreeMap::new(),
            known: KnownRecords::default(),
            recovery_until: None,
            emergency: false,
            dirty: true,
            restart_detected: false,
            restart_check_pending: false,
            restart_ratio: config.restart_detection_ratio,
            changed: true,
            next_due: None,
            pending_handoff: false,
            target_gen: 0,
            committed_gen: 0,
            handoff_memo: None,
            list_changed: false,
            handoff_hold: config.heartbeat_interval,
        };
        match partitions {
            Some(list) => c.set_partitions(list.iter().cloned(), out),
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

    /// Whether the committed owners differ from the target. O(partitions),
    /// so the answer is kept until either changes (it is asked after every
    /// evaluation).
    fn compute_handoff_pending(&mut self) -> bool {
        let key = (self.target_gen, self.committed_gen);
        if let Some((k, pending)) = self.handoff_memo
            && k == key
        {
            return pending;
        }
        let pending = self.handoff_pending_now();
        self.handoff_memo = Some((key, pending));
        pending
    }

    fn handoff_pending_now(&self) -> bool {
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
    pub(crate) fn set_partitions(
        &mut self,
        list: impl IntoIterator<Item = Partition>,
        out: &mut Outbox,
    ) {
        self.changed = true;
        let mut listed = 0usize;
        // Built from the sorted pairs at once (see `Committed::from_parts`).
        let map: BTreeMap<PartitionId, Partition> = list
            .into_iter()
            .inspect(|_| listed += 1)
            .map(|p| (p.id(), p))
            .collect();
        let duplicates = listed - map.len();
        if duplicates > 0 {
            out.notify(Notification::Error(format!(
                "{duplicates} duplicate partitions in the partition list were ignored"
            )));
        }
        if self.partitions.as_ref() != Some(&map) {
            let had = self.partitions.is_some();
            self.key_ranks = key_ranks(&map);
            self.partitions = Some(map);
            self.list_changed = true;
            if had {
                self.partitions_dirty = true;
            }
            self.dirty = true;
        }
    }

    /// After the store was unreachable: observations are stale and the other
    /// workers may still be reconnecting, so for the recovery grace nothing
    /// is evicted, an absent worker keeps its partitions (unless it is
    /// leaving) and a cold start waits.
    pub(crate) fn on_recovered(&mut self, config: &Config, now: Instant) {
        let until = now + config.degraded.recovery_grace;
        self.recovery_until = Some(until);
        if let Some(cold) = &mut self.cold_until {
            *cold = (*cold).max(until);
        }
        self.changed = true;
    }

    /// A member has seen a higher version than the committed one (the
    /// buckets were lost and recreated, and it came back after the leader's
    /// first publication): it would ignore every record below what it saw,
    /// so everything is re-staged under a version above it.
    fn restage_if_behind(&mut self, roster: &Roster) {
        if self.publishing.is_some() || self.takeover_pending {
            return;
        }
        let Some(c) = &self.committed else { return };
        let behind = roster.members().any(|(_, v)| {
            v.record.status == MemberStatus::Active && v.record.seen > c.meta.version
        });
        if behind && !self.planted.has(PlantedBug::VersionReset) {
            self.takeover_pending = true;
            self.dirty = true;
        }
    }

    /// The watch delivered the leader's own renewal sent at `sent`: its view
    /// of the members is complete up to then.
    pub(crate) fn watch_fresh_through(&mut self, sent: Instant) {
        if self.fresh_through.is_none_or(|f| f < sent) {
            self.fresh_through = Some(sent);
            self.changed = true;
        }
    }

    /// Whether a member whose record last changed at `last_change` has been
    /// silent for `period` as far as the leader can tell: up to the point its
    /// view is known to be complete. A silence that coincides with the
    /// leader's own writes failing (a stream electing a new leader) or with
    /// its watch stalling (its consumer on a dead node) is no evidence of a
    /// crash.
    pub(super) fn silent_for(&self, last_change: Instant, period: Duration) -> bool {
        self.fresh_through
            .is_some_and(|f| f >= last_change + period)
    }

    /// A member record changed in a way that matters (status, acknowledgement,
    /// instance) or a member left.
    pub(crate) fn on_roster_changed(&mut self) {
        self.dirty = true;
        self.changed = true;
    }
}

/// The place in key order of each partition of `map` (taken in ID order).
fn key_ranks(map: &BTreeMap<PartitionId, Partition>) -> Vec<u32> {
    let order = crate::partition::order_by_keys(map.values().map(|p| &p.keys));
    let mut ranks = vec![0u32; order.len()];
    for (rank, index) in order.into_iter().enumerate() {
        ranks[index] = u32::try_from(rank).unwrap_or(u32::MAX);
    }
    ranks
}

impl Controller {
    /// Whether [`Controller::on_timeout`] would evaluate now (something
    /// changed or a deadline passed), which at a large scale is work.
    pub(crate) fn would_evaluate(&self, roster: &Roster, leads: bool, now: Instant) -> bool {
        leads && roster.caught_up() && (self.changed || self.next_due.is_none_or(|t| now >= t))
    }

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
        // Nothing before the watch of every member caught up (a new leader's
        // watch starts with its election): acting on a partial roster would
        // evict, or rebalance away from, members it has not seen yet.
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
        if std::mem::take(&mut self.restart_check_pending)
            && let Some(c) = &self.committed
        {
            // Restart detection: of the workers the last assignment names, far
            // fewer than `restart_detection_ratio` are still the same running
            // incarnation (a full restart brings new claims, or new IDs).
            self.restart_detected = !self.incarnations_returned(c, roster);
        }
        self.forget_stale_evictions(roster);
        self.evict_vanished(config, roster, out, now);
        self.restage_if_behind(roster);
        if self.publishing.is_some() {
            return;
        }
        // Who vanished is known only once the evictions answered: deciding
        // before would rebalance from a partial (or a mistaken) picture.
        if !self.evicting.is_empty() {
            return;
        }
        self.decide(config, roster, now, out);
        if self.retry_at.is_some_and(|t| now < t) {
            return;
        }
        self.retry_at = None;
        self.publish_step(config, roster, out, now);
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
        // The earliest candidate after `now`, kept as they come: this runs
        // after every event the leader handles (no list is built).
        let mut next: Option<Instant> = None;
        let mut consider = |t: Option<Instant>| {
            if let Some(t) = t
                && t > now
                && next.is_none_or(|n| t < n)
            {
                next = Some(t);
            }
        };
        for t in [
            self.list_retry_at,
            self.retry_at,
            self.evict_retry_at,
            self.hold_until,
            self.recovery_until,
        ] {
            consider(t);
        }
        if self.partitions.is_some() {
            if self.target.is_none() {
                consider(Some(
                    self.cold_until
                        .unwrap_or(self.since + config.cold_start_window),
                ));
            }
            if let Some(since) = self.planned_since {
                consider(Some(since + config.planned_scale_window));
            }
            if let Some(t) = self.last_rebalance {
                consider(Some(t + config.rebalance_cooldown));
            }
            for s in self.ghost_since.values() {
                consider(Some(*s + config.planned_scale_window));
            }
            let basis_ttl = config
                .heartbeat_ttl
                .saturating_add(config.effective_emergency_grace());
            let wait = basis_ttl.max(config.lease_expiry_wait());
            // Per member, in whole milliseconds (what `Instant + Duration`
            // adds): its latest sign of life plus `basis_ttl`, and plus
            // `wait`, if after `now`. Both grow with the sign of life, so
            // each earliest one is that of the member seen last the longest
            // ago among those still after `now`: the roster's time order
            // finds it without visiting every member (this runs after every
            // event the leader handles, one per heartbeat of any member).
            let basis_ms = u64::try_from(basis_ttl.as_millis()).unwrap_or(u64::MAX);
            let wait_ms = u64::try_from(wait.as_millis()).unwrap_or(u64::MAX);
            let counted = |w: &WorkerId| {
                *w != self.me
                    && !self.evicting.contains_key(w)
                    && roster
                        .get(w)
                        .is_some_and(|v| v.record.status == MemberStatus::Active)
            };
            // A failed eviction can be a later sign of life than the record:
            // those few members are taken one by one.
            for w in self.alive_at.keys() {
                if let Some(v) = roster.get(w)
                    && counted(w)
                {
                    let seen = self.last_sign_of_life(w, v.last_change).as_millis();
                    consider(Some(Instant::from_millis(seen.saturating_add(basis_ms))));
                    consider(Some(Instant::from_millis(seen.saturating_add(wait_ms))));
                }
            }
            for period in [basis_ms, wait_ms] {
                // `seen + period > now` from this sign of life on.
                let from = match now.as_millis().checked_sub(period) {
                    Some(t) => t.checked_add(1),
                    None => Some(0),
                };
                let Some(from) = from else { continue };
                let first = roster
                    .changed_from(Instant::from_millis(from))
                    .find(|(_, w)| !self.alive_at.contains_key(*w) && counted(w));
                if let Some((seen, _)) = first {
                    consider(Some(Instant::from_millis(
                        seen.as_millis().saturating_add(period),
                    )));
                }
            }
        }
        next
    }
}
