//! [`PartitionConsumer`]: consume exactly the partitions this worker owns from
//! a JetStream stream, in order per partition, handing each message over
//! together with its partition and fencing epoch.
//!
//! # Design
//!
//! **One ordered consumer per owned partition.** Each partition this worker
//! owns gets a JetStream pull consumer of its own (named ephemeral, filter =
//! the partition's subject) and a task that reads it and calls the handler
//! one message at a time, in stream order. Partitions run in parallel; a
//! semaphore bounds the handler calls running at once
//! ([`PartitionConsumerBuilder::max_concurrency`]). A consumer per partition
//! (rather than one per worker whose filter subjects are rewritten) is what
//! makes a handoff exact: a new consumer starts at an explicit stream sequence
//! (`DeliverPolicy::ByStartSequence`), whereas a filter subject added to an
//! existing consumer does not rewind, and an empty filter list means "every
//! subject". With no partition owned, no consumer exists: nothing is consumed.
//!
//! **No server acknowledgements.** The consumers use `AckPolicy::None`: the
//! server delivers in stream order without tracking pending messages, and
//! nothing is redelivered behind our back (a redelivery could only overtake
//! the partition's order). At-least-once comes from the progress entry below,
//! not from ack state: a consumer is always (re)created right after the last
//! message handled, and a new owner starts right after the recorded
//! progress. Measured on nats-server 2.15 (see BENCHMARKS.md), this halves
//! the server's work per message against per-message acks, and costs less
//! than cumulative acks (which make the server track every delivered
//! message); what remains is the server's filtered read (it scans the
//! interleaved messages of the other partitions), which a single consumer
//! per worker with many filter subjects does not avoid either (it measured
//! slower).
//!
//! **Errors, order and dead letters.** A handler error is retried on the same
//! message, in place, after a backoff (so later messages of the partition wait
//! and order is kept). After `max_deliver` attempts the dead-letter callback is
//! called and the partition goes on past the message.
//!
//! **Progress and handoff.** How far a partition is done (the last stream
//! sequence handled) lives in a KV bucket the consumer creates for itself
//! (`parti-progress-<name>`), one entry per partition with the owner's epoch and
//! consumer name; every write is a compare-and-set refused to a lower epoch.
//!
//! - *Grant*: read the entry; if it names a consumer of a previous owner (which
//!   crashed without handing over), delete that consumer; write the entry with
//!   our epoch and consumer name; create our consumer starting right after
//!   the recorded sequence. Grants run in the background: the assignment
//!   hook does not wait for them.
//! - *While consuming*: a background writer records the last sequence
//!   handled as soon as a message was handled, one write at a time and at
//!   most once per [`PartitionConsumerBuilder::progress_interval`] (default
//!   20 ms): per message for a quiet partition, coalesced for a busy one,
//!   never in the handler's way.
//!   A write refused by the fence (a later owner claimed the entry: this
//!   worker was paused past its lease) stops the partition at once.
//! - *Revoke*: stop fetching, let the message in flight finish (a retry pause
//!   is cut short: that message stays for the next owner); from then on no
//!   handler runs for the partition here. Then write the entry (sequence
//!   reached, our epoch, no consumer) with one compare-and-set and delete our
//!   consumer. [`PartitionConsumer::apply`] waits for this up to a deadline
//!   (half the hook budget through the facade; one KV round trip in
//!   practice); a write still running then finishes in the background, and a
//!   late write cannot clobber the next owner's claim (compare-and-set).
//! - *Crash*: the next owner starts after the crashed worker's last
//!   completed progress write, so what it handles again is the message in
//!   flight at the crash and those handled while the last write was on its
//!   way (or, in a busy partition, within the last `progress_interval`);
//!   none is skipped. The same holds if a revoke's final write fails.
//!
//! The consumers keep their state in memory (replicated like the stream):
//! it holds nothing the handoff needs. The
//! progress bucket stays on the server after `leave()`: it is the group's,
//! not the worker's.
//!
//! Parti's leader grants a revoked partition to someone else only after the
//! old owner's `on_assignment_changed` hook returned, so the revoke must run
//! *inside* that hook: the facade's `ManagerBuilder::consumer` wraps the
//! application's hooks so that every assignment change first goes through
//! [`PartitionConsumer::apply`] (revokes awaited, grants started). Following an
//! assignment watch channel instead would let the leader hand a partition over
//! while its last message is still being handled. Consequently each handler
//! call must stay well below the manager's `hook_budget`: a revoke that
//! overruns it is fatal to the worker (which then owns nothing until its lease
//! has expired, so there is still no overlap).
//!
//! The result: no message of a moved partition is skipped, two workers never
//! run the handler for the same partition at once, and a message is handled
//! twice only if it was in flight when its worker crashed (or handled just
//! before, its progress write not completed). One exception
//! to "never at once": a worker *paused* (not crashed) past its lease may,
//! when it wakes, finish the message it was handling before its lease-expiry
//! revoke (or its fenced progress write) stops it, while the new owner
//! already consumes; the epoch lets downstream writes refuse it. A handler
//! tells such duplicates by
//! [`Delivery::epoch`] (a redelivery after a crash comes with a higher epoch)
//! and [`Delivery::stream_sequence`].

mod progress;
mod runner;
mod stats;

use async_nats::HeaderMap;
use async_nats::jetstream::{self, kv, stream::StorageType};
use bytes::Bytes;
use futures_util::future::BoxFuture;
use parti_core::Partition;
use parti_core::records::OwnedPartition;
use runner::{Running, Shared};
use stats::PartitionStats;
use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;
use tokio::sync::{Mutex, Semaphore};
use tokio::task::JoinHandle;
use tokio::time::Instant;

/// The error a handler returns.
pub type HandlerError = Box<dyn std::error::Error + Send + Sync>;

type Handler = dyn Fn(Delivery) -> BoxFuture<'static, Result<(), HandlerError>> + Send + Sync;
type DeadLetter = dyn Fn(Delivery, HandlerError) -> BoxFuture<'static, ()> + Send + Sync;
type SubjectFn = dyn Fn(&Partition) -> String + Send + Sync;

/// One message of an owned partition, as handed to the handler.
#[derive(Clone, Debug)]
pub struct Delivery {
    /// The partition the message belongs to.
    pub partition: Arc<Partition>,
    /// The fencing epoch under which this worker owns the partition.
    pub epoch: u64,
    /// The message's subject.
    pub subject: async_nats::Subject,
    /// The message's headers.
    pub headers: Option<HeaderMap>,
    /// The payload.
    pub payload: Bytes,
    /// The message's sequence in the stream.
    pub stream_sequence: u64,
    /// The handler call this is for this message on this worker (1 for the first).
    pub attempt: u32,
}

/// Why the consumer could not be built.
#[derive(Debug, thiserror::Error)]
pub enum PartitionConsumerError {
    /// A setting is invalid.
    #[error("invalid partition consumer setting `{field}`: {reason}")]
    InvalidSetting {
        /// The setting.
        field: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// No handler was given.
    #[error("the partition consumer needs a handler (`handler`)")]
    MissingHandler,
    /// The stream does not exist (the consumer never creates the application's stream).
    #[error("stream `{0}` not found (the partition consumer never creates it)")]
    StreamNotFound(String),
    /// A request to the server failed.
    #[error("{0}")]
    Nats(String),
}

/// Health of one consumed partition.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PartitionHealth {
    /// The partition.
    pub partition: Partition,
    /// The epoch it is owned under.
    pub epoch: u64,
    /// Whether its consumer is set up and being read.
    pub consuming: bool,
    /// Last stream sequence handled (or dead-lettered).
    pub last_acked: u64,
    /// Messages of the partition not yet delivered (as of the last delivery).
    pub lag: u64,
    /// Messages handled (`Ok`) under this ownership.
    pub handled: u64,
    /// Handler calls repeated after an error.
    pub retries: u64,
    /// Messages given up (dead-lettered).
    pub dead_letters: u64,
    /// Whether a handler call runs for it now.
    pub in_flight: bool,
}

/// Health of the whole consumer.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ConsumerHealth {
    /// One entry per partition being consumed, sorted.
    pub partitions: Vec<PartitionHealth>,
    /// Handler calls running now.
    pub in_flight: usize,
    /// Sum of the partitions' lag.
    pub lag: u64,
}

/// Builds a [`PartitionConsumer`].
pub struct PartitionConsumerBuilder {
    client: async_nats::Client,
    name: String,
    stream: String,
    subject: Arc<SubjectFn>,
    handler: Option<Arc<Handler>>,
    dead_letter: Option<Arc<DeadLetter>>,
    max_concurrency: usize,
    max_deliver: u32,
    backoff_min: Duration,
    backoff_max: Duration,
    prefetch: usize,
    progress_interval: Duration,
    inactive_threshold: Duration,
    request_timeout: Duration,
    progress_bucket: Option<String>,
}

impl PartitionConsumerBuilder {
    /// The subject filter of a partition from a template where `{key}` stands
    /// for [`Partition::subject_key`] (default `"<stream>.{key}"`... set it to
    /// match your stream, e.g. `"orders.{key}"`).
    pub fn subject_template(mut self, template: &str) -> Self {
        let template = template.to_string();
        self.subject = Arc::new(move |p: &Partition| template.replace("{key}", &p.subject_key()));
        self
    }

    /// The subject filter of a partition computed by a function.
    pub fn subject_fn(mut self, f: impl Fn(&Partition) -> String + Send + Sync + 'static) -> Self {
        self.subject = Arc::new(f);
        self
    }

    /// The message handler (required). `Ok` marks the message done; an
    /// error retries it after a backoff, up to `max_deliver` calls in all.
    pub fn handler<F, Fut, E>(mut self, handler: F) -> Self
    where
        F: Fn(Delivery) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), E>> + Send + 'static,
        E: Into<HandlerError>,
    {
        self.handler = Some(Arc::new(move |d| {
            let fut = handler(d);
            Box::pin(async move { fut.await.map_err(Into::into) })
        }));
        self
    }

    /// Called with a message given up after `max_deliver` failed calls and
    /// the last error; the message is then terminated and its partition goes
    /// on (default: an error log line).
    pub fn dead_letter<F, Fut>(mut self, callback: F) -> Self
    where
        F: Fn(Delivery, HandlerError) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        self.dead_letter = Some(Arc::new(move |d, e| Box::pin(callback(d, e))));
        self
    }

    /// Most handler calls running at once, over all partitions (default 16).
    pub fn max_concurrency(mut self, n: usize) -> Self {
        self.max_concurrency = n;
        self
    }

    /// Handler calls per message before it is dead-lettered (default 5).
    pub fn max_deliver(mut self, n: u32) -> Self {
        self.max_deliver = n;
        self
    }

    /// Pause before the first retry and the largest one; the pause doubles
    /// (default 100 ms and 5 s).
    pub fn backoff(mut self, first: Duration, max: Duration) -> Self {
        self.backoff_min = first;
        self.backoff_max = max;
        self
    }

    /// Messages fetched ahead per partition: the batch size of its pull
    /// requests (default 256).
    pub fn prefetch(mut self, n: usize) -> Self {
        self.prefetch = n;
        self
    }

    /// Shortest time between two progress writes of a partition (default
    /// 20 ms). The progress of a handled message is written at once unless
    /// the previous write is in flight or started less than this ago; the
    /// next write then covers every message handled meanwhile. So a quiet
    /// partition's progress is written per message, a busy one's at most
    /// once per interval; after a crash the next owner handles again what
    /// was handled since the last completed write (the message in flight,
    /// and at most about one interval of a busy partition's messages). A
    /// revoke always records the exact progress.
    pub fn progress_interval(mut self, interval: Duration) -> Self {
        self.progress_interval = interval;
        self
    }

    /// How long the server keeps the consumer of a crashed worker (default
    /// 5 min; the next owner of a partition deletes it when it takes over).
    pub fn inactive_threshold(mut self, threshold: Duration) -> Self {
        self.inactive_threshold = threshold;
        self
    }

    /// Bound of each request of a grant or revoke (default 1 s).
    pub fn request_timeout(mut self, timeout: Duration) -> Self {
        self.request_timeout = timeout;
        self
    }

    /// The KV bucket holding the progress (default `parti-progress-<name>`).
    pub fn progress_bucket(mut self, bucket: &str) -> Self {
        self.progress_bucket = Some(bucket.to_string());
        self
    }

    fn validate(&self) -> Result<(), PartitionConsumerError> {
        let invalid = |field, reason: &str| {
            Err(PartitionConsumerError::InvalidSetting {
                field,
                reason: reason.to_string(),
            })
        };
        if self.max_concurrency == 0 {
            return invalid("max_concurrency", "must be at least 1");
        }
        if self.max_deliver == 0 {
            return invalid("max_deliver", "must be at least 1");
        }
        if self.prefetch == 0 {
            return invalid("prefetch", "must be at least 1");
        }
        if self.backoff_min > self.backoff_max {
            return invalid("backoff", "the first pause exceeds the largest");
        }
        if self.progress_interval < Duration::from_millis(1) {
            return invalid("progress_interval", "must be at least 1 ms");
        }
        if self.inactive_threshold < Duration::from_secs(1) {
            return invalid("inactive_threshold", "must be at least 1 s");
        }
        if self.request_timeout.is_zero() {
            return invalid("request_timeout", "must not be zero");
        }
        if self.name.is_empty() || !self.name.chars().all(valid_token_char) {
            return invalid("name", "must be non-empty, of letters, digits, '-' and '_'");
        }
        Ok(())
    }

    /// Checks the settings, opens the stream (which must exist) and creates or
    /// opens the progress bucket (same storage and replicas as the stream).
    pub async fn build(self) -> Result<PartitionConsumer, PartitionConsumerError> {
        self.validate()?;
        let handler = self
            .handler
            .clone()
            .ok_or(PartitionConsumerError::MissingHandler)?;
        let js = jetstream::new(self.client.clone());
        let stream = js
            .get_stream(&self.stream)
            .await
            .map_err(|e| match e.kind() {
                jetstream::context::GetStreamErrorKind::JetStream(j)
                    if j.error_code() == jetstream::ErrorCode::STREAM_NOT_FOUND =>
                {
                    PartitionConsumerError::StreamNotFound(self.stream.clone())
                }
                _ => PartitionConsumerError::Nats(format!("opening stream {}: {e}", self.stream)),
            })?;
        let info = stream.cached_info().config.clone();
        let bucket = self
            .progress_bucket
            .clone()
            .unwrap_or_else(|| format!("parti-progress-{}", self.name));
        let progress = match js.get_key_value(&bucket).await {
            Ok(store) => store,
            Err(_) => js
                .create_key_value(kv::Config {
                    bucket: bucket.clone(),
                    description: "parti partition consumer progress".into(),
                    history: 1,
                    storage: if info.storage == StorageType::Memory {
                        StorageType::Memory
                    } else {
                        StorageType::File
                    },
                    num_replicas: info.num_replicas.max(1),
                    ..Default::default()
                })
                .await
                .map_err(|e| {
                    PartitionConsumerError::Nats(format!("creating progress bucket {bucket}: {e}"))
                })?,
        };
        let dead_letter = self.dead_letter.clone().unwrap_or_else(|| {
            Arc::new(|d: Delivery, e: HandlerError| {
                Box::pin(async move {
                    tracing::error!(partition = %d.partition, epoch = d.epoch, stream_seq = d.stream_sequence, error = %e, "message dead-lettered");
                })
            })
        });
        let shared = Arc::new(Shared {
            stream,
            stream_name: self.stream,
            name: self.name,
            progress,
            subject: self.subject,
            handler,
            dead_letter,
            permits: Semaphore::new(self.max_concurrency),
            max_deliver: self.max_deliver,
            backoff_min: self.backoff_min,
            backoff_max: self.backoff_max,
            prefetch: self.prefetch,
            progress_interval: self.progress_interval,
            inactive_threshold: self.inactive_threshold,
            request_timeout: self.request_timeout,
        });
        Ok(PartitionConsumer {
            inner: Arc::new(Inner {
                shared,
                running: Mutex::new(HashMap::new()),
                cleanups: Mutex::new(Vec::new()),
            }),
        })
    }
}

struct Inner {
    shared: Arc<Shared>,
    running: Mutex<HashMap<Partition, Running>>,
    /// Clean-ups of revoked partitions that outlived their `apply` call.
    cleanups: Mutex<Vec<JoinHandle<()>>>,
}

/// Consumes the partitions this worker owns; see the module docs. Cheap to
/// clone (all clones are the same consumer).
///
/// Wire it into the manager with the facade's `ManagerBuilder::consumer`, or
/// call [`PartitionConsumer::apply`] first thing in your own
/// `on_assignment_changed`.
#[derive(Clone)]
pub struct PartitionConsumer {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for PartitionConsumer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PartitionConsumer")
            .field("name", &self.inner.shared.name)
            .field("stream", &self.inner.shared.stream_name)
            .finish()
    }
}

impl PartitionConsumer {
    /// A builder: `client` to reach the server, `name` (letters, digits, `-`,
    /// `_`; typically the group) naming the consumers and the progress bucket,
    /// and the existing `stream` to read.
    pub fn builder(
        client: async_nats::Client,
        name: &str,
        stream: &str,
    ) -> PartitionConsumerBuilder {
        let prefix = stream.to_string();
        PartitionConsumerBuilder {
            client,
            name: name.to_string(),
            stream: stream.to_string(),
            subject: Arc::new(move |p: &Partition| format!("{prefix}.{}", p.subject_key())),
            handler: None,
            dead_letter: None,
            max_concurrency: 16,
            max_deliver: 5,
            backoff_min: Duration::from_millis(100),
            backoff_max: Duration::from_secs(5),
            prefetch: 256,
            progress_interval: Duration::from_millis(20),
            inactive_threshold: Duration::from_secs(300),
            request_timeout: Duration::from_secs(1),
            progress_bucket: None,
        }
    }

    /// Applies an assignment change: stops every partition of `removed` and
    /// waits until each is handed over (its message in flight finished; in
    /// parallel), then starts every partition of `added` in
    /// the background. Call it inside `on_assignment_changed`, before the hook
    /// returns. Recording the progress and deleting the consumers is awaited
    /// too, for at most the request timeout; see [`PartitionConsumer::apply_by`].
    pub async fn apply(&self, added: &[OwnedPartition], removed: &[OwnedPartition]) {
        let deadline = Instant::now() + self.inner.shared.request_timeout;
        self.apply_by(added, removed, deadline).await;
    }

    /// [`PartitionConsumer::apply`], awaiting the clean-up of the revoked
    /// partitions (progress recorded, consumer deleted) until `deadline` only;
    /// what is left finishes in the background (and
    /// [`PartitionConsumer::shutdown`] waits for it). A progress record that
    /// is late makes the next owner start after the last background record
    /// (messages handled twice, none skipped).
    pub async fn apply_by(
        &self,
        added: &[OwnedPartition],
        removed: &[OwnedPartition],
        deadline: Instant,
    ) {
        let mut running = self.inner.running.lock().await;
        let mut stopping: Vec<Running> = removed
            .iter()
            .filter_map(|p| running.remove(&p.partition))
            .collect();
        // Granted again without a revoke in between (a new epoch): hand over
        // to ourselves cleanly first.
        stopping.extend(added.iter().filter_map(|p| running.remove(&p.partition)));
        self.stop_all(stopping, deadline).await;
        for owned in added {
            let run = Running::start(self.inner.shared.clone(), owned.clone());
            running.insert(owned.partition.clone(), run);
        }
    }

    async fn stop_all(&self, stopping: Vec<Running>, deadline: Instant) {
        let left =
            futures_util::future::join_all(stopping.into_iter().map(|r| r.stop(deadline))).await;
        let mut cleanups = self.inner.cleanups.lock().await;
        cleanups.retain(|h| !h.is_finished());
        cleanups.extend(left.into_iter().flatten());
    }

    /// Stops consuming every partition, as a revoke of all of them by
    /// [`PartitionConsumer::apply_by`] (clean-ups awaited until `deadline`).
    pub async fn stop_by(&self, deadline: Instant) {
        let all: Vec<Running> = {
            let mut running = self.inner.running.lock().await;
            running.drain().map(|(_, r)| r).collect()
        };
        self.stop_all(all, deadline).await;
    }

    /// Stops consuming every partition (as a revoke of all of them) and waits
    /// for every clean-up still running (each bounded by a few request
    /// timeouts).
    pub async fn shutdown(&self) {
        self.stop_by(Instant::now() + self.inner.shared.request_timeout)
            .await;
        let cleanups: Vec<JoinHandle<()>> = self.inner.cleanups.lock().await.drain(..).collect();
        for handle in cleanups {
            let _ = handle.await;
        }
    }

    /// The partitions being consumed, with their epochs, sorted.
    pub async fn partitions(&self) -> Vec<OwnedPartition> {
        let running = self.inner.running.lock().await;
        let mut list: Vec<OwnedPartition> = running.values().map(|r| r.owned.clone()).collect();
        list.sort_by(|a, b| a.partition.cmp(&b.partition));
        list
    }

    /// Lag, in-flight calls, retries and dead letters per partition.
    pub async fn health(&self) -> ConsumerHealth {
        let running = self.inner.running.lock().await;
        let mut partitions: Vec<PartitionHealth> = running
            .values()
            .map(|r| {
                let s: &PartitionStats = &r.stats;
                PartitionHealth {
                    partition: r.owned.partition.clone(),
                    epoch: r.owned.epoch,
                    consuming: s.consuming.load(Ordering::Relaxed),
                    last_acked: PartitionStats::get(&s.last_acked),
                    lag: PartitionStats::get(&s.lag),
                    handled: PartitionStats::get(&s.handled),
                    retries: PartitionStats::get(&s.retries),
                    dead_letters: PartitionStats::get(&s.dead_letters),
                    in_flight: s.in_flight.load(Ordering::Relaxed),
                }
            })
            .collect();
        partitions.sort_by(|a, b| a.partition.cmp(&b.partition));
        ConsumerHealth {
            in_flight: partitions.iter().filter(|p| p.in_flight).count(),
            lag: partitions.iter().map(|p| p.lag).sum(),
            partitions,
        }
    }

    /// The name of the JetStream consumer used for `owned` (for inspection).
    pub fn consumer_name(&self, owned: &OwnedPartition) -> String {
        runner::consumer_name(&self.inner.shared.name, &owned.partition, owned.epoch)
    }
}

fn valid_token_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '-' || c == '_'
}

/// A name for `partition` usable in KV keys and consumer names: its subject
/// key when that is made of letters, digits, `-` and `_`, else its ID in hex.
pub(crate) fn partition_token(partition: &Partition) -> String {
    let key = partition.subject_key();
    if !key.is_empty() && key.chars().all(valid_token_char) {
        key
    } else {
        format!("x{}", partition.id())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_keep_plain_keys_and_hash_the_others() {
        assert_eq!(partition_token(&Partition::new(["p-17"])), "p-17");
        let dotted = partition_token(&Partition::new(["orders", "17"]));
        assert!(dotted.starts_with('x') && dotted.len() == 17, "{dotted}");
    }
}
