//! Input preparation shared by every strategy: validation, partition hashes, a
//! canonical order of workers (by ID) and partitions (by hash, then keys), worker
//! capacities and normalized weights.
//!
//! Every decision a strategy makes is phrased in terms of these canonical orders,
//! never in terms of input positions, which is what makes the strategies
//! independent of the order of `workers` and `partitions`.
//!
//! The validation is equivalent to [`parti_core::strategy::validate_input`] (same
//! errors in the same precedence) but finds duplicate keys through the partition
//! hashes the strategies need anyway, in expected O(P), instead of sorting the key
//! lists.

use crate::sort::sort_hashed;
use parti_core::{AssignmentInput, Partition, PartitionId, StrategyError};

/// The validated input in canonical order. Partitions are addressed by their
/// canonical position `k` (sorted by hash, then keys), workers by their rank
/// (sorted by ID).
pub(crate) struct Prepared {
    /// Worker input index for each rank.
    pub worker_by_rank: Vec<u32>,
    /// Effective capacity (`0` read as 1) by worker rank.
    pub capacity: Vec<u64>,
    /// Sum of `capacity`.
    pub total_capacity: u128,
    /// `(hash, input index)` of every partition by canonical position: sorted
    /// by hash (the partition ID under the strategy's seed), then keys.
    pub keyed: Vec<(u64, u32)>,
}

impl Prepared {
    /// Number of workers.
    pub fn workers(&self) -> usize {
        self.worker_by_rank.len()
    }

    /// Number of partitions.
    pub fn partitions(&self) -> usize {
        self.keyed.len()
    }

    /// Turns owner ranks by canonical position into the [`parti_core::Placement`]
    /// form: worker input indices by partition input index.
    pub fn to_placement(&self, owner_rank: &[u32]) -> Vec<u32> {
        let mut owners = vec![0u32; owner_rank.len()];
        for (&(_, i), &r) in self.keyed.iter().zip(owner_rank) {
            owners[i as usize] = self.worker_by_rank[r as usize];
        }
        owners
    }

    /// The worker rank of every worker input index.
    pub fn rank_of_worker(&self) -> Vec<u32> {
        let mut rank = vec![0u32; self.worker_by_rank.len()];
        for (r, &w) in self.worker_by_rank.iter().enumerate() {
            rank[w as usize] = r as u32;
        }
        rank
    }
}

/// Validates `input` and computes the canonical orders. `seed` is the seed of the
/// partition hash (0 = the plain [`PartitionId`]).
pub(crate) fn prepare(input: &AssignmentInput<'_>, seed: u64) -> Result<Prepared, StrategyError> {
    let workers = input.workers;
    if workers.is_empty() {
        return Err(StrategyError::NoWorkers);
    }
    if workers.len() > u32::MAX as usize || input.partitions.len() > u32::MAX as usize {
        return Err(StrategyError::Other(
            "more than 2^32 workers or partitions".into(),
        ));
    }
    let mut worker_by_rank: Vec<u32> = (0..workers.len() as u32).collect();
    worker_by_rank.sort_unstable_by(|&a, &b| workers[a as usize].id.cmp(&workers[b as usize].id));
    if let Some(pair) = worker_by_rank
        .windows(2)
        .find(|p| workers[p[0] as usize].id == workers[p[1] as usize].id)
    {
        return Err(StrategyError::DuplicateWorker(
            workers[pair[0] as usize].id.clone(),
        ));
    }
    let capacity: Vec<u64> = worker_by_rank
        .iter()
        .map(|&w| workers[w as usize].effective_capacity())
        .collect();
    let total_capacity = capacity.iter().map(|&c| u128::from(c)).sum();

    let parts = input.partitions;
    let mut pairs: Vec<(u64, u32)> = parts
        .iter()
        .enumerate()
        .map(|(i, p)| (PartitionId::of_keys(&p.keys, seed).0, i as u32))
        .collect();
    sort_hashed(&mut pairs, |a, b| {
        parts[a as usize].keys.cmp(&parts[b as usize].keys)
    });
    if let Some(pair) = pairs
        .windows(2)
        .find(|p| p[0].0 == p[1].0 && parts[p[0].1 as usize].keys == parts[p[1].1 as usize].keys)
    {
        return Err(StrategyError::DuplicatePartition(
            parts[pair[0].1 as usize].keys.to_vec(),
        ));
    }

    if input.has_previous() {
        if input.previous.len() != parts.len() {
            return Err(StrategyError::BadPrevious(format!(
                "{} previous owners for {} partitions",
                input.previous.len(),
                parts.len()
            )));
        }
        let n = workers.len();
        if let Some(bad) = input.previous.iter().flatten().find(|&&w| w as usize >= n) {
            return Err(StrategyError::BadPrevious(format!(
                "worker index {bad} with {n} workers"
            )));
        }
    }
    Ok(Prepared {
        worker_by_rank,
        capacity,
        total_capacity,
        keyed: pairs,
    })
}

/// Partition weights by canonical position, scaled so that every sum fits
/// comfortably in a `u64`.
pub(crate) struct Weights {
    /// Normalized weight by canonical position.
    pub w: Vec<u64>,
    /// Sum of `w` (below 2^63).
    pub total: u64,
    /// Largest entry of `w`.
    pub max: u64,
}

/// Normalizes weights: unchanged while their sum stays below 2^62; otherwise
/// divided by a power of two, rounding up so that a non-zero weight stays
/// non-zero (the relative error is below 2^-60 of the total). If every weight is
/// zero, every partition counts as 1, so balance falls back to counts.
pub(crate) fn normalized_weights(prep: &Prepared, parts: &[Partition]) -> Weights {
    let mut w: Vec<u64> = prep
        .keyed
        .iter()
        .map(|&(_, i)| parts[i as usize].weight)
        .collect();
    let raw_total: u128 = w.iter().map(|&x| u128::from(x)).sum();
    if raw_total == 0 {
        w.fill(1);
        return Weights {
            total: w.len() as u64,
            max: 1,
            w,
        };
    }
    let shift = (128 - raw_total.leading_zeros()).saturating_sub(62);
    if shift > 0 {
        let mask = (1u64 << shift) - 1;
        for x in w.iter_mut() {
            *x = (*x >> shift) + u64::from(*x & mask != 0);
        }
    }
    let total = w.iter().sum();
    let max = w.iter().copied().max().unwrap_or(0);
    Weights { w, total, max }
}

/// One part per million: the unit of the tolerances.
pub(crate) const PPM: u64 = 1_000_000;

/// Converts a tolerance given as a fraction (`0.05`) to parts per million,
/// clamped to `0..=100` (NaN reads as `default`).
pub(crate) fn fraction_to_ppm(eps: f64, default: u64) -> u64 {
    if eps.is_nan() {
        return default;
    }
    (eps.clamp(0.0, 100.0) * PPM as f64).round() as u64
}

/// Per-worker load bounds (by rank): `floor(total · c_j / C · (1 + eps))` when
/// `upper`, `ceil(total · c_j / C · (1 − eps))` (at least 0) otherwise.
pub(crate) fn load_bounds(prep: &Prepared, total: u64, eps_ppm: u64, upper: bool) -> Vec<u64> {
    let den = prep.total_capacity * u128::from(PPM);
    let factor = if upper {
        PPM + eps_ppm
    } else {
        PPM.saturating_sub(eps_ppm)
    };
    prep.capacity
        .iter()
        .map(|&c| {
            // total < 2^63, c < 2^32, factor < 2^27: the product fits in a u128.
            let num = u128::from(total) * u128::from(c) * u128::from(factor);
            let q = if upper { num / den } else { num.div_ceil(den) };
            u64::try_from(q).unwrap_or(u64::MAX)
        })
        .collect()
}

/// The least a worker should carry: `(1 − eps)` × its share, but never more
/// than `hi` (a band narrower than one weight unit would otherwise invert).
pub(crate) fn lower_bounds(
    prep: &Prepared,
    weights: &Weights,
    eps_ppm: u64,
    hi: &[u64],
) -> Vec<u64> {
    let mut lo = load_bounds(prep, weights.total, eps_ppm, false);
    for (l, &h) in lo.iter_mut().zip(hi) {
        *l = (*l).min(h);
    }
    lo
}

/// The most a worker may carry: `(1 + eps)` × its share, but never less than the
/// heaviest partition (a worker can always hold any single partition; below
/// that bound no placement exists anyway).
pub(crate) fn upper_bounds(prep: &Prepared, weights: &Weights, eps_ppm: u64) -> Vec<u64> {
    let mut hi = load_bounds(prep, weights.total, eps_ppm, true);
    for h in hi.iter_mut() {
        *h = (*h).max(weights.max);
    }
    hi
}

#[cfg(test)]
mod tests {
    use super::*;
    use parti_core::{WorkerId, WorkerSpec, strategy::validate_input};

    fn ws(n: u32) -> Vec<WorkerSpec> {
        (0..n)
            .map(|i| WorkerSpec::new(WorkerId::new("w", i)))
            .collect()
    }

    #[test]
    fn same_errors_as_core_validation() {
        let a = Partition::new(["a"]);
        let b = Partition::new(["b"]);
        let w = ws(3);
        let dupw = vec![w[0].clone(), w[1].clone(), w[0].clone()];
        type Case = (Vec<WorkerSpec>, Vec<Partition>, Vec<Option<u32>>);
        let cases: Vec<Case> = vec![
            (vec![], vec![a.clone()], vec![]),
            (dupw, vec![a.clone(), a.clone()], vec![]),
            (w.clone(), vec![a.clone(), b.clone(), a.clone()], vec![]),
            (w.clone(), vec![a.clone(), b.clone()], vec![Some(0)]),
            (
                w.clone(),
                vec![a.clone(), b.clone()],
                vec![Some(0), Some(3)],
            ),
            (w.clone(), vec![a.clone(), b.clone()], vec![Some(0), None]),
        ];
        for (workers, partitions, previous) in cases {
            let input = AssignmentInput {
                workers: &workers,
                partitions: &partitions,
                previous: &previous,
            };
            let ours = prepare(&input, 0).map(|_| ());
            assert_eq!(ours, validate_input(&input));
        }
    }

    #[test]
    fn huge_weights_are_scaled_without_overflow() {
        let parts: Vec<Partition> = (0..1000)
            .map(|i| Partition::new([format!("p{i}")]).with_weight(u64::MAX - i))
            .collect();
        let workers = ws(2);
        let prep = |parts: &[Partition]| {
            prepare(
                &AssignmentInput {
                    workers: &workers,
                    partitions: parts,
                    previous: &[],
                },
                0,
            )
            .unwrap()
        };
        let w = normalized_weights(&prep(&parts), &parts);
        assert!(w.total < (1u64 << 63));
        assert!(w.w.iter().all(|&x| x > 0));
        let zeros: Vec<Partition> = (0..3)
            .map(|i| Partition::new([format!("p{i}")]).with_weight(0))
            .collect();
        assert_eq!(normalized_weights(&prep(&zeros), &zeros).total, 3);
    }
}
