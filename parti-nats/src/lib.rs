//! # parti-nats
//!
//! The NATS JetStream key-value backend of Parti: [`NatsBackend`] implements
//! [`parti_core::backend::Backend`] on three KV buckets per group (members,
//! leader, assignments; names from [`parti_core::layout::BucketNames`] or the
//! config's overrides).
//!
//! - Every write that guards safety is a compare-and-set on the entry's revision
//!   (the stream sequence): creates expect "no message" or the revision of the
//!   delete/purge/expiry tombstone they replace; updates and deletes expect the
//!   caller's revision.
//! - Key lifetimes are the buckets' `max_age` (members: `worker_id_ttl`, leader:
//!   `election_ttl`), with limit markers so that expiry reaches watchers as a
//!   removal. No per-message TTL is used.
//! - Errors: a lost compare-and-set is [`BackendError::Conflict`], a create over a
//!   live value [`BackendError::AlreadyExists`], a timed-out write
//!   [`BackendError::Timeout`] (it may have been applied), an unreachable server
//!   [`BackendError::Unavailable`].
//! - Values that cannot be decoded are skipped with a warning and counted
//!   ([`NatsBackend::skipped_values`]).
//! - Reads (`GetMember`, `LoadAssignments`, the tombstone check of a create)
//!   use JetStream direct gets, which any replica of an R3 bucket may answer, so
//!   they can lag behind the latest write by a moment. Nothing relies on them for
//!   safety: every guarded write is a compare-and-set that the stream leader
//!   checks.
//! - The watch ([`Backend::watch`]) of a worker that does not lead filters the
//!   members bucket on its own key's and the leader's subjects
//!   ([`parti_core::backend::MemberScope::Own`]): the server sends it no other
//!   member's heartbeats, so a group's watch traffic grows linearly with its
//!   size, not quadratically.
//! - The watch resumes by itself after reconnects and
//!   failovers; see the `watch` and `consumer` modules. When the node leading a
//!   bucket's stream dies, writes answer `Unavailable` until the stream has a
//!   new leader (about 5–7 s with nats-server 2.15 defaults on loopback): choose
//!   heartbeat and election TTLs with that in mind for R3 deployments.
//!
//! ```no_run
//! # async fn demo() -> Result<(), parti_core::backend::BackendError> {
//! use parti_core::backend::Backend;
//! let config = parti_core::Config::default();
//! let backend = parti_nats::NatsBackend::connect("nats://127.0.0.1:4222", &config).await?;
//! backend.ensure_ready().await?;
//! # Ok(()) }
//! ```

mod buckets;
mod codec;
#[cfg(feature = "connect")]
pub mod connect;
mod consumer;
mod errors;
pub mod inspect;
mod ops;
mod partitioned;
pub mod redact;
mod watch;

use crate::buckets::BucketSpec;
use crate::codec::{Decoder, Source};
use crate::consumer::ResumableConsumer;
use crate::watch::{MergedWatch, SubWatch};
use async_nats::jetstream::kv::{self};
use async_nats::jetstream::stream::StorageType;
use async_nats::jetstream::{self, ContextBuilder};
use async_trait::async_trait;
use parti_core::Config;
use parti_core::backend::{Backend, BackendError, MemberScope, StoreOp, StoreReply, WatchStream};
use parti_core::config::Storage;
use parti_core::ids::WorkerId;
use parti_core::layout::{BucketNames, LEADER_KEY, META_KEY};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::sync::OnceCell;

pub use crate::buckets::MIN_MAX_AGE;
pub use crate::partitioned::{
    ConsumerHealth, Delivery, HandlerError, PartitionConsumer, PartitionConsumerBuilder,
    PartitionConsumerError, PartitionHealth,
};

/// Default lifetime of the marker the server writes when a key expires: a
/// watcher that reconnects within it still sees the removal.
pub const DEFAULT_LIMIT_MARKER_TTL: Duration = Duration::from_secs(30);

/// Bytes kept free below the server's `max_payload` for a message's headers
/// (a compare-and-set write carries its expected revision in one).
pub const PAYLOAD_HEADROOM: usize = 1024;

/// The `max_payload` assumed while the connection has not reported the
/// server's (the server's default, 1 MiB).
const DEFAULT_MAX_PAYLOAD: usize = 1024 * 1024;

/// Shortest time between two checks for lost buckets.
const REBUILD_CHECK_INTERVAL: Duration = Duration::from_secs(1);

/// The bucket names of `config`'s group: its `buckets.*` overrides, else
/// [`BucketNames::for_group`].
pub fn bucket_names(config: &Config) -> BucketNames {
    let defaults = BucketNames::for_group(&config.group);
    BucketNames {
        members: config.buckets.members.clone().unwrap_or(defaults.members),
        leader: config.buckets.leader.clone().unwrap_or(defaults.leader),
        assignments: config
            .buckets
            .assignments
            .clone()
            .unwrap_or(defaults.assignments),
    }
}

/// The opened buckets.
#[derive(Clone, Debug)]
struct Stores {
    members: kv::Store,
    leader: kv::Store,
    assignments: kv::Store,
}

/// Parti's backend on NATS JetStream KV. Cheap to share behind an `Arc`; the
/// buckets are opened (and created if missing) by [`Backend::ensure_ready`], or
/// lazily by the first call that needs them.
#[derive(Debug)]
pub struct NatsBackend {
    client: async_nats::Client,
    js: jetstream::Context,
    names: BucketNames,
    replicas: usize,
    storage: StorageType,
    member_ttl: Duration,
    leader_ttl: Duration,
    marker_ttl: Duration,
    /// Consumers each bucket's stream must allow (see [`buckets::consumers_for_ids`]).
    consumers: i32,
    snapshot_timeout: Duration,
    worker_prefix: String,
    stores: OnceCell<Stores>,
    skipped: Arc<AtomicU64>,
    /// When the buckets were last checked after a failed operation.
    last_rebuild_check: std::sync::Mutex<Option<std::time::Instant>>,
    /// A cap on value sizes below the server's (tests, tuning).
    max_value: Option<usize>,
}

impl NatsBackend {
    /// Builds the backend on the caller's client (so its servers, auth and TLS
    /// are used). Bucket names come from `config.buckets.*` overrides, else from
    /// [`BucketNames::for_group`]; every JetStream request is bounded by
    /// `config.operation_timeout`.
    pub fn new(client: async_nats::Client, config: &Config) -> Self {
        let names = bucket_names(config);
        let js = ContextBuilder::new()
            .timeout(config.operation_timeout)
            .build(client.clone());
        NatsBackend {
            client,
            js,
            names,
            replicas: config.buckets.replicas.max(1),
            storage: match config.buckets.storage {
                Storage::File => StorageType::File,
                Storage::Memory => StorageType::Memory,
                // A storage kind added to the core later and not known to this
                // backend: JetStream's durable default.
                _ => StorageType::File,
            },
            member_ttl: config.worker_id_ttl,
            leader_ttl: config.election_ttl,
            marker_ttl: DEFAULT_LIMIT_MARKER_TTL,
            consumers: buckets::consumers_for_ids(config.id_count()),
            snapshot_timeout: config.operation_timeout.max(Duration::from_secs(1)),
            worker_prefix: config.worker_id_prefix.clone(),
            stores: OnceCell::new(),
            skipped: Arc::new(AtomicU64::new(0)),
            last_rebuild_check: std::sync::Mutex::new(None),
            max_value: None,
        }
    }

    /// Connects to `url` (e.g. `nats://127.0.0.1:4222`, or a comma-separated
    /// list) with default options and builds the backend.
    pub async fn connect(url: &str, config: &Config) -> Result<Self, BackendError> {
        let servers: Vec<&str> = url
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .collect();
        let client = async_nats::connect(servers.as_slice()).await.map_err(|e| {
            BackendError::Unavailable(redact::redact_urls_in(&format!("connecting to {url}: {e}")))
        })?;
        Ok(Self::new(client, config))
    }

    /// Sets how long expiry markers stay in the buckets (at least 1 s; default
    /// [`DEFAULT_LIMIT_MARKER_TTL`]). Applies to buckets this backend creates.
    pub fn with_limit_marker_ttl(mut self, ttl: Duration) -> Self {
        self.marker_ttl = ttl;
        self
    }

    /// Caps the size of the values this backend writes below what the server
    /// accepts (see [`value_limit`](Self::value_limit)); records larger than
    /// the cap are cut into more pieces. Mostly for tests.
    pub fn with_max_value_bytes(mut self, bytes: usize) -> Self {
        self.max_value = Some(bytes);
        self
    }

    /// The largest value this backend writes: the connected server's
    /// `max_payload` (as the connection reports it, never assumed) less
    /// [`PAYLOAD_HEADROOM`], or the cap of
    /// [`with_max_value_bytes`](Self::with_max_value_bytes) if lower. An
    /// assignment record larger than this is written in several pieces (see
    /// [`parti_core::pieces`]); a value that cannot be cut (one huge
    /// partition name, a commit record naming very many workers) fails with
    /// [`BackendError::TooLarge`].
    pub fn value_limit(&self) -> usize {
        let server = match self.client.max_payload() {
            0 => self.client.server_info().max_payload,
            known => known,
        };
        let server = if server == 0 {
            DEFAULT_MAX_PAYLOAD
        } else {
            server
        };
        let limit = server.saturating_sub(PAYLOAD_HEADROOM);
        self.max_value.map_or(limit, |cap| cap.min(limit))
    }

    /// The bucket names in use.
    pub fn bucket_names(&self) -> &BucketNames {
        &self.names
    }

    /// How many undecodable values (or foreign keys) were skipped so far, by
    /// watches and reads of this backend.
    pub fn skipped_values(&self) -> u64 {
        self.skipped.load(Ordering::Relaxed)
    }

    fn specs(&self) -> [BucketSpec; 3] {
        let spec = |name: &str, max_age: Duration| BucketSpec {
            name: name.to_string(),
            max_age,
            replicas: self.replicas,
            storage: self.storage,
            marker_ttl: self.marker_ttl,
            consumers: self.consumers,
        };
        [
            spec(&self.names.members, self.member_ttl),
            spec(&self.names.leader, self.leader_ttl),
            spec(&self.names.assignments, Duration::ZERO),
        ]
    }

    async fn stores(&self) -> Result<&Stores, BackendError> {
        self.stores
            .get_or_try_init(|| async {
                let [members, leader, assignments] = self.specs();
                Ok(Stores {
                    members: buckets::ensure(&self.js, &members).await?,
                    leader: buckets::ensure(&self.js, &leader).await?,
                    assignments: buckets::ensure(&self.js, &assignments).await?,
                })
            })
            .await
    }

    fn decoder(&self) -> Decoder {
        Decoder::new(self.worker_prefix.clone(), self.skipped.clone())
    }

    fn note_skipped(&self, bucket: &str, key: &str, error: &dyn std::fmt::Display) {
        self.skipped.fetch_add(1, Ordering::Relaxed);
        tracing::warn!(bucket, key, %error, "skipping a value that cannot be decoded");
    }
}

#[async_trait]
impl Backend for NatsBackend {
    fn is_connected(&self) -> Option<bool> {
        Some(matches!(
            self.client.connection_state(),
            async_nats::connection::State::Connected
        ))
    }

    async fn ensure_ready(&self) -> Result<(), BackendError> {
        self.stores().await.map(|_| ())
    }

    async fn perform(&self, op: StoreOp) -> Result<StoreReply, BackendError> {
        let result = self.perform_op(op).await;
        if result.is_err() {
            self.rebuild_lost_buckets().await;
        }
        result
    }

    async fn watch(
        &self,
        worker: Option<&WorkerId>,
        members: MemberScope,
    ) -> Result<WatchStream, BackendError> {
        let result = self.open_watch(worker, members).await;
        if result.is_err() {
            self.rebuild_lost_buckets().await;
        }
        result
    }
}

impl NatsBackend {
    /// After a failed operation: if the connection is up, makes sure the
    /// three buckets exist, recreating any that vanished (memory storage and
    /// a server restart, an operator's delete, a new cluster) with the
    /// configured settings. At most once per second; failures are logged
    /// (the operation that failed is retried by the protocol anyway).
    async fn rebuild_lost_buckets(&self) {
        if self.is_connected() != Some(true) {
            return;
        }
        {
            let mut last = match self.last_rebuild_check.lock() {
                Ok(guard) => guard,
                Err(poisoned) => poisoned.into_inner(),
            };
            let now = std::time::Instant::now();
            if last.is_some_and(|t| now.saturating_duration_since(t) < REBUILD_CHECK_INTERVAL) {
                return;
            }
            *last = Some(now);
        }
        for spec in self.specs() {
            if let Err(e) = buckets::ensure(&self.js, &spec).await {
                tracing::warn!(bucket = %spec.name, error = %e, "checking a bucket after a failed operation");
            }
        }
    }

    async fn perform_op(&self, op: StoreOp) -> Result<StoreReply, BackendError> {
        use StoreReply::{Done, Written};
        match op {
            StoreOp::CreateMember { id, record } => {
                self.member_create(&id, &record).await.map(Written)
            }
            StoreOp::UpdateMember {
                id,
                record,
                expected,
            } => self
                .member_update(&id, &record, expected)
                .await
                .map(Written),
            StoreOp::DeleteMember { id, expected } => {
                self.member_delete(&id, expected).await.map(|()| Done)
            }
            StoreOp::GetMember { id } => self.member_get(&id).await.map(StoreReply::Member),
            StoreOp::CreateLeader { record } => self.leader_create(&record).await.map(Written),
            StoreOp::UpdateLeader { record, expected } => {
                self.leader_update(&record, expected).await.map(Written)
            }
            StoreOp::DeleteLeader { expected } => self.leader_delete(expected).await.map(|()| Done),
            StoreOp::Stage { records } => self.stage(&records).await,
            StoreOp::CommitMeta { meta, expected } => {
                self.meta_commit(&meta, expected).await.map(Written)
            }
            StoreOp::LoadAssignments => self.assignments_load().await.map(StoreReply::Loaded),
            StoreOp::RemoveStaleAssignments { keep_term } => {
                self.assignments_prune(keep_term).await.map(|()| Done)
            }
        }
    }

    async fn open_watch(
        &self,
        worker: Option<&WorkerId>,
        members: MemberScope,
    ) -> Result<WatchStream, BackendError> {
        let stores = self.stores().await?;
        let mut assignment_keys = vec![META_KEY.to_string()];
        if let Some(worker) = worker {
            // Piece 0 of its records, and the further pieces of large ones.
            assignment_keys.push(format!("w.*.{worker}"));
            assignment_keys.push(format!("w.*.{worker}.*"));
        }
        // The members sub-watch filters on the own key's and the leader's
        // subjects when the scope says so: the server then sends this
        // watcher none of the other members' heartbeats.
        let member_keys = match members {
            MemberScope::All => vec![">".to_string()],
            MemberScope::Own { leader } => {
                let mut keys: Vec<String> = worker
                    .into_iter()
                    .chain(leader.as_ref())
                    .map(|w| w.as_str().to_string())
                    .collect();
                keys.dedup();
                keys
            }
        };
        let mut subs = Vec::with_capacity(3);
        for (source, store, keys) in [
            (Source::Members, &stores.members, member_keys),
            (Source::Leader, &stores.leader, vec![LEADER_KEY.to_string()]),
            (Source::Assignments, &stores.assignments, assignment_keys),
        ] {
            if keys.is_empty() {
                continue;
            }
            let (consumer, pending) = ResumableConsumer::open(&self.js, store, &keys).await?;
            subs.push(SubWatch::new(source, consumer, pending));
        }
        Ok(Box::pin(MergedWatch::new(
            subs,
            self.decoder(),
            self.snapshot_timeout,
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn connection_errors_do_not_quote_the_password() {
        // Nothing listens on port 1 of the loopback interface.
        let err = NatsBackend::connect("nats://op:pa55word@127.0.0.1:1", &Config::default())
            .await
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(err.contains("nats://op:***@127.0.0.1:1"), "{err}");
        assert!(!err.contains("pa55word"), "{err}");
    }
}
