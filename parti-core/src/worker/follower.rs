//! The follower: learns the committed assignment (the `meta` record plus this
//! worker's record of the same term and the version `meta` names), applies it,
//! and reports what changed. Every worker runs it, the leader included.
//!
//! Rules:
//! - a commit record with a lower version, or a lower term, than one already
//!   seen is ignored (S6);
//! - this worker's share is its record only when `meta` names exactly that
//!   record's version under `meta`'s term; a worker not named in `meta` owns
//!   nothing;
//! - partitions are held only while the ownership lease allows (see
//!   [`crate::DegradedPolicy`]); revocations always apply at once;
//! - a new watch's snapshot replaces what was known of the commit record and
//!   of this worker's records once it is complete: the store may have lost
//!   its buckets meanwhile (terms restart from the revisions of a new leader
//!   key), so the snapshot's values count, not the comparison with older
//!   ones. A commit record of a lower term than one accepted before, or
//!   below the version applied, tells that the store was lost (neither can
//!   happen in one store): what the old store committed is void, so
//!   everything is dropped and nothing is acknowledged until the new leader
//!   commits a version above the highest one applied. A snapshot without a
//!   commit record proves nothing either way (the record may be changing
//!   while the watch starts, its new value arriving just after; or the store
//!   was lost and has none yet): until the next commit record, judged by the
//!   same rule, what is held is unconfirmed (see [`Follower::unconfirmed`]).

use super::planted::{PlantedBug, PlantedBugs};
use crate::ids::{InstanceId, WorkerId};
use crate::partition::PartitionId;
use crate::records::{AssignmentMeta, OwnedPartition, WorkerAssignment};
use std::collections::BTreeMap;

/// What the follower wants to apply now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Target {
    /// The commit record's version.
    pub(crate) meta_version: u64,
    /// The record version this worker acknowledges (`None`: owns nothing).
    pub(crate) record_version: Option<u64>,
    /// The partitions.
    pub(crate) partitions: Vec<OwnedPartition>,
}

/// How much of its target a worker may hold now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Hold {
    /// The ownership lease is valid: hold the whole target.
    All,
    /// The lease expired while cut off under `KeepProcessing`: keep what is
    /// already held (and still in the target) but take nothing new.
    Frozen,
    /// Hold nothing.
    Nothing,
}

/// A change to report.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Diff {
    pub(crate) added: Vec<OwnedPartition>,
    pub(crate) removed: Vec<OwnedPartition>,
}

impl Diff {
    pub(crate) fn is_empty(&self) -> bool {
        self.added.is_empty() && self.removed.is_empty()
    }
}

/// What a watch's snapshot delivered so far.
#[derive(Debug, Default)]
struct Snapshot {
    meta: Option<AssignmentMeta>,
    records: BTreeMap<u64, WorkerAssignment>,
}

/// The follower machine.
#[derive(Debug, Default)]
pub(crate) struct Follower {
    meta: Option<AssignmentMeta>,
    records: BTreeMap<u64, WorkerAssignment>,
    held: BTreeMap<PartitionId, OwnedPartition>,
    applied: Option<Target>,
    ever_applied: bool,
    /// The highest commit version this process applied, kept when the ID or
    /// the store is lost: a version at or below it is never applied again
    /// after such a loss (S6 as this worker sees it).
    floor: u64,
    /// A new watch's snapshot in progress: the commit record and records it
    /// delivered so far (they replace the known ones when it is complete).
    snapshot: Option<Snapshot>,
    /// The highest term of a commit record accepted since the ID was
    /// claimed (or the store was found lost): a lower one means a new store.
    known_term: Option<u64>,
    /// The last snapshot showed no commit record while this worker held or
    /// acknowledged an assignment: unconfirmed until the next one arrives.
    unconfirmed: bool,
    /// Planted bugs (simulator self-tests; always empty in production).
    pub(crate) planted: PlantedBugs,
}

impl Follower {
    /// Forgets the assignment (ID lost). Returns what was held. The commit
    /// record is forgotten too: the next claim's watch delivers the current
    /// one, which may carry a lower term if the buckets were lost and
    /// recreated (terms are revisions of the new leader key).
    pub(crate) fn reset(&mut self) -> Diff {
        let diff = self.drop_all();
        self.meta = None;
        self.records.clear();
        self.applied = None;
        self.ever_applied = false;
        self.snapshot = None;
        self.known_term = None;
        self.unconfirmed = false;
        diff
    }

    /// A new watch starts: its snapshot replaces the commit record and the
    /// records known once it is complete ([`Follower::end_snapshot`]).
    pub(crate) fn begin_snapshot(&mut self) {
        self.snapshot = Some(Snapshot::default());
    }

    /// The snapshot is complete: its commit record and records replace the
    /// known ones. Returns what was dropped if the store turned out to have
    /// lost the assignment this worker applied (see the module docs).
    pub(crate) fn end_snapshot(&mut self) -> Option<Diff> {
        let snapshot = self.snapshot.take()?;
        self.records = snapshot.records;
        self.meta = None;
        match snapshot.meta {
            Some(meta) => self.accept_meta(meta),
            None => {
                self.unconfirmed = self.applied.is_some() || !self.held.is_empty();
                None
            }
        }
    }

    /// Whether what is held is unconfirmed: the last snapshot showed no
    /// commit record, and none arrived since. The store may have lost its
    /// buckets (the new leader has committed nothing yet), so this worker
    /// takes nothing and its ownership lease does not count as proven.
    pub(crate) fn unconfirmed(&self) -> bool {
        self.unconfirmed
    }

    /// Takes `meta` as the current commit record, first checking whether it
    /// comes from a new store (see the module docs); if so, returns what
    /// was dropped.
    fn accept_meta(&mut self, meta: AssignmentMeta) -> Option<Diff> {
        let lost = !self.planted.has(PlantedBug::IgnoreTerms)
            && (self.known_term.is_some_and(|t| meta.term < t)
                || self
                    .applied
                    .as_ref()
                    .is_some_and(|a| meta.version < a.meta_version));
        let term = meta.term;
        self.unconfirmed = false;
        self.known_term = Some(if lost {
            term
        } else {
            self.known_term.map_or(term, |t| t.max(term))
        });
        self.meta = Some(meta);
        self.records.retain(|t, _| *t >= term);
        if !lost {
            return None;
        }
        self.applied = None;
        Some(self.drop_all())
    }

    /// Gives up every partition (lease expired, stop). The target stays known.
    pub(crate) fn drop_all(&mut self) -> Diff {
        let removed: Vec<OwnedPartition> = std::mem::take(&mut self.held).into_values().collect();
        Diff {
            added: Vec::new(),
            removed,
        }
    }

    /// The partitions held now.
    pub(crate) fn held(&self) -> impl Iterator<Item = &OwnedPartition> {
        self.held.values()
    }

    /// Number of partitions held.
    pub(crate) fn held_count(&self) -> usize {
        self.held.len()
    }

    /// The version of the last applied commit, 0 before any.
    pub(crate) fn applied_version(&self) -> u64 {
        self.applied.as_ref().map_or(0, |t| t.meta_version)
    }

    /// The highest commit version this worker knows of: applied (now or
    /// before a loss) or seen committed.
    pub(crate) fn highest_seen(&self) -> u64 {
        self.floor
            .max(self.applied_version())
            .max(self.meta.as_ref().map_or(0, |m| m.version))
    }

    /// The record version acknowledged.
    pub(crate) fn applied_record(&self) -> Option<u64> {
        self.applied.as_ref().and_then(|t| t.record_version)
    }

    /// Whether any assignment was applied since the ID was claimed.
    pub(crate) fn ever_applied(&self) -> bool {
        self.ever_applied
    }

    /// The highest commit record seen.
    pub(crate) fn meta(&self) -> Option<&AssignmentMeta> {
        self.meta.as_ref()
    }

    /// A commit record arrived.
    /// Returns what was dropped if the record shows that the store lost the
    /// assignment this worker applied (see the module docs).
    pub(crate) fn on_meta(&mut self, meta: AssignmentMeta) -> Option<Diff> {
        if let Some(snapshot) = &mut self.snapshot {
            snapshot.meta = Some(meta);
            return None;
        }
        let newer = match &self.meta {
            None => true,
            Some(m) if self.planted.has(PlantedBug::IgnoreTerms) => {
                meta.version > m.version || meta.term != m.term
            }
            Some(m) => meta.term >= m.term && (meta.version > m.version || meta.term > m.term),
        };
        if newer {
            return self.accept_meta(meta);
        }
        None
    }

    /// One of this worker's records arrived.
    pub(crate) fn on_record(&mut self, me: &WorkerId, record: WorkerAssignment) {
        if &record.worker != me {
            return;
        }
        if let Some(snapshot) = &mut self.snapshot {
            match snapshot.records.get(&record.term) {
                Some(r) if r.version >= record.version => {}
                _ => {
                    snapshot.records.insert(record.term, record);
                }
            }
            return;
        }
        if self.meta.as_ref().is_some_and(|m| record.term < m.term) {
            return;
        }
        match self.records.get(&record.term) {
            Some(r) if r.version >= record.version => {}
            _ => {
                self.records.insert(record.term, record);
            }
        }
    }

    /// What should be held according to what was seen, if it is complete. A
    /// record addressed to another claim of this ID means "nothing for us yet".
    pub(crate) fn target(&self, me: &WorkerId, instance: InstanceId) -> Option<Target> {
        let meta = self.meta.as_ref()?;
        let nothing = Target {
            meta_version: meta.version,
            record_version: None,
            partitions: Vec::new(),
        };
        match meta.records.get(me) {
            None => Some(nothing),
            Some(&version) => {
                let rec = self.records.get(&meta.term)?;
                if rec.version != version {
                    return None;
                }
                if rec.instance != instance {
                    return Some(nothing);
                }
                Some(Target {
                    meta_version: meta.version,
                    record_version: Some(version),
                    partitions: rec.partitions.clone(),
                })
            }
        }
    }

    /// Applies the target. With `may_hold == false` nothing is held (the lease
    /// does not allow it), but the target is still acknowledged: the leader then
    /// believes this worker may hold more than it does, which is safe.
    pub(crate) fn apply(
        &mut self,
        me: &WorkerId,
        instance: InstanceId,
        hold: Hold,
    ) -> Option<Diff> {
        let target = self.target(me, instance)?;
        let below = match &self.applied {
            Some(applied) => target.meta_version < applied.meta_version,
            // After a loss, only a version above everything applied before.
            None => self.floor > 0 && target.meta_version <= self.floor,
        };
        if below && !self.planted.has(PlantedBug::IgnoreTerms) {
            return None;
        }
        let wanted: BTreeMap<PartitionId, OwnedPartition> = match hold {
            Hold::All => target
                .partitions
                .iter()
                .map(|p| (p.partition.id(), p.clone()))
                .collect(),
            Hold::Frozen => target
                .partitions
                .iter()
                .map(|p| (p.partition.id(), p.clone()))
                .filter(|(id, p)| self.held.get(id) == Some(p))
                .collect(),
            Hold::Nothing => BTreeMap::new(),
        };
        // Both maps are in ID order: one walk along each finds what went
        // (in the held order) and what came (in the wanted order).
        let mut diff = Diff::default();
        let mut wanted_iter = wanted.iter().peekable();
        for (id, p) in &self.held {
            while wanted_iter.next_if(|(w, _)| *w < id).is_some() {}
            if wanted_iter
                .peek()
                .filter(|(w, _)| *w == id)
                .map(|(_, q)| *q)
                != Some(p)
            {
                diff.removed.push(p.clone());
            }
        }
        let mut held_iter = self.held.iter().peekable();
        for (id, p) in &wanted {
            while held_iter.next_if(|(h, _)| *h < id).is_some() {}
            if held_iter.peek().filter(|(h, _)| *h == id).map(|(_, q)| *q) != Some(p) {
                diff.added.push(p.clone());
            }
        }
        self.held = wanted;
        self.floor = self.floor.max(target.meta_version);
        self.applied = Some(target);
        self.ever_applied = true;
        Some(diff)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::partition::Partition;
    use crate::records::{Lifecycle, WIRE_VERSION};

    fn me() -> WorkerId {
        WorkerId::new("worker", 0)
    }

    fn meta(version: u64, term: u64, rec: Option<u64>) -> AssignmentMeta {
        let mut records = BTreeMap::new();
        if let Some(v) = rec {
            records.insert(me(), v);
        }
        AssignmentMeta {
            v: WIRE_VERSION,
            version,
            term,
            lifecycle: Lifecycle::ColdStart,
            records,
            partitions: 2,
        }
    }

    fn record(version: u64, term: u64, names: &[&str]) -> WorkerAssignment {
        WorkerAssignment {
            v: WIRE_VERSION,
            worker: me(),
            instance: InstanceId(1),
            version,
            term,
            partitions: names
                .iter()
                .map(|n| OwnedPartition {
                    partition: Partition::new([*n]),
                    epoch: 1,
                })
                .collect(),
        }
    }

    #[test]
    fn applies_only_committed_records() {
        let mut f = Follower::default();
        f.on_record(&me(), record(2, 1, &["a", "b"]));
        assert!(
            f.apply(&me(), InstanceId(1), Hold::All).is_none(),
            "no meta yet"
        );
        f.on_meta(meta(1, 1, Some(1)));
        assert!(
            f.apply(&me(), InstanceId(1), Hold::All).is_none(),
            "meta names another version"
        );
        f.on_meta(meta(2, 1, Some(2)));
        let diff = f.apply(&me(), InstanceId(1), Hold::All).unwrap();
        assert_eq!(diff.added.len(), 2);
        assert_eq!(f.applied_record(), Some(2));
        // A staged record of a newer version is not applied before its commit.
        f.on_record(&me(), record(3, 1, &["a"]));
        assert!(f.apply(&me(), InstanceId(1), Hold::All).is_none());
        assert_eq!(
            f.held_count(),
            2,
            "what is held stays until a commit changes it"
        );
        f.on_meta(meta(3, 1, Some(3)));
        let diff = f.apply(&me(), InstanceId(1), Hold::All).unwrap();
        assert_eq!(diff.removed.len(), 1);
        assert_eq!(f.held_count(), 1);
    }

    #[test]
    fn older_terms_and_versions_are_ignored() {
        let mut f = Follower::default();
        f.on_meta(meta(5, 3, None));
        f.on_meta(meta(6, 2, Some(6)));
        assert_eq!(f.meta().unwrap().version, 5);
        f.on_meta(meta(4, 3, None));
        assert_eq!(f.meta().unwrap().version, 5);
        f.on_record(&me(), record(7, 2, &["a"]));
        f.on_meta(meta(7, 4, Some(7)));
        assert!(
            f.apply(&me(), InstanceId(1), Hold::All).is_none(),
            "record of an old term is not the one meta names"
        );
    }

    #[test]
    fn not_holding_when_lease_forbids() {
        let mut f = Follower::default();
        f.on_record(&me(), record(1, 1, &["a"]));
        f.on_meta(meta(1, 1, Some(1)));
        let diff = f.apply(&me(), InstanceId(1), Hold::Nothing).unwrap();
        assert!(diff.is_empty());
        assert_eq!(f.applied_record(), Some(1));
        let diff = f.apply(&me(), InstanceId(1), Hold::All).unwrap();
        assert_eq!(diff.added.len(), 1);
    }

    /// How many partitions applying what is known adds.
    fn added_by_apply(f: &mut Follower) -> usize {
        f.apply(&me(), InstanceId(1), Hold::All)
            .unwrap()
            .added
            .len()
    }

    #[test]
    fn a_lost_store_is_told_by_a_lower_term_not_by_a_missing_record() {
        let mut f = Follower::default();
        f.on_record(&me(), record(4, 9, &["a"]));
        f.on_meta(meta(4, 9, Some(4)));
        assert_eq!(added_by_apply(&mut f), 1);
        // A new watch whose snapshot has no commit record (it may be
        // changing as the watch starts): what is held stays.
        f.begin_snapshot();
        assert!(f.end_snapshot().is_none());
        assert_eq!(f.held_count(), 1);
        assert!(f.unconfirmed());
        // The next commit record has a lower term: the store was lost.
        let dropped = f.on_meta(meta(3, 2, Some(3))).expect("a lost store");
        assert!(!f.unconfirmed());
        assert_eq!(dropped.removed.len(), 1);
        assert_eq!(f.held_count(), 0);
        assert_eq!(f.applied_record(), None);
        // Nothing at or below the version applied before is applied again.
        f.on_record(&me(), record(3, 2, &["a"]));
        assert!(f.apply(&me(), InstanceId(1), Hold::All).is_none());
        f.on_record(&me(), record(5, 2, &["b"]));
        f.on_meta(meta(5, 2, Some(5)));
        assert_eq!(added_by_apply(&mut f), 1);
        // In a snapshot too: a lower term than known drops everything.
        f.begin_snapshot();
        f.on_meta(meta(6, 1, None));
        assert_eq!(f.end_snapshot().expect("a lost store").removed.len(), 1);
    }
}
