//! Pure planning: from what was observed and the persisted state, decide the
//! next step, the state to persist, member roles, health and events. No I/O.

use chrono::{DateTime, Duration as ChronoDuration, Utc};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use crate::api::{
    FailoverRecord, FailoverSpec, MemberRole, MemberStatus, Operation, OperationData,
    OperationKind, ReplicationState, ReseedRecord,
};
use crate::engine::{EngineEvent, EventType, Health, PrimaryHint};

use super::MySqlSettings;
use super::gtid::GtidSet;
use super::observe::Observed;
use crate::api::mysql::ReplicationMode;

mod adopt;
mod failover;
mod promote;
mod steady;
mod switchover;

use adopt::plan_bootstrap;
pub use adopt::{ADOPTION_PATIENCE, choose_adoption};
use promote::{fail_failover, fence_then_finish, finish};

/// Step names persisted in `Operation.step`.
pub mod step {
    /// Replication IO threads stopped; the candidate is chosen by what the
    /// replicas received (relay logs included) once none receives any more.
    pub const WAIT_RELAY: &str = "WaitRelayLog";
    /// The candidate applies every transaction it received before promotion.
    pub const APPLY_RELAY: &str = "ApplyRelayLog";
    pub const PROMOTE: &str = "Promote";
    pub const CATCH_UP: &str = "CatchUp";
    /// After an aborted switchover: no new attempt before the deadline.
    pub const COOLDOWN: &str = "AbortedCooldown";
    /// A failover's candidate is chosen but the old primary does not answer:
    /// waiting until the reconciler isolated it (or it answers read-only).
    pub const AWAIT_ISOLATION: &str = "AwaitingIsolation";
}

/// A replica connected to the primary that heard from it at most this many
/// seconds ago (see `ReplicaStatus::heard_secs`) vouches that the primary is
/// alive: no failover while one does, whatever the operator can reach.
pub const REPLICA_VIEW_RECENT_SECS: i64 = 5;

/// One member as the planner sees it.
#[derive(Clone, Debug)]
pub struct View {
    pub ordinal: i32,
    pub pod: String,
    pub dns_name: String,
    pub address: Option<String>,
    pub port: u16,
    /// The observation, or why there is none.
    pub obs: Result<Observed, String>,
    /// The reconciler isolated it for the operation in progress (role label
    /// removed, pod deleted), or its pod does not exist.
    pub isolated: bool,
}

impl View {
    fn up(&self) -> Option<&Observed> {
        self.obs.as_ref().ok()
    }
}

/// Timeouts of operations (engine configuration).
#[derive(Clone, Copy, Debug)]
pub struct OpTimeouts {
    pub switchover: std::time::Duration,
    pub failover: std::time::Duration,
    /// Pause after an aborted switchover before trying again.
    pub cooldown: std::time::Duration,
}

impl Default for OpTimeouts {
    fn default() -> Self {
        Self {
            switchover: std::time::Duration::from_secs(30),
            failover: std::time::Duration::from_secs(60),
            cooldown: std::time::Duration::from_secs(60),
        }
    }
}

pub struct PlanInput<'a> {
    pub views: &'a [View],
    pub state: &'a ReplicationState,
    pub desired_primary: Option<i32>,
    pub failover: &'a FailoverSpec,
    pub settings: &'a MySqlSettings,
    pub now: DateTime<Utc>,
    pub timeouts: OpTimeouts,
    /// The operator or replication password changed since the engine last
    /// applied them: refresh the users on the primary and repoint replicas.
    pub credentials_changed: bool,
    /// Last primary and term kept outside the status (see [`PrimaryHint`]).
    pub hint: Option<PrimaryHint>,
    /// Members whose re-seed finished successfully since the last pass.
    pub reseeded: &'a [i32],
    /// Members whose re-seed task runs in this operator process.
    pub reseeding: &'a [i32],
}

/// A database action on one member (by ordinal).
#[derive(Clone, Debug, PartialEq)]
pub enum Action {
    /// Create/refresh the operator and replication users (as root, binlogged).
    EnsureUsers {
        ordinal: i32,
    },
    /// read_only OFF (after semi-sync primary settings when `semi_sync`).
    MakeWritable {
        ordinal: i32,
        semi_sync: bool,
    },
    /// Kill client connections, read_only ON, kill again.
    Fence {
        ordinal: i32,
    },
    /// Point at `source` with GTID auto-positioning and start replicating.
    Repoint {
        ordinal: i32,
        source: i32,
        executed: String,
    },
    StartReplication {
        ordinal: i32,
    },
    StopIo {
        ordinal: i32,
    },
    /// Start the applier only (the source may be gone).
    StartSqlThread {
        ordinal: i32,
    },
    /// Stop and forget replication, (semi-sync primary), read_only OFF.
    Promote {
        ordinal: i32,
        semi_sync: bool,
    },
    SemiSyncPrimary {
        ordinal: i32,
    },
    SemiSyncPrimaryOff {
        ordinal: i32,
    },
    SemiSyncReplica {
        ordinal: i32,
    },
    /// Server-side bounded wait for GTIDs (speeds up a catch-up).
    WaitGtid {
        ordinal: i32,
        gtids: String,
        secs: u32,
    },
    /// Re-seed from a fresh dump of `source` (binlogs purged there).
    Reseed {
        ordinal: i32,
        source: i32,
    },
}

impl Action {
    pub fn ordinal(&self) -> i32 {
        match self {
            Action::EnsureUsers { ordinal }
            | Action::MakeWritable { ordinal, .. }
            | Action::Fence { ordinal }
            | Action::Repoint { ordinal, .. }
            | Action::StartReplication { ordinal }
            | Action::StopIo { ordinal }
            | Action::StartSqlThread { ordinal }
            | Action::Promote { ordinal, .. }
            | Action::SemiSyncPrimary { ordinal }
            | Action::SemiSyncPrimaryOff { ordinal }
            | Action::SemiSyncReplica { ordinal }
            | Action::WaitGtid { ordinal, .. }
            | Action::Reseed { ordinal, .. } => *ordinal,
        }
    }
}

/// An action and whether the new state depends on it.
#[derive(Clone, Debug, PartialEq)]
pub struct Step {
    pub action: Action,
    /// When a critical action fails, `Plan::fallback` is persisted instead of
    /// `Plan::state`, and the remaining actions are skipped.
    pub critical: bool,
}

#[derive(Clone, Debug)]
pub struct Plan {
    pub steps: Vec<Step>,
    pub state: ReplicationState,
    pub fallback: ReplicationState,
    pub members: Vec<MemberStatus>,
    pub health: Health,
    pub events: Vec<EngineEvent>,
    pub requeue: std::time::Duration,
    /// Members the reconciler must isolate from clients (see
    /// [`crate::engine::EngineOutcome::isolate`]).
    pub isolate: Vec<i32>,
}

fn ev(type_: EventType, reason: &str, note: String) -> EngineEvent {
    EngineEvent {
        type_,
        reason: reason.to_string(),
        note,
    }
}

fn unhealthy(reason: &str, message: impl Into<String>) -> Health {
    Health::Unhealthy {
        reason: reason.into(),
        message: message.into(),
    }
}

/// chrono → Kubernetes `Time`.
pub fn to_time(t: DateTime<Utc>) -> Time {
    Time(
        k8s_openapi::jiff::Timestamp::from_millisecond(t.timestamp_millis())
            .unwrap_or(k8s_openapi::jiff::Timestamp::UNIX_EPOCH),
    )
}

/// Kubernetes `Time` → chrono.
pub fn from_time(t: &Time) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(t.0.as_millisecond()).unwrap_or_default()
}

fn secs(d: std::time::Duration) -> ChronoDuration {
    ChronoDuration::from_std(d).unwrap_or(ChronoDuration::seconds(60))
}

/// Ordinal of the member a replica's configured source names (by DNS name
/// or address, and port).
pub fn source_ordinal(views: &[View], host: &str, port: u16) -> Option<i32> {
    views
        .iter()
        .find(|v| {
            (v.dns_name == host || v.address.as_deref() == Some(host))
                && (port == 0 || v.port == port)
        })
        .map(|v| v.ordinal)
}

fn base_status(v: &View) -> MemberStatus {
    let mut s = MemberStatus {
        ordinal: v.ordinal,
        pod: v.pod.clone(),
        role: MemberRole::Unknown,
        reachable: v.obs.is_ok(),
        ..Default::default()
    };
    match &v.obs {
        Ok(o) => {
            s.gtid = Some(o.executed.position());
            if let Some(r) = &o.replica {
                s.link_up = Some(r.io_yes() && r.sql_running);
                s.lag = r.seconds_behind;
            }
        }
        Err(e) if e == super::RESEEDING => {
            s.reachable = true;
            s.message = Some(e.clone());
        }
        Err(e) => s.message = Some(format!("unreachable: {e}")),
    }
    s
}

/// Why a member may not be promoted or followed: errant transactions
/// relative to `reference`, or a divergence error from its source.
pub fn errant(o: &Observed, reference: &GtidSet, d: super::flavor::Dialect) -> Option<String> {
    if let Some(e) = o.executed.errant_vs(reference, None) {
        return Some(format!("holds transactions the primary lacks: {e}"));
    }
    if let Some(r) = &o.replica
        && d.is_divergence_error(r.last_io_errno, &r.last_io_error)
    {
        return Some(format!("diverged from its source: {}", r.last_io_error));
    }
    None
}

/// Candidate for promotion among `replicas` (ordinal, executed set): the
/// member whose executed set contains every other's; ties go to `preferred`,
/// then the lowest ordinal. Refused (with a sentence) when none contains all
/// others, or when the best lacks more than `max_lag` of `primary_position`.
pub fn choose_candidate(
    replicas: &[(i32, &GtidSet)],
    primary_position: Option<&GtidSet>,
    max_lag: Option<i64>,
    preferred: Option<i32>,
) -> Result<i32, String> {
    if replicas.is_empty() {
        return Err("no reachable replica without errant transactions".into());
    }
    let mut supersets: Vec<i32> = replicas
        .iter()
        .filter(|(_, g)| replicas.iter().all(|(_, o)| g.contains(o)))
        .map(|(o, _)| *o)
        .collect();
    if supersets.is_empty() {
        return Err("no replica holds every transaction of the others (they diverged)".into());
    }
    supersets.sort_unstable();
    let chosen = match preferred {
        Some(p) if supersets.contains(&p) => p,
        _ => supersets[0],
    };
    if let Some(pp) = primary_position {
        let g = replicas
            .iter()
            .find(|(o, _)| *o == chosen)
            .map(|(_, g)| *g)
            .ok_or("candidate vanished")?;
        let missing = g.missing(pp);
        let allowed = max_lag.unwrap_or(0).max(0) as u64;
        if missing > allowed {
            return Err(format!(
                "the most advanced replica (ordinal {chosen}) lacks {missing} transaction(s) of the last primary position {pp} (failover.maxLag allows {allowed})"
            ));
        }
    }
    Ok(chosen)
}

/// What a member holds once its relay log is applied: executed plus
/// received transactions.
pub fn held(o: &Observed) -> GtidSet {
    match o.replica.as_ref().and_then(|r| r.received.as_ref()) {
        Some(rec) => o.executed.union(rec),
        None => o.executed.clone(),
    }
}

/// Whether a replica has applied everything it received (a stopped SQL
/// thread has not: what it received is still to be applied).
pub fn relay_applied(o: &Observed) -> bool {
    o.executed.contains(&held(o))
}

/// What the cluster is doing, as the planner sees it; each has one small
/// function (in `steady`, `failover`, `switchover`, `adopt`).
enum Situation<'a> {
    /// No primary recorded: bootstrap an empty cluster or adopt the member
    /// holding every transaction.
    Bootstrap,
    /// A failover in progress (any step).
    Failover(&'a Operation),
    /// A switchover in progress.
    Switchover(&'a Operation),
    /// The recorded primary is not a member (scaled down?).
    PrimaryMissing(i32),
    /// The recorded primary is unreachable, stale or a replica.
    PrimaryLost {
        primary: i32,
        reason: String,
        message: String,
    },
    /// The recorded primary answers and holds every known transaction.
    Steady { pv: &'a View, po: &'a Observed },
}

fn classify<'a>(inp: &PlanInput<'a>) -> Situation<'a> {
    if let Some(op) = inp.state.operation.as_ref()
        && op.step != step::COOLDOWN
    {
        return match op.kind {
            OperationKind::Failover => Situation::Failover(op),
            OperationKind::Switchover => Situation::Switchover(op),
        };
    }
    let Some(primary) = inp.state.primary else {
        return Situation::Bootstrap;
    };
    let Some(pv) = view(inp, primary) else {
        return Situation::PrimaryMissing(primary);
    };
    match (primary_problem(inp, pv), pv.up()) {
        (None, Some(po)) => Situation::Steady { pv, po },
        (Some((reason, message)), _) => Situation::PrimaryLost {
            primary,
            reason,
            message,
        },
        (None, None) => Situation::PrimaryLost {
            primary,
            reason: "PrimaryUnreachable".into(),
            message: format!("primary {} is unreachable", pv.pod),
        },
    }
}

pub fn plan(inp: &PlanInput<'_>) -> Plan {
    let mut p = Plan {
        steps: Vec::new(),
        state: inp.state.clone(),
        fallback: inp.state.clone(),
        members: inp.views.iter().map(base_status).collect(),
        health: Health::Unknown {
            reason: "Observing".into(),
            message: "replication state not evaluated yet".into(),
        },
        events: Vec::new(),
        requeue: std::time::Duration::from_secs(1),
        isolate: Vec::new(),
    };
    // Finished re-seeds (and those of members gone) are forgotten.
    p.state.reseeds.retain(|r| {
        !inp.reseeded.contains(&r.ordinal) && inp.views.iter().any(|v| v.ordinal == r.ordinal)
    });
    p.fallback.reseeds = p.state.reseeds.clone();
    match classify(inp) {
        Situation::Bootstrap => plan_bootstrap(inp, &mut p),
        Situation::Failover(op) => failover::plan_failover(inp, op, &mut p),
        Situation::Switchover(op) => switchover::plan_switchover(inp, op, &mut p),
        Situation::PrimaryMissing(primary) => {
            p.health = unhealthy(
                "PrimaryMissing",
                format!("primary ordinal {primary} is not a member (scaled down?)"),
            );
        }
        Situation::PrimaryLost {
            primary,
            reason,
            message,
        } => failover::plan_primary_lost(inp, primary, reason, message, &mut p),
        Situation::Steady { pv, po } => steady::plan_steady(inp, pv, po, &mut p),
    }
    p
}

/// Whether the operation's deadline passed.
fn op_expired(inp: &PlanInput<'_>, op: &Operation) -> bool {
    op.deadline
        .as_ref()
        .is_some_and(|dl| inp.now >= from_time(dl))
}

/// Pod name of a member (empty when it is not one).
fn pod(inp: &PlanInput<'_>, ordinal: i32) -> String {
    view(inp, ordinal)
        .map(|v| v.pod.clone())
        .unwrap_or_default()
}

fn view<'a>(inp: &PlanInput<'a>, ordinal: i32) -> Option<&'a View> {
    inp.views.iter().find(|v| v.ordinal == ordinal)
}

fn set_role(p: &mut Plan, ordinal: i32, role: MemberRole, msg: Option<String>) {
    if let Some(m) = p.members.iter_mut().find(|m| m.ordinal == ordinal) {
        m.role = role;
        if msg.is_some() {
            m.message = msg;
        }
    }
}

fn semi(inp: &PlanInput<'_>) -> bool {
    inp.settings.replication.mode == ReplicationMode::SemiSync
}

/// Whether the confirmed primary is usable, or why not.
fn primary_problem(inp: &PlanInput<'_>, pv: &View) -> Option<(String, String)> {
    let o = match &pv.obs {
        Ok(o) => o,
        Err(e) => {
            return Some((
                "PrimaryUnreachable".into(),
                format!("primary {} is unreachable: {e}", pv.pod),
            ));
        }
    };
    if let Some(r) = &o.replica {
        return Some((
            "PrimaryIsReplica".into(),
            format!("primary {} replicates from {}", pv.pod, r.host),
        ));
    }
    if let Some((pod, missing)) = replicas_hold_more(inp, pv, o) {
        return Some((
            "PrimaryStale".into(),
            format!(
                "primary {} lacks {missing} transaction(s) it originated that {pod} holds (lost in a crash?); it is not trusted as primary",
                pv.pod
            ),
        ));
    }
    if let Some(pos) = inp
        .state
        .primary_position
        .as_deref()
        .and_then(|s| GtidSet::parse(inp.settings.flavor, s).ok())
    {
        let missing = o.executed.missing(&pos);
        if missing > 0 {
            return Some((
                "PrimaryStale".into(),
                format!(
                    "primary {} came back without {missing} transaction(s) it had committed (position {}, expected {pos}); it is not trusted as primary",
                    pv.pod, o.executed
                ),
            ));
        }
    }
    None
}

/// A reachable member holding (executed or received) transactions the
/// primary `po` originated but lacks: the primary lost them (a crash without
/// a durable flush) and the member is ahead of it, not errant. Judged only
/// while the primary answers read-only (as it boots): a writable primary
/// may be between writing a transaction to its binlog (replicas receive it)
/// and recording it as executed, and it loses nothing without a restart.
fn replicas_hold_more(inp: &PlanInput<'_>, pv: &View, po: &Observed) -> Option<(String, u64)> {
    if po.writable() {
        return None;
    }
    let origin = identity_origin(Some(&po.identity))?;
    let reference = po.reference();
    inp.views
        .iter()
        .filter(|v| v.ordinal != pv.ordinal && !reseed_recorded(inp, v.ordinal))
        .filter_map(|v| {
            let o = v.up()?;
            let missing = reference.missing(&held(o).originated_by(&origin));
            (missing > 0).then(|| (v.pod.clone(), missing))
        })
        .max_by_key(|(_, m)| *m)
}

/// Whether a re-seed of `ordinal` is recorded in the state.
fn reseed_recorded(inp: &PlanInput<'_>, ordinal: i32) -> bool {
    inp.state.reseeds.iter().any(|r| r.ordinal == ordinal)
}

/// Originating id of the primary recorded in `primary_identity`
/// (MariaDB server id, MySQL server uuid).
pub fn identity_origin(identity: Option<&str>) -> Option<String> {
    let id = identity?;
    let field = |k: &str| {
        id.split(';')
            .find_map(|kv| kv.strip_prefix(k).map(str::to_string))
    };
    field("server_uuid=").or_else(|| field("server_id="))
}

#[cfg(test)]
mod tests;
