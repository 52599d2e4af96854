//! Membership: the stable-ID lease machine. A worker claims a stable ID, then
//! renews its member record (the heartbeat, the ownership lease and the ID
//! reservation in one compare-and-set write), and notices when the ID is lost.
//! This module holds the machine's state and routes each step to the concept
//! it belongs to:
//!
//! - [`claim`]: claiming an ID (the preferred one or the one held last at
//!   once, before any watch; otherwise candidates from the roster),
//!   reconciling claims whose outcome is unknown, and waiting while the
//!   whole range is taken;
//! - [`candidates`]: which ID a round chosen from the roster tries next (a
//!   free one is drawn among the lowest free IDs, so that workers started
//!   together do not all race for the same one);
//! - [`renewal`]: renewals and their read-backs;
//! - [`reclaim`]: taking the same ID back, as the same claim, after its
//!   reservation lapsed while the worker was cut off.
//!
//! The ID is reserved for `id_reservation` from the start of the last
//! successful write, and the ownership lease counts from the same instant.

mod candidates;
mod claim;
mod reclaim;
mod renewal;

use super::planted::{PlantedBug, PlantedBugs};
use crate::command::{Command, FatalError};
use crate::config::Config;
use crate::event::{OpId, Outcome};
use crate::ids::{InstanceId, WorkerId};
use crate::outbox::Outbox;
use crate::records::{MemberRecord, MemberStatus, Revision};
use crate::roster::Roster;
use crate::time::Instant;
use std::collections::BTreeSet;
use std::time::Duration;

/// What a membership step wants the worker to know.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Signal {
    /// Nothing new.
    None,
    /// The ID was claimed.
    Claimed,
    /// The same ID was taken back as the same claim after an outage.
    Reclaimed,
    /// The ID was lost (renewal conflict, eviction, reservation expired).
    Lost,
    /// No ID of the range could be claimed.
    Exhausted(FatalError),
    /// A write succeeded (the store is reachable).
    Reachable,
    /// A write could not reach the store.
    Unreachable,
    /// The member key was deleted (stop finished).
    Released,
    /// The ID claimed at once (without a roster) was not won: watch every
    /// member; the next candidates come from the roster, once it caught up.
    WatchMembers,
}

#[derive(Debug)]
enum Phase {
    /// Not claiming, no ID.
    Idle,
    /// Waiting for the roster before choosing candidates.
    WaitingRoster,
    /// Claiming `current`, chosen as `round` says.
    Claiming {
        round: Round,
        current: u32,
        attempt: Attempt,
    },
    /// Reconciling a claim whose outcome was unknown.
    ReconcilingClaim {
        round: Round,
        current: u32,
        op: OpId,
        sent: Instant,
    },
    /// Every ID of the range was taken: waiting for one to be freed (a member
    /// key removed or expired) or, at the latest, until `retry_at`.
    Waiting { retry_at: Instant },
    /// ID held.
    Held(Lease),
    /// Releasing the ID (stop): the key is being deleted.
    Releasing { lease: Lease, op: OpId },
    /// The reservation of `id` lapsed while cut off: taking it back.
    Reclaiming {
        id: WorkerId,
        step: reclaim::Reclaim,
    },
}

/// How the ID being claimed was chosen.
#[derive(Debug)]
enum Round {
    /// Known without a roster (the preferred ID, or the ID held last) and
    /// claimed with a plain create before any watch of the members: if it
    /// is not won, the worker watches every member and chooses from the
    /// roster.
    Direct,
    /// Chosen from the roster; `tried` holds the IDs this round tried.
    Roster { tried: BTreeSet<u32> },
}

/// Where the claim of one ID stands.
#[derive(Debug)]
enum Attempt {
    /// To be sent at the next step.
    Due,
    /// Sent at `sent`; its outcome is awaited.
    Sent { op: OpId, sent: Instant },
    /// The store could not be reached: send it again at this instant.
    RetryAt(Instant),
}

/// A held ID and the renewals of its member record.
#[derive(Debug)]
struct Lease {
    id: WorkerId,
    /// Revision of the member record as last written (the renewal's
    /// compare-and-set expects it).
    revision: Revision,
    /// Start of the last successful renewal (or of the claim), on this
    /// worker's clock: the ownership lease and the ID reservation count from it.
    last_ok_start: Instant,
    /// When the next renewal is due.
    next_renew: Instant,
    /// The renewal in flight, with the instant it was sent.
    renew: Option<(OpId, Instant)>,
    /// The read-back after a renewal with an unknown outcome or a conflict.
    reconcile: Option<OpId>,
    /// Start of the first of the renewals (or the claim) that have succeeded
    /// since the last one that did not; `None` right after a failure.
    ok_since: Option<Instant>,
    /// The record changed and must be written as soon as possible.
    dirty: bool,
}

impl Lease {
    /// The lease of `id`, just claimed at `revision` by a write sent at `sent`.
    fn claimed(id: WorkerId, revision: Revision, sent: Instant, config: &Config) -> Lease {
        Lease {
            id,
            revision,
            last_ok_start: sent,
            next_renew: sent + config.heartbeat_interval,
            renew: None,
            reconcile: None,
            ok_since: Some(sent),
            dirty: false,
        }
    }

    /// Whether a write or its read-back is in flight.
    fn busy(&self) -> bool {
        self.renew.is_some() || self.reconcile.is_some()
    }

    /// Whether the ID reservation is still certainly ours at `now`.
    fn reserved_at(&self, config: &Config, now: Instant) -> bool {
        now < self.last_ok_start + config.id_reservation()
    }
}

/// The membership machine.
#[derive(Debug)]
pub(crate) struct Membership {
    /// The process's own instance id; each claim derives a fresh one from it.
    base: InstanceId,
    claims: u64,
    /// Instance id of the current claim: records addressed to earlier claims
    /// of this same process are not ours any more.
    instance: InstanceId,
    past: Vec<InstanceId>,
    phase: Phase,
    /// The member record as this worker wants it written.
    record: MemberRecord,
    /// The store said "unavailable": no eager write before this instant (it
    /// outlives the claim it was set under).
    backoff_until: Option<Instant>,
    /// When the current round of claiming began: the range counts as
    /// exhausted only once it stayed full for `startup_timeout` from here.
    claiming_since: Instant,
    /// Delay before the next retry while the range is full (doubles up to
    /// [`claim::max_full_range_delay`]).
    full_range_delay: Duration,
    /// The last ID this process held: claimed first again after a loss (the
    /// store may have lost its buckets, or the key lapsed), so that the
    /// process keeps its place in the assignment.
    previous: Option<WorkerId>,
    /// The ID a direct claim (see [`Round::Direct`]) failed to win: the
    /// roster round that follows skips it if the roster shows it held by
    /// another process.
    direct_failed: Option<u32>,
    /// The free-ID draw of roster rounds.
    draw: candidates::Draw,
    /// Planted bugs (simulator self-tests; always empty in production).
    pub(crate) planted: PlantedBugs,
}

impl Membership {
    pub(crate) fn new(instance: InstanceId, capacity: u32) -> Self {
        Membership {
            previous: None,
            direct_failed: None,
            draw: candidates::Draw::new(instance),
            base: instance,
            claims: 0,
            past: Vec::new(),
            instance,
            phase: Phase::Idle,
            record: MemberRecord::fresh(instance, capacity),
            backoff_until: None,
            claiming_since: Instant::ZERO,
            full_range_delay: Duration::ZERO,
            planted: PlantedBugs::empty(),
        }
    }

    /// Instance id of the current claim.
    pub(crate) fn instance(&self) -> InstanceId {
        self.instance
    }

    fn is_mine(&self, instance: InstanceId) -> bool {
        mine(self.instance, &self.past, instance)
    }

    /// The lease of the held ID (also while releasing it).
    fn lease(&self) -> Option<&Lease> {
        match &self.phase {
            Phase::Held(lease) | Phase::Releasing { lease, .. } => Some(lease),
            _ => None,
        }
    }

    /// The held ID.
    pub(crate) fn id(&self) -> Option<&WorkerId> {
        self.lease().map(|l| &l.id)
    }

    /// The last confirmed write of the member record: the ID, the revision
    /// it got and when it was sent (on this worker's clock).
    pub(crate) fn confirmed_write(&self) -> Option<(&WorkerId, Revision, Instant)> {
        self.lease().map(|l| (&l.id, l.revision, l.last_ok_start))
    }

    /// Whether an ID is held and its last renewal did not go through.
    pub(crate) fn renewals_failing(&self) -> bool {
        self.lease().is_some_and(|l| l.ok_since.is_none())
    }

    /// Whether the member key's deletion (the end of a stop) has been sent.
    pub(crate) fn is_releasing(&self) -> bool {
        matches!(self.phase, Phase::Releasing { .. })
    }

    /// Start of the last successful renewal (or claim), on this worker's clock.
    pub(crate) fn last_ok_start(&self) -> Option<Instant> {
        self.lease().map(|l| l.last_ok_start)
    }

    /// Whether the ownership lease is valid at `now`.
    pub(crate) fn ownership_valid(&self, config: &Config, now: Instant) -> bool {
        self.ownership_deadline(config).is_some_and(|end| now < end)
    }

    /// When the ownership lease ends, if an ID is held.
    pub(crate) fn ownership_deadline(&self, config: &Config) -> Option<Instant> {
        self.last_ok_start().map(|t| t + config.ownership_lease())
    }

    /// Updates what the record says about assignments (the acknowledgement);
    /// written at once.
    pub(crate) fn set_applied(&mut self, applied: Option<u64>, held: u32) {
        if self.record.applied != applied || self.record.held != held {
            self.record.applied = applied;
            self.record.held = held;
            self.mark_dirty();
        }
    }

    /// Notes an assignment version seen; carried by the next write (no write
    /// of its own).
    pub(crate) fn note_seen(&mut self, version: u64) {
        self.record.seen = self.record.seen.max(version);
    }

    /// The highest assignment version noted as seen (the record's `seen`).
    pub(crate) fn seen(&self) -> u64 {
        self.record.seen
    }

    /// Marks the worker as going away; the next write says so.
    pub(crate) fn set_status(&mut self, status: MemberStatus) {
        if self.record.status != status {
            self.record.status = status;
            self.record.applied = None;
            self.record.held = 0;
            self.mark_dirty();
        }
    }

    /// The record changed: write it as soon as possible (only a held ID has a
    /// record to write).
    fn mark_dirty(&mut self) {
        if let Phase::Held(lease) = &mut self.phase {
            lease.dirty = true;
        }
    }

    /// Whether the last written record is what the record says now.
    pub(crate) fn is_flushed(&self) -> bool {
        match &self.phase {
            Phase::Held(lease) => !lease.dirty && !lease.busy(),
            _ => true,
        }
    }

    /// Handles the result of a membership command; `false` if `op` is not ours.
    pub(crate) fn on_completed(
        &mut self,
        config: &Config,
        roster: &Roster,
        op: OpId,
        outcome: &Outcome,
        out: &mut Outbox,
        now: Instant,
    ) -> Option<Signal> {
        if let Some(signal) = self.claim_completed(config, roster, op, outcome, out, now) {
            return Some(signal);
        }
        if let Some(signal) = self.reclaim_completed(config, op, outcome, out, now) {
            return Some(signal);
        }
        match &self.phase {
            Phase::Held(lease) => {
                if lease.renew.is_some_and(|(renew_op, _)| renew_op == op) {
                    return Some(self.renewed(config, outcome, out, now));
                }
                if lease.reconcile == Some(op) {
                    return Some(self.reconciled(config, outcome, now));
                }
                None
            }
            Phase::Releasing { op: release_op, .. } if *release_op == op => {
                self.phase = Phase::Idle;
                Some(Signal::Released)
            }
            _ => None,
        }
    }

    fn lose(&mut self) -> Signal {
        self.phase = Phase::Idle;
        Signal::Lost
    }

    /// Periodic work: renewals, reservation expiry, claim retries. When the
    /// reservation lapses, `keep_claim` (the worker knows it is cut off)
    /// starts a reclaim of the same ID instead of losing it.
    pub(crate) fn on_timeout(
        &mut self,
        config: &Config,
        roster: &Roster,
        keep_claim: bool,
        out: &mut Outbox,
        now: Instant,
    ) -> Signal {
        let lease = match &self.phase {
            Phase::Claiming { .. } => {
                self.send_claim(config, roster, out, now);
                return Signal::None;
            }
            Phase::Waiting { retry_at } if now >= *retry_at => {
                self.phase = Phase::WaitingRoster;
                return self.on_roster(config, roster, out, now);
            }
            Phase::Reclaiming { .. } => {
                self.reclaim_step(out, now);
                return Signal::None;
            }
            Phase::Held(lease) => lease,
            _ => return Signal::None,
        };
        if !lease.reserved_at(config, now) && !self.planted.has(PlantedBug::BlindClaim) {
            if keep_claim {
                let signal = self.begin_reclaim(now);
                self.reclaim_step(out, now);
                return signal;
            }
            return self.lose();
        }
        self.maybe_renew(out, now);
        Signal::None
    }

    /// The member key changed in the watch; an eviction of our own record is
    /// noticed here before the next renewal fails.
    pub(crate) fn on_member_seen(
        &mut self,
        id: &WorkerId,
        record: Option<&MemberRecord>,
    ) -> Signal {
        let Phase::Held(lease) = &self.phase else {
            return Signal::None;
        };
        if &lease.id != id {
            return Signal::None;
        }
        match record {
            Some(r) if r.instance == self.instance && r.status != MemberStatus::Evicted => {
                Signal::None
            }
            // Our key was evicted, taken, or deleted under us.
            _ if lease.renew.is_some() => Signal::None, // let the renewal's result decide
            _ => self.lose(),
        }
    }

    /// Deletes the member key (end of a stop). Returns `Released` at once if no
    /// ID is held.
    pub(crate) fn release(&mut self, out: &mut Outbox) -> Signal {
        match std::mem::replace(&mut self.phase, Phase::Idle) {
            Phase::Held(lease) => {
                let op = out.op();
                out.push(Command::ReleaseId {
                    op,
                    id: lease.id.clone(),
                    expected: lease.revision,
                });
                self.phase = Phase::Releasing { lease, op };
                Signal::None
            }
            _ => Signal::Released,
        }
    }

    /// Next instant at which [`Membership::on_timeout`] has work.
    pub(crate) fn poll_timeout(&self, config: &Config) -> Option<Instant> {
        match &self.phase {
            Phase::Claiming {
                attempt: Attempt::RetryAt(t),
                ..
            } => Some(*t),
            Phase::Waiting { retry_at } => Some(*retry_at),
            Phase::Reclaiming { .. } => self.reclaim_deadline(),
            Phase::Held(lease) => {
                let reservation = lease.last_ok_start + config.id_reservation();
                Some(if lease.busy() {
                    reservation
                } else {
                    lease.next_renew.min(reservation)
                })
            }
            _ => None,
        }
    }
}

/// Whether `instance` is the current claim or an earlier claim of this process.
fn mine(current: InstanceId, past: &[InstanceId], instance: InstanceId) -> bool {
    instance == current || past.contains(&instance)
}

/// The earlier of two optional instants.
pub(crate) fn min_opt(a: Option<Instant>, b: Option<Instant>) -> Option<Instant> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, None) => a,
        (None, b) => b,
    }
}
