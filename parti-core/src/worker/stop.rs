//! Stopping. Rule: a stop gives up leadership and every partition at once,
//! writes the member record one last time (status `Stopping` for a graceful
//! restart, `Leaving` for a scale-down) so the leader knows why the worker left,
//! then deletes the member key; a worker that holds no ID stops at once.

use super::Worker;
use crate::command::Notification;
use crate::event::StopMode;
use crate::records::MemberStatus;
use crate::state::State;
use crate::time::Instant;

/// How far a worker is in stopping (one way: `Running → Stopping → Releasing →
/// Stopped`, or straight to `Stopped` when there is nothing to release).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Life {
    /// Working.
    Running,
    /// A stop was requested: leadership and partitions are given up and the
    /// member record that announces the departure is being written.
    Stopping,
    /// The departure is written: the member key is being deleted.
    Releasing,
    /// Stopped for good.
    Stopped,
}

impl Worker {
    /// Whether a stop was requested (or the worker stopped).
    pub(super) fn is_stopping(&self) -> bool {
        self.life != Life::Running
    }

    /// A stop was requested.
    pub(super) fn begin_stop(&mut self, mode: StopMode, now: Instant) {
        if self.is_stopping() {
            return;
        }
        self.life = Life::Stopping;
        if self.state == State::Init {
            self.finish_stop();
            return;
        }
        let sig = self.election.resign(&mut self.out);
        self.on_election(sig, now);
        let diff = self.follower.drop_all();
        self.report(diff, 0);
        if self.membership.id().is_some() {
            self.membership.set_status(match mode {
                StopMode::Graceful => MemberStatus::Stopping,
                StopMode::Leave => MemberStatus::Leaving,
            });
            self.membership.flush(&mut self.out, now);
        } else {
            self.finish_stop();
        }
    }

    /// Stopped for good (ID released or lost while stopping, or never held).
    pub(super) fn finish_stop(&mut self) {
        if self.is_stopped() {
            return;
        }
        self.controller = None;
        self.transition(State::Shutdown);
        self.life = Life::Stopped;
        self.out.notify(Notification::Stopped);
    }

    /// Once the final record is written, releases the ID.
    pub(super) fn advance_stop(&mut self, now: Instant) {
        if self.life == Life::Stopping && self.membership.is_flushed() {
            self.life = Life::Releasing;
            let sig = self.membership.release(&mut self.out);
            self.on_membership(sig, now);
        }
    }
}
