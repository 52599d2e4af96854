//! Planted bugs: deliberate protocol faults that prove the simulator's invariant
//! checkers can fail. Rule: every planted bug is one [`PlantedBug`] in one
//! [`PlantedBugs`] set, asked with [`PlantedBugs::has`]; without the
//! `planted-bugs` feature the set is zero-sized and `has` is a `const fn`
//! returning `false`, so production builds compile every planted branch away.

/// Deliberate protocol faults, for proving that the simulator's invariant
/// checkers catch them. Never enable outside tests (feature `planted-bugs`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PlantedBug {
    /// S1: claim IDs by overwriting whatever record is there.
    BlindClaim,
    /// S2: a leader ignores its lease, conflicts and higher terms.
    IgnoreTerms,
    /// S3: grant a moving partition without revoking it first.
    GrantWithoutRevoke,
    /// S3: keep partitions after the ownership lease expired, even after a pause.
    IgnoreLease,
    /// S4: forget vanished workers without reassigning their partitions.
    IgnoreEmergencies,
    /// S5: reassign a gracefully stopped worker's partitions at once.
    NoStickyRestart,
    /// S6: a new leader restarts versions from 1.
    VersionReset,
}

#[cfg(feature = "planted-bugs")]
impl PlantedBug {
    /// Every planted bug.
    pub const ALL: [PlantedBug; 7] = [
        PlantedBug::BlindClaim,
        PlantedBug::IgnoreTerms,
        PlantedBug::GrantWithoutRevoke,
        PlantedBug::IgnoreLease,
        PlantedBug::IgnoreEmergencies,
        PlantedBug::NoStickyRestart,
        PlantedBug::VersionReset,
    ];

    /// Kebab-case name.
    pub fn name(self) -> &'static str {
        match self {
            PlantedBug::BlindClaim => "blind-claim",
            PlantedBug::IgnoreTerms => "ignore-terms",
            PlantedBug::GrantWithoutRevoke => "grant-without-revoke",
            PlantedBug::IgnoreLease => "ignore-lease",
            PlantedBug::IgnoreEmergencies => "ignore-emergencies",
            PlantedBug::NoStickyRestart => "no-sticky-restart",
            PlantedBug::VersionReset => "version-reset",
        }
    }

    /// Parses a kebab-case name.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|b| b.name() == name)
    }
}

/// The planted bugs switched on in one worker (empty unless a simulator
/// self-test plants one).
#[cfg(feature = "planted-bugs")]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct PlantedBugs(u8);

#[cfg(feature = "planted-bugs")]
impl PlantedBugs {
    /// No planted bug.
    pub(crate) const fn empty() -> Self {
        PlantedBugs(0)
    }

    /// Switches `bug` on.
    pub(crate) fn insert(&mut self, bug: PlantedBug) {
        self.0 |= 1 << bug as u8;
    }

    /// Whether `bug` is switched on.
    pub(crate) fn has(self, bug: PlantedBug) -> bool {
        self.0 & (1 << bug as u8) != 0
    }
}

/// Stand-in for the set of planted bugs in builds without the `planted-bugs`
/// feature: zero-sized, always empty.
#[cfg(not(feature = "planted-bugs"))]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct PlantedBugs;

#[cfg(not(feature = "planted-bugs"))]
impl PlantedBugs {
    /// No planted bug (the only set this build has).
    pub(crate) const fn empty() -> Self {
        PlantedBugs
    }

    /// Always `false`: no bug can be planted in this build.
    #[inline(always)]
    pub(crate) const fn has(self, _bug: PlantedBug) -> bool {
        false
    }
}

#[cfg(all(test, feature = "planted-bugs"))]
mod tests {
    use super::*;

    #[test]
    fn a_set_holds_what_was_planted() {
        let mut set = PlantedBugs::empty();
        assert!(PlantedBug::ALL.iter().all(|b| !set.has(*b)));
        set.insert(PlantedBug::IgnoreLease);
        for bug in PlantedBug::ALL {
            assert_eq!(set.has(bug), bug == PlantedBug::IgnoreLease);
            assert_eq!(PlantedBug::from_name(bug.name()), Some(bug));
        }
    }
}
