//! The end of a run: the convergence check (S4), the transition table, and
//! the report; plus the one-line rendering of commands for traces.

use super::Simulator;
use super::config::SimReport;
use crate::sim::checks::{Guarantee, Violation};
use parti_core::Command;
use std::fmt::Write as _;

impl Simulator {
    pub(super) fn finish_at_violation(self) -> SimReport {
        let mut report = self.report;
        report.trace = self.trace.into_iter().collect();
        report
    }

    pub(super) fn finish(mut self) -> SimReport {
        // S4: every partition owned by exactly one live worker within the bound.
        let bound = self.cfg.convergence_bound_ms();
        match self.ownership.complete_since {
            Some(since) => {
                // Counted from the start of the quiet period, or from the end
                // of a store outage that lasted into it and the reconnects
                // after it (nothing can converge while nobody reaches the
                // store).
                let reachable = self.outage_until + self.cfg.reconnect_lag_ms;
                let conv = since.saturating_sub(self.quiet_from.max(reachable));
                self.report.convergence_ms = Some(conv);
                if conv > bound {
                    self.violations.push(Violation {
                        guarantee: Guarantee::S4,
                        at: self.now,
                        detail: format!(
                            "converged {conv} ms after the last fault (bound {bound} ms)"
                        ),
                    });
                }
            }
            None => {
                let mut detail = format!(
                    "{} of {} partitions not owned by exactly one live worker at the end",
                    self.ownership.bad(),
                    self.partitions.len()
                );
                let alive = self.procs.iter().filter(|p| p.alive).count();
                let _ = write!(detail, " ({alive} live processes)");
                for p in self.procs.iter().filter(|p| p.alive) {
                    let _ = write!(
                        detail,
                        "\n    {} state {} leader {} owns {} version {} cut {} paused {}",
                        p.label,
                        p.worker.state(),
                        p.worker.is_leader(),
                        p.held.len(),
                        p.worker.assignment_version(),
                        p.cut(self.now),
                        p.paused()
                    );
                }
                let mut shown = 0;
                for part in &self.partitions {
                    let id = part.id();
                    let holders = self.ownership.holders(&id);
                    if holders.len() != 1 && shown < 5 {
                        shown += 1;
                        let names: Vec<&str> = holders
                            .iter()
                            .map(|h| self.procs[*h].label.as_str())
                            .collect();
                        let _ = write!(detail, "\n    {part} held by [{}]", names.join(", "));
                    }
                }
                self.violations.push(Violation {
                    guarantee: Guarantee::S4,
                    at: self.now,
                    detail,
                });
            }
        }
        for p in &self.procs {
            for (from, to) in p.worker.invalid_transitions() {
                let detail = format!("{}: invalid transition {from} -> {to}", p.label);
                if !self.violations.iter().any(|v| v.detail == detail) {
                    self.violations.push(Violation {
                        guarantee: Guarantee::Transitions,
                        at: self.now,
                        detail,
                    });
                }
            }
        }
        let prefix = &self.cfg.config.worker_id_prefix;
        let mut ids: Vec<u32> = self
            .procs
            .iter()
            .filter(|p| p.alive)
            .filter_map(|p| p.worker.worker_id().and_then(|w| w.index(prefix)))
            .collect();
        ids.sort_unstable();
        self.report.ids_at_end = ids;
        self.report.violations = self.violations;
        self.report.commits = self.commits.count;
        self.report.trace = self.trace.into_iter().collect();
        self.report
    }
}

pub(super) fn short(c: &Command) -> String {
    match c {
        Command::Publish {
            meta,
            records,
            expected,
            ..
        } => {
            format!(
                "Publish v{} term {} ({} records staged, expected {:?})",
                meta.version,
                meta.term,
                records.len(),
                expected
            )
        }
        Command::ClaimId {
            op,
            id,
            record,
            takeover,
        } => format!(
            "ClaimId {op:?} {id} instance {:?} seen {} takeover {takeover:?}",
            record.instance, record.seen
        ),
        Command::Notify(n) => format!("{n:?}"),
        other => {
            let mut s = format!("{other:?}");
            s.truncate(160);
            s
        }
    }
}
