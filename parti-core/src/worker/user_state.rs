//! The state a user sees. Rule: it is derived from the machines after every
//! input (never set ad hoc), and every transition is checked against the table
//! of [`State::can_go_to`]; a refused one is recorded as a bug.

use super::Worker;
use super::controller::Activity;
use crate::command::Notification;
use crate::state::State;
use crate::time::Instant;

impl Worker {
    /// The state the machines say the worker is in.
    fn derived_state(&self, now: Instant) -> State {
        if self.is_stopped() {
            return State::Shutdown;
        }
        if self.state == State::Init {
            return State::Init;
        }
        // Cut off from the store, a worker is `Degraded` even when its ID
        // lapsed meanwhile: it claims it back once the store answers.
        if self.degraded.is_degraded() {
            return State::Degraded;
        }
        if self.membership.id().is_none() {
            return State::ClaimingId;
        }
        let applied = self.follower.ever_applied();
        if let Some(c) = &self.controller {
            return match c.activity(now) {
                Activity::Starting | Activity::Scaling => State::Scaling,
                Activity::Rebalancing => State::Rebalancing,
                Activity::Emergency => State::Emergency,
                Activity::Idle if applied => State::Stable,
                Activity::Idle => State::WaitingAssignment,
            };
        }
        if applied {
            State::Stable
        } else if self.election.leader_known() {
            State::WaitingAssignment
        } else {
            State::Election
        }
    }

    /// Moves to the derived state (not while stopping: `Shutdown` comes last).
    pub(super) fn update_state(&mut self, now: Instant) {
        if self.is_stopping() {
            return;
        }
        let to = self.derived_state(now);
        if to != self.state {
            self.transition(to);
        }
    }

    /// Moves to `to`, recording a transition the table refuses.
    pub(super) fn transition(&mut self, to: State) {
        let from = self.state;
        if from == to {
            return;
        }
        if !from.can_go_to(to) {
            self.invalid_transitions.push((from, to));
        }
        self.state = to;
        self.out.notify(Notification::StateChanged { from, to });
    }
}
