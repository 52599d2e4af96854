//! Writes, reads and bucket management against a real nats-server.

// Test code: unwrap, expect and panic are how it asserts.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use async_nats::jetstream::kv;
use async_nats::jetstream::stream::StorageType;
use common::*;
use parti_core::backend::{Backend, BackendError, BackendExt};
use parti_core::config::Storage;
use parti_core::ids::{InstanceId, WorkerId};
use parti_core::layout::worker_assignment_key;
use parti_core::records::{AssignmentMeta, LeaderRecord, Lifecycle, WorkerAssignment, encode};
use std::collections::BTreeMap;
use std::time::Duration;

fn leader(worker: u32, term: Option<u64>) -> LeaderRecord {
    LeaderRecord {
        v: 1,
        worker: common::worker(worker),
        instance: InstanceId(100 + u64::from(worker)),
        term,
    }
}

fn meta(version: u64, term: u64, records: &[(u32, u64)]) -> AssignmentMeta {
    AssignmentMeta {
        v: 1,
        version,
        term,
        lifecycle: Lifecycle::PlannedScale,
        records: records
            .iter()
            .map(|(w, v)| (common::worker(*w), *v))
            .collect::<BTreeMap<WorkerId, u64>>(),
        partitions: 4,
    }
}

fn assignment(worker: u32, version: u64, term: u64) -> WorkerAssignment {
    WorkerAssignment {
        v: 1,
        worker: common::worker(worker),
        instance: parti_core::InstanceId(1),
        version,
        term,
        partitions: vec![],
    }
}

#[tokio::test]
async fn member_create_cas_conflict_delete_and_create_over_tombstone() {
    let Some(server) = server() else { return };
    let b = backend(&server.client_url(), &config(&group("members"))).await;
    b.ensure_ready().await.unwrap();
    b.ensure_ready().await.unwrap(); // idempotent
    let id = worker(1);

    let r1 = b.create_member(&id, &member(1)).await.unwrap();
    assert_eq!(
        b.create_member(&id, &member(2)).await,
        Err(BackendError::AlreadyExists)
    );
    assert_eq!(b.get_member(&id).await.unwrap(), Some((member(1), r1)));

    let r2 = b.update_member(&id, &member(1), r1).await.unwrap();
    assert!(r2 > r1);
    assert_eq!(
        b.update_member(&id, &member(2), r1).await,
        Err(BackendError::Conflict)
    );
    assert_eq!(b.delete_member(&id, r1).await, Err(BackendError::Conflict));
    b.delete_member(&id, r2).await.unwrap();
    assert_eq!(b.get_member(&id).await.unwrap(), None);

    // Over the delete tombstone.
    let r3 = b.create_member(&id, &member(3)).await.unwrap();
    assert!(r3 > r2);
    assert_eq!(b.get_member(&id).await.unwrap(), Some((member(3), r3)));

    // Over a purge tombstone written by someone else.
    let raw = raw(&server.client_url()).await;
    let store = raw.get_key_value(&b.bucket_names().members).await.unwrap();
    store.purge(id.as_str()).await.unwrap();
    assert_eq!(b.get_member(&id).await.unwrap(), None);
    let r4 = b.create_member(&id, &member(4)).await.unwrap();
    assert!(r4 > r3);
    assert_eq!(b.get_member(&id).await.unwrap(), Some((member(4), r4)));
}

#[tokio::test]
async fn leader_campaign_renew_conflict_and_resign() {
    let Some(server) = server() else { return };
    let b = backend(&server.client_url(), &config(&group("leader"))).await;
    let term = b.create_leader(&leader(1, None)).await.unwrap();
    assert_eq!(
        b.create_leader(&leader(2, None)).await,
        Err(BackendError::AlreadyExists)
    );
    let renewed = b.update_leader(&leader(1, Some(term)), term).await.unwrap();
    assert!(renewed > term);
    // A stale renewal (e.g. a paused old leader) loses.
    assert_eq!(
        b.update_leader(&leader(1, Some(term)), term).await,
        Err(BackendError::Conflict)
    );
    assert_eq!(b.delete_leader(term).await, Err(BackendError::Conflict));
    b.delete_leader(renewed).await.unwrap();
    let term2 = b.create_leader(&leader(2, None)).await.unwrap();
    assert!(term2 > renewed, "a new term is a higher revision");
}

#[tokio::test]
async fn commit_meta_rejects_a_deposed_writer() {
    let Some(server) = server() else { return };
    let cfg = config(&group("meta"));
    let old_leader = backend(&server.client_url(), &cfg).await;
    let new_leader = backend(&server.client_url(), &cfg).await;

    let r1 = old_leader
        .commit_meta(&meta(1, 5, &[]), None)
        .await
        .unwrap();
    assert_eq!(
        new_leader.commit_meta(&meta(1, 6, &[]), None).await,
        Err(BackendError::AlreadyExists)
    );
    // The new leader takes over with a CAS on what it read...
    let r2 = new_leader
        .commit_meta(&meta(2, 6, &[]), Some(r1))
        .await
        .unwrap();
    // ...so the old one, still holding r1, is rejected.
    assert_eq!(
        old_leader.commit_meta(&meta(2, 5, &[]), Some(r1)).await,
        Err(BackendError::Conflict)
    );
    let snap = old_leader.load_assignments().await.unwrap();
    assert_eq!(snap.meta, Some((meta(2, 6, &[]), r2)));
}

#[tokio::test]
async fn load_assignments_returns_the_records_meta_names_and_stale_terms_are_purged() {
    let Some(server) = server() else { return };
    let b = backend(&server.client_url(), &config(&group("load"))).await;
    assert_eq!(
        b.load_assignments().await.unwrap(),
        Default::default(),
        "nothing committed yet"
    );

    for w in [1, 2] {
        b.put_assignment(&assignment(w, 3, 7)).await.unwrap();
    }
    b.put_assignment(&assignment(3, 2, 7)).await.unwrap(); // older version than meta names
    b.put_assignment(&assignment(1, 9, 6)).await.unwrap(); // a deposed term
    let raw = raw(&server.client_url()).await;
    let store = raw
        .get_key_value(&b.bucket_names().assignments)
        .await
        .unwrap();
    // Worker 4's record is garbage; worker 5's is missing.
    store
        .put(worker_assignment_key(7, &worker(4)), "garbage".into())
        .await
        .unwrap();
    let m = meta(3, 7, &[(1, 3), (2, 3), (3, 3), (4, 3), (5, 3)]);
    let rev = b.commit_meta(&m, None).await.unwrap();

    let before = b.skipped_values();
    let snap = b.load_assignments().await.unwrap();
    assert_eq!(snap.meta, Some((m, rev)));
    assert_eq!(snap.records, vec![assignment(1, 3, 7), assignment(2, 3, 7)]);
    assert_eq!(b.skipped_values(), before + 1);

    // Housekeeping removes term 6 and keeps term 7.
    b.remove_stale_assignments(7).await.unwrap();
    assert!(
        store
            .entry(worker_assignment_key(6, &worker(1)))
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        store
            .get(worker_assignment_key(7, &worker(1)))
            .await
            .unwrap()
            .is_some()
    );
    assert_eq!(
        b.load_assignments().await.unwrap().records.len(),
        2,
        "term 7 untouched"
    );
}

#[tokio::test]
async fn undecodable_meta_is_an_error_not_an_empty_snapshot() {
    let Some(server) = server() else { return };
    let b = backend(&server.client_url(), &config(&group("badmeta"))).await;
    b.ensure_ready().await.unwrap();
    let raw = raw(&server.client_url()).await;
    let store = raw
        .get_key_value(&b.bucket_names().assignments)
        .await
        .unwrap();
    store
        .put("meta", r#"{"v":2,"future":true}"#.into())
        .await
        .unwrap();
    assert!(
        matches!(b.load_assignments().await, Err(BackendError::Other(m)) if m.contains("meta"))
    );
}

#[tokio::test]
async fn an_incompatible_existing_bucket_is_misconfigured_and_named() {
    let Some(server) = server() else { return };
    let cfg = config(&group("misconf"));
    let b = backend(&server.client_url(), &cfg).await;
    let members = b.bucket_names().members.clone();
    let raw = raw(&server.client_url()).await;
    raw.create_key_value(kv::Config {
        bucket: members.clone(),
        history: 5,
        max_age: Duration::from_secs(60),
        storage: StorageType::Memory,
        ..Default::default()
    })
    .await
    .unwrap();
    let err = b.ensure_ready().await.unwrap_err();
    let BackendError::Misconfigured(msg) = err else {
        panic!("expected Misconfigured, got {err:?}");
    };
    for needle in [members.as_str(), "max_age", "history 5", "storage Memory"] {
        assert!(msg.contains(needle), "{needle:?} missing in: {msg}");
    }
    // Every operation reports it too (the buckets open lazily).
    assert!(matches!(
        b.create_member(&worker(0), &member(1)).await,
        Err(BackendError::Misconfigured(_))
    ));

    // Buckets made by a backend with the same config are accepted again; a
    // backend configured with another storage type is refused.
    let mut ok_cfg = config(&group("misconf_ok"));
    ok_cfg.buckets.storage = Storage::Memory;
    let ok = backend(&server.client_url(), &ok_cfg).await;
    ok.ensure_ready().await.unwrap();
    let again = backend(&server.client_url(), &ok_cfg).await;
    again.ensure_ready().await.unwrap();
    let mut other_storage = ok_cfg.clone();
    other_storage.buckets.storage = Storage::File;
    let clash = backend(&server.client_url(), &other_storage).await;
    assert!(matches!(
        clash.ensure_ready().await,
        Err(BackendError::Misconfigured(m)) if m.contains("storage")
    ));
}

#[tokio::test]
async fn a_ttl_below_the_server_minimum_is_refused_up_front() {
    let Some(server) = server() else { return };
    let mut cfg = config(&group("tinyttl"));
    cfg.worker_id_ttl = Duration::from_millis(50);
    let b = backend(&server.client_url(), &cfg).await;
    let err = b.ensure_ready().await.unwrap_err();
    assert!(
        matches!(&err, BackendError::Misconfigured(m) if m.contains("_members") && m.contains("100ms")),
        "{err:?}"
    );
}

#[tokio::test]
async fn bucket_name_overrides_are_used() {
    let Some(server) = server() else { return };
    let mut cfg = config(&group("names"));
    let custom = group("custom_members");
    cfg.buckets.members = Some(custom.clone());
    let b = backend(&server.client_url(), &cfg).await;
    b.create_member(&worker(2), &member(2)).await.unwrap();
    let raw = raw(&server.client_url()).await;
    let store = raw.get_key_value(&custom).await.unwrap();
    assert_eq!(
        store.get("worker-2").await.unwrap(),
        Some(encode(&member(2)).into())
    );
}

/// The consumer limit of each of a group's streams.
async fn consumer_limits(url: &str, b: &parti_nats::NatsBackend) -> Vec<i32> {
    let raw = raw(url).await;
    let names = b.bucket_names();
    let mut limits = Vec::new();
    for bucket in [&names.members, &names.leader, &names.assignments] {
        let mut stream = raw.get_stream(format!("KV_{bucket}")).await.unwrap();
        limits.push(stream.info().await.unwrap().config.max_consumers);
    }
    limits
}

#[tokio::test]
async fn a_wide_id_range_raises_the_consumer_limit_and_never_lowers_it() {
    let Some(server) = server() else { return };
    let url = server.client_url();
    // 100 IDs: the server's default (1 000 per stream on 2.15) is room
    // enough; the streams keep reporting no limit of their own.
    let narrow = config(&group("room_narrow"));
    let b = backend(&url, &narrow).await;
    b.ensure_ready().await.unwrap();
    let defaults = consumer_limits(&url, &b).await;
    assert_eq!(defaults, vec![-1; 3]);

    // 1 000 IDs: four consumers per ID on every stream.
    let mut wide = config(&group("room_wide"));
    wide.worker_id_max = 999;
    let b = backend(&url, &wide).await;
    b.ensure_ready().await.unwrap();
    assert_eq!(consumer_limits(&url, &b).await, vec![4000; 3]);

    // A limit raised further by hand stays: a narrower group on the same
    // buckets never lowers it.
    let raw = raw(&url).await;
    let members = format!("KV_{}", b.bucket_names().members);
    let mut config = raw
        .get_stream(&members)
        .await
        .unwrap()
        .info()
        .await
        .unwrap()
        .config
        .clone();
    config.max_consumers = 9000;
    raw.update_stream(&config).await.unwrap();
    let mut narrower = wide.clone();
    narrower.worker_id_max = 499;
    let again = backend(&url, &narrower).await;
    again.ensure_ready().await.unwrap();
    assert_eq!(consumer_limits(&url, &again).await, vec![9000, 4000, 4000]);
}

/// Creates ephemeral consumers on `stream` until one is refused; returns how
/// many were created (at most `up_to`).
async fn consumers_accepted(url: &str, stream: &str, up_to: usize) -> usize {
    use async_nats::jetstream::consumer::pull;
    let raw = raw(url).await;
    let stream = raw.get_stream(stream).await.unwrap();
    for n in 0..up_to {
        let created = stream
            .create_consumer(pull::Config {
                inactive_threshold: Duration::from_secs(60),
                ..Default::default()
            })
            .await;
        if let Err(e) = created {
            eprintln!("consumer {} refused: {e}", n + 1);
            return n;
        }
    }
    up_to
}

#[tokio::test]
async fn the_raised_limit_admits_more_watches_than_the_server_default() {
    let Some(server) = server() else { return };
    let url = server.client_url();
    let narrow = backend(&url, &config(&group("limit_default"))).await;
    narrow.ensure_ready().await.unwrap();
    let stream = format!("KV_{}", narrow.bucket_names().leader);
    assert_eq!(consumers_accepted(&url, &stream, 1100).await, 1000);

    let mut wide = config(&group("limit_raised"));
    wide.worker_id_max = 299;
    let raised = backend(&url, &wide).await;
    raised.ensure_ready().await.unwrap();
    let stream = format!("KV_{}", raised.bucket_names().leader);
    assert_eq!(consumers_accepted(&url, &stream, 1100).await, 1100);
}
