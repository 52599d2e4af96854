//! The soak's timeline: what the worker processes print (their JSON lines) and
//! what the harness did to them, each stamped with Unix time in microseconds.

use std::fmt;

/// Unix time in microseconds (the workers' `ts_us`; the harness uses the same clock).
pub type Micros = u64;

/// The current Unix time in microseconds.
pub fn now_us() -> Micros {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
}

/// One worker process (one incarnation: a restarted worker is a new process).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ProcId(pub u32);

impl fmt::Display for ProcId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "proc#{}", self.0)
    }
}

/// A fault the harness applies.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum FaultKind {
    /// SIGKILL of a worker, then a new worker process in its slot.
    Kill,
    /// SIGSTOP of a worker for a few seconds, then SIGCONT.
    Pause,
    /// SIGTERM (graceful stop) of a worker, then a new worker process in its slot.
    Stop,
    /// The (single) server killed and restarted on the same store.
    ServerRestart,
    /// One cluster node killed and restarted.
    NodeRestart,
    /// One worker's connection cut at its fault proxy, then restored.
    Cut,
}

impl FaultKind {
    /// Short name used in the summary.
    pub fn name(self) -> &'static str {
        match self {
            FaultKind::Kill => "kill",
            FaultKind::Pause => "pause",
            FaultKind::Stop => "stop",
            FaultKind::ServerRestart => "server-restart",
            FaultKind::NodeRestart => "node-restart",
            FaultKind::Cut => "cut",
        }
    }
}

/// One ownership line of a worker.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ownership {
    /// The process that printed it.
    pub proc: ProcId,
    /// Its worker ID (`worker-3`).
    pub worker: String,
    /// The partition name.
    pub partition: String,
    /// The fencing epoch of the grant.
    pub epoch: u64,
    /// The assignment version.
    pub version: u64,
}

/// Something that happened at one instant.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// A worker printed `acquired`.
    Acquired(Ownership),
    /// A worker printed `released`.
    Released(Ownership),
    /// A worker printed `started` with its worker ID.
    Started(ProcId, String),
    /// A process ended (SIGKILL sent, or its exit was seen): it owns nothing from here.
    Died(ProcId),
    /// A process was SIGSTOPped: it owns on paper but does not act.
    Frozen(ProcId),
    /// A frozen process got SIGCONT.
    Thawed(ProcId),
    /// A process lost its connection to NATS while others may not have (a proxy
    /// cut, or the cluster node behind its proxy killed).
    CutOff(ProcId),
    /// The connection of a cut-off process is possible again.
    Reconnected(ProcId),
    /// A fault was applied (re-own latency is measured from here).
    Fault(FaultKind),
    /// The end of the final quiet period: every partition must be owned here.
    EndOfRun,
}

/// An event with its time.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Stamped {
    /// When it happened.
    pub ts: Micros,
    /// What happened.
    pub event: Event,
}

/// Parses one stdout line of a worker process. Ownership lines become events;
/// other valid lines (`state`, `started`, `stopped`) give `Ok(None)`; a line that
/// is not a worker event is an error naming what is wrong.
pub fn parse_line(proc: ProcId, line: &str) -> Result<Option<Stamped>, String> {
    let value: serde_json::Value =
        serde_json::from_str(line).map_err(|e| format!("not JSON ({e}): {line}"))?;
    let field = |name: &str| {
        value
            .get(name)
            .ok_or_else(|| format!("no field `{name}`: {line}"))
    };
    let text = |name: &str| {
        field(name)?
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| format!("`{name}` is not a string: {line}"))
    };
    let number = |name: &str| {
        field(name)?
            .as_u64()
            .ok_or_else(|| format!("`{name}` is not an unsigned integer: {line}"))
    };
    let kind = text("event")?;
    if kind == "started" {
        let ts = number("ts_us")?;
        return Ok(Some(Stamped {
            ts,
            event: Event::Started(proc, text("worker")?),
        }));
    }
    if kind != "acquired" && kind != "released" {
        return Ok(None);
    }
    let ownership = Ownership {
        proc,
        worker: text("worker")?,
        partition: text("partition")?,
        epoch: number("epoch")?,
        version: number("version")?,
    };
    let ts = number("ts_us")?;
    let event = if kind == "acquired" {
        Event::Acquired(ownership)
    } else {
        Event::Released(ownership)
    };
    Ok(Some(Stamped { ts, event }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_ownership_lines_and_skips_others() {
        let line = r#"{"event":"acquired","worker":"worker-3","partition":"p-17","epoch":12,"version":40,"ts_us":1000}"#;
        let parsed = parse_line(ProcId(7), line).unwrap().unwrap();
        assert_eq!(parsed.ts, 1000);
        assert_eq!(
            parsed.event,
            Event::Acquired(Ownership {
                proc: ProcId(7),
                worker: "worker-3".into(),
                partition: "p-17".into(),
                epoch: 12,
                version: 40,
            })
        );
        let state =
            r#"{"event":"state","worker":"worker-3","from":"Election","to":"Stable","ts_us":5}"#;
        assert_eq!(parse_line(ProcId(1), state).unwrap(), None);
        let bad = r#"{"event":"released","worker":"worker-3","partition":"p-1","epoch":-1,"version":1,"ts_us":5}"#;
        assert!(parse_line(ProcId(1), bad).unwrap_err().contains("epoch"));
        assert!(parse_line(ProcId(1), "panic at line 3").is_err());
    }
}
