//! One [`FaultProxy`] per worker slot, on a small tokio runtime of its own
//! (the rest of the soak is plain threads and processes).

use crate::fault_proxy::FaultProxy;
use std::net::SocketAddr;

/// The proxies and the runtime thread that drives them.
#[derive(Debug)]
pub struct Proxies {
    proxies: Vec<FaultProxy>,
    // Dropped after the proxies: ends the runtime thread.
    _stop: tokio::sync::oneshot::Sender<()>,
}

impl Proxies {
    /// Starts one proxy per target (proxy `i` forwards to `targets[i]`).
    pub fn start(targets: &[SocketAddr]) -> std::io::Result<Proxies> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let handle = runtime.handle().clone();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        std::thread::spawn(move || {
            runtime.block_on(async {
                let _ = stopped.await;
            });
        });
        let mut proxies = Vec::with_capacity(targets.len());
        for target in targets {
            proxies.push(handle.block_on(FaultProxy::start(*target))?);
        }
        Ok(Proxies {
            proxies,
            _stop: stop,
        })
    }

    /// The URL worker `slot` connects to.
    pub fn url(&self, slot: usize) -> Option<String> {
        self.proxies.get(slot).map(FaultProxy::nats_url)
    }

    /// Cuts worker `slot` off.
    pub fn cut(&self, slot: usize) {
        if let Some(p) = self.proxies.get(slot) {
            p.cut();
        }
    }

    /// Lets worker `slot` reach NATS again.
    pub fn restore(&self, slot: usize) {
        if let Some(p) = self.proxies.get(slot) {
            p.restore();
        }
    }
}
