//! A tiny, obviously correct strategy for the simulator's own tests: keep every
//! partition whose previous owner is still present if that owner is under its
//! fair share, give the rest to the least-loaded worker.

use parti_core::strategy::{
    AssignmentInput, AssignmentStrategy, Placement, StrategyError, validate_input,
};

/// See the module docs.
#[derive(Clone, Copy, Debug, Default)]
pub struct SimpleSticky;

impl AssignmentStrategy for SimpleSticky {
    fn name(&self) -> &str {
        "simple-sticky"
    }

    fn assign(&self, input: &AssignmentInput<'_>) -> Result<Placement, StrategyError> {
        validate_input(input)?;
        let n = input.workers.len();
        let total = input.partitions.len();
        let cap = total.div_ceil(n);
        // Deterministic order: by partition keys, workers by ID.
        let mut order: Vec<usize> = (0..total).collect();
        order.sort_by(|a, b| input.partitions[*a].keys.cmp(&input.partitions[*b].keys));
        let mut by_id: Vec<usize> = (0..n).collect();
        by_id.sort_by(|a, b| input.workers[*a].id.cmp(&input.workers[*b].id));
        let mut load = vec![0usize; n];
        let mut owners = vec![u32::MAX; total];
        for &i in &order {
            if let Some(w) = input.previous_owner(i)
                && load[w as usize] < cap
            {
                load[w as usize] += 1;
                owners[i] = w;
            }
        }
        for &i in &order {
            if owners[i] == u32::MAX {
                let w = by_id.iter().copied().min_by_key(|w| load[*w]).unwrap_or(0);
                load[w] += 1;
                owners[i] = w as u32;
            }
        }
        Ok(Placement { owners })
    }
}
