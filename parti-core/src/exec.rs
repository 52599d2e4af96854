//! How a storage [`Command`] becomes primitive store operations, and how
//! their results become the [`Outcome`] the worker is told.
//!
//! This is the one translation every executor uses: the async driver of the
//! `parti` crate (over any [`Backend`](crate::backend::Backend)), the
//! in-memory backend and the simulator of `parti-testkit`. An executor only
//! performs the [`StoreOp`]s it is handed, one after the other, and feeds each
//! result back; the rules live here:
//!
//! - a claim is a create, or (taking back an evicted record of this very
//!   process) a compare-and-set update; a renewal and an eviction are
//!   compare-and-set updates of the member key;
//! - a publication stages every record first and commits `meta` only if all
//!   were staged. A staging failure is reported as
//!   [`Outcome::Unavailable`] even when the backend timed out: nothing was
//!   committed, so the outcome is never unknown;
//! - a timeout (or an unclassified error) of a write is [`Outcome::Unknown`]:
//!   the worker reconciles by reading back;
//! - housekeeping ([`Command::CleanupAssignments`]) has no outcome.
//!
//! ```
//! use parti_core::backend::StoreReply;
//! use parti_core::exec::Plan;
//! use parti_core::{Command, OpId, Outcome};
//!
//! let command = Command::Resign { op: OpId(3), expected: 17 };
//! let Plan::Store(mut execution) = Plan::of(command) else { unreachable!() };
//! while let Some(_op) = execution.next_op() {
//!     // perform `_op` on the store; here the delete succeeded
//!     execution.complete(Ok(StoreReply::Done));
//! }
//! assert_eq!(execution.finish(), Some((OpId(3), Outcome::Written(0))));
//! ```

use crate::backend::{BackendError, MemberScope, StoreOp, StoreReply};
use crate::command::{Command, Notification};
use crate::event::{OpId, Outcome};
use crate::ids::WorkerId;

/// What an executor does with a command.
#[derive(Debug)]
pub enum Plan {
    /// Run these store operations.
    Store(Box<Execution>),
    /// Restart the group watch (see [`Command::Watch`]).
    Watch {
        /// The worker whose records to include.
        worker: Option<WorkerId>,
        /// Which member keys to include.
        members: MemberScope,
    },
    /// Ask the partition source; report its answer with [`listed`].
    ListPartitions {
        /// Correlation.
        op: OpId,
    },
    /// Tell the user.
    Notify(Notification),
}

impl Plan {
    /// How `command` is carried out.
    pub fn of(command: Command) -> Plan {
        let (op, step) = match command {
            Command::Watch { worker, members } => return Plan::Watch { worker, members },
            Command::ListPartitions { op } => return Plan::ListPartitions { op },
            Command::Notify(n) => return Plan::Notify(n),
            Command::ClaimId {
                op,
                id,
                record,
                takeover: None,
            } => (Some(op), StoreOp::CreateMember { id, record }),
            Command::ClaimId {
                op,
                id,
                record,
                takeover: Some(expected),
            }
            | Command::RenewLease {
                op,
                id,
                record,
                expected,
            }
            | Command::Evict {
                op,
                id,
                record,
                expected,
            } => (
                Some(op),
                StoreOp::UpdateMember {
                    id,
                    record,
                    expected,
                },
            ),
            Command::ReadMember { op, id } => (Some(op), StoreOp::GetMember { id }),
            Command::ReleaseId { op, id, expected } => {
                (Some(op), StoreOp::DeleteMember { id, expected })
            }
            Command::Campaign { op, record } => (Some(op), StoreOp::CreateLeader { record }),
            Command::RenewLeadership {
                op,
                record,
                expected,
            } => (Some(op), StoreOp::UpdateLeader { record, expected }),
            Command::Resign { op, expected } => (Some(op), StoreOp::DeleteLeader { expected }),
            Command::LoadAssignments { op } => (Some(op), StoreOp::LoadAssignments),
            Command::Publish {
                op,
                records,
                meta,
                expected,
            } => {
                let commit = StoreOp::CommitMeta { meta, expected };
                if records.is_empty() {
                    (Some(op), commit)
                } else {
                    return Plan::Store(Box::new(Execution {
                        op: Some(op),
                        pending: Some(StoreOp::Stage { records }),
                        then_commit: Some(commit),
                        outcome: None,
                    }));
                }
            }
            Command::CleanupAssignments { keep_term } => {
                (None, StoreOp::RemoveStaleAssignments { keep_term })
            }
        };
        Plan::Store(Box::new(Execution {
            op,
            pending: Some(step),
            then_commit: None,
            outcome: None,
        }))
    }
}

/// The outcome of [`Command::ListPartitions`] for the source's answer.
pub fn listed<E: std::fmt::Display>(answer: Result<Vec<crate::Partition>, E>) -> Outcome {
    match answer {
        Ok(list) => Outcome::Partitions(list),
        Err(e) => Outcome::Failed(e.to_string()),
    }
}

/// The store operations of one command, in order, and the outcome they lead
/// to. Drive it with [`next_op`](Self::next_op) and
/// [`complete`](Self::complete) until `next_op` returns `None`, then take
/// [`finish`](Self::finish).
#[derive(Debug)]
pub struct Execution {
    op: Option<OpId>,
    pending: Option<StoreOp>,
    /// The commit of a publication, run once its staging succeeded.
    then_commit: Option<StoreOp>,
    outcome: Option<Outcome>,
}

impl Execution {
    /// The next operation to perform, if any. Call
    /// [`complete`](Self::complete) with its result before asking again.
    pub fn next_op(&mut self) -> Option<StoreOp> {
        if self.outcome.is_some() {
            return None;
        }
        self.pending.take()
    }

    /// Feeds back the result of the operation last returned by
    /// [`next_op`](Self::next_op).
    pub fn complete(&mut self, result: Result<StoreReply, BackendError>) {
        let staging = self.then_commit.is_some();
        match (result, staging) {
            (Ok(_), true) => self.pending = self.then_commit.take(),
            (Err(e), true) => {
                // Nothing was committed: a staging failure is never unknown.
                self.then_commit = None;
                self.outcome = Some(match outcome_of_error(&e) {
                    Outcome::Unknown => Outcome::Unavailable,
                    other => other,
                });
            }
            (Ok(reply), false) => self.outcome = Some(outcome_of_reply(reply)),
            (Err(e), false) => self.outcome = Some(outcome_of_error(&e)),
        }
    }

    /// Whether the command has no result to report (housekeeping).
    pub fn is_housekeeping(&self) -> bool {
        self.op.is_none()
    }

    /// The command's correlation id and outcome; `None` for a command without
    /// a result (housekeeping), or if the execution did not run to its end.
    pub fn finish(self) -> Option<(OpId, Outcome)> {
        Some((self.op?, self.outcome?))
    }
}

fn outcome_of_reply(reply: StoreReply) -> Outcome {
    match reply {
        StoreReply::Written(revision) => Outcome::Written(revision),
        StoreReply::Done => Outcome::Written(0),
        StoreReply::Member(found) => Outcome::Member(found),
        StoreReply::Loaded(snapshot) => Outcome::Loaded(snapshot),
    }
}

/// What the worker needs to know about an operation that failed.
pub fn outcome_of_error(error: &BackendError) -> Outcome {
    match error {
        BackendError::AlreadyExists => Outcome::AlreadyExists,
        BackendError::Conflict => Outcome::Conflict,
        BackendError::Timeout | BackendError::Other(_) => Outcome::Unknown,
        BackendError::Unavailable(_) => Outcome::Unavailable,
        BackendError::Misconfigured(e) => Outcome::Failed(e.clone()),
        BackendError::PermissionDenied(e) => Outcome::Failed(format!("permission denied: {e}")),
        BackendError::TooLarge { .. } => Outcome::Failed(error.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::InstanceId;
    use crate::records::{AssignmentMeta, Lifecycle, MemberRecord, WorkerAssignment};
    use std::collections::BTreeMap;

    fn meta() -> AssignmentMeta {
        AssignmentMeta {
            v: 1,
            version: 4,
            term: 2,
            lifecycle: Lifecycle::Handoff,
            records: BTreeMap::new(),
            partitions: 0,
        }
    }

    fn record() -> WorkerAssignment {
        WorkerAssignment {
            v: 1,
            worker: WorkerId::new("worker", 0),
            instance: InstanceId(1),
            version: 4,
            term: 2,
            partitions: Vec::new(),
        }
    }

    fn publish() -> Execution {
        let command = Command::Publish {
            op: OpId(9),
            records: vec![record()],
            meta: meta(),
            expected: Some(5),
        };
        match Plan::of(command) {
            Plan::Store(e) => *e,
            other => panic!("publish is a store execution, got {other:?}"),
        }
    }

    #[test]
    fn publication_stages_then_commits() {
        let mut e = publish();
        assert!(matches!(e.next_op(), Some(StoreOp::Stage { records }) if records.len() == 1));
        e.complete(Ok(StoreReply::Done));
        assert!(matches!(
            e.next_op(),
            Some(StoreOp::CommitMeta {
                expected: Some(5),
                ..
            })
        ));
        e.complete(Ok(StoreReply::Written(6)));
        assert_eq!(e.next_op(), None);
        assert_eq!(e.finish(), Some((OpId(9), Outcome::Written(6))));
    }

    #[test]
    fn a_staging_timeout_is_unavailable_and_nothing_is_committed() {
        let mut e = publish();
        assert!(e.next_op().is_some());
        e.complete(Err(BackendError::Timeout));
        assert_eq!(e.next_op(), None, "no commit after a failed staging");
        assert_eq!(e.finish(), Some((OpId(9), Outcome::Unavailable)));
    }

    #[test]
    fn a_commit_timeout_is_unknown() {
        let mut e = publish();
        e.next_op();
        e.complete(Ok(StoreReply::Done));
        e.next_op();
        e.complete(Err(BackendError::Timeout));
        assert_eq!(e.finish(), Some((OpId(9), Outcome::Unknown)));
    }

    #[test]
    fn a_takeover_claim_is_a_compare_and_set_update() {
        let command = Command::ClaimId {
            op: OpId(1),
            id: WorkerId::new("worker", 3),
            record: MemberRecord::fresh(InstanceId(1), 1),
            takeover: Some(41),
        };
        let Plan::Store(mut e) = Plan::of(command) else {
            panic!("a claim is a store execution");
        };
        assert!(matches!(
            e.next_op(),
            Some(StoreOp::UpdateMember { expected: 41, .. })
        ));
        e.complete(Err(BackendError::Conflict));
        assert_eq!(e.finish(), Some((OpId(1), Outcome::Conflict)));
    }

    #[test]
    fn housekeeping_has_no_outcome() {
        let Plan::Store(mut e) = Plan::of(Command::CleanupAssignments { keep_term: 3 }) else {
            panic!("cleanup is a store execution");
        };
        assert_eq!(
            e.next_op(),
            Some(StoreOp::RemoveStaleAssignments { keep_term: 3 })
        );
        e.complete(Ok(StoreReply::Done));
        assert_eq!(e.finish(), None);
    }
}
