//! A fleet of managers of one group in this process.

use super::*;
use parti::{Config, Manager, Partition, State, StaticSource, WorkerId};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::future::Future;
use std::time::{Duration, Instant};

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
