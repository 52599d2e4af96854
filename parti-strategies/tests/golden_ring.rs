//! Pins `ConsistentHash` to the Go ring, computed here by a slow reference
//! implementation written straight from the documented scheme:
//!
//! - worker hash `h0 = xxh3_64_with_seed(id bytes, seed)`;
//! - virtual node `i` at `xxh3_64_with_seed(i as 8 little-endian bytes, h0)`;
//! - partition point: `h = xxh3_64_with_seed(keys[0], seed)`, then
//!   `h = xxh3_64_with_seed(keys[j], h)` for each further key;
//! - owner: the first node (in ascending hash order) with hash >= the point,
//!   else the first node of the ring.

// Test code: unwrap, expect and panic are how it asserts.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use parti_core::{AssignmentInput, AssignmentStrategy, Partition, WorkerId, WorkerSpec};
use parti_strategies::ConsistentHash;
use xxhash_rust::xxh3::xxh3_64_with_seed;

/// The reference: returns the owner ID of every partition.
fn reference(workers: &[String], parts: &[Vec<String>], vnodes: u64, seed: u64) -> Vec<String> {
    let mut ring: Vec<(u64, String)> = Vec::new();
    for id in workers {
        let h0 = xxh3_64_with_seed(id.as_bytes(), seed);
        for i in 0..vnodes {
            ring.push((xxh3_64_with_seed(&i.to_le_bytes(), h0), id.clone()));
        }
    }
    ring.sort();
    parts
        .iter()
        .map(|keys| {
            let mut h = xxh3_64_with_seed(keys[0].as_bytes(), seed);
            for k in &keys[1..] {
                h = xxh3_64_with_seed(k.as_bytes(), h);
            }
            let node = ring.iter().find(|(v, _)| *v >= h).unwrap_or(&ring[0]);
            node.1.clone()
        })
        .collect()
}

fn owners(strategy: &ConsistentHash, workers: &[String], parts: &[Vec<String>]) -> Vec<String> {
    let specs: Vec<WorkerSpec> = workers
        .iter()
        .map(|w| WorkerSpec::new(WorkerId::from_name(w.clone())))
        .collect();
    let partitions: Vec<Partition> = parts.iter().map(|k| Partition::new(k.clone())).collect();
    let input = AssignmentInput {
        workers: &specs,
        partitions: &partitions,
        previous: &[],
    };
    let placement = strategy.assign(&input).expect("valid input");
    placement
        .owners
        .iter()
        .map(|&o| workers[o as usize].clone())
        .collect()
}

fn spec_workers(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("worker-{i}")).collect()
}

fn spec_partitions(n: usize) -> Vec<Vec<String>> {
    (0..n)
        .map(|i| vec!["topic".to_string(), format!("p-{i}")])
        .collect()
}

#[test]
fn literal_hashes_of_the_scheme() {
    // The building blocks, pinned as numbers (xxh3 is the reference XXH3).
    assert_eq!(xxh3_64_with_seed(b"", 0), 0x2d06800538d394c2);
    let h0 = xxh3_64_with_seed(b"worker-0", 0);
    assert_eq!(h0, xxhash_rust::xxh3::xxh3_64(b"worker-0"));
    // LE bytes of the index, not its text.
    assert_ne!(
        xxh3_64_with_seed(&1u64.to_le_bytes(), h0),
        xxh3_64_with_seed(b"1", h0)
    );
}

#[test]
fn matches_the_reference_on_the_bench_inputs() {
    for (p, w) in [(1000, 10), (2000, 37)] {
        let workers = spec_workers(w);
        let parts = spec_partitions(p);
        assert_eq!(
            owners(&ConsistentHash::new(), &workers, &parts),
            reference(&workers, &parts, 150, 0)
        );
    }
}

#[test]
fn matches_the_reference_with_seeds_and_vnode_counts() {
    let workers: Vec<String> = ["a", "worker-9", "β-node", "x-1", "x-10", "x-2"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    let parts: Vec<Vec<String>> = (0..500)
        .map(|i| match i % 3 {
            0 => vec![format!("solo-{i}")],
            1 => vec!["t".into(), format!("{i}")],
            _ => vec!["tenant".into(), format!("{}", i % 11), format!("shard-{i}")],
        })
        .collect();
    for (vnodes, seed) in [
        (1u32, 0u64),
        (10, 0),
        (150, 42),
        (300, u64::MAX),
        (7, 0x9E37_79B9_7F4A_7C15),
    ] {
        let strategy = ConsistentHash::new().with_vnodes(vnodes).with_seed(seed);
        assert_eq!(
            owners(&strategy, &workers, &parts),
            reference(&workers, &parts, u64::from(vnodes), seed),
            "vnodes {vnodes} seed {seed}"
        );
    }
}

#[test]
fn golden_placement() {
    // Computed once with `reference` above; pins the exact placement so that
    // a change of both the code and the reference is noticed too.
    let workers = spec_workers(5);
    let parts = spec_partitions(12);
    let got = owners(&ConsistentHash::new(), &workers, &parts);
    assert_eq!(got, reference(&workers, &parts, 150, 0));
    let expected: Vec<&str> = GOLDEN_SEED_0.to_vec();
    assert_eq!(got, expected);
    let seeded = owners(&ConsistentHash::new().with_seed(42), &workers, &parts);
    assert_eq!(seeded, GOLDEN_SEED_42.to_vec());
}

const GOLDEN_SEED_0: [&str; 12] = [
    "worker-2", "worker-4", "worker-1", "worker-1", "worker-0", "worker-2", "worker-0", "worker-2",
    "worker-3", "worker-0", "worker-1", "worker-2",
];
const GOLDEN_SEED_42: [&str; 12] = [
    "worker-1", "worker-1", "worker-2", "worker-3", "worker-2", "worker-2", "worker-1", "worker-2",
    "worker-1", "worker-3", "worker-2", "worker-2",
];
