//! Shared by the hand-driven worker tests: a strategy whose placement is
//! easy to predict.

use parti_core::strategy::validate_input;
use parti_core::{AssignmentInput, AssignmentStrategy, Placement, StrategyError};

/// Partition `p` goes to worker `p mod n`.
#[derive(Debug)]
pub struct RoundRobin;

impl AssignmentStrategy for RoundRobin {
    fn name(&self) -> &str {
        "round-robin"
    }

    fn assign(&self, input: &AssignmentInput<'_>) -> Result<Placement, StrategyError> {
        validate_input(input)?;
        let n = input.workers.len();
        Ok(Placement {
            owners: (0..input.partitions.len())
                .map(|p| (p % n) as u32)
                .collect(),
        })
    }
}
