//! The differences between two views of a group that an operator watches
//! for: joins, leaves, state changes, leadership changes, rebalances,
//! workers becoming degraded or lagging, and the verdict.

use super::GroupView;
use std::fmt;

/// One noteworthy difference between two views.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Change {
    /// The verdict changed.
    Verdict {
        /// Before.
        from: String,
        /// After.
        to: String,
        /// The new reason.
        reason: String,
    },
    /// A worker appeared.
    Joined(String),
    /// A worker's key went away.
    Left(String),
    /// A worker's state changed.
    State {
        /// Worker.
        worker: String,
        /// Before.
        from: String,
        /// After.
        to: String,
    },
    /// The leader changed (or appeared, or went away).
    Leadership {
        /// Before: worker and term.
        from: Option<(String, u64)>,
        /// After.
        to: Option<(String, u64)>,
    },
    /// A new assignment was committed.
    Rebalance {
        /// Previous version.
        from: Option<u64>,
        /// New version.
        to: u64,
        /// Why.
        lifecycle: String,
        /// Workers whose partition count changed: (worker, before, after).
        moves: Vec<(String, usize, usize)>,
    },
    /// A worker became degraded.
    Degraded(String),
    /// A degraded worker heartbeats again.
    Recovered(String),
}

impl fmt::Display for Change {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let who = |l: &Option<(String, u64)>| match l {
            Some((w, t)) => format!("{w} (term {t})"),
            None => "nobody".to_string(),
        };
        match self {
            Change::Verdict { from, to, reason } => write!(f, "verdict {from} -> {to} ({reason})"),
            Change::Joined(w) => write!(f, "{w} joined"),
            Change::Left(w) => write!(f, "{w} left"),
            Change::State { worker, from, to } => write!(f, "{worker}: {from} -> {to}"),
            Change::Leadership { from, to } => {
                write!(f, "leadership: {} -> {}", who(from), who(to))
            }
            Change::Rebalance {
                from,
                to,
                lifecycle,
                moves,
            } => {
                match from {
                    Some(v) => write!(f, "rebalance v{v} -> v{to} ({lifecycle})")?,
                    None => write!(f, "first assignment v{to} ({lifecycle})")?,
                }
                let moves: Vec<String> = moves
                    .iter()
                    .map(|(w, a, b)| format!("{w} {a}->{b}"))
                    .collect();
                if !moves.is_empty() {
                    write!(f, ": {}", moves.join(", "))?;
                }
                Ok(())
            }
            Change::Degraded(w) => write!(f, "{w} is silent (degraded)"),
            Change::Recovered(w) => write!(f, "{w} heartbeats again"),
        }
    }
}

/// What changed from `prev` to `next`, in a stable order (verdict,
/// leadership, members, rebalance, degradation). Heartbeat ages alone are no
/// change.
pub fn changes(prev: &GroupView, next: &GroupView) -> Vec<Change> {
    let mut out = Vec::new();
    if prev.verdict != next.verdict {
        out.push(Change::Verdict {
            from: prev.verdict.to_string(),
            to: next.verdict.to_string(),
            reason: next.reason.clone(),
        });
    }
    let leader = |v: &GroupView| v.leader.as_ref().map(|l| (l.worker.clone(), l.term));
    if leader(prev) != leader(next) {
        out.push(Change::Leadership {
            from: leader(prev),
            to: leader(next),
        });
    }
    for w in &next.workers {
        match prev.workers.iter().find(|p| p.id == w.id) {
            None => out.push(Change::Joined(w.id.clone())),
            Some(p) if p.state != w.state => out.push(Change::State {
                worker: w.id.clone(),
                from: p.state.clone(),
                to: w.state.clone(),
            }),
            Some(_) => {}
        }
    }
    for p in &prev.workers {
        if !next.workers.iter().any(|w| w.id == p.id) {
            out.push(Change::Left(p.id.clone()));
        }
    }
    let version = |v: &GroupView| v.committed.as_ref().map(|c| c.version);
    if let Some(c) = &next.committed
        && version(prev) != Some(c.version)
    {
        let count = |v: &GroupView, id: &str| {
            v.workers
                .iter()
                .find(|w| w.id == id)
                .map_or(0, |w| w.partitions)
        };
        let mut ids: Vec<&str> = prev
            .workers
            .iter()
            .chain(next.workers.iter())
            .map(|w| w.id.as_str())
            .collect();
        ids.sort_unstable();
        ids.dedup();
        let moves = ids
            .into_iter()
            .map(|id| (id.to_string(), count(prev, id), count(next, id)))
            .filter(|(_, a, b)| a != b)
            .collect();
        out.push(Change::Rebalance {
            from: version(prev),
            to: c.version,
            lifecycle: c.lifecycle.clone(),
            moves,
        });
    }
    for w in &next.workers {
        let was = prev
            .workers
            .iter()
            .find(|p| p.id == w.id)
            .map(|p| p.degraded);
        match (was, w.degraded) {
            (Some(false) | None, true) => out.push(Change::Degraded(w.id.clone())),
            (Some(true), false) => out.push(Change::Recovered(w.id.clone())),
            _ => {}
        }
    }
    out
}
