//! Retrying a member renewal through failures, reconciling unknown outcomes the
//! way the driver must: after a `Timeout` (or a `Conflict` caused by our own
//! timed-out write landing late) read the key back.

use parti_core::backend::{BackendError, BackendExt};
use parti_core::ids::WorkerId;
use parti_core::records::{MemberRecord, Revision};
use parti_nats::NatsBackend;
use std::time::Duration;

/// Renews `id` (held at `rev` by this test, the only writer) until it succeeds or
/// `within` passes; returns the new revision and the errors met on the way.
pub async fn renew_until_ok(
    b: &NatsBackend,
    id: &WorkerId,
    record: &MemberRecord,
    rev: Revision,
    within: Duration,
) -> (Revision, Vec<BackendError>) {
    let deadline = tokio::time::Instant::now() + within;
    let mut errors = Vec::new();
    let mut rev = rev;
    loop {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no successful renewal within {within:?}; errors: {errors:?}"
        );
        match b.update_member(id, record, rev).await {
            Ok(new) => return (new, errors),
            Err(err) => {
                errors.push(err.clone());
                if matches!(err, BackendError::Timeout | BackendError::Conflict) {
                    // Unknown outcome: did our write land?
                    if let Ok(Some((current, current_rev))) = b.get_member(id).await {
                        if current == *record && current_rev != rev {
                            return (current_rev, errors);
                        }
                        rev = current_rev;
                    }
                }
                // Back off a little before the next attempt (not a synchronisation).
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

/// Repeats `op` while the store is unreachable (`Unavailable`/`Timeout`, e.g. a
/// stream electing a new leader), up to `within`; returns the first real answer.
pub async fn answered<T, F, Fut>(within: Duration, mut op: F) -> Result<T, BackendError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, BackendError>>,
{
    let deadline = tokio::time::Instant::now() + within;
    loop {
        match op().await {
            Err(BackendError::Unavailable(_) | BackendError::Timeout)
                if tokio::time::Instant::now() < deadline =>
            {
                // Back off a little before the next attempt (not a synchronisation).
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            other => return other,
        }
    }
}

/// Repeats a write while it is refused as `Unavailable` (nothing was written,
/// e.g. "no responders" from a stream whose interest has not yet reached this
/// node), up to [`super::SOON`]; panics on any other error.
pub async fn reachable<T, F, Fut>(mut op: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, BackendError>>,
{
    let deadline = tokio::time::Instant::now() + super::SOON;
    loop {
        match op().await {
            Ok(value) => return value,
            Err(BackendError::Unavailable(why)) if tokio::time::Instant::now() < deadline => {
                eprintln!("not yet reachable, repeating: {why}");
                // Back off a little before the next attempt (not a synchronisation).
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(err) => panic!("write refused: {err}"),
        }
    }
}
