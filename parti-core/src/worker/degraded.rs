//! Degraded-mode tracking: hysteresis on reachability of the store, and alerts
//! that repeat while it lasts.
//!
//! Alert schedule, with `t` the time spent degraded (counted from the instant
//! the worker entered `Degraded`, i.e. `degraded.enter_after` after the store
//! became unreachable):
//! - the first alert comes at `t = alerts.info`;
//! - an alert comes at once when the level rises, i.e. at `t = alerts.warn`,
//!   `alerts.error` and `alerts.critical` (one alert for thresholds that
//!   coincide, at the highest level reached);
//! - otherwise the alert repeats `alerts.interval` after the previous one;
//! - nothing after the worker left `Degraded`; a new episode starts over.
//!
//! The level of an alert is the highest threshold `t` has reached; the repeat
//! schedule follows the previous alert's due instant (no drift), but never
//! catches up in a burst after a pause.

use crate::command::AlertLevel;
use crate::config::{AlertConfig, Config};
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
    /// When the worker entered `Degraded`.
    degraded_since: Option<Instant>,
    next_alert: Option<Instant>,
}

/// The alert level at `now` for an episode that began at `since` (`None`
/// before `alerts.info`). Compared as instants, so the thresholds round the
/// same way as every other deadline of the core (to whole milliseconds).
fn level_at(alerts: &AlertConfig, since: Instant, now: Instant) -> Option<AlertLevel> {
    [
        (alerts.critical, AlertLevel::Critical),
        (alerts.error, AlertLevel::Error),
        (alerts.warn, AlertLevel::Warn),
        (alerts.info, AlertLevel::Info),
    ]
    .into_iter()
    .find(|(t, _)| now >= since + *t)
    .map(|(_, level)| level)
}

/// The next instant a level threshold is crossed, strictly after `now`.
fn next_rise(alerts: &AlertConfig, since: Instant, now: Instant) -> Option<Instant> {
    [alerts.info, alerts.warn, alerts.error, alerts.critical]
        .into_iter()
        .map(|t| since + t)
        .find(|at| *at > now)
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
                    self.degraded_since = Some(now);
                    self.next_alert = Some(now + config.alerts.info);
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
                let Some(due) = self.next_alert else {
                    return Signal::None;
                };
                if now < due {
                    return Signal::None;
                }
                let a = &config.alerts;
                // `due` is never before `since + alerts.info`.
                let level = level_at(a, since, now).unwrap_or(AlertLevel::Info);
                // The repeat follows the due instant, unless it is already
                // past (after a pause: no burst of catch-up alerts). At least
                // 1 ms, so that an unvalidated zero interval cannot spin.
                let interval = a.interval.max(Duration::from_millis(1));
                let repeat = if due + interval > now {
                    due + interval
                } else {
                    now + interval
                };
                let rise = next_rise(a, since, now);
                self.next_alert = super::membership::min_opt(Some(repeat), rise);
                Signal::Alert(level, now.saturating_since(since))
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
    use AlertLevel::{Critical, Error, Info, Warn};

    fn t(ms: u64) -> Instant {
        Instant::from_millis(ms)
    }

    fn ms(ms: u64) -> Duration {
        Duration::from_millis(ms)
    }

    /// Enter after 1 s; info 1 s, warn 2.5 s, error 4 s, critical 6 s, every 1 s.
    fn config() -> Config {
        let mut c = Config::default();
        c.degraded.enter_after = ms(1000);
        c.degraded.exit_after = ms(500);
        c.alerts.info = ms(1000);
        c.alerts.warn = ms(2500);
        c.alerts.error = ms(4000);
        c.alerts.critical = ms(6000);
        c.alerts.interval = ms(1000);
        c
    }

    /// Runs the tracker's timers up to `until`, as a driver does: every signal
    /// with the instant it came at.
    fn run(d: &mut DegradedTracker, c: &Config, until: Instant) -> Vec<(Instant, Signal)> {
        let mut out = Vec::new();
        while let Some(at) = d.poll_timeout(c) {
            if at > until {
                break;
            }
            let sig = d.on_timeout(c, at);
            assert_ne!(sig, Signal::None, "woken at {at} for nothing");
            out.push((at, sig));
        }
        out
    }

    /// Only the alerts, as (instant, level, degraded for).
    fn alerts(signals: &[(Instant, Signal)]) -> Vec<(Instant, AlertLevel, Duration)> {
        signals
            .iter()
            .filter_map(|(at, s)| match s {
                Signal::Alert(l, e) => Some((*at, *l, *e)),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn hysteresis_and_the_default_schedule() {
        let c = Config::default();
        let mut d = DegradedTracker::default();
        let s = |secs: u64| t(secs * 1000);
        d.on_unreachable(s(0));
        assert_eq!(d.on_timeout(&c, s(9)), Signal::None);
        assert_eq!(d.on_timeout(&c, s(10)), Signal::Entered);
        assert!(d.is_degraded());
        // First alert alerts.info (30 s) after entering, not after the cut.
        assert_eq!(d.poll_timeout(&c), Some(s(40)));
        assert_eq!(d.on_timeout(&c, s(39)), Signal::None);
        assert_eq!(
            d.on_timeout(&c, s(40)),
            Signal::Alert(Info, Duration::from_secs(30))
        );
        // Repeats every minute; warn (2 min) comes on the repeat at 130 s.
        assert_eq!(d.poll_timeout(&c), Some(s(100)));
        assert_eq!(
            d.on_timeout(&c, s(100)),
            Signal::Alert(Info, Duration::from_secs(90))
        );
        assert_eq!(d.poll_timeout(&c), Some(s(130)));
        assert_eq!(
            d.on_timeout(&c, s(130)),
            Signal::Alert(Warn, Duration::from_secs(120))
        );
        // Exit needs `exit_after` (2 s) of uninterrupted reachability.
        d.on_reachable(s(131));
        d.on_unreachable(s(132));
        d.on_reachable(s(133));
        assert_eq!(d.on_timeout(&c, s(134)), Signal::None);
        assert_eq!(d.on_timeout(&c, s(135)), Signal::Exited);
        assert!(!d.is_degraded());
        assert_eq!(d.poll_timeout(&c), None);
    }

    #[test]
    fn first_alert_at_info_then_every_interval_and_at_once_on_each_rise() {
        let c = config();
        let mut d = DegradedTracker::default();
        d.on_unreachable(t(500));
        let signals = run(&mut d, &c, t(9_000));
        // Entered at 1.5 s: degraded time counts from there.
        assert_eq!(signals.first(), Some(&(t(1500), Signal::Entered)));
        let expected = vec![
            (t(2500), Info, ms(1000)),
            (t(3500), Info, ms(2000)),
            (t(4000), Warn, ms(2500)), // rise: at once, not at the 4.5 s repeat
            (t(5000), Warn, ms(3500)),
            (t(5500), Error, ms(4000)), // rise
            (t(6500), Error, ms(5000)),
            (t(7500), Critical, ms(6000)), // rise, on the repeat instant: one alert
            (t(8500), Critical, ms(7000)),
        ];
        assert_eq!(alerts(&signals), expected);
    }

    #[test]
    fn each_level_rise_alerts_once_even_between_repeats() {
        let mut c = config();
        // Long interval: only the rises come between repeats.
        c.alerts.interval = ms(10_000);
        let mut d = DegradedTracker::default();
        d.on_unreachable(t(0));
        let signals = run(&mut d, &c, t(20_000));
        let levels: Vec<(Instant, AlertLevel)> =
            alerts(&signals).iter().map(|(a, l, _)| (*a, *l)).collect();
        assert_eq!(
            levels,
            vec![
                (t(2000), Info),
                (t(3500), Warn),
                (t(5000), Error),
                (t(7000), Critical),
                (t(17_000), Critical), // then the plain repeat
            ]
        );
    }

    #[test]
    fn coinciding_thresholds_give_one_alert_at_the_highest_level() {
        let mut c = config();
        c.alerts.warn = ms(2000);
        c.alerts.error = ms(2000);
        c.alerts.interval = ms(5000);
        let mut d = DegradedTracker::default();
        d.on_unreachable(t(0));
        let signals = run(&mut d, &c, t(8000));
        assert_eq!(
            alerts(&signals),
            vec![
                (t(2000), Info, ms(1000)),
                (t(3000), Error, ms(2000)),
                (t(7000), Critical, ms(6000)),
            ]
        );
    }

    #[test]
    fn a_late_check_gives_one_alert_not_a_burst() {
        let c = config();
        let mut d = DegradedTracker::default();
        d.on_unreachable(t(0));
        assert_eq!(d.on_timeout(&c, t(1000)), Signal::Entered);
        // The process was paused from 1 s to 6.2 s: one alert, at the level
        // reached, then the schedule goes on from there.
        assert_eq!(d.on_timeout(&c, t(6200)), Signal::Alert(Error, ms(5200)));
        assert_eq!(d.on_timeout(&c, t(6200)), Signal::None);
        assert_eq!(d.poll_timeout(&c), Some(t(7000)));
        assert_eq!(d.on_timeout(&c, t(7000)), Signal::Alert(Critical, ms(6000)));
        assert_eq!(d.poll_timeout(&c), Some(t(8000)));
    }

    #[test]
    fn no_alert_after_exit_and_a_new_episode_starts_over() {
        let c = config();
        let mut d = DegradedTracker::default();
        d.on_unreachable(t(0));
        let signals = run(&mut d, &c, t(4500));
        assert_eq!(alerts(&signals).last(), Some(&(t(4500), Warn, ms(3500))));
        // Reachable at 4.6 s: still degraded (and alerting) until 5.1 s.
        // (Entered at 1 s: error is due at 5 s.)
        d.on_reachable(t(4600));
        let signals = run(&mut d, &c, t(60_000));
        assert_eq!(
            signals,
            vec![
                (t(5000), Signal::Alert(Error, ms(4000))),
                (t(5100), Signal::Exited)
            ]
        );
        assert!(!d.is_degraded());
        assert_eq!(d.poll_timeout(&c), None);
        assert_eq!(d.on_timeout(&c, t(100_000)), Signal::None);
        // Cut off again: entered 1 s later, first alert (Info) 1 s after that.
        d.on_unreachable(t(100_000));
        let signals = run(&mut d, &c, t(102_000));
        assert_eq!(
            signals,
            vec![
                (t(101_000), Signal::Entered),
                (t(102_000), Signal::Alert(Info, ms(1000)))
            ]
        );
    }

    #[test]
    fn sub_millisecond_thresholds_cannot_spin() {
        let mut c = config();
        c.alerts.info = Duration::from_micros(1500);
        c.alerts.warn = Duration::from_micros(1700);
        c.alerts.error = Duration::from_micros(1900);
        c.alerts.critical = Duration::from_micros(2100);
        c.alerts.interval = Duration::ZERO;
        let mut d = DegradedTracker::default();
        d.on_unreachable(t(0));
        let signals = run(&mut d, &c, t(1010));
        // Entered at 1 s, then one alert per millisecond at most.
        assert_eq!(signals.len(), 1 + 10, "{signals:?}");
    }
}
