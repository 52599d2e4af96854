//! The committed assignment as the leader learns it. Rule: what is committed is
//! only what the store confirmed: a loaded snapshot (whose commit record of a
//! higher term supersedes this leader), or a publication that was written or,
//! after a conflict or an unknown outcome, read back as landed.

use super::{Committed, Controller, Publishing, Signal};
use crate::backend::AssignmentSnapshot;
use crate::command::{Command, Notification};
use crate::config::Config;
use crate::event::{OpId, Outcome};
use crate::ids::WorkerId;
use crate::outbox::Outbox;
use crate::partition::PartitionId;
use crate::records::WorkerAssignment;
use crate::roster::Roster;
use crate::time::Instant;
use crate::worker::planted::PlantedBug;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

impl Controller {
    /// Result of a controller command; `None` if `op` is not ours.
    pub(crate) fn on_completed(
        &mut self,
        config: &Config,
        roster: &Roster,
        op: OpId,
        outcome: Outcome,
        out: &mut Outbox,
        now: Instant,
    ) -> Option<Signal> {
        self.changed = true;
        if let Some(id) = self.rereading.remove(&op) {
            return Some(match outcome {
                Outcome::Member(found) => Signal::MemberRead { id, found },
                // Unread: the next eviction attempt asks again.
                _ => Signal::None,
            });
        }
        if self.load_op == Some(op) || self.reconcile_op == Some(op) {
            let reconciling = self.reconcile_op == Some(op);
            self.load_op = None;
            self.reconcile_op = None;
            return Some(match outcome {
                Outcome::Loaded(snapshot) => self.on_loaded(snapshot, reconciling),
                _ => {
                    // Try again shortly.
                    let retry = out.op();
                    out.push(Command::LoadAssignments { op: retry });
                    if reconciling {
                        self.reconcile_op = Some(retry)
                    } else {
                        self.load_op = Some(retry)
                    }
                    Signal::None
                }
            });
        }
        if self.list_op == Some(op) {
            self.list_op = None;
            match outcome {
                Outcome::Partitions(list) => self.set_partitions(list, out),
                Outcome::Failed(e) => {
                    out.notify(Notification::Error(format!("partition source failed: {e}")));
                    self.list_retry_at = Some(now + config.heartbeat_interval);
                }
                _ => self.list_retry_at = Some(now + config.heartbeat_interval),
            }
            return Some(Signal::None);
        }
        if let Some(w) = self
            .evicting
            .iter()
            .find(|(_, o)| **o == op)
            .map(|(w, _)| w.clone())
        {
            self.evicting.remove(&w);
            match outcome {
                Outcome::Written(revision) => {
                    // The compare-and-set held: the watch shows the evicted
                    // record (or already ours).
                    let before = roster.get(&w).map_or(revision, |v| v.revision);
                    self.evicted.insert(w, (before, revision));
                }
                Outcome::Unavailable | Outcome::Unknown | Outcome::Failed(_) => {
                    // Not through: try again after a pause, not in a busy
                    // loop while the store is out of reach.
                    self.evict_retry_at =
                        Some(now + (config.heartbeat_interval / 2).max(Duration::from_millis(10)));
                }
                // The key changed since the revision the eviction expected:
                // the member wrote (alive), or the watch showed a stale
                // value. Read its current record to know which.
                _ => {
                    self.alive_at.insert(w.clone(), now);
                    let read = out.op();
                    self.rereading.insert(read, w.clone());
                    out.push(Command::ReadMember { op: read, id: w });
                }
            }
            self.dirty = true;
            return Some(Signal::None);
        }
        if self
            .publishing
            .as_ref()
            .is_some_and(|p| p.op == op && !p.reconciling)
        {
            let Some(mut publishing) = self.publishing.take() else {
                return Some(Signal::None);
            };
            match outcome {
                Outcome::Written(revision) => {
                    publishing.next.revision = revision;
                    self.commit_done(publishing, out, now);
                }
                Outcome::Unavailable => {
                    self.retry_at =
                        Some(now + (config.heartbeat_interval / 2).max(Duration::from_millis(10)));
                    self.dirty = true;
                }
                Outcome::Failed(e) => {
                    // Not a passing outage (a value too large for the store, a
                    // refused permission): say so every time it is tried.
                    out.notify(Notification::Error(format!(
                        "publishing assignment version {} failed: {e}",
                        publishing.next.meta.version
                    )));
                    self.retry_at =
                        Some(now + config.heartbeat_interval.max(Duration::from_millis(10)));
                    self.dirty = true;
                }
                _ => {
                    // Conflict or unknown outcome: read back and reconcile.
                    let read = out.op();
                    out.push(Command::LoadAssignments { op: read });
                    publishing.op = read;
                    publishing.reconciling = true;
                    self.publishing = Some(publishing);
                }
            }
            return Some(Signal::None);
        }
        if self
            .publishing
            .as_ref()
            .is_some_and(|p| p.op == op && p.reconciling)
        {
            let Some(publishing) = self.publishing.take() else {
                return Some(Signal::None);
            };
            return Some(match outcome {
                Outcome::Loaded(snapshot) => {
                    let landed = snapshot.meta.as_ref().is_some_and(|(m, _)| {
                        m.term == publishing.next.meta.term
                            && m.version == publishing.next.meta.version
                    });
                    if landed {
                        let mut publishing = publishing;
                        if let Some((_, rev)) = &snapshot.meta {
                            publishing.next.revision = *rev;
                        }
                        self.commit_done(publishing, out, now);
                        Signal::None
                    } else {
                        self.on_loaded(snapshot, true)
                    }
                }
                _ => {
                    let read = out.op();
                    out.push(Command::LoadAssignments { op: read });
                    self.publishing = Some(Publishing {
                        op: read,
                        ..publishing
                    });
                    Signal::None
                }
            });
        }
        None
    }

    fn on_loaded(&mut self, snapshot: AssignmentSnapshot, reconciling: bool) -> Signal {
        self.dirty = true;
        let Some((meta, revision)) = snapshot.meta else {
            self.loaded = true;
            self.committed = None;
            self.committed_gen += 1;
            return Signal::None;
        };
        if meta.term > self.term && !self.planted.has(PlantedBug::IgnoreTerms) {
            return Signal::Superseded;
        }
        let records: BTreeMap<WorkerId, WorkerAssignment> = snapshot
            .records
            .into_iter()
            .filter(|r| r.term == meta.term && meta.records.get(&r.worker) == Some(&r.version))
            .map(|r| (r.worker.clone(), r))
            .collect();
        // A worker named in meta whose record is missing owns nothing we can
        // see; it is treated like one whose record is empty.
        for (w, rec) in &records {
            let set: BTreeSet<PartitionId> =
                rec.partitions.iter().map(|p| p.partition.id()).collect();
            self.known
                .insert(w, rec.version, rec.instance, Arc::new(set));
        }
        let mut committed = Committed::from_parts(meta, revision, records);
        if self.planted.has(PlantedBug::VersionReset) && !reconciling {
            committed.meta.version = 0;
        }
        self.takeover_pending = committed.meta.term != self.term;
        if !reconciling {
            // Restart detection, once the roster shows every member (a new
            // leader's watch of all members may still be catching up).
            self.restart_check_pending = true;
        }
        self.committed = Some(committed);
        self.committed_gen += 1;
        self.loaded = true;
        Signal::None
    }

    fn commit_done(&mut self, publishing: Publishing, out: &mut Outbox, now: Instant) {
        let next = publishing.next;
        for (w, rec) in &next.records {
            let set: BTreeSet<PartitionId> =
                rec.partitions.iter().map(|p| p.partition.id()).collect();
            self.known
                .insert(w, rec.version, rec.instance, Arc::new(set));
        }
        let version = next.meta.version;
        let lifecycle = next.meta.lifecycle;
        if self.takeover_pending {
            self.takeover_pending = false;
            out.push(Command::CleanupAssignments {
                keep_term: self.term,
            });
        }
        self.committed = Some(next);
        self.committed_gen += 1;
        self.lifecycle_published = true;
        self.pending_handoff = self.compute_handoff_pending();
        self.awaiting = publishing.awaiting;
        self.hold_until = if publishing.revoked > 0 {
            Some(now + self.handoff_hold)
        } else {
            None
        };
        self.dirty = true;
        if !self.pending_handoff {
            self.emergency = false;
        }
        out.notify(Notification::Published {
            version,
            granted: publishing.granted,
            revoked: publishing.revoked,
            lifecycle,
            handoff_pending: self.pending_handoff,
        });
    }
}
