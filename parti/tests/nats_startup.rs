//! `start()` rides out NATS trouble within `startup_timeout`: a connection
//! that answers nothing for longer than `operation_timeout`, and a server that
//! is down when `start()` begins and comes back later. It still fails at once
//! on a permanent problem (a bucket with an incompatible configuration).

// Test code: unwrap, expect and panic are how it asserts.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use async_nats::jetstream::{self, kv, stream::StorageType};
use common::*;
use parti::{Error, Manager, State, StaticSource};
use parti_core::backend::BackendError;
use parti_core::layout::BucketNames;
use parti_testkit::fault_proxy::FaultProxy;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// A connection black-holed for longer than `operation_timeout` when
/// `start()` begins (the first bucket request times out with an unknown
/// outcome), restored well within `startup_timeout`: `start()` succeeds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn start_rides_out_a_blackholed_connection() {
    let Some(server) = server() else { return };
    let proxy = FaultProxy::start(SocketAddr::from(([127, 0, 0, 1], server.port())))
        .await
        .unwrap();
    let cfg = config(&group("blackholed"));
    let client = connect(&[proxy.nats_url()]).await;
    let outage = cfg.operation_timeout + Duration::from_secs(1);
    assert!(outage * 2 < cfg.startup_timeout);

    proxy.blackhole();
    let began = Instant::now();
    let restore = async {
        tokio::time::sleep(outage).await;
        proxy.restore();
    };
    let start = Manager::builder_nats(client)
        .config(cfg.clone())
        .partitions(StaticSource::new(partitions("b", 0..4)))
        .start();
    let ((), result) = tokio::join!(restore, start);
    let took = began.elapsed();
    let manager = result.unwrap_or_else(|e| panic!("start() failed after {took:?}: {e}"));
    println!(
        "start() succeeded {} ms after it began (connection black-holed for {} ms)",
        ms(took),
        ms(outage)
    );
    assert!(took >= outage, "started through a black hole in {took:?}");
    assert_eq!(manager.state(), State::Stable);
    assert_eq!(manager.assignment().partitions.len(), 4);
    manager.stop().await.unwrap();
}

/// The server is down when `start()` begins (the client is reconnecting) and
/// comes back on the same port within `startup_timeout`: `start()` succeeds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn start_waits_for_a_server_that_comes_back() {
    let Some(mut server) = server() else { return };
    let cfg = config(&group("serverdown"));
    let client = connect(&[server.client_url()]).await;
    let down = cfg.operation_timeout + Duration::from_secs(1);
    assert!(down * 2 < cfg.startup_timeout);

    server.kill();
    let began = Instant::now();
    let start = Manager::builder_nats(client)
        .config(cfg.clone())
        .partitions(StaticSource::new(partitions("d", 0..4)))
        .start();
    let start = tokio::spawn(start);
    tokio::time::sleep(down).await;
    tokio::task::block_in_place(|| server.restart()).expect("server restarts");
    let result = start.await.unwrap();
    let took = began.elapsed();
    let manager = result.unwrap_or_else(|e| panic!("start() failed after {took:?}: {e}"));
    println!(
        "start() succeeded {} ms after it began (server down for {} ms)",
        ms(took),
        ms(down)
    );
    assert!(took >= down, "started without a server in {took:?}");
    assert_eq!(manager.state(), State::Stable);
    manager.stop().await.unwrap();
}

/// A permanent problem is not retried: a members bucket that exists with an
/// incompatible configuration fails `start()` at once with `Misconfigured`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn start_fails_fast_on_an_incompatible_bucket() {
    let Some(server) = server() else { return };
    let g = group("incompatible");
    let cfg = config(&g);
    let client = connect(&[server.client_url()]).await;
    jetstream::new(client.clone())
        .create_key_value(kv::Config {
            bucket: BucketNames::for_group(&g).members,
            history: 5,
            storage: StorageType::Memory,
            ..Default::default()
        })
        .await
        .unwrap();
    let began = Instant::now();
    let result = Manager::builder_nats(client)
        .config(cfg.clone())
        .start()
        .await;
    let took = began.elapsed();
    match result {
        Err(Error::Backend(BackendError::Misconfigured(m))) => {
            assert!(m.contains("history 5"), "{m}");
        }
        Err(other) => panic!("expected Misconfigured, got {other:?}"),
        Ok(_) => panic!("started on an incompatible bucket"),
    }
    assert!(
        took < cfg.operation_timeout,
        "took {took:?}: a permanent error was retried"
    );
}
