//! Claiming a stable ID. When the worker knows which ID it wants — the
//! preferred one (a StatefulSet ordinal), or, after a loss, the one it held
//! last — it claims it at once with a plain create, before any watch of the
//! members: a group whose workers each want their own ID starts without a
//! single watch of every member (N such watches would each deliver the N
//! claims: N² deliveries). If that claim is not won, or no ID is wanted,
//! the worker watches every member and, once the roster has caught up,
//! tries candidates one at a time (see [`super::candidates`]). A claim whose
//! outcome is unknown is reconciled by reading the key back; one that
//! cannot reach the store is sent again after a short delay. When every ID
//! of the range is taken, the worker waits for one to be freed (a member key
//! removed) or for a backoff (from `heartbeat_interval`, doubling up to a
//! quarter of the ID reservation); only a range that stayed full for
//! `startup_timeout` is exhausted.

use super::super::planted::PlantedBug;
use super::{Attempt, Lease, Membership, Phase, Round, Signal, mine};
use crate::command::{Command, FatalError};
use crate::config::Config;
use crate::event::{OpId, Outcome};
use crate::ids::{InstanceId, WorkerId};
use crate::outbox::Outbox;
use crate::records::{MemberRecord, Revision};
use crate::roster::Roster;
use crate::time::Instant;
use std::collections::BTreeSet;
use std::time::Duration;

impl Membership {
    /// Begins claiming (at start, or again after a loss). The ID wanted —
    /// the preferred one, else the one held last — is claimed at once
    /// (`Signal::None`); without one, the worker must watch every member and
    /// choose from the roster (`Signal::WatchMembers`).
    pub(crate) fn start_claiming(
        &mut self,
        config: &Config,
        out: &mut Outbox,
        now: Instant,
    ) -> Signal {
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
        self.draw.narrow();
        self.direct_failed = None;
        let prefix = &config.worker_id_prefix;
        let wanted = config
            .preferred_worker_id
            .or_else(|| self.previous.as_ref().and_then(|id| id.index(prefix)))
            .filter(|n| (config.worker_id_min..=config.worker_id_max).contains(n));
        match wanted {
            Some(current) => {
                self.phase = Phase::Claiming {
                    round: Round::Direct,
                    current,
                    attempt: Attempt::Due,
                };
                self.send_claim(config, &Roster::default(), out, now);
                Signal::None
            }
            None => {
                self.phase = Phase::WaitingRoster;
                Signal::WatchMembers
            }
        }
    }

    /// Starts a round of candidates once the roster has caught up.
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
        let mut tried = BTreeSet::new();
        // The ID a direct claim did not win is tried again only if the
        // roster shows it free now, or holding this process's own record.
        if let Some(n) = self.direct_failed.take()
            && self.held_by_another(roster, &WorkerId::new(&config.worker_id_prefix, n))
        {
            tried.insert(n);
        }
        self.claim_next(tried, config, roster, out, now)
    }

    /// Claims the next candidate of a roster round that tried `tried`, or
    /// reports the range full when none is left.
    fn claim_next(
        &mut self,
        mut tried: BTreeSet<u32>,
        config: &Config,
        roster: &Roster,
        out: &mut Outbox,
        now: Instant,
    ) -> Signal {
        match self.next_candidate(config, roster, &tried) {
            Some(current) => {
                tried.insert(current);
                self.phase = Phase::Claiming {
                    round: Round::Roster { tried },
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
            round,
            current,
            attempt,
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
        // A direct claim is a plain create; a roster round takes back this
        // process's own earlier record at the revision the roster shows.
        let takeover = match roster.get(&id) {
            _ if matches!(round, Round::Direct) => None,
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
        self.draw.narrow();
        self.phase = Phase::Held(Lease::claimed(id, revision, sent, config));
        Signal::Claimed
    }

    /// The claim of the current candidate was not won: after a direct
    /// claim, choose from the roster (the worker opens the watch of every
    /// member); in a roster round, adjust the draw's window and try the next
    /// one.
    fn claim_failed_try_next(
        &mut self,
        config: &Config,
        roster: &Roster,
        out: &mut Outbox,
        now: Instant,
    ) -> Signal {
        match std::mem::replace(&mut self.phase, Phase::Idle) {
            Phase::Claiming {
                round: Round::Direct,
                current,
                ..
            }
            | Phase::ReconcilingClaim {
                round: Round::Direct,
                current,
                ..
            } => {
                self.direct_failed = Some(current);
                self.phase = Phase::WaitingRoster;
                Signal::WatchMembers
            }
            Phase::Claiming {
                round: Round::Roster { tried },
                current,
                ..
            }
            | Phase::ReconcilingClaim {
                round: Round::Roster { tried },
                current,
                ..
            } => {
                let prefix = &config.worker_id_prefix;
                let taken = |n: u32| roster.get(&WorkerId::new(prefix, n)).is_some();
                self.draw.failed(current, taken, config.id_count());
                self.claim_next(tried, config, roster, out, now)
            }
            other => {
                self.phase = other;
                Signal::None
            }
        }
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
                    let Phase::Claiming { round, current, .. } =
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
                        round,
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
                    let Phase::ReconcilingClaim { round, current, .. } =
                        std::mem::replace(&mut self.phase, Phase::Idle)
                    else {
                        return Some(Signal::None);
                    };
                    self.phase = Phase::Claiming {
                        round,
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
