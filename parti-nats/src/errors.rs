//! Mapping of async-nats errors onto [`BackendError`].
//!
//! async-nats wraps errors in layers (`UpdateError` around `PublishError` around
//! a server `jetstream::Error`, …). The classifier walks the whole source chain
//! and takes the first layer it recognises:
//!
//! | found | becomes |
//! |---|---|
//! | wrong last sequence (10071) / `WrongLastRevision` | [`BackendError::Conflict`] |
//! | any timed-out request or ack, a broken ack pipe | [`BackendError::Timeout`] (outcome unknown) |
//! | no responders, JetStream temporarily unavailable (503), I/O, closed client | [`BackendError::Unavailable`] |
//! | a message above the server's `max_payload` (refused by the client) | [`BackendError::TooLarge`] |
//! | anything else | [`BackendError::Other`] with the whole chain as text |
//!
//! A write whose ack timed out may have been applied: `Timeout` is never turned
//! into `Unavailable`, which callers may read as "not applied".
//!
//! Permission violations: the server answers a denied publish with an
//! asynchronous `-ERR 'Permissions Violation for Publish to …'` on the
//! connection (async-nats only hands it to the client's event callback, which a
//! caller-supplied client owns) and drops the message, so the request itself
//! just times out. When opening the buckets times out, [`permission_denial`]
//! asks the server for the connection's permissions (`$SYS.REQ.USER.INFO`,
//! answered for every user by nats-server 2.10+) and, if they deny a subject the
//! buckets need, the error becomes [`BackendError::PermissionDenied`].

use async_nats::jetstream;
use async_nats::jetstream::context::{
    PublishError, PublishErrorKind, RequestError, RequestErrorKind,
};
use async_nats::jetstream::kv::{EntryError, EntryErrorKind, UpdateError, UpdateErrorKind};
use async_nats::jetstream::stream::{ConsumerError, ConsumerErrorKind};
use parti_core::backend::BackendError;
use std::error::Error as StdError;

/// The server's "wrong last sequence" error code.
const WRONG_LAST_SEQUENCE: u64 = 10071;

/// What one layer of an error chain says, if it says anything decisive.
fn classify_layer(err: &(dyn StdError + 'static)) -> Option<BackendError> {
    if let Some(e) = err.downcast_ref::<PublishError>() {
        return match e.kind() {
            PublishErrorKind::WrongLastSequence => Some(BackendError::Conflict),
            PublishErrorKind::TimedOut | PublishErrorKind::BrokenPipe => {
                Some(BackendError::Timeout)
            }
            PublishErrorKind::StreamNotFound => Some(BackendError::Unavailable(
                "no JetStream stream answered (no responders)".into(),
            )),
            PublishErrorKind::MaxPayloadExceeded => Some(too_large(&e.to_string())),
            _ => None,
        };
    }
    if let Some(e) = err.downcast_ref::<UpdateError>() {
        return match e.kind() {
            UpdateErrorKind::WrongLastRevision => Some(BackendError::Conflict),
            UpdateErrorKind::TimedOut => Some(BackendError::Timeout),
            _ => None,
        };
    }
    if let Some(e) = err.downcast_ref::<EntryError>() {
        return match e.kind() {
            EntryErrorKind::TimedOut => Some(BackendError::Timeout),
            _ => None,
        };
    }
    if let Some(e) = err.downcast_ref::<RequestError>() {
        return match e.kind() {
            RequestErrorKind::TimedOut => Some(BackendError::Timeout),
            RequestErrorKind::NoResponders => Some(BackendError::Unavailable(
                "JetStream API has no responders".into(),
            )),
            _ => None,
        };
    }
    if let Some(e) = err.downcast_ref::<ConsumerError>() {
        return match e.kind() {
            ConsumerErrorKind::TimedOut => Some(BackendError::Timeout),
            ConsumerErrorKind::JetStream(js) => classify_server(&js),
            _ => None,
        };
    }
    if let Some(e) = err.downcast_ref::<jetstream::Error>() {
        return classify_server(e);
    }
    if err.downcast_ref::<std::io::Error>().is_some() {
        return Some(BackendError::Unavailable(err.to_string()));
    }
    None
}

/// The client's refusal of a message above `max_payload`; its text is
/// "… limit of <max_payload> exceeded by message size of <size>".
fn too_large(text: &str) -> BackendError {
    let numbers: Vec<usize> = text
        .split(|c: char| !c.is_ascii_digit())
        .filter_map(|n| n.parse().ok())
        .collect();
    BackendError::TooLarge {
        what: String::new(),
        size: numbers.get(1).copied().unwrap_or(0),
        limit: numbers.first().copied().unwrap_or(0),
    }
}

fn classify_server(e: &jetstream::Error) -> Option<BackendError> {
    if e.error_code().0 == WRONG_LAST_SEQUENCE {
        return Some(BackendError::Conflict);
    }
    if e.code() == 503 {
        return Some(BackendError::Unavailable(e.to_string()));
    }
    None
}

/// Renders an error with all its sources: `a: b: c`.
pub(crate) fn chain_text(err: &(dyn StdError + 'static)) -> String {
    let mut text = err.to_string();
    let mut cur = err.source();
    while let Some(e) = cur {
        let s = e.to_string();
        if !text.contains(&s) {
            text.push_str(": ");
            text.push_str(&s);
        }
        cur = e.source();
    }
    text
}

/// Classifies any async-nats error (see the module docs). `what` names the
/// operation for the `Other`/`Unavailable` messages.
pub(crate) fn classify(what: &str, err: &(dyn StdError + 'static)) -> BackendError {
    let mut cur: Option<&(dyn StdError + 'static)> = Some(err);
    while let Some(e) = cur {
        if let Some(found) = classify_layer(e) {
            return match found {
                BackendError::Unavailable(msg) => {
                    BackendError::Unavailable(format!("{what}: {msg}"))
                }
                BackendError::TooLarge { size, limit, .. } => BackendError::TooLarge {
                    what: format!("the value of {what}"),
                    size,
                    limit,
                },
                other => other,
            };
        }
        cur = e.source();
    }
    let text = chain_text(err);
    // The client's command channel closes when the client is closed or dropped.
    if text.contains("channel closed") || text.contains("connection closed") {
        return BackendError::Unavailable(format!("{what}: {text}"));
    }
    if text.contains("timed out") {
        return BackendError::Timeout;
    }
    BackendError::Other(format!("{what}: {text}"))
}

/// Whether a NATS subject matches a pattern (`*` one token, `>` the rest).
pub(crate) fn subject_matches(pattern: &str, subject: &str) -> bool {
    let mut subject = subject.split('.');
    for p in pattern.split('.') {
        if p == ">" {
            return subject.next().is_some();
        }
        match subject.next() {
            Some(s) if p == "*" || p == s => {}
            _ => return false,
        }
    }
    subject.next().is_none()
}

/// Why `subject` may not be published to under these publish permissions, if
/// it may not: `allow` (empty: everything) and `deny` lists of patterns.
pub(crate) fn publish_refusal(allow: &[String], deny: &[String], subject: &str) -> Option<String> {
    if let Some(rule) = deny.iter().find(|p| subject_matches(p, subject)) {
        return Some(format!(
            "publishing to {subject:?} is denied (rule {rule:?})"
        ));
    }
    if !allow.is_empty() && !allow.iter().any(|p| subject_matches(p, subject)) {
        return Some(format!(
            "publishing to {subject:?} is not allowed (allowed: {allow:?})"
        ));
    }
    None
}

/// Asks the server for this connection's permissions and checks `subjects`
/// against them; the first refusal found, if any. `None` also when the server
/// does not answer (then nothing is known).
pub(crate) async fn permission_denial(
    client: &async_nats::Client,
    subjects: &[String],
    timeout: std::time::Duration,
) -> Option<String> {
    let request = client.request("$SYS.REQ.USER.INFO", bytes::Bytes::new());
    let reply = tokio::time::timeout(timeout, request).await.ok()?.ok()?;
    let info: serde_json::Value = serde_json::from_slice(&reply.payload).ok()?;
    let data = info.get("data")?;
    let list = |kind: &str| -> Vec<String> {
        data.pointer(&format!("/permissions/publish/{kind}"))
            .and_then(|v| v.as_array())
            .map(|a| {
                a.iter()
                    .filter_map(|s| s.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default()
    };
    let (allow, deny) = (list("allow"), list("deny"));
    let user = data.get("user").and_then(|u| u.as_str()).unwrap_or("?");
    subjects
        .iter()
        .find_map(|s| publish_refusal(&allow, &deny, s))
        .map(|why| format!("user {user:?}: {why}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn publish_kinds_map_to_backend_errors() {
        let conflict = UpdateError::with_source(
            UpdateErrorKind::WrongLastRevision,
            PublishError::new(PublishErrorKind::WrongLastSequence),
        );
        assert_eq!(classify("x", &conflict), BackendError::Conflict);
        let timeout: UpdateError = PublishError::new(PublishErrorKind::TimedOut).into();
        assert_eq!(classify("x", &timeout), BackendError::Timeout);
        let broken = UpdateError::with_source(
            UpdateErrorKind::Other,
            PublishError::new(PublishErrorKind::BrokenPipe),
        );
        assert_eq!(classify("x", &broken), BackendError::Timeout);
        let no_stream = UpdateError::with_source(
            UpdateErrorKind::Other,
            PublishError::new(PublishErrorKind::StreamNotFound),
        );
        assert!(matches!(
            classify("put", &no_stream),
            BackendError::Unavailable(m) if m.starts_with("put:")
        ));
    }

    #[test]
    fn subjects_match_like_the_server() {
        assert!(subject_matches("$KV.b.>", "$KV.b.worker-1"));
        assert!(!subject_matches("$KV.b.>", "$KV.b"));
        assert!(subject_matches(
            "$JS.API.STREAM.*.KV_b",
            "$JS.API.STREAM.INFO.KV_b"
        ));
        assert!(!subject_matches(
            "$JS.API.STREAM.*.KV_b",
            "$JS.API.STREAM.INFO.KV_bc"
        ));
        assert!(!subject_matches("a.b", "a.b.c"));
        assert!(subject_matches(">", "a"));
        let deny = vec!["$KV.b.>".to_string()];
        assert!(publish_refusal(&[], &deny, "$KV.b.k").is_some());
        assert!(publish_refusal(&[], &deny, "$KV.c.k").is_none());
        let allow = vec!["$KV.c.>".to_string()];
        assert!(publish_refusal(&allow, &[], "$KV.b.k").is_some());
    }

    #[test]
    fn unknown_errors_keep_their_text() {
        let err = std::fmt::Error;
        assert!(matches!(classify("op", &err), BackendError::Other(m) if m.starts_with("op:")));
    }
}
