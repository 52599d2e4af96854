//! The steady-state interval of a cell: store operations and watch events
//! counted in process, the server's own figures, CPU from `/proc`, memory
//! growth per worker.

use super::cell::CellOptions;
use super::fleet::Fleet;
use super::line::Line;
use super::procstat;
use super::start::Lanes;
use super::store::Store;
use std::time::Duration;
use tokio::time::Instant;

/// Memory readings taken before the first start.
#[derive(Clone, Copy, Debug)]
pub struct Baseline {
    /// Resident set size, bytes.
    pub rss: Option<u64>,
    /// Live heap bytes (counting allocator).
    pub heap: Option<i64>,
}

impl Baseline {
    /// Reads both now.
    pub fn now() -> Baseline {
        Baseline {
            rss: procstat::rss_bytes(),
            heap: crate::alloc::installed().then(crate::alloc::live_bytes),
        }
    }
}

/// Waits `o.warmup`, measures over `o.steady`, fills the steady-state
/// columns of `line`; returns the owners if the assignment was still
/// complete at the end, else why not.
pub async fn measure(
    o: &CellOptions,
    group: &str,
    store: &Store,
    lanes: &Lanes,
    fleet: &Fleet,
    base: Baseline,
    line: &mut Line,
) -> Result<Vec<usize>, String> {
    tokio::time::sleep(o.warmup).await;
    let server0 = store.server_reading(group);
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
    let server1 = store.server_reading(group);

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

    let end = Baseline::now();
    let per_worker_kib =
        |a: Option<i64>, b: Option<i64>| Some((b? - a?) as f64 / 1024.0 / o.workers as f64);
    line.rss_per_worker_kib = per_worker_kib(base.rss.map(|r| r as i64), end.rss.map(|r| r as i64));
    line.heap_per_worker_kib = per_worker_kib(base.heap, end.heap);

    let complete = fleet.complete();
    line.steady_complete = Some(complete.is_ok());
    if fleet.leader() != Some(0) {
        // Leadership moved off the leader lane: its thread is not the
        // leader's any more.
        line.leader_cpu_pct = None;
    }
    super::cell::say(
        o,
        &format!(
            "steady: {:.0} KV ops/s, {:.0} watch events/s, process CPU {:.1} %{}",
            rate(all.ops()),
            rate(all.watch_events),
            line.process_cpu_pct.unwrap_or(0.0),
            complete
                .as_ref()
                .err()
                .map_or(String::new(), |e| format!(" (NOT complete: {e})"))
        ),
    );
    complete
}
