//! # parti
//!
//! Coordinates a changing set of worker processes so that every partition of a
//! workload is owned by exactly one live worker, over NATS JetStream KV (or any
//! backend implementing [`parti_core::backend::Backend`]).
//!
//! ```no_run
//! use parti::{Config, Manager, StaticSource};
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let client = async_nats::connect("nats://127.0.0.1:4222").await?;
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
//! The guarantees (unique IDs, one effective leader, exclusive ownership with
//! fencing epochs, convergence, stable rolling restarts, monotonic versions) are
//! described in the repository's ARCHITECTURE.md and checked by the simulator
//! in `parti-testkit`.

mod driver;
mod error;
mod hooks;
mod manager;
pub mod metrics;
mod ops;
mod source;
mod view;

pub use error::Error;
pub use hooks::{Hooks, NoHooks};
pub use manager::{Manager, ManagerBuilder};
pub use source::{FnSource, PartitionSource, SourceError, StaticSource};
pub use view::Assignment;

pub use parti_core::records::OwnedPartition;
pub use parti_core::{
    Config, ConfigError, DegradedPolicy, Partition, PartitionId, State, WorkerId,
};
pub use parti_strategies as strategies;

/// The default strategy: sticky, balanced, minimal movement.
pub fn default_strategy() -> impl parti_core::AssignmentStrategy {
    parti_strategies::default_strategy()
}
