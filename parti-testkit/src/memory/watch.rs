//! The watch side of [`MemoryBackend`](super::MemoryBackend): one bounded queue
//! per watch, filled under the store lock (so a watch sees every change in
//! revision order, with no gap and no duplicate), drained by the stream, and
//! gated by the reachability switch of the handle that opened it.

use futures_core::Stream;
use parti_core::backend::{BackendError, WatchEvent};
use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};
use std::task::{Context, Poll, Waker};

/// Locks a mutex, ignoring poisoning: every critical section of this module
/// leaves its data consistent, so a panic elsewhere cannot break it.
pub(super) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The connection of one handle to the shared store: while it is cut, calls
/// fail and the handle's watches hold their events back.
#[derive(Debug)]
pub(super) struct Link {
    reachable: AtomicBool,
    /// The queues of the watches opened through this handle, to wake them on
    /// reconnect.
    queues: Mutex<Vec<Weak<WatchQueue>>>,
}

impl Link {
    /// A reachable link.
    pub(super) fn new() -> Self {
        Link {
            reachable: AtomicBool::new(true),
            queues: Mutex::new(Vec::new()),
        }
    }

    /// Whether the store can be reached through this link.
    pub(super) fn is_reachable(&self) -> bool {
        self.reachable.load(Ordering::SeqCst)
    }

    /// Cuts or restores the link. Restoring it wakes every watch opened
    /// through it so that they deliver what they buffered.
    pub(super) fn set_reachable(&self, reachable: bool) {
        self.reachable.store(reachable, Ordering::SeqCst);
        if reachable {
            let queues: Vec<Arc<WatchQueue>> = {
                let mut list = lock(&self.queues);
                list.retain(|q| q.strong_count() > 0);
                list.iter().filter_map(Weak::upgrade).collect()
            };
            for queue in queues {
                queue.wake();
            }
        }
    }

    /// Remembers a watch opened through this link.
    pub(super) fn register(&self, queue: &Arc<WatchQueue>) {
        let mut list = lock(&self.queues);
        list.retain(|q| q.strong_count() > 0);
        list.push(Arc::downgrade(queue));
    }
}

#[derive(Debug)]
struct QueueState {
    items: VecDeque<WatchEvent>,
    /// Most events the queue may hold before the watch is declared lagging.
    limit: usize,
    /// The consumer fell too far behind: the buffered events were dropped and
    /// the stream yields one error, then ends.
    lagged: bool,
    lag_reported: bool,
    /// The store is gone: the stream ends once the buffer is drained.
    closed: bool,
    waker: Option<Waker>,
}

/// The buffer between the store and one watch stream.
#[derive(Debug)]
pub(super) struct WatchQueue {
    state: Mutex<QueueState>,
}

impl WatchQueue {
    /// A queue holding the initial snapshot (ending with `CaughtUp`) that
    /// accepts `capacity` more events before the watch counts as lagging.
    pub(super) fn new(initial: Vec<WatchEvent>, capacity: usize) -> Arc<Self> {
        let limit = initial.len().saturating_add(capacity.max(1));
        Arc::new(WatchQueue {
            state: Mutex::new(QueueState {
                items: initial.into(),
                limit,
                lagged: false,
                lag_reported: false,
                closed: false,
                waker: None,
            }),
        })
    }

    /// Appends live events (in revision order).
    pub(super) fn push_all(&self, events: impl IntoIterator<Item = WatchEvent>) {
        let waker = {
            let mut st = lock(&self.state);
            if st.lagged || st.closed {
                return;
            }
            let mut any = false;
            for event in events {
                any = true;
                if st.items.len() >= st.limit {
                    st.lagged = true;
                    st.items = VecDeque::new();
                    break;
                }
                st.items.push_back(event);
            }
            if !any {
                return;
            }
            st.waker.take()
        };
        if let Some(waker) = waker {
            waker.wake();
        }
    }

    /// Marks the store as gone; the stream ends after what it buffered.
    pub(super) fn close(&self) {
        let waker = {
            let mut st = lock(&self.state);
            st.closed = true;
            st.waker.take()
        };
        if let Some(waker) = waker {
            waker.wake();
        }
    }

    fn wake(&self) {
        let waker = lock(&self.state).waker.take();
        if let Some(waker) = waker {
            waker.wake();
        }
    }
}

/// The stream returned by [`MemoryBackend::watch`](super::MemoryBackend).
pub(super) struct MemoryWatch {
    queue: Arc<WatchQueue>,
    link: Arc<Link>,
    ended: bool,
}

impl MemoryWatch {
    pub(super) fn new(queue: Arc<WatchQueue>, link: Arc<Link>) -> Self {
        MemoryWatch {
            queue,
            link,
            ended: false,
        }
    }
}

impl Stream for MemoryWatch {
    type Item = Result<WatchEvent, BackendError>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        if this.ended {
            return Poll::Ready(None);
        }
        let mut st = lock(&this.queue.state);
        // Checked under the queue lock: `Link::set_reachable(true)` stores the
        // flag before it takes this lock to wake us, so no wake-up is lost.
        if !this.link.is_reachable() {
            st.waker = Some(cx.waker().clone());
            return Poll::Pending;
        }
        if let Some(event) = st.items.pop_front() {
            return Poll::Ready(Some(Ok(event)));
        }
        if st.lagged {
            if !st.lag_reported {
                st.lag_reported = true;
                return Poll::Ready(Some(Err(BackendError::Other(
                    "memory backend: watch fell too far behind and was dropped; watch again".into(),
                ))));
            }
            this.ended = true;
            return Poll::Ready(None);
        }
        if st.closed {
            this.ended = true;
            return Poll::Ready(None);
        }
        st.waker = Some(cx.waker().clone());
        Poll::Pending
    }
}
