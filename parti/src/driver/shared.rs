//! What the driver publishes to the [`crate::Manager`] handle: the views
//! (state, assignment, leadership, stable ID) and the fatal error. The driver
//! task is their only writer; the handle only reads them.

use crate::Error;
use crate::view::Assignment;
use parti_core::{State, WorkerId};
use std::sync::{Arc, Mutex};
use tokio::sync::watch;

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

    pub(super) fn set_fatal(&self, error: Error) {
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
