//! Parti's metrics in the Prometheus text format over HTTP, with
//! `metrics-exporter-prometheus` as the recorder.
//!
//! ```text
//! cargo run -p parti-examples --example metrics                  # 2 workers in memory, a 3rd joins
//! curl -s http://127.0.0.1:9464/metrics | grep '^parti_'
//! cargo run -p parti-examples --example metrics -- --nats nats://127.0.0.1:4222 --group orders
//! ```
//!
//! In memory, the workers run in this process and their metrics are told
//! apart by the `member` label (`ManagerBuilder::metrics_label`); a third
//! worker joins after `--join-after`, so the scrape shows a planned-scale
//! rebalance and a two-version handoff (`parti_handoff_duration_seconds`). With
//! `--nats` it runs one worker, as a real deployment would (one worker per
//! process, told apart by the scrape target's labels).
//!
//! Every metric is listed in `docs/metrics.md` and in `parti::metrics::ALL`.
//! The HTTP server here is a minimal one (GET /metrics, nothing else) to keep
//! the example small; an application would serve `handle.render()` from the
//! HTTP framework it already has, or enable the exporter's `http-listener`
//! feature.

use clap::Parser;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use parti::{ConfigBuilder, Manager, StaticSource};
use std::io::Write;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Parti's metrics in the Prometheus text format over HTTP.
#[derive(Parser, Debug)]
#[command(name = "metrics", version, about)]
struct Args {
    /// NATS server URL. Without it, workers run in this process on an
    /// in-memory store.
    #[arg(long)]
    nats: Option<String>,
    /// Group name.
    #[arg(long, default_value = "metrics-demo")]
    group: String,
    /// Number of partitions.
    #[arg(long, default_value_t = 32)]
    partitions: usize,
    /// Address of the HTTP endpoint (port 0: any free port; the address is
    /// printed).
    #[arg(long, default_value = "127.0.0.1:9464")]
    listen: SocketAddr,
    /// In memory: workers started at once.
    #[arg(long, default_value_t = 2)]
    workers: usize,
    /// In memory: one more worker joins after this long.
    #[arg(long, default_value = "1s", value_parser = humantime::parse_duration)]
    join_after: Duration,
    /// Use the short test timings on NATS too (a group forms in about a
    /// second; not for production).
    #[arg(long)]
    test_timings: bool,
    /// Stop after this long (e.g. `30s`); by default run until Ctrl-C.
    #[arg(long, value_parser = humantime::parse_duration)]
    run_for: Option<Duration>,
}

/// Bucket bounds of the handoff histogram, in seconds.
const HANDOFF_BUCKETS: &[f64] = &[0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0];

fn install_recorder() -> Result<PrometheusHandle, Box<dyn std::error::Error>> {
    let handle = PrometheusBuilder::new()
        .set_buckets_for_metric(
            Matcher::Full(parti::metrics::HANDOFF_DURATION.to_string()),
            HANDOFF_BUCKETS,
        )?
        .install_recorder()?;
    parti::metrics::describe();
    Ok(handle)
}

/// Answers `GET /metrics` with the rendered metrics, anything else with 404.
async fn serve(listener: TcpListener, handle: PrometheusHandle) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let handle = handle.clone();
        tokio::spawn(async move {
            if let Err(e) = answer(stream, &handle).await {
                eprintln!("metrics: http: {e}");
            }
        });
    }
}

async fn answer(mut stream: TcpStream, handle: &PrometheusHandle) -> std::io::Result<()> {
    let mut request = Vec::new();
    let mut buf = [0u8; 1024];
    // Read the request head (bounded), ignore any body.
    while !request.windows(4).any(|w| w == b"\r\n\r\n") && request.len() < 16 * 1024 {
        let n = stream.read(&mut buf).await?;
        if n == 0 {
            break;
        }
        request.extend_from_slice(&buf[..n]);
    }
    let head = String::from_utf8_lossy(&request);
    let path = head.split_whitespace().nth(1).unwrap_or("");
    let (status, body) = if head.starts_with("GET ") && (path == "/metrics" || path == "/") {
        ("200 OK", handle.render())
    } else {
        ("404 Not Found", "only GET /metrics\n".to_string())
    };
    let response = format!(
        "HTTP/1.1 {status}\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(response.as_bytes()).await?;
    stream.shutdown().await
}

async fn run(args: Args) -> Result<(), Box<dyn std::error::Error>> {
    let handle = install_recorder()?;
    let listener = TcpListener::bind(args.listen).await?;
    println!("metrics on http://{}/metrics", listener.local_addr()?);
    std::io::stdout().flush()?;
    tokio::spawn(serve(listener, handle.clone()));
    // Histograms and summaries need periodic upkeep when no HTTP listener of
    // the exporter does it.
    let upkeep = handle.clone();
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(Duration::from_secs(5)).await;
            upkeep.run_upkeep();
        }
    });

    let source = StaticSource::numbered(&args.group, args.partitions);
    let mut managers = Vec::new();
    if let Some(url) = &args.nats {
        let client = parti::nats::async_nats::connect(url.as_str())
            .await
            .map_err(|e| format!("cannot connect to NATS: {e}"))?;
        let timings = if args.test_timings {
            parti::Config::for_tests()
        } else {
            parti::Config::default()
        };
        let config = ConfigBuilder::from_config(timings)
            .group(&args.group)
            .build()?;
        let manager = Manager::builder_nats(client)
            .config(config)
            .partitions(source)
            .start()
            .await?;
        println!("worker stable");
        managers.push(manager);
    } else {
        let config = ConfigBuilder::from_config(parti::Config::for_tests())
            .group(&args.group)
            .build()?;
        let store = parti_testkit::MemoryBackend::new(&config);
        let start = |i: usize| {
            Manager::builder(store.handle())
                .config(config.clone())
                .partitions(source.clone())
                .metrics_label("member", format!("m{i}"))
                .start()
        };
        for i in 0..args.workers.max(1) {
            managers.push(start(i).await?);
        }
        println!("{} workers stable", managers.len());
        tokio::time::sleep(args.join_after).await;
        managers.push(start(managers.len()).await?);
        println!("one more worker joined");
    }
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = async {
            match args.run_for {
                Some(d) => tokio::time::sleep(d).await,
                None => std::future::pending().await,
            }
        } => {}
    }
    for m in managers {
        m.stop().await?;
    }
    println!("stopped");
    Ok(())
}

#[tokio::main]
async fn main() -> ExitCode {
    match run(Args::parse()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("metrics: {e}");
            ExitCode::FAILURE
        }
    }
}
