//! The async driver: one tokio task per manager that owns the core [`Worker`],
//! executes its commands on the backend, feeds results, watch items and timer
//! expiries back, and turns notifications into hooks, channels, metrics and
//! tracing.
//!
//! Application code never runs on the driver task: every hook call and every
//! partition listing runs on a task of its own, so renewals, watches and timers
//! never wait on it. This module holds the event loop and the execution of
//! commands; each other concept has its own module:
//!
//! - [`hooks`]: the two hook lanes, the hook budget, and panics and overruns
//!   as fatal failures;
//! - [`renewals`]: renewals held while the assignment lane is busy, and the
//!   heartbeat-only writes made meanwhile;
//! - [`notify`]: core notifications turned into views, metrics, tracing and
//!   hook calls;
//! - [`partitions`]: listings and refreshes of the partition source;
//! - [`watch`]: the watch task and its backoff;
//! - [`shared`]: what the manager handle reads.

mod hooks;
mod notify;
mod partitions;
mod renewals;
mod shared;
mod watch;

pub(crate) use shared::Shared;

use crate::Error;
use crate::hooks::Hooks;
use crate::metrics as m;
use crate::ops;
use crate::source::{PartitionSource, SourceError};
use crate::view::Assignment;
use hooks::{Ending, HookCall, LaneCall, LaneTask, lane_join, run_slow_hooks};
use parti_core::backend::Backend;
use parti_core::exec::{Execution, Plan};
use parti_core::records::MemberRecord;
use parti_core::{
    Command, Event, Instant as CoreInstant, OpId, Outcome, Partition, State, StopMode, Worker,
};
use renewals::Held;
use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tracing::Instrument;

/// How often the driver asks the backend whether its connection is up.
const CONNECTION_POLL: Duration = Duration::from_millis(250);

/// Requests from the manager handle.
pub(crate) enum Control {
    /// Stop gracefully or leave; `done` fires when the worker stopped.
    Stop {
        mode: StopMode,
        done: oneshot::Sender<()>,
    },
    /// Re-read the partition list (leader only).
    Refresh {
        done: oneshot::Sender<Result<(), Error>>,
    },
}

/// Results of work the driver handed to other tasks.
enum Internal {
    /// A heartbeat-only write made for a held renewal finished.
    Heartbeat(Outcome),
    /// The partition source answered the core's `ListPartitions`.
    Listed {
        op: OpId,
        answer: Result<Vec<Partition>, SourceError>,
    },
    /// The partition source answered a refresh.
    Refreshed {
        answer: Result<Vec<Partition>, SourceError>,
        done: Option<oneshot::Sender<Result<(), Error>>>,
    },
    /// Application code panicked (a slow hook or the partition source).
    Panicked { hook: &'static str, message: String },
}

/// Everything the driver task needs.
pub(crate) struct Driver {
    pub(crate) worker: Worker,
    pub(crate) backend: Arc<dyn Backend>,
    pub(crate) source: Arc<dyn PartitionSource>,
    pub(crate) hooks: Arc<dyn Hooks>,
    pub(crate) shared: Arc<Shared>,
    pub(crate) control: mpsc::Receiver<Control>,
    pub(crate) refresh_every: Option<Duration>,
    pub(crate) metrics_labels: Vec<(String, String)>,
}

struct Running {
    worker: Worker,
    backend: Arc<dyn Backend>,
    source: Arc<dyn PartitionSource>,
    hooks: Arc<dyn Hooks>,
    shared: Arc<Shared>,
    events: mpsc::UnboundedSender<Event>,
    internal: mpsc::UnboundedSender<Internal>,
    hook_calls: mpsc::UnboundedSender<HookCall>,
    watch_task: Option<JoinHandle<()>>,
    epoch: Instant,
    op_timeout: Duration,
    /// The bound on renewals and their read-backs (`Config::renewal_timeout`).
    renewal_timeout: Duration,
    heartbeat_interval: Duration,
    hook_budget: Duration,
    stop_waiters: Vec<oneshot::Sender<()>>,
    /// The metrics this driver writes.
    metrics: m::Recorder,
    /// Calls waiting on the assignment lane, and the one running.
    lane: VecDeque<LaneCall>,
    lane_task: Option<LaneTask>,
    /// The renewal held until the lane is idle.
    held: Option<Held>,
    /// The member record last sent to the store (every part of it is
    /// confirmed by the hooks): what heartbeat-only writes repeat.
    last_sent: Option<MemberRecord>,
    /// When a member-record write was last started.
    last_write: Instant,
    heartbeat_in_flight: bool,
    /// A refresh listing is running.
    refreshing: bool,
    /// The typed error behind the next "partition source failed" notification.
    source_error: Option<SourceError>,
    /// A fatal application failure happened: no more application calls
    /// (except the fatal `on_error`).
    failed: bool,
    /// End now, writing nothing more.
    abandoned: bool,
}

impl Driver {
    /// Spawns the driver task.
    pub(crate) fn spawn(self) -> JoinHandle<()> {
        // The span names what stays (the group, and the ID once claimed,
        // which changes only if it is lost). The term and the version, which
        // change all the time, go on the events: recorded on this long-lived
        // span, a formatting subscriber would append every new value to the
        // span's text for as long as the worker runs.
        let span = tracing::info_span!(
            "parti",
            group = %self.worker.config().group,
            worker_id = tracing::field::Empty,
        );
        tokio::spawn(self.run().instrument(span))
    }

    async fn run(self) {
        let Driver {
            worker,
            backend,
            source,
            hooks,
            shared,
            mut control,
            refresh_every,
            metrics_labels,
        } = self;
        let (events, mut events_rx) = mpsc::unbounded_channel();
        let (internal, mut internal_rx) = mpsc::unbounded_channel();
        let (hook_calls, hook_rx) = mpsc::unbounded_channel();
        let mut hook_task = tokio::spawn(run_slow_hooks(hooks.clone(), hook_rx, internal.clone()));
        let config = worker.config().clone();
        let mut r = Running {
            worker,
            backend,
            source,
            hooks,
            shared,
            events,
            internal,
            hook_calls,
            watch_task: None,
            epoch: Instant::now(),
            op_timeout: config.operation_timeout,
            renewal_timeout: config.renewal_timeout(),
            heartbeat_interval: config.heartbeat_interval,
            hook_budget: config.effective_hook_budget(),
            stop_waiters: Vec::new(),
            metrics: m::Recorder::new(&config.group, metrics_labels),
            lane: VecDeque::new(),
            lane_task: None,
            held: None,
            last_sent: None,
            last_write: Instant::now(),
            heartbeat_in_flight: false,
            refreshing: false,
            source_error: None,
            failed: false,
            abandoned: false,
        };
        let now = r.now();
        r.worker.handle(Event::Start, now);
        let mut connection = tokio::time::interval(CONNECTION_POLL);
        connection.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut connected = true;
        let mut refresh = refresh_every.map(|d| {
            let mut interval = tokio::time::interval(d.max(Duration::from_millis(10)));
            interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            interval
        });
        loop {
            let began = std::time::Instant::now();
            while !r.abandoned
                && let Some(command) = r.worker.poll_command()
            {
                r.execute(command).await;
            }
            r.metrics.observe(&r.worker, None);
            warn_if_slow("executing its commands", began.elapsed());
            if r.worker.is_stopped() || r.abandoned {
                break;
            }
            let deadline = r
                .worker
                .poll_timeout()
                .map(|t| r.epoch + Duration::from_millis(t.as_millis()));
            let heartbeat = r.heartbeat_due();
            let hook_deadline = r.lane_task.as_ref().map(|t| t.deadline);
            tokio::select! {
                biased;
                Some(ctl) = control.recv() => r.on_control(ctl).await,
                joined = lane_join(r.lane_task.as_mut()) => r.on_lane_done(joined),
                _ = sleep_until(hook_deadline) => r.on_lane_overrun(),
                Some(event) = events_rx.recv() => {
                    let now = r.now();
                    let began = std::time::Instant::now();
                    r.worker.handle(event, now);
                    warn_if_slow("handling an event", began.elapsed());
                }
                Some(msg) = internal_rx.recv() => r.on_internal(msg),
                _ = sleep_until(heartbeat) => r.heartbeat(),
                _ = sleep_until(deadline) => {
                    let now = r.now();
                    let began = std::time::Instant::now();
                    r.worker.handle_timeout(now);
                    warn_if_slow("handling a timeout", began.elapsed());
                }
                _ = tick(refresh.as_mut()) => r.refresh(None),
                _ = connection.tick() => {
                    if let Some(now_connected) = r.backend.is_connected()
                        && now_connected != connected
                    {
                        connected = now_connected;
                        let event = if connected { Event::Reconnected } else { Event::Disconnected };
                        tracing::warn!(connected, "connection to the store changed");
                        let now = r.now();
                        r.worker.handle(event, now);
                    }
                }
            }
        }
        if let Some(task) = r.watch_task.take() {
            task.abort();
        }
        if let Some(task) = r.lane_task.take() {
            task.handle.abort();
        }
        if r.abandoned {
            // No `Stopped` notification comes from the worker: end the views here.
            let from = r.shared.state.send_replace(State::Shutdown);
            r.shared.assignment.send_replace(Assignment::default());
            r.shared.leader.send_replace(false);
            r.metrics.observe(&r.worker, Some(State::Shutdown));
            if from != State::Shutdown {
                r.metrics.state_changed(from, State::Shutdown);
                let _ = r.hook_calls.send(HookCall::State(from, State::Shutdown));
            }
        }
        for waiter in r.stop_waiters.drain(..) {
            let _ = waiter.send(());
        }
        drop(r.hook_calls);
        // Let the slow lane deliver what is queued, within the shutdown bound.
        if tokio::time::timeout(config.shutdown_timeout, &mut hook_task)
            .await
            .is_err()
        {
            hook_task.abort();
        }
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

async fn tick(interval: Option<&mut tokio::time::Interval>) {
    match interval {
        Some(i) => {
            i.tick().await;
        }
        None => std::future::pending().await,
    }
}

impl Running {
    fn now(&self) -> CoreInstant {
        CoreInstant::from_millis(self.epoch.elapsed().as_millis() as u64)
    }

    async fn on_control(&mut self, control: Control) {
        match control {
            Control::Stop { mode, done } => {
                self.stop_waiters.push(done);
                let now = self.now();
                self.worker.handle(Event::Stop(mode), now);
            }
            Control::Refresh { done } => self.refresh(Some(done)),
        }
    }

    fn on_internal(&mut self, msg: Internal) {
        match msg {
            Internal::Heartbeat(outcome) => self.heartbeat_done(outcome),
            Internal::Listed { op, answer } => self.on_listed(op, answer),
            Internal::Refreshed { answer, done } => self.on_refreshed(answer, done),
            Internal::Panicked { hook, message } => {
                self.refreshing = false;
                self.fail(Error::HookPanicked { hook, message }, Ending::Stop);
            }
        }
    }

    async fn execute(&mut self, command: Command) {
        let kind = command_kind(&command);
        if self.hold_renewal(&command) {
            return;
        }
        let timeout = self.timeout_of(&command);
        if let Command::Evict { id, expected, .. } = &command {
            tracing::debug!(member = %id, ?expected, "evicting a silent member");
        }
        match Plan::of(command) {
            Plan::Notify(n) => self.notify(n).await,
            Plan::Watch { worker, members } => self.start_watch(worker, members),
            Plan::ListPartitions { op } => self.list_partitions(op),
            Plan::Store(execution) => self.spawn_store(kind, execution, timeout),
        }
    }

    /// The bound on each store operation of `command`: renewals and the
    /// read-back after one get `Config::renewal_timeout`, the rest
    /// `operation_timeout`.
    fn timeout_of(&self, command: &Command) -> Duration {
        match command {
            Command::RenewLease { .. }
            | Command::RenewLeadership { .. }
            | Command::ReadMember { .. } => self.renewal_timeout,
            _ => self.op_timeout,
        }
    }

    /// Runs store operations on a task of their own; the outcome comes back
    /// as an event.
    fn spawn_store(&self, kind: &'static str, execution: Box<Execution>, timeout: Duration) {
        let backend = self.backend.clone();
        let events = self.events.clone();
        tokio::spawn(async move {
            let Some((op, outcome)) = ops::run(backend, execution, timeout).await else {
                return;
            };
            if outcome.is_unreachable() {
                m::backend_error(kind);
            }
            tracing::trace!(
                command = kind,
                outcome = outcome_summary(&outcome),
                "store operation done"
            );
            let _ = events.send(Event::Completed { op, outcome });
        });
    }
}

/// A short description of an outcome for the trace log (a loaded snapshot or
/// partition list can be large).
fn outcome_summary(outcome: &parti_core::Outcome) -> String {
    use parti_core::Outcome as O;
    match outcome {
        O::Written(revision) => format!("written at {revision:?}"),
        O::AlreadyExists => "already exists".into(),
        O::Conflict => "conflict".into(),
        O::Unknown => "unknown (timed out)".into(),
        O::Unavailable => "unavailable".into(),
        O::Loaded(_) => "loaded".into(),
        O::Member(m) => format!("member {}", if m.is_some() { "found" } else { "absent" }),
        O::Partitions(p) => format!("{} partitions", p.len()),
        O::Failed(e) => format!("failed: {e}"),
    }
}

fn command_kind(c: &Command) -> &'static str {
    match c {
        Command::ClaimId { .. } => "claim_id",
        Command::RenewLease { .. } => "renew_lease",
        Command::ReadMember { .. } => "read_member",
        Command::ReleaseId { .. } => "release_id",
        Command::Evict { .. } => "evict",
        Command::Campaign { .. } => "campaign",
        Command::RenewLeadership { .. } => "renew_leadership",
        Command::Resign { .. } => "resign",
        Command::LoadAssignments { .. } => "load_assignments",
        Command::Publish { .. } => "publish",
        Command::CleanupAssignments { .. } => "cleanup",
        Command::ListPartitions { .. } => "list_partitions",
        Command::Watch { .. } => "watch",
        Command::Notify(_) => "notify",
    }
}

/// Above this, one turn of the worker's state machine delays everything else
/// the driver does (renewals included) noticeably.
const SLOW_STEP: Duration = Duration::from_millis(500);

/// Reports a turn of the state machine that held the driver for longer than
/// [`SLOW_STEP`]: leases and leadership are renewed between turns, so turns
/// near a TTL cost them (e.g. a leader of a million partitions on a starved
/// machine).
fn warn_if_slow(what: &str, took: Duration) {
    if took >= SLOW_STEP {
        tracing::warn!(
            took_ms = took.as_millis() as u64,
            "the worker spent {} ms {what}: renewals wait meanwhile",
            took.as_millis()
        );
    }
}
