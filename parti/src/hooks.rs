//! Callbacks for the application.
//!
//! Contract:
//! - hooks are called one at a time, in the order the events happened;
//! - [`Hooks::on_assignment_changed`] is awaited by the worker before it
//!   confirms a release to the leader, so when it returns, the application
//!   must have stopped work on `removed` (the leader grants those partitions to
//!   someone else only after that confirmation). It must be quick: while it
//!   runs the worker does not heartbeat. It is given at most one heartbeat
//!   interval; past that the worker reports an error through
//!   [`Hooks::on_error`] and carries on (so a hook that blocks cannot cost the
//!   worker its lease). Start work on `added` asynchronously;
//! - [`Hooks::on_state_changed`] and [`Hooks::on_error`] run on a separate task,
//!   in order, and may be slow without delaying the protocol.

use crate::Error;
use async_trait::async_trait;
use parti_core::State;
use parti_core::records::OwnedPartition;

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

    /// Something went wrong that the worker survived.
    async fn on_error(&self, error: &Error) {
        let _ = error;
    }
}

/// Hooks that do nothing.
#[derive(Clone, Copy, Debug, Default)]
pub struct NoHooks;

impl Hooks for NoHooks {}
