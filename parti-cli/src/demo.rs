//! The demo: several workers in one process with a live view, through a
//! graceful stop, a crash and two joins, while a ledger fed by the hooks checks
//! that no partition is ever owned by two workers at once.

use parti::nats::async_nats;
use parti::nats::connect::ConnectArgs;
use parti::{Config, Hooks, Manager, OwnedPartition, PartitionId, StaticSource, async_trait};
use parti_testkit::MemoryBackend;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Arguments of `parti demo`.
#[derive(clap::Args, Debug)]
pub struct DemoArgs {
    /// Workers at start.
    #[arg(long, default_value_t = 4)]
    workers: usize,
    /// Number of partitions.
    #[arg(long, default_value_t = 48)]
    partitions: usize,
    /// Connection options: with --nats (or NATS_URL) or --context the demo
    /// runs on that NATS server, else in memory.
    #[command(flatten)]
    connect: ConnectArgs,
}

/// Above this many workers the live view is one summary line.
const DETAILED_VIEW_MAX: usize = 12;

/// Workers a demo may add beyond those it starts with (it adds two).
const SPARE_IDS: usize = 10;

/// The live view of many workers: how many are in each state, the leader,
/// the spread of partition counts and of applied versions.
fn summary_line(running: &[&Manager]) -> String {
    let mut states: BTreeMap<String, usize> = BTreeMap::new();
    let mut counts = Vec::with_capacity(running.len());
    let mut versions = Vec::with_capacity(running.len());
    let mut leader = None;
    for m in running {
        *states.entry(format!("{:?}", m.state())).or_default() += 1;
        let a = m.assignment();
        counts.push(a.len());
        versions.push(a.version);
        if m.is_leader() {
            leader = m.worker_id().map(|w| w.to_string());
        }
    }
    let states: Vec<String> = states.iter().map(|(s, n)| format!("{n} {s}")).collect();
    let range = |v: &[usize]| {
        let (lo, hi) = (v.iter().min(), v.iter().max());
        match (lo, hi) {
            (Some(lo), Some(hi)) => format!("{lo}..{hi}"),
            _ => "-".into(),
        }
    };
    let versions: Vec<usize> = versions.iter().map(|v| *v as usize).collect();
    format!(
        "{} workers ({}) | leader {} | owns {} | v{}",
        running.len(),
        states.join(", "),
        leader.unwrap_or_else(|| "none".into()),
        range(&counts),
        range(&versions)
    )
}

/// The demo's timings: the test timings, stretched with the number of
/// workers (all of them share this process and its cores: every heartbeat
/// reaches every worker, so the load grows with the square of their number),
/// and an ID range with room for every worker the demo starts.
fn demo_config(workers: usize) -> Config {
    let mut config = Config::for_tests();
    let stretch = (workers / 25).clamp(1, 20) as u32;
    config.heartbeat_interval *= stretch;
    config.heartbeat_ttl *= stretch;
    config.lease_safety_margin *= stretch;
    config.worker_id_ttl *= stretch;
    config.election_ttl *= stretch;
    config.emergency_grace = config.emergency_grace.map(|g| g * stretch);
    config.operation_timeout *= stretch;
    config.startup_timeout *= stretch;
    config.cold_start_window *= stretch.min(4);
    config.planned_scale_window *= stretch.min(4);
    config.worker_id_min = 0;
    config.worker_id_max = (workers + SPARE_IDS).max(100) as u32 - 1;
    config
}

/// Who holds what, as reported by the hooks; counts overlaps.
#[derive(Default)]
struct Ledger {
    holders: BTreeMap<PartitionId, BTreeSet<usize>>,
    overlaps: u64,
    moves: u64,
    last_holder: BTreeMap<PartitionId, usize>,
}

impl Ledger {
    fn added(&mut self, who: usize, p: &OwnedPartition) {
        let id = p.partition.id();
        let set = self.holders.entry(id).or_default();
        if set.iter().any(|h| *h != who) {
            self.overlaps += 1;
        }
        set.insert(who);
        if let Some(prev) = self.last_holder.insert(id, who)
            && prev != who
        {
            self.moves += 1;
        }
    }

    fn removed(&mut self, who: usize, p: &OwnedPartition) {
        if let Some(set) = self.holders.get_mut(&p.partition.id()) {
            set.remove(&who);
        }
    }

    fn forget(&mut self, who: usize) {
        for set in self.holders.values_mut() {
            set.remove(&who);
        }
    }

    fn exactly_once(&self, partitions: usize) -> bool {
        self.holders.values().filter(|s| s.len() == 1).count() == partitions
            && self.holders.values().all(|s| s.len() <= 1)
    }
}

struct LedgerHooks {
    who: usize,
    ledger: Arc<Mutex<Ledger>>,
}

#[async_trait]
impl Hooks for LedgerHooks {
    async fn on_assignment_changed(
        &self,
        added: &[OwnedPartition],
        removed: &[OwnedPartition],
        _version: u64,
    ) {
        if let Ok(mut l) = self.ledger.lock() {
            for p in removed {
                l.removed(self.who, p);
            }
            for p in added {
                l.added(self.who, p);
            }
        }
    }
}

enum Backend {
    Memory(MemoryBackend),
    Nats(async_nats::Client),
}

struct Demo {
    backend: Backend,
    config: Config,
    source: StaticSource,
    ledger: Arc<Mutex<Ledger>>,
    workers: Vec<Option<Manager>>,
    started: Instant,
    partitions: usize,
    last_line: String,
    /// The ledger's move count when the current step began.
    moves_before: u64,
    /// The fewest moves the current step needs, when the demo knows it
    /// (what a stopped or killed worker held).
    optimum: Option<usize>,
}

impl Demo {
    fn say(&self, text: &str) {
        println!("{:>7.2}s  {text}", self.started.elapsed().as_secs_f64());
    }

    /// Starts `n` workers at once (they join during the same window).
    async fn add_workers(&mut self, n: usize) -> Result<(), String> {
        let first = self.workers.len();
        let starts: Vec<_> = (first..first + n).map(|who| self.start_one(who)).collect();
        let results = futures_util::future::join_all(starts).await;
        for (i, result) in results.into_iter().enumerate() {
            let manager = result?;
            self.say(&format!(
                "worker #{} joined as {} ({})",
                first + i,
                manager.worker_id().map_or("?".into(), |w| w.to_string()),
                if manager.is_leader() {
                    "leader"
                } else {
                    "follower"
                }
            ));
            self.workers.push(Some(manager));
        }
        Ok(())
    }

    fn start_one(
        &self,
        who: usize,
    ) -> impl std::future::Future<Output = Result<Manager, String>> + use<> {
        let hooks = LedgerHooks {
            who,
            ledger: self.ledger.clone(),
        };
        let builder = match &self.backend {
            Backend::Memory(b) => Manager::builder(b.clone()),
            Backend::Nats(c) => Manager::builder_nats(c.clone()),
        };
        let builder = builder
            .config(self.config.clone())
            .partitions(self.source.clone())
            .hooks(hooks);
        async move { builder.start().await.map_err(|e| e.to_string()) }
    }

    fn status_line(&self) -> String {
        let running: Vec<&Manager> = self.workers.iter().flatten().collect();
        if running.len() > DETAILED_VIEW_MAX {
            return summary_line(&running);
        }
        let mut parts = Vec::new();
        for m in running {
            let id = m.worker_id().map_or("?".into(), |w| w.to_string());
            let a = m.assignment();
            parts.push(format!(
                "{id}{} {:?} owns {:>2} v{}",
                if m.is_leader() { "*" } else { "" },
                m.state(),
                a.len(),
                a.version
            ));
        }
        parts.join(" | ")
    }

    /// Prints the live view whenever it changes, until the group converged.
    async fn settle(&mut self, what: &str) -> Result<(), String> {
        let deadline = Instant::now() + Duration::from_secs(30) + self.config.heartbeat_ttl * 20;
        let mut stable_since: Option<Instant> = None;
        loop {
            let line = self.status_line();
            if line != self.last_line {
                self.say(&line);
                self.last_line = line;
                stable_since = None;
            }
            let all_stable = self
                .workers
                .iter()
                .flatten()
                .all(|m| m.state() == parti::State::Stable);
            let owned_once = self
                .ledger
                .lock()
                .map(|l| l.exactly_once(self.partitions))
                .unwrap_or(false);
            if all_stable && owned_once {
                let since = *stable_since.get_or_insert_with(Instant::now);
                if since.elapsed() >= Duration::from_millis(600) {
                    let (overlaps, moves) = self
                        .ledger
                        .lock()
                        .map(|l| (l.overlaps, l.moves))
                        .unwrap_or((0, 0));
                    let step = moves - self.moves_before;
                    let optimum = self
                        .optimum
                        .take()
                        .map_or_else(String::new, |o| format!(", optimal {o}"));
                    self.say(&format!(
                        "✓ {what}: every one of {} partitions owned by exactly one live worker; moved {step}{optimum}; overlaps so far: {overlaps}; moves so far: {moves}",
                        self.partitions
                    ));
                    self.moves_before = moves;
                    return Ok(());
                }
            } else {
                stable_since = None;
            }
            if Instant::now() > deadline {
                return Err(format!("the group did not converge after {what}"));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// Runs the demo.
pub async fn run(args: DemoArgs) -> Result<(), String> {
    let mut config = demo_config(args.workers);
    config.group = format!("demo{}", std::process::id());
    config
        .validate()
        .map_err(|e| format!("demo configuration for {} workers: {e}", args.workers))?;
    let on_nats = args.connect.nats.is_some() || args.connect.context.is_some();
    let backend = if on_nats {
        Backend::Nats(args.connect.connect().await.map_err(|e| e.to_string())?)
    } else {
        Backend::Memory(MemoryBackend::new(&config))
    };
    println!(
        "parti demo: {} workers, {} partitions, {} backend, test timings (heartbeat {:?}, TTL {:?})",
        args.workers,
        args.partitions,
        if on_nats { "NATS" } else { "in-memory" },
        config.heartbeat_interval,
        config.heartbeat_ttl
    );
    println!("view: <worker-id>[* = leader] <state> owns <count> v<assignment version>");
    let mut demo = Demo {
        backend,
        source: StaticSource::numbered("demo", args.partitions),
        config,
        ledger: Arc::new(Mutex::new(Ledger::default())),
        workers: Vec::new(),
        started: Instant::now(),
        partitions: args.partitions,
        last_line: String::new(),
        moves_before: 0,
        optimum: None,
    };
    demo.say(&format!("starting {} workers", args.workers));
    demo.add_workers(args.workers).await?;
    demo.settle("cold start").await?;

    if let Some(slot) = demo.workers.iter().position(Option::is_some)
        && let Some(m) = demo.workers[slot].take()
    {
        let id = m.worker_id();
        let held = m.assignment().len();
        demo.optimum = Some(held);
        demo.say(&format!(
            "stopping {} gracefully, it holds {held} (its partitions wait for the planned-scale window)",
            id.map_or("?".into(), |w| w.to_string())
        ));
        m.stop().await.map_err(|e| e.to_string())?;
    }
    demo.settle("graceful stop").await?;

    if let Some(slot) = demo.workers.iter().rposition(Option::is_some)
        && let Some(m) = demo.workers[slot].take()
    {
        let id = m.worker_id();
        let held = m.assignment().len();
        demo.optimum = Some(held);
        demo.say(&format!(
            "killing {}, it holds {held} (no goodbye: the leader waits for its lease to expire)",
            id.map_or("?".into(), |w| w.to_string())
        ));
        drop(m);
        if let Ok(mut l) = demo.ledger.lock() {
            l.forget(slot);
        }
    }
    demo.settle("crash").await?;

    demo.say("adding two workers");
    // Their shares: what the others must give up.
    let running = demo.workers.iter().flatten().count();
    demo.optimum = Some(2 * demo.partitions / (running + 2));
    demo.add_workers(2).await?;
    demo.settle("scale up").await?;

    demo.say("stopping everyone");
    for m in demo.workers.iter_mut().filter_map(Option::take) {
        m.stop().await.map_err(|e| e.to_string())?;
    }
    let (overlaps, moves) = demo
        .ledger
        .lock()
        .map(|l| (l.overlaps, l.moves))
        .unwrap_or((0, 0));
    demo.say(&format!(
        "done: {overlaps} ownership overlaps observed, {moves} partition moves"
    ));
    if overlaps > 0 {
        return Err(format!("{overlaps} overlaps observed"));
    }
    Ok(())
}
