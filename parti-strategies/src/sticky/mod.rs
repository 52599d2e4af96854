//! The sticky strategy, Parti's default.

mod bands;
mod lists;
mod rebalance;

use crate::bounded_load::{BoundedLoad, DEFAULT_EPSILON};
use crate::prep::{PPM, fraction_to_ppm, normalized_weights, prepare};
use bands::Bands;
use lists::NONE;
use parti_core::{AssignmentInput, AssignmentStrategy, Placement, StrategyError};

/// Sticky assignment: keep what can stay, move the minimum, stay balanced.
/// Parti's default strategy.
///
/// Every worker `j` has a fair share `s_j` of the total partition weight,
/// proportional to its [`parti_core::WorkerSpec::capacity`], and a band
/// `[(1 − t)·s_j, (1 + t)·s_j]` where `t` is the tolerance (default 0.05),
/// rounded to whole weight units but never narrower than `⌊s_j⌋..⌈s_j⌉`.
/// Starting from the previous assignment, Sticky:
///
/// - keeps every partition whose owner is still alive, unless that owner is
///   above its band (then it sheds just enough) or another worker is below its
///   band and this partition is the cheapest way to lift it (a newcomer gets its
///   share this way);
/// - places orphans (new partitions, partitions of departed workers) on the
///   workers below or furthest under their band, heaviest first;
/// - picks what to move so that each move closes a whole gap where one
///   partition can, which keeps both the number of moved partitions and the
///   moved weight close to the minimum the band allows;
/// - brings a worker that was more than the band's width outside its band
///   (a newcomer, a worker far over its share) into the *half band*
///   `[(1 − t/2)·s_j, (1 + t/2)·s_j]` rather than onto the band's edge: the
///   next change of the shares (a worker leaving raises every share by
///   `1 / (W − 1)`) then leaves it inside, instead of asking one more move of
///   every worker on the edge.
///
/// **Guarantees.** Every worker ends within its band whenever the weights allow
/// it (no partition is too heavy to fit the room left); a partition that fits
/// nowhere goes to the worker whose relative load it raises least, which keeps
/// every load below `s_j · (1 + max_weight / min_share)`. A result that is
/// within its bands is a fixed point: given as `previous` with the same
/// workers and partitions it comes back unchanged. Removing a worker moves only
/// its partitions, unless granularity leaves a gap; adding one moves about
/// `(1 − t/2)` of its share, taken from the most loaded workers.
///
/// **Cold start.** With no previous owner at all, Sticky places partitions the
/// way [`BoundedLoad`] does (ring order, first worker clockwise with room) with
/// half the tolerance, except that a partition first looks for a worker still
/// under the lower edge of the half band; then it repairs whatever weights left
/// outside. Its first answer thus sits well inside the band, so that later
/// membership changes move little.
///
/// ```
/// use parti_core::{AssignmentInput, AssignmentStrategy, Partition, WorkerId, WorkerSpec};
/// use parti_strategies::Sticky;
///
/// let mut workers: Vec<WorkerSpec> = (0..4).map(|i| WorkerSpec::new(WorkerId::new("worker", i))).collect();
/// let parts: Vec<Partition> = (0..400).map(|i| Partition::new(["t".to_string(), i.to_string()])).collect();
/// let sticky = Sticky::new().with_tolerance(0.05);
/// let first = sticky.assign(&AssignmentInput { workers: &workers, partitions: &parts, previous: &[] }).unwrap();
///
/// // A fifth worker joins; indices of the first four are unchanged.
/// workers.push(WorkerSpec::new(WorkerId::new("worker", 4)));
/// let previous: Vec<Option<u32>> = first.owners.iter().map(|&o| Some(o)).collect();
/// let second = sticky.assign(&AssignmentInput { workers: &workers, partitions: &parts, previous: &previous }).unwrap();
/// let moved = first.owners.iter().zip(&second.owners).filter(|(a, b)| a != b).count();
/// assert!(moved <= 80, "moved {moved}"); // the newcomer's share is 80
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Sticky {
    tolerance_ppm: u64,
    cold: BoundedLoad,
}

/// Virtual nodes per unit of capacity of the cold-start ring. Sticky's balance
/// comes from its band, not from the ring, and its movement does not depend on
/// the ring at all, so a coarser ring than [`crate::DEFAULT_VNODES`] only makes
/// the cold start cheaper.
pub const COLD_VNODES: u32 = 50;

impl Default for Sticky {
    fn default() -> Self {
        Sticky {
            tolerance_ppm: fraction_to_ppm(DEFAULT_EPSILON, 0),
            cold: BoundedLoad::default().with_vnodes(COLD_VNODES),
        }
    }
}

impl Sticky {
    /// Tolerance 0.05, cold start on a [`COLD_VNODES`]-virtual-node ring with
    /// seed 0.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets the tolerance `t` (`0.05` = every worker within ±5 % of its share),
    /// clamped to `0..=100`; a NaN leaves the current value.
    pub fn with_tolerance(mut self, tolerance: f64) -> Self {
        self.tolerance_ppm = fraction_to_ppm(tolerance, self.tolerance_ppm);
        self
    }

    /// Same as [`Sticky::with_tolerance`] (the name the bounded-load strategy
    /// uses).
    pub fn with_epsilon(self, epsilon: f64) -> Self {
        self.with_tolerance(epsilon)
    }

    /// Sets the virtual nodes per unit of capacity of the cold-start ring.
    pub fn with_vnodes(mut self, vnodes: u32) -> Self {
        self.cold = self.cold.with_vnodes(vnodes);
        self
    }

    /// Sets the hash seed of the cold-start ring and of the tie-breaking order.
    pub fn with_seed(mut self, seed: u64) -> Self {
        self.cold = self.cold.with_seed(seed);
        self
    }

    /// The tolerance as a fraction.
    pub fn tolerance(&self) -> f64 {
        self.tolerance_ppm as f64 / PPM as f64
    }

    /// The cold-start strategy's settings (its own ε is not used: Sticky uses
    /// half its tolerance).
    pub fn cold_start(&self) -> &BoundedLoad {
        &self.cold
    }
}

impl AssignmentStrategy for Sticky {
    fn name(&self) -> &str {
        "sticky"
    }

    fn assign(&self, input: &AssignmentInput<'_>) -> Result<Placement, StrategyError> {
        let prep = prepare(input, self.cold.seed())?;
        if input.partitions.is_empty() {
            return Ok(Placement::default());
        }
        let weights = normalized_weights(&prep, input.partitions);
        let rank_of = prep.rank_of_worker();
        let mut owner: Vec<u32> = if input.has_previous() {
            prep.keyed
                .iter()
                .map(|&(_, i)| {
                    input
                        .previous_owner(i as usize)
                        .map_or(NONE, |w| rank_of[w as usize])
                })
                .collect()
        } else {
            Vec::new()
        };
        let tolerance = if owner.iter().all(|&o| o == NONE) {
            let half = self.tolerance_ppm / 2;
            owner = self
                .cold
                .place_ranks(&prep, &weights, input.workers, half, true);
            half
        } else {
            self.tolerance_ppm
        };
        let bands = Bands::new(&prep, &weights, tolerance, self.tolerance_ppm / 2);
        rebalance::rebalance(&prep, &weights, &mut owner, &bands);
        Ok(Placement {
            owners: prep.to_placement(&owner),
        })
    }
}
