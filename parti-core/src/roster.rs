//! What a worker knows about the group's members, from its watch: every
//! member while it leads or chooses an ID from the roster, only itself and the leader
//! otherwise (see [`crate::backend::MemberScope`]). While the watch is
//! narrowed, the others' views are kept as last seen, *frozen*: a worker elected
//! later keeps, for a member whose record its new snapshot shows unchanged
//! (same revision and value), the instant it saw that record change, so a
//! member that was already silent is not given a fresh start. Frozen views
//! are dropped when the store may have been replaced meanwhile (a broken
//! watch, a claim, a reclaim).
//!
//! Liveness is judged on the observer's own clock: `last_change` is when *this*
//! worker saw the record's revision change, never a timestamp written by the
//! member, so clock skew between hosts cannot expire a healthy member.

use crate::ids::WorkerId;
use crate::records::{MemberRecord, MemberStatus, Revision};
use crate::time::Instant;
use std::collections::btree_map::Entry;
use std::collections::{BTreeMap, BTreeSet};

/// One member as last seen.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MemberView {
    /// Its record.
    pub record: MemberRecord,
    /// The record's revision.
    pub revision: Revision,
    /// When this observer last saw the revision change.
    pub last_change: Instant,
}

/// A member whose key disappeared.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Departure {
    /// When this observer saw it go.
    pub at: Instant,
    /// Revision of the removal.
    pub revision: Revision,
    /// Its last record.
    pub last: MemberRecord,
}

/// The members seen through the watch.
#[derive(Clone, Debug, Default)]
pub struct Roster {
    members: BTreeMap<WorkerId, MemberView>,
    departed: BTreeMap<WorkerId, Departure>,
    caught_up: bool,
    snapshot_seen: Option<BTreeSet<WorkerId>>,
    /// The watch includes only these members' keys (its own and the
    /// leader's): the other views are frozen, and a snapshot says nothing
    /// about them. `None`: every member.
    only: Option<Vec<WorkerId>>,
    /// Every member by the time its record last changed (its
    /// `last_change`, then its ID): the leader finds the next member to
    /// fall silent without visiting all of them. Kept only once asked for
    /// ([`Roster::index_changes`]): a follower never needs it.
    by_change: Option<ChangeOrder>,
}

/// The members in the order of their last change, and the lowest ID (the
/// empty one) to start a range at a given time.
#[derive(Clone, Debug)]
struct ChangeOrder {
    set: BTreeSet<(Instant, WorkerId)>,
    lowest: WorkerId,
}

impl Roster {
    /// Records a new value of a member key. Returns the record the roster
    /// held for `id` before (found by the same single lookup).
    pub(crate) fn put(
        &mut self,
        id: WorkerId,
        record: MemberRecord,
        revision: Revision,
        now: Instant,
    ) -> Option<MemberRecord> {
        // The first value of a key in a new watch's snapshot is its current
        // value, whatever its revision: the bucket may have been lost and
        // recreated, its revisions starting again from 1.
        let first_in_snapshot = self
            .snapshot_seen
            .as_mut()
            .is_some_and(|seen| seen.insert(id.clone()));
        if !first_in_snapshot
            && self
                .departed
                .get(&id)
                .is_some_and(|d| d.revision >= revision)
        {
            // older than the removal we already saw
            return self.members.get(&id).map(|v| v.record.clone());
        }
        self.departed.remove(&id);
        match self.members.entry(id) {
            Entry::Occupied(mut held) => {
                let view = held.get_mut();
                // Unchanged in a snapshot: same revision and same value (a
                // value of a lost store may share its revision with the new
                // store's value of the key: compare the values).
                let stale = if first_in_snapshot {
                    view.revision == revision && view.record == record
                } else {
                    view.revision >= revision
                };
                if stale {
                    return Some(view.record.clone());
                }
                view.revision = revision;
                if view.last_change != now {
                    if let Some(index) = &mut self.by_change {
                        let id = held.key().clone();
                        index.set.remove(&(held.get().last_change, id.clone()));
                        index.set.insert((now, id));
                    }
                    held.get_mut().last_change = now;
                }
                Some(std::mem::replace(&mut held.get_mut().record, record))
            }
            Entry::Vacant(slot) => {
                if let Some(index) = &mut self.by_change {
                    index.set.insert((now, slot.key().clone()));
                }
                slot.insert(MemberView {
                    record,
                    revision,
                    last_change: now,
                });
                None
            }
        }
    }

    /// Records that a member key disappeared.
    pub(crate) fn remove(&mut self, id: &WorkerId, revision: Revision, now: Instant) {
        if self.members.get(id).is_some_and(|v| v.revision > revision) {
            return; // a removal older than what we hold
        }
        if let Some(view) = self.members.remove(id) {
            if let Some(index) = &mut self.by_change {
                index.set.remove(&(view.last_change, id.clone()));
            }
            let departure = Departure {
                at: now,
                revision,
                last: view.record,
            };
            self.departed.insert(id.clone(), departure);
        }
    }

    /// A new watch is starting: its snapshot will replace what is known.
    pub(crate) fn begin_snapshot(&mut self) {
        self.caught_up = false;
        self.snapshot_seen = Some(Default::default());
        // A departure's revision orders the items of the watch that
        // delivered it. A new watch may be of a new store (lost buckets,
        // revisions starting again from 1), and in the same store every
        // later write has a higher revision anyway: its values of a
        // departed key count, whatever their revision.
        for departure in self.departed.values_mut() {
            departure.revision = 0;
        }
    }

    /// The next watches include only the member keys of `only` (`Some`:
    /// its own and the leader's, see [`crate::backend::MemberScope::Own`])
    /// or every member key (`None`). Narrowing freezes the other members'
    /// views; widening keeps frozen views for the new snapshot to confirm
    /// or replace.
    pub(crate) fn set_scope(&mut self, only: Option<Vec<WorkerId>>) {
        self.only = only;
    }

    /// Drops the frozen views (of the members a narrowed watch does not
    /// follow): the store may have lost its buckets since they were seen,
    /// and a value of a new store may share its revision and value with a
    /// frozen one, however old. Departures already seen stay.
    pub(crate) fn forget_frozen(&mut self) {
        if let Some(only) = &self.only {
            self.members.retain(|id, _| only.contains(id));
            self.reindex();
        }
    }

    /// Drops every view but `own`'s (see [`Roster::forget_frozen`]): when a
    /// claim starts.
    pub(crate) fn forget_others(&mut self, own: Option<&WorkerId>) {
        self.members.retain(|id, _| Some(id) == own);
        self.reindex();
    }

    /// Rebuilds [`Roster::by_change`] from the members, if it is kept.
    fn reindex(&mut self) {
        if self.by_change.is_some() {
            self.by_change = None;
            self.index_changes();
        }
    }

    /// Keeps the members ordered by the time of their last change from now
    /// on (the leader asks [`Roster::changed_from`] after every event).
    pub(crate) fn index_changes(&mut self) {
        if self.by_change.is_none() {
            self.by_change = Some(ChangeOrder {
                set: self
                    .members
                    .iter()
                    .map(|(id, v)| (v.last_change, id.clone()))
                    .collect(),
                lowest: WorkerId::from_name(""),
            });
        }
    }

    /// The snapshot is complete: members it did not mention are gone. Returns
    /// their IDs.
    pub(crate) fn end_snapshot(&mut self, now: Instant) -> Vec<WorkerId> {
        self.caught_up = true;
        let Some(seen) = self.snapshot_seen.take() else {
            return Vec::new();
        };
        // A watch of its own key says nothing about the others (frozen).
        let watched = |w: &WorkerId| self.only.as_ref().is_none_or(|only| only.contains(w));
        let gone: Vec<WorkerId> = self
            .members
            .keys()
            .filter(|w| !seen.contains(*w) && watched(w))
            .cloned()
            .collect();
        for w in &gone {
            // The removal itself was not seen, so its revision is unknown:
            // 0, so that no later value of the key is taken for an older one
            // (the store may have lost its buckets: the key's next value can
            // carry a lower revision than the last one seen here).
            if let Some(view) = self.members.remove(w) {
                if let Some(index) = &mut self.by_change {
                    index.set.remove(&(view.last_change, w.clone()));
                }
                let departure = Departure {
                    at: now,
                    revision: 0,
                    last: view.record,
                };
                self.departed.insert(w.clone(), departure);
            }
        }
        gone
    }

    /// Whether the initial snapshot is complete.
    pub fn caught_up(&self) -> bool {
        self.caught_up
    }

    /// A member's view.
    pub fn get(&self, id: &WorkerId) -> Option<&MemberView> {
        self.members.get(id)
    }

    /// All members, sorted by ID.
    pub fn members(&self) -> impl Iterator<Item = (&WorkerId, &MemberView)> {
        self.members.iter()
    }

    /// How a departed member left, if it did recently.
    pub fn departure(&self, id: &WorkerId) -> Option<&Departure> {
        self.departed.get(id)
    }

    /// Forgets departures older than `before`.
    pub(crate) fn prune_departures(&mut self, before: Instant) {
        self.departed.retain(|_, d| d.at >= before);
    }

    /// Resets every member's `last_change` to `now` (after the observer itself
    /// was cut off, its observations are stale; restarting the clocks is the
    /// conservative choice).
    pub(crate) fn refresh_all(&mut self, now: Instant) {
        for view in self.members.values_mut() {
            view.last_change = view.last_change.max(now);
        }
        self.reindex();
    }

    /// The members whose record last changed at `from` or later, in the
    /// order of that time (then of their IDs), with the time.
    /// Without the order kept (`index_changes`, switched on by a leader), it is computed
    /// for the call.
    pub fn changed_from(&self, from: Instant) -> impl Iterator<Item = (Instant, &WorkerId)> {
        let kept = self.by_change.as_ref().map(|index| {
            index
                .set
                .range((from, index.lowest.clone())..)
                .map(|(t, id)| (*t, id))
        });
        let computed = self.by_change.is_none().then(|| {
            let mut list: Vec<(Instant, &WorkerId)> = self
                .members
                .iter()
                .filter(|(_, v)| v.last_change >= from)
                .map(|(id, v)| (v.last_change, id))
                .collect();
            list.sort();
            list
        });
        kept.into_iter()
            .flatten()
            .chain(computed.into_iter().flatten())
    }

    /// Whether `id` is an active member seen changing within `ttl`.
    pub fn is_live(&self, id: &WorkerId, now: Instant, ttl: std::time::Duration) -> bool {
        self.members.get(id).is_some_and(|v| {
            v.record.status == MemberStatus::Active && now.saturating_since(v.last_change) < ttl
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::InstanceId;

    /// The time order a leader keeps follows every kind of change (new,
    /// renewed and removed members, a snapshot's departures, dropped views,
    /// a refresh) and answers as the order computed from the members does.
    #[test]
    fn the_kept_time_order_matches_the_members() {
        let id = |i| WorkerId::new("worker", i);
        let record = |i| MemberRecord::fresh(InstanceId(u64::from(i)), 1);
        let at = |ms| Instant::from_millis(ms);
        let mut kept = Roster::default();
        kept.index_changes();
        let mut plain = Roster::default();
        let check = |kept: &Roster, plain: &Roster| {
            for from in [0, 5, 10, 15, 20, 25, 30, 40, 100] {
                let a: Vec<_> = kept.changed_from(at(from)).collect();
                let b: Vec<_> = plain.changed_from(at(from)).collect();
                assert_eq!(a, b, "from {from}");
                let scanned: Vec<_> = {
                    let mut v: Vec<_> = plain
                        .members()
                        .filter(|(_, v)| v.last_change >= at(from))
                        .map(|(w, v)| (v.last_change, w))
                        .collect();
                    v.sort();
                    v
                };
                assert_eq!(a, scanned, "from {from}");
            }
        };
        for roster in [&mut kept, &mut plain] {
            roster.begin_snapshot();
            for i in 0..6 {
                roster.put(id(i), record(i), u64::from(i) + 1, at(u64::from(i) * 5));
            }
            roster.end_snapshot(at(30));
        }
        check(&kept, &plain);
        for roster in [&mut kept, &mut plain] {
            roster.put(id(2), record(2), 20, at(31)); // renewed
            roster.put(id(3), record(3), 2, at(32)); // stale: unchanged
            roster.remove(&id(4), 21, at(33));
            roster.put(id(7), record(7), 22, at(33)); // new
        }
        check(&kept, &plain);
        for roster in [&mut kept, &mut plain] {
            roster.begin_snapshot();
            roster.put(id(0), record(0), 1, at(40));
            roster.put(id(2), record(2), 20, at(40));
            roster.end_snapshot(at(40)); // the others are gone
        }
        check(&kept, &plain);
        assert_eq!(kept.changed_from(at(0)).count(), 2);
        for roster in [&mut kept, &mut plain] {
            roster.refresh_all(at(35));
            roster.put(id(5), record(5), 30, at(36));
            roster.forget_others(Some(&id(5)));
        }
        check(&kept, &plain);
        assert_eq!(kept.changed_from(at(0)).count(), 1);
    }

    #[test]
    fn a_narrow_snapshot_freezes_the_others_and_a_wide_one_confirms_them() {
        let (me, silent, busy) = (
            WorkerId::new("worker", 0),
            WorkerId::new("worker", 1),
            WorkerId::new("worker", 2),
        );
        let record = |i| MemberRecord::fresh(InstanceId(i), 1);
        let at = |ms| Instant::ZERO + std::time::Duration::from_millis(ms);
        let mut roster = Roster::default();
        roster.begin_snapshot();
        roster.put(me.clone(), record(0), 10, at(0));
        roster.put(silent.clone(), record(1), 11, at(0));
        roster.put(busy.clone(), record(2), 12, at(0));
        roster.end_snapshot(at(0));
        // Narrowed: the others are neither gone nor updated.
        roster.set_scope(Some(vec![me.clone()]));
        roster.begin_snapshot();
        roster.put(me.clone(), record(0), 10, at(1_000));
        assert!(roster.end_snapshot(at(1_000)).is_empty());
        assert_eq!(roster.members().count(), 3);
        // Widened: an unchanged record keeps when it was seen changing; a
        // changed one counts from now.
        roster.set_scope(None);
        roster.begin_snapshot();
        roster.put(me.clone(), record(0), 10, at(5_000));
        roster.put(silent.clone(), record(1), 11, at(5_000));
        roster.put(busy.clone(), record(2), 40, at(5_000));
        assert!(roster.end_snapshot(at(5_000)).is_empty());
        assert_eq!(roster.get(&silent).map(|v| v.last_change), Some(at(0)));
        assert_eq!(roster.get(&busy).map(|v| v.last_change), Some(at(5_000)));
        // Frozen views go when the store may have been replaced.
        roster.set_scope(Some(vec![me.clone()]));
        roster.forget_frozen();
        assert_eq!(roster.members().count(), 1);
    }

    #[test]
    fn a_member_missing_from_a_snapshot_comes_back_with_any_revision() {
        // The store lost its buckets: a member absent from the new watch's
        // snapshot claims its ID again, at a revision far below the last one
        // seen in the lost store. Its new record counts.
        let id = WorkerId::new("worker", 2);
        let record = MemberRecord::fresh(InstanceId(7), 1);
        let mut roster = Roster::default();
        roster.begin_snapshot();
        roster.put(id.clone(), record.clone(), 300, Instant::ZERO);
        roster.end_snapshot(Instant::ZERO);
        roster.begin_snapshot();
        assert_eq!(roster.end_snapshot(Instant::ZERO), vec![id.clone()]);
        assert!(roster.get(&id).is_none());
        roster.put(id.clone(), record, 5, Instant::ZERO);
        assert_eq!(roster.get(&id).map(|v| v.revision), Some(5));
        // A new store's value that shares its revision with the lost
        // store's value of the key still counts.
        roster.begin_snapshot();
        let other = MemberRecord::fresh(InstanceId(9), 1);
        roster.put(id.clone(), other.clone(), 5, Instant::ZERO);
        roster.end_snapshot(Instant::ZERO);
        assert_eq!(roster.get(&id).map(|v| &v.record), Some(&other));
        // A removal delivered live still guards against older values.
        roster.remove(&id, 9, Instant::ZERO);
        roster.put(
            id.clone(),
            MemberRecord::fresh(InstanceId(8), 1),
            8,
            Instant::ZERO,
        );
        assert!(roster.get(&id).is_none());
        // ... but not those of a later watch (perhaps of a new store, whose
        // revisions start again from 1): a new claim of the ID arriving
        // live, after the new watch's snapshot, counts.
        roster.begin_snapshot();
        roster.end_snapshot(Instant::ZERO);
        roster.put(
            id.clone(),
            MemberRecord::fresh(InstanceId(8), 1),
            3,
            Instant::ZERO,
        );
        assert_eq!(roster.get(&id).map(|v| v.revision), Some(3));
    }
}
