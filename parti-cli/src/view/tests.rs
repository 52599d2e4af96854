//! Verdict rules, rendering and change detection on hand-made group states.

use super::changes::Change;
use super::*;
use parti::nats::BucketNames;
use parti::nats::inspect::{LeaderEntry, MemberEntry};
use parti::records::{
    AssignmentMeta, LeaderRecord, MemberRecord, OwnedPartition, WIRE_VERSION, WorkerAssignment,
};
use parti::{InstanceId, Partition, WorkerId};
use std::collections::BTreeMap;

const NOW_S: u64 = 1_000_000;

fn at(ms_before_now: u64) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(NOW_S) - Duration::from_millis(ms_before_now)
}

fn now() -> SystemTime {
    at(0)
}

fn bucket(name: &str, ttl: Duration) -> Option<BucketInfo> {
    Some(BucketInfo {
        name: name.into(),
        max_age: ttl,
        replicas: 1,
        memory: false,
    })
}

/// A group of `n` active workers with the test timings' TTLs, worker-0
/// leading, every worker on a committed assignment of `parts` partitions
/// dealt round-robin (record version 3 each, meta version 3).
pub(crate) fn healthy(n: u32, parts: u32) -> GroupState {
    let names = BucketNames::for_group("g");
    let ids: Vec<WorkerId> = (0..n).map(|i| WorkerId::new("worker", i)).collect();
    let mut records = Vec::new();
    let mut meta_records = BTreeMap::new();
    for (i, id) in ids.iter().enumerate() {
        let partitions: Vec<OwnedPartition> = (0..parts)
            .filter(|p| (*p as usize) % ids.len() == i)
            .map(|p| OwnedPartition {
                partition: Partition::new([format!("p-{p}")]).with_weight(2),
                epoch: 3,
            })
            .collect();
        records.push(WorkerAssignment {
            v: WIRE_VERSION,
            worker: id.clone(),
            instance: InstanceId(i as u64),
            version: 3,
            term: 7,
            partitions,
        });
        meta_records.insert(id.clone(), 3);
    }
    let members = ids
        .iter()
        .enumerate()
        .map(|(i, id)| MemberEntry {
            id: id.clone(),
            record: MemberRecord {
                applied: Some(3),
                held: 0,
                ..MemberRecord::fresh(InstanceId(i as u64), 1)
            },
            revision: 10 + i as u64,
            written: at(100),
        })
        .collect();
    GroupState {
        members_bucket: bucket(&names.members, Duration::from_secs(2)),
        leader_bucket: bucket(&names.leader, Duration::from_secs(1)),
        assignments_bucket: bucket(&names.assignments, Duration::ZERO),
        names,
        members,
        leader: Some(LeaderEntry {
            record: LeaderRecord {
                v: WIRE_VERSION,
                worker: ids[0].clone(),
                instance: InstanceId(0),
                term: Some(7),
            },
            term: 7,
            revision: 30,
            written: at(200),
        }),
        meta: Some((
            AssignmentMeta {
                v: WIRE_VERSION,
                version: 3,
                term: 7,
                lifecycle: Lifecycle::ColdStart,
                records: meta_records,
                partitions: parts,
            },
            40,
        )),
        records,
        problems: Vec::new(),
    }
}

fn view(state: &GroupState) -> GroupView {
    let stale = stale_after(None, state.members_bucket.as_ref());
    GroupView::build("g", state, now(), stale)
}

#[test]
fn a_settled_group_is_healthy() {
    let v = view(&healthy(3, 12));
    assert_eq!(v.verdict, Verdict::Healthy, "{}", v.reason);
    assert_eq!(v.workers.len(), 3);
    assert!(v.workers[0].leader && !v.workers[1].leader);
    assert_eq!(v.workers[1].partitions, 4);
    assert_eq!(v.workers[1].weight, 8);
    assert_eq!(v.workers[2].heartbeat_age_ms, 100);
    assert_eq!(v.leader.as_ref().map(|l| l.term), Some(7));
    assert_eq!(v.committed.as_ref().map(|c| c.assigned), Some(12));
    assert_eq!(
        v.committed.as_ref().map(|c| c.lifecycle.as_str()),
        Some("cold_start")
    );
    // A third of the members bucket's 2 s TTL.
    assert_eq!(v.stale_after_ms, 666);
    let text = render_status(&v, false);
    for needle in [
        "group g: healthy",
        "leader: worker-0 (term 7",
        "committed: v3 (term 7, cold_start), 12 of 12 partitions assigned",
        "worker-0*",
        "lagging: none",
        "degraded: none",
        "member TTL 2.0s, leader TTL 1.0s, R1 file",
    ] {
        assert!(text.contains(needle), "{needle:?} missing in\n{text}");
    }
    assert!(!text.contains('\x1b'), "no color unless asked");
    assert!(render_status(&v, true).contains('\x1b'));
}

#[test]
fn verdicts_follow_the_worst_problem() {
    let mut s = healthy(3, 12);
    s.members[2].record.applied = Some(2);
    let v = view(&s);
    assert_eq!(v.verdict, Verdict::Converging);
    assert_eq!(v.lagging, ["worker-2"]);
    assert!(v.reason.contains("worker-2"), "{}", v.reason);

    s.members[1].written = at(5_000);
    let v = view(&s);
    assert_eq!(v.verdict, Verdict::Degraded);
    assert_eq!(v.degraded, ["worker-1"]);
    assert!(render_status(&v, false).contains("degraded: worker-1"));

    s.leader = None;
    assert_eq!(view(&s).verdict, Verdict::Leaderless);

    let mut empty = healthy(1, 4);
    empty.members.clear();
    assert_eq!(view(&empty).verdict, Verdict::Leaderless);

    let mut cold = healthy(2, 4);
    cold.meta = None;
    cold.records.clear();
    for m in &mut cold.members {
        m.record.applied = None;
    }
    let v = view(&cold);
    assert_eq!(v.verdict, Verdict::Converging);
    assert!(v.lagging.is_empty());
    assert!(render_status(&v, false).contains("committed: nothing yet"));

    let mut leaving = healthy(2, 4);
    leaving.members[1].record.status = MemberStatus::Leaving;
    assert_eq!(view(&leaving).verdict, Verdict::Converging);

    // A worker that joined and waits for the planned-scale rebalance.
    let mut joined = healthy(2, 4);
    joined.records.retain(|r| r.worker.as_str() != "worker-1");
    if let Some((meta, _)) = &mut joined.meta {
        meta.records.remove(&WorkerId::new("worker", 1));
    }
    joined.members[1].record.applied = None;
    let v = view(&joined);
    assert_eq!(v.verdict, Verdict::Converging);
    assert!(v.reason.contains("worker-1 own nothing"), "{}", v.reason);
    // More workers than partitions: owning nothing is normal.
    let mut spare = healthy(3, 2);
    for m in &mut spare.members {
        m.record.applied = spare
            .meta
            .as_ref()
            .and_then(|(meta, _)| meta.records.get(&m.id).copied())
            .filter(|_| {
                spare
                    .records
                    .iter()
                    .any(|r| r.worker == m.id && !r.partitions.is_empty())
            });
    }
    spare.records.retain(|r| !r.partitions.is_empty());
    if let Some((meta, _)) = &mut spare.meta {
        meta.records.retain(|w, _| w.as_str() != "worker-2");
    }
    let v = view(&spare);
    assert_eq!(v.verdict, Verdict::Healthy, "{}", v.reason);

    let mut evicted = healthy(2, 4);
    evicted.members[1].record.status = MemberStatus::Evicted;
    assert_eq!(view(&evicted).verdict, Verdict::Degraded);
}

#[test]
fn an_explicit_stale_limit_wins() {
    let mut s = healthy(2, 4);
    s.members[1].written = at(1_500);
    assert_eq!(view(&s).verdict, Verdict::Degraded);
    let v = GroupView::build(
        "g",
        &s,
        now(),
        stale_after(Some(Duration::from_secs(6)), None),
    );
    assert_eq!(v.verdict, Verdict::Healthy);
    assert_eq!(stale_after(None, None), Duration::from_secs(10));
}

#[test]
fn json_has_the_documented_fields() {
    let v = view(&healthy(2, 4));
    let json = serde_json::to_value(&v).unwrap();
    assert_eq!(json["verdict"], "healthy");
    assert_eq!(json["leader"]["worker"], "worker-0");
    assert_eq!(json["committed"]["version"], 3);
    let w = &json["workers"][1];
    for field in [
        "id",
        "state",
        "capacity",
        "partitions",
        "weight",
        "applied",
        "committed",
        "seen",
        "heartbeat_age_ms",
        "lagging",
        "degraded",
    ] {
        assert!(w.get(field).is_some(), "{field} missing in {w}");
    }
}

#[test]
fn watch_shows_joins_leaves_leadership_and_rebalances() {
    let before = view(&healthy(2, 12));
    // Only ages changed: nothing to show.
    let mut aged = healthy(2, 12);
    aged.members[0].written = at(300);
    assert_eq!(render_update(Some(&before), &view(&aged), false), None);
    // The first view is shown whole, without change lines.
    let first = render_update(None, &before, false).unwrap();
    assert!(first.starts_with("group g: healthy"), "{first}");

    // worker-1 left, worker-2 joined, worker-2 leads, v4 rebalanced.
    let mut after = healthy(3, 12);
    after.members.remove(1);
    after.records.retain(|r| r.worker.as_str() != "worker-1");
    if let Some((meta, _)) = &mut after.meta {
        meta.records.remove(&WorkerId::new("worker", 1));
        meta.version = 4;
        meta.lifecycle = Lifecycle::PlannedScale;
    }
    if let Some(l) = &mut after.leader {
        l.record.worker = WorkerId::new("worker", 2);
        l.term = 9;
    }
    let next = view(&after);
    let list = changes(&before, &next);
    assert_eq!(
        list,
        vec![
            Change::Leadership {
                from: Some(("worker-0".into(), 7)),
                to: Some(("worker-2".into(), 9)),
            },
            Change::Joined("worker-2".into()),
            Change::Left("worker-1".into()),
            Change::Rebalance {
                from: Some(3),
                to: 4,
                lifecycle: "planned_scale".into(),
                moves: vec![
                    ("worker-0".into(), 6, 4),
                    ("worker-1".into(), 6, 0),
                    ("worker-2".into(), 0, 4),
                ],
            },
        ]
    );
    let text = render_update(Some(&before), &next, false).unwrap();
    assert!(
        text.contains(">> leadership: worker-0 (term 7) -> worker-2 (term 9)"),
        "{text}"
    );
    assert!(
        text.contains(">> rebalance v3 -> v4 (planned_scale): worker-0 6->4"),
        "{text}"
    );
    assert!(text.contains(">> worker-1 left"), "{text}");
}

#[test]
fn watch_shows_degradation_state_and_verdict_changes() {
    let before = view(&healthy(2, 4));
    let mut s = healthy(2, 4);
    s.members[1].written = at(5_000);
    s.members[0].record.status = MemberStatus::Stopping;
    let next = view(&s);
    let list = changes(&before, &next);
    assert!(
        matches!(&list[0], Change::Verdict { from, to, .. } if from == "healthy" && to == "degraded")
    );
    assert!(list.contains(&Change::State {
        worker: "worker-0".into(),
        from: "active".into(),
        to: "stopping".into(),
    }));
    assert!(list.contains(&Change::Degraded("worker-1".into())));
    let back = changes(&next, &before);
    assert!(back.contains(&Change::Recovered("worker-1".into())));
}

#[test]
fn ages_are_short_and_readable() {
    assert_eq!(format_age(350), "350ms");
    assert_eq!(format_age(1_250), "1.2s");
    assert_eq!(format_age(42_000), "42s");
    assert_eq!(format_age(185_000), "3m05s");
    assert_eq!(format_age(7_800_000), "2h10m");
}
