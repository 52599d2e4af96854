//! The `worker` example's command line: `--help` works and lists the shared
//! connection options, bad flags are refused with a usage error, and a
//! password never reaches its output, even on a connection error.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::PathBuf;
use std::process::{Command, Output};

/// The example's binary: `cargo test` builds the examples of a package next
/// to its test binaries (`target/<profile>/examples/`).
fn worker_bin() -> PathBuf {
    let exe = std::env::current_exe().expect("current exe");
    let profile_dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("target/<profile>/deps");
    let bin = profile_dir
        .join("examples")
        .join(format!("worker{}", std::env::consts::EXE_SUFFIX));
    assert!(
        bin.is_file(),
        "{} missing: run `cargo test -p parti-examples`",
        bin.display()
    );
    bin
}

fn worker(args: &[&str]) -> Output {
    let mut cmd = Command::new(worker_bin());
    cmd.args(args);
    for var in [
        "NATS_URL",
        "NATS_USER",
        "NATS_PASSWORD",
        "NATS_TOKEN",
        "NATS_CONTEXT",
    ] {
        cmd.env_remove(var);
    }
    cmd.output().expect("run the worker example")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn help_lists_every_option() {
    let out = worker(&["--help"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let help = text(&out.stdout);
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
        "--partitions",
        "--config",
        "--test-timings",
        "--leave-on-signal",
    ] {
        assert!(help.contains(flag), "{flag} missing in\n{help}");
    }
    let out = worker(&["--no-such-flag"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("--no-such-flag"));
}

#[test]
fn a_connection_error_does_not_print_the_password() {
    // Nothing listens on port 1 of the loopback interface.
    let secret = "w0rker-Secret";
    let url = format!("nats://op:{secret}@127.0.0.1:1");
    let out = worker(&["--nats", &url, "--group", "g", "--test-timings"]);
    assert!(!out.status.success());
    let all = format!("{}{}", text(&out.stdout), text(&out.stderr));
    assert!(all.contains("nats://op:***@127.0.0.1:1"), "{all}");
    assert!(!all.contains(secret), "{all}");
}
