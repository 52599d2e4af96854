//! A TCP proxy on loopback that can cut or black-hole the traffic between a
//! client and a server, to simulate a worker cut off from NATS.
//!
//! Modes:
//! - forwarding (the start state, and after [`FaultProxy::restore`]);
//! - [`FaultProxy::cut`]: every open connection is closed, and new connections are
//!   closed as soon as they are accepted (the client sees its connects fail);
//! - [`FaultProxy::blackhole`]: connections stay open but nothing is forwarded in
//!   either direction (bytes are read and dropped), and new connections are
//!   accepted and held the same way — the client only notices through its own
//!   timeouts (e.g. NATS pings).
//!
//! Leaving a fault ([`FaultProxy::restore`]) closes the connections that lived
//! through it (their byte streams are broken), so clients reconnect cleanly.
//!
//! Needs a tokio runtime (feature `fault-proxy`).
//!
//! ```no_run
//! # async fn demo(server: std::net::SocketAddr) -> std::io::Result<()> {
//! use parti_testkit::fault_proxy::FaultProxy;
//! let proxy = FaultProxy::start(server).await?;
//! let url = proxy.nats_url(); // give this to the client
//! proxy.cut();
//! proxy.restore();
//! # Ok(()) }
//! ```

use std::net::SocketAddr;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// What the proxy does with traffic.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProxyMode {
    /// Bytes flow both ways.
    Forward,
    /// Connections are closed and refused.
    Cut,
    /// Connections are held open; bytes are dropped.
    Blackhole,
    /// The proxy is being dropped.
    Closed,
}

/// The proxy guard; dropping it stops the proxy and closes every connection.
#[derive(Debug)]
pub struct FaultProxy {
    addr: SocketAddr,
    mode: watch::Sender<ProxyMode>,
    accept_task: JoinHandle<()>,
}

impl FaultProxy {
    /// Listens on a free loopback port and forwards to `target`.
    pub async fn start(target: SocketAddr) -> std::io::Result<FaultProxy> {
        let listener = TcpListener::bind(("127.0.0.1", 0)).await?;
        let addr = listener.local_addr()?;
        let (mode, mode_rx) = watch::channel(ProxyMode::Forward);
        let accept_task = tokio::spawn(accept_loop(listener, target, mode_rx));
        Ok(FaultProxy {
            addr,
            mode,
            accept_task,
        })
    }

    /// The address clients connect to.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// `nats://127.0.0.1:<proxy port>`.
    pub fn nats_url(&self) -> String {
        format!("nats://{}", self.addr)
    }

    /// The current mode.
    pub fn mode(&self) -> ProxyMode {
        *self.mode.borrow()
    }

    /// Closes every connection and refuses new ones.
    pub fn cut(&self) {
        self.mode.send_replace(ProxyMode::Cut);
    }

    /// Keeps connections open but forwards nothing.
    pub fn blackhole(&self) {
        self.mode.send_replace(ProxyMode::Blackhole);
    }

    /// Forwards again (connections that lived through a black hole are closed).
    pub fn restore(&self) {
        self.mode.send_replace(ProxyMode::Forward);
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.mode.send_replace(ProxyMode::Closed);
        self.accept_task.abort();
    }
}

async fn accept_loop(listener: TcpListener, target: SocketAddr, mode: watch::Receiver<ProxyMode>) {
    loop {
        let Ok((inbound, _)) = listener.accept().await else {
            continue;
        };
        let current = *mode.borrow();
        match current {
            ProxyMode::Closed => return,
            // Dropping the socket closes it at once.
            ProxyMode::Cut => drop(inbound),
            ProxyMode::Forward | ProxyMode::Blackhole => {
                tokio::spawn(serve(inbound, target, mode.clone()));
            }
        }
    }
}

/// One client connection: forwards while the mode allows, drops bytes while
/// black-holed, ends on a cut, on a recovery from a black hole, or at close.
async fn serve(mut inbound: TcpStream, target: SocketAddr, mut mode: watch::Receiver<ProxyMode>) {
    let mut outbound = None;
    let mut held_through_fault = false;
    let mut in_buf = vec![0u8; 16 * 1024];
    let mut out_buf = vec![0u8; 16 * 1024];
    loop {
        let current = *mode.borrow_and_update();
        match current {
            ProxyMode::Cut | ProxyMode::Closed => return,
            ProxyMode::Blackhole => held_through_fault = true,
            ProxyMode::Forward => {
                if held_through_fault {
                    return;
                }
                if outbound.is_none() {
                    match TcpStream::connect(target).await {
                        Ok(stream) => outbound = Some(stream),
                        Err(_) => return,
                    }
                }
            }
        }
        let forwarding = current == ProxyMode::Forward;
        match outbound.as_mut() {
            Some(out) => {
                tokio::select! {
                    changed = mode.changed() => if changed.is_err() { return },
                    read = inbound.read(&mut in_buf) => match read {
                        Ok(0) | Err(_) => return,
                        Ok(n) => if forwarding && out.write_all(&in_buf[..n]).await.is_err() { return },
                    },
                    read = out.read(&mut out_buf) => match read {
                        Ok(0) | Err(_) => return,
                        Ok(n) => if forwarding && inbound.write_all(&out_buf[..n]).await.is_err() { return },
                    },
                }
            }
            None => {
                // Black-holed before the upstream connection was made.
                tokio::select! {
                    changed = mode.changed() => if changed.is_err() { return },
                    read = inbound.read(&mut in_buf) => if matches!(read, Ok(0) | Err(_)) { return },
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    async fn echo_server() -> SocketAddr {
        let listener = TcpListener::bind(("127.0.0.1", 0)).await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let mut buf = [0u8; 1024];
                    while let Ok(n) = s.read(&mut buf).await {
                        if n == 0 || s.write_all(&buf[..n]).await.is_err() {
                            break;
                        }
                    }
                });
            }
        });
        addr
    }

    async fn round_trip(stream: &mut TcpStream, within: Duration) -> Option<Vec<u8>> {
        stream.write_all(b"ping").await.ok()?;
        let mut buf = [0u8; 4];
        match tokio::time::timeout(within, stream.read_exact(&mut buf)).await {
            Ok(Ok(_)) => Some(buf.to_vec()),
            _ => None,
        }
    }

    /// Reads until EOF/error, bounded by `within`: true if the peer closed.
    async fn closed_within(stream: &mut TcpStream, within: Duration) -> bool {
        let mut buf = [0u8; 16];
        matches!(
            tokio::time::timeout(within, stream.read(&mut buf)).await,
            Ok(Ok(0) | Err(_))
        )
    }

    #[tokio::test]
    async fn forwards_cuts_blackholes_and_restores() {
        let target = echo_server().await;
        let proxy = FaultProxy::start(target).await.unwrap();
        let mut client = TcpStream::connect(proxy.local_addr()).await.unwrap();
        assert_eq!(
            round_trip(&mut client, Duration::from_secs(5)).await,
            Some(b"ping".to_vec())
        );

        proxy.cut();
        assert!(closed_within(&mut client, Duration::from_secs(5)).await);
        let mut refused = TcpStream::connect(proxy.local_addr()).await.unwrap();
        assert!(closed_within(&mut refused, Duration::from_secs(5)).await);

        proxy.restore();
        let mut client = TcpStream::connect(proxy.local_addr()).await.unwrap();
        assert!(
            round_trip(&mut client, Duration::from_secs(5))
                .await
                .is_some()
        );

        proxy.blackhole();
        // Nothing comes back; a short bound is enough to see silence.
        assert_eq!(
            round_trip(&mut client, Duration::from_millis(200)).await,
            None
        );
        proxy.restore();
        assert!(closed_within(&mut client, Duration::from_secs(5)).await);
        let mut client = TcpStream::connect(proxy.local_addr()).await.unwrap();
        assert!(
            round_trip(&mut client, Duration::from_secs(5))
                .await
                .is_some()
        );
    }
}
