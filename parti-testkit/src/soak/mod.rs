//! A chaos soak from the outside: real `nats-server`, several `worker` example
//! processes behind fault proxies, seeded random faults (SIGKILL + restart,
//! SIGSTOP/SIGCONT, SIGTERM + restart, server or node restarts, connection
//! cuts), and a checker that judges the processes' own JSON lines.
//! Run it with `scripts/soak` (binary `parti-soak`).

pub mod checker;
pub mod coverage;
pub mod events;
pub mod proxies;
pub mod rng;
pub mod run;
pub mod servers;
pub mod summary;
pub mod workers;
