//! The strategy report: every strategy on every cell of docs/benchmark-spec.md.
//!
//! ```text
//! cargo run --release -p parti-benches --bin strategy-report -- [--json] [--quick] [--size PxW]
//! ```
//!
//! `--json` prints one JSON object per strategy × size × weights, one per line,
//! with exactly the spec's fields; without it a Markdown table is printed (with
//! the weighted optima and the allocations of one cold call added). `--quick`
//! times 3 calls per cell instead of 31. `--size 1000x10` keeps one size.

// Benchmark harness: a failing cell aborts the run loudly; that is its job.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use parti_benches::alloc::Counting;
use parti_benches::report::{measure, strategies, table_header, table_row};
use parti_benches::spec::{SIZES, Weights};

#[global_allocator]
static ALLOC: Counting = Counting;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut json = false;
    let mut reps = 31;
    let mut only: Option<(usize, usize)> = None;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--json" => json = true,
            "--quick" => reps = 3,
            "--help" | "-h" => {
                println!("{USAGE}");
                println!("  --json       one JSON object per line instead of the table");
                println!("  --quick      3 repetitions per cell instead of 31");
                println!("  --size PxW   only the cell of P partitions and W workers");
                return;
            }
            "--size" => {
                let parsed = it.next().and_then(|s| {
                    let (p, w) = s.split_once('x')?;
                    Some((p.parse().ok()?, w.parse().ok()?))
                });
                match parsed {
                    Some(size) => only = Some(size),
                    None => usage(),
                }
            }
            _ => usage(),
        }
    }
    if !json {
        println!("{}", table_header());
    }
    for (p, w) in SIZES {
        if only.is_some_and(|o| o != (p, w)) {
            continue;
        }
        for weights in Weights::ALL {
            for (name, make) in strategies() {
                let r = measure(name, &make, p, w, weights, reps);
                if json {
                    match serde_json::to_string(&r) {
                        Ok(line) => println!("{line}"),
                        Err(e) => panic!("cannot serialize a report line: {e}"),
                    }
                } else {
                    println!("{}", table_row(&r));
                }
            }
        }
    }
}

const USAGE: &str = "usage: strategy-report [--json] [--quick] [--size PxW]";

fn usage() -> ! {
    eprintln!("{USAGE}");
    std::process::exit(2);
}
