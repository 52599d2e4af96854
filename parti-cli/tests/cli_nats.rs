//! The `parti` binary against a real nats-server: `status` never creates a
//! bucket and reports a group that runs with test timings correctly, secrets
//! never reach the output, `group reset` deletes the buckets, and every
//! command's `--help` works.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use futures_util::TryStreamExt;
use parti::nats::async_nats;
use parti::{Config, Manager, Partition, StaticSource};
use parti_testkit::nats_server::{NatsServer, start_or_skip, unique_group};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

/// Runs the `parti` binary with `args`, without any NATS_* variable of the
/// caller's environment, plus `env`.
fn parti(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_parti"));
    cmd.args(args);
    for var in [
        "NATS_URL",
        "NATS_CREDS",
        "NATS_USER",
        "NATS_PASSWORD",
        "NATS_TOKEN",
        "NATS_CA",
        "NATS_CERT",
        "NATS_KEY",
        "NATS_CONTEXT",
    ] {
        cmd.env_remove(var);
    }
    cmd.env("NO_COLOR", "1");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("run the parti binary")
}

async fn parti_async(args: Vec<String>, env: Vec<(String, String)>) -> Output {
    tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        parti(&args, &env)
    })
    .await
    .expect("the parti run panicked")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

async fn stream_names(url: &str) -> Vec<String> {
    let client = async_nats::connect(url).await.expect("connect");
    let js = async_nats::jetstream::new(client);
    let mut names: Vec<String> = js.stream_names().try_collect().await.expect("list streams");
    names.sort();
    names
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_of_an_unknown_group_fails_and_creates_nothing() {
    let Some(server) = start_or_skip() else {
        return;
    };
    let url = server.client_url();
    let before = stream_names(&url).await;
    let out = parti_async(
        ["status", "--nats", &url, "--group", "nosuch"]
            .map(String::from)
            .to_vec(),
        vec![],
    )
    .await;
    let stderr = text(&out.stderr);
    assert!(
        !out.status.success(),
        "status of an unknown group succeeded"
    );
    assert!(
        stderr.contains("group \"nosuch\" not found") && stderr.contains("parti_nosuch_members"),
        "{stderr}"
    );
    // The old alias too.
    let out = parti_async(
        ["inspect", "--nats", &url, "--group", "nosuch"]
            .map(String::from)
            .to_vec(),
        vec![],
    )
    .await;
    assert!(!out.status.success());
    assert_eq!(stream_names(&url).await, before, "status created a stream");
    assert!(before.is_empty(), "{before:?}");
}

async fn start_worker(url: &str, group: &str) -> Manager {
    let client = async_nats::connect(url).await.expect("connect");
    let mut config = Config::for_tests();
    config.group = group.to_string();
    let partitions: Vec<Partition> = (0..12)
        .map(|i| Partition::new([format!("p-{i}")]))
        .collect();
    Manager::builder_nats(client)
        .config(config)
        .partitions(StaticSource::new(partitions))
        .start()
        .await
        .expect("start a manager")
}

/// Runs `status --json` until `ok` holds for its output (or the deadline).
async fn status_until(
    url: &str,
    group: &str,
    ok: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let out = parti_async(
            ["status", "--nats", url, "--group", group, "--json"]
                .map(String::from)
                .to_vec(),
            vec![],
        )
        .await;
        assert!(out.status.success(), "status failed: {}", text(&out.stderr));
        let view: serde_json::Value =
            serde_json::from_slice(&out.stdout).expect("status --json prints JSON");
        if ok(&view) {
            return view;
        }
        assert!(
            Instant::now() < deadline,
            "status never showed the expected view; last:\n{view:#}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_reports_a_group_running_with_test_timings() {
    let Some(server) = start_or_skip() else {
        return;
    };
    let url = server.client_url();
    let group = unique_group("status");
    let a = start_worker(&url, &group).await;
    let b = start_worker(&url, &group).await;
    let streams = stream_names(&url).await;
    let view = status_until(&url, &group, |v| v["verdict"] == "healthy").await;
    let workers = view["workers"].as_array().expect("workers");
    assert_eq!(workers.len(), 2, "{view:#}");
    let ids: Vec<String> = [&a, &b]
        .iter()
        .map(|m| m.worker_id().map(|w| w.to_string()).unwrap_or_default())
        .collect();
    for w in workers {
        assert!(
            ids.contains(&w["id"].as_str().unwrap_or("").to_string()),
            "{view:#}"
        );
        assert_eq!(w["state"], "active");
        assert_eq!(w["applied"], w["committed"], "{view:#}");
    }
    let owned: u64 = workers
        .iter()
        .map(|w| w["partitions"].as_u64().unwrap_or(0))
        .sum();
    assert_eq!(owned, 12, "{view:#}");
    let leader = if a.is_leader() { &a } else { &b };
    let leader_id = leader
        .worker_id()
        .map(|w| w.to_string())
        .unwrap_or_default();
    assert_eq!(view["leader"]["worker"], leader_id.as_str(), "{view:#}");
    assert_eq!(view["committed"]["assigned"], 12);
    // The bucket TTLs are the test timings (2 s, 1 s): no complaint about them.
    assert_eq!(view["buckets"]["member_ttl_ms"], 2000);
    assert_eq!(view["buckets"]["leader_ttl_ms"], 1000);
    assert!(view["degraded"].as_array().is_some_and(|d| d.is_empty()));

    // The text view says the same.
    let out = parti_async(
        ["status", "--nats", &url, "--group", &group]
            .map(String::from)
            .to_vec(),
        vec![],
    )
    .await;
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(stdout.contains(&format!("leader: {leader_id}")), "{stdout}");
    assert!(stdout.contains(&format!("{leader_id}*")), "{stdout}");
    assert!(stdout.contains("of 12 partitions assigned"), "{stdout}");
    assert_eq!(
        stream_names(&url).await,
        streams,
        "status changed the streams"
    );

    // A worker that stops gracefully leaves the view.
    b.stop().await.expect("stop");
    let gone = ids[1].clone();
    let view = status_until(&url, &group, |v| {
        v["workers"]
            .as_array()
            .is_some_and(|w| w.len() == 1 && v["verdict"] == "healthy")
    })
    .await;
    assert_ne!(view["workers"][0]["id"], gone.as_str());
    a.stop().await.expect("stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn group_reset_needs_yes_and_deletes_the_buckets() {
    let Some(server) = start_or_skip() else {
        return;
    };
    let url = server.client_url();
    let group = unique_group("reset");
    let m = start_worker(&url, &group).await;
    m.stop().await.expect("stop");
    let expected: Vec<String> = ["assignments", "leader", "members"]
        .iter()
        .map(|b| format!("KV_parti_{group}_{b}"))
        .collect();
    assert_eq!(stream_names(&url).await, expected);

    let out = parti_async(
        ["group", "reset", "--nats", &url, "--group", &group]
            .map(String::from)
            .to_vec(),
        vec![],
    )
    .await;
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("without --yes"),
        "{}",
        text(&out.stderr)
    );
    assert_eq!(stream_names(&url).await, expected);

    let out = parti_async(
        ["group", "reset", "--nats", &url, "--group", &group, "--yes"]
            .map(String::from)
            .to_vec(),
        vec![],
    )
    .await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("deleted"),
        "{}",
        text(&out.stdout)
    );
    assert!(stream_names(&url).await.is_empty());

    // Now the group is gone: status and a second reset say so.
    let out = parti_async(
        ["status", "--nats", &url, "--group", &group]
            .map(String::from)
            .to_vec(),
        vec![],
    )
    .await;
    assert!(!out.status.success());
    assert!(text(&out.stderr).contains("not found"));
}

const SECRET: &str = "s3cr3t-Pw_42";

fn auth_server() -> Option<NatsServer> {
    parti_testkit::nats_server::require_nats_server()?;
    let config = format!("authorization {{ user: op, password: \"{SECRET}\" }}\n");
    Some(NatsServer::start_with_config(&config).expect("start nats-server with authorization"))
}

fn assert_no_secret(out: &Output, what: &str) {
    let all = format!("{}{}", text(&out.stdout), text(&out.stderr));
    assert!(
        !all.contains(SECRET),
        "{what}: the password was printed:\n{all}"
    );
}

#[test]
fn passwords_never_reach_the_output() {
    let Some(server) = auth_server() else { return };
    let port = server.port();
    let good = format!("nats://op:{SECRET}@127.0.0.1:{port}");
    // Authenticated through the URL: the group does not exist; the error names
    // the server without the password.
    let out = parti(&["status", "--nats", &good, "--group", "nosuch"], &[]);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("nats://op:***@127.0.0.1"),
        "{}",
        text(&out.stderr)
    );
    assert_no_secret(&out, "status, URL credentials");

    // Through flags and through the environment.
    let plain = format!("nats://127.0.0.1:{port}");
    let out = parti(
        &[
            "status",
            "--nats",
            &plain,
            "--group",
            "nosuch",
            "--user",
            "op",
            "--password",
            SECRET,
        ],
        &[],
    );
    assert!(
        text(&out.stderr).contains("not found"),
        "{}",
        text(&out.stderr)
    );
    assert_no_secret(&out, "status, --password");
    let out = parti(
        &["status", "--nats", &plain, "--group", "nosuch"],
        &[("NATS_USER", "op"), ("NATS_PASSWORD", SECRET)],
    );
    assert!(
        text(&out.stderr).contains("not found"),
        "{}",
        text(&out.stderr)
    );
    assert_no_secret(&out, "status, NATS_PASSWORD");

    // Refused credentials and an unreachable server: connection errors.
    let wrong = format!("nats://op:{SECRET}x@127.0.0.1:{port}");
    let out = parti(&["status", "--nats", &wrong, "--group", "g"], &[]);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("cannot connect"),
        "{}",
        text(&out.stderr)
    );
    assert_no_secret(&out, "status, refused password");
    let out = parti(
        &[
            "watch",
            "--nats",
            &format!("nats://op:{SECRET}@127.0.0.1:1"),
            "--group",
            "g",
        ],
        &[],
    );
    assert!(!out.status.success());
    assert_no_secret(&out, "watch, unreachable server");
    let out = parti(
        &[
            "status",
            "--nats",
            "nats://127.0.0.1:1",
            "--group",
            "g",
            "--token",
            SECRET,
        ],
        &[],
    );
    assert!(!out.status.success());
    assert_no_secret(&out, "status, token");
    // --help shows which variables are read, never their values.
    let out = parti(
        &["status", "--help"],
        &[("NATS_PASSWORD", SECRET), ("NATS_TOKEN", SECRET)],
    );
    assert!(out.status.success());
    assert!(text(&out.stdout).contains("NATS_PASSWORD"));
    assert_no_secret(&out, "status --help");
}

#[test]
fn a_nats_context_file_supplies_the_connection() {
    let Some(server) = auth_server() else { return };
    let dir = tempfile::tempdir().expect("temp dir");
    let ctx_dir = dir.path().join("nats").join("context");
    std::fs::create_dir_all(&ctx_dir).expect("mkdir");
    let context = serde_json::json!({
        "description": "test",
        "url": server.client_url(),
        "user": "op",
        "password": SECRET,
        "token": "", "creds": "", "nkey": "", "cert": "", "key": "", "ca": "",
    });
    std::fs::write(ctx_dir.join("local.json"), context.to_string()).expect("write context");
    let xdg = dir.path().to_string_lossy().into_owned();
    let out = parti(
        &["status", "--context", "local", "--group", "nosuch"],
        &[("XDG_CONFIG_HOME", &xdg)],
    );
    // Connected (so the credentials were used): the group is what is missing.
    assert!(
        text(&out.stderr).contains("not found"),
        "{}",
        text(&out.stderr)
    );
    assert_no_secret(&out, "status --context");
    let out = parti(
        &["status", "--context", "absent", "--group", "g"],
        &[("XDG_CONFIG_HOME", &xdg)],
    );
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("NATS context `absent`"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn every_command_has_help() {
    for args in [
        vec!["--help"],
        vec!["demo", "--help"],
        vec!["status", "--help"],
        vec!["inspect", "--help"],
        vec!["watch", "--help"],
        vec!["config", "--help"],
        vec!["config", "check", "--help"],
        vec!["config", "defaults", "--help"],
        vec!["group", "--help"],
        vec!["group", "reset", "--help"],
    ] {
        let out = parti(&args, &[]);
        assert!(
            out.status.success(),
            "parti {args:?}: {}",
            text(&out.stderr)
        );
        assert!(text(&out.stdout).contains("Usage:"), "parti {args:?}");
    }
    let out = parti(&["status", "--help"], &[]);
    for flag in [
        "--nats",
        "--creds",
        "--user",
        "--password",
        "--token",
        "--tls-ca",
        "--tls-cert",
        "--tls-key",
        "--context",
        "--group",
        "--json",
    ] {
        assert!(
            text(&out.stdout).contains(flag),
            "{flag} missing in status --help"
        );
    }
}

#[test]
fn config_commands_validate_and_print() {
    let out = parti(&["config", "defaults"], &[]);
    assert!(out.status.success());
    assert!(
        text(&out.stdout).contains("heartbeat_interval = \"2s\""),
        "{}",
        text(&out.stdout)
    );
    let out = parti(&["config", "defaults", "--yaml"], &[]);
    assert!(
        text(&out.stdout).contains("heartbeat_interval: 2s"),
        "{}",
        text(&out.stdout)
    );
    let dir = tempfile::tempdir().expect("temp dir");
    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, "heartbeat_interval = \"5s\"\n").expect("write");
    let out = parti(&["config", "check", &bad.to_string_lossy()], &[]);
    assert!(!out.status.success());
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("bad.toml") && stderr.contains("heartbeat"),
        "{stderr}"
    );
    let good = dir.path().join("good.yaml");
    std::fs::write(&good, "group: orders\nelection_ttl: 3s\n").expect("write");
    let out = parti(&["config", "check", &good.to_string_lossy()], &[]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(stdout.contains("group = \"orders\"") && stdout.contains("election_ttl = \"3s\""));
    assert!(
        stdout.contains("worker_id_ttl = \"30s\""),
        "defaults filled in: {stdout}"
    );
    // A file written for the Go library loads; its settings without meaning
    // here are named in warnings.
    let go = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../parti-core/tests/fixtures/go_production.yaml"
    );
    let out = parti(&["config", "check", go], &[]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("warning:"),
        "{}",
        text(&out.stderr)
    );
    assert!(text(&out.stdout).contains("worker_id_prefix = \"ingest\""));
}

/// Lines a child process printed so far, collected by a reader thread.
fn collect_lines(
    stdout: std::process::ChildStdout,
) -> std::sync::Arc<std::sync::Mutex<Vec<String>>> {
    use std::io::BufRead;
    let lines = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let sink = lines.clone();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            sink.lock().unwrap().push(line);
        }
    });
    lines
}

async fn wait_for_line(lines: &std::sync::Mutex<Vec<String>>, needle: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !lines.lock().unwrap().iter().any(|l| l.contains(needle)) {
        assert!(
            Instant::now() < deadline,
            "watch never printed {needle:?}; it printed:\n{}",
            lines.lock().unwrap().join("\n")
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Kills the child if the test fails before it ends.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if matches!(self.0.try_wait(), Ok(None)) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

#[cfg(unix)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_highlights_joins_and_leaves_and_stops_on_ctrl_c() {
    let Some(server) = start_or_skip() else {
        return;
    };
    let url = server.client_url();
    let group = unique_group("watch");
    let first = start_worker(&url, &group).await;
    let first_id = first.worker_id().map(|w| w.to_string()).unwrap_or_default();
    let child = Command::new(env!("CARGO_BIN_EXE_parti"))
        .args([
            "watch",
            "--nats",
            &url,
            "--group",
            &group,
            "--interval",
            "100ms",
        ])
        .env("NO_COLOR", "1")
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("spawn parti watch");
    let mut child = KillOnDrop(child);
    let lines = collect_lines(child.0.stdout.take().expect("stdout"));
    wait_for_line(&lines, &format!("{first_id}*")).await;
    let second = start_worker(&url, &group).await;
    let second_id = second
        .worker_id()
        .map(|w| w.to_string())
        .unwrap_or_default();
    wait_for_line(&lines, &format!(">> {second_id} joined")).await;
    wait_for_line(&lines, ">> rebalance").await;
    second.leave().await.expect("leave");
    wait_for_line(&lines, &format!(">> {second_id} left")).await;
    // Ctrl-C ends it cleanly.
    let pid = child.0.id().to_string();
    let sent = Command::new("kill")
        .args(["-INT", &pid])
        .status()
        .expect("kill");
    assert!(sent.success());
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(status) = child.0.try_wait().expect("wait") {
            break status;
        }
        assert!(Instant::now() < deadline, "watch did not stop on SIGINT");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(status.success(), "{status:?}");
    first.stop().await.expect("stop");
}
