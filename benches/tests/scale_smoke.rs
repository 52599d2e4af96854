//! Smoke test of the scale report: three workers on the in-memory backend
//! with the test timings, one JSON line whose figures are sane.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::process::Command;

#[test]
fn three_workers_in_memory_give_a_sane_line() {
    let out = Command::new(env!("CARGO_BIN_EXE_scale-report"))
        .args([
            "--json",
            "--backends",
            "memory",
            "--sizes",
            "3",
            "--test-timings",
            "--cold-start-window",
            "1",
            "--planned-scale-window",
            "0.5",
            "--warmup",
            "0.5",
            "--steady",
            "1",
        ])
        .output()
        .expect("run scale-report");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 1, "{stdout}\n{stderr}");
    let v: serde_json::Value = serde_json::from_str(lines[0]).unwrap();
    let num = |k: &str| {
        v[k].as_f64()
            .unwrap_or_else(|| panic!("{k} missing in {v}\n{stderr}"))
    };
    assert!(v["error"].is_null(), "{v}\n{stderr}");
    assert_eq!(v["backend"], "memory");
    assert_eq!(num("workers"), 3.0);
    assert_eq!(num("partitions"), 30.0);
    assert_eq!(v["steady_complete"], true, "{v}");
    // Converged within the 1 s window plus a few seconds.
    assert!((0.0..5.0).contains(&num("converge_s")), "{v}");
    // Each worker prefers its own ID (a StatefulSet ordinal): one claim each.
    assert_eq!(num("cold_start_claims"), 3.0, "{v}");
    // Three workers heartbeat every 200 ms: some writes, some watch events.
    assert!(num("kv_writes_per_s") > 1.0, "{v}");
    assert!(num("watch_events_per_s") > 1.0, "{v}");
    assert!(
        num("process_cpu_pct") >= 0.0 && num("process_cpu_pct") < 400.0,
        "{v}"
    );
    // The crash and the stop moved exactly the victim's partitions (sticky).
    assert!(num("crash_optimal") > 0.0, "{v}");
    assert!(num("crash_moved") >= num("crash_optimal"), "{v}");
    assert!(num("stop_moved") >= num("stop_optimal"), "{v}");
    assert!(num("join_moved") > 0.0, "{v}");
    for k in [
        "crash_reowned_s",
        "stop_reowned_s",
        "join_s",
        "failover_s",
        "failover_complete_s",
    ] {
        assert!((0.0..30.0).contains(&num(k)), "{k} in {v}");
    }
    // The counting allocator is installed: a heap figure per worker.
    assert!(num("heap_per_worker_kib").is_finite(), "{v}");
}
