//! The cold start of a cell: the designated leader first (alone until it
//! won the election), then everyone else at once (or in batches), and the
//! moment the assignment was complete.

use super::cell::{CellOptions, HOLD, POLL, say, secs};
use super::counting::{Counters, Counts};
use super::fleet::{Fleet, Place};
use super::lane::Lane;
use super::line::Line;
use super::store::Store;
use parti::{Backend, Config, Manager, StaticSource};
use std::sync::Arc;
use std::time::Duration;
use tokio::task::JoinHandle;
use tokio::time::Instant;

/// The lanes of a cell (leader and follower threads) and the counters of
/// the three groups of workers.
pub struct Lanes {
    /// The designated leader's thread.
    pub leader: Lane,
    /// The designated follower's thread.
    pub follower: Lane,
    /// Counts of the leader's backend.
    pub leader_counts: Arc<Counters>,
    /// Counts of the follower's backend.
    pub follower_counts: Arc<Counters>,
    /// Counts of the backends of the main runtime's workers.
    pub main_counts: Arc<Counters>,
}

impl Lanes {
    /// Starts both lanes.
    pub fn start() -> Result<Lanes, String> {
        Ok(Lanes {
            leader: Lane::start("scale-leader").map_err(|e| format!("leader lane: {e}"))?,
            follower: Lane::start("scale-follower").map_err(|e| format!("follower lane: {e}"))?,
            leader_counts: Arc::default(),
            follower_counts: Arc::default(),
            main_counts: Arc::default(),
        })
    }

    /// ID claims (`CreateMember` calls) of every lane so far.
    pub fn claim_attempts(&self) -> u64 {
        self.leader_counts.claim_attempts()
            + self.follower_counts.claim_attempts()
            + self.main_counts.claim_attempts()
    }

    /// The counts of leader, follower and main workers, in that order.
    pub fn counts(&self) -> (Counts, Counts, Counts) {
        (
            self.leader_counts.snapshot(),
            self.follower_counts.snapshot(),
            self.main_counts.snapshot(),
        )
    }
}

/// The backends of a cell's workers, made before the clock starts: the
/// leader's and the follower's on their lanes, and one per main worker.
pub struct Backends {
    /// The designated leader's.
    pub leader: Arc<dyn Backend>,
    /// The designated follower's.
    pub follower: Arc<dyn Backend>,
    /// Of workers 0..N (the first two unused: leader and follower).
    pub main: Vec<Arc<dyn Backend>>,
}

impl Backends {
    /// Makes them (on NATS, the lanes' connections) and prepares the store
    /// (buckets; the in-memory sweeper) from the main runtime.
    pub async fn make(
        o: &CellOptions,
        config: &Config,
        store: &Store,
        lanes: &Lanes,
    ) -> Result<Backends, String> {
        let main: Vec<Arc<dyn Backend>> = (0..o.workers)
            .map(|i| store.backend(i, &lanes.main_counts))
            .collect();
        main[0]
            .ensure_ready()
            .await
            .map_err(|e| format!("preparing the store: {e}"))?;
        Ok(Backends {
            leader: store
                .lane_backend(&lanes.leader, config, &lanes.leader_counts)
                .await?,
            follower: store
                .lane_backend(&lanes.follower, config, &lanes.follower_counts)
                .await?,
            main,
        })
    }
}

/// A start in flight: the manager (or why it failed) and when it returned.
pub type Start = JoinHandle<(Result<Manager, parti::Error>, Instant)>;

/// `config` with `preferred_worker_id = id` (a StatefulSet ordinal: no
/// claim contention).
pub fn with_id(config: &Config, id: u32) -> Config {
    let mut c = config.clone();
    c.preferred_worker_id = Some(id);
    c
}

fn builder(
    backend: Arc<dyn Backend>,
    config: Config,
    source: StaticSource,
    instance: u64,
) -> parti::ManagerBuilder {
    Manager::builder(backend)
        .config(config)
        .partitions(source)
        .instance_id(instance)
}

/// Starts a worker whose driver runs on `lane`.
pub fn start_on_lane(
    lane: &Lane,
    backend: Arc<dyn Backend>,
    config: Config,
    source: StaticSource,
    instance: u64,
) -> Start {
    lane.spawn(started(builder(backend, config, source, instance)))
}

/// Starts a worker on the main runtime.
pub fn start_on_main(
    backend: Arc<dyn Backend>,
    config: Config,
    source: StaticSource,
    instance: u64,
) -> Start {
    tokio::spawn(started(builder(backend, config, source, instance)))
}

/// Starts the manager; gives the outcome and when it came.
async fn started(builder: parti::ManagerBuilder) -> (Result<Manager, parti::Error>, Instant) {
    let result = builder.start().await;
    (result, Instant::now())
}

/// Waits (up to 5 s) until the live heap stops shrinking, so that memory
/// freed late by whatever ran before does not count against the baseline.
pub async fn quiesce() {
    if !crate::alloc::installed() {
        return;
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut last = crate::alloc::live_bytes();
    let mut calm = 0;
    while calm < 3 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let now = crate::alloc::live_bytes();
        calm = if (last - now).abs() < 64 * 1024 {
            calm + 1
        } else {
            0
        };
        last = now;
    }
}

/// Starts the N workers into `fleet` and waits for the cold-start
/// assignment; fills `converge_s` and `beyond_window_s`. `Ok(Err(why))`
/// when every worker started but the assignment did not complete (the
/// steady state is still measured), `Err` when a start failed.
pub async fn cold_start(
    o: &CellOptions,
    config: &Config,
    lanes: &Lanes,
    backends: Backends,
    source: &StaticSource,
    fleet: &mut Fleet,
    line: &mut Line,
) -> Result<Result<(), String>, String> {
    say(o, "starting the leader");
    let mut starts = vec![(
        Place::LeaderLane,
        start_on_lane(
            &lanes.leader,
            backends.leader,
            with_id(config, 0),
            source.clone(),
            1,
        ),
    )];
    let deadline = Instant::now() + config.startup_timeout;
    while !lanes.leader_counts.won_election() {
        if Instant::now() >= deadline {
            return Err("the designated leader did not win the election".into());
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let elected = Instant::now();
    say(
        o,
        &format!("leader elected; starting {} more workers", o.workers - 1),
    );
    starts.push((
        Place::FollowerLane,
        start_on_lane(
            &lanes.follower,
            backends.follower,
            with_id(config, 1),
            source.clone(),
            2,
        ),
    ));
    let batch = if o.start_batch == 0 {
        usize::MAX
    } else {
        o.start_batch
    };
    for (i, backend) in backends.main.into_iter().enumerate().skip(2) {
        if i > 2 && (i - 2) % batch == 0 {
            let want = (i - 2) as u64;
            let until = Instant::now() + config.operation_timeout;
            while lanes.main_counts.claimed() < want && Instant::now() < until {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
        starts.push((
            Place::Main,
            start_on_main(
                backend,
                with_id(config, i as u32),
                source.clone(),
                i as u64 + 1,
            ),
        ));
    }
    let last_start = Instant::now();
    let mut last_return = last_start;
    for (place, handle) in starts {
        let (result, returned) = handle.await.map_err(|e| format!("start task: {e}"))?;
        let manager =
            result.map_err(|e| format!("start of worker #{}: {e}", fleet.live().len()))?;
        last_return = last_return.max(returned);
        fleet.push(manager, place);
    }
    say(o, "every start returned; checking the assignment");
    let first_poll_ok = fleet.complete().is_ok();
    let within = config.cold_start_window + Duration::from_secs(60);
    match fleet.settle(within, HOLD, POLL).await {
        Ok((first_ok, _)) => {
            // Each start returns once its worker applied the cold-start
            // assignment: if the first look already found it complete, it
            // was complete when the last start returned.
            let complete_at = if first_poll_ok { last_return } else { first_ok };
            line.converge_s = Some(secs(complete_at - last_start));
            let window_end = elected + config.cold_start_window;
            line.beyond_window_s = Some(
                secs(complete_at.saturating_duration_since(window_end))
                    - secs(window_end.saturating_duration_since(complete_at)),
            );
            say(
                o,
                &format!(
                    "complete {:.2} s after the last start; steady state in {:?}",
                    secs(complete_at - last_start),
                    o.warmup
                ),
            );
            Ok(Ok(()))
        }
        Err(e) => {
            say(
                o,
                &format!("cold start: {e}; measuring the steady state anyway"),
            );
            Ok(Err(format!("cold start {e}")))
        }
    }
}
