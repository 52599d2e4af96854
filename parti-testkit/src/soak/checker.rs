//! Judges a finished soak from its timeline:
//!
//! - **exclusive ownership**: per partition, the ownership intervals of different
//!   processes (from `acquired` to `released`, or to the process's death) never
//!   overlap — except in the documented `KeepProcessing` window: the earlier owner
//!   was cut off from NATS (or SIGSTOPped) while it held the partition, the new
//!   owner got it after that, and the old owner let go within `cutoff_tail` after
//!   it could reach NATS (or run) again.
//!   Those overlaps are reported separately with their durations;
//! - **unique worker IDs**: two live processes never go by the same worker ID at
//!   once (a process goes by an ID from its first line naming it until its
//!   death or a line naming another ID), with the same cut-off exception;
//! - **monotonic epochs**: per partition, in time order, each grant's epoch is at
//!   least the previous one, and strictly greater when the worker changes;
//! - **monotonic versions**: per process, the versions it reports never decrease
//!   (a `released` line with version 0 is a local drop — lease expiry, stop — and
//!   carries no version, as `Hooks::on_assignment_changed` documents);
//! - **re-own latency**: after every fault, the time until every partition has an
//!   owner that is alive and not frozen again, which must be within `reown_bound`;
//! - **nothing unowned at the end** (at [`Event::EndOfRun`]).

use super::coverage::Coverage;
use super::events::{Event, FaultKind, Micros, ProcId, Stamped};
use std::collections::BTreeMap;

/// The checker's bounds.
#[derive(Clone, Copy, Debug)]
pub struct Bounds {
    /// Longest allowed time from a fault until every partition is served again.
    pub reown_bound: Micros,
    /// How long after a cut-off (or pause) ends its process may still hold a
    /// partition that was granted elsewhere meanwhile.
    pub cutoff_tail: Micros,
}

/// An overlap inside the documented cut-off window.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ToleratedOverlap {
    /// The partition.
    pub partition: String,
    /// The process that was cut off (or paused) and kept it.
    pub cut_off: ProcId,
    /// The process it was granted to meanwhile.
    pub new_owner: ProcId,
    /// How long both claimed it.
    pub duration: Micros,
}

/// The re-own latency after one fault (`None`: never re-owned).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Reown {
    /// The fault.
    pub kind: FaultKind,
    /// When it was applied.
    pub at: Micros,
    /// Time until every partition was served again.
    pub latency: Option<Micros>,
}

/// The outcome of [`check`].
#[derive(Clone, Debug, Default)]
pub struct Verdict {
    /// Broken guarantees, each described with its evidence.
    pub violations: Vec<String>,
    /// Overlaps inside the documented cut-off window.
    pub tolerated: Vec<ToleratedOverlap>,
    /// One entry per fault.
    pub reowns: Vec<Reown>,
    /// Ownership intervals seen.
    pub intervals: usize,
}

/// One process's hold of one partition.
#[derive(Clone, Debug)]
struct Interval {
    proc: ProcId,
    start: Micros,
    end: Micros,
}

/// A time window in which a process could not act on NATS news.
#[derive(Clone, Copy, Debug)]
struct Impairment {
    start: Micros,
    end: Micros,
}

/// Sorts the timeline by time (stable: events of one instant keep their order)
/// and judges it against `partitions` and `bounds`.
pub fn check(events: &[Stamped], partitions: &[String], bounds: Bounds) -> Verdict {
    let mut timeline: Vec<&Stamped> = events.iter().collect();
    timeline.sort_by_key(|s| s.ts);
    let last_ts = timeline.last().map_or(0, |s| s.ts);
    let mut verdict = Verdict::default();

    let intervals = ownership_intervals(&timeline, last_ts);
    verdict.intervals = intervals.values().map(Vec::len).sum();
    let impairments = impairments(&timeline, last_ts);
    check_overlaps(&intervals, &impairments, bounds, &mut verdict);
    let ids = id_intervals(&timeline, last_ts);
    check_unique_ids(&ids, &impairments, bounds, &mut verdict);
    check_epochs(&timeline, &mut verdict);
    check_versions(&timeline, &mut verdict);
    measure_reown(&timeline, partitions, bounds, &mut verdict);
    verdict
}

fn ownership_intervals(timeline: &[&Stamped], last_ts: Micros) -> BTreeMap<String, Vec<Interval>> {
    let mut open: BTreeMap<(String, ProcId), Micros> = BTreeMap::new();
    let mut done: BTreeMap<String, Vec<Interval>> = BTreeMap::new();
    let mut dead = std::collections::BTreeSet::new();
    for s in timeline {
        match &s.event {
            Event::Acquired(o) if !dead.contains(&o.proc) => {
                open.entry((o.partition.clone(), o.proc)).or_insert(s.ts);
            }
            Event::Released(o) => {
                if let Some(start) = open.remove(&(o.partition.clone(), o.proc)) {
                    done.entry(o.partition.clone()).or_default().push(Interval {
                        proc: o.proc,
                        start,
                        end: s.ts,
                    });
                }
            }
            Event::Died(proc) => {
                dead.insert(*proc);
                let keys: Vec<_> = open.keys().filter(|(_, p)| p == proc).cloned().collect();
                for key in keys {
                    if let Some(start) = open.remove(&key) {
                        done.entry(key.0).or_default().push(Interval {
                            proc: *proc,
                            start,
                            end: s.ts,
                        });
                    }
                }
            }
            _ => {}
        }
    }
    for ((partition, proc), start) in open {
        done.entry(partition).or_default().push(Interval {
            proc,
            start,
            end: last_ts,
        });
    }
    done
}

/// Per worker ID, the processes that went by it and when.
fn id_intervals(timeline: &[&Stamped], last_ts: Micros) -> BTreeMap<String, Vec<Interval>> {
    let mut current: BTreeMap<ProcId, (String, Micros)> = BTreeMap::new();
    let mut done: BTreeMap<String, Vec<Interval>> = BTreeMap::new();
    let close = |done: &mut BTreeMap<String, Vec<Interval>>, proc, id: String, start, end| {
        done.entry(id)
            .or_default()
            .push(Interval { proc, start, end });
    };
    for s in timeline {
        let (proc, id) = match &s.event {
            Event::Started(p, id) => (*p, id.as_str()),
            Event::Acquired(o) | Event::Released(o) => (o.proc, o.worker.as_str()),
            Event::Died(p) => {
                if let Some((id, start)) = current.remove(p) {
                    close(&mut done, *p, id, start, s.ts);
                }
                continue;
            }
            _ => continue,
        };
        // No ID at this moment: a hook line printed before `start()`
        // returned (nothing held yet), or the process lost its ID (the
        // worker example prints the ID it holds when it prints the line).
        if id.is_empty() {
            if let Some((old, start)) = current.remove(&proc) {
                close(&mut done, proc, old, start, s.ts);
            }
            continue;
        }
        match current.get(&proc) {
            Some((held, _)) if held == id => {}
            _ => {
                if let Some((old, start)) = current.insert(proc, (id.to_owned(), s.ts)) {
                    close(&mut done, proc, old, start, s.ts);
                }
            }
        }
    }
    for (proc, (id, start)) in current {
        close(&mut done, proc, id, start, last_ts);
    }
    done
}

fn check_unique_ids(
    ids: &BTreeMap<String, Vec<Interval>>,
    impairments: &BTreeMap<ProcId, Vec<Impairment>>,
    bounds: Bounds,
    verdict: &mut Verdict,
) {
    for (id, list) in ids {
        for o in overlaps(list) {
            if !o.excused(impairments, bounds) {
                let (old, new) = (o.old, o.new);
                verdict.violations.push(format!(
                    "worker ID {id} used by two live processes: {} from {} to {} and {} from {} to {} ({:.3} s)",
                    old.proc,
                    old.start,
                    old.end,
                    new.proc,
                    new.start,
                    new.end,
                    secs(o.end - o.start)
                ));
            }
        }
    }
}

/// Two processes' intervals of one name (a partition or a worker ID) that
/// overlap.
struct Overlap<'a> {
    /// The earlier holder: the one that should have let go.
    old: &'a Interval,
    new: &'a Interval,
    start: Micros,
    end: Micros,
}

impl Overlap<'_> {
    /// The documented window: the old holder held on when it was cut off (or
    /// paused), the overlap began after that, and it let go within
    /// `cutoff_tail` of being able to act again. (The new grant may come just
    /// after the cut ends: the leader judged the lapsed lease before the
    /// worker re-synced.)
    fn excused(&self, impairments: &BTreeMap<ProcId, Vec<Impairment>>, bounds: Bounds) -> bool {
        let old = self.old;
        impairments.get(&old.proc).is_some_and(|windows| {
            windows.iter().any(|w| {
                old.start <= w.start
                    && w.start <= self.start
                    && old.end <= w.end.saturating_add(bounds.cutoff_tail)
            })
        })
    }
}

/// Every overlap between intervals of two different processes in `list`.
fn overlaps(list: &[Interval]) -> Vec<Overlap<'_>> {
    let mut found = Vec::new();
    for (i, a) in list.iter().enumerate() {
        for b in &list[i + 1..] {
            if a.proc == b.proc {
                continue;
            }
            let start = a.start.max(b.start);
            let end = a.end.min(b.end);
            if start >= end {
                continue;
            }
            let (old, new) = if a.start <= b.start { (a, b) } else { (b, a) };
            found.push(Overlap {
                old,
                new,
                start,
                end,
            });
        }
    }
    found
}

fn impairments(timeline: &[&Stamped], last_ts: Micros) -> BTreeMap<ProcId, Vec<Impairment>> {
    let mut open: BTreeMap<ProcId, Micros> = BTreeMap::new();
    let mut done: BTreeMap<ProcId, Vec<Impairment>> = BTreeMap::new();
    for s in timeline {
        match &s.event {
            Event::Frozen(p) | Event::CutOff(p) => {
                open.entry(*p).or_insert(s.ts);
            }
            Event::Thawed(p) | Event::Reconnected(p) | Event::Died(p) => {
                if let Some(start) = open.remove(p) {
                    done.entry(*p)
                        .or_default()
                        .push(Impairment { start, end: s.ts });
                }
            }
            _ => {}
        }
    }
    for (p, start) in open {
        done.entry(p).or_default().push(Impairment {
            start,
            end: last_ts,
        });
    }
    done
}

fn check_overlaps(
    intervals: &BTreeMap<String, Vec<Interval>>,
    impairments: &BTreeMap<ProcId, Vec<Impairment>>,
    bounds: Bounds,
    verdict: &mut Verdict,
) {
    for (partition, list) in intervals {
        for o in overlaps(list) {
            let (old, new) = (o.old, o.new);
            if o.excused(impairments, bounds) {
                verdict.tolerated.push(ToleratedOverlap {
                    partition: partition.clone(),
                    cut_off: old.proc,
                    new_owner: new.proc,
                    duration: o.end - o.start,
                });
            } else {
                verdict.violations.push(format!(
                    "double ownership of {partition}: {} held it {}..{} and {} {}..{} (overlap {:.3} s)",
                    old.proc,
                    old.start,
                    old.end,
                    new.proc,
                    new.start,
                    new.end,
                    secs(o.end - o.start)
                ));
            }
        }
    }
}

fn check_epochs(timeline: &[&Stamped], verdict: &mut Verdict) {
    let mut last: BTreeMap<&str, (&str, ProcId, u64, Micros)> = BTreeMap::new();
    for s in timeline {
        if let Event::Acquired(o) = &s.event {
            if let Some((worker, proc, epoch, at)) = last.get(o.partition.as_str()) {
                // Hook lines printed before `start()` returned carry no worker ID:
                // then only a change of process counts as a move.
                let moved = if worker.is_empty() || o.worker.is_empty() {
                    *proc != o.proc
                } else {
                    *worker != o.worker.as_str()
                };
                if o.epoch < *epoch || (moved && o.epoch == *epoch) {
                    verdict.violations.push(format!(
                        "epoch of {} went from {epoch} ({worker} at {at}) to {} ({} {} at {})",
                        o.partition, o.epoch, o.worker, o.proc, s.ts
                    ));
                }
            }
            last.insert(&o.partition, (&o.worker, o.proc, o.epoch, s.ts));
        }
    }
}

fn check_versions(timeline: &[&Stamped], verdict: &mut Verdict) {
    let mut last: BTreeMap<ProcId, (u64, Micros)> = BTreeMap::new();
    for s in timeline {
        if let Event::Acquired(o) | Event::Released(o) = &s.event {
            if matches!(s.event, Event::Released(_)) && o.version == 0 {
                continue;
            }
            if let Some((version, at)) = last.get(&o.proc)
                && o.version < *version
            {
                verdict.violations.push(format!(
                    "version of {} ({}) went from {version} (at {at}) to {} (at {})",
                    o.proc, o.worker, o.version, s.ts
                ));
            }
            last.insert(o.proc, (o.version, s.ts));
        }
    }
}

fn measure_reown(
    timeline: &[&Stamped],
    partitions: &[String],
    bounds: Bounds,
    verdict: &mut Verdict,
) {
    let mut coverage = Coverage::default();
    let mut pending: Vec<(FaultKind, Micros)> = Vec::new();
    for s in timeline {
        coverage.apply(&s.event);
        match &s.event {
            Event::Fault(kind) => pending.push((*kind, s.ts)),
            Event::EndOfRun => {
                let unserved = coverage.unserved(partitions);
                if !unserved.is_empty() {
                    verdict.violations.push(format!(
                        "unowned at the end of the run: {}",
                        unserved.join(", ")
                    ));
                }
            }
            _ => {}
        }
        if !pending.is_empty() && coverage.all_served(partitions) {
            for (kind, at) in pending.drain(..) {
                verdict.reowns.push(Reown {
                    kind,
                    at,
                    latency: Some(s.ts - at),
                });
            }
        }
    }
    for (kind, at) in pending {
        verdict.reowns.push(Reown {
            kind,
            at,
            latency: None,
        });
    }
    for r in &verdict.reowns {
        match r.latency {
            Some(l) if l <= bounds.reown_bound => {}
            Some(l) => verdict.violations.push(format!(
                "after the {} at {} not every partition was owned for {:.3} s (bound {:.3} s)",
                r.kind.name(),
                r.at,
                secs(l),
                secs(bounds.reown_bound)
            )),
            None => verdict.violations.push(format!(
                "after the {} at {} some partition was never owned again",
                r.kind.name(),
                r.at
            )),
        }
    }
}

/// Microseconds as seconds.
pub fn secs(us: Micros) -> f64 {
    us as f64 / 1e6
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::soak::events::parse_line;

    const BOUNDS: Bounds = Bounds {
        reown_bound: 5_000_000,
        cutoff_tail: 3_000_000,
    };

    fn parts(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("p-{i}")).collect()
    }

    /// Builds a timeline from `(proc, JSON line)` pairs and harness events.
    fn log(lines: &[(u32, &str)]) -> Vec<Stamped> {
        lines
            .iter()
            .filter_map(|(proc, line)| parse_line(ProcId(*proc), line).unwrap())
            .collect()
    }

    fn line(event: &str, worker: u32, partition: u32, epoch: u64, version: u64, ts: u64) -> String {
        format!(
            r#"{{"event":"{event}","worker":"worker-{worker}","partition":"p-{partition}","epoch":{epoch},"version":{version},"ts_us":{ts}}}"#
        )
    }

    #[test]
    fn a_clean_handoff_passes() {
        let a1 = line("acquired", 1, 0, 1, 1, 1_000);
        let a2 = line("acquired", 2, 1, 1, 1, 1_000);
        let r1 = line("released", 1, 0, 1, 2, 2_000);
        let b1 = line("acquired", 2, 0, 2, 3, 2_500);
        let mut events = log(&[(1, &a1), (2, &a2), (1, &r1), (2, &b1)]);
        events.push(Stamped {
            ts: 3_000,
            event: Event::EndOfRun,
        });
        let v = check(&events, &parts(2), BOUNDS);
        assert!(v.violations.is_empty(), "{:?}", v.violations);
        assert_eq!(v.intervals, 3);
    }

    /// Planted bugs: a double ownership of a live process and a decreasing epoch.
    #[test]
    fn catches_a_planted_double_ownership_and_a_decreasing_epoch() {
        let a = line("acquired", 1, 0, 5, 10, 1_000);
        // Worker 2 gets p-0 while worker 1 (alive, never cut off) still holds it,
        // and with a lower epoch.
        let b = line("acquired", 2, 0, 4, 11, 2_000);
        let r = line("released", 1, 0, 5, 12, 4_000);
        let events = log(&[(1, &a), (2, &b), (1, &r)]);
        let v = check(&events, &parts(1), BOUNDS);
        let double = v
            .violations
            .iter()
            .filter(|m| m.starts_with("double ownership of p-0"))
            .count();
        assert_eq!(double, 1, "{:?}", v.violations);
        assert!(
            v.violations
                .iter()
                .any(|m| m.starts_with("epoch of p-0 went from 5")),
            "{:?}",
            v.violations
        );
        assert!(v.tolerated.is_empty());
    }

    #[test]
    fn catches_a_reused_epoch_on_a_move_and_a_decreasing_version() {
        let a = line("acquired", 1, 0, 3, 7, 1_000);
        let r = line("released", 1, 0, 3, 6, 2_000);
        let b = line("acquired", 2, 0, 3, 8, 3_000);
        let v = check(&log(&[(1, &a), (1, &r), (2, &b)]), &parts(1), BOUNDS);
        assert!(
            v.violations
                .iter()
                .any(|m| m.starts_with("epoch of p-0 went from 3"))
        );
        assert!(v.violations.iter().any(|m| m.contains("version of proc#1")));
        // A grant printed before the ID was known, then the same grant again
        // with it (same process), is not a move.
        let early = r#"{"event":"acquired","worker":"","partition":"p-0","epoch":1,"version":1,"ts_us":1000}"#;
        let named = line("acquired", 1, 0, 1, 1, 2_000);
        let v = check(&log(&[(1, early), (1, &named)]), &parts(1), BOUNDS);
        assert!(v.violations.is_empty(), "{:?}", v.violations);
        // A local drop (version 0) is not a version going backwards.
        let a = line("acquired", 1, 0, 3, 7, 1_000);
        let drop = line("released", 1, 0, 3, 0, 2_000);
        let again = line("acquired", 1, 0, 4, 9, 3_000);
        let v = check(&log(&[(1, &a), (1, &drop), (1, &again)]), &parts(1), BOUNDS);
        assert!(v.violations.is_empty(), "{:?}", v.violations);
    }

    /// A planted duplicate ID: a new process claims `worker-0` while the one
    /// that had it lives on (not cut off), as seen in the soak with seed 42.
    #[test]
    fn catches_two_live_processes_with_one_worker_id() {
        let s1 = r#"{"event":"started","worker":"worker-0","leader":false,"ts_us":1000}"#;
        let a1 = line("acquired", 0, 0, 1, 1, 1_100);
        let s2 = r#"{"event":"started","worker":"worker-0","leader":false,"ts_us":5000}"#;
        let mut events = log(&[(1, s1), (1, &a1), (2, s2)]);
        events.push(Stamped {
            ts: 9_000,
            event: Event::EndOfRun,
        });
        let v = check(&events, &parts(1), BOUNDS);
        assert!(
            v.violations
                .iter()
                .any(|m| m.starts_with("worker ID worker-0 used by two live processes")),
            "{:?}",
            v.violations
        );
        // Nor once the first one printed a line without an ID (it lost the
        // ID and released what it held: seen in the gate's soak, seed 1).
        let lost = r#"{"event":"released","worker":"","partition":"p-0","epoch":1,"version":0,"ts_us":4500}"#;
        let mut after_loss = events.clone();
        after_loss.extend(log(&[(1, lost)]));
        let v = check(&after_loss, &parts(1), BOUNDS);
        assert!(
            !v.violations.iter().any(|m| m.starts_with("worker ID")),
            "{:?}",
            v.violations
        );
        // Once the first one is dead, reusing its ID is fine.
        events.push(Stamped {
            ts: 4_000,
            event: Event::Died(ProcId(1)),
        });
        let v = check(&events, &parts(1), BOUNDS);
        assert!(
            !v.violations.iter().any(|m| m.starts_with("worker ID")),
            "{:?}",
            v.violations
        );
    }

    #[test]
    fn a_cut_off_owner_overlap_is_tolerated_but_only_within_the_tail() {
        let a = line("acquired", 1, 0, 1, 1, 1_000);
        let b = line("acquired", 2, 0, 2, 2, 1_500_000);
        let r_soon = line("released", 1, 0, 1, 2, 2_500_000);
        let mut events = log(&[(1, &a), (2, &b), (1, &r_soon)]);
        events.push(Stamped {
            ts: 500_000,
            event: Event::CutOff(ProcId(1)),
        });
        events.push(Stamped {
            ts: 2_000_000,
            event: Event::Reconnected(ProcId(1)),
        });
        let v = check(&events, &parts(1), BOUNDS);
        assert!(v.violations.is_empty(), "{:?}", v.violations);
        assert_eq!(v.tolerated.len(), 1);
        assert_eq!(v.tolerated[0].duration, 1_000_000);

        // The grant may come just after the reconnect (the leader judged the lapsed
        // lease before the worker re-synced): still the cut-off window.
        let b_late = line("acquired", 2, 0, 2, 2, 2_100_000);
        let r_soon = line("released", 1, 0, 1, 2, 2_200_000);
        let mut events = log(&[(1, &a), (2, &b_late), (1, &r_soon)]);
        events.push(Stamped {
            ts: 500_000,
            event: Event::CutOff(ProcId(1)),
        });
        events.push(Stamped {
            ts: 2_000_000,
            event: Event::Reconnected(ProcId(1)),
        });
        let v = check(&events, &parts(1), BOUNDS);
        assert!(v.violations.is_empty(), "{:?}", v.violations);
        assert_eq!(v.tolerated.len(), 1);

        // The same, but it holds on 10 s after reconnecting: a violation.
        let r_late = line("released", 1, 0, 1, 2, 12_000_000);
        let mut events = log(&[(1, &a), (2, &b), (1, &r_late)]);
        events.push(Stamped {
            ts: 500_000,
            event: Event::CutOff(ProcId(1)),
        });
        events.push(Stamped {
            ts: 2_000_000,
            event: Event::Reconnected(ProcId(1)),
        });
        let v = check(&events, &parts(1), BOUNDS);
        assert!(v.tolerated.is_empty());
        assert_eq!(v.violations.len(), 1, "{:?}", v.violations);
    }

    #[test]
    fn a_dead_process_owns_nothing_and_reown_latency_is_measured() {
        let a = line("acquired", 1, 0, 1, 1, 1_000);
        // proc 1 is SIGKILLed at 2 ms; its later line (buffered) is ignored; p-0
        // moves to proc 2 at 1.002 s.
        let late = line("acquired", 1, 0, 1, 1, 2_500);
        let b = line("acquired", 2, 0, 2, 2, 1_002_000);
        let mut events = log(&[(1, &a), (1, &late), (2, &b)]);
        events.push(Stamped {
            ts: 2_000,
            event: Event::Died(ProcId(1)),
        });
        events.push(Stamped {
            ts: 2_000,
            event: Event::Fault(FaultKind::Kill),
        });
        events.push(Stamped {
            ts: 2_000_000,
            event: Event::EndOfRun,
        });
        let v = check(&events, &parts(1), BOUNDS);
        assert!(v.violations.is_empty(), "{:?}", v.violations);
        assert_eq!(v.reowns.len(), 1);
        assert_eq!(v.reowns[0].latency, Some(1_000_000));
    }

    #[test]
    fn slow_or_missing_reown_and_unowned_end_are_violations() {
        let a = line("acquired", 1, 0, 1, 1, 1_000);
        let mut events = log(&[(1, &a)]);
        events.push(Stamped {
            ts: 2_000,
            event: Event::Died(ProcId(1)),
        });
        events.push(Stamped {
            ts: 2_000,
            event: Event::Fault(FaultKind::Kill),
        });
        events.push(Stamped {
            ts: 9_000_000,
            event: Event::EndOfRun,
        });
        let v = check(&events, &parts(1), BOUNDS);
        assert!(
            v.violations
                .iter()
                .any(|m| m.starts_with("unowned at the end"))
        );
        assert!(v.violations.iter().any(|m| m.contains("never owned again")));
    }
}
