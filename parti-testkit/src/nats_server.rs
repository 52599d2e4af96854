//! Real `nats-server` processes for integration tests: a single JetStream node
//! ([`NatsServer`]) and an N-node JetStream cluster ([`NatsCluster`]), all on
//! loopback with random ports and temporary store directories.
//!
//! The binary comes from the env variable `NATS_SERVER_BIN`, else from
//! `nats-server` on `PATH` (`scripts/test` installs one). Tests call
//! [`require_nats_server`] first: without a binary it fails loudly under `CI`
//! and prints a loud skip notice otherwise.
//!
//! Everything here is synchronous (std processes, std sockets); the waits are
//! short polls bounded by a deadline. Each guard kills its processes and removes
//! its directories on drop.
//!
//! ```no_run
//! use parti_testkit::nats_server::{NatsServer, require_nats_server};
//! if require_nats_server().is_none() {
//!     return;
//! }
//! let server = NatsServer::start().unwrap();
//! println!("connect to {}", server.client_url());
//! ```

// Test harness: failing loudly (panic, unwrap) is how it reports a broken environment.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use thiserror::Error;

/// How long a node may take to come up and report healthy.
const START_TIMEOUT: Duration = Duration::from_secs(15);
/// Pause between two polls while waiting for a node.
const POLL_INTERVAL: Duration = Duration::from_millis(20);

/// What went wrong while running `nats-server`.
#[derive(Debug, Error)]
pub enum HarnessError {
    /// No binary at `NATS_SERVER_BIN` and none on `PATH`.
    #[error(
        "nats-server binary not found (looked at {looked_at}); set NATS_SERVER_BIN or run scripts/test, which installs it"
    )]
    BinaryNotFound {
        /// Where it was looked for.
        looked_at: String,
    },
    /// Spawning or talking to the process failed.
    #[error("nats-server harness I/O error while {context}: {source}")]
    Io {
        /// What the harness was doing.
        context: String,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The process did not become ready in time.
    #[error("nats-server {node} not ready after {waited:?}: {what}; log tail:\n{log_tail}")]
    NotReady {
        /// Node name.
        node: String,
        /// How long the harness waited.
        waited: Duration,
        /// What was still missing.
        what: String,
        /// The last lines of the server log.
        log_tail: String,
    },
    /// The process exited while the harness waited for it.
    #[error("nats-server {node} exited early ({status}); log tail:\n{log_tail}")]
    Exited {
        /// Node name.
        node: String,
        /// Its exit status.
        status: String,
        /// The last lines of the server log.
        log_tail: String,
    },
    /// A node index out of range, or an operation that needs a stopped/running node.
    #[error("invalid harness use: {0}")]
    Usage(String),
}

fn io_err(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> HarnessError {
    let context = context.into();
    move |source| HarnessError::Io { context, source }
}

/// Finds the `nats-server` binary: `NATS_SERVER_BIN` if set (it must exist), else
/// `nats-server` on `PATH`.
pub fn nats_server_bin() -> Result<PathBuf, HarnessError> {
    if let Some(path) = std::env::var_os("NATS_SERVER_BIN") {
        let path = PathBuf::from(path);
        if path.is_file() {
            return Ok(path);
        }
        return Err(HarnessError::BinaryNotFound {
            looked_at: format!("NATS_SERVER_BIN={}", path.display()),
        });
    }
    let path_var = std::env::var_os("PATH").unwrap_or_default();
    for dir in std::env::split_paths(&path_var) {
        let candidate = dir.join("nats-server");
        if candidate.is_file() {
            return Ok(candidate);
        }
    }
    Err(HarnessError::BinaryNotFound {
        looked_at: "NATS_SERVER_BIN (unset) and PATH".into(),
    })
}

/// A single-node server for a test, or `None` (the test is skipped, loudly)
/// when there is no binary and `CI` is not set.
pub fn start_or_skip() -> Option<NatsServer> {
    require_nats_server()?;
    match NatsServer::start() {
        Ok(server) => Some(server),
        Err(e) => panic!("nats-server did not start: {e}"),
    }
}

/// A group (and bucket) name unique to this test binary run.
pub fn unique_group(name: &str) -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    format!(
        "{name}_{}_{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// For tests that need a real server: returns the binary path, or — when there
/// is none — panics if the env variable `CI` is set (CI must never skip
/// silently), and otherwise prints a loud `SKIPPED` notice and returns `None`.
pub fn require_nats_server() -> Option<PathBuf> {
    match nats_server_bin() {
        Ok(path) => Some(path),
        Err(err) => {
            if std::env::var_os("CI").is_some() {
                panic!("nats-server is required under CI but missing: {err}");
            }
            eprintln!();
            eprintln!("**************************************************************");
            eprintln!("SKIPPED: nats-server not found ({err})");
            eprintln!("**************************************************************");
            None
        }
    }
}

/// Reserves `n` distinct free loopback ports (bind to port 0, read, close). There
/// is a small race until the server binds them; acceptable for tests.
fn reserve_ports(n: usize) -> Result<Vec<u16>, HarnessError> {
    let listeners = (0..n)
        .map(|_| TcpListener::bind("127.0.0.1:0").map_err(io_err("reserving a loopback port")))
        .collect::<Result<Vec<_>, _>>()?;
    listeners
        .iter()
        .map(|l| {
            l.local_addr()
                .map(|a| a.port())
                .map_err(io_err("reading a reserved port"))
        })
        .collect()
}

/// Last lines of a log file (for error messages).
fn log_tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(20)..].join("\n")
}

/// Parses the port out of the first URL of `key` in a ports file
/// (`{"nats":["nats://127.0.0.1:4222"],"monitoring":["http://127.0.0.1:8222"]}`).
fn port_from_ports_file(json: &serde_json::Value, key: &str) -> Option<u16> {
    let url = json.get(key)?.as_array()?.first()?.as_str()?;
    url.rsplit(':').next()?.trim_end_matches('/').parse().ok()
}

/// One GET of `path` on a loopback monitoring port (a server of this harness
/// or one started by hand with `-m <port>`); the body if the status is 200.
pub fn monitor_get(port: u16, path: &str) -> Option<String> {
    http_get(port, path)
}

/// One GET on the monitoring port; returns the body if the status is 200.
fn http_get(port: u16, path: &str) -> Option<String> {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_millis(500)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    let request = format!("GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    let _ = stream.shutdown(Shutdown::Both);
    let (head, body) = response.split_once("\r\n\r\n")?;
    let status_ok = head.lines().next()?.split_whitespace().nth(1)? == "200";
    status_ok.then(|| body.to_string())
}

/// The process and fixed facts of one node.
#[derive(Debug)]
struct Node {
    name: String,
    bin: PathBuf,
    /// Holds the ports file, the log and the store dir of this node.
    dir: PathBuf,
    /// Cluster settings (`--cluster` URL, `--routes` list, cluster name).
    cluster: Option<(String, String, String)>,
    /// A configuration file passed with `-c` (e.g. authorization rules).
    config_file: Option<PathBuf>,
    child: Option<Child>,
    /// Known after the first start; reused on restart.
    client_port: Option<u16>,
    monitor_port: Option<u16>,
}

impl Node {
    fn log_path(&self) -> PathBuf {
        self.dir.join(format!("{}.log", self.name))
    }

    fn spawn(&mut self) -> Result<(), HarnessError> {
        if self.child.is_some() {
            return Err(HarnessError::Usage(format!(
                "node {} is already running",
                self.name
            )));
        }
        let store = self.dir.join("store");
        let port = self
            .client_port
            .map_or_else(|| "-1".to_string(), |p| p.to_string());
        let mport = self
            .monitor_port
            .map_or_else(|| "-1".to_string(), |p| p.to_string());
        let mut cmd = Command::new(&self.bin);
        cmd.args(["-js", "-a", "127.0.0.1", "-p", &port, "-m", &mport])
            .args(["-n", &self.name])
            .arg("-sd")
            .arg(&store)
            .arg("--ports_file_dir")
            .arg(&self.dir)
            .arg("-l")
            .arg(self.log_path());
        if let Some(file) = &self.config_file {
            cmd.arg("-c").arg(file);
        }
        if let Some((cluster_url, routes, cluster_name)) = &self.cluster {
            cmd.args(["--cluster_name", cluster_name])
                .args(["--cluster", cluster_url])
                .args(["--routes", routes]);
        }
        cmd.stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let child = cmd
            .spawn()
            .map_err(io_err(format!("spawning {}", self.bin.display())))?;
        self.child = Some(child);
        Ok(())
    }

    /// Waits for the ports file of the current process (learning the ports on the
    /// first start), then for `/healthz` to answer ok.
    fn wait_ready(&mut self, deadline: Instant) -> Result<(), HarnessError> {
        let started = Instant::now();
        let pid = match &self.child {
            Some(child) => child.id(),
            None => {
                return Err(HarnessError::Usage(format!(
                    "node {} not running",
                    self.name
                )));
            }
        };
        let suffix = format!("_{pid}.ports");
        let mut missing = "ports file".to_string();
        while Instant::now() < deadline {
            self.check_alive()?;
            if (self.client_port.is_none() || self.monitor_port.is_none())
                && let Some(json) = self.read_ports_file(&suffix)
            {
                self.client_port = port_from_ports_file(&json, "nats");
                self.monitor_port = port_from_ports_file(&json, "monitoring");
            }
            if let (Some(_), Some(mport)) = (self.client_port, self.monitor_port) {
                missing = "healthz ok".into();
                if http_get(mport, "/healthz").is_some_and(|b| b.contains("ok")) {
                    return Ok(());
                }
            }
            std::thread::sleep(POLL_INTERVAL);
        }
        Err(HarnessError::NotReady {
            node: self.name.clone(),
            waited: started.elapsed(),
            what: missing,
            log_tail: log_tail(&self.log_path()),
        })
    }

    fn read_ports_file(&self, suffix: &str) -> Option<serde_json::Value> {
        let entries = std::fs::read_dir(&self.dir).ok()?;
        for entry in entries.flatten() {
            let name = entry.file_name();
            if name.to_string_lossy().ends_with(suffix) {
                let text = std::fs::read_to_string(entry.path()).ok()?;
                return serde_json::from_str(&text).ok();
            }
        }
        None
    }

    fn check_alive(&mut self) -> Result<(), HarnessError> {
        let status = match self.child.as_mut() {
            Some(child) => child
                .try_wait()
                .map_err(io_err(format!("polling {}", self.name)))?,
            None => return Ok(()),
        };
        match status {
            Some(status) => {
                self.child = None;
                Err(HarnessError::Exited {
                    node: self.name.clone(),
                    status: status.to_string(),
                    log_tail: log_tail(&self.log_path()),
                })
            }
            None => Ok(()),
        }
    }

    /// SIGKILL and reap; a no-op if not running.
    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    fn client_url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.client_port.unwrap_or(0))
    }
}

/// A single JetStream `nats-server` on a random loopback port with a temporary
/// store. Killed and cleaned up on drop.
#[derive(Debug)]
pub struct NatsServer {
    node: Node,
    // Dropped last: removes the store, the log and the ports file.
    _dir: tempfile::TempDir,
}

impl NatsServer {
    /// Starts a node (`-js -a 127.0.0.1 -p -1 -m -1`), reads its client port from
    /// the ports file and waits until `/healthz` is ok.
    pub fn start() -> Result<NatsServer, HarnessError> {
        Self::start_inner(None)
    }

    /// Like [`NatsServer::start`], with a server configuration file holding
    /// `config` (e.g. an `authorization { … }` block); the command-line flags
    /// (JetStream, ports, store) still apply.
    pub fn start_with_config(config: &str) -> Result<NatsServer, HarnessError> {
        Self::start_inner(Some(config))
    }

    fn start_inner(config: Option<&str>) -> Result<NatsServer, HarnessError> {
        let bin = nats_server_bin()?;
        let dir = tempfile::Builder::new()
            .prefix("parti-nats-server-")
            .tempdir()
            .map_err(io_err("creating a temp dir"))?;
        let mut server = NatsServer {
            node: Node {
                name: "single".into(),
                bin,
                dir: dir.path().to_path_buf(),
                cluster: None,
                config_file: None,
                child: None,
                client_port: None,
                monitor_port: None,
            },
            _dir: dir,
        };
        if let Some(config) = config {
            let file = server.node.dir.join("server.conf");
            std::fs::write(&file, config).map_err(io_err("writing the server config"))?;
            server.node.config_file = Some(file);
        }
        server.node.spawn()?;
        server.node.wait_ready(Instant::now() + START_TIMEOUT)?;
        Ok(server)
    }

    /// `nats://127.0.0.1:<port>`; stays the same across [`NatsServer::restart`].
    pub fn client_url(&self) -> String {
        self.node.client_url()
    }

    /// The client port.
    pub fn port(&self) -> u16 {
        self.node.client_port.unwrap_or(0)
    }

    /// Whether the process is running.
    pub fn is_running(&self) -> bool {
        self.node.child.is_some()
    }

    /// Kills the process (SIGKILL: a crash). The store stays.
    pub fn kill(&mut self) {
        self.node.kill();
    }

    /// Kills the process if it runs, then starts it again on the same port with
    /// the same store, and waits until it is healthy.
    pub fn restart(&mut self) -> Result<(), HarnessError> {
        self.node.kill();
        self.node.spawn()?;
        self.node.wait_ready(Instant::now() + START_TIMEOUT)
    }

    /// Path of the server log (for debugging a failed test).
    pub fn log_path(&self) -> PathBuf {
        self.node.log_path()
    }

    /// The monitoring (HTTP) port, known once the server started.
    pub fn monitor_port(&self) -> Option<u16> {
        self.node.monitor_port
    }

    /// The server's process id while it runs (e.g. to read its CPU time
    /// from `/proc/<pid>/stat`).
    pub fn pid(&self) -> Option<u32> {
        self.node.child.as_ref().map(Child::id)
    }

    /// One GET of a monitoring endpoint (`/varz`, `/jsz?streams=true`, …):
    /// the body if the server answered 200, else `None`.
    pub fn monitor_get(&self, path: &str) -> Option<String> {
        monitor_get(self.node.monitor_port?, path)
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        self.node.kill();
    }
}

/// A JetStream cluster of N nodes on loopback (every node gets the same
/// `--routes` list, itself included). Killed and cleaned up on drop.
#[derive(Debug)]
pub struct NatsCluster {
    nodes: Vec<Node>,
    _dir: tempfile::TempDir,
}

impl NatsCluster {
    /// Reserves `n` cluster ports, starts `n` nodes `n1..nN`, and waits until
    /// every node is healthy and sees a JetStream meta leader.
    pub fn start(n: usize) -> Result<NatsCluster, HarnessError> {
        if n == 0 {
            return Err(HarnessError::Usage(
                "a cluster needs at least one node".into(),
            ));
        }
        let bin = nats_server_bin()?;
        let dir = tempfile::Builder::new()
            .prefix("parti-nats-cluster-")
            .tempdir()
            .map_err(io_err("creating a temp dir"))?;
        let ports = reserve_ports(n)?;
        let routes = ports
            .iter()
            .map(|p| format!("nats://127.0.0.1:{p}"))
            .collect::<Vec<_>>()
            .join(",");
        let mut nodes = Vec::with_capacity(n);
        for (i, port) in ports.iter().enumerate() {
            let name = format!("n{}", i + 1);
            let node_dir = dir.path().join(&name);
            std::fs::create_dir_all(&node_dir).map_err(io_err("creating a node dir"))?;
            nodes.push(Node {
                name,
                bin: bin.clone(),
                dir: node_dir,
                config_file: None,
                cluster: Some((
                    format!("nats://127.0.0.1:{port}"),
                    routes.clone(),
                    "parti".to_string(),
                )),
                child: None,
                client_port: None,
                monitor_port: None,
            });
        }
        let mut cluster = NatsCluster { nodes, _dir: dir };
        for node in &mut cluster.nodes {
            node.spawn()?;
        }
        let deadline = Instant::now() + START_TIMEOUT;
        for i in 0..n {
            cluster.wait_node(i, deadline)?;
        }
        Ok(cluster)
    }

    fn node_mut(&mut self, i: usize) -> Result<&mut Node, HarnessError> {
        let len = self.nodes.len();
        self.nodes
            .get_mut(i)
            .ok_or_else(|| HarnessError::Usage(format!("node {i} out of range (0..{len})")))
    }

    /// Healthy, and a meta leader is known (from `/jsz`).
    fn wait_node(&mut self, i: usize, deadline: Instant) -> Result<(), HarnessError> {
        let started = Instant::now();
        let node = self.node_mut(i)?;
        node.wait_ready(deadline)?;
        let mport = node.monitor_port.unwrap_or(0);
        while Instant::now() < deadline {
            node.check_alive()?;
            if let Some(body) = http_get(mport, "/jsz") {
                let leader = serde_json::from_str::<serde_json::Value>(&body)
                    .ok()
                    .and_then(|v| {
                        v.get("meta_cluster")?
                            .get("leader")?
                            .as_str()
                            .map(str::to_owned)
                    });
                if leader.is_some_and(|l| !l.is_empty()) {
                    return Ok(());
                }
            }
            std::thread::sleep(POLL_INTERVAL);
        }
        Err(HarnessError::NotReady {
            node: node.name.clone(),
            waited: started.elapsed(),
            what: "a JetStream meta leader".into(),
            log_tail: log_tail(&node.log_path()),
        })
    }

    /// Number of nodes.
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// Whether the cluster has no nodes (never true for a started cluster).
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// Client URLs of all nodes, in node order.
    pub fn client_urls(&self) -> Vec<String> {
        self.nodes.iter().map(Node::client_url).collect()
    }

    /// Client URL of node `i`.
    pub fn client_url(&self, i: usize) -> Option<String> {
        self.nodes.get(i).map(Node::client_url)
    }

    /// Kills node `i` (SIGKILL). Its store stays.
    pub fn kill(&mut self, i: usize) -> Result<(), HarnessError> {
        self.node_mut(i)?.kill();
        Ok(())
    }

    /// Restarts node `i` on the same ports with the same store (killing it first
    /// if it runs) and waits until it is healthy and sees a meta leader.
    pub fn restart(&mut self, i: usize) -> Result<(), HarnessError> {
        let node = self.node_mut(i)?;
        node.kill();
        node.spawn()?;
        self.wait_node(i, Instant::now() + START_TIMEOUT)
    }

    /// Path of node `i`'s log.
    pub fn log_path(&self, i: usize) -> Option<PathBuf> {
        self.nodes.get(i).map(Node::log_path)
    }
}

impl Drop for NatsCluster {
    fn drop(&mut self) {
        for node in &mut self.nodes {
            node.kill();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_file_is_parsed() {
        let json: serde_json::Value = serde_json::from_str(
            r#"{"nats":["nats://127.0.0.1:41395"],"monitoring":["http://127.0.0.1:33305"]}"#,
        )
        .unwrap();
        assert_eq!(port_from_ports_file(&json, "nats"), Some(41395));
        assert_eq!(port_from_ports_file(&json, "monitoring"), Some(33305));
        assert_eq!(port_from_ports_file(&json, "cluster"), None);
    }

    #[test]
    fn single_server_starts_restarts_on_same_port_and_cleans_up() {
        if require_nats_server().is_none() {
            return;
        }
        let mut server = NatsServer::start().unwrap();
        let url = server.client_url();
        let addr = SocketAddr::from(([127, 0, 0, 1], server.port()));
        assert!(TcpStream::connect(addr).is_ok());
        server.kill();
        assert!(!server.is_running());
        server.restart().unwrap();
        assert_eq!(server.client_url(), url);
        assert!(TcpStream::connect(addr).is_ok());
        let dir = server.node.dir.clone();
        drop(server);
        assert!(!dir.exists());
    }

    #[test]
    fn cluster_forms_and_a_node_restarts_on_its_ports() {
        if require_nats_server().is_none() {
            return;
        }
        let mut cluster = NatsCluster::start(3).unwrap();
        let urls = cluster.client_urls();
        assert_eq!(urls.len(), 3);
        cluster.kill(1).unwrap();
        cluster.restart(1).unwrap();
        assert_eq!(cluster.client_urls(), urls);
        assert!(cluster.kill(3).is_err());
    }
}
