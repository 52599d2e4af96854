//! Who might still hold which partition: the leader's conservative view, from
//! which it decides whether a grant is safe (revoke before grant, S3).
//!
//! A worker might hold a partition when its ownership lease may still be valid
//! and one of the records it may have applied lists it. Concretely:
//! - no member record, or a record saying `stopping`/`leaving`/`evicted`: holds
//!   nothing (the member wrote that after dropping everything, or the leader
//!   evicted it after its lease had certainly expired);
//! - an active member that acknowledged version `u` may hold any partition of
//!   the records of versions ≥ `u` known for it and addressed to its current
//!   claim (it may apply a newer one at any moment); if `u` is not known (a
//!   record from before this leader), it may hold anything. Records addressed to
//!   another claim of the same ID are never applied by it.

use crate::ids::{InstanceId, WorkerId};
use crate::partition::PartitionId;
use crate::records::MemberStatus;
use crate::roster::Roster;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

/// Partition sets of the records the leader knows, per worker and version.
#[derive(Debug, Default)]
pub(crate) struct KnownRecords {
    by_worker: BTreeMap<WorkerId, WorkerRecords>,
}

/// The records known for one worker: the claim last seen, and each version's
/// addressee and partitions.
type WorkerRecords = (Option<InstanceId>, BTreeMap<u64, KnownRecord>);

/// A record's addressee and partitions.
#[derive(Debug, Clone)]
pub(crate) struct KnownRecord {
    instance: InstanceId,
    set: Arc<BTreeSet<PartitionId>>,
}

impl KnownRecords {
    /// Remembers a record.
    pub(crate) fn insert(
        &mut self,
        worker: &WorkerId,
        version: u64,
        instance: InstanceId,
        set: Arc<BTreeSet<PartitionId>>,
    ) {
        let entry = self.by_worker.entry(worker.clone()).or_default();
        entry.1.insert(version, KnownRecord { instance, set });
    }

    /// Drops what can no longer matter: versions older than each member's
    /// acknowledgement, everything of a previous incarnation except `current`.
    pub(crate) fn prune(&mut self, roster: &Roster, current: &BTreeMap<WorkerId, u64>) {
        for (worker, (instance, versions)) in self.by_worker.iter_mut() {
            let Some(view) = roster.get(worker) else {
                continue;
            };
            let keep_current = current.get(worker).copied();
            if instance.is_some_and(|i| i != view.record.instance) {
                versions.retain(|v, _| Some(*v) == keep_current);
            }
            *instance = Some(view.record.instance);
            if let Some(applied) = view.record.applied
                && versions.contains_key(&applied)
            {
                versions.retain(|v, _| *v >= applied || Some(*v) == keep_current);
            }
        }
    }
}

/// The answer to "who might hold p?".
#[derive(Debug, Default)]
pub(crate) struct Holdings {
    anything: BTreeSet<WorkerId>,
    /// (partition, worker) for every partition of every record a worker
    /// may hold, sorted by partition (a worker may appear more than once
    /// for a partition): one vector, sorted once, rather than a map entry
    /// and a list per partition.
    holders: Vec<(PartitionId, WorkerId)>,
}

impl Holdings {
    /// Builds the view from the roster and the known records.
    pub(crate) fn build(
        roster: &Roster,
        known: &KnownRecords,
        current: &BTreeMap<WorkerId, u64>,
    ) -> Self {
        let mut h = Holdings::default();
        for (worker, view) in roster.members() {
            if view.record.status != MemberStatus::Active {
                continue;
            }
            let versions = known.by_worker.get(worker).map(|(_, v)| v);
            let from = match view.record.applied {
                None => 0,
                Some(u) => {
                    let is_known = versions.is_some_and(|v| v.contains_key(&u));
                    if !is_known && current.get(worker) != Some(&u) {
                        h.anything.insert(worker.clone());
                        continue;
                    }
                    u
                }
            };
            if let Some(versions) = versions {
                let mine = versions
                    .range(from..)
                    .filter(|(_, r)| r.instance == view.record.instance);
                for (_, record) in mine {
                    h.holders
                        .extend(record.set.iter().map(|p| (*p, worker.clone())));
                }
            }
        }
        // Only the partition orders: which workers share one does not matter.
        h.holders.sort_unstable_by_key(|(p, _)| *p);
        h
    }

    /// The workers that might hold `p` (with repeats).
    fn holders_of(&self, p: &PartitionId) -> impl Iterator<Item = &WorkerId> {
        let start = self.holders.partition_point(|(q, _)| q < p);
        self.holders
            .get(start..)
            .unwrap_or(&[])
            .iter()
            .take_while(move |(q, _)| q == p)
            .map(|(_, w)| w)
    }

    /// Whether `worker` might hold `p`.
    pub(crate) fn may_hold(&self, worker: &WorkerId, p: &PartitionId) -> bool {
        self.anything.contains(worker) || self.holders_of(p).any(|w| w == worker)
    }

    /// Whether anyone but `worker` might hold `p`.
    pub(crate) fn others_may_hold(&self, worker: &WorkerId, p: &PartitionId) -> bool {
        self.anything.iter().any(|w| w != worker) || self.holders_of(p).any(|w| w != worker)
    }
}
