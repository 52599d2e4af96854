//! Metrics, through the `metrics` facade (install any recorder, e.g.
//! `metrics-exporter-prometheus`, in the application). Names:
//!
//! | name | kind | labels |
//! |---|---|---|
//! | `parti_state_transitions_total` | counter | group, from, to |
//! | `parti_is_leader` | gauge | group |
//! | `parti_assigned_partitions` | gauge | group |
//! | `parti_assignment_version` | gauge | group |
//! | `parti_assignment_changes_total` | counter | group, kind = added/removed |
//! | `parti_publications_total` | counter | group |
//! | `parti_backend_errors_total` | counter | op |
//! | `parti_degraded_alerts_total` | counter | group, level |
//! | `parti_skipped_values` | gauge | group |

use crate::view::Assignment;
use parti_core::{AlertLevel, State};

pub(crate) fn state_changed(group: &str, from: State, to: State) {
    metrics::counter!("parti_state_transitions_total", "group" => group.to_string(), "from" => from.to_string(), "to" => to.to_string())
        .increment(1);
}

pub(crate) fn leader(group: &str, leader: bool) {
    metrics::gauge!("parti_is_leader", "group" => group.to_string()).set(if leader {
        1.0
    } else {
        0.0
    });
}

pub(crate) fn assignment(group: &str, view: &Assignment, added: usize, removed: usize) {
    metrics::gauge!("parti_assigned_partitions", "group" => group.to_string())
        .set(view.len() as f64);
    metrics::gauge!("parti_assignment_version", "group" => group.to_string())
        .set(view.version as f64);
    metrics::counter!("parti_assignment_changes_total", "group" => group.to_string(), "kind" => "added").increment(added as u64);
    metrics::counter!("parti_assignment_changes_total", "group" => group.to_string(), "kind" => "removed").increment(removed as u64);
}

pub(crate) fn published(group: &str) {
    metrics::counter!("parti_publications_total", "group" => group.to_string()).increment(1);
}

pub(crate) fn backend_error(op: &'static str) {
    metrics::counter!("parti_backend_errors_total", "op" => op).increment(1);
}

pub(crate) fn degraded_alert(group: &str, level: AlertLevel) {
    metrics::counter!("parti_degraded_alerts_total", "group" => group.to_string(), "level" => format!("{level:?}")).increment(1);
}

pub(crate) fn skipped_values(group: &str, n: u64) {
    metrics::gauge!("parti_skipped_values", "group" => group.to_string()).set(n as f64);
}
