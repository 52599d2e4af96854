//! Time as the core sees it: a number the driver passes in.
//!
//! The core never reads a clock. Every call that can depend on time takes an
//! [`Instant`], which is a count of milliseconds since an epoch the driver chooses
//! (process start, simulation start, …). Being a plain number, an `Instant` can be
//! built in tests, serialised into traces and replayed exactly.

use std::fmt;
use std::ops::{Add, Sub};
use std::time::Duration;

/// A point on the driver's monotonic clock, in milliseconds since its epoch.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Instant(u64);

impl Instant {
    /// The driver's epoch.
    pub const ZERO: Instant = Instant(0);

    /// An instant `millis` milliseconds after the epoch.
    pub const fn from_millis(millis: u64) -> Self {
        Instant(millis)
    }

    /// Milliseconds since the epoch.
    pub const fn as_millis(self) -> u64 {
        self.0
    }

    /// Time elapsed from `earlier` to `self`, zero if `earlier` is later.
    pub fn saturating_since(self, earlier: Instant) -> Duration {
        Duration::from_millis(self.0.saturating_sub(earlier.0))
    }
}

impl Add<Duration> for Instant {
    type Output = Instant;
    fn add(self, rhs: Duration) -> Instant {
        let ms = u64::try_from(rhs.as_millis()).unwrap_or(u64::MAX);
        Instant(self.0.saturating_add(ms))
    }
}

impl Sub<Duration> for Instant {
    type Output = Instant;
    fn sub(self, rhs: Duration) -> Instant {
        let ms = u64::try_from(rhs.as_millis()).unwrap_or(u64::MAX);
        Instant(self.0.saturating_sub(ms))
    }
}

impl fmt::Display for Instant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{:03}s", self.0 / 1000, self.0 % 1000)
    }
}

/// Scales a duration by a factor (used for clock-drift margins), rounding up to
/// the next millisecond so that a safety wait is never shortened by rounding.
pub fn scale_up(d: Duration, factor: f64) -> Duration {
    let ms = (d.as_secs_f64() * 1000.0 * factor).ceil();
    if ms.is_nan() || ms < 0.0 {
        // A nonsensical factor: the safe side of a wait is the longest one.
        Duration::MAX
    } else {
        // `as` saturates for floats beyond `u64::MAX` (and for infinity).
        Duration::from_millis(ms as u64)
    }
}

/// `d × factor` like [`Duration::mul_f64`], but never panics: a negative or NaN
/// product is zero and a product beyond [`Duration::MAX`] saturates there.
pub fn scale(d: Duration, factor: f64) -> Duration {
    let secs = d.as_secs_f64() * factor;
    match Duration::try_from_secs_f64(secs) {
        Ok(d) => d,
        Err(_) if secs > 0.0 => Duration::MAX,
        Err(_) => Duration::ZERO,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arithmetic_saturates() {
        let t = Instant::from_millis(5);
        assert_eq!(t - Duration::from_millis(10), Instant::ZERO);
        assert_eq!(t + Duration::from_millis(10), Instant::from_millis(15));
        assert_eq!(t.saturating_since(Instant::from_millis(9)), Duration::ZERO);
        assert_eq!(Instant::from_millis(1234).to_string(), "1.234s");
    }

    #[test]
    fn scaling_never_panics() {
        assert_eq!(scale(Duration::MAX, 2.0), Duration::MAX);
        assert_eq!(scale(Duration::from_secs(1), -1.0), Duration::ZERO);
        assert_eq!(scale(Duration::from_secs(1), f64::NAN), Duration::ZERO);
        assert_eq!(scale(Duration::from_secs(2), 1.5), Duration::from_secs(3));
        assert_eq!(
            scale_up(Duration::MAX, 2.0),
            Duration::from_millis(u64::MAX)
        );
        assert_eq!(scale_up(Duration::from_secs(1), f64::NAN), Duration::MAX);
        assert_eq!(
            scale_up(Duration::from_secs(1), f64::INFINITY),
            Duration::from_millis(u64::MAX)
        );
        let far = Instant::from_millis(u64::MAX - 1);
        assert_eq!(far + Duration::MAX, Instant::from_millis(u64::MAX));
        assert_eq!(Instant::ZERO - Duration::MAX, Instant::ZERO);
    }

    #[test]
    fn scale_up_rounds_up() {
        assert_eq!(
            scale_up(Duration::from_millis(1000), 1.0001),
            Duration::from_millis(1001)
        );
        assert_eq!(
            scale_up(Duration::from_millis(1000), 1.0),
            Duration::from_millis(1000)
        );
    }
}
