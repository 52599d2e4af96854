//! Measures of one placement: validity, loads and balance, and the
//! partition-to-owner map by keys that movement and order checks compare.

use super::Balance;
use parti_core::{
    AssignmentInput, AssignmentStrategy, Partition, Placement, StrategyError, WorkerId,
};
use std::collections::HashMap;
use std::panic::{AssertUnwindSafe, catch_unwind};

/// Calls the strategy, turning a panic into an error message.
pub fn call<S: AssignmentStrategy + ?Sized>(
    strategy: &S,
    input: &AssignmentInput<'_>,
) -> Result<Result<Placement, StrategyError>, String> {
    catch_unwind(AssertUnwindSafe(|| strategy.assign(input))).map_err(|e| {
        let msg = e
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| e.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "non-string panic".into());
        format!("panicked: {msg}")
    })
}

/// Checks that `placement` gives every partition of `input` exactly one owner
/// that is a valid worker index.
pub fn check_placement(input: &AssignmentInput<'_>, placement: &Placement) -> Result<(), String> {
    if placement.owners.len() != input.partitions.len() {
        return Err(format!(
            "{} owners for {} partitions",
            placement.owners.len(),
            input.partitions.len()
        ));
    }
    let n = input.workers.len();
    match placement.owners.iter().position(|&o| o as usize >= n) {
        Some(i) => Err(format!(
            "partition {i} owned by worker index {} of {n}",
            placement.owners[i]
        )),
        None => Ok(()),
    }
}

/// Effective weights (all 1 when every weight is 0) and their total.
pub(super) fn effective_weights(parts: &[Partition]) -> (Vec<f64>, f64) {
    let total: u128 = parts.iter().map(|p| u128::from(p.weight)).sum();
    let w: Vec<f64> = if total == 0 {
        vec![1.0; parts.len()]
    } else {
        parts.iter().map(|p| p.weight as f64).collect()
    };
    let t = w.iter().sum();
    (w, t)
}

/// Per-worker (load, share) under effective weights.
pub(super) fn loads(input: &AssignmentInput<'_>, placement: &Placement) -> Vec<(f64, f64)> {
    let (w, total) = effective_weights(input.partitions);
    let cap: f64 = input
        .workers
        .iter()
        .map(|x| x.effective_capacity() as f64)
        .sum();
    let mut out: Vec<(f64, f64)> = input
        .workers
        .iter()
        .map(|x| (0.0, total * x.effective_capacity() as f64 / cap))
        .collect();
    for (i, &o) in placement.owners.iter().enumerate() {
        out[o as usize].0 += w[i];
    }
    out
}

/// Checks `balance` on one placement (which must be complete).
pub fn check_balance(
    input: &AssignmentInput<'_>,
    placement: &Placement,
    balance: Balance,
) -> Result<(), String> {
    match balance {
        Balance::None => Ok(()),
        Balance::CountSpread(k) => {
            let mut count = vec![0u64; input.workers.len()];
            for &o in &placement.owners {
                count[o as usize] += 1;
            }
            let (min, max) = (count.iter().min(), count.iter().max());
            match (min, max) {
                (Some(&lo), Some(&hi)) if hi - lo > k => Err(format!(
                    "partition counts range from {lo} to {hi}, spread above {k}"
                )),
                _ => Ok(()),
            }
        }
        Balance::Weighted { epsilon } => {
            let (w, _) = effective_weights(input.partitions);
            let w_max = w.iter().copied().fold(0.0, f64::max);
            let per = loads(input, placement);
            let s_min = per.iter().map(|&(_, s)| s).fold(f64::INFINITY, f64::min);
            if s_min <= 0.0 {
                return Ok(()); // nothing to balance
            }
            let bound = (1.0 + epsilon).max(1.0 + w_max / s_min) * (1.0 + 1e-9);
            let strict = (1.0 + epsilon) * (1.0 + 1e-9);
            for (j, &(load, share)) in per.iter().enumerate() {
                let ratio = load / share;
                // Within (1 + ε) always passes; above it only a partition too
                // heavy to fit can be the reason.
                if ratio > strict && ratio > bound {
                    return Err(format!(
                        "worker {} carries {load} for a share of {share:.1} ({ratio:.4}× > {bound:.4}×)",
                        input.workers[j].id
                    ));
                }
            }
            Ok(())
        }
    }
}

/// Owner ID by partition keys.
pub(super) fn by_keys<'a>(
    input: &AssignmentInput<'a>,
    placement: &Placement,
) -> HashMap<&'a [String], &'a WorkerId> {
    input
        .partitions
        .iter()
        .zip(&placement.owners)
        .map(|(p, &o)| (p.keys.as_slice(), &input.workers[o as usize].id))
        .collect()
}

pub use parti_core::strategy::carry_over;
