//! A lane: a single-threaded tokio runtime on its own OS thread. The scale
//! report runs the designated leader and the designated follower each on a
//! lane of its own (with its own NATS connection), so that the CPU time of
//! that thread is the CPU time of that worker alone, while the other workers
//! share the main runtime.

use std::future::Future;
use tokio::runtime::{Builder, Handle};
use tokio::sync::oneshot;

/// A runtime on a thread of its own; stopped (its tasks dropped) on drop.
pub struct Lane {
    handle: Handle,
    tid: Option<u32>,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Lane {
    /// Starts the thread and its runtime.
    pub fn start(name: &str) -> std::io::Result<Lane> {
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let (stop, stopped) = oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name(name.to_string())
            .spawn(move || {
                let runtime = match Builder::new_current_thread().enable_all().build() {
                    Ok(r) => r,
                    Err(e) => {
                        let _ = ready_tx.send(Err(e));
                        return;
                    }
                };
                let _ = ready_tx.send(Ok((
                    runtime.handle().clone(),
                    super::procstat::current_tid(),
                )));
                runtime.block_on(async {
                    let _ = stopped.await;
                });
            })?;
        let (handle, tid) = ready_rx
            .recv()
            .map_err(|_| std::io::Error::other("lane thread ended before its runtime started"))??;
        Ok(Lane {
            handle,
            tid,
            stop: Some(stop),
            thread: Some(thread),
        })
    }

    /// Runs `future` on this lane; its result is awaited from anywhere.
    pub fn spawn<F>(&self, future: F) -> tokio::task::JoinHandle<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        self.handle.spawn(future)
    }

    /// The kernel id of the lane's thread (for [`super::procstat::thread_cpu`]).
    pub fn tid(&self) -> Option<u32> {
        self.tid
    }
}

impl Drop for Lane {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
