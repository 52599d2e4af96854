//! The operator's view of a group, computed from what its buckets hold: a
//! pure function of a [`GroupState`] and the time it was read, so that the
//! verdict rules and the rendering are unit-tested without a server.

mod changes;
mod render;

pub use changes::changes;
pub use render::{format_age, render_status, render_update};

use parti::nats::inspect::{BucketInfo, GroupState};
use parti::records::{Lifecycle, MemberStatus};
use serde::Serialize;
use std::time::{Duration, SystemTime};

/// Fallback for the silence after which a worker counts as degraded, when
/// neither a flag, a config file nor the members bucket's TTL tells.
const DEFAULT_STALE_AFTER: Duration = Duration::from_secs(10);

/// The one-line summary of a group's health.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// A leader, every worker heartbeating and holding the committed
    /// assignment.
    Healthy,
    /// A leader and live workers, but the assignment is still moving (workers
    /// behind the committed version, workers leaving, nothing committed yet).
    Converging,
    /// Some workers stopped heartbeating (cut off from NATS, or evicted).
    Degraded,
    /// No leader key (or no worker at all): nothing is being assigned.
    Leaderless,
}

impl std::fmt::Display for Verdict {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Verdict::Healthy => "healthy",
            Verdict::Converging => "converging",
            Verdict::Degraded => "degraded",
            Verdict::Leaderless => "leaderless",
        })
    }
}

/// One worker as seen in the members bucket and the committed assignment.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct WorkerView {
    /// Worker ID.
    pub id: String,
    /// What the worker says it is doing: `active`, `stopping`, `leaving`, or
    /// `evicted` (written by the leader).
    pub state: String,
    /// Its capacity.
    pub capacity: u32,
    /// Partitions the committed assignment gives it.
    pub partitions: usize,
    /// Their total weight.
    pub weight: u64,
    /// The record version it acknowledges holding (`None`: nothing).
    pub applied: Option<u64>,
    /// The record version the committed assignment names for it (`None`:
    /// nothing).
    pub committed: Option<u64>,
    /// The highest assignment (commit) version it has seen.
    pub seen: u64,
    /// Time since its last heartbeat (server's write time, this host's clock).
    pub heartbeat_age_ms: u64,
    /// Whether it holds the leader key.
    pub leader: bool,
    /// Whether it has not applied what is committed for it.
    pub lagging: bool,
    /// Whether it is silent for longer than the stale limit, or evicted.
    pub degraded: bool,
}

/// The leader key.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct LeaderView {
    /// The leader's worker ID.
    pub worker: String,
    /// Its term.
    pub term: u64,
    /// Time since the key was last renewed.
    pub renewed_age_ms: u64,
}

/// The committed assignment.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct CommitView {
    /// The assignment version.
    pub version: u64,
    /// Term of the leader that committed it.
    pub term: u64,
    /// Why it was published (`cold_start`, `planned_scale`, …).
    pub lifecycle: String,
    /// Partitions known to the leader.
    pub partitions: u32,
    /// Partitions assigned to a worker.
    pub assigned: usize,
}

/// The group's bucket settings, as found on the server.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct BucketsView {
    /// The members bucket's TTL (the group's `worker_id_ttl`).
    pub member_ttl_ms: Option<u64>,
    /// The leader bucket's TTL (the group's `election_ttl`).
    pub leader_ttl_ms: Option<u64>,
    /// Replicas of the members bucket.
    pub replicas: Option<usize>,
    /// `memory` or `file`.
    pub storage: Option<String>,
    /// Buckets of the group that do not exist.
    pub missing: Vec<String>,
}

/// Everything `parti status` shows.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct GroupView {
    /// Group name.
    pub group: String,
    /// Health summary.
    pub verdict: Verdict,
    /// Why, in a few words.
    pub reason: String,
    /// The leader, if any.
    pub leader: Option<LeaderView>,
    /// The committed assignment, if any.
    pub committed: Option<CommitView>,
    /// Workers, by ID.
    pub workers: Vec<WorkerView>,
    /// IDs of workers behind the committed assignment.
    pub lagging: Vec<String>,
    /// IDs of degraded workers.
    pub degraded: Vec<String>,
    /// The silence after which a worker counts as degraded.
    pub stale_after_ms: u64,
    /// Bucket settings.
    pub buckets: BucketsView,
    /// Values that could not be read.
    pub problems: Vec<String>,
}

fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

fn age(now: SystemTime, then: SystemTime) -> Duration {
    now.duration_since(then).unwrap_or_default()
}

/// `lifecycle` as written in the store (`planned_scale`).
pub fn lifecycle_name(lifecycle: Lifecycle) -> String {
    serde_json::to_value(lifecycle)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_else(|| format!("{lifecycle:?}"))
}

fn status_name(status: MemberStatus) -> String {
    serde_json::to_value(status)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_else(|| format!("{status:?}"))
}

/// The silence after which a worker counts as degraded: `explicit` if given,
/// else a third of the members bucket's TTL (a group's `worker_id_ttl` is at
/// least three heartbeat intervals, so a worker silent that long has missed a
/// heartbeat), else 10 s.
pub fn stale_after(explicit: Option<Duration>, members: Option<&BucketInfo>) -> Duration {
    explicit
        .or_else(|| members.map(|b| b.max_age / 3).filter(|d| !d.is_zero()))
        .unwrap_or(DEFAULT_STALE_AFTER)
}

/// Active workers that own nothing while there are at least as many
/// partitions as active workers: a rebalance is due (a planned-scale window is
/// running). `None` when there are none.
fn idle_workers(workers: &[WorkerView], committed: Option<&CommitView>) -> Option<String> {
    let committed = committed?;
    let active = workers.iter().filter(|w| w.state == "active").count();
    if (committed.partitions as usize) < active {
        return None;
    }
    let idle: Vec<&str> = workers
        .iter()
        .filter(|w| w.state == "active" && w.partitions == 0)
        .map(|w| w.id.as_str())
        .collect();
    (!idle.is_empty()).then(|| idle.join(", "))
}

impl GroupView {
    /// The view of `state`, read at `now`; workers silent longer than
    /// `stale_after` count as degraded.
    pub fn build(group: &str, state: &GroupState, now: SystemTime, stale_after: Duration) -> Self {
        let leader_id = state.leader.as_ref().map(|l| l.record.worker.clone());
        let meta = state.meta.as_ref().map(|(m, _)| m);
        let mut workers = Vec::with_capacity(state.members.len());
        for m in &state.members {
            let committed = meta.and_then(|meta| meta.records.get(&m.id).copied());
            let record = state.records.iter().find(|r| r.worker == m.id);
            let heartbeat_age = age(now, m.written);
            let degraded = heartbeat_age > stale_after || m.record.status == MemberStatus::Evicted;
            let lagging = !degraded
                && m.record.status == MemberStatus::Active
                && meta.is_some()
                && m.record.applied != committed;
            workers.push(WorkerView {
                id: m.id.to_string(),
                state: status_name(m.record.status),
                capacity: m.record.capacity,
                partitions: record.map_or(0, |r| r.partitions.len()),
                weight: record.map_or(0, |r| r.partitions.iter().map(|p| p.partition.weight).sum()),
                applied: m.record.applied,
                committed,
                seen: m.record.seen,
                heartbeat_age_ms: ms(heartbeat_age),
                leader: leader_id.as_ref() == Some(&m.id),
                lagging,
                degraded,
            });
        }
        let lagging: Vec<String> = workers
            .iter()
            .filter(|w| w.lagging)
            .map(|w| w.id.clone())
            .collect();
        let degraded: Vec<String> = workers
            .iter()
            .filter(|w| w.degraded)
            .map(|w| w.id.clone())
            .collect();
        let leader = state.leader.as_ref().map(|l| LeaderView {
            worker: l.record.worker.to_string(),
            term: l.term,
            renewed_age_ms: ms(age(now, l.written)),
        });
        let committed = meta.map(|m| CommitView {
            version: m.version,
            term: m.term,
            lifecycle: lifecycle_name(m.lifecycle),
            partitions: m.partitions,
            assigned: state.records.iter().map(|r| r.partitions.len()).sum(),
        });
        // Workers the commit names that have no member key any more.
        let departed: Vec<String> = meta
            .map(|m| {
                m.records
                    .keys()
                    .filter(|w| !state.members.iter().any(|mem| &mem.id == *w))
                    .map(|w| w.to_string())
                    .collect()
            })
            .unwrap_or_default();
        let moving: Vec<&WorkerView> = workers
            .iter()
            .filter(|w| w.state == "stopping" || w.state == "leaving")
            .collect();
        let (verdict, reason) = if workers.is_empty() {
            (Verdict::Leaderless, "no worker is running".to_string())
        } else if leader.is_none() {
            (
                Verdict::Leaderless,
                "no leader: an election is due or under way".to_string(),
            )
        } else if !degraded.is_empty() {
            (
                Verdict::Degraded,
                format!(
                    "silent for more than {}: {}",
                    format_age(ms(stale_after)),
                    degraded.join(", ")
                ),
            )
        } else if committed.is_none() {
            (
                Verdict::Converging,
                "no assignment committed yet (cold start)".to_string(),
            )
        } else if !lagging.is_empty() {
            (
                Verdict::Converging,
                format!(
                    "not yet on the committed assignment: {}",
                    lagging.join(", ")
                ),
            )
        } else if !moving.is_empty() {
            let ids: Vec<&str> = moving.iter().map(|w| w.id.as_str()).collect();
            (
                Verdict::Converging,
                format!("stopping or leaving: {}", ids.join(", ")),
            )
        } else if let Some(idle) = idle_workers(&workers, committed.as_ref()) {
            (
                Verdict::Converging,
                format!("waiting for a rebalance: {idle} own nothing yet"),
            )
        } else if !departed.is_empty() {
            (
                Verdict::Converging,
                format!(
                    "the assignment still names departed workers: {}",
                    departed.join(", ")
                ),
            )
        } else {
            (
                Verdict::Healthy,
                format!(
                    "{} workers on assignment v{}",
                    workers.len(),
                    committed.as_ref().map_or(0, |c| c.version)
                ),
            )
        };
        let missing = [
            (&state.members_bucket, &state.names.members),
            (&state.leader_bucket, &state.names.leader),
            (&state.assignments_bucket, &state.names.assignments),
        ]
        .into_iter()
        .filter(|(info, _)| info.is_none())
        .map(|(_, name)| name.clone())
        .collect();
        GroupView {
            group: group.to_string(),
            verdict,
            reason,
            leader,
            committed,
            workers,
            lagging,
            degraded,
            stale_after_ms: ms(stale_after),
            buckets: BucketsView {
                member_ttl_ms: state.members_bucket.as_ref().map(|b| ms(b.max_age)),
                leader_ttl_ms: state.leader_bucket.as_ref().map(|b| ms(b.max_age)),
                replicas: state.members_bucket.as_ref().map(|b| b.replicas),
                storage: state
                    .members_bucket
                    .as_ref()
                    .map(|b| if b.memory { "memory" } else { "file" }.to_string()),
                missing,
            },
            problems: state.problems.clone(),
        }
    }
}

#[cfg(test)]
pub(crate) mod tests;
