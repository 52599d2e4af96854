//! Test kit for Parti.

#[cfg(feature = "fault-proxy")]
pub mod fault_proxy;
pub mod nats_server;
