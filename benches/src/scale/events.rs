//! The events of a cell after the steady state: the crash of a follower,
//! the graceful stop of another, a join, the crash of the leader. Each
//! fills its columns of the line (time, partitions moved, optimum).

use super::cell::{CellOptions, HOLD, POLL, say, secs};
use super::fleet::{Fleet, Place, moved};
use super::line::Line;
use super::start::{start_on_main, with_id};
use parti::{Backend, Config, StaticSource};
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

/// Bound on one event's wait: three heartbeat TTLs, the planned-scale
/// window and a minute.
pub fn event_bound(config: &Config) -> Duration {
    config.heartbeat_ttl * 3 + config.planned_scale_window + Duration::from_secs(60)
}

/// Drops the manager of `victim` (its task aborted, no goodbye) and times
/// until its partitions are owned by others; `owners` becomes the settled
/// assignment after it.
pub async fn crash_follower(
    o: &CellOptions,
    config: &Config,
    fleet: &mut Fleet,
    victim: usize,
    owners: &mut Vec<usize>,
    line: &mut Line,
) -> Result<(), String> {
    let out = take_out(o, config, fleet, victim, owners, "crashed", |m| async {
        drop(m);
        Ok(())
    })
    .await?;
    (line.crash_reowned_s, line.crash_moved, line.crash_optimal) = out;
    Ok(())
}

/// Stops the manager of `victim` gracefully and times until its partitions
/// are owned by others (the planned-scale window included).
pub async fn stop_follower(
    o: &CellOptions,
    config: &Config,
    fleet: &mut Fleet,
    victim: usize,
    owners: &mut Vec<usize>,
    line: &mut Line,
) -> Result<(), String> {
    let out = take_out(o, config, fleet, victim, owners, "stopped", |m| async {
        match m {
            Some(m) => m.stop().await.map_err(|e| format!("graceful stop: {e}")),
            None => Ok(()),
        }
    })
    .await?;
    (line.stop_reowned_s, line.stop_moved, line.stop_optimal) = out;
    Ok(())
}

/// Takes `victim` out of the fleet with `remove` (`how` names it: crashed,
/// stopped) and times until its partitions are owned by others; `owners`
/// becomes the settled assignment after it. Gives the columns: re-owned
/// after (s), partitions moved, the optimum (the victim's partitions).
async fn take_out<F, Fut>(
    o: &CellOptions,
    config: &Config,
    fleet: &mut Fleet,
    victim: usize,
    owners: &mut Vec<usize>,
    how: &str,
    remove: F,
) -> Result<(Option<f64>, Option<usize>, Option<usize>), String>
where
    F: FnOnce(Option<parti::Manager>) -> Fut,
    Fut: std::future::Future<Output = Result<(), String>>,
{
    let within = event_bound(config);
    let parts = fleet.owned_by(victim);
    say(
        o,
        &format!("a follower is {how} ({} partitions)", parts.len()),
    );
    let t = Instant::now();
    remove(fleet.take(victim)).await?;
    let reowned = fleet
        .wait_for(
            within,
            POLL,
            &format!("{how} follower's partitions re-owned"),
            |f| f.all_owned(&parts),
        )
        .await?;
    let (_, after) = fleet.settle(within, HOLD, POLL).await?;
    let moved_count = moved(owners, &after);
    *owners = after;
    Ok((
        Some(secs(reowned - t)),
        Some(moved_count),
        Some(parts.len()),
    ))
}

/// Starts one more worker (ID N, on the main runtime) and times until the
/// assignment is complete with it.
pub async fn join(
    o: &CellOptions,
    config: &Config,
    fleet: &mut Fleet,
    backend: Arc<dyn Backend>,
    source: &StaticSource,
    owners: &mut Vec<usize>,
    line: &mut Line,
) -> Result<(), String> {
    say(o, "one worker joins");
    let t = Instant::now();
    let (result, _) = start_on_main(
        backend,
        with_id(config, o.workers as u32),
        source.clone(),
        o.workers as u64 + 1,
    )
    .await
    .map_err(|e| format!("join task: {e}"))?;
    let manager = result.map_err(|e| format!("join: {e}"))?;
    fleet.push(manager, Place::Main);
    let (done, after) = fleet.settle(event_bound(config), HOLD, POLL).await?;
    line.join_s = Some(secs(done - t));
    // The joiner's slot is new: what it took counts as moved.
    line.join_moved = Some(moved(owners, &after));
    line.join_optimal = Some(o.partitions / fleet.live().len());
    *owners = after;
    Ok(())
}

/// Drops the leader's manager; times until another worker leads and until
/// the assignment is complete again.
pub async fn fail_over(
    o: &CellOptions,
    config: &Config,
    fleet: &mut Fleet,
    line: &mut Line,
) -> Result<(), String> {
    let within = event_bound(config);
    let leader = fleet
        .leader()
        .ok_or("no single leader before the failover")?;
    say(o, "crashing the leader");
    let t = Instant::now();
    drop(fleet.take(leader));
    let led = fleet
        .wait_for(within, POLL, "a new leader", |f| f.leader().is_some())
        .await?;
    line.failover_s = Some(secs(led - t));
    let (done, _) = fleet.settle(within, HOLD, POLL).await?;
    line.failover_complete_s = Some(secs(done - t));
    Ok(())
}
