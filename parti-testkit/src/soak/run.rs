//! The soak itself: start the servers, the proxies and the workers, apply seeded
//! random faults for the given time, then judge the timeline.

use super::checker::{Bounds, Verdict, check};
use super::coverage::Coverage;
use super::events::{Event, FaultKind, Micros, ProcId, Stamped, now_us, parse_line};
use super::proxies::Proxies;
use super::rng::SoakRng;
use super::servers::Servers;
use super::workers::{Output, WorkerProcess, WorkerSpec, stderr_path};
use std::collections::BTreeSet;
use std::io::Write;
use std::path::PathBuf;
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender, channel};
use std::time::{Duration, Instant};

/// What to run.
#[derive(Clone, Debug)]
pub struct SoakOptions {
    /// How long faults are applied.
    pub duration: Duration,
    /// A 3-node cluster with R3 buckets instead of one server.
    pub cluster: bool,
    /// Seed of the fault schedule.
    pub seed: u64,
    /// Number of worker processes.
    pub workers: usize,
    /// Number of partitions.
    pub partitions: usize,
    /// The `worker` example binary.
    pub worker_bin: PathBuf,
    /// Bound on the re-own latency after a fault.
    pub reown_bound: Duration,
    /// Where the timeline and the workers' stderr are written.
    pub log_dir: PathBuf,
}

/// Pause of a worker, cut of a connection, outage of a node: how long.
const HOLD: (Duration, Duration) = (Duration::from_secs(1), Duration::from_secs(4));
/// Delay before a killed or stopped worker is started again.
const RESTART_DELAY: (Duration, Duration) = (Duration::ZERO, Duration::from_secs(1));
/// Quiet time after the group recovered, before the next fault.
const QUIET: (Duration, Duration) = (Duration::from_secs(1), Duration::from_secs(3));
/// How long the first start of the group may take.
const STARTUP_BOUND: Duration = Duration::from_secs(30);
/// How long a SIGTERMed worker may take to exit (its `shutdown_timeout` is 5 s).
const STOP_BOUND: Duration = Duration::from_secs(10);

/// The harness state during a run.
struct Soak {
    opts: SoakOptions,
    rng: SoakRng,
    servers: Servers,
    proxies: Proxies,
    spec: WorkerSpec,
    slots: Vec<Option<WorkerProcess>>,
    next_proc: u32,
    tx: Sender<Output>,
    rx: Receiver<Output>,
    events: Vec<Stamped>,
    coverage: Coverage,
    partitions: Vec<String>,
    log: std::fs::File,
    /// Things the harness saw that are violations by themselves.
    problems: Vec<String>,
    /// Processes sent SIGTERM: their exit is expected.
    stopping: BTreeSet<ProcId>,
}

/// Runs a soak; returns the verdict (with the harness's own findings among the
/// violations) or an error when the harness could not run.
pub fn run(opts: SoakOptions) -> Result<Verdict, String> {
    std::fs::create_dir_all(&opts.log_dir)
        .map_err(|e| format!("creating {}: {e}", opts.log_dir.display()))?;
    let servers = Servers::start(opts.cluster).map_err(|e| e.to_string())?;
    let addrs = servers.addrs();
    let targets: Vec<_> = (0..opts.workers)
        .filter_map(|slot| addrs.get(slot % addrs.len().max(1)).copied())
        .collect();
    let proxies = Proxies::start(&targets).map_err(|e| format!("starting the proxies: {e}"))?;
    let config = if opts.cluster {
        Some(write_cluster_config(&opts)?)
    } else {
        None
    };
    let spec = WorkerSpec {
        bin: opts.worker_bin.clone(),
        group: "soak".into(),
        partitions: opts.partitions,
        config,
        log_dir: opts.log_dir.clone(),
    };
    let log_path = opts.log_dir.join("timeline.log");
    let log = std::fs::File::create(&log_path)
        .map_err(|e| format!("creating {}: {e}", log_path.display()))?;
    let (tx, rx) = channel();
    let mut soak = Soak {
        rng: SoakRng::new(opts.seed),
        partitions: (0..opts.partitions).map(|i| format!("p-{i}")).collect(),
        slots: (0..opts.workers).map(|_| None).collect(),
        opts,
        servers,
        proxies,
        spec,
        next_proc: 0,
        tx,
        rx,
        events: Vec::new(),
        coverage: Coverage::default(),
        log,
        problems: Vec::new(),
        stopping: BTreeSet::new(),
    };
    soak.run()
}

/// The test timings with R3 buckets, as a TOML file for `--config`.
fn write_cluster_config(opts: &SoakOptions) -> Result<PathBuf, String> {
    let mut config = parti_core::Config::for_tests();
    config.buckets.replicas = 3;
    let text = toml::to_string(&config).map_err(|e| format!("writing the worker config: {e}"))?;
    let path = opts.log_dir.join("worker.toml");
    std::fs::write(&path, text).map_err(|e| format!("writing {}: {e}", path.display()))?;
    Ok(path)
}

impl Soak {
    fn run(&mut self) -> Result<Verdict, String> {
        for slot in 0..self.opts.workers {
            self.spawn(slot)?;
        }
        if self.wait_served(STARTUP_BOUND).is_none() {
            return Err(format!(
                "the group did not own every partition within {STARTUP_BOUND:?} of its start (unowned: {:?}); see {}",
                self.coverage.unserved(&self.partitions),
                self.opts.log_dir.display()
            ));
        }
        let end = Instant::now() + self.opts.duration;
        while Instant::now() < end {
            self.apply_random_fault()?;
            self.wait_served(self.opts.reown_bound + Duration::from_secs(2));
            let quiet = self.rng.duration(QUIET.0, QUIET.1);
            self.pump_for(quiet);
        }
        // Final quiet period: everything must be owned at its end.
        self.wait_served(self.opts.reown_bound);
        self.pump_for(Duration::from_secs(2));
        self.record(now_us(), Event::EndOfRun);
        self.stop_all();
        let bounds = Bounds {
            reown_bound: micros(self.opts.reown_bound),
            cutoff_tail: micros(self.opts.reown_bound),
        };
        let mut verdict = check(&self.events, &self.partitions, bounds);
        verdict.violations.append(&mut self.problems);
        Ok(verdict)
    }

    /// Draws every random choice first (the schedule depends on the seed only),
    /// then applies one fault.
    fn apply_random_fault(&mut self) -> Result<(), String> {
        let kinds = [
            FaultKind::Kill,
            FaultKind::Pause,
            FaultKind::Stop,
            if self.opts.cluster {
                FaultKind::NodeRestart
            } else {
                FaultKind::ServerRestart
            },
            FaultKind::Cut,
        ];
        let kind = kinds[self.rng.below(kinds.len())];
        let slot = self.rng.below(self.opts.workers);
        let node = self.rng.below(self.servers.nodes());
        let hold = self.rng.duration(HOLD.0, HOLD.1);
        let restart_delay = self.rng.duration(RESTART_DELAY.0, RESTART_DELAY.1);
        self.note(&format!(
            "fault {} slot {slot} node {node} hold {hold:?} restart after {restart_delay:?}",
            kind.name()
        ));
        match kind {
            FaultKind::Kill => {
                if let Some(mut worker) = self.slots[slot].take() {
                    let at = worker.kill();
                    self.record(at, Event::Died(worker.proc));
                    self.record(at, Event::Fault(kind));
                }
                self.pump_for(restart_delay);
                self.spawn(slot)?;
            }
            FaultKind::Pause => {
                let proc = self.signal(slot, "STOP")?;
                let at = now_us();
                self.record(at, Event::Frozen(proc));
                self.record(at, Event::Fault(kind));
                self.pump_for(hold);
                self.signal(slot, "CONT")?;
                self.record(now_us(), Event::Thawed(proc));
            }
            FaultKind::Stop => {
                self.terminate(slot)?;
                self.record(now_us(), Event::Fault(kind));
                self.wait_exit(slot, STOP_BOUND);
                self.pump_for(restart_delay);
                self.spawn(slot)?;
            }
            FaultKind::ServerRestart | FaultKind::NodeRestart => {
                self.servers.kill(node).map_err(|e| e.to_string())?;
                let at = now_us();
                self.record(at, Event::Fault(kind));
                // In a cluster, the workers behind this node are cut off until
                // their client finds another node.
                let behind: Vec<ProcId> = if self.opts.cluster {
                    self.procs_on_node(node)
                } else {
                    Vec::new()
                };
                for proc in &behind {
                    self.record(at, Event::CutOff(*proc));
                }
                self.pump_for(hold);
                self.servers.restart(node).map_err(|e| e.to_string())?;
                let back = now_us();
                for proc in behind {
                    self.record(back, Event::Reconnected(proc));
                }
            }
            FaultKind::Cut => {
                self.proxies.cut(slot);
                let at = now_us();
                if let Some(proc) = self.slots[slot].as_ref().map(|w| w.proc) {
                    self.record(at, Event::CutOff(proc));
                    self.record(at, Event::Fault(kind));
                    self.pump_for(hold);
                    self.proxies.restore(slot);
                    self.record(now_us(), Event::Reconnected(proc));
                } else {
                    self.proxies.restore(slot);
                }
            }
        }
        Ok(())
    }

    fn procs_on_node(&self, node: usize) -> Vec<ProcId> {
        let nodes = self.servers.nodes().max(1);
        self.slots
            .iter()
            .enumerate()
            .filter(|(slot, _)| slot % nodes == node)
            .filter_map(|(_, w)| w.as_ref().map(|w| w.proc))
            .collect()
    }

    fn spawn(&mut self, slot: usize) -> Result<(), String> {
        let proc = ProcId(self.next_proc);
        self.next_proc += 1;
        let url = self
            .proxies
            .url(slot)
            .ok_or_else(|| format!("no proxy for slot {slot}"))?;
        let worker = WorkerProcess::spawn(&self.spec, proc, &url, self.tx.clone())
            .map_err(|e| format!("starting {}: {e}", self.spec.bin.display()))?;
        self.note(&format!(
            "spawned {proc} in slot {slot} pid {}",
            worker.pid()
        ));
        self.slots[slot] = Some(worker);
        Ok(())
    }

    fn signal(&mut self, slot: usize, name: &str) -> Result<ProcId, String> {
        let worker = self.slots[slot]
            .as_ref()
            .ok_or_else(|| format!("no worker in slot {slot}"))?;
        worker.signal(name).map_err(|e| e.to_string())?;
        Ok(worker.proc)
    }

    /// SIGTERM to the worker in `slot`, whose exit is then expected.
    fn terminate(&mut self, slot: usize) -> Result<ProcId, String> {
        let proc = self.signal(slot, "TERM")?;
        self.stopping.insert(proc);
        Ok(proc)
    }

    /// Waits until the worker in `slot` exited (recording its death), killing it
    /// (a violation) if it takes longer than `bound`.
    fn wait_exit(&mut self, slot: usize, bound: Duration) {
        let deadline = Instant::now() + bound;
        loop {
            let Some(worker) = self.slots[slot].as_mut() else {
                return;
            };
            if worker.exited().is_some() {
                let proc = worker.proc;
                self.slots[slot] = None;
                self.record(now_us(), Event::Died(proc));
                return;
            }
            if Instant::now() >= deadline {
                let proc = worker.proc;
                let at = worker.kill();
                self.slots[slot] = None;
                self.record(at, Event::Died(proc));
                self.problems
                    .push(format!("{proc} did not exit within {bound:?} of SIGTERM"));
                return;
            }
            self.pump_for(Duration::from_millis(20));
        }
    }

    /// Pumps until every partition is served or `bound` passed; returns how long it took.
    fn wait_served(&mut self, bound: Duration) -> Option<Duration> {
        let started = Instant::now();
        let deadline = started + bound;
        while !self.coverage.all_served(&self.partitions) {
            if Instant::now() >= deadline {
                return None;
            }
            self.pump_for(Duration::from_millis(20));
        }
        Some(started.elapsed())
    }

    /// Reads worker output for `how_long`, and notices workers that exited on
    /// their own (a violation; they are started again).
    fn pump_for(&mut self, how_long: Duration) {
        let deadline = Instant::now() + how_long;
        loop {
            let now = Instant::now();
            if now >= deadline {
                break;
            }
            match self
                .rx
                .recv_timeout((deadline - now).min(Duration::from_millis(50)))
            {
                Ok(Output::Line(proc, line)) => self.on_line(proc, &line),
                Ok(Output::Closed(_)) | Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => break,
            }
            self.reap_unexpected_exits();
        }
    }

    fn on_line(&mut self, proc: ProcId, line: &str) {
        let _ = writeln!(self.log, "{proc} {line}");
        match parse_line(proc, line) {
            Ok(Some(stamped)) => {
                self.coverage.apply(&stamped.event);
                self.events.push(stamped);
            }
            Ok(None) => {}
            Err(e) => self
                .problems
                .push(format!("{proc} printed a bad line: {e}")),
        }
    }

    fn reap_unexpected_exits(&mut self) {
        for slot in 0..self.slots.len() {
            let Some(worker) = self.slots[slot].as_mut() else {
                continue;
            };
            if self.stopping.contains(&worker.proc) {
                continue;
            }
            if let Some(status) = worker.exited() {
                let proc = worker.proc;
                self.slots[slot] = None;
                self.record(now_us(), Event::Died(proc));
                let stderr = std::fs::read_to_string(stderr_path(&self.opts.log_dir, proc))
                    .unwrap_or_default();
                self.problems.push(format!(
                    "{proc} exited on its own ({status}); stderr: {}",
                    stderr.trim()
                ));
                if let Err(e) = self.spawn(slot) {
                    self.problems.push(e);
                }
            }
        }
    }

    /// Stops every worker gracefully (SIGTERM) and reads their last lines.
    fn stop_all(&mut self) {
        for slot in 0..self.slots.len() {
            if self.slots[slot].is_some() && self.terminate(slot).is_err() {
                self.problems
                    .push(format!("could not SIGTERM the worker in slot {slot}"));
            }
        }
        for slot in 0..self.slots.len() {
            self.wait_exit(slot, STOP_BOUND);
        }
        // Lines still in flight.
        while let Ok(output) = self.rx.recv_timeout(Duration::from_millis(200)) {
            if let Output::Line(proc, line) = output {
                self.on_line(proc, &line);
            }
        }
    }

    fn record(&mut self, ts: Micros, event: Event) {
        let _ = writeln!(self.log, "harness {ts} {event:?}");
        self.coverage.apply(&event);
        self.events.push(Stamped { ts, event });
    }

    fn note(&mut self, what: &str) {
        let _ = writeln!(self.log, "harness {} {what}", now_us());
    }
}

fn micros(d: Duration) -> Micros {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}
