//! From raw KV entries to [`WatchEvent`]s: operation headers, key checks, value
//! decoding. Undecodable values become [`WatchEvent::Skipped`] (and a warning,
//! and a tick of the skip counter) — never a panic, never the end of a watch.

use async_nats::HeaderMap;
use parti_core::backend::{Change, WatchEvent};
use parti_core::ids::WorkerId;
use parti_core::layout::{LEADER_KEY, META_KEY, parse_assignment_piece_key};
use parti_core::pieces::{Assembler, Piece, decode_piece};
use parti_core::records::{
    AssignmentMeta, DecodeError, LeaderRecord, MemberRecord, Revision, decode,
};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// Header with the KV operation of a write (`DEL`, `PURGE`; absent or `PUT` for a put).
const KV_OPERATION: &str = "KV-Operation";
/// Header the server puts on the markers it writes when a key expires or is removed.
const MARKER_REASON: &str = "Nats-Marker-Reason";

/// What a KV entry says about its key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Op {
    /// A value.
    Put,
    /// A delete or purge marker, or an expiry marker: the key is gone.
    Removed,
}

/// Reads the operation from a message's headers, like the KV layer of the server
/// and the clients do: `KV-Operation: DEL|PURGE`, or a server marker
/// (`Nats-Marker-Reason: MaxAge|Purge|Remove`).
pub(crate) fn operation(headers: Option<&HeaderMap>) -> Op {
    let Some(headers) = headers else {
        return Op::Put;
    };
    if let Some(op) = headers.get(KV_OPERATION) {
        return match op.as_str() {
            "DEL" | "PURGE" => Op::Removed,
            _ => Op::Put,
        };
    }
    if headers.get(MARKER_REASON).is_some() {
        return Op::Removed;
    }
    Op::Put
}

/// Which sub-watch an entry came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Source {
    /// The members bucket.
    Members,
    /// The leader bucket.
    Leader,
    /// The assignments bucket (`meta` and this worker's records).
    Assignments,
}

/// Turns entries into events and counts what it skips. Pieces of
/// assignment records are collected until a record is complete (see
/// [`parti_core::pieces`]).
#[derive(Clone, Debug)]
pub(crate) struct Decoder {
    worker_prefix: String,
    skipped: Arc<AtomicU64>,
    assembler: Assembler,
}

impl Decoder {
    pub(crate) fn new(worker_prefix: String, skipped: Arc<AtomicU64>) -> Self {
        Decoder {
            worker_prefix,
            skipped,
            assembler: Assembler::new(),
        }
    }

    /// Records a skipped value: counter, warning, event.
    pub(crate) fn skipped(&self, bucket: &str, key: &str, error: DecodeError) -> WatchEvent {
        self.skipped.fetch_add(1, Ordering::Relaxed);
        tracing::warn!(bucket, key, %error, "skipping a value that cannot be decoded");
        WatchEvent::Skipped {
            bucket: bucket.to_string(),
            key: key.to_string(),
            error,
        }
    }

    /// Whether a members-bucket key is a worker ID of this group.
    fn member_id(&self, key: &str) -> Option<WorkerId> {
        let id = WorkerId::from_name(key);
        id.index(&self.worker_prefix).map(|_| id)
    }

    /// The event for one entry, or `None` when the entry means nothing to the
    /// protocol (e.g. removal of a stale assignment record, a piece of a
    /// record not complete yet).
    pub(crate) fn event(
        &mut self,
        source: Source,
        bucket: &str,
        key: &str,
        op: Op,
        revision: Revision,
        payload: &[u8],
    ) -> Option<WatchEvent> {
        match source {
            Source::Members => self.member_event(bucket, key, op, revision, payload),
            Source::Leader => self.leader_event(bucket, key, op, revision, payload),
            Source::Assignments => self.assignment_event(bucket, key, op, revision, payload),
        }
    }

    fn member_event(
        &self,
        bucket: &str,
        key: &str,
        op: Op,
        revision: Revision,
        payload: &[u8],
    ) -> Option<WatchEvent> {
        let Some(id) = self.member_id(key) else {
            if op == Op::Removed {
                tracing::debug!(bucket, key, "ignoring removal of a foreign key");
                return None;
            }
            let why = format!(
                "key {key:?} is not a worker ID of the form {}-<n>",
                self.worker_prefix
            );
            return Some(self.skipped(bucket, key, DecodeError::Malformed(why)));
        };
        let change = match op {
            Op::Removed => Change::Removed,
            Op::Put => match decode::<MemberRecord>(payload) {
                Ok(record) => Change::Put(record),
                Err(error) => return Some(self.skipped(bucket, key, error)),
            },
        };
        Some(WatchEvent::Member {
            id,
            revision,
            change,
        })
    }

    fn leader_event(
        &self,
        bucket: &str,
        key: &str,
        op: Op,
        revision: Revision,
        payload: &[u8],
    ) -> Option<WatchEvent> {
        if key != LEADER_KEY {
            tracing::debug!(bucket, key, "ignoring a foreign key in the leader bucket");
            return None;
        }
        let change = match op {
            Op::Removed => Change::Removed,
            Op::Put => match decode::<LeaderRecord>(payload) {
                Ok(record) => Change::Put(record),
                Err(error) => return Some(self.skipped(bucket, key, error)),
            },
        };
        Some(WatchEvent::Leader { revision, change })
    }

    fn assignment_event(
        &mut self,
        bucket: &str,
        key: &str,
        op: Op,
        revision: Revision,
        payload: &[u8],
    ) -> Option<WatchEvent> {
        if op == Op::Removed {
            if key == META_KEY {
                // WatchEvent::Meta cannot express a removal; the commit point is
                // never deleted by the protocol, so this is an operator's doing.
                tracing::warn!(
                    bucket,
                    key,
                    revision,
                    "the assignment meta record was removed"
                );
            } else {
                tracing::debug!(bucket, key, revision, "assignment record removed");
            }
            return None;
        }
        if key == META_KEY {
            return Some(match decode::<AssignmentMeta>(payload) {
                Ok(meta) => WatchEvent::Meta { revision, meta },
                Err(error) => self.skipped(bucket, key, error),
            });
        }
        match decode_piece_at(key, payload) {
            Ok(piece) => self
                .assembler
                .add(piece)
                .map(|record| WatchEvent::Assignment { revision, record }),
            Err(error) => Some(self.skipped(bucket, key, error)),
        }
    }
}

/// Decodes a piece of a per-worker record and checks that it belongs at
/// `key` (`w.<term>.<worker>` for piece 0, `w.<term>.<worker>.<index>`).
pub(crate) fn decode_piece_at(key: &str, payload: &[u8]) -> Result<Piece, DecodeError> {
    let Some((term, worker, index)) = parse_assignment_piece_key(key) else {
        return Err(DecodeError::Malformed(format!(
            "key {key:?} is not an assignment key w.<term>.<worker>[.<piece>]"
        )));
    };
    let piece = decode_piece(payload)?;
    if piece.term != term || piece.worker != worker || piece.index != index {
        return Err(DecodeError::Malformed(format!(
            "piece {} of the record for {} at term {} stored under key {key:?}",
            piece.index, piece.worker, piece.term
        )));
    }
    Ok(piece)
}

#[cfg(test)]
mod tests {
    use super::*;
    use parti_core::ids::InstanceId;
    use parti_core::layout::{assignment_piece_key, worker_assignment_key};
    use parti_core::pieces::{assemble, encode_pieces};
    use parti_core::records::{OwnedPartition, WorkerAssignment, encode};

    /// A whole record stored in one value (of either format).
    fn decode_assignment(key: &str, payload: &[u8]) -> Result<WorkerAssignment, DecodeError> {
        let piece = decode_piece_at(key, payload)?;
        assemble([piece]).ok_or_else(|| DecodeError::Malformed("not a whole record".into()))
    }

    fn decoder() -> (Decoder, Arc<AtomicU64>) {
        let counter = Arc::new(AtomicU64::new(0));
        (Decoder::new("worker".into(), counter.clone()), counter)
    }

    #[test]
    fn operation_headers() {
        assert_eq!(operation(None), Op::Put);
        let mut h = HeaderMap::new();
        h.insert(KV_OPERATION, "DEL");
        assert_eq!(operation(Some(&h)), Op::Removed);
        let mut h = HeaderMap::new();
        h.insert(MARKER_REASON, "MaxAge");
        assert_eq!(operation(Some(&h)), Op::Removed);
        let mut h = HeaderMap::new();
        h.insert("Other", "x");
        assert_eq!(operation(Some(&h)), Op::Put);
    }

    #[test]
    fn members_decode_skip_and_remove() {
        let (mut d, counter) = decoder();
        let rec = MemberRecord::fresh(InstanceId(7), 1);
        let ev = d.event(Source::Members, "b", "worker-3", Op::Put, 5, &encode(&rec));
        assert_eq!(
            ev,
            Some(WatchEvent::Member {
                id: WorkerId::new("worker", 3),
                revision: 5,
                change: Change::Put(rec)
            })
        );
        let ev = d.event(Source::Members, "b", "worker-3", Op::Removed, 6, b"");
        assert!(matches!(
            ev,
            Some(WatchEvent::Member {
                change: Change::Removed,
                ..
            })
        ));
        let ev = d.event(Source::Members, "b", "worker-3", Op::Put, 7, b"{nope");
        assert!(matches!(ev, Some(WatchEvent::Skipped { .. })));
        let ev = d.event(Source::Members, "b", "intruder", Op::Put, 8, b"{}");
        assert!(matches!(ev, Some(WatchEvent::Skipped { .. })));
        assert_eq!(
            d.event(Source::Members, "b", "intruder", Op::Removed, 9, b""),
            None
        );
        assert_eq!(counter.load(Ordering::Relaxed), 2);
    }

    #[test]
    fn assignment_key_must_match_record() {
        let rec = WorkerAssignment {
            v: 1,
            worker: WorkerId::new("worker", 1),
            instance: parti_core::InstanceId(1),
            version: 3,
            term: 9,
            partitions: vec![],
        };
        let bytes = encode(&rec);
        let key = worker_assignment_key(9, &rec.worker);
        assert_eq!(decode_assignment(&key, &bytes), Ok(rec.clone()));
        assert!(decode_assignment("w.8.worker-1", &bytes).is_err());
        assert!(decode_assignment("w.9.worker-2", &bytes).is_err());
        assert!(decode_assignment("meta", &bytes).is_err());
        assert!(decode_assignment("w.9.worker-1.1", &bytes).is_err());
        let (mut d, counter) = decoder();
        assert_eq!(
            d.event(Source::Assignments, "a", "meta", Op::Removed, 3, b""),
            None
        );
        assert_eq!(
            d.event(Source::Assignments, "a", &key, Op::Removed, 3, b""),
            None
        );
        assert!(matches!(
            d.event(Source::Assignments, "a", &key, Op::Put, 4, &bytes),
            Some(WatchEvent::Assignment { revision: 4, .. })
        ));
        assert_eq!(counter.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn a_record_in_pieces_is_delivered_once_complete() {
        let rec = WorkerAssignment {
            v: 1,
            worker: WorkerId::new("worker", 1),
            instance: InstanceId(1),
            version: 3,
            term: 9,
            partitions: (0..500)
                .map(|i| OwnedPartition {
                    partition: parti_core::Partition::new([format!("p-{i:05}")]),
                    epoch: 2,
                })
                .collect(),
        };
        let pieces = encode_pieces(&rec, 1000).unwrap();
        assert!(pieces.len() > 3);
        let (mut d, counter) = decoder();
        let last = pieces.len() - 1;
        for (i, value) in pieces.iter().enumerate().rev() {
            let key = assignment_piece_key(9, &rec.worker, i as u32);
            let ev = d.event(
                Source::Assignments,
                "a",
                &key,
                Op::Put,
                10 + i as u64,
                value,
            );
            if i == 0 {
                assert_eq!(
                    ev,
                    Some(WatchEvent::Assignment {
                        revision: 10,
                        record: rec.clone()
                    })
                );
            } else {
                assert_eq!(ev, None, "piece {i} of {last} completes nothing");
            }
        }
        // A piece under another piece's key is skipped.
        let key = assignment_piece_key(9, &rec.worker, 2);
        let ev = d.event(Source::Assignments, "a", &key, Op::Put, 30, &pieces[1]);
        assert!(matches!(ev, Some(WatchEvent::Skipped { .. })));
        assert_eq!(counter.load(Ordering::Relaxed), 1);
    }

    mod fuzz {
        use super::*;
        use parti_core::records::MAX_VALUE_BYTES;
        use proptest::prelude::*;

        fn source() -> impl Strategy<Value = Source> {
            prop::sample::select(vec![Source::Members, Source::Leader, Source::Assignments])
        }

        fn key() -> impl Strategy<Value = String> {
            prop_oneof![
                Just("meta".to_string()),
                Just("leader".to_string()),
                "worker-[0-9]{1,25}",
                "w\\.[0-9]{1,25}\\.worker-[0-9]{1,12}",
                "\\PC{0,30}",
            ]
        }

        proptest! {
            /// Whatever the key and the bytes, an entry becomes an event, a
            /// skip or nothing; never a panic.
            #[test]
            fn arbitrary_entries_never_panic(
                source in source(),
                key in key(),
                removed in any::<bool>(),
                revision in any::<u64>(),
                payload in prop::collection::vec(any::<u8>(), 0..512),
            ) {
                let (mut d, _) = decoder();
                let op = if removed { Op::Removed } else { Op::Put };
                let _ = d.event(source, "b", &key, op, revision, &payload);
                let _ = decode_assignment(&key, &payload);
            }

            /// Record-shaped JSON with extreme numbers under assignment keys.
            #[test]
            fn assignment_json_never_panics(
                term in any::<u64>(),
                version in any::<u64>(),
                key_term in any::<u64>(),
                n in 0usize..2_000,
            ) {
                let parts: Vec<String> = (0..n)
                    .map(|i| format!(r#"{{"keys":["p{i}"],"weight":{},"epoch":{version}}}"#, u64::MAX))
                    .collect();
                let text = format!(
                    r#"{{"v":1,"worker":"worker-1","instance":{version},"version":{version},"term":{term},"partitions":[{}]}}"#,
                    parts.join(",")
                );
                let key = format!("w.{key_term}.worker-1");
                let result = decode_assignment(&key, text.as_bytes());
                prop_assert_eq!(result.is_ok(), term == key_term, "{:?}", result.err());
            }
        }

        #[test]
        fn oversized_values_are_skipped() {
            let (mut d, counter) = decoder();
            let payload = vec![b' '; MAX_VALUE_BYTES + 1];
            let ev = d.event(Source::Members, "b", "worker-1", Op::Put, 1, &payload);
            assert!(matches!(
                ev,
                Some(WatchEvent::Skipped {
                    error: DecodeError::TooLarge { .. },
                    ..
                })
            ));
            assert_eq!(counter.load(Ordering::Relaxed), 1);
        }
    }
}
