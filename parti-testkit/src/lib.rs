//! Test kit for Parti: the deterministic simulator and its invariant checkers,
//! strategy contract checks, an in-memory backend, a nats-server harness and a
//! TCP fault proxy.

#[cfg(feature = "fault-proxy")]
pub mod fault_proxy;
pub mod memory;
pub mod nats_server;
pub mod sim;
pub mod simple_strategy;
#[cfg(feature = "fault-proxy")]
pub mod soak;
pub mod strategy_contract;

pub use memory::MemoryBackend;
