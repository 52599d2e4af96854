//! The managers of one report cell and the question the report keeps asking
//! them: is the assignment complete (every partition owned by exactly one
//! running worker, every worker `Stable` with its share applied, one leader)?

use parti::{Assignment, Manager, Partition, PartitionId, State};
use std::collections::HashMap;
use std::time::Duration;
use tokio::sync::watch;
use tokio::time::Instant;

/// Where a worker's driver runs (see [`super::lane`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Place {
    /// The lane of the designated leader.
    LeaderLane,
    /// The lane of the designated follower.
    FollowerLane,
    /// The shared main runtime.
    Main,
}

struct Member {
    manager: Manager,
    assignment: watch::Receiver<Assignment>,
    place: Place,
}

/// The running managers, by slot (a slot is emptied when its worker goes).
pub struct Fleet {
    members: Vec<Option<Member>>,
    index: HashMap<PartitionId, usize>,
}

impl Fleet {
    /// An empty fleet for this partition list.
    pub fn new(partitions: &[Partition]) -> Fleet {
        Fleet {
            members: Vec::new(),
            index: partitions
                .iter()
                .enumerate()
                .map(|(i, p)| (p.id(), i))
                .collect(),
        }
    }

    /// Number of partitions.
    pub fn partitions(&self) -> usize {
        self.index.len()
    }

    /// Adds a started manager; returns its slot.
    pub fn push(&mut self, manager: Manager, place: Place) -> usize {
        let assignment = manager.subscribe_assignment();
        self.members.push(Some(Member {
            manager,
            assignment,
            place,
        }));
        self.members.len() - 1
    }

    /// Removes the manager of `slot` (to drop or stop it).
    pub fn take(&mut self, slot: usize) -> Option<Manager> {
        self.members.get_mut(slot)?.take().map(|m| m.manager)
    }

    /// Slots of the running managers.
    pub fn live(&self) -> Vec<usize> {
        (0..self.members.len())
            .filter(|&i| self.members[i].is_some())
            .collect()
    }

    /// Where the worker of `slot` runs.
    pub fn place(&self, slot: usize) -> Option<Place> {
        self.members.get(slot)?.as_ref().map(|m| m.place)
    }

    /// The slot of the running manager that leads, if exactly one does.
    pub fn leader(&self) -> Option<usize> {
        let leaders: Vec<usize> = self
            .live()
            .into_iter()
            .filter(|&i| {
                self.members[i]
                    .as_ref()
                    .is_some_and(|m| m.manager.is_leader())
            })
            .collect();
        (leaders.len() == 1).then(|| leaders[0])
    }

    /// The partitions (by index) the manager of `slot` shows as owned.
    pub fn owned_by(&self, slot: usize) -> Vec<usize> {
        match self.members.get(slot).and_then(Option::as_ref) {
            Some(m) => m
                .assignment
                .borrow()
                .partitions
                .iter()
                .filter_map(|p| self.index.get(&p.partition.id()).copied())
                .collect(),
            None => Vec::new(),
        }
    }

    /// Whether every partition of `parts` is shown as owned by some running
    /// manager.
    pub fn all_owned(&self, parts: &[usize]) -> bool {
        let mut owned = vec![false; self.index.len()];
        for slot in self.live() {
            for p in self.owned_by(slot) {
                owned[p] = true;
            }
        }
        parts.iter().all(|&p| owned[p])
    }

    /// If the assignment is complete, the owner slot of every partition;
    /// else what is missing.
    pub fn complete(&self) -> Result<Vec<usize>, String> {
        let live = self.live();
        if live.is_empty() {
            return Err("no manager running".into());
        }
        let mut owner = vec![usize::MAX; self.index.len()];
        let mut leaders = 0;
        for &slot in &live {
            let Some(m) = self.members[slot].as_ref() else {
                continue;
            };
            let state = m.manager.state();
            if state != State::Stable {
                return Err(format!("slot {slot} is {state}"));
            }
            leaders += usize::from(m.manager.is_leader());
            let owned = self.owned_by(slot);
            // With at least one partition per worker, a balanced strategy
            // gives everyone something: an empty share is not applied yet.
            if owned.is_empty() && self.index.len() >= live.len() {
                return Err(format!("slot {slot} owns nothing"));
            }
            for p in owned {
                if owner[p] != usize::MAX {
                    return Err(format!(
                        "partition {p} shown by slots {} and {slot}",
                        owner[p]
                    ));
                }
                owner[p] = slot;
            }
        }
        if leaders != 1 {
            return Err(format!("{leaders} leaders"));
        }
        let unowned = owner.iter().filter(|o| **o == usize::MAX).count();
        if unowned > 0 {
            return Err(format!("{unowned} partitions unowned"));
        }
        Ok(owner)
    }

    /// Waits until [`Fleet::complete`] holds and keeps holding for `hold`;
    /// returns the moment it first held (in that final run) and the owners.
    pub async fn settle(
        &self,
        within: Duration,
        hold: Duration,
        poll: Duration,
    ) -> Result<(Instant, Vec<usize>), String> {
        let deadline = Instant::now() + within;
        let mut since: Option<Instant> = None;
        loop {
            let now = Instant::now();
            match self.complete() {
                Ok(owners) => {
                    let first = *since.get_or_insert(now);
                    if now >= first + hold {
                        return Ok((first, owners));
                    }
                }
                Err(why) => {
                    since = None;
                    if now >= deadline {
                        return Err(format!("not complete after {within:?}: {why}"));
                    }
                }
            }
            tokio::time::sleep(poll).await;
        }
    }

    /// Waits until `cond` holds on the fleet; returns when it first did.
    pub async fn wait_for(
        &self,
        within: Duration,
        poll: Duration,
        what: &str,
        mut cond: impl FnMut(&Fleet) -> bool,
    ) -> Result<Instant, String> {
        let deadline = Instant::now() + within;
        loop {
            let now = Instant::now();
            if cond(self) {
                return Ok(now);
            }
            if now >= deadline {
                return Err(format!("{what}: not within {within:?}"));
            }
            tokio::time::sleep(poll).await;
        }
    }
}

/// Number of partitions whose owner slot differs between two owner lists.
pub fn moved(before: &[usize], after: &[usize]) -> usize {
    before.iter().zip(after).filter(|(b, a)| b != a).count()
}
