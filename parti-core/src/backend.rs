//! The traits a storage backend implements so that the `parti` driver can run the
//! protocol on it (NATS JetStream KV in `parti-nats`, in-memory in
//! `parti-testkit`; etcd, Redis or SQL are possible).
//!
//! A backend performs the primitive operations of the protocol ([`StoreOp`]),
//! each with the consistency it needs: every write that guards safety is
//! conditional on a revision. A write whose
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
    /// A value is larger than the store accepts (NATS: the server's
    /// `max_payload`) and cannot be cut smaller. Retrying does not help; the
    /// worker reports it (the user's `on_error`).
    #[error("{what} needs {size} bytes, above the store's limit of {limit} bytes")]
    TooLarge {
        /// What could not be written.
        what: String,
        /// Its size in bytes.
        size: usize,
        /// The largest value the store accepts.
        limit: usize,
    },
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

/// Which member keys a group watch includes.
///
/// Every member renews its record each heartbeat interval, so a watch of the
/// whole members bucket in every one of N workers makes N² deliveries per
/// interval. Only two kinds of worker need every member's record: the leader
/// (it judges every member's liveness and acknowledgements) and a worker
/// choosing an ID from the roster (it needs to see which IDs are free, and
/// to wait for one on a full range; a worker that wants a given ID — a
/// preferred one, or the one it held last — creates it first, without any
/// watch, and needs the roster only if that create fails). Any other worker watches its own member key and the
/// leader's: about 2N deliveries per interval for the group. It learns
/// versions from the commit record and its own assignment records, the
/// leader from the leader key; the leader's member record keeps, in the
/// worker that is elected next, how long the old leader has been silent.
///
/// ```
/// use parti_core::backend::MemberScope;
/// use parti_core::WorkerId;
/// let (me, leader, other) = (
///     WorkerId::new("worker", 1),
///     WorkerId::new("worker", 2),
///     WorkerId::new("worker", 3),
/// );
/// let own = MemberScope::Own { leader: Some(leader.clone()) };
/// assert!(MemberScope::All.includes(&other, Some(&me)));
/// assert!(own.includes(&me, Some(&me)));
/// assert!(own.includes(&leader, Some(&me)));
/// assert!(!own.includes(&other, Some(&me)));
/// assert!(!MemberScope::Own { leader: None }.includes(&me, None));
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub enum MemberScope {
    /// Every member key of the bucket (the leader, a worker claiming an ID).
    #[default]
    All,
    /// Only the watching worker's own member key (none if the watch is for
    /// no worker) and, if given, the leader's.
    Own {
        /// The leader's worker ID, if known.
        leader: Option<WorkerId>,
    },
}

impl MemberScope {
    /// Whether a watch for `worker` with this scope includes the member key
    /// of `member`.
    pub fn includes(&self, member: &WorkerId, worker: Option<&WorkerId>) -> bool {
        match self {
            MemberScope::All => true,
            MemberScope::Own { leader } => {
                worker == Some(member) || leader.as_ref() == Some(member)
            }
        }
    }
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

/// The storage side of the protocol. A backend performs the primitive
/// [`StoreOp`]s (each with the consistency it states) and offers a watch;
/// which operations a protocol command needs, and what their results mean, is
/// decided once for every backend by [`crate::exec`]. All methods are
/// cancel-safe in the sense that dropping a call leaves the store consistent
/// (a write either happened or not).
///
/// The typed helpers of [`BackendExt`] (`create_member`, `get_member`, …)
/// call [`perform`](Backend::perform) for tools and tests.
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

    /// Performs one store operation. A write whose outcome is unknown
    /// (timeout) must fail with [`BackendError::Timeout`].
    async fn perform(&self, op: StoreOp) -> Result<StoreReply, BackendError>;

    /// Watches the member keys `members` selects (see [`MemberScope`]), the
    /// leader key, the commit record and the per-worker records of `worker`:
    /// first the current value of every key, then [`WatchEvent::CaughtUp`],
    /// then live changes in revision order.
    async fn watch(
        &self,
        worker: Option<&WorkerId>,
        members: MemberScope,
    ) -> Result<WatchStream, BackendError>;
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

    async fn perform(&self, op: StoreOp) -> Result<StoreReply, BackendError> {
        (**self).perform(op).await
    }

    async fn watch(
        &self,
        worker: Option<&WorkerId>,
        members: MemberScope,
    ) -> Result<WatchStream, BackendError> {
        (**self).watch(worker, members).await
    }
}

/// One primitive operation on the group's store.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StoreOp {
    /// Create the member key if it is absent (or deleted/expired):
    /// [`BackendError::AlreadyExists`] when another value is there.
    CreateMember {
        /// The ID.
        id: WorkerId,
        /// The record.
        record: MemberRecord,
    },
    /// Write the member key if its revision is `expected`.
    UpdateMember {
        /// The ID.
        id: WorkerId,
        /// The record.
        record: MemberRecord,
        /// Expected current revision.
        expected: Revision,
    },
    /// Delete the member key if its revision is `expected`.
    DeleteMember {
        /// The ID.
        id: WorkerId,
        /// Expected current revision.
        expected: Revision,
    },
    /// Read the member key (to reconcile an unknown outcome). A value that
    /// cannot be decoded reads as absent.
    GetMember {
        /// The ID.
        id: WorkerId,
    },
    /// Create the leader key if it is absent; the revision is the term.
    CreateLeader {
        /// The record.
        record: LeaderRecord,
    },
    /// Write the leader key if its revision is `expected`.
    UpdateLeader {
        /// The record.
        record: LeaderRecord,
        /// Expected current revision.
        expected: Revision,
    },
    /// Delete the leader key if its revision is `expected`.
    DeleteLeader {
        /// Expected current revision.
        expected: Revision,
    },
    /// Write every record at `w.<term>.<worker>`, unconditionally (the
    /// backend may write them concurrently). Succeeds only if every write
    /// did; the reply is the revision of the last one.
    Stage {
        /// The records.
        records: Vec<WorkerAssignment>,
    },
    /// Write the commit record if its revision is `expected` (`None`: only if
    /// absent).
    CommitMeta {
        /// The commit record.
        meta: AssignmentMeta,
        /// Expected current revision.
        expected: Option<Revision>,
    },
    /// Read the commit record and the records it names (see
    /// [`AssignmentMeta::names`]).
    LoadAssignments,
    /// Remove the per-worker records of every term but `keep_term`
    /// (housekeeping after a takeover; failures are harmless).
    RemoveStaleAssignments {
        /// The term whose records stay.
        keep_term: u64,
    },
}

/// The successful result of a [`StoreOp`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StoreReply {
    /// A write was applied at this revision.
    Written(Revision),
    /// A delete, an empty staging or a removal was applied.
    Done,
    /// The member key's record and revision, if present.
    Member(Option<(MemberRecord, Revision)>),
    /// The commit record and the records it names.
    Loaded(AssignmentSnapshot),
}

/// Typed calls of each [`StoreOp`] on any [`Backend`], for tools and tests.
#[async_trait]
pub trait BackendExt: Backend {
    /// [`StoreOp::CreateMember`].
    async fn create_member(
        &self,
        id: &WorkerId,
        record: &MemberRecord,
    ) -> Result<Revision, BackendError> {
        let (id, record) = (id.clone(), record.clone());
        revision(self.perform(StoreOp::CreateMember { id, record }).await?)
    }

    /// [`StoreOp::UpdateMember`].
    async fn update_member(
        &self,
        id: &WorkerId,
        record: &MemberRecord,
        expected: Revision,
    ) -> Result<Revision, BackendError> {
        let (id, record) = (id.clone(), record.clone());
        let op = StoreOp::UpdateMember {
            id,
            record,
            expected,
        };
        revision(self.perform(op).await?)
    }

    /// [`StoreOp::DeleteMember`].
    async fn delete_member(&self, id: &WorkerId, expected: Revision) -> Result<(), BackendError> {
        let id = id.clone();
        self.perform(StoreOp::DeleteMember { id, expected })
            .await
            .map(drop)
    }

    /// [`StoreOp::GetMember`].
    async fn get_member(
        &self,
        id: &WorkerId,
    ) -> Result<Option<(MemberRecord, Revision)>, BackendError> {
        match self.perform(StoreOp::GetMember { id: id.clone() }).await? {
            StoreReply::Member(found) => Ok(found),
            other => Err(unexpected(&other)),
        }
    }

    /// [`StoreOp::CreateLeader`].
    async fn create_leader(&self, record: &LeaderRecord) -> Result<Revision, BackendError> {
        let record = record.clone();
        revision(self.perform(StoreOp::CreateLeader { record }).await?)
    }

    /// [`StoreOp::UpdateLeader`].
    async fn update_leader(
        &self,
        record: &LeaderRecord,
        expected: Revision,
    ) -> Result<Revision, BackendError> {
        let record = record.clone();
        revision(
            self.perform(StoreOp::UpdateLeader { record, expected })
                .await?,
        )
    }

    /// [`StoreOp::DeleteLeader`].
    async fn delete_leader(&self, expected: Revision) -> Result<(), BackendError> {
        self.perform(StoreOp::DeleteLeader { expected })
            .await
            .map(drop)
    }

    /// [`StoreOp::Stage`] of one record.
    async fn put_assignment(&self, record: &WorkerAssignment) -> Result<Revision, BackendError> {
        let records = vec![record.clone()];
        revision(self.perform(StoreOp::Stage { records }).await?)
    }

    /// [`StoreOp::CommitMeta`].
    async fn commit_meta(
        &self,
        meta: &AssignmentMeta,
        expected: Option<Revision>,
    ) -> Result<Revision, BackendError> {
        let meta = meta.clone();
        revision(self.perform(StoreOp::CommitMeta { meta, expected }).await?)
    }

    /// [`StoreOp::LoadAssignments`].
    async fn load_assignments(&self) -> Result<AssignmentSnapshot, BackendError> {
        match self.perform(StoreOp::LoadAssignments).await? {
            StoreReply::Loaded(snapshot) => Ok(snapshot),
            other => Err(unexpected(&other)),
        }
    }

    /// [`StoreOp::RemoveStaleAssignments`].
    async fn remove_stale_assignments(&self, keep_term: u64) -> Result<(), BackendError> {
        self.perform(StoreOp::RemoveStaleAssignments { keep_term })
            .await
            .map(drop)
    }
}

impl<B: Backend + ?Sized> BackendExt for B {}

/// The revision of a write's reply.
fn revision(reply: StoreReply) -> Result<Revision, BackendError> {
    match reply {
        StoreReply::Written(revision) => Ok(revision),
        other => Err(unexpected(&other)),
    }
}

fn unexpected(reply: &StoreReply) -> BackendError {
    BackendError::Other(format!("unexpected reply from the backend: {reply:?}"))
}
