//! `parti watch`: the status view, live, with changes highlighted.

use crate::status::{explain, read_view, use_color};
use crate::target::GroupArgs;
use crate::view::{GroupView, render_update};
use parti::nats::inspect::InspectError;
use std::time::Duration;

/// Arguments of `parti watch`.
#[derive(clap::Args, Debug)]
pub struct WatchArgs {
    #[command(flatten)]
    pub target: GroupArgs,
    /// Time between two reads.
    #[arg(long, default_value = "1s", value_parser = humantime::parse_duration)]
    pub interval: Duration,
    /// A worker silent for longer than this counts as degraded (see `status`).
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
    pub stale_after: Option<Duration>,
}

fn clock() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let day = secs % 86_400;
    format!(
        "{:02}:{:02}:{:02}Z",
        day / 3600,
        (day % 3600) / 60,
        day % 60
    )
}

/// Runs `parti watch` until Ctrl-C.
pub async fn run(args: WatchArgs) -> Result<(), String> {
    let servers = args.target.connect.display_servers();
    let (reader, config) = args.target.reader().await?;
    let given = args.target.config.is_some();
    let color = use_color();
    // The group must exist when the watch starts.
    let first = read_view(&reader, &config, args.stale_after, given)
        .await
        .map_err(|e| explain(&config.group, &servers, e))?;
    println!(
        "watching group {} on {servers} (Ctrl-C to stop)",
        config.group
    );
    let mut shown: Option<GroupView> = None;
    let mut next = Ok(first);
    let mut last_error: Option<String> = None;
    let interval = args.interval.max(Duration::from_millis(50));
    // One listener for the whole run, so that a Ctrl-C arriving during a read
    // is not lost.
    let mut stop = std::pin::pin!(tokio::signal::ctrl_c());
    loop {
        match next {
            Ok(view) => {
                last_error = None;
                if let Some(text) = render_update(shown.as_ref(), &view, color) {
                    println!("--- {}", clock());
                    print!("{text}");
                }
                shown = Some(view);
            }
            Err(e) => {
                let text = match e {
                    InspectError::GroupNotFound { .. } => {
                        format!("group {} not found (reset?)", config.group)
                    }
                    other => other.to_string(),
                };
                if last_error.as_ref() != Some(&text) {
                    println!("--- {} {text}", clock());
                    last_error = Some(text);
                }
            }
        }
        tokio::select! {
            _ = &mut stop => return Ok(()),
            _ = tokio::time::sleep(interval) => {}
        }
        next = tokio::select! {
            _ = &mut stop => return Ok(()),
            view = read_view(&reader, &config, args.stale_after, given) => view,
        };
    }
}
