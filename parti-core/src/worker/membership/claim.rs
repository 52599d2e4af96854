//! Claiming a stable ID. Once the roster has caught up, candidates are tried
//! one at a time: the preferred ID, then IDs whose records are this process's
//! own earlier claims, then free IDs, then taken ones. A claim whose outcome
//! is unknown is reconciled by reading the key back. When every ID of the
//! range is taken, the worker waits for one to be freed (a member key
//! removed) or for a backoff (from `heartbeat_interval`, doubling up to a
//! quarter of the ID reservation); only a range that stayed full for
//! `startup_timeout` is exhausted.

use super::super::planted::PlantedBug;
use super::{Attempt, Lease, Membership, Phase, Signal, mine};
use crate::command::{Command, FatalError};
use crate::config::Config;
use crate::event::{OpId, Outcome};
use crate::ids::{InstanceId, WorkerId};
use crate::outbox::Outbox;
use crate::records::{MemberRecord, Revision};
use crate::roster::Roster;
use crate::time::Instant;
use std::time::Duration;

impl Membership {
    /// Begins claiming (at start, or again after a loss).
    pub(crate) fn start_claiming(&mut self, config: &Config, now: Instant) {
        self.claiming_since = now;
        self.full_range_delay = config.heartbeat_interval;
        self.claims += 1;
        if self.claims > 1 {
            self.past.push(self.instance);
        }
        self.instance = InstanceId(self.base.0 ^ self.claims.wrapping_mul(0x9E37_79B9_7F4A_7C15));
        let seen = self.record.seen;
        self.record = MemberRecord::fresh(self.instance, self.record.capacity);
        self.record.seen = seen;
        self.phase = Phase::WaitingRoster;
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
        let mut previous = None;
        for n in config.worker_id_min..=config.worker_id_max {
            let id = WorkerId::new(&config.worker_id_prefix, n);
            let was_mine = self.previous.as_ref() == Some(&id);
            match roster.get(&id) {
                _ if self.planted.has(PlantedBug::BlindClaim) => free.push(n),
                None if was_mine => previous = Some(n),
                None => free.push(n),
                Some(v) if self.is_mine(v.record.instance) => own_evicted.push(n),
                Some(_) => held.push(n),
            }
        }
        // The ID held last comes first when it is free again; then IDs whose
        // records are this process's own earlier claims.
        let mut order: Vec<u32> = previous.into_iter().chain(own_evicted).collect();
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

    pub(super) fn send_claim(
        &mut self,
        config: &Config,
        roster: &Roster,
        out: &mut Outbox,
        now: Instant,
    ) {
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
        let id = WorkerId::new(&config.worker_id_prefix, n);
        self.previous = Some(id.clone());
        self.phase = Phase::Held(Lease::claimed(id, revision, sent, config));
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

    /// Handles the result of a claim or of its read-back; `None` if `op` is
    /// not one of them.
    pub(super) fn claim_completed(
        &mut self,
        config: &Config,
        roster: &Roster,
        op: OpId,
        outcome: &Outcome,
        out: &mut Outbox,
        now: Instant,
    ) -> Option<Signal> {
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
        None
    }
}

/// Longest wait between two rounds of claims while the range is full: a
/// quarter of the ID reservation (a freed ID is normally noticed at once, by its
/// removal in the watch; this bounds the wait if that event is missed).
fn max_full_range_delay(config: &Config) -> Duration {
    (config.worker_id_ttl / 4).max(config.heartbeat_interval)
}
