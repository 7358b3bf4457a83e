//! The pure planner: from what every member reported and the persisted state,
//! decide the next state, at most one topology-changing step, the member
//! roles, health and events. No I/O here; `act` carries the steps out.

use std::time::Duration;

use chrono::{DateTime, Utc};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;

use crate::api::redis::RedisDurability;
use crate::api::{
    FailoverRecord, FailoverSpec, MemberRole, MemberStatus, Operation, OperationKind,
    ReplicationState,
};
use crate::engine::{EngineEvent, EventType, Health, PrimaryHint};

use super::observe::{NodeInfo, ServerRole};

mod adopt;
mod operations;

pub use adopt::{Adoption, AdoptionError, Containment, choose_adoption, containment};

/// Default `failover.maxLag` for Redis: 1 MiB of replication stream.
pub const DEFAULT_MAX_LAG: i64 = 1 << 20;

/// Step names persisted in `Operation.step`.
pub const STEP_REPOINT: &str = "Repoint";
pub const STEP_AWAIT_FAILOVER: &str = "AwaitFailover";
/// A switchover failed; it is retried after the operation's deadline.
pub const STEP_RETRY_WAIT: &str = "RetryWait";
/// A failover fences the old primary through the protocol (`REPLICAOF`
/// the candidate) before the candidate is promoted.
pub const STEP_FENCE: &str = "Fence";
/// A failover waits until the old primary, which does not answer, is isolated
/// by the reconciler ([`crate::engine::EngineOutcome::isolate`]) or answers
/// read-only; only then is the candidate promoted.
pub const STEP_AWAIT_ISOLATION: &str = "AwaitingIsolation";
/// A failover stops the replicas following the old primary (`REPLICAOF`
/// themselves: read-only, offsets frozen) before it chooses the candidate,
/// so none keeps taking the old primary's stream after another is promoted.
pub const STEP_FREEZE: &str = "Freeze";

/// Health reason when `min-replicas-to-write` could not be applied on the
/// primary (durable mode not in force).
pub const REASON_DURABILITY_NOT_APPLIED: &str = "DurabilityNotApplied";

/// A replica that heard from its primary at most this many seconds ago
/// (`master_last_io_seconds_ago`, link up) vouches that the primary is alive:
/// no failover while one does, whatever the operator can reach.
pub const REPLICA_VIEW_RECENT_SECS: i64 = 3;
/// `repl-ping-replica-period` the engine keeps on every member, so a live
/// primary's replicas hear from it at least this often even without writes.
pub const PING_PERIOD_SECS: i64 = 1;

/// One member and what it reported this pass.
#[derive(Clone, Debug)]
pub struct MemberView {
    pub ordinal: i32,
    pub pod: String,
    pub dns_name: String,
    pub address: Option<String>,
    pub port: u16,
    /// What it reported, or why it could not be observed.
    pub obs: Result<NodeInfo, String>,
    /// The reconciler isolated it for the operation in progress (role label
    /// removed, pod deleted), or its pod does not exist.
    pub isolated: bool,
}

impl MemberView {
    fn node(&self) -> Option<&NodeInfo> {
        self.obs.as_ref().ok()
    }

    /// Whether `host:port` (as a replica reports its master, or a primary lists a
    /// replica) designates this member.
    pub fn is_addressed_by(&self, host: &str, port: u16) -> bool {
        port == self.port
            && (host.eq_ignore_ascii_case(&self.dns_name) || self.address.as_deref() == Some(host))
    }

    fn writable_primary(&self) -> Option<&NodeInfo> {
        self.node()
            .filter(|n| n.role == ServerRole::Master && !n.loading)
    }
}

/// Timing knobs of the planner.
#[derive(Clone, Copy, Debug)]
pub struct Timing {
    /// Requeue while everything is steady.
    pub steady: Duration,
    /// Requeue during a detection window or an operation.
    pub active: Duration,
    /// `TIMEOUT` given to `FAILOVER TO` during a switchover.
    pub switchover_timeout: Duration,
    /// How long a failover may spend repointing before it is closed anyway.
    pub failover_deadline: Duration,
    /// Pause before retrying a switchover that failed.
    pub switchover_retry: Duration,
}

/// Everything the planner looks at.
#[derive(Clone, Debug)]
pub struct PlanInput<'a> {
    pub members: &'a [MemberView],
    pub state: &'a ReplicationState,
    pub desired_primary: Option<i32>,
    pub failover: &'a FailoverSpec,
    pub durability: Option<&'a RedisDurability>,
    pub now: DateTime<Utc>,
    pub timing: Timing,
    /// Last primary and term kept outside the status (see [`PrimaryHint`]).
    pub hint: Option<PrimaryHint>,
}

/// A topology-changing step, or a settings change.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// `REPLICAOF NO ONE` on a member; in durable mode its
    /// `min-replicas-to-write`/`min-replicas-max-lag` are set first, so it
    /// never accepts a write without them (the promotion fails if they
    /// cannot be set).
    Promote {
        ordinal: i32,
        durability: Option<MinReplicas>,
    },
    /// `REPLICAOF <itself>` on each member: it stops following its primary
    /// (keeping its data, replication ID and offset, read-only) without
    /// becoming writable; a later `REPLICAOF <new primary>` resyncs partially.
    Detach { ordinals: Vec<i32> },
    /// `REPLICAOF <primary dns> <port>` on each member (repoint or fence).
    Replicate { ordinals: Vec<i32>, primary: i32 },
    /// `FAILOVER TO <host> <port> TIMEOUT <ms>` on the primary.
    Failover {
        primary: i32,
        host: String,
        port: u16,
        timeout_ms: u64,
    },
    /// `FAILOVER ABORT` on the primary.
    AbortFailover { primary: i32 },
    /// `CONFIG SET min-replicas-to-write … min-replicas-max-lag …`.
    SetMinReplicas {
        ordinal: i32,
        to_write: i64,
        max_lag: i64,
    },
    /// `CONFIG SET repl-ping-replica-period <secs>`.
    SetPingPeriod { ordinal: i32, secs: i64 },
}

impl Action {
    /// A sentence naming the command and the members, for events.
    pub fn describe(&self, members: &[MemberView]) -> String {
        let pod = |o: &i32| pod_name(members, *o);
        match self {
            Action::Promote {
                ordinal,
                durability: None,
            } => format!("REPLICAOF NO ONE on {}", pod(ordinal)),
            Action::Promote {
                ordinal,
                durability: Some(d),
            } => format!(
                "CONFIG SET min-replicas-to-write {} then REPLICAOF NO ONE on {}",
                d.to_write,
                pod(ordinal)
            ),
            Action::Detach { ordinals } => format!(
                "REPLICAOF <itself> (stop following) on {}",
                ordinals.iter().map(pod).collect::<Vec<_>>().join(", ")
            ),
            Action::Replicate { ordinals, primary } => format!(
                "REPLICAOF {} on {}",
                pod(primary),
                ordinals.iter().map(pod).collect::<Vec<_>>().join(", ")
            ),
            Action::Failover {
                primary,
                host,
                port,
                ..
            } => format!("FAILOVER TO {host} {port} on {}", pod(primary)),
            Action::AbortFailover { primary } => format!("FAILOVER ABORT on {}", pod(primary)),
            Action::SetMinReplicas { ordinal, .. } => {
                format!("CONFIG SET min-replicas-to-write on {}", pod(ordinal))
            }
            Action::SetPingPeriod { ordinal, secs } => {
                format!(
                    "CONFIG SET repl-ping-replica-period {secs} on {}",
                    pod(ordinal)
                )
            }
        }
    }
}

/// `min-replicas-to-write` / `min-replicas-max-lag` of a durable primary.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MinReplicas {
    pub to_write: i64,
    pub max_lag: i64,
}

impl MinReplicas {
    pub fn of(d: &RedisDurability) -> Self {
        Self {
            to_write: i64::from(d.min_replicas_to_write),
            max_lag: i64::from(d.min_replicas_max_lag),
        }
    }
}

/// The planner's decision for one pass.
#[derive(Clone, Debug)]
pub struct Plan {
    /// State to persist when `step` succeeds (or when there is no step).
    pub state: ReplicationState,
    /// State to persist when `step` fails.
    pub fallback: ReplicationState,
    /// At most one topology-changing step.
    pub step: Option<Action>,
    /// Events published when `step` succeeds.
    pub step_events: Vec<EngineEvent>,
    /// Settings changes (not topology), applied every pass.
    pub settings: Vec<Action>,
    pub members: Vec<MemberStatus>,
    pub health: Health,
    /// Events published regardless of the step.
    pub events: Vec<EngineEvent>,
    pub requeue: Duration,
    /// Members the reconciler must isolate from clients (see
    /// [`crate::engine::EngineOutcome::isolate`]).
    pub isolate: Vec<i32>,
    /// `step` fences the old primary of a failover: its failure is reported
    /// as `FenceFailed`.
    pub step_is_fence: bool,
}

fn event(type_: EventType, reason: &str, note: String) -> EngineEvent {
    EngineEvent {
        type_,
        reason: reason.to_string(),
        note,
    }
}

fn unhealthy(reason: &str, message: String) -> Health {
    Health::Unhealthy {
        reason: reason.to_string(),
        message,
    }
}

/// Parse `state.primary_position` (`<replid>:<offset>`, or a bare offset).
pub fn parse_position(s: &str) -> (Option<&str>, Option<i64>) {
    match s.rsplit_once(':') {
        Some((id, off)) => (Some(id), off.parse().ok()),
        None => (None, s.parse().ok()),
    }
}

/// Format a replication position as persisted in `state.primary_position`.
pub fn format_position(replid: &str, offset: i64) -> String {
    format!("{replid}:{offset}")
}

/// A Kubernetes `Time` from a chrono instant (millisecond precision).
pub fn to_time(t: DateTime<Utc>) -> Time {
    Time(Timestamp::from_millisecond(t.timestamp_millis()).unwrap_or(Timestamp::UNIX_EPOCH))
}

/// A chrono instant from a Kubernetes `Time`.
pub fn from_time(t: &Time) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(t.0.as_millisecond()).unwrap_or_default()
}

/// `failover.maxLag`; unset, 1 MiB — or 0 in durable mode, where a write
/// is acknowledged once one replica holds it: a candidate behind the last
/// offset known on the primary (sampled every pass, and the new primary's
/// offset from its promotion on) may lack acknowledged writes, so the
/// failover waits for the member holding them instead.
fn max_lag(f: &FailoverSpec, durability: Option<&RedisDurability>) -> i64 {
    let default = if durability.is_some() {
        0
    } else {
        DEFAULT_MAX_LAG
    };
    f.max_lag.unwrap_or(default).max(0)
}

fn pod_name(members: &[MemberView], ordinal: i32) -> String {
    members
        .iter()
        .find(|m| m.ordinal == ordinal)
        .map(|m| m.pod.clone())
        .unwrap_or_else(|| format!("ordinal {ordinal}"))
}

/// The member a replica replicates from, if it is one of ours.
fn source_of(n: &NodeInfo, members: &[MemberView]) -> Option<i32> {
    let (h, p) = n.master.as_ref()?;
    members
        .iter()
        .find(|m| m.is_addressed_by(h, *p))
        .map(|m| m.ordinal)
}

/// Report `st` as the primary when `n` shows a writable primary (used right
/// after a promotion, from a fresh observation).
pub fn confirm_primary(st: &mut MemberStatus, n: &NodeInfo) {
    if n.role == ServerRole::Master && !n.loading {
        st.role = MemberRole::Primary;
        st.reachable = true;
        st.source = None;
        st.link_up = None;
        st.lag = None;
        st.offset = Some(n.offset);
        st.message = None;
    }
}

/// A replication candidate.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Candidate {
    pub ordinal: i32,
    /// Its replication ID (the recorded primary's history).
    pub replid: String,
    pub offset: i64,
    pub keys: i64,
}

/// Pick the reachable member (other than `exclude`) with the highest offset on
/// the recorded primary's replication history (on a tie `prefer`, e.g. the
/// desired primary, then the lowest ordinal); refuse when it is missing more
/// than `max_lag` bytes of what the primary was last seen at.
pub fn choose_candidate(
    members: &[MemberView],
    exclude: i32,
    position: Option<&str>,
    max_lag: i64,
    prefer: Option<i32>,
) -> Result<Candidate, String> {
    let (lineage, last_offset) = position.map(parse_position).unwrap_or((None, None));
    let best = members
        .iter()
        .filter(|m| m.ordinal != exclude)
        .filter_map(|m| m.node().map(|n| (m, n)))
        .filter(|(_, n)| !n.loading && !n.sync_in_progress)
        .filter(|(_, n)| match lineage {
            Some(id) => n.replid == id || n.replid2 == id,
            None => true,
        })
        .max_by(|(a, an), (b, bn)| {
            an.offset
                .cmp(&bn.offset)
                .then((prefer == Some(a.ordinal)).cmp(&(prefer == Some(b.ordinal))))
                .then(b.ordinal.cmp(&a.ordinal))
        });
    let Some((m, n)) = best else {
        return Err("no reachable member holds the primary's replication history".to_string());
    };
    if let Some(last) = last_offset {
        let behind = last - n.offset;
        if behind > max_lag {
            return Err(format!(
                "the most advanced candidate {} is {behind} bytes behind the last position seen on the primary (maxLag {max_lag})",
                m.pod
            ));
        }
    }
    Ok(Candidate {
        ordinal: m.ordinal,
        replid: n.replid.clone(),
        offset: n.offset,
        keys: n.keys,
    })
}

/// What to do with a recorded primary that restarted and came back read-only.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Returned {
    /// It holds its data: make it writable again, same term.
    PromoteBack,
    /// It came back without (all) its data: promote this replica instead.
    FailOver(Candidate, String),
    /// It came back without its data and no replica may replace it.
    Refuse(String),
}

/// Decide about a returned primary `n` (not loading).
///
/// A primary that restarted from its RDB keeps its replication ID and
/// offset: it is compared with the replicas on the recorded history. One
/// that restarted from its AOF (`appendonly yes`, what Ordinal renders)
/// comes back with a fresh replication ID and offset 0: what it holds
/// cannot be placed on the history, and after a node crash it may lack its
/// last unsynced second of updates (`appendfsync everysec`) that replicas
/// hold — with the same key count when the workload updates keys. The
/// evidence that survives is the replicas' offsets on the recorded history
/// (`position`, the persisted last-known `<replid>:<offset>`): when one
/// holds that history within `max_lag` of the last known offset it is
/// promoted (it holds every write any replica acknowledged); the returned
/// primary is made writable again only when no replica may replace it.
pub fn returned_decision(
    members: &[MemberView],
    primary: i32,
    n: &NodeInfo,
    position: Option<&str>,
    max_lag: i64,
    prefer: Option<i32>,
) -> Returned {
    let others_hold_data = members
        .iter()
        .filter(|m| m.ordinal != primary)
        .filter_map(|m| m.node())
        .any(|o| o.keys > 0);
    let best = choose_candidate(members, primary, position, max_lag, prefer);
    if n.keys == 0 {
        if !others_hold_data {
            return Returned::PromoteBack;
        }
        return match best {
            Ok(c) => Returned::FailOver(c, "the primary restarted without its data".to_string()),
            Err(why) => Returned::Refuse(format!(
                "the primary restarted without its data and cannot be replaced: {why}"
            )),
        };
    }
    let Ok(c) = best else {
        return Returned::PromoteBack;
    };
    let lineage = position.and_then(|p| parse_position(p).0);
    let comparable = lineage.is_some_and(|id| n.replid == id || n.replid2 == id);
    if comparable {
        if n.offset + max_lag >= c.offset {
            return Returned::PromoteBack;
        }
        return Returned::FailOver(
            c.clone(),
            format!(
                "the primary restarted at offset {} behind replica offset {}",
                n.offset, c.offset
            ),
        );
    }
    let last = position
        .and_then(|p| parse_position(p).1)
        .map(|o| format!(" (last known primary offset {o})"))
        .unwrap_or_default();
    Returned::FailOver(
        c.clone(),
        format!(
            "the primary restarted without its replication history (an AOF restart), so its {} keys cannot be shown to hold what the replicas hold; the most advanced replica holds offset {} of that history{last}",
            n.keys, c.offset
        ),
    )
}

/// Reachable members other than `primary` that are not replicas of it.
fn misplaced(members: &[MemberView], primary: i32) -> Vec<i32> {
    members
        .iter()
        .filter(|m| m.ordinal != primary)
        .filter_map(|m| m.node().map(|n| (m, n)))
        .filter(|(_, n)| !(n.role == ServerRole::Replica && source_of(n, members) == Some(primary)))
        .map(|(m, _)| m.ordinal)
        .collect()
}

/// Events for a `Replicate` batch: `Fenced` for members that claimed primary,
/// `Repointed` for the others.
fn replicate_events(members: &[MemberView], ordinals: &[i32], primary: i32) -> Vec<EngineEvent> {
    let target = pod_name(members, primary);
    ordinals
        .iter()
        .filter_map(|o| members.iter().find(|m| m.ordinal == *o))
        .map(|m| match m.node().map(|n| n.role) {
            Some(ServerRole::Master) => event(
                EventType::Warning,
                "Fenced",
                format!("{} claimed to be a primary but {target} is the primary; made it a replica of {target}", m.pod),
            ),
            _ => event(
                EventType::Normal,
                "Repointed",
                format!("{} now replicates from the primary {target}", m.pod),
            ),
        })
        .collect()
}

struct Planner<'a> {
    input: &'a PlanInput<'a>,
    plan: Plan,
    /// False while a failed switchover waits before its retry.
    allow_switchover: bool,
    /// The recorded primary does not answer the operator but its replicas
    /// still receive its stream: it is reported `Primary` (keeps its label).
    vouched_primary: bool,
    /// The recorded primary is being fenced: never reported `Primary`.
    withhold_primary: bool,
}

/// Plan one pass.
pub fn plan(input: &PlanInput<'_>) -> Plan {
    let mut p = Planner {
        input,
        plan: Plan {
            state: input.state.clone(),
            fallback: input.state.clone(),
            step: None,
            step_events: Vec::new(),
            settings: Vec::new(),
            members: Vec::new(),
            health: Health::Healthy,
            events: Vec::new(),
            requeue: input.timing.steady,
            isolate: Vec::new(),
            step_is_fence: false,
        },
        allow_switchover: true,
        vouched_primary: false,
        withhold_primary: false,
    };
    if let Some(op) = input.state.operation.clone() {
        p.operation(op);
    } else if let Some(primary) = input.state.primary {
        p.steady(primary);
    } else {
        p.adoption();
    }
    p.finish()
}

impl<'a> Planner<'a> {
    fn members(&self) -> &'a [MemberView] {
        self.input.members
    }

    fn member(&self, ordinal: i32) -> Option<&'a MemberView> {
        self.input.members.iter().find(|m| m.ordinal == ordinal)
    }

    fn pod(&self, ordinal: i32) -> String {
        pod_name(self.input.members, ordinal)
    }

    fn now(&self) -> Time {
        to_time(self.input.now)
    }

    /// Promote `ordinal`, with the durability settings in the same step.
    pub(super) fn promote_action(&self, ordinal: i32) -> Action {
        Action::Promote {
            ordinal,
            durability: self.input.durability.map(MinReplicas::of),
        }
    }

    /// Record the primary's position and identity in both states.
    fn record_primary(&mut self, n: &NodeInfo) {
        for s in [&mut self.plan.state, &mut self.plan.fallback] {
            s.primary_unhealthy_since = None;
            s.primary_position = Some(format_position(&n.replid, n.offset));
            s.primary_identity = Some(n.run_id.clone());
        }
    }

    fn steady(&mut self, primary: i32) {
        let pm = self.member(primary).cloned();
        if let Some(n) = pm.as_ref().and_then(|m| m.writable_primary()).cloned() {
            if self.restarted_empty_as_primary(primary, &n) {
                return;
            }
            self.record_primary(&n);
            if n.failover_state != "no-failover" {
                self.foreign_failover(primary);
                return;
            }
            let desired = self
                .input
                .desired_primary
                .filter(|d| *d != primary && self.allow_switchover);
            if let Some(d) = desired {
                match self.start_switchover(primary, d, &n) {
                    Ok(()) => return,
                    Err(why) => {
                        self.plan.health = unhealthy(
                            "SwitchoverBlocked",
                            format!("cannot switch the primary over to {}: {why}", self.pod(d)),
                        );
                    }
                }
            }
            self.repair(primary);
            return;
        }
        // The recorded primary is not a writable primary.
        let returned = pm.as_ref().and_then(|m| {
            let n = m.node()?;
            let self_or_none = match &n.master {
                None => true,
                Some((h, p)) => m.is_addressed_by(h, *p),
            };
            (n.role == ServerRole::Replica && self_or_none).then(|| n.clone())
        });
        if let Some(n) = returned {
            self.returned(primary, &n);
            return;
        }
        if let Some(x) = self.handed_over_to(primary) {
            self.adopt(primary, x);
            return;
        }
        if pm.as_ref().is_some_and(|m| m.obs.is_err()) {
            let seeing = self.replicas_seeing(primary);
            if !seeing.is_empty() {
                self.seen_by_replicas(primary, &seeing);
                return;
            }
        }
        let why = match pm.as_ref().map(|m| &m.obs) {
            None => format!("{} is not a member any more", self.pod(primary)),
            Some(Err(e)) => format!("{} is unreachable: {e}", self.pod(primary)),
            Some(Ok(n)) if n.loading => format!("{} is loading its dataset", self.pod(primary)),
            Some(Ok(_)) => format!(
                "{} is not a writable primary (it replicates from another member)",
                self.pod(primary)
            ),
        };
        let since = self
            .plan
            .state
            .primary_unhealthy_since
            .clone()
            .unwrap_or_else(|| self.now());
        for s in [&mut self.plan.state, &mut self.plan.fallback] {
            s.primary_unhealthy_since = Some(since.clone());
        }
        let elapsed = (self.input.now - from_time(&since)).num_milliseconds();
        let window = i64::from(self.input.failover.detection_seconds.max(1)) * 1000;
        self.plan.requeue = self.input.timing.active;
        if elapsed < window {
            // The next pass right when the window ends, so the failover
            // starts then and not up to a requeue later.
            self.plan.requeue =
                crate::engine::window_requeue(self.input.timing.active, window - elapsed);
            self.plan.health = unhealthy(
                "PrimaryUnavailable",
                format!(
                    "{why}; failover after {}s",
                    self.input.failover.detection_seconds
                ),
            );
            return;
        }
        if !self.input.failover.enabled {
            self.plan.health = unhealthy(
                "FailoverDisabled",
                format!("{why}; automatic failover is disabled"),
            );
            return;
        }
        let position = self.plan.state.primary_position.clone();
        match choose_candidate(
            self.members(),
            primary,
            position.as_deref(),
            max_lag(self.input.failover, self.input.durability),
            self.input.desired_primary,
        ) {
            Ok(c) => self.start_failover(primary, c, format!("{why} for {}s", elapsed / 1000)),
            Err(refusal) => self.refuse(&why, &refusal, elapsed - window),
        }
    }

    /// Replicas (pods) whose link to `primary` is up with traffic at most
    /// [`REPLICA_VIEW_RECENT_SECS`] old.
    pub(super) fn replicas_seeing(&self, primary: i32) -> Vec<String> {
        self.members()
            .iter()
            .filter(|m| m.ordinal != primary)
            .filter(|m| {
                m.node().is_some_and(|n| {
                    n.role == ServerRole::Replica
                        && n.link_up
                        && source_of(n, self.members()) == Some(primary)
                        && n.last_io_secs
                            .is_some_and(|s| s <= REPLICA_VIEW_RECENT_SECS)
                })
            })
            .map(|m| m.pod.clone())
            .collect()
    }

    /// The operator cannot reach `primary` but replicas still receive its
    /// stream: a partition between the operator and the primary, not a lost
    /// primary. It stays the primary (and keeps its label); the detection
    /// window restarts on every such pass, so a failover needs the replicas
    /// to lose it too. The Warning event goes out when the streak starts.
    fn seen_by_replicas(&mut self, primary: i32, seeing: &[String]) {
        let pod = self.pod(primary);
        let now = self.now();
        if self.input.state.primary_unhealthy_since.is_none() {
            self.plan.events.push(event(
                EventType::Warning,
                "PrimaryUnreachableFromOperator",
                format!(
                    "{pod} does not answer the operator but its replicas still receive its replication stream; it stays the primary and no failover starts"
                ),
            ));
        }
        for s in [&mut self.plan.state, &mut self.plan.fallback] {
            s.primary_unhealthy_since = Some(now.clone());
        }
        self.vouched_primary = true;
        self.plan.health = unhealthy(
            "PrimaryUnreachableFromOperator",
            format!(
                "{pod} does not answer the operator, but {} still replicate from it with recent traffic; not failing over",
                seeing.join(", ")
            ),
        );
        self.plan.requeue = self.input.timing.active;
    }

    /// Safety net for a recorded primary that restarted *writable* and empty
    /// (its configuration should have made it boot read-only): while replicas
    /// still hold the data, replace it at once instead of recording it.
    fn restarted_empty_as_primary(&mut self, primary: i32, n: &NodeInfo) -> bool {
        let restarted = self
            .input
            .state
            .primary_identity
            .as_deref()
            .is_some_and(|id| id != n.run_id);
        if !restarted || n.keys > 0 || !self.input.failover.enabled {
            return false;
        }
        let position = self.input.state.primary_position.clone();
        match returned_decision(
            self.members(),
            primary,
            n,
            position.as_deref(),
            max_lag(self.input.failover, self.input.durability),
            self.input.desired_primary,
        ) {
            Returned::FailOver(c, why) => {
                let why = format!(
                    "{} restarted as a writable primary: {why}",
                    self.pod(primary)
                );
                self.plan.events.push(event(
                    EventType::Warning,
                    "PrimaryReturnedWithoutData",
                    why.clone(),
                ));
                self.start_failover(primary, c, why);
                true
            }
            Returned::PromoteBack | Returned::Refuse(_) => false,
        }
    }

    /// Report a refused failover. The condition says so on every pass; the
    /// Warning event goes out when the refusal starts (`refused_ms` is how long
    /// it has lasted) and then every 10 minutes, not on every pass.
    fn refuse(&mut self, why: &str, refusal: &str, refused_ms: i64) {
        self.plan.requeue = self.input.timing.steady;
        let msg = format!("{why}; not failing over: {refusal}");
        let period = 10 * 60 * 1000;
        let steady = i64::try_from(self.input.timing.steady.as_millis()).unwrap_or(1000);
        if refused_ms.rem_euclid(period) < steady.max(1000) {
            self.plan
                .events
                .push(event(EventType::Warning, "FailoverRefused", msg.clone()));
        }
        self.plan.health = unhealthy("FailoverRefused", msg);
    }

    fn returned(&mut self, primary: i32, n: &NodeInfo) {
        let pod = self.pod(primary);
        self.plan.requeue = self.input.timing.active;
        if n.loading {
            self.plan.health = unhealthy(
                "PrimaryLoading",
                format!("{pod} restarted and is loading its dataset"),
            );
            return;
        }
        let position = self.plan.state.primary_position.clone();
        match returned_decision(
            self.members(),
            primary,
            n,
            position.as_deref(),
            max_lag(self.input.failover, self.input.durability),
            self.input.desired_primary,
        ) {
            Returned::PromoteBack => {
                self.plan.step = Some(self.promote_action(primary));
                self.plan.state.primary_unhealthy_since = None;
                self.plan.step_events.push(event(
                    EventType::Normal,
                    "PrimaryRestored",
                    format!(
                        "{pod} restarted with its data ({} keys); made it writable again in term {}",
                        n.keys, self.plan.state.term
                    ),
                ));
                self.plan.health = unhealthy(
                    "PrimaryRestarting",
                    format!("{pod} restarted; making it writable again"),
                );
            }
            Returned::FailOver(c, why) => {
                let why = format!("{pod}: {why}");
                if self.input.failover.enabled {
                    self.plan.events.push(event(
                        EventType::Warning,
                        "PrimaryReturnedWithoutData",
                        why.clone(),
                    ));
                    self.start_failover(primary, c, why);
                } else {
                    self.plan.health = unhealthy(
                        "PrimaryReturnedWithoutData",
                        format!("{why}; automatic failover is disabled, not making it writable"),
                    );
                }
            }
            Returned::Refuse(why) => {
                let since = self
                    .input
                    .state
                    .primary_unhealthy_since
                    .clone()
                    .unwrap_or_else(|| self.now());
                let refused_ms = (self.input.now - from_time(&since)).num_milliseconds();
                for s in [&mut self.plan.state, &mut self.plan.fallback] {
                    s.primary_unhealthy_since = Some(since.clone());
                }
                self.refuse(&pod, &why, refused_ms);
            }
        }
    }

    /// Repoint replicas and fence stray primaries toward `primary`.
    fn repair(&mut self, primary: i32) {
        let wrong = misplaced(self.members(), primary);
        if !wrong.is_empty() {
            self.plan.step_events = replicate_events(self.members(), &wrong, primary);
            self.plan.step = Some(Action::Replicate {
                ordinals: wrong,
                primary,
            });
            self.plan.requeue = self.input.timing.active;
        }
    }

    /// Member statuses, steady health and durability settings from the final state.
    fn finish(mut self) -> Plan {
        let members = self.input.members;
        let primary = self.plan.state.primary;
        let primary_node = primary
            .filter(|_| !self.withhold_primary)
            .and_then(|p| self.member(p))
            .and_then(|m| m.writable_primary());
        let primary_offset = primary_node.map(|n| n.offset);
        let mut problems = Vec::new();
        for m in members {
            let mut st = MemberStatus {
                ordinal: m.ordinal,
                pod: m.pod.clone(),
                ..Default::default()
            };
            match &m.obs {
                Err(e) if self.vouched_primary && Some(m.ordinal) == primary => {
                    // Kept as primary on its replicas' word (see `seen_by_replicas`).
                    st.role = MemberRole::Primary;
                    st.message = Some(format!(
                        "unreachable from the operator ({e}); its replicas still receive its stream"
                    ));
                }
                Err(e) => {
                    st.message = Some(e.clone());
                    problems.push(format!("{} unreachable", m.pod));
                }
                Ok(n) => {
                    st.reachable = true;
                    st.offset = Some(n.offset);
                    st.source = source_of(n, members);
                    if n.role == ServerRole::Replica {
                        st.link_up = Some(n.link_up);
                    }
                    if Some(m.ordinal) == primary {
                        if primary_node.is_some() {
                            st.role = MemberRole::Primary;
                        } else {
                            st.message = Some("recorded primary, not writable".into());
                        }
                    } else if n.role == ServerRole::Replica
                        && st.source.is_some()
                        && st.source == primary
                        && n.link_up
                    {
                        st.role = MemberRole::Replica;
                        st.lag = primary_offset.map(|o| (o - n.offset).max(0));
                    } else {
                        let msg = match (n.role, st.source) {
                            (ServerRole::Master, _) => "claims to be a primary".to_string(),
                            (_, Some(s)) if Some(s) == primary => {
                                "replication link to the primary is down".to_string()
                            }
                            (_, Some(s)) => format!("replicates from {}", pod_name(members, s)),
                            (_, None) => "replicates from an unknown source".to_string(),
                        };
                        problems.push(format!("{} {msg}", m.pod));
                        st.message = Some(msg);
                    }
                }
            }
            self.plan.members.push(st);
        }
        if self.plan.health == Health::Healthy && primary_node.is_some() && !problems.is_empty() {
            self.plan.health = unhealthy("MembersNotReplicating", problems.join("; "));
        }
        // Durability: only the confirmed primary enforces min-replicas-to-write.
        // A member promoted in this pass gets it with its promotion.
        let promoting = match &self.plan.step {
            Some(Action::Promote { ordinal, .. }) => Some(*ordinal),
            _ => None,
        };
        for m in members {
            let Some(n) = m.node() else { continue };
            if Some(m.ordinal) == promoting {
                continue;
            }
            let (to_write, lag) = match (
                Some(m.ordinal) == primary && primary_node.is_some(),
                self.input.durability,
            ) {
                (true, Some(d)) => (
                    i64::from(d.min_replicas_to_write),
                    i64::from(d.min_replicas_max_lag),
                ),
                _ => (0, n.min_replicas.map(|(_, l)| l).unwrap_or(10)),
            };
            if n.min_replicas != Some((to_write, lag)) {
                self.plan.settings.push(Action::SetMinReplicas {
                    ordinal: m.ordinal,
                    to_write,
                    max_lag: lag,
                });
            }
        }
        // Replicas vouch for a live primary only if it pings them often.
        for m in members {
            if let Some(n) = m.node()
                && n.ping_period.is_some_and(|p| p != PING_PERIOD_SECS)
            {
                self.plan.settings.push(Action::SetPingPeriod {
                    ordinal: m.ordinal,
                    secs: PING_PERIOD_SECS,
                });
            }
        }
        self.plan
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::redis::RedisDurability;
    use crate::redis::observe::ListedReplica;

    fn node(role: ServerRole, master: Option<i32>, offset: i64, keys: i64) -> NodeInfo {
        NodeInfo {
            run_id: format!("run-{offset}"),
            role,
            master: master.map(|o| (format!("r-{o}.h"), 6379)),
            link_up: master.is_some(),
            last_io_secs: None,
            sync_in_progress: false,
            offset,
            replid: "A".into(),
            replid2: "0".into(),
            second_offset: -1,
            failover_state: "no-failover".into(),
            replicas: Vec::new(),
            keys,
            loading: false,
            min_replicas: Some((0, 10)),
            ping_period: Some(1),
        }
    }

    fn primary(offset: i64, replicas: &[i32]) -> NodeInfo {
        let mut n = node(ServerRole::Master, None, offset, 10);
        n.replicas = replicas
            .iter()
            .map(|o| ListedReplica {
                ip: format!("r-{o}.h"),
                port: 6379,
                state: "online".into(),
                offset,
            })
            .collect();
        n
    }

    fn replica(of: i32, offset: i64) -> NodeInfo {
        node(ServerRole::Replica, Some(of), offset, 10)
    }

    fn view(ordinal: i32, obs: Option<NodeInfo>) -> MemberView {
        MemberView {
            ordinal,
            pod: format!("r-{ordinal}"),
            dns_name: format!("r-{ordinal}.h"),
            address: Some(format!("10.0.0.{ordinal}")),
            port: 6379,
            obs: obs.ok_or_else(|| "connection refused".to_string()),
            isolated: false,
        }
    }

    fn state(primary: i32, term: i64, position: i64) -> ReplicationState {
        ReplicationState {
            primary: Some(primary),
            term,
            primary_position: Some(format_position("A", position)),
            ..Default::default()
        }
    }

    fn at(secs: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_700_000_000 + secs, 0).unwrap()
    }

    fn run(members: &[MemberView], st: &ReplicationState, now: i64) -> Plan {
        run_with(members, st, now, None, &FailoverSpec::default(), None)
    }

    fn run_with(
        members: &[MemberView],
        st: &ReplicationState,
        now: i64,
        desired: Option<i32>,
        failover: &FailoverSpec,
        durability: Option<&RedisDurability>,
    ) -> Plan {
        plan(&PlanInput {
            members,
            state: st,
            desired_primary: desired,
            failover,
            durability,
            now: at(now),
            timing: Timing {
                steady: Duration::from_secs(1),
                active: Duration::from_millis(200),
                switchover_timeout: Duration::from_secs(10),
                failover_deadline: Duration::from_secs(30),
                switchover_retry: Duration::from_secs(30),
            },
            hint: None,
        })
    }

    fn promote(ordinal: i32) -> Action {
        Action::Promote {
            ordinal,
            durability: None,
        }
    }

    fn reasons(events: &[EngineEvent]) -> Vec<&str> {
        events.iter().map(|e| e.reason.as_str()).collect()
    }

    /// A member booted as a replica of itself with `keys` keys after a
    /// restart (fresh replication id: histories are not comparable).
    fn held(ordinal: i32, keys: i64) -> NodeInfo {
        let mut n = node(ServerRole::Replica, Some(ordinal), 0, keys);
        n.link_up = false;
        n.replid = format!("fresh-{ordinal}");
        n
    }

    fn run_hinted(
        members: &[MemberView],
        st: &ReplicationState,
        desired: Option<i32>,
        hint: Option<PrimaryHint>,
    ) -> Plan {
        let mut p = PlanInput {
            members,
            state: st,
            desired_primary: desired,
            failover: &FailoverSpec::default(),
            durability: None,
            now: at(0),
            timing: Timing {
                steady: Duration::from_secs(1),
                active: Duration::from_millis(200),
                switchover_timeout: Duration::from_secs(10),
                failover_deadline: Duration::from_secs(30),
                switchover_retry: Duration::from_secs(30),
            },
            hint: None,
        };
        p.hint = hint;
        plan(&p)
    }

    #[test]
    fn adoption_promotes_a_full_member_never_the_empty_ordinal_zero() {
        let members = [
            view(0, Some(held(0, 0))),
            view(1, Some(held(1, 2000))),
            view(2, Some(held(2, 2000))),
        ];
        let none = ReplicationState::default();
        let p = run(&members, &none, 0);
        assert_eq!(p.step, Some(promote(1)));
        assert_eq!(p.state.primary, Some(1));
        assert_eq!(p.state.term, 1);
        assert_eq!(
            p.fallback.primary, None,
            "nothing recorded if the promotion fails"
        );
        assert_eq!(reasons(&p.step_events), ["Adopted"]);
        assert!(
            p.step_events[0]
                .note
                .contains("histories are not comparable")
        );
        assert!(matches!(&p.health, Health::Unknown { reason, .. } if reason == "Adopting"));
        // The hint breaks the tie between equally complete members...
        let hint = |primary, term| Some(PrimaryHint { primary, term });
        let p = run_hinted(&members, &none, None, hint(2, 7));
        assert_eq!(p.step, Some(promote(2)));
        assert_eq!(p.state.term, 7);
        // ...but never outweighs data.
        let p = run_hinted(&members, &none, Some(0), hint(0, 7));
        assert_eq!(p.step, Some(promote(1)));
        assert_eq!(p.state.term, 8);
        // Fewer keys, histories not comparable: the fuller member wins.
        let members = [view(0, Some(held(0, 1990))), view(1, Some(held(1, 2000)))];
        assert_eq!(run(&members, &none, 0).step, Some(promote(1)));
    }

    #[test]
    fn adoption_waits_for_every_member() {
        let members = [view(0, Some(held(0, 0))), view(1, None)];
        let p = run(&members, &ReplicationState::default(), 0);
        assert!(p.step.is_none());
        assert_eq!(p.state.primary, None);
        assert!(
            matches!(&p.health, Health::Unknown { reason, message } if reason == "WaitingForMembers" && message.contains("r-1"))
        );
        assert!(p.members.iter().all(|m| m.role == MemberRole::Unknown));
        let mut loading = held(1, 5);
        loading.loading = true;
        let members = [view(0, Some(held(0, 0))), view(1, Some(loading))];
        let p = run(&members, &ReplicationState::default(), 0);
        assert!(p.step.is_none());
        // Bounded: past the patience the wait is reported as a problem.
        let members = [view(0, Some(held(0, 0))), view(1, None)];
        let st = p.state.clone();
        let q = run(&members, &st, 301);
        assert!(
            matches!(&q.health, Health::Unhealthy { reason, .. } if reason == "WaitingForMembers")
        );
        assert_eq!(reasons(&q.events), ["WaitingForMembers"]);
    }

    #[test]
    fn only_an_all_empty_cluster_bootstraps_from_ordinal_zero_or_the_desired_member() {
        let members = [
            view(0, Some(held(0, 0))),
            view(1, Some(held(1, 0))),
            view(2, Some(held(2, 0))),
        ];
        let p = run(&members, &ReplicationState::default(), 0);
        assert_eq!(p.step, Some(promote(0)));
        assert_eq!(reasons(&p.step_events), ["Bootstrapped"]);
        let p = run_hinted(&members, &ReplicationState::default(), Some(2), None);
        assert_eq!(p.step, Some(promote(2)));
    }

    #[test]
    fn diverged_members_are_refused_and_nothing_is_touched() {
        // 1 was promoted from A at offset 100 and wrote on; 0 kept writing on A.
        let mut promoted = node(ServerRole::Replica, Some(1), 150, 10);
        promoted.replid = "B".into();
        promoted.replid2 = "A".into();
        promoted.second_offset = 101;
        let mut old = node(ServerRole::Replica, Some(0), 130, 12);
        old.replid = "A".into();
        let members = [view(0, Some(old.clone())), view(1, Some(promoted.clone()))];
        assert_eq!(containment(&promoted, &old), Containment::Lacks);
        assert_eq!(containment(&old, &promoted), Containment::Lacks);
        let p = run(&members, &ReplicationState::default(), 0);
        assert!(p.step.is_none());
        assert_eq!(p.state.primary, None);
        assert!(
            matches!(&p.health, Health::Unhealthy { reason, .. } if reason == "AdoptionRefused")
        );
        assert_eq!(reasons(&p.events), ["AdoptionRefused"]);
        // Had 0 stopped before the fork, 1 holds everything.
        old.offset = 100;
        assert_eq!(containment(&promoted, &old), Containment::Holds);
        let members = [view(0, Some(old)), view(1, Some(promoted))];
        assert_eq!(
            run(&members, &ReplicationState::default(), 0).step,
            Some(promote(1))
        );
    }

    #[test]
    fn a_lost_status_adopts_the_running_primary_in_place() {
        // Replica 1 was sampled after the primary took more writes: it still
        // holds only a prefix of its source.
        let members = [
            view(0, Some(primary(100, &[1, 2]))),
            view(1, Some(replica(0, 120))),
            view(2, Some(replica(0, 90))),
        ];
        let p = run_hinted(
            &members,
            &ReplicationState::default(),
            Some(2),
            Some(PrimaryHint {
                primary: 0,
                term: 4,
            }),
        );
        assert!(p.step.is_none(), "already writable: nothing to do");
        assert_eq!((p.state.primary, p.state.term), (Some(0), 4));
        assert_eq!(p.fallback.primary, Some(0));
        assert_eq!(p.members[0].role, MemberRole::Primary);
        assert_eq!(p.members[1].role, MemberRole::Replica);
        assert_eq!(reasons(&p.events), ["Adopted"]);
        // A writable member that is not the one adopted is fenced first.
        let mut stray = primary(0, &[]);
        stray.keys = 0;
        stray.replid = "stray".into();
        let members = [view(0, Some(stray)), view(1, Some(held(1, 2000)))];
        let p = run(&members, &ReplicationState::default(), 0);
        assert_eq!(
            p.step,
            Some(Action::Replicate {
                ordinals: vec![0],
                primary: 1
            })
        );
        assert_eq!(p.state.primary, None);
    }

    #[test]
    fn steady_cluster_is_healthy_and_untouched() {
        let members = [
            view(0, Some(primary(100, &[1, 2]))),
            view(1, Some(replica(0, 100))),
            view(2, Some(replica(0, 90))),
        ];
        let p = run(&members, &state(0, 1, 80), 0);
        assert_eq!(p.health, Health::Healthy);
        assert!(p.step.is_none());
        assert!(p.settings.is_empty());
        let roles: Vec<_> = p.members.iter().map(|m| m.role).collect();
        assert_eq!(
            roles,
            [
                MemberRole::Primary,
                MemberRole::Replica,
                MemberRole::Replica
            ]
        );
        assert_eq!(p.members[2].lag, Some(10));
        assert_eq!(p.state.primary_position.as_deref(), Some("A:100"));
        assert_eq!(p.state.primary_identity.as_deref(), Some("run-100"));
    }

    #[test]
    fn stray_primary_is_fenced_and_wrong_replica_repointed_in_one_batch() {
        let members = [
            view(0, Some(primary(100, &[]))),
            view(1, Some(node(ServerRole::Master, None, 3, 1))),
            view(2, Some(replica(1, 3))),
        ];
        let p = run(&members, &state(0, 1, 100), 0);
        assert_eq!(
            p.step,
            Some(Action::Replicate {
                ordinals: vec![1, 2],
                primary: 0
            })
        );
        assert_eq!(reasons(&p.step_events), ["Fenced", "Repointed"]);
        assert_eq!(p.members[1].role, MemberRole::Unknown);
        assert!(matches!(p.health, Health::Unhealthy { .. }));
    }

    #[test]
    fn lost_primary_waits_for_the_window_then_promotes_the_most_advanced_replica() {
        let members = [
            view(0, None),
            view(1, Some(replica(0, 90))),
            view(2, Some(replica(0, 100))),
        ];
        let p = run(&members, &state(0, 1, 100), 0);
        assert!(p.step.is_none());
        assert_eq!(p.state.primary_unhealthy_since, Some(to_time(at(0))));
        assert_eq!(p.state.primary, Some(0));
        assert!(
            matches!(&p.health, Health::Unhealthy { reason, .. } if reason == "PrimaryUnavailable")
        );

        let p = run(&members, &p.state, 4);
        assert!(p.step.is_none());

        // The old primary does not answer: it must be isolated first, and
        // its replicas stop following it before a candidate is chosen.
        let p = run(&members, &p.state, 5);
        assert_eq!(
            p.step,
            Some(Action::Detach {
                ordinals: vec![1, 2]
            }),
            "no promotion before the fence and the freeze"
        );
        assert_eq!(reasons(&p.step_events), ["ReplicasFrozen"]);
        assert_eq!(p.isolate, [0]);
        assert_eq!(p.state.primary, Some(0));
        assert_eq!(p.state.term, 1);
        let op = p.state.operation.as_ref().unwrap();
        assert_eq!(
            (op.kind, op.from, op.to, op.step.as_str(), op.term),
            (OperationKind::Failover, 0, Some(2), STEP_FREEZE, 2)
        );
        assert_eq!(p.fallback.operation, p.state.operation);
        assert!(p.members.iter().all(|m| m.role != MemberRole::Primary));
        let frozen = [
            view(0, None),
            view(1, Some(held_at(1, 90))),
            view(2, Some(held_at(2, 100))),
        ];
        let q = run(&frozen, &p.state, 6);
        assert!(q.step.is_none());
        assert_eq!(q.isolate, [0], "asked again until isolated");

        let mut isolated = frozen.clone();
        isolated[0].isolated = true;
        let p = run(&isolated, &p.state, 7);
        assert_eq!(p.step, Some(promote(2)));
        assert!(p.isolate.is_empty());
        assert_eq!(p.state.primary, Some(2));
        assert_eq!(p.state.term, 2);
        let op = p.state.operation.as_ref().unwrap();
        assert_eq!(
            (op.kind, op.from, op.to, op.step.as_str()),
            (OperationKind::Failover, 0, Some(2), STEP_REPOINT)
        );
        assert_eq!(reasons(&p.step_events), ["Promoted"]);
        // If the promotion fails the failover waits in its fence step.
        assert_eq!(p.fallback.primary, Some(0));
        assert_eq!(
            p.fallback.operation.as_ref().map(|o| o.step.as_str()),
            Some(STEP_AWAIT_ISOLATION)
        );
    }

    #[test]
    fn a_primary_its_replicas_still_hear_is_not_failed_over() {
        let seeing = |of: i32, offset: i64, io: i64| {
            let mut n = replica(of, offset);
            n.last_io_secs = Some(io);
            n
        };
        let members = [
            view(0, None),
            view(1, Some(seeing(0, 100, 1))),
            view(2, Some(seeing(0, 100, 0))),
        ];
        let mut st = state(0, 1, 100);
        let mut events = Vec::new();
        for t in [0, 5, 10, 60] {
            let p = run(&members, &st, t);
            assert!(p.step.is_none());
            assert!(p.state.operation.is_none());
            assert!(p.isolate.is_empty());
            assert_eq!(p.state.primary, Some(0));
            assert!(
                matches!(&p.health, Health::Unhealthy { reason, .. } if reason == "PrimaryUnreachableFromOperator")
            );
            assert_eq!(p.members[0].role, MemberRole::Primary, "keeps its label");
            assert_eq!(p.members[1].role, MemberRole::Replica);
            events.extend(p.events.clone());
            st = p.state;
        }
        assert_eq!(reasons(&events), ["PrimaryUnreachableFromOperator"]);
        assert_eq!(events[0].type_, EventType::Warning);
        // Once the replicas stop hearing from it, the detection window starts.
        let members = [
            view(0, None),
            view(1, Some(seeing(0, 100, 4))),
            view(2, Some(replica(0, 100))),
        ];
        let p = run(&members, &st, 61);
        assert!(p.state.operation.is_none(), "the window restarted at 60");
        assert!(
            matches!(&p.health, Health::Unhealthy { reason, .. } if reason == "PrimaryUnavailable")
        );
        let p = run(&members, &p.state, 66);
        assert!(p.state.operation.is_some());
        // A primary that answers but is not writable is not vouched for.
        let mut loading = primary(100, &[]);
        loading.loading = true;
        let members = [view(0, Some(loading)), view(1, Some(seeing(0, 100, 0)))];
        let p = run(&members, &state(0, 1, 100), 0);
        assert!(
            matches!(&p.health, Health::Unhealthy { reason, .. } if reason == "PrimaryUnavailable")
        );
    }

    fn awaiting_isolation() -> ReplicationState {
        let mut st = state(0, 1, 100);
        st.primary_identity = Some("run-100".into());
        st.primary_unhealthy_since = Some(to_time(at(0)));
        st.operation = Some(Operation {
            kind: OperationKind::Failover,
            from: 0,
            to: Some(1),
            step: STEP_AWAIT_ISOLATION.into(),
            term: 2,
            started_at: to_time(at(5)),
            deadline: Some(to_time(at(35))),
            reason: "test".into(),
            data: None,
        });
        st
    }

    #[test]
    fn a_failover_whose_old_primary_cannot_be_fenced_is_abandoned_at_its_deadline() {
        let members = [view(0, None), view(1, Some(replica(0, 100)))];
        let p = run(&members, &awaiting_isolation(), 20);
        assert_eq!(p.step, Some(Action::Detach { ordinals: vec![1] }));
        assert_eq!(p.isolate, [0]);
        let members = [view(0, None), view(1, Some(held_at(1, 100)))];
        let p = run(&members, &awaiting_isolation(), 21);
        assert!(p.step.is_none());
        assert_eq!(p.isolate, [0]);
        let p = run(&members, &awaiting_isolation(), 36);
        assert!(p.step.is_none());
        assert!(p.state.operation.is_none());
        assert_eq!(p.state.primary, Some(0));
        assert_eq!(p.state.term, 1);
        assert!(matches!(&p.health, Health::Unhealthy { reason, .. } if reason == "FenceFailed"));
        assert_eq!(reasons(&p.events), ["FenceFailed"]);
    }

    #[test]
    fn an_old_primary_that_answers_during_the_failover_is_fenced_or_kept() {
        // The same process, writable with its data: the failover is cancelled.
        let members = [
            view(0, Some(primary(100, &[1]))),
            view(1, Some(replica(0, 100))),
        ];
        let p = run(&members, &awaiting_isolation(), 10);
        assert!(p.state.operation.is_none());
        assert_eq!(p.state.primary, Some(0));
        assert!(reasons(&p.events).contains(&"FailoverCancelled"));
        assert_eq!(p.members[0].role, MemberRole::Primary);
        // Another process answering writable: fenced (REPLICAOF) first.
        let mut other = primary(0, &[]);
        other.run_id = "other".into();
        other.keys = 0;
        let members = [view(0, Some(other)), view(1, Some(replica(0, 100)))];
        let p = run(&members, &awaiting_isolation(), 10);
        assert_eq!(
            p.step,
            Some(Action::Replicate {
                ordinals: vec![0],
                primary: 1
            })
        );
        assert!(p.step_is_fence);
        assert_eq!(
            p.state.operation.as_ref().map(|o| o.step.as_str()),
            Some(STEP_FENCE)
        );
        assert_eq!(p.fallback.operation, p.state.operation);
        assert_eq!(
            p.members[0].role,
            MemberRole::Unknown,
            "never reported primary"
        );
        // Once it answers read-only (a replica of the candidate, which is a
        // replica itself: no link, no stream), the candidate is promoted.
        let members = [view(0, Some(fenced(1))), view(1, Some(replica(0, 100)))];
        let q = run(&members, &p.state, 11);
        assert_eq!(q.step, Some(promote(1)));
        assert_eq!(q.state.term, 2);
    }

    #[test]
    fn failover_is_refused_when_the_best_candidate_is_too_far_behind() {
        let members = [view(0, None), view(1, Some(replica(0, 100)))];
        let failover = FailoverSpec {
            max_lag: Some(10),
            ..Default::default()
        };
        let mut st = state(0, 1, 200);
        st.primary_unhealthy_since = Some(to_time(at(0)));
        let p = run_with(&members, &st, 5, None, &failover, None);
        assert!(p.step.is_none());
        assert_eq!(p.state.primary, Some(0));
        assert!(
            matches!(&p.health, Health::Unhealthy { reason, message } if reason == "FailoverRefused" && message.contains("100 bytes behind"))
        );
        assert_eq!(reasons(&p.events), ["FailoverRefused"]);
        assert_eq!(p.events[0].type_, EventType::Warning);
        // Reported on every pass, but the event is not repeated every pass.
        let later = run_with(&members, &p.state, 30, None, &failover, None);
        assert!(later.events.is_empty());
        assert!(
            matches!(&later.health, Health::Unhealthy { reason, .. } if reason == "FailoverRefused")
        );
        // Within maxLag it goes ahead.
        let failover = FailoverSpec {
            max_lag: Some(100),
            ..Default::default()
        };
        let p = run_with(&members, &st, 10, None, &failover, None);
        assert_eq!(p.state.operation.as_ref().and_then(|o| o.to), Some(1));
        assert_eq!(p.isolate, [0]);
    }

    #[test]
    fn disabled_failover_only_reports() {
        let members = [view(0, None), view(1, Some(replica(0, 100)))];
        let failover = FailoverSpec {
            enabled: false,
            ..Default::default()
        };
        let mut st = state(0, 1, 100);
        st.primary_unhealthy_since = Some(to_time(at(0)));
        let p = run_with(&members, &st, 60, None, &failover, None);
        assert!(p.step.is_none());
        assert!(
            matches!(&p.health, Health::Unhealthy { reason, .. } if reason == "FailoverDisabled")
        );
    }

    #[test]
    fn candidates_must_share_the_primary_history() {
        let mut stranger = replica(0, 500);
        stranger.replid = "B".into();
        let members = [
            view(0, None),
            view(1, Some(stranger)),
            view(2, Some(replica(0, 90))),
        ];
        let c = choose_candidate(&members, 0, Some("A:100"), 1000, None).unwrap();
        assert_eq!(c.ordinal, 2);
        let members = [
            view(0, None),
            view(1, Some(members[1].obs.clone().unwrap())),
        ];
        assert!(choose_candidate(&members, 0, Some("A:100"), 1000, None).is_err());
        // A member already promoted (replid2 = old history) still counts.
        let mut promoted = node(ServerRole::Master, None, 120, 10);
        promoted.replid = "C".into();
        promoted.replid2 = "A".into();
        let members = [
            view(0, None),
            view(1, Some(promoted)),
            view(2, Some(replica(0, 100))),
        ];
        assert_eq!(
            choose_candidate(&members, 0, Some("A:100"), 0, None)
                .unwrap()
                .ordinal,
            1
        );
    }

    #[test]
    fn ties_go_to_the_desired_primary_then_the_lowest_ordinal() {
        let members = [
            view(0, None),
            view(1, Some(replica(0, 100))),
            view(2, Some(replica(0, 100))),
        ];
        let pick = |prefer| choose_candidate(&members, 0, Some("A:100"), 0, prefer).unwrap();
        assert_eq!(pick(None).ordinal, 1);
        assert_eq!(pick(Some(2)).ordinal, 2);
        // Never at the cost of data.
        let members = [
            view(0, None),
            view(1, Some(replica(0, 100))),
            view(2, Some(replica(0, 99))),
        ];
        let c = choose_candidate(&members, 0, Some("A:100"), 10, Some(2)).unwrap();
        assert_eq!(c.ordinal, 1);
    }

    #[test]
    fn nobody_is_fenced_or_repointed_while_the_primary_is_being_judged() {
        let members = [
            view(0, None),
            view(1, Some(node(ServerRole::Master, None, 100, 10))),
            view(2, Some(replica(1, 100))),
        ];
        let p = run(&members, &state(0, 1, 100), 0);
        assert!(p.step.is_none());
        assert!(p.settings.is_empty());
        assert!(p.members.iter().all(|m| m.role == MemberRole::Unknown));
    }

    #[test]
    fn a_handover_that_already_happened_is_adopted_at_once() {
        let mut new_primary = primary(120, &[0]);
        new_primary.replid = "B".into();
        new_primary.replid2 = "A".into();
        let members = [
            view(0, Some(replica(1, 120))),
            view(1, Some(new_primary.clone())),
            view(2, Some(replica(0, 100))),
        ];
        let p = run(&members, &state(0, 1, 100), 0);
        assert_eq!(p.state.primary, Some(1));
        assert_eq!(p.state.term, 2);
        assert_eq!(
            p.step,
            Some(Action::Replicate {
                ordinals: vec![2],
                primary: 1
            })
        );
        assert!(reasons(&p.events).contains(&"PrimaryAdopted"));
        assert_eq!(p.state.primary_position.as_deref(), Some("B:120"));
        // A primary elsewhere on another history is not adopted.
        let mut stranger = new_primary;
        stranger.replid2 = "Z".into();
        let members = [view(0, Some(replica(1, 120))), view(1, Some(stranger))];
        let p = run(&members, &state(0, 1, 100), 0);
        assert_eq!(p.state.primary, Some(0));
        assert!(p.step.is_none());
    }

    #[test]
    fn a_failover_nobody_recorded_is_awaited_then_aborted() {
        let mut busy = primary(100, &[1]);
        busy.failover_state = "waiting-for-sync".into();
        let members = [view(0, Some(busy)), view(1, Some(replica(0, 90)))];
        let p = run_with(
            &members,
            &state(0, 1, 100),
            0,
            Some(1),
            &FailoverSpec::default(),
            None,
        );
        assert!(p.step.is_none(), "no second FAILOVER");
        assert!(
            matches!(&p.health, Health::Unhealthy { reason, .. } if reason == "SwitchoverInProgress")
        );
        assert_eq!(p.members[0].role, MemberRole::Primary);
        let q = run(&members, &p.state, 10);
        assert!(q.step.is_none());
        let q = run(&members, &p.state, 16);
        assert_eq!(q.step, Some(Action::AbortFailover { primary: 0 }));
    }

    fn returned_primary(keys: i64) -> NodeInfo {
        let mut n = node(ServerRole::Replica, Some(0), 0, keys);
        n.link_up = false;
        n.replid = "fresh".into();
        n.run_id = "new-run".into();
        n
    }

    /// A member replicating from itself (frozen, or booted without a
    /// recorded primary) at `offset` of history "A".
    fn held_at(ordinal: i32, offset: i64) -> NodeInfo {
        let mut n = node(ServerRole::Replica, Some(ordinal), offset, 10);
        n.link_up = false;
        n
    }

    /// A fenced old primary: a replica of `of` whose link is down.
    fn fenced(of: i32) -> NodeInfo {
        let mut n = replica(of, 0);
        n.link_up = false;
        n
    }

    #[test]
    fn returned_primary_with_its_history_is_promoted_back_in_the_same_term() {
        // Restarted from its RDB: replication ID and offset kept.
        let mut rdb = returned_primary(10);
        rdb.replid = "A".into();
        rdb.offset = 100;
        let members = [view(0, Some(rdb)), view(1, Some(replica(0, 100)))];
        let mut st = state(0, 3, 100);
        st.primary_identity = Some("old-run".into());
        let p = run(&members, &st, 0);
        assert_eq!(p.step, Some(promote(0)));
        assert_eq!(p.state.term, 3);
        assert_eq!(p.state.primary, Some(0));
        assert!(p.state.operation.is_none());
        assert_eq!(reasons(&p.step_events), ["PrimaryRestored"]);
        // With durability, the promotion carries it.
        let d = RedisDurability {
            min_replicas_to_write: 1,
            min_replicas_max_lag: 4,
        };
        let p = run_with(&members, &st, 0, None, &FailoverSpec::default(), Some(&d));
        assert_eq!(
            p.step,
            Some(Action::Promote {
                ordinal: 0,
                durability: Some(MinReplicas {
                    to_write: 1,
                    max_lag: 4
                })
            })
        );
        assert!(
            !p.settings
                .iter()
                .any(|a| matches!(a, Action::SetMinReplicas { ordinal: 0, .. })),
            "not reset to 0 in the pass that promotes it: {:?}",
            p.settings
        );
        // Nobody else may replace it (no replica on its history): back too.
        let mut stranger = replica(0, 100);
        stranger.replid = "Z".into();
        let members = [view(0, Some(returned_primary(10))), view(1, Some(stranger))];
        assert_eq!(run(&members, &st, 0).step, Some(promote(0)));
    }

    #[test]
    fn returned_primary_after_an_aof_restart_is_replaced_by_the_replica_holding_the_history() {
        // An AOF restart forgets the replication ID: the same key count
        // (an update-heavy workload) proves nothing about its last updates.
        let members = [
            view(0, Some(returned_primary(10))),
            view(1, Some(replica(0, 90))),
            view(2, Some(replica(0, 100))),
        ];
        let mut st = state(0, 3, 100);
        st.primary_identity = Some("old-run".into());
        let p = run(&members, &st, 0);
        assert_eq!(p.step, Some(promote(2)), "{:?}", p.health);
        assert_eq!(p.state.term, 4);
        assert_eq!(p.state.primary, Some(2));
        assert!(reasons(&p.events).contains(&"PrimaryReturnedWithoutData"));
        let note = &p.events[0].note;
        assert!(
            note.contains("AOF") && note.contains("offset 100"),
            "{note}"
        );
        // A replica further behind the last known offset than maxLag does
        // not replace it: the returned primary is the best holder left.
        let failover = FailoverSpec {
            max_lag: Some(5),
            ..Default::default()
        };
        let mut st2 = st.clone();
        st2.primary_position = Some(format_position("A", 200));
        let p = run_with(&members, &st2, 0, None, &failover, None);
        assert_eq!(p.step, Some(promote(0)));
    }

    #[test]
    fn returned_empty_primary_is_replaced_at_once_and_never_promoted() {
        let members = [
            view(0, Some(returned_primary(0))),
            view(1, Some(replica(0, 100))),
            view(2, Some(replica(0, 99))),
        ];
        let p = run(&members, &state(0, 1, 100), 0);
        assert_eq!(p.step, Some(promote(1)));
        assert_eq!(p.state.primary, Some(1));
        assert_eq!(p.state.term, 2);
        assert!(reasons(&p.events).contains(&"PrimaryReturnedWithoutData"));
        // With fewer keys than the best replica it is replaced too.
        let members = [
            view(0, Some(returned_primary(3))),
            view(1, Some(replica(0, 100))),
        ];
        assert_eq!(run(&members, &state(0, 1, 100), 0).step, Some(promote(1)));
        // With failover disabled it is left read-only.
        let failover = FailoverSpec {
            enabled: false,
            ..Default::default()
        };
        let p = run_with(&members, &state(0, 1, 100), 0, None, &failover, None);
        assert!(p.step.is_none());
        // Nobody holds data: bring it back.
        let empty = node(ServerRole::Replica, Some(0), 0, 0);
        let members = [view(0, Some(returned_primary(0))), view(1, Some(empty))];
        assert_eq!(run(&members, &state(0, 1, 0), 0).step, Some(promote(0)));
    }

    #[test]
    fn a_primary_that_restarted_writable_and_empty_is_replaced() {
        let mut empty = primary(0, &[]);
        empty.keys = 0;
        empty.replid = "fresh".into();
        empty.run_id = "new-run".into();
        let members = [view(0, Some(empty.clone())), view(1, Some(replica(0, 100)))];
        let mut st = state(0, 1, 100);
        st.primary_identity = Some("old-run".into());
        let p = run(&members, &st, 0);
        // Fenced before anything is promoted.
        assert_eq!(
            p.step,
            Some(Action::Replicate {
                ordinals: vec![0],
                primary: 1
            })
        );
        assert_eq!(p.members[0].role, MemberRole::Unknown);
        let fenced = [view(0, Some(fenced(1))), view(1, Some(replica(0, 100)))];
        let q = run(&fenced, &p.state, 1);
        assert_eq!(q.step, Some(promote(1)));
        assert_eq!(q.state.term, 2);
        // Same process (a FLUSHALL, not a restart): left alone.
        st.primary_identity = Some("new-run".into());
        let p = run(&members, &st, 0);
        assert!(p.step.is_none());
        assert_eq!(p.state.primary, Some(0));
    }

    #[test]
    fn failover_repoint_step_repoints_fences_and_closes_the_operation() {
        let members = [
            view(0, Some(primary(50, &[]))),
            view(1, Some(primary(100, &[]))),
            view(2, Some(replica(0, 50))),
        ];
        let mut st = state(1, 2, 100);
        st.operation = Some(Operation {
            kind: OperationKind::Failover,
            from: 0,
            to: Some(1),
            step: STEP_REPOINT.into(),
            term: 2,
            started_at: to_time(at(0)),
            deadline: Some(to_time(at(30))),
            reason: "test".into(),
            data: None,
        });
        let p = run(&members, &st, 1);
        assert_eq!(
            p.step,
            Some(Action::Replicate {
                ordinals: vec![0, 2],
                primary: 1
            })
        );
        assert!(p.state.operation.is_none());
        assert_eq!(
            p.state.last_failover.as_ref().map(|r| (r.from, r.to)),
            Some((0, 1))
        );
        assert_eq!(
            reasons(&p.step_events),
            ["Fenced", "Repointed", "FailoverCompleted"]
        );
        assert!(p.fallback.operation.is_some());
    }

    #[test]
    fn a_new_primary_lost_before_the_repoint_is_judged_at_once_not_at_the_deadline() {
        let mut st = state(1, 2, 100);
        st.operation = Some(Operation {
            kind: OperationKind::Failover,
            from: 0,
            to: Some(1),
            step: STEP_REPOINT.into(),
            term: 2,
            started_at: to_time(at(0)),
            deadline: Some(to_time(at(30))),
            reason: "test".into(),
            data: None,
        });
        // Killed right after its promotion: the detection window starts now.
        let members = [
            view(0, Some(held_at(0, 50))),
            view(1, None),
            view(2, Some(held_at(2, 100))),
        ];
        let p = run(&members, &st, 1);
        assert!(p.state.operation.is_none());
        assert_eq!(p.state.last_failover.as_ref().map(|r| r.to), Some(1));
        assert_eq!(p.state.primary_unhealthy_since, Some(to_time(at(1))));
        assert!(
            matches!(&p.health, Health::Unhealthy { reason, .. } if reason == "PrimaryUnavailable")
        );
        // Restarted (it boots as a replica of itself): judged as a returned
        // primary in the same pass.
        let mut back = held_at(1, 0);
        back.replid = "fresh".into();
        let members = [
            view(0, Some(held_at(0, 50))),
            view(1, Some(back)),
            view(2, Some(held_at(2, 100))),
        ];
        let p = run(&members, &st, 1);
        assert_eq!(p.step, Some(promote(2)), "{:?}", p.health);
        assert_eq!(p.state.term, 3);
    }

    #[test]
    fn in_durable_mode_a_new_primary_lost_at_once_is_awaited_not_replaced_by_a_replica_behind_it() {
        let members = [
            view(0, Some(held_at(0, 90))),
            view(1, Some(held_at(1, 100))),
            view(2, Some(held_at(2, 80))),
        ];
        let mut st = state(0, 1, 85);
        st.operation = Some(Operation {
            kind: OperationKind::Failover,
            from: 0,
            to: Some(1),
            step: STEP_AWAIT_ISOLATION.into(),
            term: 2,
            started_at: to_time(at(0)),
            deadline: Some(to_time(at(30))),
            reason: "test".into(),
            data: None,
        });
        let mut isolated = members.clone();
        isolated[0].isolated = true;
        let p = run(&isolated, &st, 1);
        assert_eq!(p.step, Some(promote(1)));
        // The new term starts at the promoted member's offset.
        assert_eq!(p.state.primary_position.as_deref(), Some("A:100"));
        // It dies before anyone was repointed at it: r-0 lacks what it held.
        let lost = [
            view(0, Some(held_at(0, 90))),
            view(1, None),
            view(2, Some(held_at(2, 80))),
        ];
        let d = RedisDurability {
            min_replicas_to_write: 1,
            min_replicas_max_lag: 2,
        };
        let f = FailoverSpec::default();
        let mut state = p.state.clone();
        for t in [2, 4, 6] {
            let q = run_with(&lost, &state, t, None, &f, Some(&d));
            state = q.state;
        }
        let q = run_with(&lost, &state, 8, None, &f, Some(&d));
        assert!(q.step.is_none(), "{:?}", q.step);
        assert!(
            matches!(&q.health, Health::Unhealthy { reason, .. } if reason == "FailoverRefused"),
            "{:?}",
            q.health
        );
        // Asynchronous mode accepts the loss up to maxLag and fails over.
        let mut state = p.state.clone();
        for t in [2, 4, 6] {
            state = run_with(&lost, &state, t, None, &f, None).state;
        }
        let q = run_with(&lost, &state, 8, None, &f, None);
        assert!(q.state.operation.is_some(), "{:?}", q.health);
    }

    #[test]
    fn switchover_uses_failover_to_with_the_listed_address_then_repoints() {
        let members = [
            view(0, Some(primary(100, &[1, 2]))),
            view(1, Some(replica(0, 100))),
            view(2, Some(replica(0, 100))),
        ];
        let st = state(0, 1, 100);
        let p = run_with(&members, &st, 0, Some(1), &FailoverSpec::default(), None);
        assert_eq!(
            p.step,
            Some(Action::Failover {
                primary: 0,
                host: "r-1.h".into(),
                port: 6379,
                timeout_ms: 10_000
            })
        );
        let op = p.state.operation.clone().unwrap();
        assert_eq!(
            (op.kind, op.step.as_str(), op.term),
            (OperationKind::Switchover, STEP_AWAIT_FAILOVER, 2)
        );
        assert_eq!(p.state.primary, Some(0));

        // In progress: wait.
        let mut waiting = primary(100, &[1, 2]);
        waiting.failover_state = "waiting-for-sync".into();
        let members2 = [
            view(0, Some(waiting)),
            view(1, Some(replica(0, 90))),
            view(2, Some(replica(0, 100))),
        ];
        let q = run_with(
            &members2,
            &p.state,
            1,
            Some(1),
            &FailoverSpec::default(),
            None,
        );
        assert!(q.step.is_none());
        assert!(q.state.operation.is_some());

        // Done: 1 is primary, 0 replicates from it; 2 gets repointed.
        let members3 = [
            view(0, Some(replica(1, 100))),
            view(1, Some(primary(100, &[0]))),
            view(2, Some(replica(0, 100))),
        ];
        let q = run_with(
            &members3,
            &p.state,
            2,
            Some(1),
            &FailoverSpec::default(),
            None,
        );
        assert_eq!(q.state.primary, Some(1));
        assert_eq!(q.state.term, 2);
        assert_eq!(
            q.step,
            Some(Action::Replicate {
                ordinals: vec![2],
                primary: 1
            })
        );
        assert!(q.state.operation.is_none());
        assert_eq!(q.fallback.primary, Some(1));
        assert_eq!(
            q.fallback.operation.as_ref().map(|o| o.step.as_str()),
            Some(STEP_REPOINT)
        );

        // Timed out inside Redis: the old primary is writable again; the
        // switchover waits before it is retried.
        let f = FailoverSpec::default();
        let q = run_with(&members, &p.state, 3, Some(1), &f, None);
        assert!(reasons(&q.events).contains(&"SwitchoverFailed"));
        let op = q.state.operation.clone().unwrap();
        assert_eq!(op.step, STEP_RETRY_WAIT);
        let r = run_with(&members, &q.state, 10, Some(1), &f, None);
        assert!(r.step.is_none(), "no retry before the deadline");
        assert_eq!(r.state.operation, q.state.operation);
        assert_eq!(r.members[0].role, MemberRole::Primary);
        let r = run_with(&members, &q.state, 40, Some(1), &f, None);
        assert!(
            matches!(r.step, Some(Action::Failover { .. })),
            "retried after the deadline"
        );
        // Request withdrawn: the operation is dropped.
        let r = run_with(&members, &q.state, 10, None, &f, None);
        assert!(r.state.operation.is_none());
        assert!(r.step.is_none());

        // Past our own deadline while Redis still waits: FAILOVER ABORT.
        let q = run_with(
            &members2,
            &p.state,
            60,
            Some(1),
            &FailoverSpec::default(),
            None,
        );
        assert_eq!(q.step, Some(Action::AbortFailover { primary: 0 }));
    }

    #[test]
    fn switchover_waits_for_a_lagging_target_before_pausing_writes() {
        let mut pn = primary(5_000_000, &[1]);
        pn.replicas[0].offset = 100;
        let members = [view(0, Some(pn)), view(1, Some(replica(0, 100)))];
        let f = FailoverSpec::default();
        let p = run_with(&members, &state(0, 1, 100), 0, Some(1), &f, None);
        assert!(p.step.is_none());
        assert!(
            matches!(&p.health, Health::Unhealthy { reason, message } if reason == "SwitchoverBlocked" && message.contains("behind"))
        );
    }

    #[test]
    fn switchover_is_blocked_when_the_primary_does_not_list_the_target() {
        let members = [
            view(0, Some(primary(100, &[2]))),
            view(1, Some(replica(0, 100))),
            view(2, Some(replica(0, 100))),
        ];
        let p = run_with(
            &members,
            &state(0, 1, 100),
            0,
            Some(1),
            &FailoverSpec::default(),
            None,
        );
        assert!(p.step.is_none());
        assert!(
            matches!(&p.health, Health::Unhealthy { reason, .. } if reason == "SwitchoverBlocked")
        );
    }

    #[test]
    fn durability_is_enforced_on_the_primary_only() {
        let mut r1 = replica(0, 100);
        r1.min_replicas = Some((1, 10));
        let members = [view(0, Some(primary(100, &[1]))), view(1, Some(r1))];
        let d = RedisDurability {
            min_replicas_to_write: 1,
            min_replicas_max_lag: 5,
        };
        let p = run_with(
            &members,
            &state(0, 1, 100),
            0,
            None,
            &FailoverSpec::default(),
            Some(&d),
        );
        assert_eq!(
            p.settings,
            [
                Action::SetMinReplicas {
                    ordinal: 0,
                    to_write: 1,
                    max_lag: 5
                },
                Action::SetMinReplicas {
                    ordinal: 1,
                    to_write: 0,
                    max_lag: 10
                },
            ]
        );
    }

    #[test]
    fn a_fresh_observation_confirms_a_promotion() {
        let mut st = MemberStatus {
            ordinal: 1,
            role: MemberRole::Unknown,
            link_up: Some(false),
            ..Default::default()
        };
        confirm_primary(&mut st, &replica(0, 5));
        assert_eq!(st.role, MemberRole::Unknown);
        confirm_primary(&mut st, &primary(5, &[]));
        assert_eq!(st.role, MemberRole::Primary);
        assert_eq!(st.link_up, None);
    }

    #[test]
    fn actions_are_described_for_people() {
        let members = [view(0, None), view(1, None), view(2, None)];
        let a = Action::Replicate {
            ordinals: vec![1, 2],
            primary: 0,
        };
        assert_eq!(a.describe(&members), "REPLICAOF r-0 on r-1, r-2");
        assert_eq!(promote(1).describe(&members), "REPLICAOF NO ONE on r-1");
    }

    #[test]
    fn positions_round_trip() {
        assert_eq!(
            parse_position(&format_position("abc", 42)),
            (Some("abc"), Some(42))
        );
        assert_eq!(parse_position("42"), (None, Some(42)));
    }
}
