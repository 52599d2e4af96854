//! Divan benches of the deterministic simulator's speed: one seed of
//! `parti-sim` (five simulated minutes, the default strategy, every check
//! after every event) per iteration, for a few group sizes. The throughput
//! is in simulated cluster-minutes (shown as items/s): what `parti-sim`
//! prints as "simulated cluster-minutes/s" on one thread.
//!
//! `cargo bench -p parti-benches --bench simulator`
//!
//! Under `cargo test` (no `--bench` argument) it runs one short small seed
//! as a smoke test instead.

// Benchmark harness: a failing run aborts loudly; that is its job.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use divan::counter::ItemsCount;
use divan::{Bencher, black_box};
use parti_testkit::sim::{FaultSet, SimConfig, Simulator};
use std::fmt;
use std::sync::Arc;

/// One group size.
#[derive(Clone, Copy, Debug)]
struct Cell {
    workers: usize,
    partitions: usize,
    faults: bool,
}

impl fmt::Display for Cell {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let faults = if self.faults { "all" } else { "none" };
        write!(f, "{}w-{}p-{faults}", self.workers, self.partitions)
    }
}

const CELLS: &[Cell] = &[
    Cell {
        workers: 10,
        partitions: 64,
        faults: true,
    },
    Cell {
        workers: 100,
        partitions: 10_000,
        faults: false,
    },
    Cell {
        workers: 100,
        partitions: 10_000,
        faults: true,
    },
];

const MINUTES: u64 = 5;

/// The configuration `parti-sim --workers W --partitions P --minutes M
/// --faults all|none` runs for its first seed.
fn config(cell: Cell, minutes: u64) -> SimConfig {
    let mut cfg = SimConfig::new(1);
    cfg.workers = cell.workers;
    cfg.partitions = cell.partitions;
    cfg.duration_ms = minutes * 60_000;
    cfg.quiet_ms = (cfg.duration_ms / 3)
        .max(cfg.convergence_bound_ms() + 10_000)
        .min(cfg.duration_ms);
    cfg.faults = if cell.faults {
        FaultSet::all()
    } else {
        FaultSet::none()
    };
    cfg
}

fn main() {
    if std::env::args().any(|a| a == "--bench") {
        divan::main();
        return;
    }
    let cell = Cell {
        workers: 5,
        partitions: 64,
        faults: true,
    };
    let report = Simulator::new(
        config(cell, 1),
        Arc::new(parti_strategies::default_strategy()),
    )
    .run();
    assert!(report.violations.is_empty(), "{:?}", report.violations);
    assert!(report.steps > 0);
}

#[divan::bench(args = CELLS, sample_count = 3, sample_size = 1)]
fn one_seed(bencher: Bencher, cell: Cell) {
    let cfg = config(cell, MINUTES);
    let strategy = Arc::new(parti_strategies::default_strategy());
    bencher
        .counter(ItemsCount::new(MINUTES))
        .bench(|| black_box(Simulator::new(cfg.clone(), strategy.clone()).run()));
}
