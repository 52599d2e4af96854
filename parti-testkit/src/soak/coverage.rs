//! Who owns what right now, replayed from the timeline: the online view the
//! harness waits on, and the replay the checker measures re-own latency with.

use super::events::{Event, ProcId};
use std::collections::{BTreeMap, BTreeSet};

/// Ownership as the processes report it, plus which processes are dead or frozen.
#[derive(Debug, Default)]
pub struct Coverage {
    owners: BTreeMap<String, BTreeSet<ProcId>>,
    dead: BTreeSet<ProcId>,
    frozen: BTreeSet<ProcId>,
}

impl Coverage {
    /// Applies one event.
    pub fn apply(&mut self, event: &Event) {
        match event {
            Event::Acquired(o) => {
                if !self.dead.contains(&o.proc) {
                    self.owners
                        .entry(o.partition.clone())
                        .or_default()
                        .insert(o.proc);
                }
            }
            Event::Released(o) => {
                if let Some(set) = self.owners.get_mut(&o.partition) {
                    set.remove(&o.proc);
                }
            }
            Event::Died(proc) => {
                self.dead.insert(*proc);
                self.frozen.remove(proc);
                for set in self.owners.values_mut() {
                    set.remove(proc);
                }
            }
            Event::Frozen(proc) => {
                self.frozen.insert(*proc);
            }
            Event::Thawed(proc) => {
                self.frozen.remove(proc);
            }
            Event::Started(..)
            | Event::CutOff(_)
            | Event::Reconnected(_)
            | Event::Fault(_)
            | Event::EndOfRun => {}
        }
    }

    /// Whether `partition` has an owner that is alive and not frozen (a cut-off
    /// owner counts: under `KeepProcessing` it keeps working).
    pub fn is_served(&self, partition: &str) -> bool {
        self.owners
            .get(partition)
            .is_some_and(|set| set.iter().any(|p| !self.frozen.contains(p)))
    }

    /// The partitions of `all` that nobody serves.
    pub fn unserved<'a>(&self, all: &'a [String]) -> Vec<&'a str> {
        all.iter()
            .filter(|p| !self.is_served(p))
            .map(String::as_str)
            .collect()
    }

    /// Whether every partition of `all` is served.
    pub fn all_served(&self, all: &[String]) -> bool {
        all.iter().all(|p| self.is_served(p))
    }

    /// The partitions that more than one live process claims right now.
    pub fn doubly_owned(&self) -> Vec<(&str, Vec<ProcId>)> {
        self.owners
            .iter()
            .filter(|(_, set)| set.len() > 1)
            .map(|(p, set)| (p.as_str(), set.iter().copied().collect()))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::soak::events::Ownership;

    fn own(proc: u32, partition: &str) -> Ownership {
        Ownership {
            proc: ProcId(proc),
            worker: format!("worker-{proc}"),
            partition: partition.into(),
            epoch: 1,
            version: 1,
        }
    }

    #[test]
    fn frozen_and_dead_owners_do_not_serve() {
        let all = vec!["p-0".to_string(), "p-1".to_string()];
        let mut c = Coverage::default();
        c.apply(&Event::Acquired(own(1, "p-0")));
        assert_eq!(c.unserved(&all), vec!["p-1"]);
        c.apply(&Event::Acquired(own(2, "p-1")));
        assert!(c.all_served(&all));
        c.apply(&Event::Frozen(ProcId(2)));
        assert_eq!(c.unserved(&all), vec!["p-1"]);
        c.apply(&Event::Thawed(ProcId(2)));
        c.apply(&Event::Died(ProcId(1)));
        assert_eq!(c.unserved(&all), vec!["p-0"]);
        // A late line of a dead process does not bring it back.
        c.apply(&Event::Acquired(own(1, "p-0")));
        assert!(!c.is_served("p-0"));
    }
}
