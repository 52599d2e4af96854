use parti_testkit::sim::*;
use parti_testkit::simple_strategy::SimpleSticky;
use std::sync::Arc;
fn main() {
    let seed: u64 = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(1);
    let faults = std::env::args().nth(2).unwrap_or_else(|| "none".into());
    let mut cfg = SimConfig::new(seed);
    cfg.duration_ms = 60_000;
    cfg.quiet_ms = 55_000;
    cfg.faults = FaultSet::parse(&faults).unwrap();
    cfg.trace = true;
    let r = Simulator::new(cfg, Arc::new(SimpleSticky)).run();
    for l in r.trace.iter().rev().take(60).rev() {
        println!("{l}");
    }
    for v in &r.violations {
        println!("VIOLATION {v}");
    }
}
