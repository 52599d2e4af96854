//! The async driver: one tokio task per manager that owns the core [`Worker`],
//! executes its commands on the backend, feeds results, watch items and timer
//! expiries back, and turns notifications into hooks, channels, metrics and
//! tracing.

use crate::Error;
use crate::hooks::Hooks;
use crate::metrics as m;
use crate::ops;
use crate::source::{PartitionSource, SourceError};
use crate::view::Assignment;
use parti_core::backend::Backend;
use parti_core::exec::{self, Plan};
use parti_core::{
    Command, Event, Instant as CoreInstant, Notification, State, StopMode, Worker, WorkerId,
};
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

    pub(crate) fn take_fatal(&self) -> Option<Error> {
        match self.fatal.lock() {
            Ok(mut f) => f.take(),
            Err(poisoned) => poisoned.into_inner().take(),
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
    hook_calls: mpsc::UnboundedSender<HookCall>,
    watch_task: Option<JoinHandle<()>>,
    epoch: Instant,
    op_timeout: Duration,
    hook_budget: Duration,
    stop_waiters: Vec<oneshot::Sender<()>>,
    group: String,
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
        let (hook_calls, hook_rx) = mpsc::unbounded_channel();
        let hook_task = tokio::spawn(run_slow_hooks(hooks.clone(), hook_rx));
        let config = worker.config().clone();
        let mut r = Running {
            worker,
            backend,
            source,
            hooks,
            shared,
            events,
            hook_calls,
            watch_task: None,
            epoch: Instant::now(),
            op_timeout: config.operation_timeout,
            hook_budget: config.heartbeat_interval,
            stop_waiters: Vec::new(),
            group: config.group.clone(),
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
            while let Some(command) = r.worker.poll_command() {
                r.execute(command).await;
            }
            if r.worker.is_stopped() {
                break;
            }
            let deadline = r
                .worker
                .poll_timeout()
                .map(|t| r.epoch + Duration::from_millis(t.as_millis()));
            tokio::select! {
                biased;
                Some(ctl) = control.recv() => r.on_control(ctl).await,
                Some(event) = events_rx.recv() => {
                    let now = r.now();
                    r.worker.handle(event, now);
                }
                _ = sleep_until(deadline) => {
                    let now = r.now();
                    r.worker.handle_timeout(now);
                }
                _ = tick(refresh.as_mut()) => {
                    let _ = r.refresh_if_leader().await;
                }
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
        for waiter in r.stop_waiters.drain(..) {
            let _ = waiter.send(());
        }
        drop(r.hook_calls);
        let _ = hook_task.await;
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

async fn run_slow_hooks(hooks: Arc<dyn Hooks>, mut calls: mpsc::UnboundedReceiver<HookCall>) {
    while let Some(call) = calls.recv().await {
        match call {
            HookCall::State(from, to) => hooks.on_state_changed(from, to).await,
            HookCall::Error(e) => hooks.on_error(&e).await,
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
            Control::Refresh { done } => {
                let result = self.refresh_if_leader().await;
                let _ = done.send(result);
            }
        }
    }

    async fn refresh_if_leader(&mut self) -> Result<(), Error> {
        if !self.worker.is_leader() {
            return Ok(());
        }
        let listed = tokio::time::timeout(self.op_timeout, self.source.list()).await;
        match listed {
            Ok(Ok(list)) => {
                let now = self.now();
                self.worker.handle(Event::PartitionsChanged(list), now);
                Ok(())
            }
            Ok(Err(e)) => {
                let error = Error::Source(e);
                let _ = self.hook_calls.send(HookCall::Error(error.clone()));
                Err(error)
            }
            Err(_) => {
                let error = Error::Source(SourceError::Timeout);
                let _ = self.hook_calls.send(HookCall::Error(error.clone()));
                Err(error)
            }
        }
    }

    async fn execute(&mut self, command: Command) {
        let kind = command_kind(&command);
        match Plan::of(command) {
            Plan::Notify(n) => self.notify(n).await,
            Plan::Watch { worker } => self.start_watch(worker),
            Plan::ListPartitions { op } => {
                let source = self.source.clone();
                let events = self.events.clone();
                let timeout = self.op_timeout;
                tokio::spawn(async move {
                    let outcome = match tokio::time::timeout(timeout, source.list()).await {
                        Ok(answer) => exec::listed(answer),
                        Err(_) => exec::listed(Err(SourceError::Timeout)),
                    };
                    let _ = events.send(Event::Completed { op, outcome });
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
                // Awaited before the release is confirmed (see the hooks contract).
                let call = self.hooks.on_assignment_changed(&added, &removed, version);
                if tokio::time::timeout(self.hook_budget, call).await.is_err() {
                    let error = Error::Protocol(format!(
                        "on_assignment_changed took longer than {:?}; continuing",
                        self.hook_budget
                    ));
                    let _ = self.hook_calls.send(HookCall::Error(error));
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
                let _ = self
                    .hook_calls
                    .send(HookCall::Error(Error::Protocol(message)));
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
