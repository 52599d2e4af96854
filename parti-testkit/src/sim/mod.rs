//! The deterministic simulator: many core workers against a simulated store,
//! with faults, checking the guarantees S1–S6 at every step.

mod checks;
mod faults;
mod idmap;
pub(crate) mod rng;
mod runner;
mod store;
mod world;

pub use checks::{Guarantee, Violation};
pub use faults::{FaultKind, FaultSet};
pub use rng::Rng;
pub use runner::{Summary, run_seeds};
pub use store::{Entry, Key, SimStore, StoreChange, Value, WriteError, watch_event, watched};
pub use world::{Move, Removal, Scripted, SimConfig, SimReport, Simulator, VersionMoves};
