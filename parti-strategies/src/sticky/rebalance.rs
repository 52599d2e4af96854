//! The sticky repair: from a partial assignment to one where every worker's load
//! is within its band `[lo, hi]`, moving as little as possible (the bands:
//! [`super::bands`]).
//!
//! 1. **Shed.** A worker above `hi` gives away just enough: the lightest single
//!    partition that brings it under its goal without taking it under `lo`,
//!    else its heaviest partition lighter than the excess, repeated. The goal
//!    is `hi`, or the half band's `top` for a worker more than the band's
//!    width above `hi`.
//! 2. **Place the pool** (orphans and shed partitions), heaviest first: to the
//!    worker furthest under its floor if it fits there, else to the worker
//!    with the most room under `hi`, else (it fits nowhere) to the worker
//!    whose relative load it raises least, preferring the partition's previous
//!    owner. A worker's floor is `lo`, or the half band's `bottom` for a worker
//!    that started more than the band's width under `lo` (a newcomer).
//!    Zero-weight orphans go to the worker with the fewest partitions per unit
//!    of capacity.
//! 3. **Fill.** Each worker still under its floor (largest gap first) takes
//!    from the workers with the most load above their own floor: the lightest
//!    partition that closes the gap without taking it over `hi` or the donor
//!    under its floor, else the heaviest one that fits.
//!
//! Each move moves a whole gap's worth where it can, so the count of moved
//! partitions stays near its minimum, and no move overshoots, so the moved
//! weight does too. A worker brought back from far outside its band lands in
//! the half band, so that the next change of the shares does not put it
//! outside again; one just outside gets just enough. All choices are by
//! worker rank and canonical partition order: deterministic and independent
//! of input order.

use super::bands::Bands;
use super::lists::{Lists, NONE};
use crate::bounded_load::least_relative;
use crate::prep::{Prepared, Weights};
use std::cmp::{Ordering, Reverse};
use std::collections::BinaryHeap;

type Heap = BinaryHeap<(u64, Reverse<u32>)>;

/// Pops stale entries (whose key is no longer `current(rank)`, or is 0) and
/// returns the top rank, left in the heap.
fn peek_valid(heap: &mut Heap, current: impl Fn(usize) -> u64) -> Option<u32> {
    while let Some(&(key, Reverse(j))) = heap.peek() {
        if key > 0 && key == current(j as usize) {
            return Some(j);
        }
        heap.pop();
    }
    None
}

/// A worker keyed by partitions per unit of capacity, for zero-weight orphans.
#[derive(PartialEq, Eq)]
struct CountKey {
    count: u64,
    capacity: u64,
    rank: u32,
}

impl Ord for CountKey {
    fn cmp(&self, other: &Self) -> Ordering {
        (u128::from(self.count) * u128::from(other.capacity))
            .cmp(&(u128::from(other.count) * u128::from(self.capacity)))
            .then(self.rank.cmp(&other.rank))
    }
}

impl PartialOrd for CountKey {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// Rebalances `owner` (ranks by canonical position, [`NONE`] for orphans) in
/// place.
pub(crate) fn rebalance(prep: &Prepared, weights: &Weights, owner: &mut [u32], bands: &Bands) {
    let (hi, lo) = (&bands.hi, &bands.lo);
    let nw = prep.workers();
    let w = &weights.w;
    let mut load = vec![0u64; nw];
    let mut pool: Vec<(u32, u32)> = Vec::new(); // (canonical position, previous owner rank)
    for (i, &o) in owner.iter().enumerate() {
        if o == NONE {
            pool.push((i as u32, NONE));
        } else {
            load[o as usize] += w[i];
        }
    }
    let mut lists: Option<Lists> = None;

    // 1. Shed.
    for j in 0..nw {
        if load[j] <= hi[j] {
            continue;
        }
        let l = lists.get_or_insert_with(|| Lists::build(prep, owner));
        let ju = j as u32;
        let goal = if bands.far_over(j, load[j]) {
            bands.top[j]
        } else {
            hi[j]
        };
        while load[j] > goal {
            let need = load[j] - goal;
            let limit = load[j].saturating_sub(lo[j]);
            // Overshooting (a partition heavier than the excess, whatever
            // the floor) only to get under `hi`.
            let over = load[j].saturating_sub(hi[j]);
            let q = l
                .smallest_at_least(w, ju, need)
                .filter(|&q| w[l.items[q] as usize] <= limit)
                .or_else(|| l.largest_at_most(w, ju, need - 1))
                .or_else(|| {
                    (over > 0)
                        .then(|| l.smallest_at_least(w, ju, over))
                        .flatten()
                });
            let Some(q) = q else { break };
            l.remove(q);
            let i = l.items[q];
            load[j] -= w[i as usize];
            owner[i as usize] = NONE;
            pool.push((i, ju));
        }
    }

    // Each worker's floor: `lo`, or `bottom` for one far under `lo`.
    let floor: Vec<u64> = (0..nw)
        .map(|j| {
            if bands.far_under(j, load[j]) {
                bands.bottom[j]
            } else {
                lo[j]
            }
        })
        .collect();
    let floor = &floor;

    // 2. Place the pool, heaviest first.
    if !pool.is_empty() {
        pool.sort_unstable_by(|a, b| w[b.0 as usize].cmp(&w[a.0 as usize]).then(a.0.cmp(&b.0)));
        let deficit_of = |load: &[u64], j: usize| floor[j].saturating_sub(load[j]);
        let room_of = |load: &[u64], j: usize| hi[j].saturating_sub(load[j]);
        let mut deficits: Heap = (0..nw)
            .filter(|&j| load[j] < floor[j])
            .map(|j| (deficit_of(&load, j), Reverse(j as u32)))
            .collect();
        let mut rooms: Heap = (0..nw)
            .map(|j| (room_of(&load, j), Reverse(j as u32)))
            .collect();
        let zero_from = pool.partition_point(|&(i, _)| w[i as usize] > 0);
        for &(i, from) in &pool[..zero_from] {
            let wi = w[i as usize];
            let fits = |load: &[u64], j: u32| wi <= room_of(load, j as usize);
            let dest = match peek_valid(&mut deficits, |j| deficit_of(&load, j)) {
                Some(r) if fits(&load, r) => r,
                _ => match peek_valid(&mut rooms, |j| room_of(&load, j)) {
                    Some(k) if fits(&load, k) => k,
                    _ => least_relative(&load, &prep.capacity, wi, (from != NONE).then_some(from)),
                },
            };
            let d = dest as usize;
            owner[i as usize] = dest;
            load[d] += wi;
            if load[d] < floor[d] {
                deficits.push((deficit_of(&load, d), Reverse(dest)));
            }
            rooms.push((room_of(&load, d), Reverse(dest)));
        }
        if zero_from < pool.len() {
            let mut count = vec![0u64; nw];
            for &o in owner.iter().filter(|&&o| o != NONE) {
                count[o as usize] += 1;
            }
            let mut heap: BinaryHeap<Reverse<CountKey>> = (0..nw)
                .map(|j| {
                    Reverse(CountKey {
                        count: count[j],
                        capacity: prep.capacity[j],
                        rank: j as u32,
                    })
                })
                .collect();
            for &(i, _) in &pool[zero_from..] {
                if let Some(Reverse(mut top)) = heap.pop() {
                    owner[i as usize] = top.rank;
                    top.count += 1;
                    heap.push(Reverse(top));
                }
            }
        }
    }

    // 3. Fill the workers still under their floor from the ones above theirs.
    if !(0..nw).any(|j| load[j] < floor[j]) {
        return;
    }
    let l = lists.get_or_insert_with(|| Lists::build(prep, owner));
    let surplus_of = |load: &[u64], j: usize| load[j].saturating_sub(floor[j]);
    let mut receivers: Heap = (0..nw)
        .filter(|&j| load[j] < floor[j])
        .map(|j| (floor[j] - load[j], Reverse(j as u32)))
        .collect();
    let mut donors: Heap = (0..nw)
        .filter(|&j| load[j] > floor[j])
        .map(|j| (load[j] - floor[j], Reverse(j as u32)))
        .collect();
    let mut skipped: Vec<u32> = Vec::new();
    while let Some((_, Reverse(r))) = receivers.pop() {
        let ru = r as usize;
        while load[ru] < floor[ru] {
            let Some(d) = peek_valid(&mut donors, |j| surplus_of(&load, j)) else {
                break;
            };
            donors.pop();
            let du = d as usize;
            let need = floor[ru] - load[ru];
            let limit = surplus_of(&load, du).min(hi[ru].saturating_sub(load[ru]));
            let q = l
                .smallest_at_least(w, d, need)
                .filter(|&q| w[l.items[q] as usize] <= limit)
                .or_else(|| l.largest_at_most(w, d, limit.min(need - 1)));
            match q {
                Some(q) => {
                    l.remove(q);
                    let i = l.items[q] as usize;
                    owner[i] = r;
                    load[du] -= w[i];
                    load[ru] += w[i];
                    if load[du] > floor[du] {
                        donors.push((surplus_of(&load, du), Reverse(d)));
                    }
                }
                None => skipped.push(d),
            }
        }
        for d in skipped.drain(..) {
            donors.push((surplus_of(&load, d as usize), Reverse(d)));
        }
    }
}
