//! Test kit for Parti: the deterministic simulator and its invariant checkers,
//! strategy contract checks, an in-memory backend and a nats-server harness.

pub mod sim;
pub mod simple_strategy;
