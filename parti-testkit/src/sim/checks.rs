//! The guarantees S1–S6 (and the state table), checked while the simulation
//! runs. Each check is fed facts by the simulator and records violations; none
//! of them trusts the protocol's own bookkeeping for what it checks.

use super::idmap::{IdMap, IdSet};
use parti_core::{Instant, PartitionId, State, Worker, WorkerId};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::time::Duration;

/// Which guarantee a violation breaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Guarantee {
    /// Unique IDs.
    S1,
    /// One effective leader.
    S2,
    /// Exclusive ownership.
    S3,
    /// Convergence.
    S4,
    /// Stability of graceful restarts.
    S5,
    /// Monotonic versions and epochs.
    S6,
    /// The state-transition table.
    Transitions,
}

impl fmt::Display for Guarantee {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

/// One violation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Violation {
    /// Which guarantee.
    pub guarantee: Guarantee,
    /// Global time, ms.
    pub at: u64,
    /// What happened.
    pub detail: String,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} at {}.{:03}s: {}",
            self.guarantee,
            self.at / 1000,
            self.at % 1000,
            self.detail
        )
    }
}

/// S3 and S4 bookkeeping: who holds what.
#[derive(Debug, Default)]
pub struct Ownership {
    holders: IdMap<Vec<usize>>,
    listed: IdSet,
    bad: usize,
    /// Partitions held by two processes at once.
    pub contested: BTreeSet<PartitionId>,
    /// Since when every listed partition has exactly one holder.
    pub complete_since: Option<u64>,
}

impl Ownership {
    fn is_bad(&self, p: &PartitionId) -> bool {
        self.listed.contains(p) && self.holders.get(p).map_or(0, Vec::len) != 1
    }

    fn update_completeness(&mut self, now: u64) {
        if self.bad == 0 && !self.listed.is_empty() {
            self.complete_since.get_or_insert(now);
        } else {
            self.complete_since = None;
        }
    }

    /// Replaces the partition list.
    pub fn set_listed(&mut self, listed: IdSet, now: u64) {
        self.listed = listed;
        self.bad = self.listed.iter().filter(|p| self.is_bad(p)).count();
        self.update_completeness(now);
    }

    /// `proc` now holds `p`.
    pub fn add(&mut self, proc: usize, p: PartitionId, now: u64) {
        let before = self.is_bad(&p);
        let list = self.holders.entry(p).or_default();
        if !list.contains(&proc) {
            list.push(proc);
        }
        if list.len() > 1 {
            self.contested.insert(p);
        }
        self.adjust(before, &p, now);
    }

    /// `proc` no longer holds `p`.
    pub fn remove(&mut self, proc: usize, p: PartitionId, now: u64) {
        let before = self.is_bad(&p);
        if let Some(list) = self.holders.get_mut(&p) {
            list.retain(|x| *x != proc);
            if list.len() <= 1 {
                self.contested.remove(&p);
            }
            if list.is_empty() {
                self.holders.remove(&p);
            }
        }
        self.adjust(before, &p, now);
    }

    fn adjust(&mut self, before: bool, p: &PartitionId, now: u64) {
        let after = self.is_bad(p);
        match (before, after) {
            (false, true) => self.bad += 1,
            (true, false) => self.bad -= 1,
            _ => {}
        }
        self.update_completeness(now);
    }

    /// The processes holding `p`.
    pub fn holders(&self, p: &PartitionId) -> &[usize] {
        self.holders.get(p).map_or(&[], Vec::as_slice)
    }

    /// Number of listed partitions without exactly one holder.
    pub fn bad(&self) -> usize {
        self.bad
    }
}

/// S2 and S6 on the commit record: terms never go back, versions always grow.
#[derive(Debug, Default)]
pub struct Commits {
    last_term: u64,
    last_version: u64,
    /// Number of accepted commits.
    pub count: u64,
}

impl Commits {
    /// The store lost its buckets: terms (revisions of the new leader key)
    /// and the commit sequence start again. What must not go back is what
    /// a worker sees: [`check_applied_version`] and [`Epochs`].
    pub fn on_store_wiped(&mut self) {
        self.last_term = 0;
        self.last_version = 0;
        self.count = 0;
    }

    /// A commit record was accepted by the store.
    pub fn on_commit(
        &mut self,
        term: u64,
        version: u64,
        max_leader_term: u64,
        at: u64,
        out: &mut Vec<Violation>,
    ) {
        if term < self.last_term {
            out.push(Violation {
                guarantee: Guarantee::S2,
                at,
                detail: format!("commit of version {version} under term {term} accepted after term {} had committed", self.last_term),
            });
        }
        if term > max_leader_term {
            out.push(Violation {
                guarantee: Guarantee::S2,
                at,
                detail: format!(
                    "commit under term {term}, but no leader key with that term was ever created"
                ),
            });
        }
        if version <= self.last_version && self.count > 0 {
            out.push(Violation {
                guarantee: Guarantee::S6,
                at,
                detail: format!(
                    "commit version went from {} to {version}",
                    self.last_version
                ),
            });
        }
        self.last_term = self.last_term.max(term);
        self.last_version = self.last_version.max(version);
        self.count += 1;
    }
}

/// S6 as a worker sees it: the assignment versions a process applies never
/// go back (version 0 reports a release of everything and is skipped).
/// `max_seen` is the highest version the process applied so far.
pub fn check_applied_version(
    who: &str,
    version: u64,
    max_seen: &mut u64,
    at: u64,
    out: &mut Vec<Violation>,
) {
    if version == 0 {
        return;
    }
    if version < *max_seen {
        out.push(Violation {
            guarantee: Guarantee::S6,
            at,
            detail: format!("{who} applied version {version} after version {max_seen}"),
        });
    }
    *max_seen = (*max_seen).max(version);
}

/// S6 on epochs: a grant never carries a smaller epoch than one granted
/// before for the same partition.
///
/// Across lost buckets, what was granted before is remembered only by the
/// processes that saw it: the store forgot it. So the epochs granted before
/// a loss bind later grants as far as some process that ran when the store
/// was lost, and still runs, knew of them (the highest version it had seen
/// then: epochs are the versions of their grants). Once every such process
/// is gone, nothing that exists knows those epochs, and no protocol could
/// continue above them.
#[derive(Debug, Default)]
pub struct Epochs {
    max: IdMap<u64>,
    lost: Vec<LostStore>,
}

/// The epochs granted in a store before it lost its buckets, and the
/// processes that ran then.
#[derive(Debug)]
struct LostStore {
    floors: IdMap<u64>,
    witnesses: Vec<Witness>,
}

/// A process running when the store lost its buckets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Witness {
    /// Its slot.
    pub slot: usize,
    /// Its incarnation in the slot.
    pub inc: u64,
    /// The highest assignment version it had seen.
    pub known: u64,
}

impl Epochs {
    /// The store lost its buckets while `witnesses` ran.
    pub fn on_store_lost(&mut self, witnesses: Vec<Witness>) {
        let floors = std::mem::take(&mut self.max);
        self.lost.push(LostStore { floors, witnesses });
    }

    /// A process was granted `p` with `epoch`; `alive(slot, inc)` tells
    /// whether a witness of a lost store still runs.
    pub fn on_grant(
        &mut self,
        p: PartitionId,
        epoch: u64,
        who: &str,
        at: u64,
        out: &mut Vec<Violation>,
        alive: impl Fn(usize, u64) -> bool,
    ) {
        self.lost.retain_mut(|lost| {
            lost.witnesses.retain(|w| alive(w.slot, w.inc));
            !lost.witnesses.is_empty()
        });
        let remembered = self
            .lost
            .iter()
            .filter_map(|lost| {
                let known = lost.witnesses.iter().map(|w| w.known).max()?;
                Some(lost.floors.get(&p).copied().unwrap_or(0).min(known))
            })
            .max()
            .unwrap_or(0);
        let max = self.max.entry(p).or_insert(0);
        let floor = (*max).max(remembered);
        if epoch < floor {
            out.push(Violation {
                guarantee: Guarantee::S6,
                at,
                detail: format!(
                    "{who} was granted {p} with epoch {epoch} after epoch {floor} had been granted"
                ),
            });
        }
        *max = (*max).max(epoch);
    }
}

/// S5: a graceful restart inside the planned-scale window gets its partitions
/// back.
#[derive(Debug, Clone)]
pub struct RestartWatch {
    /// Slot of the restarted process.
    pub slot: usize,
    /// The ID it had.
    pub id: WorkerId,
    /// What it held when it stopped.
    pub held: BTreeSet<PartitionId>,
    /// When it stopped.
    pub stopped_at: u64,
}

/// A process as the checks see it at one instant.
#[derive(Clone, Copy)]
pub struct ProcessView<'a> {
    /// Its name in reports.
    pub label: &'a str,
    /// Whether it runs (not crashed, not stopped).
    pub alive: bool,
    /// Whether it is paused (it cannot act until it resumes).
    pub paused: bool,
    /// Its clock now.
    pub local: Instant,
    /// When the store last lost its buckets, on its clock (if it ran then).
    pub store_lost_at: Option<Instant>,
    /// Its protocol state machine (read only).
    pub worker: &'a Worker,
}

impl ProcessView<'_> {
    /// Whether its ownership lease is still valid on its own clock.
    fn lease_valid(&self) -> bool {
        self.worker.lease_deadline().is_some_and(|d| self.local < d)
    }

    /// Whether it still holds `id` with a valid reservation on its own clock.
    /// A worker that sent the deletion of its key (the end of a stop) no
    /// longer does: its partitions are gone, and a claim by anyone else (a
    /// create) succeeds only once the deletion was applied.
    ///
    /// Nor does a worker whose last confirmed write went to a store that
    /// has since lost its buckets: a reservation is a key of the store, and
    /// that key is gone. A process that reaches the new, empty store first
    /// cannot tell a lost store from a new group, nor learn which IDs were
    /// taken, so no protocol can keep such a reservation; what it must keep
    /// is that the old holder learns of the loss by its first write (its
    /// compare-and-set renewal fails) before it acts on the ID again, and
    /// that no partition is owned twice meanwhile ([`Exclusivity`], S3,
    /// which does not make this exception).
    fn holds_id(&self, id: &WorkerId, reservation: Duration) -> bool {
        let renewal = self.worker.last_renewal();
        let in_lost_store = self
            .store_lost_at
            .is_some_and(|lost| renewal.is_some_and(|t| t < lost));
        self.alive
            && !self.worker.releasing_id()
            && self.worker.worker_id() == Some(id)
            && !in_lost_store
            && renewal.is_some_and(|t| self.local < t + reservation)
    }
}

/// S1: when process `claimer` claims `id`, no other live process may still
/// hold it with a valid reservation.
pub fn check_unique_id<'a>(
    claimer: usize,
    id: &WorkerId,
    processes: impl Iterator<Item = (usize, ProcessView<'a>)>,
    reservation: Duration,
    at: u64,
    out: &mut Vec<Violation>,
) {
    for (other, view) in processes {
        if other != claimer && view.holds_id(id, reservation) {
            out.push(Violation {
                guarantee: Guarantee::S1,
                at,
                detail: format!("p{claimer} claimed {id} while p{other} still holds it"),
            });
        }
    }
}

/// S3 after every step: no partition is effectively held by two processes.
/// A paused holder whose lease expired does not count (it drops before it
/// acts); under `KeepProcessing`, an overlap with a holder past its lease is
/// the documented cut-off exception, measured instead of reported.
#[derive(Debug, Default)]
pub struct Exclusivity {
    overlap_since: BTreeMap<PartitionId, u64>,
    reported: BTreeSet<PartitionId>,
    /// Longest tolerated overlap so far, ms.
    pub tolerated_ms: u64,
}

impl Exclusivity {
    /// Checks every contested partition of `ownership`; `view` describes a
    /// holder by its slot.
    pub fn check<'a>(
        &mut self,
        ownership: &Ownership,
        view: impl Fn(usize) -> ProcessView<'a>,
        keep_processing: bool,
        at: u64,
        out: &mut Vec<Violation>,
    ) {
        if ownership.contested.is_empty() {
            self.overlap_since.clear();
            self.reported.clear();
            return;
        }
        for &p in &ownership.contested {
            let mut effective = Vec::new();
            let mut tolerated = false;
            for &h in ownership.holders(&p) {
                let holder = view(h);
                let lease_ok = holder.lease_valid();
                if holder.paused && !lease_ok {
                    continue; // it cannot act, and will drop before acting
                }
                // Under KeepProcessing a running worker holds past its lease only
                // while it believes itself cut off: the documented exception.
                if keep_processing && !lease_ok {
                    tolerated = true;
                }
                effective.push(holder.label);
            }
            if effective.len() > 1 {
                if tolerated {
                    let since = *self.overlap_since.entry(p).or_insert(at);
                    self.tolerated_ms = self.tolerated_ms.max(at - since);
                } else if self.reported.insert(p) {
                    out.push(Violation {
                        guarantee: Guarantee::S3,
                        at,
                        detail: format!(
                            "partition {p} owned by {} at once",
                            effective.join(" and ")
                        ),
                    });
                }
            } else {
                self.overlap_since.remove(&p);
                self.reported.remove(&p);
            }
        }
    }
}

impl RestartWatch {
    /// S5: the first assignment applied after the graceful restart, by the
    /// process in slot `self.slot` holding `id` and `got`, must equal what it
    /// held before, if it came back under the same ID within `window_ms`.
    pub fn check(
        self,
        id: Option<&WorkerId>,
        got: &BTreeSet<PartitionId>,
        version: u64,
        window_ms: u64,
        at: u64,
        out: &mut Vec<Violation>,
    ) {
        let within = at < self.stopped_at + window_ms;
        if !within || id != Some(&self.id) || *got == self.held {
            return;
        }
        let lost = self.held.difference(got).count();
        let extra = got.difference(&self.held).count();
        out.push(Violation {
            guarantee: Guarantee::S5,
            at,
            detail: format!(
                "{} restarted gracefully and applied version {version} with {} partitions ({lost} missing, {extra} new) instead of its {}",
                self.id,
                got.len(),
                self.held.len()
            ),
        });
    }
}

/// Checks a state transition against the table.
pub fn check_transition(from: State, to: State, who: &str, at: u64, out: &mut Vec<Violation>) {
    if !from.can_go_to(to) {
        out.push(Violation {
            guarantee: Guarantee::Transitions,
            at,
            detail: format!("{who}: invalid transition {from} -> {to}"),
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(n: u64) -> PartitionId {
        PartitionId(n)
    }

    #[test]
    fn a_worker_applying_a_lower_version_is_caught() {
        let mut v = Vec::new();
        let mut max = 0;
        check_applied_version("p0", 4, &mut max, 1, &mut v);
        check_applied_version("p0", 0, &mut max, 2, &mut v); // released everything
        check_applied_version("p0", 5, &mut max, 3, &mut v);
        assert!(v.is_empty());
        // Planted: version 3 after 5 (a leader that restarted versions).
        check_applied_version("p0", 3, &mut max, 4, &mut v);
        assert_eq!(v.len(), 1);
        assert_eq!(v[0].guarantee, Guarantee::S6);
        assert_eq!(max, 5);
    }

    #[test]
    fn ownership_tracks_contest_and_completeness() {
        let mut o = Ownership::default();
        o.set_listed([p(1), p(2)].into_iter().collect(), 0);
        assert_eq!(o.bad(), 2);
        o.add(0, p(1), 1);
        o.add(1, p(2), 2);
        assert_eq!(o.complete_since, Some(2));
        o.add(1, p(1), 3);
        assert!(o.contested.contains(&p(1)));
        assert_eq!(o.complete_since, None);
        o.remove(0, p(1), 4);
        assert!(o.contested.is_empty());
        assert_eq!(o.complete_since, Some(4));
    }

    #[test]
    fn commits_catch_term_and_version_regressions() {
        let mut c = Commits::default();
        let mut v = Vec::new();
        c.on_commit(5, 1, 5, 0, &mut v);
        c.on_commit(5, 2, 5, 0, &mut v);
        assert!(v.is_empty());
        c.on_commit(3, 3, 9, 0, &mut v);
        assert_eq!(v[0].guarantee, Guarantee::S2);
        c.on_commit(9, 2, 9, 0, &mut v);
        assert_eq!(v[1].guarantee, Guarantee::S6);
        // A store that lost its buckets starts a new commit sequence.
        c.on_store_wiped();
        c.on_commit(2, 1, 2, 0, &mut v);
        c.on_commit(2, 2, 2, 0, &mut v);
        assert_eq!(v.len(), 2);
        c.on_commit(2, 2, 2, 0, &mut v);
        assert_eq!(v.len(), 3);
    }

    #[test]
    fn epochs_catch_regressions() {
        let mut e = Epochs::default();
        let mut v = Vec::new();
        let all = |_: usize, _: u64| true;
        e.on_grant(p(1), 4, "a", 0, &mut v, all);
        e.on_grant(p(1), 4, "b", 0, &mut v, all);
        assert!(v.is_empty());
        e.on_grant(p(1), 3, "c", 0, &mut v, all);
        assert_eq!(v.len(), 1);
    }

    #[test]
    fn epochs_of_a_lost_store_bind_while_a_process_that_knew_them_runs() {
        let mut e = Epochs::default();
        let mut v = Vec::new();
        e.on_grant(p(1), 6, "a", 0, &mut v, |_, _| true);
        e.on_grant(p(3), 6, "a", 0, &mut v, |_, _| true);
        e.on_store_lost(vec![
            Witness {
                slot: 0,
                inc: 1,
                known: 6,
            },
            Witness {
                slot: 1,
                inc: 2,
                known: 2,
            },
        ]);
        e.on_grant(p(1), 5, "b", 1, &mut v, |_, _| true);
        assert_eq!(v.len(), 1, "slot 0 knew epoch 6");
        // Only slot 1, which had seen version 2, still runs: epoch 3 of p3
        // (granted 6 before the loss) is not below anything it knew.
        e.on_grant(p(3), 3, "c", 2, &mut v, |slot, _| slot == 1);
        assert_eq!(v.len(), 1);
        e.on_grant(p(3), 1, "c", 2, &mut v, |slot, _| slot == 1);
        assert_eq!(v.len(), 2, "epoch 3 was granted after the loss");
        e.on_grant(p(2), 4, "c", 2, &mut v, |slot, _| slot == 1);
        assert_eq!(v.len(), 2, "p2 was never granted before the loss");
        // Nobody who ran then runs now: only what was granted since binds.
        e.on_grant(p(1), 5, "d", 3, &mut v, |_, _| false);
        assert_eq!(v.len(), 2);
        e.on_grant(p(1), 4, "d", 3, &mut v, |_, _| false);
        assert_eq!(v.len(), 3, "epoch 5 was granted after the loss");
    }
}
