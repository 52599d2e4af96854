//! Tests of the in-memory backend: CAS semantics, TTL expiry, watch order,
//! per-worker filtering, cut handles, lag, and the sweeper's lifetime. Time is
//! paused tokio time: no test sleeps to synchronise.

// Test code: unwrap, expect and panic are how it asserts.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use parti_core::backend::{
    Backend, BackendError, BackendExt, Change, MemberScope, WatchEvent, WatchStream,
};
use parti_core::records::{
    AssignmentMeta, LeaderRecord, Lifecycle, MemberRecord, MemberStatus, WIRE_VERSION,
    WorkerAssignment,
};
use parti_core::{Config, InstanceId, WorkerId};
use parti_testkit::MemoryBackend;
use std::collections::BTreeMap;
use std::future::poll_fn;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

const MEMBER_TTL: Duration = Duration::from_secs(2);
const LEADER_TTL: Duration = Duration::from_secs(1);
/// Generous deadline for an event that must come (virtual time when paused).
const WITHIN: Duration = Duration::from_secs(60);

fn backend() -> MemoryBackend {
    let mut config = Config::default();
    config.worker_id_ttl = MEMBER_TTL;
    config.election_ttl = LEADER_TTL;
    MemoryBackend::new(&config)
}

fn wid(n: u32) -> WorkerId {
    WorkerId::new("worker", n)
}

fn member(instance: u64) -> MemberRecord {
    MemberRecord::fresh(InstanceId(instance), 1)
}

fn leader(n: u32) -> LeaderRecord {
    LeaderRecord {
        v: WIRE_VERSION,
        worker: wid(n),
        instance: InstanceId(u64::from(n)),
        term: None,
    }
}

fn meta(version: u64, term: u64, records: &[(u32, u64)]) -> AssignmentMeta {
    AssignmentMeta {
        v: WIRE_VERSION,
        version,
        term,
        lifecycle: Lifecycle::ColdStart,
        records: records
            .iter()
            .map(|(w, v)| (wid(*w), *v))
            .collect::<BTreeMap<_, _>>(),
        partitions: 0,
    }
}

fn assignment(worker: u32, term: u64, version: u64) -> WorkerAssignment {
    WorkerAssignment {
        v: WIRE_VERSION,
        worker: wid(worker),
        instance: InstanceId(u64::from(worker)),
        version,
        term,
        partitions: Vec::new(),
    }
}

/// The next item of a watch, failing the test if none comes within [`WITHIN`].
async fn next(stream: &mut WatchStream) -> Option<Result<WatchEvent, BackendError>> {
    tokio::time::timeout(WITHIN, poll_fn(|cx| stream.as_mut().poll_next(cx)))
        .await
        .expect("watch item within the deadline")
}

async fn next_event(stream: &mut WatchStream) -> WatchEvent {
    next(stream)
        .await
        .expect("stream still open")
        .expect("no watch error")
}

/// Polls once without waiting: `None` if nothing is ready now.
fn ready_now(stream: &mut WatchStream) -> Option<Option<Result<WatchEvent, BackendError>>> {
    let mut cx = Context::from_waker(Waker::noop());
    match stream.as_mut().poll_next(&mut cx) {
        Poll::Ready(item) => Some(item),
        Poll::Pending => None,
    }
}

/// Lets spawned tasks (the sweeper) run without moving the clock.
async fn settle() {
    for _ in 0..10 {
        tokio::task::yield_now().await;
    }
}

/// Reads the snapshot up to and including `CaughtUp`.
async fn snapshot(stream: &mut WatchStream) -> Vec<WatchEvent> {
    let mut out = Vec::new();
    loop {
        match next_event(stream).await {
            WatchEvent::CaughtUp => return out,
            e => out.push(e),
        }
    }
}

fn revision(e: &WatchEvent) -> u64 {
    match e {
        WatchEvent::Member { revision, .. }
        | WatchEvent::Leader { revision, .. }
        | WatchEvent::Meta { revision, .. }
        | WatchEvent::Assignment { revision, .. } => *revision,
        other => panic!("no revision in {other:?}"),
    }
}

#[tokio::test(start_paused = true)]
async fn member_cas_semantics() {
    let b = backend();
    b.ensure_ready().await.expect("ready");
    let w = wid(0);
    let r1 = b.create_member(&w, &member(1)).await.expect("create");
    assert_eq!(
        b.create_member(&w, &member(2)).await,
        Err(BackendError::AlreadyExists)
    );
    assert_eq!(
        b.update_member(&w, &member(1), r1 + 7).await,
        Err(BackendError::Conflict)
    );
    let mut renewed = member(1);
    renewed.status = MemberStatus::Stopping;
    let r2 = b
        .update_member(&w, &renewed, r1)
        .await
        .expect("update at the expected revision");
    assert!(r2 > r1);
    assert_eq!(b.get_member(&w).await, Ok(Some((renewed.clone(), r2))));
    assert_eq!(
        b.update_member(&w, &member(1), r1).await,
        Err(BackendError::Conflict),
        "stale revision"
    );
    assert_eq!(b.delete_member(&w, r1).await, Err(BackendError::Conflict));
    assert_eq!(b.delete_member(&w, r2).await, Ok(()));
    assert_eq!(b.get_member(&w).await, Ok(None));
    assert_eq!(
        b.update_member(&w, &member(1), r2).await,
        Err(BackendError::Conflict),
        "update of an absent key"
    );
    assert_eq!(b.delete_member(&w, r2).await, Err(BackendError::Conflict));
    let r3 = b
        .create_member(&w, &member(3))
        .await
        .expect("a deleted key is absent");
    assert!(r3 > r2 + 1, "the delete took a revision too");
    assert_eq!(
        b.snapshot_members(),
        vec![(w.clone(), member(3), r3)],
        "inspection"
    );
    assert!(b.operations() >= 13);
}

#[tokio::test(start_paused = true)]
async fn leader_and_meta_cas_semantics() {
    let b = backend();
    let term = b.create_leader(&leader(0)).await.expect("campaign");
    assert_eq!(
        b.create_leader(&leader(1)).await,
        Err(BackendError::AlreadyExists)
    );
    let mut renewal = leader(0);
    renewal.term = Some(term);
    assert_eq!(
        b.update_leader(&renewal, term + 1).await,
        Err(BackendError::Conflict)
    );
    let r = b.update_leader(&renewal, term).await.expect("renew");
    assert_eq!(b.snapshot_leader(), Some((renewal.clone(), r)));
    assert_eq!(b.delete_leader(term).await, Err(BackendError::Conflict));
    b.delete_leader(r).await.expect("resign");
    assert_eq!(b.snapshot_leader(), None);
    let term2 = b.create_leader(&leader(1)).await.expect("new campaign");
    assert!(term2 > r);

    let m1 = b
        .commit_meta(&meta(1, term2, &[]), None)
        .await
        .expect("first commit");
    assert_eq!(
        b.commit_meta(&meta(1, term2, &[]), None).await,
        Err(BackendError::AlreadyExists)
    );
    assert_eq!(
        b.commit_meta(&meta(2, term2, &[]), Some(m1 + 3)).await,
        Err(BackendError::Conflict)
    );
    let m2 = b
        .commit_meta(&meta(2, term2, &[]), Some(m1))
        .await
        .expect("CAS commit");
    assert!(m2 > m1);
    assert_eq!(
        b.commit_meta(&meta(3, term2, &[]), Some(m1)).await,
        Err(BackendError::Conflict)
    );
}

#[tokio::test(start_paused = true)]
async fn load_assignments_returns_the_named_records_only() {
    let b = backend();
    assert_eq!(b.load_assignments().await.expect("load").meta, None);
    // Term 5: worker 0 at version 3, worker 1 at version 2 (meta names 3: left
    // out), worker 2 not named. Term 4: a stale record of worker 0.
    b.put_assignment(&assignment(0, 4, 1)).await.expect("put");
    b.put_assignment(&assignment(0, 5, 3)).await.expect("put");
    b.put_assignment(&assignment(1, 5, 2)).await.expect("put");
    b.put_assignment(&assignment(2, 5, 3)).await.expect("put");
    let m = meta(3, 5, &[(0, 3), (1, 3), (3, 3)]);
    let rev = b.commit_meta(&m, None).await.expect("commit");
    let loaded = b.load_assignments().await.expect("load");
    assert_eq!(loaded.meta, Some((m, rev)));
    assert_eq!(loaded.records, vec![assignment(0, 5, 3)]);

    // Housekeeping removes the other terms only.
    b.remove_stale_assignments(5).await.expect("cleanup");
    let mut w = b
        .watch(Some(&wid(0)), MemberScope::All)
        .await
        .expect("watch");
    let snap = snapshot(&mut w).await;
    let records: Vec<_> = snap
        .iter()
        .filter_map(|e| match e {
            WatchEvent::Assignment { record, .. } => Some(record.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(records, vec![assignment(0, 5, 3)]);
}

#[tokio::test(start_paused = true)]
async fn ttl_expiry_is_a_removal_and_frees_the_key() {
    let b = backend();
    let w = wid(0);
    let r1 = b.create_member(&w, &member(1)).await.expect("create");
    let term = b.create_leader(&leader(0)).await.expect("campaign");
    let mut watch = b.watch(None, MemberScope::All).await.expect("watch");
    assert_eq!(snapshot(&mut watch).await.len(), 2);

    // Renew the member after a quarter of its TTL; the leader is not renewed.
    tokio::time::advance(MEMBER_TTL / 4).await;
    let r2 = b.update_member(&w, &member(1), r1).await.expect("renew");
    let renewed_at = tokio::time::Instant::now();
    assert!(matches!(
        next_event(&mut watch).await,
        WatchEvent::Member { revision, change: Change::Put(_), .. } if revision == r2
    ));
    // The leader expires at LEADER_TTL without any call: the sweeper does it.
    let e = next_event(&mut watch).await;
    assert!(
        matches!(e, WatchEvent::Leader { change: Change::Removed, revision } if revision > r2),
        "{e:?}"
    );
    assert!(b.snapshot_leader().is_none());
    let term2 = b
        .create_leader(&leader(1))
        .await
        .expect("expired leader key is absent");
    assert!(term2 > term);
    assert!(matches!(
        next_event(&mut watch).await,
        WatchEvent::Leader {
            change: Change::Put(_),
            ..
        }
    ));

    // Just before the renewed member's TTL it is still there (the new leader
    // key expires meanwhile).
    let almost = renewed_at + MEMBER_TTL - Duration::from_millis(1);
    tokio::time::advance(almost - tokio::time::Instant::now()).await;
    settle().await;
    while let Some(item) = ready_now(&mut watch) {
        let e = item.expect("open").expect("no error");
        assert!(
            matches!(
                e,
                WatchEvent::Leader {
                    change: Change::Removed,
                    ..
                }
            ),
            "only the leader expired: {e:?}"
        );
    }
    assert_eq!(b.snapshot_members().len(), 1);
    assert!(b.snapshot_leader().is_none());
    let member_removed = match next_event(&mut watch).await {
        WatchEvent::Member {
            id,
            revision,
            change: Change::Removed,
        } => {
            assert_eq!(id, w);
            Some(revision)
        }
        other => panic!("unexpected {other:?}"),
    };
    assert_eq!(
        tokio::time::Instant::now() - renewed_at,
        MEMBER_TTL,
        "expired exactly at the TTL"
    );
    assert!(
        member_removed.is_some(),
        "member expiry seen by the watcher"
    );
    assert_eq!(b.get_member(&w).await, Ok(None));
    let r3 = b
        .create_member(&w, &member(2))
        .await
        .expect("expired key is creatable again");
    assert!(Some(r3) > member_removed);
}

#[tokio::test(start_paused = true)]
async fn expiry_is_applied_on_calls_even_before_the_sweeper_runs() {
    let b = backend();
    let w = wid(0);
    b.create_member(&w, &member(1)).await.expect("create");
    tokio::time::advance(MEMBER_TTL).await;
    // No yield between: the call itself removes the expired key.
    b.create_member(&w, &member(2))
        .await
        .expect("expired at exactly the TTL");
}

#[tokio::test(start_paused = true)]
async fn watch_gives_snapshot_then_caught_up_then_live_changes_in_order() {
    let b = backend();
    let r0 = b.create_member(&wid(0), &member(0)).await.expect("create");
    let r1 = b.create_member(&wid(1), &member(1)).await.expect("create");
    let rl = b.create_leader(&leader(0)).await.expect("campaign");
    let rm = b
        .commit_meta(&meta(1, rl, &[(0, 1)]), None)
        .await
        .expect("commit");
    b.delete_member(&wid(1), r1).await.expect("delete");

    let mut w = b.watch(None, MemberScope::All).await.expect("watch");
    let snap = snapshot(&mut w).await;
    let revisions: Vec<u64> = snap.iter().map(revision).collect();
    assert_eq!(
        revisions,
        vec![r0, rl, rm],
        "current values, in revision order"
    );
    assert!(
        matches!(&snap[0], WatchEvent::Member { id, change: Change::Put(m), .. } if *id == wid(0) && *m == member(0))
    );
    assert!(matches!(&snap[2], WatchEvent::Meta { meta, .. } if meta.version == 1));

    // Live changes from several concurrent writers (clones), in revision order,
    // no gap (for watched keys), no duplicate.
    let mut tasks = Vec::new();
    for n in 10..20u32 {
        let c = b.clone();
        tasks.push(tokio::spawn(async move {
            let id = wid(n);
            let mut rev = c.create_member(&id, &member(u64::from(n))).await?;
            for _ in 0..5 {
                rev = c.update_member(&id, &member(u64::from(n)), rev).await?;
            }
            c.delete_member(&id, rev).await
        }));
    }
    for t in tasks {
        t.await.expect("task").expect("writes");
    }
    let mut last = rm;
    let mut seen = 0;
    while seen < 10 * 7 {
        let e = next_event(&mut w).await;
        let r = revision(&e);
        assert!(r > last, "revision order: {r} after {last}");
        last = r;
        seen += 1;
    }
    assert!(ready_now(&mut w).is_none(), "nothing more");
}

#[tokio::test(start_paused = true)]
async fn an_own_scope_watch_sees_only_its_own_and_the_leaders_member_keys() {
    let b = backend();
    let mut revisions = Vec::new();
    for n in 0..3 {
        let rev = b
            .create_member(&wid(n), &member(u64::from(n)))
            .await
            .expect("create");
        revisions.push(rev);
    }
    let scope = MemberScope::Own {
        leader: Some(wid(2)),
    };
    let mut w = b.watch(Some(&wid(1)), scope).await.expect("watch");
    let ids = |events: &[WatchEvent]| -> Vec<WorkerId> {
        events
            .iter()
            .filter_map(|e| match e {
                WatchEvent::Member { id, .. } => Some(id.clone()),
                _ => None,
            })
            .collect()
    };
    assert_eq!(ids(&snapshot(&mut w).await), vec![wid(1), wid(2)]);
    // Worker 0's renewal does not reach the watch; its own and the leader's do.
    b.update_member(&wid(0), &member(10), revisions[0])
        .await
        .expect("renew");
    let own = b
        .update_member(&wid(1), &member(11), revisions[1])
        .await
        .expect("renew");
    let lead = b
        .update_member(&wid(2), &member(12), revisions[2])
        .await
        .expect("renew");
    let live = vec![next_event(&mut w).await, next_event(&mut w).await];
    assert_eq!(ids(&live), vec![wid(1), wid(2)]);
    assert_eq!(
        live.iter().map(revision).collect::<Vec<_>>(),
        vec![own, lead]
    );
    settle().await;
    assert!(ready_now(&mut w).is_none());
}

#[tokio::test(start_paused = true)]
async fn a_watch_sees_only_its_own_assignment_records() {
    let b = backend();
    b.put_assignment(&assignment(0, 3, 1)).await.expect("put");
    b.put_assignment(&assignment(1, 3, 1)).await.expect("put");
    b.put_assignment(&assignment(0, 4, 2)).await.expect("put");
    let mut w0 = b
        .watch(Some(&wid(0)), MemberScope::All)
        .await
        .expect("watch");
    let mut none = b.watch(None, MemberScope::All).await.expect("watch");

    let snap = snapshot(&mut w0).await;
    let got: Vec<_> = snap
        .iter()
        .map(|e| match e {
            WatchEvent::Assignment { record, .. } => (record.worker.clone(), record.term),
            other => panic!("unexpected {other:?}"),
        })
        .collect();
    assert_eq!(got, vec![(wid(0), 3), (wid(0), 4)], "all terms, own worker");
    assert!(snapshot(&mut none).await.is_empty());

    b.put_assignment(&assignment(1, 4, 2)).await.expect("put");
    let r = b.put_assignment(&assignment(0, 4, 3)).await.expect("put");
    let rm = b
        .commit_meta(&meta(3, 4, &[(0, 3)]), None)
        .await
        .expect("commit");
    assert!(matches!(
        next_event(&mut w0).await,
        WatchEvent::Assignment { revision, record } if revision == r && record.version == 3
    ));
    assert!(
        matches!(next_event(&mut w0).await, WatchEvent::Meta { revision, .. } if revision == rm)
    );
    assert!(
        matches!(next_event(&mut none).await, WatchEvent::Meta { revision, .. } if revision == rm)
    );
    // Removals of records are not delivered.
    b.remove_stale_assignments(4).await.expect("cleanup");
    settle().await;
    assert!(ready_now(&mut w0).is_none());
}

#[tokio::test(start_paused = true)]
async fn a_cut_handle_is_unavailable_and_its_watch_resumes_in_order() {
    let b = backend();
    let h = b.handle();
    let w = wid(7);
    let rev = h.create_member(&w, &member(7)).await.expect("create");
    let mut hw = h.watch(None, MemberScope::All).await.expect("watch");
    let mut bw = b.watch(None, MemberScope::All).await.expect("watch");
    assert_eq!(snapshot(&mut hw).await.len(), 1);
    assert_eq!(snapshot(&mut bw).await.len(), 1);

    h.set_reachable(false);
    assert!(!h.is_reachable());
    assert!(b.is_reachable(), "other handles are not cut");
    let clone = h.clone();
    assert!(
        !clone.is_reachable(),
        "clones share the handle's connection"
    );
    assert!(matches!(
        h.update_member(&w, &member(7), rev).await,
        Err(BackendError::Unavailable(_))
    ));
    assert!(matches!(
        h.watch(None, MemberScope::All).await,
        Err(BackendError::Unavailable(_))
    ));
    assert!(matches!(
        h.ensure_ready().await,
        Err(BackendError::Unavailable(_))
    ));
    assert!(matches!(
        clone.get_member(&w).await,
        Err(BackendError::Unavailable(_))
    ));

    // The store goes on: the cut worker's key is taken over and the leader
    // changes; the cut handle's watch shows nothing of it.
    let mut expected = Vec::new();
    let r = b
        .update_member(&w, &member(8), rev)
        .await
        .expect("takeover");
    expected.push(r);
    let rl = b.create_leader(&leader(1)).await.expect("campaign");
    expected.push(rl);
    b.delete_member(&w, r).await.expect("delete");
    expected.push(rl + 1);
    let mut seen_by_b = Vec::new();
    for _ in 0..3 {
        seen_by_b.push(revision(&next_event(&mut bw).await));
    }
    assert_eq!(seen_by_b, expected);
    settle().await;
    assert!(ready_now(&mut hw).is_none(), "a cut watch delivers nothing");

    // Reconnect: the buffered changes arrive in order, then live ones.
    h.set_reachable(true);
    let mut seen_by_h = Vec::new();
    for _ in 0..3 {
        seen_by_h.push(revision(&next_event(&mut hw).await));
    }
    assert_eq!(seen_by_h, expected);
    let r2 = h.create_member(&w, &member(7)).await.expect("reclaim");
    assert_eq!(revision(&next_event(&mut hw).await), r2);
}

#[tokio::test(start_paused = true)]
async fn a_reconnect_wakes_a_waiting_watch() {
    let b = backend();
    let h = b.handle();
    let mut hw = h.watch(None, MemberScope::All).await.expect("watch");
    assert!(snapshot(&mut hw).await.is_empty());
    h.set_reachable(false);
    let reader = tokio::spawn(async move { next(&mut hw).await });
    settle().await;
    let r = b.create_member(&wid(1), &member(1)).await.expect("create");
    settle().await;
    assert!(!reader.is_finished());
    h.set_reachable(true);
    let item = reader.await.expect("task");
    assert!(
        matches!(item, Some(Ok(ref e)) if revision(e) == r),
        "{item:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn a_lagging_watch_ends_with_an_error() {
    let b = backend();
    b.set_watch_capacity(4);
    b.create_member(&wid(0), &member(0)).await.expect("create");
    let mut w = b.watch(None, MemberScope::All).await.expect("watch");
    let mut rev = b.create_member(&wid(1), &member(1)).await.expect("create");
    for _ in 0..10 {
        rev = b
            .update_member(&wid(1), &member(1), rev)
            .await
            .expect("update");
    }
    assert!(matches!(
        next(&mut w).await,
        Some(Err(BackendError::Other(_)))
    ));
    assert!(next(&mut w).await.is_none(), "ends after the error");
    // A new watch starts from a fresh snapshot.
    let mut w2 = b.watch(None, MemberScope::All).await.expect("watch again");
    assert_eq!(snapshot(&mut w2).await.len(), 2);
}

#[tokio::test(start_paused = true)]
async fn dropping_the_backend_stops_the_sweeper_and_ends_watches() {
    let metrics = tokio::runtime::Handle::current().metrics();
    let b = backend();
    assert_eq!(metrics.num_alive_tasks(), 0);
    b.create_member(&wid(0), &member(0)).await.expect("create");
    let mut w = b.watch(None, MemberScope::All).await.expect("watch");
    assert_eq!(metrics.num_alive_tasks(), 1, "the sweeper runs");
    assert_eq!(snapshot(&mut w).await.len(), 1);
    let clone = b.clone();
    drop(b);
    settle().await;
    assert_eq!(
        metrics.num_alive_tasks(),
        1,
        "a clone keeps the store alive"
    );
    drop(clone);
    let deadline = tokio::time::Instant::now() + WITHIN;
    while metrics.num_alive_tasks() > 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "sweeper still running"
        );
        tokio::task::yield_now().await;
    }
    assert!(next(&mut w).await.is_none(), "watch ends with the store");
    // Time passing after the drop is harmless.
    tokio::time::advance(MEMBER_TTL * 2).await;
    settle().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compare_and_set_is_linearizable_across_clones() {
    let b = backend();
    let w = wid(0);
    b.create_member(&w, &member(0)).await.expect("create");
    let mut tasks = Vec::new();
    for _ in 0..4 {
        let c = b.handle();
        let w = w.clone();
        tasks.push(tokio::spawn(async move {
            let mut done = 0;
            while done < 50 {
                let (mut rec, rev) = c.get_member(&w).await?.expect("present");
                rec.held += 1;
                match c.update_member(&w, &rec, rev).await {
                    Ok(_) => done += 1,
                    Err(BackendError::Conflict) => {}
                    Err(e) => return Err(e),
                }
            }
            Ok::<_, BackendError>(())
        }));
    }
    for t in tasks {
        t.await.expect("task").expect("no error");
    }
    let members = b.snapshot_members();
    assert_eq!(members.len(), 1);
    assert_eq!(members[0].1.held, 200, "no lost update");
}
