//! A failing application never leaves a zombie, on a real nats-server: a
//! worker whose assignment hook panics gives up, and another worker takes its
//! partitions without overlap.

// Test code: unwrap, expect and panic are how it asserts.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::*;
use parti::{Error, Hooks, Manager, OwnedPartition, PartitionId, State, StaticSource};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

const P: usize = 12;

/// Who holds what, as the hooks report it, and every overlap.
#[derive(Default)]
struct Ledger {
    holders: BTreeMap<PartitionId, BTreeSet<usize>>,
    overlaps: Vec<String>,
    fatal: Vec<(usize, Error)>,
}

struct LedgerHooks {
    who: usize,
    /// Panic (after stopping work on them) when partitions are revoked.
    panic_on_revoke: bool,
    ledger: Arc<Mutex<Ledger>>,
}

#[parti::async_trait]
impl Hooks for LedgerHooks {
    async fn on_assignment_changed(
        &self,
        added: &[OwnedPartition],
        removed: &[OwnedPartition],
        _version: u64,
    ) {
        {
            let mut l = lock(&self.ledger);
            for p in removed {
                if let Some(s) = l.holders.get_mut(&p.partition.id()) {
                    s.remove(&self.who);
                }
            }
            for p in added {
                let set = l.holders.entry(p.partition.id()).or_default();
                let others: Vec<usize> = set.iter().copied().filter(|h| *h != self.who).collect();
                set.insert(self.who);
                if !others.is_empty() {
                    let msg = format!(
                        "{} granted to #{} while held by {others:?}",
                        p.partition, self.who
                    );
                    l.overlaps.push(msg);
                }
            }
        }
        if self.panic_on_revoke && !removed.is_empty() {
            // Like `println!` on a closed stdout, after the work stopped.
            panic!("failed printing to stdout: Broken pipe");
        }
    }

    async fn on_error(&self, error: &Error) {
        if error.is_fatal() {
            // The application learns it lost everything: it stops all work.
            let mut l = lock(&self.ledger);
            for s in l.holders.values_mut() {
                s.remove(&self.who);
            }
            l.fatal.push((self.who, error.clone()));
        }
    }
}

/// Test timings with a hook budget that a panic's backtrace printing
/// (`RUST_BACKTRACE=1` symbolises the stack before unwinding) cannot exceed:
/// otherwise the panic would be reported, correctly, as a budget overrun.
fn roomy_config(g: &str) -> parti::Config {
    let mut c = config(g);
    c.heartbeat_ttl = Duration::from_secs(3);
    c.worker_id_ttl = Duration::from_secs(4);
    c.hook_budget = Some(Duration::from_secs(2));
    c.validate().expect("valid roomy test config");
    c
}

async fn start(
    client: &parti::nats::async_nats::Client,
    g: &str,
    who: usize,
    panic_on_revoke: bool,
    ledger: &Arc<Mutex<Ledger>>,
) -> Manager {
    Manager::builder_nats(client.clone())
        .config(roomy_config(g))
        .partitions(StaticSource::new(partitions("f", 0..P)))
        .hooks(LedgerHooks {
            who,
            panic_on_revoke,
            ledger: ledger.clone(),
        })
        .start()
        .await
        .unwrap()
}

/// Worker 0 owns everything (and leads); worker 1 joins; the rebalance revokes
/// some partitions from worker 0, whose hook panics. Worker 0 ends with the
/// typed error (`Shutdown`, ID released), and worker 1 ends up owning every
/// partition, none granted while worker 0 still held it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_hook_gives_up_and_another_worker_takes_over_without_overlap() {
    let Some(server) = server() else { return };
    let client = connect(&[server.client_url()]).await;
    let g = group("apppanic");
    let ledger = Arc::new(Mutex::new(Ledger::default()));
    let a = start(&client, &g, 0, true, &ledger).await;
    wait_until(SETTLE, "worker 0 owns everything", || {
        a.assignment().partitions.len() == P
    })
    .await;
    let a_id = a.worker_id().unwrap();
    let b = start(&client, &g, 1, false, &ledger).await;
    wait_until(SETTLE, "worker 0 gave up after its hook panicked", || {
        a.state() == State::Shutdown
    })
    .await;
    wait_until(SETTLE, "worker 1 owns everything", || {
        let l = lock(&ledger);
        b.assignment().partitions.len() == P
            && l.holders.len() == P
            && l.holders.values().all(|s| s.len() == 1 && s.contains(&1))
    })
    .await;
    {
        let l = lock(&ledger);
        assert!(l.overlaps.is_empty(), "overlaps: {:?}", l.overlaps);
        assert_eq!(l.fatal.len(), 1, "{:?}", l.fatal);
        assert!(
            matches!(
                &l.fatal[0],
                (0, Error::HookPanicked { hook: "on_assignment_changed", message })
                    if message.contains("Broken pipe")
            ),
            "{:?}",
            l.fatal
        );
    }
    assert!(
        !member_key_present(&client, &g, a_id.as_str()).await,
        "worker 0's ID was released"
    );
    assert_eq!(b.state(), State::Stable);
    let err = a.stop().await.unwrap_err();
    assert!(
        matches!(
            err,
            Error::HookPanicked {
                hook: "on_assignment_changed",
                ..
            }
        ),
        "{err:?}"
    );
    b.stop().await.unwrap();
}
