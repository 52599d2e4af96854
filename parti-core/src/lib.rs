//! # parti-core
//!
//! The protocol of Parti as pure, deterministic state machines. Nothing here reads a
//! clock, sleeps, spawns or touches a socket: time is an argument, inputs are
//! events, outputs are commands pulled from the worker. A driver (the `parti`
//! crate on NATS, or the simulator in `parti-testkit`) executes the commands and
//! feeds back their results.
//!
//! The guarantees S1–S6 that the simulator checks are described in the
//! repository's `docs/architecture-and-protocol.md`.

pub mod backend;
pub mod command;
pub mod config;
pub mod event;
pub mod exec;
pub mod ids;
pub mod layout;
mod outbox;
pub mod partition;
pub mod pieces;
pub mod records;
pub mod roster;
pub mod state;
pub mod strategy;
pub mod time;
mod worker;

pub use command::{AlertLevel, Command, FatalError, Notification};
pub use config::{Config, ConfigError, ConfigWarning, DegradedPolicy};
pub use event::{Event, OpId, Outcome, StopMode};
pub use ids::{InstanceId, WorkerId};
pub use partition::{Partition, PartitionId, PartitionKeys};
pub use records::Revision;
pub use state::State;
pub use strategy::{AssignmentInput, AssignmentStrategy, Placement, StrategyError, WorkerSpec};
pub use time::Instant;
#[cfg(feature = "planted-bugs")]
pub use worker::PlantedBug;
pub use worker::Worker;
