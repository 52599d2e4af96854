//! Worker processes (the `worker` example): spawning, signals, and a reader
//! thread per process that forwards its stdout lines to the harness.

use super::events::{Micros, ProcId, now_us};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::Sender;

/// What a reader thread reports.
#[derive(Debug)]
pub enum Output {
    /// One stdout line of a process.
    Line(ProcId, String),
    /// The process closed its stdout (it is exiting).
    Closed(ProcId),
}

/// How to start a worker.
#[derive(Clone, Debug)]
pub struct WorkerSpec {
    /// The `worker` example binary.
    pub bin: PathBuf,
    /// Group name.
    pub group: String,
    /// Number of partitions.
    pub partitions: usize,
    /// A config file (`--config`); without it the worker gets `--test-timings`.
    pub config: Option<PathBuf>,
    /// Where each process's stderr goes (`<dir>/proc-<n>.stderr`).
    pub log_dir: PathBuf,
}

/// One running worker process.
#[derive(Debug)]
pub struct WorkerProcess {
    /// Its identity in the timeline.
    pub proc: ProcId,
    child: Child,
}

impl WorkerProcess {
    /// Starts a worker connecting to `nats_url`; its stdout lines go to `out`.
    pub fn spawn(
        spec: &WorkerSpec,
        proc: ProcId,
        nats_url: &str,
        out: Sender<Output>,
    ) -> std::io::Result<WorkerProcess> {
        let stderr = std::fs::File::create(stderr_path(&spec.log_dir, proc))?;
        let mut cmd = Command::new(&spec.bin);
        cmd.args(["--nats", nats_url, "--group", &spec.group])
            .args(["--partitions", &spec.partitions.to_string()]);
        match &spec.config {
            Some(file) => cmd.arg("--config").arg(file),
            None => cmd.arg("--test-timings"),
        };
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(stderr);
        let mut child = cmd.spawn()?;
        if let Some(stdout) = child.stdout.take() {
            std::thread::spawn(move || {
                for line in BufReader::new(stdout).lines() {
                    let Ok(line) = line else { break };
                    if out.send(Output::Line(proc, line)).is_err() {
                        return;
                    }
                }
                let _ = out.send(Output::Closed(proc));
            });
        }
        Ok(WorkerProcess { proc, child })
    }

    /// The OS process ID.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends a signal by name (`STOP`, `CONT`, `TERM`) with the `kill` command
    /// (the workspace forbids `unsafe`, so no direct `kill(2)`).
    pub fn signal(&self, name: &str) -> std::io::Result<()> {
        let status = Command::new("kill")
            .arg(format!("-{name}"))
            .arg(self.pid().to_string())
            .status()?;
        if status.success() {
            Ok(())
        } else {
            Err(std::io::Error::other(format!(
                "kill -{name} {} failed: {status}",
                self.pid()
            )))
        }
    }

    /// SIGKILL and reap; returns when the kill was sent.
    pub fn kill(&mut self) -> Micros {
        let at = now_us();
        let _ = self.child.kill();
        let _ = self.child.wait();
        at
    }

    /// The exit status if the process has ended.
    pub fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().ok().flatten()
    }
}

/// Where the stderr of `proc` is written.
pub fn stderr_path(dir: &Path, proc: ProcId) -> PathBuf {
    dir.join(format!("proc-{}.stderr", proc.0))
}
