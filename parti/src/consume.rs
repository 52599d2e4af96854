//! Wiring a [`PartitionConsumer`] into the manager's hooks.
//!
//! The leader grants a revoked partition to another worker only once the old
//! owner's `on_assignment_changed` returned. [`ConsumingHooks`] wraps the
//! application's hooks so that each assignment change first goes through
//! [`PartitionConsumer::apply`] — which returns only after the revoked
//! partitions finished their message in flight and recorded their progress,
//! and starts the granted ones in the background — and then reaches the
//! application's hook. A fatal error stops the consumer before the
//! application's `on_error` runs.

use crate::Error;
use crate::hooks::Hooks;
use async_trait::async_trait;
use parti_core::records::OwnedPartition;
use parti_core::{AlertLevel, State};
use parti_nats::PartitionConsumer;
use std::sync::Arc;
use std::time::Duration;

/// The application's hooks with a partition consumer in front.
pub(crate) struct ConsumingHooks {
    pub(crate) consumer: PartitionConsumer,
    pub(crate) app: Arc<dyn Hooks>,
    /// How long a call waits for the clean-up of revoked partitions.
    pub(crate) cleanup_wait: Duration,
}

#[async_trait]
impl Hooks for ConsumingHooks {
    async fn on_assignment_changed(
        &self,
        added: &[OwnedPartition],
        removed: &[OwnedPartition],
        version: u64,
    ) {
        // Half the budget for the clean-up at most: the handover itself does
        // not depend on it.
        let deadline = tokio::time::Instant::now() + self.cleanup_wait;
        self.consumer.apply_by(added, removed, deadline).await;
        self.app
            .on_assignment_changed(added, removed, version)
            .await;
    }

    async fn on_state_changed(&self, from: State, to: State) {
        self.app.on_state_changed(from, to).await;
    }

    async fn on_degraded_alert(&self, level: AlertLevel, degraded_for: Duration) {
        self.app.on_degraded_alert(level, degraded_for).await;
    }

    async fn on_error(&self, error: &Error) {
        if error.is_fatal() {
            let deadline = tokio::time::Instant::now() + self.cleanup_wait;
            self.consumer.stop_by(deadline).await;
        }
        self.app.on_error(error).await;
    }
}
