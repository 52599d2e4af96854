//! Publication sizes: the per-worker assignment records of a cold start of
//! `P` partitions (keys `["topic", "p-<i>"]`, as in docs/benchmark-spec.md) over `W`
//! workers placed by Sticky, encoded as the NATS backend stores them
//! ([`parti_core::pieces`]) below a 1 MiB server's value limit.

use parti_core::ids::{InstanceId, WorkerId};
use parti_core::pieces::encode_pieces;
use parti_core::records::{OwnedPartition, WIRE_VERSION, WorkerAssignment, encode};
use parti_core::{AssignmentInput, AssignmentStrategy, Partition, WorkerSpec};
use parti_strategies::Sticky;

/// The value limit of a server with the default `max_payload` (1 MiB) less
/// the NATS backend's header room.
pub const VALUE_LIMIT: usize = 1024 * 1024 - 1024;

/// The records of a cold start of `p` partitions over `w` workers, each
/// sorted by keys as the leader writes them.
pub fn cold_start_records(p: usize, w: usize) -> Vec<WorkerAssignment> {
    let partitions: Vec<Partition> = (0..p)
        .map(|i| Partition::new(["topic".to_string(), format!("p-{i}")]))
        .collect();
    let workers: Vec<WorkerSpec> = (0..w as u32)
        .map(|i| WorkerSpec::new(WorkerId::new("worker", i)))
        .collect();
    let input = AssignmentInput {
        workers: &workers,
        partitions: &partitions,
        previous: &[],
    };
    let placement = Sticky::default().assign(&input).expect("sticky places");
    let mut shares: Vec<Vec<OwnedPartition>> = vec![Vec::new(); w];
    for (partition, owner) in partitions.into_iter().zip(placement.owners) {
        shares[owner as usize].push(OwnedPartition {
            partition,
            epoch: 1,
        });
    }
    shares
        .into_iter()
        .enumerate()
        .map(|(i, mut parts)| {
            parts.sort_by(|a, b| a.partition.keys.cmp(&b.partition.keys));
            WorkerAssignment {
                v: WIRE_VERSION,
                worker: WorkerId::new("worker", i as u32),
                instance: InstanceId(i as u64 + 1),
                version: 1,
                term: 1,
                partitions: parts,
            }
        })
        .collect()
}

/// Sizes of one publication of `records`.
#[derive(Clone, Copy, Debug, Default)]
pub struct PublicationSize {
    /// Bytes written in all (compact pieces).
    pub bytes: usize,
    /// Values written (pieces).
    pub values: usize,
    /// The largest record (all its pieces).
    pub max_record: usize,
    /// The same records as plain JSON (`"v": 1`), for comparison.
    pub plain_bytes: usize,
}

/// Encodes every record and adds up the sizes.
pub fn measure(records: &[WorkerAssignment]) -> PublicationSize {
    let mut size = PublicationSize::default();
    for r in records {
        let pieces = encode_pieces(r, VALUE_LIMIT).expect("every record fits in pieces");
        let bytes: usize = pieces.iter().map(Vec::len).sum();
        size.bytes += bytes;
        size.values += pieces.len();
        size.max_record = size.max_record.max(bytes);
        size.plain_bytes += encode(r).len();
    }
    size
}
