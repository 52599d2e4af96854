//! A [`Backend`] wrapper that counts what the managers ask of the store: every
//! [`Backend::perform`] call (split into writes and reads) and every event its
//! watches deliver. The same count on both backends, so the in-memory and the
//! NATS figures compare.

use futures_util::StreamExt;
use parti::WorkerId;
use parti::backend::{Backend, BackendError, MemberScope, StoreOp, StoreReply, WatchStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

/// Counts of one group of managers (one lane of the report).
#[derive(Debug, Default)]
pub struct Counters {
    writes: AtomicU64,
    reads: AtomicU64,
    watch_events: AtomicU64,
    /// Set when a `CreateLeader` through this wrapper succeeded.
    won_election: AtomicBool,
    /// Successful `CreateMember` calls (IDs claimed).
    claimed: AtomicU64,
    /// Every `CreateMember` call, won or not (ID claims sent).
    claim_attempts: AtomicU64,
}

/// A snapshot of [`Counters`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    /// Store writes (creates, updates, deletes, staged records, commits, removals).
    pub writes: u64,
    /// Store reads (member gets, assignment loads).
    pub reads: u64,
    /// Events delivered by watches.
    pub watch_events: u64,
}

impl Counts {
    /// Store operations of both kinds.
    pub fn ops(&self) -> u64 {
        self.writes + self.reads
    }

    /// Field-wise difference `self - earlier`.
    pub fn since(&self, earlier: &Counts) -> Counts {
        Counts {
            writes: self.writes.saturating_sub(earlier.writes),
            reads: self.reads.saturating_sub(earlier.reads),
            watch_events: self.watch_events.saturating_sub(earlier.watch_events),
        }
    }

    /// Field-wise sum.
    pub fn plus(&self, other: &Counts) -> Counts {
        Counts {
            writes: self.writes + other.writes,
            reads: self.reads + other.reads,
            watch_events: self.watch_events + other.watch_events,
        }
    }
}

impl Counters {
    /// The counts so far.
    pub fn snapshot(&self) -> Counts {
        Counts {
            writes: self.writes.load(Ordering::Relaxed),
            reads: self.reads.load(Ordering::Relaxed),
            watch_events: self.watch_events.load(Ordering::Relaxed),
        }
    }

    /// IDs claimed through this lane (successful `CreateMember` calls).
    pub fn claimed(&self) -> u64 {
        self.claimed.load(Ordering::Relaxed)
    }

    /// `CreateMember` calls through this lane, won or not.
    pub fn claim_attempts(&self) -> u64 {
        self.claim_attempts.load(Ordering::Relaxed)
    }

    /// Whether a manager of this lane created the leader key.
    pub fn won_election(&self) -> bool {
        self.won_election.load(Ordering::Relaxed)
    }
}

/// Wraps a backend and counts into shared [`Counters`].
pub struct CountingBackend {
    inner: Arc<dyn Backend>,
    counters: Arc<Counters>,
}

impl CountingBackend {
    /// Counts the calls made on `inner` into `counters`.
    pub fn new(inner: Arc<dyn Backend>, counters: Arc<Counters>) -> Self {
        CountingBackend { inner, counters }
    }
}

/// Whether `op` writes (staging counts one write per record).
fn writes_of(op: &StoreOp) -> (u64, u64) {
    match op {
        StoreOp::GetMember { .. } | StoreOp::LoadAssignments => (0, 1),
        StoreOp::Stage { records } => (records.len() as u64, 0),
        _ => (1, 0),
    }
}

#[async_trait::async_trait]
impl Backend for CountingBackend {
    async fn ensure_ready(&self) -> Result<(), BackendError> {
        self.inner.ensure_ready().await
    }

    fn is_connected(&self) -> Option<bool> {
        self.inner.is_connected()
    }

    async fn perform(&self, op: StoreOp) -> Result<StoreReply, BackendError> {
        let (writes, reads) = writes_of(&op);
        self.counters.writes.fetch_add(writes, Ordering::Relaxed);
        self.counters.reads.fetch_add(reads, Ordering::Relaxed);
        let campaign = matches!(op, StoreOp::CreateLeader { .. });
        let claim = matches!(op, StoreOp::CreateMember { .. });
        if claim {
            self.counters.claim_attempts.fetch_add(1, Ordering::Relaxed);
        }
        let reply = self.inner.perform(op).await;
        if campaign && reply.is_ok() {
            self.counters.won_election.store(true, Ordering::Relaxed);
        }
        if claim && reply.is_ok() {
            self.counters.claimed.fetch_add(1, Ordering::Relaxed);
        }
        reply
    }

    async fn watch(
        &self,
        worker: Option<&WorkerId>,
        members: MemberScope,
    ) -> Result<WatchStream, BackendError> {
        let stream = self.inner.watch(worker, members).await?;
        let counters = Arc::clone(&self.counters);
        Ok(Box::pin(stream.inspect(move |_| {
            counters.watch_events.fetch_add(1, Ordering::Relaxed);
        })))
    }
}
