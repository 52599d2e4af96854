//! Reading configuration files written for the Go library (`arloliu/parti`).
//!
//! The Go library's keys are camelCase and nested differently
//! (`workerIdTtl`, `electionTimeout`, `assignment.minRebalanceInterval`,
//! `degradedAlert.infoThreshold`, `kvBuckets.*`). A document is first read as
//! a plain tree; every Go key found is moved to the place of its Parti
//! counterpart (with its duration rewritten, Go style `1m30s` or `1.5s`, or an
//! integer count of nanoseconds), and every Go key that has no meaning here is
//! removed and reported as a [`ConfigWarning`]. What remains is read as a
//! Parti configuration, so a misspelt key is still refused.
//!
//! | Go key | Parti field | note |
//! |---|---|---|
//! | `workerIdPrefix`, `workerIdMin`, `workerIdMax` | `worker_id_prefix`, `worker_id_min`, `worker_id_max` | |
//! | `workerIdTtl` | `worker_id_ttl` | |
//! | `heartbeatInterval`, `heartbeatTtl` | `heartbeat_interval`, `heartbeat_ttl` | |
//! | `coldStartWindow`, `plannedScaleWindow` | `cold_start_window`, `planned_scale_window` | |
//! | `emergencyGracePeriod` | `emergency_grace` | `0` means the default (1.5 × heartbeat interval), as in Go |
//! | `restartDetectionRatio` | `restart_detection_ratio` | |
//! | `electionTimeout` | `election_ttl` | |
//! | `operationTimeout`, `shutdownTimeout` | `operation_timeout`, `shutdown_timeout` | unused in Go, enforced here |
//! | `startupTimeout` | `startup_timeout` | read as `startupTimeout` + 30 s: Go waits a fixed 30 s for the first assignment on top of it, Parti's bound covers the whole start |
//! | `rebalanceCooldown`, `assignment.minRebalanceInterval` | `rebalance_cooldown` | |
//! | `assignment.minRebalanceThreshold` | `imbalance_threshold` | never read by Go; the same meaning and default here |
//! | `degradedAlert.infoThreshold` … `criticalThreshold` | `alerts.info` … `alerts.critical` | |
//! | `degradedAlert.alertInterval` | `alerts.interval` | |
//! | `degradedBehavior.enterThreshold`, `exitThreshold` | `degraded.enter_after`, `degraded.exit_after` | |
//! | `degradedBehavior.recoveryGracePeriod` | `degraded.recovery_grace` | |
//! | `kvBuckets.*` | — (warning) | Parti's buckets differ in number and format; their names derive from `group` |
//! | `degradedBehavior.kvErrorThreshold`, `kvErrorWindow` | — (warning) | degraded mode is entered on unreachability only |
//! | `enableTwoPhaseHandoff`, `handoff.*` | — (warning) | every move is a two-version handoff here |

use super::ConfigError;
use serde_json::{Map, Value};
use std::fmt;

/// A setting of a Go configuration file that was not taken as written.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ConfigWarning {
    /// The Go setting has no meaning in Parti and was ignored.
    IgnoredGoSetting {
        /// Its path in the file (`kvBuckets.heartbeatBucket`).
        key: String,
        /// Why it has no meaning here.
        reason: &'static str,
    },
    /// The Go setting was taken with a different value, for the same effect.
    AdjustedGoSetting {
        /// Its path in the file.
        key: String,
        /// What was done.
        note: String,
    },
}

impl fmt::Display for ConfigWarning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigWarning::IgnoredGoSetting { key, reason } => {
                write!(f, "Go setting `{key}` ignored: {reason}")
            }
            ConfigWarning::AdjustedGoSetting { key, note } => {
                write!(f, "Go setting `{key}`: {note}")
            }
        }
    }
}

/// How a Go value becomes a Parti value.
#[derive(Clone, Copy)]
enum Conv {
    Same,
    Duration,
    /// A duration where 0 means "use the default" (the key is dropped).
    DurationZeroIsDefault,
    /// Go's start-up bound plus its fixed 30 s wait for the first assignment.
    StartupTimeout,
}

/// (Go path, Parti path, conversion).
const MOVED: &[(&str, &str, Conv)] = &[
    ("workerIdPrefix", "worker_id_prefix", Conv::Same),
    ("workerIdMin", "worker_id_min", Conv::Same),
    ("workerIdMax", "worker_id_max", Conv::Same),
    ("workerIdTtl", "worker_id_ttl", Conv::Duration),
    ("heartbeatInterval", "heartbeat_interval", Conv::Duration),
    ("heartbeatTtl", "heartbeat_ttl", Conv::Duration),
    ("coldStartWindow", "cold_start_window", Conv::Duration),
    ("plannedScaleWindow", "planned_scale_window", Conv::Duration),
    (
        "emergencyGracePeriod",
        "emergency_grace",
        Conv::DurationZeroIsDefault,
    ),
    (
        "restartDetectionRatio",
        "restart_detection_ratio",
        Conv::Same,
    ),
    ("operationTimeout", "operation_timeout", Conv::Duration),
    ("electionTimeout", "election_ttl", Conv::Duration),
    ("startupTimeout", "startup_timeout", Conv::StartupTimeout),
    ("shutdownTimeout", "shutdown_timeout", Conv::Duration),
    ("rebalanceCooldown", "rebalance_cooldown", Conv::Duration),
    (
        "assignment.minRebalanceInterval",
        "rebalance_cooldown",
        Conv::Duration,
    ),
    (
        "assignment.minRebalanceThreshold",
        "imbalance_threshold",
        Conv::Same,
    ),
    ("degradedAlert.infoThreshold", "alerts.info", Conv::Duration),
    ("degradedAlert.warnThreshold", "alerts.warn", Conv::Duration),
    (
        "degradedAlert.errorThreshold",
        "alerts.error",
        Conv::Duration,
    ),
    (
        "degradedAlert.criticalThreshold",
        "alerts.critical",
        Conv::Duration,
    ),
    (
        "degradedAlert.alertInterval",
        "alerts.interval",
        Conv::Duration,
    ),
    (
        "degradedBehavior.enterThreshold",
        "degraded.enter_after",
        Conv::Duration,
    ),
    (
        "degradedBehavior.exitThreshold",
        "degraded.exit_after",
        Conv::Duration,
    ),
    (
        "degradedBehavior.recoveryGracePeriod",
        "degraded.recovery_grace",
        Conv::Duration,
    ),
];

const BUCKETS_DIFFER: &str = "Parti keeps a group in three buckets of its own format, named after `group` (parti_<group>_members, _leader, _assignments); set `group` instead";

/// Go keys (or whole Go sections) with no meaning here, and why.
const IGNORED: &[(&str, &str)] = &[
    ("kvBuckets", BUCKETS_DIFFER),
    (
        "degradedBehavior.kvErrorThreshold",
        "degraded mode is entered when the store is unreachable for `degraded.enter_after`, not on an error count",
    ),
    (
        "degradedBehavior.kvErrorWindow",
        "degraded mode is entered when the store is unreachable for `degraded.enter_after`, not on an error count",
    ),
    (
        "enableTwoPhaseHandoff",
        "every move is a two-version handoff (revoke, then grant) in Parti",
    ),
    (
        "handoff",
        "every move is a two-version handoff (revoke, then grant) in Parti; it has no tuning knobs",
    ),
];

/// Go's fixed wait for the first assignment, on top of its `startupTimeout`.
const GO_ASSIGNMENT_WAIT_MS: u128 = 30_000;

/// Moves the Go keys of `tree` to their Parti places. Returns whether any Go
/// key was found, and the warnings.
pub(super) fn translate(tree: &mut Value) -> Result<(bool, Vec<ConfigWarning>), ConfigError> {
    let mut warnings = Vec::new();
    let mut found = false;
    let Some(root) = tree.as_object_mut() else {
        return Ok((false, warnings));
    };
    for (from, to, conv) in MOVED {
        let Some(value) = take(root, from) else {
            continue;
        };
        found = true;
        let converted = match conv {
            Conv::Same => Some(value),
            Conv::Duration => Some(Value::String(format!("{}ms", go_millis(from, &value)?))),
            Conv::DurationZeroIsDefault => match go_millis(from, &value)? {
                0 => None,
                ms => Some(Value::String(format!("{ms}ms"))),
            },
            Conv::StartupTimeout => {
                let ms = go_millis(from, &value)?.saturating_add(GO_ASSIGNMENT_WAIT_MS);
                warnings.push(ConfigWarning::AdjustedGoSetting {
                    key: (*from).to_string(),
                    note: format!(
                        "read as startup_timeout = {ms}ms: Go waits another 30s for the first assignment, Parti's bound covers the whole start"
                    ),
                });
                Some(Value::String(format!("{ms}ms")))
            }
        };
        if let Some(v) = converted {
            put(root, to, v);
        }
    }
    for (key, reason) in IGNORED {
        if let Some(value) = take(root, key) {
            found = true;
            // Name every setting of an ignored section.
            let mut keys = Vec::new();
            leaf_keys(key, &value, &mut keys);
            for key in keys {
                warnings.push(ConfigWarning::IgnoredGoSetting { key, reason });
            }
        }
    }
    // Sections emptied by the moves are Go's, not Parti's.
    for section in ["assignment", "degradedAlert", "degradedBehavior"] {
        if root
            .get(section)
            .and_then(Value::as_object)
            .is_some_and(Map::is_empty)
        {
            root.remove(section);
        }
    }
    Ok((found, warnings))
}

fn leaf_keys(path: &str, value: &Value, out: &mut Vec<String>) {
    match value.as_object() {
        Some(map) if !map.is_empty() => {
            for (k, v) in map {
                leaf_keys(&format!("{path}.{k}"), v, out);
            }
        }
        _ => out.push(path.to_string()),
    }
}

/// Removes the value at a dotted path.
fn take(root: &mut Map<String, Value>, path: &str) -> Option<Value> {
    match path.split_once('.') {
        None => root.remove(path),
        Some((head, rest)) => take(root.get_mut(head)?.as_object_mut()?, rest),
    }
}

/// Sets the value at a dotted path, creating sections; a value already
/// there (written the Parti way) wins.
fn put(root: &mut Map<String, Value>, path: &str, value: Value) {
    match path.split_once('.') {
        None => {
            root.entry(path.to_string()).or_insert(value);
        }
        Some((head, rest)) => {
            let section = root
                .entry(head.to_string())
                .or_insert_with(|| Value::Object(Map::new()));
            if let Some(map) = section.as_object_mut() {
                put(map, rest, value);
            }
        }
    }
}

/// A Go duration in milliseconds: a string such as `30s`, `1m30s`, `1.5s`,
/// `250ms`, `2h`, or an integer count of nanoseconds (how Go marshals a
/// `time.Duration` as a number). Below a millisecond rounds up to 1 ms (0
/// stays 0).
fn go_millis(key: &str, value: &Value) -> Result<u128, ConfigError> {
    let bad = |why: &str| ConfigError::Parse(format!("Go setting `{key}`: {why}"));
    let nanos: u128 = match value {
        Value::Number(n) => n
            .as_u64()
            .map(u128::from)
            .ok_or_else(|| bad("a duration in nanoseconds must be a non-negative integer"))?,
        Value::String(s) => parse_go_duration(s).map_err(|why| bad(&why))?,
        _ => return Err(bad("expected a duration such as \"30s\"")),
    };
    Ok(nanos.div_ceil(1_000_000))
}

/// Parses Go's `time.ParseDuration` syntax (unsigned): a sequence of decimal
/// numbers, each with an optional fraction and a unit (`ns`, `us`, `µs`, `ms`,
/// `s`, `m`, `h`); `0` alone is allowed. Returns nanoseconds.
fn parse_go_duration(text: &str) -> Result<u128, String> {
    let s = text.trim();
    if s == "0" {
        return Ok(0);
    }
    if s.is_empty() {
        return Err("empty duration".into());
    }
    let mut total: u128 = 0;
    let mut rest = s;
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(|| format!("missing unit in duration {text:?}"))?;
        let (number, tail) = rest.split_at(digits);
        let unit_len = tail
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(tail.len());
        let (unit, next) = tail.split_at(unit_len);
        let scale: u128 = match unit {
            "ns" => 1,
            "us" | "µs" | "μs" => 1_000,
            "ms" => 1_000_000,
            "s" => 1_000_000_000,
            "m" => 60_000_000_000,
            "h" => 3_600_000_000_000,
            _ => return Err(format!("unknown unit {unit:?} in duration {text:?}")),
        };
        let (whole, frac) = number.split_once('.').unwrap_or((number, ""));
        if whole.is_empty() && frac.is_empty() {
            return Err(format!("missing number in duration {text:?}"));
        }
        let whole: u128 = if whole.is_empty() {
            0
        } else {
            whole
                .parse()
                .map_err(|_| format!("bad number in duration {text:?}"))?
        };
        let mut part = whole.saturating_mul(scale);
        let mut place = scale;
        for d in frac.chars() {
            let digit = d
                .to_digit(10)
                .ok_or_else(|| format!("bad number in duration {text:?}"))?;
            place /= 10;
            part = part.saturating_add(u128::from(digit) * place);
        }
        total = total.saturating_add(part);
        rest = next;
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_durations() {
        let ms = |s: &str| parse_go_duration(s).map(|n| n / 1_000_000);
        assert_eq!(ms("30s"), Ok(30_000));
        assert_eq!(ms("1m30s"), Ok(90_000));
        assert_eq!(ms("1.5s"), Ok(1_500));
        assert_eq!(ms("250ms"), Ok(250));
        assert_eq!(ms("2h"), Ok(7_200_000));
        assert_eq!(ms("0"), Ok(0));
        assert_eq!(parse_go_duration("1500us"), Ok(1_500_000));
        assert!(parse_go_duration("10").is_err());
        assert!(parse_go_duration("3 days").is_err());
        assert!(parse_go_duration("").is_err());
        assert!(parse_go_duration("-1s").is_err());
        assert_eq!(
            go_millis("k", &Value::from(2_000_000_000u64)),
            Ok(2_000),
            "integers are nanoseconds"
        );
    }
}
