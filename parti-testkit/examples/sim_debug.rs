//! Dumps the full trace of one simulated run, for debugging a failing seed
//! beyond the last-events window `parti-sim` prints:
//!
//! ```text
//! cargo run --release -p parti-testkit --example sim_debug -- SEED [stop|keep] [unused] [WORKERS] > trace.txt
//! ```

use parti_strategies::Sticky;
use parti_testkit::sim::*;
use std::sync::Arc;
fn main() {
    let seed: u64 = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(1);
    let policy = std::env::args().nth(2).unwrap_or_else(|| "stop".into());
    let until: f64 = std::env::args()
        .nth(3)
        .and_then(|s| s.parse().ok())
        .unwrap_or(300.0);
    let mut cfg = SimConfig::new(seed);
    if policy == "stop" {
        cfg.config.degraded.policy = parti_core::DegradedPolicy::StopWhenLeaseExpires;
    }
    let _ = until;
    cfg.workers = std::env::args()
        .nth(4)
        .and_then(|s| s.parse().ok())
        .unwrap_or(5);
    cfg.quiet_ms = (cfg.duration_ms / 3)
        .max(cfg.convergence_bound_ms() + 10_000)
        .min(cfg.duration_ms);
    cfg.trace_len = 10_000_000;
    cfg.trace = true;
    let r = Simulator::new(cfg, Arc::new(Sticky::default())).run();
    for l in r.trace.iter() {
        println!("{l}");
    }
    for v in &r.violations {
        println!("VIOLATION {v}");
    }
}
