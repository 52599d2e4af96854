//! Round robin over sorted workers and partitions.

use crate::prep::prepare;
use parti_core::{AssignmentInput, AssignmentStrategy, Placement, StrategyError};

/// Deals partitions, sorted by partition ID (then keys), to workers sorted by
/// worker ID, one at a time.
///
/// - **Balance:** by count, perfect: worker counts differ by at most one.
///   Weights and capacities are ignored.
/// - **Movement:** terrible. Adding or removing a worker shifts the deal, so
///   almost every partition changes owner (about `1 − 1/W`). It exists as a
///   baseline and for tiny static groups; prefer [`crate::Sticky`].
/// - `previous` is ignored.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RoundRobin;

impl RoundRobin {
    /// The round-robin strategy.
    pub fn new() -> Self {
        RoundRobin
    }
}

impl AssignmentStrategy for RoundRobin {
    fn name(&self) -> &str {
        "round-robin"
    }

    fn assign(&self, input: &AssignmentInput<'_>) -> Result<Placement, StrategyError> {
        let prep = prepare(input, 0)?;
        let w = prep.workers();
        let ranks: Vec<u32> = (0..prep.partitions()).map(|k| (k % w) as u32).collect();
        Ok(Placement {
            owners: prep.to_placement(&ranks),
        })
    }
}
