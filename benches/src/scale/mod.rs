//! The scale report (`cargo run --release -p parti-benches --bin
//! scale-report`): N managers of the `parti` facade in one process, on the
//! in-memory backend and on a real nats-server, through a cold start, a
//! steady state, a crash, a graceful stop, a join and a leader failover.
//!
//! - [`cell`]: one backend × N from end to end, and the configuration used;
//! - [`start`]: the cold start (leader first, then everyone);
//! - [`steady`]: the steady-state interval (traffic, CPU, memory);
//! - [`events`]: crash, graceful stop, join, leader failover;
//! - [`fleet`]: the running managers and the completeness check;
//! - [`lane`]: a runtime on a thread of its own (leader and follower CPU);
//! - [`counting`]: the store-operation and watch-event counts;
//! - [`store`]: the backends and the server's own figures;
//! - [`procstat`]: CPU and memory from `/proc`;
//! - [`line`](mod@line): the output line (JSON and Markdown).

pub mod cell;
pub mod counting;
pub mod events;
pub mod fleet;
pub mod lane;
pub mod line;
pub mod procstat;
pub mod start;
pub mod steady;
pub mod store;

pub use cell::{CellOptions, cell_config, run_cell};
pub use line::{Line, header};
pub use store::Which;
