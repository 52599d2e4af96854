//! A worker cut off from NATS (TCP fault proxy) and a crashed-and-restarted
//! server: writes fail as Timeout/Unavailable (never as a success or a false
//! conflict), safety holds, and the watch resumes and catches up afterwards.

// Test code: unwrap, expect and panic are how it asserts.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::retry::answered;
use common::*;
use parti_core::backend::{
    Backend, BackendError, BackendExt, Change, MemberScope, WatchEvent, WatchStream,
};
use parti_core::records::Revision;
use parti_nats::NatsBackend;
use parti_testkit::fault_proxy::FaultProxy;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// Waits until the watch shows worker-0 at revision `rev` holding instance `instance`.
async fn wait_member(watch: &mut WatchStream, rev: Revision, instance: u64) {
    let (ev, _) = wait_for(
        watch,
        Duration::from_secs(20),
        |e| matches!(e, WatchEvent::Member { revision, .. } if *revision >= rev),
    )
    .await;
    assert_eq!(
        ev,
        WatchEvent::Member {
            id: worker(0),
            revision: rev,
            change: Change::Put(member(instance)),
        }
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cut_off_worker_fails_fast_stays_safe_and_its_watch_catches_up() {
    let Some(server) = server() else { return };
    let proxy = FaultProxy::start(SocketAddr::from(([127, 0, 0, 1], server.port())))
        .await
        .unwrap();
    let mut cfg = config(&group("cutoff"));
    cfg.operation_timeout = Duration::from_secs(1);
    cfg.worker_id_ttl = Duration::from_secs(60);
    let client = async_nats::ConnectOptions::new()
        .ping_interval(Duration::from_millis(500))
        .connect(proxy.nats_url())
        .await
        .unwrap();
    let cut_off = NatsBackend::new(client, &cfg);
    let other = backend(&server.client_url(), &cfg).await;
    cut_off.ensure_ready().await.unwrap();

    let id = worker(0);
    let mut watch = cut_off.watch(Some(&id), MemberScope::All).await.unwrap();
    assert_eq!(next_event(&mut watch, SOON).await, WatchEvent::CaughtUp);
    let r1 = cut_off.create_member(&id, &member(1)).await.unwrap();
    wait_member(&mut watch, r1, 1).await;

    // Cut: the renewal fails within the operation timeout, as unknown/unreachable.
    proxy.cut();
    let started = Instant::now();
    let err = cut_off
        .update_member(&id, &member(1), r1)
        .await
        .unwrap_err();
    assert!(
        matches!(err, BackendError::Timeout | BackendError::Unavailable(_)),
        "{err:?}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );

    // Meanwhile someone else takes the key over; the cut-off worker's write,
    // should it still be delivered late, must lose its compare-and-set.
    let r2 = other.update_member(&id, &member(2), r1).await.unwrap();

    // Black hole: nothing answers, so a write is a Timeout (outcome unknown).
    proxy.blackhole();
    assert_eq!(
        cut_off.update_member(&id, &member(1), r1).await,
        Err(BackendError::Timeout)
    );

    proxy.restore();
    // The resumed watch shows what changed while cut off.
    wait_member(&mut watch, r2, 2).await;
    let m2 = member(2);
    let r3 = answered(Duration::from_secs(20), || {
        cut_off.update_member(&id, &m2, r2)
    })
    .await
    .unwrap();
    wait_member(&mut watch, r3, 2).await;
    assert_eq!(other.get_member(&id).await.unwrap(), Some((member(2), r3)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_and_the_watch_survive_a_server_crash_and_restart() {
    let Some(mut server) = server() else { return };
    let mut cfg = config(&group("restart"));
    cfg.worker_id_ttl = Duration::from_secs(60);
    let b = backend(&server.client_url(), &cfg).await;
    let id = worker(0);
    let r1 = b.create_member(&id, &member(1)).await.unwrap();
    let mut watch = b.watch(None, MemberScope::All).await.unwrap();
    let snap = snapshot(&mut watch).await;
    assert_eq!(snap.len(), 1);

    server.kill();
    let err = b.update_member(&id, &member(2), r1).await.unwrap_err();
    assert!(
        matches!(err, BackendError::Timeout | BackendError::Unavailable(_)),
        "{err:?}"
    );
    tokio::task::block_in_place(|| server.restart()).unwrap();

    // The timed-out write may have been sent after the reconnect: reconcile.
    let m2 = member(2);
    let r2 = match answered(SOON, || b.update_member(&id, &m2, r1)).await {
        Ok(rev) => rev,
        Err(BackendError::Conflict) => {
            let (rec, rev) = b.get_member(&id).await.unwrap().unwrap();
            assert_eq!(rec, member(2), "only our own late write can have landed");
            rev
        }
        Err(e) => panic!("{e}"),
    };
    wait_member(&mut watch, r2, 2).await;
    assert_eq!(b.get_member(&id).await.unwrap(), Some((member(2), r2)));
}
