//! Outputs of the worker state machine: commands for the driver and
//! notifications for the user.

use crate::backend::MemberScope;
use crate::event::OpId;
use crate::ids::WorkerId;
use crate::records::{
    AssignmentMeta, LeaderRecord, Lifecycle, MemberRecord, OwnedPartition, Revision,
    WorkerAssignment,
};
use crate::state::State;
use std::time::Duration;

/// What the driver must do next. Every command that has a result carries an
/// [`OpId`]; the driver reports the result as [`crate::Event::Completed`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Command {
    /// (Re)start the watch of the group (the member keys `members` selects,
    /// the leader key, the commit record and, if `worker` is given, that
    /// worker's assignment records). The previous watch, if any, is dropped.
    Watch {
        /// The worker whose records to include.
        worker: Option<WorkerId>,
        /// Every member key, or only `worker`'s and the leader's (see
        /// [`MemberScope`]).
        members: MemberScope,
    },
    /// Claim a stable ID: create its member key, or, with `takeover`, overwrite
    /// the record at that revision (an evicted record of this very process).
    ClaimId {
        /// Correlation.
        op: OpId,
        /// The ID.
        id: WorkerId,
        /// The record to write.
        record: MemberRecord,
        /// Revision to overwrite, if taking back an evicted record.
        takeover: Option<Revision>,
    },
    /// Renew the member record (heartbeat, acknowledgement) with compare-and-set.
    RenewLease {
        /// Correlation.
        op: OpId,
        /// The ID.
        id: WorkerId,
        /// The record to write.
        record: MemberRecord,
        /// Expected current revision.
        expected: Revision,
    },
    /// Read a member record (to reconcile an unknown outcome).
    ReadMember {
        /// Correlation.
        op: OpId,
        /// The ID.
        id: WorkerId,
    },
    /// Release the ID: delete the member key with compare-and-set.
    ReleaseId {
        /// Correlation.
        op: OpId,
        /// The ID.
        id: WorkerId,
        /// Expected current revision.
        expected: Revision,
    },
    /// Leader only: mark a vanished member evicted (compare-and-set on the last
    /// revision seen), so that it can never renew its ownership lease again.
    Evict {
        /// Correlation.
        op: OpId,
        /// The member.
        id: WorkerId,
        /// The evicted record.
        record: MemberRecord,
        /// The revision last seen.
        expected: Revision,
    },
    /// Become leader: create the leader key.
    Campaign {
        /// Correlation.
        op: OpId,
        /// The record.
        record: LeaderRecord,
    },
    /// Renew leadership with compare-and-set.
    RenewLeadership {
        /// Correlation.
        op: OpId,
        /// The record.
        record: LeaderRecord,
        /// Expected current revision.
        expected: Revision,
    },
    /// Give up leadership: delete the leader key with compare-and-set.
    Resign {
        /// Correlation.
        op: OpId,
        /// Expected current revision.
        expected: Revision,
    },
    /// Leader only: read the commit record and the records it names.
    LoadAssignments {
        /// Correlation.
        op: OpId,
    },
    /// Leader only: stage `records` (each at `w.<term>.<worker>`), then commit
    /// `meta` with compare-and-set on `expected` (`None`: create). The outcome
    /// is that of the commit; if staging fails, report the staging failure and
    /// do not commit.
    Publish {
        /// Correlation.
        op: OpId,
        /// Records to stage.
        records: Vec<WorkerAssignment>,
        /// Commit record.
        meta: AssignmentMeta,
        /// Expected revision of the commit record.
        expected: Option<Revision>,
    },
    /// Leader only, best effort, no result: remove records of other terms.
    CleanupAssignments {
        /// The term whose records stay.
        keep_term: u64,
    },
    /// Leader only: ask the partition source for the current list.
    ListPartitions {
        /// Correlation.
        op: OpId,
    },
    /// Tell the user something.
    Notify(Notification),
}

impl Command {
    /// The operation id of a command that has a result; `None` for `Watch`,
    /// `CleanupAssignments` and notifications.
    pub fn op(&self) -> Option<OpId> {
        match self {
            Command::ClaimId { op, .. }
            | Command::RenewLease { op, .. }
            | Command::ReadMember { op, .. }
            | Command::ReleaseId { op, .. }
            | Command::Evict { op, .. }
            | Command::Campaign { op, .. }
            | Command::RenewLeadership { op, .. }
            | Command::Resign { op, .. }
            | Command::LoadAssignments { op }
            | Command::Publish { op, .. }
            | Command::ListPartitions { op } => Some(*op),
            Command::Watch { .. } | Command::CleanupAssignments { .. } | Command::Notify(_) => None,
        }
    }
}

/// Degraded-mode alert severity.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum AlertLevel {
    /// Degraded for at least `alerts.info`.
    Info,
    /// At least `alerts.warn`.
    Warn,
    /// At least `alerts.error`.
    Error,
    /// At least `alerts.critical`.
    Critical,
}

/// A fatal condition: the worker went to `Shutdown` because of it.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FatalError {
    /// Every ID of the configured range is held by another process.
    #[error("every worker ID from {min} to {max} is taken")]
    IdRangeExhausted {
        /// Smallest index.
        min: u32,
        /// Largest index.
        max: u32,
    },
}

/// Something the user should learn, in the order it happened.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Notification {
    /// The worker's state changed.
    StateChanged {
        /// Before.
        from: State,
        /// After.
        to: State,
    },
    /// The worker claimed (or lost) its stable ID.
    IdChanged {
        /// The ID now held, if any.
        id: Option<WorkerId>,
    },
    /// The set of owned partitions changed. Stop work on `removed` before acting
    /// on `added`; pass each partition's epoch downstream as a fencing token.
    AssignmentChanged {
        /// Newly owned.
        added: Vec<OwnedPartition>,
        /// No longer owned.
        removed: Vec<OwnedPartition>,
        /// Assignment version now applied (0 if ownership was dropped locally,
        /// e.g. on lease expiry).
        version: u64,
    },
    /// Leadership was gained or lost.
    LeadershipChanged {
        /// Whether this worker leads now.
        leader: bool,
        /// The term.
        term: u64,
    },
    /// The leader published a version.
    Published {
        /// Version.
        version: u64,
        /// Partitions whose owner changed (granted) in it.
        granted: usize,
        /// Partitions revoked in it.
        revoked: usize,
        /// Why it was published.
        lifecycle: Lifecycle,
        /// Whether moves are still waiting for a release (a two-version
        /// handoff is under way after this version).
        handoff_pending: bool,
    },
    /// Still degraded.
    DegradedAlert {
        /// Severity.
        level: AlertLevel,
        /// Time spent degraded so far.
        elapsed: Duration,
    },
    /// A non-fatal error worth reporting (e.g. the partition source failed, a
    /// strategy refused its input).
    Error(String),
    /// The worker stopped for good because of this.
    Fatal(FatalError),
    /// The worker finished stopping.
    Stopped,
}
