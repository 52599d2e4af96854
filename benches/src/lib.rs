//! Benchmarks of Parti's assignment strategies.
//!
//! - [`spec`]: the inputs of docs/benchmark-spec.md (sizes, the skewed weight generator,
//!   the scale-up and remove-one worker lists);
//! - [`report`]: the measures of one strategy on one cell, used by the
//!   `strategy-report` binary (`cargo run --release -p parti-benches --bin
//!   strategy-report -- [--json] [--quick]`);
//! - [`alloc`]: a counting global allocator for the report's memory column;
//! - [`publication`]: assignment records of a cold start and their stored
//!   size (`cargo run --release -p parti-benches --bin publication-report`);
//! - [`scale`]: many managers in one process on the in-memory backend and on
//!   a nats-server: convergence, steady-state traffic and CPU, memory per
//!   worker, crash, stop, join and failover (`cargo run --release -p
//!   parti-benches --bin scale-report`).
//!
//! The divan bench `benches/strategies.rs` times the same cells for regression
//! tracking (`cargo bench -p parti-benches`).

// Benchmark harness: a failing cell aborts the run loudly; that is its job.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

pub mod alloc;
pub mod publication;
pub mod report;
pub mod scale;
pub mod spec;

#[cfg(test)]
mod tests {
    use crate::report::{measure, strategies};
    use crate::spec::Weights;

    /// Runs the report's core on the 1k × 10 cells so CI exercises it, and checks
    /// the targets that hold there.
    #[test]
    fn report_core_on_the_small_cell() {
        for (name, make) in strategies() {
            for weights in Weights::ALL {
                let r = measure(name, &make, 1_000, 10, weights, 1);
                assert!(r.deterministic, "{name} {weights}");
                let line = serde_json::to_string(&r).unwrap();
                let v: serde_json::Value = serde_json::from_str(&line).unwrap();
                assert_eq!(v.as_object().map(|o| o.len()), Some(14), "{line}");
                assert!(r.moved_scale_up >= 0.0 && r.moved_scale_up <= 1.0);
                match name {
                    "sticky" => {
                        assert!(r.max_over_avg <= 1.05, "{r:?}");
                        assert!(r.moved_scale_up <= 1.10 * r.optimal_scale_up, "{r:?}");
                        assert!(r.moved_remove_one <= 1.10 * r.optimal_remove_one, "{r:?}");
                        assert!(
                            r.moved_scale_up_weight <= 1.25 * r.optimal_scale_up_weight,
                            "{r:?}"
                        );
                        assert!(
                            r.moved_remove_one_weight <= 1.25 * r.optimal_remove_one_weight,
                            "{r:?}"
                        );
                    }
                    "bounded-load" => assert!(r.max_over_avg <= 1.05, "{r:?}"),
                    "round-robin" => assert!(r.moved_scale_up > 0.5, "{r:?}"),
                    _ => {}
                }
            }
        }
    }
}
