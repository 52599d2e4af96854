//! The group watch: one stream merged from three sub-watches (the members
//! bucket, or only the worker's own key of it; the leader key; `meta` plus
//! this worker's `w.*.<worker>` records), each a
//! [`ResumableConsumer`] starting with the latest entry of every key.
//!
//! - **Snapshot end.** A sub-watch has delivered its snapshot when its consumer
//!   had nothing pending at creation (an empty bucket or an absent key delivers
//!   nothing at all, so waiting for an entry would hang) or when an entry arrives
//!   with `pending == 0`. [`WatchEvent::CaughtUp`] is emitted once every
//!   sub-watch is there. As a safety net against the one race that could leave a
//!   snapshot unfinished (a pending entry removed by the server before it was
//!   delivered), `CaughtUp` is forced after a timeout, with a warning.
//! - **Resume.** Each sub-watch resumes by itself from its last delivered
//!   revision after a reconnect, a failover or lost messages (see
//!   [`crate::consumer`]); the merged stream does not end for those. It yields
//!   one `Err` and ends only on a fatal failure (client closed, bucket deleted);
//!   the driver then calls `watch` again and gets a fresh snapshot.

use crate::codec::{Decoder, Source, operation};
use crate::consumer::{Polled, ResumableConsumer};
use futures_core::Stream;
use futures_util::FutureExt;
use parti_core::backend::{BackendError, WatchEvent};
use std::collections::VecDeque;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

/// One sub-watch and its snapshot progress.
pub(crate) struct SubWatch {
    source: Source,
    consumer: ResumableConsumer,
    snapshot_done: bool,
}

impl SubWatch {
    /// Wraps a freshly opened consumer and its pending count at creation.
    pub(crate) fn new(source: Source, consumer: ResumableConsumer, pending: u64) -> Self {
        SubWatch {
            source,
            consumer,
            snapshot_done: pending == 0,
        }
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

    /// Polls the sub-watches once each, starting at the cursor. Returns whether
    /// anything happened.
    fn poll_subs(&mut self, cx: &mut Context<'_>) -> bool {
        let n = self.subs.len();
        for step in 0..n {
            let i = (self.cursor + step) % n;
            let sub = &mut self.subs[i];
            let polled = match sub.consumer.poll_next(cx) {
                Poll::Pending => continue,
                Poll::Ready(polled) => polled,
            };
            self.cursor = (i + 1) % n;
            match polled {
                Polled::Entry(entry) => {
                    let op = operation(entry.message.headers.as_ref());
                    if let Some(event) = self.decoder.event(
                        sub.source,
                        sub.consumer.bucket(),
                        &entry.key,
                        op,
                        entry.revision,
                        &entry.message.payload,
                    ) {
                        self.queue.push_back(Ok(event));
                    }
                    if entry.pending == 0 {
                        sub.snapshot_done = true;
                    }
                }
                Polled::CaughtUp => sub.snapshot_done = true,
                Polled::Fatal(err) => {
                    tracing::warn!(bucket = %sub.consumer.bucket(), %err, "watch failed; ending it");
                    self.queue.push_back(Err(err));
                    self.ended = true;
                }
            }
            self.maybe_caught_up();
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
            if let Some(deadline) = this.snapshot_deadline.as_mut()
                && deadline.poll_unpin(cx).is_ready()
            {
                tracing::warn!("watch snapshot incomplete at the deadline; declaring caught up");
                for sub in &mut this.subs {
                    sub.snapshot_done = true;
                }
                this.maybe_caught_up();
                continue;
            }
            return Poll::Pending;
        }
    }
}
