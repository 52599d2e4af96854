//! A failing application never leaves a zombie: hooks that panic or block and
//! partition sources that hang, on the in-memory backend with tokio's paused
//! clock. (The same on a real nats-server: `nats_app_failures.rs`.)

// Test code: unwrap, expect and panic are how it asserts.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use async_trait::async_trait;
use parti::records::MemberStatus;
use parti::{
    Config, Error, FnSource, Hooks, Manager, OwnedPartition, Partition, SourceError, State,
    StaticSource,
};
use parti_testkit::MemoryBackend;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::Notify;
use tokio::time::Instant;

/// What the assignment hook does when it is told to give partitions up.
#[derive(Clone, Copy, PartialEq, Eq)]
enum OnRevoke {
    Return,
    Panic,
    /// Never returns.
    BlockForever,
    /// Waits until `release` is notified.
    BlockUntilReleased,
}

struct TestHooks {
    on_revoke: OnRevoke,
    release: Arc<Notify>,
    errors: Arc<Mutex<Vec<Error>>>,
}

#[async_trait]
impl Hooks for TestHooks {
    async fn on_assignment_changed(
        &self,
        _added: &[OwnedPartition],
        removed: &[OwnedPartition],
        _version: u64,
    ) {
        if removed.is_empty() {
            return;
        }
        match self.on_revoke {
            OnRevoke::Return => {}
            OnRevoke::Panic => panic!("boom: failed printing to stdout"),
            OnRevoke::BlockForever => std::future::pending::<()>().await,
            OnRevoke::BlockUntilReleased => self.release.notified().await,
        }
    }

    async fn on_error(&self, error: &Error) {
        self.errors.lock().unwrap().push(error.clone());
    }
}

struct Setup {
    backend: MemoryBackend,
    source: StaticSource,
    release: Arc<Notify>,
    errors: Arc<Mutex<Vec<Error>>>,
}

impl Setup {
    fn new(cfg: &Config) -> Self {
        Setup {
            backend: MemoryBackend::new(cfg),
            source: StaticSource::numbered("t", 8),
            release: Arc::new(Notify::new()),
            errors: Arc::new(Mutex::new(Vec::new())),
        }
    }

    async fn start(&self, cfg: Config, on_revoke: OnRevoke) -> Manager {
        Manager::builder(self.backend.clone())
            .config(cfg)
            .partitions(self.source.clone())
            .hooks(TestHooks {
                on_revoke,
                release: self.release.clone(),
                errors: self.errors.clone(),
            })
            .instance_id(7)
            .start()
            .await
            .unwrap()
    }

    /// The only member record: (status, applied, revision).
    fn member(&self) -> Option<(MemberStatus, Option<u64>, u64)> {
        self.backend
            .snapshot_members()
            .first()
            .map(|(_, record, revision)| (record.status, record.applied, *revision))
    }

    fn errors(&self) -> Vec<Error> {
        self.errors.lock().unwrap().clone()
    }
}

async fn wait_until(what: &str, limit: Duration, mut cond: impl FnMut() -> bool) -> Duration {
    let started = Instant::now();
    while !cond() {
        assert!(
            started.elapsed() < limit,
            "timed out after {limit:?} waiting for: {what}"
        );
        // Polling period of a condition wait (paused clock: instantaneous).
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    started.elapsed()
}

/// Shrinks the partition list so the (only) worker must give partitions up.
async fn revoke_some(s: &Setup, m: &Manager) {
    s.source.set(numbered(4));
    m.refresh_partitions().await.unwrap();
}

/// `n` partitions `["t", "p-<i>"]`, as `StaticSource::numbered("t", n)`.
fn numbered(n: usize) -> Vec<Partition> {
    (0..n)
        .map(|i| Partition::new(["t".to_string(), format!("p-{i}")]))
        .collect()
}

/// A hook that panics ends the manager: typed error through `on_error` and
/// from `stop()`, state `Shutdown`, and the worker gave up its partitions and
/// its ID as on a graceful stop (no zombie keeps the ID or the lease).
#[tokio::test(start_paused = true)]
async fn a_panicking_assignment_hook_ends_the_manager_with_a_typed_error() {
    let cfg = Config::for_tests();
    let s = Setup::new(&cfg);
    let m = s.start(cfg.clone(), OnRevoke::Panic).await;
    assert_eq!(m.state(), State::Stable);
    revoke_some(&s, &m).await;
    wait_until("Shutdown after the panic", Duration::from_secs(5), || {
        m.state() == State::Shutdown
    })
    .await;
    wait_until("the ID released", Duration::from_secs(5), || {
        s.backend.snapshot_members().is_empty()
    })
    .await;
    assert!(s.backend.snapshot_leader().is_none(), "leadership resigned");
    assert!(m.assignment().partitions.is_empty());
    let is_panic = |e: &Error| {
        matches!(e, Error::HookPanicked { hook: "on_assignment_changed", message }
            if message.contains("boom"))
    };
    let reported = s.errors();
    assert_eq!(
        reported.iter().filter(|e| is_panic(e)).count(),
        1,
        "reported once through on_error: {reported:?}"
    );
    assert!(
        m.fatal_error()
            .is_some_and(|e| is_panic(&e) && e.is_fatal())
    );
    let err = m.stop().await.unwrap_err();
    assert!(is_panic(&err), "{err:?}");
}

/// A hook blocked forever (here: in the stop's own revoke) is cut off after
/// its budget: `stop()` returns the typed error within `shutdown_timeout`,
/// and the release was never confirmed (the record still says `Active` with
/// the old `applied`: the leader must wait for the lease to expire).
#[tokio::test(start_paused = true)]
async fn a_hook_blocked_forever_makes_stop_return_a_typed_error_in_time() {
    let cfg = Config::for_tests();
    let s = Setup::new(&cfg);
    let m = s.start(cfg.clone(), OnRevoke::BlockForever).await;
    let (status, applied, _) = s.member().unwrap();
    assert_eq!(status, MemberStatus::Active);
    let started = Instant::now();
    let err = m.stop().await.unwrap_err();
    let took = started.elapsed();
    assert!(
        matches!(err, Error::HookTimedOut { hook: "on_assignment_changed", budget }
            if budget == cfg.effective_hook_budget()),
        "{err:?}"
    );
    assert!(took <= cfg.shutdown_timeout, "stop() took {took:?}");
    assert!(
        took >= cfg.effective_hook_budget(),
        "cut off before its budget: {took:?}"
    );
    let (status, applied_after, _) = s.member().expect("the record is left to expire");
    assert_eq!(status, MemberStatus::Active, "no departure confirmed");
    assert_eq!(applied_after, applied, "no release confirmed");
    wait_until("the timeout reported", Duration::from_secs(1), || {
        s.errors()
            .iter()
            .any(|e| matches!(e, Error::HookTimedOut { .. }))
    })
    .await;
    // Nobody renews it any more: the ID reservation lapses.
    wait_until("the member key expired", cfg.worker_id_ttl * 2, || {
        s.backend.snapshot_members().is_empty()
    })
    .await;
}

/// A hook blocked past its budget while the worker runs (not stopping) is
/// fatal too: `Shutdown` with the typed error, nothing confirmed.
#[tokio::test(start_paused = true)]
async fn a_revoke_hook_past_its_budget_is_fatal_and_confirms_nothing() {
    let cfg = Config::for_tests();
    let s = Setup::new(&cfg);
    let m = s.start(cfg.clone(), OnRevoke::BlockForever).await;
    let (_, applied, _) = s.member().unwrap();
    revoke_some(&s, &m).await;
    let took = wait_until("Shutdown after the budget", Duration::from_secs(5), || {
        m.state() == State::Shutdown
    })
    .await;
    assert!(took <= cfg.effective_hook_budget() + cfg.heartbeat_interval);
    let (status, applied_after, _) = s.member().unwrap();
    assert_eq!(status, MemberStatus::Active);
    assert_eq!(applied_after, applied, "the revoke was not confirmed");
    let err = m.stop().await.unwrap_err();
    assert!(matches!(err, Error::HookTimedOut { .. }), "{err:?}");
}

/// While the assignment hook blocks (within its budget), the member lease
/// keeps being renewed (the revision grows every heartbeat), but the release
/// is confirmed (`applied` moves) only once the hook returned.
#[tokio::test(start_paused = true)]
async fn renewals_go_on_while_a_hook_runs_and_the_release_waits_for_it() {
    let cfg = Config::builder()
        .heartbeat_interval(Duration::from_millis(200))
        .heartbeat_ttl(Duration::from_secs(2))
        .lease_safety_margin(Duration::from_millis(100))
        .worker_id_ttl(Duration::from_secs(4))
        .hook_budget(Some(Duration::from_millis(1500)))
        .cold_start_window(Duration::from_secs(1))
        .planned_scale_window(Duration::from_millis(500))
        .rebalance_cooldown(Duration::from_millis(100))
        .emergency_grace(Some(Duration::from_millis(300)))
        .startup_timeout(Duration::from_secs(15))
        .build()
        .unwrap();
    let s = Setup::new(&cfg);
    let m = s.start(cfg.clone(), OnRevoke::BlockUntilReleased).await;
    let (_, applied, first_revision) = s.member().unwrap();
    revoke_some(&s, &m).await;
    // The hook is now blocked on the revoke; about six heartbeats go by.
    let mut revisions = vec![first_revision];
    let started = Instant::now();
    while started.elapsed() < Duration::from_millis(1200) {
        let (status, applied_now, revision) = s.member().unwrap();
        assert_eq!(status, MemberStatus::Active);
        assert_eq!(
            applied_now, applied,
            "release confirmed while the hook runs"
        );
        if revisions.last() != Some(&revision) {
            revisions.push(revision);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        revisions.len() >= 5,
        "the lease was not renewed while the hook ran: revisions {revisions:?}"
    );
    assert_eq!(m.state(), State::Stable);
    s.release.notify_one();
    wait_until("the release confirmed", Duration::from_secs(1), || {
        s.member().is_some_and(|(_, a, _)| a != applied)
    })
    .await;
    assert!(s.errors().is_empty(), "{:?}", s.errors());
    assert_eq!(m.state(), State::Stable);
    assert_eq!(m.assignment().partitions.len(), 4);
    s.release.notify_one(); // for the stop's own revoke
    m.stop().await.unwrap();
    assert!(s.backend.snapshot_members().is_empty());
}

/// A partition source that hangs does not stop renewals; its timeout reaches
/// `on_error` (typed) and `refresh_partitions()`.
#[tokio::test(start_paused = true)]
async fn a_hanging_partition_source_does_not_stop_renewals() {
    let cfg = Config::for_tests();
    let backend = MemoryBackend::new(&cfg);
    let errors = Arc::new(Mutex::new(Vec::new()));
    let calls = Arc::new(AtomicUsize::new(0));
    let counter = calls.clone();
    let source = FnSource::new(move || {
        let first = counter.fetch_add(1, Ordering::SeqCst) == 0;
        async move {
            if !first {
                std::future::pending::<()>().await;
            }
            Ok(numbered(8))
        }
    });
    let m = Manager::builder(backend.clone())
        .config(cfg.clone())
        .partitions(source)
        .hooks(TestHooks {
            on_revoke: OnRevoke::Return,
            release: Arc::new(Notify::new()),
            errors: errors.clone(),
        })
        .start()
        .await
        .unwrap();
    let revision = || backend.snapshot_members()[0].2;
    let before = revision();
    let started = Instant::now();
    let (result, during) = tokio::join!(m.refresh_partitions(), async {
        let mut seen = vec![revision()];
        while started.elapsed() < cfg.operation_timeout - Duration::from_millis(100) {
            if seen.last() != Some(&revision()) {
                seen.push(revision());
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        seen
    });
    assert_eq!(result, Err(Error::Source(SourceError::Timeout)));
    assert!(started.elapsed() >= cfg.operation_timeout);
    assert!(
        during.len() >= 5 && during[0] >= before,
        "renewals stopped while the source hung: {during:?}"
    );
    assert_eq!(m.state(), State::Stable);
    assert!(
        errors
            .lock()
            .unwrap()
            .contains(&Error::Source(SourceError::Timeout)),
        "{:?}",
        errors.lock().unwrap()
    );
    m.stop().await.unwrap();
}

/// `on_state_changed` panicking is fatal as well, and reported through
/// `on_error`; `on_error` panicking is not reported through itself.
#[tokio::test(start_paused = true)]
async fn a_panicking_slow_hook_is_fatal_without_recursion() {
    struct Panicky {
        errors: Arc<Mutex<Vec<Error>>>,
        error_calls: Arc<AtomicUsize>,
    }
    #[async_trait]
    impl Hooks for Panicky {
        async fn on_state_changed(&self, _from: State, to: State) {
            if to == State::Stable {
                panic!("state hook broke");
            }
        }
        async fn on_error(&self, error: &Error) {
            self.error_calls.fetch_add(1, Ordering::SeqCst);
            self.errors.lock().unwrap().push(error.clone());
            panic!("error hook broke too");
        }
    }
    let cfg = Config::for_tests();
    let backend = MemoryBackend::new(&cfg);
    let errors = Arc::new(Mutex::new(Vec::new()));
    let error_calls = Arc::new(AtomicUsize::new(0));
    let m = Manager::builder(backend.clone())
        .config(cfg.clone())
        .partitions(StaticSource::numbered("t", 4))
        .hooks(Panicky {
            errors: errors.clone(),
            error_calls: error_calls.clone(),
        })
        .start()
        .await;
    // The panic may land before or after start() returns.
    let err = match m {
        Ok(m) => {
            wait_until("Shutdown", Duration::from_secs(5), || {
                m.state() == State::Shutdown
            })
            .await;
            m.stop().await.unwrap_err()
        }
        Err(e) => e,
    };
    assert!(
        matches!(&err, Error::HookPanicked { hook: "on_state_changed", message }
            if message.contains("state hook broke")),
        "{err:?}"
    );
    wait_until("the ID released", cfg.worker_id_ttl * 2, || {
        backend.snapshot_members().is_empty()
    })
    .await;
    assert_eq!(
        error_calls.load(Ordering::SeqCst),
        1,
        "on_error called once"
    );
    assert!(matches!(
        errors.lock().unwrap()[0],
        Error::HookPanicked {
            hook: "on_state_changed",
            ..
        }
    ));
}
