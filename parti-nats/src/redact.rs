//! Keeping secrets out of messages: server URLs may carry a password or a
//! token in their user-info part (`nats://user:secret@host`,
//! `nats://token@host`). Every message, error and log line that names a server
//! goes through [`redact_url`] or [`redact_urls_in`].

/// What replaces a secret.
pub const REDACTED: &str = "***";

/// `url` with its secret removed: `scheme://user:secret@host` becomes
/// `scheme://user:***@host`, and `scheme://token@host` becomes
/// `scheme://***@host`. A URL without user-info is returned unchanged; so is
/// text that is not a URL.
pub fn redact_url(url: &str) -> String {
    redact_urls_in(url)
}

/// `text` with the user-info secret of every URL in it removed (see
/// [`redact_url`]); a comma-separated server list, or an error message quoting
/// URLs, comes out safe to print.
pub fn redact_urls_in(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find("://") {
        let (head, tail) = rest.split_at(at + 3);
        out.push_str(head);
        // The authority ends at the first character that cannot be part of it.
        let end = tail
            .find(|c: char| c == '/' || c == ',' || c == '"' || c == '\'' || c.is_whitespace())
            .unwrap_or(tail.len());
        let (authority, after) = tail.split_at(end);
        match authority.rfind('@') {
            Some(sign) => {
                let userinfo = &authority[..sign];
                match userinfo.split_once(':') {
                    Some((user, _secret)) => {
                        out.push_str(user);
                        out.push(':');
                        out.push_str(REDACTED);
                    }
                    None => out.push_str(REDACTED),
                }
                out.push_str(&authority[sign..]);
            }
            None => out.push_str(authority),
        }
        rest = after;
    }
    out.push_str(rest);
    out
}

/// `text` with every occurrence of each non-empty secret replaced by
/// [`REDACTED`], then with URL user-info redacted: for messages of a library
/// that may quote a password or token it was given.
pub fn redact_secrets(text: &str, secrets: &[&str]) -> String {
    let mut out = text.to_string();
    for secret in secrets.iter().filter(|s| !s.is_empty()) {
        out = out.replace(secret, REDACTED);
    }
    redact_urls_in(&out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_and_tokens_are_removed() {
        assert_eq!(
            redact_url("nats://user:secret@host:4222"),
            "nats://user:***@host:4222"
        );
        assert_eq!(redact_url("tls://s3cr3t@host"), "tls://***@host");
        assert_eq!(redact_url("nats://host:4222"), "nats://host:4222");
        assert_eq!(redact_url("host:4222"), "host:4222");
        assert_eq!(
            redact_urls_in("nats://a:p1@h1:1,nats://b:p2@h2:2/x"),
            "nats://a:***@h1:1,nats://b:***@h2:2/x"
        );
        assert_eq!(
            redact_urls_in("connecting to \"nats://u:pw@h\": refused"),
            "connecting to \"nats://u:***@h\": refused"
        );
        // A password holding '@' is cut at the last '@' of the authority.
        assert_eq!(redact_url("nats://u:p@ss@h"), "nats://u:***@h");
        assert_eq!(
            redact_secrets("auth failed for tok123", &["tok123", ""]),
            "auth failed for ***"
        );
    }
}
