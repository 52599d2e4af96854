//! What the simulator learns from the workers' notifications: ownership,
//! epochs, moves and the timeline, fed to the invariant checks.

use super::Simulator;
use super::config::Move;
use super::process::Ev;
use crate::sim::checks;
use parti_core::{Notification, PartitionId, State};

impl Simulator {
    pub(super) fn on_notification(&mut self, slot: usize, n: Notification) {
        let label = self.procs[slot].label.clone();
        match n {
            Notification::StateChanged { from, to } => {
                let at = self.now;
                checks::check_transition(from, to, &label, at, &mut self.violations);
                if self.cfg.timeline
                    && (to == State::Stable
                        || to == State::Emergency
                        || to == State::Shutdown
                        || to == State::Degraded)
                {
                    self.log(|| format!("{label} {from} -> {to}"));
                } else {
                    self.trace(|| format!("{label} state {from} -> {to}"));
                }
            }
            Notification::IdChanged { id } => {
                if let Some(id) = &id {
                    self.procs[slot].label = format!("p{slot}({id})");
                    let (procs, now) = (&self.procs, self.now);
                    checks::check_unique_id(
                        slot,
                        id,
                        procs.iter().enumerate().map(|(s, p)| (s, p.view(now))),
                        self.cfg.config.id_reservation(),
                        now,
                        &mut self.violations,
                    );
                }
                let label = self.procs[slot].label.clone();
                self.log(|| {
                    format!(
                        "{label} {}",
                        match &id {
                            Some(id) => format!("claims {id}"),
                            None => "lost its ID".into(),
                        }
                    )
                });
            }
            Notification::LeadershipChanged { leader, term } => {
                self.log(|| {
                    format!(
                        "{label} {} (term {term})",
                        if leader {
                            "becomes leader"
                        } else {
                            "is no longer leader"
                        }
                    )
                });
            }
            Notification::Published {
                version,
                granted,
                revoked,
                ..
            } => {
                self.log(|| {
                    format!(
                        "{label} publishes version {version}: {granted} granted, {revoked} revoked"
                    )
                });
            }
            Notification::AssignmentChanged {
                added,
                removed,
                version,
            } => {
                let now = self.now;
                checks::check_applied_version(
                    &label,
                    version,
                    &mut self.procs[slot].max_version,
                    now,
                    &mut self.violations,
                );
                if !removed.is_empty() {
                    self.report
                        .releases
                        .push((now, label.clone(), removed.len()));
                }
                for p in &removed {
                    let id = p.partition.id();
                    self.procs[slot].held.remove(&id);
                    self.ownership.remove(slot, id, now);
                }
                let who = self.procs[slot].worker.worker_id().cloned();
                for p in &added {
                    let id = p.partition.id();
                    self.procs[slot].held.insert(id, p.epoch);
                    self.ownership.add(slot, id, now);
                    let procs = &self.procs;
                    self.epochs.on_grant(
                        id,
                        p.epoch,
                        &label,
                        now,
                        &mut self.violations,
                        |slot, inc| procs.get(slot).is_some_and(|q| q.alive && q.inc == inc),
                    );
                    if let Some(w) = &who
                        && let Some(prev) = self.last_holder.insert(id, w.clone())
                        && &prev != w
                    {
                        self.report.moved += 1;
                        self.report.move_times.push(now);
                        self.report.moves.push(Move {
                            at: now,
                            version,
                            partition: id,
                            from: prev,
                            to: w.clone(),
                        });
                    }
                }
                if !added.is_empty()
                    && self.restart_watch.as_ref().is_some_and(|w| w.slot == slot)
                    && let Some(watch) = self.restart_watch.take()
                {
                    let got = self.procs[slot].held.keys().copied().collect();
                    let window = self.cfg.config.planned_scale_window.as_millis() as u64;
                    let id = self.procs[slot].worker.worker_id();
                    watch.check(id, &got, version, window, now, &mut self.violations);
                }
                if self.cfg.timeline {
                    let held = self.procs[slot].held.len();
                    self.log(|| {
                        format!(
                            "{label} applies version {version}: +{} -{} (owns {held})",
                            added.len(),
                            removed.len()
                        )
                    });
                } else {
                    self.trace(|| {
                        format!(
                            "{label} assignment v{version} +{} -{}",
                            added.len(),
                            removed.len()
                        )
                    });
                }
            }
            Notification::DegradedAlert { level, elapsed } => {
                self.log(|| format!("{label} degraded alert {level:?} after {:?}", elapsed));
            }
            Notification::Error(e) => self.log(|| format!("{label} error: {e}")),
            Notification::Fatal(e) => self.log(|| format!("{label} fatal: {e}")),
            Notification::Stopped => {
                self.log(|| format!("{label} stopped"));
                let p = &mut self.procs[slot];
                p.alive = false;
                let restart = p.restart_after_stop;
                let preferred = p.restart_preferred;
                let held: Vec<PartitionId> = p.held.keys().copied().collect();
                p.held.clear();
                for id in held {
                    self.ownership.remove(slot, id, self.now);
                }
                if restart {
                    self.schedule(self.now + 1, Ev::Spawn { slot, preferred });
                }
            }
        }
    }
}
