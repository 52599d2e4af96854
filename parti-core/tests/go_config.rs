//! A configuration file written for the Go library loads: its keys are
//! mapped, its settings without meaning here are named in warnings.

use parti_core::config::{Config, ConfigError, ConfigWarning};
use std::time::Duration;

const GO_PRODUCTION: &str = include_str!("fixtures/go_production.yaml");

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

fn ignored_keys(warnings: &[ConfigWarning]) -> Vec<&str> {
    warnings
        .iter()
        .filter_map(|w| match w {
            ConfigWarning::IgnoredGoSetting { key, .. } => Some(key.as_str()),
            _ => None,
        })
        .collect()
}

#[test]
fn the_go_production_config_loads_with_its_values_mapped() {
    let (c, warnings) = Config::from_yaml_with_warnings(GO_PRODUCTION).unwrap();
    assert_eq!(c.worker_id_prefix, "ingest");
    assert_eq!((c.worker_id_min, c.worker_id_max), (0, 199));
    assert_eq!(c.worker_id_ttl, secs(45));
    assert_eq!(c.heartbeat_interval, secs(2));
    assert_eq!(c.heartbeat_ttl, secs(6));
    assert_eq!(c.cold_start_window, secs(40));
    assert_eq!(c.planned_scale_window, secs(12));
    assert_eq!(c.emergency_grace, Some(Duration::from_millis(2500)));
    assert_eq!(c.restart_detection_ratio, 0.6);
    assert_eq!(c.operation_timeout, secs(8));
    assert_eq!(c.election_ttl, secs(6));
    // Go's startupTimeout plus its fixed 30 s wait for the first assignment.
    assert_eq!(c.startup_timeout, secs(90));
    assert_eq!(c.shutdown_timeout, secs(20));
    assert_eq!(c.imbalance_threshold, 0.2);
    assert_eq!(c.rebalance_cooldown, secs(10));
    assert_eq!(c.alerts.info, secs(45));
    assert_eq!(c.alerts.warn, secs(180));
    assert_eq!(c.alerts.error, secs(360));
    assert_eq!(c.alerts.critical, secs(900));
    assert_eq!(c.alerts.interval, secs(120));
    assert_eq!(c.degraded.enter_after, secs(15));
    assert_eq!(c.degraded.exit_after, Duration::from_millis(7500));
    assert_eq!(c.degraded.recovery_grace, secs(20));
    // What Go cannot say keeps Parti's defaults.
    let d = Config::default();
    assert_eq!(c.group, d.group);
    assert_eq!(c.buckets, d.buckets);
    assert_eq!(c.lease_safety_margin, d.lease_safety_margin);

    assert_eq!(
        ignored_keys(&warnings),
        [
            "kvBuckets.assignmentBucket",
            "kvBuckets.assignmentTtl",
            "kvBuckets.electionBucket",
            "kvBuckets.heartbeatBucket",
            "kvBuckets.stableIdBucket",
            "degradedBehavior.kvErrorThreshold",
            "degradedBehavior.kvErrorWindow",
        ]
    );
    assert!(
        warnings.iter().any(|w| matches!(w,
            ConfigWarning::AdjustedGoSetting { key, .. } if key == "startupTimeout")),
        "{warnings:?}"
    );
    for w in &warnings {
        let text = w.to_string();
        assert!(text.starts_with("Go setting `"), "{text}");
    }
}

#[test]
fn newer_go_keys_and_go_only_sections_are_understood() {
    let yaml = "
rebalanceCooldown: 4s
plannedScaleWindow: 8s
emergencyGracePeriod: 0s
enableTwoPhaseHandoff: true
handoff:
  sweepInterval: 30s
  maxRetries: 3
";
    let (c, warnings) = Config::from_yaml_with_warnings(yaml).unwrap();
    assert_eq!(c.rebalance_cooldown, secs(4));
    assert_eq!(c.planned_scale_window, secs(8));
    assert_eq!(c.emergency_grace, None, "0 means the default, as in Go");
    assert_eq!(
        ignored_keys(&warnings),
        [
            "enableTwoPhaseHandoff",
            "handoff.maxRetries",
            "handoff.sweepInterval"
        ]
    );
}

#[test]
fn go_keys_may_be_mixed_with_parti_keys_and_parti_keys_win() {
    let yaml = "
group: ingest
electionTimeout: 3s
election_ttl: 4s
buckets:
  replicas: 3
";
    let (c, warnings) = Config::from_yaml_with_warnings(yaml).unwrap();
    assert_eq!(c.group, "ingest");
    assert_eq!(c.election_ttl, secs(4));
    assert_eq!(c.buckets.replicas, 3);
    assert!(warnings.is_empty(), "{warnings:?}");
}

#[test]
fn go_keys_load_from_toml_too() {
    let toml = r#"
workerIdMax = 31
heartbeatInterval = "1s"
heartbeatTtl = "3s"
[degradedAlert]
infoThreshold = "10s"
"#;
    let (c, warnings) = Config::from_toml_with_warnings(toml).unwrap();
    assert_eq!(c.worker_id_max, 31);
    assert_eq!(c.heartbeat_ttl, secs(3));
    assert_eq!(c.alerts.info, secs(10));
    assert!(warnings.is_empty());
    // The plain loader gives the same configuration.
    assert_eq!(Config::from_toml(toml).unwrap(), c);
}

#[test]
fn mistakes_are_still_refused_by_name() {
    // A misspelt Go key is not guessed at.
    let e = Config::from_yaml("workerIdTTL: 30s\nheartbeatTtl: 6s\n").unwrap_err();
    assert!(e.to_string().contains("workerIdTTL"), "{e}");
    // A bad Go duration names the key.
    let e = Config::from_yaml("heartbeatTtl: 6 seconds\n").unwrap_err();
    assert!(
        matches!(&e, ConfigError::Parse(m) if m.contains("heartbeatTtl")),
        "{e}"
    );
    // A Go value that breaks a rule is refused with the Parti field named.
    let e = Config::from_yaml("heartbeatInterval: 2s\nheartbeatTtl: 3s\n").unwrap_err();
    assert!(
        matches!(
            e,
            ConfigError::Invalid {
                field: "heartbeat_ttl",
                ..
            }
        ),
        "{e}"
    );
    // A Parti file with a typo keeps the first reading's error.
    let e = Config::from_toml("heartbeat_ttll = \"6s\"\n").unwrap_err();
    assert!(e.to_string().contains("heartbeat_ttll"), "{e}");
}
