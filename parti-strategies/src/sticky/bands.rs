//! The load bounds Sticky works with, per worker rank: the band every worker
//! must end in, and the half band a worker that was far outside it is brought
//! into.
//!
//! **Why a second, narrower band.** Sticky moves as little as the band allows,
//! so a worker it had to fill (a newcomer) or drain ends exactly on the band's
//! edge. The band follows the share, and the share moves with every change of
//! membership: when a worker leaves, every share grows by `1 / (W − 1)`, the
//! lower edge rises with it, and each worker sitting on that edge falls
//! below it by a fraction of a partition. The departed worker's partitions
//! lift some of them back; every other one takes a partition from a donor, a
//! move that only exists because of the edge. A hundred or more workers on
//! the edge, as a scale-up of that many leaves them, made a graceful stop
//! move 2–3 × its optimum. A worker more than a band's width outside the band
//! is therefore moved to the half band, like the cold start's placement:
//! later changes of the share leave it inside. A worker just outside the band
//! still gets just enough.
//!
//! **Feasibility.** Rounded to whole weight units, `(1 ± t) · share` can leave
//! every worker's band short of the share itself (a share of 10.2 unit-weight
//! partitions at ±5 % rounds to `[10, 10]`), so the loads cannot all fit and
//! the workers above the upper edge shed partitions only for them to land on
//! another worker above its edge. The band always holds `⌊share⌋..⌈share⌉`.

use crate::prep::{Prepared, Weights, load_bounds, lower_bounds, upper_bounds};

/// Per-worker load bounds (by rank), with `lo ≤ bottom ≤ top ≤ hi`.
pub(crate) struct Bands {
    /// Most a worker may carry: `(1 + t)` × its share, at least `⌈share⌉`.
    pub hi: Vec<u64>,
    /// Least a worker should carry: `(1 − t)` × its share, at most `⌊share⌋`.
    pub lo: Vec<u64>,
    /// Where a worker far above `hi` is drained to: the upper edge of the
    /// half band.
    pub top: Vec<u64>,
    /// Where a worker far under `lo` is filled to: the lower edge of the
    /// half band.
    pub bottom: Vec<u64>,
}

impl Bands {
    /// The band of tolerance `band_ppm` and the half band of `half_ppm`
    /// (`half_ppm ≤ band_ppm`; equal, the half band is the band).
    pub fn new(prep: &Prepared, weights: &Weights, band_ppm: u64, half_ppm: u64) -> Bands {
        let floor_share = load_bounds(prep, weights.total, 0, true);
        let ceil_share = load_bounds(prep, weights.total, 0, false);
        let widen = |mut up: Vec<u64>, mut down: Vec<u64>| {
            for (h, &c) in up.iter_mut().zip(&ceil_share) {
                *h = (*h).max(c);
            }
            for ((l, &f), &h) in down.iter_mut().zip(&floor_share).zip(&up) {
                *l = (*l).min(f).min(h);
            }
            (up, down)
        };
        let hi = upper_bounds(prep, weights, band_ppm);
        let lo = lower_bounds(prep, weights, band_ppm, &hi);
        let (hi, lo) = widen(hi, lo);
        let top = upper_bounds(prep, weights, half_ppm.min(band_ppm));
        let bottom = lower_bounds(prep, weights, half_ppm.min(band_ppm), &top);
        let (mut top, mut bottom) = widen(top, bottom);
        for j in 0..hi.len() {
            top[j] = top[j].min(hi[j]);
            bottom[j] = bottom[j].clamp(lo[j], top[j]);
        }
        Bands {
            hi,
            lo,
            top,
            bottom,
        }
    }

    /// Whether `load` is more than the band's width under the band of `j`:
    /// such a worker is filled to `bottom`, not just to `lo`.
    pub fn far_under(&self, j: usize, load: u64) -> bool {
        load < self.lo[j] && self.lo[j] - load >= self.hi[j] - self.lo[j]
    }

    /// Whether `load` is more than the band's width over the band of `j`:
    /// such a worker is drained to `top`, not just to `hi`.
    pub fn far_over(&self, j: usize, load: u64) -> bool {
        load > self.hi[j] && load - self.hi[j] >= self.hi[j] - self.lo[j]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::prep::{normalized_weights, prepare};
    use parti_core::{AssignmentInput, Partition, WorkerId, WorkerSpec};

    fn bands(workers: u32, partitions: usize, band: u64, half: u64) -> Bands {
        let ws: Vec<WorkerSpec> = (0..workers)
            .map(|i| WorkerSpec::new(WorkerId::new("w", i)))
            .collect();
        let parts: Vec<Partition> = (0..partitions)
            .map(|i| Partition::new([format!("p{i}")]))
            .collect();
        let input = AssignmentInput {
            workers: &ws,
            partitions: &parts,
            previous: &[],
        };
        let prep = prepare(&input, 0).unwrap();
        let weights = normalized_weights(&prep, &parts);
        Bands::new(&prep, &weights, band, half)
    }

    #[test]
    fn the_band_always_holds_the_share() {
        // 1020 / 100 = 10.2: ±5 % rounds to [10, 10], which holds 1000.
        let b = bands(100, 1020, 50_000, 25_000);
        assert_eq!((b.lo[0], b.bottom[0], b.top[0], b.hi[0]), (10, 10, 11, 11));
        // 1090 / 100 = 10.9: the lower edge ⌈10.355⌉ = 11 would hold 1100.
        let b = bands(100, 1090, 50_000, 25_000);
        assert_eq!((b.lo[0], b.hi[0]), (10, 11));
    }

    #[test]
    fn the_half_band_sits_inside_the_band() {
        // 100000 / 999 = 100.1: band [96, 105], half band [98, 102].
        let b = bands(999, 100_000, 50_000, 25_000);
        assert_eq!(
            (b.lo[0], b.bottom[0], b.top[0], b.hi[0]),
            (96, 98, 102, 105)
        );
        assert!(b.far_under(0, 0) && b.far_under(0, 87) && !b.far_under(0, 88));
        assert!(!b.far_under(0, 96) && !b.far_under(0, 95));
        assert!(b.far_over(0, 114) && !b.far_over(0, 113) && !b.far_over(0, 105));
        // Equal tolerances: the half band is the band.
        let b = bands(999, 100_000, 25_000, 25_000);
        assert_eq!(
            (b.lo[0], b.bottom[0], b.top[0], b.hi[0]),
            (98, 98, 102, 102)
        );
    }
}
