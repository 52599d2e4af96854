//! `parti`: the operator tool.
//!
//! - `parti demo`: several workers in one process (in memory, or on a real
//!   NATS server), with a live view, through a graceful stop, a crash and two
//!   joins, checking that no partition is ever owned twice.
//! - `parti status --group G [--json]` (alias `inspect`): a read-only look at
//!   a live group: workers, leader, committed assignment, and a verdict.
//! - `parti watch --group G`: the same, live, with changes highlighted.
//! - `parti config check FILE` / `parti config defaults [--yaml|--toml]`.
//! - `parti group reset --group G --yes`: delete a group's buckets.
//!
//! Every command that connects takes the same connection options (`--nats`,
//! `--creds`, `--user`/`--password`, `--token`, `--tls-*`, `--context`, also
//! from `NATS_*` variables); passwords and tokens are never printed.

mod config_cmd;
mod demo;
mod group_cmd;
mod status;
mod target;
mod view;
mod watch;

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
    /// Show a live group (read-only): workers, leader, committed assignment,
    /// lagging and degraded workers, and a verdict.
    #[command(alias = "inspect")]
    Status(status::StatusArgs),
    /// Show a live group and its changes as they happen, until Ctrl-C.
    Watch(watch::WatchArgs),
    /// Check a configuration file, or print the defaults.
    #[command(subcommand)]
    Config(config_cmd::ConfigCmd),
    /// Manage a group's coordination state.
    #[command(subcommand)]
    Group(group_cmd::GroupCmd),
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Cmd::Demo(args) => demo::run(args).await,
        Cmd::Status(args) => status::run(args).await,
        Cmd::Watch(args) => watch::run(args).await,
        Cmd::Config(cmd) => config_cmd::run(cmd),
        Cmd::Group(cmd) => group_cmd::run(cmd).await,
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // Every message that names a server is redacted where it is
            // made; this is a last guard for URLs quoted by lower layers.
            eprintln!("parti: {}", parti::nats::redact::redact_urls_in(&e));
            ExitCode::FAILURE
        }
    }
}
