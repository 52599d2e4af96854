//! The watch task: one at a time, feeding every watch item to the core worker
//! as an event. A broken watch is re-created after a backoff (50 ms, doubling
//! up to 1 s, reset once a watch starts); the worker learns of the break
//! (`WatchLost`) or of a watch that cannot start (`Disconnected`).

use super::Running;
use parti_core::backend::{Backend, MemberScope};
use parti_core::{Event, WorkerId};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;

impl Running {
    /// Replaces the running watch task with one for `worker`'s view, with
    /// the member keys `members` selects.
    pub(super) fn start_watch(&mut self, worker: Option<WorkerId>, members: MemberScope) {
        if let Some(task) = self.watch_task.take() {
            task.abort();
        }
        let backend = self.backend.clone();
        let events = self.events.clone();
        self.watch_task = Some(tokio::spawn(watch_loop(backend, worker, members, events)));
    }
}

/// Watches until the driver is gone (`events` closed), re-creating the watch
/// (with the same scope) whenever it breaks or cannot start.
async fn watch_loop(
    backend: Arc<dyn Backend>,
    worker: Option<WorkerId>,
    members: MemberScope,
    events: mpsc::UnboundedSender<Event>,
) {
    use futures_util::StreamExt;
    let mut backoff = Duration::from_millis(50);
    loop {
        match backend.watch(worker.as_ref(), members.clone()).await {
            Ok(mut stream) => {
                backoff = Duration::from_millis(50);
                while let Some(item) = stream.next().await {
                    match item {
                        Ok(item) => {
                            trace_item(&item);
                            if events.send(Event::Watch(item)).is_err() {
                                return;
                            }
                        }
                        Err(e) => {
                            tracing::warn!(error = %e, "watch broke; re-creating it");
                            break;
                        }
                    }
                }
                if events.send(Event::WatchLost).is_err() {
                    return;
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot start the watch; retrying");
                if events.send(Event::Disconnected).is_err() {
                    return;
                }
            }
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(1));
    }
}

/// One trace line per watch item: which key changed, at which revision.
fn trace_item(item: &parti_core::backend::WatchEvent) {
    use parti_core::backend::{Change, WatchEvent as W};
    if !tracing::enabled!(tracing::Level::TRACE) {
        return;
    }
    match item {
        W::Member {
            id,
            revision,
            change,
        } => {
            let status = match change {
                Change::Put(r) => format!("{:?}", r.status),
                Change::Removed => "removed".into(),
            };
            tracing::trace!(member = %id, ?revision, status, "watch: member");
        }
        W::Leader { revision, .. } => tracing::trace!(?revision, "watch: leader key"),
        W::Meta { revision, meta } => {
            tracing::trace!(?revision, version = meta.version, "watch: commit record")
        }
        W::Assignment { revision, record } => {
            tracing::trace!(?revision, version = record.version, "watch: own assignment")
        }
        W::CaughtUp => tracing::trace!("watch: caught up"),
        W::Skipped { key, .. } => tracing::trace!(key, "watch: skipped"),
    }
}
