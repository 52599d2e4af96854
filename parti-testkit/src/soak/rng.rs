//! A small seeded random generator (SplitMix64): the whole fault schedule
//! follows from the seed, so a run can be replayed.

use crate::sim::rng::Rng;
use std::time::Duration;

/// The simulator's SplitMix64 generator, with the draws the soak needs.
#[derive(Clone, Debug)]
pub struct SoakRng(Rng);

impl SoakRng {
    /// A generator for `seed`.
    pub fn new(seed: u64) -> Self {
        SoakRng(Rng::new(seed))
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0.next_u64()
    }

    /// A number in `0..n` (0 when `n` is 0).
    pub fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            return 0;
        }
        (self.next_u64() % n as u64) as usize
    }

    /// A duration in `[lo, hi]` at millisecond resolution.
    pub fn duration(&mut self, lo: Duration, hi: Duration) -> Duration {
        let lo_ms = lo.as_millis() as u64;
        let span = (hi.as_millis() as u64).saturating_sub(lo_ms);
        Duration::from_millis(lo_ms + self.next_u64() % (span + 1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_sequence_and_ranges_hold() {
        let mut a = SoakRng::new(42);
        let mut b = SoakRng::new(42);
        for _ in 0..100 {
            assert_eq!(a.next_u64(), b.next_u64());
            assert!(a.below(5) < 5);
            let d = a.duration(Duration::from_secs(1), Duration::from_secs(3));
            assert!(d >= Duration::from_secs(1) && d <= Duration::from_secs(3));
            b.below(5);
            b.duration(Duration::from_secs(1), Duration::from_secs(3));
        }
        assert_eq!(SoakRng::new(1).below(0), 0);
    }
}
