//! How the driver performs the store operations of a command on a
//! [`Backend`]. Which operations a command needs, and what their results
//! mean to the worker, is decided by [`parti_core::exec`] (the same
//! translation the simulator and the in-memory backend use); this module only
//! calls the backend, with a timeout per operation.

use parti_core::backend::{Backend, BackendError};
use parti_core::exec::{Execution, StoreOp, StoreReply};
use parti_core::{OpId, Outcome};
use std::sync::Arc;
use std::time::Duration;

/// How many per-worker records are staged concurrently.
const STAGING_CONCURRENCY: usize = 32;

/// Runs `execution` to its end on `backend`; each operation is bounded by
/// `timeout` (past it, the operation's outcome is unknown).
pub(crate) async fn run(
    backend: Arc<dyn Backend>,
    mut execution: Box<Execution>,
    timeout: Duration,
) -> Option<(OpId, Outcome)> {
    while let Some(op) = execution.next_op() {
        let result = tokio::time::timeout(timeout, perform(backend.as_ref(), op))
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

/// Performs one operation with the matching [`Backend`] call.
async fn perform(backend: &dyn Backend, op: StoreOp) -> Result<StoreReply, BackendError> {
    use StoreReply::{Done, Written};
    match op {
        StoreOp::CreateMember { id, record } => {
            backend.create_member(&id, &record).await.map(Written)
        }
        StoreOp::UpdateMember {
            id,
            record,
            expected,
        } => backend
            .update_member(&id, &record, expected)
            .await
            .map(Written),
        StoreOp::DeleteMember { id, expected } => {
            backend.delete_member(&id, expected).await.map(|()| Done)
        }
        StoreOp::GetMember { id } => backend.get_member(&id).await.map(StoreReply::Member),
        StoreOp::CreateLeader { record } => backend.create_leader(&record).await.map(Written),
        StoreOp::UpdateLeader { record, expected } => {
            backend.update_leader(&record, expected).await.map(Written)
        }
        StoreOp::DeleteLeader { expected } => backend.delete_leader(expected).await.map(|()| Done),
        StoreOp::Stage { records } => {
            for chunk in records.chunks(STAGING_CONCURRENCY) {
                let staged =
                    futures_util::future::join_all(chunk.iter().map(|r| backend.put_assignment(r)))
                        .await;
                if let Some(Err(e)) = staged.into_iter().find(Result::is_err) {
                    return Err(e);
                }
            }
            Ok(Done)
        }
        StoreOp::CommitMeta { meta, expected } => {
            backend.commit_meta(&meta, expected).await.map(Written)
        }
        StoreOp::LoadAssignments => backend.load_assignments().await.map(StoreReply::Loaded),
        StoreOp::RemoveStaleAssignments { keep_term } => backend
            .remove_stale_assignments(keep_term)
            .await
            .map(|()| Done),
    }
}
