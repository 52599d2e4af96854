//! A 3-node JetStream cluster with R3 buckets: compare-and-set writes and the
//! watch keep working while the node the client is connected to is killed and
//! restarted.

// Test code: unwrap, expect and panic are how it asserts.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::retry::{answered, reachable, renew_until_ok};
use common::*;
use parti_core::backend::{Backend, BackendError, BackendExt, Change, MemberScope, WatchEvent};
use parti_nats::NatsBackend;
use parti_testkit::nats_server::{NatsCluster, require_nats_server};
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r3_buckets_keep_cas_and_watch_working_through_a_node_restart() {
    if require_nats_server().is_none() {
        return;
    }
    let mut cluster = NatsCluster::start(3).expect("cluster starts");
    let urls = cluster.client_urls();
    let client = async_nats::connect(urls.as_slice()).await.unwrap();
    let mut cfg = config(&group("cluster"));
    cfg.buckets.replicas = 3;
    cfg.operation_timeout = Duration::from_secs(2);
    // Nothing may expire during the failover: this test is about CAS and watch.
    cfg.worker_id_ttl = Duration::from_secs(60);
    cfg.election_ttl = Duration::from_secs(60);
    let b = NatsBackend::new(client.clone(), &cfg);

    // R3 placement needs every peer known to the meta leader: retry until ready.
    let deadline = tokio::time::Instant::now() + SOON;
    loop {
        match b.ensure_ready().await {
            Ok(()) => break,
            Err(e @ BackendError::Misconfigured(_)) => panic!("{e}"),
            Err(e) => {
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "buckets not ready: {e}"
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }

    let mut watch = b.watch(Some(&worker(0)), MemberScope::All).await.unwrap();
    assert_eq!(next_event(&mut watch, SOON).await, WatchEvent::CaughtUp);
    let id = worker(0);
    let record = member(1);
    // A new R3 stream's interest reaches the other nodes a moment after it is
    // created: the first writes may meet "no responders" (nothing written) and
    // are repeated until a stream answers.
    let mut rev = reachable(|| b.create_member(&id, &record)).await;
    let leader_rec = leader();
    let term = reachable(|| b.create_leader(&leader_rec)).await;
    let renewed = reachable(|| b.update_leader(&leader_rec, term)).await;

    // Kill the node this client talks to.
    let port = client.server_info().port;
    let victim = urls
        .iter()
        .position(|u| u.ends_with(&format!(":{port}")))
        .expect("connected to a cluster node");
    cluster.kill(victim).unwrap();

    for _ in 0..3 {
        let (new, errors) = renew_until_ok(&b, &id, &record, rev, Duration::from_secs(20)).await;
        if let Some(last) = errors.last() {
            eprintln!(
                "{} failed renewals during failover, last: {last}",
                errors.len()
            );
        }
        assert!(new > rev);
        rev = new;
        wait_member_revision(&mut watch, rev).await;
    }
    // Safety still holds on the degraded cluster: a stale CAS (a deposed
    // leader renewing on its old revision) is refused.
    assert_eq!(
        answered(SOON, || b.update_leader(&leader_rec, term)).await,
        Err(BackendError::Conflict)
    );

    tokio::task::block_in_place(|| cluster.restart(victim)).expect("node restarts");
    for _ in 0..3 {
        let (new, _) = renew_until_ok(&b, &id, &record, rev, Duration::from_secs(20)).await;
        assert!(new > rev);
        rev = new;
        wait_member_revision(&mut watch, rev).await;
    }
    // A timed-out renewal may have landed; this test's renewals of the leader
    // key are only retried while nothing answered at all.
    let renewed_again = answered(SOON, || b.update_leader(&leader_rec, renewed))
        .await
        .unwrap();
    let (ev, _) = wait_for(
        &mut watch,
        SOON,
        |e| matches!(e, WatchEvent::Leader { revision, .. } if *revision == renewed_again),
    )
    .await;
    assert!(matches!(
        ev,
        WatchEvent::Leader {
            change: Change::Put(_),
            ..
        }
    ));
}

fn leader() -> parti_core::records::LeaderRecord {
    parti_core::records::LeaderRecord {
        v: 1,
        worker: worker(0),
        instance: parti_core::ids::InstanceId(1),
        term: None,
    }
}

/// Waits until the watch shows worker-0 at `rev` (earlier revisions may come
/// first; a gap is fine, a jump past `rev` is not).
async fn wait_member_revision(watch: &mut parti_core::backend::WatchStream, rev: u64) {
    let (ev, _) = wait_for(
        watch,
        SOON,
        |e| matches!(e, WatchEvent::Member { revision, .. } if *revision >= rev),
    )
    .await;
    assert!(
        matches!(ev, WatchEvent::Member { revision, change: Change::Put(_), .. } if revision == rev),
        "{ev:?}"
    );
}
