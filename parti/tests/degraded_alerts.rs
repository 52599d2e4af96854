//! `Hooks::on_degraded_alert` through the driver, on the in-memory backend with
//! tokio's paused clock: a worker cut off from the store gets its alerts on the
//! schedule of `alerts.*`, and none once it left `Degraded`.

// Test code: unwrap, expect and panic are how it asserts.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use async_trait::async_trait;
use parti::{AlertLevel, Config, Hooks, Manager, State, StaticSource};
use parti_testkit::MemoryBackend;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::Instant;

/// A hook call, with the (paused) clock's reading when it ran.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Call {
    State(State, State),
    Alert(AlertLevel, Duration),
}

#[derive(Clone, Default)]
struct Log(Arc<Mutex<Vec<(Instant, Call)>>>);

impl Log {
    fn calls(&self) -> Vec<(Instant, Call)> {
        self.0.lock().unwrap().clone()
    }

    fn alerts(&self) -> Vec<(Instant, AlertLevel, Duration)> {
        self.calls()
            .into_iter()
            .filter_map(|(at, c)| match c {
                Call::Alert(l, d) => Some((at, l, d)),
                Call::State(..) => None,
            })
            .collect()
    }

    /// When the worker first went to `to`.
    fn entered(&self, to: State) -> Option<Instant> {
        self.calls().into_iter().find_map(|(at, c)| match c {
            Call::State(_, s) if s == to => Some(at),
            _ => None,
        })
    }
}

struct Recorder(Log);

#[async_trait]
impl Hooks for Recorder {
    async fn on_state_changed(&self, from: State, to: State) {
        let now = Instant::now();
        self.0.0.lock().unwrap().push((now, Call::State(from, to)));
    }

    async fn on_degraded_alert(&self, level: AlertLevel, degraded_for: Duration) {
        let now = Instant::now();
        self.0
            .0
            .lock()
            .unwrap()
            .push((now, Call::Alert(level, degraded_for)));
    }
}

/// The test preset with alert thresholds that show every rule: info 1 s,
/// warn 3.5 s, error 4.5 s, critical 7 s, repeated every 2 s.
fn config() -> Config {
    let mut cfg = Config::for_tests();
    cfg.alerts.info = Duration::from_millis(1000);
    cfg.alerts.warn = Duration::from_millis(3500);
    cfg.alerts.error = Duration::from_millis(4500);
    cfg.alerts.critical = Duration::from_millis(7000);
    cfg.alerts.interval = Duration::from_millis(2000);
    cfg.validate().unwrap();
    cfg
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

async fn start(backend: &MemoryBackend, cfg: Config, log: &Log) -> Manager {
    Manager::builder(backend.clone())
        .config(cfg)
        .partitions(StaticSource::numbered("t", 8))
        .hooks(Recorder(log.clone()))
        .instance_id(1000)
        .start()
        .await
        .unwrap()
}

/// Timer slack allowed between a deadline and the hook's clock reading
/// (tokio's timer has a 1 ms resolution; the core counts whole ms).
const SLACK: Duration = Duration::from_millis(5);

fn close(got: Duration, want: Duration) -> bool {
    got >= want && got <= want + SLACK
}

#[tokio::test(start_paused = true)]
async fn alerts_reach_the_hook_on_schedule_and_stop_once_the_worker_left_degraded() {
    let cfg = config();
    let store = MemoryBackend::new(&cfg);
    let link = store.handle();
    let log = Log::default();
    let m = start(&link, cfg.clone(), &log).await;
    assert_eq!(m.state(), State::Stable);

    link.set_reachable(false);
    wait_until("Degraded", Duration::from_secs(5), || {
        m.state() == State::Degraded
    })
    .await;
    // The cut outlasts the ID TTL (2 s): the state stays `Degraded` while the
    // ID lapses (it is claimed back once the store answers), and the alerts
    // go on, counted from its entry into `Degraded`.
    // The expected (level, degraded for): info at 1 s, its repeat at 3 s, the
    // rises to warn (3.5 s) and error (4.5 s) before their repeats, error
    // repeated at 6.5 s, the rise to critical (7 s), critical repeated at 9 s.
    let s = Duration::from_millis;
    let expected = [
        (AlertLevel::Info, s(1000)),
        (AlertLevel::Info, s(3000)),
        (AlertLevel::Warn, s(3500)),
        (AlertLevel::Error, s(4500)),
        (AlertLevel::Error, s(6500)),
        (AlertLevel::Critical, s(7000)),
        (AlertLevel::Critical, s(9000)),
    ];
    wait_until("every expected alert", Duration::from_secs(15), || {
        log.alerts().len() >= expected.len()
    })
    .await;
    link.set_reachable(true);
    let restored = Instant::now();
    wait_until("left Degraded", Duration::from_secs(5), || {
        m.state() != State::Degraded && log.entered(State::Degraded).is_some()
    })
    .await;
    wait_until("Stable again", Duration::from_secs(10), || {
        m.state() == State::Stable
    })
    .await;
    // Several intervals more: nothing else comes.
    tokio::time::sleep(cfg.alerts.interval * 5).await;

    let entered = log.entered(State::Degraded).unwrap();
    let alerts = log.alerts();
    for (at, call) in log.calls() {
        println!("{:>8?} {call:?}", at.saturating_duration_since(entered));
    }
    assert_eq!(
        alerts.len(),
        expected.len(),
        "alerts after the restore: {alerts:?}"
    );
    for ((at, level, got), (want_level, want)) in alerts.iter().zip(expected) {
        assert_eq!(*level, want_level, "{alerts:?}");
        assert!(close(*got, want), "degraded for {got:?}, want {want:?}");
        // degraded_for is the time since the worker entered Degraded.
        let since = at.saturating_duration_since(entered);
        assert!(close(since, want), "called at entry + {since:?}");
        assert!(*at < restored);
    }
    // The worker left Degraded after the restore, then nothing more.
    let calls = log.calls();
    let left = calls
        .iter()
        .rposition(|(_, c)| matches!(c, Call::State(State::Degraded, _)))
        .expect("a transition out of Degraded");
    assert!(calls[left].0 >= restored);
    assert!(
        calls[left..]
            .iter()
            .all(|(_, c)| matches!(c, Call::State(..))),
        "{calls:?}"
    );
    m.stop().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn a_cut_shorter_than_the_info_threshold_gives_no_alert() {
    let mut cfg = config();
    cfg.alerts.info = Duration::from_secs(3);
    let store = MemoryBackend::new(&cfg);
    let link = store.handle();
    let log = Log::default();
    let m = start(&link, cfg.clone(), &log).await;

    link.set_reachable(false);
    wait_until("Degraded", Duration::from_secs(5), || {
        m.state() == State::Degraded
    })
    .await;
    link.set_reachable(true);
    wait_until("Stable again", Duration::from_secs(10), || {
        m.state() == State::Stable
    })
    .await;
    tokio::time::sleep(cfg.alerts.info + cfg.alerts.interval * 3).await;
    assert!(log.entered(State::Degraded).is_some());
    assert_eq!(log.alerts(), vec![]);
    m.stop().await.unwrap();
}
