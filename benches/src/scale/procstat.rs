//! CPU time and memory of processes and threads, from Linux `/proc`: what
//! the scale report divides by the length of its steady-state interval.
//! Elsewhere every reading is `None`.

use std::path::Path;
use std::sync::OnceLock;
use std::time::Duration;

/// Clock ticks per second of `/proc/*/stat` times (`getconf CLK_TCK`; 100 if
/// that cannot be run, the value on every common Linux).
fn clock_ticks() -> u64 {
    static TICKS: OnceLock<u64> = OnceLock::new();
    *TICKS.get_or_init(|| {
        std::process::Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8(o.stdout).ok())
            .and_then(|s| s.trim().parse().ok())
            .filter(|t| *t > 0)
            .unwrap_or(100)
    })
}

/// User + system CPU time from a `stat` file of `/proc` (process or thread).
fn cpu_of(stat: &Path) -> Option<Duration> {
    let text = std::fs::read_to_string(stat).ok()?;
    // The command name (field 2) may hold spaces: fields are counted after
    // its closing parenthesis, where field 3 (state) has index 0.
    let rest = text.rsplit_once(')')?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    let ticks = utime + stime;
    Some(Duration::from_micros(ticks * 1_000_000 / clock_ticks()))
}

/// CPU time of this whole process (every thread).
pub fn process_cpu() -> Option<Duration> {
    cpu_of(Path::new("/proc/self/stat"))
}

/// CPU time of another process.
pub fn pid_cpu(pid: u32) -> Option<Duration> {
    cpu_of(&Path::new("/proc").join(pid.to_string()).join("stat"))
}

/// CPU time of one thread of this process.
pub fn thread_cpu(tid: u32) -> Option<Duration> {
    cpu_of(
        &Path::new("/proc/self/task")
            .join(tid.to_string())
            .join("stat"),
    )
}

/// The kernel's id of the calling thread (from `/proc/thread-self`).
pub fn current_tid() -> Option<u32> {
    let link = std::fs::read_link("/proc/thread-self").ok()?;
    link.file_name()?.to_str()?.parse().ok()
}

/// Resident set size of this process, in bytes (`VmRSS`).
pub fn rss_bytes() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = text.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// `cpu` spent over `wall`, in percent of one core.
pub fn percent(cpu: Duration, wall: Duration) -> f64 {
    if wall.is_zero() {
        return 0.0;
    }
    100.0 * cpu.as_secs_f64() / wall.as_secs_f64()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_this_process_and_thread() {
        if !Path::new("/proc/self/stat").exists() {
            return;
        }
        let tid = current_tid().unwrap();
        assert!(thread_cpu(tid).is_some());
        assert!(process_cpu().unwrap() >= thread_cpu(tid).unwrap());
        assert!(rss_bytes().unwrap() > 0);
        assert!(pid_cpu(std::process::id()).is_some());
    }
}
