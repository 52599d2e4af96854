//! Callbacks for the application.
//!
//! Contract (application code never blocks the protocol):
//! - every hook runs on a task of its own, never on the task that renews the
//!   lease, follows the watch and runs the timers: a slow, blocked or
//!   panicking hook cannot stall the protocol;
//! - [`Hooks::on_assignment_changed`] calls run one at a time, in the order
//!   the changes happened. The worker confirms a release to the leader (the
//!   leader grants `removed` to someone else only after that confirmation)
//!   only once the call returned, so when it returns the application must have
//!   stopped work on `removed`. Start work on `added` asynchronously. Lease
//!   renewals go on while it runs. Each call has a budget (`hook_budget` in
//!   the config, by default one heartbeat interval, always short enough to fit
//!   inside the ownership lease);
//! - a call still running after its budget is **fatal**: the worker cannot
//!   know the application stopped work on `removed`, so it confirms nothing
//!   and stops renewing its member record; the leader reassigns its
//!   partitions only once its ownership lease has expired. The manager goes
//!   to `Shutdown` and reports [`Error::HookTimedOut`];
//! - a hook that panics (any of them, or the partition source) is **fatal**:
//!   the manager reports [`Error::HookPanicked`] through
//!   [`Hooks::on_error`] (awaited within the budget, so the application learns
//!   it lost every partition before anything is confirmed; not called if
//!   `on_error` itself panicked), then gives up its partitions and its ID as
//!   `stop()` does and goes to `Shutdown`. After a fatal error
//!   `on_assignment_changed` is not called again: the application must stop
//!   all partition work when it sees the fatal error (`on_error` with
//!   [`Error::is_fatal`], `state()` = `Shutdown`, or the error `stop()` /
//!   `leave()` return);
//! - [`Hooks::on_state_changed`], [`Hooks::on_degraded_alert`] and
//!   [`Hooks::on_error`] run in order on a separate lane and may be slow
//!   without delaying the protocol;
//! - [`Hooks::on_degraded_alert`] is called while the worker is `Degraded`
//!   (cut off from the store): first `alerts.info` after it entered
//!   `Degraded`, again at once each time the level rises (`alerts.warn`,
//!   `alerts.error`, `alerts.critical`), and otherwise every
//!   `alerts.interval`; never once it left `Degraded` (until the next
//!   outage). A cut outlasting the ID TTL stays `Degraded` (the ID is
//!   claimed back once the store answers), and the alerts go on;
//! - a hook must not block its thread (use `spawn_blocking` for blocking
//!   work): the budget is enforced by cancelling the hook at its next await,
//!   and on a single-threaded runtime a thread-blocking hook blocks everything.

use crate::Error;
use async_trait::async_trait;
use parti_core::records::OwnedPartition;
use parti_core::{AlertLevel, State};
use std::time::Duration;

/// Application callbacks; every method has an empty default.
#[async_trait]
pub trait Hooks: Send + Sync + 'static {
    /// The owned set changed: stop `removed`, start `added` (each with its
    /// fencing epoch). `version` is the assignment version now applied (0 when
    /// partitions were dropped locally, e.g. at lease expiry or stop).
    async fn on_assignment_changed(
        &self,
        added: &[OwnedPartition],
        removed: &[OwnedPartition],
        version: u64,
    ) {
        let _ = (added, removed, version);
    }

    /// The worker's state changed.
    async fn on_state_changed(&self, from: State, to: State) {
        let _ = (from, to);
    }

    /// Still degraded: the worker has been cut off from the store for
    /// `degraded_for` since it entered `Degraded`, which makes the alert
    /// `level` (the highest `alerts.*` threshold reached). Called once when a
    /// level is reached and then every `alerts.interval` while degraded; a
    /// place to page someone. Runs on the same lane as
    /// [`Hooks::on_state_changed`], in order with it.
    async fn on_degraded_alert(&self, level: AlertLevel, degraded_for: Duration) {
        let _ = (level, degraded_for);
    }

    /// Something went wrong: either the worker survived it, or it is fatal
    /// ([`Error::is_fatal`]) and the manager is going to `Shutdown`.
    async fn on_error(&self, error: &Error) {
        let _ = error;
    }
}

/// Hooks that do nothing.
#[derive(Clone, Copy, Debug, Default)]
pub struct NoHooks;

impl Hooks for NoHooks {}
