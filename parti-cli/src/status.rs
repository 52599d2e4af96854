//! `parti status`: one read-only look at a live group.

use crate::target::GroupArgs;
use crate::view::{GroupView, render_status, stale_after};
use parti::Config;
use parti::nats::inspect::{GroupReader, InspectError};
use std::io::IsTerminal;
use std::time::{Duration, SystemTime};

/// Arguments of `parti status`.
#[derive(clap::Args, Debug)]
pub struct StatusArgs {
    #[command(flatten)]
    pub target: GroupArgs,
    /// Print the view as JSON.
    #[arg(long)]
    pub json: bool,
    /// A worker silent for longer than this counts as degraded [default: the
    /// config file's heartbeat_ttl, else a third of the members bucket's TTL]
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
    pub stale_after: Option<Duration>,
}

/// Whether to color the output: a terminal, and no `NO_COLOR`.
pub fn use_color() -> bool {
    std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none()
}

/// Reads the group once and builds its view.
pub async fn read_view(
    reader: &GroupReader,
    config: &Config,
    explicit_stale: Option<Duration>,
    config_given: bool,
) -> Result<GroupView, InspectError> {
    let state = reader.read().await?;
    let explicit = explicit_stale.or(config_given.then_some(config.heartbeat_ttl));
    let stale = stale_after(explicit, state.members_bucket.as_ref());
    Ok(GroupView::build(
        &config.group,
        &state,
        SystemTime::now(),
        stale,
    ))
}

/// Explains a read error for the operator.
pub fn explain(group: &str, servers: &str, error: InspectError) -> String {
    match error {
        InspectError::GroupNotFound { buckets } => format!(
            "group {group:?} not found on {servers}: none of its buckets ({}) exists \
             (check --group, or --config for renamed buckets)",
            buckets.join(", ")
        ),
        other => format!("reading group {group:?} on {servers}: {other}"),
    }
}

/// Runs `parti status`.
pub async fn run(args: StatusArgs) -> Result<(), String> {
    let servers = args.target.connect.display_servers();
    let (reader, config) = args.target.reader().await?;
    let view = read_view(
        &reader,
        &config,
        args.stale_after,
        args.target.config.is_some(),
    )
    .await
    .map_err(|e| explain(&config.group, &servers, e))?;
    if args.json {
        let text = serde_json::to_string_pretty(&view).map_err(|e| e.to_string())?;
        println!("{text}");
    } else {
        println!("servers: {servers}");
        print!("{}", render_status(&view, use_color()));
    }
    Ok(())
}
