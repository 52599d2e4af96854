//! Inputs of the worker state machine.

use crate::backend::{AssignmentSnapshot, WatchEvent};
use crate::partition::Partition;
use crate::records::{MemberRecord, Revision};
use std::sync::Arc;

/// Correlates a [`crate::Command`] with its result.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct OpId(pub u64);

/// The result of a command, as the driver observed it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The write was applied at this revision (for a delete: the revision is 0
    /// if the backend does not report one).
    Written(Revision),
    /// A create found the key present.
    AlreadyExists,
    /// A conditional write found another revision.
    Conflict,
    /// Timed out: the write may or may not have been applied.
    Unknown,
    /// The store could not be reached; nothing was applied.
    Unavailable,
    /// Result of `LoadAssignments`.
    Loaded(AssignmentSnapshot),
    /// Result of `ReadMember`.
    Member(Option<(MemberRecord, Revision)>),
    /// Result of `ListPartitions`.
    Partitions(Vec<Partition>),
    /// The command failed for another reason (e.g. the partition source failed).
    Failed(String),
}

impl Outcome {
    /// Whether the store was unreachable or the outcome unknown.
    pub fn is_unreachable(&self) -> bool {
        matches!(self, Outcome::Unavailable | Outcome::Unknown)
    }
}

/// Why the worker should stop.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StopMode {
    /// Give up partitions and the ID; the leader keeps the partitions for the
    /// planned-scale window so that a restart under the same ID moves nothing.
    Graceful,
    /// Give up partitions and the ID; the leader hands them to the others at once
    /// (scale-down).
    Leave,
}

/// Something that happened, fed to [`crate::Worker::handle`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// Begin: claim an ID and join the group.
    Start,
    /// A command finished.
    Completed {
        /// The command's id.
        op: OpId,
        /// What happened.
        outcome: Outcome,
    },
    /// An item of the watch started with `Command::Watch`.
    Watch(WatchEvent),
    /// The watch broke; the driver is re-creating it (the worker will get a new
    /// snapshot).
    WatchLost,
    /// The connection to the store went down.
    Disconnected,
    /// The connection to the store is back.
    Reconnected,
    /// The partition list changed (from the user's `refresh_partitions`).
    /// Shared: one list can go to many workers (a simulated group) without
    /// a copy per worker.
    PartitionsChanged(Arc<[Partition]>),
    /// Stop.
    Stop(StopMode),
}
