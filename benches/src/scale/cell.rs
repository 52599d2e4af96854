//! One cell of the scale report: N workers on one backend, through a cold
//! start, a steady-state interval, the crash of a follower, the graceful
//! stop of another, a join and the crash of the leader.

use super::counting::{Counters, Counts};
use super::fleet::{Fleet, Place, moved};
use super::lane::Lane;
use super::line::Line;
use super::procstat;
use super::store::{Store, Which};
use parti::{Backend, Config, Manager, Partition, StaticSource};
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

/// IDs beyond N in the range: room for the join while the crashed worker's
/// ID is still reserved.
const SPARE_IDS: u32 = 10;
/// The assignment must stay complete this long to count as settled.
const HOLD: Duration = Duration::from_millis(500);
/// How often the fleet is looked at while waiting.
const POLL: Duration = Duration::from_millis(20);

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
/// timings), with the
/// shortened windows, an ID range sized to N, and a start-up bound long
/// enough for N claims on a shared machine.
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

fn secs(d: Duration) -> f64 {
    d.as_secs_f64()
}

/// Counters of the three lanes of a cell.
struct Lanes {
    leader: Lane,
    follower: Lane,
    leader_counts: Arc<Counters>,
    follower_counts: Arc<Counters>,
    main_counts: Arc<Counters>,
}

impl Lanes {
    fn counts(&self) -> (Counts, Counts, Counts) {
        (
            self.leader_counts.snapshot(),
            self.follower_counts.snapshot(),
            self.main_counts.snapshot(),
        )
    }
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

fn say(o: &CellOptions, text: &str) {
    eprintln!("[{} N={}] {text}", o.which.name(), o.workers);
}

async fn start_on_lane(
    lane: &Lane,
    backend: Arc<dyn Backend>,
    config: Config,
    source: StaticSource,
    instance: u64,
) -> tokio::task::JoinHandle<(Result<Manager, parti::Error>, Instant)> {
    let builder = Manager::builder(backend)
        .config(config)
        .partitions(source)
        .instance_id(instance);
    lane.spawn(async move {
        let r = builder.start().await;
        (r, Instant::now())
    })
}

fn start_on_main(
    backend: Arc<dyn Backend>,
    config: Config,
    source: StaticSource,
    instance: u64,
) -> tokio::task::JoinHandle<(Result<Manager, parti::Error>, Instant)> {
    let builder = Manager::builder(backend)
        .config(config)
        .partitions(source)
        .instance_id(instance);
    tokio::spawn(async move {
        let r = builder.start().await;
        (r, Instant::now())
    })
}

/// Waits (up to 5 s) until the live heap stops shrinking: the tasks of the
/// previous cell's managers are aborted, and freed when the runtime gets to
/// them, which must not count against this cell's baseline.
async fn quiesce() {
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

fn with_id(config: &Config, id: u32) -> Config {
    let mut c = config.clone();
    c.preferred_worker_id = Some(id);
    c
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
    let lanes = Lanes {
        leader: Lane::start("scale-leader").map_err(|e| format!("leader lane: {e}"))?,
        follower: Lane::start("scale-follower").map_err(|e| format!("follower lane: {e}"))?,
        leader_counts: Arc::default(),
        follower_counts: Arc::default(),
        main_counts: Arc::default(),
    };
    // Buckets (NATS) and the in-memory sweeper are set up from the main
    // runtime, before the clock starts.
    let main_backends: Vec<Arc<dyn Backend>> = (0..o.workers)
        .map(|i| store.backend(i, &lanes.main_counts))
        .collect();
    main_backends[0]
        .ensure_ready()
        .await
        .map_err(|e| format!("preparing the store: {e}"))?;
    let leader_backend = store
        .lane_backend(&lanes.leader, config, &lanes.leader_counts)
        .await?;
    let follower_backend = store
        .lane_backend(&lanes.follower, config, &lanes.follower_counts)
        .await?;
    quiesce().await;
    let rss0 = procstat::rss_bytes();
    let heap0 = crate::alloc::installed().then(crate::alloc::live_bytes);

    // Cold start: the designated leader first, alone until it won the
    // election, then everyone else at once.
    say(o, "starting the leader");
    let mut starts = vec![(
        Place::LeaderLane,
        start_on_lane(
            &lanes.leader,
            leader_backend,
            with_id(config, 0),
            source.clone(),
            1,
        )
        .await,
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
            follower_backend,
            with_id(config, 1),
            source.clone(),
            2,
        )
        .await,
    ));
    let batch = if o.start_batch == 0 {
        usize::MAX
    } else {
        o.start_batch
    };
    for (i, backend) in main_backends.into_iter().enumerate().skip(2) {
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
    // A cold start that does not complete still gets its steady-state
    // figures (marked not complete); the events after it are skipped.
    let mut failure = None;
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
        }
        Err(e) => {
            say(
                o,
                &format!("cold start: {e}; measuring the steady state anyway"),
            );
            failure = Some(format!("cold start {e}"));
        }
    }

    // Steady state.
    tokio::time::sleep(o.warmup).await;
    let group = config.group.clone();
    let server0 = store.server_reading(&group);
    let (l0, f0, m0) = lanes.counts();
    let cpu0 = procstat::process_cpu();
    let lcpu0 = lanes.leader.tid().and_then(procstat::thread_cpu);
    let fcpu0 = lanes.follower.tid().and_then(procstat::thread_cpu);
    let t0 = Instant::now();
    tokio::time::sleep(o.steady).await;
    let wall = t0.elapsed();
    let (l1, f1, m1) = lanes.counts();
    let cpu1 = procstat::process_cpu();
    let lcpu1 = lanes.leader.tid().and_then(procstat::thread_cpu);
    let fcpu1 = lanes.follower.tid().and_then(procstat::thread_cpu);
    let server1 = store.server_reading(&group);
    let rate = |n: u64| n as f64 / wall.as_secs_f64();
    let all = l1.since(&l0).plus(&f1.since(&f0)).plus(&m1.since(&m0));
    line.kv_ops_per_s = Some(rate(all.ops()));
    line.kv_writes_per_s = Some(rate(all.writes));
    line.watch_events_per_s = Some(rate(all.watch_events));
    let delta = |a: Option<u64>, b: Option<u64>| Some(rate(b?.saturating_sub(a?)));
    line.server_writes_per_s = delta(server0.stream_writes, server1.stream_writes);
    line.server_msgs_out_per_s = delta(server0.msgs_out, server1.msgs_out);
    let pct = |a: Option<Duration>, b: Option<Duration>| {
        Some(procstat::percent(b?.saturating_sub(a?), wall))
    };
    line.process_cpu_pct = pct(cpu0, cpu1);
    line.leader_cpu_pct = pct(lcpu0, lcpu1);
    line.follower_cpu_pct = pct(fcpu0, fcpu1);
    line.other_worker_cpu_pct = match (
        line.process_cpu_pct,
        line.leader_cpu_pct,
        line.follower_cpu_pct,
    ) {
        (Some(p), Some(l), Some(f)) => Some((p - l - f).max(0.0) / (o.workers - 2) as f64),
        _ => None,
    };
    line.server_cpu_pct = pct(server0.cpu, server1.cpu);
    let per_worker_kib =
        |a: Option<i64>, b: Option<i64>| Some((b? - a?) as f64 / 1024.0 / o.workers as f64);
    line.rss_per_worker_kib = per_worker_kib(
        rss0.map(|r| r as i64),
        procstat::rss_bytes().map(|r| r as i64),
    );
    line.heap_per_worker_kib = per_worker_kib(
        heap0,
        crate::alloc::installed().then(crate::alloc::live_bytes),
    );
    let steady_ok = fleet.complete();
    line.steady_complete = Some(steady_ok.is_ok());
    if fleet.leader() != Some(0) {
        // Leadership moved off the leader lane: its thread is not the
        // leader's any more.
        line.leader_cpu_pct = None;
        failure.get_or_insert_with(|| "leadership left the leader lane".into());
    }
    if let Some(e) = failure {
        return Err(e);
    }
    say(
        o,
        &format!(
            "steady: {:.0} KV ops/s, {:.0} watch events/s, process CPU {:.1} %{}",
            rate(all.ops()),
            rate(all.watch_events),
            line.process_cpu_pct.unwrap_or(0.0),
            steady_ok
                .as_ref()
                .err()
                .map_or(String::new(), |e| format!(" (NOT complete: {e})"))
        ),
    );
    let events = config.heartbeat_ttl * 3 + config.planned_scale_window + Duration::from_secs(60);
    // After a steady state that lost a lease, the events below start from
    // whatever the group settled on.
    let mut owners = match steady_ok {
        Ok(owners) => owners,
        Err(_) => fleet.settle(events, HOLD, POLL).await?.1,
    };

    // Crash of a follower of the main runtime.
    let victim = 2;
    let parts = fleet.owned_by(victim);
    say(
        o,
        &format!("crashing a follower ({} partitions)", parts.len()),
    );
    let t = Instant::now();
    drop(fleet.take(victim));
    let reowned = fleet
        .wait_for(
            events,
            POLL,
            "crashed follower's partitions re-owned",
            |f| f.all_owned(&parts),
        )
        .await?;
    line.crash_reowned_s = Some(secs(reowned - t));
    let (_, after) = fleet.settle(events, HOLD, POLL).await?;
    line.crash_moved = Some(moved(&owners, &after));
    line.crash_optimal = Some(parts.len());
    owners = after;

    // Graceful stop of another follower (the follower lane's when N = 3).
    let victim = if o.workers > 3 { 3 } else { 1 };
    let parts = fleet.owned_by(victim);
    say(
        o,
        &format!(
            "stopping a follower gracefully ({} partitions)",
            parts.len()
        ),
    );
    let t = Instant::now();
    if let Some(m) = fleet.take(victim) {
        m.stop().await.map_err(|e| format!("graceful stop: {e}"))?;
    }
    let reowned = fleet
        .wait_for(
            events,
            POLL,
            "stopped follower's partitions re-owned",
            |f| f.all_owned(&parts),
        )
        .await?;
    line.stop_reowned_s = Some(secs(reowned - t));
    let (_, after) = fleet.settle(events, HOLD, POLL).await?;
    line.stop_moved = Some(moved(&owners, &after));
    line.stop_optimal = Some(parts.len());
    owners = after;

    // A join.
    say(o, "one worker joins");
    let t = Instant::now();
    let backend = store.backend(o.workers, &lanes.main_counts);
    let (result, _) = start_on_main(
        backend,
        with_id(config, o.workers as u32),
        source.clone(),
        o.workers as u64 + 1,
    )
    .await
    .map_err(|e| format!("join task: {e}"))?;
    let manager = result.map_err(|e| format!("join: {e}"))?;
    fleet.push(manager, Place::Main);
    let (done, after) = fleet.settle(events, HOLD, POLL).await?;
    line.join_s = Some(secs(done - t));
    // The joiner's slot is new: what it took counts as moved.
    line.join_moved = Some(moved(&owners, &after));
    line.join_optimal = Some(o.partitions / fleet.live().len());

    // Crash of the leader.
    let leader = fleet
        .leader()
        .ok_or("no single leader before the failover")?;
    say(o, "crashing the leader");
    let t = Instant::now();
    drop(fleet.take(leader));
    let led = fleet
        .wait_for(events, POLL, "a new leader", |f| f.leader().is_some())
        .await?;
    line.failover_s = Some(secs(led - t));
    let (done, _) = fleet.settle(events, HOLD, POLL).await?;
    line.failover_complete_s = Some(secs(done - t));
    say(o, "done; dropping the workers");
    for slot in fleet.live() {
        drop(fleet.take(slot));
    }
    drop(lanes);
    Ok(())
}
