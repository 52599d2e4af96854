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
//! - Reads (`get_member`, `load_assignments`, the tombstone check of a create)
//!   use JetStream direct gets, which any replica of an R3 bucket may answer, so
//!   they can lag behind the latest write by a moment. Nothing relies on them for
//!   safety: every guarded write is a compare-and-set that the stream leader
//!   checks.
//! - The watch ([`Backend::watch`]) resumes by itself after reconnects and
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
mod consumer;
mod errors;
mod watch;

use crate::buckets::BucketSpec;
use crate::codec::{Decoder, Source, decode_assignment};
use crate::consumer::ResumableConsumer;
use crate::errors::classify;
use crate::watch::{MergedWatch, SubWatch};
use async_nats::jetstream::kv::{self, Operation};
use async_nats::jetstream::stream::StorageType;
use async_nats::jetstream::{self, ContextBuilder};
use async_trait::async_trait;
use bytes::Bytes;
use futures_util::TryStreamExt;
use parti_core::Config;
use parti_core::backend::{AssignmentSnapshot, Backend, BackendError, WatchStream};
use parti_core::config::Storage;
use parti_core::ids::WorkerId;
use parti_core::layout::{
    BucketNames, LEADER_KEY, META_KEY, parse_worker_assignment_key, worker_assignment_key,
};
use parti_core::records::{
    AssignmentMeta, LeaderRecord, MemberRecord, Revision, WorkerAssignment, decode, encode,
};
use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::sync::OnceCell;

pub use crate::buckets::MIN_MAX_AGE;

/// Default lifetime of the marker the server writes when a key expires: a
/// watcher that reconnects within it still sees the removal.
pub const DEFAULT_LIMIT_MARKER_TTL: Duration = Duration::from_secs(30);

/// How many times a create retries when the tombstone it wants to replace
/// changes under it.
const CREATE_ATTEMPTS: usize = 3;

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
    snapshot_timeout: Duration,
    worker_prefix: String,
    stores: OnceCell<Stores>,
    skipped: Arc<AtomicU64>,
}

impl NatsBackend {
    /// Builds the backend on the caller's client (so its servers, auth and TLS
    /// are used). Bucket names come from `config.buckets.*` overrides, else from
    /// [`BucketNames::for_group`]; every JetStream request is bounded by
    /// `config.operation_timeout`.
    pub fn new(client: async_nats::Client, config: &Config) -> Self {
        let defaults = BucketNames::for_group(&config.group);
        let names = BucketNames {
            members: config.buckets.members.clone().unwrap_or(defaults.members),
            leader: config.buckets.leader.clone().unwrap_or(defaults.leader),
            assignments: config
                .buckets
                .assignments
                .clone()
                .unwrap_or(defaults.assignments),
        };
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
            snapshot_timeout: config.operation_timeout.max(Duration::from_secs(1)),
            worker_prefix: config.worker_id_prefix.clone(),
            stores: OnceCell::new(),
            skipped: Arc::new(AtomicU64::new(0)),
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
        let client = async_nats::connect(servers.as_slice())
            .await
            .map_err(|e| BackendError::Unavailable(format!("connecting to {url}: {e}")))?;
        Ok(Self::new(client, config))
    }

    /// Sets how long expiry markers stay in the buckets (at least 1 s; default
    /// [`DEFAULT_LIMIT_MARKER_TTL`]). Applies to buckets this backend creates.
    pub fn with_limit_marker_ttl(mut self, ttl: Duration) -> Self {
        self.marker_ttl = ttl;
        self
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

/// What the op is about, for error messages.
fn what(op: &str, store: &kv::Store, key: &str) -> String {
    format!("{op} {}/{key}", store.name)
}

/// Compare-and-set write: succeeds only if the key's last revision is
/// `expected` (0: the key has no entry at all).
async fn cas(
    store: &kv::Store,
    key: &str,
    value: Bytes,
    expected: Revision,
) -> Result<Revision, BackendError> {
    store
        .update(key, value, expected)
        .await
        .map_err(|e| classify(&what("updating", store, key), &e))
}

/// Create-if-absent: on a key with no entry, or whose last entry is a delete,
/// purge or expiry tombstone (replaced with a CAS on the tombstone's revision).
async fn create(store: &kv::Store, key: &str, value: Bytes) -> Result<Revision, BackendError> {
    let mut expected = 0;
    for _ in 0..CREATE_ATTEMPTS {
        match cas(store, key, value.clone(), expected).await {
            Err(BackendError::Conflict) => {}
            other => return other,
        }
        let entry = store
            .entry(key)
            .await
            .map_err(|e| classify(&what("reading", store, key), &e))?;
        expected = match entry {
            // The tombstone was removed meanwhile (marker expiry): no entry left.
            None => 0,
            Some(e) if matches!(e.operation, Operation::Delete | Operation::Purge) => e.revision,
            Some(_) => return Err(BackendError::AlreadyExists),
        };
    }
    // The key kept changing under us; someone else is writing it.
    Err(BackendError::AlreadyExists)
}

/// Delete marker, only if the key's last revision is `expected`.
async fn delete(store: &kv::Store, key: &str, expected: Revision) -> Result<(), BackendError> {
    store
        .delete_expect_revision(key, Some(expected))
        .await
        .map_err(|e| classify(&what("deleting", store, key), &e))
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

    async fn create_member(
        &self,
        id: &WorkerId,
        record: &MemberRecord,
    ) -> Result<Revision, BackendError> {
        let stores = self.stores().await?;
        create(&stores.members, id.as_str(), encode(record).into()).await
    }

    async fn update_member(
        &self,
        id: &WorkerId,
        record: &MemberRecord,
        expected: Revision,
    ) -> Result<Revision, BackendError> {
        let stores = self.stores().await?;
        cas(
            &stores.members,
            id.as_str(),
            encode(record).into(),
            expected,
        )
        .await
    }

    async fn delete_member(&self, id: &WorkerId, expected: Revision) -> Result<(), BackendError> {
        let stores = self.stores().await?;
        delete(&stores.members, id.as_str(), expected).await
    }

    /// A tombstone reads as `None`; so does an undecodable value (counted and
    /// logged): the key then holds nothing this process wrote.
    async fn get_member(
        &self,
        id: &WorkerId,
    ) -> Result<Option<(MemberRecord, Revision)>, BackendError> {
        let stores = self.stores().await?;
        let store = &stores.members;
        let entry = store
            .entry(id.as_str())
            .await
            .map_err(|e| classify(&what("reading", store, id.as_str()), &e))?;
        match entry {
            Some(e) if e.operation == Operation::Put => match decode::<MemberRecord>(&e.value) {
                Ok(record) => Ok(Some((record, e.revision))),
                Err(err) => {
                    self.note_skipped(&store.name, id.as_str(), &err);
                    Ok(None)
                }
            },
            _ => Ok(None),
        }
    }

    async fn create_leader(&self, record: &LeaderRecord) -> Result<Revision, BackendError> {
        let stores = self.stores().await?;
        create(&stores.leader, LEADER_KEY, encode(record).into()).await
    }

    async fn update_leader(
        &self,
        record: &LeaderRecord,
        expected: Revision,
    ) -> Result<Revision, BackendError> {
        let stores = self.stores().await?;
        cas(&stores.leader, LEADER_KEY, encode(record).into(), expected).await
    }

    async fn delete_leader(&self, expected: Revision) -> Result<(), BackendError> {
        let stores = self.stores().await?;
        delete(&stores.leader, LEADER_KEY, expected).await
    }

    async fn put_assignment(&self, record: &WorkerAssignment) -> Result<Revision, BackendError> {
        let stores = self.stores().await?;
        let store = &stores.assignments;
        let key = worker_assignment_key(record.term, &record.worker);
        store
            .put(&key, encode(record).into())
            .await
            .map_err(|e| classify(&what("writing", store, &key), &e))
    }

    /// `expected == None` is a create: [`BackendError::AlreadyExists`] if a meta
    /// record is there.
    async fn commit_meta(
        &self,
        meta: &AssignmentMeta,
        expected: Option<Revision>,
    ) -> Result<Revision, BackendError> {
        let stores = self.stores().await?;
        let value: Bytes = encode(meta).into();
        match expected {
            None => create(&stores.assignments, META_KEY, value).await,
            Some(rev) => cas(&stores.assignments, META_KEY, value, rev).await,
        }
    }

    /// Records that are missing, undecodable, or of another version than the
    /// meta names are left out (with a warning). An undecodable `meta` is an
    /// error: treating it as absent would let a new leader start from nothing
    /// over a record it cannot read (e.g. a newer wire version).
    async fn load_assignments(&self) -> Result<AssignmentSnapshot, BackendError> {
        let stores = self.stores().await?;
        let store = &stores.assignments;
        let entry = store
            .entry(META_KEY)
            .await
            .map_err(|e| classify(&what("reading", store, META_KEY), &e))?;
        let (meta, meta_rev) = match entry {
            Some(e) if e.operation == Operation::Put => match decode::<AssignmentMeta>(&e.value) {
                Ok(meta) => (meta, e.revision),
                Err(err) => {
                    self.note_skipped(&store.name, META_KEY, &err);
                    return Err(BackendError::Other(format!(
                        "assignment meta record in {} at revision {} cannot be decoded: {err}",
                        store.name, e.revision
                    )));
                }
            },
            _ => return Ok(AssignmentSnapshot::default()),
        };
        let mut records = Vec::with_capacity(meta.records.len());
        for (worker, version) in &meta.records {
            let key = worker_assignment_key(meta.term, worker);
            let entry = store
                .entry(key.as_str())
                .await
                .map_err(|e| classify(&what("reading", store, &key), &e))?;
            let Some(e) = entry.filter(|e| e.operation == Operation::Put) else {
                tracing::warn!(bucket = %store.name, key, "record named by meta is missing");
                continue;
            };
            match decode_assignment(&key, &e.value) {
                Ok(record) if record.version == *version => records.push(record),
                Ok(record) => tracing::warn!(
                    bucket = %store.name, key, found = record.version, expected = version,
                    "record version differs from the one meta names; left out"
                ),
                Err(err) => self.note_skipped(&store.name, &key, &err),
            }
        }
        Ok(AssignmentSnapshot {
            meta: Some((meta, meta_rev)),
            records,
        })
    }

    /// Purges (removes outright, without markers) every `w.<t>.*` record with
    /// `t != keep_term`.
    async fn remove_stale_assignments(&self, keep_term: u64) -> Result<(), BackendError> {
        let stores = self.stores().await?;
        let store = &stores.assignments;
        let op = format!("listing records of {}", store.name);
        let info = store
            .stream
            .info_with_subjects(format!("{}w.>", store.prefix))
            .await
            .map_err(|e| classify(&op, &e))?;
        let subjects: Vec<(String, usize)> =
            info.try_collect().await.map_err(|e| classify(&op, &e))?;
        let stale: BTreeSet<u64> = subjects
            .iter()
            .filter_map(|(subject, _)| subject.strip_prefix(store.prefix.as_str()))
            .filter_map(parse_worker_assignment_key)
            .map(|(term, _)| term)
            .filter(|term| *term != keep_term)
            .collect();
        for term in stale {
            let filter = format!("{}w.{term}.>", store.prefix);
            store
                .stream
                .purge()
                .filter(filter)
                .await
                .map_err(|e| classify(&format!("purging term {term} in {}", store.name), &e))?;
            tracing::debug!(bucket = %store.name, term, "purged stale assignment records");
        }
        Ok(())
    }

    async fn watch(&self, worker: Option<&WorkerId>) -> Result<WatchStream, BackendError> {
        let stores = self.stores().await?;
        let mut assignment_keys = vec![META_KEY.to_string()];
        if let Some(worker) = worker {
            assignment_keys.push(format!("w.*.{worker}"));
        }
        let mut subs = Vec::with_capacity(3);
        for (source, store, keys) in [
            (Source::Members, &stores.members, vec![">".to_string()]),
            (Source::Leader, &stores.leader, vec![LEADER_KEY.to_string()]),
            (Source::Assignments, &stores.assignments, assignment_keys),
        ] {
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
