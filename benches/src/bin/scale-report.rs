//! The scale report: N workers (managers of the `parti` facade) in one
//! process, on the in-memory backend and on a real nats-server.
//!
//! ```text
//! cargo run --release -p parti-benches --bin scale-report -- [--json] [--nats URL]
//!     [--sizes 10,100,1000] [--partitions P] [--backends memory,nats] ...
//! ```
//!
//! Every line is one backend × N; `--help` lists the options, and the text
//! header printed before the table says how each column is measured (see
//! also the "Scale report" section of BENCHMARKS.md).

// Benchmark harness: a failing cell aborts the run loudly; that is its job.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use parti_benches::alloc::Counting;
use parti_benches::scale::{CellOptions, Line, Which, cell_config, header, run_cell};
use std::time::Duration;

#[global_allocator]
static ALLOC: Counting = Counting;

const USAGE: &str = "usage: scale-report [--json] [--nats URL [--nats-monitor PORT]] [--sizes 10,100,1000] [--partitions P] [--backends memory,nats] [--cold-start-window S] [--planned-scale-window S] [--warmup S] [--steady S] [--connections K] [--start-batch B] [--test-timings]";

const HELP: &str = "\
  --json                    one JSON object per line instead of the Markdown table
  --nats URL                use this nats-server instead of starting one (NATS_SERVER_BIN)
  --nats-monitor PORT       its monitoring port, for the server columns (else '-')
  --sizes A,B,..            worker counts N (default 10,100,1000)
  --partitions P            partitions (default 10 x N)
  --backends memory,nats    backends to run (default both)
  --cold-start-window S     seconds (default 10; the library default is 30)
  --planned-scale-window S  seconds (default 3; the library default is 10)
  --warmup S                pause after convergence before measuring (default 4)
  --steady S                length of the steady-state interval (default 10)
  --connections K           NATS connections shared by the workers of the main runtime (default 4)
  --start-batch B           start the workers B at a time, each batch once the previous one claimed its IDs
                            (default 0: all at once)
  --test-timings            Config::for_tests() timings (200 ms heartbeats): smoke test only";

/// How the columns are measured; printed before the table.
const METHOD: &str = "\
Method: each cell (backend x N) runs in a fresh process of this binary, with all N managers in it. The
designated leader (started first, alone until it wins the election) and one designated follower each run on
a single-threaded tokio runtime of their own thread, with their own NATS connection; the other N-2 share the
main runtime (2 threads) and K connections. Timings are the library defaults (heartbeat 2 s, TTL 6 s,
election TTL 5 s) except the cold-start and planned-scale windows (and the rebalance cooldown, which may not
exceed the latter): they are pure waiting, and the report measures what comes beyond them. converge = last
start to complete assignment (every partition shown by exactly one Stable worker, one leader); beyond
window = complete minus (leader elected + cold-start window). KV ops = Backend::perform calls counted in
process (a staged record counts one write), watch events = items the watches delivered; server writes =
growth of the KV streams' last sequences (/jsz), msgs out = /varz out_msgs. CPU = /proc utime+stime over the
steady interval, % of one core: whole process, the leader's thread, the follower's thread, and
(process - both) / (N - 2); server = the nats-server process. Memory = growth of RSS and of live heap
(counting allocator) from before the first start to after the steady interval, / N. Crash = a follower's
manager dropped (task aborted, no goodbye); stop = graceful stop(); join = one more worker; failover = the
leader's manager dropped. moved = partitions whose owner changed, optimal = the victim's partitions (crash,
stop) or P / workers after the join.";

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut json = false;
    let mut url: Option<String> = None;
    let mut monitor: Option<u16> = None;
    let mut sizes = vec![10, 100, 1000];
    let mut partitions: Option<usize> = None;
    let mut backends = vec!["memory".to_string(), "nats".to_string()];
    let mut cold = 10.0;
    let mut planned = 3.0;
    let mut warmup = 4.0;
    let mut steady = 10.0;
    let mut connections = 4;
    let mut test_timings = false;
    let mut start_batch = 0;
    let mut in_process = false;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut value = || it.next().cloned().unwrap_or_else(|| usage());
        match a.as_str() {
            "--json" => json = true,
            "--test-timings" => test_timings = true,
            "--in-process" => in_process = true,
            "--help" | "-h" => {
                println!("{USAGE}\n{HELP}");
                return;
            }
            "--nats" => url = Some(value()),
            "--nats-monitor" => monitor = Some(parse(&value())),
            "--sizes" => sizes = value().split(',').map(parse).collect(),
            "--partitions" => partitions = Some(parse(&value())),
            "--backends" => backends = value().split(',').map(str::to_string).collect(),
            "--cold-start-window" => cold = parse(&value()),
            "--planned-scale-window" => planned = parse(&value()),
            "--warmup" => warmup = parse(&value()),
            "--steady" => steady = parse(&value()),
            "--connections" => connections = parse(&value()),
            "--start-batch" => start_batch = parse(&value()),
            _ => usage(),
        }
    }
    let mut whichs = Vec::new();
    for b in &backends {
        match b.as_str() {
            "memory" => whichs.push(Which::Memory),
            "nats" => whichs.push(Which::Nats {
                url: url.clone(),
                monitor_port: monitor,
            }),
            _ => usage(),
        }
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let first = CellOptions {
        which: Which::Memory,
        workers: 3,
        partitions: 30,
        cold_start_window: Duration::from_secs_f64(cold),
        planned_scale_window: Duration::from_secs_f64(planned),
        warmup: Duration::from_secs_f64(warmup),
        steady: Duration::from_secs_f64(steady),
        connections,
        test_timings,
        start_batch,
    };
    let c = cell_config(&first);
    let intro = format!(
        "Scale report, {} UTC; heartbeat {:?}, heartbeat TTL {:?}, election TTL {:?}, cold-start window {:?}, planned-scale window {:?}, rebalance cooldown {:?}; warmup {warmup} s, steady interval {steady} s; {connections} shared NATS connections; starts {}.\n{METHOD}",
        utc_now(),
        c.heartbeat_interval,
        c.heartbeat_ttl,
        c.election_ttl,
        c.cold_start_window,
        c.planned_scale_window,
        c.rebalance_cooldown,
        if start_batch == 0 {
            "all at once".to_string()
        } else {
            format!("{start_batch} at a time")
        },
    );
    if in_process {
        // A cell process: run the cells here, JSON lines on stdout.
        for which in &whichs {
            for &n in &sizes {
                let options = CellOptions {
                    which: which.clone(),
                    workers: n,
                    partitions: partitions.unwrap_or(10 * n),
                    ..first.clone()
                };
                let line = runtime.block_on(run_cell(&options));
                println!(
                    "{}",
                    serde_json::to_string(&line).expect("a line serializes")
                );
            }
        }
        return;
    }
    if json {
        eprintln!("{intro}");
    } else {
        println!("{intro}\n\n{}", header());
    }
    for backend in &backends {
        for &n in &sizes {
            let line = cell_process(&args, backend, n);
            if json {
                println!(
                    "{}",
                    serde_json::to_string(&line).expect("a line serializes")
                );
            } else {
                println!("{}", line.row());
            }
        }
    }
}

/// Runs one cell in a process of its own (this binary with `--in-process`):
/// every cell starts from a clean heap, RSS and runtime, whatever the
/// previous one left behind (aborted tasks, a stuck start).
fn cell_process(args: &[String], backend: &str, n: usize) -> Line {
    let failed = |why: String| Line {
        backend: backend.to_string(),
        workers: n,
        error: Some(why),
        ..Line::default()
    };
    let exe = match std::env::current_exe() {
        Ok(exe) => exe,
        Err(e) => return failed(format!("cannot find this binary: {e}")),
    };
    let out = std::process::Command::new(exe)
        .args(args)
        .args(["--in-process", "--json", "--backends", backend, "--sizes"])
        .arg(n.to_string())
        .stderr(std::process::Stdio::inherit())
        .output();
    match out {
        Ok(out) => String::from_utf8_lossy(&out.stdout)
            .lines()
            .find_map(|l| serde_json::from_str::<Line>(l).ok())
            .unwrap_or_else(|| {
                failed(format!(
                    "cell process ended ({}) without a line",
                    out.status
                ))
            }),
        Err(e) => failed(format!("cannot run the cell process: {e}")),
    }
}

/// The current UTC time as `YYYY-MM-DD HH:MM` (civil-from-days).
fn utc_now() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs()) as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}",
        rem / 3600,
        rem % 3600 / 60
    )
}

fn parse<T: std::str::FromStr>(s: &str) -> T {
    s.trim().parse().unwrap_or_else(|_| usage())
}

fn usage() -> ! {
    eprintln!("{USAGE}");
    std::process::exit(2);
}
