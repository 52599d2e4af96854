//! How the driver executes the core's storage commands on a [`Backend`].

use crate::source::PartitionSource;
use parti_core::backend::{Backend, BackendError};
use parti_core::{Command, OpId, Outcome};
use std::sync::Arc;

/// Maps a backend error to what the core needs to know about the write.
pub(crate) fn outcome_of(error: &BackendError) -> Outcome {
    match error {
        BackendError::AlreadyExists => Outcome::AlreadyExists,
        BackendError::Conflict => Outcome::Conflict,
        BackendError::Timeout | BackendError::Other(_) => Outcome::Unknown,
        BackendError::Unavailable(_) => Outcome::Unavailable,
        BackendError::Misconfigured(e) => Outcome::Failed(e.clone()),
        // An error kind added to the trait later: treat it like `Other`, whose
        // write may or may not have been applied.
        _ => Outcome::Unknown,
    }
}

fn written<T>(result: Result<u64, BackendError>, _: T) -> Outcome {
    match result {
        Ok(rev) => Outcome::Written(rev),
        Err(e) => outcome_of(&e),
    }
}

fn done(result: Result<(), BackendError>) -> Outcome {
    match result {
        Ok(()) => Outcome::Written(0),
        Err(e) => outcome_of(&e),
    }
}

/// How many per-worker records are staged concurrently.
const STAGING_CONCURRENCY: usize = 32;

/// Executes one command that has a result. Returns `None` for commands the
/// driver handles itself (watch, notifications) and fire-and-forget ones.
pub(crate) async fn run(
    backend: Arc<dyn Backend>,
    source: Arc<dyn PartitionSource>,
    command: Command,
) -> Option<(OpId, Outcome)> {
    Some(match command {
        Command::ClaimId {
            op,
            id,
            record,
            takeover,
        } => {
            let r = match takeover {
                Some(rev) => backend.update_member(&id, &record, rev).await,
                None => backend.create_member(&id, &record).await,
            };
            (op, written(r, ()))
        }
        Command::RenewLease {
            op,
            id,
            record,
            expected,
        }
        | Command::Evict {
            op,
            id,
            record,
            expected,
        } => (
            op,
            written(backend.update_member(&id, &record, expected).await, ()),
        ),
        Command::ReadMember { op, id } => match backend.get_member(&id).await {
            Ok(found) => (op, Outcome::Member(found)),
            Err(e) => (op, outcome_of(&e)),
        },
        Command::ReleaseId { op, id, expected } => {
            (op, done(backend.delete_member(&id, expected).await))
        }
        Command::Campaign { op, record } => (op, written(backend.create_leader(&record).await, ())),
        Command::RenewLeadership {
            op,
            record,
            expected,
        } => (
            op,
            written(backend.update_leader(&record, expected).await, ()),
        ),
        Command::Resign { op, expected } => (op, done(backend.delete_leader(expected).await)),
        Command::LoadAssignments { op } => match backend.load_assignments().await {
            Ok(snapshot) => (op, Outcome::Loaded(snapshot)),
            Err(e) => (op, outcome_of(&e)),
        },
        Command::Publish {
            op,
            records,
            meta,
            expected,
        } => {
            // Stage every record (a few at a time); commit only if all staged.
            for chunk in records.chunks(STAGING_CONCURRENCY) {
                let staged =
                    futures_util::future::join_all(chunk.iter().map(|r| backend.put_assignment(r)))
                        .await;
                if let Some(Err(e)) = staged.into_iter().find(Result::is_err) {
                    // Nothing was committed: a staging failure is never "unknown".
                    let outcome = match outcome_of(&e) {
                        Outcome::Unknown => Outcome::Unavailable,
                        other => other,
                    };
                    return Some((op, outcome));
                }
            }
            (op, written(backend.commit_meta(&meta, expected).await, ()))
        }
        Command::ListPartitions { op } => match source.list().await {
            Ok(list) => (op, Outcome::Partitions(list)),
            Err(e) => (op, Outcome::Failed(e.to_string())),
        },
        Command::CleanupAssignments { keep_term } => {
            if let Err(e) = backend.remove_stale_assignments(keep_term).await {
                tracing::debug!(error = %e, "cleanup of stale assignment records failed");
            }
            return None;
        }
        Command::Watch { .. } | Command::Notify(_) => return None,
    })
}
