//! Publishing one step towards the target. Rule: every publication stages the
//! changed per-worker records and the commit record in one fenced write (the
//! expected revision of the last commit, under this leader's term); a step
//! never grants a partition that another worker may still hold (see
//! [`super::handoff`]), and after revocations the grants wait briefly for the
//! old owners' acknowledgements so that they go out in one version.

use super::handoff::{self, Owners};
use super::holdings::Holdings;
use super::{Committed, Controller, Publishing};
use crate::command::Command;
use crate::config::Config;
use crate::ids::WorkerId;
use crate::outbox::Outbox;
use crate::partition::{Partition, PartitionId};
use crate::records::{
    AssignmentMeta, Lifecycle, MemberStatus, OwnedPartition, WIRE_VERSION, WorkerAssignment,
};
use crate::roster::Roster;
use crate::time::Instant;
use crate::worker::planted::PlantedBug;
use std::collections::{BTreeMap, BTreeSet};

impl Controller {
    /// Publishes the next step towards the target if it differs from what is
    /// committed (or if a takeover must re-stage everything under our term).
    pub(super) fn publish_step(
        &mut self,
        _config: &Config,
        roster: &Roster,
        out: &mut Outbox,
        now: Instant,
    ) {
        if !self.dirty || self.target.is_none() {
            return;
        }
        // After revocations, give the old owners a moment to confirm so that the
        // grants go out in one version rather than one per acknowledgement.
        if let Some(hold) = self.hold_until {
            let pending = self.awaiting.iter().any(|w| {
                roster.get(w).is_some_and(|v| {
                    v.record.status == MemberStatus::Active
                        && v.record.applied
                            != self
                                .committed
                                .as_ref()
                                .and_then(|c| c.meta.records.get(w).copied())
                })
            });
            if pending && now < hold {
                return;
            }
            self.hold_until = None;
        }
        // Fast path (O(workers)): the owners are the target's and every record
        // stays as it is, so there is nothing to publish. Building the step
        // costs O(partitions · log) and would run after every change of any
        // member.
        if !self.takeover_pending
            && !self.list_changed
            && !self.compute_handoff_pending()
            && self.records_stay(roster)
        {
            self.dirty = false;
            self.emergency = false;
            return;
        }
        self.list_changed = false;
        let Some(target) = &self.target else { return };
        let empty = Owners::new();
        let committed_owners = self.committed.as_ref().map_or(&empty, |c| &c.owners);
        let current_records: BTreeMap<WorkerId, u64> = self
            .committed
            .as_ref()
            .map(|c| c.meta.records.clone())
            .unwrap_or_default();
        self.known.prune(roster, &current_records);
        let holdings = Holdings::build(roster, &self.known, &current_records);
        // Above the commit record and above anything a member has seen: after
        // the buckets were lost and recreated, versions (and with them the
        // epochs of new grants) still only grow as every worker sees them.
        let seen = if self.planted.has(PlantedBug::VersionReset) {
            0
        } else {
            roster
                .members()
                .map(|(_, v)| v.record.seen)
                .max()
                .unwrap_or(0)
        };
        let base_version = self
            .committed
            .as_ref()
            .map_or(0, |c| c.meta.version)
            .max(seen);
        let version = base_version.saturating_add(1);
        let live: BTreeSet<WorkerId> = self.basis(roster).into_iter().map(|w| w.id).collect();
        let step = handoff::next_step(
            committed_owners,
            target,
            &holdings,
            &live,
            version,
            self.planted,
        );
        self.dirty = false;
        // Group by worker. The owners and the partition list are both in ID
        // order: one walk along the list finds every partition (rather than a
        // search of the list per owned partition), with its place in key
        // order (a partition no longer listed sorts after the listed ones).
        let mut listed = self
            .partitions
            .as_ref()
            .map(|m| m.iter().zip(self.key_ranks.iter().copied()).peekable());
        let mut shares: BTreeMap<WorkerId, Vec<(u32, OwnedPartition)>> = BTreeMap::new();
        for (p, (w, epoch)) in &step.owners {
            let in_list = listed.as_mut().and_then(|list| {
                while list.next_if(|((id, _), _)| *id < p).is_some() {}
                list.next_if(|((id, _), _)| *id == p)
                    .map(|((_, part), rank)| (rank, part.clone()))
            });
            let partition = in_list.or_else(|| {
                self.committed
                    .as_ref()
                    .and_then(|c| find_partition(c, w, p))
                    .map(|part| (u32::MAX, part))
            });
            if let Some((rank, partition)) = partition {
                shares.entry(w.clone()).or_default().push((
                    rank,
                    OwnedPartition {
                        partition,
                        epoch: *epoch,
                    },
                ));
            }
        }
        // Live members that had a record keep one (possibly empty) so that they
        // can acknowledge; members that hold nothing any more are dropped.
        if let Some(c) = &self.committed {
            for w in c.records.keys() {
                let active = roster
                    .get(w)
                    .is_some_and(|v| v.record.status == MemberStatus::Active);
                if active {
                    shares.entry(w.clone()).or_default();
                }
            }
        }
        let mut records_meta = BTreeMap::new();
        let mut staged = Vec::new();
        let mut next_records = BTreeMap::new();
        let mut awaiting = BTreeSet::new();
        for (w, mut ranked) in shares {
            // In key order: by rank, and by keys among the unlisted ones.
            // Keys are unique: an unstable sort gives the same order, faster.
            ranked.sort_unstable_by(|a, b| {
                a.0.cmp(&b.0)
                    .then_with(|| a.1.partition.keys.cmp(&b.1.partition.keys))
            });
            let mut parts: Vec<OwnedPartition> = ranked.into_iter().map(|(_, p)| p).collect();
            let previous = self.committed.as_ref().and_then(|c| c.records.get(&w));
            // Address the record to the member's current claim; a member that is
            // away keeps the record of its last claim.
            let Some(instance) = roster
                .get(&w)
                .map(|v| v.record.instance)
                .or(previous.map(|r| r.instance))
            else {
                continue;
            };
            // A record re-addressed to a new claim of the ID is a grant to another
            // process: it gets fresh epochs, so downstream can fence the old one.
            if previous.is_some_and(|r| r.instance != instance) {
                for p in &mut parts {
                    p.epoch = version;
                }
            }
            let same = !self.takeover_pending
                && previous.is_some_and(|r| r.partitions == parts && r.instance == instance);
            let record = match previous {
                Some(r) if same => r.clone(),
                _ => {
                    let r = WorkerAssignment {
                        v: WIRE_VERSION,
                        worker: w.clone(),
                        instance,
                        version,
                        term: self.term,
                        partitions: parts,
                    };
                    staged.push(r.clone());
                    awaiting.insert(w.clone());
                    r
                }
            };
            records_meta.insert(w.clone(), record.version);
            next_records.insert(w, record);
        }
        let unchanged = staged.is_empty()
            && self
                .committed
                .as_ref()
                .is_some_and(|c| c.meta.records == records_meta);
        if unchanged && !self.takeover_pending {
            if !self.compute_handoff_pending() {
                self.emergency = false;
            }
            return;
        }
        let lifecycle = if self.takeover_pending {
            Lifecycle::Takeover
        } else if step.revoked == 0 && step.granted > 0 && self.lifecycle_done() {
            Lifecycle::Handoff
        } else {
            self.lifecycle
        };
        let meta = AssignmentMeta {
            v: WIRE_VERSION,
            version,
            term: self.term,
            lifecycle,
            records: records_meta,
            partitions: self.partitions.as_ref().map_or(0, |m| m.len() as u32),
        };
        let expected = self.committed.as_ref().map(|c| c.revision);
        let next = Committed::from_parts(meta.clone(), 0, next_records);
        let op = out.op();
        out.push(Command::Publish {
            op,
            records: staged,
            meta,
            expected,
        });
        self.publishing = Some(Publishing {
            op,
            next,
            granted: step.granted,
            revoked: step.revoked,
            awaiting,
            reconciling: false,
        });
    }

    /// Whether the full step would keep every committed record: each is
    /// still addressed to its member's current claim, and an empty one still
    /// belongs to an active member.
    fn records_stay(&self, roster: &Roster) -> bool {
        let Some(c) = &self.committed else {
            return false;
        };
        c.records.iter().all(|(w, rec)| {
            let view = roster.get(w);
            let instance = view.map_or(rec.instance, |v| v.record.instance);
            let active = view.is_some_and(|v| v.record.status == MemberStatus::Active);
            instance == rec.instance && (active || !rec.partitions.is_empty())
        })
    }

    fn lifecycle_done(&self) -> bool {
        self.lifecycle_published
            && self.committed.as_ref().is_some_and(|c| {
                c.meta.lifecycle == self.lifecycle || c.meta.lifecycle == Lifecycle::Handoff
            })
    }
}

fn find_partition(c: &Committed, w: &WorkerId, p: &PartitionId) -> Option<Partition> {
    c.records
        .get(w)?
        .partitions
        .iter()
        .find(|o| o.partition.id() == *p)
        .map(|o| o.partition.clone())
}
