//! The values Parti stores, and how they are encoded. **The wire contract.**
//!
//! Every value is JSON with a `"v"` field giving the format version ([`WIRE_VERSION`]).
//! A reader that meets a value it cannot decode (malformed JSON, unknown version,
//! missing fields) skips it and reports [`DecodeError`]; it never panics.
//!
//! Layout (one group = three buckets; see [`crate::layout`]):
//! - members bucket, key `worker-<n>`: [`MemberRecord`]: the stable-ID reservation
//!   and the heartbeat (renewed with compare-and-set on its revision);
//! - leader bucket, key `leader`: [`LeaderRecord`]; the revision at which the key was
//!   created is the leader's **term**;
//! - assignments bucket, key `meta`: [`AssignmentMeta`], the commit point; keys
//!   `w.<term>.<worker>`: [`WorkerAssignment`], staged per worker under the term of
//!   the leader that wrote them, so that a deposed leader can never overwrite a
//!   record of its successor. A store with a value size limit (NATS) writes a
//!   record in a compact form, cut into as many pieces as needed
//!   (`w.<term>.<worker>.<i>` for the further pieces): see [`crate::pieces`].

use crate::ids::{InstanceId, WorkerId};
use crate::partition::Partition;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use thiserror::Error;

/// The format version written in every value's `"v"` field.
pub const WIRE_VERSION: u32 = 1;

/// A store revision (NATS: the stream sequence of the entry). Revisions of one
/// bucket only grow.
pub type Revision = u64;

/// What a member says about itself.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MemberStatus {
    /// Running; owns what its applied assignment says.
    Active,
    /// Stopping gracefully: holds nothing any more and will come back soon (a
    /// rolling restart); the leader keeps its partitions for the planned-scale
    /// window.
    Stopping,
    /// Leaving for good (scale-down): holds nothing; the leader hands its
    /// partitions to the others at once.
    Leaving,
    /// Written by the leader after the member's liveness lapsed: the member's
    /// ownership lease can no longer be renewed. Only the same instance may take
    /// the record back.
    Evicted,
}

/// The value of a member key: stable-ID reservation and heartbeat in one.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberRecord {
    /// Format version.
    pub v: u32,
    /// The process holding the ID.
    pub instance: InstanceId,
    /// See [`MemberStatus`].
    pub status: MemberStatus,
    /// Version of the assignment record this worker holds exactly (its
    /// acknowledgement); `None` before its first assignment.
    pub applied: Option<u64>,
    /// Number of partitions held (informational).
    pub held: u32,
    /// Relative capacity of the worker (1 = normal).
    pub capacity: u32,
    /// The highest assignment version this process has seen, kept across its
    /// claims: committed, applied, or reported as seen by another member's
    /// record (so the knowledge outlives the member that had it). A leader
    /// that finds no commit record (or an older one than a member saw: the
    /// buckets were lost and recreated) publishes above it, so versions and
    /// epochs never go back as any worker sees them. Absent in records
    /// written before this field existed (read as 0).
    #[serde(default)]
    pub seen: u64,
}

impl MemberRecord {
    /// An `Active` record with nothing applied.
    pub fn fresh(instance: InstanceId, capacity: u32) -> Self {
        MemberRecord {
            v: WIRE_VERSION,
            instance,
            status: MemberStatus::Active,
            applied: None,
            held: 0,
            capacity,
            seen: 0,
        }
    }
}

/// The value of the leader key.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaderRecord {
    /// Format version.
    pub v: u32,
    /// The leader's stable ID.
    pub worker: WorkerId,
    /// The leader's process.
    pub instance: InstanceId,
    /// The term, once known: the revision at which the key was created. The
    /// campaign write itself cannot know it and leaves it `None`; renewals fill it.
    pub term: Option<u64>,
}

/// Why the leader published a version.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Lifecycle {
    /// First assignment of a cluster (or after a detected full restart).
    ColdStart,
    /// A new leader re-published the current assignment under its term.
    Takeover,
    /// Workers joined or left gracefully.
    PlannedScale,
    /// A worker vanished.
    Emergency,
    /// The partition list changed.
    Refresh,
    /// Second half of a two-version handoff: grants after revocations were
    /// confirmed.
    Handoff,
}

/// The commit record of an assignment version.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AssignmentMeta {
    /// Format version.
    pub v: u32,
    /// The assignment version; grows by one with every commit.
    pub version: u64,
    /// Term of the leader that committed it.
    pub term: u64,
    /// Why it was published.
    pub lifecycle: Lifecycle,
    /// For every worker that owns something: the version of its current record
    /// (`w.<term>.<worker>`). A worker missing here owns nothing.
    pub records: BTreeMap<WorkerId, u64>,
    /// Total number of partitions known to the leader (owned or not).
    pub partitions: u32,
}

impl AssignmentMeta {
    /// Whether `record` is the one this commit names for its worker: staged
    /// under this commit's term, at the version it lists for that worker. A
    /// record staged but never committed (or of another term) is not.
    pub fn names(&self, record: &WorkerAssignment) -> bool {
        record.term == self.term && self.records.get(&record.worker) == Some(&record.version)
    }
}

/// One partition held by a worker, with its fencing epoch.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OwnedPartition {
    /// The partition.
    #[serde(flatten)]
    pub partition: Partition,
    /// Fencing token: the assignment version at which this grant was made. It
    /// only grows for a given partition; pass it downstream so that writes of a
    /// previous owner can be refused.
    pub epoch: u64,
}

/// The record of one worker's share, staged at `w.<term>.<worker>`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkerAssignment {
    /// Format version.
    pub v: u32,
    /// The worker it is for.
    pub worker: WorkerId,
    /// The claim (instance id in the member record) it is addressed to. A
    /// process that claims the ID later ignores it until the leader addresses
    /// a record to its own claim, so a record can only be applied by a process
    /// the leader knew of when it wrote it.
    pub instance: InstanceId,
    /// The version at which this record was written.
    pub version: u64,
    /// Term of the leader that wrote it.
    pub term: u64,
    /// The partitions, sorted by keys.
    pub partitions: Vec<OwnedPartition>,
}

/// Largest value a decoder accepts, in bytes: 64 MiB, the most a NATS server
/// can be configured to carry in one message (`max_payload`; its default is
/// 1 MiB). A larger value cannot have been written through the store by a Parti
/// worker, so it is refused before any parsing: a hostile or corrupted value
/// cannot make a reader allocate more than a small multiple of this.
///
/// Nesting is bounded too: the JSON parser refuses values nested deeper than
/// 128 levels, so deep nesting costs neither stack nor time.
pub const MAX_VALUE_BYTES: usize = 64 * 1024 * 1024;

/// A value could not be decoded.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum DecodeError {
    /// Not JSON of the expected shape.
    #[error("malformed value: {0}")]
    Malformed(String),
    /// A format version this build does not understand.
    #[error("unknown format version {0}")]
    UnknownVersion(u32),
    /// Larger than [`MAX_VALUE_BYTES`]; refused before parsing.
    #[error("value of {size} bytes exceeds the limit of {max} bytes")]
    TooLarge {
        /// Size of the value.
        size: usize,
        /// The limit ([`MAX_VALUE_BYTES`]).
        max: usize,
    },
}

#[derive(Deserialize)]
struct VersionProbe {
    v: u32,
}

/// Encodes a record as JSON.
pub fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    // Serialising these plain structs cannot fail: every map key is a string.
    serde_json::to_vec(value).unwrap_or_default()
}

/// Decodes a record, checking its size ([`MAX_VALUE_BYTES`]) and then its
/// format version first. Never panics, whatever the bytes.
pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, DecodeError> {
    if bytes.len() > MAX_VALUE_BYTES {
        return Err(DecodeError::TooLarge {
            size: bytes.len(),
            max: MAX_VALUE_BYTES,
        });
    }
    let probe: VersionProbe =
        serde_json::from_slice(bytes).map_err(|e| DecodeError::Malformed(e.to_string()))?;
    if probe.v != WIRE_VERSION {
        return Err(DecodeError::UnknownVersion(probe.v));
    }
    serde_json::from_slice(bytes).map_err(|e| DecodeError::Malformed(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn member_record_round_trips_and_has_stable_shape() {
        let rec = MemberRecord::fresh(InstanceId(255), 2);
        let bytes = encode(&rec);
        assert_eq!(
            std::str::from_utf8(&bytes).unwrap(),
            r#"{"v":1,"instance":255,"status":"active","applied":null,"held":0,"capacity":2,"seen":0}"#
        );
        assert_eq!(decode::<MemberRecord>(&bytes), Ok(rec.clone()));
        // Records written before `seen` existed still decode (as seen 0).
        let old =
            br#"{"v":1,"instance":255,"status":"active","applied":null,"held":0,"capacity":2}"#;
        assert_eq!(decode::<MemberRecord>(old), Ok(rec));
    }

    #[test]
    fn bad_values_are_errors_not_panics() {
        assert!(matches!(
            decode::<MemberRecord>(b"not json"),
            Err(DecodeError::Malformed(_))
        ));
        assert_eq!(
            decode::<MemberRecord>(br#"{"v":9,"x":1}"#),
            Err(DecodeError::UnknownVersion(9))
        );
        assert!(matches!(
            decode::<LeaderRecord>(br#"{"v":1}"#),
            Err(DecodeError::Malformed(_))
        ));
    }

    #[test]
    fn worker_assignment_flattens_partitions() {
        let rec = WorkerAssignment {
            v: 1,
            worker: WorkerId::new("worker", 0),
            instance: InstanceId(3),
            version: 4,
            term: 2,
            partitions: vec![OwnedPartition {
                partition: Partition::new(["t", "1"]),
                epoch: 3,
            }],
        };
        let text = String::from_utf8(encode(&rec)).unwrap();
        assert!(
            text.contains(r#"{"keys":["t","1"],"weight":1,"epoch":3}"#),
            "{text}"
        );
        assert_eq!(decode::<WorkerAssignment>(text.as_bytes()), Ok(rec));
    }
}
