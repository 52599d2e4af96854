//! The NATS side of a soak: one server with file storage, or a 3-node cluster.

use crate::nats_server::{HarnessError, NatsCluster, NatsServer};
use std::net::SocketAddr;

/// A single node or a cluster; both keep their stores across restarts.
#[derive(Debug)]
pub enum Servers {
    /// One JetStream node.
    Single(NatsServer),
    /// A JetStream cluster (R3 buckets).
    Cluster(NatsCluster),
}

impl Servers {
    /// Starts one node, or a 3-node cluster.
    pub fn start(cluster: bool) -> Result<Servers, HarnessError> {
        Ok(if cluster {
            Servers::Cluster(NatsCluster::start(3)?)
        } else {
            Servers::Single(NatsServer::start()?)
        })
    }

    /// The client address of every node, in node order.
    pub fn addrs(&self) -> Vec<SocketAddr> {
        let urls = match self {
            Servers::Single(s) => vec![s.client_url()],
            Servers::Cluster(c) => c.client_urls(),
        };
        urls.iter()
            .filter_map(|u| u.strip_prefix("nats://")?.parse().ok())
            .collect()
    }

    /// Number of nodes.
    pub fn nodes(&self) -> usize {
        match self {
            Servers::Single(_) => 1,
            Servers::Cluster(c) => c.len(),
        }
    }

    /// Kills node `i` (SIGKILL; the store stays).
    pub fn kill(&mut self, i: usize) -> Result<(), HarnessError> {
        match self {
            Servers::Single(s) => {
                s.kill();
                Ok(())
            }
            Servers::Cluster(c) => c.kill(i),
        }
    }

    /// Restarts node `i` on its ports and store and waits until it is ready.
    pub fn restart(&mut self, i: usize) -> Result<(), HarnessError> {
        match self {
            Servers::Single(s) => s.restart(),
            Servers::Cluster(c) => c.restart(i),
        }
    }
}
