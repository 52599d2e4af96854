//! Leader election through one key: create it to campaign (its creation revision
//! is the term), renew it with compare-and-set, delete it to resign. A leader acts
//! only while its leadership lease (measured from the start of its last
//! successful renewal, shortened for clock drift) is valid.

use super::planted::{PlantedBug, PlantedBugs};
use crate::command::Command;
use crate::config::Config;
use crate::event::{OpId, Outcome};
use crate::ids::{InstanceId, WorkerId};
use crate::outbox::Outbox;
use crate::records::{LeaderRecord, Revision, WIRE_VERSION};
use crate::time::Instant;
use std::time::Duration;

/// What an election step wants the worker to know.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Signal {
    None,
    /// This worker became leader with this term.
    Elected(u64),
    /// This worker is no longer leader.
    Deposed,
}

/// The leader as seen in the watch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct KnownLeader {
    pub(crate) worker: WorkerId,
    pub(crate) instance: InstanceId,
    pub(crate) term: u64,
    pub(crate) revision: Revision,
}

/// The election machine.
#[derive(Debug, Default)]
pub(crate) struct Election {
    known: Option<KnownLeader>,
    seen_any: bool,
    campaign: Option<(OpId, Instant)>,
    campaign_unknown_since: Option<Instant>,
    next_campaign: Option<Instant>,
    my_term: Option<u64>,
    my_revision: Option<Revision>,
    renew: Option<(OpId, Instant)>,
    last_ok_start: Option<Instant>,
    next_renew: Option<Instant>,
    resign: Option<OpId>,
    /// The claim instance this worker campaigned with.
    my_instance: Option<InstanceId>,
    /// Planted bugs (simulator self-tests; always empty in production).
    pub(crate) planted: PlantedBugs,
}

impl Election {
    /// Planted bug `IgnoreTerms`: keep acting as leader after the lease
    /// expired, a conflict or a higher term.
    fn ignores_lease(&self) -> bool {
        self.planted.has(PlantedBug::IgnoreTerms)
    }

    /// Whether this worker is the leader and its lease is valid at `now`.
    pub(crate) fn leads(&self, config: &Config, now: Instant) -> bool {
        self.my_term.is_some()
            && (self.ignores_lease()
                || self
                    .last_ok_start
                    .is_some_and(|t| now < t + config.leadership_lease()))
    }

    /// The leader as seen, if any.
    pub(crate) fn known_leader(&self) -> Option<&KnownLeader> {
        self.known.as_ref()
    }

    /// Whether a leader key exists as far as we know.
    pub(crate) fn leader_known(&self) -> bool {
        self.known.is_some() || self.my_term.is_some()
    }

    /// Forgets everything (ID lost, stop).
    pub(crate) fn reset(&mut self) -> Signal {
        let was = self.my_term.is_some();
        let known = self.known.take();
        *self = Election {
            known,
            seen_any: self.seen_any,
            planted: self.planted,
            ..Election::default()
        };
        if was { Signal::Deposed } else { Signal::None }
    }

    fn record(worker: &WorkerId, instance: InstanceId, term: Option<u64>) -> LeaderRecord {
        LeaderRecord {
            v: WIRE_VERSION,
            worker: worker.clone(),
            instance,
            term,
        }
    }

    /// The leader key changed.
    pub(crate) fn on_leader(
        &mut self,
        change: Option<(LeaderRecord, Revision)>,
        me: Option<(&WorkerId, InstanceId)>,
        now: Instant,
    ) -> Signal {
        self.seen_any = true;
        match change {
            Some((rec, revision)) => {
                let term = match &self.known {
                    Some(k) if k.instance == rec.instance && k.worker == rec.worker => k.term,
                    _ => rec.term.unwrap_or(revision),
                };
                let term = rec.term.unwrap_or(term);
                self.known = Some(KnownLeader {
                    worker: rec.worker.clone(),
                    instance: rec.instance,
                    term,
                    revision,
                });
                if let Some((_, instance)) = me {
                    if rec.instance == instance {
                        // Our campaign whose outcome we did not learn, or our renewal.
                        if self.my_term.is_none()
                            && let Some(sent) = self.campaign_unknown_since.take()
                        {
                            self.my_term = Some(term);
                            self.my_revision = Some(revision);
                            self.last_ok_start = Some(sent);
                            self.campaign = None;
                            return Signal::Elected(term);
                        }
                        // One of our renewals landed (perhaps one whose
                        // acknowledgement was lost): renew from its revision.
                        if self.my_term.is_some() && self.my_revision.is_some_and(|r| r < revision)
                        {
                            self.my_revision = Some(revision);
                        }
                    } else if self.my_term.is_some() && !self.ignores_lease() {
                        // Someone else holds the key: we are not leader any more.
                        return self.step_down();
                    }
                }
                Signal::None
            }
            None => {
                self.known = None;
                self.next_campaign = Some(now);
                if self.my_term.is_some() && self.renew.is_none() && self.resign.is_none() {
                    // Our key expired or was deleted under us.
                    return self.step_down();
                }
                Signal::None
            }
        }
    }

    fn step_down(&mut self) -> Signal {
        let was = self.my_term.take().is_some();
        self.my_revision = None;
        self.renew = None;
        self.last_ok_start = None;
        self.next_renew = None;
        if was { Signal::Deposed } else { Signal::None }
    }

    /// Result of an election command; `None` if `op` is not ours.
    pub(crate) fn on_completed(
        &mut self,
        config: &Config,
        op: OpId,
        outcome: &Outcome,
        now: Instant,
    ) -> Option<Signal> {
        if let Some((campaign, sent)) = self.campaign
            && campaign == op
        {
            self.campaign = None;
            return Some(match outcome {
                Outcome::Written(rev) => {
                    self.my_term = Some(*rev);
                    self.my_revision = Some(*rev);
                    self.last_ok_start = Some(sent);
                    self.next_renew = Some(sent + config.election_ttl / 3);
                    Signal::Elected(*rev)
                }
                Outcome::Unknown => {
                    self.campaign_unknown_since = Some(sent);
                    self.next_campaign = Some(now + retry(config));
                    Signal::None
                }
                _ => {
                    self.next_campaign = Some(now + retry(config));
                    Signal::None
                }
            });
        }
        if let Some((renew, sent)) = self.renew
            && renew == op
        {
            self.renew = None;
            return Some(match outcome {
                Outcome::Written(rev) => {
                    self.my_revision = Some(*rev);
                    self.last_ok_start = Some(sent);
                    self.next_renew = Some(sent + config.election_ttl / 3);
                    Signal::None
                }
                Outcome::Conflict | Outcome::AlreadyExists if !self.ignores_lease() => {
                    // A conflict with our own earlier write (whose outcome was
                    // unknown) is not a lost leadership: retry from the revision
                    // the watch showed. Anyone else's record means we lost it.
                    let ours = self
                        .known
                        .as_ref()
                        .is_some_and(|k| Some(k.instance) == self.my_instance);
                    match self.known.as_ref().map(|k| k.revision) {
                        Some(rev) if ours && self.my_revision.is_some_and(|r| r < rev) => {
                            self.my_revision = Some(rev);
                            self.next_renew = Some(now);
                            Signal::None
                        }
                        _ => self.step_down(),
                    }
                }
                _ => {
                    self.next_renew = Some(now + retry(config));
                    Signal::None
                }
            });
        }
        if self.resign == Some(op) {
            self.resign = None;
            return Some(Signal::None);
        }
        None
    }

    /// Periodic work: campaign when there is no leader, renew, step down when
    /// the lease ran out.
    pub(crate) fn on_timeout(
        &mut self,
        config: &Config,
        me: Option<(&WorkerId, InstanceId)>,
        can_campaign: bool,
        out: &mut Outbox,
        now: Instant,
    ) -> Signal {
        let Some((worker, instance)) = me else {
            return Signal::None;
        };
        if self.my_term.is_some() {
            if !self.leads(config, now) {
                return self.step_down();
            }
            if self.renew.is_none() && self.next_renew.is_some_and(|t| now >= t) {
                self.send_renewal(worker, instance, out, now);
            }
            return Signal::None;
        }
        if can_campaign
            && self.seen_any
            && self.known.is_none()
            && self.campaign.is_none()
            && self.next_campaign.is_none_or(|t| now >= t)
        {
            let op = out.op();
            self.campaign = Some((op, now));
            self.next_campaign = None;
            self.my_instance = Some(instance);
            out.push(Command::Campaign {
                op,
                record: Self::record(worker, instance, None),
            });
        }
        Signal::None
    }

    /// Renews ahead of time, before work that may hold the worker's thread
    /// for a while (a rebalance of a million partitions takes seconds on a
    /// starved machine, and a renewal falling due meanwhile would go out
    /// only after it): when this worker leads, no renewal is in flight and
    /// the last one started at least a sixth of the election TTL ago.
    /// Returns whether a renewal was queued.
    pub(crate) fn renew_ahead(
        &mut self,
        config: &Config,
        worker: &WorkerId,
        instance: InstanceId,
        out: &mut Outbox,
        now: Instant,
    ) -> bool {
        let stale = self
            .last_ok_start
            .is_some_and(|t| now >= t + config.election_ttl / 6);
        // After a renewal that did not go through, the retry keeps its
        // backoff: the watch may yet show that an unknown write landed.
        let regular = self.next_renew == self.last_ok_start.map(|t| t + config.election_ttl / 3);
        if !self.leads(config, now) || self.renew.is_some() || !stale || !regular {
            return false;
        }
        self.send_renewal(worker, instance, out, now)
    }

    /// Queues a renewal of the leader key from the revision last written;
    /// returns whether one was queued (none without a revision).
    fn send_renewal(
        &mut self,
        worker: &WorkerId,
        instance: InstanceId,
        out: &mut Outbox,
        now: Instant,
    ) -> bool {
        let Some(expected) = self.my_revision else {
            return false;
        };
        let op = out.op();
        self.renew = Some((op, now));
        out.push(Command::RenewLeadership {
            op,
            record: Self::record(worker, instance, self.my_term),
            expected,
        });
        true
    }

    /// Marks that the initial snapshot had no leader key.
    pub(crate) fn on_caught_up(&mut self, now: Instant) {
        if !self.seen_any {
            self.seen_any = true;
            self.next_campaign = Some(now);
        }
    }

    /// Resigns (stop): deletes the key if we hold it.
    pub(crate) fn resign(&mut self, out: &mut Outbox) -> Signal {
        if let Some(expected) = self.my_revision {
            let op = out.op();
            self.resign = Some(op);
            out.push(Command::Resign { op, expected });
        }
        self.step_down()
    }

    /// Next instant with work.
    pub(crate) fn poll_timeout(&self, config: &Config, has_id: bool) -> Option<Instant> {
        if !has_id {
            return None;
        }
        if self.my_term.is_some() {
            let lease_end = self.last_ok_start.map(|t| t + config.leadership_lease());
            let renew = if self.renew.is_none() {
                self.next_renew
            } else {
                None
            };
            return super::membership::min_opt(lease_end, renew);
        }
        if self.seen_any && self.known.is_none() && self.campaign.is_none() {
            return self.next_campaign;
        }
        None
    }
}

fn retry(config: &Config) -> Duration {
    (config.election_ttl / 5).max(Duration::from_millis(10))
}

impl Election {
    /// Steps down without touching the key (a higher term was seen).
    pub(crate) fn abdicate(&mut self) -> Signal {
        if self.ignores_lease() {
            return Signal::None;
        }
        self.step_down()
    }
}
