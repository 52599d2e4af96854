//! Which ID to claim next in a round chosen from the roster. In order: the
//! preferred ID; the ID held last, when the roster shows it free; IDs whose
//! records are this process's own earlier claims (taken back with a
//! compare-and-set); then a free ID, drawn at random among the lowest free
//! IDs of the range; then IDs the roster shows taken (a create succeeds only
//! if the key went away meanwhile), lowest first. IDs the round already
//! tried are skipped.
//!
//! The draw spreads workers that start together over the range: tried
//! lowest-first, N of them would all race for the same ID, N − 1 would fail,
//! then N − 2 for the next one, and so on (O(N²) failed creates). The draw's
//! window (how many of the lowest free IDs it picks among) starts at one ID,
//! so a worker alone gets the lowest free ID as it always did. After a
//! failed draw it follows the competition: if every ID of the window was
//! taken meanwhile, more workers compete than it holds, and it doubles; if
//! only `k` of its `w` IDs were, about `r` workers drew, where `k` is how
//! many of `w` bins `r` random throws fill (`w·(1 − (1 − 1/w)^r) = k`), and
//! `r − k` of them (this one among them) are still looking: the window
//! becomes that many. So the window grows to the number of workers
//! competing and shrinks as they find IDs, which keeps the IDs of a group
//! started together compact (a window far wider than the competition would
//! scatter the last workers over the range and leave holes below them).
//! The randomness comes from the worker's instance id, so a simulation
//! replays exactly.

use super::super::planted::PlantedBug;
use super::Membership;
use crate::config::Config;
use crate::ids::{InstanceId, WorkerId};
use crate::roster::Roster;
use std::collections::BTreeSet;

/// The window of the free-ID draw and the random numbers behind it.
#[derive(Debug)]
pub(super) struct Draw {
    /// SplitMix64 state, seeded from the process's instance id.
    state: u64,
    /// How many of the lowest free IDs the next draw picks among (≥ 1).
    window: u32,
    /// The IDs the last draw picked among (empty if the current candidate
    /// was not drawn).
    last: Vec<u32>,
}

impl Draw {
    /// A draw seeded from `instance`, with a window of one ID.
    pub(super) fn new(instance: InstanceId) -> Self {
        Draw {
            state: instance.0 ^ 0x5DEE_CE66_D1CE_4E5B,
            window: 1,
            last: Vec::new(),
        }
    }

    /// The window in use.
    pub(super) fn window(&self) -> u32 {
        self.window
    }

    /// Back to a window of one ID (a claim succeeded, or a new claim starts).
    pub(super) fn narrow(&mut self) {
        self.window = 1;
        self.last.clear();
    }

    /// The claim of `failed` was not won. If it was drawn, the window
    /// follows the competition seen in the last draw's IDs (`taken`: whether
    /// the roster shows an ID held now), up to `range` IDs.
    pub(super) fn failed(&mut self, failed: u32, taken: impl Fn(u32) -> bool, range: u32) {
        let last = std::mem::take(&mut self.last);
        if !last.contains(&failed) {
            return;
        }
        let w = last.len();
        let k = last.iter().filter(|&&n| n == failed || taken(n)).count();
        let next = if k >= w {
            (w as u64).saturating_mul(2)
        } else {
            still_looking(w, k)
        };
        self.window = u32::try_from(next)
            .unwrap_or(u32::MAX)
            .clamp(1, range.max(1));
    }

    /// Picks one of `free` (not empty) and remembers them.
    fn pick(&mut self, free: Vec<u32>) -> u32 {
        let i = if free.len() == 1 {
            0
        } else {
            self.below(free.len())
        };
        let n = free[i];
        self.last = free;
        n
    }

    /// Uniform in `0..n` (`n` ≥ 1).
    fn below(&mut self, n: usize) -> usize {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        ((u128::from(z) * n as u128) >> 64) as usize
    }
}

/// Of the workers that drew among `w` IDs and filled `k < w` of them, how
/// many are still looking: `r − k`, where `r` random draws fill `k` of `w`
/// IDs on average (`r = ln(1 − k/w) / ln(1 − 1/w)`), at least one (the
/// worker asking).
fn still_looking(w: usize, k: usize) -> u64 {
    if w < 2 {
        return 1;
    }
    let (w, k) = (w as f64, k as f64);
    let drew = (1.0 - k / w).ln() / (1.0 - 1.0 / w).ln();
    ((drew - k).ceil() as u64).max(1)
}

impl Membership {
    /// The next ID of a roster round that has already tried `tried`; `None`
    /// when every ID of the range was tried.
    pub(super) fn next_candidate(
        &mut self,
        config: &Config,
        roster: &Roster,
        tried: &BTreeSet<u32>,
    ) -> Option<u32> {
        self.draw.last.clear();
        let blind = self.planted.has(PlantedBug::BlindClaim);
        let in_range = |n: &u32| (config.worker_id_min..=config.worker_id_max).contains(n);
        let untried = |n: &u32| in_range(n) && !tried.contains(n);
        if let Some(p) = config.preferred_worker_id.filter(untried) {
            return Some(p);
        }
        // The IDs the roster shows a record for, and which of them are this
        // process's own earlier claims (a planted blind claim sees every ID
        // as free).
        let prefix = &config.worker_id_prefix;
        let mut taken = BTreeSet::new();
        let mut own = BTreeSet::new();
        if !blind {
            for (id, view) in roster.members() {
                let Some(n) = id.index(prefix).filter(in_range) else {
                    continue;
                };
                taken.insert(n);
                if self.is_mine(view.record.instance) {
                    own.insert(n);
                }
            }
        }
        let previous = self.previous.as_ref().and_then(|id| id.index(prefix));
        if let Some(n) = previous.filter(|n| untried(n) && !taken.contains(n) && !blind) {
            return Some(n);
        }
        if let Some(&n) = own.iter().find(|n| untried(n)) {
            return Some(n);
        }
        let window = self.draw.window() as usize;
        let free: Vec<u32> = (config.worker_id_min..=config.worker_id_max)
            .filter(|n| !tried.contains(n) && !taken.contains(n))
            .take(window)
            .collect();
        if !free.is_empty() {
            return Some(self.draw.pick(free));
        }
        taken.into_iter().find(|n| untried(n))
    }

    /// Whether `id` is recorded in `roster` by another process than this one.
    pub(super) fn held_by_another(&self, roster: &Roster, id: &WorkerId) -> bool {
        roster
            .get(id)
            .is_some_and(|v| !self.is_mine(v.record.instance))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_window_doubles_when_every_id_of_it_was_taken() {
        let mut d = Draw::new(InstanceId(1));
        assert_eq!(d.window(), 1);
        assert_eq!(d.pick(vec![0]), 0);
        d.failed(0, |_| false, 100);
        assert_eq!(d.window(), 2);
        let n = d.pick(vec![1, 2]);
        d.failed(n, |_| true, 100);
        assert_eq!(d.window(), 4);
        let n = d.pick((0..64).collect());
        d.failed(n, |_| true, 100);
        assert_eq!(d.window(), 100, "capped by the range");
        d.narrow();
        assert_eq!(d.window(), 1);
    }

    #[test]
    fn the_window_shrinks_to_the_workers_still_looking() {
        let mut d = Draw::new(InstanceId(1));
        // 64 IDs, 4 of them taken (the failed one among them): about 4
        // workers drew, so hardly anyone else is still looking.
        d.pick((100..164).collect());
        d.failed(101, |m| m < 104, 1_000);
        assert_eq!(d.window(), 1);
        // 32 of 64 taken: about 44 drew, 12 are still looking.
        d.pick((0..64).collect());
        d.failed(5, |m| m < 32, 1_000);
        assert!((11..=13).contains(&d.window()), "{}", d.window());
        // A candidate that was not drawn leaves the window alone.
        d.failed(5_000, |_| true, 1_000);
        assert!((11..=13).contains(&d.window()), "{}", d.window());
    }

    #[test]
    fn draws_are_uniform_enough_and_replay() {
        let mut a = Draw::new(InstanceId(42));
        let mut b = Draw::new(InstanceId(42));
        let mut counts = [0u32; 8];
        for _ in 0..8_000 {
            let x = a.below(8);
            assert_eq!(x, b.below(8));
            counts[x] += 1;
        }
        assert!(
            counts.iter().all(|&c| (800..1_200).contains(&c)),
            "{counts:?}"
        );
        let mut c = Draw::new(InstanceId(43));
        let differs = (0..16).any(|_| a.below(1_000) != c.below(1_000));
        assert!(differs, "two instances draw the same sequence");
    }
}
