//! Per-worker lists of the partitions a worker may give away, sorted by weight
//! (lazily, the first time a worker's list is searched, since a rebalance
//! usually touches few workers), with O(α) removal and "smallest at least x" /
//! "largest at most y" queries.

use crate::prep::Prepared;
use crate::sort::group_stable;

/// Owner rank meaning "no owner".
pub(crate) const NONE: u32 = u32::MAX;

/// The partitions of every worker, each worker's slice sorted by (weight,
/// canonical position) before it is first searched. Removed entries are skipped
/// with two union-find arrays.
pub(crate) struct Lists {
    /// Partitions (canonical positions).
    pub items: Vec<u32>,
    /// Start of each worker's slice (`workers + 1` entries).
    starts: Vec<u32>,
    /// Whether each worker's slice is sorted yet.
    sorted: Vec<bool>,
    /// `left[q + 1]`: towards the nearest live entry at or before `q` (index 0 is
    /// a sentinel).
    left: Vec<u32>,
    /// `right[q + 1]`: towards the nearest live entry at or after `q` (the last
    /// index is a sentinel).
    right: Vec<u32>,
}

fn find(link: &mut [u32], mut x: u32) -> u32 {
    loop {
        let a = link[x as usize];
        if a == x {
            return x;
        }
        let b = link[a as usize];
        link[x as usize] = b;
        x = b;
    }
}

impl Lists {
    /// Lists the partitions that currently have an owner.
    pub fn build(prep: &Prepared, owner: &[u32]) -> Lists {
        let order: Vec<u32> = (0..prep.partitions() as u32)
            .filter(|&k| owner[k as usize] != NONE)
            .collect();
        let (items, starts) = group_stable(&order, prep.workers(), |k| owner[k as usize] as usize);
        drop(order);
        let links: Vec<u32> = (0..items.len() as u32 + 2).collect();
        Lists {
            items,
            starts,
            sorted: vec![false; prep.workers()],
            left: links.clone(),
            right: links,
        }
    }

    /// The slice of `worker`, sorted by (weight, position) on first use (before
    /// any of its entries can have been removed).
    fn range(&mut self, w: &[u64], worker: u32) -> (usize, usize) {
        let (a, b) = (
            self.starts[worker as usize] as usize,
            self.starts[worker as usize + 1] as usize,
        );
        if !self.sorted[worker as usize] {
            self.sorted[worker as usize] = true;
            self.items[a..b].sort_unstable_by_key(|&k| (w[k as usize], k));
        }
        (a, b)
    }

    /// The live entry of `worker` with the smallest weight `>= x` (`w`: weights
    /// by canonical position).
    pub fn smallest_at_least(&mut self, w: &[u64], worker: u32, x: u64) -> Option<usize> {
        let (a, b) = self.range(w, worker);
        let q = a + self.items[a..b].partition_point(|&k| w[k as usize] < x);
        let live = find(&mut self.right, q as u32 + 1) as usize - 1;
        (live < b).then_some(live)
    }

    /// The live entry of `worker` with the largest weight in `1..=y` (`w`:
    /// weights by canonical position).
    pub fn largest_at_most(&mut self, w: &[u64], worker: u32, y: u64) -> Option<usize> {
        if y == 0 {
            return None;
        }
        let (a, b) = self.range(w, worker);
        let q = a + self.items[a..b].partition_point(|&k| w[k as usize] <= y);
        // Entry q - 1 has uf index q.
        let live = find(&mut self.left, q as u32) as usize;
        (live > a && w[self.items[live - 1] as usize] > 0).then(|| live - 1)
    }

    /// Removes entry `q`.
    pub fn remove(&mut self, q: usize) {
        self.left[q + 1] = q as u32;
        self.right[q + 1] = q as u32 + 2;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::prep::prepare;
    use parti_core::{AssignmentInput, Partition, WorkerId, WorkerSpec};

    #[test]
    fn queries_skip_removed_entries() {
        let workers: Vec<WorkerSpec> = (0..2)
            .map(|i| WorkerSpec::new(WorkerId::new("w", i)))
            .collect();
        let weights = [5u64, 1, 3, 3, 0, 8, 2];
        let parts: Vec<Partition> = weights
            .iter()
            .enumerate()
            .map(|(i, &w)| Partition::new([format!("p{i}")]).with_weight(w))
            .collect();
        let input = AssignmentInput {
            workers: &workers,
            partitions: &parts,
            previous: &[],
        };
        let prep = prepare(&input, 0).unwrap();
        let by_k: Vec<u64> = prep
            .keyed
            .iter()
            .map(|&(_, i)| weights[i as usize])
            .collect();
        let w = by_k;
        // Worker 0 owns everything but p6, which worker 1 owns.
        let owner: Vec<u32> = prep.keyed.iter().map(|&(_, i)| u32::from(i == 6)).collect();
        let mut lists = Lists::build(&prep, &owner);
        let wt = |l: &Lists, q: Option<usize>| q.map(|q| w[l.items[q] as usize]);
        let q = lists.smallest_at_least(&w, 0, 4);
        assert_eq!(wt(&lists, q), Some(5));
        lists.remove(q.unwrap());
        let q = lists.smallest_at_least(&w, 0, 4);
        assert_eq!(wt(&lists, q), Some(8));
        lists.remove(q.unwrap());
        assert_eq!(lists.smallest_at_least(&w, 0, 4), None);
        let q = lists.largest_at_most(&w, 0, 100);
        assert_eq!(wt(&lists, q), Some(3));
        lists.remove(q.unwrap());
        let q = lists.largest_at_most(&w, 0, 100);
        assert_eq!(wt(&lists, q), Some(3));
        lists.remove(q.unwrap());
        let q = lists.largest_at_most(&w, 0, 100);
        assert_eq!(wt(&lists, q), Some(1));
        lists.remove(q.unwrap());
        // Only the zero-weight entry is left, and it is never offered.
        assert_eq!(lists.largest_at_most(&w, 0, 100), None);
        let q = lists.largest_at_most(&w, 1, 2);
        assert_eq!(wt(&lists, q), Some(2));
        assert_eq!(lists.largest_at_most(&w, 1, 1), None);
    }
}
