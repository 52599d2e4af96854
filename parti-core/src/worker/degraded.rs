//! Degraded-mode tracking: hysteresis on reachability of the store, and alerts
//! that repeat while it lasts.

use crate::command::AlertLevel;
use crate::config::Config;
use crate::time::Instant;
use std::time::Duration;

/// What changed.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Signal {
    None,
    Entered,
    Exited,
    Alert(AlertLevel, Duration),
}

/// The degraded tracker.
#[derive(Debug, Default)]
pub(crate) struct DegradedTracker {
    unreachable_since: Option<Instant>,
    reachable_since: Option<Instant>,
    degraded_since: Option<Instant>,
    next_alert: Option<Instant>,
}

impl DegradedTracker {
    /// Whether the worker is degraded.
    pub(crate) fn is_degraded(&self) -> bool {
        self.degraded_since.is_some()
    }

    /// Whether the store is believed unreachable right now.
    pub(crate) fn is_cut_off(&self) -> bool {
        self.unreachable_since.is_some()
    }

    /// A write could not reach the store, or the connection dropped.
    pub(crate) fn on_unreachable(&mut self, now: Instant) {
        self.unreachable_since.get_or_insert(now);
        self.reachable_since = None;
    }

    /// A write reached the store. Returns whether the worker was cut off
    /// until now (what it observed meanwhile is stale).
    pub(crate) fn on_reachable(&mut self, now: Instant) -> bool {
        self.reachable_since.get_or_insert(now);
        self.unreachable_since.take().is_some()
    }

    /// Checks thresholds.
    pub(crate) fn on_timeout(&mut self, config: &Config, now: Instant) -> Signal {
        match self.degraded_since {
            None => {
                if let Some(since) = self.unreachable_since
                    && now >= since + config.degraded.enter_after
                {
                    self.degraded_since = Some(since);
                    self.next_alert = Some(since + config.alerts.info);
                    return Signal::Entered;
                }
                Signal::None
            }
            Some(since) => {
                if self
                    .reachable_since
                    .is_some_and(|r| now >= r + config.degraded.exit_after)
                {
                    self.degraded_since = None;
                    self.next_alert = None;
                    return Signal::Exited;
                }
                if let Some(at) = self.next_alert
                    && now >= at
                {
                    let elapsed = now.saturating_since(since);
                    let a = &config.alerts;
                    let level = if elapsed >= a.critical {
                        AlertLevel::Critical
                    } else if elapsed >= a.error {
                        AlertLevel::Error
                    } else if elapsed >= a.warn {
                        AlertLevel::Warn
                    } else {
                        AlertLevel::Info
                    };
                    self.next_alert = Some(now + a.interval);
                    return Signal::Alert(level, elapsed);
                }
                Signal::None
            }
        }
    }

    /// Next instant with work.
    pub(crate) fn poll_timeout(&self, config: &Config) -> Option<Instant> {
        match self.degraded_since {
            None => self
                .unreachable_since
                .map(|s| s + config.degraded.enter_after),
            Some(_) => {
                let exit = self.reachable_since.map(|r| r + config.degraded.exit_after);
                super::membership::min_opt(exit, self.next_alert)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hysteresis_and_alerts() {
        let c = Config::default();
        let mut d = DegradedTracker::default();
        let t = |s: u64| Instant::from_millis(s * 1000);
        d.on_unreachable(t(0));
        assert_eq!(d.on_timeout(&c, t(9)), Signal::None);
        assert_eq!(d.on_timeout(&c, t(10)), Signal::Entered);
        assert_eq!(d.poll_timeout(&c), Some(t(30)));
        assert_eq!(
            d.on_timeout(&c, t(30)),
            Signal::Alert(AlertLevel::Info, Duration::from_secs(30))
        );
        assert_eq!(
            d.on_timeout(&c, t(150)),
            Signal::Alert(AlertLevel::Warn, Duration::from_secs(150))
        );
        d.on_reachable(t(151));
        d.on_unreachable(t(152));
        d.on_reachable(t(153));
        assert_eq!(d.on_timeout(&c, t(157)), Signal::None);
        assert_eq!(d.on_timeout(&c, t(158)), Signal::Exited);
        assert!(!d.is_degraded());
    }
}
