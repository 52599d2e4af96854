//! Sorting helpers for the hot paths: a bucket sort for uniformly distributed
//! 64-bit hashes, and a stable counting sort into groups.
//!
//! Both are O(n) on the inputs the strategies see; the hash sort falls back to
//! comparison sorts inside crowded buckets, so adversarial inputs cost
//! O(n log n), never more.

use std::cmp::Ordering;

/// Sorts `(hash, payload)` pairs by hash, breaking ties with `tie(payload_a,
/// payload_b)`, in place. Expected O(n) for uniformly distributed hashes: an
/// in-place counting sort (American flag sort) on the top 8 bits, then inside
/// each of those buckets a counting sort on the next bits through a small
/// scratch buffer and an insertion sort that only moves items inside their
/// (small) sub-buckets. Crowded sub-buckets (equal or crafted hashes) are sorted
/// by comparison, so the worst case is O(n log n).
pub(crate) fn sort_hashed<F>(items: &mut [(u64, u32)], mut tie: F)
where
    F: FnMut(u32, u32) -> Ordering,
{
    let n = items.len();
    let mut cmp = |a: &(u64, u32), b: &(u64, u32)| a.0.cmp(&b.0).then_with(|| tie(a.1, b.1));
    if n < 256 {
        items.sort_unstable_by(&mut cmp);
        return;
    }
    let top = |item: &(u64, u32)| (item.0 >> 56) as usize;
    let mut starts = [0usize; 257];
    for item in items.iter() {
        starts[top(item) + 1] += 1;
    }
    for b in 0..256 {
        starts[b + 1] += starts[b];
    }
    // American flag sort: cycle every item into its bucket.
    let mut next = starts;
    for b in 0..256 {
        while next[b] < starts[b + 1] {
            let mut item = items[next[b]];
            loop {
                let d = top(&item);
                if d == b {
                    break;
                }
                std::mem::swap(&mut item, &mut items[next[d]]);
                next[d] += 1;
            }
            items[next[b]] = item;
            next[b] += 1;
        }
    }
    let largest = (0..256)
        .map(|b| starts[b + 1] - starts[b])
        .max()
        .unwrap_or(0);
    let mut scratch: Vec<(u64, u32)> = Vec::with_capacity(largest);
    let mut sub: Vec<u32> = Vec::new();
    for b in 0..256 {
        let bucket = &mut items[starts[b]..starts[b + 1]];
        let m = bucket.len();
        if m > 64 {
            let bits = (usize::BITS - m.leading_zeros() - 1).min(16);
            let shift = 56 - bits;
            let mask = (1u64 << bits) - 1;
            let slot = |item: &(u64, u32)| ((item.0 >> shift) & mask) as usize;
            sub.clear();
            sub.resize((1 << bits) + 1, 0);
            for item in bucket.iter() {
                sub[slot(item) + 1] += 1;
            }
            for s in 0..(1usize << bits) {
                sub[s + 1] += sub[s];
            }
            scratch.clear();
            scratch.resize(m, (0, 0));
            for item in bucket.iter() {
                let s = slot(item);
                scratch[sub[s] as usize] = *item;
                sub[s] += 1;
            }
            bucket.copy_from_slice(&scratch);
            let mut from = 0usize;
            for &end in &sub[..1 << bits] {
                let end = end as usize;
                if end - from > 32 {
                    bucket[from..end].sort_unstable_by(&mut cmp);
                }
                from = end;
            }
        }
        insertion_sort(bucket, &mut cmp);
    }
}

/// Insertion sort, linear on nearly sorted input.
fn insertion_sort<T: Copy>(v: &mut [T], cmp: &mut impl FnMut(&T, &T) -> Ordering) {
    for i in 1..v.len() {
        let item = v[i];
        let mut j = i;
        while j > 0 && cmp(&v[j - 1], &item) == Ordering::Greater {
            v[j] = v[j - 1];
            j -= 1;
        }
        v[j] = item;
    }
}

/// Groups `order` stably by `group(order[i]) < groups` (a counting sort).
/// Returns the grouped indices and the start offset of each group
/// (`groups + 1` entries).
pub(crate) fn group_stable(
    order: &[u32],
    groups: usize,
    mut group: impl FnMut(u32) -> usize,
) -> (Vec<u32>, Vec<u32>) {
    let mut starts = vec![0u32; groups + 1];
    for &i in order {
        starts[group(i) + 1] += 1;
    }
    for g in 0..groups {
        starts[g + 1] += starts[g];
    }
    let mut fill = starts.clone();
    let mut out = vec![0u32; order.len()];
    for &i in order {
        let g = group(i);
        out[fill[g] as usize] = i;
        fill[g] += 1;
    }
    (out, starts)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn splitmix(state: &mut u64) -> u64 {
        *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = *state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    #[test]
    fn sort_hashed_matches_std_sort() {
        let mut s = 7;
        for n in [0usize, 1, 5, 255, 256, 1000, 5000] {
            let mut items: Vec<(u64, u32)> = (0..n as u32)
                .map(|i| (splitmix(&mut s) % 5000, i))
                .collect();
            // Skewed keys (many equal top bits) too.
            if n > 10 {
                items[3].0 = u64::MAX;
                items[4].0 = u64::MAX;
            }
            let mut expected = items.clone();
            expected.sort_unstable();
            sort_hashed(&mut items, |a: u32, b: u32| a.cmp(&b));
            assert_eq!(items, expected);
        }
    }

    #[test]
    fn group_is_stable() {
        let order = [5u32, 1, 4, 2, 3, 0];
        let (out, starts) = group_stable(&order, 2, |i| (i % 2) as usize);
        assert_eq!(out, vec![4, 2, 0, 5, 1, 3]);
        assert_eq!(starts, vec![0, 3, 6]);
    }
}
