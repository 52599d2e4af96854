//! Helpers shared by the integration tests: servers, configs, raw access, and
//! waiting for watch events with deadlines (never sleeping to synchronise).

#![allow(dead_code)]

pub mod retry;

use async_nats::jetstream;
use futures_util::StreamExt;
use parti_core::Config;
use parti_core::backend::{WatchEvent, WatchStream};
use parti_core::ids::{InstanceId, WorkerId};
use parti_core::records::MemberRecord;
use parti_nats::NatsBackend;
use parti_testkit::nats_server::NatsServer;
use std::time::Duration;

/// Generous bound for anything that should happen "soon" on loopback.
pub const SOON: Duration = Duration::from_secs(10);

/// A single-node server, or `None` (test skipped, loudly) without a binary.
pub fn server() -> Option<NatsServer> {
    parti_testkit::nats_server::start_or_skip()
}

/// A group name unique to this test (and this run).
pub fn group(name: &str) -> String {
    parti_testkit::nats_server::unique_group(name)
}

/// The fast test config with this group.
pub fn config(group: &str) -> Config {
    let mut config = Config::for_tests();
    config.group = group.to_string();
    config
}

pub async fn backend(url: &str, config: &Config) -> NatsBackend {
    NatsBackend::connect(url, config).await.expect("connects")
}

/// A raw JetStream context on its own client (a "foreign" writer).
pub async fn raw(url: &str) -> jetstream::Context {
    jetstream::new(async_nats::connect(url).await.expect("raw client connects"))
}

pub fn worker(n: u32) -> WorkerId {
    WorkerId::new("worker", n)
}

pub fn member(instance: u64) -> MemberRecord {
    MemberRecord::fresh(InstanceId(instance), 1)
}

/// Next event within `within`, panicking on timeout, error or end.
pub async fn next_event(watch: &mut WatchStream, within: Duration) -> WatchEvent {
    match tokio::time::timeout(within, watch.next()).await {
        Ok(Some(Ok(ev))) => ev,
        Ok(Some(Err(e))) => panic!("watch error: {e}"),
        Ok(None) => panic!("watch ended"),
        Err(_) => panic!("no watch event within {within:?}"),
    }
}

/// Reads events until one matches; returns it and everything seen before it.
pub async fn wait_for(
    watch: &mut WatchStream,
    within: Duration,
    mut pred: impl FnMut(&WatchEvent) -> bool,
) -> (WatchEvent, Vec<WatchEvent>) {
    let deadline = tokio::time::Instant::now() + within;
    let mut seen = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        let ev = match tokio::time::timeout(left, watch.next()).await {
            Ok(Some(Ok(ev))) => ev,
            Ok(Some(Err(e))) => panic!("watch error: {e}; seen so far: {seen:#?}"),
            Ok(None) => panic!("watch ended; seen so far: {seen:#?}"),
            Err(_) => panic!("no matching event within {within:?}; seen: {seen:#?}"),
        };
        if pred(&ev) {
            return (ev, seen);
        }
        seen.push(ev);
    }
}

/// The snapshot: every event before `CaughtUp`.
pub async fn snapshot(watch: &mut WatchStream) -> Vec<WatchEvent> {
    wait_for(watch, SOON, |e| matches!(e, WatchEvent::CaughtUp))
        .await
        .1
}
