//! A simulated key-value store with the semantics Parti needs from NATS KV:
//! create-if-absent, update with expected revision, delete with expected
//! revision, unconditional put, a TTL per bucket measured from the last write
//! of each key, and a log of changes that the simulator fans out to watchers.

use parti_core::WorkerId;
use parti_core::backend::{
    AssignmentSnapshot, BackendError, Change, MemberScope, StoreOp, StoreReply, WatchEvent,
};
use parti_core::records::{AssignmentMeta, LeaderRecord, MemberRecord, WorkerAssignment};
use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap};

/// A key of one of the group's buckets.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Key {
    /// `members/worker-<n>`.
    Member(WorkerId),
    /// `leader/leader`.
    Leader,
    /// `assignments/meta`.
    Meta,
    /// `assignments/w.<term>.<worker>`.
    Assignment(u64, WorkerId),
}

/// A stored value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Value {
    /// A member record.
    Member(MemberRecord),
    /// The leader record.
    Leader(LeaderRecord),
    /// The commit record.
    Meta(AssignmentMeta),
    /// A per-worker record.
    Assignment(WorkerAssignment),
}

/// A stored entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    /// The value.
    pub value: Value,
    /// Its revision.
    pub revision: u64,
    /// Global time of the write, in ms.
    pub written_at: u64,
}

/// One change, for watchers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoreChange {
    /// The key.
    pub key: Key,
    /// Revision of the change.
    pub revision: u64,
    /// The new value, `None` for a removal (delete or expiry).
    pub value: Option<Value>,
}

/// Why a conditional write failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WriteError {
    /// The key exists.
    AlreadyExists,
    /// The revision did not match.
    Conflict,
}

/// The simulated store.
#[derive(Debug)]
pub struct SimStore {
    entries: BTreeMap<Key, Entry>,
    revision: u64,
    member_ttl: u64,
    leader_ttl: u64,
    expiries: BinaryHeap<Reverse<(u64, u64, Key)>>,
    changes: Vec<StoreChange>,
    /// Highest term (creation revision) of the leader key so far.
    pub max_leader_term: u64,
}

impl SimStore {
    /// A store whose member keys live `member_ttl` ms and whose leader key lives
    /// `leader_ttl` ms after their last write.
    pub fn new(member_ttl: u64, leader_ttl: u64) -> Self {
        SimStore {
            entries: BTreeMap::new(),
            revision: 0,
            member_ttl,
            leader_ttl,
            expiries: BinaryHeap::new(),
            changes: Vec::new(),
            max_leader_term: 0,
        }
    }

    fn ttl(&self, key: &Key) -> Option<u64> {
        match key {
            Key::Member(_) => Some(self.member_ttl),
            Key::Leader => Some(self.leader_ttl),
            _ => None,
        }
    }

    fn write(&mut self, key: Key, value: Value, now: u64) -> u64 {
        self.revision += 1;
        let revision = self.revision;
        if let Some(ttl) = self.ttl(&key) {
            self.expiries
                .push(Reverse((now + ttl, revision, key.clone())));
        }
        self.entries.insert(
            key.clone(),
            Entry {
                value: value.clone(),
                revision,
                written_at: now,
            },
        );
        self.changes.push(StoreChange {
            key,
            revision,
            value: Some(value),
        });
        revision
    }

    /// Creates `key` if absent.
    pub fn create(&mut self, key: Key, value: Value, now: u64) -> Result<u64, WriteError> {
        if self.entries.contains_key(&key) {
            return Err(WriteError::AlreadyExists);
        }
        let created_leader = key == Key::Leader;
        let rev = self.write(key, value, now);
        if created_leader {
            self.max_leader_term = self.max_leader_term.max(rev);
        }
        Ok(rev)
    }

    /// Writes `key` if its revision is `expected`.
    pub fn update(
        &mut self,
        key: Key,
        value: Value,
        expected: u64,
        now: u64,
    ) -> Result<u64, WriteError> {
        match self.entries.get(&key) {
            Some(e) if e.revision == expected => Ok(self.write(key, value, now)),
            _ => Err(WriteError::Conflict),
        }
    }

    /// Writes `key` unconditionally.
    pub fn put(&mut self, key: Key, value: Value, now: u64) -> u64 {
        self.write(key, value, now)
    }

    /// Deletes `key` if its revision is `expected`.
    pub fn delete(&mut self, key: &Key, expected: u64) -> Result<(), WriteError> {
        match self.entries.get(key) {
            Some(e) if e.revision == expected => {
                self.remove(key);
                Ok(())
            }
            _ => Err(WriteError::Conflict),
        }
    }

    fn remove(&mut self, key: &Key) {
        if self.entries.remove(key).is_some() {
            self.revision += 1;
            self.changes.push(StoreChange {
                key: key.clone(),
                revision: self.revision,
                value: None,
            });
        }
    }

    /// Removes per-worker records staged under any term but `keep_term`.
    pub fn purge_other_terms(&mut self, keep_term: u64) {
        let stale: Vec<Key> = self
            .entries
            .keys()
            .filter(|k| matches!(k, Key::Assignment(t, _) if *t != keep_term))
            .cloned()
            .collect();
        for k in stale {
            self.remove(&k);
        }
    }

    /// Loses every key (memory storage and a server restart): the store is
    /// empty and its revisions start again from 1. No change is reported (a
    /// lost bucket tells its watchers nothing; their watches end).
    pub fn wipe(&mut self) {
        self.entries.clear();
        self.revision = 0;
        self.expiries.clear();
        self.changes.clear();
        self.max_leader_term = 0;
    }

    /// Reads `key`.
    pub fn get(&self, key: &Key) -> Option<&Entry> {
        self.entries.get(key)
    }

    /// Removes keys whose TTL ran out by `now`.
    pub fn expire(&mut self, now: u64) {
        while let Some(Reverse((at, _, _))) = self.expiries.peek() {
            if *at > now {
                break;
            }
            let (_, rev, key) = match self.expiries.pop() {
                Some(Reverse(item)) => item,
                None => break,
            };
            if self.entries.get(&key).is_some_and(|e| e.revision == rev) {
                self.remove(&key);
            }
        }
    }

    /// When the next key expires.
    pub fn next_expiry(&self) -> Option<u64> {
        self.expiries.peek().map(|Reverse((at, _, _))| *at)
    }

    /// Takes the changes made since the last call.
    pub fn take_changes(&mut self) -> Vec<StoreChange> {
        std::mem::take(&mut self.changes)
    }

    /// All entries (for inspection).
    pub fn entries(&self) -> impl Iterator<Item = (&Key, &Entry)> {
        self.entries.iter()
    }
}

impl SimStore {
    /// Performs one store operation of the protocol at time `now`. The
    /// simulator and the in-memory backend both execute commands through
    /// this, after [`parti_core::exec`] translated them.
    pub fn apply(&mut self, op: StoreOp, now: u64) -> Result<StoreReply, BackendError> {
        let written = |r: Result<u64, WriteError>| r.map(StoreReply::Written).map_err(Into::into);
        let deleted = |r: Result<(), WriteError>| r.map(|()| StoreReply::Done).map_err(Into::into);
        match op {
            StoreOp::CreateMember { id, record } => {
                written(self.create(Key::Member(id), Value::Member(record), now))
            }
            StoreOp::UpdateMember {
                id,
                record,
                expected,
            } => written(self.update(Key::Member(id), Value::Member(record), expected, now)),
            StoreOp::DeleteMember { id, expected } => {
                deleted(self.delete(&Key::Member(id), expected))
            }
            StoreOp::GetMember { id } => Ok(StoreReply::Member(self.member(&id))),
            StoreOp::CreateLeader { record } => {
                written(self.create(Key::Leader, Value::Leader(record), now))
            }
            StoreOp::UpdateLeader { record, expected } => {
                written(self.update(Key::Leader, Value::Leader(record), expected, now))
            }
            StoreOp::DeleteLeader { expected } => deleted(self.delete(&Key::Leader, expected)),
            StoreOp::Stage { records } => {
                let mut last = None;
                for record in records {
                    let key = Key::Assignment(record.term, record.worker.clone());
                    last = Some(self.put(key, Value::Assignment(record), now));
                }
                Ok(last.map_or(StoreReply::Done, StoreReply::Written))
            }
            StoreOp::CommitMeta { meta, expected } => written(match expected {
                Some(rev) => self.update(Key::Meta, Value::Meta(meta), rev, now),
                None => self.create(Key::Meta, Value::Meta(meta), now),
            }),
            StoreOp::LoadAssignments => Ok(StoreReply::Loaded(self.load_assignments())),
            StoreOp::RemoveStaleAssignments { keep_term } => {
                self.purge_other_terms(keep_term);
                Ok(StoreReply::Done)
            }
        }
    }

    /// The member record of `id` and its revision, if present.
    pub fn member(&self, id: &WorkerId) -> Option<(MemberRecord, u64)> {
        match self.entries.get(&Key::Member(id.clone())) {
            Some(Entry {
                value: Value::Member(m),
                revision,
                ..
            }) => Some((m.clone(), *revision)),
            _ => None,
        }
    }

    /// The commit record and the records it names (see
    /// [`AssignmentMeta::names`]).
    pub fn load_assignments(&self) -> AssignmentSnapshot {
        let Some(Entry {
            value: Value::Meta(meta),
            revision,
            ..
        }) = self.entries.get(&Key::Meta)
        else {
            return AssignmentSnapshot::default();
        };
        let records = meta
            .records
            .keys()
            .filter_map(
                |w| match self.entries.get(&Key::Assignment(meta.term, w.clone())) {
                    Some(Entry {
                        value: Value::Assignment(a),
                        ..
                    }) if meta.names(a) => Some(a.clone()),
                    _ => None,
                },
            )
            .collect();
        AssignmentSnapshot {
            meta: Some((meta.clone(), *revision)),
            records,
        }
    }

    /// The first items of a watch for `worker` with the member keys
    /// `members` selects: every watched key's current value in revision
    /// order (as a KV watch replays its stream), each with its key and
    /// revision.
    pub fn watch_snapshot(
        &self,
        worker: Option<&WorkerId>,
        members: &MemberScope,
    ) -> Vec<(Key, u64, WatchEvent)> {
        let mut items: Vec<(Key, u64, WatchEvent)> = self
            .entries
            .iter()
            .filter(|(k, _)| watched(k, worker, members))
            .filter_map(|(k, e)| {
                watch_event(k, e.revision, Some(&e.value)).map(|item| (k.clone(), e.revision, item))
            })
            .collect();
        items.sort_by_key(|(_, revision, _)| *revision);
        items
    }
}

impl From<WriteError> for BackendError {
    fn from(e: WriteError) -> Self {
        match e {
            WriteError::AlreadyExists => BackendError::AlreadyExists,
            WriteError::Conflict => BackendError::Conflict,
        }
    }
}

/// Whether a watcher for `worker` with the member keys `members` selects
/// sees changes of `key`.
pub fn watched(key: &Key, worker: Option<&WorkerId>, members: &MemberScope) -> bool {
    match key {
        Key::Assignment(_, w) => Some(w) == worker,
        Key::Member(id) => members.includes(id, worker),
        Key::Leader | Key::Meta => true,
    }
}

/// The watch item for a change of `key` at `revision` (`None` value: a
/// removal). Removals of the commit record and of per-worker records
/// (housekeeping) are not delivered.
pub fn watch_event(key: &Key, revision: u64, value: Option<&Value>) -> Option<WatchEvent> {
    Some(match (key, value) {
        (Key::Member(id), Some(Value::Member(m))) => WatchEvent::Member {
            id: id.clone(),
            revision,
            change: Change::Put(m.clone()),
        },
        (Key::Member(id), _) => WatchEvent::Member {
            id: id.clone(),
            revision,
            change: Change::Removed,
        },
        (Key::Leader, Some(Value::Leader(l))) => WatchEvent::Leader {
            revision,
            change: Change::Put(l.clone()),
        },
        (Key::Leader, _) => WatchEvent::Leader {
            revision,
            change: Change::Removed,
        },
        (Key::Meta, Some(Value::Meta(meta))) => WatchEvent::Meta {
            revision,
            meta: meta.clone(),
        },
        (Key::Assignment(..), Some(Value::Assignment(record))) => WatchEvent::Assignment {
            revision,
            record: record.clone(),
        },
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use parti_core::InstanceId;

    fn member() -> Value {
        Value::Member(MemberRecord::fresh(InstanceId(1), 1))
    }

    #[test]
    fn cas_and_ttl() {
        let mut s = SimStore::new(100, 50);
        let k = Key::Member(WorkerId::new("worker", 0));
        let r1 = s.create(k.clone(), member(), 0).unwrap();
        assert_eq!(
            s.create(k.clone(), member(), 0),
            Err(WriteError::AlreadyExists)
        );
        assert_eq!(
            s.update(k.clone(), member(), r1 + 5, 10),
            Err(WriteError::Conflict)
        );
        let r2 = s.update(k.clone(), member(), r1, 10).unwrap();
        s.expire(105);
        assert!(s.get(&k).is_some(), "TTL counts from the last write");
        s.expire(110);
        assert!(s.get(&k).is_none());
        let changes = s.take_changes();
        assert_eq!(changes.len(), 3);
        assert_eq!(changes[2].value, None);
        assert!(changes[2].revision > r2);
        let rl = s.create(Key::Leader, member(), 0).unwrap();
        assert_eq!(s.max_leader_term, rl);
    }
}
