//! One step from the committed assignment towards the target: keep what does not
//! move, revoke what moves away from a worker that may hold it, grant to a live
//! worker what nobody else may hold. Repeated until committed equals target; a move takes
//! two versions (revoke, then grant) unless the old owner certainly holds
//! nothing (departed or evicted), in which case it takes one.

use super::holdings::Holdings;
use crate::ids::WorkerId;
use crate::partition::PartitionId;
use crate::worker::planted::{PlantedBug, PlantedBugs};
use std::collections::{BTreeMap, BTreeSet};

/// Owner and epoch of every owned partition.
pub(crate) type Owners = BTreeMap<PartitionId, (WorkerId, u64)>;

/// The next assignment and what it changes.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Step {
    pub(crate) owners: Owners,
    pub(crate) granted: usize,
    pub(crate) revoked: usize,
    /// Moves that still wait for a release.
    pub(crate) waiting: usize,
}

/// Computes the next step (`planted` may hold `GrantWithoutRevoke`, a planted
/// bug for the simulator's self-test).
pub(crate) fn next_step(
    committed: &Owners,
    target: &BTreeMap<PartitionId, WorkerId>,
    holdings: &Holdings,
    live: &BTreeSet<WorkerId>,
    version: u64,
    planted: PlantedBugs,
) -> Step {
    let mut step = Step::default();
    // Both maps are in ID order: one walk along both visits every partition
    // of either once, in order, and the next owners come out sorted (built
    // at once rather than inserted one by one).
    let mut owners: Vec<(PartitionId, (WorkerId, u64))> = Vec::with_capacity(target.len());
    let mut committed_iter = committed.iter();
    let mut target_iter = target.iter();
    let mut next_committed = committed_iter.next();
    let mut next_target = target_iter.next();
    loop {
        let (p, current, wanted) = match (next_committed, next_target) {
            (None, None) => break,
            (Some((cp, c)), Some((tp, w))) if cp == tp => {
                next_committed = committed_iter.next();
                next_target = target_iter.next();
                (cp, Some(c), Some(w))
            }
            (Some((cp, c)), Some((tp, _))) if cp < tp => {
                next_committed = committed_iter.next();
                (cp, Some(c), None)
            }
            (Some((cp, c)), None) => {
                next_committed = committed_iter.next();
                (cp, Some(c), None)
            }
            (_, Some((tp, w))) => {
                next_target = target_iter.next();
                (tp, None, Some(w))
            }
        };
        if current.map(|(w, _)| w) == wanted {
            if let Some(c) = current {
                owners.push((*p, c.clone()));
            }
            continue;
        }
        if planted.has(PlantedBug::GrantWithoutRevoke) {
            if let Some(b) = wanted {
                owners.push((*p, (b.clone(), version)));
                step.granted += 1;
            }
            continue;
        }
        if let Some((a, _)) = current
            && holdings.may_hold(a, p)
        {
            step.revoked += 1;
            if wanted.is_some() {
                step.waiting += 1;
            }
            continue;
        }
        if let Some(b) = wanted {
            if !live.contains(b) || holdings.others_may_hold(b, p) {
                step.waiting += 1;
            } else {
                owners.push((*p, (b.clone(), version)));
                step.granted += 1;
            }
        }
    }
    step.owners = owners.into_iter().collect();
    step
}
