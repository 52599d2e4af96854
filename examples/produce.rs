//! Publishes numbered messages over partitions, for the `consume` example and
//! the consumer tests.
//!
//! ```text
//! cargo run --release --example produce -- --nats URL --stream NAME \
//!     --subject-prefix PREFIX --partitions N --messages M [--rate R]
//! ```
//!
//! Creates the stream `NAME` (subjects `PREFIX.>`, file storage) if it is
//! missing, then publishes M messages round-robin over the partitions `p-0` …
//! `p-<N-1>` on the subjects `PREFIX.p-<i>`, each with the payload `p-<i>:<k>`
//! where k counts that partition's messages from 0 (R messages per second at
//! most with `--rate`). Every publish is acknowledged by the server before the
//! end. Prints one JSON line at the end:
//! `{"event":"produced","messages":M,"per_partition":[...]}`.

use parti::nats::async_nats;
use parti::nats::async_nats::jetstream;
use serde_json::json;
use std::process::ExitCode;
use std::time::{Duration, Instant};

/// Publishes in flight before their acks are awaited.
const WINDOW: usize = 256;

struct Args {
    nats: String,
    stream: String,
    prefix: String,
    partitions: usize,
    messages: usize,
    rate: Option<f64>,
}

/// What `--help` prints.
const USAGE: &str = "Usage: produce --nats URL --stream NAME --subject-prefix PREFIX [--partitions N] [--messages M] [--rate R]

Creates the stream if missing (subjects PREFIX.>) and publishes M messages spread
over partitions p-0 .. p-<N-1> on subjects PREFIX.p-<i>, payload p-<i>:<k>.
Prints {\"event\":\"produced\",...} at the end.

Options:
  --nats URL               server (default nats://127.0.0.1:4222)
  --stream NAME            the stream (required)
  --subject-prefix PREFIX  subject prefix (required)
  --partitions N           partitions (default 16)
  --messages M             messages (default 1000)
  --rate R                 messages per second (default: as fast as possible)
  -h, --help               this text";

fn parse() -> Result<Args, String> {
    let mut a = Args {
        nats: "nats://127.0.0.1:4222".into(),
        stream: String::new(),
        prefix: String::new(),
        partitions: 16,
        messages: 1000,
        rate: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or_else(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "-h" | "--help" => {
                println!("{USAGE}");
                std::process::exit(0);
            }
            "--nats" => a.nats = value()?,
            "--stream" => a.stream = value()?,
            "--subject-prefix" => a.prefix = value()?,
            "--partitions" => {
                a.partitions = value()?.parse().map_err(|e| format!("--partitions: {e}"))?
            }
            "--messages" => {
                a.messages = value()?.parse().map_err(|e| format!("--messages: {e}"))?
            }
            "--rate" => {
                let rate: f64 = value()?.parse().map_err(|e| format!("--rate: {e}"))?;
                if rate <= 0.0 || !rate.is_finite() {
                    return Err("--rate: must be a positive number".into());
                }
                a.rate = Some(rate);
            }
            other => return Err(format!("unknown argument {other}")),
        }
    }
    if a.stream.is_empty() {
        return Err("--stream is required".into());
    }
    if a.prefix.is_empty() {
        return Err("--subject-prefix is required".into());
    }
    if a.partitions == 0 {
        return Err("--partitions: must be at least 1".into());
    }
    Ok(a)
}

async fn run(args: Args) -> Result<(), String> {
    let client = async_nats::connect(args.nats.as_str())
        .await
        .map_err(|e| format!("cannot connect to {}: {e}", args.nats))?;
    let js = jetstream::new(client);
    js.get_or_create_stream(jetstream::stream::Config {
        name: args.stream.clone(),
        subjects: vec![format!("{}.>", args.prefix)],
        ..Default::default()
    })
    .await
    .map_err(|e| format!("stream {}: {e}", args.stream))?;
    let mut per_partition = vec![0u64; args.partitions];
    let mut pending = Vec::with_capacity(WINDOW);
    let began = Instant::now();
    for j in 0..args.messages {
        if let Some(rate) = args.rate {
            let due = began + Duration::from_secs_f64(j as f64 / rate);
            tokio::time::sleep_until(due.into()).await;
        }
        let i = j % args.partitions;
        let k = per_partition[i];
        per_partition[i] += 1;
        let ack = js
            .publish(
                format!("{}.p-{i}", args.prefix),
                format!("p-{i}:{k}").into(),
            )
            .await
            .map_err(|e| format!("publishing: {e}"))?;
        pending.push(ack);
        if pending.len() >= WINDOW || args.rate.is_some() && pending.len() >= 16 {
            for ack in pending.drain(..) {
                ack.await.map_err(|e| format!("publish not stored: {e}"))?;
            }
        }
    }
    for ack in pending {
        ack.await.map_err(|e| format!("publish not stored: {e}"))?;
    }
    println!(
        "{}",
        json!({"event": "produced", "messages": args.messages, "per_partition": per_partition})
    );
    Ok(())
}

#[tokio::main]
async fn main() -> ExitCode {
    match parse() {
        Ok(args) => match run(args).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("produce: {e}");
                ExitCode::FAILURE
            }
        },
        Err(e) => {
            eprintln!("produce: {e}");
            ExitCode::from(2)
        }
    }
}
