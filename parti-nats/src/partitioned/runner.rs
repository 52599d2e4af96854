//! The task that consumes one owned partition: grant (find where to start,
//! claim the progress entry, create the consumer), the ordered handling loop
//! (with the progress written in the background as messages are handled),
//! and the revoke (stop, record progress, delete the consumer).

use super::progress::{self, ProgressError, ProgressRecord};
use super::stats::{PartitionMetrics, PartitionStats};
use super::{DeadLetter, Delivery, Handler, SubjectFn, partition_token};
use async_nats::jetstream::consumer::{AckPolicy, DeliverPolicy, PullConsumer, pull};
use async_nats::jetstream::{kv, stream};
use futures_util::{FutureExt, StreamExt};
use parti_core::Partition;
use parti_core::records::OwnedPartition;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;
use tokio::sync::{Notify, Semaphore, oneshot, watch};
use tokio::task::JoinHandle;
use tracing::Instrument;

/// Pull expiry and idle heartbeat of the message streams.
const PULL_EXPIRES: Duration = Duration::from_secs(10);
const PULL_HEARTBEAT: Duration = Duration::from_secs(5);
/// Pause between attempts to set up or re-create a consumer.
const SETUP_BACKOFF_MIN: Duration = Duration::from_millis(100);
const SETUP_BACKOFF_MAX: Duration = Duration::from_secs(2);
/// Attempts of the final progress write of a revoke.
const FINAL_WRITE_ATTEMPTS: u32 = 3;
/// Attempts of one background progress write.
const PROGRESS_WRITE_ATTEMPTS: u32 = 2;

/// What every partition task shares.
pub(crate) struct Shared {
    pub stream: stream::Stream,
    pub stream_name: String,
    pub name: String,
    pub progress: kv::Store,
    pub subject: Arc<SubjectFn>,
    pub handler: Arc<Handler>,
    pub dead_letter: Arc<DeadLetter>,
    pub permits: Semaphore,
    pub max_deliver: u32,
    pub backoff_min: Duration,
    pub backoff_max: Duration,
    pub prefetch: usize,
    pub progress_interval: Duration,
    pub inactive_threshold: Duration,
    pub request_timeout: Duration,
}

/// The name of the consumer of `partition` under `epoch`.
pub(crate) fn consumer_name(name: &str, partition: &Partition, epoch: u64) -> String {
    format!("{name}-{}-e{epoch}", partition_token(partition))
}

/// Where the progress entry of a partition stands: kept by the background
/// writer, handed to the revoke's final write.
struct Recorded {
    /// Revision of the entry as we last wrote it.
    revision: u64,
    /// The sequence it holds.
    seq: u64,
}

/// A running partition task.
pub(crate) struct Running {
    pub owned: OwnedPartition,
    pub stats: Arc<PartitionStats>,
    stop: watch::Sender<bool>,
    /// Fires once the handler is done with the partition: from then on the
    /// next owner can take over.
    handed: oneshot::Receiver<()>,
    handle: JoinHandle<()>,
}

impl Running {
    pub(crate) fn start(shared: Arc<Shared>, owned: OwnedPartition) -> Running {
        let stats = Arc::new(PartitionStats::default());
        let (stop, stopped) = watch::channel(false);
        let (handed_tx, handed) = oneshot::channel();
        let span =
            tracing::info_span!("partition", partition = %owned.partition, epoch = owned.epoch);
        let task = Task {
            key: partition_token(&owned.partition),
            consumer: consumer_name(&shared.name, &owned.partition, owned.epoch),
            metrics: PartitionMetrics::new(&shared.stream_name),
            shared,
            owned: owned.clone(),
            stats: stats.clone(),
            stopped,
            last_acked: 0,
            progressed: Arc::default(),
            partition: Arc::new(owned.partition.clone()),
            revision: 0,
            fenced: Arc::default(),
            handed: Some(handed_tx),
        };
        let handle = tokio::spawn(task.run().instrument(span));
        Running {
            owned,
            stats,
            stop,
            handed,
            handle,
        }
    }

    /// Asks the task to stop and waits until the handler is done with the
    /// partition (the message in flight finished). Then waits until
    /// `deadline` for the clean-up (progress recorded, consumer deleted); a
    /// clean-up still running then is returned, to finish in the background.
    /// Handing over without it is safe but not exact: the next owner starts
    /// after the last progress write and handles the messages since again.
    pub(crate) async fn stop(mut self, deadline: tokio::time::Instant) -> Option<JoinHandle<()>> {
        let _ = self.stop.send(true);
        // An error means the task ended (without handing over anything).
        let _ = (&mut self.handed).await;
        match tokio::time::timeout_at(deadline, &mut self.handle).await {
            Ok(Ok(())) => None,
            Ok(Err(e)) => {
                tracing::error!(partition = %self.owned.partition, error = %e, "partition task failed");
                None
            }
            Err(_) => Some(self.handle),
        }
    }
}

struct Task {
    shared: Arc<Shared>,
    owned: OwnedPartition,
    key: String,
    consumer: String,
    stats: Arc<PartitionStats>,
    metrics: PartitionMetrics,
    stopped: watch::Receiver<bool>,
    /// Last stream sequence handled (or dead-lettered): every message of the
    /// partition up to it is done.
    last_acked: u64,
    /// Told when `last_acked` moved: wakes the progress writer.
    progressed: Arc<Notify>,
    /// The partition, shared by the deliveries.
    partition: Arc<Partition>,
    /// Revision of the progress entry as we last wrote it.
    revision: u64,
    /// Set by the background writer when a later owner holds the entry.
    fenced: Arc<std::sync::atomic::AtomicBool>,
    /// Told once the partition is handed over (see [`Running::stop`]).
    handed: Option<oneshot::Sender<()>>,
}

/// How the handling of one message ended.
enum Handled {
    Done,
    /// Already handled before (a redelivery): nothing to do.
    Skipped,
    /// A revoke came during a retry pause: the message stays for the next owner.
    Abandoned,
}

impl Task {
    fn stopping(&self) -> bool {
        *self.stopped.borrow() || self.fenced.load(Ordering::Relaxed)
    }

    /// Sleeps `pause`; `false` if a stop came first.
    async fn pause(&mut self, pause: Duration) -> bool {
        tokio::select! {
            _ = self.stopped.wait_for(|s| *s) => false,
            () = tokio::time::sleep(pause) => true,
        }
    }

    async fn run(mut self) {
        self.metrics.partitions.increment(1.0);
        let claimed = self.claim_with_retries().await;
        if claimed {
            let (writer_stop, writer_stopped) = watch::channel(false);
            let writer = tokio::spawn(
                ProgressWriter {
                    shared: self.shared.clone(),
                    key: self.key.clone(),
                    epoch: self.owned.epoch,
                    consumer: self.consumer.clone(),
                    stats: self.stats.clone(),
                    fenced: self.fenced.clone(),
                    progressed: self.progressed.clone(),
                    recorded: Recorded {
                        revision: self.revision,
                        seq: self.last_acked,
                    },
                }
                .run(writer_stopped)
                .in_current_span(),
            );
            self.consume().await;
            // The handler is done with the partition: no overlap with the
            // next owner from here on (see `Running::stop`).
            if let Some(handed) = self.handed.take() {
                let _ = handed.send(());
            }
            // Then the writer, whose last revision the final write compares with.
            let _ = writer_stop.send(true);
            let recorded = writer.await.ok();
            self.release(recorded).await;
        }
        self.stats.consuming.store(false, Ordering::Relaxed);
        self.metrics.partitions.decrement(1.0);
        let lag = self.stats.lag.swap(0, Ordering::Relaxed);
        self.metrics.lag.decrement(lag as f64);
    }

    /// Claims the partition until it succeeds, is fenced or is stopped.
    async fn claim_with_retries(&mut self) -> bool {
        let mut backoff = SETUP_BACKOFF_MIN;
        loop {
            if self.stopping() {
                return false;
            }
            let timeout = self.shared.request_timeout * 4;
            match tokio::time::timeout(timeout, self.claim()).await {
                Ok(Ok(Some((start, revision)))) => {
                    self.revision = revision;
                    self.last_acked = start;
                    self.stats.last_acked.store(start, Ordering::Relaxed);
                    tracing::debug!(from = start + 1, consumer = %self.consumer, "partition claimed");
                    return true;
                }
                Ok(Ok(None)) => continue, // lost a race on the entry: read again
                Ok(Err(ProgressError::Fenced { stored, ours })) => {
                    tracing::warn!(
                        stored,
                        ours,
                        "a later owner holds the partition; not consuming"
                    );
                    return false;
                }
                Ok(Err(e)) => {
                    tracing::warn!(error = %e, "cannot claim the partition yet; retrying")
                }
                Err(_) => tracing::warn!("claiming the partition timed out; retrying"),
            }
            if !self.pause(backoff).await {
                return false;
            }
            backoff = (backoff * 2).min(SETUP_BACKOFF_MAX);
        }
    }

    /// One claim attempt: `Some((last handled sequence, entry revision))`, or
    /// `None` when the entry changed under us.
    async fn claim(&self) -> Result<Option<(u64, u64)>, ProgressError> {
        let current = progress::read(&self.shared.progress, &self.key).await?;
        // Everything up to the recorded sequence is done. A previous owner
        // that crashed (its consumer still named in the entry) may have
        // handled a message or two after it (those whose progress write was
        // in flight): they are handled again (at-least-once), never skipped.
        let last = current.record.seq;
        let previous = current
            .record
            .consumer
            .clone()
            .filter(|c| *c != self.consumer);
        let record = ProgressRecord {
            seq: last,
            epoch: self.owned.epoch,
            consumer: Some(self.consumer.clone()),
        };
        let Some(revision) =
            progress::write(&self.shared.progress, &self.key, &current, &record).await?
        else {
            return Ok(None);
        };
        if let Some(previous) = previous {
            let _ = self.shared.stream.delete_consumer(&previous).await;
        }
        Ok(Some((last, revision)))
    }

    fn consumer_config(&self) -> pull::Config {
        pull::Config {
            name: Some(self.consumer.clone()),
            description: Some(format!(
                "parti {} {}",
                self.shared.name, self.owned.partition
            )),
            deliver_policy: if self.last_acked == 0 {
                DeliverPolicy::All
            } else {
                DeliverPolicy::ByStartSequence {
                    start_sequence: self.last_acked + 1,
                }
            },
            // No acknowledgements: the server needs none to deliver in order,
            // retries happen in place, and how far the partition is done is
            // kept in the progress entry, written as the messages are handled
            // (the handoff reads nothing else). Acknowledgements would make
            // the server track every delivered message: measured, that cost
            // more than the progress writes.
            ack_policy: AckPolicy::None,
            filter_subject: (self.shared.subject)(&self.owned.partition),
            inactive_threshold: self.shared.inactive_threshold,
            // The consumer's state in memory (replicated like the stream): the
            // progress that must outlive a server restart is in the KV entry.
            memory_storage: true,
            ..Default::default()
        }
    }

    /// (Re)creates our consumer from `last_acked + 1`.
    async fn open(&self, reopening: bool) -> Result<PullConsumer, String> {
        if reopening {
            // A worker paused past its lease finds its consumer gone: it
            // must not resume if a later owner has claimed the partition.
            let current = progress::read(&self.shared.progress, &self.key)
                .await
                .map_err(|e| e.to_string())?;
            if current.record.epoch > self.owned.epoch {
                self.fenced.store(true, Ordering::Relaxed);
                return Err(format!(
                    "fenced: epoch {} holds the partition",
                    current.record.epoch
                ));
            }
        }
        // A consumer of ours left from before (a message stream that failed)
        // cannot change its start: replace it.
        let _ = self.shared.stream.delete_consumer(&self.consumer).await;
        self.shared
            .stream
            .create_consumer(self.consumer_config())
            .await
            .map_err(|e| format!("creating consumer {}: {e}", self.consumer))
    }

    /// Reads and handles messages until stopped.
    async fn consume(&mut self) {
        let mut backoff = SETUP_BACKOFF_MIN;
        let mut reopening = false;
        while !self.stopping() {
            let opened = tokio::time::timeout(self.shared.request_timeout * 2, async {
                let consumer = self.open(reopening).await?;
                consumer
                    .stream()
                    .max_messages_per_batch(self.shared.prefetch)
                    .expires(PULL_EXPIRES)
                    .heartbeat(PULL_HEARTBEAT)
                    .messages()
                    .await
                    .map_err(|e| format!("pulling from {}: {e}", self.consumer))
            })
            .await
            .unwrap_or_else(|_| Err("setting up the consumer timed out".into()));
            let mut messages = match opened {
                Ok(m) => m,
                Err(e) => {
                    reopening = true;
                    if self.stopping() {
                        tracing::warn!(error = %e, "not consuming the partition any more");
                        return;
                    }
                    tracing::warn!(error = %e, "cannot read the partition yet; retrying");
                    if !self.pause(backoff).await {
                        return;
                    }
                    backoff = (backoff * 2).min(SETUP_BACKOFF_MAX);
                    continue;
                }
            };
            self.stats.consuming.store(true, Ordering::Relaxed);
            backoff = SETUP_BACKOFF_MIN;
            loop {
                // Messages first: the stop is then only waited for while
                // idle (it is checked after every message anyway), which
                // spares a wake-up registration per message.
                let next = tokio::select! {
                    biased;
                    next = messages.next() => next,
                    _ = self.stopped.wait_for(|s| *s) => return,
                };
                match next {
                    Some(Ok(message)) => {
                        if self.fenced.load(Ordering::Relaxed) {
                            return;
                        }
                        if let Handled::Abandoned = self.handle(&message).await {
                            return;
                        }
                        if self.stopping() {
                            return;
                        }
                    }
                    Some(Err(e)) => {
                        tracing::warn!(error = %e, "message stream failed; re-creating the consumer");
                        break;
                    }
                    None => {
                        tracing::warn!("message stream ended; re-creating the consumer");
                        break;
                    }
                }
            }
            self.stats.consuming.store(false, Ordering::Relaxed);
            reopening = true;
            if !self.pause(backoff).await {
                return;
            }
        }
    }

    /// Handles one message: skips what was already handled, retries errors
    /// in place, dead-letters after `max_deliver` calls.
    async fn handle(&mut self, message: &async_nats::jetstream::Message) -> Handled {
        let (seq, pending) = match message.info() {
            Ok(info) => (info.stream_sequence, info.pending),
            Err(e) => {
                tracing::warn!(error = %e, "message without JetStream metadata; ignored");
                return Handled::Skipped;
            }
        };
        // The gauge is the sum over partitions: move it by our change.
        let before = self.stats.lag.swap(pending, Ordering::Relaxed);
        self.metrics.lag.increment(pending as f64 - before as f64);
        if seq <= self.last_acked {
            // Already handled (cannot happen with a consumer started after
            // `last_acked`; kept as a guard).
            self.metrics.duplicates.increment(1);
            return Handled::Skipped;
        }
        let shared = self.shared.clone();
        let mut delivery = Delivery {
            partition: self.partition.clone(),
            epoch: self.owned.epoch,
            subject: message.subject.clone(),
            headers: message.headers.clone(),
            payload: message.payload.clone(),
            stream_sequence: seq,
            attempt: 0,
        };
        let mut backoff = shared.backoff_min;
        loop {
            delivery.attempt += 1;
            let result = {
                // A revoke while waiting for a permit: the message stays for
                // the next owner.
                if self.stopping() {
                    return Handled::Abandoned;
                }
                let _permit = match shared.permits.try_acquire() {
                    Ok(permit) => permit,
                    Err(_) => {
                        let permit = tokio::select! {
                            biased;
                            _ = self.stopped.wait_for(|s| *s) => return Handled::Abandoned,
                            permit = shared.permits.acquire() => permit,
                        };
                        let Ok(permit) = permit else {
                            return Handled::Abandoned;
                        };
                        permit
                    }
                };
                self.stats.in_flight.store(true, Ordering::Relaxed);
                self.metrics.in_flight.increment(1.0);
                // A panicking handler counts as a failed call (retried, then
                // dead-lettered) rather than ending the partition's task.
                let call = std::panic::AssertUnwindSafe((shared.handler)(delivery.clone()));
                let result = match call.catch_unwind().await {
                    Ok(result) => result,
                    Err(_) => Err("the handler panicked".into()),
                };
                self.metrics.in_flight.decrement(1.0);
                self.stats.in_flight.store(false, Ordering::Relaxed);
                result
            };
            match result {
                Ok(()) => {
                    self.done(seq);
                    self.stats.handled.fetch_add(1, Ordering::Relaxed);
                    self.metrics.handled.increment(1);
                    return Handled::Done;
                }
                Err(error) if delivery.attempt >= shared.max_deliver => {
                    tracing::warn!(seq, attempts = delivery.attempt, %error, "giving the message up");
                    (shared.dead_letter)(delivery, error).await;
                    self.done(seq);
                    self.stats.dead_letters.fetch_add(1, Ordering::Relaxed);
                    self.metrics.dead_letters.increment(1);
                    return Handled::Done;
                }
                Err(error) => {
                    tracing::debug!(seq, attempt = delivery.attempt, %error, retry_in = ?backoff, "handler failed; retrying");
                    self.stats.retries.fetch_add(1, Ordering::Relaxed);
                    self.metrics.retries.increment(1);
                    if !self.pause(backoff).await {
                        return Handled::Abandoned;
                    }
                    backoff = (backoff * 2).min(shared.backoff_max);
                }
            }
        }
    }

    fn done(&mut self, seq: u64) {
        self.last_acked = seq;
        self.stats.last_acked.store(seq, Ordering::Relaxed);
        self.progressed.notify_one();
    }

    /// Records how far the partition is done (fenced compare-and-set; the
    /// next owner starts right after it), then deletes our consumer. If the
    /// record cannot be written, the next owner starts after the last record
    /// the background writer made: the messages handled since are handled
    /// again, none is skipped.
    async fn release(&mut self, written: Option<Recorded>) {
        let timeout = self.shared.request_timeout;
        let record = ProgressRecord {
            seq: self.last_acked,
            epoch: self.owned.epoch,
            consumer: None,
        };
        let mut recorded = false;
        // First against the revision we wrote ourselves: one request.
        let mut current = Some(progress::Current {
            record: ProgressRecord {
                epoch: self.owned.epoch,
                ..ProgressRecord::default()
            },
            revision: written.map_or(self.revision, |r| r.revision),
        });
        for _ in 0..FINAL_WRITE_ATTEMPTS {
            let attempt = tokio::time::timeout(
                timeout,
                progress::write_over(&self.shared.progress, &self.key, current.take(), &record),
            )
            .await;
            match attempt {
                Ok(Ok(Some(_))) => {
                    recorded = true;
                    break;
                }
                Ok(Ok(None)) => continue,
                Ok(Err(e @ ProgressError::Fenced { .. })) => {
                    tracing::warn!(error = %e, "progress not recorded");
                    break;
                }
                Ok(Err(e)) => tracing::warn!(error = %e, "recording progress failed"),
                Err(_) => tracing::warn!("recording progress timed out"),
            }
        }
        // The consumer holds nothing the next owner needs.
        let deleted =
            tokio::time::timeout(timeout, self.shared.stream.delete_consumer(&self.consumer)).await;
        if !matches!(deleted, Ok(Ok(_))) {
            tracing::debug!(consumer = %self.consumer, "consumer not deleted (the server drops it when inactive)");
        }
        tracing::debug!(last = self.last_acked, recorded, "partition released");
    }
}

/// Writes the progress of a partition as it moves: as soon as a message was
/// handled, unless the previous write is in flight or started less than
/// `progress_interval` ago (then the next write takes everything handled
/// meanwhile). A quiet partition's progress is so written at once, a busy
/// one's at most once per interval; after a crash, the next owner handles
/// again only what was handled since the last write that completed. Never
/// blocks the handling.
struct ProgressWriter {
    shared: Arc<Shared>,
    key: String,
    epoch: u64,
    consumer: String,
    stats: Arc<PartitionStats>,
    fenced: Arc<std::sync::atomic::AtomicBool>,
    progressed: Arc<Notify>,
    recorded: Recorded,
}

impl ProgressWriter {
    /// Runs until `stopped`; returns where the entry stands.
    async fn run(mut self, mut stopped: watch::Receiver<bool>) -> Recorded {
        let mut next_write = tokio::time::Instant::now();
        loop {
            tokio::select! {
                biased;
                _ = stopped.wait_for(|s| *s) => return self.recorded,
                () = self.progressed.notified() => {}
            }
            tokio::select! {
                biased;
                _ = stopped.wait_for(|s| *s) => return self.recorded,
                () = tokio::time::sleep_until(next_write) => {}
            }
            let seq = self.stats.last_acked.load(Ordering::Relaxed);
            if seq <= self.recorded.seq {
                continue;
            }
            next_write = tokio::time::Instant::now() + self.shared.progress_interval;
            // A write cut short by the stop may or may not have been applied:
            // the final write then re-reads the entry.
            tokio::select! {
                biased;
                _ = stopped.wait_for(|s| *s) => {
                    self.recorded.revision = 0;
                    return self.recorded;
                }
                () = self.write(seq) => {}
            }
            if self.fenced.load(Ordering::Relaxed) {
                return self.recorded;
            }
        }
    }

    async fn write(&mut self, seq: u64) {
        let record = ProgressRecord {
            seq,
            epoch: self.epoch,
            consumer: Some(self.consumer.clone()),
        };
        let timeout = self.shared.request_timeout;
        let mut current = Some(progress::Current {
            record: ProgressRecord {
                epoch: self.epoch,
                ..ProgressRecord::default()
            },
            revision: self.recorded.revision,
        });
        for _ in 0..PROGRESS_WRITE_ATTEMPTS {
            let attempt = tokio::time::timeout(
                timeout,
                progress::write_over(&self.shared.progress, &self.key, current.take(), &record),
            )
            .await;
            match attempt {
                Ok(Ok(Some(revision))) => {
                    self.recorded = Recorded { revision, seq };
                    return;
                }
                Ok(Ok(None)) => continue,
                Ok(Err(e @ ProgressError::Fenced { .. })) => {
                    tracing::warn!(error = %e, "a later owner holds the partition; stopping");
                    self.fenced.store(true, Ordering::Relaxed);
                    return;
                }
                Ok(Err(e)) => tracing::debug!(error = %e, "progress write failed"),
                Err(_) => tracing::debug!("progress write timed out"),
            }
        }
    }
}
