//! The queue of commands a worker has produced and not yet handed to its driver.

use crate::command::{Command, Notification};
use crate::event::OpId;
use std::collections::VecDeque;

/// Commands waiting for the driver, and the operation-id counter.
#[derive(Debug, Default)]
pub(crate) struct Outbox {
    commands: VecDeque<Command>,
    next_op: u64,
    /// A renewal (of the ID or of leadership) was queued since the last
    /// [`Outbox::take_renewal_queued`].
    renewal_queued: bool,
}

impl Outbox {
    /// A fresh operation id.
    pub(crate) fn op(&mut self) -> OpId {
        self.next_op += 1;
        OpId(self.next_op)
    }

    /// Queues a command.
    pub(crate) fn push(&mut self, command: Command) {
        if matches!(
            command,
            Command::RenewLease { .. } | Command::RenewLeadership { .. }
        ) {
            self.renewal_queued = true;
        }
        self.commands.push_back(command);
    }

    /// Whether a renewal was queued since the last call.
    pub(crate) fn take_renewal_queued(&mut self) -> bool {
        std::mem::take(&mut self.renewal_queued)
    }

    /// Queues a user notification.
    pub(crate) fn notify(&mut self, notification: Notification) {
        self.commands.push_back(Command::Notify(notification));
    }

    /// Takes the oldest queued command.
    pub(crate) fn pop(&mut self) -> Option<Command> {
        self.commands.pop_front()
    }
}
