//! The arguments that name a live group (connection, group, the group's
//! config file) and the read-only reader they lead to.

use crate::config_cmd::load_config_file;
use parti::Config;
use parti::nats::connect::ConnectArgs;
use parti::nats::inspect::GroupReader;
use std::path::PathBuf;
use std::time::Duration;

/// How long one read request may take.
const READ_TIMEOUT: Duration = Duration::from_secs(5);

/// Connection options and the group to look at.
#[derive(clap::Args, Debug)]
pub struct GroupArgs {
    #[command(flatten)]
    pub connect: ConnectArgs,
    /// Group name [default: the config file's group, else "parti"]
    #[arg(long)]
    pub group: Option<String>,
    /// The group's configuration file (.toml or .yaml): its bucket name
    /// overrides, worker ID prefix and heartbeat TTL are used.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
}

impl GroupArgs {
    /// The group's configuration: the file's (if any), with `--group` applied.
    pub fn group_config(&self) -> Result<Config, String> {
        let mut config = match &self.config {
            Some(path) => load_config_file(path)?,
            None => Config::default(),
        };
        if let Some(group) = &self.group {
            config.group = group.clone();
            config
                .validate()
                .map_err(|e| format!("--group {group:?}: {e}"))?;
        }
        Ok(config)
    }

    /// Connects and returns a reader of the group's buckets, with its config.
    pub async fn reader(&self) -> Result<(GroupReader, Config), String> {
        let config = self.group_config()?;
        let client = self.connect.connect().await.map_err(|e| e.to_string())?;
        let reader = GroupReader::new(
            client,
            parti::nats::bucket_names(&config),
            config.worker_id_prefix.clone(),
            READ_TIMEOUT,
        );
        Ok((reader, config))
    }
}
