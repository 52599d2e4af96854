//! # parti
//!
//! Coordinates a changing set of worker processes so that every partition of a
//! workload is owned by exactly one live worker, over NATS JetStream KV (or any
//! backend implementing [`Backend`]).
//!
//! ```no_run
//! use parti::{Config, Manager, StaticSource};
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let client = parti::nats::async_nats::connect("nats://127.0.0.1:4222").await?;
//! let manager = Manager::builder_nats(client)
//!     .config(Config::builder().group("orders").build()?)
//!     .partitions(StaticSource::numbered("orders", 64))
//!     .start()
//!     .await?;
//! for owned in manager.assignment().partitions {
//!     println!("{} (epoch {})", owned.partition, owned.epoch);
//! }
//! manager.stop().await?;
//! # Ok(())
//! # }
//! ```
//!
//! Everything an application needs is re-exported here, so it depends on
//! `parti` alone:
//!
//! - running a worker: [`Manager`], [`ManagerBuilder`], [`Hooks`] (and the
//!   [`AlertLevel`] of its degraded alerts), [`Assignment`], [`Error`];
//! - configuration: [`Config`] and its parts ([`ConfigBuilder`],
//!   [`DegradedConfig`], [`DegradedPolicy`], [`AlertConfig`], [`BucketConfig`],
//!   [`Storage`], [`ConfigError`], [`ConfigWarning`]);
//! - partitions and workers: [`Partition`], [`PartitionId`], [`WorkerId`],
//!   [`OwnedPartition`], [`State`], and where the partitions come from:
//!   [`PartitionSource`], [`StaticSource`], [`FnSource`], [`SourceError`];
//! - strategies: [`Sticky`] (the [`default_strategy`]), [`BoundedLoad`],
//!   [`ConsistentHash`], [`RoundRobin`], and what a custom one implements:
//!   [`AssignmentStrategy`], [`AssignmentInput`], [`WorkerSpec`], [`Placement`],
//!   [`StrategyError`], [`validate_input`], [`carry_over`] (more in
//!   [`strategies`]);
//! - backends: [`Backend`], [`BackendError`], the [`backend`] and [`records`]
//!   modules for writing one, and with the `nats` feature (on by default)
//!   [`nats`]: the NATS JetStream backend and the `async_nats` client crate.
//!
//! The guarantees (unique IDs, one effective leader, exclusive ownership with
//! fencing epochs, convergence, stable rolling restarts, monotonic versions) are
//! described in the repository's `docs/architecture-and-protocol.md` and
//! checked by the simulator in `parti-testkit`. Metrics: [`metrics`] and
//! `docs/metrics.md`.

#[cfg(feature = "nats")]
mod consume;
mod driver;
mod error;
mod hooks;
mod manager;
pub mod metrics;
mod ops;
mod source;
mod view;

/// The attribute macro for implementing [`Hooks`] and [`PartitionSource`]
/// (`#[parti::async_trait]`), so the application need not depend on the
/// `async-trait` crate itself.
pub use async_trait::async_trait;
pub use error::Error;
pub use hooks::{Hooks, NoHooks};
pub use manager::{Manager, ManagerBuilder};
pub use source::{FnSource, PartitionSource, SourceError, StaticSource};
pub use view::Assignment;

/// The partition consumer (NATS feature): consume exactly the owned
/// partitions of a JetStream stream; wire it with [`ManagerBuilder::consumer`].
#[cfg(feature = "nats")]
pub use parti_nats::{
    ConsumerHealth, Delivery, HandlerError, PartitionConsumer, PartitionConsumerBuilder,
    PartitionConsumerError, PartitionHealth,
};

pub use parti_core::config::{
    AlertConfig, BucketConfig, Config, ConfigBuilder, ConfigError, ConfigWarning, DegradedConfig,
    DegradedPolicy, Storage,
};
pub use parti_core::records::OwnedPartition;
pub use parti_core::{AlertLevel, FatalError, InstanceId, Partition, PartitionId, State, WorkerId};

pub use parti_core::strategy::{
    AssignmentInput, AssignmentStrategy, Placement, StrategyError, WorkerSpec, carry_over,
    validate_input,
};
/// The built-in strategies with their tuning constants and
/// [`strategies::by_name`].
pub use parti_strategies as strategies;
pub use parti_strategies::{BoundedLoad, ConsistentHash, RoundRobin, Sticky, default_strategy};

/// What a storage backend implements ([`Backend`]) and what its watch yields.
pub use parti_core::backend;
pub use parti_core::backend::{Backend, BackendError};
/// The records a backend stores (members, leader, assignments) and their codec.
pub use parti_core::records;

/// The NATS JetStream backend ([`Manager::builder_nats`] builds it for you) and
/// the `async_nats` client crate it runs on.
#[cfg(feature = "nats")]
pub mod nats {
    pub use async_nats;
    pub use parti_core::layout::BucketNames;
    pub use parti_nats::*;
}
