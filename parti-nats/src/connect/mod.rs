//! Connection options shared by the `parti` CLI and the examples: a server
//! list, credentials (creds file, user/password or token), TLS files, and the
//! `nats` CLI's named contexts (`~/.config/nats/context/NAME.json`).
//!
//! [`ConnectOptions`] holds what the user gave; [`ConnectOptions::connect`]
//! merges in the context (options given explicitly win), checks the
//! combination and connects. Secrets never reach a message: errors name the
//! servers through [`redact_url`](crate::redact::redact_url), and `Debug`
//! hides passwords and tokens.
//!
//! With the `cli` feature, [`ConnectArgs`] offers the same options as clap
//! flags (`--nats`, `--creds`, `--user`, `--password`, `--token`, `--tls-ca`,
//! `--tls-cert`, `--tls-key`, `--context`), each also read from its `NATS_*`
//! environment variable.

#[cfg(feature = "cli")]
mod args;
mod context;

#[cfg(feature = "cli")]
pub use args::ConnectArgs;
pub use context::{NatsContext, context_path};

use crate::redact::{REDACTED, redact_secrets, redact_urls_in};
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;
use thiserror::Error;

/// The server used when neither a flag, the environment nor a context names one.
pub const DEFAULT_SERVER: &str = "nats://127.0.0.1:4222";

/// How long one connection attempt may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Why a connection could not be set up. Messages never hold a password or a
/// token.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum ConnectError {
    /// The named `nats` context could not be used.
    #[error("NATS context `{name}` ({path}): {reason}")]
    Context {
        /// The context name.
        name: String,
        /// The file it was read from.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// The options do not go together (e.g. a token and a user).
    #[error("connection options: {0}")]
    Invalid(String),
    /// A file named by the options cannot be used.
    #[error("{what} {path}: {reason}")]
    File {
        /// Which option named it (`--creds`, `--tls-ca`, …).
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// Why it cannot be used.
        reason: String,
    },
    /// The servers refused or could not be reached.
    #[error("cannot connect to {servers}: {reason}")]
    Connect {
        /// The servers tried (redacted).
        servers: String,
        /// The client's reason (redacted).
        reason: String,
    },
}

/// Where and how to connect. Every field is optional; [`connect`] fills the
/// gaps from the context, then from defaults.
///
/// [`connect`]: ConnectOptions::connect
#[derive(Clone, Default, PartialEq, Eq)]
pub struct ConnectOptions {
    /// Comma-separated server URLs (default: the context's, else
    /// [`DEFAULT_SERVER`]). A URL may carry `user:password@` or `token@`.
    pub servers: Option<String>,
    /// A NATS credentials file (JWT and NKey seed).
    pub creds: Option<PathBuf>,
    /// User name (with [`password`](Self::password)).
    pub user: Option<String>,
    /// Password.
    pub password: Option<String>,
    /// Authentication token.
    pub token: Option<String>,
    /// CA certificate (PEM) to verify the servers with; implies TLS.
    pub tls_ca: Option<PathBuf>,
    /// Client certificate (PEM), with [`tls_key`](Self::tls_key); implies TLS.
    pub tls_cert: Option<PathBuf>,
    /// Client private key (PEM).
    pub tls_key: Option<PathBuf>,
    /// TLS before the server's INFO (`tls_first` of a context).
    pub tls_first: bool,
    /// Name of a `nats` CLI context, or the path of a context file.
    pub context: Option<String>,
    /// Connection name shown by the server's monitoring.
    pub connection_name: Option<String>,
}

impl fmt::Debug for ConnectOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let hide = |s: &Option<String>| s.as_ref().map(|_| REDACTED);
        f.debug_struct("ConnectOptions")
            .field("servers", &self.servers.as_deref().map(redact_urls_in))
            .field("creds", &self.creds)
            .field("user", &self.user)
            .field("password", &hide(&self.password))
            .field("token", &hide(&self.token))
            .field("tls_ca", &self.tls_ca)
            .field("tls_cert", &self.tls_cert)
            .field("tls_key", &self.tls_key)
            .field("tls_first", &self.tls_first)
            .field("context", &self.context)
            .field("connection_name", &self.connection_name)
            .finish()
    }
}

impl ConnectOptions {
    /// Options for these servers (comma-separated), nothing else.
    pub fn servers(servers: impl Into<String>) -> Self {
        ConnectOptions {
            servers: Some(servers.into()),
            ..Default::default()
        }
    }

    /// These options with the context (if any) merged in: a field given here
    /// wins over the context's. The result names no context.
    pub fn resolve(&self) -> Result<ConnectOptions, ConnectError> {
        let Some(name) = &self.context else {
            return Ok(self.clone());
        };
        let path = context_path(name, |var| std::env::var_os(var)).ok_or_else(|| {
            ConnectError::Context {
                name: name.clone(),
                path: PathBuf::new(),
                reason: "neither XDG_CONFIG_HOME nor HOME is set".into(),
            }
        })?;
        let ctx = NatsContext::load(&path).map_err(|reason| ConnectError::Context {
            name: name.clone(),
            path: path.clone(),
            reason,
        })?;
        ctx.merge_under(self)
            .map_err(|reason| ConnectError::Context {
                name: name.clone(),
                path,
                reason,
            })
    }

    /// The server list to use, redacted for display.
    pub fn display_servers(&self) -> String {
        redact_urls_in(self.servers.as_deref().unwrap_or(DEFAULT_SERVER))
    }

    /// The servers as a list (trimmed, empty items dropped).
    fn server_list(&self) -> Vec<String> {
        self.servers
            .as_deref()
            .unwrap_or(DEFAULT_SERVER)
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .collect()
    }

    /// Checks that the options go together: one kind of credentials at most,
    /// a password only with a user, a client certificate with its key.
    pub fn check(&self) -> Result<(), ConnectError> {
        let kinds = [
            self.creds.is_some(),
            self.user.is_some() || self.password.is_some(),
            self.token.is_some(),
        ];
        if kinds.iter().filter(|k| **k).count() > 1 {
            return Err(ConnectError::Invalid(
                "use one of --creds, --user/--password and --token".into(),
            ));
        }
        if self.password.is_some() && self.user.is_none() {
            return Err(ConnectError::Invalid("--password needs --user".into()));
        }
        if self.user.is_some() && self.password.is_none() {
            return Err(ConnectError::Invalid("--user needs --password".into()));
        }
        if self.tls_cert.is_some() != self.tls_key.is_some() {
            return Err(ConnectError::Invalid(
                "--tls-cert and --tls-key go together".into(),
            ));
        }
        if self.server_list().is_empty() {
            return Err(ConnectError::Invalid("--nats names no server".into()));
        }
        Ok(())
    }

    /// Every secret these options hold (passwords, tokens, URL user-info), to
    /// scrub from the client's messages.
    fn secrets(&self) -> Vec<String> {
        let mut secrets: Vec<String> = self
            .password
            .iter()
            .chain(self.token.iter())
            .cloned()
            .collect();
        for url in self.server_list() {
            if let Some((_, rest)) = url.split_once("://")
                && let Some((userinfo, _)) = rest.rsplit_once('@')
            {
                let secret = userinfo.split_once(':').map_or(userinfo, |(_, p)| p);
                secrets.push(secret.to_string());
            }
        }
        secrets.retain(|s| !s.is_empty());
        secrets
    }

    /// Merges the context, checks the options and connects.
    pub async fn connect(&self) -> Result<async_nats::Client, ConnectError> {
        let resolved = self.resolve()?;
        resolved.check()?;
        let options = resolved.client_options().await?;
        let servers = resolved.server_list();
        async_nats::connect_with_options(servers.as_slice(), options)
            .await
            .map_err(|e| {
                let secrets = resolved.secrets();
                let secrets: Vec<&str> = secrets.iter().map(String::as_str).collect();
                ConnectError::Connect {
                    servers: resolved.display_servers(),
                    reason: redact_secrets(&e.to_string(), &secrets),
                }
            })
    }

    async fn client_options(&self) -> Result<async_nats::ConnectOptions, ConnectError> {
        let mut options = async_nats::ConnectOptions::new().connection_timeout(CONNECT_TIMEOUT);
        if let Some(name) = &self.connection_name {
            options = options.name(name);
        }
        if let Some(path) = &self.creds {
            options = options
                .credentials_file(path)
                .await
                .map_err(|e| ConnectError::File {
                    what: "--creds",
                    path: path.clone(),
                    reason: e.to_string(),
                })?;
        }
        if let (Some(user), Some(password)) = (&self.user, &self.password) {
            options = options.user_and_password(user.clone(), password.clone());
        }
        if let Some(token) = &self.token {
            options = options.token(token.clone());
        }
        for (what, file) in [
            ("--tls-ca", &self.tls_ca),
            ("--tls-cert", &self.tls_cert),
            ("--tls-key", &self.tls_key),
        ] {
            if let Some(path) = file
                && !path.is_file()
            {
                return Err(ConnectError::File {
                    what,
                    path: path.clone(),
                    reason: "no such file".into(),
                });
            }
        }
        if let Some(ca) = &self.tls_ca {
            options = options.add_root_certificates(ca.clone()).require_tls(true);
        }
        if let (Some(cert), Some(key)) = (&self.tls_cert, &self.tls_key) {
            options = options
                .add_client_certificate(cert.clone(), key.clone())
                .require_tls(true);
        }
        if self.tls_first {
            options = options.tls_first();
        }
        Ok(options)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_hides_secrets() {
        let options = ConnectOptions {
            servers: Some("nats://u:hunter2@h:1".into()),
            user: Some("u".into()),
            password: Some("hunter2".into()),
            token: Some("tok-9".into()),
            ..Default::default()
        };
        let text = format!("{options:?}");
        assert!(
            !text.contains("hunter2") && !text.contains("tok-9"),
            "{text}"
        );
        assert!(text.contains("nats://u:***@h:1"), "{text}");
    }

    #[test]
    fn combinations_are_checked() {
        let base = ConnectOptions::default();
        assert!(base.check().is_ok());
        let both = ConnectOptions {
            token: Some("t".into()),
            user: Some("u".into()),
            password: Some("p".into()),
            ..Default::default()
        };
        assert!(matches!(both.check(), Err(ConnectError::Invalid(m)) if m.contains("one of")));
        let lonely = ConnectOptions {
            password: Some("p".into()),
            ..Default::default()
        };
        assert!(matches!(lonely.check(), Err(ConnectError::Invalid(m)) if m.contains("--user")));
        let half_tls = ConnectOptions {
            tls_cert: Some("c.pem".into()),
            ..Default::default()
        };
        assert!(half_tls.check().is_err());
        assert!(ConnectOptions::servers(" , ").check().is_err());
    }

    #[test]
    fn secrets_include_url_userinfo() {
        let options = ConnectOptions {
            servers: Some("nats://a:pw1@h1, nats://tok2@h2 ,nats://h3".into()),
            token: Some("t3".into()),
            ..Default::default()
        };
        let mut secrets = options.secrets();
        secrets.sort();
        assert_eq!(secrets, ["pw1", "t3", "tok2"]);
        assert_eq!(options.server_list().len(), 3);
    }

    #[tokio::test]
    async fn unusable_files_are_named_by_their_option() {
        let creds = ConnectOptions {
            creds: Some("/nonexistent/user.creds".into()),
            ..ConnectOptions::servers("nats://127.0.0.1:1")
        };
        let err = creds.connect().await.err().map(|e| e.to_string());
        let err = err.unwrap_or_default();
        assert!(err.starts_with("--creds /nonexistent/user.creds:"), "{err}");
        let tls = ConnectOptions {
            tls_ca: Some("/nonexistent/ca.pem".into()),
            ..ConnectOptions::servers("nats://127.0.0.1:1")
        };
        let err = tls.connect().await.err().map(|e| e.to_string());
        assert_eq!(
            err.as_deref(),
            Some("--tls-ca /nonexistent/ca.pem: no such file")
        );
        let context = ConnectOptions {
            context: Some("/nonexistent/ctx.json".into()),
            ..Default::default()
        };
        let err = context.connect().await.err().map(|e| e.to_string());
        let err = err.unwrap_or_default();
        assert!(
            err.starts_with("NATS context `/nonexistent/ctx.json`"),
            "{err}"
        );
    }

    #[tokio::test]
    async fn unreachable_servers_give_a_redacted_error() {
        // Port 1 on loopback: nothing listens there.
        let options = ConnectOptions::servers("nats://u:topsecret@127.0.0.1:1");
        let err = options.connect().await.err().map(|e| e.to_string());
        let err = err.unwrap_or_default();
        assert!(
            err.contains("cannot connect to nats://u:***@127.0.0.1:1"),
            "{err}"
        );
        assert!(!err.contains("topsecret"), "{err}");
    }
}
