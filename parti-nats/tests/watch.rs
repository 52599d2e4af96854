//! The merged group watch against a real nats-server: snapshot, CaughtUp, live
//! changes, expiry, and foreign/malformed values.

// Test code: unwrap, expect and panic are how it asserts.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::*;
use parti_core::backend::{Backend, BackendExt, Change, MemberScope, WatchEvent};
use parti_core::ids::InstanceId;
use parti_core::layout::worker_assignment_key;
use parti_core::records::{AssignmentMeta, LeaderRecord, Lifecycle, WorkerAssignment};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

fn leader_record() -> LeaderRecord {
    LeaderRecord {
        v: 1,
        worker: worker(0),
        instance: InstanceId(42),
        term: None,
    }
}

fn assignment(w: u32, version: u64, term: u64) -> WorkerAssignment {
    WorkerAssignment {
        v: 1,
        worker: worker(w),
        instance: parti_core::InstanceId(1),
        version,
        term,
        partitions: vec![],
    }
}

fn meta(version: u64, term: u64) -> AssignmentMeta {
    AssignmentMeta {
        v: 1,
        version,
        term,
        lifecycle: Lifecycle::ColdStart,
        records: BTreeMap::new(),
        partitions: 0,
    }
}

#[tokio::test]
async fn empty_buckets_catch_up_at_once_then_changes_are_live() {
    let Some(server) = server() else { return };
    let b = backend(&server.client_url(), &config(&group("empty"))).await;
    b.ensure_ready().await.unwrap();
    let mut watch = b.watch(Some(&worker(1)), MemberScope::All).await.unwrap();
    assert_eq!(next_event(&mut watch, SOON).await, WatchEvent::CaughtUp);

    let rev = b.create_member(&worker(1), &member(1)).await.unwrap();
    assert_eq!(
        next_event(&mut watch, SOON).await,
        WatchEvent::Member {
            id: worker(1),
            revision: rev,
            change: Change::Put(member(1))
        }
    );
    let term = b.create_leader(&leader_record()).await.unwrap();
    assert_eq!(
        next_event(&mut watch, SOON).await,
        WatchEvent::Leader {
            revision: term,
            change: Change::Put(leader_record())
        }
    );
    b.delete_leader(term).await.unwrap();
    assert!(matches!(
        next_event(&mut watch, SOON).await,
        WatchEvent::Leader {
            change: Change::Removed,
            ..
        }
    ));
}

#[tokio::test]
async fn snapshot_holds_every_key_then_caught_up_and_only_own_assignments() {
    let Some(server) = server() else { return };
    let b = backend(&server.client_url(), &config(&group("snap"))).await;
    for n in 0..3 {
        b.create_member(&worker(n), &member(u64::from(n)))
            .await
            .unwrap();
    }
    b.create_leader(&leader_record()).await.unwrap();
    b.put_assignment(&assignment(1, 1, 4)).await.unwrap();
    b.put_assignment(&assignment(2, 1, 4)).await.unwrap();
    b.commit_meta(&meta(1, 4), None).await.unwrap();

    let mut watch = b.watch(Some(&worker(1)), MemberScope::All).await.unwrap();
    let snap = snapshot(&mut watch).await;
    let members = snap
        .iter()
        .filter(|e| {
            matches!(
                e,
                WatchEvent::Member {
                    change: Change::Put(_),
                    ..
                }
            )
        })
        .count();
    assert_eq!(members, 3, "{snap:#?}");
    assert_eq!(
        snap.iter()
            .filter(|e| matches!(e, WatchEvent::Leader { .. }))
            .count(),
        1
    );
    assert_eq!(
        snap.iter()
            .filter(|e| matches!(e, WatchEvent::Meta { .. }))
            .count(),
        1
    );
    let own: Vec<_> = snap
        .iter()
        .filter_map(|e| match e {
            WatchEvent::Assignment { record, .. } => Some(record.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(own, vec![assignment(1, 1, 4)], "only worker-1's record");
    assert_eq!(snap.len(), 6);

    // Live: another worker's record is not delivered, ours is, in order with meta.
    b.put_assignment(&assignment(2, 2, 4)).await.unwrap();
    b.put_assignment(&assignment(1, 2, 4)).await.unwrap();
    let rev = b.commit_meta(&meta(2, 4), Some(0)).await;
    assert!(rev.is_err(), "wrong expected revision");
    let (ev, before) = wait_for(&mut watch, SOON, |e| {
        matches!(e, WatchEvent::Assignment { .. })
    })
    .await;
    assert!(before.is_empty(), "{before:#?}");
    assert!(matches!(ev, WatchEvent::Assignment { record, .. } if record == assignment(1, 2, 4)));
}

#[tokio::test]
async fn an_own_scope_watch_shows_only_the_own_and_the_leaders_member_keys() {
    let Some(server) = server() else { return };
    let b = backend(&server.client_url(), &config(&group("own"))).await;
    let mut revisions = Vec::new();
    for n in 0..3 {
        let rev = b
            .create_member(&worker(n), &member(u64::from(n)))
            .await
            .unwrap();
        revisions.push(rev);
    }
    b.create_leader(&leader_record()).await.unwrap();

    let scope = MemberScope::Own {
        leader: Some(worker(2)),
    };
    let mut watch = b.watch(Some(&worker(1)), scope).await.unwrap();
    let snap = snapshot(&mut watch).await;
    let members: Vec<_> = snap
        .iter()
        .filter_map(|e| match e {
            WatchEvent::Member { id, .. } => Some(id.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(members, vec![worker(1), worker(2)], "{snap:#?}");
    assert_eq!(
        snap.iter()
            .filter(|e| matches!(e, WatchEvent::Leader { .. }))
            .count(),
        1
    );

    // Live: another member's renewal is not delivered, the own one and the
    // leader's are.
    b.update_member(&worker(0), &member(10), revisions[0])
        .await
        .unwrap();
    let rev = b
        .update_member(&worker(1), &member(11), revisions[1])
        .await
        .unwrap();
    let (ev, before) = wait_for(&mut watch, SOON, |e| matches!(e, WatchEvent::Member { .. })).await;
    assert!(before.is_empty(), "{before:#?}");
    assert_eq!(
        ev,
        WatchEvent::Member {
            id: worker(1),
            revision: rev,
            change: Change::Put(member(11))
        }
    );
}

#[tokio::test]
async fn member_and_leader_expiry_reach_the_watch_as_removed() {
    let Some(server) = server() else { return };
    let mut cfg = config(&group("expiry"));
    cfg.worker_id_ttl = Duration::from_secs(1);
    cfg.election_ttl = Duration::from_secs(1);
    let b = backend(&server.client_url(), &cfg).await;
    b.ensure_ready().await.unwrap();
    let mut watch = b.watch(None, MemberScope::All).await.unwrap();
    assert_eq!(next_event(&mut watch, SOON).await, WatchEvent::CaughtUp);

    let written = Instant::now();
    let rev = b.create_member(&worker(5), &member(5)).await.unwrap();
    b.create_leader(&leader_record()).await.unwrap();
    let (ev, _) = wait_for(&mut watch, SOON, |e| {
        matches!(
            e,
            WatchEvent::Member {
                change: Change::Removed,
                ..
            }
        )
    })
    .await;
    let WatchEvent::Member { id, revision, .. } = ev else {
        unreachable!()
    };
    assert_eq!(id, worker(5));
    assert!(revision > rev, "the expiry marker is a new revision");
    assert!(
        written.elapsed() >= Duration::from_millis(900),
        "expired too early"
    );
    wait_for(&mut watch, SOON, |e| {
        matches!(
            e,
            WatchEvent::Leader {
                change: Change::Removed,
                ..
            }
        )
    })
    .await;

    // The ID can be claimed again over the expiry marker.
    assert_eq!(b.get_member(&worker(5)).await.unwrap(), None);
    let again = b.create_member(&worker(5), &member(6)).await.unwrap();
    assert!(again > revision);
}

#[tokio::test]
async fn malformed_and_foreign_values_are_skipped_and_the_watch_goes_on() {
    let Some(server) = server() else { return };
    let b = backend(&server.client_url(), &config(&group("malformed"))).await;
    b.ensure_ready().await.unwrap();
    let names = b.bucket_names().clone();
    let raw = raw(&server.client_url()).await;
    let members = raw.get_key_value(&names.members).await.unwrap();
    let leader = raw.get_key_value(&names.leader).await.unwrap();
    let assignments = raw.get_key_value(&names.assignments).await.unwrap();
    let own_key = worker_assignment_key(3, &worker(1));

    members.put("worker-7", "not json".into()).await.unwrap();
    members.put("intruder", r#"{"v":1}"#.into()).await.unwrap();
    leader
        .put("leader", r#"{"v":9,"who":"next"}"#.into())
        .await
        .unwrap();
    assignments.put("meta", "[1,2".into()).await.unwrap();
    assignments
        .put(&own_key, r#"{"v":1}"#.into())
        .await
        .unwrap();
    // A valid record under the wrong key is refused too.
    let misplaced = serde_json::to_vec(&assignment(2, 1, 3)).unwrap();
    assignments
        .put(
            worker_assignment_key(3, &worker(1)).replace("w.3", "w.4"),
            misplaced.into(),
        )
        .await
        .unwrap();
    b.create_member(&worker(1), &member(1)).await.unwrap();

    let mut watch = b.watch(Some(&worker(1)), MemberScope::All).await.unwrap();
    let snap = snapshot(&mut watch).await;
    let mut skipped: Vec<(String, String)> = snap
        .iter()
        .filter_map(|e| match e {
            WatchEvent::Skipped { bucket, key, .. } => Some((bucket.clone(), key.clone())),
            _ => None,
        })
        .collect();
    skipped.sort();
    let mut expected = vec![
        (names.members.clone(), "worker-7".to_string()),
        (names.members.clone(), "intruder".to_string()),
        (names.leader.clone(), "leader".to_string()),
        (names.assignments.clone(), "meta".to_string()),
        (names.assignments.clone(), own_key.clone()),
        (names.assignments.clone(), "w.4.worker-1".to_string()),
    ];
    expected.sort();
    assert_eq!(skipped, expected, "{snap:#?}");
    assert!(
        snap.iter()
            .any(|e| matches!(e, WatchEvent::Member { id, .. } if *id == worker(1))),
        "the valid member is still delivered"
    );
    assert_eq!(b.skipped_values(), 6);

    // Live garbage is skipped too, and valid changes keep flowing.
    members
        .put("worker-8", r#"{"v":1,"x":1}"#.into())
        .await
        .unwrap();
    let ev = next_event(&mut watch, SOON).await;
    assert!(
        matches!(&ev, WatchEvent::Skipped { key, .. } if key == "worker-8"),
        "{ev:?}"
    );
    let rev = b.create_member(&worker(9), &member(9)).await.unwrap();
    assert_eq!(
        next_event(&mut watch, SOON).await,
        WatchEvent::Member {
            id: worker(9),
            revision: rev,
            change: Change::Put(member(9))
        }
    );
    assert_eq!(b.skipped_values(), 7);
}
