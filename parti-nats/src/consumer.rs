//! A resumable, ordered push consumer over some keys of one KV bucket: the
//! building block of the group watch.
//!
//! Why not async-nats' own ordered consumer (`Store::watch*`): it hides the
//! consumer's pending count (needed to see the end of a snapshot of an empty
//! bucket), and it recovers slowly — missed heartbeats are noticed after 10 s and
//! failed re-creations back off to 10 s — while a stream of a 3-node cluster
//! re-elects its leader for several seconds after a node dies. Here:
//!
//! - the server sends an idle heartbeat every [`HEARTBEAT`]; silence for two of
//!   them, a heartbeat whose `Nats-Last-Consumer` differs from what we received,
//!   or a gap in the consumer sequence means messages were lost or the consumer
//!   is gone;
//! - we then **resume**: a new consumer starting right after the last delivered
//!   revision (`DeliverPolicy::ByStartSequence`; before anything was delivered,
//!   the original `LastPerSubject`), retried with a short capped backoff while
//!   the server is unreachable. With history 1 that yields the latest entry of
//!   every key changed since, so nothing is missed (except a removal whose limit
//!   marker itself expired during the gap);
//! - a non-transient failure (e.g. the bucket was deleted) or the end of the
//!   subscription (the client was closed) is fatal: the caller ends the watch.
//!
//! The subscription is made before the consumer is created, so no message can
//! be pushed before we listen.

use crate::errors::classify;
use async_nats::jetstream::consumer::{AckPolicy, DeliverPolicy, ReplayPolicy, push};
use async_nats::jetstream::{self, kv};
use async_nats::{StatusCode, Subscriber};
use futures_util::future::BoxFuture;
use futures_util::{FutureExt, StreamExt};
use parti_core::backend::BackendError;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::time::Sleep;

/// Idle heartbeat interval asked of the server.
pub(crate) const HEARTBEAT: Duration = Duration::from_secs(1);
/// The server drops an ephemeral consumer this long after its subscriber left.
const INACTIVE_THRESHOLD: Duration = Duration::from_secs(10);
/// First and largest pause between two re-creation attempts.
const BACKOFF_MIN: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(1);
/// Header of idle heartbeats: the last consumer sequence the server delivered.
const LAST_CONSUMER: &str = "Nats-Last-Consumer";

/// An entry delivered by the consumer.
pub(crate) struct Delivered {
    /// The key (subject without the bucket prefix).
    pub key: String,
    /// The entry's revision (stream sequence).
    pub revision: u64,
    /// Messages still pending for the consumer after this one.
    pub pending: u64,
    /// The raw message (headers and payload).
    pub message: async_nats::Message,
}

/// What one poll produced.
pub(crate) enum Polled {
    /// An entry.
    Entry(Delivered),
    /// A (re)created consumer had nothing pending: everything up to now has been
    /// delivered.
    CaughtUp,
    /// The consumer cannot go on.
    Fatal(BackendError),
}

type Created = Result<(Subscriber, u64), BackendError>;

enum State {
    Live {
        subscriber: Subscriber,
        /// Consumer sequence of the last message received.
        consumer_seq: u64,
        /// Fires after two heartbeats of silence.
        silence: Pin<Box<Sleep>>,
    },
    Waiting(Pin<Box<Sleep>>),
    Creating(BoxFuture<'static, Created>),
}

/// See the module docs.
pub(crate) struct ResumableConsumer {
    js: jetstream::Context,
    client: async_nats::Client,
    stream: jetstream::stream::Stream,
    bucket: String,
    /// `$KV.<bucket>.`
    prefix: String,
    subjects: Vec<String>,
    /// Revision of the last entry delivered (0: none yet).
    last_revision: u64,
    /// When the stream watched was created, as the server said when the
    /// watch started (`None` if it could not say): a resume on a stream
    /// created at another time ends the watch.
    created: Option<String>,
    backoff: Duration,
    state: State,
}

impl ResumableConsumer {
    /// Creates the first consumer (`LastPerSubject` over `keys`); returns it and
    /// its pending count at creation.
    pub(crate) async fn open(
        js: &jetstream::Context,
        store: &kv::Store,
        keys: &[String],
    ) -> Result<(ResumableConsumer, u64), BackendError> {
        let subjects: Vec<String> = keys
            .iter()
            .map(|k| format!("{}{}", store.prefix, k))
            .collect();
        let client = js.client();
        let mut current = store.stream.clone();
        let created = current.info().await.ok().map(|i| i.created.to_string());
        let (subscriber, pending) = create(
            client.clone(),
            store.stream.clone(),
            subjects.clone(),
            DeliverPolicy::LastPerSubject,
            store.name.clone(),
            None,
        )
        .await?;
        let consumer = ResumableConsumer {
            js: js.clone(),
            client,
            stream: store.stream.clone(),
            bucket: store.name.clone(),
            prefix: store.prefix.clone(),
            subjects,
            last_revision: 0,
            created,
            backoff: BACKOFF_MIN,
            state: live(subscriber),
        };
        Ok((consumer, pending))
    }

    /// The bucket watched.
    pub(crate) fn bucket(&self) -> &str {
        &self.bucket
    }

    fn resume(&mut self, why: &str) {
        tracing::debug!(bucket = %self.bucket, from = self.last_revision + 1, why, "resuming watch");
        self.state = State::Creating(self.create_future());
    }

    fn create_future(&self) -> BoxFuture<'static, Created> {
        let policy = if self.last_revision == 0 {
            DeliverPolicy::LastPerSubject
        } else {
            DeliverPolicy::ByStartSequence {
                start_sequence: self.last_revision + 1,
            }
        };
        create(
            self.client.clone(),
            self.stream.clone(),
            self.subjects.clone(),
            policy,
            self.bucket.clone(),
            self.created.clone(),
        )
        .boxed()
    }

    /// Polls for the next entry, resuming as needed.
    pub(crate) fn poll_next(&mut self, cx: &mut Context<'_>) -> Poll<Polled> {
        loop {
            match &mut self.state {
                State::Waiting(sleep) => {
                    if sleep.poll_unpin(cx).is_pending() {
                        return Poll::Pending;
                    }
                    self.state = State::Creating(self.create_future());
                }
                State::Creating(fut) => match fut.poll_unpin(cx) {
                    Poll::Pending => return Poll::Pending,
                    Poll::Ready(Ok((subscriber, pending))) => {
                        self.backoff = BACKOFF_MIN;
                        self.state = live(subscriber);
                        if pending == 0 {
                            return Poll::Ready(Polled::CaughtUp);
                        }
                    }
                    Poll::Ready(Err(
                        err @ (BackendError::Timeout | BackendError::Unavailable(_)),
                    )) => {
                        tracing::debug!(bucket = %self.bucket, %err, "watch re-creation failed; retrying");
                        self.state = State::Waiting(Box::pin(tokio::time::sleep(self.backoff)));
                        self.backoff = (self.backoff * 2).min(BACKOFF_MAX);
                    }
                    Poll::Ready(Err(err)) => return Poll::Ready(Polled::Fatal(err)),
                },
                State::Live {
                    subscriber,
                    consumer_seq,
                    silence,
                } => match subscriber.poll_next_unpin(cx) {
                    Poll::Ready(None) => {
                        return Poll::Ready(Polled::Fatal(BackendError::Unavailable(format!(
                            "watch subscription of bucket {} closed (client closed?)",
                            self.bucket
                        ))));
                    }
                    Poll::Ready(Some(message)) => {
                        silence
                            .as_mut()
                            .reset(tokio::time::Instant::now() + HEARTBEAT * 2);
                        if message.status == Some(StatusCode::IDLE_HEARTBEAT) {
                            let last = message
                                .headers
                                .as_ref()
                                .and_then(|h| h.get(LAST_CONSUMER))
                                .and_then(|v| v.as_str().parse::<u64>().ok());
                            if last.is_some_and(|last| last != *consumer_seq) {
                                self.resume("heartbeat shows missed messages");
                            }
                            continue;
                        }
                        if message.status.is_some() {
                            continue;
                        }
                        match self.accept(message) {
                            Some(delivered) => return Poll::Ready(Polled::Entry(delivered)),
                            None => continue,
                        }
                    }
                    Poll::Pending => {
                        if silence.poll_unpin(cx).is_ready() {
                            self.resume("no heartbeat");
                            continue;
                        }
                        return Poll::Pending;
                    }
                },
            }
        }
    }

    /// Checks ordering of a data message; resumes on a gap.
    fn accept(&mut self, message: async_nats::Message) -> Option<Delivered> {
        // The metadata is in the reply subject; async-nats parses both of its forms.
        let message = jetstream::Message {
            message,
            context: self.js.clone(),
        };
        let (stream_seq, cons_seq, pending) = match message.info() {
            Ok(info) => (info.stream_sequence, info.consumer_sequence, info.pending),
            Err(err) => {
                tracing::warn!(bucket = %self.bucket, %err, "watch message without metadata; ignored");
                return None;
            }
        };
        let State::Live { consumer_seq, .. } = &mut self.state else {
            return None;
        };
        if cons_seq != *consumer_seq + 1 {
            self.resume("consumer sequence gap");
            return None;
        }
        *consumer_seq = cons_seq;
        self.last_revision = stream_seq;
        let message = message.message;
        let subject = message.subject.as_str();
        let key = subject
            .strip_prefix(self.prefix.as_str())
            .unwrap_or(subject)
            .to_string();
        Some(Delivered {
            key,
            revision: stream_seq,
            pending,
            message,
        })
    }
}

fn live(subscriber: Subscriber) -> State {
    State::Live {
        subscriber,
        consumer_seq: 0,
        silence: Box::pin(tokio::time::sleep(HEARTBEAT * 2)),
    }
}

/// Subscribes to a fresh inbox, then creates an ephemeral push consumer
/// delivering to it; returns the subscription and the consumer's pending count.
async fn create(
    client: async_nats::Client,
    stream: jetstream::stream::Stream,
    mut subjects: Vec<String>,
    deliver_policy: DeliverPolicy,
    bucket: String,
    created: Option<String>,
) -> Created {
    let what = format!("watching bucket {bucket}");
    let inbox = client.new_inbox();
    let subscriber = client
        .subscribe(inbox.clone())
        .await
        .map_err(|e| BackendError::Unavailable(format!("{what}: {e}")))?;
    let mut config = push::Config {
        deliver_subject: inbox,
        description: Some("parti watch".into()),
        deliver_policy,
        ack_policy: AckPolicy::None,
        replay_policy: ReplayPolicy::Instant,
        idle_heartbeat: HEARTBEAT,
        flow_control: false,
        inactive_threshold: INACTIVE_THRESHOLD,
        memory_storage: true,
        num_replicas: 1,
        ..Default::default()
    };
    if subjects.len() == 1 {
        config.filter_subject = subjects.remove(0);
    } else {
        config.filter_subjects = subjects;
    }
    if let DeliverPolicy::ByStartSequence { start_sequence } = config.deliver_policy {
        // Resuming: a stream that was recreated (memory storage and a server
        // restart, a deleted bucket) has another creation time than the one
        // the watch started on, and usually a last sequence below the resume
        // point. Resuming there would skip its first entries (or deliver the
        // new stream's entries as if they followed the old one's): end the
        // watch instead, so that the driver opens a new one from a fresh
        // snapshot.
        let mut current = stream.clone();
        let info = current.info().await.map_err(|e| classify(&what, &e))?;
        if info.state.last_sequence.saturating_add(1) < start_sequence {
            return Err(BackendError::Other(format!(
                "{what}: the stream restarted (last sequence {} below the resume point {start_sequence})",
                info.state.last_sequence
            )));
        }
        let now_created = info.created.to_string();
        if let Some(started_on) = created.filter(|c| *c != now_created) {
            return Err(BackendError::Other(format!(
                "{what}: the stream was recreated (created {now_created}, the watch started on one created {started_on})"
            )));
        }
    }
    let consumer = stream
        .create_consumer(config)
        .await
        .map_err(|e| classify(&what, &e))?;
    Ok((subscriber, consumer.cached_info().num_pending))
}
