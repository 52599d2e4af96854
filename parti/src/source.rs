//! Where the leader gets the list of partitions.

use async_trait::async_trait;
use parti_core::Partition;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, RwLock};
use thiserror::Error;

/// Why a [`PartitionSource`] could not list the partitions.
///
/// ```
/// use parti::SourceError;
/// let e = SourceError::unavailable("database down");
/// assert_eq!(e.to_string(), "unavailable: database down");
/// ```
#[derive(Debug, Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum SourceError {
    /// Where the list lives cannot be reached now (a database, an API); the
    /// leader keeps its current list and tries again later.
    #[error("unavailable: {0}")]
    Unavailable(String),
    /// Listing took longer than `operation_timeout`.
    #[error("timed out")]
    Timeout,
    /// Anything else the source reports.
    #[error("{0}")]
    Other(String),
}

impl SourceError {
    /// [`SourceError::Unavailable`] with this reason.
    pub fn unavailable(reason: impl std::fmt::Display) -> Self {
        SourceError::Unavailable(reason.to_string())
    }

    /// [`SourceError::Other`] with this reason.
    pub fn other(reason: impl std::fmt::Display) -> Self {
        SourceError::Other(reason.to_string())
    }
}

/// Lists the partitions of the workload. Only the leader calls it (at start of
/// leadership and on `refresh_partitions`).
#[async_trait]
pub trait PartitionSource: Send + Sync + 'static {
    /// The current partitions.
    async fn list(&self) -> Result<Vec<Partition>, SourceError>;
}

/// A fixed list that can be replaced at run time.
#[derive(Clone, Debug, Default)]
pub struct StaticSource {
    partitions: Arc<RwLock<Vec<Partition>>>,
}

impl StaticSource {
    /// A source listing `partitions`.
    pub fn new(partitions: Vec<Partition>) -> Self {
        StaticSource {
            partitions: Arc::new(RwLock::new(partitions)),
        }
    }

    /// `count` partitions named `<prefix>`, `p-<i>` (keys `[prefix, "p-<i>"]`).
    pub fn numbered(prefix: &str, count: usize) -> Self {
        Self::new(
            (0..count)
                .map(|i| Partition::new([prefix.to_string(), format!("p-{i}")]))
                .collect(),
        )
    }

    /// Replaces the list (call `Manager::refresh_partitions` afterwards).
    pub fn set(&self, partitions: Vec<Partition>) {
        match self.partitions.write() {
            Ok(mut guard) => *guard = partitions,
            Err(poisoned) => *poisoned.into_inner() = partitions,
        }
    }
}

#[async_trait]
impl PartitionSource for StaticSource {
    async fn list(&self) -> Result<Vec<Partition>, SourceError> {
        Ok(match self.partitions.read() {
            Ok(guard) => guard.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        })
    }
}

type ListFuture = Pin<Box<dyn Future<Output = Result<Vec<Partition>, SourceError>> + Send>>;

/// A source backed by an async closure (a database query, a stream listing…).
pub struct FnSource {
    f: Box<dyn Fn() -> ListFuture + Send + Sync>,
}

impl FnSource {
    /// Wraps `f`; it is called each time the leader needs the list.
    pub fn new<F, Fut>(f: F) -> Self
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Vec<Partition>, SourceError>> + Send + 'static,
    {
        FnSource {
            f: Box::new(move || Box::pin(f())),
        }
    }
}

impl std::fmt::Debug for FnSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("FnSource")
    }
}

#[async_trait]
impl PartitionSource for FnSource {
    async fn list(&self) -> Result<Vec<Partition>, SourceError> {
        (self.f)().await
    }
}
