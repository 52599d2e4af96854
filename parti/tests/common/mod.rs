//! Helpers shared by the `parti` integration tests against real `nats-server`
//! processes: servers and unique groups, a condition wait with a deadline
//! (never a sleep for synchronisation), an ownership recorder fed by the hooks
//! with an overlap checker, a fleet of in-process managers, and an observer
//! that watches the group's buckets like a foreign client.

#![allow(dead_code)]

mod fleet;
mod observer;
mod recorder;

// Not every test file uses every part.
#[allow(unused_imports)]
pub use fleet::*;
#[allow(unused_imports)]
pub use observer::*;
#[allow(unused_imports)]
pub use recorder::*;

use parti::{Config, Partition};
use parti_testkit::nats_server::NatsServer;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// Polling period of [`wait_until`].
pub const POLL: Duration = Duration::from_millis(20);

/// Generous bound for "the group settles" on loopback (a failure past it is a
/// real failure, not a slow machine).
pub const SETTLE: Duration = Duration::from_secs(20);

/// A single-node server, or `None` (test skipped, loudly) without a binary.
pub fn server() -> Option<NatsServer> {
    parti_testkit::nats_server::start_or_skip()
}

/// A group name unique to this test (and this run).
pub fn group(name: &str) -> String {
    parti_testkit::nats_server::unique_group(name)
}

/// `Config::for_tests()` with this group.
pub fn config(group: &str) -> Config {
    let mut config = Config::for_tests();
    config.group = group.to_string();
    config
}

/// A client of one server URL, or of a comma-free list of URLs.
pub async fn connect(urls: &[String]) -> async_nats::Client {
    async_nats::connect(urls).await.expect("client connects")
}

/// `count` partitions `[prefix, "p-<i>"]` for `i` in `range`.
pub fn partitions(prefix: &str, range: std::ops::Range<usize>) -> Vec<Partition> {
    range
        .map(|i| Partition::new([prefix.to_string(), format!("p-{i}")]))
        .collect()
}

/// Polls `cond` every [`POLL`] until it holds; panics after `within` with
/// `what` and the diagnostics `describe` returns. Returns the time waited.
pub async fn wait_until_or(
    within: Duration,
    what: &str,
    mut cond: impl FnMut() -> bool,
    describe: impl Fn() -> String,
) -> Duration {
    let start = Instant::now();
    let deadline = start + within;
    loop {
        if cond() {
            return start.elapsed();
        }
        if Instant::now() >= deadline {
            panic!(
                "timed out after {within:?} waiting until {what}\n{}",
                describe()
            );
        }
        // Polling period, not a synchronisation: the condition is re-checked.
        tokio::time::sleep(POLL).await;
    }
}

/// [`wait_until_or`] without diagnostics.
pub async fn wait_until(within: Duration, what: &str, cond: impl FnMut() -> bool) -> Duration {
    wait_until_or(within, what, cond, String::new).await
}

/// Locks, ignoring poisoning (a panicking test thread must not hide the
/// real failure behind a poison error).
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    match m.lock() {
        Ok(g) => g,
        Err(p) => p.into_inner(),
    }
}
