//! `parti inspect`: reads a live group's buckets and prints them.

use futures_util::StreamExt;
use parti::Config;
use parti::backend::{Backend, BackendExt, Change, WatchEvent};
use parti::nats::NatsBackend;
use std::time::Duration;

/// Arguments of `parti inspect`.
#[derive(clap::Args, Debug)]
pub struct InspectArgs {
    /// NATS server URL.
    #[arg(long, default_value = "nats://127.0.0.1:4222")]
    nats: String,
    /// Group name.
    #[arg(long, default_value = "parti")]
    group: String,
}

/// Prints members, leader and the committed assignment.
pub async fn run(args: InspectArgs) -> Result<(), String> {
    let config = Config::builder()
        .group(args.group.clone())
        .build()
        .map_err(|e| e.to_string())?;
    let backend = NatsBackend::connect(&args.nats, &config)
        .await
        .map_err(|e| e.to_string())?;
    let snapshot = backend
        .load_assignments()
        .await
        .map_err(|e| e.to_string())?;
    let mut watch = backend.watch(None).await.map_err(|e| e.to_string())?;
    println!("group {} on {}", args.group, args.nats);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let next = tokio::time::timeout_at(deadline, watch.next()).await;
        match next {
            Ok(Some(Ok(WatchEvent::CaughtUp))) | Ok(None) | Err(_) => break,
            Ok(Some(Ok(WatchEvent::Member {
                id,
                revision,
                change: Change::Put(m),
            }))) => println!(
                "member {id}: {:?}, applied {:?}, holds {}, capacity {}, revision {revision}",
                m.status, m.applied, m.held, m.capacity
            ),
            Ok(Some(Ok(WatchEvent::Leader {
                revision,
                change: Change::Put(l),
            }))) => {
                println!(
                    "leader {} (term {}), revision {revision}",
                    l.worker,
                    l.term.unwrap_or(revision)
                )
            }
            Ok(Some(Ok(WatchEvent::Skipped { bucket, key, error }))) => {
                println!("skipped {bucket}/{key}: {error}")
            }
            Ok(Some(Ok(_))) => {}
            Ok(Some(Err(e))) => return Err(e.to_string()),
        }
    }
    match snapshot.meta {
        Some((meta, rev)) => {
            println!(
                "assignment version {} term {} ({:?}), {} partitions, revision {rev}",
                meta.version, meta.term, meta.lifecycle, meta.partitions
            );
            for r in &snapshot.records {
                println!(
                    "  {}: {} partitions (record version {})",
                    r.worker,
                    r.partitions.len(),
                    r.version
                );
            }
        }
        None => println!("no assignment published yet"),
    }
    Ok(())
}
