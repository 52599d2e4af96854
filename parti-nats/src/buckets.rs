//! The three buckets of a group: their wanted configuration, idempotent
//! creation, and the check of a bucket that already exists.

use crate::errors::{classify, permission_denial};
use async_nats::jetstream::context::{
    AccountError, AccountErrorKind, CreateKeyValueError, CreateKeyValueErrorKind,
    CreateStreamError, CreateStreamErrorKind, GetStreamError, GetStreamErrorKind,
    KeyValueErrorKind,
};
use async_nats::jetstream::stream::{self, StorageType};
use async_nats::jetstream::{self as js_api, Context, ErrorCode, kv};
use parti_core::backend::BackendError;
use std::error::Error as StdError;
use std::time::Duration;

/// The smallest key TTL (bucket `max_age`) the server accepts; less is rejected
/// with error 10052, so [`NatsBackend`](crate::NatsBackend) refuses it up front.
pub const MIN_MAX_AGE: Duration = Duration::from_millis(100);
/// The smallest limit-marker TTL the server accepts.
pub(crate) const MIN_MARKER_TTL: Duration = Duration::from_secs(1);

/// What one bucket must look like.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct BucketSpec {
    /// Bucket name (the stream is `KV_<name>`).
    pub name: String,
    /// Key lifetime after the last write; zero for none.
    pub max_age: Duration,
    /// Replicas (1 or 3).
    pub replicas: usize,
    /// File or memory.
    pub storage: StorageType,
    /// How long the server keeps the marker it writes when a key expires. Such a
    /// marker is what makes expiry visible to watchers (as a purge).
    pub marker_ttl: Duration,
    /// Consumers the group may hold on this bucket's stream at once (see
    /// [`consumers_for_ids`]). A stream whose limit is lower is raised to it;
    /// a limit is never lowered.
    pub consumers: i32,
}

/// Consumers per worker ID that a bucket's stream must allow: each worker
/// watches each bucket through one consumer, a replaced watch's consumer
/// lingers until the server drops it as inactive, and tools (`parti inspect`,
/// a worker being replaced) need a few more.
pub(crate) const CONSUMERS_PER_WORKER_ID: i32 = 4;

/// The consumer room a group with `ids` worker IDs needs on each stream.
/// nats-server 2.15 allows 1 000 consumers per stream unless the stream sets
/// its own limit, which a group of more than 250 IDs can exceed.
pub(crate) fn consumers_for_ids(ids: u32) -> i32 {
    let ids = i32::try_from(ids).unwrap_or(i32::MAX);
    ids.saturating_mul(CONSUMERS_PER_WORKER_ID)
}

impl BucketSpec {
    fn kv_config(&self) -> kv::Config {
        kv::Config {
            bucket: self.name.clone(),
            description: "parti coordination bucket".into(),
            history: 1,
            max_age: self.max_age,
            storage: self.storage,
            num_replicas: self.replicas,
            limit_markers: Some(self.marker_ttl),
            ..Default::default()
        }
    }

    /// Checks the spec itself against the server's limits, before any request.
    fn validate(&self) -> Result<(), BackendError> {
        if !self.max_age.is_zero() && self.max_age < MIN_MAX_AGE {
            return Err(BackendError::Misconfigured(format!(
                "bucket {}: key TTL {:?} is below the server's minimum max_age of {:?}",
                self.name, self.max_age, MIN_MAX_AGE
            )));
        }
        if self.marker_ttl < MIN_MARKER_TTL {
            return Err(BackendError::Misconfigured(format!(
                "bucket {}: limit-marker TTL {:?} is below the server's minimum of {:?}",
                self.name, self.marker_ttl, MIN_MARKER_TTL
            )));
        }
        Ok(())
    }

    /// Differences between this spec and an existing stream's configuration that
    /// would break the protocol; empty if compatible.
    pub(crate) fn differences(&self, existing: &stream::Config) -> Vec<String> {
        let mut diffs = Vec::new();
        let replicas = existing.num_replicas.max(1);
        if replicas != self.replicas.max(1) {
            diffs.push(format!(
                "replicas {replicas} (expected {})",
                self.replicas.max(1)
            ));
        }
        if existing.storage != self.storage {
            diffs.push(format!(
                "storage {:?} (expected {:?})",
                existing.storage, self.storage
            ));
        }
        if existing.max_age != self.max_age {
            diffs.push(format!(
                "max_age {:?} (expected {:?})",
                existing.max_age, self.max_age
            ));
        }
        if existing.max_messages_per_subject != 1 {
            diffs.push(format!(
                "history {} (expected 1)",
                existing.max_messages_per_subject
            ));
        }
        let markers = existing
            .subject_delete_marker_ttl
            .is_some_and(|d| !d.is_zero());
        if !self.max_age.is_zero() && !markers {
            diffs.push("no limit markers (expiry would be invisible to watchers)".into());
        }
        diffs
    }

    fn check(&self, existing: &stream::Config) -> Result<(), BackendError> {
        let diffs = self.differences(existing);
        if diffs.is_empty() {
            Ok(())
        } else {
            Err(BackendError::Misconfigured(format!(
                "bucket {} exists with an incompatible configuration: {}",
                self.name,
                diffs.join(", ")
            )))
        }
    }
}

/// Opens the bucket, creating it if it is missing; an existing bucket must be
/// compatible with the spec ([`BackendError::Misconfigured`] names the bucket and
/// every difference).
pub(crate) async fn ensure(js: &Context, spec: &BucketSpec) -> Result<kv::Store, BackendError> {
    spec.validate()?;
    let stream_name = format!("KV_{}", spec.name);
    match js.get_stream(&stream_name).await {
        Ok(stream) => {
            spec.check(&stream.cached_info().config)?;
            make_consumer_room(js, spec, &stream.cached_info().config).await;
            return open(js, spec).await;
        }
        Err(err) => {
            let missing = matches!(
                err.kind(),
                GetStreamErrorKind::JetStream(e) if e.error_code() == ErrorCode::STREAM_NOT_FOUND
            );
            if !missing {
                let error = classify_bucket(&format!("reading bucket {}", spec.name), &err);
                return Err(explain_timeout(js, spec, error).await);
            }
        }
    }
    match js.create_key_value(spec.kv_config()).await {
        Ok(store) => {
            spec.check(&store.stream.cached_info().config)?;
            make_consumer_room(js, spec, &store.stream.cached_info().config).await;
            Ok(store)
        }
        Err(create_err) => {
            // Someone created it concurrently, or with another configuration:
            // compare what is there rather than parsing the error text.
            match js.get_stream(&stream_name).await {
                Ok(stream) => {
                    spec.check(&stream.cached_info().config)?;
                    make_consumer_room(js, spec, &stream.cached_info().config).await;
                    open(js, spec).await
                }
                Err(_) => {
                    let what = format!("creating bucket {}", spec.name);
                    let error = match classify_bucket(&what, &create_err) {
                        BackendError::Other(msg) => BackendError::Misconfigured(msg),
                        other => other,
                    };
                    Err(explain_timeout(js, spec, error).await)
                }
            }
        }
    }
}

/// Consumers a stream that sets no limit of its own allows on nats-server
/// 2.15 (its `default_max_consumers`; such a stream reports -1, and a value
/// not above zero cannot ask for more).
pub(crate) const SERVER_DEFAULT_MAX_CONSUMERS: i32 = 1000;

/// Raises the stream's consumer limit to `spec.consumers` when it is lower: a
/// limit of its own below it, or none (the server's default) when the group
/// needs more than [`SERVER_DEFAULT_MAX_CONSUMERS`]. A limit is never lowered.
/// A failure is logged, not returned: the bucket works, only a group using
/// more of its ID range than the limit allows would meet refused watches.
async fn make_consumer_room(js: &Context, spec: &BucketSpec, config: &stream::Config) {
    let current = if config.max_consumers > 0 {
        config.max_consumers
    } else {
        SERVER_DEFAULT_MAX_CONSUMERS
    };
    if current >= spec.consumers {
        return;
    }
    let mut raised = config.clone();
    raised.max_consumers = spec.consumers;
    match js.update_stream(&raised).await {
        Ok(_) => tracing::info!(
            bucket = %spec.name,
            from = current,
            to = spec.consumers,
            "raised the bucket's consumer limit for the size of the worker ID range"
        ),
        Err(error) => tracing::warn!(
            bucket = %spec.name,
            limit = current,
            needed = spec.consumers,
            %error,
            "cannot raise the bucket's consumer limit: with more workers than the limit allows, their watches will be refused (raise the stream's max_consumers by hand)"
        ),
    }
}

/// A timed-out request about a bucket may be a permission violation in
/// disguise (the server drops a denied publish): if the connection's
/// permissions refuse a subject the bucket needs, say so.
async fn explain_timeout(js: &Context, spec: &BucketSpec, error: BackendError) -> BackendError {
    if error != BackendError::Timeout {
        return error;
    }
    let stream = format!("KV_{}", spec.name);
    let subjects = [
        format!("$JS.API.STREAM.INFO.{stream}"),
        format!("$JS.API.STREAM.CREATE.{stream}"),
        format!("$JS.API.CONSUMER.CREATE.{stream}.watch"),
        format!("$JS.API.DIRECT.GET.{stream}.$KV.{}.key", spec.name),
        format!("$KV.{}.key", spec.name),
    ];
    match permission_denial(&js.client(), &subjects, PERMISSION_QUERY_TIMEOUT).await {
        Some(why) => BackendError::PermissionDenied(format!("bucket {}: {why}", spec.name)),
        None => error,
    }
}

/// Bound on the permission query after a timeout.
const PERMISSION_QUERY_TIMEOUT: Duration = Duration::from_secs(2);

async fn open(js: &Context, spec: &BucketSpec) -> Result<kv::Store, BackendError> {
    js.get_key_value(&spec.name).await.map_err(|err| {
        if err.kind() == KeyValueErrorKind::InvalidStoreName {
            BackendError::Misconfigured(format!(
                "bucket {}: invalid name or not a key-value bucket",
                spec.name
            ))
        } else {
            classify_bucket(&format!("opening bucket {}", spec.name), &err)
        }
    })
}

/// JetStream API errors that mean "not now" rather than "never": the cluster
/// has no meta or stream leader yet, a leader moved, peers are missing for the
/// placement of a replicated stream, results are incomplete, the stream is
/// offline. They come and go with node restarts and leader elections.
const TRANSIENT_CODES: [ErrorCode; 8] = [
    ErrorCode::CLUSTER_INCOMPLETE,
    ErrorCode::CLUSTER_NO_PEERS,
    ErrorCode::CLUSTER_NOT_ASSIGNED,
    ErrorCode::CLUSTER_NOT_AVAILABLE,
    ErrorCode::CLUSTER_NOT_LEADER,
    ErrorCode::INSUFFICIENT_RESOURCES,
    ErrorCode::STREAM_OFFLINE,
    ErrorCode::CLUSTER_SERVER_MEMBER_CHANGE_INFLIGHT,
];

/// A JetStream API error about a bucket: [`BackendError::Unavailable`] if it
/// may pass (a transient code, or HTTP-like status 503), else `None`.
fn server_error(what: &str, e: &js_api::Error) -> Option<BackendError> {
    (TRANSIENT_CODES.contains(&e.error_code()) || e.code() == 503)
        .then(|| BackendError::Unavailable(format!("{what}: {e}")))
}

/// What one layer of a bucket request's error says. async-nats reports the
/// server's answers to stream and account requests as error *kinds* with no
/// source, which [`classify`] cannot see into.
fn bucket_layer(what: &str, err: &(dyn StdError + 'static)) -> Option<BackendError> {
    if let Some(e) = err.downcast_ref::<GetStreamError>() {
        if let GetStreamErrorKind::JetStream(js) = e.kind() {
            return server_error(what, &js);
        }
    } else if let Some(e) = err.downcast_ref::<CreateStreamError>() {
        match e.kind() {
            CreateStreamErrorKind::JetStream(js) => return server_error(what, &js),
            CreateStreamErrorKind::TimedOut => return Some(BackendError::Timeout),
            CreateStreamErrorKind::JetStreamUnavailable => {
                return Some(BackendError::Unavailable(format!(
                    "{what}: JetStream API has no responders"
                )));
            }
            _ => {}
        }
    } else if let Some(e) = err.downcast_ref::<AccountError>() {
        match e.kind() {
            AccountErrorKind::JetStream(js) => return server_error(what, &js),
            AccountErrorKind::TimedOut => return Some(BackendError::Timeout),
            AccountErrorKind::JetStreamUnavailable => {
                return Some(BackendError::Unavailable(format!(
                    "{what}: JetStream API has no responders"
                )));
            }
            _ => {}
        }
    } else if let Some(e) = err.downcast_ref::<CreateKeyValueError>()
        && e.kind() == CreateKeyValueErrorKind::TimedOut
    {
        return Some(BackendError::Timeout);
    }
    None
}

/// [`classify`] for bucket requests: first the server answers that async-nats
/// keeps out of the error chain (see [`bucket_layer`]), so that a cluster in
/// the middle of an election reads as `Unavailable`, not as a bucket problem.
pub(crate) fn classify_bucket(what: &str, err: &(dyn StdError + 'static)) -> BackendError {
    let mut cur: Option<&(dyn StdError + 'static)> = Some(err);
    while let Some(e) = cur {
        if let Some(found) = bucket_layer(what, e) {
            return found;
        }
        cur = e.source();
    }
    classify(what, err)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> BucketSpec {
        BucketSpec {
            name: "parti_g_members".into(),
            max_age: Duration::from_secs(2),
            replicas: 3,
            storage: StorageType::File,
            marker_ttl: Duration::from_secs(30),
            consumers: 400,
        }
    }

    #[test]
    fn differences_name_every_field() {
        let s = spec();
        let existing = stream::Config {
            num_replicas: 1,
            storage: StorageType::Memory,
            max_age: Duration::from_secs(5),
            max_messages_per_subject: 5,
            subject_delete_marker_ttl: None,
            ..Default::default()
        };
        let diffs = s.differences(&existing).join("; ");
        for needle in [
            "replicas 1",
            "storage Memory",
            "max_age 5s",
            "history 5",
            "limit markers",
        ] {
            assert!(diffs.contains(needle), "{diffs}");
        }
        let ok = stream::Config {
            num_replicas: 3,
            storage: StorageType::File,
            max_age: Duration::from_secs(2),
            max_messages_per_subject: 1,
            subject_delete_marker_ttl: Some(Duration::from_secs(1)),
            ..Default::default()
        };
        assert!(s.differences(&ok).is_empty());
        let err = s.check(&existing).unwrap_err();
        assert!(matches!(err, BackendError::Misconfigured(m) if m.contains("parti_g_members")));
    }

    fn server(code: usize, err_code: u64, description: &str) -> js_api::Error {
        serde_json::from_value(serde_json::json!({
            "code": code,
            "err_code": err_code,
            "description": description,
        }))
        .unwrap()
    }

    #[test]
    fn cluster_trouble_on_bucket_requests_is_transient() {
        let not_ready = server(503, 10008, "JetStream system temporarily unavailable");
        let read = GetStreamError::new(GetStreamErrorKind::JetStream(not_ready.clone()));
        assert!(matches!(
            classify_bucket("reading bucket b", &read),
            BackendError::Unavailable(m) if m.starts_with("reading bucket b:") && m.contains("10008")
        ));
        // get_key_value wraps the stream read.
        let open = async_nats::jetstream::context::KeyValueError::with_source(
            KeyValueErrorKind::GetBucket,
            read,
        );
        assert!(matches!(
            classify_bucket("opening bucket b", &open),
            BackendError::Unavailable(_)
        ));
        let no_peers = server(400, 10005, "no suitable peers for placement");
        let create = CreateKeyValueError::with_source(
            CreateKeyValueErrorKind::BucketCreate,
            CreateStreamError::new(CreateStreamErrorKind::JetStream(no_peers)),
        );
        assert!(matches!(
            classify_bucket("creating bucket b", &create),
            BackendError::Unavailable(_)
        ));
        let no_responders = CreateKeyValueError::with_source(
            CreateKeyValueErrorKind::BucketCreate,
            CreateStreamError::new(CreateStreamErrorKind::JetStreamUnavailable),
        );
        assert!(matches!(
            classify_bucket("creating bucket b", &no_responders),
            BackendError::Unavailable(_)
        ));
        let account = CreateKeyValueError::with_source(
            CreateKeyValueErrorKind::JetStream,
            AccountError::new(AccountErrorKind::JetStream(not_ready)),
        );
        assert!(matches!(
            classify_bucket("creating bucket b", &account),
            BackendError::Unavailable(_)
        ));
        let timed_out = CreateKeyValueError::with_source(
            CreateKeyValueErrorKind::TimedOut,
            CreateStreamError::new(CreateStreamErrorKind::TimedOut),
        );
        assert_eq!(
            classify_bucket("creating bucket b", &timed_out),
            BackendError::Timeout
        );
    }

    #[test]
    fn permanent_bucket_errors_stay_permanent() {
        let other_config = server(
            400,
            10058,
            "stream name already in use with a different configuration",
        );
        let create = CreateKeyValueError::with_source(
            CreateKeyValueErrorKind::BucketCreate,
            CreateStreamError::new(CreateStreamErrorKind::JetStream(other_config)),
        );
        assert!(matches!(
            classify_bucket("creating bucket b", &create),
            BackendError::Other(m) if m.contains("10058")
        ));
        let replicas = server(
            500,
            10074,
            "replicas > 1 not supported in non-clustered mode",
        );
        let read = GetStreamError::new(GetStreamErrorKind::JetStream(replicas));
        assert!(matches!(
            classify_bucket("reading bucket b", &read),
            BackendError::Other(_)
        ));
    }

    #[test]
    fn spec_limits_are_checked_before_any_request() {
        let mut s = spec();
        s.max_age = Duration::from_millis(50);
        assert!(
            matches!(s.validate(), Err(BackendError::Misconfigured(m)) if m.contains("minimum"))
        );
        let mut s = spec();
        s.marker_ttl = Duration::from_millis(500);
        assert!(s.validate().is_err());
        let mut s = spec();
        s.max_age = Duration::ZERO;
        assert!(s.validate().is_ok());
    }
}
