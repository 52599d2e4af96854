//! Multi-process variant of the crash and scaling tests: real worker
//! processes (the `worker` example) on a real nats-server. One is killed with
//! SIGKILL (its partitions must be re-owned within heartbeat TTL + emergency
//! grace + 1 s), two join, those two leave on SIGTERM (`--leave-on-signal`),
//! the rest stop on SIGTERM; ownership intervals from the processes' JSON
//! lines (`ts_us`, one clock: same host) never overlap.
//!
//! The worker binary is `target/debug/examples/worker`. `cargo test
//! --workspace --all-targets` (scripts/test) builds it before any test runs;
//! when it is missing or older than the sources (e.g. `cargo test -p parti`),
//! the test builds it once with `cargo build -p parti-examples --example
//! worker` and prints how long that took.

mod common;

use common::{group, ms, server};
use parti_core::Config;
use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

const P: usize = 24;

fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}

/// Value of `"key":` in a flat JSON object line (string or number).
fn field<'a>(line: &'a str, key: &str) -> Option<&'a str> {
    let pat = format!("\"{key}\":");
    let start = line.find(&pat)? + pat.len();
    let rest = &line[start..];
    if let Some(s) = rest.strip_prefix('"') {
        s.split('"').next()
    } else {
        rest.split([',', '}']).next().map(str::trim)
    }
}

#[derive(Clone, Debug)]
struct Line {
    proc: usize,
    event: String,
    partition: String,
    state_to: String,
    ts_us: u64,
    epoch: u64,
}

/// Everything the processes printed.
#[derive(Clone, Default)]
struct Log(Arc<Mutex<Vec<Line>>>);

impl Log {
    fn lines(&self) -> Vec<Line> {
        self.0.lock().unwrap().clone()
    }

    /// Partitions held per process, from acquired/released lines.
    fn holdings(&self) -> BTreeMap<usize, BTreeSet<String>> {
        let mut out: BTreeMap<usize, BTreeSet<String>> = BTreeMap::new();
        for l in self.lines() {
            match l.event.as_str() {
                "acquired" => {
                    out.entry(l.proc).or_default().insert(l.partition);
                }
                "released" => {
                    out.entry(l.proc).or_default().remove(&l.partition);
                }
                _ => {}
            }
        }
        out
    }

    fn last_state(&self, proc: usize) -> Option<String> {
        self.lines()
            .into_iter()
            .filter(|l| l.proc == proc && l.event == "state")
            .map(|l| l.state_to)
            .next_back()
    }

    fn has(&self, proc: usize, event: &str) -> bool {
        self.lines()
            .iter()
            .any(|l| l.proc == proc && l.event == event)
    }
}

/// The worker processes; killed on drop.
struct Procs {
    bin: PathBuf,
    url: String,
    group: String,
    log: Log,
    children: Vec<Option<Child>>,
    /// When a process was SIGKILLed (µs), to close its intervals.
    killed: BTreeMap<usize, u64>,
}

impl Procs {
    fn spawn(&mut self, leave_on_signal: bool) -> usize {
        let proc = self.children.len();
        let mut cmd = Command::new(&self.bin);
        cmd.args(["--nats", &self.url, "--group", &self.group])
            .args(["--partitions", &P.to_string(), "--test-timings"]);
        if leave_on_signal {
            cmd.arg("--leave-on-signal");
        }
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn the worker example");
        let stdout = child.stdout.take().unwrap();
        let log = self.log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                let get = |k| field(&line, k).unwrap_or_default().to_string();
                let parsed = Line {
                    proc,
                    event: get("event"),
                    partition: get("partition"),
                    state_to: get("to"),
                    ts_us: get("ts_us").parse().unwrap_or(0),
                    epoch: get("epoch").parse().unwrap_or(0),
                };
                log.0.lock().unwrap().push(parsed);
            }
        });
        self.children.push(Some(child));
        proc
    }

    fn live(&self) -> Vec<usize> {
        (0..self.children.len())
            .filter(|&i| self.children[i].is_some())
            .collect()
    }

    fn sigkill(&mut self, i: usize) -> u64 {
        let mut child = self.children[i].take().expect("running");
        child.kill().expect("SIGKILL");
        let at = now_us();
        let _ = child.wait();
        self.killed.insert(i, at);
        at
    }

    fn sigterm(&mut self, i: usize) -> Child {
        let child = self.children[i].take().expect("running");
        let status = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success());
        child
    }

    /// Every live process announced `started`, is `Stable`, owns something,
    /// and together they own every partition exactly once.
    fn converged(&self) -> Result<(), String> {
        let live = self.live();
        let holdings = self.log.holdings();
        let mut seen = BTreeMap::new();
        for &i in &live {
            if !self.log.has(i, "started") {
                return Err(format!("process {i} not started"));
            }
            if self.log.last_state(i).as_deref() != Some("Stable") {
                return Err(format!("process {i} is {:?}", self.log.last_state(i)));
            }
            let held = holdings.get(&i).cloned().unwrap_or_default();
            if held.is_empty() {
                return Err(format!("process {i} owns nothing"));
            }
            for p in held {
                if let Some(other) = seen.insert(p.clone(), i) {
                    return Err(format!("{p} held by {other} and {i}"));
                }
            }
        }
        for (i, held) in &holdings {
            if !live.contains(i) && !held.is_empty() && !self.killed.contains_key(i) {
                return Err(format!("stopped process {i} still holds {}", held.len()));
            }
        }
        if seen.len() != P {
            return Err(format!("{} of {P} partitions owned", seen.len()));
        }
        Ok(())
    }

    async fn wait_converged(&self, what: &str) -> Duration {
        common::wait_until_or(
            common::SETTLE,
            what,
            || self.converged().is_ok(),
            || format!("{:?}; holdings {:?}", self.converged(), self.log.holdings()),
        )
        .await
    }

    /// Owner process of every partition.
    fn owners(&self) -> BTreeMap<String, usize> {
        let mut out = BTreeMap::new();
        for (i, held) in self.log.holdings() {
            if self.children.get(i).is_some_and(Option::is_some) {
                for p in held {
                    out.insert(p, i);
                }
            }
        }
        out
    }

    /// Ownership intervals (process, partition, from, to); a killed process's
    /// open intervals end at its kill, a live one's run to now.
    fn intervals(&self) -> Vec<(usize, String, u64, u64, u64)> {
        let mut open: BTreeMap<(usize, String), (u64, u64)> = BTreeMap::new();
        let mut out = Vec::new();
        let mut lines = self.log.lines();
        lines.sort_by_key(|l| l.ts_us);
        for l in lines {
            let key = (l.proc, l.partition.clone());
            match l.event.as_str() {
                "acquired" => {
                    open.insert(key, (l.ts_us, l.epoch));
                }
                "released" => {
                    if let Some((from, epoch)) = open.remove(&key) {
                        out.push((l.proc, l.partition, from, l.ts_us, epoch));
                    }
                }
                _ => {}
            }
        }
        for ((proc, p), (from, epoch)) in open {
            let to = self.killed.get(&proc).copied().unwrap_or(u64::MAX);
            out.push((proc, p, from, to, epoch));
        }
        out
    }

    fn overlaps(&self) -> Vec<String> {
        let mut by_p: BTreeMap<String, Vec<(usize, u64, u64, u64)>> = BTreeMap::new();
        for (proc, p, from, to, epoch) in self.intervals() {
            by_p.entry(p).or_default().push((proc, from, to, epoch));
        }
        let mut out = Vec::new();
        for (p, mut ivs) in by_p {
            ivs.sort_by_key(|iv| iv.1);
            for (i, a) in ivs.iter().enumerate() {
                for b in &ivs[i + 1..] {
                    if a.0 != b.0 && b.1 < a.2 {
                        out.push(format!(
                            "{p}: process {} (epoch {}) until {} µs, process {} (epoch {}) from {} µs",
                            a.0, a.3, a.2, b.0, b.3, b.1
                        ));
                    }
                }
            }
        }
        out
    }
}

impl Drop for Procs {
    fn drop(&mut self) {
        for child in self.children.iter_mut().flatten() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Newest modification time of the files the worker binary is built from.
fn newest_source(root: &Path) -> SystemTime {
    fn walk(dir: &Path, newest: &mut SystemTime) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for e in entries.flatten() {
            let path = e.path();
            if path.is_dir() {
                walk(&path, newest);
            } else if let Ok(m) = e.metadata().and_then(|m| m.modified()) {
                *newest = (*newest).max(m);
            }
        }
    }
    let mut newest = UNIX_EPOCH;
    for krate in ["parti", "parti-core", "parti-nats", "parti-strategies"] {
        walk(&root.join(krate).join("src"), &mut newest);
        if let Ok(m) =
            std::fs::metadata(root.join(krate).join("Cargo.toml")).and_then(|m| m.modified())
        {
            newest = newest.max(m);
        }
    }
    for f in [
        "examples/worker.rs",
        "examples/Cargo.toml",
        "Cargo.lock",
        "Cargo.toml",
    ] {
        if let Ok(m) = std::fs::metadata(root.join(f)).and_then(|m| m.modified()) {
            newest = newest.max(m);
        }
    }
    newest
}

/// The worker example's binary, built if missing or stale.
fn worker_binary() -> PathBuf {
    let exe = std::env::current_exe().expect("test binary path");
    // <target>/<profile>/deps/<this test>
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("test binary in <target>/<profile>/deps");
    let bin = profile_dir.join("examples").join("worker");
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let fresh = std::fs::metadata(&bin)
        .and_then(|m| m.modified())
        .is_ok_and(|built| built >= newest_source(&root));
    if fresh {
        println!("multi-process: using {} (up to date)", bin.display());
        return bin;
    }
    let t = Instant::now();
    let status = Command::new(env!("CARGO"))
        .args(["build", "-p", "parti-examples", "--example", "worker"])
        .current_dir(&root)
        .status()
        .expect("run cargo build");
    assert!(status.success(), "building the worker example failed");
    println!(
        "multi-process: built the worker example in {} ms",
        ms(t.elapsed())
    );
    assert!(bin.is_file(), "no worker binary at {}", bin.display());
    bin
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn worker_processes_crash_join_and_leave() {
    let Some(server) = server() else { return };
    let bin = tokio::task::block_in_place(worker_binary);
    let cfg = Config::for_tests();
    let mut procs = Procs {
        bin,
        url: server.client_url(),
        group: group("procs"),
        log: Log::default(),
        children: Vec::new(),
        killed: BTreeMap::new(),
    };
    let t = Instant::now();
    for _ in 0..4 {
        procs.spawn(false);
    }
    procs.wait_converged("four worker processes converge").await;
    println!(
        "multi-process: 4 processes converged {} ms after spawning",
        ms(t.elapsed())
    );

    // SIGKILL one.
    let holdings = procs.log.holdings();
    let victim = 1;
    let lost = holdings[&victim].clone();
    let killed = procs.sigkill(victim);
    procs
        .wait_converged("the survivors re-own the killed process's partitions")
        .await;
    let mut reowned = killed;
    for p in &lost {
        let first = procs
            .log
            .lines()
            .iter()
            .filter(|l| l.event == "acquired" && &l.partition == p && l.ts_us >= killed)
            .map(|l| l.ts_us)
            .min()
            .unwrap_or_else(|| panic!("{p} never re-acquired"));
        reowned = reowned.max(first);
    }
    let took = Duration::from_micros(reowned - killed);
    let bound = cfg.heartbeat_ttl + cfg.effective_emergency_grace() + Duration::from_secs(1);
    println!(
        "multi-process: SIGKILL: {} partitions re-owned {} ms after the kill (bound {} ms)",
        lost.len(),
        ms(took),
        ms(bound)
    );
    assert!(took <= bound, "re-owned after {took:?}");

    // Two join (and will leave on SIGTERM).
    let before = procs.owners();
    let joiners = [procs.spawn(true), procs.spawn(true)];
    procs.wait_converged("five processes converge").await;
    let after = procs.owners();
    let moved = before
        .iter()
        .filter(|(p, w)| after.get(*p) != Some(w))
        .count();
    let optimal = after.values().filter(|w| joiners.contains(w)).count();
    println!(
        "multi-process: 2 joined: {moved} partitions moved (optimal {optimal}, bound {})",
        optimal + optimal / 4 + 2
    );
    assert!(moved <= optimal + optimal / 4 + 2);

    // The two leave.
    let before = after;
    let mut leaving = Vec::new();
    for j in joiners {
        leaving.push(procs.sigterm(j));
    }
    for mut child in leaving {
        let status = tokio::task::block_in_place(|| child.wait()).unwrap();
        assert!(status.success(), "a leaving worker exited with {status}");
    }
    procs
        .wait_converged("three processes converge after two left")
        .await;
    let after = procs.owners();
    let moved = before
        .iter()
        .filter(|(p, w)| after.get(*p) != Some(w))
        .count();
    let optimal = before.values().filter(|w| joiners.contains(w)).count();
    println!(
        "multi-process: 2 left: {moved} partitions moved (optimal {optimal}, bound {})",
        optimal + optimal / 4 + 2
    );
    assert!(moved <= optimal + optimal / 4 + 2);

    // Graceful stop of the rest.
    let mut stopping = Vec::new();
    for i in procs.live() {
        stopping.push((i, procs.sigterm(i)));
    }
    for (i, mut child) in stopping {
        let status = tokio::task::block_in_place(|| child.wait()).unwrap();
        assert!(status.success(), "process {i} exited with {status}");
        assert!(procs.log.has(i, "stopped"));
    }
    let holdings = procs.log.holdings();
    for (i, held) in &holdings {
        if !procs.killed.contains_key(i) {
            assert!(held.is_empty(), "process {i} exited holding {held:?}");
        }
    }
    let overlaps = procs.overlaps();
    assert!(
        overlaps.is_empty(),
        "ownership overlapped:\n{}",
        overlaps.join("\n")
    );
    println!(
        "multi-process: {} ownership intervals, no overlap; total {} ms",
        procs.intervals().len(),
        ms(t.elapsed())
    );
}
