//! Health counters of the partition consumer and their metrics.
//!
//! Metrics (through the `metrics` facade; label `stream`, bounded like the
//! manager's metrics: never a partition or a worker — per-partition figures
//! are in `PartitionConsumer::health`):
//!
//! | name | kind | meaning |
//! |---|---|---|
//! | `parti_consumer_handled_total` | counter | messages whose handler returned `Ok` |
//! | `parti_consumer_retries_total` | counter | handler calls repeated after an error |
//! | `parti_consumer_dead_letters_total` | counter | messages given up after `max_deliver` attempts |
//! | `parti_consumer_duplicates_skipped_total` | counter | messages delivered again although already handled (a guard) |
//! | `parti_consumer_in_flight` | gauge | handler calls running |
//! | `parti_consumer_lag` | gauge | messages of the consumed partitions not yet delivered (sum) |
//! | `parti_consumer_partitions` | gauge | partitions being consumed |

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

/// Counters of one partition, shared by its task and `health()`.
#[derive(Debug, Default)]
pub(crate) struct PartitionStats {
    pub last_acked: AtomicU64,
    pub lag: AtomicU64,
    pub handled: AtomicU64,
    pub retries: AtomicU64,
    pub dead_letters: AtomicU64,
    pub in_flight: AtomicBool,
    /// Whether the task has set up its consumer and is reading.
    pub consuming: AtomicBool,
}

impl PartitionStats {
    pub(crate) fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }
}

/// Metric handles of one partition task (registered once, not per message).
pub(crate) struct PartitionMetrics {
    pub handled: metrics::Counter,
    pub retries: metrics::Counter,
    pub dead_letters: metrics::Counter,
    pub duplicates: metrics::Counter,
    pub in_flight: metrics::Gauge,
    pub lag: metrics::Gauge,
    pub partitions: metrics::Gauge,
}

impl PartitionMetrics {
    pub(crate) fn new(stream: &str) -> Self {
        let s = stream.to_string();
        PartitionMetrics {
            handled: metrics::counter!("parti_consumer_handled_total", "stream" => s.clone()),
            retries: metrics::counter!("parti_consumer_retries_total", "stream" => s.clone()),
            dead_letters: metrics::counter!("parti_consumer_dead_letters_total", "stream" => s.clone()),
            duplicates: metrics::counter!("parti_consumer_duplicates_skipped_total", "stream" => s.clone()),
            in_flight: metrics::gauge!("parti_consumer_in_flight", "stream" => s.clone()),
            lag: metrics::gauge!("parti_consumer_lag", "stream" => s.clone()),
            partitions: metrics::gauge!("parti_consumer_partitions", "stream" => s),
        }
    }
}
