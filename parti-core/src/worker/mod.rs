//! The worker: one per process. It composes the membership, election, follower,
//! controller and degraded machines, routes every input to them, and queues
//! commands for its driver. How it stops is in `stop`, the state a user sees in
//! `user_state`, the test-only planted bugs in `planted`.
//!
//! ```
//! use parti_core::{Config, Event, Instant, InstanceId, Worker};
//! # use parti_core::strategy::*;
//! # #[derive(Debug)] struct Rr;
//! # impl AssignmentStrategy for Rr {
//! #     fn name(&self) -> &str { "rr" }
//! #     fn assign(&self, i: &AssignmentInput<'_>) -> Result<Placement, StrategyError> {
//! #         validate_input(i)?;
//! #         Ok(Placement { owners: (0..i.partitions.len()).map(|p| (p % i.workers.len()) as u32).collect() })
//! #     }
//! # }
//! let mut worker = Worker::new(Config::for_tests(), std::sync::Arc::new(Rr), InstanceId(7), Instant::ZERO);
//! worker.handle(Event::Start, Instant::ZERO);
//! while let Some(command) = worker.poll_command() {
//!     // execute `command` on the store, then feed its result back with
//!     // `worker.handle(Event::Completed { op, outcome }, now)`.
//!     let _ = command;
//! }
//! assert_eq!(worker.state(), parti_core::State::ClaimingId);
//! ```

mod controller;
mod degraded;
mod election;
mod follower;
mod membership;
mod planted;
mod stop;
mod user_state;

use crate::backend::{Change, MemberScope, WatchEvent};
use crate::command::{Command, Notification};
use crate::config::{Config, DegradedPolicy};
use crate::event::Event;
use crate::ids::{InstanceId, WorkerId};
use crate::outbox::Outbox;
use crate::partition::Partition;
use crate::records::{MemberRecord, OwnedPartition, Revision};
use crate::roster::Roster;
use crate::state::State;
use crate::strategy::AssignmentStrategy;
use crate::time::Instant;
use controller::Controller;
use degraded::DegradedTracker;
use election::Election;
use follower::{Diff, Follower, Hold};
use membership::Membership;
pub use planted::PlantedBug;
use planted::PlantedBugs;
use std::sync::Arc;
use stop::Life;

/// The protocol state machine of one worker process. See the crate docs.
#[derive(Debug)]
pub struct Worker {
    config: Config,
    instance: InstanceId,
    strategy: Arc<dyn AssignmentStrategy>,
    state: State,
    out: Outbox,
    roster: Roster,
    membership: Membership,
    election: Election,
    follower: Follower,
    controller: Option<Controller>,
    degraded: DegradedTracker,
    partitions: Option<Arc<[Partition]>>,
    life: Life,
    last_now: Instant,
    pause_suspected: bool,
    follower_dirty: bool,
    /// The rest of a turn was put off so that the renewals it queued go out
    /// first: the next turn is due then.
    resume_at: Option<Instant>,
    last_hold: Hold,
    /// Planted bugs (simulator self-tests; always empty in production).
    planted: PlantedBugs,
    skipped_values: u64,
    snapshot_saw_leader: bool,
    /// The member keys the last watch asked for include.
    watch_scope: MemberScope,
    /// The ID was taken back after an outage and the new watch has not caught
    /// up yet: what this worker knows of the assignment may be stale, so it
    /// takes nothing and its ownership lease is not counted as valid.
    reclaim_unsynced: bool,
    invalid_transitions: Vec<(State, State)>,
}

impl Worker {
    /// A worker that has not started. `instance` identifies this process (the
    /// driver draws it at random; the simulator from its seed).
    pub fn new(
        config: Config,
        strategy: Arc<dyn AssignmentStrategy>,
        instance: InstanceId,
        now: Instant,
    ) -> Self {
        let capacity = config.worker_capacity;
        Worker {
            config,
            instance,
            strategy,
            state: State::Init,
            out: Outbox::default(),
            roster: Roster::default(),
            membership: Membership::new(instance, capacity),
            election: Election::default(),
            follower: Follower::default(),
            controller: None,
            degraded: DegradedTracker::default(),
            partitions: None,
            life: Life::Running,
            last_now: now,
            resume_at: None,
            pause_suspected: false,
            follower_dirty: false,
            last_hold: Hold::Nothing,
            planted: PlantedBugs::empty(),
            skipped_values: 0,
            snapshot_saw_leader: false,
            watch_scope: MemberScope::All,
            reclaim_unsynced: false,
            invalid_transitions: Vec::new(),
        }
    }

    /// Switches on a planted bug (simulator self-tests only).
    #[cfg(feature = "planted-bugs")]
    pub fn plant(&mut self, bug: PlantedBug) {
        self.planted.insert(bug);
        self.membership.planted = self.planted;
        self.election.planted = self.planted;
        self.follower.planted = self.planted;
        if let Some(c) = &mut self.controller {
            c.planted = self.planted;
        }
    }

    // ----- views -----

    /// The state a user sees.
    pub fn state(&self) -> State {
        self.state
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// This process's instance id.
    pub fn instance(&self) -> InstanceId {
        self.instance
    }

    /// The stable ID held, if any.
    pub fn worker_id(&self) -> Option<&WorkerId> {
        self.membership.id()
    }

    /// Whether this worker leads (holds the leader key and runs the controller).
    pub fn is_leader(&self) -> bool {
        self.controller.is_some()
    }

    /// The leader's term if this worker leads.
    pub fn term(&self) -> Option<u64> {
        self.controller.as_ref().map(|c| c.term())
    }

    /// The partitions owned now, with their fencing epochs, sorted by keys.
    pub fn assignment(&self) -> Vec<OwnedPartition> {
        let held: Vec<&OwnedPartition> = self.follower.held().collect();
        crate::partition::order_by_keys(held.iter().map(|p| &p.partition.keys))
            .into_iter()
            .map(|i| held[i].clone())
            .collect()
    }

    /// Number of partitions owned now.
    pub fn owned_count(&self) -> usize {
        self.follower.held_count()
    }

    /// The assignment version applied (0 before the first).
    pub fn assignment_version(&self) -> u64 {
        self.follower.applied_version()
    }

    /// The highest committed assignment version this worker has seen (from
    /// the commit record), whether or not it applied it yet; `None` before
    /// the first. `committed_version() - assignment_version()` is how far
    /// this worker lags behind the group.
    pub fn committed_version(&self) -> Option<u64> {
        self.follower.meta().map(|m| m.version)
    }

    /// The highest assignment version this process has seen, committed or
    /// applied, over all its claims: what its member record carries as
    /// `seen`, the floor above which a new leader publishes after the store
    /// lost its buckets.
    pub fn highest_seen_version(&self) -> u64 {
        self.membership.seen().max(self.follower.highest_seen())
    }

    /// Whether the worker is in degraded mode (cut off from the store for
    /// longer than `degraded.enter_after`, and not yet reachable again for
    /// `degraded.exit_after`): the degraded tracker's own view, which the
    /// `Degraded` state follows.
    pub fn is_degraded(&self) -> bool {
        self.degraded.is_degraded()
    }

    /// The members as this worker sees them: every member while it leads
    /// or chooses an ID from the roster; none while it claims the ID it
    /// wants before any watch; otherwise its own record and the leader's, live,
    /// and the others as last seen, frozen (see [`MemberScope`]: a worker
    /// that does not lead does not watch the others).
    pub fn roster(&self) -> &Roster {
        &self.roster
    }

    /// The leader as this worker sees it: (worker, term).
    pub fn leader(&self) -> Option<(WorkerId, u64)> {
        self.election
            .known_leader()
            .map(|k| (k.worker.clone(), k.term))
    }

    /// When the ownership lease ends (start of the last successful renewal
    /// plus the lease), on this worker's clock; `None` while no lease is
    /// proven (no ID, or back from an outage and not yet in step with the
    /// store's commit record).
    pub fn lease_deadline(&self) -> Option<Instant> {
        if self.reclaim_unsynced || self.follower.unconfirmed() {
            return None;
        }
        self.membership.ownership_deadline(&self.config)
    }

    /// Whether the worker sent the deletion of its member key (the end of a
    /// stop): it no longer acts under its ID.
    pub fn releasing_id(&self) -> bool {
        self.membership.is_releasing()
    }

    /// Start of the last successful renewal or claim, on this worker's clock.
    pub fn last_renewal(&self) -> Option<Instant> {
        self.membership.last_ok_start()
    }

    /// Values of the watch that could not be decoded and were skipped.
    pub fn skipped_values(&self) -> u64 {
        self.skipped_values
    }

    /// Transitions the state table refused (a bug if not empty).
    pub fn invalid_transitions(&self) -> &[(State, State)] {
        &self.invalid_transitions
    }

    /// Whether the worker has stopped for good.
    pub fn is_stopped(&self) -> bool {
        self.life == Life::Stopped
    }

    // ----- driving -----

    /// The next command for the driver.
    pub fn poll_command(&mut self) -> Option<Command> {
        self.out.pop()
    }

    /// When [`Worker::handle_timeout`] must be called next.
    pub fn poll_timeout(&self) -> Option<Instant> {
        // Everything due up to the last call was handled then; a deadline that
        // is still in the past is blocked on an event, not on time.
        self.deadlines().filter(|t| *t > self.last_now).min()
    }

    /// Every pending deadline of every machine (some may be in the past); none
    /// once stopped.
    fn deadlines(&self) -> impl Iterator<Item = Instant> {
        let has_id = self.membership.id().is_some();
        let holds = self.follower.held_count() > 0;
        let pending = (!self.is_stopped()).then(|| {
            [
                self.membership.poll_timeout(&self.config),
                self.election.poll_timeout(&self.config, has_id),
                self.degraded.poll_timeout(&self.config),
                self.controller
                    .as_ref()
                    .and_then(|c| c.poll_timeout(&self.config, &self.roster, self.last_now)),
                holds
                    .then(|| self.membership.ownership_deadline(&self.config))
                    .flatten(),
                // A pulse: the driver wakes the worker at least once per
                // heartbeat interval, so that a gap longer than the heartbeat
                // TTL really is a pause, never a quiet spell (e.g. a renewal
                // hanging until its timeout while the store is down).
                Some(self.last_now + self.config.heartbeat_interval),
                self.resume_at,
            ]
        });
        pending.into_iter().flatten().flatten()
    }

    /// Time passed.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.observe_time(now);
        self.step(now);
    }

    /// Something happened.
    pub fn handle(&mut self, event: Event, now: Instant) {
        self.observe_time(now);
        if self.is_stopped() {
            return;
        }
        match event {
            Event::Start => {
                if self.state == State::Init {
                    self.transition(State::ClaimingId);
                    self.begin_claiming(now);
                }
            }
            Event::Completed { op, outcome } => {
                if let Some(sig) = self.membership.on_completed(
                    &self.config,
                    &self.roster,
                    op,
                    &outcome,
                    &mut self.out,
                    now,
                ) {
                    self.on_membership(sig, now);
                } else if let Some(sig) =
                    self.election.on_completed(&self.config, op, &outcome, now)
                {
                    self.on_election(sig, now);
                } else if let Some(c) = &mut self.controller {
                    if outcome.is_unreachable() {
                        self.degraded.on_unreachable(now);
                    }
                    match c.on_completed(
                        &self.config,
                        &self.roster,
                        op,
                        outcome,
                        &mut self.out,
                        now,
                    ) {
                        Some(controller::Signal::Superseded) => {
                            let sig = self.election.abdicate();
                            self.on_election(sig, now);
                        }
                        Some(controller::Signal::MemberRead { id, found }) => {
                            self.on_member_read(id, found, now);
                        }
                        Some(controller::Signal::None) | None => {}
                    }
                }
            }
            Event::Watch(item) => self.on_watch(item, now),
            Event::WatchLost => {
                // The driver re-creates the watch; its snapshot will follow.
                // The watch broke: the store may have lost its buckets, so
                // frozen views are not trusted any more.
                self.roster.forget_frozen();
                self.begin_snapshot();
            }
            Event::Disconnected => self.degraded.on_unreachable(now),
            Event::Reconnected => {
                // What was not heard while away says nothing about the others;
                // and they should hear from this worker at once.
                self.roster.refresh_all(now);
                self.membership.renew_at_once(now);
            }
            Event::PartitionsChanged(list) => {
                if let Some(c) = &mut self.controller {
                    c.set_partitions(list.iter().cloned(), &mut self.out);
                }
                self.partitions = Some(list);
            }
            Event::Stop(mode) => self.begin_stop(mode, now),
        }
        self.step(now);
    }

    fn observe_time(&mut self, now: Instant) {
        if now.saturating_since(self.last_now) > self.config.heartbeat_ttl {
            // We did not run for longer than the heartbeat TTL: a pause (GC,
            // SIGSTOP, VM migration). Beliefs are stale.
            self.pause_suspected = true;
        }
        self.last_now = self.last_now.max(now);
    }

    /// A new watch is starting: its snapshot replaces what the roster and the
    /// election know.
    fn begin_snapshot(&mut self) {
        self.roster.begin_snapshot();
        self.follower.begin_snapshot();
        self.snapshot_saw_leader = false;
    }

    /// Claims an ID: the one wanted (preferred, or held last) at once,
    /// without a watch; otherwise (or when that claim is not won) from the
    /// roster of a watch of every member. Either way the store may have lost
    /// its buckets since the others were last seen: nothing frozen is
    /// trusted.
    fn begin_claiming(&mut self, now: Instant) {
        self.roster.forget_others(None);
        let sig = self
            .membership
            .start_claiming(&self.config, &mut self.out, now);
        self.on_membership(sig, now);
    }

    /// (Re)starts the watch with the member keys this worker needs now (see
    /// [`MemberScope`]): every member while it chooses an ID from the roster
    /// (it looks for a free one, or waits for one on a full range; a worker
    /// that claims the ID it wants at once has no watch until it holds it)
    /// or leads (the controller
    /// judges every member, and acts only once this watch caught up); only
    /// its own member key and the leader's otherwise (the leader's, so that
    /// whoever is elected next knows how long the old leader has been
    /// silent), which keeps the group's steady-state watch traffic linear in
    /// its size. Its snapshot replaces what the
    /// roster, the election and the follower know.
    fn restart_watch(&mut self) {
        let worker = self.membership.id().cloned();
        let members = match &worker {
            // Narrow: its own key and the leader's; the others' views are
            // frozen (see `roster`).
            Some(id) if self.controller.is_none() => {
                let leader = self
                    .election
                    .known_leader()
                    .map(|k| k.worker.clone())
                    .filter(|l| l != id);
                let only = std::iter::once(id.clone()).chain(leader.clone()).collect();
                self.roster.set_scope(Some(only));
                MemberScope::Own { leader }
            }
            // A new leader keeps the frozen views for its snapshot to
            // confirm (a member silent since it was last seen stays so).
            Some(_) => {
                self.roster.set_scope(None);
                MemberScope::All
            }
            // Choosing an ID from the roster (at start, after a loss, after
            // the claim of the ID wanted was not won): the store may have
            // lost its buckets, so nothing frozen is trusted.
            None => {
                self.roster.forget_others(None);
                self.roster.set_scope(None);
                MemberScope::All
            }
        };
        self.begin_snapshot();
        self.watch_scope = members.clone();
        self.out.push(Command::Watch { worker, members });
    }

    /// A follower whose watch is caught up and follows another leader's
    /// member key than the one the leader key now names switches to the new
    /// leader's (a leader key that went away changes nothing: the old
    /// leader's record stays watched until a successor is known).
    fn follow_leader_key(&mut self) {
        let MemberScope::Own { leader: watched } = &self.watch_scope else {
            return;
        };
        let known = self.election.known_leader().map(|k| &k.worker);
        if known.is_some()
            && known != watched.as_ref()
            && known != self.membership.id()
            && self.roster.caught_up()
            && self.controller.is_none()
            && self.membership.id().is_some()
            && !self.is_stopping()
        {
            self.restart_watch();
        }
    }

    /// A member's record as a read of the key found it: newer than the
    /// watch's value, it replaces it as a watch item would; an absent key
    /// removes the member (the read is the store's current state, so nothing
    /// the watch showed of it is still true).
    fn on_member_read(
        &mut self,
        id: WorkerId,
        found: Option<(MemberRecord, Revision)>,
        now: Instant,
    ) {
        let Some(known) = self.roster.get(&id).map(|v| v.revision) else {
            return;
        };
        let (revision, change) = match found {
            Some((record, revision)) if revision > known => (revision, Change::Put(record)),
            Some(_) => return,
            None => (known, Change::Removed),
        };
        self.on_watch(
            WatchEvent::Member {
                id,
                revision,
                change,
            },
            now,
        );
    }

    fn on_watch(&mut self, item: WatchEvent, now: Instant) {
        match item {
            WatchEvent::Member {
                id,
                revision,
                change,
            } => {
                match change {
                    Change::Put(record) => {
                        // What another member saw is known here too: carried
                        // by this worker's next write, it outlives that
                        // member's record (a lost store keeps nothing else).
                        // Only the leader (and a claiming worker) sees other
                        // members; a follower carries what it saw itself.
                        self.membership.note_seen(record.seen);
                        let sig = self.membership.on_member_seen(&id, Some(&record));
                        let (status, applied, instance, capacity) = (
                            record.status,
                            record.applied,
                            record.instance,
                            record.capacity,
                        );
                        let before = self.roster.put(id, record, revision, now);
                        let material = before.as_ref().is_none_or(|b| {
                            b.status != status
                                || b.applied != applied
                                || b.instance != instance
                                || b.capacity != capacity
                        });
                        if material && let Some(c) = &mut self.controller {
                            c.on_roster_changed();
                        }
                        self.on_membership(sig, now);
                    }
                    Change::Removed => {
                        let sig = self.membership.on_member_seen(&id, None);
                        self.roster.remove(&id, revision, now);
                        if let Some(c) = &mut self.controller {
                            c.on_roster_changed();
                        }
                        self.on_membership(sig, now);
                        // An ID may have been freed for a worker waiting on a
                        // full range.
                        let sig = self.membership.on_member_removed(
                            &self.config,
                            &self.roster,
                            &mut self.out,
                            now,
                        );
                        self.on_membership(sig, now);
                    }
                }
            }
            WatchEvent::Leader { revision, change } => {
                self.snapshot_saw_leader = true;
                let me = self
                    .membership
                    .id()
                    .cloned()
                    .map(|id| (id, self.membership.instance()));
                let change = match change {
                    Change::Put(rec) => Some((rec, revision)),
                    Change::Removed => None,
                };
                let sig = self
                    .election
                    .on_leader(change, me.as_ref().map(|(w, i)| (w, *i)), now);
                self.on_election(sig, now);
                self.follow_leader_key();
            }
            WatchEvent::Meta { meta, .. } => {
                let lost = self.follower.on_meta(meta);
                self.on_assignment_lost(lost);
                self.follower_dirty = true;
            }
            WatchEvent::Assignment { record, .. } => {
                if let Some(me) = self.membership.id() {
                    let me = me.clone();
                    self.follower.on_record(&me, record);
                    self.follower_dirty = true;
                }
            }
            WatchEvent::CaughtUp => {
                let lost = self.follower.end_snapshot();
                self.on_assignment_lost(lost);
                self.follower_dirty = true;
                if self.reclaim_unsynced {
                    self.reclaim_unsynced = false;
                    self.follower_dirty = true;
                }
                let gone = self.roster.end_snapshot(now);
                if !gone.is_empty()
                    && let Some(c) = &mut self.controller
                {
                    c.on_roster_changed();
                }
                self.election.on_caught_up(now);
                if !self.snapshot_saw_leader && self.election.known_leader().is_some() {
                    // The fresh snapshot has no leader key: whoever we knew is
                    // gone (its key expired while we were not watching).
                    let me = self
                        .membership
                        .id()
                        .cloned()
                        .map(|id| (id, self.membership.instance()));
                    let sig = self
                        .election
                        .on_leader(None, me.as_ref().map(|(w, i)| (w, *i)), now);
                    self.on_election(sig, now);
                }
                let sig = self
                    .membership
                    .on_roster(&self.config, &self.roster, &mut self.out, now);
                self.on_membership(sig, now);
                self.follow_leader_key();
            }
            WatchEvent::Skipped { .. } => self.skipped_values += 1,
        }
    }

    /// The store lost the assignment applied (`lost` says what was
    /// dropped): nothing of it is held, nor acknowledged any more.
    fn on_assignment_lost(&mut self, lost: Option<Diff>) {
        if let Some(diff) = lost {
            self.report(diff, 0);
            self.membership.set_applied(None, 0);
        }
    }

    /// A write reached the store. After a cut-off, the silence of the other
    /// members says nothing about them (this worker could not hear them): the
    /// roster's liveness clocks restart now, so that nobody is judged gone
    /// over time the observer itself was away.
    fn store_reached(&mut self, now: Instant) {
        if self.degraded.on_reachable(now) {
            self.roster.refresh_all(now);
        }
    }

    fn on_membership(&mut self, sig: membership::Signal, now: Instant) {
        use membership::Signal as S;
        match sig {
            S::None => {}
            S::Claimed | S::Reclaimed => {
                self.reclaim_unsynced = sig == S::Reclaimed;
                let id = self.membership.id().cloned();
                self.store_reached(now);
                self.pause_suspected = false;
                self.restart_watch();
                if sig == S::Reclaimed {
                    // Back after an outage long enough for the reservation
                    // to lapse: the store may have lost its buckets.
                    self.roster.forget_frozen();
                }
                self.out.notify(Notification::IdChanged { id });
                if !self.is_stopping() {
                    self.transition(State::Election);
                }
            }
            S::Lost => {
                let diff = self.follower.reset();
                self.report(diff, 0);
                let sig = self.election.reset();
                self.on_election(sig, now);
                self.out.notify(Notification::IdChanged { id: None });
                if self.is_stopping() {
                    self.finish_stop();
                } else {
                    self.transition(State::ClaimingId);
                    self.begin_claiming(now);
                }
            }
            S::Exhausted(err) => {
                self.out.notify(Notification::Fatal(err));
                self.finish_stop();
            }
            S::Reachable => {
                self.store_reached(now);
                self.pause_suspected = false;
            }
            S::Unreachable => self.degraded.on_unreachable(now),
            S::Released => self.finish_stop(),
            S::WatchMembers => self.restart_watch(),
        }
    }

    fn on_election(&mut self, sig: election::Signal, now: Instant) {
        match sig {
            election::Signal::None => {}
            election::Signal::Elected(term) => {
                let Some(me) = self.membership.id().cloned() else {
                    // The ID lapsed while the campaign was in flight (it is
                    // being claimed back): a leader without an ID cannot
                    // lead, so give the key back at once.
                    let sig = self.election.resign(&mut self.out);
                    self.on_election(sig, now);
                    return;
                };
                {
                    // The leader looks for the next member to fall silent
                    // after every event: its roster keeps them in time order.
                    self.roster.index_changes();
                    self.controller = Some(Controller::new(
                        &self.config,
                        me,
                        term,
                        self.strategy.clone(),
                        self.planted,
                        self.partitions.clone(),
                        &mut self.out,
                        now,
                    ));
                    // Elected while (just) back from an outage: the others may
                    // still be reconnecting; declare no emergency for the
                    // recovery grace, as a leader that rode the outage out would.
                    if self.degraded.is_degraded()
                        && let Some(c) = &mut self.controller
                    {
                        c.on_recovered(&self.config, now);
                    }
                    self.out
                        .notify(Notification::LeadershipChanged { leader: true, term });
                    // The leader judges every member: watch them all. The
                    // controller acts once this snapshot caught up.
                    self.restart_watch();
                }
            }
            election::Signal::Deposed => {
                if let Some(c) = self.controller.take() {
                    self.out.notify(Notification::LeadershipChanged {
                        leader: false,
                        term: c.term(),
                    });
                    // Back to the own member key at once (a deposed leader
                    // that kept watching every member would leave one more
                    // full watch behind after each change of leader). Not
                    // while stopping (the watch ends with the process), nor
                    // without an ID (the claim restarts the watch anyway).
                    if self.membership.id().is_some() && !self.is_stopping() {
                        self.restart_watch();
                    }
                }
            }
        }
    }

    fn report(&mut self, diff: Diff, version: u64) {
        if !diff.is_empty() {
            self.out.notify(Notification::AssignmentChanged {
                added: diff.added,
                removed: diff.removed,
                version,
            });
        }
    }

    /// How much of its assignment this worker may hold now.
    fn hold(&self, now: Instant) -> Hold {
        if self.is_stopping() {
            return Hold::Nothing;
        }
        if self.membership.id().is_none() {
            // Taking the same ID back after an outage: keep what is held.
            return match self.membership.reclaiming() {
                Some(_) if self.keeps_through_outage() => Hold::Frozen,
                _ => Hold::Nothing,
            };
        }
        if self.reclaim_unsynced || self.follower.unconfirmed() {
            // Back from an outage, not caught up yet (or the store shows no
            // commit record yet, having perhaps lost its buckets): keep,
            // take nothing.
            return match self.config.degraded.policy {
                DegradedPolicy::KeepProcessing => Hold::Frozen,
                DegradedPolicy::StopWhenLeaseExpires => Hold::Nothing,
            };
        }
        if self.planted.has(PlantedBug::IgnoreLease) {
            return Hold::All;
        }
        if self.membership.ownership_valid(&self.config, now) && !self.pause_suspected {
            return Hold::All;
        }
        match self.config.degraded.policy {
            DegradedPolicy::StopWhenLeaseExpires => Hold::Nothing,
            // Availability: a worker that knows it is cut off keeps its frozen
            // assignment (but takes nothing new); a paused one does not (it has
            // not been watching).
            DegradedPolicy::KeepProcessing if self.keeps_through_outage() => Hold::Frozen,
            DegradedPolicy::KeepProcessing => Hold::Nothing,
        }
    }

    /// Whether the worker keeps its frozen assignment past its lease: under
    /// `KeepProcessing`, while it knows it is cut off from the store, or its
    /// renewals fail (the members bucket's stream may be electing a new
    /// leader while other buckets answer). A paused worker does not (it has
    /// not been watching).
    fn keeps_through_outage(&self) -> bool {
        self.config.degraded.policy == DegradedPolicy::KeepProcessing
            && (self.degraded.is_cut_off() || self.membership.renewals_failing())
            && !self.pause_suspected
    }

    /// Renewals go out before the work of a turn: in a turn that queued one
    /// (or that would evaluate the controller while leadership could use
    /// one), applying a new assignment and the controller wait for the next
    /// turn, a millisecond later, once the driver sent it (dropping
    /// partitions whose lease ran out does not wait). At a million
    /// partitions applying an assignment or rebalancing holds the driver's
    /// thread for seconds on a starved machine; a renewal queued behind that
    /// work would leave late, and the lease (measured from its start) would
    /// lapse under a live leader.
    fn renewals_first(&mut self, now: Instant) -> bool {
        let mut queued = self.out.take_renewal_queued();
        if !queued && let (Some(c), Some(me)) = (&self.controller, self.membership.id()) {
            let leads = self.election.leads(&self.config, now);
            if c.would_evaluate(&self.roster, leads, now) {
                let instance = self.membership.instance();
                queued = self
                    .election
                    .renew_ahead(&self.config, me, instance, &mut self.out, now);
            }
        }
        if queued {
            self.resume_at = Some(now + std::time::Duration::from_millis(1));
        }
        queued
    }

    /// Runs every machine after an input.
    fn step(&mut self, now: Instant) {
        if self.is_stopped() {
            return;
        }
        // Only the renewals of this turn count (see `renewals_first`).
        self.out.take_renewal_queued();
        // Membership: renewals, reservation expiry, claim retries.
        // An ID whose reservation lapses while cut off is taken back as the
        // same claim when the store answers (nobody could have claimed it if
        // the store was down for everybody; the read-back tells otherwise).
        let keep_claim = self.degraded.is_cut_off() && !self.pause_suspected;
        let sig =
            self.membership
                .on_timeout(&self.config, &self.roster, keep_claim, &mut self.out, now);
        self.on_membership(sig, now);
        if self.is_stopped() {
            return;
        }
        // Election.
        let me = self.membership.id().cloned();
        let can_campaign = !self.is_stopping() && self.roster.caught_up();
        let sig = self.election.on_timeout(
            &self.config,
            me.as_ref().map(|w| (w, self.membership.instance())),
            can_campaign,
            &mut self.out,
            now,
        );
        self.on_election(sig, now);
        self.resume_at = None;
        let renewals_first = self.renewals_first(now);
        // Degraded mode.
        match self.degraded.on_timeout(&self.config, now) {
            degraded::Signal::None | degraded::Signal::Entered => {}
            degraded::Signal::Exited => {
                self.roster.refresh_all(now);
                if let Some(c) = &mut self.controller {
                    c.on_recovered(&self.config, now);
                }
            }
            degraded::Signal::Alert(level, elapsed) => {
                self.out
                    .notify(Notification::DegradedAlert { level, elapsed });
            }
        }
        // Follower: apply the committed assignment within the lease (or keep
        // it frozen while the ID is being taken back). The member record
        // carries the highest version seen (written with the next renewal).
        self.membership.note_seen(self.follower.highest_seen());
        let me = self.membership.id().or(self.membership.reclaiming());
        if let Some(me) = me.cloned() {
            let hold = self.hold(now);
            // Taking up a new assignment waits for the renewals; giving
            // partitions up because the lease ran out never does.
            let put_off = renewals_first && hold == Hold::All;
            if (self.follower_dirty || hold != self.last_hold) && !put_off {
                self.follower_dirty = false;
                self.last_hold = hold;
                let instance = self.membership.instance();
                if let Some(diff) = self.follower.apply(&me, instance, hold) {
                    let version = if hold == Hold::Nothing {
                        0
                    } else {
                        self.follower.applied_version()
                    };
                    self.report(diff, version);
                    self.membership.note_seen(self.follower.highest_seen());
                    if !self.is_stopping() {
                        self.membership.set_applied(
                            self.follower.applied_record(),
                            self.follower.held_count() as u32,
                        );
                    }
                } else if hold == Hold::Nothing {
                    let diff = self.follower.drop_all();
                    self.report(diff, 0);
                }
            }
        }
        // Controller.
        // A leader that cannot reach the store sees every other member go
        // stale at once: it decides nothing until the store answers again.
        let acts = self.election.leads(&self.config, now) && !self.degraded.is_cut_off();
        if let Some(c) = self.controller.as_mut().filter(|_| !renewals_first) {
            if let Some((id, revision, sent)) = self.membership.confirmed_write()
                && self.roster.get(id).is_some_and(|v| v.revision >= revision)
            {
                c.watch_fresh_through(sent);
            }
            c.on_timeout(&self.config, &self.roster, acts, &mut self.out, now);
        }
        // Acknowledge quickly.
        self.membership.flush(&mut self.out, now);
        self.advance_stop(now);
        self.roster
            .prune_departures(now - self.config.planned_scale_window.saturating_mul(4));
        self.update_state(now);
    }
}
