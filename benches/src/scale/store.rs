//! Where the report's managers keep their state: the in-memory backend, a
//! nats-server the report starts itself (testkit harness, `NATS_SERVER_BIN`),
//! or a server given by URL; and what the server says about itself (CPU time
//! of its process, stream sequences, message counts).

use super::counting::{Counters, CountingBackend};
use super::lane::Lane;
use super::procstat;
use parti::nats::NatsBackend;
use parti::nats::async_nats;
use parti::{Backend, Config};
use parti_testkit::MemoryBackend;
use parti_testkit::nats_server::{NatsServer, monitor_get};
use std::sync::Arc;
use std::time::Duration;

/// Which backend a run uses.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Which {
    /// `parti_testkit::MemoryBackend`, in this process.
    Memory,
    /// A nats-server: started by the report (`None`), or at this URL with an
    /// optional monitoring port.
    Nats {
        /// `nats://…` of a running server.
        url: Option<String>,
        /// Its monitoring port (`-m`), for the server-side columns.
        monitor_port: Option<u16>,
    },
}

impl Which {
    /// `memory` or `nats`.
    pub fn name(&self) -> &'static str {
        match self {
            Which::Memory => "memory",
            Which::Nats { .. } => "nats",
        }
    }
}

/// What a NATS server reports, read at one moment.
#[derive(Clone, Copy, Debug, Default)]
pub struct ServerReading {
    /// CPU time of the server process (only for a server this report started).
    pub cpu: Option<Duration>,
    /// Sum of the last sequences of the group's KV streams: writes stored.
    pub stream_writes: Option<u64>,
    /// Messages the server sent to clients (`/varz` `out_msgs`).
    pub msgs_out: Option<u64>,
    /// Messages clients sent to the server (`/varz` `in_msgs`).
    pub msgs_in: Option<u64>,
    /// Times the server found a client too slow to read what it was sent
    /// (`/varz` `slow_consumers`).
    pub slow_consumers: Option<u64>,
}

/// The store of one report cell.
pub enum Store {
    /// In memory.
    Memory(MemoryBackend),
    /// On NATS.
    Nats {
        /// The server, if this report started it (killed on drop).
        server: Option<Box<NatsServer>>,
        /// Its client URL.
        url: String,
        /// Its monitoring port.
        monitor_port: Option<u16>,
        /// The connections the managers of the main runtime share.
        shared: Vec<Arc<dyn Backend>>,
    },
}

impl Store {
    /// Opens the store for a group configured by `config`; for NATS,
    /// `connections` connections shared round-robin by the workers of the
    /// main runtime.
    pub async fn open(which: &Which, config: &Config, connections: usize) -> Result<Store, String> {
        match which {
            Which::Memory => Ok(Store::Memory(MemoryBackend::new(config))),
            Which::Nats { url, monitor_port } => {
                let (server, url, monitor_port) = match url {
                    Some(u) => (None, u.clone(), *monitor_port),
                    None => {
                        let s = NatsServer::start().map_err(|e| format!("nats-server: {e}"))?;
                        let (u, m) = (s.client_url(), s.monitor_port());
                        (Some(Box::new(s)), u, m)
                    }
                };
                let mut shared: Vec<Arc<dyn Backend>> = Vec::new();
                for _ in 0..connections.max(1) {
                    let client = connect(&url).await?;
                    shared.push(Arc::new(NatsBackend::new(client, config)));
                }
                Ok(Store::Nats {
                    server,
                    url,
                    monitor_port,
                    shared,
                })
            }
        }
    }

    /// A backend for the `i`-th worker of the main runtime, counting into
    /// `counters`.
    pub fn backend(&self, i: usize, counters: &Arc<Counters>) -> Arc<dyn Backend> {
        let inner: Arc<dyn Backend> = match self {
            Store::Memory(m) => Arc::new(m.clone()),
            Store::Nats { shared, .. } => Arc::clone(&shared[i % shared.len()]),
        };
        Arc::new(CountingBackend::new(inner, Arc::clone(counters)))
    }

    /// A backend of its own for a worker run on `lane`: for NATS a connection
    /// made on the lane (so the client's I/O runs on the lane's thread), in
    /// memory another handle of the store.
    pub async fn lane_backend(
        &self,
        lane: &Lane,
        config: &Config,
        counters: &Arc<Counters>,
    ) -> Result<Arc<dyn Backend>, String> {
        let inner: Arc<dyn Backend> = match self {
            Store::Memory(m) => Arc::new(m.handle()),
            Store::Nats { url, .. } => {
                let url = url.clone();
                let client = lane
                    .spawn(async move { connect(&url).await })
                    .await
                    .map_err(|e| format!("lane connect task: {e}"))??;
                Arc::new(NatsBackend::new(client, config))
            }
        };
        Ok(Arc::new(CountingBackend::new(inner, Arc::clone(counters))))
    }

    /// What the server reports now (all `None` in memory).
    pub fn server_reading(&self, group: &str) -> ServerReading {
        let Store::Nats {
            server,
            monitor_port,
            ..
        } = self
        else {
            return ServerReading::default();
        };
        let cpu = server
            .as_ref()
            .and_then(|s| s.pid())
            .and_then(procstat::pid_cpu);
        let get = |path: &str| -> Option<serde_json::Value> {
            let body = monitor_get((*monitor_port)?, path)?;
            serde_json::from_str(&body).ok()
        };
        let varz = get("/varz");
        let field = |v: &Option<serde_json::Value>, k: &str| v.as_ref()?.get(k)?.as_u64();
        let jsz = get("/jsz?accounts=true&streams=true");
        ServerReading {
            cpu,
            stream_writes: jsz.map(|j| stream_last_seqs(&j, &format!("KV_parti_{group}_"))),
            msgs_out: field(&varz, "out_msgs"),
            msgs_in: field(&varz, "in_msgs"),
            slow_consumers: field(&varz, "slow_consumers"),
        }
    }
}

/// Connects a client with the defaults (plus a name in the server's view).
async fn connect(url: &str) -> Result<async_nats::Client, String> {
    async_nats::ConnectOptions::new()
        .name("parti-scale-report")
        .connect(url)
        .await
        .map_err(|e| format!("connecting to {url}: {e}"))
}

/// Sum of `state.last_seq` over the streams of a `/jsz` answer whose name
/// starts with `prefix` (the group's KV buckets).
fn stream_last_seqs(v: &serde_json::Value, prefix: &str) -> u64 {
    match v {
        serde_json::Value::Object(map) => {
            let own = match (map.get("name").and_then(|n| n.as_str()), map.get("state")) {
                (Some(name), Some(state)) if name.starts_with(prefix) => state
                    .get("last_seq")
                    .and_then(serde_json::Value::as_u64)
                    .unwrap_or(0),
                _ => 0,
            };
            own + map
                .iter()
                .filter(|(k, _)| k.as_str() != "state")
                .map(|(_, v)| stream_last_seqs(v, prefix))
                .sum::<u64>()
        }
        serde_json::Value::Array(items) => items.iter().map(|i| stream_last_seqs(i, prefix)).sum(),
        _ => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::stream_last_seqs;

    #[test]
    fn sums_the_group_streams_only() {
        let v = serde_json::json!({"account_details": [{"stream_detail": [
            {"name": "KV_g-members", "state": {"last_seq": 5}},
            {"name": "KV_g-leader", "state": {"last_seq": 2}},
            {"name": "KV_other", "state": {"last_seq": 100}}
        ]}]});
        assert_eq!(stream_last_seqs(&v, "KV_g"), 7);
    }
}
