//! The faults the simulator can inject, and how a schedule of them is drawn.

use super::rng::Rng;
use std::fmt;

/// A kind of fault.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum FaultKind {
    /// A process dies without a word (state lost); often a new one starts later.
    Crash,
    /// A process stops the world (GC pause, SIGSTOP) and later resumes.
    Pause,
    /// A process is cut off from the store for a while.
    Cut,
    /// Clocks of processes run at slightly different rates.
    Drift,
    /// A process stops gracefully and a new one starts under the same ID.
    Restart,
    /// A process leaves for good (scale-down).
    Leave,
    /// A new process joins.
    Join,
    /// The partition list changes.
    Refresh,
    /// Some write acknowledgements are lost (outcome unknown to the writer).
    Lost,
    /// Occasional network delay spikes.
    Delay,
    /// The store is unreachable for every process at once (the server is
    /// down; its keys still expire), for up to 45 s.
    Outage,
    /// The store loses every bucket (memory storage and a server restart):
    /// down for everybody for 1 to 10 s, then back empty, its revisions
    /// starting again from 1; every open watch ends.
    Wipe,
}

impl FaultKind {
    /// Every kind (`--faults all`).
    pub const ALL: [FaultKind; 12] = [
        FaultKind::Crash,
        FaultKind::Pause,
        FaultKind::Cut,
        FaultKind::Drift,
        FaultKind::Restart,
        FaultKind::Leave,
        FaultKind::Join,
        FaultKind::Refresh,
        FaultKind::Lost,
        FaultKind::Delay,
        FaultKind::Outage,
        FaultKind::Wipe,
    ];

    /// Lower-case name used on the command line.
    pub fn name(self) -> &'static str {
        match self {
            FaultKind::Crash => "crash",
            FaultKind::Pause => "pause",
            FaultKind::Cut => "cut",
            FaultKind::Drift => "drift",
            FaultKind::Restart => "restart",
            FaultKind::Leave => "leave",
            FaultKind::Join => "join",
            FaultKind::Refresh => "refresh",
            FaultKind::Lost => "lost",
            FaultKind::Delay => "delay",
            FaultKind::Outage => "outage",
            FaultKind::Wipe => "wipe",
        }
    }

    /// Whether this kind is an event at a point in time (vs. a background
    /// condition like drift).
    pub fn is_event(self) -> bool {
        !matches!(self, FaultKind::Drift | FaultKind::Lost | FaultKind::Delay)
    }
}

impl fmt::Display for FaultKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A set of enabled fault kinds.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FaultSet(Vec<FaultKind>);

impl FaultSet {
    /// Every kind.
    pub fn all() -> Self {
        FaultSet(FaultKind::ALL.to_vec())
    }

    /// No faults.
    pub fn none() -> Self {
        FaultSet(Vec::new())
    }

    /// Parses `all`, `none` or a comma-separated list of names.
    pub fn parse(text: &str) -> Result<Self, String> {
        match text {
            "all" => return Ok(Self::all()),
            "none" | "" => return Ok(Self::none()),
            _ => {}
        }
        let mut kinds = Vec::new();
        for name in text.split(',') {
            let kind = FaultKind::ALL
                .into_iter()
                .find(|k| k.name() == name.trim())
                .ok_or_else(|| format!("unknown fault {name:?}; known: all, none, {}", names()))?;
            kinds.push(kind);
        }
        kinds.sort();
        kinds.dedup();
        Ok(FaultSet(kinds))
    }

    /// Whether `kind` is enabled.
    pub fn has(&self, kind: FaultKind) -> bool {
        self.0.contains(&kind)
    }

    /// The point-in-time kinds enabled.
    pub fn events(&self) -> Vec<FaultKind> {
        self.0.iter().copied().filter(|k| k.is_event()).collect()
    }
}

fn names() -> String {
    FaultKind::ALL
        .iter()
        .map(|k| k.name())
        .collect::<Vec<_>>()
        .join(", ")
}

/// Draws the times and kinds of point faults in `[from, until)`.
pub fn draw_schedule(
    rng: &mut Rng,
    faults: &FaultSet,
    from: u64,
    until: u64,
    mean_gap: u64,
) -> Vec<(u64, FaultKind)> {
    let kinds = faults.events();
    let mut out = Vec::new();
    if kinds.is_empty() {
        return out;
    }
    let mut t = from + rng.range(0, mean_gap);
    while t < until {
        if let Some(k) = rng.pick(&kinds) {
            out.push((t, *k));
        }
        t += rng.range(mean_gap / 3, mean_gap * 5 / 3);
    }
    // Half of the runs also get a rolling restart in calm weather (nothing else
    // happening around it), where stability (S5) is checked.
    if faults.has(FaultKind::Restart) && until > from + 60_000 && rng.chance(0.5) {
        let at = rng.range(from + 40_000, until - 15_000);
        out.retain(|(t, _)| *t + 40_000 < at || *t > at + 15_000);
        out.push((at, FaultKind::Restart));
        out.sort();
    }
    out
}
