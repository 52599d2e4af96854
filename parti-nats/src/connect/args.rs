//! The connection options as clap flags, for `#[command(flatten)]`.

use super::{ConnectError, ConnectOptions};
use std::path::PathBuf;

/// NATS connection flags, each also read from an environment variable. Flatten
/// it into a command's arguments; [`ConnectArgs::connect`] connects.
#[derive(clap::Args, Clone, Default, PartialEq, Eq)]
pub struct ConnectArgs {
    /// NATS server URLs, comma-separated [default: the context's, else
    /// nats://127.0.0.1:4222]
    #[arg(long = "nats", env = "NATS_URL", value_name = "URLS")]
    pub nats: Option<String>,
    /// NATS credentials file (JWT and NKey seed).
    #[arg(long, env = "NATS_CREDS", value_name = "FILE")]
    pub creds: Option<PathBuf>,
    /// User name (with --password).
    #[arg(long, env = "NATS_USER")]
    pub user: Option<String>,
    /// Password (never printed).
    #[arg(long, env = "NATS_PASSWORD", hide_env_values = true)]
    pub password: Option<String>,
    /// Authentication token (never printed).
    #[arg(long, env = "NATS_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// CA certificate (PEM) to verify the servers; turns TLS on.
    #[arg(long, env = "NATS_CA", value_name = "FILE")]
    pub tls_ca: Option<PathBuf>,
    /// Client certificate (PEM), with --tls-key; turns TLS on.
    #[arg(long, env = "NATS_CERT", value_name = "FILE")]
    pub tls_cert: Option<PathBuf>,
    /// Client private key (PEM).
    #[arg(long, env = "NATS_KEY", value_name = "FILE")]
    pub tls_key: Option<PathBuf>,
    /// A `nats` CLI context (~/.config/nats/context/NAME.json) or a context
    /// file path; flags given explicitly win over its fields.
    #[arg(long, env = "NATS_CONTEXT", value_name = "NAME")]
    pub context: Option<String>,
}

impl std::fmt::Debug for ConnectArgs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(&self.options(), f)
    }
}

impl ConnectArgs {
    /// The options these flags describe.
    pub fn options(&self) -> ConnectOptions {
        ConnectOptions {
            servers: self.nats.clone(),
            creds: self.creds.clone(),
            user: self.user.clone(),
            password: self.password.clone(),
            token: self.token.clone(),
            tls_ca: self.tls_ca.clone(),
            tls_cert: self.tls_cert.clone(),
            tls_key: self.tls_key.clone(),
            tls_first: false,
            context: self.context.clone(),
            connection_name: None,
        }
    }

    /// Connects with these options (see [`ConnectOptions::connect`]).
    pub async fn connect(&self) -> Result<async_nats::Client, ConnectError> {
        self.options().connect().await
    }

    /// The servers these options lead to, redacted for display (the
    /// context's if no `--nats` was given).
    pub fn display_servers(&self) -> String {
        self.options().resolve().map_or_else(
            |_| self.options().display_servers(),
            |o| o.display_servers(),
        )
    }
}
