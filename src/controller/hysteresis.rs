//! Hysteresis for what probes show in status. A member that misses one probe
//! (a loaded operator or node, a slow answer) and answers the next must not
//! cost two status writes, two watch events and two passes of every
//! controller that watches the cluster.
//!
//! Only the *written* status is debounced: a change confined to what probes
//! see (reachability, the role shown, replication links, member messages,
//! `primaryUnhealthySince`, the phase, `ReplicationHealthy` and `Ready`; see
//! [`super::status::differs_only_in_probes`]) is written once every pass for
//! [`HOLD`] has contradicted the persisted status. It need not be the same
//! change in every pass (a member's message may go from "timed out" to
//! "connection refused"): what is held back is a single pass's disagreement,
//! and a pass that agrees with status again ends the streak. The planners
//! never read the held
//! back status: a pass plans from the newest observation of this process
//! ([`super::status::planning_view`]), so the failover detection window
//! counts from the first missed probe exactly as before.
//!
//! Only the way down is held: a probe-only change to a status with nothing
//! wrong in it ([`super::status::all_clear`]: a recovery, or the end of a
//! repointing after a switchover) is written at once, so a cluster paused
//! or watched right after an operation does not keep a stale failure.
//!
//! Why a duration and not a number of passes: passes are not evenly spaced
//! (1 s when steady, 200 ms while the primary is suspect, at once when the
//! primary watch breaks), so "N passes" would mean 200 ms in the case that
//! matters. Two seconds outlasts one missed 500 ms probe plus the fast
//! re-probe that follows it, and still puts a real failure in status within
//! about 2.2 s of the first missed probe (before a 3 s detection window
//! starts the failover, which is written at once).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How long a change confined to probe results must stand before it is written.
pub const HOLD: Duration = Duration::from_secs(2);

/// What to do with a change confined to probe results.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Passes have contradicted status for [`HOLD`]: write it.
    Write,
    /// The streak is younger than [`HOLD`]: hold it back.
    Hold,
}

/// Per cluster: since when every pass has contradicted the persisted status
/// in probe results only.
#[derive(Debug, Default)]
pub struct Hysteresis(Mutex<HashMap<String, Instant>>);

impl Hysteresis {
    /// Judge a pass of cluster `key` at `now` whose status differs from the
    /// persisted one only in probe results. Starts the streak when none runs.
    pub fn judge(&self, key: &str, now: Instant) -> Verdict {
        let mut streaks = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let since = *streaks.entry(key.to_string()).or_insert(now);
        if now.duration_since(since) >= HOLD {
            streaks.remove(key);
            Verdict::Write
        } else {
            Verdict::Hold
        }
    }

    /// End the streak of `key`: a pass agreed with status again, status was
    /// written with something else, or the cluster is gone.
    pub fn settle(&self, key: &str) {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).remove(key);
    }

    /// How many clusters have a change held back.
    pub fn len(&self) -> usize {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_missed_probe_is_never_written() {
        let h = Hysteresis::default();
        let t0 = Instant::now();
        assert_eq!(h.judge("ns/a", t0), Verdict::Hold);
        // The next pass saw the member again: the caller settles.
        h.settle("ns/a");
        assert!(h.is_empty());
        // A later miss starts from scratch, not from the first one.
        assert_eq!(h.judge("ns/a", t0 + HOLD * 3), Verdict::Hold);
    }

    #[test]
    fn a_streak_that_lasts_the_hold_is_written_once() {
        let h = Hysteresis::default();
        let t0 = Instant::now();
        assert_eq!(h.judge("ns/a", t0), Verdict::Hold);
        let step = Duration::from_millis(200);
        let mut t = t0 + step;
        while t < t0 + HOLD {
            assert_eq!(h.judge("ns/a", t), Verdict::Hold);
            t += step;
        }
        assert_eq!(h.judge("ns/a", t0 + HOLD), Verdict::Write);
        assert!(h.is_empty(), "written: nothing pending");
        assert_eq!(
            h.judge("ns/a", t0 + HOLD + step),
            Verdict::Hold,
            "the next disagreement is a new streak"
        );
    }

    #[test]
    fn clusters_have_their_own_streaks() {
        let h = Hysteresis::default();
        let t0 = Instant::now();
        assert_eq!(h.judge("ns/a", t0), Verdict::Hold);
        assert_eq!(
            h.judge("ns/b", t0 + HOLD),
            Verdict::Hold,
            "another cluster's streak does not count"
        );
        h.settle("ns/b");
        assert_eq!(h.judge("ns/a", t0 + HOLD), Verdict::Write);
        assert!(h.is_empty());
    }
}
