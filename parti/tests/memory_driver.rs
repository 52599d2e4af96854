//! The driver and `Manager` on the in-memory backend (fast, with tokio's
//! paused clock). Real-NATS tests live in the `nats_*` files.

// Test code: unwrap, expect and panic are how it asserts.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use async_trait::async_trait;
use parti::{
    Config, Error, FnSource, Hooks, Manager, OwnedPartition, Partition, PartitionId, SourceError,
    State, StaticSource,
};
use parti_testkit::MemoryBackend;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::Instant;

/// Records who holds what, and every overlap.
#[derive(Default)]
struct Ledger {
    holders: BTreeMap<PartitionId, BTreeSet<usize>>,
    overlaps: Vec<String>,
    states: Vec<(usize, State, State)>,
    errors: Vec<String>,
}

struct Recorder {
    who: usize,
    ledger: Arc<Mutex<Ledger>>,
}

#[async_trait]
impl Hooks for Recorder {
    async fn on_assignment_changed(
        &self,
        added: &[OwnedPartition],
        removed: &[OwnedPartition],
        _version: u64,
    ) {
        let mut l = self.ledger.lock().unwrap();
        for p in removed {
            if let Some(s) = l.holders.get_mut(&p.partition.id()) {
                s.remove(&self.who);
            }
        }
        for p in added {
            let set = l.holders.entry(p.partition.id()).or_default();
            let others: Vec<usize> = set.iter().copied().filter(|h| *h != self.who).collect();
            set.insert(self.who);
            if !others.is_empty() {
                let msg = format!(
                    "{} granted to #{} while held by {:?}",
                    p.partition, self.who, others
                );
                l.overlaps.push(msg);
            }
        }
    }

    async fn on_state_changed(&self, from: State, to: State) {
        self.ledger
            .lock()
            .unwrap()
            .states
            .push((self.who, from, to));
    }

    async fn on_error(&self, error: &Error) {
        self.ledger.lock().unwrap().errors.push(error.to_string());
    }
}

impl Ledger {
    fn forget(&mut self, who: usize) {
        for s in self.holders.values_mut() {
            s.remove(&who);
        }
    }

    fn owned_once(&self, n: usize) -> bool {
        self.holders.values().filter(|s| s.len() == 1).count() == n
            && self.holders.values().all(|s| s.len() <= 1)
    }
}

fn config() -> Config {
    Config::for_tests()
}

async fn start(
    backend: &MemoryBackend,
    source: impl parti::PartitionSource,
    who: usize,
    ledger: &Arc<Mutex<Ledger>>,
    cfg: Config,
) -> Result<Manager, Error> {
    Manager::builder(backend.clone())
        .config(cfg)
        .partitions(source)
        .hooks(Recorder {
            who,
            ledger: ledger.clone(),
        })
        .instance_id(1000 + who as u64)
        .start()
        .await
}

async fn wait_until(what: &str, limit: Duration, mut cond: impl FnMut() -> bool) -> Duration {
    let started = Instant::now();
    while !cond() {
        assert!(
            started.elapsed() < limit,
            "timed out after {limit:?} waiting for: {what}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    started.elapsed()
}

#[tokio::test(start_paused = true)]
async fn single_worker_leads_owns_everything_and_releases_its_id() {
    let backend = MemoryBackend::new(&config());
    let ledger = Arc::new(Mutex::new(Ledger::default()));
    let m = start(
        &backend,
        StaticSource::numbered("t", 12),
        0,
        &ledger,
        config(),
    )
    .await
    .unwrap();
    assert_eq!(m.worker_id().unwrap().as_str(), "worker-0");
    assert!(m.is_leader());
    assert_eq!(m.state(), State::Stable);
    assert_eq!(m.assignment().len(), 12);
    assert!(m.assignment().partitions.iter().all(|p| p.epoch >= 1));
    assert_eq!(backend.snapshot_members().len(), 1);
    m.stop().await.unwrap();
    assert!(
        backend.snapshot_members().is_empty(),
        "the ID must be released"
    );
    assert!(
        backend.snapshot_leader().is_none(),
        "leadership must be resigned"
    );
    let l = ledger.lock().unwrap();
    assert!(
        l.holders.values().all(BTreeSet::is_empty),
        "everything given up on stop"
    );
    let first: Vec<(State, State)> = l.states.iter().map(|(_, f, t)| (*f, *t)).take(2).collect();
    assert_eq!(
        first,
        vec![
            (State::Init, State::ClaimingId),
            (State::ClaimingId, State::Election)
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn a_crashed_worker_is_replaced_without_overlap() {
    let cfg = config();
    let backend = MemoryBackend::new(&cfg);
    let ledger = Arc::new(Mutex::new(Ledger::default()));
    let source = StaticSource::numbered("t", 30);
    let (a, b, c) = tokio::join!(
        start(&backend, source.clone(), 0, &ledger, cfg.clone()),
        start(&backend, source.clone(), 1, &ledger, cfg.clone()),
        start(&backend, source.clone(), 2, &ledger, cfg.clone()),
    );
    let (a, b, c) = (a.unwrap(), b.unwrap(), c.unwrap());
    wait_until("all owned once", Duration::from_secs(10), || {
        ledger.lock().unwrap().owned_once(30)
    })
    .await;
    let victim = if a.is_leader() { 1 } else { 0 };
    let (keep, crashed) = if victim == 0 {
        (vec![b, c], a)
    } else {
        (vec![a, c], b)
    };
    drop(crashed);
    ledger.lock().unwrap().forget(victim);
    let took = wait_until("re-owned after the crash", Duration::from_secs(10), || {
        ledger.lock().unwrap().owned_once(30)
    })
    .await;
    let bound = cfg.heartbeat_ttl + cfg.effective_emergency_grace() + Duration::from_secs(1);
    println!(
        "crash to re-owned: {} ms (bound {} ms)",
        took.as_millis(),
        bound.as_millis()
    );
    assert!(took <= bound, "took {took:?}, bound {bound:?}");
    assert!(
        ledger.lock().unwrap().overlaps.is_empty(),
        "{:?}",
        ledger.lock().unwrap().overlaps
    );
    for m in keep {
        m.stop().await.unwrap();
    }
}

#[tokio::test(start_paused = true)]
async fn leave_hands_partitions_over_at_once_and_stop_waits_for_the_window() {
    let cfg = config();
    let backend = MemoryBackend::new(&cfg);
    let ledger = Arc::new(Mutex::new(Ledger::default()));
    let source = StaticSource::numbered("t", 24);
    let (a, b, c) = tokio::join!(
        start(&backend, source.clone(), 0, &ledger, cfg.clone()),
        start(&backend, source.clone(), 1, &ledger, cfg.clone()),
        start(&backend, source.clone(), 2, &ledger, cfg.clone()),
    );
    let (a, b, c) = (a.unwrap(), b.unwrap(), c.unwrap());
    wait_until("all owned once", Duration::from_secs(10), || {
        ledger.lock().unwrap().owned_once(24)
    })
    .await;
    // leave(): re-owned well before the planned-scale window would close.
    let (leaver, rest) = if a.is_leader() {
        (b, vec![a, c])
    } else {
        (a, vec![b, c])
    };
    leaver.leave().await.unwrap();
    let took = wait_until("re-owned after leave", Duration::from_secs(5), || {
        ledger.lock().unwrap().owned_once(24)
    })
    .await;
    println!(
        "leave to re-owned: {} ms (planned window {} ms)",
        took.as_millis(),
        cfg.planned_scale_window.as_millis()
    );
    assert!(
        took < cfg.planned_scale_window,
        "leave must not wait for the window ({took:?})"
    );
    // stop(): the partitions wait for the window (a restart would get them back).
    let mut rest = rest;
    let stopper = rest.pop().unwrap();
    let stopper_is_leader = stopper.is_leader();
    stopper.stop().await.unwrap();
    let took = wait_until("re-owned after stop", Duration::from_secs(5), || {
        ledger.lock().unwrap().owned_once(24)
    })
    .await;
    println!(
        "stop to re-owned: {} ms (leader: {stopper_is_leader})",
        took.as_millis()
    );
    assert!(
        took >= cfg.planned_scale_window,
        "stop must keep the partitions for the window ({took:?})"
    );
    assert!(ledger.lock().unwrap().overlaps.is_empty());
    for m in rest {
        m.stop().await.unwrap();
    }
}

#[tokio::test(start_paused = true)]
async fn a_full_id_range_is_a_typed_error() {
    let mut cfg = config();
    cfg.worker_id_max = 0;
    cfg.startup_timeout = Duration::from_secs(4);
    let backend = MemoryBackend::new(&cfg);
    let ledger = Arc::new(Mutex::new(Ledger::default()));
    let first = start(
        &backend,
        StaticSource::numbered("t", 4),
        0,
        &ledger,
        cfg.clone(),
    )
    .await
    .unwrap();
    // The range stays full: the second worker keeps trying for the whole
    // startup timeout, then reports the range exhausted (not a bare timeout).
    let began = Instant::now();
    let second = start(
        &backend,
        StaticSource::numbered("t", 4),
        1,
        &ledger,
        cfg.clone(),
    )
    .await;
    let waited = began.elapsed();
    assert!(
        matches!(second, Err(Error::IdRangeExhausted(_))),
        "{second:?}"
    );
    assert!(
        waited >= cfg.startup_timeout && waited <= cfg.startup_timeout + Duration::from_secs(1),
        "gave up after {waited:?}, startup_timeout {:?}",
        cfg.startup_timeout
    );
    first.stop().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn a_waiting_worker_gets_the_id_of_a_crashed_holder_once_its_reservation_lapses() {
    let mut cfg = config();
    cfg.worker_id_max = 0; // a range of one ID
    let backend = MemoryBackend::new(&cfg);
    let ledger = Arc::new(Mutex::new(Ledger::default()));
    let a = start(
        &backend,
        StaticSource::numbered("t", 4),
        0,
        &ledger,
        cfg.clone(),
    )
    .await
    .unwrap();
    assert_eq!(a.worker_id().unwrap().as_str(), "worker-0");
    // Crash: the key is left to expire after `worker_id_ttl`.
    drop(a);
    ledger.lock().unwrap().forget(0);
    let began = Instant::now();
    let b = start(
        &backend,
        StaticSource::numbered("t", 4),
        1,
        &ledger,
        cfg.clone(),
    )
    .await
    .unwrap();
    let waited = began.elapsed();
    assert_eq!(b.worker_id().unwrap().as_str(), "worker-0");
    // It had to wait for the reservation, and got the ID well before the
    // startup timeout (the expiry is seen in the watch).
    assert!(
        waited >= cfg.worker_id_ttl / 2
            && waited < cfg.worker_id_ttl + cfg.cold_start_window + Duration::from_secs(2),
        "got the ID after {waited:?} (worker_id_ttl {:?})",
        cfg.worker_id_ttl
    );
    assert!(ledger.lock().unwrap().overlaps.is_empty());
    b.stop().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn invalid_config_is_refused_with_the_field_named() {
    let backend = MemoryBackend::new(&config());
    let mut cfg = config();
    cfg.heartbeat_ttl = Duration::from_millis(100);
    let err = Manager::builder(backend)
        .config(cfg)
        .start()
        .await
        .unwrap_err();
    assert!(err.to_string().contains("heartbeat_ttl"), "{err}");
}

#[tokio::test(start_paused = true)]
async fn refresh_partitions_is_applied_promptly_and_source_errors_reach_on_error() {
    let cfg = config();
    let backend = MemoryBackend::new(&cfg);
    let ledger = Arc::new(Mutex::new(Ledger::default()));
    let source = StaticSource::numbered("t", 8);
    let m = start(&backend, source.clone(), 0, &ledger, cfg.clone())
        .await
        .unwrap();
    let mut list: Vec<Partition> = (0..12)
        .map(|i| Partition::new(["t".to_string(), format!("p-{i}")]))
        .collect();
    list.remove(0);
    source.set(list);
    m.refresh_partitions().await.unwrap();
    wait_until("11 partitions owned", Duration::from_secs(3), || {
        m.assignment().len() == 11
    })
    .await;
    assert!(
        !m.assignment()
            .partitions
            .iter()
            .any(|p| p.partition.name() == "t-p-0")
    );
    m.stop().await.unwrap();

    // A failing source is reported through on_error and the worker keeps running.
    let failing = FnSource::new(|| async {
        Err::<Vec<Partition>, _>(SourceError::unavailable("database down"))
    });
    let ledger2 = Arc::new(Mutex::new(Ledger::default()));
    let backend2 = MemoryBackend::new(&cfg);
    let m = Manager::builder(backend2)
        .config(cfg.clone())
        .partitions(failing)
        .hooks(Recorder {
            who: 0,
            ledger: ledger2.clone(),
        })
        .start();
    let result = tokio::time::timeout(Duration::from_secs(3), m).await;
    wait_until("on_error called", Duration::from_secs(3), || {
        ledger2
            .lock()
            .unwrap()
            .errors
            .iter()
            .any(|e| e.contains("database down"))
    })
    .await;
    drop(result);
}

#[tokio::test(start_paused = true)]
async fn an_unreachable_backend_is_a_typed_error() {
    let cfg = config();
    let backend = MemoryBackend::new(&cfg).handle();
    backend.set_reachable(false);
    let err = Manager::builder(backend)
        .config(cfg)
        .start()
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::Backend(_) | Error::StartupTimeout { .. }),
        "{err}"
    );
}
