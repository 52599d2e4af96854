//! Divan benches of the strategies on the cells of docs/benchmark-spec.md, for regression
//! tracking: cold assignments (fresh strategy value, no previous) and the sticky
//! scale-up call. Allocation counts come from divan's `AllocProfiler`; on a noisy
//! 2-core machine prefer them (and the strategy report) to wall times.
//!
//! `cargo bench -p parti-benches --bench strategies`

// Benchmark harness: a failing cell aborts the run loudly; that is its job.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use divan::{AllocProfiler, Bencher, black_box};
use parti_benches::report::carry_over;
use parti_benches::spec::{self, Weights};
use parti_core::{AssignmentInput, AssignmentStrategy};
use parti_strategies::{BoundedLoad, ConsistentHash, RoundRobin, Sticky};

#[global_allocator]
static ALLOC: AllocProfiler = AllocProfiler::system();

const CELLS: &[&str] = &[
    "1000x10/uniform",
    "1000x10/skewed",
    "10000x100/uniform",
    "10000x100/skewed",
    "100000x1000/uniform",
    "100000x1000/skewed",
];

fn parse(cell: &str) -> (usize, usize, Weights) {
    let (size, weights) = cell.split_once('/').expect("cell is PxW/weights");
    let (p, w) = size.split_once('x').expect("size is PxW");
    let weights = if weights == "skewed" {
        Weights::Skewed
    } else {
        Weights::Uniform
    };
    (p.parse().expect("P"), w.parse().expect("W"), weights)
}

fn main() {
    divan::main();
}

#[divan::bench(types = [Sticky, BoundedLoad, ConsistentHash, RoundRobin], args = CELLS, sample_count = 20)]
fn cold<S: AssignmentStrategy + Default>(bencher: Bencher, cell: &str) {
    let (p, w, weights) = parse(cell);
    let parts = spec::partitions(p, weights);
    let workers = spec::workers(w);
    let input = AssignmentInput {
        workers: &workers,
        partitions: &parts,
        previous: &[],
    };
    bencher.bench_local(|| S::default().assign(black_box(&input)));
}

#[divan::bench(args = CELLS, sample_count = 20)]
fn sticky_scale_up(bencher: Bencher, cell: &str) {
    let (p, w, weights) = parse(cell);
    let parts = spec::partitions(p, weights);
    let workers = spec::workers(w);
    let base = Sticky::default()
        .assign(&AssignmentInput {
            workers: &workers,
            partitions: &parts,
            previous: &[],
        })
        .expect("valid cell");
    let up = spec::scale_up(w);
    let previous = carry_over(&workers, &up, &base);
    let input = AssignmentInput {
        workers: &up,
        partitions: &parts,
        previous: &previous,
    };
    bencher.bench_local(|| Sticky::default().assign(black_box(&input)));
}
