//! Running application hooks. No hook runs on the driver task: each call runs
//! on a task of its own, in one of two lanes that keep the calls in order:
//!
//! - the *assignment lane* runs `on_assignment_changed`, one call at a time,
//!   each bounded by `hook_budget`. While it is busy, a renewal that would
//!   change the member record is held (see [`super::renewals`]). A call that
//!   overruns its budget is fatal and nothing more is written: the lease runs
//!   out;
//! - the *slow lane* runs `on_state_changed`, `on_degraded_alert` and
//!   `on_error`, in order, and may be slow.
//!
//! A panic in any of them is caught and is fatal: the error is handed to
//! `on_error` on the assignment lane (awaited within the budget, so the
//! application learns it lost everything before the release is confirmed),
//! then the worker stops gracefully (partitions and ID given up).

use super::{Internal, Running};
use crate::Error;
use crate::hooks::Hooks;
use parti_core::records::OwnedPartition;
use parti_core::{AlertLevel, Event, State, StopMode};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::Instant;

/// Calls to the slow hooks, run in order on their own task.
pub(super) enum HookCall {
    State(State, State),
    DegradedAlert(AlertLevel, Duration),
    Error(Error),
}

/// A call waiting on the assignment lane.
pub(super) enum LaneCall {
    Assignment {
        added: Vec<OwnedPartition>,
        removed: Vec<OwnedPartition>,
        version: u64,
    },
    /// `on_error` with the fatal error, before the worker gives up.
    Fatal(Error),
}

/// The call running on the assignment lane.
pub(super) struct LaneTask {
    hook: &'static str,
    pub(super) handle: JoinHandle<()>,
    pub(super) deadline: Instant,
    /// Whether it is the fatal `on_error` call.
    fatal: bool,
}

/// How a fatal application failure ends the worker.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Ending {
    /// The failing code is no longer running: report, then stop gracefully.
    Stop,
    /// It may still be running: confirm nothing, write nothing, end now.
    Abandon,
}

/// Waits for the running lane call (never, if none runs); `Err` carries a
/// panic message.
pub(super) async fn lane_join(task: Option<&mut LaneTask>) -> Result<(), String> {
    match task {
        Some(t) => match (&mut t.handle).await {
            Ok(()) => Ok(()),
            Err(e) => Err(join_error_message(e)),
        },
        None => std::future::pending().await,
    }
}

pub(super) fn join_error_message(e: tokio::task::JoinError) -> String {
    if !e.is_panic() {
        return "the task was cancelled".into();
    }
    let payload = e.into_panic();
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "(non-string panic payload)".into()
    }
}

/// Runs application code on a task of its own; `Err` carries a panic message.
async fn guarded<T: Send + 'static>(
    future: impl Future<Output = T> + Send + 'static,
) -> Result<T, String> {
    tokio::spawn(future).await.map_err(join_error_message)
}

pub(super) async fn run_slow_hooks(
    hooks: Arc<dyn Hooks>,
    mut calls: mpsc::UnboundedReceiver<HookCall>,
    internal: mpsc::UnboundedSender<Internal>,
) {
    let mut state_broken = false;
    let mut alert_broken = false;
    let mut error_broken = false;
    while let Some(call) = calls.recv().await {
        let hooks = hooks.clone();
        let (hook, result) = match call {
            HookCall::State(_, _) if state_broken => continue,
            HookCall::DegradedAlert(_, _) if alert_broken => continue,
            HookCall::Error(_) if error_broken => continue,
            HookCall::State(from, to) => (
                "on_state_changed",
                guarded(async move { hooks.on_state_changed(from, to).await }).await,
            ),
            HookCall::DegradedAlert(level, degraded_for) => (
                "on_degraded_alert",
                guarded(async move { hooks.on_degraded_alert(level, degraded_for).await }).await,
            ),
            HookCall::Error(e) => (
                "on_error",
                guarded(async move { hooks.on_error(&e).await }).await,
            ),
        };
        if let Err(message) = result {
            // A hook that panicked is not called again (on_error in
            // particular is not called about its own panic).
            match hook {
                "on_state_changed" => state_broken = true,
                "on_degraded_alert" => alert_broken = true,
                _ => error_broken = true,
            }
            let _ = internal.send(Internal::Panicked { hook, message });
        }
    }
}

impl Running {
    /// Whether an assignment-hook call runs or waits.
    pub(super) fn lane_busy(&self) -> bool {
        self.lane_task.is_some() || !self.lane.is_empty()
    }

    /// Starts the next lane call if none runs.
    pub(super) fn start_lane(&mut self) {
        if self.lane_task.is_some() {
            return;
        }
        let Some(call) = self.lane.pop_front() else {
            return;
        };
        let hooks = self.hooks.clone();
        let deadline = Instant::now() + self.hook_budget;
        self.lane_task = Some(match call {
            LaneCall::Assignment {
                added,
                removed,
                version,
            } => LaneTask {
                hook: "on_assignment_changed",
                handle: tokio::spawn(async move {
                    hooks.on_assignment_changed(&added, &removed, version).await
                }),
                deadline,
                fatal: false,
            },
            LaneCall::Fatal(error) => LaneTask {
                hook: "on_error",
                handle: tokio::spawn(async move { hooks.on_error(&error).await }),
                deadline,
                fatal: true,
            },
        });
    }

    /// The running lane call returned (`Err`: it panicked).
    pub(super) fn on_lane_done(&mut self, joined: Result<(), String>) {
        let Some(task) = self.lane_task.take() else {
            return;
        };
        match joined {
            Ok(()) if task.fatal => self.give_up(),
            Ok(()) => {
                self.start_lane();
                self.release_held();
            }
            Err(message) if task.fatal => {
                tracing::error!(%message, "on_error panicked while reporting a fatal error");
                self.give_up();
            }
            Err(message) => self.fail(
                Error::HookPanicked {
                    hook: task.hook,
                    message,
                },
                Ending::Stop,
            ),
        }
    }

    /// The running lane call overran its budget.
    pub(super) fn on_lane_overrun(&mut self) {
        let Some(task) = self.lane_task.take() else {
            return;
        };
        // Cancels an async hook at its next await; one blocking its thread
        // runs on, which is why nothing is confirmed from here on.
        task.handle.abort();
        let error = Error::HookTimedOut {
            hook: task.hook,
            budget: self.hook_budget,
        };
        if task.fatal {
            tracing::error!(error = %error, "on_error overran its budget while reporting a fatal error");
            self.abandoned = true;
            self.held = None;
            return;
        }
        self.fail(error, Ending::Abandon);
    }

    /// A fatal application failure: report it and end the worker.
    pub(super) fn fail(&mut self, error: Error, ending: Ending) {
        if self.failed {
            tracing::error!(error = %error, "application failure after a fatal one");
            if ending == Ending::Abandon {
                self.abandoned = true;
                self.held = None;
            }
            return;
        }
        tracing::error!(error = %error, "application code failed; the worker gives up");
        self.failed = true;
        self.shared.set_fatal(error.clone());
        self.lane.clear();
        if let Some(task) = self.lane_task.take() {
            task.handle.abort();
        }
        match ending {
            Ending::Abandon => {
                let _ = self.hook_calls.send(HookCall::Error(error));
                self.abandoned = true;
                self.held = None;
            }
            Ending::Stop => {
                if matches!(
                    &error,
                    Error::HookPanicked {
                        hook: "on_error",
                        ..
                    }
                ) {
                    self.give_up();
                } else {
                    // The application learns it lost everything before the
                    // worker confirms anything.
                    self.lane.push_back(LaneCall::Fatal(error));
                    self.start_lane();
                }
            }
        }
    }

    /// After a fatal failure was reported: stop gracefully (partitions and ID
    /// given up, as `stop()` does).
    fn give_up(&mut self) {
        let now = self.now();
        self.worker.handle(Event::Stop(StopMode::Graceful), now);
        self.release_held();
    }
}
