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

/// For every partition by canonical position (ascending hash), the index of the
/// first node at or after its hash, wrapping to 0: one branch-free merge of the
/// two sorted sequences, O(P + nodes).
pub(crate) fn starts(ring: &Ring, prep: &Prepared) -> Vec<u32> {
    let nodes = &ring.nodes;
    let keyed = &prep.keyed;
    let (p, n) = (keyed.len(), nodes.len());
    let mut out = vec![0u32; p];
    if n == 0 {
        return out;
    }
    let (mut i, mut j) = (0usize, 0usize);
    while i < p {
        // Advance along the ring while its node is below the partition, else
        // record the node and advance along the partitions.
        let node_below = (j < n) & (nodes[j.min(n - 1)].0 < keyed[i].0);
        out[i] = if j < n { j as u32 } else { 0 };
        j += usize::from(node_below);
        i += usize::from(!node_below);
    }
    out
}
