//! Helpers shared by the `parti` integration tests against real `nats-server`
//! processes: servers and unique groups, a condition wait with a deadline
//! (never a sleep for synchronisation), an ownership recorder fed by the hooks
//! with an overlap checker, a fleet of in-process managers, and an observer
//! that watches the group's buckets like a foreign client.

#![allow(dead_code)]

use async_trait::async_trait;
use futures_util::StreamExt;
use parti::{Config, Hooks, Manager, OwnedPartition, Partition, State, StaticSource, WorkerId};
use parti_core::backend::{Backend, BackendError, Change, WatchEvent};
use parti_core::records::{AssignmentMeta, LeaderRecord, MemberStatus};
use parti_nats::NatsBackend;
use parti_testkit::nats_server::{NatsServer, require_nats_server};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::future::Future;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// Polling period of [`wait_until`].
pub const POLL: Duration = Duration::from_millis(20);

/// Generous bound for "the group settles" on loopback (a failure past it is a
/// real failure, not a slow machine).
pub const SETTLE: Duration = Duration::from_secs(20);

/// A single-node server, or `None` (test skipped, loudly) without a binary.
pub fn server() -> Option<NatsServer> {
    require_nats_server()?;
    Some(NatsServer::start().expect("nats-server starts"))
}

/// A group name unique to this test (and this run).
pub fn group(name: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    format!(
        "{name}_{}_{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// `Config::for_tests()` with this group.
pub fn config(group: &str) -> Config {
    Config {
        group: group.to_string(),
        ..Config::for_tests()
    }
}

/// A client of one server URL, or of a comma-free list of URLs.
pub async fn connect(urls: &[String]) -> async_nats::Client {
    async_nats::connect(urls).await.expect("client connects")
}

/// `count` partitions `[prefix, "p-<i>"]` for `i` in `range`.
pub fn partitions(prefix: &str, range: std::ops::Range<usize>) -> Vec<Partition> {
    range
        .map(|i| Partition::new([prefix.to_string(), format!("p-{i}")]))
        .collect()
}

/// Polls `cond` every [`POLL`] until it holds; panics after `within` with
/// `what` and the diagnostics `describe` returns. Returns the time waited.
pub async fn wait_until_or(
    within: Duration,
    what: &str,
    mut cond: impl FnMut() -> bool,
    describe: impl Fn() -> String,
) -> Duration {
    let start = Instant::now();
    let deadline = start + within;
    loop {
        if cond() {
            return start.elapsed();
        }
        if Instant::now() >= deadline {
            panic!(
                "timed out after {within:?} waiting until {what}\n{}",
                describe()
            );
        }
        // Polling period, not a synchronisation: the condition is re-checked.
        tokio::time::sleep(POLL).await;
    }
}

/// [`wait_until_or`] without diagnostics.
pub async fn wait_until(within: Duration, what: &str, cond: impl FnMut() -> bool) -> Duration {
    wait_until_or(within, what, cond, String::new).await
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    match m.lock() {
        Ok(g) => g,
        Err(p) => p.into_inner(),
    }
}

// ---------------------------------------------------------------------------
// Ownership recorder
// ---------------------------------------------------------------------------

/// One period during which one manager (a "label": one process incarnation)
/// owned one partition, as reported by its hooks.
#[derive(Clone, Debug)]
pub struct Interval {
    pub label: String,
    pub partition: Partition,
    pub epoch: u64,
    pub version: u64,
    pub acquired: Instant,
    /// `None` while still owned.
    pub released: Option<Instant>,
}

impl Interval {
    fn end(&self) -> Option<Instant> {
        self.released
    }
}

/// One `on_assignment_changed` call.
#[derive(Clone, Debug)]
pub struct HookCall {
    pub label: String,
    pub at: Instant,
    pub version: u64,
    pub added: usize,
    pub removed: usize,
}

#[derive(Default)]
struct Rec {
    intervals: Vec<Interval>,
    open: BTreeMap<(String, Partition), usize>,
    calls: Vec<HookCall>,
    /// Labels whose manager was dropped (crashed), with the time.
    dead: BTreeMap<String, Instant>,
    /// Worker ID of each label, once its `start()` returned.
    ids: BTreeMap<String, WorkerId>,
    /// Worker IDs seen per label over time (polled by `Fleet::check`).
    id_history: Vec<(String, Instant, Option<WorkerId>)>,
    /// State changes reported by the hooks: (label, when, from, to).
    states: Vec<(String, Instant, State, State)>,
    /// Hook calls that contradict the ownership history (double acquire,
    /// release of something not held, a call after the crash).
    anomalies: Vec<String>,
}

/// Records ownership intervals from the hooks of many managers.
#[derive(Clone, Default)]
pub struct Recorder(Arc<Mutex<Rec>>);

impl Recorder {
    /// Hooks for the manager called `label`.
    pub fn hooks(&self, label: &str) -> RecordingHooks {
        RecordingHooks {
            label: label.to_string(),
            rec: self.clone(),
        }
    }

    fn apply(
        &self,
        label: &str,
        added: &[OwnedPartition],
        removed: &[OwnedPartition],
        version: u64,
    ) {
        let now = Instant::now();
        let mut r = lock(&self.0);
        r.calls.push(HookCall {
            label: label.to_string(),
            at: now,
            version,
            added: added.len(),
            removed: removed.len(),
        });
        if r.dead.contains_key(label) {
            r.anomalies.push(format!(
                "{label}: hook call after its crash (v{version}, +{} -{})",
                added.len(),
                removed.len()
            ));
            return;
        }
        for p in removed {
            match r.open.remove(&(label.to_string(), p.partition.clone())) {
                Some(i) => r.intervals[i].released = Some(now),
                None => r.anomalies.push(format!(
                    "{label}: released {} (v{version}) that it did not hold",
                    p.partition.name()
                )),
            }
        }
        for p in added {
            let key = (label.to_string(), p.partition.clone());
            if r.open.contains_key(&key) {
                r.anomalies.push(format!(
                    "{label}: acquired {} (v{version}) that it already held",
                    p.partition.name()
                ));
                continue;
            }
            let i = r.intervals.len();
            r.intervals.push(Interval {
                label: label.to_string(),
                partition: p.partition.clone(),
                epoch: p.epoch,
                version,
                acquired: now,
                released: None,
            });
            r.open.insert(key, i);
        }
    }

    /// The manager `label` was dropped at `at`: its intervals end there.
    pub fn crashed(&self, label: &str, at: Instant) {
        let mut r = lock(&self.0);
        r.dead.insert(label.to_string(), at);
        let keys: Vec<_> = r.open.keys().filter(|(l, _)| l == label).cloned().collect();
        for key in keys {
            if let Some(i) = r.open.remove(&key) {
                r.intervals[i].released = Some(at);
            }
        }
    }

    /// Remembers the worker ID `label` runs under.
    pub fn set_id(&self, label: &str, id: WorkerId) {
        lock(&self.0).ids.insert(label.to_string(), id);
    }

    /// Notes the worker ID `label` shows now (kept as a history of changes).
    pub fn note_id(&self, label: &str, id: Option<WorkerId>) {
        let mut r = lock(&self.0);
        let last = r
            .id_history
            .iter()
            .rev()
            .find(|(l, ..)| l == label)
            .map(|(_, _, id)| id.clone());
        if last.as_ref() != Some(&id) {
            r.id_history.push((label.to_string(), Instant::now(), id));
        }
    }

    /// The IDs `label` was seen holding, relative to `t0`.
    pub fn ids_of(&self, label: &str, t0: Instant) -> String {
        lock(&self.0)
            .id_history
            .iter()
            .filter(|(l, ..)| l == label)
            .map(|(_, at, id)| {
                format!(
                    "{:?}: {}",
                    at.saturating_duration_since(t0),
                    id.as_ref().map_or("none", |w| w.as_str())
                )
            })
            .collect::<Vec<_>>()
            .join(", ")
    }

    pub fn id_of(&self, label: &str) -> Option<WorkerId> {
        lock(&self.0).ids.get(label).cloned()
    }

    /// What `label` holds according to its hooks.
    pub fn held_by(&self, label: &str) -> BTreeSet<Partition> {
        lock(&self.0)
            .open
            .keys()
            .filter(|(l, _)| l == label)
            .map(|(_, p)| p.clone())
            .collect()
    }

    /// Current holders of every partition according to the hooks.
    pub fn holders(&self) -> BTreeMap<Partition, Vec<String>> {
        let r = lock(&self.0);
        let mut out: BTreeMap<Partition, Vec<String>> = BTreeMap::new();
        for (label, p) in r.open.keys() {
            out.entry(p.clone()).or_default().push(label.clone());
        }
        out
    }

    pub fn intervals(&self) -> Vec<Interval> {
        lock(&self.0).intervals.clone()
    }

    pub fn calls(&self) -> Vec<HookCall> {
        lock(&self.0).calls.clone()
    }

    /// The state changes of `label`, relative to `t0`.
    pub fn states_of(&self, label: &str, t0: Instant) -> String {
        lock(&self.0)
            .states
            .iter()
            .filter(|(l, ..)| l == label)
            .map(|(_, at, from, to)| {
                format!("{:?}: {from}->{to}", at.saturating_duration_since(t0))
            })
            .collect::<Vec<_>>()
            .join(", ")
    }

    pub fn anomalies(&self) -> Vec<String> {
        lock(&self.0).anomalies.clone()
    }

    /// Every pair of intervals of different labels on one partition that
    /// overlap in time (an open interval runs to now).
    pub fn overlaps(&self) -> Vec<String> {
        let intervals = self.intervals();
        let mut by_partition: BTreeMap<&Partition, Vec<&Interval>> = BTreeMap::new();
        for iv in &intervals {
            by_partition.entry(&iv.partition).or_default().push(iv);
        }
        let mut out = Vec::new();
        for (p, mut ivs) in by_partition {
            ivs.sort_by_key(|iv| iv.acquired);
            for (i, a) in ivs.iter().enumerate() {
                for b in &ivs[i + 1..] {
                    if a.label == b.label {
                        continue;
                    }
                    // b starts no earlier than a; they overlap if b starts
                    // before a ends (an open a never ends).
                    let overlap = match a.end() {
                        None => true,
                        Some(end) => b.acquired < end,
                    };
                    if overlap {
                        out.push(format!(
                            "{}: {} (epoch {}, v{}) held until {:?} but {} (epoch {}, v{}) acquired it {:?} earlier",
                            p.name(),
                            a.label,
                            a.epoch,
                            a.version,
                            a.end(),
                            b.label,
                            b.epoch,
                            b.version,
                            a.end().map(|e| e.saturating_duration_since(b.acquired))
                        ));
                    }
                }
            }
        }
        out
    }

    /// Panics if two managers ever held one partition at overlapping times, or
    /// if a hook call contradicted the history; also checks that epochs only
    /// grow per partition.
    pub fn assert_exclusive(&self) {
        let overlaps = self.overlaps();
        assert!(
            overlaps.is_empty(),
            "ownership overlapped ({}):\n{}",
            overlaps.len(),
            overlaps.join("\n")
        );
        let anomalies = self.anomalies();
        assert!(
            anomalies.is_empty(),
            "hook anomalies:\n{}",
            anomalies.join("\n")
        );
        let (r_ids, dead) = {
            let r = lock(&self.0);
            (r.ids.clone(), r.dead.clone())
        };
        let mut by_partition: BTreeMap<Partition, Vec<Interval>> = BTreeMap::new();
        for iv in self.intervals() {
            by_partition
                .entry(iv.partition.clone())
                .or_default()
                .push(iv);
        }
        for (p, mut ivs) in by_partition {
            ivs.sort_by_key(|iv| iv.acquired);
            for w in ivs.windows(2) {
                assert!(
                    w[1].epoch >= w[0].epoch,
                    "{}: epoch went back from {} ({}) to {} ({})",
                    p.name(),
                    w[0].epoch,
                    w[0].label,
                    w[1].epoch,
                    w[1].label
                );
                // A new holder needs a new epoch, except a new incarnation of
                // the same worker ID after a graceful stop (it gets its grants
                // back as they were: nothing moved).
                let same_id = r_ids.contains_key(&w[0].label)
                    && r_ids.get(&w[0].label) == r_ids.get(&w[1].label)
                    && !dead.contains_key(&w[0].label);
                if w[1].label != w[0].label && !same_id {
                    assert!(
                        w[1].epoch > w[0].epoch,
                        "{}: moved from {} ({:?}) to {} ({:?}) without a new epoch ({}); history of the partition:\n{}",
                        p.name(),
                        w[0].label,
                        r_ids.get(&w[0].label),
                        w[1].label,
                        r_ids.get(&w[1].label),
                        w[1].epoch,
                        ivs.iter()
                            .map(|iv| format!(
                                "  {} ({:?}) epoch {} v{} from {:?} to {:?}{}",
                                iv.label,
                                r_ids.get(&iv.label),
                                iv.epoch,
                                iv.version,
                                iv.acquired.duration_since(ivs[0].acquired),
                                iv.released.map(|r| r.duration_since(ivs[0].acquired)),
                                if dead.contains_key(&iv.label) {
                                    " (crashed)"
                                } else {
                                    ""
                                }
                            ))
                            .collect::<Vec<_>>()
                            .join("\n")
                            + &format!(
                                "\n  states of {}: {}\n  states of {}: {}\n  IDs of {}: {}\n  IDs of {}: {}",
                                w[0].label,
                                self.states_of(&w[0].label, ivs[0].acquired),
                                w[1].label,
                                self.states_of(&w[1].label, ivs[0].acquired),
                                w[0].label,
                                self.ids_of(&w[0].label, ivs[0].acquired),
                                w[1].label,
                                self.ids_of(&w[1].label, ivs[0].acquired)
                            )
                    );
                }
            }
        }
    }

    /// Acquisitions of `partitions` by labels other than `from` at or after
    /// `since`: (partition, label, time).
    pub fn acquired_since(&self, since: Instant) -> Vec<Interval> {
        self.intervals()
            .into_iter()
            .filter(|iv| iv.acquired >= since)
            .collect()
    }
}

/// Hooks that feed a [`Recorder`].
pub struct RecordingHooks {
    label: String,
    rec: Recorder,
}

#[async_trait]
impl Hooks for RecordingHooks {
    async fn on_assignment_changed(
        &self,
        added: &[OwnedPartition],
        removed: &[OwnedPartition],
        version: u64,
    ) {
        self.rec.apply(&self.label, added, removed, version);
    }

    async fn on_state_changed(&self, from: State, to: State) {
        lock(&self.rec.0)
            .states
            .push((self.label.clone(), Instant::now(), from, to));
    }
}

// ---------------------------------------------------------------------------
// A fleet of managers in this process
// ---------------------------------------------------------------------------

/// One manager of a [`Fleet`] (`None` once stopped or crashed).
pub struct Member {
    pub label: String,
    pub manager: Option<Manager>,
}

/// Managers of one group sharing a client, a partition source and a recorder.
pub struct Fleet {
    pub client: async_nats::Client,
    pub config: Config,
    pub source: StaticSource,
    /// What the source lists (kept in step with `source`).
    pub expected: BTreeSet<Partition>,
    pub rec: Recorder,
    pub members: Vec<Member>,
    /// If not empty, managers use these clients in turn instead of `client`.
    pub clients: Vec<async_nats::Client>,
}

impl Fleet {
    pub fn new(client: async_nats::Client, config: Config, parts: Vec<Partition>) -> Fleet {
        Fleet {
            client,
            config,
            source: StaticSource::new(parts.clone()),
            expected: parts.into_iter().collect(),
            rec: Recorder::default(),
            members: Vec::new(),
            clients: Vec::new(),
        }
    }

    /// A start future for a manager labelled `label` with `config`.
    pub fn starter(
        &self,
        label: &str,
        config: Config,
    ) -> impl Future<Output = Result<Manager, parti::Error>> + use<> {
        let n = label.trim_start_matches('m').parse::<usize>().unwrap_or(0);
        let client = match self.clients.len() {
            0 => self.client.clone(),
            k => self.clients[n % k].clone(),
        };
        Manager::builder_nats(client)
            .config(config)
            .partitions(self.source.clone())
            .hooks(self.rec.hooks(label))
            .start()
    }

    fn next_label(&self) -> String {
        format!("m{}", self.members.len())
    }

    /// Starts one manager per config, concurrently; returns their indexes.
    pub async fn start_with(&mut self, configs: Vec<Config>) -> Vec<usize> {
        let labels: Vec<String> = (0..configs.len())
            .map(|i| format!("m{}", self.members.len() + i))
            .collect();
        let futures: Vec<_> = labels
            .iter()
            .zip(configs)
            .map(|(l, c)| self.starter(l, c))
            .collect();
        let results = futures_util::future::join_all(futures).await;
        let mut out = Vec::new();
        for (label, result) in labels.into_iter().zip(results) {
            let manager = result.unwrap_or_else(|e| panic!("{label} failed to start: {e}"));
            if let Some(id) = manager.worker_id() {
                self.rec.set_id(&label, id);
            }
            out.push(self.members.len());
            self.members.push(Member {
                label,
                manager: Some(manager),
            });
        }
        out
    }

    /// Starts `n` managers with the fleet's config, concurrently.
    pub async fn start(&mut self, n: usize) -> Vec<usize> {
        let configs = vec![self.config.clone(); n];
        self.start_with(configs).await
    }

    /// Starts one manager with `config` and returns its index.
    pub async fn start_one(&mut self, config: Config) -> usize {
        self.start_with(vec![config]).await[0]
    }

    pub fn label(&self, i: usize) -> &str {
        &self.members[i].label
    }

    pub fn manager(&self, i: usize) -> &Manager {
        self.members[i]
            .manager
            .as_ref()
            .unwrap_or_else(|| panic!("{} is not running", self.members[i].label))
    }

    pub fn id(&self, i: usize) -> WorkerId {
        self.manager(i)
            .worker_id()
            .expect("a running manager holds an ID")
    }

    /// Indexes of the running managers.
    pub fn live(&self) -> Vec<usize> {
        (0..self.members.len())
            .filter(|&i| self.members[i].manager.is_some())
            .collect()
    }

    /// The running leader's index, if exactly one running manager leads.
    pub fn leader(&self) -> Option<usize> {
        let leaders: Vec<usize> = self
            .live()
            .into_iter()
            .filter(|&i| self.manager(i).is_leader())
            .collect();
        (leaders.len() == 1).then(|| leaders[0])
    }

    /// A running non-leader.
    pub fn follower(&self) -> usize {
        self.live()
            .into_iter()
            .find(|&i| !self.manager(i).is_leader())
            .expect("a running follower")
    }

    /// The partitions manager `i` shows.
    pub fn owned(&self, i: usize) -> BTreeSet<Partition> {
        self.manager(i)
            .assignment()
            .partitions
            .into_iter()
            .map(|o| o.partition)
            .collect()
    }

    /// Owner (worker ID) of every partition, from the managers' views.
    pub fn owners(&self) -> BTreeMap<Partition, WorkerId> {
        let mut out = BTreeMap::new();
        for i in self.live() {
            let id = self.id(i);
            for p in self.owned(i) {
                out.insert(p, id.clone());
            }
        }
        out
    }

    /// Owner (process label) of every partition, from the managers' views.
    pub fn owner_labels(&self) -> BTreeMap<Partition, String> {
        let mut out = BTreeMap::new();
        for i in self.live() {
            for p in self.owned(i) {
                out.insert(p, self.label(i).to_string());
            }
        }
        out
    }

    /// Drops manager `i` (a crash); returns when.
    pub fn crash(&mut self, i: usize) -> Instant {
        let m = self.members[i].manager.take().expect("running");
        drop(m);
        let at = Instant::now();
        self.rec.crashed(&self.members[i].label, at);
        at
    }

    /// Stops manager `i` gracefully and checks its hooks released everything.
    pub async fn stop(&mut self, i: usize) {
        let m = self.members[i].manager.take().expect("running");
        let label = self.members[i].label.clone();
        m.stop()
            .await
            .unwrap_or_else(|e| panic!("{label} stop failed: {e}"));
        let held = self.rec.held_by(&label);
        assert!(
            held.is_empty(),
            "{label} stopped but its hooks never released {} partitions",
            held.len()
        );
    }

    /// Makes manager `i` leave the group and checks its hooks released everything.
    pub async fn leave(&mut self, i: usize) {
        let m = self.members[i].manager.take().expect("running");
        let label = self.members[i].label.clone();
        m.leave()
            .await
            .unwrap_or_else(|e| panic!("{label} leave failed: {e}"));
        let held = self.rec.held_by(&label);
        assert!(
            held.is_empty(),
            "{label} left but its hooks never released {} partitions",
            held.len()
        );
    }

    /// Makes several managers leave at the same time.
    pub async fn leave_many(&mut self, which: &[usize]) {
        let mut leaving = Vec::new();
        for &i in which {
            let m = self.members[i].manager.take().expect("running");
            leaving.push((self.members[i].label.clone(), m));
        }
        let results = futures_util::future::join_all(
            leaving
                .into_iter()
                .map(|(label, m)| async move { (label, m.leave().await) }),
        )
        .await;
        for (label, result) in results {
            result.unwrap_or_else(|e| panic!("{label} leave failed: {e}"));
            let held = self.rec.held_by(&label);
            assert!(
                held.is_empty(),
                "{label} left but its hooks never released {} partitions",
                held.len()
            );
        }
    }

    /// Partition counts of the running managers.
    pub fn shares(&self) -> Vec<usize> {
        self.live().iter().map(|&i| self.owned(i).len()).collect()
    }

    /// Panics unless every running manager owns ⌊P/N⌋ or ⌈P/N⌉ partitions.
    pub fn assert_balanced(&self) {
        let shares = self.shares();
        let (p, n) = (self.expected.len(), shares.len());
        assert!(
            shares.iter().all(|&s| s >= p / n && s <= p.div_ceil(n)),
            "unbalanced shares {shares:?} of {p} partitions"
        );
    }

    /// Whether the running managers converged: all `Stable`, exactly one
    /// leader, every expected partition owned by exactly one of them (views and
    /// hooks agree), nothing else owned.
    pub fn check(&self) -> Result<(), String> {
        let live = self.live();
        if live.is_empty() {
            return Err("no manager running".into());
        }
        for &i in &live {
            self.rec.note_id(self.label(i), self.manager(i).worker_id());
        }
        for &i in &live {
            let state = self.manager(i).state();
            if state != State::Stable {
                return Err(format!("{} is {state}", self.label(i)));
            }
        }
        let leaders = live
            .iter()
            .filter(|&&i| self.manager(i).is_leader())
            .count();
        if leaders != 1 {
            return Err(format!("{leaders} leaders"));
        }
        let mut seen: BTreeMap<Partition, String> = BTreeMap::new();
        for &i in &live {
            for p in self.owned(i) {
                if let Some(other) = seen.insert(p.clone(), self.label(i).to_string()) {
                    return Err(format!(
                        "{} shown by both {other} and {}",
                        p.name(),
                        self.label(i)
                    ));
                }
            }
        }
        // A worker that just joined is `Stable` with nothing before the leader
        // even saw it; with at least one partition per worker, a balanced
        // strategy gives everyone something.
        if self.expected.len() >= live.len() {
            for &i in &live {
                if self.owned(i).is_empty() {
                    return Err(format!("{} owns nothing", self.label(i)));
                }
            }
        }
        let owned: BTreeSet<Partition> = seen.keys().cloned().collect();
        if owned != self.expected {
            let missing = self.expected.difference(&owned).count();
            let extra = owned.difference(&self.expected).count();
            return Err(format!(
                "{missing} partitions unowned, {extra} unexpected owned"
            ));
        }
        let holders = self.rec.holders();
        for (p, label) in &seen {
            match holders.get(p) {
                Some(h) if h.len() == 1 && &h[0] == label => {}
                other => {
                    return Err(format!(
                        "{}: view says {label}, hooks say {other:?}",
                        p.name()
                    ));
                }
            }
        }
        if holders.len() != seen.len() {
            return Err(format!(
                "hooks report {} held partitions, views {}",
                holders.len(),
                seen.len()
            ));
        }
        Ok(())
    }

    /// One line per running manager.
    pub fn describe(&self) -> String {
        let mut s = String::new();
        for i in self.live() {
            let m = self.manager(i);
            let a = m.assignment();
            let _ = writeln!(
                s,
                "  {} {:?}{} {} owns {} v{}",
                self.label(i),
                m.worker_id().map(|w| w.to_string()),
                if m.is_leader() { "*" } else { "" },
                m.state(),
                a.len(),
                a.version
            );
        }
        let _ = write!(s, "  check: {:?}", self.check());
        s
    }

    /// Waits until [`Fleet::check`] holds; returns the time waited.
    pub async fn wait_converged(&self, within: Duration, what: &str) -> Duration {
        wait_until_or(within, what, || self.check().is_ok(), || self.describe()).await
    }

    /// Replaces the partition list (the source and the expectation).
    pub fn set_partitions(&mut self, parts: Vec<Partition>) {
        self.source.set(parts.clone());
        self.expected = parts.into_iter().collect();
    }
}

/// Number of partitions whose owner differs between two owner maps (a
/// partition absent from one side counts if present in both lists).
pub fn moved(
    before: &BTreeMap<Partition, WorkerId>,
    after: &BTreeMap<Partition, WorkerId>,
) -> usize {
    before
        .iter()
        .filter(|(p, w)| after.get(*p).is_some_and(|a| a != *w))
        .count()
}

// ---------------------------------------------------------------------------
// Observer: a foreign watcher of the group's buckets
// ---------------------------------------------------------------------------

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
                    let mut stream = match backend.watch(None).await {
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
