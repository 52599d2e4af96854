//! How the driver performs the store operations of a command on a
//! [`Backend`]. Which operations a command needs, and what their results
//! mean to the worker, is decided by [`parti_core::exec`] (the same
//! translation the simulator and the in-memory backend use); this module only
//! hands each operation to the backend, with a timeout per operation.

use parti_core::backend::{Backend, BackendError};
use parti_core::exec::Execution;
use parti_core::{OpId, Outcome};
use std::sync::Arc;
use std::time::Duration;

/// Runs `execution` to its end on `backend`; each operation is bounded by
/// `timeout` (past it, the operation's outcome is unknown).
pub(crate) async fn run(
    backend: Arc<dyn Backend>,
    mut execution: Box<Execution>,
    timeout: Duration,
) -> Option<(OpId, Outcome)> {
    while let Some(op) = execution.next_op() {
        let result = tokio::time::timeout(timeout, backend.perform(op))
            .await
            .unwrap_or(Err(BackendError::Timeout));
        if let Err(e) = &result
            && execution.is_housekeeping()
        {
            tracing::debug!(error = %e, "housekeeping of the assignments bucket failed");
        }
        execution.complete(result);
    }
    execution.finish()
}
