//! The [`Manager`]: the handle an application holds, and its builder.

use crate::Error;
use crate::driver::{Control, Driver, Shared};
use crate::hooks::{Hooks, NoHooks};
use crate::source::{PartitionSource, StaticSource};
use crate::view::Assignment;
use parti_core::backend::{Backend, BackendError};
use parti_core::{
    AssignmentStrategy, Config, InstanceId, Instant as CoreInstant, State, StopMode, Worker,
    WorkerId,
};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;

enum BackendChoice {
    Ready(Arc<dyn Backend>),
    #[cfg(feature = "nats")]
    Nats(async_nats::Client),
}

/// Builds and starts a [`Manager`].
pub struct ManagerBuilder {
    backend: BackendChoice,
    config: Config,
    strategy: Arc<dyn AssignmentStrategy>,
    source: Arc<dyn PartitionSource>,
    hooks: Arc<dyn Hooks>,
    refresh_every: Option<Duration>,
    instance: Option<InstanceId>,
    #[cfg(feature = "nats")]
    consumer: Option<parti_nats::PartitionConsumer>,
    metrics_labels: Vec<(String, String)>,
}

impl ManagerBuilder {
    fn new(backend: BackendChoice) -> Self {
        ManagerBuilder {
            backend,
            config: Config::default(),
            strategy: Arc::new(parti_strategies::default_strategy()),
            source: Arc::new(StaticSource::default()),
            hooks: Arc::new(NoHooks),
            refresh_every: None,
            instance: None,
            #[cfg(feature = "nats")]
            consumer: None,
            metrics_labels: Vec::new(),
        }
    }

    /// The configuration (default: [`Config::default`]).
    pub fn config(mut self, config: Config) -> Self {
        self.config = config;
        self
    }

    /// The assignment strategy (default: [`crate::default_strategy`], i.e.
    /// [`crate::Sticky`] with its defaults).
    pub fn strategy(mut self, strategy: impl AssignmentStrategy + 'static) -> Self {
        self.strategy = Arc::new(strategy);
        self
    }

    /// The partition source (default: an empty [`StaticSource`]).
    pub fn partitions(mut self, source: impl PartitionSource) -> Self {
        self.source = Arc::new(source);
        self
    }

    /// Application callbacks.
    pub fn hooks(mut self, hooks: impl Hooks) -> Self {
        self.hooks = Arc::new(hooks);
        self
    }

    /// Consume the owned partitions with `consumer`: every assignment change
    /// goes through [`parti_nats::PartitionConsumer::apply`] before the
    /// application's `on_assignment_changed`, so a revoked partition is
    /// confirmed to the leader only after its message in flight finished and
    /// its progress was recorded. Keep each handler call well below
    /// `hook_budget`.
    #[cfg(feature = "nats")]
    pub fn consumer(mut self, consumer: parti_nats::PartitionConsumer) -> Self {
        self.consumer = Some(consumer);
        self
    }

    /// Re-read the partition list this often (on the leader).
    pub fn refresh_every(mut self, period: Duration) -> Self {
        self.refresh_every = Some(period);
        self
    }

    /// Adds a constant label to every metric this manager emits (besides
    /// `group`), e.g. to tell apart several workers of one group run in one
    /// process. Keep its values bounded (see [`crate::metrics`]).
    pub fn metrics_label(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.metrics_labels.push((key.into(), value.into()));
        self
    }

    /// Fixes this process's instance id (tests); by default it is random.
    pub fn instance_id(mut self, id: u64) -> Self {
        self.instance = Some(InstanceId(id));
        self
    }

    /// Validates the configuration, prepares the storage, claims a stable ID,
    /// joins the group and returns once the worker is `Stable` (it owns its
    /// first assignment), or fails after `startup_timeout`.
    ///
    /// Preparing the storage rides out transient trouble: a request that
    /// times out or a store that is unavailable (a client reconnecting, a
    /// cluster electing a stream leader) is retried with a growing pause
    /// (100 ms doubling up to 1 s) until `startup_timeout`, after which `start`
    /// fails with [`Error::StartupTimeout`] in `Init`. Permanent problems (a
    /// bucket with an incompatible configuration, missing permissions) fail at
    /// once with [`Error::Backend`].
    ///
    /// When every ID of the range is taken, the worker keeps trying (a member
    /// key that is removed or expires frees an ID) and `start` fails with
    /// [`Error::IdRangeExhausted`] once the range stayed full for
    /// `startup_timeout`.
    pub async fn start(self) -> Result<Manager, Error> {
        self.config.validate()?;
        let began = Instant::now();
        // Without the `nats` feature the match has a single arm.
        #[cfg_attr(not(feature = "nats"), allow(clippy::infallible_destructuring_match))]
        let backend: Arc<dyn Backend> = match self.backend {
            BackendChoice::Ready(b) => b,
            #[cfg(feature = "nats")]
            BackendChoice::Nats(client) => {
                Arc::new(parti_nats::NatsBackend::new(client, &self.config))
            }
        };
        prepare_storage(backend.as_ref(), began + self.config.startup_timeout).await?;
        // The worker counts its `startup_timeout` for a full ID range from here.
        let claims_began = Instant::now();
        let instance = self.instance.unwrap_or_else(random_instance);
        let worker = Worker::new(
            self.config.clone(),
            self.strategy,
            instance,
            CoreInstant::ZERO,
        );
        #[cfg(feature = "nats")]
        let hooks: Arc<dyn Hooks> = match self.consumer {
            Some(consumer) => Arc::new(crate::consume::ConsumingHooks {
                consumer,
                app: self.hooks,
                cleanup_wait: self.config.effective_hook_budget() / 2,
            }),
            None => self.hooks,
        };
        #[cfg(not(feature = "nats"))]
        let hooks = self.hooks;
        let shared = Shared::new();
        let (control_tx, control_rx) = mpsc::channel(16);
        let task = Driver {
            worker,
            backend,
            source: self.source,
            hooks,
            shared: shared.clone(),
            control: control_rx,
            refresh_every: self.refresh_every,
            metrics_labels: self.metrics_labels,
        }
        .spawn();
        let mut manager = Manager {
            shared,
            control: control_tx,
            task: Some(task),
            config: self.config,
        };
        let mut states = manager.shared.state.subscribe();
        let result = {
            let wait = async {
                loop {
                    let state = *states.borrow_and_update();
                    match state {
                        State::Stable => return Ok(()),
                        State::Shutdown => {
                            return Err(manager.shared.fatal().unwrap_or(Error::NotRunning));
                        }
                        _ => {}
                    }
                    if states.changed().await.is_err() {
                        return Err(Error::NotRunning);
                    }
                }
            };
            let mut wait = std::pin::pin!(wait);
            let mut result = tokio::time::timeout(manager.config.startup_timeout, &mut wait).await;
            if result.is_err() && manager.state() == State::ClaimingId {
                // Still claiming: the worker gives up on a full ID range
                // `startup_timeout` after it began claiming, i.e. after the bucket
                // checks above. Give it that long (plus one operation) to report
                // `IdRangeExhausted` rather than a bare timeout.
                let grace = claims_began.saturating_duration_since(began)
                    + manager.config.operation_timeout;
                result = tokio::time::timeout(grace, &mut wait).await;
            }
            result
        };
        match result {
            Ok(Ok(())) => Ok(manager),
            Ok(Err(e)) => {
                manager.abort();
                Err(e)
            }
            Err(_) => {
                let state = manager.state();
                let _ = manager.shutdown(StopMode::Graceful).await;
                Err(Error::StartupTimeout { state })
            }
        }
    }
}

/// First pause between two attempts to prepare the storage.
const READY_BACKOFF_MIN: Duration = Duration::from_millis(100);
/// Longest pause between two attempts to prepare the storage.
const READY_BACKOFF_MAX: Duration = Duration::from_secs(1);

/// Whether a failure to prepare the storage may go away by itself: a request
/// that timed out, or a store that cannot be reached or is not ready (a
/// reconnecting client, a cluster electing a stream leader). Everything else
/// (a bucket with another configuration, missing permissions, an unknown
/// error) is reported at once.
fn transient(error: &BackendError) -> bool {
    matches!(error, BackendError::Timeout | BackendError::Unavailable(_))
}

/// Prepares the storage (`Backend::ensure_ready`), retrying transient failures
/// with a growing pause until `deadline`; then `StartupTimeout` in `Init`.
async fn prepare_storage(backend: &dyn Backend, deadline: Instant) -> Result<(), Error> {
    let mut backoff = READY_BACKOFF_MIN;
    for attempt in 1u32.. {
        let error = match tokio::time::timeout_at(deadline, backend.ensure_ready()).await {
            Ok(Ok(())) => return Ok(()),
            Ok(Err(e)) if transient(&e) => e,
            Ok(Err(e)) => return Err(e.into()),
            Err(_) => break,
        };
        if Instant::now() >= deadline {
            tracing::warn!(attempt, %error, "cannot prepare the storage; startup_timeout reached");
            break;
        }
        tracing::warn!(attempt, %error, retry_in = ?backoff, "cannot prepare the storage yet; retrying");
        // The pause ends at the deadline at the latest.
        tokio::time::sleep_until((Instant::now() + backoff).min(deadline)).await;
        backoff = (backoff * 2).min(READY_BACKOFF_MAX);
    }
    Err(Error::StartupTimeout { state: State::Init })
}

fn random_instance() -> InstanceId {
    use std::hash::{BuildHasher, Hasher};
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    hasher.write_u32(std::process::id());
    InstanceId(hasher.finish())
}

/// A running worker of a group. Dropping it without [`Manager::stop`] behaves
/// like a crash: the task is aborted and the leader reassigns its partitions
/// after its lease expires.
pub struct Manager {
    shared: Arc<Shared>,
    control: mpsc::Sender<Control>,
    task: Option<JoinHandle<()>>,
    config: Config,
}

impl std::fmt::Debug for Manager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Manager")
            .field("worker_id", &self.worker_id())
            .field("state", &self.state())
            .field("leader", &self.is_leader())
            .finish()
    }
}

impl Manager {
    /// A builder over any backend (e.g. `parti_testkit::MemoryBackend`). A
    /// backend shared with other managers is passed as an `Arc` (`Arc<B>` and
    /// `Arc<dyn Backend>` are backends too).
    pub fn builder(backend: impl Backend) -> ManagerBuilder {
        ManagerBuilder::new(BackendChoice::Ready(Arc::new(backend)))
    }

    /// A builder on NATS JetStream, using the application's client (its
    /// servers, auth and TLS).
    #[cfg(feature = "nats")]
    pub fn builder_nats(client: async_nats::Client) -> ManagerBuilder {
        ManagerBuilder::new(BackendChoice::Nats(client))
    }

    /// The fatal error the manager ended on, if it did (the same error
    /// `stop()` / `leave()` return).
    pub fn fatal_error(&self) -> Option<Error> {
        self.shared.fatal()
    }

    /// The configuration in use.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The stable ID held.
    pub fn worker_id(&self) -> Option<WorkerId> {
        self.shared.worker_id.borrow().clone()
    }

    /// The current state (`Shutdown` once stopped, also after a fatal error).
    pub fn state(&self) -> State {
        *self.shared.state.borrow()
    }

    /// Whether this worker leads the group.
    pub fn is_leader(&self) -> bool {
        *self.shared.leader.borrow()
    }

    /// The owned partitions with their fencing epochs and the version.
    pub fn assignment(&self) -> Assignment {
        self.shared.assignment.borrow().clone()
    }

    /// A receiver that sees every state change.
    pub fn subscribe_state(&self) -> watch::Receiver<State> {
        self.shared.state.subscribe()
    }

    /// A receiver that sees every assignment change.
    pub fn subscribe_assignment(&self) -> watch::Receiver<Assignment> {
        self.shared.assignment.subscribe()
    }

    /// A receiver that sees leadership changes.
    pub fn subscribe_leader(&self) -> watch::Receiver<bool> {
        self.shared.leader.subscribe()
    }

    /// Re-reads the partition list now. On the leader the new list is applied
    /// promptly; on a follower this does nothing (the leader's source is the one
    /// that counts).
    pub async fn refresh_partitions(&self) -> Result<(), Error> {
        let (done, rx) = oneshot::channel();
        self.control
            .send(Control::Refresh { done })
            .await
            .map_err(|_| Error::NotRunning)?;
        rx.await.map_err(|_| Error::NotRunning)?
    }

    /// Stops gracefully: gives up the partitions, resigns leadership, releases
    /// the ID. The leader keeps this worker's partitions for the planned-scale
    /// window, so a restart under the same ID (a rolling update) moves nothing.
    ///
    /// Returns within `shutdown_timeout` whatever the hooks do. If the manager
    /// ended on a fatal error (a hook that panicked or overran its budget, no
    /// free ID), that error is returned; `state()` is then `Shutdown`.
    pub async fn stop(mut self) -> Result<(), Error> {
        self.shutdown(StopMode::Graceful).await
    }

    /// Leaves the group for good (scale-down): like [`Manager::stop`], but the
    /// leader hands the partitions to the others at once. Returns the fatal
    /// error the manager ended on, if any, as `stop()` does.
    pub async fn leave(mut self) -> Result<(), Error> {
        self.shutdown(StopMode::Leave).await
    }

    async fn shutdown(&mut self, mode: StopMode) -> Result<(), Error> {
        let deadline = Instant::now() + self.config.shutdown_timeout;
        let (done, rx) = oneshot::channel();
        let sent =
            tokio::time::timeout_at(deadline, self.control.send(Control::Stop { mode, done }))
                .await;
        if !matches!(sent, Ok(Ok(()))) {
            // The driver ended (a fatal error) or is unresponsive.
            let state = self.state();
            self.abort();
            return match self.shared.fatal() {
                Some(e) => Err(e),
                None if sent.is_err() => Err(Error::ShutdownTimeout { state }),
                None => Ok(()),
            };
        }
        match tokio::time::timeout_at(deadline, rx).await {
            Ok(_) => {
                if let Some(mut task) = self.task.take()
                    && tokio::time::timeout_at(deadline, &mut task).await.is_err()
                {
                    // Only the slow hooks can still be running: leave them.
                    task.abort();
                }
                match self.shared.fatal() {
                    Some(e) => Err(e),
                    None => Ok(()),
                }
            }
            Err(_) => {
                let state = self.state();
                self.abort();
                Err(self
                    .shared
                    .fatal()
                    .unwrap_or(Error::ShutdownTimeout { state }))
            }
        }
    }

    fn abort(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

impl Drop for Manager {
    fn drop(&mut self) {
        self.abort();
    }
}
