//! The group watch: one stream merged from three sub-watches (members bucket, the
//! leader key, and `meta` plus this worker's `w.*.<worker>` records).
//!
//! Each sub-watch is an ordered push consumer with `DeliverPolicy::LastPerSubject`
//! (the latest entry of every key, then live changes), created here rather than
//! through `Store::watch_with_history` because we need the consumer's
//! `num_pending` at creation:
//!
//! - **Snapshot end.** A sub-watch has delivered its snapshot when the consumer
//!   had nothing pending at creation (an empty bucket or an absent key delivers
//!   nothing at all, so waiting for an entry would hang) or when an entry arrives
//!   with `pending == 0`. [`WatchEvent::CaughtUp`] is emitted once every
//!   sub-watch is there. As a safety net against the one race that could leave a
//!   snapshot unfinished (a pending entry removed by the server before it was
//!   delivered), `CaughtUp` is forced after a timeout, with a warning.
//! - **Resume.** The ordered consumer of async-nats recovers by itself from a
//!   reconnect, a missed heartbeat or a sequence gap: it recreates the consumer
//!   from the last delivered revision + 1. Those recoveries surface here as
//!   transient item errors, which are logged and skipped. If a sub-stream ends
//!   (the client was closed) or keeps failing, the merged stream yields one
//!   `Err` and ends; the driver then calls `watch` again and gets a fresh
//!   snapshot.

use crate::codec::{Decoder, Source, operation};
use crate::errors::classify;
use async_nats::jetstream::consumer::push::{Ordered, OrderedConfig};
use async_nats::jetstream::consumer::{DeliverPolicy, ReplayPolicy};
use async_nats::jetstream::{self, kv};
use futures_core::Stream;
use futures_util::{FutureExt, StreamExt};
use parti_core::backend::{BackendError, WatchEvent};
use std::collections::VecDeque;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

/// A sub-stream that fails this many times in a row without delivering anything
/// is considered broken.
const MAX_CONSECUTIVE_ERRORS: u32 = 16;

/// One ordered consumer over some keys of one bucket.
pub(crate) struct SubWatch {
    source: Source,
    bucket: String,
    /// `$KV.<bucket>.`
    prefix: String,
    messages: Ordered,
    snapshot_done: bool,
    consecutive_errors: u32,
}

impl SubWatch {
    /// Starts a watch of `keys` (filters, wildcards allowed) in `store`.
    pub(crate) async fn open(
        js: &jetstream::Context,
        store: &kv::Store,
        source: Source,
        keys: &[String],
    ) -> Result<SubWatch, BackendError> {
        let what = format!("watching bucket {}", store.name);
        let mut subjects: Vec<String> = keys
            .iter()
            .map(|k| format!("{}{}", store.prefix, k))
            .collect();
        let mut config = OrderedConfig {
            deliver_subject: js.client().new_inbox(),
            description: Some("parti watch".into()),
            replay_policy: ReplayPolicy::Instant,
            deliver_policy: DeliverPolicy::LastPerSubject,
            ..Default::default()
        };
        if subjects.len() == 1 {
            config.filter_subject = subjects.remove(0);
        } else {
            config.filter_subjects = subjects;
        }
        let consumer = store
            .stream
            .create_consumer(config)
            .await
            .map_err(|e| classify(&what, &e))?;
        let pending = consumer.cached_info().num_pending;
        let messages = consumer.messages().await.map_err(|e| classify(&what, &e))?;
        Ok(SubWatch {
            source,
            bucket: store.name.clone(),
            prefix: store.prefix.clone(),
            messages,
            snapshot_done: pending == 0,
            consecutive_errors: 0,
        })
    }
}

/// The merged watch stream (see the module docs).
pub(crate) struct MergedWatch {
    subs: Vec<SubWatch>,
    decoder: Decoder,
    queue: VecDeque<Result<WatchEvent, BackendError>>,
    /// Next sub-watch to poll first (round robin, so one busy bucket cannot
    /// starve the others).
    cursor: usize,
    caught_up_sent: bool,
    /// Forces `CaughtUp` if the snapshot does not complete in time.
    snapshot_deadline: Option<Pin<Box<tokio::time::Sleep>>>,
    ended: bool,
}

impl MergedWatch {
    pub(crate) fn new(subs: Vec<SubWatch>, decoder: Decoder, snapshot_timeout: Duration) -> Self {
        let mut watch = MergedWatch {
            subs,
            decoder,
            queue: VecDeque::new(),
            cursor: 0,
            caught_up_sent: false,
            snapshot_deadline: Some(Box::pin(tokio::time::sleep(snapshot_timeout))),
            ended: false,
        };
        watch.maybe_caught_up();
        watch
    }

    fn maybe_caught_up(&mut self) {
        if !self.caught_up_sent && self.subs.iter().all(|s| s.snapshot_done) {
            self.caught_up_sent = true;
            self.snapshot_deadline = None;
            self.queue.push_back(Ok(WatchEvent::CaughtUp));
        }
    }

    fn handle_message(&mut self, i: usize, msg: jetstream::Message) {
        let sub = &mut self.subs[i];
        sub.consecutive_errors = 0;
        let (revision, pending) = match msg.info() {
            Ok(info) => (info.stream_sequence, info.pending),
            Err(err) => {
                tracing::warn!(bucket = %sub.bucket, %err, "watch entry without metadata; ignored");
                return;
            }
        };
        let subject = msg.subject.as_str();
        let key = subject.strip_prefix(sub.prefix.as_str()).unwrap_or(subject);
        let op = operation(msg.headers.as_ref());
        if let Some(event) =
            self.decoder
                .event(sub.source, &sub.bucket, key, op, revision, &msg.payload)
        {
            self.queue.push_back(Ok(event));
        }
        if !sub.snapshot_done && pending == 0 {
            sub.snapshot_done = true;
            self.maybe_caught_up();
        }
    }

    /// Polls the sub-watches once each, starting at the cursor. Returns whether
    /// anything happened.
    fn poll_subs(&mut self, cx: &mut Context<'_>) -> bool {
        let n = self.subs.len();
        for step in 0..n {
            let i = (self.cursor + step) % n;
            match self.subs[i].messages.poll_next_unpin(cx) {
                Poll::Pending => continue,
                Poll::Ready(Some(Ok(msg))) => {
                    self.cursor = (i + 1) % n;
                    self.handle_message(i, msg);
                }
                Poll::Ready(Some(Err(err))) => {
                    let sub = &mut self.subs[i];
                    sub.consecutive_errors += 1;
                    if sub.consecutive_errors >= MAX_CONSECUTIVE_ERRORS {
                        let what = format!("watch of bucket {}", sub.bucket);
                        tracing::warn!(bucket = %sub.bucket, %err, "watch keeps failing; ending it");
                        self.queue.push_back(Err(match classify(&what, &err) {
                            BackendError::Unavailable(m) => BackendError::Unavailable(m),
                            other => BackendError::Unavailable(format!("{what}: {other}")),
                        }));
                        self.ended = true;
                    } else {
                        // The ordered consumer recreates itself on the next poll.
                        tracing::debug!(bucket = %sub.bucket, %err, "watch recovering");
                    }
                }
                Poll::Ready(None) => {
                    let bucket = &self.subs[i].bucket;
                    tracing::warn!(%bucket, "watch stream ended");
                    self.queue.push_back(Err(BackendError::Unavailable(format!(
                        "watch of bucket {bucket} ended (client closed?)"
                    ))));
                    self.ended = true;
                }
            }
            return true;
        }
        false
    }
}

impl Stream for MergedWatch {
    type Item = Result<WatchEvent, BackendError>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        loop {
            if let Some(item) = this.queue.pop_front() {
                return Poll::Ready(Some(item));
            }
            if this.ended {
                return Poll::Ready(None);
            }
            if this.poll_subs(cx) {
                continue;
            }
            if let Some(deadline) = this.snapshot_deadline.as_mut() {
                if deadline.poll_unpin(cx).is_ready() {
                    tracing::warn!(
                        "watch snapshot incomplete at the deadline; declaring caught up"
                    );
                    for sub in &mut this.subs {
                        sub.snapshot_done = true;
                    }
                    this.maybe_caught_up();
                    continue;
                }
            }
            return Poll::Pending;
        }
    }
}
