//! Renewing the member record of a held ID: a compare-and-set write against
//! the revision last written, due every `heartbeat_interval` or at once when
//! the record changed (unless the store asked to back off). A renewal that
//! conflicts or whose outcome is unknown is followed by a read-back: if our
//! own record is there, its revision is adopted (the lease is extended only by
//! the next confirmed renewal); otherwise the ID is lost. A read-back that
//! cannot reach the store is retried.

use super::{Membership, Phase, Signal};
use crate::command::Command;
use crate::config::Config;
use crate::event::Outcome;
use crate::outbox::Outbox;
use crate::records::MemberStatus;
use crate::time::Instant;
use std::time::Duration;

impl Membership {
    /// The result of a renewal.
    pub(super) fn renewed(
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
                lease.ok_since.get_or_insert(sent);
                lease.next_renew = sent + config.heartbeat_interval;
                Signal::Reachable
            }
            Outcome::Unavailable => {
                lease.ok_since = None;
                lease.dirty = true;
                let until = now + retry_delay(config);
                self.backoff_until = Some(until);
                lease.next_renew = until;
                Signal::Unreachable
            }
            _ => {
                // Conflict or unknown: read back to learn whether our write
                // landed or someone else wrote.
                lease.ok_since = None;
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
    pub(super) fn reconciled(
        &mut self,
        config: &Config,
        outcome: &Outcome,
        now: Instant,
    ) -> Signal {
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

    pub(super) fn maybe_renew(&mut self, out: &mut Outbox, now: Instant) {
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

    /// The connection is back: renew the held ID (or read it back, when
    /// reclaiming) now rather than after the backoff or at the next heartbeat.
    pub(crate) fn renew_at_once(&mut self, now: Instant) {
        self.backoff_until = None;
        if let Phase::Held(lease) = &mut self.phase {
            lease.next_renew = lease.next_renew.min(now);
        }
        self.reclaim_at_once(now);
    }

    /// Writes the record now if it changed (acknowledgements travel fast).
    pub(crate) fn flush(&mut self, out: &mut Outbox, now: Instant) {
        if matches!(&self.phase, Phase::Held(lease) if lease.dirty) {
            self.maybe_renew(out, now);
        }
    }
}

fn retry_delay(config: &Config) -> Duration {
    (config.heartbeat_interval / 4).max(Duration::from_millis(10))
}
