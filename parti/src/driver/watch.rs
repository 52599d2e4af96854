//! The watch task: one at a time, feeding every watch item to the core worker
//! as an event. A broken watch is re-created after a backoff (50 ms, doubling
//! up to 1 s, reset once a watch starts); the worker learns of the break
//! (`WatchLost`) or of a watch that cannot start (`Disconnected`).

use super::Running;
use parti_core::backend::Backend;
use parti_core::{Event, WorkerId};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;

impl Running {
    /// Replaces the running watch task with one for `worker`'s view.
    pub(super) fn start_watch(&mut self, worker: Option<WorkerId>) {
        if let Some(task) = self.watch_task.take() {
            task.abort();
        }
        let backend = self.backend.clone();
        let events = self.events.clone();
        self.watch_task = Some(tokio::spawn(watch_loop(backend, worker, events)));
    }
}

/// Watches until the driver is gone (`events` closed), re-creating the watch
/// whenever it breaks or cannot start.
async fn watch_loop(
    backend: Arc<dyn Backend>,
    worker: Option<WorkerId>,
    events: mpsc::UnboundedSender<Event>,
) {
    use futures_util::StreamExt;
    let mut backoff = Duration::from_millis(50);
    loop {
        match backend.watch(worker.as_ref()).await {
            Ok(mut stream) => {
                backoff = Duration::from_millis(50);
                while let Some(item) = stream.next().await {
                    match item {
                        Ok(item) => {
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
