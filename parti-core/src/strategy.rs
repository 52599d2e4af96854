//! The assignment strategy: a pure function from (workers, partitions, previous
//! assignment) to a new assignment.
//!
//! Strategies work on indices for speed: the output gives, for every partition of
//! the input slice, the index of its owner in the worker slice. The controller
//! translates indices back to IDs. A strategy must be deterministic: the same
//! input (as sets: the order of `workers` and `partitions` must not matter) gives
//! the same output.

use crate::ids::WorkerId;
use crate::partition::Partition;
use thiserror::Error;

/// A live worker as a strategy sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WorkerSpec {
    /// The worker's stable ID.
    pub id: WorkerId,
    /// Relative size of the worker (1 = normal, 2 = twice as big). Weighted
    /// strategies give it a share of the total weight proportional to this; `0` is
    /// treated as 1.
    pub capacity: u32,
}

impl WorkerSpec {
    /// A worker of capacity 1.
    pub fn new(id: WorkerId) -> Self {
        WorkerSpec { id, capacity: 1 }
    }

    /// The capacity with `0` read as 1.
    pub fn effective_capacity(&self) -> u64 {
        u64::from(self.capacity.max(1))
    }
}

/// Everything a strategy is given.
#[derive(Clone, Copy, Debug)]
pub struct AssignmentInput<'a> {
    /// The live workers, in no particular order.
    pub workers: &'a [WorkerSpec],
    /// The partitions to place, in no particular order.
    pub partitions: &'a [Partition],
    /// The previous owner of each partition as an index into `workers`, parallel
    /// to `partitions`; `None` for a new partition or one whose owner is gone. An
    /// empty slice means there is no previous assignment at all (cold start).
    pub previous: &'a [Option<u32>],
}

impl AssignmentInput<'_> {
    /// The previous owner of partition `i`, if any.
    pub fn previous_owner(&self, i: usize) -> Option<u32> {
        self.previous.get(i).copied().flatten()
    }

    /// Whether a previous assignment was supplied.
    pub fn has_previous(&self) -> bool {
        !self.previous.is_empty()
    }
}

/// A strategy's answer: `owners[i]` is the index in `workers` of the owner of
/// `partitions[i]`.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Placement {
    /// Owner index per partition.
    pub owners: Vec<u32>,
}

/// Why a strategy could not produce a placement.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum StrategyError {
    /// The worker list was empty.
    #[error("no workers to assign partitions to")]
    NoWorkers,
    /// Two partitions have the same keys.
    #[error("duplicate partition keys {0:?}")]
    DuplicatePartition(Vec<String>),
    /// Two workers have the same ID.
    #[error("duplicate worker id {0}")]
    DuplicateWorker(WorkerId),
    /// `previous` was given but its length differs from `partitions`, or names a
    /// worker index out of range.
    #[error("previous assignment does not match the input: {0}")]
    BadPrevious(String),
    /// Anything else a user strategy wants to report.
    #[error("strategy failed: {0}")]
    Other(String),
}

/// Turns live workers and partitions into an assignment. Implementations must be
/// pure and deterministic; they run on the leader only.
pub trait AssignmentStrategy: Send + Sync + std::fmt::Debug {
    /// A short name for logs and metrics (`"sticky"`).
    fn name(&self) -> &str;

    /// Computes the owner of every partition.
    fn assign(&self, input: &AssignmentInput<'_>) -> Result<Placement, StrategyError>;
}

/// Translates a placement computed over `from` into the `previous` owners for
/// a call over `to`: each partition's owner by ID, or `None` if that worker is
/// not in `to` (the usual way to feed one call's output into the next).
pub fn carry_over(
    from: &[WorkerSpec],
    to: &[WorkerSpec],
    placement: &Placement,
) -> Vec<Option<u32>> {
    let index: std::collections::BTreeMap<&WorkerId, u32> = to
        .iter()
        .enumerate()
        .map(|(i, w)| (&w.id, i as u32))
        .collect();
    placement
        .owners
        .iter()
        .map(|&o| from.get(o as usize).and_then(|w| index.get(&w.id).copied()))
        .collect()
}

/// Checks the parts of the input contract every strategy relies on: at least one
/// worker, unique worker IDs, unique partition keys, and a well-formed
/// `previous`. Strategies call it first; it costs O(P log P).
pub fn validate_input(input: &AssignmentInput<'_>) -> Result<(), StrategyError> {
    if input.workers.is_empty() {
        return Err(StrategyError::NoWorkers);
    }
    let mut ids: Vec<&WorkerId> = input.workers.iter().map(|w| &w.id).collect();
    ids.sort_unstable();
    if let Some(pair) = ids.windows(2).find(|p| p[0] == p[1]) {
        return Err(StrategyError::DuplicateWorker(pair[0].clone()));
    }
    // Duplicate keys have equal IDs: sort the 64-bit IDs (cheap) and compare
    // keys only where IDs collide.
    let mut ids: Vec<(u64, usize)> = input
        .partitions
        .iter()
        .enumerate()
        .map(|(i, p)| (p.id().0, i))
        .collect();
    ids.sort_unstable();
    for pair in ids.windows(2) {
        let (a, b) = (&input.partitions[pair[0].1], &input.partitions[pair[1].1]);
        if pair[0].0 == pair[1].0 && a.keys == b.keys {
            return Err(StrategyError::DuplicatePartition(a.keys.to_vec()));
        }
    }
    if input.has_previous() {
        if input.previous.len() != input.partitions.len() {
            return Err(StrategyError::BadPrevious(format!(
                "{} previous owners for {} partitions",
                input.previous.len(),
                input.partitions.len()
            )));
        }
        let n = input.workers.len();
        if let Some(bad) = input.previous.iter().flatten().find(|&&w| w as usize >= n) {
            return Err(StrategyError::BadPrevious(format!(
                "worker index {bad} with {n} workers"
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn workers(n: u32) -> Vec<WorkerSpec> {
        (0..n)
            .map(|i| WorkerSpec::new(WorkerId::new("worker", i)))
            .collect()
    }

    #[test]
    fn validate_refuses_bad_input() {
        let parts = vec![Partition::new(["a"]), Partition::new(["a"])];
        let w = workers(2);
        let input = AssignmentInput {
            workers: &w,
            partitions: &parts,
            previous: &[],
        };
        assert_eq!(
            validate_input(&input),
            Err(StrategyError::DuplicatePartition(vec!["a".into()]))
        );
        let none: Vec<WorkerSpec> = vec![];
        let input = AssignmentInput {
            workers: &none,
            partitions: &parts[..1],
            previous: &[],
        };
        assert_eq!(validate_input(&input), Err(StrategyError::NoWorkers));
        let prev = [Some(5)];
        let input = AssignmentInput {
            workers: &w,
            partitions: &parts[..1],
            previous: &prev,
        };
        assert!(matches!(
            validate_input(&input),
            Err(StrategyError::BadPrevious(_))
        ));
        let dup = vec![w[0].clone(), w[0].clone()];
        let input = AssignmentInput {
            workers: &dup,
            partitions: &parts[..1],
            previous: &[],
        };
        assert!(matches!(
            validate_input(&input),
            Err(StrategyError::DuplicateWorker(_))
        ));
    }
}
