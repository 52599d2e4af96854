//! The traits a storage backend implements so that the `parti` driver can run the
//! protocol on it (NATS JetStream KV in `parti-nats`, in-memory in
//! `parti-testkit`; etcd, Redis or SQL are possible).
//!
//! The operations are those of the protocol, each with the consistency it needs:
//! every write that guards safety is conditional on a revision. A write whose
//! outcome is unknown (timeout) must be reported as [`BackendError::Timeout`]; the
//! driver then reconciles by reading or watching.
//!
//! Time-to-live: the members bucket keeps a key for the ID TTL after its last
//! write, the leader bucket for the election TTL; the backend is configured with
//! them when it is built. Expiry must be visible to watchers (as a removal).

use crate::ids::WorkerId;
use crate::records::{
    AssignmentMeta, DecodeError, LeaderRecord, MemberRecord, Revision, WorkerAssignment,
};
use async_trait::async_trait;
use futures_core::Stream;
use std::pin::Pin;
use std::sync::Arc;
use thiserror::Error;

/// What went wrong in a backend call.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum BackendError {
    /// A create found the key present.
    #[error("key already exists")]
    AlreadyExists,
    /// A conditional write found another revision (someone else wrote).
    #[error("revision conflict")]
    Conflict,
    /// The call timed out: it may or may not have been applied.
    #[error("operation timed out; outcome unknown")]
    Timeout,
    /// The store cannot be reached now.
    #[error("backend unavailable: {0}")]
    Unavailable(String),
    /// The store refused its configuration (e.g. a bucket exists with another
    /// configuration).
    #[error("backend misconfigured: {0}")]
    Misconfigured(String),
    /// The server refused the operation for lack of permission (e.g. the
    /// credentials may not use a bucket's subjects). Retrying does not help.
    #[error("permission denied: {0}")]
    PermissionDenied(String),
    /// Anything else.
    #[error("backend error: {0}")]
    Other(String),
}

/// A change of one key, as seen by a watcher.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Change<T> {
    /// The key now holds this value.
    Put(T),
    /// The key was deleted, purged or expired.
    Removed,
}

/// One item of the group watch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WatchEvent {
    /// A member key changed.
    Member {
        /// The worker ID (the key).
        id: WorkerId,
        /// Revision of this change.
        revision: Revision,
        /// The new value.
        change: Change<MemberRecord>,
    },
    /// The leader key changed.
    Leader {
        /// Revision of this change.
        revision: Revision,
        /// The new value.
        change: Change<LeaderRecord>,
    },
    /// The assignment commit record changed.
    Meta {
        /// Revision of this change.
        revision: Revision,
        /// The new value.
        meta: AssignmentMeta,
    },
    /// A per-worker assignment record changed (only this worker's records are
    /// delivered).
    Assignment {
        /// Revision of this change.
        revision: Revision,
        /// The record.
        record: WorkerAssignment,
    },
    /// The initial snapshot of every watched key has been delivered; what follows
    /// is live.
    CaughtUp,
    /// A value that could not be decoded was skipped.
    Skipped {
        /// Bucket of the value.
        bucket: String,
        /// Key of the value.
        key: String,
        /// Why.
        error: DecodeError,
    },
}

/// The stream a watch yields. It ends (or yields an error) when the watch broke;
/// the driver then calls [`Backend::watch`] again.
pub type WatchStream = Pin<Box<dyn Stream<Item = Result<WatchEvent, BackendError>> + Send>>;

/// What the leader reads when it takes over.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AssignmentSnapshot {
    /// The commit record and its revision, if any.
    pub meta: Option<(AssignmentMeta, Revision)>,
    /// The per-worker records staged under the meta's term whose versions the
    /// meta names.
    pub records: Vec<WorkerAssignment>,
}

/// The storage operations of the protocol. All methods are cancel-safe in the
/// sense that dropping a call leaves the store consistent (a write either
/// happened or not).
#[async_trait]
pub trait Backend: Send + Sync + 'static {
    /// Prepares the storage (creates buckets if needed, checks their
    /// configuration).
    async fn ensure_ready(&self) -> Result<(), BackendError>;

    /// Whether the connection to the store is up, if the backend can tell
    /// without a round trip. The driver polls it and turns changes into
    /// `Disconnected` / `Reconnected` events; `None` (the default) means
    /// "unknown": unreachability is then learnt from failed writes only.
    fn is_connected(&self) -> Option<bool> {
        None
    }

    /// Creates the member key `id` if it is absent (or deleted/expired).
    /// [`BackendError::AlreadyExists`] when another value is there.
    async fn create_member(
        &self,
        id: &WorkerId,
        record: &MemberRecord,
    ) -> Result<Revision, BackendError>;

    /// Writes the member key if its current revision is `expected`.
    async fn update_member(
        &self,
        id: &WorkerId,
        record: &MemberRecord,
        expected: Revision,
    ) -> Result<Revision, BackendError>;

    /// Deletes the member key if its current revision is `expected`.
    async fn delete_member(&self, id: &WorkerId, expected: Revision) -> Result<(), BackendError>;

    /// Reads a member key (used to reconcile an unknown outcome).
    async fn get_member(
        &self,
        id: &WorkerId,
    ) -> Result<Option<(MemberRecord, Revision)>, BackendError>;

    /// Creates the leader key if it is absent; the returned revision is the term.
    async fn create_leader(&self, record: &LeaderRecord) -> Result<Revision, BackendError>;

    /// Renews the leader key if its current revision is `expected`.
    async fn update_leader(
        &self,
        record: &LeaderRecord,
        expected: Revision,
    ) -> Result<Revision, BackendError>;

    /// Deletes the leader key if its current revision is `expected`.
    async fn delete_leader(&self, expected: Revision) -> Result<(), BackendError>;

    /// Writes (stages) a per-worker assignment record at
    /// `w.<record.term>.<record.worker>`, unconditionally.
    async fn put_assignment(&self, record: &WorkerAssignment) -> Result<Revision, BackendError>;

    /// Writes the commit record if its current revision is `expected` (`None`:
    /// only if absent).
    async fn commit_meta(
        &self,
        meta: &AssignmentMeta,
        expected: Option<Revision>,
    ) -> Result<Revision, BackendError>;

    /// Reads the commit record and the records it names.
    async fn load_assignments(&self) -> Result<AssignmentSnapshot, BackendError>;

    /// Removes per-worker records staged under terms other than `keep_term`
    /// (housekeeping after a takeover; failures are harmless).
    async fn remove_stale_assignments(&self, keep_term: u64) -> Result<(), BackendError>;

    /// Watches the members bucket, the leader key, the commit record and the
    /// per-worker records of `worker`: first the current value of every key, then
    /// [`WatchEvent::CaughtUp`], then live changes in revision order.
    async fn watch(&self, worker: Option<&WorkerId>) -> Result<WatchStream, BackendError>;
}

/// A shared backend is a backend: `Arc<NatsBackend>` or `Arc<dyn Backend>` can be
/// handed wherever an `impl Backend` is asked for (e.g. several managers of one
/// process on one store).
#[async_trait]
impl<B: Backend + ?Sized> Backend for Arc<B> {
    async fn ensure_ready(&self) -> Result<(), BackendError> {
        (**self).ensure_ready().await
    }

    fn is_connected(&self) -> Option<bool> {
        (**self).is_connected()
    }

    async fn create_member(
        &self,
        id: &WorkerId,
        record: &MemberRecord,
    ) -> Result<Revision, BackendError> {
        (**self).create_member(id, record).await
    }

    async fn update_member(
        &self,
        id: &WorkerId,
        record: &MemberRecord,
        expected: Revision,
    ) -> Result<Revision, BackendError> {
        (**self).update_member(id, record, expected).await
    }

    async fn delete_member(&self, id: &WorkerId, expected: Revision) -> Result<(), BackendError> {
        (**self).delete_member(id, expected).await
    }

    async fn get_member(
        &self,
        id: &WorkerId,
    ) -> Result<Option<(MemberRecord, Revision)>, BackendError> {
        (**self).get_member(id).await
    }

    async fn create_leader(&self, record: &LeaderRecord) -> Result<Revision, BackendError> {
        (**self).create_leader(record).await
    }

    async fn update_leader(
        &self,
        record: &LeaderRecord,
        expected: Revision,
    ) -> Result<Revision, BackendError> {
        (**self).update_leader(record, expected).await
    }

    async fn delete_leader(&self, expected: Revision) -> Result<(), BackendError> {
        (**self).delete_leader(expected).await
    }

    async fn put_assignment(&self, record: &WorkerAssignment) -> Result<Revision, BackendError> {
        (**self).put_assignment(record).await
    }

    async fn commit_meta(
        &self,
        meta: &AssignmentMeta,
        expected: Option<Revision>,
    ) -> Result<Revision, BackendError> {
        (**self).commit_meta(meta, expected).await
    }

    async fn load_assignments(&self) -> Result<AssignmentSnapshot, BackendError> {
        (**self).load_assignments().await
    }

    async fn remove_stale_assignments(&self, keep_term: u64) -> Result<(), BackendError> {
        (**self).remove_stale_assignments(keep_term).await
    }

    async fn watch(&self, worker: Option<&WorkerId>) -> Result<WatchStream, BackendError> {
        (**self).watch(worker).await
    }
}
