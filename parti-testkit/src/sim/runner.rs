//! Running many seeds and summarising them.

use super::world::{SimConfig, SimReport, Simulator};
use parti_core::AssignmentStrategy;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// The outcome of many seeds.
#[derive(Clone, Debug, Default)]
pub struct Summary {
    /// Seeds run.
    pub seeds: u64,
    /// Seeds with at least one violation.
    pub failing_seeds: Vec<u64>,
    /// Total violations.
    pub violations: u64,
    /// Reports of failing seeds (at most a few are kept).
    pub failures: Vec<SimReport>,
    /// Convergence times, ms, one per seed that converged.
    pub convergence_ms: Vec<u64>,
    /// Partition moves over all seeds.
    pub moved_total: u64,
    /// Simulator steps over all seeds.
    pub steps: u64,
    /// Longest tolerated overlap (KeepProcessing, cut-off worker), ms.
    pub tolerated_overlap_ms: u64,
    /// One line per seed ([`SimReport::outcome_line`]), sorted by seed.
    pub outcomes: Vec<(u64, String)>,
    /// ID claims sent over all seeds ([`SimReport::claims`]).
    pub claims_total: u64,
    /// Of which before each seed's first commit.
    pub cold_start_claims_total: u64,
    /// The most claims one seed sent.
    pub max_claims: u64,
    /// Watches of every member opened to claim an ID, over all seeds.
    pub claim_watches_total: u64,
    /// Member records delivered before each seed's first commit, over all
    /// seeds.
    pub cold_start_member_items_total: u64,
    /// The highest ID index held at the end of any seed.
    pub max_id_at_end: Option<u32>,
}

impl Summary {
    /// The largest convergence time.
    pub fn max_convergence_ms(&self) -> u64 {
        self.convergence_ms.iter().copied().max().unwrap_or(0)
    }

    /// The 99th percentile of convergence times.
    pub fn p99_convergence_ms(&self) -> u64 {
        if self.convergence_ms.is_empty() {
            return 0;
        }
        let mut v = self.convergence_ms.clone();
        v.sort_unstable();
        let idx = ((v.len() as f64) * 0.99).ceil() as usize;
        v[idx.saturating_sub(1).min(v.len() - 1)]
    }

    /// The one-line summary the command line prints.
    pub fn line(&self) -> String {
        format!(
            "seeds={} violations={} max_convergence_ms={} p99_convergence_ms={} moved_total={} claims_total={} cold_start_claims_total={} max_claims={} max_id_at_end={} claim_watches_total={} cold_start_member_items_total={}",
            self.seeds,
            self.violations,
            self.max_convergence_ms(),
            self.p99_convergence_ms(),
            self.moved_total,
            self.claims_total,
            self.cold_start_claims_total,
            self.max_claims,
            self.max_id_at_end
                .map_or_else(|| "none".to_string(), |i| i.to_string()),
            self.claim_watches_total,
            self.cold_start_member_items_total
        )
    }

    /// Adds the claim counters of `other`.
    fn merge_claims(&mut self, other: &Summary) {
        self.claims_total += other.claims_total;
        self.cold_start_claims_total += other.cold_start_claims_total;
        self.max_claims = self.max_claims.max(other.max_claims);
        self.claim_watches_total += other.claim_watches_total;
        self.cold_start_member_items_total += other.cold_start_member_items_total;
        self.max_id_at_end = self.max_id_at_end.max(other.max_id_at_end);
    }

    fn absorb(&mut self, report: SimReport) {
        self.outcomes.push((report.seed, report.outcome_line()));
        self.seeds += 1;
        self.moved_total += report.moved;
        self.steps += report.steps;
        self.merge_claims(&Summary {
            claims_total: report.claims,
            cold_start_claims_total: report.cold_start_claims,
            max_claims: report.claims,
            max_id_at_end: report.ids_at_end.last().copied(),
            claim_watches_total: report.claim_watches,
            cold_start_member_items_total: report.cold_start_member_items,
            ..Summary::default()
        });
        self.tolerated_overlap_ms = self.tolerated_overlap_ms.max(report.tolerated_overlap_ms);
        if let Some(c) = report.convergence_ms {
            self.convergence_ms.push(c);
        }
        if !report.violations.is_empty() {
            self.violations += report.violations.len() as u64;
            self.failing_seeds.push(report.seed);
            if self.failures.len() < 3 {
                self.failures.push(report);
            }
        }
    }
}

/// Runs seeds `first..first + count` of `base` (its seed is replaced) on
/// `threads` threads. With `stop_at_first`, stops soon after a violation.
pub fn run_seeds(
    base: &SimConfig,
    first: u64,
    count: u64,
    strategy: Arc<dyn AssignmentStrategy>,
    threads: usize,
    stop_at_first: bool,
) -> Summary {
    let next = AtomicU64::new(first);
    let stop = std::sync::atomic::AtomicBool::new(false);
    let end = first + count;
    let results: Vec<Summary> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads.max(1))
            .map(|_| {
                scope.spawn(|| {
                    let mut summary = Summary::default();
                    loop {
                        if stop.load(Ordering::Relaxed) {
                            break;
                        }
                        let seed = next.fetch_add(1, Ordering::Relaxed);
                        if seed >= end {
                            break;
                        }
                        let mut cfg = base.clone();
                        cfg.seed = seed;
                        let report = Simulator::new(cfg, strategy.clone()).run();
                        if stop_at_first && !report.violations.is_empty() {
                            stop.store(true, Ordering::Relaxed);
                        }
                        summary.absorb(report);
                    }
                    summary
                })
            })
            .collect();
        handles.into_iter().filter_map(|h| h.join().ok()).collect()
    });
    let mut total = Summary::default();
    for s in results {
        total.merge_claims(&s);
        total.seeds += s.seeds;
        total.violations += s.violations;
        total.failing_seeds.extend(s.failing_seeds);
        total.failures.extend(s.failures);
        total.convergence_ms.extend(s.convergence_ms);
        total.moved_total += s.moved_total;
        total.steps += s.steps;
        total.tolerated_overlap_ms = total.tolerated_overlap_ms.max(s.tolerated_overlap_ms);
        total.outcomes.extend(s.outcomes);
    }
    total.outcomes.sort_unstable();
    total.failing_seeds.sort_unstable();
    total.failures.sort_by_key(|r| r.seed);
    total
}
