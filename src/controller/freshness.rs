//! Read-your-writes for the replication state machine. A pass plans from the
//! reflector's cached object, which can be older than the status the previous
//! pass wrote (watch events arrive late). The reconciler remembers, per
//! cluster, what its last status write persisted (a high-water mark) and
//! re-reads the object from the API server when the cache is behind it. Status
//! writes carry the resourceVersion the pass planned from as a precondition,
//! so a pass that planned from state someone else has since changed is not
//! persisted and plans again.

use crate::api::ReplicationState;

/// What the last status write of a cluster persisted.
#[derive(Clone, Debug, PartialEq)]
pub struct Written {
    /// uid of the object written (a re-created object starts afresh).
    pub uid: String,
    /// resourceVersion the API server returned for the write.
    pub resource_version: String,
    pub replication: ReplicationState,
}

/// The cached object, as far as freshness goes.
#[derive(Clone, Copy, Debug)]
pub struct Cached<'a> {
    pub uid: Option<&'a str>,
    pub resource_version: Option<&'a str>,
    pub replication: &'a ReplicationState,
}

/// Whether a pass may plan from the cached object.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Freshness {
    /// At least as new as our last write.
    Current,
    /// Older than our last write: read the object from the API server.
    Behind,
}

/// Judge the cache against the high-water mark. resourceVersions are compared
/// for equality; as numbers only to accept a cache that is newer than our
/// write (someone else wrote after us — e.g. status was wiped — and that is
/// the truth to plan from). Anything else that differs from what we wrote is
/// treated as behind and re-read: one extra GET, never a stale plan.
pub fn judge(cached: Cached<'_>, written: Option<&Written>) -> Freshness {
    let Some(w) = written else {
        return Freshness::Current;
    };
    if cached.uid != Some(w.uid.as_str()) {
        return Freshness::Current;
    }
    if cached.resource_version == Some(w.resource_version.as_str())
        || *cached.replication == w.replication
    {
        return Freshness::Current;
    }
    let newer = cached
        .resource_version
        .and_then(|rv| rv.parse::<u64>().ok())
        .zip(w.resource_version.parse::<u64>().ok())
        .is_some_and(|(c, w)| c > w);
    if newer {
        Freshness::Current
    } else {
        Freshness::Behind
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{Operation, OperationKind};

    fn fenced() -> ReplicationState {
        ReplicationState {
            primary: Some(0),
            term: 4,
            operation: Some(Operation {
                kind: OperationKind::Switchover,
                from: 0,
                to: Some(1),
                step: "Fenced".into(),
                term: 5,
                started_at: crate::controller::status::to_time(chrono::Utc::now()),
                deadline: None,
                reason: "spec.primary".into(),
                data: None,
            }),
            ..Default::default()
        }
    }

    fn written() -> Written {
        Written {
            uid: "u1".into(),
            resource_version: "120".into(),
            replication: fenced(),
        }
    }

    #[test]
    fn a_cache_older_than_our_write_is_behind() {
        let before = ReplicationState {
            primary: Some(0),
            term: 4,
            ..Default::default()
        };
        let cached = Cached {
            uid: Some("u1"),
            resource_version: Some("117"),
            replication: &before,
        };
        assert_eq!(judge(cached, Some(&written())), Freshness::Behind);
        // Opaque versions that differ are re-read as well.
        let opaque = Cached {
            resource_version: Some("abc"),
            ..cached
        };
        assert_eq!(judge(opaque, Some(&written())), Freshness::Behind);
    }

    #[test]
    fn the_write_itself_or_anything_newer_is_current() {
        let state = fenced();
        let same = Cached {
            uid: Some("u1"),
            resource_version: Some("120"),
            replication: &state,
        };
        assert_eq!(judge(same, Some(&written())), Freshness::Current);
        // A later unrelated update (e.g. metadata) carrying our state.
        let later = Cached {
            resource_version: Some("125"),
            ..same
        };
        assert_eq!(judge(later, Some(&written())), Freshness::Current);
        // Someone wiped status after our write: that is the truth now.
        let wiped = ReplicationState::default();
        let after_wipe = Cached {
            uid: Some("u1"),
            resource_version: Some("130"),
            replication: &wiped,
        };
        assert_eq!(judge(after_wipe, Some(&written())), Freshness::Current);
    }

    #[test]
    fn nothing_written_or_a_new_object_is_current() {
        let state = ReplicationState::default();
        let cached = Cached {
            uid: Some("u2"),
            resource_version: Some("5"),
            replication: &state,
        };
        assert_eq!(judge(cached, None), Freshness::Current);
        assert_eq!(judge(cached, Some(&written())), Freshness::Current);
    }
}
