//! One line of the scale report (one backend × one worker count), as JSON
//! and as a Markdown table row.

use serde::{Deserialize, Serialize};

/// The measures of one backend at one worker count. `None` (JSON `null`)
/// when a figure could not be taken (e.g. the server's CPU for a server
/// given by URL) or when a step did not complete; `error` then says why.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Line {
    /// `memory` or `nats`.
    pub backend: String,
    /// Workers started (N).
    pub workers: usize,
    /// Partitions (P).
    pub partitions: usize,
    /// The cold-start window used, in seconds.
    pub cold_start_window_s: f64,
    /// From the last worker's start to a complete assignment, in seconds.
    pub converge_s: Option<f64>,
    /// Of which beyond the end of the cold-start window (counted from the
    /// leader's election, where the window starts).
    pub beyond_window_s: Option<f64>,
    /// Whether the assignment was still complete after the steady interval
    /// (no worker lost its lease meanwhile).
    pub steady_complete: Option<bool>,
    /// Store operations (`Backend::perform` calls, each staged record
    /// counted) per second in steady state, all workers.
    pub kv_ops_per_s: Option<f64>,
    /// Of which writes.
    pub kv_writes_per_s: Option<f64>,
    /// Events the workers' watches delivered per second in steady state.
    pub watch_events_per_s: Option<f64>,
    /// NATS: writes the server stored per second (sum of the KV streams'
    /// sequence growth, from `/jsz`).
    pub server_writes_per_s: Option<f64>,
    /// NATS: messages the server sent to clients per second (`/varz`).
    pub server_msgs_out_per_s: Option<f64>,
    /// CPU of this whole process in steady state, % of one core.
    pub process_cpu_pct: Option<f64>,
    /// CPU of the leader's thread (its driver and, on NATS, its connection).
    pub leader_cpu_pct: Option<f64>,
    /// CPU of the designated follower's thread.
    pub follower_cpu_pct: Option<f64>,
    /// (process − both lanes) / (N − 2): the other workers, each, sharing
    /// the main runtime and its connections.
    pub other_worker_cpu_pct: Option<f64>,
    /// CPU of the nats-server process (a server the report started).
    pub server_cpu_pct: Option<f64>,
    /// Growth of the process's resident set over the baseline, per worker, KiB.
    pub rss_per_worker_kib: Option<f64>,
    /// Growth of live heap bytes (counting allocator), per worker, KiB.
    pub heap_per_worker_kib: Option<f64>,
    /// Crash of a follower: until its partitions were shown by others, s.
    pub crash_reowned_s: Option<f64>,
    /// Partitions that changed owner for the crash.
    pub crash_moved: Option<usize>,
    /// The crashed worker's partitions.
    pub crash_optimal: Option<usize>,
    /// Graceful stop of a follower: until its partitions were shown by
    /// others (the planned-scale window included), s.
    pub stop_reowned_s: Option<f64>,
    /// Partitions that changed owner for the stop.
    pub stop_moved: Option<usize>,
    /// The stopped worker's partitions.
    pub stop_optimal: Option<usize>,
    /// A join: from its start to a complete assignment including it, s.
    pub join_s: Option<f64>,
    /// Partitions that changed owner for the join.
    pub join_moved: Option<usize>,
    /// ⌊P / workers after the join⌋.
    pub join_optimal: Option<usize>,
    /// Crash of the leader: until another worker leads, s.
    pub failover_s: Option<f64>,
    /// Crash of the leader: until the assignment is complete again, s.
    pub failover_complete_s: Option<f64>,
    /// NATS: the server's `slow_consumers` count at the end of the cell
    /// (clients of this process that could not keep up with what it sent).
    #[serde(default)]
    pub server_slow_consumers: Option<u64>,
    /// ID claims (creates of member keys, won or not) the workers sent up
    /// to the end of the cold start (JSON only).
    #[serde(default)]
    pub cold_start_claims: Option<u64>,
    /// Wall time of the whole cell, s.
    pub cell_s: f64,
    /// Why a step did not complete, if one did not.
    pub error: Option<String>,
}

/// The Markdown table header matching [`Line::row`].
pub fn header() -> String {
    [
        "| backend | N | P | converge s (beyond window) | steady complete | KV ops/s (writes) | watch events/s | server writes/s, msgs out/s, slow consumers | CPU % process / leader / follower / other each / server | RSS, heap KiB per worker | crash re-owned s, moved/optimal | stop re-owned s, moved/optimal | join s, moved/optimal | failover s (complete s) | error |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    .join("\n")
}

fn f(v: Option<f64>, digits: usize) -> String {
    v.map_or_else(|| "-".into(), |v| format!("{v:.digits$}"))
}

fn u(v: Option<usize>) -> String {
    v.map_or_else(|| "-".into(), |v| v.to_string())
}

impl Line {
    /// One Markdown table row.
    pub fn row(&self) -> String {
        format!(
            "| {} | {} | {} | {} ({}) | {} | {} ({}) | {} | {}, {}, {} | {} / {} / {} / {} / {} | {}, {} | {}, {}/{} | {}, {}/{} | {}, {}/{} | {} ({}) | {} |",
            self.backend,
            self.workers,
            self.partitions,
            f(self.converge_s, 2),
            f(self.beyond_window_s, 2),
            self.steady_complete
                .map_or("-", |b| if b { "yes" } else { "NO" }),
            f(self.kv_ops_per_s, 1),
            f(self.kv_writes_per_s, 1),
            f(self.watch_events_per_s, 0),
            f(self.server_writes_per_s, 1),
            f(self.server_msgs_out_per_s, 0),
            self.server_slow_consumers
                .map_or_else(|| "-".into(), |n| n.to_string()),
            f(self.process_cpu_pct, 1),
            f(self.leader_cpu_pct, 2),
            f(self.follower_cpu_pct, 2),
            f(self.other_worker_cpu_pct, 3),
            f(self.server_cpu_pct, 1),
            f(self.rss_per_worker_kib, 0),
            f(self.heap_per_worker_kib, 0),
            f(self.crash_reowned_s, 2),
            u(self.crash_moved),
            u(self.crash_optimal),
            f(self.stop_reowned_s, 2),
            u(self.stop_moved),
            u(self.stop_optimal),
            f(self.join_s, 2),
            u(self.join_moved),
            u(self.join_optimal),
            f(self.failover_s, 2),
            f(self.failover_complete_s, 2),
            self.error.as_deref().unwrap_or(""),
        )
    }
}
