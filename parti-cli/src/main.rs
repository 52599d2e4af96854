//! `parti`: the operator tool.
//!
//! - `parti demo [--workers N] [--partitions P] [--nats URL]`: several workers
//!   in one process (in memory, or on a real NATS server), with a live view of
//!   who leads and who owns what, through a graceful stop, a crash, and two
//!   joins, checking that no partition is ever owned twice.
//! - `parti inspect --nats URL [--group G]`: members, leader and assignment of
//!   a live group.

mod demo;
mod inspect;

use clap::{Parser, Subcommand};
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "parti",
    version,
    about = "Parti: partition ownership over NATS JetStream"
)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run the demo: workers join, one stops, one crashes, two join.
    Demo(demo::DemoArgs),
    /// Show the members, leader and assignment of a live group.
    Inspect(inspect::InspectArgs),
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Cmd::Demo(args) => demo::run(args).await,
        Cmd::Inspect(args) => inspect::run(args).await,
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("parti: {e}");
            ExitCode::FAILURE
        }
    }
}
