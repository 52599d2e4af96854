//! The states a user sees, and the one table of allowed transitions.

use std::fmt;

/// Lifecycle state of a worker.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum State {
    /// Created, not started.
    Init,
    /// Claiming a stable ID.
    ClaimingId,
    /// ID held; learning or electing the leader.
    Election,
    /// Waiting for the first assignment.
    WaitingAssignment,
    /// Owning its assignment; nothing pending.
    Stable,
    /// Leader only: a planned change is inside its stabilisation window.
    Scaling,
    /// Leader only: publishing a new assignment (including handoffs).
    Rebalancing,
    /// Leader only: a worker vanished; reassigning its partitions.
    Emergency,
    /// The store has been unreachable for a while.
    Degraded,
    /// Stopped (terminal).
    Shutdown,
}

impl State {
    /// Whether `self → to` is allowed. This is the one table; the worker refuses
    /// (and the simulator reports) anything else.
    pub fn can_go_to(self, to: State) -> bool {
        use State::*;
        if self == to {
            return false;
        }
        match (self, to) {
            (Shutdown, _) => false,
            (_, Shutdown) => true,
            (Init, ClaimingId) => true,
            (ClaimingId, Election) => true,
            (Election, WaitingAssignment | Stable | Scaling | Rebalancing | Emergency) => true,
            // Leadership or the leader key can vanish before a first assignment.
            (WaitingAssignment | Scaling | Rebalancing | Emergency, Election) => true,
            (WaitingAssignment, Stable | Scaling | Rebalancing | Emergency) => true,
            (Stable, Scaling | Rebalancing | Emergency) => true,
            (Scaling, Rebalancing | Emergency | Stable | WaitingAssignment) => true,
            (Rebalancing, Stable | Scaling | Emergency | WaitingAssignment) => true,
            (Emergency, Stable | Scaling | Rebalancing | WaitingAssignment) => true,
            // Losing the ID sends any running state back to claiming.
            (
                Election | WaitingAssignment | Stable | Scaling | Rebalancing | Emergency
                | Degraded,
                ClaimingId,
            ) => true,
            // Degraded can be entered from any running state (or while
            // claiming an ID back) and left to any.
            (
                ClaimingId | Election | WaitingAssignment | Stable | Scaling | Rebalancing
                | Emergency,
                Degraded,
            ) => true,
            (
                Degraded,
                Election | WaitingAssignment | Stable | Scaling | Rebalancing | Emergency,
            ) => true,
            _ => false,
        }
    }

    /// Whether the worker is past start-up and not stopped.
    pub fn is_running(self) -> bool {
        !matches!(self, State::Init | State::ClaimingId | State::Shutdown)
    }
}

impl fmt::Display for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

#[cfg(test)]
mod tests {
    use super::State::*;
    use super::*;

    const ALL: [State; 10] = [
        Init,
        ClaimingId,
        Election,
        WaitingAssignment,
        Stable,
        Scaling,
        Rebalancing,
        Emergency,
        Degraded,
        Shutdown,
    ];

    #[test]
    fn table_basics() {
        assert!(Init.can_go_to(ClaimingId));
        assert!(!Init.can_go_to(Stable));
        assert!(
            Degraded.can_go_to(Shutdown),
            "the Go original could not stop from Degraded"
        );
        assert!(Stable.can_go_to(Degraded));
        for s in ALL {
            assert!(!Shutdown.can_go_to(s));
            assert!(!s.can_go_to(s));
            if s != Shutdown {
                assert!(s.can_go_to(Shutdown));
            }
        }
    }
}
