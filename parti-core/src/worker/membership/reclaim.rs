//! Taking the same ID back after its reservation lapsed while the worker was
//! cut off from the store: the worker carries on as the same claim, so that
//! the leader sees the same worker come back and nothing moves (under
//! `KeepProcessing` it kept its frozen partitions meanwhile; under
//! `StopWhenLeaseExpires` it gets the same ones back, with their epochs).
//!
//! The rule: read the member key first, then
//! - absent (it expired while the store was unreachable for everybody):
//!   create it, with the same instance id;
//! - our own record, still `Active` (the reservation lapsed on our clock
//!   only): overwrite it at the revision read;
//! - anything else (another process claimed the ID, or the leader evicted
//!   us because it could still reach the store): the claim is lost, and the
//!   worker claims anew with a fresh instance id, as after any loss.
//!
//! Reads and writes that cannot reach the store are retried after a short
//! delay (and at once when the connection comes back).

use super::{Lease, Membership, Phase, Signal};
use crate::command::Command;
use crate::config::Config;
use crate::event::{OpId, Outcome};
use crate::ids::WorkerId;
use crate::outbox::Outbox;
use crate::records::MemberStatus;
use crate::time::Instant;

/// Where the reclaim stands.
#[derive(Debug)]
pub(super) enum Reclaim {
    /// Read the member key at the next step (or at this instant).
    ReadAt(Instant),
    /// The read is in flight.
    Reading(OpId),
    /// The claim write is in flight; sent at `sent`.
    Writing { op: OpId, sent: Instant },
}

impl Membership {
    /// The reservation of the held ID lapsed while cut off: keep the claim's
    /// identity and take the same ID back as soon as the store answers.
    pub(super) fn begin_reclaim(&mut self, now: Instant) -> Signal {
        match std::mem::replace(&mut self.phase, Phase::Idle) {
            Phase::Held(lease) => {
                self.phase = Phase::Reclaiming {
                    id: lease.id,
                    step: Reclaim::ReadAt(now),
                };
                Signal::None
            }
            other => {
                self.phase = other;
                Signal::None
            }
        }
    }

    /// The ID being taken back, if a reclaim is under way.
    pub(crate) fn reclaiming(&self) -> Option<&WorkerId> {
        match &self.phase {
            Phase::Reclaiming { id, .. } => Some(id),
            _ => None,
        }
    }

    /// Sends the read when it is due.
    pub(super) fn reclaim_step(&mut self, out: &mut Outbox, now: Instant) {
        let Phase::Reclaiming { id, step } = &mut self.phase else {
            return;
        };
        if let Reclaim::ReadAt(at) = step
            && now >= *at
        {
            let op = out.op();
            out.push(Command::ReadMember { op, id: id.clone() });
            *step = Reclaim::Reading(op);
        }
    }

    /// When the next read is due.
    pub(super) fn reclaim_deadline(&self) -> Option<Instant> {
        match &self.phase {
            Phase::Reclaiming {
                step: Reclaim::ReadAt(at),
                ..
            } => Some(*at),
            _ => None,
        }
    }

    /// Makes the next read due now (the connection came back).
    pub(super) fn reclaim_at_once(&mut self, now: Instant) {
        if let Phase::Reclaiming {
            step: Reclaim::ReadAt(at),
            ..
        } = &mut self.phase
        {
            *at = (*at).min(now);
        }
    }

    /// Handles the result of a reclaim read or write; `None` if `op` is not
    /// one of them.
    pub(super) fn reclaim_completed(
        &mut self,
        config: &Config,
        op: OpId,
        outcome: &Outcome,
        out: &mut Outbox,
        now: Instant,
    ) -> Option<Signal> {
        let Phase::Reclaiming { id, step } = &mut self.phase else {
            return None;
        };
        let retry = now + config.heartbeat_interval.min(config.ownership_lease() / 2);
        match step {
            Reclaim::Reading(read) if *read == op => match outcome {
                Outcome::Member(found) => {
                    let takeover = match found {
                        None => None,
                        Some((record, revision))
                            if record.instance == self.instance
                                && record.status == MemberStatus::Active =>
                        {
                            Some(*revision)
                        }
                        Some(_) => return Some(self.lose()),
                    };
                    let write = out.op();
                    out.push(Command::ClaimId {
                        op: write,
                        id: id.clone(),
                        record: self.record.clone(),
                        takeover,
                    });
                    *step = Reclaim::Writing {
                        op: write,
                        sent: now,
                    };
                    Some(Signal::None)
                }
                _ => {
                    *step = Reclaim::ReadAt(retry);
                    Some(Signal::Unreachable)
                }
            },
            Reclaim::Writing { op: write, sent } if *write == op => match outcome {
                Outcome::Written(revision) => {
                    let lease = Lease::claimed(id.clone(), *revision, *sent, config);
                    self.previous = Some(id.clone());
                    self.phase = Phase::Held(lease);
                    Some(Signal::Reclaimed)
                }
                // Someone wrote in between, or the outcome is unknown: read
                // again (the read tells whether the write happened).
                Outcome::AlreadyExists | Outcome::Conflict | Outcome::Unknown => {
                    *step = Reclaim::ReadAt(now);
                    Some(Signal::None)
                }
                _ => {
                    *step = Reclaim::ReadAt(retry);
                    Some(Signal::Unreachable)
                }
            },
            _ => None,
        }
    }
}
