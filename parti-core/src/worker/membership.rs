//! Membership: claiming a stable ID, renewing the member record (the heartbeat,
//! the ownership lease and the ID reservation in one compare-and-set write), and
//! noticing when the ID is lost.

use super::planted::{PlantedBug, PlantedBugs};
use crate::command::{Command, FatalError};
use crate::config::Config;
use crate::event::{OpId, Outcome};
use crate::ids::{InstanceId, WorkerId};
use crate::outbox::Outbox;
use crate::records::{MemberRecord, MemberStatus, Revision};
use crate::roster::Roster;
use crate::time::Instant;
use std::time::Duration;

/// What a membership step wants the worker to know.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Signal {
    /// Nothing new.
    None,
    /// The ID was claimed.
    Claimed,
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
}

#[derive(Debug)]
enum Phase {
    /// Not claiming, no ID.
    Idle,
    /// Waiting for the roster before choosing candidates.
    WaitingRoster,
    /// Claiming `current`, then the rest of `queue` (popped from the back).
    Claiming {
        queue: Vec<u32>,
        current: u32,
        attempt: Attempt,
    },
    /// Reconciling a claim whose outcome was unknown.
    ReconcilingClaim {
        queue: Vec<u32>,
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
    /// The record changed and must be written as soon as possible.
    dirty: bool,
}

impl Lease {
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
    /// [`max_full_range_delay`]).
    full_range_delay: Duration,
    /// Planted bugs (simulator self-tests; always empty in production).
    pub(crate) planted: PlantedBugs,
}

impl Membership {
    pub(crate) fn new(instance: InstanceId, capacity: u32) -> Self {
        Membership {
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

    /// Begins claiming (at start, or again after a loss).
    pub(crate) fn start_claiming(&mut self, config: &Config, now: Instant) {
        self.claiming_since = now;
        self.full_range_delay = config.heartbeat_interval;
        self.claims += 1;
        if self.claims > 1 {
            self.past.push(self.instance);
        }
        self.instance = InstanceId(self.base.0 ^ self.claims.wrapping_mul(0x9E37_79B9_7F4A_7C15));
        self.record = MemberRecord::fresh(self.instance, self.record.capacity);
        self.phase = Phase::WaitingRoster;
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

    /// Chooses candidates once the roster has caught up.
    pub(crate) fn on_roster(
        &mut self,
        config: &Config,
        roster: &Roster,
        out: &mut Outbox,
        now: Instant,
    ) -> Signal {
        if !matches!(self.phase, Phase::WaitingRoster) || !roster.caught_up() {
            return Signal::None;
        }
        let mut own_evicted = Vec::new();
        let mut free = Vec::new();
        let mut held = Vec::new();
        for n in config.worker_id_min..=config.worker_id_max {
            let id = WorkerId::new(&config.worker_id_prefix, n);
            match roster.get(&id) {
                _ if self.planted.has(PlantedBug::BlindClaim) => free.push(n),
                None => free.push(n),
                Some(v) if self.is_mine(v.record.instance) => own_evicted.push(n),
                Some(_) => held.push(n),
            }
        }
        let mut order = own_evicted;
        if let Some(p) = config.preferred_worker_id {
            order.retain(|&n| n != p);
            order.insert(0, p);
        }
        order.extend(
            free.into_iter()
                .filter(|n| Some(*n) != config.preferred_worker_id),
        );
        order.extend(
            held.into_iter()
                .filter(|n| Some(*n) != config.preferred_worker_id),
        );
        order.dedup();
        order.reverse();
        self.claim_from(order, config, roster, out, now)
    }

    /// Claims the last ID of `queue` (the others are tried after it), or
    /// reports the range exhausted when none is left.
    fn claim_from(
        &mut self,
        mut queue: Vec<u32>,
        config: &Config,
        roster: &Roster,
        out: &mut Outbox,
        now: Instant,
    ) -> Signal {
        match queue.pop() {
            Some(current) => {
                self.phase = Phase::Claiming {
                    queue,
                    current,
                    attempt: Attempt::Due,
                };
                self.send_claim(config, roster, out, now);
                Signal::None
            }
            None => self.range_full(config, now),
        }
    }

    /// Every candidate failed. Within `startup_timeout` of the start of
    /// claiming, wait (a removed member key or the backoff brings the next
    /// round); after it, the range is exhausted.
    fn range_full(&mut self, config: &Config, now: Instant) -> Signal {
        let give_up = self.claiming_since + config.startup_timeout;
        if now >= give_up {
            return self.exhausted(config);
        }
        let delay = self.full_range_delay;
        self.full_range_delay = delay.saturating_mul(2).min(max_full_range_delay(config));
        self.phase = Phase::Waiting {
            retry_at: (now + delay).min(give_up),
        };
        Signal::None
    }

    /// A member key was removed (deleted, or its reservation expired): if the
    /// range was full, try again now.
    pub(crate) fn on_member_removed(
        &mut self,
        config: &Config,
        roster: &Roster,
        out: &mut Outbox,
        now: Instant,
    ) -> Signal {
        if !matches!(self.phase, Phase::Waiting { .. }) {
            return Signal::None;
        }
        self.phase = Phase::WaitingRoster;
        self.on_roster(config, roster, out, now)
    }

    fn exhausted(&mut self, config: &Config) -> Signal {
        self.phase = Phase::Idle;
        Signal::Exhausted(FatalError::IdRangeExhausted {
            min: config.worker_id_min,
            max: config.worker_id_max,
        })
    }

    fn send_claim(&mut self, config: &Config, roster: &Roster, out: &mut Outbox, now: Instant) {
        let Phase::Claiming {
            current, attempt, ..
        } = &mut self.phase
        else {
            return;
        };
        match attempt {
            Attempt::Sent { .. } => return,
            Attempt::RetryAt(t) if now < *t => return,
            Attempt::Due | Attempt::RetryAt(_) => {}
        }
        let id = WorkerId::new(&config.worker_id_prefix, *current);
        let takeover = match roster.get(&id) {
            Some(v)
                if mine(self.instance, &self.past, v.record.instance)
                    || self.planted.has(PlantedBug::BlindClaim) =>
            {
                Some(v.revision)
            }
            _ => None,
        };
        let new_op = out.op();
        *attempt = Attempt::Sent {
            op: new_op,
            sent: now,
        };
        out.push(Command::ClaimId {
            op: new_op,
            id,
            record: self.record.clone(),
            takeover,
        });
    }

    fn claim_succeeded(
        &mut self,
        config: &Config,
        n: u32,
        revision: Revision,
        sent: Instant,
    ) -> Signal {
        self.phase = Phase::Held(Lease {
            id: WorkerId::new(&config.worker_id_prefix, n),
            revision,
            last_ok_start: sent,
            next_renew: sent + config.heartbeat_interval,
            renew: None,
            reconcile: None,
            dirty: false,
        });
        Signal::Claimed
    }

    fn claim_failed_try_next(
        &mut self,
        config: &Config,
        roster: &Roster,
        out: &mut Outbox,
        now: Instant,
    ) -> Signal {
        let queue = match std::mem::replace(&mut self.phase, Phase::Idle) {
            Phase::Claiming { queue, .. } | Phase::ReconcilingClaim { queue, .. } => queue,
            other => {
                self.phase = other;
                return Signal::None;
            }
        };
        self.claim_from(queue, config, roster, out, now)
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
        // Claim results.
        if let Phase::Claiming {
            current,
            attempt: Attempt::Sent { op: claim_op, sent },
            ..
        } = &self.phase
            && *claim_op == op
        {
            let (n, sent) = (*current, *sent);
            return Some(match outcome {
                Outcome::Written(rev) => self.claim_succeeded(config, n, *rev, sent),
                Outcome::AlreadyExists | Outcome::Conflict | Outcome::Failed(_) => {
                    self.claim_failed_try_next(config, roster, out, now)
                }
                Outcome::Unknown => {
                    let Phase::Claiming { queue, current, .. } =
                        std::mem::replace(&mut self.phase, Phase::Idle)
                    else {
                        return Some(Signal::None);
                    };
                    let read = out.op();
                    out.push(Command::ReadMember {
                        op: read,
                        id: WorkerId::new(&config.worker_id_prefix, current),
                    });
                    self.phase = Phase::ReconcilingClaim {
                        queue,
                        current,
                        op: read,
                        sent,
                    };
                    Signal::Unreachable
                }
                _ => {
                    if let Phase::Claiming { attempt, .. } = &mut self.phase {
                        *attempt = Attempt::RetryAt(now + config.heartbeat_interval / 2);
                    }
                    Signal::Unreachable
                }
            });
        }
        if let Phase::ReconcilingClaim {
            current,
            op: read_op,
            sent,
            ..
        } = &self.phase
            && *read_op == op
        {
            let (n, sent) = (*current, *sent);
            return Some(match outcome {
                Outcome::Member(Some((rec, rev))) if rec.instance == self.instance => {
                    self.claim_succeeded(config, n, *rev, sent)
                }
                Outcome::Member(_) => self.claim_failed_try_next(config, roster, out, now),
                _ => {
                    // Could not read: ask again later.
                    let Phase::ReconcilingClaim { queue, current, .. } =
                        std::mem::replace(&mut self.phase, Phase::Idle)
                    else {
                        return Some(Signal::None);
                    };
                    self.phase = Phase::Claiming {
                        queue,
                        current,
                        attempt: Attempt::RetryAt(now + config.heartbeat_interval / 2),
                    };
                    Signal::Unreachable
                }
            });
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

    /// The result of a renewal.
    fn renewed(
        &mut self,
        config: &Config,
        outcome: &Outcome,
        out: &mut Outbox,
        now: Instant,
    ) -> Signal {
        let Phase::Held(lease) = &mut self.phase else {
            return Signal::None;
        };
        let Some((_, sent)) = lease.renew.take() else {
            return Signal::None;
        };
        match outcome {
            Outcome::Written(rev) => {
                lease.revision = *rev;
                lease.last_ok_start = sent;
                lease.next_renew = sent + config.heartbeat_interval;
                Signal::Reachable
            }
            Outcome::Unavailable => {
                lease.dirty = true;
                let until = now + retry_delay(config);
                self.backoff_until = Some(until);
                lease.next_renew = until;
                Signal::Unreachable
            }
            _ => {
                // Conflict or unknown: read back to learn whether our write
                // landed or someone else wrote.
                lease.dirty = true;
                let read = out.op();
                out.push(Command::ReadMember {
                    op: read,
                    id: lease.id.clone(),
                });
                lease.reconcile = Some(read);
                if matches!(outcome, Outcome::Unknown) {
                    Signal::Unreachable
                } else {
                    Signal::None
                }
            }
        }
    }

    /// The read-back after a renewal whose outcome was unknown or a conflict.
    fn reconciled(&mut self, config: &Config, outcome: &Outcome, now: Instant) -> Signal {
        let instance = self.instance;
        let Phase::Held(lease) = &mut self.phase else {
            return Signal::None;
        };
        lease.reconcile = None;
        match outcome {
            Outcome::Member(Some((rec, rev)))
                if rec.instance == instance && rec.status != MemberStatus::Evicted =>
            {
                // Our own write landed (or nothing changed): adopt the revision;
                // the lease is extended only by the next confirmed renewal.
                lease.revision = *rev;
                lease.next_renew = now;
                Signal::Reachable
            }
            Outcome::Member(_) => self.lose(),
            _ => {
                lease.next_renew = now + retry_delay(config);
                Signal::Unreachable
            }
        }
    }

    fn lose(&mut self) -> Signal {
        self.phase = Phase::Idle;
        Signal::Lost
    }

    /// Periodic work: renewals, reservation expiry, claim retries.
    pub(crate) fn on_timeout(
        &mut self,
        config: &Config,
        roster: &Roster,
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
            Phase::Held(lease) => lease,
            _ => return Signal::None,
        };
        if !lease.reserved_at(config, now) && !self.planted.has(PlantedBug::BlindClaim) {
            return self.lose();
        }
        self.maybe_renew(out, now);
        Signal::None
    }

    fn maybe_renew(&mut self, out: &mut Outbox, now: Instant) {
        let backing_off = self.backoff_until.is_some_and(|t| now < t);
        let Phase::Held(lease) = &mut self.phase else {
            return;
        };
        if lease.busy() {
            return;
        }
        let due = (lease.dirty && !backing_off) || now >= lease.next_renew;
        if due {
            let op = out.op();
            lease.renew = Some((op, now));
            lease.dirty = false;
            out.push(Command::RenewLease {
                op,
                id: lease.id.clone(),
                record: self.record.clone(),
                expected: lease.revision,
            });
        }
    }

    /// Writes the record now if it changed (acknowledgements travel fast).
    pub(crate) fn flush(&mut self, out: &mut Outbox, now: Instant) {
        if matches!(&self.phase, Phase::Held(lease) if lease.dirty) {
            self.maybe_renew(out, now);
        }
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

/// Longest wait between two rounds of claims while the range is full: a
/// quarter of the ID reservation (a freed ID is normally noticed at once, by its
/// removal in the watch; this bounds the wait if that event is missed).
fn max_full_range_delay(config: &Config) -> Duration {
    (config.worker_id_ttl / 4).max(config.heartbeat_interval)
}

fn retry_delay(config: &Config) -> Duration {
    (config.heartbeat_interval / 4).max(Duration::from_millis(10))
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
