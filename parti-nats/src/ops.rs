//! The store operations on the group's buckets: create-if-absent over
//! tombstones, compare-and-set writes and deletes, the concurrent staging of
//! per-worker records, and the reads the protocol needs.

use crate::NatsBackend;
use crate::codec::{Op, decode_piece_at, operation};
use crate::errors::classify;
use async_nats::jetstream::kv::{self, Operation};
use bytes::Bytes;
use futures_util::TryStreamExt;
use parti_core::backend::{AssignmentSnapshot, BackendError, StoreReply};
use parti_core::ids::WorkerId;
use parti_core::layout::{LEADER_KEY, META_KEY, assignment_piece_key, parse_assignment_piece_key};
use parti_core::pieces::{Assembler, Piece, encode_pieces};
use parti_core::records::{
    AssignmentMeta, LeaderRecord, MemberRecord, Revision, WorkerAssignment, decode, encode,
};
use std::collections::BTreeSet;

/// How many per-worker records are staged concurrently.
const STAGING_CONCURRENCY: usize = 32;

/// How many times a create retries when the tombstone it wants to replace
/// changes under it.
const CREATE_ATTEMPTS: usize = 3;

impl NatsBackend {
    pub(crate) async fn member_create(
        &self,
        id: &WorkerId,
        record: &MemberRecord,
    ) -> Result<Revision, BackendError> {
        let stores = self.stores().await?;
        create(&stores.members, id.as_str(), encode(record).into()).await
    }

    pub(crate) async fn member_update(
        &self,
        id: &WorkerId,
        record: &MemberRecord,
        expected: Revision,
    ) -> Result<Revision, BackendError> {
        let stores = self.stores().await?;
        cas(
            &stores.members,
            id.as_str(),
            encode(record).into(),
            expected,
        )
        .await
    }

    pub(crate) async fn member_delete(
        &self,
        id: &WorkerId,
        expected: Revision,
    ) -> Result<(), BackendError> {
        let stores = self.stores().await?;
        delete(&stores.members, id.as_str(), expected).await
    }

    /// A tombstone reads as `None`; so does an undecodable value (counted and
    /// logged): the key then holds nothing this process wrote.
    ///
    /// Unlike the other reads, this one asks the stream leader (not a direct
    /// get, which any replica may answer): its callers act on what it says
    /// about one key (the lease after an unanswered renewal, a claim whose
    /// outcome is unknown, a member whose eviction failed), and a replica that
    /// lags behind, or still holds a value the leader expired, would send
    /// them the wrong way.
    pub(crate) async fn member_get(
        &self,
        id: &WorkerId,
    ) -> Result<Option<(MemberRecord, Revision)>, BackendError> {
        use async_nats::jetstream::stream::LastRawMessageErrorKind;
        let stores = self.stores().await?;
        let store = &stores.members;
        let subject = format!("{}{}", store.prefix, id.as_str());
        let message = match store.stream.get_last_raw_message_by_subject(&subject).await {
            Ok(message) => message,
            Err(e) if e.kind() == LastRawMessageErrorKind::NoMessageFound => return Ok(None),
            Err(e) => return Err(classify(&what("reading", store, id.as_str()), &e)),
        };
        if operation(Some(&message.headers)) == Op::Removed {
            return Ok(None);
        }
        match decode::<MemberRecord>(&message.payload) {
            Ok(record) => Ok(Some((record, message.sequence))),
            Err(err) => {
                self.note_skipped(&store.name, id.as_str(), &err);
                Ok(None)
            }
        }
    }

    pub(crate) async fn leader_create(
        &self,
        record: &LeaderRecord,
    ) -> Result<Revision, BackendError> {
        let stores = self.stores().await?;
        create(&stores.leader, LEADER_KEY, encode(record).into()).await
    }

    pub(crate) async fn leader_update(
        &self,
        record: &LeaderRecord,
        expected: Revision,
    ) -> Result<Revision, BackendError> {
        let stores = self.stores().await?;
        cas(&stores.leader, LEADER_KEY, encode(record).into(), expected).await
    }

    pub(crate) async fn leader_delete(&self, expected: Revision) -> Result<(), BackendError> {
        let stores = self.stores().await?;
        delete(&stores.leader, LEADER_KEY, expected).await
    }

    /// The values of `record`'s pieces, with their keys (see
    /// [`parti_core::pieces`]), each at most [`NatsBackend::value_limit`]
    /// bytes.
    fn record_pieces(
        &self,
        record: &WorkerAssignment,
    ) -> Result<Vec<(String, Bytes)>, BackendError> {
        let pieces =
            encode_pieces(record, self.value_limit()).map_err(|e| BackendError::TooLarge {
                what: format!(
                    "a piece of the assignment record of {} (version {}, {} partitions)",
                    record.worker,
                    record.version,
                    record.partitions.len()
                ),
                size: e.size,
                limit: e.limit,
            })?;
        Ok((0u32..)
            .zip(pieces)
            .map(|(i, v)| {
                (
                    assignment_piece_key(record.term, &record.worker, i),
                    v.into(),
                )
            })
            .collect())
    }

    async fn piece_put(&self, key: &str, value: Bytes) -> Result<Revision, BackendError> {
        let stores = self.stores().await?;
        let store = &stores.assignments;
        store
            .put(key, value)
            .await
            .map_err(|e| classify(&what("writing", store, key), &e))
    }

    /// Reads the record of `worker` staged under `term`: piece 0, then the
    /// others it announces. `None` (with a warning or a skip) when a piece is
    /// missing, undecodable or of another version.
    pub(crate) async fn record_get(
        &self,
        store: &kv::Store,
        term: u64,
        worker: &parti_core::ids::WorkerId,
    ) -> Result<Option<WorkerAssignment>, BackendError> {
        let Some(head) = self.piece_get(store, term, worker, 0).await? else {
            return Ok(None);
        };
        let (version, count) = (head.version, head.count);
        let mut assembler = Assembler::new();
        let mut record = assembler.add(head);
        for index in 1..count {
            let Some(piece) = self.piece_get(store, term, worker, index).await? else {
                return Ok(None);
            };
            if piece.version != version {
                tracing::warn!(
                    bucket = %store.name, %worker, term, index, found = piece.version, expected = version,
                    "a piece of the record is of another version; left out"
                );
                return Ok(None);
            }
            record = assembler.add(piece);
        }
        Ok(record)
    }

    async fn piece_get(
        &self,
        store: &kv::Store,
        term: u64,
        worker: &parti_core::ids::WorkerId,
        index: u32,
    ) -> Result<Option<Piece>, BackendError> {
        let key = assignment_piece_key(term, worker, index);
        let entry = store
            .entry(key.as_str())
            .await
            .map_err(|e| classify(&what("reading", store, &key), &e))?;
        let Some(e) = entry.filter(|e| e.operation == Operation::Put) else {
            tracing::warn!(bucket = %store.name, key, "record piece named by meta is missing");
            return Ok(None);
        };
        match decode_piece_at(&key, &e.value) {
            Ok(piece) => Ok(Some(piece)),
            Err(err) => {
                self.note_skipped(&store.name, &key, &err);
                Ok(None)
            }
        }
    }

    /// `expected == None` is a create: [`BackendError::AlreadyExists`] if a meta
    /// record is there.
    pub(crate) async fn meta_commit(
        &self,
        meta: &AssignmentMeta,
        expected: Option<Revision>,
    ) -> Result<Revision, BackendError> {
        let stores = self.stores().await?;
        let value: Bytes = encode(meta).into();
        let limit = self.value_limit();
        if value.len() > limit {
            return Err(BackendError::TooLarge {
                what: format!(
                    "the commit record of version {} ({} workers)",
                    meta.version,
                    meta.records.len()
                ),
                size: value.len(),
                limit,
            });
        }
        match expected {
            None => create(&stores.assignments, META_KEY, value).await,
            Some(rev) => cas(&stores.assignments, META_KEY, value, rev).await,
        }
    }

    /// Records that are missing, undecodable, or of another version than the
    /// meta names are left out (with a warning). An undecodable `meta` is an
    /// error: treating it as absent would let a new leader start from nothing
    /// over a record it cannot read (e.g. a newer wire version).
    pub(crate) async fn assignments_load(&self) -> Result<AssignmentSnapshot, BackendError> {
        let stores = self.stores().await?;
        let store = &stores.assignments;
        let entry = store
            .entry(META_KEY)
            .await
            .map_err(|e| classify(&what("reading", store, META_KEY), &e))?;
        let (meta, meta_rev) = match entry {
            Some(e) if e.operation == Operation::Put => match decode::<AssignmentMeta>(&e.value) {
                Ok(meta) => (meta, e.revision),
                Err(err) => {
                    self.note_skipped(&store.name, META_KEY, &err);
                    return Err(BackendError::Other(format!(
                        "assignment meta record in {} at revision {} cannot be decoded: {err}",
                        store.name, e.revision
                    )));
                }
            },
            _ => return Ok(AssignmentSnapshot::default()),
        };
        let mut records = Vec::with_capacity(meta.records.len());
        for (worker, version) in &meta.records {
            match self.record_get(store, meta.term, worker).await? {
                Some(record) if record.version == *version => records.push(record),
                Some(record) => tracing::warn!(
                    bucket = %store.name, %worker, found = record.version, expected = version,
                    "record version differs from the one meta names; left out"
                ),
                None => {}
            }
        }
        Ok(AssignmentSnapshot {
            meta: Some((meta, meta_rev)),
            records,
        })
    }

    /// Purges (removes outright, without markers) every `w.<t>.*` record with
    /// `t != keep_term`.
    pub(crate) async fn assignments_prune(&self, keep_term: u64) -> Result<(), BackendError> {
        let stores = self.stores().await?;
        let store = &stores.assignments;
        let op = format!("listing records of {}", store.name);
        let info = store
            .stream
            .info_with_subjects(format!("{}w.>", store.prefix))
            .await
            .map_err(|e| classify(&op, &e))?;
        let subjects: Vec<(String, usize)> =
            info.try_collect().await.map_err(|e| classify(&op, &e))?;
        let stale: BTreeSet<u64> = subjects
            .iter()
            .filter_map(|(subject, _)| subject.strip_prefix(store.prefix.as_str()))
            .filter_map(parse_assignment_piece_key)
            .map(|(term, _, _)| term)
            .filter(|term| *term != keep_term)
            .collect();
        for term in stale {
            let filter = format!("{}w.{term}.>", store.prefix);
            store
                .stream
                .purge()
                .filter(filter)
                .await
                .map_err(|e| classify(&format!("purging term {term} in {}", store.name), &e))?;
            tracing::debug!(bucket = %store.name, term, "purged stale assignment records");
        }
        Ok(())
    }

    /// Writes every piece of every record (a few at a time); fails with the
    /// first failure, or before writing anything if a record cannot be cut
    /// into pieces small enough ([`BackendError::TooLarge`]).
    pub(crate) async fn stage(
        &self,
        records: &[WorkerAssignment],
    ) -> Result<StoreReply, BackendError> {
        let mut writes = Vec::with_capacity(records.len());
        for record in records {
            writes.extend(self.record_pieces(record)?);
        }
        let mut last = None;
        for chunk in writes.chunks(STAGING_CONCURRENCY) {
            let staged = futures_util::future::join_all(
                chunk
                    .iter()
                    .map(|(key, value)| self.piece_put(key, value.clone())),
            )
            .await;
            for result in staged {
                last = Some(result?);
            }
        }
        Ok(last.map_or(StoreReply::Done, StoreReply::Written))
    }
}

/// What the op is about, for error messages.
fn what(op: &str, store: &kv::Store, key: &str) -> String {
    format!("{op} {}/{key}", store.name)
}

/// Compare-and-set write: succeeds only if the key's last revision is
/// `expected` (0: the key has no entry at all).
async fn cas(
    store: &kv::Store,
    key: &str,
    value: Bytes,
    expected: Revision,
) -> Result<Revision, BackendError> {
    store
        .update(key, value, expected)
        .await
        .map_err(|e| classify(&what("updating", store, key), &e))
}

/// Create-if-absent: on a key with no entry, or whose last entry is a delete,
/// purge or expiry tombstone (replaced with a CAS on the tombstone's revision).
async fn create(store: &kv::Store, key: &str, value: Bytes) -> Result<Revision, BackendError> {
    let mut expected = 0;
    for _ in 0..CREATE_ATTEMPTS {
        match cas(store, key, value.clone(), expected).await {
            Err(BackendError::Conflict) => {}
            other => return other,
        }
        let entry = store
            .entry(key)
            .await
            .map_err(|e| classify(&what("reading", store, key), &e))?;
        expected = match entry {
            // The tombstone was removed meanwhile (marker expiry): no entry left.
            None => 0,
            Some(e) if matches!(e.operation, Operation::Delete | Operation::Purge) => e.revision,
            Some(_) => return Err(BackendError::AlreadyExists),
        };
    }
    // The key kept changing under us; someone else is writing it.
    Err(BackendError::AlreadyExists)
}

/// Delete marker, only if the key's last revision is `expected`.
async fn delete(store: &kv::Store, key: &str, expected: Revision) -> Result<(), BackendError> {
    store
        .delete_expect_revision(key, Some(expected))
        .await
        .map_err(|e| classify(&what("deleting", store, key), &e))
}
