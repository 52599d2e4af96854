//! How a worker's assignment record is stored when the store limits the size
//! of one value (NATS: the server's `max_payload`). **Part of the wire
//! contract.**
//!
//! A [`WorkerAssignment`] is written as one or more *pieces*, one value each:
//! piece 0 at `w.<term>.<worker>`, piece `i > 0` at `w.<term>.<worker>.<i>`
//! (see [`crate::layout::assignment_piece_key`]). Every piece is JSON with
//! `"v": 2` ([`PIECE_FORMAT`]) and carries the record's header (worker,
//! instance, version, term), its `index`, the number of pieces (`count`), and a
//! contiguous run of the record's partitions in a compact form:
//!
//! - `keys`: one item per partition, front-coded against the previous
//!   partition of the same piece: `[levels, bytes, "rest", "level", …]` means
//!   "the first `levels` key levels of the previous partition, then a level
//!   made of the first `bytes` bytes of the previous partition's next level
//!   followed by `rest`, then the further levels as written". With no string
//!   at all the keys are the first `levels` levels of the previous partition
//!   (`bytes` is then 0). The first item of a piece stands alone
//!   (`[0, 0, …all levels]`).
//! - `epochs`: run-length encoded over the partitions in order,
//!   `[[epoch, count], …]`;
//! - `weights`: likewise, omitted when every weight is 1.
//!
//! Partitions named `p-000017` … take about 10 bytes each instead of the 40
//! of the plain record, and a record of any size fits: it is cut into as many
//! pieces as needed. Only a single partition too large for one value (or a
//! limit too small for a piece header) cannot be stored: [`PieceTooLarge`].
//!
//! **The fence is unchanged.** The leader stages every piece before it
//! commits `meta` (a publication's staging succeeds only if every write
//! did), and a reader takes a record only when it holds every piece
//! `0..count` of one version ([`Assembler`]); the commit names that version
//! as before ([`crate::records::AssignmentMeta::names`]). Pieces of an older
//! version with a higher index than the current `count` may linger; they are
//! ignored, and removed with their term.
//!
//! Values of the previous format (`"v": 1`, a whole [`WorkerAssignment`])
//! still read as a record of one piece.

use crate::ids::{InstanceId, WorkerId};
use crate::partition::{Partition, PartitionKeys};
use crate::records::{
    DecodeError, MAX_VALUE_BYTES, OwnedPartition, WIRE_VERSION, WorkerAssignment,
};
use serde::de::{self, SeqAccess, Visitor};
use serde::ser::SerializeSeq;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::collections::BTreeMap;
use std::fmt;
use thiserror::Error;

/// The format version of a piece (`"v"`).
pub const PIECE_FORMAT: u32 = 2;

/// Most pieces one record may have; a value announcing more is malformed.
pub const MAX_PIECES: u32 = 1 << 16;

/// A piece cannot be made small enough for the store.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
#[error(
    "a piece of the assignment record of {worker} needs {size} bytes, above the limit of {limit} bytes"
)]
pub struct PieceTooLarge {
    /// The worker whose record it is.
    pub worker: WorkerId,
    /// Bytes the smallest possible piece needs.
    pub size: usize,
    /// The largest value the store accepts.
    pub limit: usize,
}

/// One decoded piece of a worker's record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Piece {
    /// The worker the record is for.
    pub worker: WorkerId,
    /// The claim it is addressed to.
    pub instance: InstanceId,
    /// The record's version.
    pub version: u64,
    /// The term of the leader that wrote it.
    pub term: u64,
    /// Position of this piece, `0..count`.
    pub index: u32,
    /// How many pieces the record has.
    pub count: u32,
    /// This piece's partitions, in the record's order.
    pub partitions: Vec<OwnedPartition>,
}

/// One front-coded partition name (see the module docs).
#[derive(Clone, Debug, PartialEq, Eq)]
struct KeyItem {
    levels: u32,
    bytes: u32,
    parts: Vec<String>,
}

impl Serialize for KeyItem {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut seq = serializer.serialize_seq(Some(2 + self.parts.len()))?;
        seq.serialize_element(&self.levels)?;
        seq.serialize_element(&self.bytes)?;
        for part in &self.parts {
            seq.serialize_element(part)?;
        }
        seq.end()
    }
}

impl<'de> Deserialize<'de> for KeyItem {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ItemVisitor;
        impl<'de> Visitor<'de> for ItemVisitor {
            type Value = KeyItem;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("[levels, bytes, strings…]")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<KeyItem, A::Error> {
                let levels = seq
                    .next_element()?
                    .ok_or_else(|| de::Error::invalid_length(0, &self))?;
                let bytes = seq
                    .next_element()?
                    .ok_or_else(|| de::Error::invalid_length(1, &self))?;
                let mut parts = Vec::new();
                while let Some(part) = seq.next_element::<String>()? {
                    parts.push(part);
                }
                Ok(KeyItem {
                    levels,
                    bytes,
                    parts,
                })
            }
        }
        deserializer.deserialize_seq(ItemVisitor)
    }
}

/// The stored form of a piece.
#[derive(Serialize, Deserialize)]
struct WirePiece {
    v: u32,
    worker: WorkerId,
    instance: InstanceId,
    version: u64,
    term: u64,
    index: u32,
    count: u32,
    keys: Vec<KeyItem>,
    epochs: Vec<(u64, u64)>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    weights: Vec<(u64, u64)>,
}

/// How `keys` is written after `previous` (see the module docs).
fn front_code(previous: Option<&[String]>, keys: &[String]) -> KeyItem {
    let Some(prev) = previous else {
        return KeyItem {
            levels: 0,
            bytes: 0,
            parts: keys.to_vec(),
        };
    };
    let levels = prev.iter().zip(keys).take_while(|(a, b)| a == b).count();
    let (bytes, parts) = match (prev.get(levels), keys.get(levels)) {
        (Some(p), Some(k)) => {
            let shared = common_prefix(p, k);
            let mut parts = Vec::with_capacity(keys.len() - levels);
            parts.push(k[shared..].to_string());
            parts.extend(keys[levels + 1..].iter().cloned());
            (shared, parts)
        }
        _ => (0, keys[levels..].to_vec()),
    };
    KeyItem {
        levels: levels as u32,
        bytes: bytes as u32,
        parts,
    }
}

/// Length in bytes of the longest common prefix of `a` and `b` that ends on
/// a character boundary of both.
fn common_prefix(a: &str, b: &str) -> usize {
    let mut shared = 0;
    for ((i, ca), cb) in a.char_indices().zip(b.chars()) {
        if ca != cb {
            break;
        }
        shared = i + ca.len_utf8();
    }
    shared
}

/// The keys an item stands for after `previous`.
fn expand(previous: Option<&[String]>, item: KeyItem) -> Result<Vec<String>, DecodeError> {
    let bad = |why: &str| DecodeError::Malformed(format!("piece key item: {why}"));
    let prev: &[String] = previous.unwrap_or(&[]);
    let levels = item.levels as usize;
    let bytes = item.bytes as usize;
    let shared = prev
        .get(..levels)
        .ok_or_else(|| bad("shares more levels than the previous partition has"))?;
    let mut keys = shared.to_vec();
    let mut parts = item.parts.into_iter();
    match parts.next() {
        None if bytes == 0 => {}
        None => return Err(bad("shares bytes of a level it does not have")),
        Some(rest) => {
            let head = if bytes == 0 {
                ""
            } else {
                prev.get(levels)
                    .and_then(|p| p.get(..bytes))
                    .ok_or_else(|| bad("shares more bytes than the previous level has"))?
            };
            keys.push(format!("{head}{rest}"));
        }
    }
    keys.extend(parts);
    Ok(keys)
}

/// Appends `value` to a run-length list.
fn push_run(runs: &mut Vec<(u64, u64)>, value: u64) {
    match runs.last_mut() {
        Some((v, n)) if *v == value => *n += 1,
        _ => runs.push((value, 1)),
    }
}

/// Number of decimal digits of `n`.
fn digits(n: u64) -> usize {
    n.checked_ilog10().map_or(1, |d| d as usize + 1)
}

/// JSON bytes one more run of `value` may add: `,[value,count]` with the
/// widest count a piece can have.
fn run_cost(value: u64) -> usize {
    4 + digits(value) + digits(u64::from(u32::MAX))
}

/// A piece being filled.
struct Builder {
    keys: Vec<KeyItem>,
    epochs: Vec<(u64, u64)>,
    weights: Vec<(u64, u64)>,
    size: usize,
    last_keys: Option<PartitionKeys>,
}

impl Builder {
    fn new(header: usize) -> Self {
        Builder {
            keys: Vec::new(),
            epochs: Vec::new(),
            weights: Vec::new(),
            size: header,
            last_keys: None,
        }
    }

    /// Bytes `p` would add to this piece, and its item.
    fn cost(&self, p: &OwnedPartition, scratch: &mut Vec<u8>) -> (usize, KeyItem) {
        let item = front_code(self.last_keys.as_deref(), &p.partition.keys);
        scratch.clear();
        // Serialising strings and numbers into a Vec cannot fail.
        let _ = serde_json::to_writer(&mut *scratch, &item);
        let mut cost = scratch.len() + 1;
        if self.epochs.last().is_none_or(|(e, _)| *e != p.epoch) {
            cost += run_cost(p.epoch);
        }
        if self
            .weights
            .last()
            .is_none_or(|(w, _)| *w != p.partition.weight)
        {
            cost += run_cost(p.partition.weight);
        }
        (cost, item)
    }

    fn push(&mut self, p: &OwnedPartition, item: KeyItem, cost: usize) {
        self.keys.push(item);
        push_run(&mut self.epochs, p.epoch);
        push_run(&mut self.weights, p.partition.weight);
        self.last_keys = Some(p.partition.keys.clone());
        self.size += cost;
    }
}

/// Cuts `record` into pieces of at most `limit` bytes each, in index order.
/// The record's partitions keep their order (sort them by keys for the most
/// compact result).
pub fn encode_pieces(
    record: &WorkerAssignment,
    limit: usize,
) -> Result<Vec<Vec<u8>>, PieceTooLarge> {
    let wire = |index: u32, count: u32, b: Builder| WirePiece {
        v: PIECE_FORMAT,
        worker: record.worker.clone(),
        instance: record.instance,
        version: record.version,
        term: record.term,
        index,
        count,
        keys: b.keys,
        epochs: b.epochs,
        weights: if b.weights.iter().all(|(w, _)| *w == 1) {
            Vec::new()
        } else {
            b.weights
        },
    };
    // The header with the widest index and count, and room for `"weights":[]`.
    let empty = Builder::new(0);
    let header = serde_json::to_vec(&wire(u32::MAX, u32::MAX, empty)).map_or(0, |v| v.len())
        + r#","weights":[]"#.len();
    let too_large = |size| PieceTooLarge {
        worker: record.worker.clone(),
        size,
        limit,
    };
    if header > limit {
        return Err(too_large(header));
    }
    let mut built = Vec::new();
    let mut current = Builder::new(header);
    let mut scratch = Vec::new();
    for p in &record.partitions {
        let (mut cost, mut item) = current.cost(p, &mut scratch);
        if current.size + cost > limit && !current.keys.is_empty() {
            built.push(std::mem::replace(&mut current, Builder::new(header)));
            (cost, item) = current.cost(p, &mut scratch);
        }
        if current.size + cost > limit {
            return Err(too_large(current.size + cost));
        }
        current.push(p, item, cost);
    }
    built.push(current);
    let count = u32::try_from(built.len()).unwrap_or(u32::MAX);
    if count > MAX_PIECES {
        return Err(too_large(built.iter().map(|b| b.size).sum()));
    }
    let mut values = Vec::with_capacity(built.len());
    for (index, b) in (0u32..).zip(built) {
        let bytes = serde_json::to_vec(&wire(index, count, b)).unwrap_or_default();
        if bytes.len() > limit {
            return Err(too_large(bytes.len()));
        }
        values.push(bytes);
    }
    Ok(values)
}

#[derive(Deserialize)]
struct VersionProbe {
    v: u32,
}

/// Decodes one piece (or a whole record of the previous format, as piece 0
/// of 1). Never panics, whatever the bytes.
pub fn decode_piece(bytes: &[u8]) -> Result<Piece, DecodeError> {
    if bytes.len() > MAX_VALUE_BYTES {
        return Err(DecodeError::TooLarge {
            size: bytes.len(),
            max: MAX_VALUE_BYTES,
        });
    }
    let probe: VersionProbe =
        serde_json::from_slice(bytes).map_err(|e| DecodeError::Malformed(e.to_string()))?;
    match probe.v {
        WIRE_VERSION => {
            let record: WorkerAssignment = crate::records::decode(bytes)?;
            Ok(Piece {
                worker: record.worker,
                instance: record.instance,
                version: record.version,
                term: record.term,
                index: 0,
                count: 1,
                partitions: record.partitions,
            })
        }
        PIECE_FORMAT => {
            let wire: WirePiece =
                serde_json::from_slice(bytes).map_err(|e| DecodeError::Malformed(e.to_string()))?;
            expand_piece(wire)
        }
        other => Err(DecodeError::UnknownVersion(other)),
    }
}

/// Runs expanded one value per partition; their total must be `n`.
fn expand_runs(runs: &[(u64, u64)], n: usize, what: &str) -> Result<Vec<u64>, DecodeError> {
    let total = runs
        .iter()
        .try_fold(0u64, |acc, (_, c)| acc.checked_add(*c))
        .filter(|t| *t == n as u64)
        .ok_or_else(|| {
            DecodeError::Malformed(format!("{what} runs do not cover the {n} partitions"))
        })?;
    let mut values = Vec::with_capacity(total as usize);
    for (value, count) in runs {
        values.extend(std::iter::repeat_n(*value, *count as usize));
    }
    Ok(values)
}

fn expand_piece(wire: WirePiece) -> Result<Piece, DecodeError> {
    if wire.count == 0 || wire.count > MAX_PIECES || wire.index >= wire.count {
        return Err(DecodeError::Malformed(format!(
            "piece {} of {} (at most {MAX_PIECES})",
            wire.index, wire.count
        )));
    }
    let n = wire.keys.len();
    let epochs = expand_runs(&wire.epochs, n, "epoch")?;
    let weights = if wire.weights.is_empty() {
        vec![1; n]
    } else {
        expand_runs(&wire.weights, n, "weight")?
    };
    let mut partitions: Vec<OwnedPartition> = Vec::with_capacity(n);
    for ((item, epoch), weight) in wire.keys.into_iter().zip(epochs).zip(weights) {
        let keys = expand(partitions.last().map(|p| p.partition.keys.as_slice()), item)?;
        partitions.push(OwnedPartition {
            partition: Partition {
                keys: keys.into(),
                weight,
            },
            epoch,
        });
    }
    Ok(Piece {
        worker: wire.worker,
        instance: wire.instance,
        version: wire.version,
        term: wire.term,
        index: wire.index,
        count: wire.count,
        partitions,
    })
}

/// How many terms of pieces an [`Assembler`] keeps.
const KEPT_TERMS: usize = 8;

/// Collects pieces and hands out each record once all its pieces of one
/// version are there.
#[derive(Clone, Debug, Default)]
pub struct Assembler {
    pending: BTreeMap<(u64, WorkerId), BTreeMap<u32, Piece>>,
}

impl Assembler {
    /// An empty assembler.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a piece; returns the record it completes, if any. Pieces of the
    /// assembled version (and older) are then dropped.
    pub fn add(&mut self, piece: Piece) -> Option<WorkerAssignment> {
        let slot_key = (piece.term, piece.worker.clone());
        let slot = self.pending.entry(slot_key.clone()).or_default();
        slot.insert(piece.index, piece);
        let record = complete(slot);
        if let Some(r) = &record {
            slot.retain(|_, p| p.version > r.version);
            if slot.is_empty() {
                self.pending.remove(&slot_key);
            }
        }
        while self.pending.len() > KEPT_TERMS {
            self.pending.pop_first();
        }
        record
    }

    /// Whether no piece is waiting.
    pub fn is_empty(&self) -> bool {
        self.pending.is_empty()
    }
}

/// The record of a slot if piece 0 and every other piece of its version are
/// there (consuming those pieces).
fn complete(slot: &mut BTreeMap<u32, Piece>) -> Option<WorkerAssignment> {
    let head = slot.get(&0)?;
    let same = |p: &Piece| {
        p.version == head.version
            && p.count == head.count
            && p.instance == head.instance
            && p.index < head.count
    };
    let matching = slot.values().filter(|p| same(p)).count();
    if matching != head.count as usize {
        return None;
    }
    let (worker, instance, version, term, count) = (
        head.worker.clone(),
        head.instance,
        head.version,
        head.term,
        head.count,
    );
    let mut partitions = Vec::new();
    for index in 0..count {
        partitions.append(&mut slot.remove(&index)?.partitions);
    }
    Some(WorkerAssignment {
        v: WIRE_VERSION,
        worker,
        instance,
        version,
        term,
        partitions,
    })
}

/// Reassembles a record from all its encoded pieces in index order (a
/// convenience for reads that fetch every piece).
pub fn assemble(pieces: impl IntoIterator<Item = Piece>) -> Option<WorkerAssignment> {
    let mut assembler = Assembler::new();
    let mut done = None;
    for piece in pieces {
        if let Some(record) = assembler.add(piece) {
            done = Some(record);
        }
    }
    done
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(n: usize, epochs: u64) -> WorkerAssignment {
        WorkerAssignment {
            v: WIRE_VERSION,
            worker: WorkerId::new("worker", 3),
            instance: InstanceId(77),
            version: 12,
            term: 4,
            partitions: (0..n)
                .map(|i| OwnedPartition {
                    partition: Partition::new([format!("p-{i:06}")]),
                    epoch: 1 + (i as u64 % epochs),
                })
                .collect(),
        }
    }

    fn round_trip(record: &WorkerAssignment, limit: usize) -> usize {
        let values = encode_pieces(record, limit).unwrap();
        for v in &values {
            assert!(v.len() <= limit, "{} > {limit}", v.len());
        }
        let pieces: Vec<Piece> = values.iter().map(|v| decode_piece(v).unwrap()).collect();
        assert_eq!(assemble(pieces).as_ref(), Some(record));
        values.len()
    }

    #[test]
    fn one_piece_when_it_fits_and_compact() {
        let r = record(1000, 1);
        let values = encode_pieces(&r, 1 << 20).unwrap();
        assert_eq!(values.len(), 1);
        let plain = crate::records::encode(&r).len();
        assert!(
            values[0].len() * 3 < plain,
            "{} vs {plain}",
            values[0].len()
        );
        assert_eq!(round_trip(&r, 1 << 20), 1);
    }

    #[test]
    fn cut_into_pieces_below_the_limit() {
        let r = record(30_000, 7);
        assert!(round_trip(&r, 16 * 1024) > 10);
        assert!(round_trip(&r, 400) > 100);
        assert_eq!(round_trip(&record(0, 1), 400), 1);
    }

    #[test]
    fn multi_level_keys_weights_and_odd_strings() {
        let mut r = record(0, 1);
        let names: [&[&str]; 8] = [
            &["orders", "1"],
            &["orders", "10"],
            &["orders", "10", "x"],
            &["orders", "2"],
            &["ordérs", "ü"],
            &["ordérs", "üü"],
            &[],
            &["a\"b\\c\n", ""],
        ];
        for (i, keys) in names.iter().enumerate() {
            r.partitions.push(OwnedPartition {
                partition: Partition::new(keys.iter().copied()).with_weight(i as u64 % 3),
                epoch: 9,
            });
        }
        round_trip(&r, 1 << 20);
        round_trip(&r, 300);
    }

    #[test]
    fn a_partition_too_large_for_one_value_is_a_typed_error() {
        let mut r = record(2, 1);
        r.partitions[1].partition.keys = vec!["x".repeat(5000)].into();
        let err = encode_pieces(&r, 1000).unwrap_err();
        assert!(err.size > 5000 && err.limit == 1000, "{err}");
        assert!(err.to_string().contains("worker-3"), "{err}");
        let err = encode_pieces(&r, 10).unwrap_err();
        assert_eq!(err.limit, 10);
    }

    #[test]
    fn the_previous_format_reads_as_one_piece() {
        let r = record(3, 2);
        let piece = decode_piece(&crate::records::encode(&r)).unwrap();
        assert_eq!((piece.index, piece.count), (0, 1));
        assert_eq!(assemble([piece]), Some(r));
    }

    #[test]
    fn assembles_only_complete_versions_in_any_order() {
        let r = record(5000, 3);
        let mut next = r.clone();
        next.version = 13;
        next.partitions.truncate(2000);
        let old: Vec<Piece> = encode_pieces(&r, 4000)
            .unwrap()
            .iter()
            .map(|v| decode_piece(v).unwrap())
            .collect();
        let new: Vec<Piece> = encode_pieces(&next, 4000)
            .unwrap()
            .iter()
            .map(|v| decode_piece(v).unwrap())
            .collect();
        assert!(old.len() > new.len() && new.len() > 2);
        let mut a = Assembler::new();
        // Last piece first, the others in any order: complete with piece 0.
        assert_eq!(a.add(old[old.len() - 1].clone()), None);
        for p in old.iter().skip(1).take(old.len() - 2) {
            assert_eq!(a.add(p.clone()), None);
        }
        assert_eq!(
            a.add(old[0].clone()),
            Some(r.clone()),
            "old version complete"
        );
        // A mix of versions never assembles.
        for p in old.iter().skip(2) {
            assert_eq!(a.add(p.clone()), None);
        }
        assert_eq!(a.add(new[1].clone()), None);
        assert_eq!(
            a.add(old[0].clone()),
            None,
            "piece 1 is of the next version"
        );
        for p in new.iter().skip(2) {
            assert_eq!(a.add(p.clone()), None);
        }
        assert_eq!(a.add(new[0].clone()), Some(next));
        assert!(a.is_empty(), "stale pieces of older versions are dropped");
    }

    #[test]
    fn malformed_pieces_are_errors() {
        let bad = [
            r#"{"v":2}"#,
            r#"{"v":3,"x":1}"#,
            r#"{"v":2,"worker":"w-1","instance":1,"version":1,"term":1,"index":1,"count":1,"keys":[],"epochs":[]}"#,
            r#"{"v":2,"worker":"w-1","instance":1,"version":1,"term":1,"index":0,"count":1,"keys":[[0,0,"a"]],"epochs":[]}"#,
            r#"{"v":2,"worker":"w-1","instance":1,"version":1,"term":1,"index":0,"count":1,"keys":[[1,0,"a"]],"epochs":[[1,1]]}"#,
            r#"{"v":2,"worker":"w-1","instance":1,"version":1,"term":1,"index":0,"count":1,"keys":[[0,0,"é"],[0,1,"a"]],"epochs":[[1,2]]}"#,
            r#"{"v":2,"worker":"w-1","instance":1,"version":1,"term":1,"index":0,"count":1,"keys":[[0,0,"a"]],"epochs":[[1,18446744073709551615],[1,2]]}"#,
            r#"{"v":2,"worker":"w-1","instance":1,"version":1,"term":1,"index":0,"count":4294967295,"keys":[],"epochs":[]}"#,
        ];
        for text in bad {
            assert!(decode_piece(text.as_bytes()).is_err(), "{text}");
        }
    }

    mod fuzz {
        use super::*;
        use proptest::prelude::*;

        fn keys() -> impl Strategy<Value = Vec<String>> {
            prop::collection::vec("[a-cé0-9\"\\\\]{0,6}", 0..4)
        }

        proptest! {
            /// Any record survives any limit that can hold one partition.
            #[test]
            fn any_record_round_trips(
                mut parts in prop::collection::vec((keys(), 0u64..4, 0u64..5), 0..60),
                sorted in any::<bool>(),
                limit in 300usize..3000,
            ) {
                if sorted {
                    parts.sort();
                }
                let mut r = record(0, 1);
                r.partitions = parts
                    .into_iter()
                    .map(|(keys, weight, epoch)| OwnedPartition {
                        partition: Partition { keys: keys.into(), weight },
                        epoch,
                    })
                    .collect();
                round_trip(&r, limit);
            }

            /// Arbitrary bytes and piece-shaped JSON never panic.
            #[test]
            fn arbitrary_values_never_panic(
                bytes in prop::collection::vec(any::<u8>(), 0..256),
                levels in any::<u32>(),
                shared in any::<u32>(),
                count in any::<u32>(),
                index in any::<u32>(),
                run in any::<u64>(),
            ) {
                let _ = decode_piece(&bytes);
                let text = format!(
                    r#"{{"v":2,"worker":"w-1","instance":1,"version":1,"term":1,"index":{index},"count":{count},"keys":[[0,0,"ab"],[{levels},{shared},"c"]],"epochs":[[1,{run}]],"weights":[[2,{run}]]}}"#
                );
                if let Ok(piece) = decode_piece(text.as_bytes()) {
                    let _ = Assembler::new().add(piece);
                }
            }
        }
    }
}
