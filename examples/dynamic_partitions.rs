//! A partition list that changes while the group runs: tenants are added and
//! retired, and the workers pick the change up with `refresh_partitions`.
//!
//! ```text
//! cargo run -p parti-examples --example dynamic_partitions                  # 2 workers in memory
//! cargo run -p parti-examples --example dynamic_partitions -- --nats nats://127.0.0.1:4222 --group tenants
//! ```
//!
//! The partitions come from a [`FnSource`] reading a catalog (here an
//! in-process list; in an application a database query, a stream listing, a
//! config service). Only the leader's source counts, and the leader reads it
//! when it takes over and on `refresh_partitions`. Two ways to get a change in:
//!
//! - push: whoever changes the catalog calls `refresh_partitions()` on every
//!   worker (followers ignore it, the leader re-reads and rebalances at once);
//! - poll: `ManagerBuilder::refresh_every(period)` re-reads the list on the
//!   leader every `period` (`--poll` here).
//!
//! A new partition is granted without waiting; a retired one is revoked from its
//! owner (its hook is told to stop work on it). Partitions that stay keep their
//! owners: a list change that leaves the load within `imbalance_threshold`
//! moves nothing else.

use clap::Parser;
use parti::{
    ConfigBuilder, FnSource, Hooks, Manager, ManagerBuilder, OwnedPartition, Partition, SourceError,
};
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// A partition list that changes over time, picked up with refresh_partitions.
#[derive(Parser, Debug)]
#[command(name = "dynamic_partitions", version, about)]
struct Args {
    /// NATS server URL. Without it, `--workers` workers run in this process on
    /// an in-memory store.
    #[arg(long)]
    nats: Option<String>,
    /// Group name.
    #[arg(long, default_value = "tenants")]
    group: String,
    /// Workers to run in memory (ignored with `--nats`: one per process).
    #[arg(long, default_value_t = 2)]
    workers: usize,
    /// Tenants at the start.
    #[arg(long, default_value_t = 6)]
    initial: usize,
    /// Change the catalog this often (add a tenant; every third change also
    /// retires the oldest).
    #[arg(long, default_value = "1s", value_parser = humantime::parse_duration)]
    change_every: Duration,
    /// Number of catalog changes before stopping.
    #[arg(long, default_value_t = 5)]
    changes: usize,
    /// Let the leader poll the catalog (`refresh_every`) instead of pushing
    /// each change with `refresh_partitions`.
    #[arg(long)]
    poll: bool,
}

/// The catalog the partitions come from.
#[derive(Clone, Default)]
struct Catalog {
    tenants: Arc<Mutex<Vec<String>>>,
}

impl Catalog {
    fn update(&self, f: impl FnOnce(&mut Vec<String>)) {
        if let Ok(mut t) = self.tenants.lock() {
            f(&mut t);
        }
    }

    fn sorted(&self) -> Vec<String> {
        let mut t = self.tenants.lock().map(|t| t.clone()).unwrap_or_default();
        t.sort();
        t
    }

    fn len(&self) -> usize {
        self.tenants.lock().map(|t| t.len()).unwrap_or(0)
    }

    /// The partition source: one partition per tenant, keys `["tenant", name]`.
    fn source(&self) -> FnSource {
        let tenants = self.tenants.clone();
        FnSource::new(move || {
            let tenants = tenants.clone();
            async move {
                let list = tenants
                    .lock()
                    .map_err(|_| SourceError::unavailable("catalog lock poisoned"))?;
                Ok(list
                    .iter()
                    .map(|t| Partition::new(["tenant", t.as_str()]))
                    .collect())
            }
        })
    }
}

/// Prints what each worker gains and gives up.
struct Printer {
    label: String,
}

#[parti::async_trait]
impl Hooks for Printer {
    async fn on_assignment_changed(
        &self,
        added: &[OwnedPartition],
        removed: &[OwnedPartition],
        version: u64,
    ) {
        for p in removed {
            println!("{} v{version}: stop {}", self.label, p.partition);
        }
        for p in added {
            println!("{} v{version}: start {}", self.label, p.partition);
        }
    }
}

fn builder(
    base: ManagerBuilder,
    args: &Args,
    catalog: &Catalog,
    config: parti::Config,
    label: String,
) -> ManagerBuilder {
    let b = base
        .config(config)
        .partitions(catalog.source())
        .hooks(Printer { label });
    if args.poll {
        b.refresh_every(args.change_every / 2)
    } else {
        b
    }
}

async fn run(args: Args) -> Result<(), Box<dyn std::error::Error>> {
    let catalog = Catalog::default();
    catalog.update(|t| t.extend((0..args.initial).map(|i| format!("t{i}"))));
    let mut managers = Vec::new();
    if let Some(url) = &args.nats {
        let client = parti::nats::async_nats::connect(url.as_str())
            .await
            .map_err(|e| format!("cannot connect to NATS: {e}"))?;
        let config = ConfigBuilder::from_config(parti::Config::default())
            .group(&args.group)
            .build()?;
        let b = builder(
            Manager::builder_nats(client),
            &args,
            &catalog,
            config,
            "me".into(),
        );
        managers.push(b.start().await?);
    } else {
        let config = ConfigBuilder::from_config(parti::Config::for_tests())
            .group(&args.group)
            .build()?;
        let store = parti_testkit::MemoryBackend::new(&config);
        for i in 0..args.workers.max(1) {
            let label = format!("w{i}");
            let b = builder(
                Manager::builder(store.handle()),
                &args,
                &catalog,
                config.clone(),
                label,
            );
            managers.push(b.start().await?);
        }
    }
    for change in 1..=args.changes {
        let next = args.initial + change - 1;
        tokio::time::sleep(args.change_every).await;
        catalog.update(|t| {
            t.push(format!("t{next}"));
            if change % 3 == 0 && !t.is_empty() {
                t.remove(0);
            }
        });
        println!("catalog change {change}: {} tenants", catalog.len());
        if !args.poll {
            // Every worker may be told; only the leader acts on it.
            for m in &managers {
                m.refresh_partitions().await?;
            }
        }
    }
    // Let the last change land, then show who owns what. In memory the whole
    // group is in this process: wait until it owns the whole catalog.
    let wait = if args.nats.is_some() {
        args.change_every
    } else {
        Duration::from_secs(10)
    };
    let deadline = tokio::time::Instant::now() + wait;
    let owned = loop {
        let mut owned: Vec<String> = managers
            .iter()
            .flat_map(|m| m.assignment().partitions)
            .filter_map(|p| p.partition.keys.get(1).cloned())
            .collect();
        owned.sort();
        let settled = args.nats.is_none() && owned == catalog.sorted();
        if settled || tokio::time::Instant::now() >= deadline {
            break owned.len();
        }
        tokio::time::sleep(args.change_every.min(Duration::from_millis(100))).await;
    };
    println!(
        "this process owns {owned} of {} tenants{}",
        catalog.len(),
        if args.nats.is_some() {
            " (the other workers own the rest)"
        } else {
            ""
        }
    );
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
            eprintln!("dynamic_partitions: {e}");
            ExitCode::FAILURE
        }
    }
}
