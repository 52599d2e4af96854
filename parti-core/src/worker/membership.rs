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
        op: Option<(OpId, Instant)>,
        retry_at: Option<Instant>,
    },
    /// Reconciling a claim whose outcome was unknown.
    ReconcilingClaim {
        queue: Vec<u32>,
        current: u32,
        op: OpId,
        sent: Instant,
    },
    /// ID held.
    Held,
    /// Releasing the ID (stop).
    Releasing,
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
    id: Option<WorkerId>,
    revision: Option<Revision>,
    record: MemberRecord,
    renew: Option<(OpId, Instant)>,
    reconcile: Option<OpId>,
    last_ok_start: Option<Instant>,
    next_renew: Option<Instant>,
    /// The record changed and must be written as soon as possible.
    dirty: bool,
    release_op: Option<OpId>,
    backoff_until: Option<Instant>,
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
            id: None,
            revision: None,
            record: MemberRecord::fresh(instance, capacity),
            renew: None,
            reconcile: None,
            last_ok_start: None,
            next_renew: None,
            dirty: false,
            release_op: None,
            backoff_until: None,
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

    /// The held ID.
    pub(crate) fn id(&self) -> Option<&WorkerId> {
        self.id.as_ref()
    }

    /// Start of the last successful renewal (or claim), on this worker's clock.
    pub(crate) fn last_ok_start(&self) -> Option<Instant> {
        self.last_ok_start
    }

    /// Whether the ownership lease is valid at `now`.
    pub(crate) fn ownership_valid(&self, config: &Config, now: Instant) -> bool {
        self.id.is_some()
            && self
                .last_ok_start
                .is_some_and(|t| now < t + config.ownership_lease())
    }

    /// When the ownership lease ends, if an ID is held.
    pub(crate) fn ownership_deadline(&self, config: &Config) -> Option<Instant> {
        self.id.as_ref()?;
        self.last_ok_start.map(|t| t + config.ownership_lease())
    }

    /// Whether the ID reservation is still certainly ours at `now`.
    fn reservation_valid(&self, config: &Config, now: Instant) -> bool {
        self.last_ok_start
            .is_some_and(|t| now < t + config.id_reservation())
    }

    /// Begins claiming (at start, or again after a loss).
    pub(crate) fn start_claiming(&mut self) {
        self.id = None;
        self.revision = None;
        self.renew = None;
        self.reconcile = None;
        self.last_ok_start = None;
        self.next_renew = None;
        self.dirty = false;
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
            self.dirty = true;
        }
    }

    /// Marks the worker as going away; the next write says so.
    pub(crate) fn set_status(&mut self, status: MemberStatus) {
        if self.record.status != status {
            self.record.status = status;
            self.record.applied = None;
            self.record.held = 0;
            self.dirty = true;
        }
    }

    /// Whether the last written record is what the record says now.
    pub(crate) fn is_flushed(&self) -> bool {
        !self.dirty && self.renew.is_none() && self.reconcile.is_none()
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
                    op: None,
                    retry_at: None,
                };
                self.send_claim(config, roster, out, now);
                Signal::None
            }
            None => self.exhausted(config),
        }
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
            current,
            op,
            retry_at,
            ..
        } = &mut self.phase
        else {
            return;
        };
        if op.is_some() || retry_at.is_some_and(|t| now < t) {
            return;
        }
        *retry_at = None;
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
        *op = Some((new_op, now));
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
        self.id = Some(WorkerId::new(&config.worker_id_prefix, n));
        self.revision = Some(revision);
        self.last_ok_start = Some(sent);
        self.next_renew = Some(sent + config.heartbeat_interval);
        self.phase = Phase::Held;
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
            op: Some((claim_op, sent)),
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
                    if let Phase::Claiming { op, retry_at, .. } = &mut self.phase {
                        *op = None;
                        *retry_at = Some(now + config.heartbeat_interval / 2);
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
                        op: None,
                        retry_at: Some(now + config.heartbeat_interval / 2),
                    };
                    Signal::Unreachable
                }
            });
        }
        // Renewal results.
        if let Some((renew_op, sent)) = self.renew
            && renew_op == op
        {
            self.renew = None;
            return Some(match outcome {
                Outcome::Written(rev) => {
                    self.revision = Some(*rev);
                    self.last_ok_start = Some(sent);
                    self.next_renew = Some(sent + config.heartbeat_interval);
                    Signal::Reachable
                }
                Outcome::Unavailable => {
                    self.dirty = true;
                    self.backoff_until = Some(now + retry_delay(config));
                    self.next_renew = self.backoff_until;
                    Signal::Unreachable
                }
                _ => {
                    // Conflict or unknown: read back to learn whether our write
                    // landed or someone else wrote.
                    self.dirty = true;
                    let read = out.op();
                    if let Some(id) = self.id.clone() {
                        out.push(Command::ReadMember { op: read, id });
                        self.reconcile = Some(read);
                    }
                    if matches!(outcome, Outcome::Unknown) {
                        Signal::Unreachable
                    } else {
                        Signal::None
                    }
                }
            });
        }
        if self.release_op == Some(op) {
            self.release_op = None;
            self.phase = Phase::Idle;
            self.id = None;
            self.revision = None;
            return Some(Signal::Released);
        }
        if self.reconcile == Some(op) {
            self.reconcile = None;
            return Some(match outcome {
                Outcome::Member(Some((rec, rev)))
                    if rec.instance == self.instance && rec.status != MemberStatus::Evicted =>
                {
                    // Our own write landed (or nothing changed): adopt the revision;
                    // the lease is extended only by the next confirmed renewal.
                    self.revision = Some(*rev);
                    self.next_renew = Some(now);
                    Signal::Reachable
                }
                Outcome::Member(_) => self.lose(),
                _ => {
                    self.next_renew = Some(now + retry_delay(config));
                    Signal::Unreachable
                }
            });
        }
        None
    }

    fn lose(&mut self) -> Signal {
        self.id = None;
        self.revision = None;
        self.last_ok_start = None;
        self.renew = None;
        self.reconcile = None;
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
        match self.phase {
            Phase::Claiming { .. } => {
                self.send_claim(config, roster, out, now);
                return Signal::None;
            }
            Phase::Held => {}
            _ => return Signal::None,
        }
        if !self.reservation_valid(config, now) && !self.planted.has(PlantedBug::BlindClaim) {
            return self.lose();
        }
        self.maybe_renew(out, now);
        Signal::None
    }

    fn maybe_renew(&mut self, out: &mut Outbox, now: Instant) {
        if self.renew.is_some() || self.reconcile.is_some() {
            return;
        }
        let backing_off = self.backoff_until.is_some_and(|t| now < t);
        let due = (self.dirty && !backing_off) || self.next_renew.is_some_and(|t| now >= t);
        let (Some(id), Some(expected)) = (self.id.clone(), self.revision) else {
            return;
        };
        if due {
            let op = out.op();
            self.renew = Some((op, now));
            self.dirty = false;
            out.push(Command::RenewLease {
                op,
                id,
                record: self.record.clone(),
                expected,
            });
        }
    }

    /// Writes the record now if it changed (acknowledgements travel fast).
    pub(crate) fn flush(&mut self, out: &mut Outbox, now: Instant) {
        if matches!(self.phase, Phase::Held) && self.dirty {
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
        if self.id.as_ref() != Some(id) || !matches!(self.phase, Phase::Held) {
            return Signal::None;
        }
        match record {
            Some(r) if r.instance == self.instance && r.status != MemberStatus::Evicted => {
                Signal::None
            }
            // Our key was evicted, taken, or deleted under us.
            _ if self.renew.is_some() => Signal::None, // let the renewal's result decide
            _ => self.lose(),
        }
    }

    /// Deletes the member key (end of a stop). Returns `Released` at once if no
    /// ID is held.
    pub(crate) fn release(&mut self, out: &mut Outbox) -> Signal {
        match (&self.id, self.revision, &self.phase) {
            (Some(id), Some(expected), Phase::Held) => {
                let op = out.op();
                out.push(Command::ReleaseId {
                    op,
                    id: id.clone(),
                    expected,
                });
                self.phase = Phase::Releasing;
                self.release_op = Some(op);
                Signal::None
            }
            _ => {
                self.phase = Phase::Idle;
                Signal::Released
            }
        }
    }

    /// Next instant at which [`Membership::on_timeout`] has work.
    pub(crate) fn poll_timeout(&self, config: &Config) -> Option<Instant> {
        match &self.phase {
            Phase::Claiming {
                retry_at, op: None, ..
            } => *retry_at,
            Phase::Held => {
                let renew = if self.renew.is_some() || self.reconcile.is_some() {
                    None
                } else {
                    self.next_renew
                };
                let reservation = self.last_ok_start.map(|t| t + config.id_reservation());
                min_opt(renew, reservation)
            }
            _ => None,
        }
    }
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
