//! Held renewals. While the assignment lane is busy, a renewal that would
//! change the member record (the acknowledgement that confirms a release the
//! application may not have finished) is *held*: the store gets
//! heartbeat-only writes of the last record sent instead, every
//! `heartbeat_interval`, and the held renewal is written (and its result
//! reported to the core worker) only once the lane is idle. A failed
//! heartbeat is reported to the core worker as the held renewal's result.

use super::{Internal, Running, command_kind};
use crate::metrics as m;
use crate::ops;
use parti_core::exec::Plan;
use parti_core::records::{MemberRecord, Revision};
use parti_core::{Command, Event, OpId, Outcome, WorkerId};
use tokio::time::Instant;

/// A renewal held back while the assignment lane is busy.
pub(super) struct Held {
    op: OpId,
    id: WorkerId,
    record: MemberRecord,
    expected: Revision,
}

impl Running {
    /// Before a command runs: holds a renewal that would change the member
    /// record while the lane is busy (`true`: it must not run now), and
    /// remembers any other member-record write as the last record sent.
    pub(super) fn hold_renewal(&mut self, command: &Command) -> bool {
        if let Command::RenewLease {
            op,
            id,
            record,
            expected,
        } = command
        {
            if self.lane_busy() && self.last_sent.as_ref() != Some(record) {
                // It may confirm a release the application has not finished:
                // hold it until the lane is idle (heartbeats go on meanwhile).
                self.held = Some(Held {
                    op: *op,
                    id: id.clone(),
                    record: record.clone(),
                    expected: *expected,
                });
                return true;
            }
            self.last_sent = Some(record.clone());
            self.last_write = Instant::now();
        }
        if let Command::ClaimId { record, .. } = command {
            self.last_sent = Some(record.clone());
            self.last_write = Instant::now();
        }
        false
    }

    /// Writes the held renewal once the lane is idle.
    pub(super) fn release_held(&mut self) {
        if self.lane_busy() || self.heartbeat_in_flight || self.abandoned {
            return;
        }
        let Some(held) = self.held.take() else {
            return;
        };
        self.last_sent = Some(held.record.clone());
        self.last_write = Instant::now();
        let command = Command::RenewLease {
            op: held.op,
            id: held.id,
            record: held.record,
            expected: held.expected,
        };
        let kind = command_kind(&command);
        let timeout = self.timeout_of(&command);
        if let Plan::Store(execution) = Plan::of(command) {
            self.spawn_store(kind, execution, timeout);
        }
    }

    /// When the next heartbeat-only write is due (a renewal is held).
    pub(super) fn heartbeat_due(&self) -> Option<Instant> {
        if self.held.is_none() || self.heartbeat_in_flight || self.abandoned {
            return None;
        }
        Some(self.last_write + self.heartbeat_interval)
    }

    /// Renews the lease with the last record sent while a renewal is held.
    pub(super) fn heartbeat(&mut self) {
        let (Some(held), Some(record)) = (&self.held, &self.last_sent) else {
            return;
        };
        let command = Command::RenewLease {
            op: held.op,
            id: held.id.clone(),
            record: record.clone(),
            expected: held.expected,
        };
        self.heartbeat_in_flight = true;
        self.last_write = Instant::now();
        let Plan::Store(execution) = Plan::of(command) else {
            return;
        };
        let backend = self.backend.clone();
        let internal = self.internal.clone();
        let timeout = self.renewal_timeout;
        tokio::spawn(async move {
            let outcome = ops::run(backend, execution, timeout)
                .await
                .map_or(Outcome::Unknown, |(_, outcome)| outcome);
            let _ = internal.send(Internal::Heartbeat(outcome));
        });
    }

    pub(super) fn heartbeat_done(&mut self, outcome: Outcome) {
        self.heartbeat_in_flight = false;
        if outcome.is_unreachable() {
            m::backend_error("renew_lease");
        }
        match outcome {
            Outcome::Written(revision) => {
                if let Some(held) = &mut self.held {
                    held.expected = revision;
                }
                self.release_held();
            }
            other => {
                // The core worker learns of the failure as the held renewal's
                // result, and recovers as from any failed renewal (it re-reads
                // the record or retries; the retry is held again if needed).
                if let Some(held) = self.held.take() {
                    let now = self.now();
                    self.worker.handle(
                        Event::Completed {
                            op: held.op,
                            outcome: other,
                        },
                        now,
                    );
                }
            }
        }
    }
}
