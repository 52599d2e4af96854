//! Smoke test: the report binary answers `--help` (status 0, usage on
//! stdout) and refuses unknown flags with status 2.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::process::Command;

#[test]
fn strategy_report_has_help() {
    let out = Command::new(env!("CARGO_BIN_EXE_strategy-report"))
        .arg("--help")
        .output()
        .expect("run strategy-report");
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("usage: strategy-report"));
    let out = Command::new(env!("CARGO_BIN_EXE_strategy-report"))
        .arg("--no-such-flag")
        .output()
        .expect("run strategy-report");
    assert_eq!(out.status.code(), Some(2));
}
