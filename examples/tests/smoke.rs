//! Runs every example once, quickly (in memory, no server), and checks its
//! `--help` and what it prints; scrapes the `metrics` example over HTTP and
//! checks that every metric of `parti::metrics::ALL` is there.
//!
//! The examples are the binaries `cargo test` builds next to this test
//! (`target/<profile>/examples/`); `cargo test -p parti-examples` builds them.

// Test code: unwrap, expect and panic are how it asserts.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::{BufRead, BufReader, Read, Write};
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// The examples written for operators and new users (the `worker` example
/// is covered by the multi-process tests of `parti`).
const EXAMPLES: &[&str] = &["basic", "custom_strategy", "dynamic_partitions", "metrics"];

/// Examples that need a server to do anything: only their `--help` is run.
const SERVER_ONLY: &[&str] = &["produce", "consume", "kafka_replacement"];

/// Longest an example may run in these tests.
const BOUND: Duration = Duration::from_secs(60);

fn example(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test binary path");
    // target/<profile>/deps/<this test> -> target/<profile>/examples/<name>
    let dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("target directory")
        .join("examples");
    let path = dir.join(format!("{name}{}", std::env::consts::EXE_SUFFIX));
    assert!(
        path.exists(),
        "{} is missing: build the examples first (`cargo test -p parti-examples` or \
         `cargo build -p parti-examples --examples`)",
        path.display()
    );
    path
}

/// Kills the child when dropped (a failed assertion must not leave it running).
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Runs an example to completion within [`BOUND`].
fn run(name: &str, args: &[&str]) -> Output {
    let mut child = Running(
        Command::new(example(name))
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn example"),
    );
    let mut stdout = child.0.stdout.take().expect("stdout");
    let mut stderr = child.0.stderr.take().expect("stderr");
    let out = std::thread::spawn(move || {
        let mut s = Vec::new();
        let _ = stdout.read_to_end(&mut s);
        s
    });
    let err = std::thread::spawn(move || {
        let mut s = Vec::new();
        let _ = stderr.read_to_end(&mut s);
        s
    });
    let deadline = Instant::now() + BOUND;
    let status = loop {
        if let Some(status) = child.0.try_wait().expect("wait") {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "{name} {args:?} still running after {BOUND:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    Output {
        status,
        stdout: out.join().unwrap_or_default(),
        stderr: err.join().unwrap_or_default(),
    }
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn succeeded(name: &str, args: &[&str]) -> String {
    let out = run(name, args);
    let stdout = text(&out.stdout);
    assert!(
        out.status.success(),
        "{name} {args:?} failed ({}):\nstdout:\n{stdout}\nstderr:\n{}",
        out.status,
        text(&out.stderr)
    );
    stdout
}

#[test]
fn every_example_answers_help() {
    for name in EXAMPLES.iter().chain(SERVER_ONLY) {
        let stdout = succeeded(name, &["--help"]);
        assert!(stdout.contains("Usage:"), "{name} --help:\n{stdout}");
        assert!(stdout.contains("--nats"), "{name} --help:\n{stdout}");
        let out = run(name, &["--no-such-flag"]);
        assert_eq!(
            out.status.code(),
            Some(2),
            "{name} accepted an unknown flag"
        );
    }
}

#[test]
fn basic_runs_in_memory() {
    let stdout = succeeded("basic", &["--run-for", "300ms", "--partitions", "4"]);
    assert!(
        stdout.contains("is stable and owns 4 partitions"),
        "{stdout}"
    );
    assert!(stdout.contains("own basic-p-0 (epoch "), "{stdout}");
    assert!(stdout.trim_end().ends_with("stopped"), "{stdout}");
}

#[test]
fn custom_strategy_passes_the_contract_and_runs() {
    let stdout = succeeded("custom_strategy", &["--cases", "4", "--partitions", "12"]);
    assert!(stdout.contains("passes the strategy contract"), "{stdout}");
    let owned: usize = stdout
        .lines()
        .filter_map(|l| l.split(" owns ").nth(1))
        .filter_map(|rest| rest.split_whitespace().next()?.parse::<usize>().ok())
        .sum();
    assert_eq!(owned, 12, "{stdout}");
    assert!(stdout.trim_end().ends_with("stopped"), "{stdout}");
}

#[test]
fn dynamic_partitions_follows_the_catalog() {
    let stdout = succeeded(
        "dynamic_partitions",
        &[
            "--change-every",
            "150ms",
            "--changes",
            "3",
            "--initial",
            "4",
        ],
    );
    // 4 tenants, +3, -1 (the third change retires the oldest).
    assert!(stdout.contains("catalog change 3: 6 tenants"), "{stdout}");
    assert!(stdout.contains("owns 6 of 6 tenants"), "{stdout}");
    assert!(stdout.contains("start tenant-t6"), "{stdout}");
    assert!(stdout.contains("stop tenant-t0"), "{stdout}");
}

fn scrape(addr: &str) -> std::io::Result<String> {
    let mut stream = std::net::TcpStream::connect(addr)?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    stream.write_all(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    Ok(response)
}

#[test]
fn metrics_example_serves_every_metric() {
    let mut child = Running(
        Command::new(example("metrics"))
            .args([
                "--listen",
                "127.0.0.1:0",
                "--join-after",
                "200ms",
                "--run-for",
                "60s",
            ])
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn metrics example"),
    );
    let mut lines = BufReader::new(child.0.stdout.take().expect("stdout")).lines();
    let first = lines.next().expect("a first line").expect("utf-8");
    let addr = first
        .strip_prefix("metrics on http://")
        .and_then(|rest| rest.strip_suffix("/metrics"))
        .unwrap_or_else(|| panic!("unexpected first line {first:?}"))
        .to_string();
    // Keep reading stdout so the example never blocks on a full pipe.
    std::thread::spawn(move || for _ in lines {});

    let mut wanted: Vec<String> = parti::metrics::ALL
        .iter()
        .filter(|m| !m.on_event)
        .map(|m| format!("\n{}{{", m.name))
        .collect();
    // The third worker's arrival makes a two-version handoff.
    wanted.push(format!("\n{}_bucket{{", parti::metrics::HANDOFF_DURATION));
    wanted.push("\n# HELP parti_worker_state ".into());
    wanted.push("member=\"m2\"".into());

    let deadline = Instant::now() + BOUND;
    let mut last = String::new();
    loop {
        if let Ok(body) = scrape(&addr) {
            assert!(body.starts_with("HTTP/1.1 200"), "{body}");
            last = body;
            if wanted.iter().all(|w| last.contains(w.as_str())) {
                break;
            }
        }
        let missing: Vec<&String> = wanted
            .iter()
            .filter(|w| !last.contains(w.as_str()))
            .collect();
        assert!(
            Instant::now() < deadline,
            "still missing after {BOUND:?}: {missing:?}\nlast scrape:\n{last}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(
        last.contains("parti_is_leader{group=\"metrics-demo\",member=\"m0\"} 1"),
        "{last}"
    );
    // No partition-level labels.
    assert!(!last.contains("partition=\""), "{last}");
}

/// The examples on a real server: `basic` and `metrics` with `--nats`.
#[test]
fn basic_and_metrics_run_on_nats() {
    let Some(server) = parti_testkit::nats_server::start_or_skip() else {
        return;
    };
    let url = server.client_url();
    let group = parti_testkit::nats_server::unique_group("basic");
    let stdout = succeeded(
        "basic",
        &[
            "--nats",
            &url,
            "--group",
            &group,
            "--test-timings",
            "--run-for",
            "200ms",
        ],
    );
    assert!(
        stdout.contains("is stable and owns 8 partitions"),
        "{stdout}"
    );

    let group = parti_testkit::nats_server::unique_group("metrics");
    let mut child = Running(
        Command::new(example("metrics"))
            .args(["--nats", &url, "--group", &group, "--test-timings"])
            .args(["--listen", "127.0.0.1:0", "--run-for", "60s"])
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn metrics example"),
    );
    let mut lines = BufReader::new(child.0.stdout.take().expect("stdout")).lines();
    let first = lines.next().expect("a first line").expect("utf-8");
    let addr = first
        .strip_prefix("metrics on http://")
        .and_then(|rest| rest.strip_suffix("/metrics"))
        .unwrap_or_else(|| panic!("unexpected first line {first:?}"))
        .to_string();
    let second = lines.next().expect("a second line").expect("utf-8");
    assert_eq!(second, "worker stable");
    std::thread::spawn(move || for _ in lines {});
    let wanted = [
        format!("parti_assigned_partitions{{group=\"{group}\"}} 32"),
        format!("parti_is_leader{{group=\"{group}\"}} 1"),
        format!("parti_worker_state{{group=\"{group}\",state=\"Stable\"}} 1"),
    ];
    // The gauges follow the driver, a moment after `start()` returned.
    let deadline = Instant::now() + BOUND;
    loop {
        let body = scrape(&addr).expect("scrape");
        if wanted.iter().all(|w| body.contains(w.as_str())) {
            break;
        }
        assert!(Instant::now() < deadline, "{wanted:?} missing:\n{body}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// `kafka_replacement` on a real server: it produces orders and a poison
/// message, consumes every one of them, and dead-letters the poison one.
#[test]
fn kafka_replacement_consumes_every_order_on_nats() {
    let Some(server) = parti_testkit::nats_server::start_or_skip() else {
        return;
    };
    let url = server.client_url();
    let group = parti_testkit::nats_server::unique_group("kafka");
    let stdout = succeeded(
        "kafka_replacement",
        &[
            "--nats",
            &url,
            "--group",
            &group,
            "--stream",
            &group.to_uppercase().replace('-', "_"),
            "--subject-prefix",
            &group,
            "--partitions",
            "6",
            "--produce",
            "120",
            "--poison",
            "--test-timings",
            "--stop-after",
            "121",
        ],
    );
    assert!(
        stdout.contains("produced 120 orders and one poison message"),
        "{stdout}"
    );
    assert!(stdout.contains("consumes 6 of 6 partitions"), "{stdout}");
    assert!(
        stdout.contains("dead letter: p-0 seq 121 after 3 attempts"),
        "{stdout}"
    );
    assert!(
        stdout.contains("handled 120 orders and dead-lettered 1 in"),
        "{stdout}"
    );
}
