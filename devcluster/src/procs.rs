//! Process bookkeeping: PID files that survive the process that wrote them,
//! guarded against PID reuse by the kernel's start time of the process.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

/// A process we started: its PID (also its process-group id, since every
/// process is started as a group leader) and its start time in clock ticks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProcRef {
    pub pid: i32,
    pub start: u64,
}

impl ProcRef {
    pub fn of(pid: i32) -> Option<ProcRef> {
        start_time(pid).map(|start| ProcRef { pid, start })
    }

    /// Still the same process (not exited, PID not reused).
    pub fn alive(&self) -> bool {
        start_time(self.pid) == Some(self.start) && !is_zombie(self.pid)
    }

    pub fn save(&self, path: &Path) -> Result<()> {
        std::fs::write(path, format!("{} {}\n", self.pid, self.start))
            .with_context(|| format!("writing {}", path.display()))
    }

    pub fn load(path: &Path) -> Option<ProcRef> {
        let text = std::fs::read_to_string(path).ok()?;
        let mut it = text.split_whitespace();
        let pid = it.next()?.parse().ok()?;
        let start = it.next()?.parse().ok()?;
        Some(ProcRef { pid, start })
    }
}

fn stat_fields(pid: i32) -> Option<Vec<String>> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name is in parentheses and may contain spaces.
    let rest = &stat[stat.rfind(')')? + 2..];
    Some(rest.split_whitespace().map(str::to_owned).collect())
}

fn start_time(pid: i32) -> Option<u64> {
    // Field 22 overall; index 19 after "pid (comm)".
    stat_fields(pid)?.get(19)?.parse().ok()
}

fn is_zombie(pid: i32) -> bool {
    stat_fields(pid).is_some_and(|f| f.first().is_some_and(|s| s == "Z"))
}

/// Send `sig` to the process group led by `pgid` (and to the process itself).
pub fn signal_group(pgid: i32, sig: i32) {
    if pgid <= 1 {
        return;
    }
    // SAFETY: kill(2) has no memory-safety preconditions.
    unsafe {
        libc::kill(-pgid, sig);
        libc::kill(pgid, sig);
    }
}

/// Any process still in the group `pgid`?
pub fn group_alive(pgid: i32) -> bool {
    // SAFETY: kill(2) with signal 0 only checks for existence.
    unsafe { libc::kill(-pgid, 0) == 0 }
}

/// SIGTERM every group at once, wait up to `grace` for all of them, then
/// SIGKILL what is left. Blocking. Stopping hundreds of pods one after the
/// other took minutes; together they take one grace period at most.
pub fn stop_groups(procs: &[ProcRef], grace: Duration) {
    let gone = |p: &ProcRef| !p.alive() && !group_alive(p.pid);
    for p in procs {
        if p.alive() {
            signal_group(p.pid, libc::SIGTERM);
        }
    }
    let deadline = Instant::now() + grace;
    let mut left: Vec<ProcRef> = procs.iter().copied().filter(|p| !gone(p)).collect();
    while !left.is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
        left.retain(|p| !gone(p));
    }
    for p in left {
        signal_group(p.pid, libc::SIGKILL);
    }
}

/// SIGTERM the group, wait up to `grace`, then SIGKILL it. Blocking.
pub fn stop_group(p: ProcRef, grace: Duration) {
    if !p.alive() {
        // The leader is gone, but leftovers of its group may still run.
        if group_alive(p.pid) {
            signal_group(p.pid, libc::SIGKILL);
        }
        return;
    }
    signal_group(p.pid, libc::SIGTERM);
    let deadline = Instant::now() + grace;
    while Instant::now() < deadline {
        if !p.alive() && !group_alive(p.pid) {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    signal_group(p.pid, libc::SIGKILL);
}
