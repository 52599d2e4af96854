//! Arbitrary values for every config field, fed through the TOML and YAML
//! loaders: never a panic; either a config that validates, or a typed
//! [`ConfigError`] naming the field.

// Test code: unwrap, expect and panic are how it asserts.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use parti_core::Config;
use parti_core::config::ConfigError;
use proptest::prelude::*;

/// Every field as written in TOML/YAML (`section.field` for nested ones).
const FIELDS: &[&str] = &[
    "group",
    "worker_id_prefix",
    "worker_id_min",
    "worker_id_max",
    "preferred_worker_id",
    "worker_capacity",
    "worker_id_ttl",
    "heartbeat_interval",
    "heartbeat_ttl",
    "lease_safety_margin",
    "max_clock_drift",
    "election_ttl",
    "cold_start_window",
    "planned_scale_window",
    "emergency_grace",
    "restart_detection_ratio",
    "rebalance_cooldown",
    "imbalance_threshold",
    "startup_timeout",
    "operation_timeout",
    "shutdown_timeout",
    "degraded.policy",
    "degraded.enter_after",
    "degraded.exit_after",
    "degraded.recovery_grace",
    "alerts.info",
    "alerts.warn",
    "alerts.error",
    "alerts.critical",
    "alerts.interval",
    "buckets.replicas",
    "buckets.storage",
    "buckets.members",
    "buckets.leader",
    "buckets.assignments",
];

const DURATION_FIELDS: &[&str] = &[
    "worker_id_ttl",
    "heartbeat_interval",
    "heartbeat_ttl",
    "lease_safety_margin",
    "election_ttl",
    "cold_start_window",
    "planned_scale_window",
    "emergency_grace",
    "rebalance_cooldown",
    "startup_timeout",
    "operation_timeout",
    "shutdown_timeout",
    "degraded.enter_after",
    "degraded.exit_after",
    "degraded.recovery_grace",
    "alerts.info",
    "alerts.warn",
    "alerts.error",
    "alerts.critical",
    "alerts.interval",
];

/// A scalar value of any TOML/YAML type, biased towards the troublesome.
#[derive(Clone, Debug)]
enum Scalar {
    Str(String),
    Int(i64),
    Float(f64),
    Bool(bool),
}

fn humantime_string() -> impl Strategy<Value = String> {
    let unit = prop::sample::select(vec![
        "ns", "us", "ms", "s", "sec", "m", "min", "h", "d", "w", "M", "y", "",
    ]);
    let number = prop_oneof![
        0u64..10_000,
        any::<u64>(),
        Just(u64::MAX),
        Just(10_000_000_000_000_000_000),
        Just(18_446_744_073_709_551),
    ];
    (
        number,
        unit,
        prop::option::of((0u64..100_000, "(ms|s|h|d)")),
    )
        .prop_map(|(n, u, extra)| match extra {
            Some((m, u2)) => format!("{n}{u} {m}{u2}"),
            None => format!("{n}{u}"),
        })
}

fn scalar() -> impl Strategy<Value = Scalar> {
    prop_oneof![
        3 => humantime_string().prop_map(Scalar::Str),
        1 => "\\PC{0,12}".prop_map(Scalar::Str),
        1 => "[a-z_-]{0,80}".prop_map(Scalar::Str),
        1 => prop::sample::select(vec!["keep_processing", "stop_when_lease_expires", "file", "memory", "1s", "0s", ""])
            .prop_map(|s| Scalar::Str(s.to_string())),
        2 => prop_oneof![any::<i64>(), -2i64..200, Just(i64::from(u32::MAX)), Just(4_000_000_000)]
            .prop_map(Scalar::Int),
        1 => prop_oneof![any::<f64>(), -1.0f64..2.0, Just(f64::NAN), Just(f64::INFINITY), Just(f64::NEG_INFINITY)]
            .prop_map(Scalar::Float),
        1 => any::<bool>().prop_map(Scalar::Bool),
    ]
}

fn to_toml(v: &Scalar) -> toml::Value {
    match v {
        Scalar::Str(s) => toml::Value::String(s.clone()),
        Scalar::Int(i) => toml::Value::Integer(*i),
        Scalar::Float(f) => toml::Value::Float(*f),
        Scalar::Bool(b) => toml::Value::Boolean(*b),
    }
}

fn to_yaml(v: &Scalar) -> serde_norway::Value {
    match v {
        Scalar::Str(s) => serde_norway::Value::String(s.clone()),
        Scalar::Int(i) => serde_norway::Value::Number((*i).into()),
        Scalar::Float(f) => serde_norway::Value::Number((*f).into()),
        Scalar::Bool(b) => serde_norway::Value::Bool(*b),
    }
}

/// A document setting some fields (by index into [`FIELDS`]) to some values.
fn document() -> impl Strategy<Value = Vec<(usize, Scalar)>> {
    prop::collection::vec((0..FIELDS.len(), scalar()), 0..8)
}

fn toml_text(fields: &[(usize, Scalar)]) -> String {
    let mut root = toml::Table::new();
    for (i, v) in fields {
        let path = FIELDS[*i];
        match path.split_once('.') {
            Some((section, field)) => {
                let entry = root
                    .entry(section.to_string())
                    .or_insert_with(|| toml::Value::Table(toml::Table::new()));
                if let toml::Value::Table(t) = entry {
                    t.insert(field.to_string(), to_toml(v));
                }
            }
            None => {
                root.insert(path.to_string(), to_toml(v));
            }
        }
    }
    toml::to_string(&root).unwrap()
}

fn yaml_text(fields: &[(usize, Scalar)]) -> String {
    let mut root = serde_norway::Mapping::new();
    for (i, v) in fields {
        let path = FIELDS[*i];
        match path.split_once('.') {
            Some((section, field)) => {
                let key = serde_norway::Value::String(section.to_string());
                let entry = root
                    .entry(key)
                    .or_insert_with(|| serde_norway::Value::Mapping(Default::default()));
                if let serde_norway::Value::Mapping(m) = entry {
                    m.insert(serde_norway::Value::String(field.to_string()), to_yaml(v));
                }
            }
            None => {
                root.insert(serde_norway::Value::String(path.to_string()), to_yaml(v));
            }
        }
    }
    serde_norway::to_string(&root).unwrap()
}

/// The loader's answer is sane: a config that validates (and whose derived
/// values can be computed), or an error that names a field.
fn check(result: Result<Config, ConfigError>, text: &str) -> Result<(), TestCaseError> {
    match result {
        Ok(config) => {
            prop_assert!(config.validate().is_ok(), "{text}");
            // Derived values must be computable without panicking.
            let _ = (
                config.lease_expiry_wait(),
                config.leadership_lease(),
                config.id_reservation(),
                config.effective_emergency_grace(),
                config.id_count(),
            );
        }
        Err(ConfigError::Invalid { field, rule }) => {
            prop_assert!(FIELDS.contains(&field), "unknown field {field}: {rule}");
            prop_assert!(!rule.is_empty());
        }
        Err(ConfigError::Parse(message)) => {
            prop_assert!(!message.is_empty());
        }
        Err(other) => prop_assert!(false, "unexpected error {other:?}"),
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_toml_never_panics(doc in document()) {
        let text = toml_text(&doc);
        check(Config::from_toml(&text), &text)?;
    }

    #[test]
    fn arbitrary_yaml_never_panics(doc in document()) {
        let text = yaml_text(&doc);
        check(Config::from_yaml(&text), &text)?;
    }

    /// Any humantime string for any duration field: accepted only within range,
    /// and an error always names that field.
    #[test]
    fn any_duration_in_any_duration_field(
        field in prop::sample::select(DURATION_FIELDS),
        value in humantime_string(),
    ) {
        let doc = [(FIELDS.iter().position(|f| *f == field).unwrap(), Scalar::Str(value))];
        for (text, result) in [
            (toml_text(&doc), Config::from_toml(&toml_text(&doc))),
            (yaml_text(&doc), Config::from_yaml(&yaml_text(&doc))),
        ] {
            let leaf = field.rsplit('.').next().unwrap();
            match result {
                Ok(_) => {}
                Err(ConfigError::Invalid { field: named, .. }) => {
                    // The field itself, or one it is checked against.
                    prop_assert!(FIELDS.contains(&named), "{named}");
                }
                Err(ConfigError::Parse(message)) => {
                    prop_assert!(message.contains(leaf), "{message} does not name {field} in {text}");
                }
                Err(other) => prop_assert!(false, "unexpected error {other:?}"),
            }
        }
    }
}

/// The measured bug: this used to panic (multiplication overflow) in `validate`.
#[test]
fn huge_heartbeat_interval_is_a_config_error() {
    for text in [
        "heartbeat_interval = \"10000000000000000000s\"",
        "heartbeat_interval = \"18446744073709551615ms\"",
        "worker_id_ttl = \"10000000000000000000s\"",
        "[alerts]\ninterval = \"500000000000000000s\"",
    ] {
        let err = Config::from_toml(text).unwrap_err();
        let field = text
            .split([' ', '\n'])
            .find(|w| w.ends_with("interval") || w.ends_with("ttl"))
            .unwrap();
        assert!(err.to_string().contains(field), "{text}: {err}");
    }
    let err = Config::from_yaml("heartbeat_interval: 10000000000000000000s\n").unwrap_err();
    assert!(
        matches!(
            err,
            ConfigError::Invalid {
                field: "heartbeat_interval",
                ..
            }
        ),
        "{err}"
    );
    assert!(err.to_string().contains("1 day"), "{err}");
}

#[test]
fn absurd_values_are_refused_with_the_field_named() {
    let cases: &[(&str, &str)] = &[
        (
            "worker_id_min = 0\nworker_id_max = 4000000000",
            "worker_id_max",
        ),
        ("heartbeat_interval = \"0s\"", "heartbeat_interval"),
        ("heartbeat_interval = \"500us\"", "heartbeat_interval"),
        ("operation_timeout = \"0s\"", "operation_timeout"),
        ("shutdown_timeout = \"0s\"", "shutdown_timeout"),
        ("startup_timeout = \"2d\"", "startup_timeout"),
        ("worker_capacity = 4000000000", "worker_capacity"),
        ("imbalance_threshold = 1e300", "imbalance_threshold"),
        ("max_clock_drift = nan", "max_clock_drift"),
        (
            "group = \"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\"",
            "group",
        ),
    ];
    for (text, field) in cases {
        match Config::from_toml(text) {
            Err(ConfigError::Invalid { field: named, rule }) => {
                assert_eq!(named, *field, "{text}: {rule}")
            }
            other => panic!("{text}: expected an invalid {field}, got {other:?}"),
        }
    }
}
