//! The partition source: listings for the core's `ListPartitions` and
//! refreshes (periodic or asked by the handle, leader only). Every listing
//! runs on a task of its own, bounded by `operation_timeout` (past it, the
//! answer is [`SourceError::Timeout`]); its answer comes back as an
//! [`Internal`] message, and a panic in the source is a fatal failure.

use super::hooks::{HookCall, join_error_message};
use super::{Internal, Running};
use crate::Error;
use crate::source::{PartitionSource, SourceError};
use parti_core::exec;
use parti_core::{Event, OpId, Partition};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::oneshot;

impl Running {
    /// Re-reads the partition list on a task of its own (leader only); the
    /// answer comes back as [`Internal::Refreshed`].
    pub(super) fn refresh(&mut self, done: Option<oneshot::Sender<Result<(), Error>>>) {
        if !self.worker.is_leader() || self.failed {
            if let Some(done) = done {
                let _ = done.send(Ok(()));
            }
            return;
        }
        if self.refreshing && done.is_none() {
            return; // a periodic refresh while one runs: skip it
        }
        self.refreshing = true;
        let source = self.source.clone();
        let internal = self.internal.clone();
        let timeout = self.op_timeout;
        tokio::spawn(async move {
            match list_bounded(source, timeout).await {
                Ok(answer) => {
                    let _ = internal.send(Internal::Refreshed { answer, done });
                }
                Err(message) => {
                    let _ = internal.send(Internal::Panicked {
                        hook: "PartitionSource::list",
                        message,
                    });
                    if let Some(done) = done {
                        let _ =
                            done.send(Err(Error::Protocol("the partition source panicked".into())));
                    }
                }
            }
        });
    }

    /// Answers the core's `ListPartitions` on a task of its own; the answer
    /// comes back as [`Internal::Listed`].
    pub(super) fn list_partitions(&mut self, op: OpId) {
        let source = self.source.clone();
        let internal = self.internal.clone();
        let timeout = self.op_timeout;
        tokio::spawn(async move {
            let msg = match list_bounded(source, timeout).await {
                Ok(answer) => Internal::Listed { op, answer },
                Err(message) => Internal::Panicked {
                    hook: "PartitionSource::list",
                    message,
                },
            };
            let _ = internal.send(msg);
        });
    }

    /// The source answered the core's `ListPartitions`.
    pub(super) fn on_listed(&mut self, op: OpId, answer: Result<Vec<Partition>, SourceError>) {
        let outcome = match answer {
            Ok(list) => exec::listed::<SourceError>(Ok(list)),
            Err(e) => {
                self.source_error = Some(e.clone());
                exec::listed::<SourceError>(Err(e))
            }
        };
        let now = self.now();
        self.worker.handle(Event::Completed { op, outcome }, now);
    }

    /// The source answered a refresh.
    pub(super) fn on_refreshed(
        &mut self,
        answer: Result<Vec<Partition>, SourceError>,
        done: Option<oneshot::Sender<Result<(), Error>>>,
    ) {
        self.refreshing = false;
        let result = match answer {
            Ok(list) => {
                if self.worker.is_leader() {
                    let now = self.now();
                    self.worker
                        .handle(Event::PartitionsChanged(list.into()), now);
                }
                Ok(())
            }
            Err(e) => {
                let error = Error::Source(e);
                let _ = self.hook_calls.send(HookCall::Error(error.clone()));
                Err(error)
            }
        };
        if let Some(done) = done {
            let _ = done.send(result);
        }
    }
}

/// Lists the partitions on a task of its own, bounded by `timeout`; `Err`
/// carries a panic message.
async fn list_bounded(
    source: Arc<dyn PartitionSource>,
    timeout: Duration,
) -> Result<Result<Vec<Partition>, SourceError>, String> {
    let mut listing = tokio::spawn(async move { source.list().await });
    match tokio::time::timeout(timeout, &mut listing).await {
        Ok(Ok(answer)) => Ok(answer),
        Ok(Err(e)) => Err(join_error_message(e)),
        Err(_) => {
            listing.abort();
            Ok(Err(SourceError::Timeout))
        }
    }
}
