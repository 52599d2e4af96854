//! The measures of docs/benchmark-spec.md for one strategy on one cell.

use crate::alloc;
use crate::spec::{self, Weights};
use parti_core::{AssignmentInput, AssignmentStrategy, Partition, Placement, WorkerSpec};
use serde::Serialize;
use std::hint::black_box;
use std::time::Instant;

/// A fresh strategy value per call (the spec times cold assignments).
pub type Factory<'a> = &'a dyn Fn() -> Box<dyn AssignmentStrategy>;

/// Makes a fresh strategy value.
pub type Make = fn() -> Box<dyn AssignmentStrategy>;

/// The strategies of the report, in report order.
pub fn strategies() -> Vec<(&'static str, Make)> {
    vec![
        ("sticky", || Box::new(parti_strategies::Sticky::default())),
        ("bounded-load", || {
            Box::new(parti_strategies::BoundedLoad::default())
        }),
        ("consistent-hash", || {
            Box::new(parti_strategies::ConsistentHash::default())
        }),
        ("round-robin", || Box::new(parti_strategies::RoundRobin)),
    ]
}

/// One line of the report: the JSON fields are exactly the spec's.
#[derive(Clone, Debug, Serialize)]
pub struct CellReport {
    /// Strategy name.
    pub strategy: String,
    /// `P`.
    pub partitions: usize,
    /// `W`.
    pub workers: usize,
    /// `uniform` or `skewed`.
    pub weights: &'static str,
    /// Median wall time of a cold assignment, µs.
    pub assign_us_median: f64,
    /// Fastest cold assignment, µs.
    pub assign_us_min: f64,
    /// Heaviest worker's load over the mean load (count for uniform, weight for
    /// skewed) in the `W`-worker assignment.
    pub max_over_avg: f64,
    /// Fraction of partitions whose owner changed from `W` to `W + 1` workers.
    pub moved_scale_up: f64,
    /// `1 / (W + 1)`.
    pub optimal_scale_up: f64,
    /// Fraction of partitions whose owner changed when `worker-<W/2>` left.
    pub moved_remove_one: f64,
    /// The removed worker's fraction of the partitions.
    pub optimal_remove_one: f64,
    /// As `moved_scale_up`, weighted by partition weight.
    pub moved_scale_up_weight: f64,
    /// As `moved_remove_one`, weighted by partition weight.
    pub moved_remove_one_weight: f64,
    /// Two calls with the same input gave identical output.
    pub deterministic: bool,
    /// Not in the JSON: the weighted optimum of the scale-up, `1 / (W + 1)`.
    #[serde(skip)]
    pub optimal_scale_up_weight: f64,
    /// Not in the JSON: the removed worker's fraction of the total weight.
    #[serde(skip)]
    pub optimal_remove_one_weight: f64,
    /// Not in the JSON: allocations of one cold call (count, bytes), if a
    /// counting allocator is installed.
    #[serde(skip)]
    pub allocations: Option<(u64, u64)>,
}

fn call(strategy: &dyn AssignmentStrategy, input: &AssignmentInput<'_>) -> Placement {
    match strategy.assign(input) {
        Ok(p) => p,
        Err(e) => panic!("{} failed on a benchmark cell: {e}", strategy.name()),
    }
}

pub use parti_core::strategy::carry_over;

/// (count, weight) of partitions whose owner ID differs between two placements.
fn moved(
    parts: &[Partition],
    a_workers: &[WorkerSpec],
    a: &Placement,
    b_workers: &[WorkerSpec],
    b: &Placement,
) -> (usize, u128) {
    let mut count = 0;
    let mut weight = 0u128;
    for (i, p) in parts.iter().enumerate() {
        if a_workers[a.owners[i] as usize].id != b_workers[b.owners[i] as usize].id {
            count += 1;
            weight += u128::from(p.weight);
        }
    }
    (count, weight)
}

fn median(sorted: &[f64]) -> f64 {
    let n = sorted.len();
    if n % 2 == 1 {
        sorted[n / 2]
    } else {
        (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0
    }
}

/// Measures one strategy on one cell with `reps` timed cold calls (at least 1).
pub fn measure(
    name: &str,
    make: Factory<'_>,
    p: usize,
    w: usize,
    weights: Weights,
    reps: usize,
) -> CellReport {
    let parts = spec::partitions(p, weights);
    let base_workers = spec::workers(w);
    let input = AssignmentInput {
        workers: &base_workers,
        partitions: &parts,
        previous: &[],
    };

    let mut times = Vec::with_capacity(reps.max(1));
    for _ in 0..reps.max(1) {
        let strategy = make();
        let start = Instant::now();
        let placement = strategy.assign(black_box(&input));
        times.push(start.elapsed().as_secs_f64() * 1e6);
        black_box(placement).ok();
    }
    times.sort_by(f64::total_cmp);

    let allocations = alloc::installed().then(|| {
        let strategy = make();
        let before = alloc::snapshot();
        let placement = call(strategy.as_ref(), &input);
        let after = alloc::snapshot();
        drop(placement);
        (after.0 - before.0, after.1 - before.1)
    });

    let base = call(make().as_ref(), &input);
    let deterministic = call(make().as_ref(), &input) == base;

    let total_weight: u128 = parts.iter().map(|p| u128::from(p.weight)).sum();
    let mut load = vec![0u128; w];
    for (i, &o) in base.owners.iter().enumerate() {
        load[o as usize] += match weights {
            Weights::Uniform => 1,
            Weights::Skewed => u128::from(parts[i].weight),
        };
    }
    let total_load: u128 = load.iter().sum();
    let max_over_avg = *load.iter().max().unwrap_or(&0) as f64 / (total_load as f64 / w as f64);

    let up_workers = spec::scale_up(w);
    let up_prev = carry_over(&base_workers, &up_workers, &base);
    let up = call(
        make().as_ref(),
        &AssignmentInput {
            workers: &up_workers,
            partitions: &parts,
            previous: &up_prev,
        },
    );
    let (up_count, up_weight) = moved(&parts, &base_workers, &base, &up_workers, &up);

    let rm_workers = spec::remove_one(w);
    let rm_prev = carry_over(&base_workers, &rm_workers, &base);
    let rm = call(
        make().as_ref(),
        &AssignmentInput {
            workers: &rm_workers,
            partitions: &parts,
            previous: &rm_prev,
        },
    );
    let (rm_count, rm_weight) = moved(&parts, &base_workers, &base, &rm_workers, &rm);
    let removed = base_workers[w / 2].id.clone();
    let (mut removed_count, mut removed_weight) = (0usize, 0u128);
    for (i, &o) in base.owners.iter().enumerate() {
        if base_workers[o as usize].id == removed {
            removed_count += 1;
            removed_weight += u128::from(parts[i].weight);
        }
    }

    let pf = p as f64;
    let tw = total_weight as f64;
    CellReport {
        strategy: name.to_string(),
        partitions: p,
        workers: w,
        weights: weights.name(),
        assign_us_median: median(&times),
        assign_us_min: times[0],
        max_over_avg,
        moved_scale_up: up_count as f64 / pf,
        optimal_scale_up: 1.0 / (w as f64 + 1.0),
        moved_remove_one: rm_count as f64 / pf,
        optimal_remove_one: removed_count as f64 / pf,
        moved_scale_up_weight: up_weight as f64 / tw,
        moved_remove_one_weight: rm_weight as f64 / tw,
        deterministic,
        optimal_scale_up_weight: 1.0 / (w as f64 + 1.0),
        optimal_remove_one_weight: removed_weight as f64 / tw,
        allocations,
    }
}

/// The header of [`table_row`].
pub fn table_header() -> String {
    format!(
        "| {:<15} | {:>11} | {:<7} | {:>16} | {:>7} | {:>15} | {:>15} | {:>15} | {:>15} | {:>5} | {:>15} |\n\
         |{}|{}|{}|{}|{}|{}|{}|{}|{}|{}|{}|",
        "strategy",
        "P × W",
        "weights",
        "µs median / min",
        "max/avg",
        "moved up (opt)",
        "rm-one (opt)",
        "up wt (opt)",
        "rm-one wt (opt)",
        "det",
        "allocs / bytes",
        "-".repeat(17),
        "-".repeat(13),
        "-".repeat(9),
        "-".repeat(18),
        "-".repeat(9),
        "-".repeat(17),
        "-".repeat(17),
        "-".repeat(17),
        "-".repeat(17),
        "-".repeat(7),
        "-".repeat(17),
    )
}

fn short_size(n: usize) -> String {
    if n >= 1000 && n.is_multiple_of(1000) {
        format!("{}k", n / 1000)
    } else {
        n.to_string()
    }
}

fn bytes(b: u64) -> String {
    if b >= 1 << 20 {
        format!("{:.1} MiB", b as f64 / f64::from(1 << 20))
    } else {
        format!("{:.1} KiB", b as f64 / 1024.0)
    }
}

/// One readable row for `r`.
pub fn table_row(r: &CellReport) -> String {
    let f = |x: f64| format!("{x:.4}").trim_start_matches('0').to_string();
    format!(
        "| {:<15} | {:>11} | {:<7} | {:>16} | {:>7.3} | {:>15} | {:>15} | {:>15} | {:>15} | {:>5} | {:>15} |",
        r.strategy,
        format!("{} × {}", short_size(r.partitions), short_size(r.workers)),
        r.weights,
        format!("{:.0} / {:.0}", r.assign_us_median, r.assign_us_min),
        r.max_over_avg,
        format!("{} ({})", f(r.moved_scale_up), f(r.optimal_scale_up)),
        format!("{} ({})", f(r.moved_remove_one), f(r.optimal_remove_one)),
        format!(
            "{} ({})",
            f(r.moved_scale_up_weight),
            f(r.optimal_scale_up_weight)
        ),
        format!(
            "{} ({})",
            f(r.moved_remove_one_weight),
            f(r.optimal_remove_one_weight)
        ),
        if r.deterministic { "yes" } else { "NO" },
        r.allocations
            .map_or("-".to_string(), |(n, b)| format!("{n} / {}", bytes(b))),
    )
}
