//! The `nats` CLI's named contexts: JSON files at
//! `$XDG_CONFIG_HOME/nats/context/NAME.json` (default `~/.config/...`) with
//! the fields `url`, `user`, `password`, `token`, `creds`, `cert`, `key`,
//! `ca` and `tls_first`, among others this client does not use.

use super::ConnectOptions;
use serde::Deserialize;
use std::ffi::OsString;
use std::path::{Path, PathBuf};

/// The fields of a context file that matter for a connection. Empty strings
/// count as absent (the `nats` CLI writes every field).
#[derive(Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(default)]
pub struct NatsContext {
    /// Comma-separated server URLs.
    pub url: String,
    /// User name.
    pub user: String,
    /// Password.
    pub password: String,
    /// Token.
    pub token: String,
    /// Credentials file (a path or a `file://` URI).
    pub creds: String,
    /// NKey seed file: not supported here.
    pub nkey: String,
    /// User JWT: not supported here.
    pub user_jwt: String,
    /// Client certificate.
    pub cert: String,
    /// Client key.
    pub key: String,
    /// CA certificate.
    pub ca: String,
    /// TLS before the server's INFO.
    pub tls_first: bool,
}

impl std::fmt::Debug for NatsContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NatsContext")
            .field("url", &crate::redact::redact_urls_in(&self.url))
            .field("user", &self.user)
            .field("creds", &self.creds)
            .field("cert", &self.cert)
            .field("key", &self.key)
            .field("ca", &self.ca)
            .field("tls_first", &self.tls_first)
            .finish_non_exhaustive()
    }
}

/// The file of context `name`: `name` itself if it looks like a path (holds a
/// `/` or ends in `.json`), else `<config>/nats/context/<name>.json` with
/// `<config>` = `$XDG_CONFIG_HOME` or `$HOME/.config`. `None` when neither
/// variable is set. `env` looks variables up (`std::env::var_os` in real use).
pub fn context_path(name: &str, env: impl Fn(&str) -> Option<OsString>) -> Option<PathBuf> {
    if name.contains(std::path::MAIN_SEPARATOR) || name.contains('/') || name.ends_with(".json") {
        return Some(PathBuf::from(name));
    }
    let config = env("XDG_CONFIG_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| env("HOME").map(|home| PathBuf::from(home).join(".config")))?;
    Some(
        config
            .join("nats")
            .join("context")
            .join(format!("{name}.json")),
    )
}

fn non_empty(s: &str) -> Option<String> {
    (!s.trim().is_empty()).then(|| s.trim().to_string())
}

impl NatsContext {
    /// Reads and parses a context file; the error says why (not found, not
    /// JSON, which field).
    pub fn load(path: &Path) -> Result<NatsContext, String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read: {e}"))?;
        Self::parse(&text)
    }

    /// Parses the JSON of a context.
    pub fn parse(text: &str) -> Result<NatsContext, String> {
        serde_json::from_str(text).map_err(|e| format!("not a valid context file: {e}"))
    }

    /// `explicit` with the gaps filled from this context; refuses what this
    /// client cannot honour (`nkey`, `user_jwt`, credential URIs other than
    /// `file://`).
    pub fn merge_under(&self, explicit: &ConnectOptions) -> Result<ConnectOptions, String> {
        if non_empty(&self.nkey).is_some() {
            return Err("`nkey` is not supported; use a creds file".into());
        }
        if non_empty(&self.user_jwt).is_some() {
            return Err("`user_jwt` is not supported; use a creds file".into());
        }
        let creds = match non_empty(&self.creds) {
            None => None,
            Some(c) => match c.strip_prefix("file://") {
                Some(path) => Some(PathBuf::from(path)),
                None if c.contains("://") => {
                    return Err(format!(
                        "`creds` {c}: only paths and file:// URIs are supported"
                    ));
                }
                None => Some(PathBuf::from(c)),
            },
        };
        let mut out = explicit.clone();
        out.context = None;
        // Credentials come as a whole: explicit ones replace the context's.
        let explicit_auth =
            explicit.creds.is_some() || explicit.user.is_some() || explicit.token.is_some();
        if !explicit_auth {
            out.creds = creds;
            out.user = non_empty(&self.user);
            out.password = explicit
                .password
                .clone()
                .or_else(|| non_empty(&self.password));
            out.token = non_empty(&self.token);
        }
        out.servers = explicit.servers.clone().or_else(|| non_empty(&self.url));
        out.tls_ca = explicit
            .tls_ca
            .clone()
            .or_else(|| non_empty(&self.ca).map(PathBuf::from));
        if explicit.tls_cert.is_none() && explicit.tls_key.is_none() {
            out.tls_cert = non_empty(&self.cert).map(PathBuf::from);
            out.tls_key = non_empty(&self.key).map(PathBuf::from);
        }
        out.tls_first = explicit.tls_first || self.tls_first;
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = r#"{
      "description": "orders",
      "url": "nats://a:4222,nats://b:4222",
      "token": "",
      "user": "orders",
      "password": "s3cret",
      "creds": "",
      "nkey": "",
      "cert": "/etc/c.pem",
      "key": "/etc/k.pem",
      "ca": "/etc/ca.pem",
      "nsc": "",
      "jetstream_domain": "",
      "jetstream_api_prefix": "",
      "jetstream_event_prefix": "",
      "inbox_prefix": "",
      "user_jwt": "",
      "tls_first": false
    }"#;

    #[test]
    fn a_cli_context_fills_the_gaps() {
        let ctx = NatsContext::parse(SAMPLE).unwrap();
        assert!(!format!("{ctx:?}").contains("s3cret"));
        let merged = ctx.merge_under(&ConnectOptions::default()).unwrap();
        assert_eq!(
            merged.servers.as_deref(),
            Some("nats://a:4222,nats://b:4222")
        );
        assert_eq!(merged.user.as_deref(), Some("orders"));
        assert_eq!(merged.password.as_deref(), Some("s3cret"));
        assert_eq!(merged.token, None);
        assert_eq!(merged.tls_ca, Some(PathBuf::from("/etc/ca.pem")));
        assert_eq!(merged.tls_cert, Some(PathBuf::from("/etc/c.pem")));
        assert!(merged.check().is_ok());
    }

    #[test]
    fn explicit_options_win() {
        let ctx = NatsContext::parse(SAMPLE).unwrap();
        let explicit = ConnectOptions {
            servers: Some("nats://c:1".into()),
            token: Some("tok".into()),
            ..Default::default()
        };
        let merged = ctx.merge_under(&explicit).unwrap();
        assert_eq!(merged.servers.as_deref(), Some("nats://c:1"));
        assert_eq!(merged.token.as_deref(), Some("tok"));
        assert_eq!(merged.user, None);
        assert_eq!(merged.password, None);
        assert!(merged.check().is_ok());
    }

    #[test]
    fn unsupported_fields_are_refused_by_name() {
        let ctx = NatsContext::parse(r#"{"nkey": "/k.nk"}"#).unwrap();
        let err = ctx.merge_under(&ConnectOptions::default()).unwrap_err();
        assert!(err.contains("nkey"), "{err}");
        let ctx = NatsContext::parse(r#"{"creds": "op://vault/item"}"#).unwrap();
        assert!(ctx.merge_under(&ConnectOptions::default()).is_err());
        let ctx = NatsContext::parse(r#"{"creds": "file:///x.creds"}"#).unwrap();
        let merged = ctx.merge_under(&ConnectOptions::default()).unwrap();
        assert_eq!(merged.creds, Some(PathBuf::from("/x.creds")));
        let err = NatsContext::parse(r#"{"url": 5}"#).unwrap_err();
        assert!(err.contains("url") || err.contains("string"), "{err}");
    }

    #[test]
    fn paths_follow_xdg() {
        let env = |xdg: Option<&str>| {
            let xdg = xdg.map(OsString::from);
            move |var: &str| match var {
                "XDG_CONFIG_HOME" => xdg.clone(),
                "HOME" => Some(OsString::from("/home/op")),
                _ => None,
            }
        };
        assert_eq!(
            context_path("prod", env(None)),
            Some(PathBuf::from("/home/op/.config/nats/context/prod.json"))
        );
        assert_eq!(
            context_path("prod", env(Some("/xdg"))),
            Some(PathBuf::from("/xdg/nats/context/prod.json"))
        );
        assert_eq!(
            context_path("./my.json", env(None)),
            Some(PathBuf::from("./my.json"))
        );
        assert_eq!(context_path("prod", |_| None), None);
    }
}
