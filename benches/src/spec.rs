//! The inputs of docs/benchmark-spec.md, exactly.

use parti_core::{Partition, WorkerId, WorkerSpec};
use std::fmt;

/// The `(partitions, workers)` sizes of the spec.
pub const SIZES: [(usize, usize); 3] = [(1_000, 10), (10_000, 100), (100_000, 1_000)];

/// SplitMix64 as the spec writes it (all arithmetic wrapping).
#[derive(Clone, Debug)]
pub struct SplitMix64 {
    state: u64,
}

impl SplitMix64 {
    /// A generator with the given state.
    pub fn new(seed: u64) -> Self {
        SplitMix64 { state: seed }
    }

    /// The next output.
    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

/// The spec's skewed weights: lognormal, median 100, sigma 1, from SplitMix64
/// seeded with 42 (Box–Muller on two draws per weight). Prefix-stable.
pub fn skewed_weights(p: usize) -> Vec<u64> {
    let mut rng = SplitMix64::new(42);
    let two53 = (1u64 << 53) as f64;
    (0..p)
        .map(|_| {
            let a = rng.next_u64();
            let b = rng.next_u64();
            let u1 = ((a >> 11) + 1) as f64 / two53;
            let u2 = (b >> 11) as f64 / two53;
            let z = (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos();
            // f64::round rounds half away from zero.
            ((100.0 * z.exp()).round() as u64).max(1)
        })
        .collect()
}

/// The weight distribution of a cell.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Weights {
    /// Every weight is 100.
    Uniform,
    /// [`skewed_weights`].
    Skewed,
}

impl Weights {
    /// Both, in report order.
    pub const ALL: [Weights; 2] = [Weights::Uniform, Weights::Skewed];

    /// The name used in the report (`uniform`, `skewed`).
    pub fn name(self) -> &'static str {
        match self {
            Weights::Uniform => "uniform",
            Weights::Skewed => "skewed",
        }
    }
}

impl fmt::Display for Weights {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// `P` partitions with keys `["topic", "p-<i>"]` and the given weights.
pub fn partitions(p: usize, weights: Weights) -> Vec<Partition> {
    let w = match weights {
        Weights::Uniform => vec![100; p],
        Weights::Skewed => skewed_weights(p),
    };
    w.into_iter()
        .enumerate()
        .map(|(i, w)| Partition::new(["topic".to_string(), format!("p-{i}")]).with_weight(w))
        .collect()
}

/// `worker-0 … worker-<w-1>`, in that order, capacity 1.
pub fn workers(w: usize) -> Vec<WorkerSpec> {
    (0..w as u32)
        .map(|i| WorkerSpec::new(WorkerId::new("worker", i)))
        .collect()
}

/// The scale-up list: [`workers`]`(w)` with `worker-<w>` appended.
pub fn scale_up(w: usize) -> Vec<WorkerSpec> {
    workers(w + 1)
}

/// The remove-one list: [`workers`]`(w)` without `worker-<w/2>`.
pub fn remove_one(w: usize) -> Vec<WorkerSpec> {
    let mut list = workers(w);
    list.remove(w / 2);
    list
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn skewed_check_values() {
        assert_eq!(
            skewed_weights(10),
            vec![151, 41, 564, 173, 34, 17, 32, 130, 12, 44]
        );
        let big = skewed_weights(100_000);
        assert_eq!(big.iter().sum::<u64>(), 16_471_285);
        assert_eq!(big.iter().min(), Some(&2));
        assert_eq!(big.iter().max(), Some(&10_067));
        // Prefix-stable.
        assert_eq!(&big[..10], &skewed_weights(10)[..]);
    }

    #[test]
    fn worker_lists() {
        let r = remove_one(10);
        assert_eq!(r.len(), 9);
        assert!(r.iter().all(|w| w.id.as_str() != "worker-5"));
        assert_eq!(
            scale_up(10).last().map(|w| w.id.as_str().to_string()),
            Some("worker-10".into())
        );
        let p = partitions(3, Weights::Uniform);
        assert_eq!(p[2].keys, vec!["topic".to_string(), "p-2".to_string()]);
        assert_eq!(p[2].weight, 100);
    }
}
