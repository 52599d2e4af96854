//! Divan benches of the stored form of assignment records
//! ([`parti_core::pieces`]): encoding one publication's records into pieces
//! below the value limit, and decoding them back, at 100 000 × 1 000 and
//! 1 000 000 × 1 000 (and one worker owning 1 000 000). Throughput is in
//! stored bytes.
//!
//! `cargo bench -p parti-benches --bench pieces`

// Benchmark harness: a failing cell aborts the run loudly; that is its job.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use divan::counter::BytesCount;
use divan::{Bencher, black_box};
use parti_benches::publication::{VALUE_LIMIT, cold_start_records, measure};
use parti_core::pieces::{assemble, decode_piece, encode_pieces};

const SIZES: &[(usize, usize)] = &[(100_000, 1_000), (1_000_000, 1_000), (1_000_000, 1)];

fn main() {
    divan::main();
}

#[divan::bench(args = SIZES, sample_count = 5, sample_size = 1)]
fn encode(bencher: Bencher, (p, w): (usize, usize)) {
    let records = cold_start_records(p, w);
    let bytes = measure(&records).bytes;
    bencher.counter(BytesCount::new(bytes)).bench(|| {
        for r in &records {
            black_box(encode_pieces(r, VALUE_LIMIT).unwrap());
        }
    });
}

#[divan::bench(args = SIZES, sample_count = 5, sample_size = 1)]
fn decode(bencher: Bencher, (p, w): (usize, usize)) {
    let records = cold_start_records(p, w);
    let encoded: Vec<Vec<Vec<u8>>> = records
        .iter()
        .map(|r| encode_pieces(r, VALUE_LIMIT).unwrap())
        .collect();
    let bytes: usize = encoded.iter().flatten().map(Vec::len).sum();
    bencher.counter(BytesCount::new(bytes)).bench(|| {
        for pieces in &encoded {
            black_box(assemble(pieces.iter().map(|v| decode_piece(v).unwrap())).unwrap());
        }
    });
}
