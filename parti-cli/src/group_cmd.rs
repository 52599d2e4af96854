//! `parti group reset`: the documented way to wipe a group's coordination
//! state (its three buckets).

use crate::target::GroupArgs;
use parti::nats::inspect::InspectError;

/// Arguments of `parti group`.
#[derive(clap::Subcommand, Debug)]
pub enum GroupCmd {
    /// Delete the group's buckets (members, leader, assignments). Stop every
    /// worker of the group first: running workers recreate them.
    Reset {
        #[command(flatten)]
        target: GroupArgs,
        /// Really delete.
        #[arg(long)]
        yes: bool,
    },
}

/// Runs `parti group …`.
pub async fn run(cmd: GroupCmd) -> Result<(), String> {
    match cmd {
        GroupCmd::Reset { target, yes } => {
            let config = target.group_config()?;
            let names = parti::nats::bucket_names(&config);
            if !yes {
                return Err(format!(
                    "refusing to reset group {:?} without --yes: this deletes its buckets \
                     {}, {} and {} (all coordination state; stop its workers first)",
                    config.group, names.members, names.leader, names.assignments
                ));
            }
            let servers = target.connect.display_servers();
            let (reader, _) = target.reader().await?;
            let deleted = reader.delete_buckets().await.map_err(|e| match e {
                InspectError::GroupNotFound { .. } => format!(
                    "group {:?} not found on {servers}: nothing to reset",
                    config.group
                ),
                other => format!("resetting group {:?} on {servers}: {other}", config.group),
            })?;
            println!(
                "group {}: deleted {} on {servers}",
                config.group,
                deleted.join(", ")
            );
            Ok(())
        }
    }
}
