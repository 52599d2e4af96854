//! Configuration: defaults of the Go original, a builder, serde with human
//! durations (TOML and YAML), and validation that names the field and the rule.
//! Files written for the Go library load too: its camelCase keys are mapped
//! (the table is in `docs/migrating-from-go.md`), and
//! its settings with no meaning here are reported as [`ConfigWarning`]s.
//!
//! Field names (TOML/YAML, snake_case; durations as `"2s"`, `"1500ms"`, `"1m 30s"`).
//! Every field has a range that [`Config::validate`] enforces (the error names the
//! field and states the rule):
//!
//! | field | default | range | meaning |
//! |---|---|---|---|
//! | `group` | `"parti"` | `[a-zA-Z0-9_-]`, 1–64 bytes | group name; bucket names derive from it |
//! | `worker_id_prefix` | `"worker"` | `[a-zA-Z0-9_-]`, 1–64 bytes | IDs are `<prefix>-<n>` |
//! | `worker_id_min`, `worker_id_max` | 0, 99 | min ≤ max, at most 1 000 000 IDs | inclusive ID range |
//! | `preferred_worker_id` | none | within the ID range | index tried first (e.g. a StatefulSet ordinal) |
//! | `worker_capacity` | 1 | 1–10 000 | relative size of this worker for weighted strategies |
//! | `worker_id_ttl` | 30s | ≥ 3 × `heartbeat_interval`, ≥ `heartbeat_ttl`, ≤ 1 day | ID reservation: how long a stable ID stays reserved after the last renewal |
//! | `heartbeat_interval` | 2s | 1 ms – 1 day | how often the member record is renewed |
//! | `heartbeat_ttl` | 6s | ≥ 2 × `heartbeat_interval`, ≤ 1 day | a member unchanged this long is considered gone |
//! | `lease_safety_margin` | 1s | `heartbeat_ttl` − margin > `heartbeat_interval`, ≤ 1 day | the ownership lease is `heartbeat_ttl - lease_safety_margin` on the owner's clock |
//! | `max_clock_drift` | 0.01 | [0, 0.2) | bound on the clock-rate difference between hosts (1 %) |
//! | `election_ttl` | 5s | 100 ms – 1 day | leader key lifetime; renewed every third of it |
//! | `cold_start_window` | 30s | ≥ `planned_scale_window`, < `startup_timeout`, ≤ 1 day | wait for workers to arrive on a cold start |
//! | `planned_scale_window` | 10s | ≥ `rebalance_cooldown`, ≤ 1 day | batch joins/graceful leaves |
//! | `emergency_grace` | 1.5 × heartbeat_interval | ≤ `heartbeat_ttl` | wait after a worker vanished |
//! | `restart_detection_ratio` | 0.5 | [0, 1] | cold start if live workers < ratio × workers of the last assignment |
//! | `rebalance_cooldown` | 10s | 1 ms – `planned_scale_window` | minimum time between planned rebalances |
//! | `imbalance_threshold` | 0.15 | [0, 10] | a partition-list change that leaves max/avg load − 1 within this does not reshuffle |
//! | `degraded.policy` | `keep_processing` | `keep_processing`, `stop_when_lease_expires` | what a cut-off worker does |
//! | `degraded.enter_after`, `degraded.exit_after` | 10s, 2s | 1 ms – 1 day, 0 – 1 day | hysteresis of degraded mode (exit: short, so that a worker is `Stable` again within `heartbeat_ttl` + 1 s of a server's return even after a 4 s client reconnect backoff; the Go original waits 5 s) |
//! | `degraded.recovery_grace` | 15s | 0 – 1 day | after recovery the leader declares no emergency for this long |
//! | `alerts.info`/`warn`/`error`/`critical` | 30s/2m/5m/10m | non-decreasing, ≤ 1 day | degraded-duration alert levels |
//! | `alerts.interval` | 1m | 1 ms – 1 day | repeat interval of degraded alerts |
//! | `startup_timeout`, `operation_timeout`, `shutdown_timeout` | 60s, 10s, 10s | 1 ms – 1 day each | driver bounds (`startup_timeout` must exceed `cold_start_window`) |
//! | `hook_budget` | min(heartbeat_interval, ownership lease − heartbeat_interval) | ≥ 1 ms; `heartbeat_interval` + budget ≤ ownership lease | bound on one `on_assignment_changed` call; past it the worker gives up |
//! | `buckets.replicas` | 1 | 0 (read as 1), 1, 3, 5 | replicas of the buckets |
//! | `buckets.storage` | `file` | `file`, `memory` | storage of the buckets |
//! | `buckets.members`/`leader`/`assignments` | derived | `[a-zA-Z0-9_-]`, 1–64 bytes | bucket name overrides |
//!
//! Why these bounds:
//! - **Durations ≤ 1 day** ([`MAX_DURATION`]). No coordination timing is
//!   meaningful beyond that (a lease of a day means a crashed worker's partitions
//!   stay orphaned for a day), and the bound keeps every derived value (sums,
//!   multiples, drift factors, `now + d` on the driver's clocks) many orders of
//!   magnitude away from overflow. Durations that must be positive must be at
//!   least 1 ms ([`MIN_DURATION`]): the core counts time in milliseconds, so a
//!   shorter period would behave like zero (a busy loop).
//! - **At most 1 000 000 IDs** ([`MAX_ID_COUNT`]). When the range is full a claim
//!   walks every ID of it (one create per ID), and the roster may hold one entry
//!   per ID: a million already means minutes of claims, four billion would never
//!   finish.
//! - **Names ≤ 64 bytes** ([`MAX_NAME_LEN`]): they become bucket names, keys and
//!   subjects; NATS subjects and stream names should stay short.
//! - **`worker_capacity` ≤ 10 000** ([`MAX_WORKER_CAPACITY`]): weights are ratios
//!   between workers; 10 000 : 1 is already beyond any real fleet.
//! - **`imbalance_threshold` ≤ 10** ([`MAX_IMBALANCE_THRESHOLD`]): a threshold of
//!   10 already means "a worker may carry 11 × the average" (never rebalance).
//!
//! Even a configuration that was never validated cannot make the core panic: all
//! arithmetic on durations and instants saturates.

mod go;
mod validate;

pub use go::ConfigWarning;
pub use validate::ConfigError;

/// Longest duration any field accepts: one day.
pub const MAX_DURATION: Duration = Duration::from_secs(24 * 60 * 60);
/// Shortest positive duration accepted where zero is meaningless: the core's
/// clock resolution.
pub const MIN_DURATION: Duration = Duration::from_millis(1);
/// Most IDs a range (`worker_id_min..=worker_id_max`) may hold.
pub const MAX_ID_COUNT: u32 = 1_000_000;
/// Longest group name, ID prefix or bucket name override, in bytes.
pub const MAX_NAME_LEN: usize = 64;
/// Largest `worker_capacity`.
pub const MAX_WORKER_CAPACITY: u32 = 10_000;
/// Largest `imbalance_threshold`.
pub const MAX_IMBALANCE_THRESHOLD: f64 = 10.0;

use serde::{Deserialize, Serialize};
use std::time::Duration;

/// What a worker does with its partitions while it cannot reach the coordinator.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum DegradedPolicy {
    /// Availability: keep processing the frozen assignment. Exclusive ownership can
    /// then be broken for a worker cut off from the store while the leader is not
    /// (the leader reassigns its partitions after its lease). The Go original's
    /// behaviour.
    #[default]
    KeepProcessing,
    /// Safety: give up every partition as soon as the ownership lease can no
    /// longer be proven. Exclusive ownership holds unconditionally.
    StopWhenLeaseExpires,
}

/// Degraded-mode settings.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct DegradedConfig {
    /// See [`DegradedPolicy`].
    pub policy: DegradedPolicy,
    /// Unreachable this long → `Degraded`.
    #[serde(with = "humantime_serde")]
    pub enter_after: Duration,
    /// Reachable again this long → leave `Degraded`.
    #[serde(with = "humantime_serde")]
    pub exit_after: Duration,
    /// After recovery, a leader declares no emergency for this long.
    #[serde(with = "humantime_serde")]
    pub recovery_grace: Duration,
}

impl Default for DegradedConfig {
    fn default() -> Self {
        DegradedConfig {
            policy: DegradedPolicy::KeepProcessing,
            enter_after: Duration::from_secs(10),
            exit_after: Duration::from_secs(2),
            recovery_grace: Duration::from_secs(15),
        }
    }
}

/// Alert thresholds for time spent degraded, counted from the moment the
/// worker entered `Degraded`. The first alert comes at `info`, another one at
/// once when the level rises (`warn`, `error`, `critical`), and otherwise one
/// every `interval` until the worker leaves `Degraded`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct AlertConfig {
    /// Info level after this long degraded.
    #[serde(with = "humantime_serde")]
    pub info: Duration,
    /// Warn level.
    #[serde(with = "humantime_serde")]
    pub warn: Duration,
    /// Error level.
    #[serde(with = "humantime_serde")]
    pub error: Duration,
    /// Critical level.
    #[serde(with = "humantime_serde")]
    pub critical: Duration,
    /// Alerts repeat this often while degraded.
    #[serde(with = "humantime_serde")]
    pub interval: Duration,
}

impl Default for AlertConfig {
    fn default() -> Self {
        AlertConfig {
            info: Duration::from_secs(30),
            warn: Duration::from_secs(120),
            error: Duration::from_secs(300),
            critical: Duration::from_secs(600),
            interval: Duration::from_secs(60),
        }
    }
}

/// Storage type of the buckets.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Storage {
    /// On disk.
    #[default]
    File,
    /// In memory.
    Memory,
}

/// Bucket settings.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct BucketConfig {
    /// Replicas (1 or 3). `0` is read as 1.
    pub replicas: usize,
    /// Storage type.
    pub storage: Storage,
    /// Override of the members bucket name.
    pub members: Option<String>,
    /// Override of the leader bucket name.
    pub leader: Option<String>,
    /// Override of the assignments bucket name.
    pub assignments: Option<String>,
}

/// The whole configuration of a worker. Build it with [`Config::builder`], load it
/// with [`Config::from_toml`] / [`Config::from_yaml`], and check it with
/// [`Config::validate`] (the builder and loaders do).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct Config {
    /// Group name; bucket names derive from it.
    pub group: String,
    /// Prefix of worker IDs.
    pub worker_id_prefix: String,
    /// Smallest ID index.
    pub worker_id_min: u32,
    /// Largest ID index (inclusive).
    pub worker_id_max: u32,
    /// Index to try first: created at once, before the worker watches any
    /// other member (a StatefulSet's ordinals give every worker of a group
    /// its own, so a group starts without racing for IDs).
    pub preferred_worker_id: Option<u32>,
    /// Relative size of this worker.
    pub worker_capacity: u32,
    /// ID reservation TTL.
    #[serde(with = "humantime_serde")]
    pub worker_id_ttl: Duration,
    /// Heartbeat period.
    #[serde(with = "humantime_serde")]
    pub heartbeat_interval: Duration,
    /// Liveness TTL.
    #[serde(with = "humantime_serde")]
    pub heartbeat_ttl: Duration,
    /// Subtracted from the heartbeat TTL to get the ownership lease.
    #[serde(with = "humantime_serde")]
    pub lease_safety_margin: Duration,
    /// Bound on clock-rate drift between hosts, as a fraction.
    pub max_clock_drift: f64,
    /// Leader key TTL.
    #[serde(with = "humantime_serde")]
    pub election_ttl: Duration,
    /// Cold-start stabilisation window.
    #[serde(with = "humantime_serde")]
    pub cold_start_window: Duration,
    /// Planned-scale stabilisation window.
    #[serde(with = "humantime_serde")]
    pub planned_scale_window: Duration,
    /// Grace after a worker vanished (`None`: 1.5 × heartbeat interval).
    #[serde(with = "humantime_serde::option")]
    pub emergency_grace: Option<Duration>,
    /// Cold start if live workers < ratio × workers of the last assignment.
    pub restart_detection_ratio: f64,
    /// Minimum time between planned rebalances.
    #[serde(with = "humantime_serde")]
    pub rebalance_cooldown: Duration,
    /// Tolerated imbalance for partition-list changes.
    pub imbalance_threshold: f64,
    /// Degraded mode.
    pub degraded: DegradedConfig,
    /// Degraded alerts.
    pub alerts: AlertConfig,
    /// Bound on `start()`.
    #[serde(with = "humantime_serde")]
    pub startup_timeout: Duration,
    /// Bound on one backend operation.
    #[serde(with = "humantime_serde")]
    pub operation_timeout: Duration,
    /// Bound on `stop()` / `leave()`.
    #[serde(with = "humantime_serde")]
    pub shutdown_timeout: Duration,
    /// Bound on one call of the application's assignment hook (the call that
    /// revokes partitions): the release is confirmed to the leader only when
    /// the hook returned, and a hook still running after this long makes the
    /// worker give up (it stops renewing, so the leader reassigns its
    /// partitions only once its ownership lease has expired). `None`: the
    /// smaller of `heartbeat_interval` and `ownership_lease() -
    /// heartbeat_interval` (see [`Config::effective_hook_budget`]). Validation
    /// requires `heartbeat_interval + hook_budget <= heartbeat_ttl -
    /// lease_safety_margin`.
    #[serde(with = "humantime_serde::option")]
    pub hook_budget: Option<Duration>,
    /// Buckets.
    pub buckets: BucketConfig,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            group: "parti".into(),
            worker_id_prefix: "worker".into(),
            worker_id_min: 0,
            worker_id_max: 99,
            preferred_worker_id: None,
            worker_capacity: 1,
            worker_id_ttl: Duration::from_secs(30),
            heartbeat_interval: Duration::from_secs(2),
            heartbeat_ttl: Duration::from_secs(6),
            lease_safety_margin: Duration::from_secs(1),
            max_clock_drift: 0.01,
            election_ttl: Duration::from_secs(5),
            cold_start_window: Duration::from_secs(30),
            planned_scale_window: Duration::from_secs(10),
            emergency_grace: None,
            restart_detection_ratio: 0.5,
            rebalance_cooldown: Duration::from_secs(10),
            imbalance_threshold: 0.15,
            degraded: DegradedConfig::default(),
            alerts: AlertConfig::default(),
            startup_timeout: Duration::from_secs(60),
            operation_timeout: Duration::from_secs(10),
            shutdown_timeout: Duration::from_secs(10),
            hook_budget: None,
            buckets: BucketConfig::default(),
        }
    }
}

impl Config {
    /// Starts a builder from the defaults.
    pub fn builder() -> ConfigBuilder {
        ConfigBuilder {
            config: Config::default(),
        }
    }

    /// A preset for tests and demos, **not for production**: the defaults with
    /// every timing shortened so that a group forms, rebalances and fails over
    /// in about a second. It is valid (it passes [`Config::validate`]).
    ///
    /// | field | value |
    /// |---|---|
    /// | `worker_id_ttl` | 2 s |
    /// | `heartbeat_interval` / `heartbeat_ttl` | 200 ms / 600 ms |
    /// | `lease_safety_margin` | 100 ms |
    /// | `election_ttl` | 1 s |
    /// | `cold_start_window` / `planned_scale_window` | 1 s / 500 ms |
    /// | `emergency_grace` | 300 ms |
    /// | `rebalance_cooldown` | 100 ms |
    /// | `degraded` | `keep_processing`, enter after 1 s, exit after 500 ms, recovery grace 5 s (above a NATS client's 4 s reconnect backoff) |
    /// | `alerts` | info 1 s, warn 2 s, error 4 s, critical 8 s, every 1 s |
    /// | `startup_timeout` / `operation_timeout` / `shutdown_timeout` | 15 s / 2 s / 5 s |
    /// | everything else | as in [`Config::default`] |
    ///
    /// On real networks and under load these timings expire leases on
    /// ordinary hiccups: production uses [`Config::default`] or its own values.
    pub fn for_tests() -> Self {
        Config {
            worker_id_ttl: Duration::from_secs(2),
            heartbeat_interval: Duration::from_millis(200),
            heartbeat_ttl: Duration::from_millis(600),
            lease_safety_margin: Duration::from_millis(100),
            election_ttl: Duration::from_secs(1),
            cold_start_window: Duration::from_secs(1),
            planned_scale_window: Duration::from_millis(500),
            emergency_grace: Some(Duration::from_millis(300)),
            rebalance_cooldown: Duration::from_millis(100),
            degraded: DegradedConfig {
                policy: DegradedPolicy::KeepProcessing,
                enter_after: Duration::from_secs(1),
                exit_after: Duration::from_millis(500),
                recovery_grace: Duration::from_secs(5),
            },
            alerts: AlertConfig {
                info: Duration::from_secs(1),
                warn: Duration::from_secs(2),
                error: Duration::from_secs(4),
                critical: Duration::from_secs(8),
                interval: Duration::from_secs(1),
            },
            startup_timeout: Duration::from_secs(15),
            operation_timeout: Duration::from_secs(2),
            shutdown_timeout: Duration::from_secs(5),
            ..Config::default()
        }
    }

    /// Parses and validates TOML. A file written for the Go library is read
    /// too (see [`Config::from_toml_with_warnings`]); its warnings are logged
    /// with `tracing`.
    pub fn from_toml(text: &str) -> Result<Self, ConfigError> {
        let (config, warnings) = Self::from_toml_with_warnings(text)?;
        log_warnings(&warnings);
        Ok(config)
    }

    /// Parses and validates YAML. A file written for the Go library is read
    /// too (see [`Config::from_yaml_with_warnings`]); its warnings are logged
    /// with `tracing`.
    pub fn from_yaml(text: &str) -> Result<Self, ConfigError> {
        let (config, warnings) = Self::from_yaml_with_warnings(text)?;
        log_warnings(&warnings);
        Ok(config)
    }

    /// Parses and validates TOML, Parti's keys or the Go library's, and
    /// returns the Go settings that were ignored or adjusted (empty for a
    /// Parti file). The mapping of Go keys is in `docs/migrating-from-go.md`.
    pub fn from_toml_with_warnings(text: &str) -> Result<(Self, Vec<ConfigWarning>), ConfigError> {
        match toml::from_str::<Config>(text) {
            Ok(config) => {
                config.validate()?;
                Ok((config, Vec::new()))
            }
            Err(native) => {
                let tree = toml::from_str::<serde_json::Value>(text)
                    .map_err(|_| ConfigError::Parse(native.to_string()))?;
                Self::from_go_tree(tree, native.to_string())
            }
        }
    }

    /// Parses and validates YAML, Parti's keys or the Go library's (camelCase
    /// keys such as `workerIdTtl`, `electionTimeout`,
    /// `assignment.minRebalanceInterval`, `degradedAlert.infoThreshold`), and
    /// returns the Go settings that were ignored or adjusted (empty for a
    /// Parti file).
    pub fn from_yaml_with_warnings(text: &str) -> Result<(Self, Vec<ConfigWarning>), ConfigError> {
        match serde_norway::from_str::<Config>(text) {
            Ok(config) => {
                config.validate()?;
                Ok((config, Vec::new()))
            }
            Err(native) => {
                let tree = serde_norway::from_str::<serde_json::Value>(text)
                    .map_err(|_| ConfigError::Parse(native.to_string()))?;
                Self::from_go_tree(tree, native.to_string())
            }
        }
    }

    /// The second reading of a document Parti's keys did not fit: move the Go
    /// keys, then read what is left as Parti's. Without any Go key the first
    /// reading's error stands.
    fn from_go_tree(
        mut tree: serde_json::Value,
        native_error: String,
    ) -> Result<(Self, Vec<ConfigWarning>), ConfigError> {
        let (found, warnings) = go::translate(&mut tree)?;
        if !found {
            return Err(ConfigError::Parse(native_error));
        }
        let config: Config =
            serde_json::from_value(tree).map_err(|e| ConfigError::Parse(e.to_string()))?;
        config.validate()?;
        Ok((config, warnings))
    }

    /// Serialises to TOML.
    pub fn to_toml(&self) -> String {
        toml::to_string(self).unwrap_or_default()
    }

    /// The emergency grace with its default applied.
    pub fn effective_emergency_grace(&self) -> Duration {
        self.emergency_grace
            .unwrap_or_else(|| crate::time::scale(self.heartbeat_interval, 1.5))
    }

    /// The budget of one assignment-hook call with its default applied: the
    /// configured `hook_budget`, or the smaller of `heartbeat_interval` and
    /// `ownership_lease() - heartbeat_interval`. A hook that returns within it
    /// cannot outlive the owner's ownership lease as counted from its last
    /// renewal before the hook started (renewals go on while the hook runs, but
    /// the release it confirms waits for the hook).
    pub fn effective_hook_budget(&self) -> Duration {
        self.hook_budget.unwrap_or_else(|| {
            self.heartbeat_interval.min(
                self.ownership_lease()
                    .saturating_sub(self.heartbeat_interval),
            )
        })
    }

    /// The ownership lease, measured on the owner's clock from the start of its
    /// last successful renewal.
    pub fn ownership_lease(&self) -> Duration {
        self.heartbeat_ttl.saturating_sub(self.lease_safety_margin)
    }

    /// How long an observer must see a member unchanged before the member's
    /// ownership lease has certainly expired, allowing for clock-rate drift in
    /// both directions.
    pub fn lease_expiry_wait(&self) -> Duration {
        let rho = self.max_clock_drift;
        let factor = (1.0 + rho) / (1.0 - rho);
        crate::time::scale_up(self.ownership_lease(), factor).max(self.heartbeat_ttl)
    }

    /// How long a lease renewal (member or leadership) or the read-back after
    /// one may take before its outcome counts as unknown: one heartbeat
    /// interval, at least 1 s (a slow store under load is not a dead
    /// connection) and at most `operation_timeout`. A request sent on a
    /// connection that died (a cluster node killed) never gets an answer;
    /// the client reconnects elsewhere at once, and the next renewal must go
    /// out while the lease still runs, not after `operation_timeout`.
    pub fn renewal_timeout(&self) -> Duration {
        self.heartbeat_interval
            .max(Duration::from_secs(1))
            .min(self.operation_timeout)
    }

    /// Leadership is exercised only this long after the start of the last
    /// successful renewal (election TTL minus a drift margin).
    pub fn leadership_lease(&self) -> Duration {
        let rho = self.max_clock_drift;
        crate::time::scale(self.election_ttl, (1.0 - rho) / (1.0 + rho))
            .saturating_sub(self.lease_safety_margin.min(self.election_ttl / 4))
    }

    /// ID reservation as the holder counts it (shortened for drift).
    pub fn id_reservation(&self) -> Duration {
        let rho = self.max_clock_drift;
        crate::time::scale(self.worker_id_ttl, (1.0 - rho) / (1.0 + rho))
    }

    /// Number of IDs in the range.
    pub fn id_count(&self) -> u32 {
        self.worker_id_max
            .saturating_sub(self.worker_id_min)
            .saturating_add(1)
    }
}

fn log_warnings(warnings: &[ConfigWarning]) {
    for w in warnings {
        tracing::warn!(warning = %w, "configuration");
    }
}

/// Builder for [`Config`]; [`ConfigBuilder::build`] validates.
#[derive(Clone, Debug)]
pub struct ConfigBuilder {
    config: Config,
}

macro_rules! setters {
    ($($(#[$doc:meta])* $name:ident : $ty:ty),* $(,)?) => {
        $(
            $(#[$doc])*
            pub fn $name(mut self, value: $ty) -> Self {
                self.config.$name = value;
                self
            }
        )*
    };
}

impl ConfigBuilder {
    /// Starts from another configuration (e.g. [`Config::for_tests`]).
    pub fn from_config(config: Config) -> Self {
        ConfigBuilder { config }
    }

    setters! {
        /// Sets `worker_id_min`.
        worker_id_min: u32,
        /// Sets `worker_id_max`.
        worker_id_max: u32,
        /// Sets `preferred_worker_id`.
        preferred_worker_id: Option<u32>,
        /// Sets `worker_capacity`.
        worker_capacity: u32,
        /// Sets `worker_id_ttl`.
        worker_id_ttl: Duration,
        /// Sets `heartbeat_interval`.
        heartbeat_interval: Duration,
        /// Sets `heartbeat_ttl`.
        heartbeat_ttl: Duration,
        /// Sets `lease_safety_margin`.
        lease_safety_margin: Duration,
        /// Sets `max_clock_drift`.
        max_clock_drift: f64,
        /// Sets `election_ttl`.
        election_ttl: Duration,
        /// Sets `cold_start_window`.
        cold_start_window: Duration,
        /// Sets `planned_scale_window`.
        planned_scale_window: Duration,
        /// Sets `emergency_grace`.
        emergency_grace: Option<Duration>,
        /// Sets `restart_detection_ratio`.
        restart_detection_ratio: f64,
        /// Sets `rebalance_cooldown`.
        rebalance_cooldown: Duration,
        /// Sets `imbalance_threshold`.
        imbalance_threshold: f64,
        /// Sets the degraded-mode settings.
        degraded: DegradedConfig,
        /// Sets the alert thresholds.
        alerts: AlertConfig,
        /// Sets `startup_timeout`.
        startup_timeout: Duration,
        /// Sets `operation_timeout`.
        operation_timeout: Duration,
        /// Sets `shutdown_timeout`.
        shutdown_timeout: Duration,
        /// Sets `hook_budget`.
        hook_budget: Option<Duration>,
        /// Sets the bucket settings.
        buckets: BucketConfig,
    }

    /// Sets the group name.
    pub fn group(mut self, group: impl Into<String>) -> Self {
        self.config.group = group.into();
        self
    }

    /// Sets the worker ID prefix.
    pub fn worker_id_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.config.worker_id_prefix = prefix.into();
        self
    }

    /// Sets the degraded policy.
    pub fn degraded_policy(mut self, policy: DegradedPolicy) -> Self {
        self.config.degraded.policy = policy;
        self
    }

    /// Validates and returns the configuration.
    pub fn build(self) -> Result<Config, ConfigError> {
        self.config.validate()?;
        Ok(self.config)
    }
}
