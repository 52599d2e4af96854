//! The virtual-node hash ring, byte-for-byte the Go original's.
//!
//! - Worker `w` gets `h0 = xxh3_64_with_seed(id bytes, seed)` (seed 0 is the plain
//!   XXH3, which is what the Go code calls when its seed is 0).
//! - Its virtual node `i` sits at `xxh3_64_with_seed(LE-u64 bytes of i, h0)`.
//! - Partition `p` sits at [`parti_core::PartitionId::of_keys`]`(keys, seed)`.
//! - A partition belongs to the first virtual node at or after its point,
//!   wrapping to the first node of the ring.
//!
//! The Go code sorts nodes with an unstable sort, so two nodes with the same hash
//! (a 2^-64 event) have no defined order there; here the worker with the smaller
//! ID comes first.

use crate::prep::Prepared;
use crate::sort::sort_hashed;
use parti_core::WorkerSpec;
use xxhash_rust::xxh3::xxh3_64_with_seed;

/// The default number of virtual nodes per worker (the Go default).
pub const DEFAULT_VNODES: u32 = 150;

/// The most virtual nodes a single worker gets, whatever its capacity.
pub(crate) const MAX_VNODES_PER_WORKER: u64 = 1 << 16;

/// A sorted ring of virtual nodes.
pub(crate) struct Ring {
    /// `(position, owner rank)` of every node, ascending.
    pub nodes: Vec<(u64, u32)>,
}

/// The position of virtual node `i` of a worker whose ID hashes to `h0`.
pub(crate) fn vnode_hash(h0: u64, i: u64) -> u64 {
    xxh3_64_with_seed(&i.to_le_bytes(), h0)
}

impl Ring {
    /// Builds the ring; `vnodes(rank)` is the number of virtual nodes of the worker
    /// of that rank (at least 1 is used).
    pub fn build(
        prep: &Prepared,
        workers: &[WorkerSpec],
        seed: u64,
        mut vnodes: impl FnMut(usize) -> u64,
    ) -> Ring {
        let counts: Vec<u64> = (0..prep.workers())
            .map(|r| vnodes(r).clamp(1, MAX_VNODES_PER_WORKER))
            .collect();
        let total: u64 = counts.iter().sum();
        let mut nodes: Vec<(u64, u32)> = Vec::with_capacity(total as usize);
        for (rank, &count) in counts.iter().enumerate() {
            let id = &workers[prep.worker_by_rank[rank] as usize].id;
            let h0 = xxh3_64_with_seed(id.as_str().as_bytes(), seed);
            nodes.extend((0..count).map(|i| (vnode_hash(h0, i), rank as u32)));
        }
        sort_hashed(&mut nodes, |a, b| a.cmp(&b));
        Ring { nodes }
    }

    /// Number of virtual nodes.
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// Owner rank of node `v`.
    pub fn owner(&self, v: usize) -> u32 {
        self.nodes[v].1
    }
}

/// Walks partitions in canonical order (ascending hash) alongside the ring:
/// `next(hash)` returns the index of the first node at or after `hash`, wrapping
/// to 0. Hashes must be given in ascending order; the whole walk is one merge,
/// O(P + nodes).
pub(crate) struct Cursor<'a> {
    ring: &'a Ring,
    j: usize,
}

impl<'a> Cursor<'a> {
    /// A cursor at the start of the ring.
    pub fn new(ring: &'a Ring) -> Self {
        Cursor { ring, j: 0 }
    }

    /// The first node at or after `hash`.
    pub fn next(&mut self, hash: u64) -> usize {
        let nodes = &self.ring.nodes;
        while self.j < nodes.len() && nodes[self.j].0 < hash {
            self.j += 1;
        }
        if self.j == nodes.len() { 0 } else { self.j }
    }
}
