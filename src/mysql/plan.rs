//! Pure planning: from what was observed and the persisted state, decide the
//! next step, the state to persist, member roles, health and events. No I/O.

use chrono::{DateTime, Duration as ChronoDuration, Utc};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use crate::api::{
    FailoverRecord, FailoverSpec, MemberRole, MemberStatus, Operation, OperationKind,
    ReplicationState,
};
use crate::engine::{EngineEvent, EventType, Health, PrimaryHint};

use super::MySqlSettings;
use super::gtid::GtidSet;
use super::observe::Observed;
use crate::api::mysql::ReplicationMode;

mod adopt;

use adopt::plan_bootstrap;
pub use adopt::{ADOPTION_PATIENCE, choose_adoption};

/// Step names persisted in `Operation.step`.
pub mod step {
    pub const WAIT_RELAY: &str = "WaitRelayLog";
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
    /// Bounded wait for relay logs to be applied before choosing a candidate.
    pub relay_wait: std::time::Duration,
    /// Pause after an aborted switchover before trying again.
    pub cooldown: std::time::Duration,
}

impl Default for OpTimeouts {
    fn default() -> Self {
        Self {
            switchover: std::time::Duration::from_secs(30),
            failover: std::time::Duration::from_secs(60),
            relay_wait: std::time::Duration::from_secs(20),
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

/// Whether a replica has applied everything it received.
pub fn relay_applied(o: &Observed) -> bool {
    match &o.replica {
        None => true,
        Some(r) => {
            if !r.sql_running {
                return true; // cannot progress; judged on what it executed
            }
            match &r.received {
                Some(rec) => o.executed.contains(rec),
                None => true,
            }
        }
    }
}

/// Data carried in `Operation.data`: `key=value` pairs separated by `;`.
pub fn data_get(data: Option<&str>, key: &str) -> Option<String> {
    data?.split(';').find_map(|kv| {
        let (k, v) = kv.split_once('=')?;
        (k == key).then(|| v.to_string())
    })
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
    match (&inp.state.operation, inp.state.primary) {
        (Some(op), _) if op.step != step::COOLDOWN => plan_operation(inp, op, &mut p),
        (_, None) => plan_bootstrap(inp, &mut p),
        (_, Some(primary)) => plan_steady(inp, primary, &mut p),
    }
    p
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

fn plan_steady(inp: &PlanInput<'_>, primary: i32, p: &mut Plan) {
    let d = super::flavor::Dialect(inp.settings.flavor);
    let Some(pv) = view(inp, primary) else {
        p.health = unhealthy(
            "PrimaryMissing",
            format!("primary ordinal {primary} is not a member (scaled down?)"),
        );
        return;
    };
    if let Some((reason, message)) = primary_problem(inp, pv) {
        plan_primary_lost(inp, primary, reason, message, p);
        return;
    }
    let Some(po) = pv.up() else { return };
    p.state.primary_unhealthy_since = None;
    p.fallback.primary_unhealthy_since = None;
    p.state.primary_position = Some(po.executed.to_string());
    p.state.primary_identity = Some(po.identity.clone());
    p.fallback.primary_position = p.state.primary_position.clone();
    p.fallback.primary_identity = p.state.primary_identity.clone();
    let semi_sync = semi(inp);

    if po.writable() {
        set_role(p, primary, MemberRole::Primary, None);
    } else {
        p.steps.push(Step {
            action: Action::MakeWritable {
                ordinal: primary,
                semi_sync,
            },
            critical: true,
        });
        set_role(p, primary, MemberRole::Primary, None);
        p.events.push(ev(
            EventType::Normal,
            "PrimaryWritable",
            format!("{} is the confirmed primary (term {}) holding every known transaction; writes enabled", pv.pod, inp.state.term),
        ));
    }
    // Users are (re)applied when the operator user cannot log in, when the
    // Secret changed, or when a replica is refused by the primary (1045).
    let repl_refused = |o: &Observed| {
        o.replica.as_ref().is_some_and(|r| {
            r.last_io_errno == 1045 && source_ordinal(inp.views, &r.host, r.port) == Some(primary)
        })
    };
    let refused_any = inp.views.iter().any(|v| v.up().is_some_and(repl_refused));
    if po.via_root || inp.credentials_changed || refused_any {
        p.steps.push(Step {
            action: Action::EnsureUsers { ordinal: primary },
            critical: false,
        });
    }
    if semi_sync && po.semi_primary != Some(true) {
        p.steps.push(Step {
            action: Action::SemiSyncPrimary { ordinal: primary },
            critical: false,
        });
        if inp.settings.flavor == crate::api::MySqlFlavor::MariaDB
            && inp.settings.replication.wait_for_replicas > 1
        {
            p.events.push(ev(
                EventType::Warning,
                "SemiSyncWaitCountUnsupported",
                format!(
                    "MariaDB semi-sync waits for one replica acknowledgement; replication.waitForReplicas={} is only honoured on MySQL",
                    inp.settings.replication.wait_for_replicas
                ),
            ));
        }
    } else if !semi_sync && po.semi_primary == Some(true) {
        p.steps.push(Step {
            action: Action::SemiSyncPrimaryOff { ordinal: primary },
            critical: false,
        });
    }

    let mut problems: Vec<String> = Vec::new();
    let mut healthy_replicas: Vec<i32> = Vec::new();
    for v in inp.views.iter().filter(|v| v.ordinal != primary) {
        let o = match &v.obs {
            Ok(o) => o,
            Err(e) if e == super::RESEEDING => {
                problems.push(format!("{} {e}", v.pod));
                continue;
            }
            Err(_) => {
                problems.push(format!("{} unreachable", v.pod));
                continue;
            }
        };
        if let Some(why) = errant(o, po.reference(), d) {
            set_role(
                p,
                v.ordinal,
                MemberRole::Quarantined,
                Some(format!("quarantined: {why}")),
            );
            problems.push(format!("{} quarantined", v.pod));
            p.events.push(ev(
                EventType::Warning,
                "ErrantTransactions",
                format!("{} {why}; it is quarantined (never promoted, not repointed, data kept) until a person resolves it", v.pod),
            ));
            if o.writable() {
                p.steps.push(Step {
                    action: Action::Fence { ordinal: v.ordinal },
                    critical: false,
                });
            }
            continue;
        }
        if o.writable() {
            p.steps.push(Step {
                action: Action::Fence { ordinal: v.ordinal },
                critical: false,
            });
            p.events.push(ev(
                EventType::Warning,
                "Fenced",
                format!("{} was writable but is not the primary; set read-only and its client connections killed", v.pod),
            ));
        }
        if o.semi_primary == Some(true) {
            p.steps.push(Step {
                action: Action::SemiSyncPrimaryOff { ordinal: v.ordinal },
                critical: false,
            });
        }
        let src = o
            .replica
            .as_ref()
            .and_then(|r| source_ordinal(inp.views, &r.host, r.port));
        match (&o.replica, src) {
            (Some(r), Some(s)) if s == primary => {
                if inp.credentials_changed || r.last_io_errno == 1045 {
                    // New replication password: CHANGE MASTER with it.
                    p.steps.push(Step {
                        action: Action::Repoint {
                            ordinal: v.ordinal,
                            source: primary,
                            executed: o.executed.position(),
                        },
                        critical: false,
                    });
                    p.events.push(ev(
                        EventType::Normal,
                        "CredentialsApplied",
                        format!(
                            "{} reconnects to {} with the current replication credentials",
                            v.pod, pv.pod
                        ),
                    ));
                    problems.push(format!("{} reconnecting with new credentials", v.pod));
                    set_role(
                        p,
                        v.ordinal,
                        MemberRole::Unknown,
                        Some("reconnecting with the current replication credentials".into()),
                    );
                    continue;
                }
                if d.is_purged_binlog_error(r.last_io_errno, &r.last_io_error) {
                    p.steps.push(Step {
                        action: Action::Reseed {
                            ordinal: v.ordinal,
                            source: primary,
                        },
                        critical: false,
                    });
                    p.events.push(ev(
                        EventType::Normal,
                        "Reseeding",
                        format!(
                            "{} needs binlogs {} no longer has; seeding it from a fresh dump",
                            v.pod, pv.pod
                        ),
                    ));
                    problems.push(format!("{} being re-seeded", v.pod));
                    set_role(
                        p,
                        v.ordinal,
                        MemberRole::Unknown,
                        Some("re-seeding from a dump of the primary".into()),
                    );
                    continue;
                }
                if r.last_sql_errno != 0 && !r.sql_running {
                    let msg = format!(
                        "SQL thread stopped with error {}: {}",
                        r.last_sql_errno, r.last_sql_error
                    );
                    problems.push(format!("{}: {msg}", v.pod));
                    set_role(p, v.ordinal, MemberRole::Unknown, Some(msg));
                    continue;
                }
                if r.io_yes() && r.sql_running {
                    set_role(p, v.ordinal, MemberRole::Replica, None);
                    if let Some(m) = p.members.iter_mut().find(|m| m.ordinal == v.ordinal) {
                        m.source = Some(primary);
                    }
                    healthy_replicas.push(v.ordinal);
                    if semi_sync && o.semi_replica != Some(true) {
                        p.steps.push(Step {
                            action: Action::SemiSyncReplica { ordinal: v.ordinal },
                            critical: false,
                        });
                    }
                } else if r.io_stopped() || !r.sql_running {
                    if semi_sync && o.semi_replica != Some(true) {
                        p.steps.push(Step {
                            action: Action::SemiSyncReplica { ordinal: v.ordinal },
                            critical: false,
                        });
                    }
                    p.steps.push(Step {
                        action: Action::StartReplication { ordinal: v.ordinal },
                        critical: false,
                    });
                    problems.push(format!("{} replication threads restarted", v.pod));
                    set_role(
                        p,
                        v.ordinal,
                        MemberRole::Unknown,
                        Some("replication threads were stopped; started".into()),
                    );
                } else {
                    let msg = if r.last_io_errno != 0 {
                        format!(
                            "connecting to the primary: error {}: {}",
                            r.last_io_errno, r.last_io_error
                        )
                    } else {
                        "connecting to the primary".to_string()
                    };
                    problems.push(format!("{}: {msg}", v.pod));
                    set_role(p, v.ordinal, MemberRole::Unknown, Some(msg));
                }
            }
            _ => {
                // An emptied member whose own server id originated transactions
                // the primary holds would skip them when replicating: seeded
                // from a dump instead, like a member behind purged binlogs.
                let own_lost = o.executed.is_empty() && po.reference().has_origin(o.server_id);
                if own_lost
                    || po
                        .purged
                        .as_ref()
                        .is_some_and(|pg| !o.executed.contains(pg))
                {
                    let pg = po.purged.clone().unwrap_or_else(|| po.reference().clone());
                    // MariaDB would silently start such a replica from the
                    // oldest binlog left; it is seeded from a dump instead.
                    p.steps.push(Step {
                        action: Action::Reseed {
                            ordinal: v.ordinal,
                            source: primary,
                        },
                        critical: false,
                    });
                    p.events.push(ev(
                        EventType::Normal,
                        "Reseeding",
                        if own_lost {
                            format!(
                                "{} is empty and {} holds transactions its server id originated, which replication would skip; seeding it from a fresh dump",
                                v.pod, pv.pod
                            )
                        } else {
                            format!(
                                "{} lacks transactions {} purged from its binlogs ({} missing); seeding it from a fresh dump",
                                v.pod,
                                pv.pod,
                                o.executed.missing(&pg)
                            )
                        },
                    ));
                    problems.push(format!("{} being re-seeded", v.pod));
                    set_role(
                        p,
                        v.ordinal,
                        MemberRole::Unknown,
                        Some("re-seeding from a dump of the primary".into()),
                    );
                    continue;
                }
                if semi_sync && o.semi_replica != Some(true) {
                    p.steps.push(Step {
                        action: Action::SemiSyncReplica { ordinal: v.ordinal },
                        critical: false,
                    });
                }
                p.steps.push(Step {
                    action: Action::Repoint {
                        ordinal: v.ordinal,
                        source: primary,
                        executed: o.executed.position(),
                    },
                    critical: false,
                });
                let from = o
                    .replica
                    .as_ref()
                    .map(|r| r.host.clone())
                    .unwrap_or_else(|| "nothing".into());
                p.events.push(ev(
                    EventType::Normal,
                    "Repointed",
                    format!("{} replicated from {from}; now replicates from primary {} with GTID auto-positioning", v.pod, pv.pod),
                ));
                problems.push(format!("{} being repointed", v.pod));
                set_role(
                    p,
                    v.ordinal,
                    MemberRole::Unknown,
                    Some("being pointed at the primary".into()),
                );
            }
        }
    }

    // Switchover requested?
    let cooling = matches!(&inp.state.operation, Some(op) if op.step == step::COOLDOWN);
    if cooling
        && let Some(op) = &inp.state.operation
        && op
            .deadline
            .as_ref()
            .is_some_and(|dl| inp.now >= from_time(dl))
    {
        p.state.operation = None;
        p.fallback.operation = None;
    }
    if let Some(want) = inp.desired_primary
        && want != primary
        && !cooling
    {
        if healthy_replicas.contains(&want) && p.steps.iter().all(|s| !s.critical) {
            let wv = view(inp, want).map(|v| v.pod.clone()).unwrap_or_default();
            p.steps.push(Step {
                action: Action::Fence { ordinal: primary },
                critical: true,
            });
            p.state.operation = Some(Operation {
                kind: OperationKind::Switchover,
                from: primary,
                to: Some(want),
                step: step::CATCH_UP.into(),
                term: inp.state.term + 1,
                started_at: to_time(inp.now),
                deadline: Some(to_time(inp.now + secs(inp.timeouts.switchover))),
                reason: format!("spec.primary asks for ordinal {want}"),
                data: Some(format!("position={}", po.executed)),
            });
            set_role(
                p,
                primary,
                MemberRole::Unknown,
                Some("read-only for a switchover".into()),
            );
            p.events.push(ev(
                EventType::Normal,
                "SwitchoverStarted",
                format!("switchover from {} to {wv}: {} is read-only and its writers disconnected; waiting for {wv} to catch up", pv.pod, pv.pod),
            ));
            p.health = unhealthy(
                "SwitchoverInProgress",
                format!("switching the primary from {} to {wv}", pv.pod),
            );
            p.requeue = std::time::Duration::from_millis(300);
            return;
        }
        problems.push(format!(
            "switchover to ordinal {want} waits until it replicates healthily"
        ));
    }

    if problems.is_empty() {
        p.health = Health::Healthy;
        p.requeue = std::time::Duration::from_secs(5);
    } else {
        p.health = unhealthy("MembersNotReplicating", problems.join("; "));
        p.requeue = std::time::Duration::from_secs(2);
    }
}

/// Replicas that may be promoted: reachable, not `exclude`, no errant
/// transactions relative to the last primary position.
fn eligible<'a>(inp: &'a PlanInput<'a>, exclude: i32) -> Vec<(&'a View, &'a Observed)> {
    let d = super::flavor::Dialect(inp.settings.flavor);
    let pos = inp
        .state
        .primary_position
        .as_deref()
        .and_then(|s| GtidSet::parse(inp.settings.flavor, s).ok());
    let origin = identity_origin(inp.state.primary_identity.as_deref());
    inp.views
        .iter()
        .filter(|v| v.ordinal != exclude)
        .filter_map(|v| v.up().map(|o| (v, o)))
        .filter(|(_, o)| {
            // Errant vs. the last primary position would also flag replicas that
            // are merely ahead of a stale recorded position, so only flag members
            // that diverged (same sequence number, other origin) or hold
            // transactions from a domain/server the primary never had.
            match &pos {
                Some(pp) => errant_for_failover(o, pp, origin.as_deref(), d).is_none(),
                None => true,
            }
        })
        .collect()
}

/// Errant check during failover, against the last recorded state of the
/// lost primary: that state was sampled, so transactions the lost primary
/// itself originated later are legitimate; anything else it never had is
/// errant.
fn errant_for_failover(
    o: &Observed,
    pos: &GtidSet,
    origin: Option<&str>,
    d: super::flavor::Dialect,
) -> Option<String> {
    if let Some(e) = o.executed.errant_vs(pos, origin) {
        return Some(e);
    }
    if let Some(r) = &o.replica
        && d.is_divergence_error(r.last_io_errno, &r.last_io_error)
    {
        return Some(r.last_io_error.clone());
    }
    None
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

fn plan_primary_lost(
    inp: &PlanInput<'_>,
    primary: i32,
    reason: String,
    message: String,
    p: &mut Plan,
) {
    let since = inp
        .state
        .primary_unhealthy_since
        .as_ref()
        .map(from_time)
        .unwrap_or(inp.now);
    p.state.primary_unhealthy_since = Some(to_time(since));
    p.fallback.primary_unhealthy_since = Some(to_time(since));
    let pod = view(inp, primary)
        .map(|v| v.pod.clone())
        .unwrap_or_default();
    // A stale or misconfigured primary that answers must not take writes;
    // if fencing it fails nothing else happens this pass (no failover).
    if let Some(o) = view(inp, primary).and_then(View::up)
        && o.writable()
    {
        p.steps.push(Step {
            action: Action::Fence { ordinal: primary },
            critical: true,
        });
    }
    for v in inp.views.iter().filter(|v| v.ordinal != primary) {
        if let Some(o) = v.up() {
            let following = o
                .replica
                .as_ref()
                .and_then(|r| source_ordinal(inp.views, &r.host, r.port))
                == Some(primary);
            if following {
                set_role(
                    p,
                    v.ordinal,
                    MemberRole::Replica,
                    Some("primary unhealthy".into()),
                );
                if let Some(m) = p.members.iter_mut().find(|m| m.ordinal == v.ordinal) {
                    m.source = Some(primary);
                }
            }
        }
    }
    // Unreachable from the operator only? Replicas still receiving its
    // stream vouch for it: it stays the primary (keeps its role label) and
    // the detection window restarts, so a failover needs them to lose it too.
    let unreachable = view(inp, primary).is_some_and(|v| v.obs.is_err());
    let seeing = if unreachable {
        replicas_seeing(inp, primary)
    } else {
        Vec::new()
    };
    if !seeing.is_empty() {
        if inp.state.primary_unhealthy_since.is_none() {
            p.events.push(ev(
                EventType::Warning,
                "PrimaryUnreachableFromOperator",
                format!("{pod} does not answer the operator but its replicas still receive its replication stream; it stays the primary and no failover starts"),
            ));
        }
        p.state.primary_unhealthy_since = Some(to_time(inp.now));
        p.fallback.primary_unhealthy_since = Some(to_time(inp.now));
        set_role(
            p,
            primary,
            MemberRole::Primary,
            Some("unreachable from the operator; its replicas still receive its stream".into()),
        );
        p.health = unhealthy(
            "PrimaryUnreachableFromOperator",
            format!(
                "{message}, but {} still replicate from it with recent traffic; not failing over",
                seeing.join(", ")
            ),
        );
        p.requeue = std::time::Duration::from_millis(500);
        return;
    }
    let elapsed = inp.now - since;
    let window = ChronoDuration::seconds(inp.failover.detection_seconds.max(1) as i64);
    if !inp.failover.enabled {
        p.health = unhealthy(
            &reason,
            format!("{message}; automatic failover is disabled"),
        );
        p.requeue = std::time::Duration::from_secs(2);
        return;
    }
    if elapsed < window {
        p.health = unhealthy(
            &reason,
            format!(
                "{message} (for {}s of the {}s detection window)",
                elapsed.num_seconds(),
                window.num_seconds()
            ),
        );
        p.requeue = std::time::Duration::from_millis(500);
        return;
    }
    // Pre-check with what replicas received so far: start only if a candidate
    // can qualify once relay logs are applied.
    let el = eligible(inp, primary);
    let best: Vec<(i32, GtidSet)> = el
        .iter()
        .map(|(v, o)| {
            let mut g = o.executed.clone();
            if let Some(rec) = o.replica.as_ref().and_then(|r| r.received.as_ref()) {
                g = g.union(rec);
            }
            (v.ordinal, g)
        })
        .collect();
    let refs: Vec<(i32, &GtidSet)> = best.iter().map(|(o, g)| (*o, g)).collect();
    let pos = inp
        .state
        .primary_position
        .as_deref()
        .and_then(|s| GtidSet::parse(inp.settings.flavor, s).ok());
    match choose_candidate(
        &refs,
        pos.as_ref(),
        inp.failover.max_lag,
        inp.desired_primary,
    ) {
        Err(why) => {
            p.health = unhealthy(
                "FailoverRefused",
                format!("{message}; failover refused: {why}"),
            );
            p.events.push(ev(
                EventType::Warning,
                "FailoverRefused",
                format!("primary {pod} is lost ({reason}) but no replica may replace it: {why}"),
            ));
            p.requeue = std::time::Duration::from_secs(5);
        }
        Ok(_) => {
            for (v, o) in &el {
                if o.replica.is_some() {
                    p.steps.push(Step {
                        action: Action::StopIo { ordinal: v.ordinal },
                        critical: false,
                    });
                }
            }
            p.state.operation = Some(Operation {
                kind: OperationKind::Failover,
                from: primary,
                to: None,
                step: step::WAIT_RELAY.into(),
                term: inp.state.term + 1,
                started_at: to_time(inp.now),
                deadline: Some(to_time(inp.now + secs(inp.timeouts.failover))),
                reason: format!("{reason}: {message}"),
                data: Some(format!(
                    "relay_until={}",
                    (inp.now + secs(inp.timeouts.relay_wait)).to_rfc3339()
                )),
            });
            p.events.push(ev(
                EventType::Warning,
                "FailoverStarted",
                format!("primary {pod} lost for {}s ({reason}); replication IO threads stopped, waiting for relay logs to be applied", elapsed.num_seconds()),
            ));
            p.health = unhealthy("FailoverInProgress", message);
            p.requeue = std::time::Duration::from_millis(300);
        }
    }
}

/// Replicas (pods) connected to `primary` that heard from it at most
/// [`REPLICA_VIEW_RECENT_SECS`] ago.
fn replicas_seeing(inp: &PlanInput<'_>, primary: i32) -> Vec<String> {
    inp.views
        .iter()
        .filter(|v| v.ordinal != primary)
        .filter(|v| {
            v.up().and_then(|o| o.replica.as_ref()).is_some_and(|r| {
                r.io_yes()
                    && source_ordinal(inp.views, &r.host, r.port) == Some(primary)
                    && r.heard_secs.is_some_and(|s| s <= REPLICA_VIEW_RECENT_SECS)
            })
        })
        .map(|v| v.pod.clone())
        .collect()
}

/// Where the old primary of a failover stands before the promotion.
enum Fence {
    /// It cannot take writes (read-only, isolated, gone): promote.
    Confirmed(String),
    /// It answers writable: fence it (critical) right before promoting.
    Command,
    /// It does not answer: the reconciler must isolate it first.
    Isolate(String),
}

fn fence_status(inp: &PlanInput<'_>, from: i32) -> Fence {
    let Some(v) = view(inp, from) else {
        return Fence::Confirmed("it is not a member any more".into());
    };
    match &v.obs {
        Ok(o) => {
            let mysql = inp.settings.flavor == crate::api::MySqlFlavor::MySQL;
            if o.read_only && (!mysql || o.super_read_only) {
                Fence::Confirmed("it answers read-only".into())
            } else {
                Fence::Command
            }
        }
        Err(_) if v.isolated => {
            Fence::Confirmed("the operator isolated it (role label removed, pod deleted)".into())
        }
        Err(e) => Fence::Isolate(e.clone()),
    }
}

/// The `Promote` / `AwaitingIsolation` steps of a failover: promote `to` only
/// once the old primary cannot take writes — confirmed read-only, fenced in
/// this pass (a critical step before the promotion), or isolated by the
/// reconciler — and abandon at the deadline (`FenceFailed`).
fn fence_then_finish(inp: &PlanInput<'_>, op: &Operation, to: i32, expired: bool, p: &mut Plan) {
    let from_pod = view(inp, op.from)
        .map(|v| v.pod.clone())
        .unwrap_or_default();
    let to_pod = view(inp, to).map(|v| v.pod.clone()).unwrap_or_default();
    let status = fence_status(inp, op.from);
    if let Fence::Isolate(e) = &status {
        if expired {
            fail_failover(
                inp,
                op,
                p,
                format!(
                    "{from_pod} does not answer ({e}) and was not isolated before the deadline; nothing was promoted"
                ),
                "FenceFailed",
            );
            return;
        }
        p.isolate = vec![op.from];
        let mut next = op.clone();
        next.step = step::AWAIT_ISOLATION.into();
        p.state.operation = Some(next.clone());
        p.fallback.operation = Some(next);
        p.health = unhealthy(
            "FailoverInProgress",
            format!(
                "{from_pod} does not answer ({e}); waiting for it to be isolated (role label removed, pod deleted) before promoting {to_pod}"
            ),
        );
        p.requeue = std::time::Duration::from_millis(300);
        return;
    }
    match view(inp, to).and_then(View::up) {
        Some(o) => {
            if let Fence::Confirmed(how) = &status {
                p.events.push(ev(
                    EventType::Normal,
                    "OldPrimaryFenced",
                    format!("{from_pod} cannot take writes ({how}); promoting {to_pod}"),
                ));
            }
            if let Fence::Command = status {
                p.steps.push(Step {
                    action: Action::Fence { ordinal: op.from },
                    critical: true,
                });
                p.events.push(ev(
                    EventType::Warning,
                    "Fenced",
                    format!("{from_pod} answers writable while it is being replaced; set read-only and its client connections killed before promoting {to_pod}"),
                ));
            }
            finish(inp, op, to, o, p);
        }
        None if expired => fail_failover(
            inp,
            op,
            p,
            format!("candidate {to_pod} unreachable until the deadline"),
            "FailoverAborted",
        ),
        None => {
            p.health = unhealthy(
                "FailoverInProgress",
                format!("waiting for candidate {to_pod} to answer"),
            );
        }
    }
}

/// Abandon a failover: replicas resume replication, the operation ends.
fn fail_failover(inp: &PlanInput<'_>, op: &Operation, p: &mut Plan, why: String, reason: &str) {
    let from_pod = view(inp, op.from)
        .map(|v| v.pod.clone())
        .unwrap_or_default();
    for v in inp.views.iter().filter(|v| v.ordinal != op.from) {
        if v.up().is_some_and(|o| o.replica.is_some()) {
            p.steps.push(Step {
                action: Action::StartReplication { ordinal: v.ordinal },
                critical: false,
            });
        }
    }
    p.state.operation = None;
    p.events.push(ev(
        EventType::Warning,
        reason,
        format!("failover from {from_pod} abandoned: {why}"),
    ));
    p.health = unhealthy(reason, why);
    p.requeue = std::time::Duration::from_secs(2);
}

fn finish(inp: &PlanInput<'_>, op: &Operation, to: i32, to_obs: &Observed, p: &mut Plan) {
    let semi_sync = semi(inp);
    p.steps.push(Step {
        action: Action::Promote {
            ordinal: to,
            semi_sync,
        },
        critical: true,
    });
    p.state.primary = Some(to);
    p.state.term = op.term;
    p.state.operation = None;
    p.state.primary_unhealthy_since = None;
    p.state.primary_position = Some(to_obs.executed.to_string());
    p.state.primary_identity = Some(to_obs.identity.clone());
    p.state.last_failover = Some(FailoverRecord {
        kind: op.kind,
        from: op.from,
        to,
        time: to_time(inp.now),
        reason: op.reason.clone(),
    });
    set_role(p, to, MemberRole::Primary, None);
    let from_pod = view(inp, op.from)
        .map(|v| v.pod.clone())
        .unwrap_or_default();
    let to_pod = view(inp, to).map(|v| v.pod.clone()).unwrap_or_default();
    let kind = match op.kind {
        OperationKind::Failover => "failover",
        OperationKind::Switchover => "switchover",
    };
    p.events.push(ev(
        EventType::Normal,
        "Promoted",
        format!(
            "{kind}: {to_pod} promoted to primary (term {}, GTID {}) replacing {from_pod}: {}",
            op.term, to_obs.executed, op.reason
        ),
    ));
    p.health = unhealthy(
        "Repointing",
        format!("{to_pod} is the new primary; other members are being repointed"),
    );
    p.requeue = std::time::Duration::from_millis(200);
}

fn plan_operation(inp: &PlanInput<'_>, op: &Operation, p: &mut Plan) {
    let expired = op
        .deadline
        .as_ref()
        .is_some_and(|dl| inp.now >= from_time(dl));
    let from_pod = view(inp, op.from)
        .map(|v| v.pod.clone())
        .unwrap_or_default();
    p.requeue = std::time::Duration::from_millis(300);
    let promoting = op.step == step::PROMOTE || op.step == step::AWAIT_ISOLATION;
    for v in inp.views {
        if let Some(o) = v.up()
            && v.ordinal == op.from
            && o.writable()
            && op.kind == OperationKind::Failover
            && !promoting
        {
            // An old primary that answers again during a failover is fenced.
            p.steps.push(Step {
                action: Action::Fence { ordinal: v.ordinal },
                critical: false,
            });
        }
    }
    match op.kind {
        OperationKind::Switchover => {
            let Some(to) = op.to else {
                p.state.operation = None;
                return;
            };
            let to_pod = view(inp, to).map(|v| v.pod.clone()).unwrap_or_default();
            let from_obs = view(inp, op.from).and_then(View::up);
            let to_obs = view(inp, to).and_then(View::up);
            let abort = |p: &mut Plan, why: String| {
                if from_obs.is_some() {
                    p.steps.push(Step {
                        action: Action::MakeWritable {
                            ordinal: op.from,
                            semi_sync: semi(inp),
                        },
                        critical: true,
                    });
                }
                let cooldown = Operation {
                    step: step::COOLDOWN.into(),
                    deadline: Some(to_time(inp.now + secs(inp.timeouts.cooldown))),
                    reason: format!("switchover to {to_pod} aborted: {why}"),
                    ..op.clone()
                };
                p.state.operation = Some(cooldown);
                p.fallback.operation = Some(op.clone());
                p.events.push(ev(
                    EventType::Warning,
                    "SwitchoverAborted",
                    format!("switchover from {from_pod} to {to_pod} aborted: {why}; {from_pod} stays primary and writable (next attempt in {}s)", inp.timeouts.cooldown.as_secs()),
                ));
                p.health = unhealthy("SwitchoverAborted", why);
                set_role(p, op.from, MemberRole::Primary, None);
            };
            let Some(fo) = from_obs else {
                // Old primary lost mid-switchover: give up; failover detection takes over.
                p.state.operation = None;
                p.fallback.operation = None;
                p.events.push(ev(
                    EventType::Warning,
                    "SwitchoverAborted",
                    format!("switchover from {from_pod} to {to_pod} abandoned: {from_pod} became unreachable; failover detection takes over"),
                ));
                return;
            };
            let Some(to_o) = to_obs else {
                if expired {
                    abort(p, format!("{to_pod} unreachable until the deadline"));
                } else {
                    p.health = unhealthy(
                        "SwitchoverInProgress",
                        format!("waiting for {to_pod} to answer"),
                    );
                }
                return;
            };
            let target = &fo.executed;
            if to_o.executed.contains(target) {
                finish(inp, op, to, to_o, p);
                return;
            }
            if expired {
                let missing = to_o.executed.missing(target);
                abort(
                    p,
                    format!(
                        "{to_pod} still lacked {missing} transaction(s) of {target} at the deadline"
                    ),
                );
                return;
            }
            if fo.writable() {
                // Re-fence (e.g. a failed fence or someone turned it back on).
                p.steps.push(Step {
                    action: Action::Fence { ordinal: op.from },
                    critical: false,
                });
            }
            p.steps.push(Step {
                action: Action::WaitGtid {
                    ordinal: to,
                    gtids: target.position(),
                    secs: 1,
                },
                critical: false,
            });
            let mut next = op.clone();
            next.data = Some(format!("position={target}"));
            p.state.operation = Some(next);
            set_role(
                p,
                op.from,
                MemberRole::Unknown,
                Some("read-only for a switchover".into()),
            );
            p.health = unhealthy(
                "SwitchoverInProgress",
                format!(
                    "{to_pod} lacks {} transaction(s) of {from_pod}",
                    to_o.executed.missing(target)
                ),
            );
            p.requeue = std::time::Duration::from_millis(100);
        }
        OperationKind::Failover => {
            let abort =
                |p: &mut Plan, why: String, reason: &str| fail_failover(inp, op, p, why, reason);
            if promoting {
                let Some(to) = op.to else {
                    abort(p, "no candidate recorded".into(), "FailoverAborted");
                    return;
                };
                // The old primary came back intact before any promotion.
                if let Some(pv) = view(inp, op.from)
                    && primary_problem(inp, pv).is_none()
                {
                    abort(
                        p,
                        format!("{from_pod} answers again with all its data before any promotion"),
                        "FailoverCancelled",
                    );
                    p.state.primary_unhealthy_since = None;
                    return;
                }
                fence_then_finish(inp, op, to, expired, p);
                return;
            }
            // WaitRelayLog: did the old primary come back intact?
            if let Some(pv) = view(inp, op.from)
                && primary_problem(inp, pv).is_none()
            {
                abort(
                    p,
                    format!("{from_pod} answers again with all its data before any promotion"),
                    "FailoverCancelled",
                );
                p.state.primary_unhealthy_since = None;
                return;
            }
            if expired {
                abort(
                    p,
                    "deadline passed before a candidate was promoted".into(),
                    "FailoverAborted",
                );
                return;
            }
            let el = eligible(inp, op.from);
            let mut pending = Vec::new();
            for (v, o) in &el {
                if o.replica.as_ref().is_some_and(|r| !r.io_stopped()) {
                    p.steps.push(Step {
                        action: Action::StopIo { ordinal: v.ordinal },
                        critical: false,
                    });
                }
                if !relay_applied(o) {
                    pending.push(v.pod.clone());
                }
            }
            let relay_until = data_get(op.data.as_deref(), "relay_until")
                .and_then(|s| DateTime::parse_from_rfc3339(&s).ok())
                .map(|t| t.with_timezone(&Utc));
            let waiting = relay_until.is_some_and(|t| inp.now < t);
            if !pending.is_empty() && waiting {
                p.health = unhealthy(
                    "FailoverInProgress",
                    format!(
                        "waiting for {} to apply their relay logs",
                        pending.join(", ")
                    ),
                );
                p.requeue = std::time::Duration::from_millis(200);
                return;
            }
            let sets: Vec<(i32, &GtidSet)> =
                el.iter().map(|(v, o)| (v.ordinal, &o.executed)).collect();
            let pos = inp
                .state
                .primary_position
                .as_deref()
                .and_then(|s| GtidSet::parse(inp.settings.flavor, s).ok());
            match choose_candidate(
                &sets,
                pos.as_ref(),
                inp.failover.max_lag,
                inp.desired_primary,
            ) {
                Err(why) => abort(p, format!("refused: {why}"), "FailoverRefused"),
                Ok(c) => {
                    let mut next = op.clone();
                    next.to = Some(c);
                    next.step = step::PROMOTE.into();
                    p.state.operation = Some(next);
                    let cpod = view(inp, c).map(|v| v.pod.clone()).unwrap_or_default();
                    p.events.push(ev(
                        EventType::Normal,
                        "CandidateChosen",
                        format!("{cpod} holds every transaction of the other reachable replicas and applied its relay log; promoting it"),
                    ));
                    p.health = unhealthy("FailoverInProgress", format!("promoting {cpod}"));
                    p.requeue = std::time::Duration::from_millis(50);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests;
