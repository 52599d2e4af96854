//! Turning the core worker's notifications into what the outside sees: the
//! views of the manager handle, metrics, tracing (and the span's fields), and
//! hook calls. A changed assignment is queued on the assignment lane (unless
//! the worker already failed); state changes, degraded alerts and errors go to
//! the slow lane.
//! Nothing here waits on application code.

use super::Running;
use super::hooks::{HookCall, LaneCall};
use crate::Error;
use crate::view::Assignment;
use parti_core::{Notification, State};

impl Running {
    pub(super) async fn notify(&mut self, notification: Notification) {
        let span = tracing::Span::current();
        match notification {
            Notification::StateChanged { from, to } => {
                tracing::info!(%from, %to, "state changed");
                self.metrics.state_changed(from, to);
                self.shared.state.send_replace(to);
                let _ = self.hook_calls.send(HookCall::State(from, to));
            }
            Notification::IdChanged { id } => {
                if let Some(id) = &id {
                    span.record("worker_id", id.as_str());
                    tracing::info!(worker_id = %id, "claimed a stable ID");
                } else {
                    tracing::warn!("lost the stable ID");
                }
                self.shared.worker_id.send_replace(id);
            }
            Notification::AssignmentChanged {
                added,
                removed,
                version,
            } => {
                tracing::info!(
                    added = added.len(),
                    removed = removed.len(),
                    version,
                    "assignment changed"
                );
                let view = Assignment {
                    version: self.worker.assignment_version(),
                    partitions: self.worker.assignment(),
                };
                self.metrics
                    .assignment_changed(&view, added.len(), removed.len());
                self.shared.assignment.send_replace(view);
                // On its own task; the renewal confirming it waits for it.
                if !self.failed {
                    self.lane.push_back(LaneCall::Assignment {
                        added,
                        removed,
                        version,
                    });
                    self.start_lane();
                }
            }
            Notification::LeadershipChanged { leader, term } => {
                tracing::info!(leader, term, "leadership changed");
                self.metrics.leadership_changed(leader);
                self.shared.leader.send_replace(leader);
            }
            Notification::Published {
                version,
                granted,
                revoked,
                lifecycle,
                handoff_pending,
            } => {
                tracing::info!(
                    version,
                    granted,
                    revoked,
                    ?lifecycle,
                    "published an assignment"
                );
                self.metrics.published(lifecycle, handoff_pending);
            }
            Notification::DegradedAlert { level, elapsed } => {
                tracing::warn!(?level, ?elapsed, "still degraded");
                self.metrics.degraded_alert(level);
                let _ = self
                    .hook_calls
                    .send(HookCall::DegradedAlert(level, elapsed));
            }
            Notification::Error(message) => {
                tracing::warn!(%message, "worker error");
                let error = match self.source_error.take() {
                    Some(e) if message == format!("partition source failed: {e}") => {
                        Error::Source(e)
                    }
                    _ => Error::Protocol(message),
                };
                let _ = self.hook_calls.send(HookCall::Error(error));
            }
            Notification::Fatal(e) => {
                tracing::error!(error = %e, "worker stopped on a fatal error");
                let error = Error::IdRangeExhausted(e);
                self.shared.set_fatal(error.clone());
                let _ = self.hook_calls.send(HookCall::Error(error));
            }
            Notification::Stopped => {
                tracing::info!("stopped");
                self.shared.state.send_replace(State::Shutdown);
            }
        }
    }
}
