//! The async driver: one tokio task per manager that owns the core [`Worker`],
//! executes its commands on the backend, feeds results, watch items and timer
//! expiries back, and turns notifications into hooks, channels, metrics and
//! tracing.
//!
//! Application code never runs on the driver task: every hook call and every
//! partition listing runs on a task of its own, so renewals, watches and timers
//! never wait on it. Two lanes keep the calls in order:
//!
//! - the *assignment lane* runs `on_assignment_changed`, one call at a time,
//!   each bounded by `hook_budget`. While it is busy, a renewal that would
//!   change the member record (the acknowledgement that confirms a release)
//!   is *held*: the store gets heartbeat-only writes of the last record sent
//!   instead, and the held renewal is written (and its result reported to the
//!   core worker) only once the lane is idle. A call that overruns its budget
//!   is fatal and nothing more is written: the lease runs out;
//! - the *slow lane* runs `on_state_changed` and `on_error`, in order, and
//!   may be slow.
//!
//! A panic in any of them is caught and is fatal: the error is handed to
//! `on_error` on the assignment lane (awaited within the budget, so the
//! application learns it lost everything before the release is confirmed),
//! then the worker stops gracefully (partitions and ID given up).

use crate::Error;
use crate::hooks::Hooks;
use crate::metrics as m;
use crate::ops;
use crate::source::{PartitionSource, SourceError};
use crate::view::Assignment;
use parti_core::backend::Backend;
use parti_core::exec::{self, Plan};
use parti_core::records::{MemberRecord, OwnedPartition, Revision};
use parti_core::{
    Command, Event, Instant as CoreInstant, Notification, OpId, Outcome, Partition, State,
    StopMode, Worker, WorkerId,
};
use std::collections::VecDeque;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tracing::Instrument;

/// How often the driver asks the backend whether its connection is up.
const CONNECTION_POLL: Duration = Duration::from_millis(250);

/// State shared between the driver task and the [`crate::Manager`] handle.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) state: watch::Sender<State>,
    pub(crate) assignment: watch::Sender<Assignment>,
    pub(crate) leader: watch::Sender<bool>,
    pub(crate) worker_id: watch::Sender<Option<WorkerId>>,
    pub(crate) fatal: Mutex<Option<Error>>,
}

impl Shared {
    pub(crate) fn new() -> Arc<Self> {
        Arc::new(Shared {
            state: watch::channel(State::Init).0,
            assignment: watch::channel(Assignment::default()).0,
            leader: watch::channel(false).0,
            worker_id: watch::channel(None).0,
            fatal: Mutex::new(None),
        })
    }

    fn set_fatal(&self, error: Error) {
        match self.fatal.lock() {
            Ok(mut f) => *f = Some(error),
            Err(poisoned) => *poisoned.into_inner() = Some(error),
        }
    }

    pub(crate) fn fatal(&self) -> Option<Error> {
        match self.fatal.lock() {
            Ok(f) => f.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }
}

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

/// Calls to the slow hooks, run in order on their own task.
enum HookCall {
    State(State, State),
    Error(Error),
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

/// A call waiting on the assignment lane.
enum LaneCall {
    Assignment {
        added: Vec<OwnedPartition>,
        removed: Vec<OwnedPartition>,
        version: u64,
    },
    /// `on_error` with the fatal error, before the worker gives up.
    Fatal(Error),
}

/// The call running on the assignment lane.
struct LaneTask {
    hook: &'static str,
    handle: JoinHandle<()>,
    deadline: Instant,
    /// Whether it is the fatal `on_error` call.
    fatal: bool,
}

/// A renewal held back while the assignment lane is busy.
struct Held {
    op: OpId,
    id: WorkerId,
    record: MemberRecord,
    expected: Revision,
}

/// How a fatal application failure ends the worker.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Ending {
    /// The failing code is no longer running: report, then stop gracefully.
    Stop,
    /// It may still be running: confirm nothing, write nothing, end now.
    Abandon,
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
    heartbeat_interval: Duration,
    hook_budget: Duration,
    stop_waiters: Vec<oneshot::Sender<()>>,
    group: String,
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
        let span = tracing::info_span!(
            "parti",
            group = %self.worker.config().group,
            worker_id = tracing::field::Empty,
            term = tracing::field::Empty,
            version = tracing::field::Empty,
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
            heartbeat_interval: config.heartbeat_interval,
            hook_budget: config.effective_hook_budget(),
            stop_waiters: Vec::new(),
            group: config.group.clone(),
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
            while !r.abandoned
                && let Some(command) = r.worker.poll_command()
            {
                r.execute(command).await;
            }
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
                    r.worker.handle(event, now);
                }
                Some(msg) = internal_rx.recv() => r.on_internal(msg),
                _ = sleep_until(heartbeat) => r.heartbeat(),
                _ = sleep_until(deadline) => {
                    let now = r.now();
                    r.worker.handle_timeout(now);
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
            if from != State::Shutdown {
                m::state_changed(&r.group, from, State::Shutdown);
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

/// Waits for the running lane call (never, if none runs); `Err` carries a
/// panic message.
async fn lane_join(task: Option<&mut LaneTask>) -> Result<(), String> {
    match task {
        Some(t) => match (&mut t.handle).await {
            Ok(()) => Ok(()),
            Err(e) => Err(join_error_message(e)),
        },
        None => std::future::pending().await,
    }
}

fn join_error_message(e: tokio::task::JoinError) -> String {
    if !e.is_panic() {
        return "the task was cancelled".into();
    }
    let payload = e.into_panic();
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "(non-string panic payload)".into()
    }
}

/// Runs application code on a task of its own; `Err` carries a panic message.
async fn guarded<T: Send + 'static>(
    future: impl Future<Output = T> + Send + 'static,
) -> Result<T, String> {
    tokio::spawn(future).await.map_err(join_error_message)
}

async fn run_slow_hooks(
    hooks: Arc<dyn Hooks>,
    mut calls: mpsc::UnboundedReceiver<HookCall>,
    internal: mpsc::UnboundedSender<Internal>,
) {
    let mut state_broken = false;
    let mut error_broken = false;
    while let Some(call) = calls.recv().await {
        let hooks = hooks.clone();
        let (hook, result) = match call {
            HookCall::State(_, _) if state_broken => continue,
            HookCall::Error(_) if error_broken => continue,
            HookCall::State(from, to) => (
                "on_state_changed",
                guarded(async move { hooks.on_state_changed(from, to).await }).await,
            ),
            HookCall::Error(e) => (
                "on_error",
                guarded(async move { hooks.on_error(&e).await }).await,
            ),
        };
        if let Err(message) = result {
            // A hook that panicked is not called again (on_error in
            // particular is not called about its own panic).
            if hook == "on_state_changed" {
                state_broken = true;
            } else {
                error_broken = true;
            }
            let _ = internal.send(Internal::Panicked { hook, message });
        }
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

    /// Re-reads the partition list on a task of its own (leader only); the
    /// answer comes back as [`Internal::Refreshed`].
    fn refresh(&mut self, done: Option<oneshot::Sender<Result<(), Error>>>) {
        if !self.worker.is_leader() || self.failed {
            if let Some(done) = done {
                let _ = done.send(Ok(()));
            }
            return;
        }
        if self.refreshing && done.is_none() {
            return; // a periodic refresh while one runs: skip it
        }
        self.refreshing = true;
        let source = self.source.clone();
        let internal = self.internal.clone();
        let timeout = self.op_timeout;
        tokio::spawn(async move {
            match list_bounded(source, timeout).await {
                Ok(answer) => {
                    let _ = internal.send(Internal::Refreshed { answer, done });
                }
                Err(message) => {
                    let _ = internal.send(Internal::Panicked {
                        hook: "PartitionSource::list",
                        message,
                    });
                    if let Some(done) = done {
                        let _ =
                            done.send(Err(Error::Protocol("the partition source panicked".into())));
                    }
                }
            }
        });
    }

    fn on_internal(&mut self, msg: Internal) {
        match msg {
            Internal::Heartbeat(outcome) => self.heartbeat_done(outcome),
            Internal::Listed { op, answer } => {
                let outcome = match answer {
                    Ok(list) => exec::listed::<SourceError>(Ok(list)),
                    Err(e) => {
                        self.source_error = Some(e.clone());
                        exec::listed::<SourceError>(Err(e))
                    }
                };
                let now = self.now();
                self.worker.handle(Event::Completed { op, outcome }, now);
            }
            Internal::Refreshed { answer, done } => {
                self.refreshing = false;
                let result = match answer {
                    Ok(list) => {
                        if self.worker.is_leader() {
                            let now = self.now();
                            self.worker.handle(Event::PartitionsChanged(list), now);
                        }
                        Ok(())
                    }
                    Err(e) => {
                        let error = Error::Source(e);
                        let _ = self.hook_calls.send(HookCall::Error(error.clone()));
                        Err(error)
                    }
                };
                if let Some(done) = done {
                    let _ = done.send(result);
                }
            }
            Internal::Panicked { hook, message } => {
                self.refreshing = false;
                self.fail(Error::HookPanicked { hook, message }, Ending::Stop);
            }
        }
    }

    async fn execute(&mut self, command: Command) {
        let kind = command_kind(&command);
        if let Command::RenewLease {
            op,
            id,
            record,
            expected,
        } = &command
        {
            if self.lane_busy() && self.last_sent.as_ref() != Some(record) {
                // It may confirm a release the application has not finished:
                // hold it until the lane is idle (heartbeats go on meanwhile).
                self.held = Some(Held {
                    op: *op,
                    id: id.clone(),
                    record: record.clone(),
                    expected: *expected,
                });
                return;
            }
            self.last_sent = Some(record.clone());
            self.last_write = Instant::now();
        }
        if let Command::ClaimId { record, .. } = &command {
            self.last_sent = Some(record.clone());
            self.last_write = Instant::now();
        }
        match Plan::of(command) {
            Plan::Notify(n) => self.notify(n).await,
            Plan::Watch { worker } => self.start_watch(worker),
            Plan::ListPartitions { op } => {
                let source = self.source.clone();
                let internal = self.internal.clone();
                let timeout = self.op_timeout;
                tokio::spawn(async move {
                    let msg = match list_bounded(source, timeout).await {
                        Ok(answer) => Internal::Listed { op, answer },
                        Err(message) => Internal::Panicked {
                            hook: "PartitionSource::list",
                            message,
                        },
                    };
                    let _ = internal.send(msg);
                });
            }
            Plan::Store(execution) => {
                let backend = self.backend.clone();
                let events = self.events.clone();
                let timeout = self.op_timeout;
                tokio::spawn(async move {
                    let Some((op, outcome)) = ops::run(backend, execution, timeout).await else {
                        return;
                    };
                    if outcome.is_unreachable() {
                        m::backend_error(kind);
                    }
                    let _ = events.send(Event::Completed { op, outcome });
                });
            }
        }
    }

    /// Whether an assignment-hook call runs or waits.
    fn lane_busy(&self) -> bool {
        self.lane_task.is_some() || !self.lane.is_empty()
    }

    /// Starts the next lane call if none runs.
    fn start_lane(&mut self) {
        if self.lane_task.is_some() {
            return;
        }
        let Some(call) = self.lane.pop_front() else {
            return;
        };
        let hooks = self.hooks.clone();
        let deadline = Instant::now() + self.hook_budget;
        self.lane_task = Some(match call {
            LaneCall::Assignment {
                added,
                removed,
                version,
            } => LaneTask {
                hook: "on_assignment_changed",
                handle: tokio::spawn(async move {
                    hooks.on_assignment_changed(&added, &removed, version).await
                }),
                deadline,
                fatal: false,
            },
            LaneCall::Fatal(error) => LaneTask {
                hook: "on_error",
                handle: tokio::spawn(async move { hooks.on_error(&error).await }),
                deadline,
                fatal: true,
            },
        });
    }

    /// The running lane call returned (`Err`: it panicked).
    fn on_lane_done(&mut self, joined: Result<(), String>) {
        let Some(task) = self.lane_task.take() else {
            return;
        };
        match joined {
            Ok(()) if task.fatal => self.give_up(),
            Ok(()) => {
                self.start_lane();
                self.release_held();
            }
            Err(message) if task.fatal => {
                tracing::error!(%message, "on_error panicked while reporting a fatal error");
                self.give_up();
            }
            Err(message) => self.fail(
                Error::HookPanicked {
                    hook: task.hook,
                    message,
                },
                Ending::Stop,
            ),
        }
    }

    /// The running lane call overran its budget.
    fn on_lane_overrun(&mut self) {
        let Some(task) = self.lane_task.take() else {
            return;
        };
        // Cancels an async hook at its next await; one blocking its thread
        // runs on, which is why nothing is confirmed from here on.
        task.handle.abort();
        let error = Error::HookTimedOut {
            hook: task.hook,
            budget: self.hook_budget,
        };
        if task.fatal {
            tracing::error!(error = %error, "on_error overran its budget while reporting a fatal error");
            self.abandoned = true;
            self.held = None;
            return;
        }
        self.fail(error, Ending::Abandon);
    }

    /// A fatal application failure: report it and end the worker.
    fn fail(&mut self, error: Error, ending: Ending) {
        if self.failed {
            tracing::error!(error = %error, "application failure after a fatal one");
            if ending == Ending::Abandon {
                self.abandoned = true;
                self.held = None;
            }
            return;
        }
        tracing::error!(error = %error, "application code failed; the worker gives up");
        self.failed = true;
        self.shared.set_fatal(error.clone());
        self.lane.clear();
        if let Some(task) = self.lane_task.take() {
            task.handle.abort();
        }
        match ending {
            Ending::Abandon => {
                let _ = self.hook_calls.send(HookCall::Error(error));
                self.abandoned = true;
                self.held = None;
            }
            Ending::Stop => {
                if matches!(
                    &error,
                    Error::HookPanicked {
                        hook: "on_error",
                        ..
                    }
                ) {
                    self.give_up();
                } else {
                    // The application learns it lost everything before the
                    // worker confirms anything.
                    self.lane.push_back(LaneCall::Fatal(error));
                    self.start_lane();
                }
            }
        }
    }

    /// After a fatal failure was reported: stop gracefully (partitions and ID
    /// given up, as `stop()` does).
    fn give_up(&mut self) {
        let now = self.now();
        self.worker.handle(Event::Stop(StopMode::Graceful), now);
        self.release_held();
    }

    /// Writes the held renewal once the lane is idle.
    fn release_held(&mut self) {
        if self.lane_busy() || self.heartbeat_in_flight || self.abandoned {
            return;
        }
        let Some(held) = self.held.take() else {
            return;
        };
        self.last_sent = Some(held.record.clone());
        self.last_write = Instant::now();
        self.spawn_store(Command::RenewLease {
            op: held.op,
            id: held.id,
            record: held.record,
            expected: held.expected,
        });
    }

    fn spawn_store(&self, command: Command) {
        let kind = command_kind(&command);
        if let Plan::Store(execution) = Plan::of(command) {
            let backend = self.backend.clone();
            let events = self.events.clone();
            let timeout = self.op_timeout;
            tokio::spawn(async move {
                let Some((op, outcome)) = ops::run(backend, execution, timeout).await else {
                    return;
                };
                if outcome.is_unreachable() {
                    m::backend_error(kind);
                }
                let _ = events.send(Event::Completed { op, outcome });
            });
        }
    }

    /// When the next heartbeat-only write is due (a renewal is held).
    fn heartbeat_due(&self) -> Option<Instant> {
        if self.held.is_none() || self.heartbeat_in_flight || self.abandoned {
            return None;
        }
        Some(self.last_write + self.heartbeat_interval)
    }

    /// Renews the lease with the last record sent while a renewal is held.
    fn heartbeat(&mut self) {
        let (Some(held), Some(record)) = (&self.held, &self.last_sent) else {
            return;
        };
        let command = Command::RenewLease {
            op: held.op,
            id: held.id.clone(),
            record: record.clone(),
            expected: held.expected,
        };
        self.heartbeat_in_flight = true;
        self.last_write = Instant::now();
        let Plan::Store(execution) = Plan::of(command) else {
            return;
        };
        let backend = self.backend.clone();
        let internal = self.internal.clone();
        let timeout = self.op_timeout;
        tokio::spawn(async move {
            let outcome = ops::run(backend, execution, timeout)
                .await
                .map_or(Outcome::Unknown, |(_, outcome)| outcome);
            let _ = internal.send(Internal::Heartbeat(outcome));
        });
    }

    fn heartbeat_done(&mut self, outcome: Outcome) {
        self.heartbeat_in_flight = false;
        if outcome.is_unreachable() {
            m::backend_error("renew_lease");
        }
        match outcome {
            Outcome::Written(revision) => {
                if let Some(held) = &mut self.held {
                    held.expected = revision;
                }
                self.release_held();
            }
            other => {
                // The core worker learns of the failure as the held renewal's
                // result, and recovers as from any failed renewal (it re-reads
                // the record or retries; the retry is held again if needed).
                if let Some(held) = self.held.take() {
                    let now = self.now();
                    self.worker.handle(
                        Event::Completed {
                            op: held.op,
                            outcome: other,
                        },
                        now,
                    );
                }
            }
        }
    }

    fn start_watch(&mut self, worker: Option<WorkerId>) {
        if let Some(task) = self.watch_task.take() {
            task.abort();
        }
        let backend = self.backend.clone();
        let events = self.events.clone();
        self.watch_task = Some(tokio::spawn(async move {
            use futures_util::StreamExt;
            let mut backoff = Duration::from_millis(50);
            loop {
                match backend.watch(worker.as_ref()).await {
                    Ok(mut stream) => {
                        backoff = Duration::from_millis(50);
                        while let Some(item) = stream.next().await {
                            match item {
                                Ok(item) => {
                                    if events.send(Event::Watch(item)).is_err() {
                                        return;
                                    }
                                }
                                Err(e) => {
                                    tracing::warn!(error = %e, "watch broke; re-creating it");
                                    break;
                                }
                            }
                        }
                        if events.send(Event::WatchLost).is_err() {
                            return;
                        }
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "cannot start the watch; retrying");
                        if events.send(Event::Disconnected).is_err() {
                            return;
                        }
                    }
                }
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(1));
            }
        }));
    }

    async fn notify(&mut self, notification: Notification) {
        let span = tracing::Span::current();
        match notification {
            Notification::StateChanged { from, to } => {
                tracing::info!(%from, %to, "state changed");
                m::state_changed(&self.group, from, to);
                self.shared.state.send_replace(to);
                let _ = self.hook_calls.send(HookCall::State(from, to));
            }
            Notification::IdChanged { id } => {
                if let Some(id) = &id {
                    span.record("worker_id", id.as_str());
                    tracing::info!(worker_id = %id, "claimed a stable ID");
                } else {
                    tracing::warn!("lost the stable ID");
                }
                self.shared.worker_id.send_replace(id);
            }
            Notification::AssignmentChanged {
                added,
                removed,
                version,
            } => {
                span.record("version", version);
                tracing::info!(
                    added = added.len(),
                    removed = removed.len(),
                    version,
                    "assignment changed"
                );
                let view = Assignment {
                    version: self.worker.assignment_version(),
                    partitions: self.worker.assignment(),
                };
                m::assignment(&self.group, &view, added.len(), removed.len());
                self.shared.assignment.send_replace(view);
                // On its own task; the renewal confirming it waits for it.
                if !self.failed {
                    self.lane.push_back(LaneCall::Assignment {
                        added,
                        removed,
                        version,
                    });
                    self.start_lane();
                }
            }
            Notification::LeadershipChanged { leader, term } => {
                span.record("term", term);
                tracing::info!(leader, term, "leadership changed");
                m::leader(&self.group, leader);
                self.shared.leader.send_replace(leader);
            }
            Notification::Published {
                version,
                granted,
                revoked,
            } => {
                tracing::info!(version, granted, revoked, "published an assignment");
                m::published(&self.group);
            }
            Notification::DegradedAlert { level, elapsed } => {
                tracing::warn!(?level, ?elapsed, "still degraded");
                m::degraded_alert(&self.group, level);
            }
            Notification::Error(message) => {
                tracing::warn!(%message, "worker error");
                let error = match self.source_error.take() {
                    Some(e) if message == format!("partition source failed: {e}") => {
                        Error::Source(e)
                    }
                    _ => Error::Protocol(message),
                };
                let _ = self.hook_calls.send(HookCall::Error(error));
            }
            Notification::Fatal(e) => {
                tracing::error!(error = %e, "worker stopped on a fatal error");
                let error = Error::IdRangeExhausted(e);
                self.shared.set_fatal(error.clone());
                let _ = self.hook_calls.send(HookCall::Error(error));
            }
            Notification::Stopped => {
                tracing::info!("stopped");
                self.shared.state.send_replace(State::Shutdown);
            }
        }
        m::skipped_values(&self.group, self.worker.skipped_values());
    }
}

/// Lists the partitions on a task of its own, bounded by `timeout`; `Err`
/// carries a panic message.
async fn list_bounded(
    source: Arc<dyn PartitionSource>,
    timeout: Duration,
) -> Result<Result<Vec<Partition>, SourceError>, String> {
    let mut listing = tokio::spawn(async move { source.list().await });
    match tokio::time::timeout(timeout, &mut listing).await {
        Ok(Ok(answer)) => Ok(answer),
        Ok(Err(e)) => Err(join_error_message(e)),
        Err(_) => {
            listing.abort();
            Ok(Err(SourceError::Timeout))
        }
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
