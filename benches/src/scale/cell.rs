//! One cell of the scale report: N workers on one backend, through a cold
//! start, a steady-state interval, the crash of a follower, the graceful
//! stop of another, a join and the crash of the leader.

use super::events;
use super::fleet::Fleet;
use super::line::Line;
use super::start::{self, Backends, Lanes};
use super::steady::{self, Baseline};
use super::store::{Store, Which};
use parti::{Config, Partition, StaticSource};
use std::time::Duration;
use tokio::time::Instant;

/// IDs beyond N in the range: room for the join while the crashed worker's
/// ID is still reserved.
const SPARE_IDS: u32 = 10;
/// The assignment must stay complete this long to count as settled.
pub(crate) const HOLD: Duration = Duration::from_millis(500);
/// How often the fleet is looked at while waiting.
pub(crate) const POLL: Duration = Duration::from_millis(20);

/// What one cell runs with.
#[derive(Clone, Debug)]
pub struct CellOptions {
    /// The backend.
    pub which: Which,
    /// N.
    pub workers: usize,
    /// P.
    pub partitions: usize,
    /// The shortened cold-start window.
    pub cold_start_window: Duration,
    /// The shortened planned-scale window (the rebalance cooldown follows it:
    /// it may not exceed the window).
    pub planned_scale_window: Duration,
    /// Pause after convergence before the steady-state interval.
    pub warmup: Duration,
    /// Length of the steady-state interval.
    pub steady: Duration,
    /// NATS connections shared by the workers of the main runtime.
    pub connections: usize,
    /// Start the workers of the main runtime this many at a time, each batch
    /// once the previous one claimed its IDs (0: all at once).
    pub start_batch: usize,
    /// Start from `Config::for_tests()` (200 ms heartbeats) instead of the
    /// defaults: for the smoke test only, the figures mean little.
    pub test_timings: bool,
}

/// The configuration of every worker of a cell: the defaults (or the test
/// timings), with the shortened windows, an ID range sized to N, and a
/// start-up bound long enough for N claims on a shared machine.
pub fn cell_config(o: &CellOptions) -> Config {
    let mut c = if o.test_timings {
        Config::for_tests()
    } else {
        Config::default()
    };
    c.group = format!("scale{}n{}", std::process::id(), o.workers);
    c.cold_start_window = o.cold_start_window;
    c.planned_scale_window = o.planned_scale_window;
    c.rebalance_cooldown = c.rebalance_cooldown.min(o.planned_scale_window);
    c.worker_id_min = 0;
    c.worker_id_max = o.workers as u32 + SPARE_IDS - 1;
    c.startup_timeout = o.cold_start_window + Duration::from_secs(120);
    c
}

pub(crate) fn secs(d: Duration) -> f64 {
    d.as_secs_f64()
}

/// Progress on stderr.
pub(crate) fn say(o: &CellOptions, text: &str) {
    eprintln!("[{} N={}] {text}", o.which.name(), o.workers);
}

/// Runs one cell; a step that fails ends the cell with the figures so far
/// and the reason in `error`.
pub async fn run_cell(o: &CellOptions) -> Line {
    let began = Instant::now();
    let mut line = Line {
        backend: o.which.name().into(),
        workers: o.workers,
        partitions: o.partitions,
        cold_start_window_s: secs(o.cold_start_window),
        ..Line::default()
    };
    let config = cell_config(o);
    match Store::open(&o.which, &config, o.connections).await {
        Ok(store) => {
            if let Err(e) = steps(o, &mut line, &config, &store).await {
                line.error = Some(e);
            }
            let end = store.server_reading(&config.group);
            line.server_slow_consumers = end.slow_consumers;
        }
        Err(e) => line.error = Some(e),
    }
    line.cell_s = secs(began.elapsed());
    line
}

async fn steps(
    o: &CellOptions,
    line: &mut Line,
    config: &Config,
    store: &Store,
) -> Result<(), String> {
    if o.workers < 3 {
        return Err("the report needs at least 3 workers (leader, follower, victims)".into());
    }
    config
        .validate()
        .map_err(|e| format!("configuration: {e}"))?;
    let list: Vec<Partition> = (0..o.partitions)
        .map(|i| Partition::new(["scale".to_string(), format!("p-{i}")]))
        .collect();
    let source = StaticSource::new(list.clone());
    let mut fleet = Fleet::new(&list);
    let lanes = Lanes::start()?;
    let backends = Backends::make(o, config, store, &lanes).await?;
    start::quiesce().await;
    let base = Baseline::now();

    let cold = start::cold_start(o, config, &lanes, backends, &source, &mut fleet, line).await?;
    line.cold_start_claims = Some(lanes.claim_attempts());
    // A cold start that did not complete still gets its steady-state
    // figures (marked not complete); the events are skipped.
    let steady = steady::measure(o, &config.group, store, &lanes, &fleet, base, line).await;
    cold?;
    if fleet.leader() != Some(0) {
        return Err("leadership left the leader lane".into());
    }
    // After a steady state that lost a lease, the events start from
    // whatever the group settled on.
    let mut owners = match steady {
        Ok(owners) => owners,
        Err(_) => {
            fleet
                .settle(events::event_bound(config), HOLD, POLL)
                .await?
                .1
        }
    };
    events::crash_follower(o, config, &mut fleet, 2, &mut owners, line).await?;
    // The follower lane's worker when N = 3.
    let victim = if o.workers > 3 { 3 } else { 1 };
    events::stop_follower(o, config, &mut fleet, victim, &mut owners, line).await?;
    let backend = store.backend(o.workers, &lanes.main_counts);
    events::join(o, config, &mut fleet, backend, &source, &mut owners, line).await?;
    events::fail_over(o, config, &mut fleet, line).await?;
    say(o, "done; dropping the workers");
    for slot in fleet.live() {
        drop(fleet.take(slot));
    }
    drop(lanes);
    Ok(())
}
