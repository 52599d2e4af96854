//! The three buckets of a group: their wanted configuration, idempotent
//! creation, and the check of a bucket that already exists.

use crate::errors::{classify, permission_denial};
use async_nats::jetstream::context::{GetStreamErrorKind, KeyValueErrorKind};
use async_nats::jetstream::stream::{self, StorageType};
use async_nats::jetstream::{Context, ErrorCode, kv};
use parti_core::backend::BackendError;
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
            return open(js, spec).await;
        }
        Err(err) => {
            let missing = matches!(
                err.kind(),
                GetStreamErrorKind::JetStream(e) if e.error_code() == ErrorCode::STREAM_NOT_FOUND
            );
            if !missing {
                let error = classify(&format!("reading bucket {}", spec.name), &err);
                return Err(explain_timeout(js, spec, error).await);
            }
        }
    }
    match js.create_key_value(spec.kv_config()).await {
        Ok(store) => {
            spec.check(&store.stream.cached_info().config)?;
            Ok(store)
        }
        Err(create_err) => {
            // Someone created it concurrently, or with another configuration:
            // compare what is there rather than parsing the error text.
            match js.get_stream(&stream_name).await {
                Ok(stream) => {
                    spec.check(&stream.cached_info().config)?;
                    open(js, spec).await
                }
                Err(_) => {
                    let error =
                        match classify(&format!("creating bucket {}", spec.name), &create_err) {
                            BackendError::Other(msg) => BackendError::Misconfigured(msg),
                            other => other,
                        };
                    Err(explain_timeout(js, spec, error).await)
                }
            }
        }
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
            classify(&format!("opening bucket {}", spec.name), &err)
        }
    })
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
