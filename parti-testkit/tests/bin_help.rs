//! Smoke test: `parti-sim --help` prints its usage and exits with status 0.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::process::Command;

#[test]
fn parti_sim_has_help() {
    let out = Command::new(env!("CARGO_BIN_EXE_parti-sim"))
        .arg("--help")
        .output()
        .expect("run parti-sim");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(all.contains("usage: parti-sim"), "{all}");
}
