//! Generated inputs: a compact, printable [`CaseSpec`] that proptest draws
//! and shrinks, and that rebuilds the same input exactly.

use parti_core::{Partition, WorkerId, WorkerSpec};
use proptest::prelude::*;

/// How generated partition weights are distributed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WeightKind {
    /// All 1.
    Unit,
    /// Uniform in `1..=1000`.
    Random,
    /// Heavy-tailed: `2^k` for `k` uniform in `0..=12`, times a small factor.
    Skewed,
    /// All 0 (balance by count).
    Zero,
    /// A third are 0, the rest in `1..=100`.
    MixedZero,
    /// Near `u64::MAX / 2^20`.
    Huge,
}

/// How generated worker capacities are distributed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CapacityKind {
    /// All 1.
    Equal,
    /// Each one of 0 (read as 1), 1, 2, 3 or 8.
    Mixed,
}

/// A generated case, compact so that proptest shrinks it quickly.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CaseSpec {
    /// Number of workers (at least 1).
    pub workers: usize,
    /// Number of partitions.
    pub partitions: usize,
    /// Weight distribution.
    pub weights: WeightKind,
    /// Capacity distribution.
    pub capacities: CapacityKind,
    /// Seed of everything else (names, weights, capacities, permutations, which
    /// worker leaves).
    pub seed: u64,
}

/// SplitMix64: small, good enough, reproducible.
pub(super) struct Mix(pub(super) u64);

impl Mix {
    pub(super) fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    pub(super) fn below(&mut self, n: u64) -> u64 {
        if n == 0 { 0 } else { self.next() % n }
    }

    pub(super) fn shuffle<T>(&mut self, v: &mut [T]) {
        for i in (1..v.len()).rev() {
            v.swap(i, self.below(i as u64 + 1) as usize);
        }
    }
}

impl CaseSpec {
    /// Builds the workers and partitions of the case, in a scrambled order.
    pub fn build(&self) -> (Vec<WorkerSpec>, Vec<Partition>) {
        let mut rng = Mix(self.seed);
        // Distinct, irregular worker names.
        let mut ids: Vec<u64> = (0..self.workers as u64)
            .map(|i| i * 7 + rng.below(7))
            .collect();
        rng.shuffle(&mut ids);
        let workers = ids
            .iter()
            .map(|&n| WorkerSpec {
                id: WorkerId::from_name(format!("w{}-{n}", n % 3)),
                capacity: match self.capacities {
                    CapacityKind::Equal => 1,
                    CapacityKind::Mixed => [0, 1, 2, 3, 8][rng.below(5) as usize],
                },
            })
            .collect();
        let mut partitions: Vec<Partition> = (0..self.partitions)
            .map(|i| {
                let keys: Vec<String> = match i % 3 {
                    0 => vec![format!("orders-{i}")],
                    1 => vec!["topic".into(), format!("p-{i}")],
                    _ => vec!["t".into(), format!("{}", i % 7), format!("{i}")],
                };
                let weight = match self.weights {
                    WeightKind::Unit => 1,
                    WeightKind::Random => 1 + rng.below(1000),
                    WeightKind::Skewed => (1 << rng.below(13)) * (1 + rng.below(3)),
                    WeightKind::Zero => 0,
                    WeightKind::MixedZero => {
                        if rng.below(3) == 0 {
                            0
                        } else {
                            1 + rng.below(100)
                        }
                    }
                    WeightKind::Huge => (u64::MAX >> 20) - rng.below(1 << 40),
                };
                Partition {
                    keys: keys.into(),
                    weight,
                }
            })
            .collect();
        rng.shuffle(&mut partitions);
        (workers, partitions)
    }
}

/// Generates [`CaseSpec`]s with up to `max_workers` workers and
/// `max_partitions` partitions.
pub fn case_spec(max_workers: usize, max_partitions: usize) -> impl Strategy<Value = CaseSpec> {
    let sizes = prop_oneof![
        (1..=max_workers.max(1), 0..=max_partitions),
        // Many partitions per worker, where tight balance is possible.
        (
            1..=(max_workers / 5).max(1),
            max_partitions / 2..=max_partitions
        ),
    ];
    (
        sizes,
        prop_oneof![
            3 => Just(WeightKind::Unit),
            3 => Just(WeightKind::Random),
            3 => Just(WeightKind::Skewed),
            1 => Just(WeightKind::Zero),
            1 => Just(WeightKind::MixedZero),
            1 => Just(WeightKind::Huge),
        ],
        prop_oneof![3 => Just(CapacityKind::Equal), 1 => Just(CapacityKind::Mixed)],
        any::<u64>(),
    )
        .prop_map(
            |((workers, partitions), weights, capacities, seed)| CaseSpec {
                workers,
                partitions,
                weights,
                capacities,
                seed,
            },
        )
}
