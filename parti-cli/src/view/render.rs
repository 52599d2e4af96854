//! Text rendering of a [`GroupView`] (for `status`) and of the changes between
//! two views (for `watch`).

use super::{GroupView, Verdict, changes};
use std::fmt::Write;

/// ANSI styles, or nothing when the output is not a terminal.
struct Style {
    on: bool,
}

impl Style {
    fn paint(&self, code: &str, text: &str) -> String {
        if self.on {
            format!("\x1b[{code}m{text}\x1b[0m")
        } else {
            text.to_string()
        }
    }
    fn bold(&self, text: &str) -> String {
        self.paint("1", text)
    }
    fn verdict(&self, verdict: Verdict) -> String {
        let code = match verdict {
            Verdict::Healthy => "1;32",
            Verdict::Converging => "1;33",
            Verdict::Degraded | Verdict::Leaderless => "1;31",
        };
        self.paint(code, &verdict.to_string())
    }
}

/// A duration in milliseconds, short: `350ms`, `1.2s`, `42s`, `3m05s`, `2h10m`.
pub fn format_age(ms: u64) -> String {
    match ms {
        0..=999 => format!("{ms}ms"),
        1_000..=9_999 => format!("{}.{}s", ms / 1000, (ms % 1000) / 100),
        10_000..=59_999 => format!("{}s", ms / 1000),
        60_000..=3_599_999 => format!("{}m{:02}s", ms / 60_000, (ms % 60_000) / 1000),
        _ => format!("{}h{:02}m", ms / 3_600_000, (ms % 3_600_000) / 60_000),
    }
}

fn version(v: Option<u64>) -> String {
    v.map_or_else(|| "-".to_string(), |v| v.to_string())
}

/// The full status text of `view`; `color` adds ANSI highlighting.
pub fn render_status(view: &GroupView, color: bool) -> String {
    let style = Style { on: color };
    let mut out = String::new();
    let _ = writeln!(
        out,
        "group {}: {} ({})",
        style.bold(&view.group),
        style.verdict(view.verdict),
        view.reason
    );
    match &view.leader {
        Some(l) => {
            let _ = writeln!(
                out,
                "leader: {} (term {}, renewed {} ago)",
                l.worker,
                l.term,
                format_age(l.renewed_age_ms)
            );
        }
        None => {
            let _ = writeln!(out, "leader: none");
        }
    }
    match &view.committed {
        Some(c) => {
            let _ = writeln!(
                out,
                "committed: v{} (term {}, {}), {} of {} partitions assigned",
                c.version, c.term, c.lifecycle, c.assigned, c.partitions
            );
        }
        None => {
            let _ = writeln!(out, "committed: nothing yet");
        }
    }
    if view.workers.is_empty() {
        let _ = writeln!(out, "workers: none");
    } else {
        let _ = writeln!(
            out,
            "{:<14} {:<9} {:>4} {:>6} {:>7} {:>8} {:>10} {:>10}",
            "WORKER", "STATE", "CAP", "PARTS", "WEIGHT", "APPLIED", "COMMITTED", "HEARTBEAT"
        );
        for w in &view.workers {
            let id = if w.leader {
                format!("{}*", w.id)
            } else {
                w.id.clone()
            };
            let mut flags = Vec::new();
            if w.lagging {
                flags.push("lagging");
            }
            if w.degraded {
                flags.push("degraded");
            }
            let line = format!(
                "{:<14} {:<9} {:>4} {:>6} {:>7} {:>8} {:>10} {:>10}{}",
                id,
                w.state,
                w.capacity,
                w.partitions,
                w.weight,
                version(w.applied),
                version(w.committed),
                format_age(w.heartbeat_age_ms),
                if flags.is_empty() {
                    String::new()
                } else {
                    format!("  {}", flags.join(", "))
                }
            );
            let line = if w.degraded {
                style.paint("31", &line)
            } else if w.lagging {
                style.paint("33", &line)
            } else {
                line
            };
            let _ = writeln!(out, "{line}");
        }
        let _ = writeln!(out, "(* = leader; versions are per-worker record versions)");
    }
    let list = |ids: &[String]| {
        if ids.is_empty() {
            "none".to_string()
        } else {
            ids.join(", ")
        }
    };
    let _ = writeln!(out, "lagging: {}", list(&view.lagging));
    let _ = writeln!(out, "degraded: {}", list(&view.degraded));
    let b = &view.buckets;
    let ttl = |t: Option<u64>| t.map_or_else(|| "-".to_string(), format_age);
    let _ = writeln!(
        out,
        "buckets: member TTL {}, leader TTL {}, R{} {}; silent after {} counts as degraded",
        ttl(b.member_ttl_ms),
        ttl(b.leader_ttl_ms),
        b.replicas.unwrap_or(1),
        b.storage.as_deref().unwrap_or("-"),
        format_age(view.stale_after_ms)
    );
    if !b.missing.is_empty() {
        let _ = writeln!(out, "missing buckets: {}", b.missing.join(", "));
    }
    for p in &view.problems {
        let _ = writeln!(out, "problem: {p}");
    }
    out
}

/// What `watch` prints when `next` arrives after `prev` (`None`: the first
/// view): the changes, highlighted, then the full status; `None` when nothing
/// but heartbeat ages changed.
pub fn render_update(prev: Option<&GroupView>, next: &GroupView, color: bool) -> Option<String> {
    let style = Style { on: color };
    let list = match prev {
        None => Vec::new(),
        Some(prev) => {
            let list = changes(prev, next);
            if list.is_empty() {
                return None;
            }
            list
        }
    };
    let mut out = String::new();
    for change in &list {
        let _ = writeln!(out, "{}", style.paint("1;36", &format!(">> {change}")));
    }
    out.push_str(&render_status(next, color));
    Some(out)
}
