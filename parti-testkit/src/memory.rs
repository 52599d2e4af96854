//! An in-process [`Backend`]: the store of the simulator ([`SimStore`]) behind a
//! mutex, driven by the tokio clock, so that several workers of one process
//! (the demo, fast driver tests) can run the protocol without a NATS server.
//!
//! Semantics are those of NATS KV as Parti uses it:
//! - one global revision counter; every write, delete and expiry takes the
//!   next revision;
//! - `create` succeeds only on an absent key (a deleted or expired key is
//!   absent); `update` / `delete` succeed only on the expected revision;
//! - member keys expire `worker_id_ttl` after their last write, the leader key
//!   `election_ttl` after its last write; an expiry is a removal that watchers
//!   see. A sweeper task (spawned on first use, stopped when the last handle is
//!   dropped) removes expired keys even when nobody calls the backend; every
//!   call also removes them first, so results never depend on the sweeper's
//!   timing. Time is [`tokio::time::Instant`], so `tokio::time::pause()` works;
//! - a watch delivers the current value of every watched key, then
//!   [`WatchEvent::CaughtUp`], then every later change in revision order.
//!
//! Clones of a [`MemoryBackend`] share the store and the connection: they are
//! one client. [`MemoryBackend::handle`] gives another client of the same
//! store, with its own connection that [`MemoryBackend::set_reachable`] can
//! cut (calls fail with [`BackendError::Unavailable`] and its watches hold
//! their events back until it is restored, then deliver them in order).

mod watch;

use crate::sim::{Key, SimStore, Value, watch_event, watched};
use async_trait::async_trait;
use parti_core::Config;
use parti_core::WorkerId;
use parti_core::backend::{
    Backend, BackendError, MemberScope, StoreOp, StoreReply, WatchEvent, WatchStream,
};
use parti_core::records::{LeaderRecord, MemberRecord, Revision};
use std::fmt;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use watch::{Link, MemoryWatch, WatchQueue, lock};

/// How many live events a watch buffers, by default, before it is declared
/// lagging (it then yields an error and ends, and the driver watches again).
pub const DEFAULT_WATCH_CAPACITY: usize = 100_000;

/// An in-memory [`Backend`] (see the [module docs](self)). Cloning is cheap;
/// clones share the store and the connection switch.
///
/// ```
/// use parti_core::backend::{BackendError, BackendExt};
/// use parti_core::records::MemberRecord;
/// use parti_core::{Config, InstanceId, WorkerId};
/// use parti_testkit::MemoryBackend;
///
/// # tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap().block_on(async {
/// let store = MemoryBackend::new(&Config::for_tests());
/// let (a, b) = (store.handle(), store.handle()); // two workers' clients
/// let id = WorkerId::new("worker", 0);
/// let rev = a.create_member(&id, &MemberRecord::fresh(InstanceId(1), 1)).await?;
/// assert_eq!(b.get_member(&id).await?.map(|(_, r)| r), Some(rev));
///
/// a.set_reachable(false); // worker `a` is cut off; `b` is not
/// assert!(matches!(a.get_member(&id).await, Err(BackendError::Unavailable(_))));
/// assert_eq!(store.snapshot_members().len(), 1);
/// # Ok::<(), BackendError>(())
/// # }).unwrap();
/// ```
#[derive(Clone)]
pub struct MemoryBackend {
    shared: Arc<Shared>,
    link: Arc<Link>,
}

/// What every handle of one store shares.
struct Shared {
    state: Mutex<State>,
    /// Time zero of the store's clock.
    epoch: Instant,
    /// Wakes the sweeper when the next expiry moved earlier, or when the store
    /// is dropped.
    sweeper_wake: Arc<Notify>,
    sweeper: Mutex<Option<JoinHandle<()>>>,
    operations: AtomicU64,
    watch_capacity: AtomicUsize,
}

struct State {
    store: SimStore,
    watchers: Vec<Watcher>,
}

struct Watcher {
    worker: Option<WorkerId>,
    members: MemberScope,
    queue: Weak<WatchQueue>,
}

/// The store's clock reading for one locked section, in ms since the epoch.
#[derive(Clone, Copy)]
struct Now {
    /// Rounded down: keys whose expiry is at or before it are removed (so a
    /// key never expires early).
    expire: u64,
    /// Rounded up: the time stamped on writes.
    write: u64,
}

impl MemoryBackend {
    /// A new, empty store whose member keys live `config.worker_id_ttl` and
    /// whose leader key lives `config.election_ttl` after their last write.
    pub fn new(config: &Config) -> Self {
        Self::with_ttls(config.worker_id_ttl, config.election_ttl)
    }

    /// A new, empty store with explicit TTLs for member keys and the leader key.
    pub fn with_ttls(member_ttl: Duration, leader_ttl: Duration) -> Self {
        let shared = Shared {
            state: Mutex::new(State {
                store: SimStore::new(millis(member_ttl), millis(leader_ttl)),
                watchers: Vec::new(),
            }),
            epoch: Instant::now(),
            sweeper_wake: Arc::new(Notify::new()),
            sweeper: Mutex::new(None),
            operations: AtomicU64::new(0),
            watch_capacity: AtomicUsize::new(DEFAULT_WATCH_CAPACITY),
        };
        MemoryBackend {
            shared: Arc::new(shared),
            link: Arc::new(Link::new()),
        }
    }

    /// Another client of the same store, with its own connection (initially
    /// reachable). Cutting it does not affect this handle, and vice versa.
    pub fn handle(&self) -> MemoryBackend {
        MemoryBackend {
            shared: Arc::clone(&self.shared),
            link: Arc::new(Link::new()),
        }
    }

    /// Cuts (`false`) or restores (`true`) this handle's connection, shared by
    /// its clones. While cut, every [`Backend`] call returns
    /// [`BackendError::Unavailable`] without touching the store, and the
    /// handle's watch streams deliver nothing; on restore they deliver what
    /// they buffered, in order (a watch that buffered more than the watch
    /// capacity yields an error and ends instead).
    pub fn set_reachable(&self, reachable: bool) {
        self.link.set_reachable(reachable);
    }

    /// Whether this handle's connection is up.
    pub fn is_reachable(&self) -> bool {
        self.link.is_reachable()
    }

    /// Sets how many live events a watch opened from now on may buffer before
    /// it is declared lagging (default [`DEFAULT_WATCH_CAPACITY`]; at least 1).
    /// Applies to every handle of the store.
    pub fn set_watch_capacity(&self, capacity: usize) {
        self.shared
            .watch_capacity
            .store(capacity.max(1), Ordering::Relaxed);
    }

    /// Number of [`Backend`] calls made on the store through any handle,
    /// including refused ones.
    pub fn operations(&self) -> u64 {
        self.shared.operations.load(Ordering::Relaxed)
    }

    /// The live member keys, by worker ID: record and revision. An inspection
    /// of the store itself: it works while this handle is cut off and is not
    /// counted in [`operations`](Self::operations).
    pub fn snapshot_members(&self) -> Vec<(WorkerId, MemberRecord, Revision)> {
        self.shared.locked(|store, _| {
            store
                .entries()
                .filter_map(|(key, entry)| match (key, &entry.value) {
                    (Key::Member(id), Value::Member(m)) => {
                        Some((id.clone(), m.clone(), entry.revision))
                    }
                    _ => None,
                })
                .collect()
        })
    }

    /// The leader key, if present: record and revision. An inspection like
    /// [`snapshot_members`](Self::snapshot_members).
    pub fn snapshot_leader(&self) -> Option<(LeaderRecord, Revision)> {
        self.shared.locked(|store, _| {
            match store.get(&Key::Leader).map(|e| (&e.value, e.revision)) {
                Some((Value::Leader(l), rev)) => Some((l.clone(), rev)),
                _ => None,
            }
        })
    }

    /// Counts the call, refuses it if the handle is cut off, and makes sure
    /// the sweeper runs.
    fn begin(&self) -> Result<(), BackendError> {
        self.shared.operations.fetch_add(1, Ordering::Relaxed);
        if !self.link.is_reachable() {
            return Err(BackendError::Unavailable(
                "memory backend: this handle is cut off from the store".into(),
            ));
        }
        self.shared.ensure_sweeper();
        Ok(())
    }
}

impl fmt::Debug for MemoryBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemoryBackend")
            .field("reachable", &self.is_reachable())
            .field("operations", &self.operations())
            .finish_non_exhaustive()
    }
}

impl Shared {
    fn now(&self) -> Now {
        let elapsed = Instant::now().saturating_duration_since(self.epoch);
        let expire = millis(elapsed);
        let partial = elapsed > Duration::from_millis(expire);
        Now {
            expire,
            write: expire.saturating_add(u64::from(partial)),
        }
    }

    /// Runs `f` on the store under the lock: expired keys are removed first,
    /// and every change is fanned out to the watchers before the lock is
    /// released. Wakes the sweeper if the next expiry moved earlier.
    fn locked<R>(&self, f: impl FnOnce(&mut SimStore, Now) -> R) -> R {
        let mut st = lock(&self.state);
        let now = self.now();
        st.store.expire(now.expire);
        st.publish();
        let before = st.store.next_expiry();
        let result = f(&mut st.store, now);
        st.publish();
        let after = st.store.next_expiry();
        drop(st);
        if let Some(at) = after
            && before.is_none_or(|b| at < b)
        {
            self.sweeper_wake.notify_one();
        }
        result
    }

    /// Opens a watch queue atomically with the snapshot it starts with.
    fn open_watch(&self, worker: Option<&WorkerId>, members: MemberScope) -> Arc<WatchQueue> {
        let capacity = self.watch_capacity.load(Ordering::Relaxed);
        let mut st = lock(&self.state);
        let now = self.now();
        st.store.expire(now.expire);
        // Earlier changes go to the earlier watchers only.
        st.publish();
        let mut initial: Vec<WatchEvent> = st
            .store
            .watch_snapshot(worker, &members)
            .into_iter()
            .map(|(_, _, item)| item)
            .collect();
        initial.push(WatchEvent::CaughtUp);
        let queue = WatchQueue::new(initial, capacity);
        st.watchers.push(Watcher {
            worker: worker.cloned(),
            members,
            queue: Arc::downgrade(&queue),
        });
        queue
    }

    /// Removes expired keys and returns when the next one is due.
    fn sweep_once(&self) -> Option<Instant> {
        self.locked(|store, _| store.next_expiry())
            .map(|at| self.epoch + Duration::from_millis(at))
    }

    /// Spawns the sweeper on the current runtime if it is not running (first
    /// use, or its runtime shut down). Outside a runtime nothing is spawned;
    /// expiry then still happens on every call.
    fn ensure_sweeper(self: &Arc<Self>) {
        let mut slot = lock(&self.sweeper);
        if slot.as_ref().is_some_and(|h| !h.is_finished()) {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let weak = Arc::downgrade(self);
        let wake = Arc::clone(&self.sweeper_wake);
        *slot = Some(runtime.spawn(sweeper(weak, wake)));
    }
}

impl Drop for Shared {
    fn drop(&mut self) {
        let st = lock(&self.state);
        for w in &st.watchers {
            if let Some(q) = w.queue.upgrade() {
                q.close();
            }
        }
        drop(st);
        // The sweeper holds only a weak reference: waking it lets it see that
        // the store is gone and return.
        self.sweeper_wake.notify_one();
    }
}

/// Removes expired keys at their due time, until the store is dropped. Holds
/// the store only while sweeping, never while sleeping.
async fn sweeper(store: Weak<Shared>, wake: Arc<Notify>) {
    loop {
        let next = match store.upgrade() {
            Some(shared) => shared.sweep_once(),
            None => return,
        };
        let woken = wake.notified();
        match next {
            Some(at) => {
                // Either the deadline or a wake-up: sweep again in both cases.
                let _ = tokio::time::timeout_at(at, woken).await;
            }
            None => woken.await,
        }
    }
}

impl State {
    /// Fans the store's new changes out to the watchers, in revision order,
    /// and forgets watchers whose stream was dropped.
    fn publish(&mut self) {
        let changes = self.store.take_changes();
        if changes.is_empty() {
            return;
        }
        self.watchers.retain(|w| w.queue.strong_count() > 0);
        for w in &self.watchers {
            let Some(queue) = w.queue.upgrade() else {
                continue;
            };
            queue.push_all(
                changes
                    .iter()
                    .filter(|c| watched(&c.key, w.worker.as_ref(), &w.members))
                    .filter_map(|c| watch_event(&c.key, c.revision, c.value.as_ref())),
            );
        }
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

#[async_trait]
impl Backend for MemoryBackend {
    fn is_connected(&self) -> Option<bool> {
        Some(self.is_reachable())
    }

    async fn ensure_ready(&self) -> Result<(), BackendError> {
        self.begin()
    }

    async fn perform(&self, op: StoreOp) -> Result<StoreReply, BackendError> {
        self.begin()?;
        Ok(self
            .shared
            .locked(|store, now| store.apply(op, now.write))?)
    }

    async fn watch(
        &self,
        worker: Option<&WorkerId>,
        members: MemberScope,
    ) -> Result<WatchStream, BackendError> {
        self.begin()?;
        let queue = self.shared.open_watch(worker, members);
        self.link.register(&queue);
        Ok(Box::pin(MemoryWatch::new(queue, Arc::clone(&self.link))))
    }
}
