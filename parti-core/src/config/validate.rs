//! Validation rules of [`Config`]; every error names the field and the rule.

use super::{
    Config, MAX_DURATION, MAX_ID_COUNT, MAX_IMBALANCE_THRESHOLD, MAX_NAME_LEN, MAX_WORKER_CAPACITY,
    MIN_DURATION,
};
use crate::layout::is_valid_group_name;
use std::time::Duration;
use thiserror::Error;

/// A configuration that was refused.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ConfigError {
    /// A field breaks a rule.
    #[error("invalid config: `{field}` {rule}")]
    Invalid {
        /// The field at fault (as named in TOML/YAML).
        field: &'static str,
        /// The rule it breaks, with the values.
        rule: String,
    },
    /// The text could not be parsed.
    #[error("cannot parse config: {0}")]
    Parse(String),
}

fn invalid(field: &'static str, rule: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        field,
        rule: rule.into(),
    }
}

fn ensure(
    cond: bool,
    field: &'static str,
    rule: impl FnOnce() -> String,
) -> Result<(), ConfigError> {
    if cond {
        Ok(())
    } else {
        Err(invalid(field, rule()))
    }
}

fn ms(d: Duration) -> String {
    format!("{}ms", d.as_millis())
}

impl Config {
    /// Every duration field with its TOML/YAML name, and whether zero (or less
    /// than the core's 1 ms clock resolution) is meaningless for it.
    fn durations(&self) -> [(&'static str, Option<Duration>, bool); 20] {
        let (d, a) = (&self.degraded, &self.alerts);
        [
            ("worker_id_ttl", Some(self.worker_id_ttl), true),
            ("heartbeat_interval", Some(self.heartbeat_interval), true),
            ("heartbeat_ttl", Some(self.heartbeat_ttl), true),
            ("lease_safety_margin", Some(self.lease_safety_margin), false),
            ("election_ttl", Some(self.election_ttl), true),
            ("cold_start_window", Some(self.cold_start_window), false),
            (
                "planned_scale_window",
                Some(self.planned_scale_window),
                false,
            ),
            ("emergency_grace", self.emergency_grace, false),
            ("rebalance_cooldown", Some(self.rebalance_cooldown), true),
            ("degraded.enter_after", Some(d.enter_after), true),
            ("degraded.exit_after", Some(d.exit_after), false),
            ("degraded.recovery_grace", Some(d.recovery_grace), false),
            ("alerts.info", Some(a.info), false),
            ("alerts.warn", Some(a.warn), false),
            ("alerts.error", Some(a.error), false),
            ("alerts.critical", Some(a.critical), false),
            ("alerts.interval", Some(a.interval), true),
            ("startup_timeout", Some(self.startup_timeout), true),
            ("operation_timeout", Some(self.operation_timeout), true),
            ("shutdown_timeout", Some(self.shutdown_timeout), true),
        ]
    }

    /// Checks the range of every field on its own (bounds that keep all the
    /// derived arithmetic far from overflow).
    fn validate_ranges(&self) -> Result<(), ConfigError> {
        for (field, value, nonzero) in self.durations() {
            let Some(value) = value else { continue };
            ensure(value <= MAX_DURATION, field, || {
                format!(
                    "must be at most {} (1 day) (got {})",
                    ms(MAX_DURATION),
                    ms(value)
                )
            })?;
            if nonzero {
                ensure(value >= MIN_DURATION, field, || {
                    format!("must be at least 1ms, the core's clock resolution (got {value:?})")
                })?;
            }
        }
        for (field, value) in [
            ("group", &self.group),
            ("worker_id_prefix", &self.worker_id_prefix),
        ] {
            ensure(value.len() <= MAX_NAME_LEN, field, || {
                format!(
                    "must be at most {MAX_NAME_LEN} bytes long (got {})",
                    value.len()
                )
            })?;
        }
        for (field, name) in [
            ("buckets.members", &self.buckets.members),
            ("buckets.leader", &self.buckets.leader),
            ("buckets.assignments", &self.buckets.assignments),
        ] {
            if let Some(name) = name {
                ensure(name.len() <= MAX_NAME_LEN, field, || {
                    format!(
                        "must be at most {MAX_NAME_LEN} bytes long (got {})",
                        name.len()
                    )
                })?;
            }
        }
        ensure(
            self.worker_capacity <= MAX_WORKER_CAPACITY,
            "worker_capacity",
            || {
                format!(
                    "must be at most {MAX_WORKER_CAPACITY} (got {})",
                    self.worker_capacity
                )
            },
        )?;
        ensure(
            self.imbalance_threshold.is_finite()
                && (0.0..=MAX_IMBALANCE_THRESHOLD).contains(&self.imbalance_threshold),
            "imbalance_threshold",
            || {
                format!(
                    "must be in [0, {MAX_IMBALANCE_THRESHOLD}] (got {})",
                    self.imbalance_threshold
                )
            },
        )?;
        Ok(())
    }

    /// Checks every rule; the first broken one is returned.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.validate_ranges()?;
        ensure(is_valid_group_name(&self.group), "group", || {
            format!("must match [a-zA-Z0-9_-]+ (got {:?})", self.group)
        })?;
        ensure(
            is_valid_group_name(&self.worker_id_prefix),
            "worker_id_prefix",
            || {
                format!(
                    "must match [a-zA-Z0-9_-]+ (got {:?})",
                    self.worker_id_prefix
                )
            },
        )?;
        ensure(
            self.worker_id_min <= self.worker_id_max,
            "worker_id_max",
            || {
                format!(
                    "must be >= worker_id_min ({} < {})",
                    self.worker_id_max, self.worker_id_min
                )
            },
        )?;
        ensure(self.id_count() <= MAX_ID_COUNT, "worker_id_max", || {
            format!(
                "the range worker_id_min..=worker_id_max may hold at most {MAX_ID_COUNT} IDs (got {} to {}: {} IDs)",
                self.worker_id_min,
                self.worker_id_max,
                u64::from(self.worker_id_max) - u64::from(self.worker_id_min) + 1
            )
        })?;
        if let Some(p) = self.preferred_worker_id {
            ensure(
                (self.worker_id_min..=self.worker_id_max).contains(&p),
                "preferred_worker_id",
                || {
                    format!(
                        "must lie in [{}, {}] (got {p})",
                        self.worker_id_min, self.worker_id_max
                    )
                },
            )?;
        }
        ensure(self.worker_capacity >= 1, "worker_capacity", || {
            "must be at least 1".into()
        })?;
        ensure(
            !self.heartbeat_interval.is_zero(),
            "heartbeat_interval",
            || "must be > 0".into(),
        )?;
        ensure(
            self.heartbeat_ttl >= self.heartbeat_interval.saturating_mul(2),
            "heartbeat_ttl",
            || {
                format!(
                    "must be >= 2 x heartbeat_interval ({} < 2 x {})",
                    ms(self.heartbeat_ttl),
                    ms(self.heartbeat_interval)
                )
            },
        )?;
        ensure(
            self.ownership_lease() > self.heartbeat_interval,
            "lease_safety_margin",
            || {
                format!(
                    "heartbeat_ttl - lease_safety_margin must exceed heartbeat_interval ({} - {} <= {})",
                    ms(self.heartbeat_ttl),
                    ms(self.lease_safety_margin),
                    ms(self.heartbeat_interval)
                )
            },
        )?;
        ensure(
            self.max_clock_drift.is_finite() && (0.0..0.2).contains(&self.max_clock_drift),
            "max_clock_drift",
            || format!("must be in [0, 0.2) (got {})", self.max_clock_drift),
        )?;
        ensure(
            self.worker_id_ttl >= self.heartbeat_interval.saturating_mul(3),
            "worker_id_ttl",
            || {
                format!(
                    "must be >= 3 x heartbeat_interval ({} < 3 x {})",
                    ms(self.worker_id_ttl),
                    ms(self.heartbeat_interval)
                )
            },
        )?;
        ensure(
            self.worker_id_ttl >= self.heartbeat_ttl,
            "worker_id_ttl",
            || {
                format!(
                    "must be >= heartbeat_ttl ({} < {})",
                    ms(self.worker_id_ttl),
                    ms(self.heartbeat_ttl)
                )
            },
        )?;
        ensure(
            self.election_ttl >= Duration::from_millis(100),
            "election_ttl",
            || format!("must be >= 100ms (got {})", ms(self.election_ttl)),
        )?;
        ensure(
            !self.rebalance_cooldown.is_zero(),
            "rebalance_cooldown",
            || "must be > 0".into(),
        )?;
        ensure(
            self.rebalance_cooldown <= self.planned_scale_window,
            "rebalance_cooldown",
            || {
                format!(
                    "must be <= planned_scale_window ({} > {})",
                    ms(self.rebalance_cooldown),
                    ms(self.planned_scale_window)
                )
            },
        )?;
        ensure(
            self.planned_scale_window <= self.cold_start_window,
            "planned_scale_window",
            || {
                format!(
                    "must be <= cold_start_window ({} > {})",
                    ms(self.planned_scale_window),
                    ms(self.cold_start_window)
                )
            },
        )?;
        ensure(
            self.effective_emergency_grace() <= self.heartbeat_ttl,
            "emergency_grace",
            || {
                format!(
                    "must be <= heartbeat_ttl ({} > {})",
                    ms(self.effective_emergency_grace()),
                    ms(self.heartbeat_ttl)
                )
            },
        )?;
        ensure(
            self.restart_detection_ratio.is_finite()
                && (0.0..=1.0).contains(&self.restart_detection_ratio),
            "restart_detection_ratio",
            || format!("must be in [0, 1] (got {})", self.restart_detection_ratio),
        )?;
        ensure(
            self.imbalance_threshold.is_finite() && self.imbalance_threshold >= 0.0,
            "imbalance_threshold",
            || format!("must be >= 0 (got {})", self.imbalance_threshold),
        )?;
        ensure(
            !self.degraded.enter_after.is_zero(),
            "degraded.enter_after",
            || "must be > 0".into(),
        )?;
        let a = &self.alerts;
        ensure(a.info <= a.warn, "alerts.warn", || {
            format!("must be >= alerts.info ({} < {})", ms(a.warn), ms(a.info))
        })?;
        ensure(a.warn <= a.error, "alerts.error", || {
            format!("must be >= alerts.warn ({} < {})", ms(a.error), ms(a.warn))
        })?;
        ensure(a.error <= a.critical, "alerts.critical", || {
            format!(
                "must be >= alerts.error ({} < {})",
                ms(a.critical),
                ms(a.error)
            )
        })?;
        ensure(!a.interval.is_zero(), "alerts.interval", || {
            "must be > 0".into()
        })?;
        ensure(
            matches!(self.buckets.replicas, 0 | 1 | 3 | 5),
            "buckets.replicas",
            || format!("must be 1, 3 or 5 (got {})", self.buckets.replicas),
        )?;
        for (field, name) in [
            ("buckets.members", &self.buckets.members),
            ("buckets.leader", &self.buckets.leader),
            ("buckets.assignments", &self.buckets.assignments),
        ] {
            if let Some(name) = name {
                ensure(is_valid_group_name(name), field, || {
                    format!("must match [a-zA-Z0-9_-]+ (got {name:?})")
                })?;
            }
        }
        ensure(
            !self.operation_timeout.is_zero(),
            "operation_timeout",
            || "must be > 0".into(),
        )?;
        if let Some(budget) = self.hook_budget {
            ensure(!budget.is_zero(), "hook_budget", || "must be > 0".into())?;
        }
        let budget = self.effective_hook_budget();
        ensure(
            self.heartbeat_interval + budget <= self.ownership_lease(),
            "hook_budget",
            || {
                format!(
                    "heartbeat_interval + hook_budget must fit inside the ownership lease heartbeat_ttl - lease_safety_margin, so that a revoke hook within its budget ends before the owner's lease can lapse ({} + {} > {} - {})",
                    ms(self.heartbeat_interval),
                    ms(budget),
                    ms(self.heartbeat_ttl),
                    ms(self.lease_safety_margin)
                )
            },
        )?;
        ensure(
            self.startup_timeout > self.cold_start_window,
            "startup_timeout",
            || {
                format!(
                    "must exceed cold_start_window, since the first worker waits that long for its first assignment ({} <= {})",
                    ms(self.startup_timeout),
                    ms(self.cold_start_window)
                )
            },
        )?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::DegradedPolicy;
    use proptest::prelude::*;

    fn field_of(err: ConfigError) -> &'static str {
        match err {
            ConfigError::Invalid { field, .. } => field,
            ConfigError::Parse(e) => panic!("unexpected parse error {e}"),
        }
    }

    #[test]
    fn defaults_and_test_config_are_valid() {
        Config::default().validate().unwrap();
        Config::for_tests().validate().unwrap();
        assert_eq!(
            Config::default().effective_emergency_grace(),
            Duration::from_secs(3)
        );
    }

    #[test]
    fn rules_name_the_field() {
        let bad = Config::builder()
            .heartbeat_ttl(Duration::from_secs(3))
            .build()
            .unwrap_err();
        assert_eq!(field_of(bad.clone()), "heartbeat_ttl");
        assert!(bad.to_string().contains("2 x heartbeat_interval"), "{bad}");
        let bad = Config::builder()
            .rebalance_cooldown(Duration::from_secs(11))
            .build()
            .unwrap_err();
        assert_eq!(field_of(bad), "rebalance_cooldown");
        let bad = Config::builder()
            .emergency_grace(Some(Duration::from_secs(7)))
            .build()
            .unwrap_err();
        assert_eq!(field_of(bad), "emergency_grace");
        let bad = Config::builder()
            .worker_id_min(5)
            .worker_id_max(4)
            .build()
            .unwrap_err();
        assert_eq!(field_of(bad), "worker_id_max");
        let bad = Config::builder()
            .preferred_worker_id(Some(100))
            .build()
            .unwrap_err();
        assert_eq!(field_of(bad), "preferred_worker_id");
        let bad = Config::builder().group("a.b").build().unwrap_err();
        assert_eq!(field_of(bad), "group");
        // The hook budget must fit inside the lease with one heartbeat interval.
        let bad = Config::builder()
            .hook_budget(Some(Duration::from_millis(3001)))
            .build()
            .unwrap_err();
        assert_eq!(field_of(bad.clone()), "hook_budget");
        assert!(bad.to_string().contains("ownership lease"), "{bad}");
        let bad = Config::builder()
            .hook_budget(Some(Duration::ZERO))
            .build()
            .unwrap_err();
        assert_eq!(field_of(bad), "hook_budget");
        let ok = Config::builder()
            .hook_budget(Some(Duration::from_secs(3)))
            .build()
            .unwrap();
        assert_eq!(ok.effective_hook_budget(), Duration::from_secs(3));
    }

    #[test]
    fn hook_budget_defaults_fit_the_lease() {
        assert_eq!(
            Config::default().effective_hook_budget(),
            Duration::from_secs(2)
        );
        assert_eq!(
            Config::for_tests().effective_hook_budget(),
            Duration::from_millis(200)
        );
        // A tight lease shrinks the derived budget instead of being refused.
        let c = Config::builder()
            .heartbeat_interval(Duration::from_secs(1))
            .heartbeat_ttl(Duration::from_secs(2))
            .lease_safety_margin(Duration::from_millis(700))
            .build()
            .unwrap();
        assert_eq!(c.effective_hook_budget(), Duration::from_millis(300));
    }

    #[test]
    fn loads_toml_and_yaml_with_human_durations() {
        let toml = r#"
            group = "orders"
            heartbeat_interval = "1s"
            heartbeat_ttl = "3500ms"
            lease_safety_margin = "500ms"
            emergency_grace = "1s"
            [degraded]
            policy = "stop_when_lease_expires"
        "#;
        let c = Config::from_toml(toml).unwrap();
        assert_eq!(c.group, "orders");
        assert_eq!(c.heartbeat_ttl, Duration::from_millis(3500));
        assert_eq!(c.degraded.policy, DegradedPolicy::StopWhenLeaseExpires);
        let yaml = "group: orders\nplanned_scale_window: 1m 30s\ncold_start_window: 2m\nstartup_timeout: 3m\nbuckets:\n  replicas: 3\n";
        let c = Config::from_yaml(yaml).unwrap();
        assert_eq!(c.planned_scale_window, Duration::from_secs(90));
        assert_eq!(c.buckets.replicas, 3);
        // Unknown fields are refused rather than silently ignored.
        assert!(matches!(
            Config::from_yaml("hearbeat_ttl: 1s\n"),
            Err(ConfigError::Parse(_))
        ));
        // Semantically invalid text is refused with the field named.
        let err = Config::from_toml("heartbeat_ttl = \"1s\"").unwrap_err();
        assert_eq!(field_of(err), "heartbeat_ttl");
        // Round trip.
        assert_eq!(
            Config::from_toml(&Config::default().to_toml()).unwrap(),
            Config::default()
        );
    }

    #[test]
    fn lease_arithmetic_is_conservative() {
        let c = Config::default();
        assert_eq!(c.ownership_lease(), Duration::from_secs(5));
        assert!(c.lease_expiry_wait() >= c.heartbeat_ttl);
        assert!(c.leadership_lease() < c.election_ttl);
        assert!(c.id_reservation() < c.worker_id_ttl);
    }

    proptest! {
        /// Whatever the timings, a config that validates keeps the lease
        /// relations the protocol's safety argument needs.
        #[test]
        fn valid_configs_keep_lease_relations(
            interval in 1u64..5_000,
            ttl_factor in 1.0f64..6.0,
            margin_frac in 0.0f64..0.9,
            id_factor in 0.5f64..10.0,
            drift in 0.0f64..0.05,
        ) {
            let interval = Duration::from_millis(interval);
            let ttl = interval.mul_f64(ttl_factor);
            let c = Config {
                heartbeat_interval: interval,
                heartbeat_ttl: ttl,
                lease_safety_margin: ttl.mul_f64(margin_frac),
                worker_id_ttl: ttl.mul_f64(id_factor),
                max_clock_drift: drift,
                emergency_grace: Some(Duration::ZERO),
                ..Config::default()
            };
            if c.validate().is_ok() {
                prop_assert!(c.ownership_lease() > c.heartbeat_interval);
                prop_assert!(c.heartbeat_ttl >= c.heartbeat_interval * 2);
                prop_assert!(!c.effective_hook_budget().is_zero());
                prop_assert!(c.heartbeat_interval + c.effective_hook_budget() <= c.ownership_lease());
                // Lease seen by an observer drifting the other way still covers the owner's lease.
                let owner_real = c.ownership_lease().as_secs_f64() / (1.0 - drift);
                let observer_real = c.lease_expiry_wait().as_secs_f64() / (1.0 + drift);
                prop_assert!(observer_real + 1e-3 >= owner_real);
            }
        }
    }
}
