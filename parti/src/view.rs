//! What a running manager shows.

use parti_core::records::OwnedPartition;

/// The partitions this worker owns, with the assignment version they come from.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Assignment {
    /// The assignment version applied (0 before the first).
    pub version: u64,
    /// The owned partitions, sorted by keys, each with its fencing epoch.
    pub partitions: Vec<OwnedPartition>,
}

impl Assignment {
    /// Number of owned partitions.
    pub fn len(&self) -> usize {
        self.partitions.len()
    }

    /// Whether nothing is owned.
    pub fn is_empty(&self) -> bool {
        self.partitions.is_empty()
    }
}
