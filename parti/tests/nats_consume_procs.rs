//! The partition consumer across real processes (the `produce` and `consume`
//! examples) on a real nats-server: 64 partitions, 20 000 messages published
//! at a steady rate while the consumers scale 3 → 5 (two join), one is
//! SIGKILLed, and two leave on SIGTERM, leaving 2.
//!
//! Checked from the processes' JSON lines (one clock: same host):
//! - every message is handled at least once;
//! - per partition, the first handlings of the messages are in payload order;
//! - no two processes' handler intervals of one partition overlap (the killed
//!   process's in-flight message never printed an interval);
//! - duplicates only for partitions the killed process had handled last, and
//!   only what it had not acknowledged (at most a few per partition);
//!
//! and reported: duplicates, and handoff gaps (from a partition's last
//! handling by its old owner to its first by the new one; graceful and
//! crash handoffs apart).
//!
//! The binaries are `target/<profile>/examples/{produce,consume}`; when they
//! are missing or older than the sources, the test builds them once.

// Test code: unwrap, expect and panic are how it asserts.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::{group, lock, ms, server};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

const P: usize = 64;
const MESSAGES: usize = 20_000;
/// Messages per second: the scaling steps happen while they arrive.
const RATE: usize = 1_500;
const WORK_MS: &str = "1";

/// Newest modification time of the sources the example binaries depend on.
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
    for dir in [
        "parti/src",
        "parti-core/src",
        "parti-nats/src",
        "parti-strategies/src",
        "examples",
    ] {
        walk(&root.join(dir), &mut newest);
    }
    for f in [
        "Cargo.lock",
        "Cargo.toml",
        "parti-nats/Cargo.toml",
        "parti/Cargo.toml",
    ] {
        if let Ok(m) = std::fs::metadata(root.join(f)).and_then(|m| m.modified()) {
            newest = newest.max(m);
        }
    }
    newest
}

/// The example binaries `produce` and `consume`, built if missing or stale.
fn binaries() -> (PathBuf, PathBuf) {
    let exe = std::env::current_exe().expect("test binary path");
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("test binary in <target>/<profile>/deps");
    let dir = profile_dir.join("examples");
    let (produce, consume) = (dir.join("produce"), dir.join("consume"));
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let newest = newest_source(&root);
    let fresh = |bin: &Path| {
        std::fs::metadata(bin)
            .and_then(|m| m.modified())
            .is_ok_and(|built| built >= newest)
    };
    if !(fresh(&produce) && fresh(&consume)) {
        let t = Instant::now();
        let status = Command::new(env!("CARGO"))
            .args(["build", "-p", "parti-examples", "--example", "produce"])
            .args(["--example", "consume"])
            .current_dir(&root)
            .status()
            .expect("run cargo build");
        assert!(status.success(), "building the examples failed");
        println!(
            "consume-procs: built the examples in {} ms",
            ms(t.elapsed())
        );
    }
    (produce, consume)
}

#[derive(Clone, Debug)]
struct Line {
    proc: usize,
    value: Value,
}

impl Line {
    fn event(&self) -> &str {
        self.value["event"].as_str().unwrap_or_default()
    }
    fn str(&self, key: &str) -> String {
        self.value[key].as_str().unwrap_or_default().to_string()
    }
    fn num(&self, key: &str) -> u64 {
        self.value[key].as_u64().unwrap_or_default()
    }
}

/// The consumer processes and what they printed; killed on drop.
struct Procs {
    bin: PathBuf,
    args: Vec<String>,
    lines: Arc<Mutex<Vec<Line>>>,
    children: Vec<Option<Child>>,
}

impl Procs {
    fn spawn(&mut self, leave_on_signal: bool) -> usize {
        let proc = self.children.len();
        let mut cmd = Command::new(&self.bin);
        cmd.args(&self.args);
        if leave_on_signal {
            cmd.arg("--leave-on-signal");
        }
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn the consume example");
        let stdout = child.stdout.take().unwrap();
        let lines = self.lines.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                match serde_json::from_str(&line) {
                    Ok(value) => lock(&lines).push(Line { proc, value }),
                    Err(e) => eprintln!("process {proc}: not JSON ({e}): {line}"),
                }
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

    fn lines(&self) -> Vec<Line> {
        lock(&self.lines).clone()
    }

    /// Partitions held per process, from the acquired/released lines.
    fn holdings(&self) -> BTreeMap<usize, BTreeSet<String>> {
        let mut out: BTreeMap<usize, BTreeSet<String>> = BTreeMap::new();
        for l in lock(&self.lines).iter() {
            match l.event() {
                "acquired" => {
                    out.entry(l.proc).or_default().insert(l.str("partition"));
                }
                "released" => {
                    out.entry(l.proc).or_default().remove(&l.str("partition"));
                }
                _ => {}
            }
        }
        out
    }

    /// Every live process started and owns something; together they own
    /// every partition once.
    fn converged(&self) -> Result<(), String> {
        let holdings = self.holdings();
        let lines = self.lines();
        let mut seen = BTreeSet::new();
        for i in self.live() {
            if !lines.iter().any(|l| l.proc == i && l.event() == "started") {
                return Err(format!("process {i} not started"));
            }
            let held = holdings.get(&i).cloned().unwrap_or_default();
            if held.is_empty() {
                return Err(format!("process {i} owns nothing"));
            }
            for p in held {
                if !seen.insert(p.clone()) {
                    return Err(format!("{p} held twice"));
                }
            }
        }
        if seen.len() != P {
            return Err(format!("{} of {P} partitions owned", seen.len()));
        }
        Ok(())
    }

    async fn wait_converged(&self, what: &str) {
        common::wait_until_or(
            common::SETTLE,
            what,
            || self.converged().is_ok(),
            || format!("{:?}", self.converged()),
        )
        .await;
    }

    fn sigkill(&mut self, i: usize) {
        let mut child = self.children[i].take().expect("running");
        child.kill().expect("SIGKILL");
        let _ = child.wait();
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
}

impl Drop for Procs {
    fn drop(&mut self) {
        for child in self.children.iter_mut().flatten() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

#[derive(Clone, Debug)]
struct Processed {
    proc: usize,
    partition: String,
    payload: String,
    k: u64,
    start: u64,
    end: u64,
}

fn percentile(sorted: &[u64], q: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let i = ((sorted.len() - 1) as f64 * q).round() as usize;
    sorted[i]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consumers_scale_crash_and_leave_without_loss() {
    let Some(server) = server() else { return };
    let (produce, consume) = tokio::task::block_in_place(binaries);
    let url = server.client_url();
    let g = group("cprocs");
    let (stream, prefix) = (format!("S{g}"), format!("ev{g}"));
    let t = Instant::now();
    // The stream first (the consumers need it): an empty produce run.
    let status = Command::new(&produce)
        .args([
            "--nats",
            &url,
            "--stream",
            &stream,
            "--subject-prefix",
            &prefix,
        ])
        .args(["--partitions", &P.to_string(), "--messages", "0"])
        .stdout(Stdio::null())
        .status()
        .expect("run produce");
    assert!(status.success());
    let mut procs = Procs {
        bin: consume,
        args: [
            "--nats",
            &url,
            "--group",
            &g,
            "--stream",
            &stream,
            "--subject-prefix",
            &prefix,
            "--partitions",
            &P.to_string(),
            "--test-timings",
            "--work-ms",
            WORK_MS,
        ]
        .iter()
        .map(|s| s.to_string())
        .collect(),
        lines: Arc::default(),
        children: Vec::new(),
    };
    for _ in 0..3 {
        procs.spawn(false);
    }
    procs.wait_converged("three consumers converge").await;
    let producer = Command::new(&produce)
        .args([
            "--nats",
            &url,
            "--stream",
            &stream,
            "--subject-prefix",
            &prefix,
        ])
        .args([
            "--partitions",
            &P.to_string(),
            "--messages",
            &MESSAGES.to_string(),
        ])
        .args(["--rate", &RATE.to_string()])
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn produce");
    let handled = |procs: &Procs| {
        procs
            .lines()
            .iter()
            .filter(|l| l.event() == "processed")
            .count()
    };
    common::wait_until(common::SETTLE, "some messages handled", || {
        handled(&procs) > 500
    })
    .await;
    // 3 → 5.
    let joiners = [procs.spawn(true), procs.spawn(true)];
    procs.wait_converged("five consumers converge").await;
    // One of the first three is SIGKILLed.
    let victim = 1;
    procs.sigkill(victim);
    procs
        .wait_converged("the survivors re-own the killed one's partitions")
        .await;
    // The two joiners leave: 2 remain.
    let mut leaving = Vec::new();
    for j in joiners {
        leaving.push(procs.sigterm(j));
    }
    for mut child in leaving {
        let status = tokio::task::block_in_place(|| child.wait()).unwrap();
        assert!(status.success(), "a leaving consumer exited with {status}");
    }
    procs.wait_converged("two consumers converge").await;
    let out = tokio::task::block_in_place(|| producer.wait_with_output()).unwrap();
    assert!(out.status.success(), "produce failed");
    let produced: Value = serde_json::from_slice(&out.stdout).expect("produced line");
    let per_partition: Vec<u64> = produced["per_partition"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap())
        .collect();
    let published_at = t.elapsed();
    let distinct = |procs: &Procs| {
        procs
            .lines()
            .iter()
            .filter(|l| l.event() == "processed")
            .map(|l| l.str("payload"))
            .collect::<BTreeSet<_>>()
            .len()
    };
    common::wait_until_or(
        common::SETTLE,
        "every message handled",
        || distinct(&procs) == MESSAGES,
        || {
            format!(
                "{} of {MESSAGES} distinct payloads handled",
                distinct(&procs)
            )
        },
    )
    .await;
    let mut stopping = Vec::new();
    for i in procs.live() {
        stopping.push(procs.sigterm(i));
    }
    for mut child in stopping {
        let status = tokio::task::block_in_place(|| child.wait()).unwrap();
        assert!(status.success(), "a consumer exited with {status}");
    }

    // Analysis.
    let processed: Vec<Processed> = procs
        .lines()
        .iter()
        .filter(|l| l.event() == "processed")
        .map(|l| {
            let payload = l.str("payload");
            let k = payload.rsplit(':').next().unwrap().parse().unwrap();
            Processed {
                proc: l.proc,
                partition: l.str("partition"),
                payload,
                k,
                start: l.num("start_us"),
                end: l.num("end_us"),
            }
        })
        .collect();
    // Every message at least once.
    let seen: BTreeSet<&str> = processed.iter().map(|p| p.payload.as_str()).collect();
    for (i, n) in per_partition.iter().enumerate() {
        for k in 0..*n {
            assert!(
                seen.contains(format!("p-{i}:{k}").as_str()),
                "p-{i}:{k} never handled"
            );
        }
    }
    let mut by_partition: BTreeMap<&str, Vec<&Processed>> = BTreeMap::new();
    for p in &processed {
        by_partition.entry(&p.partition).or_default().push(p);
    }
    let mut duplicates = 0;
    let mut crash_gaps = Vec::new();
    let mut graceful_gaps = Vec::new();
    let mut overlaps = Vec::new();
    for (partition, list) in &mut by_partition {
        list.sort_by_key(|p| (p.start, p.end));
        // First handlings in payload order; duplicates after the crash only.
        let mut first: HashMap<&str, usize> = HashMap::new();
        let mut last_k = None;
        for p in list.iter() {
            if let Some(by) = first.get(p.payload.as_str()) {
                duplicates += 1;
                assert_eq!(
                    *by, victim,
                    "{partition}: {} handled twice, first by process {by} (not the killed one)",
                    p.payload
                );
                continue;
            }
            first.insert(&p.payload, p.proc);
            assert!(
                last_k.is_none_or(|k| p.k > k),
                "{partition}: {} first handled after p-?:{last_k:?}",
                p.payload
            );
            last_k = Some(p.k);
        }
        // Overlaps and handoff gaps.
        for pair in list.windows(2) {
            let (a, b) = (pair[0], pair[1]);
            if a.proc == b.proc {
                continue;
            }
            if b.start < a.end {
                overlaps.push(format!("{partition}: {a:?} and {b:?}"));
                continue;
            }
            let gap = b.start - a.end;
            if a.proc == victim {
                crash_gaps.push(gap);
            } else {
                graceful_gaps.push(gap);
            }
        }
    }
    crash_gaps.sort_unstable();
    graceful_gaps.sort_unstable();
    println!(
        "consume-procs: {MESSAGES} messages over {P} partitions at {RATE}/s (published after {} ms): {} handlings, {duplicates} duplicates (all after the SIGKILL), {} overlaps",
        ms(published_at),
        processed.len(),
        overlaps.len()
    );
    println!(
        "consume-procs: handoff gaps: graceful {} (median {} ms, p95 {} ms, max {} ms), crash {} (median {} ms, max {} ms); total {} ms",
        graceful_gaps.len(),
        percentile(&graceful_gaps, 0.5) / 1000,
        percentile(&graceful_gaps, 0.95) / 1000,
        graceful_gaps.last().copied().unwrap_or(0) / 1000,
        crash_gaps.len(),
        percentile(&crash_gaps, 0.5) / 1000,
        crash_gaps.last().copied().unwrap_or(0) / 1000,
        ms(t.elapsed())
    );
    assert!(
        overlaps.is_empty(),
        "handler intervals overlap:\n{}",
        overlaps.join("\n")
    );
    // The next owners start after the killed process's last acknowledgement:
    // what it handled and had not acknowledged yet (about one message per
    // partition at this rate; a few after a backlog) is handled again, not
    // the last second of its work (which starting after the periodic
    // progress record would give: ~13 per partition here).
    let victim_partitions = processed
        .iter()
        .filter(|p| p.proc == victim)
        .map(|p| p.partition.as_str())
        .collect::<BTreeSet<_>>()
        .len();
    assert!(
        duplicates <= 3 * victim_partitions,
        "{duplicates} duplicates over the killed process's {victim_partitions} partitions"
    );
}
