//! Ownership recorder fed by the hooks, with the overlap and epoch checks.

use super::lock;
use async_trait::async_trait;
use parti::{Hooks, OwnedPartition, Partition, State, WorkerId};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// One period during which one manager (a "label": one process incarnation)
/// owned one partition, as reported by its hooks.
#[derive(Clone, Debug)]
pub struct Interval {
    pub label: String,
    pub partition: Partition,
    pub epoch: u64,
    pub version: u64,
    pub acquired: Instant,
    /// `None` while still owned.
    pub released: Option<Instant>,
}

impl Interval {
    fn end(&self) -> Option<Instant> {
        self.released
    }
}

/// One `on_assignment_changed` call.
#[derive(Clone, Debug)]
pub struct HookCall {
    pub label: String,
    pub at: Instant,
    pub version: u64,
    pub added: usize,
    pub removed: usize,
}

#[derive(Default)]
struct Rec {
    intervals: Vec<Interval>,
    open: BTreeMap<(String, Partition), usize>,
    calls: Vec<HookCall>,
    /// Labels whose manager was dropped (crashed), with the time.
    dead: BTreeMap<String, Instant>,
    /// Worker ID of each label, once its `start()` returned.
    ids: BTreeMap<String, WorkerId>,
    /// Worker IDs seen per label over time (polled by `Fleet::check`).
    id_history: Vec<(String, Instant, Option<WorkerId>)>,
    /// State changes reported by the hooks: (label, when, from, to).
    states: Vec<(String, Instant, State, State)>,
    /// Hook calls that contradict the ownership history (double acquire,
    /// release of something not held, a call after the crash).
    anomalies: Vec<String>,
}

/// Records ownership intervals from the hooks of many managers.
#[derive(Clone, Default)]
pub struct Recorder(Arc<Mutex<Rec>>);

impl Recorder {
    /// Hooks for the manager called `label`.
    pub fn hooks(&self, label: &str) -> RecordingHooks {
        RecordingHooks {
            label: label.to_string(),
            rec: self.clone(),
        }
    }

    fn apply(
        &self,
        label: &str,
        added: &[OwnedPartition],
        removed: &[OwnedPartition],
        version: u64,
    ) {
        let now = Instant::now();
        let mut r = lock(&self.0);
        r.calls.push(HookCall {
            label: label.to_string(),
            at: now,
            version,
            added: added.len(),
            removed: removed.len(),
        });
        if r.dead.contains_key(label) {
            r.anomalies.push(format!(
                "{label}: hook call after its crash (v{version}, +{} -{})",
                added.len(),
                removed.len()
            ));
            return;
        }
        for p in removed {
            match r.open.remove(&(label.to_string(), p.partition.clone())) {
                Some(i) => r.intervals[i].released = Some(now),
                None => r.anomalies.push(format!(
                    "{label}: released {} (v{version}) that it did not hold",
                    p.partition.name()
                )),
            }
        }
        for p in added {
            let key = (label.to_string(), p.partition.clone());
            if r.open.contains_key(&key) {
                r.anomalies.push(format!(
                    "{label}: acquired {} (v{version}) that it already held",
                    p.partition.name()
                ));
                continue;
            }
            let i = r.intervals.len();
            r.intervals.push(Interval {
                label: label.to_string(),
                partition: p.partition.clone(),
                epoch: p.epoch,
                version,
                acquired: now,
                released: None,
            });
            r.open.insert(key, i);
        }
    }

    /// The manager `label` was dropped at `at`: its intervals end there.
    pub fn crashed(&self, label: &str, at: Instant) {
        let mut r = lock(&self.0);
        r.dead.insert(label.to_string(), at);
        let keys: Vec<_> = r.open.keys().filter(|(l, _)| l == label).cloned().collect();
        for key in keys {
            if let Some(i) = r.open.remove(&key) {
                r.intervals[i].released = Some(at);
            }
        }
    }

    /// Remembers the worker ID `label` runs under.
    pub fn set_id(&self, label: &str, id: WorkerId) {
        lock(&self.0).ids.insert(label.to_string(), id);
    }

    /// Notes the worker ID `label` shows now (kept as a history of changes).
    pub fn note_id(&self, label: &str, id: Option<WorkerId>) {
        let mut r = lock(&self.0);
        let last = r
            .id_history
            .iter()
            .rev()
            .find(|(l, ..)| l == label)
            .map(|(_, _, id)| id.clone());
        if last.as_ref() != Some(&id) {
            r.id_history.push((label.to_string(), Instant::now(), id));
        }
    }

    /// The IDs `label` was seen holding, relative to `t0`.
    pub fn ids_of(&self, label: &str, t0: Instant) -> String {
        lock(&self.0)
            .id_history
            .iter()
            .filter(|(l, ..)| l == label)
            .map(|(_, at, id)| {
                format!(
                    "{:?}: {}",
                    at.saturating_duration_since(t0),
                    id.as_ref().map_or("none", |w| w.as_str())
                )
            })
            .collect::<Vec<_>>()
            .join(", ")
    }

    pub fn id_of(&self, label: &str) -> Option<WorkerId> {
        lock(&self.0).ids.get(label).cloned()
    }

    /// What `label` holds according to its hooks.
    pub fn held_by(&self, label: &str) -> BTreeSet<Partition> {
        lock(&self.0)
            .open
            .keys()
            .filter(|(l, _)| l == label)
            .map(|(_, p)| p.clone())
            .collect()
    }

    /// Current holders of every partition according to the hooks.
    pub fn holders(&self) -> BTreeMap<Partition, Vec<String>> {
        let r = lock(&self.0);
        let mut out: BTreeMap<Partition, Vec<String>> = BTreeMap::new();
        for (label, p) in r.open.keys() {
            out.entry(p.clone()).or_default().push(label.clone());
        }
        out
    }

    pub fn intervals(&self) -> Vec<Interval> {
        lock(&self.0).intervals.clone()
    }

    pub fn calls(&self) -> Vec<HookCall> {
        lock(&self.0).calls.clone()
    }

    /// The state changes of `label`, relative to `t0`.
    pub fn states_of(&self, label: &str, t0: Instant) -> String {
        lock(&self.0)
            .states
            .iter()
            .filter(|(l, ..)| l == label)
            .map(|(_, at, from, to)| {
                format!("{:?}: {from}->{to}", at.saturating_duration_since(t0))
            })
            .collect::<Vec<_>>()
            .join(", ")
    }

    pub fn anomalies(&self) -> Vec<String> {
        lock(&self.0).anomalies.clone()
    }

    /// Every pair of intervals of different labels on one partition that
    /// overlap in time (an open interval runs to now).
    pub fn overlaps(&self) -> Vec<String> {
        let intervals = self.intervals();
        let mut by_partition: BTreeMap<&Partition, Vec<&Interval>> = BTreeMap::new();
        for iv in &intervals {
            by_partition.entry(&iv.partition).or_default().push(iv);
        }
        let mut out = Vec::new();
        for (p, mut ivs) in by_partition {
            ivs.sort_by_key(|iv| iv.acquired);
            for (i, a) in ivs.iter().enumerate() {
                for b in &ivs[i + 1..] {
                    if a.label == b.label {
                        continue;
                    }
                    // b starts no earlier than a; they overlap if b starts
                    // before a ends (an open a never ends).
                    let overlap = match a.end() {
                        None => true,
                        Some(end) => b.acquired < end,
                    };
                    if overlap {
                        out.push(format!(
                            "{}: {} (epoch {}, v{}) held until {:?} but {} (epoch {}, v{}) acquired it {:?} earlier",
                            p.name(),
                            a.label,
                            a.epoch,
                            a.version,
                            a.end(),
                            b.label,
                            b.epoch,
                            b.version,
                            a.end().map(|e| e.saturating_duration_since(b.acquired))
                        ));
                    }
                }
            }
        }
        out
    }

    /// Panics if two managers ever held one partition at overlapping times, or
    /// if a hook call contradicted the history; also checks that epochs only
    /// grow per partition.
    pub fn assert_exclusive(&self) {
        let overlaps = self.overlaps();
        assert!(
            overlaps.is_empty(),
            "ownership overlapped ({}):\n{}",
            overlaps.len(),
            overlaps.join("\n")
        );
        let anomalies = self.anomalies();
        assert!(
            anomalies.is_empty(),
            "hook anomalies:\n{}",
            anomalies.join("\n")
        );
        let (r_ids, dead) = {
            let r = lock(&self.0);
            (r.ids.clone(), r.dead.clone())
        };
        let mut by_partition: BTreeMap<Partition, Vec<Interval>> = BTreeMap::new();
        for iv in self.intervals() {
            by_partition
                .entry(iv.partition.clone())
                .or_default()
                .push(iv);
        }
        for (p, mut ivs) in by_partition {
            ivs.sort_by_key(|iv| iv.acquired);
            for w in ivs.windows(2) {
                assert!(
                    w[1].epoch >= w[0].epoch,
                    "{}: epoch went back from {} ({}) to {} ({})",
                    p.name(),
                    w[0].epoch,
                    w[0].label,
                    w[1].epoch,
                    w[1].label
                );
                // A new holder needs a new epoch, except a new incarnation of
                // the same worker ID after a graceful stop (it gets its grants
                // back as they were: nothing moved).
                let same_id = r_ids.contains_key(&w[0].label)
                    && r_ids.get(&w[0].label) == r_ids.get(&w[1].label)
                    && !dead.contains_key(&w[0].label);
                if w[1].label != w[0].label && !same_id {
                    assert!(
                        w[1].epoch > w[0].epoch,
                        "{}: moved from {} ({:?}) to {} ({:?}) without a new epoch ({}); history of the partition:\n{}",
                        p.name(),
                        w[0].label,
                        r_ids.get(&w[0].label),
                        w[1].label,
                        r_ids.get(&w[1].label),
                        w[1].epoch,
                        ivs.iter()
                            .map(|iv| format!(
                                "  {} ({:?}) epoch {} v{} from {:?} to {:?}{}",
                                iv.label,
                                r_ids.get(&iv.label),
                                iv.epoch,
                                iv.version,
                                iv.acquired.duration_since(ivs[0].acquired),
                                iv.released.map(|r| r.duration_since(ivs[0].acquired)),
                                if dead.contains_key(&iv.label) {
                                    " (crashed)"
                                } else {
                                    ""
                                }
                            ))
                            .collect::<Vec<_>>()
                            .join("\n")
                            + &format!(
                                "\n  states of {}: {}\n  states of {}: {}\n  IDs of {}: {}\n  IDs of {}: {}",
                                w[0].label,
                                self.states_of(&w[0].label, ivs[0].acquired),
                                w[1].label,
                                self.states_of(&w[1].label, ivs[0].acquired),
                                w[0].label,
                                self.ids_of(&w[0].label, ivs[0].acquired),
                                w[1].label,
                                self.ids_of(&w[1].label, ivs[0].acquired)
                            )
                    );
                }
            }
        }
    }

    /// Acquisitions of `partitions` by labels other than `from` at or after
    /// `since`: (partition, label, time).
    pub fn acquired_since(&self, since: Instant) -> Vec<Interval> {
        self.intervals()
            .into_iter()
            .filter(|iv| iv.acquired >= since)
            .collect()
    }
}

/// Hooks that feed a [`Recorder`].
pub struct RecordingHooks {
    label: String,
    rec: Recorder,
}

#[async_trait]
impl Hooks for RecordingHooks {
    async fn on_assignment_changed(
        &self,
        added: &[OwnedPartition],
        removed: &[OwnedPartition],
        version: u64,
    ) {
        self.rec.apply(&self.label, added, removed, version);
    }

    async fn on_state_changed(&self, from: State, to: State) {
        lock(&self.rec.0)
            .states
            .push((self.label.clone(), Instant::now(), from, to));
    }
}
