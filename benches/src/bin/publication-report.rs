//! Bytes written per publication and per worker record, and the time to
//! encode and decode them, for a cold start of P partitions over W workers.
//!
//! `cargo run --release -p parti-benches --bin publication-report`

// Benchmark harness: a failing cell aborts the run loudly; that is its job.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use parti_benches::publication::{VALUE_LIMIT, cold_start_records, measure};
use parti_core::pieces::{assemble, decode_piece, encode_pieces};
use std::time::Instant;

fn main() {
    println!(
        "| P × W | bytes / publication | values | bytes / worker (mean, max) | bytes / partition | plain JSON / publication | encode ms | decode ms |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    for (p, w) in [
        (100_000, 1_000),
        (1_000_000, 1_000),
        (100_000, 1),
        (1_000_000, 1),
    ] {
        let records = cold_start_records(p, w);
        let size = measure(&records);
        let t = Instant::now();
        let encoded: Vec<Vec<Vec<u8>>> = records
            .iter()
            .map(|r| encode_pieces(r, VALUE_LIMIT).unwrap())
            .collect();
        let encode_ms = t.elapsed().as_secs_f64() * 1e3;
        let t = Instant::now();
        for (pieces, r) in encoded.iter().zip(&records) {
            let decoded = assemble(pieces.iter().map(|v| decode_piece(v).unwrap())).unwrap();
            assert_eq!(decoded.partitions.len(), r.partitions.len());
        }
        let decode_ms = t.elapsed().as_secs_f64() * 1e3;
        println!(
            "| {p} × {w} | {} | {} | {}, {} | {:.1} | {} | {encode_ms:.0} | {decode_ms:.0} |",
            size.bytes,
            size.values,
            size.bytes / w,
            size.max_record,
            size.bytes as f64 / p as f64,
            size.plain_bytes,
        );
    }
}
