//! The imbalance threshold: when only the partition list changed, keep every
//! existing partition where it is, put new ones on the least-loaded workers, and
//! accept the result if it is within the threshold; otherwise ask the strategy.

use crate::ids::WorkerId;
use crate::partition::{Partition, PartitionId};
use crate::strategy::WorkerSpec;
use std::collections::BTreeMap;

/// Imbalance of an assignment: the largest `load / fair share` minus one, where
/// the fair share is proportional to capacity (0 when nothing is assigned).
pub(crate) fn imbalance(
    workers: &[WorkerSpec],
    partitions: &BTreeMap<PartitionId, Partition>,
    owners: &BTreeMap<PartitionId, WorkerId>,
) -> f64 {
    let total_cap: u64 = workers.iter().map(WorkerSpec::effective_capacity).sum();
    let mut load: BTreeMap<&WorkerId, u128> = workers.iter().map(|w| (&w.id, 0u128)).collect();
    let mut total: u128 = 0;
    for (p, w) in owners {
        let weight = partitions.get(p).map_or(0, |p| u128::from(p.weight.max(1)));
        total += weight;
        if let Some(l) = load.get_mut(w) {
            *l += weight;
        }
    }
    if total == 0 || total_cap == 0 {
        return 0.0;
    }
    workers
        .iter()
        .map(|w| {
            let fair = total as f64 * w.effective_capacity() as f64 / total_cap as f64;
            load.get(&w.id).copied().unwrap_or(0) as f64 / fair - 1.0
        })
        .fold(0.0, f64::max)
}

/// Keeps current owners of existing partitions that are still owned by one of
/// `workers`, and places every other partition on the worker with the lowest
/// load relative to capacity (ties by ID). Returns `None` if some existing
/// partition's owner is not among `workers` (a membership change, not a refresh).
pub(crate) fn minimal_placement(
    workers: &[WorkerSpec],
    partitions: &BTreeMap<PartitionId, Partition>,
    current: &BTreeMap<PartitionId, WorkerId>,
) -> Option<BTreeMap<PartitionId, WorkerId>> {
    if workers.is_empty() {
        return None;
    }
    let index: BTreeMap<&WorkerId, usize> = workers
        .iter()
        .enumerate()
        .map(|(i, w)| (&w.id, i))
        .collect();
    let mut load = vec![0u128; workers.len()];
    let mut owners = BTreeMap::new();
    let mut fresh = Vec::new();
    for (id, p) in partitions {
        match current.get(id) {
            Some(w) => {
                let i = *index.get(w)?;
                load[i] += u128::from(p.weight.max(1));
                owners.insert(*id, w.clone());
            }
            None => fresh.push((id, p)),
        }
    }
    // Heaviest first, then by ID, for a deterministic greedy fill.
    fresh.sort_by(|a, b| b.1.weight.cmp(&a.1.weight).then(a.0.cmp(b.0)));
    for (id, p) in fresh {
        let best = (0..workers.len())
            .min_by(|&a, &b| {
                let la = load[a] * u128::from(workers[b].effective_capacity());
                let lb = load[b] * u128::from(workers[a].effective_capacity());
                la.cmp(&lb).then(workers[a].id.cmp(&workers[b].id))
            })
            .unwrap_or(0);
        load[best] += u128::from(p.weight.max(1));
        owners.insert(*id, workers[best].id.clone());
    }
    Some(owners)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn new_partitions_go_to_the_least_loaded() {
        let w: Vec<WorkerSpec> = (0..2)
            .map(|i| WorkerSpec::new(WorkerId::new("w", i)))
            .collect();
        let parts: BTreeMap<PartitionId, Partition> = (0..4)
            .map(|i| Partition::new([format!("p{i}")]))
            .map(|p| (p.id(), p))
            .collect();
        let ids: Vec<PartitionId> = parts.keys().copied().collect();
        let mut current = BTreeMap::new();
        current.insert(ids[0], w[0].id.clone());
        current.insert(ids[1], w[0].id.clone());
        let placed = minimal_placement(&w, &parts, &current).unwrap();
        assert_eq!(placed[&ids[0]], w[0].id);
        assert_eq!(placed[&ids[2]], w[1].id);
        assert_eq!(placed[&ids[3]], w[1].id);
        assert!(imbalance(&w, &parts, &placed).abs() < 1e-9);
        current.insert(ids[2], WorkerId::new("gone", 0));
        assert!(minimal_placement(&w, &parts, &current).is_none());
    }
}
