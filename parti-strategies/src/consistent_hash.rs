//! Plain consistent hashing on a virtual-node ring, placement-compatible with the
//! Go original.

use crate::prep::prepare;
use crate::ring::{DEFAULT_VNODES, Ring, starts};
use parti_core::{AssignmentInput, AssignmentStrategy, Placement, StrategyError};

/// Consistent hashing on a ring of virtual nodes (xxh3), byte-for-byte the
/// placement of the Go library's `ConsistentHash` with the same virtual-node count
/// and seed (see the crate docs for the scheme).
///
/// - **Movement:** minimal and exact. Adding a worker moves only partitions to
///   it; removing one moves only its partitions.
/// - **Balance:** poor. With 150 virtual nodes the busiest worker carries about
///   1.4× the mean. Use [`crate::BoundedLoad`] or [`crate::Sticky`] for balance.
/// - **Capacity** ([`parti_core::WorkerSpec::capacity`]) and weights are
///   ignored, as in Go.
/// - `previous` is ignored.
///
/// ```
/// use parti_core::{AssignmentInput, AssignmentStrategy, Partition, WorkerId, WorkerSpec};
/// use parti_strategies::ConsistentHash;
///
/// let workers: Vec<WorkerSpec> = (0..3).map(|i| WorkerSpec::new(WorkerId::new("worker", i))).collect();
/// let parts: Vec<Partition> = (0..10).map(|i| Partition::new(["topic".to_string(), format!("p-{i}")])).collect();
/// let input = AssignmentInput { workers: &workers, partitions: &parts, previous: &[] };
/// let placement = ConsistentHash::new().with_vnodes(100).assign(&input).unwrap();
/// assert_eq!(placement.owners.len(), 10);
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConsistentHash {
    vnodes: u32,
    seed: u64,
}

impl Default for ConsistentHash {
    fn default() -> Self {
        ConsistentHash {
            vnodes: DEFAULT_VNODES,
            seed: 0,
        }
    }
}

impl ConsistentHash {
    /// 150 virtual nodes, seed 0: the Go defaults.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets the number of virtual nodes per worker (at least 1 is used).
    pub fn with_vnodes(mut self, vnodes: u32) -> Self {
        self.vnodes = vnodes;
        self
    }

    /// Sets the hash seed (0 = unseeded XXH3, as in Go).
    pub fn with_seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }

    /// The number of virtual nodes per worker.
    pub fn vnodes(&self) -> u32 {
        self.vnodes
    }

    /// The hash seed.
    pub fn seed(&self) -> u64 {
        self.seed
    }
}

impl AssignmentStrategy for ConsistentHash {
    fn name(&self) -> &str {
        "consistent-hash"
    }

    fn assign(&self, input: &AssignmentInput<'_>) -> Result<Placement, StrategyError> {
        let prep = prepare(input, self.seed)?;
        let ring = Ring::build(&prep, input.workers, self.seed, |_| u64::from(self.vnodes));
        let mut ranks = starts(&ring, &prep);
        for r in ranks.iter_mut() {
            *r = ring.owner(*r as usize);
        }
        Ok(Placement {
            owners: prep.to_placement(&ranks),
        })
    }
}
