//! How far each partition is done: one KV entry per partition in a bucket the
//! consumer owns (never the application's stream).
//!
//! The entry holds the last stream sequence handled for the partition,
//! the fencing epoch of the owner that wrote it, and the name of the JetStream
//! consumer that owner is using (while it consumes) or `None` (once it has
//! handed the partition over cleanly). Every write is a compare-and-set on the
//! entry's revision and is refused when the stored epoch is higher than the
//! writer's: a previous owner that wakes up late cannot move the progress of a
//! partition someone else now owns.

use async_nats::jetstream::kv::{self, CreateErrorKind, Operation, UpdateErrorKind};
use bytes::Bytes;
use serde::{Deserialize, Serialize};

/// The stored progress of one partition.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct ProgressRecord {
    /// Last stream sequence handled (0: none): every message of the
    /// partition up to it is done.
    pub seq: u64,
    /// Fencing epoch of the owner that wrote the record.
    pub epoch: u64,
    /// The consumer the owner reads with, while it owns the partition.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consumer: Option<String>,
}

/// Why a progress write did not happen.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ProgressError {
    /// A later owner (higher epoch) wrote the entry.
    #[error("fenced: the progress entry belongs to epoch {stored}, above ours ({ours})")]
    Fenced { stored: u64, ours: u64 },
    /// The store did not answer as expected.
    #[error("progress store: {0}")]
    Store(String),
}

/// A read entry and the revision to compare against (0: no entry).
pub(crate) struct Current {
    pub record: ProgressRecord,
    pub revision: u64,
}

/// Reads the entry at `key`; a malformed value reads as no progress (with a
/// warning), so the partition is consumed again from its start rather than
/// skipped.
pub(crate) async fn read(store: &kv::Store, key: &str) -> Result<Current, ProgressError> {
    let entry = store
        .entry(key)
        .await
        .map_err(|e| ProgressError::Store(format!("reading {key}: {e}")))?;
    let Some(entry) = entry else {
        return Ok(Current {
            record: ProgressRecord::default(),
            revision: 0,
        });
    };
    let record = match entry.operation {
        Operation::Put => match serde_json::from_slice(&entry.value) {
            Ok(record) => record,
            Err(err) => {
                tracing::warn!(key, %err, "malformed progress entry; treated as no progress");
                ProgressRecord::default()
            }
        },
        Operation::Delete | Operation::Purge => ProgressRecord::default(),
    };
    Ok(Current {
        record,
        revision: entry.revision,
    })
}

/// One write attempt: over `current` when its revision is known (a guess
/// that costs no read), else over the entry as read now. See [`write`].
pub(crate) async fn write_over(
    store: &kv::Store,
    key: &str,
    current: Option<Current>,
    record: &ProgressRecord,
) -> Result<Option<u64>, ProgressError> {
    let current = match current {
        Some(c) if c.revision != 0 => c,
        _ => read(store, key).await?,
    };
    write(store, key, &current, record).await
}

/// Writes `record` over the entry read at `revision` (0: none), unless the
/// stored epoch is above `record.epoch`. `Ok(Some(revision))`: written;
/// `Ok(None)`: someone wrote in between (read again and retry).
pub(crate) async fn write(
    store: &kv::Store,
    key: &str,
    current: &Current,
    record: &ProgressRecord,
) -> Result<Option<u64>, ProgressError> {
    if current.record.epoch > record.epoch {
        return Err(ProgressError::Fenced {
            stored: current.record.epoch,
            ours: record.epoch,
        });
    }
    let value =
        Bytes::from(serde_json::to_vec(record).map_err(|e| ProgressError::Store(e.to_string()))?);
    if current.revision == 0 {
        return match store.create(key, value).await {
            Ok(revision) => Ok(Some(revision)),
            Err(e) if e.kind() == CreateErrorKind::AlreadyExists => Ok(None),
            Err(e) => Err(ProgressError::Store(format!("creating {key}: {e}"))),
        };
    }
    match store.update(key, value, current.revision).await {
        Ok(revision) => Ok(Some(revision)),
        Err(e) if e.kind() == UpdateErrorKind::WrongLastRevision => Ok(None),
        Err(e) => Err(ProgressError::Store(format!("updating {key}: {e}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_round_trips_and_omits_an_absent_consumer() {
        let record = ProgressRecord {
            seq: 41,
            epoch: 7,
            consumer: None,
        };
        let text = serde_json::to_string(&record).unwrap_or_default();
        assert_eq!(text, r#"{"seq":41,"epoch":7}"#);
        let back: ProgressRecord = serde_json::from_str(&text).unwrap_or_default();
        assert_eq!(back, record);
    }
}
