//! The errors of the `parti` API.

use crate::source::SourceError;
use parti_core::{ConfigError, FatalError, State};
use std::time::Duration;
use thiserror::Error;

/// What can go wrong when running a [`crate::Manager`].
#[derive(Debug, Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Error {
    /// The configuration was refused (the field and rule are named).
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The storage backend failed to prepare (e.g. a bucket exists with an
    /// incompatible configuration).
    #[error("backend: {0}")]
    Backend(#[from] parti_core::backend::BackendError),
    /// Every worker ID of the configured range is held by another process.
    #[error("no free worker ID: {0}")]
    IdRangeExhausted(FatalError),
    /// `start()` did not reach `Stable` within `startup_timeout`.
    #[error("startup timed out in state {state}")]
    StartupTimeout {
        /// The state reached.
        state: State,
    },
    /// `stop()` or `leave()` did not finish within `shutdown_timeout`.
    #[error("shutdown timed out in state {state}")]
    ShutdownTimeout {
        /// The state reached.
        state: State,
    },
    /// The manager is not running (it stopped, or its task ended).
    #[error("the manager is not running")]
    NotRunning,
    /// The partition source failed.
    #[error("partition source: {0}")]
    Source(#[from] SourceError),
    /// A protocol-level problem reported by the worker (e.g. a strategy refused
    /// its input).
    #[error("{0}")]
    Protocol(String),
    /// Application code panicked: a hook, or the partition source. Fatal: the
    /// manager gives up its partitions and its ID and goes to `Shutdown`;
    /// `stop()` / `leave()` return this error.
    #[error("{hook} panicked: {message}")]
    HookPanicked {
        /// What panicked (`on_assignment_changed`, `on_state_changed`,
        /// `on_degraded_alert`, `on_error` or `PartitionSource::list`).
        hook: &'static str,
        /// The panic message.
        message: String,
    },
    /// A hook ran past its budget (`hook_budget`). Fatal: the worker could not
    /// confirm that the application stopped work on its revoked partitions,
    /// so it stops renewing its member record without confirming anything;
    /// the leader reassigns its partitions once its ownership lease has
    /// expired. `stop()` / `leave()` return this error.
    #[error("{hook} still running after its budget of {budget:?}")]
    HookTimedOut {
        /// The hook (`on_assignment_changed`, or `on_error` called with a
        /// fatal error).
        hook: &'static str,
        /// The budget it overran.
        budget: Duration,
    },
}

impl Error {
    /// Whether this error ended the manager (it is then in `Shutdown`).
    pub fn is_fatal(&self) -> bool {
        matches!(
            self,
            Error::IdRangeExhausted(_) | Error::HookPanicked { .. } | Error::HookTimedOut { .. }
        )
    }
}
