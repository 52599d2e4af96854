//! Metrics, through the [`metrics`](https://docs.rs/metrics) facade: install
//! any recorder in the application (e.g. `metrics-exporter-prometheus`, as the
//! `metrics` example does) and call [`describe`] once to give every metric its
//! help text and unit.
//!
//! [`ALL`] lists every metric (name, kind, labels, meaning); the table in
//! `docs/metrics.md` is the same list. Labels are bounded: the group, a state,
//! a level, a reason, an operation — never a partition or a worker ID. A
//! process is expected to run one worker per group (gauges of two managers of
//! the same group in one process overwrite each other).
//!
//! Gauges are set when their value changes; counters and histograms that only
//! move on an event (alerts, backend errors, handoffs) appear at their first
//! event.

use crate::view::Assignment;
use metrics::Label;
use parti_core::records::Lifecycle;
use parti_core::{AlertLevel, State, Worker};
use std::time::Instant;

/// The kind of a metric.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MetricKind {
    /// Only grows.
    Counter,
    /// Goes up and down.
    Gauge,
    /// A distribution of observed values.
    Histogram,
}

/// One metric Parti emits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MetricInfo {
    /// The name (Prometheus style).
    pub name: &'static str,
    /// Counter, gauge or histogram.
    pub kind: MetricKind,
    /// Label names.
    pub labels: &'static [&'static str],
    /// What it means.
    pub help: &'static str,
    /// Whether it appears only after a specific event (a degraded alert, a
    /// backend error, a completed handoff) rather than as soon as a worker
    /// runs.
    pub on_event: bool,
}

/// `parti_state_transitions_total`.
pub const STATE_TRANSITIONS: &str = "parti_state_transitions_total";
/// `parti_worker_state`.
pub const WORKER_STATE: &str = "parti_worker_state";
/// `parti_is_leader`.
pub const IS_LEADER: &str = "parti_is_leader";
/// `parti_degraded`.
pub const DEGRADED: &str = "parti_degraded";
/// `parti_degraded_alert_level`.
pub const ALERT_LEVEL: &str = "parti_degraded_alert_level";
/// `parti_degraded_alerts_total`.
pub const DEGRADED_ALERTS: &str = "parti_degraded_alerts_total";
/// `parti_assigned_partitions`.
pub const ASSIGNED_PARTITIONS: &str = "parti_assigned_partitions";
/// `parti_assigned_weight`.
pub const ASSIGNED_WEIGHT: &str = "parti_assigned_weight";
/// `parti_assignment_version`.
pub const ASSIGNMENT_VERSION: &str = "parti_assignment_version";
/// `parti_committed_version`.
pub const COMMITTED_VERSION: &str = "parti_committed_version";
/// `parti_assignment_version_lag`.
pub const VERSION_LAG: &str = "parti_assignment_version_lag";
/// `parti_assignment_changes_total`.
pub const ASSIGNMENT_CHANGES: &str = "parti_assignment_changes_total";
/// `parti_publications_total`.
pub const PUBLICATIONS: &str = "parti_publications_total";
/// `parti_rebalances_total`.
pub const REBALANCES: &str = "parti_rebalances_total";
/// `parti_handoff_duration_seconds`.
pub const HANDOFF_DURATION: &str = "parti_handoff_duration_seconds";
/// `parti_backend_errors_total`.
pub const BACKEND_ERRORS: &str = "parti_backend_errors_total";
/// `parti_skipped_values`.
pub const SKIPPED_VALUES: &str = "parti_skipped_values";

const fn info(
    name: &'static str,
    kind: MetricKind,
    labels: &'static [&'static str],
    help: &'static str,
    on_event: bool,
) -> MetricInfo {
    MetricInfo {
        name,
        kind,
        labels,
        help,
        on_event,
    }
}

/// Every metric Parti emits.
pub const ALL: &[MetricInfo] = &[
    info(
        STATE_TRANSITIONS,
        MetricKind::Counter,
        &["group", "from", "to"],
        "State transitions of this worker.",
        false,
    ),
    info(
        WORKER_STATE,
        MetricKind::Gauge,
        &["group", "state"],
        "1 for the state the worker is in, 0 for every other state.",
        false,
    ),
    info(
        IS_LEADER,
        MetricKind::Gauge,
        &["group"],
        "1 while this worker leads the group.",
        false,
    ),
    info(
        DEGRADED,
        MetricKind::Gauge,
        &["group"],
        "1 while this worker is in degraded mode (cut off from NATS).",
        false,
    ),
    info(
        ALERT_LEVEL,
        MetricKind::Gauge,
        &["group"],
        "Level of the last degraded alert while degraded: 0 none, 1 info, 2 warn, 3 error, 4 critical.",
        false,
    ),
    info(
        DEGRADED_ALERTS,
        MetricKind::Counter,
        &["group", "level"],
        "Degraded alerts emitted (the same schedule as on_degraded_alert).",
        true,
    ),
    info(
        ASSIGNED_PARTITIONS,
        MetricKind::Gauge,
        &["group"],
        "Partitions this worker owns.",
        false,
    ),
    info(
        ASSIGNED_WEIGHT,
        MetricKind::Gauge,
        &["group"],
        "Total weight of the partitions this worker owns.",
        false,
    ),
    info(
        ASSIGNMENT_VERSION,
        MetricKind::Gauge,
        &["group"],
        "Assignment version this worker applied (0 before the first).",
        false,
    ),
    info(
        COMMITTED_VERSION,
        MetricKind::Gauge,
        &["group"],
        "Highest committed assignment version this worker has seen.",
        false,
    ),
    info(
        VERSION_LAG,
        MetricKind::Gauge,
        &["group"],
        "Committed version seen minus version applied: how far this worker is behind.",
        false,
    ),
    info(
        ASSIGNMENT_CHANGES,
        MetricKind::Counter,
        &["group", "kind"],
        "Partitions gained (kind=added) and given up (kind=removed) by this worker.",
        false,
    ),
    info(
        PUBLICATIONS,
        MetricKind::Counter,
        &["group"],
        "Assignment versions committed by this worker as leader.",
        false,
    ),
    info(
        REBALANCES,
        MetricKind::Counter,
        &["group", "reason"],
        "Assignment versions committed by this worker as leader, by reason: cold_start, takeover, planned_scale, emergency, refresh, handoff.",
        false,
    ),
    info(
        HANDOFF_DURATION,
        MetricKind::Histogram,
        &["group"],
        "Leader: seconds from the version that revoked moving partitions to the version that granted the last of them.",
        true,
    ),
    info(
        BACKEND_ERRORS,
        MetricKind::Counter,
        &["op"],
        "Store operations that failed as unreachable or timed out, by operation.",
        true,
    ),
    info(
        SKIPPED_VALUES,
        MetricKind::Gauge,
        &["group"],
        "Values of the watch that could not be decoded and were skipped.",
        false,
    ),
];

/// Registers the help text (and unit) of every metric in [`ALL`] with the
/// installed recorder. Call it once, after installing the recorder.
pub fn describe() {
    for m in ALL {
        let unit = m
            .name
            .ends_with("_seconds")
            .then_some(metrics::Unit::Seconds);
        match (m.kind, unit) {
            (MetricKind::Counter, _) => metrics::describe_counter!(m.name, m.help),
            (MetricKind::Gauge, _) => metrics::describe_gauge!(m.name, m.help),
            (MetricKind::Histogram, Some(unit)) => {
                metrics::describe_histogram!(m.name, unit, m.help)
            }
            (MetricKind::Histogram, None) => metrics::describe_histogram!(m.name, m.help),
        }
    }
}

/// Every state, in the order of the state table.
const STATES: [State; 10] = [
    State::Init,
    State::ClaimingId,
    State::Election,
    State::WaitingAssignment,
    State::Stable,
    State::Scaling,
    State::Rebalancing,
    State::Emergency,
    State::Degraded,
    State::Shutdown,
];

fn lifecycle_label(lifecycle: Lifecycle) -> &'static str {
    match lifecycle {
        Lifecycle::ColdStart => "cold_start",
        Lifecycle::Takeover => "takeover",
        Lifecycle::PlannedScale => "planned_scale",
        Lifecycle::Emergency => "emergency",
        Lifecycle::Refresh => "refresh",
        Lifecycle::Handoff => "handoff",
    }
}

fn level_label(level: AlertLevel) -> &'static str {
    match level {
        AlertLevel::Info => "info",
        AlertLevel::Warn => "warn",
        AlertLevel::Error => "error",
        AlertLevel::Critical => "critical",
    }
}

fn level_value(level: AlertLevel) -> u8 {
    match level {
        AlertLevel::Info => 1,
        AlertLevel::Warn => 2,
        AlertLevel::Error => 3,
        AlertLevel::Critical => 4,
    }
}

/// The gauge values last written, so that a gauge is written only when its
/// value changes.
#[derive(Clone, Copy, Debug, PartialEq)]
struct Gauges {
    state: State,
    leader: bool,
    degraded: bool,
    alert_level: u8,
    partitions: usize,
    weight: u64,
    applied: u64,
    committed: u64,
    skipped: u64,
}

/// The metrics of one driver: the gauges it last wrote, the alert level and
/// the start of the handoff under way.
#[derive(Debug)]
pub(crate) struct Recorder {
    /// `group` and the labels added with `ManagerBuilder::metrics_label`.
    labels: Vec<Label>,
    written: Option<Gauges>,
    alert_level: u8,
    weight: u64,
    handoff_started: Option<Instant>,
}

impl Recorder {
    pub(crate) fn new(group: &str, extra: Vec<(String, String)>) -> Self {
        let mut labels = vec![Label::new("group", group.to_string())];
        labels.extend(extra.into_iter().map(|(k, v)| Label::new(k, v)));
        Recorder {
            labels,
            written: None,
            alert_level: 0,
            weight: 0,
            handoff_started: None,
        }
    }

    /// Writes every gauge whose value changed since the last call. `state`
    /// overrides the worker's state (the driver ends an abandoned worker in
    /// `Shutdown` itself).
    pub(crate) fn observe(&mut self, worker: &Worker, state: Option<State>) {
        let degraded = worker.is_degraded();
        if !degraded {
            self.alert_level = 0;
        }
        let applied = worker.assignment_version();
        let now = Gauges {
            state: state.unwrap_or_else(|| worker.state()),
            leader: worker.is_leader(),
            degraded,
            alert_level: self.alert_level,
            partitions: worker.owned_count(),
            weight: self.weight,
            applied,
            committed: worker.committed_version().unwrap_or(applied),
            skipped: worker.skipped_values(),
        };
        if self.written == Some(now) {
            return;
        }
        let before = self.written;
        let g = || self.labels.clone();
        if before.is_none_or(|b| b.state != now.state) {
            for s in STATES {
                let fresh = before.is_none();
                let was = before.is_some_and(|b| b.state == s);
                if fresh || was || s == now.state {
                    let value = if s == now.state { 1.0 } else { 0.0 };
                    metrics::gauge!(WORKER_STATE, self.with("state", s.to_string())).set(value);
                }
            }
        }
        if before.is_none_or(|b| b.leader != now.leader) {
            metrics::gauge!(IS_LEADER, g()).set(flag(now.leader));
        }
        if before.is_none_or(|b| b.degraded != now.degraded) {
            metrics::gauge!(DEGRADED, g()).set(flag(now.degraded));
        }
        if before.is_none_or(|b| b.alert_level != now.alert_level) {
            metrics::gauge!(ALERT_LEVEL, g()).set(f64::from(now.alert_level));
        }
        if before.is_none_or(|b| b.partitions != now.partitions) {
            metrics::gauge!(ASSIGNED_PARTITIONS, g()).set(now.partitions as f64);
        }
        if before.is_none_or(|b| b.weight != now.weight) {
            metrics::gauge!(ASSIGNED_WEIGHT, g()).set(now.weight as f64);
        }
        if before.is_none_or(|b| b.applied != now.applied) {
            metrics::gauge!(ASSIGNMENT_VERSION, g()).set(now.applied as f64);
        }
        if before.is_none_or(|b| b.committed != now.committed) {
            metrics::gauge!(COMMITTED_VERSION, g()).set(now.committed as f64);
        }
        if before.is_none_or(|b| (b.committed, b.applied) != (now.committed, now.applied)) {
            let lag = now.committed.saturating_sub(now.applied);
            metrics::gauge!(VERSION_LAG, g()).set(lag as f64);
        }
        if before.is_none_or(|b| b.skipped != now.skipped) {
            metrics::gauge!(SKIPPED_VALUES, g()).set(now.skipped as f64);
        }
        if before.is_none() {
            // Register the counters of the regular life of a worker, so that a
            // scrape shows them (at 0) from the start.
            for kind in ["added", "removed"] {
                metrics::counter!(ASSIGNMENT_CHANGES, self.with("kind", kind)).increment(0);
            }
            metrics::counter!(PUBLICATIONS, g()).increment(0);
        }
        self.written = Some(now);
    }

    /// The labels of this recorder plus one more.
    fn with(&self, key: &'static str, value: impl Into<metrics::SharedString>) -> Vec<Label> {
        let mut labels = self.labels.clone();
        labels.push(Label::new(key, value));
        labels
    }

    pub(crate) fn state_changed(&self, from: State, to: State) {
        let mut labels = self.with("from", from.to_string());
        labels.push(Label::new("to", to.to_string()));
        metrics::counter!(STATE_TRANSITIONS, labels).increment(1);
    }

    pub(crate) fn assignment_changed(&mut self, view: &Assignment, added: usize, removed: usize) {
        self.weight = view
            .partitions
            .iter()
            .fold(0u64, |sum, p| sum.saturating_add(p.partition.weight));
        metrics::counter!(ASSIGNMENT_CHANGES, self.with("kind", "added")).increment(added as u64);
        metrics::counter!(ASSIGNMENT_CHANGES, self.with("kind", "removed"))
            .increment(removed as u64);
    }

    /// The leader committed a version. A handoff starts at the first version
    /// that leaves moves waiting for a release and ends at the first one that
    /// leaves none.
    pub(crate) fn published(&mut self, lifecycle: Lifecycle, handoff_pending: bool) {
        metrics::counter!(PUBLICATIONS, self.labels.clone()).increment(1);
        metrics::counter!(REBALANCES, self.with("reason", lifecycle_label(lifecycle))).increment(1);
        match (handoff_pending, self.handoff_started) {
            (true, None) => self.handoff_started = Some(Instant::now()),
            (false, Some(started)) => {
                self.handoff_started = None;
                metrics::histogram!(HANDOFF_DURATION, self.labels.clone())
                    .record(started.elapsed().as_secs_f64());
            }
            _ => {}
        }
    }

    pub(crate) fn leadership_changed(&mut self, leader: bool) {
        if !leader {
            self.handoff_started = None;
        }
    }

    pub(crate) fn degraded_alert(&mut self, level: AlertLevel) {
        self.alert_level = level_value(level);
        metrics::counter!(DEGRADED_ALERTS, self.with("level", level_label(level))).increment(1);
    }
}

fn flag(on: bool) -> f64 {
    if on { 1.0 } else { 0.0 }
}

/// A store operation failed as unreachable or timed out.
pub(crate) fn backend_error(op: &'static str) {
    metrics::counter!(BACKEND_ERRORS, "op" => op).increment(1);
}

#[cfg(test)]
mod tests {
    use super::*;
    use metrics::{
        Counter, CounterFn, Gauge, GaugeFn, Histogram, HistogramFn, Key, KeyName, Metadata,
        SharedString, Unit,
    };
    use parti_core::{Config, InstanceId, Instant as CoreInstant};
    use std::collections::BTreeMap;
    use std::sync::{Arc, Mutex};

    /// Values by `name{label=value,...}`; histograms keep every observation.
    #[derive(Default)]
    struct Store {
        values: BTreeMap<String, f64>,
        observed: BTreeMap<String, Vec<f64>>,
    }

    #[derive(Clone, Default)]
    struct Capture(Arc<Mutex<Store>>);

    struct Cell {
        key: String,
        store: Arc<Mutex<Store>>,
    }

    impl Cell {
        fn update(&self, f: impl FnOnce(&mut f64)) {
            let mut s = self.store.lock().unwrap();
            f(s.values.entry(self.key.clone()).or_insert(0.0));
        }
    }

    impl CounterFn for Cell {
        fn increment(&self, value: u64) {
            self.update(|v| *v += value as f64);
        }
        fn absolute(&self, value: u64) {
            self.update(|v| *v = value as f64);
        }
    }

    impl GaugeFn for Cell {
        fn increment(&self, value: f64) {
            self.update(|v| *v += value);
        }
        fn decrement(&self, value: f64) {
            self.update(|v| *v -= value);
        }
        fn set(&self, value: f64) {
            self.update(|v| *v = value);
        }
    }

    impl HistogramFn for Cell {
        fn record(&self, value: f64) {
            let mut s = self.store.lock().unwrap();
            s.observed.entry(self.key.clone()).or_default().push(value);
        }
    }

    impl Capture {
        fn cell(&self, key: &Key) -> Arc<Cell> {
            let labels: Vec<String> = key
                .labels()
                .map(|l| format!("{}={}", l.key(), l.value()))
                .collect();
            Arc::new(Cell {
                key: format!("{}{{{}}}", key.name(), labels.join(",")),
                store: self.0.clone(),
            })
        }

        fn value(&self, key: &str) -> Option<f64> {
            self.0.lock().unwrap().values.get(key).copied()
        }

        fn observed(&self, key: &str) -> usize {
            self.0.lock().unwrap().observed.get(key).map_or(0, Vec::len)
        }
    }

    impl metrics::Recorder for Capture {
        fn describe_counter(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
        fn describe_gauge(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
        fn describe_histogram(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
        fn register_counter(&self, key: &Key, _: &Metadata<'_>) -> Counter {
            Counter::from_arc(self.cell(key))
        }
        fn register_gauge(&self, key: &Key, _: &Metadata<'_>) -> Gauge {
            Gauge::from_arc(self.cell(key))
        }
        fn register_histogram(&self, key: &Key, _: &Metadata<'_>) -> Histogram {
            Histogram::from_arc(self.cell(key))
        }
    }

    fn worker() -> Worker {
        Worker::new(
            Config::default(),
            Arc::new(parti_strategies::default_strategy()),
            InstanceId(1),
            CoreInstant::from_millis(0),
        )
    }

    #[test]
    fn a_fresh_worker_shows_every_gauge_and_its_state_one_hot() {
        let capture = Capture::default();
        metrics::with_local_recorder(&capture, || {
            let mut r = Recorder::new("g", vec![("member".into(), "a".into())]);
            r.observe(&worker(), None);
        });
        let v = |k: &str| capture.value(k);
        assert_eq!(
            v("parti_worker_state{group=g,member=a,state=Init}"),
            Some(1.0)
        );
        assert_eq!(
            v("parti_worker_state{group=g,member=a,state=Stable}"),
            Some(0.0)
        );
        for gauge in [
            IS_LEADER,
            DEGRADED,
            ALERT_LEVEL,
            ASSIGNED_PARTITIONS,
            ASSIGNED_WEIGHT,
            ASSIGNMENT_VERSION,
            COMMITTED_VERSION,
            VERSION_LAG,
            SKIPPED_VALUES,
        ] {
            assert_eq!(
                v(&format!("{gauge}{{group=g,member=a}}")),
                Some(0.0),
                "{gauge}"
            );
        }
        assert_eq!(v("parti_publications_total{group=g,member=a}"), Some(0.0));
        // The override ends an abandoned worker in Shutdown.
        metrics::with_local_recorder(&capture, || {
            let mut r = Recorder::new("g", Vec::new());
            r.observe(&worker(), Some(State::Shutdown));
        });
        assert_eq!(v("parti_worker_state{group=g,state=Shutdown}"), Some(1.0));
        assert_eq!(v("parti_worker_state{group=g,state=Init}"), Some(0.0));
    }

    #[test]
    fn a_handoff_is_timed_from_its_revoke_to_its_last_grant() {
        let capture = Capture::default();
        metrics::with_local_recorder(&capture, || {
            let mut r = Recorder::new("g", Vec::new());
            r.published(Lifecycle::PlannedScale, true);
            r.published(Lifecycle::Handoff, true);
            r.published(Lifecycle::Handoff, false);
            // One that ends with leadership lost is not timed.
            r.published(Lifecycle::Refresh, true);
            r.leadership_changed(false);
            r.published(Lifecycle::Handoff, false);
            // A version without waiting moves is no handoff.
            r.published(Lifecycle::Emergency, false);
        });
        assert_eq!(
            capture.observed("parti_handoff_duration_seconds{group=g}"),
            1
        );
        let v = |k: &str| capture.value(k);
        assert_eq!(v("parti_publications_total{group=g}"), Some(6.0));
        assert_eq!(
            v("parti_rebalances_total{group=g,reason=handoff}"),
            Some(3.0)
        );
        assert_eq!(
            v("parti_rebalances_total{group=g,reason=planned_scale}"),
            Some(1.0)
        );
        assert_eq!(
            v("parti_rebalances_total{group=g,reason=emergency}"),
            Some(1.0)
        );
    }

    #[test]
    fn the_alert_level_is_held_while_degraded_and_cleared_after() {
        let capture = Capture::default();
        metrics::with_local_recorder(&capture, || {
            let mut r = Recorder::new("g", Vec::new());
            r.degraded_alert(AlertLevel::Warn);
            assert_eq!(r.alert_level, 2);
            // A worker that is not degraded clears it.
            r.observe(&worker(), None);
            assert_eq!(r.alert_level, 0);
        });
        assert_eq!(
            capture.value("parti_degraded_alerts_total{group=g,level=warn}"),
            Some(1.0)
        );
        assert_eq!(
            capture.value("parti_degraded_alert_level{group=g}"),
            Some(0.0)
        );
    }

    #[test]
    fn names_are_unique_and_labels_bounded() {
        let mut names: Vec<&str> = ALL.iter().map(|m| m.name).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), ALL.len(), "duplicate metric name");
        for m in ALL {
            assert!(m.name.starts_with("parti_"), "{}", m.name);
            assert!(
                !m.labels
                    .iter()
                    .any(|l| matches!(*l, "partition" | "worker" | "worker_id")),
                "{} has an unbounded label",
                m.name
            );
            let counter = m.name.ends_with("_total");
            assert_eq!(counter, m.kind == MetricKind::Counter, "{}", m.name);
        }
    }

    #[test]
    fn every_metric_is_in_the_docs_table() {
        let docs = include_str!("../../docs/metrics.md");
        for m in ALL {
            assert!(
                docs.contains(&format!("`{}`", m.name)),
                "docs/metrics.md does not document {}",
                m.name
            );
        }
    }
}
