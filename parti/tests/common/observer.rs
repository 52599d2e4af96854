//! A foreign client's view of the group: a watcher of its buckets, raw
//! reads and writes, and diagnostics for failure messages.

use super::*;
use futures_util::StreamExt;
use parti::{Config, WorkerId};
use parti_core::backend::{Backend, BackendError, Change, MemberScope, WatchEvent};
use parti_core::records::{AssignmentMeta, LeaderRecord, MemberStatus};
use parti_nats::NatsBackend;
use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// What the observer saw.
#[derive(Clone, Debug)]
pub enum Seen {
    Meta(AssignmentMeta),
    Leader(Option<LeaderRecord>),
    /// A member key: its status and applied version, or `None` when removed.
    Member(WorkerId, u64, Option<(MemberStatus, Option<u64>, u64)>),
    Skipped {
        bucket: String,
        key: String,
    },
}

/// Watches the group's buckets (members, leader, meta) through its own
/// backend, recording arrival times. Creates the buckets (same config as the
/// managers) so it can watch from the start.
pub struct Observer {
    seen: Arc<Mutex<Vec<(Instant, Seen)>>>,
    backend: Arc<NatsBackend>,
    task: tokio::task::JoinHandle<()>,
}

impl Observer {
    pub async fn start(client: async_nats::Client, config: &Config) -> Observer {
        let backend = Arc::new(NatsBackend::new(client, config));
        let deadline = Instant::now() + SETTLE;
        loop {
            match backend.ensure_ready().await {
                Ok(()) => break,
                Err(e @ BackendError::Misconfigured(_)) => panic!("{e}"),
                Err(e) => {
                    assert!(Instant::now() < deadline, "buckets not ready: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
        let seen = Arc::new(Mutex::new(Vec::new()));
        let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
        let task = {
            let backend = backend.clone();
            let seen = seen.clone();
            tokio::spawn(async move {
                let mut ready = Some(ready_tx);
                loop {
                    let mut stream = match backend.watch(None, MemberScope::All).await {
                        Ok(s) => s,
                        Err(_) => {
                            tokio::time::sleep(Duration::from_millis(100)).await;
                            continue;
                        }
                    };
                    while let Some(item) = stream.next().await {
                        let Ok(ev) = item else { break };
                        let now = Instant::now();
                        let entry = match ev {
                            WatchEvent::Meta { meta, .. } => Seen::Meta(meta),
                            WatchEvent::Leader { change, .. } => Seen::Leader(match change {
                                Change::Put(r) => Some(r),
                                _ => None,
                            }),
                            WatchEvent::Member {
                                id,
                                change,
                                revision,
                            } => Seen::Member(
                                id,
                                revision,
                                match change {
                                    Change::Put(r) => Some((r.status, r.applied, r.instance.0)),
                                    _ => None,
                                },
                            ),
                            WatchEvent::Skipped { bucket, key, .. } => {
                                Seen::Skipped { bucket, key }
                            }
                            WatchEvent::CaughtUp => {
                                if let Some(tx) = ready.take() {
                                    let _ = tx.send(());
                                }
                                continue;
                            }
                            _ => continue,
                        };
                        lock(&seen).push((now, entry));
                    }
                }
            })
        };
        tokio::time::timeout(SETTLE, ready_rx)
            .await
            .expect("observer caught up")
            .expect("observer task alive");
        Observer {
            seen,
            backend,
            task,
        }
    }

    /// Every commit record seen, in order of arrival.
    pub fn metas(&self) -> Vec<(Instant, AssignmentMeta)> {
        lock(&self.seen)
            .iter()
            .filter_map(|(t, s)| match s {
                Seen::Meta(m) => Some((*t, m.clone())),
                _ => None,
            })
            .collect()
    }

    /// Number of distinct member keys seen holding a value.
    pub fn members_seen(&self) -> usize {
        lock(&self.seen)
            .iter()
            .filter_map(|(_, s)| match s {
                Seen::Member(id, _, Some(_)) => Some(id.clone()),
                _ => None,
            })
            .collect::<BTreeSet<_>>()
            .len()
    }

    /// Every leader change seen (None: the key went away).
    pub fn leaders(&self) -> Vec<(Instant, Option<LeaderRecord>)> {
        lock(&self.seen)
            .iter()
            .filter_map(|(t, s)| match s {
                Seen::Leader(l) => Some((*t, l.clone())),
                _ => None,
            })
            .collect()
    }

    /// Everything seen since `t0`, one line each (for failure diagnostics).
    pub fn dump(&self, t0: Instant) -> String {
        lock(&self.seen)
            .iter()
            .filter(|(t, _)| *t >= t0)
            .map(|(t, s)| {
                let what = match s {
                    Seen::Meta(m) => format!(
                        "meta v{} {:?} term {} records {:?}",
                        m.version, m.lifecycle, m.term, m.records
                    ),
                    Seen::Leader(l) => format!("leader {:?}", l.as_ref().map(|l| &l.worker)),
                    Seen::Member(id, rev, m) => format!("member {id} rev {rev} {m:?}"),
                    Seen::Skipped { bucket, key } => format!("skipped {bucket}/{key}"),
                };
                format!("  +{:>5} ms {what}", t.duration_since(t0).as_millis())
            })
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// Keys whose values the observer's codec skipped.
    pub fn skipped(&self) -> Vec<(String, String)> {
        lock(&self.seen)
            .iter()
            .filter_map(|(_, s)| match s {
                Seen::Skipped { bucket, key } => Some((bucket.clone(), key.clone())),
                _ => None,
            })
            .collect()
    }

    pub fn backend(&self) -> &NatsBackend {
        &self.backend
    }

    /// Panics unless versions and terms of the commits seen only grew (S6).
    pub fn assert_monotonic(&self) {
        let metas = self.metas();
        for w in metas.windows(2) {
            let (a, b) = (&w[0].1, &w[1].1);
            assert!(
                b.version > a.version && b.term >= a.term,
                "commit went from v{} (term {}) to v{} (term {})",
                a.version,
                a.term,
                b.version,
                b.term
            );
        }
    }

    /// "v<version>:<lifecycle>@t<term>" for every commit seen.
    pub fn history(&self) -> String {
        self.metas()
            .iter()
            .map(|(_, m)| format!("v{}:{:?}@t{}", m.version, m.lifecycle, m.term))
            .collect::<Vec<_>>()
            .join(" ")
    }
}

impl Drop for Observer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The raw KV store of one of the group's buckets (`members`, `leader`,
/// `assignments`), for a foreign client's reads and writes.
pub async fn raw_bucket(
    client: &async_nats::Client,
    group: &str,
    which: &str,
) -> async_nats::jetstream::kv::Store {
    let js = async_nats::jetstream::new(client.clone());
    js.get_key_value(format!("parti_{group}_{which}"))
        .await
        .unwrap_or_else(|e| panic!("bucket {which} of {group}: {e}"))
}

/// Whether the member key `id` currently holds a value (not deleted, purged
/// or expired).
pub async fn member_key_present(client: &async_nats::Client, group: &str, id: &str) -> bool {
    raw_bucket(client, group, "members")
        .await
        .get(id)
        .await
        .expect("read member key")
        .is_some()
}

/// Polls `member_key_present` until it is false; returns the time waited.
pub async fn wait_member_key_gone(
    client: &async_nats::Client,
    group: &str,
    id: &str,
    within: Duration,
) -> Duration {
    let store = raw_bucket(client, group, "members").await;
    let start = Instant::now();
    loop {
        if store.get(id).await.expect("read member key").is_none() {
            return start.elapsed();
        }
        assert!(
            start.elapsed() < within,
            "member key {id} still present after {within:?}"
        );
        tokio::time::sleep(POLL).await;
    }
}

/// Milliseconds of a duration, for printing.
pub fn ms(d: Duration) -> u128 {
    d.as_millis()
}

/// A foreign client's view of the group's buckets (for failure messages):
/// every key's latest entry and each stream's cluster state.
pub async fn diagnose(client: &async_nats::Client, group: &str) -> String {
    let mut out = String::new();
    let js = async_nats::jetstream::new(client.clone());
    for which in ["members", "leader", "assignments"] {
        let name = format!("parti_{group}_{which}");
        let store = match js.get_key_value(&name).await {
            Ok(s) => s,
            Err(e) => {
                let _ = writeln!(out, "  {name}: {e}");
                continue;
            }
        };
        match store.stream.clone().info().await {
            Ok(info) => {
                let _ = writeln!(
                    out,
                    "  {name}: last seq {}, cluster {:?}",
                    info.state.last_sequence, info.cluster
                );
            }
            Err(e) => {
                let _ = writeln!(out, "  {name}: info failed: {e}");
            }
        }
        let keys: Vec<String> = match store.keys().await {
            Ok(k) => k.filter_map(|k| async move { k.ok() }).collect().await,
            Err(e) => {
                let _ = writeln!(out, "    keys failed: {e}");
                Vec::new()
            }
        };
        let mut keys = keys;
        if which == "leader" && !keys.iter().any(|k| k == "leader") {
            keys.push("leader".into());
        }
        for key in keys {
            match store.entry(&key).await {
                Ok(Some(e)) => {
                    let _ = writeln!(
                        out,
                        "    {key} rev {} {:?} {}",
                        e.revision,
                        e.operation,
                        String::from_utf8_lossy(&e.value)
                    );
                }
                other => {
                    let _ = writeln!(out, "    {key}: {other:?}");
                }
            }
        }
    }
    out
}
