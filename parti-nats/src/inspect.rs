//! Read-only access to a group's buckets, for operators' tools: a snapshot of
//! members, leader and committed assignment ([`GroupReader::read`]) that binds
//! the buckets that exist — it never creates one, never checks their settings
//! against a configuration (so it works whatever timings the group uses), and
//! writes nothing — and the deletion of a group's buckets
//! ([`GroupReader::delete_buckets`], the one call here that changes anything).

use crate::NatsBackend;
use crate::buckets::classify_bucket;
use crate::errors::classify;
use async_nats::jetstream::context::GetStreamErrorKind;
use async_nats::jetstream::kv::{self, Operation};
use async_nats::jetstream::stream::StorageType;
use async_nats::jetstream::{self, ContextBuilder, ErrorCode};
use futures_util::TryStreamExt;
use parti_core::backend::BackendError;
use parti_core::ids::WorkerId;
use parti_core::layout::{BucketNames, LEADER_KEY, META_KEY};
use parti_core::records::{
    AssignmentMeta, LeaderRecord, MemberRecord, Revision, WorkerAssignment, decode,
};
use std::time::{Duration, SystemTime};
use thiserror::Error;

/// Why a group could not be read.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum InspectError {
    /// None of the group's buckets exists: no worker of this group has ever
    /// run against this server (or the group was reset).
    #[error("group not found: none of its buckets ({}) exists on this server", .buckets.join(", "))]
    GroupNotFound {
        /// The bucket names looked for.
        buckets: Vec<String>,
    },
    /// The server could not answer.
    #[error(transparent)]
    Backend(#[from] BackendError),
}

/// How an existing bucket is configured.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BucketInfo {
    /// Bucket name.
    pub name: String,
    /// Key lifetime after the last write (zero: none). For the members bucket
    /// it is the group's `worker_id_ttl`, for the leader bucket its
    /// `election_ttl`.
    pub max_age: Duration,
    /// Replicas.
    pub replicas: usize,
    /// Whether the bucket is kept in memory (else on disk).
    pub memory: bool,
}

/// One member key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MemberEntry {
    /// The worker ID (the key).
    pub id: WorkerId,
    /// Its record.
    pub record: MemberRecord,
    /// Revision of the last write (the last heartbeat).
    pub revision: Revision,
    /// When the server stored the last write, on the server's clock.
    pub written: SystemTime,
}

/// The leader key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LeaderEntry {
    /// The record.
    pub record: LeaderRecord,
    /// The term: the record's, or for a fresh campaign write (which cannot
    /// know it yet) the revision of that write.
    pub term: u64,
    /// Revision of the last write (the last renewal).
    pub revision: Revision,
    /// When the server stored the last write.
    pub written: SystemTime,
}

/// What a group's buckets hold at one moment (each key read once; the reads
/// are not one atomic snapshot).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GroupState {
    /// The bucket names.
    pub names: BucketNames,
    /// Settings of the members bucket, if it exists.
    pub members_bucket: Option<BucketInfo>,
    /// Settings of the leader bucket, if it exists.
    pub leader_bucket: Option<BucketInfo>,
    /// Settings of the assignments bucket, if it exists.
    pub assignments_bucket: Option<BucketInfo>,
    /// The member keys, sorted by ID.
    pub members: Vec<MemberEntry>,
    /// The leader key, if present.
    pub leader: Option<LeaderEntry>,
    /// The commit record and its revision, if any.
    pub meta: Option<(AssignmentMeta, Revision)>,
    /// The per-worker records the commit record names (those found).
    pub records: Vec<WorkerAssignment>,
    /// Values that could not be decoded, or records the commit names that are
    /// missing: `bucket/key: why`.
    pub problems: Vec<String>,
}

/// Reads a group's buckets without creating or changing them.
#[derive(Clone, Debug)]
pub struct GroupReader {
    js: jetstream::Context,
    /// Only its record reader is used (never `ensure_ready`, which would
    /// create buckets).
    records: std::sync::Arc<NatsBackend>,
    names: BucketNames,
    worker_prefix: String,
}

impl GroupReader {
    /// A reader of the buckets `names`, every request bounded by `timeout`.
    /// Member keys not of the form `<worker_prefix>-<n>` are reported as
    /// problems.
    pub fn new(
        client: async_nats::Client,
        names: BucketNames,
        worker_prefix: impl Into<String>,
        timeout: Duration,
    ) -> Self {
        let worker_prefix = worker_prefix.into();
        let mut config = parti_core::Config::default();
        config.worker_id_prefix = worker_prefix.clone();
        config.operation_timeout = timeout;
        GroupReader {
            records: std::sync::Arc::new(NatsBackend::new(client.clone(), &config)),
            js: ContextBuilder::new().timeout(timeout).build(client),
            names,
            worker_prefix,
        }
    }

    /// The bucket names read.
    pub fn names(&self) -> &BucketNames {
        &self.names
    }

    fn all_names(&self) -> [&str; 3] {
        [
            &self.names.members,
            &self.names.leader,
            &self.names.assignments,
        ]
    }

    /// Opens `bucket` if it exists; never creates it.
    async fn bind(&self, bucket: &str) -> Result<Option<(kv::Store, BucketInfo)>, BackendError> {
        match self.js.get_stream(format!("KV_{bucket}")).await {
            Ok(stream) => {
                let config = &stream.cached_info().config;
                let info = BucketInfo {
                    name: bucket.to_string(),
                    max_age: config.max_age,
                    replicas: config.num_replicas.max(1),
                    memory: config.storage == StorageType::Memory,
                };
                let store = self
                    .js
                    .get_key_value(bucket)
                    .await
                    .map_err(|e| classify_bucket(&format!("opening bucket {bucket}"), &e))?;
                Ok(Some((store, info)))
            }
            Err(err) => match err.kind() {
                GetStreamErrorKind::JetStream(e)
                    if e.error_code() == ErrorCode::STREAM_NOT_FOUND =>
                {
                    Ok(None)
                }
                _ => Err(classify_bucket(&format!("reading bucket {bucket}"), &err)),
            },
        }
    }

    /// Which of the group's buckets exist.
    pub async fn existing_buckets(&self) -> Result<Vec<String>, BackendError> {
        let mut found = Vec::new();
        for name in self.all_names() {
            if self.bind(name).await?.is_some() {
                found.push(name.to_string());
            }
        }
        Ok(found)
    }

    /// Reads members, leader and committed assignment. A group none of whose
    /// buckets exists is [`InspectError::GroupNotFound`]; a missing bucket of
    /// a group that has the others reads as empty.
    pub async fn read(&self) -> Result<GroupState, InspectError> {
        let members_bucket = self.bind(&self.names.members).await?;
        let leader_bucket = self.bind(&self.names.leader).await?;
        let assignments_bucket = self.bind(&self.names.assignments).await?;
        if members_bucket.is_none() && leader_bucket.is_none() && assignments_bucket.is_none() {
            return Err(InspectError::GroupNotFound {
                buckets: self.all_names().iter().map(|s| s.to_string()).collect(),
            });
        }
        let mut state = GroupState {
            names: self.names.clone(),
            members_bucket: members_bucket.as_ref().map(|(_, i)| i.clone()),
            leader_bucket: leader_bucket.as_ref().map(|(_, i)| i.clone()),
            assignments_bucket: assignments_bucket.as_ref().map(|(_, i)| i.clone()),
            members: Vec::new(),
            leader: None,
            meta: None,
            records: Vec::new(),
            problems: Vec::new(),
        };
        if let Some((store, _)) = &members_bucket {
            self.read_members(store, &mut state).await?;
        }
        if let Some((store, _)) = &leader_bucket {
            self.read_leader(store, &mut state).await?;
        }
        if let Some((store, _)) = &assignments_bucket {
            read_assignments(&self.records, store, &mut state).await?;
        }
        Ok(state)
    }

    async fn read_members(
        &self,
        store: &kv::Store,
        state: &mut GroupState,
    ) -> Result<(), BackendError> {
        for key in keys(store).await? {
            let Some(entry) = read_entry(store, &key).await? else {
                continue;
            };
            let id = WorkerId::from_name(&key);
            if id.index(&self.worker_prefix).is_none() {
                state.problems.push(format!(
                    "{}/{key}: not a worker ID of the form {}-<n>",
                    store.name, self.worker_prefix
                ));
                continue;
            }
            match decode::<MemberRecord>(&entry.value) {
                Ok(record) => state.members.push(MemberEntry {
                    id,
                    record,
                    revision: entry.revision,
                    written: entry.created.into(),
                }),
                Err(e) => state.problems.push(format!("{}/{key}: {e}", store.name)),
            }
        }
        state
            .members
            .sort_by_key(|m| (m.id.index(&self.worker_prefix), m.id.clone()));
        Ok(())
    }

    async fn read_leader(
        &self,
        store: &kv::Store,
        state: &mut GroupState,
    ) -> Result<(), BackendError> {
        let Some(entry) = read_entry(store, LEADER_KEY).await? else {
            return Ok(());
        };
        match decode::<LeaderRecord>(&entry.value) {
            Ok(record) => {
                state.leader = Some(LeaderEntry {
                    term: record.term.unwrap_or(entry.revision),
                    record,
                    revision: entry.revision,
                    written: entry.created.into(),
                })
            }
            Err(e) => state
                .problems
                .push(format!("{}/{LEADER_KEY}: {e}", store.name)),
        }
        Ok(())
    }

    /// Deletes the group's buckets (those that exist) and returns their names.
    /// Workers still running recreate them; stop them first.
    pub async fn delete_buckets(&self) -> Result<Vec<String>, InspectError> {
        let existing = self.existing_buckets().await?;
        if existing.is_empty() {
            return Err(InspectError::GroupNotFound {
                buckets: self.all_names().iter().map(|s| s.to_string()).collect(),
            });
        }
        for name in &existing {
            self.js
                .delete_key_value(name)
                .await
                .map_err(|e| classify(&format!("deleting bucket {name}"), &e))?;
        }
        Ok(existing)
    }
}

/// The keys that have a message in `store` (values or removal markers), from
/// the stream's subject list: no consumer is created.
async fn keys(store: &kv::Store) -> Result<Vec<String>, BackendError> {
    let what = format!("listing keys of {}", store.name);
    let info = store
        .stream
        .info_with_subjects(format!("{}>", store.prefix))
        .await
        .map_err(|e| classify(&what, &e))?;
    let subjects: Vec<(String, usize)> =
        info.try_collect().await.map_err(|e| classify(&what, &e))?;
    let mut keys: Vec<String> = subjects
        .into_iter()
        .filter_map(|(subject, _)| {
            subject
                .strip_prefix(store.prefix.as_str())
                .map(str::to_string)
        })
        .collect();
    keys.sort();
    Ok(keys)
}

/// The key's current value; `None` when absent or removed.
async fn read_entry(store: &kv::Store, key: &str) -> Result<Option<kv::Entry>, BackendError> {
    let entry = store
        .entry(key)
        .await
        .map_err(|e| classify(&format!("reading {}/{key}", store.name), &e))?;
    Ok(entry.filter(|e| e.operation == Operation::Put))
}

async fn read_assignments(
    records: &NatsBackend,
    store: &kv::Store,
    state: &mut GroupState,
) -> Result<(), BackendError> {
    let Some(entry) = read_entry(store, META_KEY).await? else {
        return Ok(());
    };
    let meta = match decode::<AssignmentMeta>(&entry.value) {
        Ok(meta) => meta,
        Err(e) => {
            state
                .problems
                .push(format!("{}/{META_KEY}: {e}", store.name));
            return Ok(());
        }
    };
    for (worker, version) in &meta.records {
        match records.record_get(store, meta.term, worker).await? {
            Some(record) if record.version == *version => state.records.push(record),
            Some(record) => state.problems.push(format!(
                "{}: record of {worker} at version {} where the commit record names {version}",
                store.name, record.version
            )),
            None => state.problems.push(format!(
                "{}: record of {worker} (term {}) missing or incomplete, though the commit record names it",
                store.name, meta.term
            )),
        }
    }
    state.meta = Some((meta, entry.revision));
    Ok(())
}
