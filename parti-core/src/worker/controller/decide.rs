//! When to compute a new target, and computing it. Rule: vanished members are
//! evicted after the heartbeat TTL plus the emergency grace; the target covers
//! the live members (the basis) while gracefully stopped ones (ghosts) keep
//! their partitions for the planned-scale window; a crash is an emergency
//! (no window), a mass outage is a cluster restart (cold-start window), joins
//! wait for the planned-scale window and the cooldown, and a partition-list
//! refresh keeps the placement while the imbalance stays within the threshold.

use super::{Committed, Controller, balance};
use crate::command::{Command, Notification};
use crate::config::Config;
use crate::ids::WorkerId;
use crate::outbox::Outbox;
use crate::partition::{Partition, PartitionId};
use crate::records::{Lifecycle, MemberRecord, MemberStatus, Revision};
use crate::roster::Roster;
use crate::strategy::{AssignmentInput, WorkerSpec};
use crate::time::Instant;
use crate::worker::planted::PlantedBug;
use std::collections::{BTreeMap, BTreeSet};

impl Controller {
    /// Restart detection: whether at least `restart_detection_ratio` of the
    /// workers `committed` names are still (or again) the same running
    /// incarnations: active members with the instance their record is
    /// addressed to. A full restart brings new claims, or new IDs.
    pub(super) fn incarnations_returned(&self, committed: &Committed, roster: &Roster) -> bool {
        let before = committed.meta.records.len();
        let alive = committed
            .records
            .iter()
            .filter(|(w, rec)| {
                roster.get(w).is_some_and(|v| {
                    v.record.status == MemberStatus::Active && v.record.instance == rec.instance
                })
            })
            .count();
        before == 0 || (alive as f64) >= self.restart_ratio * before as f64
    }

    /// The latest evidence that `w` is alive: the last change of its record
    /// as the watch showed it, or a failed eviction (it wrote since the
    /// revision the eviction expected) if that came later.
    pub(super) fn last_sign_of_life(&self, w: &WorkerId, last_change: Instant) -> Instant {
        self.alive_at
            .get(w)
            .map_or(last_change, |t| (*t).max(last_change))
    }

    /// Drops what evictions taught once the watch shows newer records (a
    /// new claim of an evicted ID, renewals after a failed eviction).
    pub(super) fn forget_stale_evictions(&mut self, roster: &Roster) {
        self.evicted.retain(|w, (before, written)| {
            roster
                .get(w)
                .is_some_and(|v| v.revision == *before || v.revision == *written)
        });
        self.alive_at
            .retain(|w, t| roster.get(w).is_some_and(|v| v.last_change < *t));
    }

    /// Members whose record has not changed for the heartbeat TTL plus the
    /// emergency grace (and at least the time after which their ownership lease
    /// has certainly expired) are evicted with compare-and-set. The eviction
    /// is the proof that a member vanished: it fails if the member wrote
    /// since the revision this leader last saw, which a leader whose watch
    /// lags behind (an overloaded process) cannot tell by the clock alone.
    pub(super) fn evict_vanished(
        &mut self,
        config: &Config,
        roster: &Roster,
        out: &mut Outbox,
        now: Instant,
    ) {
        if self.planted.has(PlantedBug::IgnoreEmergencies)
            || self.recovering(now)
            || self.evict_retry_at.is_some_and(|t| now < t)
        {
            return;
        }
        self.evict_retry_at = None;
        let wait = config
            .heartbeat_ttl
            .saturating_add(config.effective_emergency_grace())
            .max(config.lease_expiry_wait());
        let vanished: Vec<(WorkerId, MemberRecord, Revision)> = roster
            .members()
            .filter(|(w, v)| {
                **w != self.me
                    && v.record.status == MemberStatus::Active
                    && self.silent_for(self.last_sign_of_life(w, v.last_change), wait)
                    && !self.evicting.contains_key(*w)
                    && !self.evicted.contains_key(*w)
            })
            .map(|(w, v)| (w.clone(), v.record.clone(), v.revision))
            .collect();
        for (worker, mut record, expected) in vanished {
            record.status = MemberStatus::Evicted;
            let op = out.op();
            self.evicting.insert(worker.clone(), op);
            self.emergency = true;
            out.push(Command::Evict {
                op,
                id: worker,
                record,
                expected,
            });
        }
    }

    /// The workers a target is computed for: active members, except those
    /// this leader evicted. A member that merely looks quiet (its record
    /// unchanged for a while, as the watch shows it) stays until its
    /// eviction succeeded: the watch of a busy leader can lag behind by more
    /// than the heartbeat TTL, and a rebalance from such a picture would
    /// move the partitions of live workers away and back.
    pub(super) fn basis(&self, roster: &Roster) -> Vec<WorkerSpec> {
        roster
            .members()
            .filter(|(w, v)| {
                v.record.status == MemberStatus::Active && !self.evicted.contains_key(*w)
            })
            .map(|(w, v)| WorkerSpec {
                id: w.clone(),
                capacity: v.record.capacity.max(1),
            })
            .collect()
    }

    /// Workers that left gracefully (or whose departure reason is unknown) and
    /// whose partitions are kept for them during the planned-scale window.
    fn ghosts(
        &mut self,
        config: &Config,
        roster: &Roster,
        basis: &BTreeSet<WorkerId>,
        now: Instant,
    ) -> BTreeSet<WorkerId> {
        let mut ghosts = BTreeSet::new();
        // Both sources are sorted: each is walked beside the basis.
        let candidates: BTreeSet<WorkerId> = self
            .target_workers
            .difference(basis)
            .chain(
                self.committed
                    .iter()
                    .flat_map(|c| absent_from(c.records.keys(), basis)),
            )
            .cloned()
            .collect();
        let recovering = self.recovering(now);
        for w in candidates {
            // Just back from an outage, an absent worker may still be
            // reconnecting (a client retries with a backoff of seconds) and
            // its ID may have lapsed meanwhile: it keeps its partitions until
            // the recovery grace ends, unless it said it is leaving.
            if recovering && !Self::is_leaving(roster, &w) {
                ghosts.insert(w);
                continue;
            }
            // Only a member deletes its own key, and only when it stops; an
            // expired key belongs to a member evicted long before. So a key that
            // disappeared while `Active` is a graceful stop whose `Stopping`
            // write the watch skipped (the bucket keeps one entry per key).
            let graceful = match roster.get(&w) {
                Some(v) => v.record.status == MemberStatus::Stopping,
                None => roster.departure(&w).is_none_or(|d| {
                    matches!(d.last.status, MemberStatus::Stopping | MemberStatus::Active)
                }),
            };
            if !graceful || self.planted.has(PlantedBug::NoStickyRestart) {
                self.ghost_since.remove(&w);
                continue;
            }
            let since = *self.ghost_since.entry(w.clone()).or_insert(now);
            if now < since + config.planned_scale_window {
                ghosts.insert(w);
            }
        }
        self.ghost_since.retain(|w, _| !basis.contains(w));
        ghosts
    }

    /// Whether the recovery grace after an outage is running.
    fn recovering(&self, now: Instant) -> bool {
        self.recovery_until.is_some_and(|t| now < t)
    }

    /// Whether `w` announced it is leaving the group (its partitions move).
    fn is_leaving(roster: &Roster, w: &WorkerId) -> bool {
        roster.get(w).map(|v| v.record.status) == Some(MemberStatus::Leaving)
            || roster
                .departure(w)
                .is_some_and(|d| d.last.status == MemberStatus::Leaving)
    }

    /// Decides whether to compute a new target now.
    pub(super) fn decide(
        &mut self,
        config: &Config,
        roster: &Roster,
        now: Instant,
        out: &mut Outbox,
    ) {
        let specs = self.basis(roster);
        let basis: BTreeSet<WorkerId> = specs.iter().map(|w| w.id.clone()).collect();
        let ghosts = self.ghosts(config, roster, &basis, now);
        if self.target.is_none() {
            // A restart seen at takeover is called off once the workers the
            // last assignment names are back as the same incarnations (the
            // group lost the store, not its processes).
            if self.restart_detected
                && self
                    .committed
                    .as_ref()
                    .is_some_and(|c| self.incarnations_returned(c, roster))
            {
                self.restart_detected = false;
                self.cold_until = None;
            }
            let cold = self.committed.is_none() || self.restart_detected;
            if cold {
                // Members that saw assignments before, with nothing
                // committed: the buckets were lost, not the processes. The
                // group re-forms after the planned-scale window, not the
                // cold-start one.
                let reforming =
                    self.committed.is_none() && roster.members().any(|(_, v)| v.record.seen > 0);
                let window = if reforming {
                    config.planned_scale_window
                } else {
                    config.cold_start_window
                };
                // Just back from an outage, the window also covers the
                // recovery grace: the workers may still be reconnecting.
                let window_end =
                    (self.since + window).max(self.recovery_until.unwrap_or(self.since));
                let until = *self.cold_until.get_or_insert(window_end);
                if now >= until {
                    self.rebalance(Lifecycle::ColdStart, &specs, &ghosts, out, now);
                }
            } else if let Some(c) = &self.committed {
                self.target = Some(c.owners.iter().map(|(p, (w, _))| (*p, w.clone())).collect());
                self.target_gen += 1;
                self.target_workers = c.records.keys().cloned().collect();
                self.lifecycle = Lifecycle::Takeover;
                self.lifecycle_published = false;
                self.dirty = true;
                // The list may have changed while no one led: reconcile it.
                let listed = self
                    .partitions
                    .as_ref()
                    .map(|m| m.keys().copied().collect::<BTreeSet<_>>());
                let owned: BTreeSet<PartitionId> = c.owners.keys().copied().collect();
                if listed.is_some_and(|l| l != owned) {
                    self.partitions_dirty = true;
                }
            }
            return;
        }
        let gone: Vec<&WorkerId> = self
            .target_workers
            .difference(&basis)
            .filter(|w| !ghosts.contains(*w))
            .collect();
        let joined = basis.difference(&self.target_workers).next().is_some();
        let cooled = self
            .last_rebalance
            .is_none_or(|t| now >= t + config.rebalance_cooldown);
        if !gone.is_empty() && self.planted.has(PlantedBug::IgnoreEmergencies) {
            // Planted bug: forget vanished workers without reassigning their
            // partitions (the Go original's "lastWorkers updated first").
            let gone: Vec<WorkerId> = gone.into_iter().cloned().collect();
            self.target_workers.retain(|w| !gone.contains(w));
        } else if !gone.is_empty() {
            let crashed = gone.iter().any(|w| match roster.get(w) {
                Some(v) => {
                    v.record.status == MemberStatus::Active
                        || v.record.status == MemberStatus::Evicted
                }
                None => false,
            });
            let left = gone.iter().any(|w| Self::is_leaving(roster, w));
            let survivors = self
                .target_workers
                .iter()
                .filter(|w| basis.contains(*w))
                .count();
            let total = self.target_workers.len();
            let mass_outage = total > 1 && (survivors as f64) < self.restart_ratio * total as f64;
            if crashed && mass_outage {
                // Most of the assignment's workers vanished at once: a cluster
                // restart. Wait for the cold-start window for them to come back
                // rather than piling everything on the survivors.
                self.target = None;
                self.target_gen += 1;
                self.restart_detected = true;
                self.cold_until = Some(now + config.cold_start_window);
                self.dirty = true;
            } else if crashed {
                self.emergency = true;
                self.rebalance(Lifecycle::Emergency, &specs, &ghosts, out, now);
            } else if left || cooled {
                self.rebalance(Lifecycle::PlannedScale, &specs, &ghosts, out, now);
            }
        } else if self.partitions_dirty {
            self.refresh(config, &specs, &ghosts, out, now);
        } else if joined {
            let since = *self.planned_since.get_or_insert(now);
            if now >= since + config.planned_scale_window && cooled {
                self.rebalance(Lifecycle::PlannedScale, &specs, &ghosts, out, now);
            }
        } else {
            self.planned_since = None;
        }
    }

    fn pinned(&self, ghosts: &BTreeSet<WorkerId>) -> BTreeMap<PartitionId, WorkerId> {
        let mut pinned = BTreeMap::new();
        if let Some(target) = &self.target {
            for (p, w) in target {
                if ghosts.contains(w) {
                    pinned.insert(*p, w.clone());
                }
            }
        }
        pinned
    }

    /// A partition-list change: keep the current placement if the imbalance stays
    /// within the threshold, otherwise rebalance.
    fn refresh(
        &mut self,
        config: &Config,
        specs: &[WorkerSpec],
        ghosts: &BTreeSet<WorkerId>,
        out: &mut Outbox,
        now: Instant,
    ) {
        self.partitions_dirty = false;
        let (Some(partitions), Some(target)) = (&self.partitions, &self.target) else {
            return;
        };
        let pinned = self.pinned(ghosts);
        let free: BTreeMap<PartitionId, Partition> = partitions
            .iter()
            .filter(|(p, _)| !pinned.contains_key(*p))
            .map(|(p, v)| (*p, v.clone()))
            .collect();
        if let Some(mut minimal) = balance::minimal_placement(specs, &free, target)
            && balance::imbalance(specs, &free, &minimal) <= config.imbalance_threshold
        {
            minimal.extend(pinned);
            self.target = Some(minimal);
            self.target_gen += 1;
            self.lifecycle = Lifecycle::Refresh;
            self.lifecycle_published = false;
            self.dirty = true;
            return;
        }
        self.rebalance(Lifecycle::Refresh, specs, ghosts, out, now);
    }

    /// Asks the strategy for a new target over `specs`; ghosts keep their
    /// partitions.
    fn rebalance(
        &mut self,
        lifecycle: Lifecycle,
        specs: &[WorkerSpec],
        ghosts: &BTreeSet<WorkerId>,
        out: &mut Outbox,
        now: Instant,
    ) {
        let Some(partitions) = &self.partitions else {
            return;
        };
        let pinned = self.pinned(ghosts);
        let list: Vec<Partition> = partitions
            .iter()
            .filter(|(p, _)| !pinned.contains_key(*p))
            .map(|(_, v)| v.clone())
            .collect();
        let index: BTreeMap<&WorkerId, u32> = specs
            .iter()
            .enumerate()
            .map(|(i, w)| (&w.id, i as u32))
            .collect();
        // The current owner of each listed partition: the target's, else
        // the committed one's. Both are in ID order like the list: one walk
        // along each (no copy of the target, no search per partition).
        let previous: Vec<Option<u32>> = match (&self.target, &self.committed) {
            (Some(target), _) => owners_along(&list, target.iter(), &index),
            (None, Some(c)) => {
                owners_along(&list, c.owners.iter().map(|(p, (w, _))| (p, w)), &index)
            }
            (None, None) => Vec::new(),
        };
        let mut target: BTreeMap<PartitionId, WorkerId> = pinned;
        if !specs.is_empty() {
            let input = AssignmentInput {
                workers: specs,
                partitions: &list,
                previous: &previous,
            };
            match self.strategy.assign(&input) {
                Ok(placement) if placement.owners.len() == list.len() => {
                    for (p, owner) in list.iter().zip(placement.owners) {
                        if let Some(w) = specs.get(owner as usize) {
                            target.insert(p.id(), w.id.clone());
                        }
                    }
                }
                Ok(_) => {
                    out.notify(Notification::Error(format!(
                        "strategy {} returned a wrong number of owners",
                        self.strategy.name()
                    )));
                    return;
                }
                Err(e) => {
                    out.notify(Notification::Error(format!(
                        "strategy {} failed: {e}",
                        self.strategy.name()
                    )));
                    return;
                }
            }
        }
        self.target = Some(target);
        self.target_gen += 1;
        self.target_workers = specs
            .iter()
            .map(|w| w.id.clone())
            .chain(ghosts.iter().cloned())
            .collect();
        self.lifecycle = lifecycle;
        self.lifecycle_published = false;
        self.last_rebalance = Some(now);
        self.planned_since = None;
        self.cold_until = None;
        self.restart_detected = false;
        self.partitions_dirty = false;
        self.hold_until = None;
        self.dirty = true;
    }
}

/// For each partition of `list` (in ID order), the index of its owner in
/// `owners` (pairs in ID order), if it has one the index knows.
fn owners_along<'a>(
    list: &[Partition],
    owners: impl Iterator<Item = (&'a PartitionId, &'a WorkerId)>,
    index: &BTreeMap<&WorkerId, u32>,
) -> Vec<Option<u32>> {
    let mut owners = owners.peekable();
    list.iter()
        .map(|p| {
            let id = p.id();
            while owners.next_if(|(q, _)| **q < id).is_some() {}
            owners
                .peek()
                .filter(|(q, _)| **q == id)
                .and_then(|(_, w)| index.get(*w).copied())
        })
        .collect()
}

/// The IDs of `sorted` (ascending) that `set` lacks, in their order: one walk
/// along both rather than a search of `set` per ID.
fn absent_from<'a>(
    sorted: impl Iterator<Item = &'a WorkerId>,
    set: &'a BTreeSet<WorkerId>,
) -> impl Iterator<Item = &'a WorkerId> {
    let mut members = set.iter().peekable();
    sorted.filter(move |w| {
        while members.next_if(|m| *m < *w).is_some() {}
        members.peek() != Some(w)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The walk gives what a search per ID gives, in the same order.
    #[test]
    fn absent_from_matches_a_search_per_id() {
        let id = |i: u32| WorkerId::new("w", i);
        let cases: [(&[u32], &[u32]); 5] = [
            (&[1, 2, 3, 10, 12], &[2, 10, 11]),
            (&[], &[1]),
            (&[4, 5], &[]),
            (&[1, 3, 5], &[0, 2, 4, 6]),
            (&[7, 8, 9], &[7, 8, 9]),
        ];
        for (list, set) in cases {
            // Sorted as IDs (by text), like a roster or a record map.
            let sorted: BTreeSet<WorkerId> = list.iter().map(|&i| id(i)).collect();
            let set: BTreeSet<WorkerId> = set.iter().map(|&i| id(i)).collect();
            let walked: Vec<&WorkerId> = absent_from(sorted.iter(), &set).collect();
            let searched: Vec<&WorkerId> = sorted.iter().filter(|w| !set.contains(*w)).collect();
            assert_eq!(walked, searched, "{list:?}");
        }
    }
}
