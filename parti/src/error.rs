//! The errors of the `parti` API.

use crate::source::SourceError;
use parti_core::{ConfigError, FatalError, State};
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
}
