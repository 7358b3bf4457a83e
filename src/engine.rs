//! The contract between the cluster reconciler and a database engine.
//!
//! The reconciler owns Kubernetes: it creates the StatefulSet and Services,
//! finds the pods, persists status and moves role labels. An engine owns the
//! databases: each call observes every member through the database protocol,
//! decides (with pure planning functions) and performs at most one
//! topology-changing step, and returns the new replication state. The
//! reconciler persists that state before calling again, so a restarted
//! operator resumes an operation from its last persisted step.

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::api::{FailoverSpec, MemberStatus, ReplicationState};

/// One member as the reconciler sees it in Kubernetes.
#[derive(Clone, Debug, PartialEq)]
pub struct Member {
    /// StatefulSet ordinal.
    pub ordinal: i32,
    /// Pod name, `<cluster>-<ordinal>`.
    pub pod: String,
    /// Address the operator dials: the pod IP from the API (None while the pod
    /// has none), so the operator also works from outside the cluster.
    pub address: Option<String>,
    /// Database port.
    pub port: u16,
    /// Stable DNS name other members use to reach this one
    /// (`<pod>.<headless>.<ns>.svc.<domain>`), e.g. for `replicaof`/`CHANGE MASTER`.
    pub dns_name: String,
    /// Whether the pod object exists (false while the StatefulSet recreates it).
    pub pod_exists: bool,
    /// Pod readiness as reported by the kubelet; informative only — failover
    /// decisions are made from database reachability.
    pub pod_ready: bool,
    /// The reconciler isolated this member from clients after the engine
    /// asked for it in [`EngineOutcome::isolate`]: its role label is removed
    /// (it is in no Service) and the pod that ran it was deleted (a pod that
    /// replaces it boots read-only). Only isolation done for the operation in
    /// progress (`state.operation`, e.g. keyed by its term) counts; false
    /// otherwise. The engine promotes a replacement only once the old
    /// primary is confirmed read-only through the protocol or isolated.
    pub isolated: bool,
}

/// Credentials read from the cluster's Secret. Never logged: `Debug` hides values.
#[derive(Clone, Default, PartialEq)]
pub struct Credentials(pub BTreeMap<String, String>);

impl Credentials {
    pub fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).map(String::as_str)
    }
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(self.0.keys().map(|k| format!("{k}=<redacted>")))
            .finish()
    }
}

/// Everything an engine needs for one reconcile pass. `S` carries the
/// engine-specific settings taken from the spec (e.g. Redis durability, MySQL
/// flavor and semi-sync mode).
#[derive(Clone, Debug)]
pub struct EngineInput<S> {
    pub namespace: String,
    /// Cluster (custom resource) name.
    pub name: String,
    /// Members `0..spec.replicas`, in ordinal order.
    pub members: Vec<Member>,
    /// Replication state persisted by the previous pass.
    pub state: ReplicationState,
    /// `spec.primary`: a member the user wants as primary (switchover).
    pub desired_primary: Option<i32>,
    pub failover: FailoverSpec,
    pub credentials: Credentials,
    pub now: DateTime<Utc>,
    pub settings: S,
    /// The last primary and term recorded outside the status (it survives a
    /// status wipe), read only while `state` records no primary. A hint, not
    /// truth: adoption prefers it only among members the data shows to be
    /// equally complete.
    pub hint: Option<PrimaryHint>,
}

/// The last known primary and term, kept where a status wipe cannot reach.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PrimaryHint {
    pub primary: i32,
    pub term: i64,
}

/// Health of replication, for the `ReplicationHealthy` condition.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Health {
    /// Exactly one writable primary, every member replicating from it.
    Healthy,
    /// Not healthy; the reason is a CamelCase word, the message a sentence.
    Unhealthy { reason: String, message: String },
    /// Not known yet (e.g. members not reachable yet during bootstrap).
    Unknown { reason: String, message: String },
}

/// Whether the primary accepts client writes, as probed in this pass; feeds
/// the `Ready` condition ("the write Service has a primary that accepts writes").
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum PrimaryWrites {
    /// Not probed (no confirmed primary, or the engine cannot tell).
    #[default]
    Unknown,
    Accepted,
    /// The primary answers writes with an error; the reason is a CamelCase
    /// word (e.g. `NotEnoughReplicas`, `PrimaryReadOnly`), the message a sentence.
    Refused {
        reason: String,
        message: String,
    },
}

/// Type of a Kubernetes Event.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventType {
    Normal,
    Warning,
}

/// Something the engine did or refused to do, published as a Kubernetes Event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EngineEvent {
    pub type_: EventType,
    /// CamelCase reason, e.g. `Promoted`, `FailoverRefused`.
    pub reason: String,
    /// A sentence a person understands: who, what, why.
    pub note: String,
}

/// Result of one engine pass.
#[derive(Clone, Debug, PartialEq)]
pub struct EngineOutcome {
    /// New replication state to persist (primary, term, operation, …).
    pub state: ReplicationState,
    /// What was observed of each member; `role` drives the pod role labels:
    /// only a member reported `Primary` gets the primary label, and only after
    /// the engine confirmed it writable.
    pub members: Vec<MemberStatus>,
    pub health: Health,
    pub events: Vec<EngineEvent>,
    /// When to run the next pass (short during an operation or detection window).
    pub requeue_after: Duration,
    /// Members the reconciler must make unreachable for clients before the
    /// engine can go on (fence before promote): a primary being replaced that
    /// the engine cannot fence through the protocol because it does not
    /// answer. The reconciler removes the member's role label and deletes its
    /// pod, then reports [`Member::isolated`] on the next passes. Empty
    /// almost always; the engine keeps asking (operation step
    /// `AwaitingIsolation`) until the member is isolated or answers read-only,
    /// and abandons the failover at the operation's deadline (`FenceFailed`).
    pub isolate: Vec<i32>,
    /// Whether the confirmed primary accepts writes.
    pub primary_writes: PrimaryWrites,
}

/// Errors an engine cannot express as an outcome (e.g. missing credentials).
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("credentials secret lacks key {0}")]
    MissingCredential(String),
    #[error("{0}")]
    Other(String),
}

/// Requeue during a detection window: the engine's usual interval, or the
/// time left in the window (`left_ms`) when that is shorter (at least
/// 1 ms), so the pass that fails over runs right when the window ends.
pub fn window_requeue(active: Duration, left_ms: i64) -> Duration {
    let left = Duration::from_millis(u64::try_from(left_ms.max(1)).unwrap_or(1));
    active.min(left)
}

/// An established primary watch ([`crate::watch`]): completes, with a
/// sentence saying why, when its connection breaks.
pub type WatchBroken = futures::future::BoxFuture<'static, String>;

/// Opening a primary watch: connect and authenticate, then hand back
/// [`WatchBroken`].
pub type WatchOpening = futures::future::BoxFuture<'static, Result<WatchBroken, EngineError>>;

/// A database engine. Implementations: `redis::RedisEngine`, `mysql::MySqlEngine`.
pub trait Engine: Send + Sync {
    /// Engine-specific settings derived from the cluster spec.
    type Settings: Clone + std::fmt::Debug + Send + Sync;

    /// Observe every member, repair drift, advance any failover/switchover by at
    /// most one persisted step, and report.
    fn reconcile(
        &self,
        input: &EngineInput<Self::Settings>,
    ) -> impl std::future::Future<Output = Result<EngineOutcome, EngineError>> + Send;

    /// Open a dedicated connection to `primary` (with the operator's
    /// credentials, bounded connect timeouts) that sits blocked on a read
    /// and completes when the connection breaks (see [`crate::watch`]). It
    /// never changes anything on the server.
    fn watch_primary(&self, primary: &Member, credentials: &Credentials) -> WatchOpening;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detection_window_requeue_ends_with_the_window() {
        let active = Duration::from_millis(200);
        assert_eq!(window_requeue(active, 5000), active);
        assert_eq!(window_requeue(active, 120), Duration::from_millis(120));
        assert_eq!(window_requeue(active, 0), Duration::from_millis(1));
        assert_eq!(window_requeue(active, -40), Duration::from_millis(1));
    }
}
