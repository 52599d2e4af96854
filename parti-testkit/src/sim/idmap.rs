//! Maps and sets keyed by [`PartitionId`] for the simulator's bookkeeping.
//!
//! A partition ID is already a 64-bit hash of the partition's keys (XXH3),
//! so hashing it again with SipHash, or ordering it in a B-tree, is wasted
//! work on every grant and release the checks record. These containers use
//! the ID itself as the hash. Only lookups go through them: nothing that is
//! reported depends on their iteration order.

use parti_core::PartitionId;
use std::collections::{HashMap, HashSet};
use std::hash::{BuildHasherDefault, Hasher};

/// A hasher that passes a [`PartitionId`]'s value through.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct IdHasher(u64);

impl Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        // Not reached for a `PartitionId` (it hashes as one `u64`); mixes
        // anything else in so that the hasher stays correct.
        for &b in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(b)).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 ^= n;
    }
}

/// Builds [`IdHasher`]s.
pub(crate) type IdBuild = BuildHasherDefault<IdHasher>;

/// A map keyed by partition ID.
pub(crate) type IdMap<V> = HashMap<PartitionId, V, IdBuild>;

/// A set of partition IDs.
pub(crate) type IdSet = HashSet<PartitionId, IdBuild>;
