//! Returning freed memory to the operating system. glibc's allocator keeps
//! the pages of freed chunks inside its arenas (only the top of a heap is
//! given back on its own), and the operator frees a lot between passes:
//! watch events, API responses, probe replies. Measured on the devcluster
//! with 200 one-member clusters (debug build), one `malloc_trim(0)` took
//! the operator's anonymous RSS from 44 to 33 MiB (BENCHMARKS.md, scale
//! section). So the operator trims every [`TRIM_EVERY`].
//!
//! glibc also gives each thread that allocates under contention an arena of
//! its own, and each keeps its own free pages: at 300 one-member clusters
//! the two runtime workers' arenas held ~17 MiB each. The operator keeps
//! every thread in one arena ([`one_arena`]): 55–59 MiB RSS against 61–63
//! there with nothing else changed (BENCHMARKS.md, scale section, session 13).

use std::time::Duration;

use tokio_util::sync::CancellationToken;

/// How often freed pages are handed back.
pub const TRIM_EVERY: Duration = Duration::from_secs(15);

/// Hand the free pages of every allocator arena back to the kernel
/// (`malloc_trim(0)`); true when some were. Other allocators: nothing, false.
pub fn trim() -> bool {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // SAFETY: malloc_trim takes no pointers; it locks each arena in
        // turn and only releases pages of chunks that are free.
        unsafe { libc::malloc_trim(0) == 1 }
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    {
        false
    }
}

/// Keep every thread's allocations in the main arena (`M_ARENA_MAX` 1,
/// which `MALLOC_ARENA_MAX` would otherwise set); true when the allocator
/// took it. Call it before any thread starts: arenas already made stay.
/// Small allocations still come from each thread's own cache (tcache), so
/// threads rarely wait for the arena's lock. Other allocators: nothing,
/// false.
pub fn one_arena() -> bool {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // SAFETY: mallopt takes two integers and only sets a parameter.
        unsafe { libc::mallopt(libc::M_ARENA_MAX, 1) == 1 }
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    {
        false
    }
}

/// Trim every [`TRIM_EVERY`] until `stop` (on a blocking thread: a trim
/// walks every arena).
pub async fn trim_periodically(stop: CancellationToken) {
    let mut every = tokio::time::interval(TRIM_EVERY);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        tokio::select! {
            _ = every.tick() => {}
            _ = stop.cancelled() => return,
        }
        if let Err(error) = tokio::task::spawn_blocking(trim).await {
            tracing::warn!(%error, "releasing freed memory failed");
        }
    }
}

#[cfg(all(test, target_os = "linux", target_env = "gnu"))]
mod tests {
    use super::*;

    fn anon_rss_kib() -> u64 {
        std::fs::read_to_string("/proc/self/status")
            .expect("status")
            .lines()
            .find_map(|l| l.strip_prefix("RssAnon:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("RssAnon")
    }

    /// Blocks below the mmap threshold, all freed but the last, so the
    /// free space sits inside the heap where only a trim releases it.
    #[test]
    fn a_trim_releases_pages_freed_inside_the_heap() {
        std::thread::spawn(|| {
            let mut blocks: Vec<Vec<u8>> = (0..1024).map(|_| vec![1u8; 64 * 1024]).collect();
            let last = blocks.pop().expect("a block");
            drop(blocks);
            let before = anon_rss_kib();
            assert!(trim(), "freed pages to release");
            let after = anon_rss_kib();
            assert!(
                before.saturating_sub(after) >= 32 * 1024,
                "RssAnon {before} KiB before the trim, {after} KiB after"
            );
            drop(last);
        })
        .join()
        .expect("test thread");
    }
}
