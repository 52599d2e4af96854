//! The one-line summary of a soak.

use super::checker::{Verdict, secs};
use super::events::{FaultKind, Micros};
use std::collections::BTreeMap;

/// The `q`-quantile (nearest rank) of sorted values.
fn quantile(sorted: &[Micros], q: f64) -> Micros {
    if sorted.is_empty() {
        return 0;
    }
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

/// `soak: PASS 10 min seed 42: 37 faults (kill 8, …), re-own p50 … p99 … max …, overlaps 0 (+2 tolerated cut-off, max 3.1 s)`.
pub fn summary_line(verdict: &Verdict, minutes: f64, seed: u64, cluster: bool) -> String {
    let mut counts: BTreeMap<FaultKind, usize> = BTreeMap::new();
    for r in &verdict.reowns {
        *counts.entry(r.kind).or_default() += 1;
    }
    let kinds = counts
        .iter()
        .map(|(k, n)| format!("{} {n}", k.name()))
        .collect::<Vec<_>>()
        .join(", ");
    let mut latencies: Vec<Micros> = verdict.reowns.iter().filter_map(|r| r.latency).collect();
    latencies.sort_unstable();
    let doubles = verdict
        .violations
        .iter()
        .filter(|v| v.starts_with("double ownership"))
        .count();
    let tolerated_max = verdict
        .tolerated
        .iter()
        .map(|t| t.duration)
        .max()
        .unwrap_or(0);
    format!(
        "soak: {} {minutes} min{} seed {seed}: {} faults ({kinds}), re-own p50 {:.2} s p99 {:.2} s max {:.2} s, overlaps {doubles} (+{} tolerated cut-off, max {:.2} s), {} ownership intervals, {} violations",
        if verdict.violations.is_empty() {
            "PASS"
        } else {
            "FAIL"
        },
        if cluster { " cluster" } else { "" },
        verdict.reowns.len(),
        secs(quantile(&latencies, 0.5)),
        secs(quantile(&latencies, 0.99)),
        secs(latencies.last().copied().unwrap_or(0)),
        verdict.tolerated.len(),
        secs(tolerated_max),
        verdict.intervals,
        verdict.violations.len(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_use_nearest_rank() {
        let v: Vec<Micros> = (1..=100).collect();
        assert_eq!(quantile(&v, 0.5), 50);
        assert_eq!(quantile(&v, 0.99), 99);
        assert_eq!(quantile(&[7], 0.99), 7);
        assert_eq!(quantile(&[], 0.5), 0);
    }
}
