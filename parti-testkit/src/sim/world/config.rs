//! What a simulated run is asked to do ([`SimConfig`], [`Scripted`] steps)
//! and what it found ([`SimReport`]).

use super::super::checks::Violation;
use super::super::faults::FaultSet;
#[cfg(feature = "planted-bugs")]
use parti_core::PlantedBug;
use parti_core::{Config, PartitionId, WorkerId};
use std::collections::BTreeMap;

/// Parameters of one simulated run.
#[derive(Clone, Debug)]
pub struct SimConfig {
    /// The seed; the same seed replays exactly.
    pub seed: u64,
    /// Workers at start.
    pub workers: usize,
    /// Partitions at start.
    pub partitions: usize,
    /// Simulated duration, ms.
    pub duration_ms: u64,
    /// Final period without faults in which convergence is checked, ms.
    pub quiet_ms: u64,
    /// Mean time between faults, ms.
    pub fault_gap_ms: u64,
    /// Enabled faults.
    pub faults: FaultSet,
    /// Worker configuration.
    pub config: Config,
    /// Planted bug, if any.
    #[cfg(feature = "planted-bugs")]
    pub plant: Option<PlantedBug>,
    /// Keep a readable trace of the last events (printed on a violation).
    pub trace: bool,
    /// Print a readable timeline of notable events as they happen.
    pub timeline: bool,
    /// How many trace lines to keep.
    pub trace_len: usize,
    /// A fixed scenario instead of random faults: (time in ms, step).
    pub script: Option<Vec<(u64, Scripted)>>,
    /// After a store outage each process reaches the store again at a random
    /// moment up to this many ms after the store returned: a NATS client
    /// retries with a backoff (async-nats: 2^(n-1) ms, at most 4 s), so the
    /// workers of a group come back spread over that time.
    pub reconnect_lag_ms: u64,
    /// The workers started at the beginning of the run prefer an ID each:
    /// worker `i` sets `preferred_worker_id = worker_id_min + i` (a
    /// StatefulSet's ordinals).
    pub preferred_ids: bool,
}

/// A step of a scripted scenario.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Scripted {
    /// The current leader crashes (not restarted).
    CrashLeader,
    /// A worker that does not lead crashes (not restarted).
    CrashFollower,
    /// A new worker joins.
    Join,
    /// A worker that does not lead leaves (`StopMode::Leave`).
    LeaveFollower,
    /// A worker that does not lead stops gracefully and does not come back.
    StopFollower,
    /// A worker that does not lead stops gracefully and restarts under its ID.
    RestartFollower,
    /// Partitions are added to and removed from the list.
    Refresh {
        /// How many to add.
        add: usize,
        /// How many to remove.
        remove: usize,
    },
    /// The leader is cut off from the store for this many ms.
    CutLeader(u64),
    /// The leader falls behind: for `for_ms` ms every change reaches it
    /// `lag` ms late (an overloaded process: its timers run on time, its
    /// watch queue is long), then the backlog drains.
    LagLeader {
        /// How late changes arrive.
        lag: u64,
        /// For how long.
        for_ms: u64,
    },
    /// The store is down for everybody for this many ms: every process,
    /// running or started meanwhile, is cut off (its keys still expire).
    CutAll(u64),
    /// Like `CutAll`, and the store comes back empty (every bucket lost).
    LoseBuckets(u64),
    /// The leader's watch shows a member that is not in the store: what a
    /// watch started on a lagging replica of an R3 bucket delivers for a key
    /// the stream leader already expired. No later change corrects it.
    PhantomMember,
}

impl SimConfig {
    /// Defaults: 5 workers, 64 partitions, 5 minutes, all faults, default config.
    pub fn new(seed: u64) -> Self {
        SimConfig {
            seed,
            workers: 5,
            partitions: 64,
            duration_ms: 5 * 60_000,
            quiet_ms: 90_000,
            fault_gap_ms: 12_000,
            faults: FaultSet::all(),
            config: Config::default(),
            #[cfg(feature = "planted-bugs")]
            plant: None,
            trace: false,
            timeline: false,
            trace_len: 400,
            script: None,
            reconnect_lag_ms: 4_000,
            preferred_ids: false,
        }
    }

    /// The bound within which the group must converge after the last fault.
    pub fn convergence_bound_ms(&self) -> u64 {
        let c = &self.config;
        let ms = |d: std::time::Duration| d.as_millis() as u64;
        ms(c.lease_expiry_wait())
            + ms(c.effective_emergency_grace())
            + ms(c.cold_start_window)
            + ms(c.planned_scale_window)
            + ms(c.rebalance_cooldown)
            + ms(c.election_ttl)
            + 5_000
    }
}

/// What a run found.
#[derive(Clone, Debug, Default)]
pub struct SimReport {
    /// The seed.
    pub seed: u64,
    /// Violations (empty when every guarantee held).
    pub violations: Vec<Violation>,
    /// Time from the start of the quiet period to convergence, ms.
    pub convergence_ms: Option<u64>,
    /// Partition moves (a partition granted to a worker other than its last
    /// holder).
    pub moved: u64,
    /// Accepted commits.
    pub commits: u64,
    /// Simulator events processed.
    pub steps: u64,
    /// Faults injected.
    pub faults: BTreeMap<String, u32>,
    /// Longest time two processes both held one partition while one of them was
    /// cut off under `KeepProcessing` (the documented exception), ms.
    pub tolerated_overlap_ms: u64,
    /// The trace of the last events (when tracing).
    pub trace: Vec<String>,
    /// Every accepted commit: (time ms, version, lifecycle).
    pub commit_log: Vec<(u64, u64, parti_core::records::Lifecycle)>,
    /// When each partition move happened (ms).
    pub move_times: Vec<u64>,
    /// Every partition move: when, in which version, from whom to whom.
    /// Not part of the fingerprint (it says nothing `move_times` and the
    /// commit log do not).
    pub moves: Vec<Move>,
    /// The workers a scripted step took out (crash, stop, leave), with what
    /// they held then: the optimum a movement measurement compares with.
    pub removals: Vec<Removal>,
    /// Every time a running process gave up partitions: (time ms, process
    /// label, how many).
    pub releases: Vec<(u64, String, usize)>,
    /// Member records of members other than the receiver and its leader that
    /// watches delivered, during the quiet period, to processes holding an
    /// ID and not leading: the heartbeats a follower's watch does not need
    /// (see [`parti_core::backend::MemberScope`]). Not part of the
    /// fingerprint.
    pub follower_member_items: u64,
    /// ID claims the workers sent (`Command::ClaimId`, including the
    /// re-claims after an outage). Not part of the fingerprint.
    pub claims: u64,
    /// Of which before the first commit of an assignment: the cold start's.
    pub cold_start_claims: u64,
    /// Watches of every member opened by workers that held no ID (to
    /// choose one). Not part of the fingerprint.
    pub claim_watches: u64,
    /// Member records that watches delivered before the first commit of an
    /// assignment. Not part of the fingerprint.
    pub cold_start_member_items: u64,
    /// The IDs held by live workers at the end of the run, sorted (their
    /// indexes in the ID range). Not part of the fingerprint.
    pub ids_at_end: Vec<u32>,
}

/// A partition granted to a worker other than its last holder.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Move {
    /// When the new holder applied it (ms).
    pub at: u64,
    /// The assignment version that granted it.
    pub version: u64,
    /// The partition.
    pub partition: PartitionId,
    /// Its last holder.
    pub from: WorkerId,
    /// Its new holder.
    pub to: WorkerId,
}

/// The moves one version made: (from, to, how many), most first.
pub type VersionMoves = (u64, Vec<(WorkerId, WorkerId, usize)>);

/// A worker taken out by a scripted step.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Removal {
    /// When (ms).
    pub at: u64,
    /// The step (`CrashFollower`, `StopFollower`, …).
    pub step: Scripted,
    /// The worker's ID.
    pub worker: WorkerId,
    /// The partitions it held.
    pub held: usize,
}

impl SimReport {
    /// The moves from `at` on, by the version that made them: for each
    /// version, how many partitions went from whom to whom (sorted by
    /// version, then by count, most first).
    pub fn moves_by_version(&self, at: u64) -> Vec<VersionMoves> {
        let mut by: BTreeMap<u64, BTreeMap<(WorkerId, WorkerId), usize>> = BTreeMap::new();
        for m in self.moves.iter().filter(|m| m.at >= at) {
            *by.entry(m.version)
                .or_default()
                .entry((m.from.clone(), m.to.clone()))
                .or_default() += 1;
        }
        by.into_iter()
            .map(|(v, pairs)| {
                let mut pairs: Vec<(WorkerId, WorkerId, usize)> =
                    pairs.into_iter().map(|((f, t), n)| (f, t, n)).collect();
                pairs.sort_by(|a, b| b.2.cmp(&a.2).then_with(|| (&a.0, &a.1).cmp(&(&b.0, &b.1))));
                (v, pairs)
            })
            .collect()
    }

    /// A digest of what the run did: every commit, move and release with its
    /// time, the faults, the counters and the violations. Two runs of one
    /// seed have the same digest; comparing digests across builds shows
    /// that a change to the simulator's speed left its behaviour alone.
    pub fn fingerprint(&self) -> u64 {
        let text = format!(
            "{:?}|{:?}|{:?}|{:?}|{}|{}|{}|{:?}|{:?}",
            self.commit_log,
            self.move_times,
            self.releases,
            self.faults,
            self.moved,
            self.commits,
            self.steps,
            self.convergence_ms,
            self.violations
        );
        // FNV-1a: fixed, so digests compare across builds and machines.
        text.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
        })
    }

    /// One line describing this run (`parti-sim --per-seed`).
    pub fn outcome_line(&self) -> String {
        format!(
            "seed={} violations={} moved={} commits={} steps={} convergence_ms={} fingerprint={:016x} claims={}",
            self.seed,
            self.violations.len(),
            self.moved,
            self.commits,
            self.steps,
            self.convergence_ms
                .map_or_else(|| "none".to_string(), |c| c.to_string()),
            self.fingerprint(),
            self.claims
        )
    }
}
