//! Pure status computation: phase, conditions, counts. No I/O.

use chrono::{DateTime, Utc};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

use super::conditions::{Cond, ConditionStatus as S, ConditionType as T, Reason};
use crate::api::{
    ClusterPhase, ClusterStatus, MemberRole, MemberStatus, ReplacementStatus, ReplicationState,
    RolloutStatus,
};
use crate::engine::{Health, PrimaryWrites};

/// What happened to the children (ConfigMap, Services, PDB, StatefulSet) in a pass.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum Children {
    /// Not attempted in this pass (spec invalid): the condition is left as it was.
    #[default]
    NotAttempted,
    /// Recently applied from the same inputs: the condition is left as it was.
    Unchanged,
    Applied,
    /// The API server refused one of them; its message.
    Failed(String),
}

/// What one reconcile pass learned, from Kubernetes and from the engine.
#[derive(Clone, Debug, Default)]
pub struct Observation {
    pub generation: Option<i64>,
    pub replicas_existing: i32,
    pub replicas_ready: i32,
    /// Why the spec or its Secret cannot be used, if it cannot.
    pub config_error: Option<String>,
    /// Why the StatefulSet's storage differs from the spec, if it does.
    pub storage_note: Option<String>,
    pub children: Children,
    /// Engine result; None when the engine step did not run.
    pub replication: Option<ReplicationReport>,
    /// sha256 of the credentials in use.
    pub auth_hash: Option<String>,
    /// `Restored` condition while a restore matters.
    pub restore: Option<Cond>,
    /// The rolling update as planned in this pass; None when not planned
    /// (status and condition are left as they were).
    pub rollout: Option<RolloutReport>,
    /// `StorageInSync` as the volume step found it, when the spec's size
    /// outgrew the StatefulSet's template (it then replaces `storage_note`).
    pub volumes: Option<Cond>,
    /// The member replacement; None when not planned (left as it was).
    pub replacement: Option<ReplacementReport>,
    /// The binlog archive: None when not polled (left as it was),
    /// Some(None) when no archiver runs.
    pub binlog_archive: Option<Option<crate::api::BinlogArchiveStatus>>,
}

/// The member replacement's part of the status.
#[derive(Clone, Debug, PartialEq)]
pub struct ReplacementReport {
    pub status: Option<ReplacementStatus>,
    pub condition: Option<Cond>,
}

/// The rolling update's part of the status.
#[derive(Clone, Debug, PartialEq)]
pub struct RolloutReport {
    pub status: Option<RolloutStatus>,
    pub condition: Cond,
}

/// The part of an engine outcome that goes into status.
#[derive(Clone, Debug)]
pub struct ReplicationReport {
    pub state: ReplicationState,
    pub members: Vec<MemberStatus>,
    pub health: Health,
    pub writes: PrimaryWrites,
}

/// Set or update a condition, keeping its transition time when its status is unchanged.
pub fn set_condition(
    conditions: &mut Vec<Condition>,
    type_: &str,
    status: &str,
    reason: &str,
    message: &str,
    generation: Option<i64>,
    now: DateTime<Utc>,
) {
    let next = |last: Option<Time>| Condition {
        type_: type_.to_string(),
        status: status.to_string(),
        reason: reason.to_string(),
        message: message.to_string(),
        observed_generation: generation,
        last_transition_time: last.unwrap_or_else(|| to_time(now)),
    };
    match conditions.iter_mut().find(|c| c.type_ == type_) {
        Some(existing) => {
            let keep = (existing.status == status).then(|| existing.last_transition_time.clone());
            *existing = next(keep);
        }
        None => conditions.push(next(None)),
    }
}

/// Set a typed condition.
pub fn set(conditions: &mut Vec<Condition>, c: &Cond, generation: Option<i64>, now: DateTime<Utc>) {
    set_condition(
        conditions,
        c.type_.as_str(),
        c.status.as_str(),
        c.reason.as_str(),
        &c.message,
        generation,
        now,
    );
}

/// A condition of a status, by type.
pub fn find(status: Option<&ClusterStatus>, type_: T) -> Option<&Condition> {
    status?
        .conditions
        .iter()
        .find(|c| c.type_ == type_.as_str())
}

/// A chrono instant as a Kubernetes `Time` (millisecond precision).
pub fn to_time(t: DateTime<Utc>) -> Time {
    Time(
        k8s_openapi::jiff::Timestamp::from_millisecond(t.timestamp_millis())
            .unwrap_or(k8s_openapi::jiff::Timestamp::UNIX_EPOCH),
    )
}

fn config_condition(obs: &Observation) -> Cond {
    match &obs.config_error {
        Some(msg) => Cond::new(T::ConfigValid, S::False, Reason::InvalidSpec, msg.clone()),
        None => Cond::new(
            T::ConfigValid,
            S::True,
            Reason::Valid,
            "spec and Secret accepted",
        ),
    }
}

fn storage_condition(obs: &Observation) -> Cond {
    if let Some(volumes) = &obs.volumes {
        return volumes.clone();
    }
    match &obs.storage_note {
        Some(msg) => Cond::new(
            T::StorageInSync,
            S::False,
            Reason::ImmutableStorage,
            msg.clone(),
        ),
        None => Cond::new(
            T::StorageInSync,
            S::True,
            Reason::InSync,
            "volume claims match spec.storage",
        ),
    }
}

fn children_condition(children: &Children) -> Option<Cond> {
    match children {
        Children::NotAttempted | Children::Unchanged => None,
        Children::Applied => Some(Cond::new(
            T::Reconciled,
            S::True,
            Reason::Applied,
            "ConfigMap, Services, PodDisruptionBudget and StatefulSet applied",
        )),
        Children::Failed(msg) => Some(Cond::new(
            T::Reconciled,
            S::False,
            Reason::ChildApplyFailed,
            msg.clone(),
        )),
    }
}

fn health_condition(replication: Option<&ReplicationReport>) -> Cond {
    let (status, reason, message) = match replication.map(|r| &r.health) {
        Some(Health::Healthy) => (
            S::True,
            Reason::Replicating,
            "every member replicates from the primary".to_string(),
        ),
        Some(Health::Unhealthy { reason, message }) => {
            (S::False, Reason::Engine(reason.clone()), message.clone())
        }
        Some(Health::Unknown { reason, message }) => {
            (S::Unknown, Reason::Engine(reason.clone()), message.clone())
        }
        None => (
            S::Unknown,
            Reason::NotObserved,
            "replication was not observed in this pass".to_string(),
        ),
    };
    Cond::new(T::ReplicationHealthy, status, reason, message)
}

fn operation_condition(operation: Option<&crate::api::Operation>) -> Cond {
    match operation {
        Some(op) => Cond::new(
            T::FailoverInProgress,
            S::True,
            match op.kind {
                crate::api::OperationKind::Failover => Reason::Failover,
                crate::api::OperationKind::Switchover => Reason::Switchover,
            },
            format!(
                "{:?} from member {} at step {}: {}",
                op.kind, op.from, op.step, op.reason
            ),
        ),
        None => Cond::new(
            T::FailoverInProgress,
            S::False,
            Reason::Idle,
            "no failover or switchover running",
        ),
    }
}

/// Inputs of the `Ready` condition and the phase.
struct Serving<'a> {
    replicas: i32,
    obs: &'a Observation,
    operation: Option<&'a crate::api::Operation>,
    primary: Option<&'a MemberStatus>,
    writes: &'a PrimaryWrites,
    health: &'a Cond,
}

/// `Ready`: the write Service has a primary that accepts writes.
fn ready_condition(s: &Serving<'_>) -> Cond {
    let not = |reason, message: String| Cond::new(T::Ready, S::False, reason, message);
    if let Some(msg) = &s.obs.config_error {
        return not(Reason::InvalidSpec, msg.clone());
    }
    if let Some(op) = s.operation {
        return not(
            operation_condition(Some(op)).reason,
            format!("{:?} in progress at step {}", op.kind, op.step),
        );
    }
    let Some(primary) = s.primary else {
        if let Children::Failed(msg) = &s.obs.children {
            return not(Reason::ChildApplyFailed, msg.clone());
        }
        if s.obs.replicas_ready < s.replicas {
            return not(
                Reason::MembersNotReady,
                format!("{} of {} members ready", s.obs.replicas_ready, s.replicas),
            );
        }
        return not(
            Reason::NoPrimary,
            format!(
                "no member is a confirmed writable primary: {}",
                s.health.message
            ),
        );
    };
    match s.writes {
        PrimaryWrites::Refused { reason, message } => not(
            Reason::Engine(reason.clone()),
            format!("primary {} refuses writes: {message}", primary.pod),
        ),
        PrimaryWrites::Accepted | PrimaryWrites::Unknown => Cond::new(
            T::Ready,
            S::True,
            Reason::PrimaryAcceptsWrites,
            format!(
                "primary {} accepts writes; {} of {} members ready",
                primary.pod, s.obs.replicas_ready, s.replicas
            ),
        ),
    }
}

fn phase(s: &Serving<'_>, recorded_primary: bool) -> ClusterPhase {
    let all_ready = s.replicas > 0
        && s.obs.replicas_ready == s.replicas
        && s.obs.replicas_existing == s.replicas;
    let refused = matches!(s.writes, PrimaryWrites::Refused { .. });
    if s.obs.config_error.is_some() {
        ClusterPhase::Failed
    } else if s.operation.is_some() {
        ClusterPhase::Reconfiguring
    } else if s.obs.replicas_existing == 0 {
        ClusterPhase::Pending
    } else if all_ready && s.health.status == S::True && !refused {
        ClusterPhase::Running
    } else if !recorded_primary {
        ClusterPhase::Provisioning
    } else {
        ClusterPhase::Degraded
    }
}

/// The new status from the previous one and this pass's observation.
pub fn compute(
    previous: Option<&ClusterStatus>,
    replicas: i32,
    obs: &Observation,
    now: DateTime<Utc>,
) -> ClusterStatus {
    let mut status = previous.cloned().unwrap_or_default();
    if let Some(archive) = &obs.binlog_archive {
        status.binlog_archive = archive.clone();
    }
    let generation = obs.generation;
    status.observed_generation = generation;
    status.replicas = obs.replicas_existing;
    status.ready_replicas = obs.replicas_ready;
    if obs.auth_hash.is_some() {
        status.auth_hash = obs.auth_hash.clone();
    }
    if let Some(report) = &obs.replication {
        status.replication = report.state.clone();
        status.members = report.members.clone();
    }
    let health = health_condition(obs.replication.as_ref());
    // An aborted switchover waiting out its cooldown is recorded as an
    // operation so a restarted operator respects it, but nothing is running.
    let operation = status
        .replication
        .operation
        .clone()
        .filter(|op| !op.step.ends_with("Cooldown"));
    let unknown = PrimaryWrites::Unknown;
    let serving = Serving {
        replicas,
        obs,
        operation: operation.as_ref(),
        primary: status
            .members
            .iter()
            .find(|m| m.role == MemberRole::Primary),
        writes: obs.replication.as_ref().map_or(&unknown, |r| &r.writes),
        health: &health,
    };
    let mut next = vec![
        config_condition(obs),
        storage_condition(obs),
        health.clone(),
        operation_condition(operation.as_ref()),
        ready_condition(&serving),
    ];
    next.extend(children_condition(&obs.children));
    next.extend(obs.restore.clone());
    if let Some(rollout) = &obs.rollout {
        status.rollout = rollout.status.clone();
        next.push(rollout.condition.clone());
    }
    if let Some(replacement) = &obs.replacement {
        status.replacement = replacement.status.clone();
        next.extend(replacement.condition.clone());
    }
    let phase = phase(&serving, status.replication.primary.is_some());
    for c in &next {
        set(&mut status.conditions, c, generation, now);
    }
    status.phase = phase;
    status
}

/// The status of a pass stopped or resumed by annotation `ordinal.dev/paused`:
/// while paused, `previous` with condition `Paused` set (nothing else
/// changes: members, roles and the other conditions stay as last observed);
/// on resume, `previous` without it. None when the annotation does not
/// matter (not paused and no `Paused` condition to drop).
pub fn paused(
    previous: Option<&ClusterStatus>,
    paused: bool,
    generation: Option<i64>,
    now: DateTime<Utc>,
) -> Option<ClusterStatus> {
    let mut status = previous.cloned().unwrap_or_default();
    if paused {
        let c = Cond::new(
            T::Paused,
            S::True,
            Reason::PausedByAnnotation,
            "annotation ordinal.dev/paused is \"true\": the operator changes nothing until it is removed",
        );
        set(&mut status.conditions, &c, generation, now);
        return Some(status);
    }
    let before = status.conditions.len();
    status.conditions.retain(|c| c.type_ != T::Paused.as_str());
    (status.conditions.len() != before).then_some(status)
}

/// Numbers in a message (offsets, byte counts, seconds) as one placeholder.
fn without_numbers(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut in_number = false;
    for c in text.chars() {
        if c.is_ascii_digit() {
            if !in_number {
                out.push('#');
            }
            in_number = true;
        } else {
            out.push(c);
            in_number = false;
        }
    }
    out
}

/// A status as far as a person acts on it: phase, counts, roles,
/// reachability and links, conditions (numbers in their messages aside), the
/// replication state except the primary's position, which moves with every
/// write (it has metrics, and the reconciler keeps the newest in memory).
fn for_people(status: &ClusterStatus) -> ClusterStatus {
    let mut s = status.clone();
    s.replication.primary_position = None;
    for m in &mut s.members {
        m.offset = None;
        m.lag = None;
        m.gtid = None;
        m.message = m.message.as_deref().map(without_numbers);
    }
    for c in &mut s.conditions {
        c.message = without_numbers(&c.message);
    }
    // The archive as far as a person acts on it: whether it fails, and its
    // last commit to ten minutes.
    s.binlog_archive = s.binlog_archive.map(|a| crate::api::BinlogArchiveStatus {
        last_commit_time: a.last_commit_time.as_deref().map(ten_minutes),
        error: a.error.as_deref().map(without_numbers),
        ..Default::default()
    });
    s
}

/// An RFC 3339 time cut to its ten minutes (unparsable: as it is).
fn ten_minutes(t: &str) -> String {
    match DateTime::parse_from_rfc3339(t) {
        Ok(t) => (t.timestamp() / 600).to_string(),
        Err(_) => t.to_string(),
    }
}

/// Whether two statuses differ only in details a person does not act on:
/// positions, offsets, lag and numbers in messages. Such a change alone is
/// not written; it goes out with the next change a person acts on.
pub fn differs_only_in_details(a: &ClusterStatus, b: &ClusterStatus) -> bool {
    for_people(a) == for_people(b)
}

/// Conditions that follow from probe results.
const PROBED: [T; 2] = [T::ReplicationHealthy, T::Ready];

/// A status as a person sees it, without what one probe decides: members'
/// roles, reachability, links and messages, `primaryUnhealthySince`, the
/// phase, and the conditions `ReplicationHealthy` and `Ready`.
fn without_probes(status: &ClusterStatus) -> ClusterStatus {
    let mut s = for_people(status);
    s.replication.primary_unhealthy_since = None;
    s.phase = ClusterPhase::default();
    for m in &mut s.members {
        m.role = MemberRole::Unknown;
        m.reachable = false;
        m.source = None;
        m.link_up = None;
        m.message = None;
    }
    s.conditions
        .retain(|c| !PROBED.iter().any(|t| t.as_str() == c.type_));
    s
}

/// Whether two statuses differ (beyond details) only in what probes decide:
/// such a change is written once it has stood for a while (see
/// [`super::hysteresis`]). Members joining or leaving, the primary, term,
/// operation, counts from Kubernetes and every other condition are written
/// at once.
pub fn differs_only_in_probes(a: &ClusterStatus, b: &ClusterStatus) -> bool {
    without_probes(a) == without_probes(b)
}

/// Whether a status shows nothing wrong that probes decide: phase
/// `Running`, `ReplicationHealthy` and `Ready` true, every member reachable.
/// A change to such a status is a recovery (or the end of a repointing) and
/// is written at once: holding it back would only keep a stale failure in
/// status, and a flap that starts from a healthy status is held anyway.
pub fn all_clear(status: &ClusterStatus) -> bool {
    status.phase == ClusterPhase::Running
        && PROBED.iter().all(|t| {
            status
                .conditions
                .iter()
                .any(|c| c.type_ == t.as_str() && c.status == "True")
        })
        && status.members.iter().all(|m| m.reachable)
}

/// What the last engine step of this process observed for a cluster.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Observed {
    pub state: ReplicationState,
    pub members: Vec<MemberStatus>,
}

/// Whether an observation belongs to the persisted state: same primary,
/// term, primary process and operation.
fn observed_on(persisted: &ReplicationState, observed: &ReplicationState) -> bool {
    observed.primary.is_some()
        && (
            observed.primary,
            observed.term,
            &observed.primary_identity,
            &observed.operation,
        ) == (
            persisted.primary,
            persisted.term,
            &persisted.primary_identity,
            &persisted.operation,
        )
}

/// The state a pass plans from: the persisted one, with what the last engine
/// step of this process observed on the same primary, term, primary process
/// and operation: the primary's position and `primaryUnhealthySince`
/// (neither is always written at once; see [`differs_only_in_details`] and
/// [`differs_only_in_probes`]), so the failover detection window counts
/// from the first missed probe whether or not status shows it yet.
pub fn with_observed(
    persisted: &ReplicationState,
    observed: Option<&Observed>,
) -> ReplicationState {
    let mut state = persisted.clone();
    if let Some(o) = observed.map(|o| &o.state)
        && observed_on(persisted, o)
    {
        state.primary_unhealthy_since = o.primary_unhealthy_since.clone();
        if o.primary_position.is_some() {
            state.primary_position = o.primary_position.clone();
        }
    }
    state
}

/// The status the day-2 planners (rollout, replacement, switchover target)
/// read members from: the persisted one with the members the last engine
/// step of this process observed on the same state (a change in
/// reachability may not be written yet), and the state of [`with_observed`].
pub fn planning_view(
    persisted: Option<&ClusterStatus>,
    observed: Option<&Observed>,
) -> Option<ClusterStatus> {
    let mut view = persisted?.clone();
    if let Some(o) = observed
        && observed_on(&view.replication, &o.state)
    {
        view.members = o.members.clone();
    }
    view.replication = with_observed(&view.replication, observed);
    Some(view)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{Operation, OperationKind, condition};

    #[test]
    fn pausing_sets_only_the_paused_condition_and_resuming_drops_it() {
        let obs = Observation {
            generation: Some(4),
            replicas_existing: 3,
            replicas_ready: 3,
            ..Default::default()
        };
        let running = compute(None, 3, &obs, now());
        assert!(paused(Some(&running), false, Some(4), now()).is_none());
        let held = paused(Some(&running), true, Some(5), now()).expect("paused status");
        let c = held
            .conditions
            .iter()
            .find(|c| c.type_ == condition::PAUSED)
            .expect("Paused condition");
        assert_eq!(
            (c.status.as_str(), c.observed_generation),
            ("True", Some(5))
        );
        let others = |s: &ClusterStatus| {
            s.conditions
                .iter()
                .filter(|c| c.type_ != condition::PAUSED)
                .cloned()
                .collect::<Vec<_>>()
        };
        assert_eq!(others(&held), others(&running));
        assert_eq!(
            (held.phase, held.replicas),
            (running.phase, running.replicas)
        );
        // Paused again: the same status, so no write.
        assert_eq!(
            paused(Some(&held), true, Some(5), now()).as_ref(),
            Some(&held)
        );
        let resumed = paused(Some(&held), false, Some(5), now()).expect("resumed status");
        assert_eq!(resumed, running);
    }

    fn now() -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000, 0).expect("time")
    }

    fn cond<'a>(s: &'a ClusterStatus, t: &str) -> &'a Condition {
        s.conditions
            .iter()
            .find(|c| c.type_ == t)
            .expect("condition present")
    }

    fn healthy_report(primary: i32) -> ReplicationReport {
        ReplicationReport {
            state: ReplicationState {
                primary: Some(primary),
                term: 1,
                ..Default::default()
            },
            members: vec![MemberStatus {
                ordinal: primary,
                pod: format!("c-{primary}"),
                role: MemberRole::Primary,
                reachable: true,
                ..Default::default()
            }],
            health: Health::Healthy,
            writes: PrimaryWrites::Accepted,
        }
    }

    #[test]
    fn unknown_replication_is_never_reported_ready() {
        let obs = Observation {
            generation: Some(3),
            replicas_existing: 3,
            replicas_ready: 3,
            replication: Some(ReplicationReport {
                state: ReplicationState::default(),
                members: vec![],
                health: Health::Unknown {
                    reason: "EngineUnavailable".into(),
                    message: "no engine".into(),
                },
                writes: PrimaryWrites::Unknown,
            }),
            ..Default::default()
        };
        let s = compute(None, 3, &obs, now());
        assert_eq!(cond(&s, condition::REPLICATION_HEALTHY).status, "Unknown");
        assert_eq!(cond(&s, condition::READY).status, "False");
        assert_eq!(s.phase, ClusterPhase::Provisioning);
        assert_eq!(s.observed_generation, Some(3));
    }

    #[test]
    fn running_when_every_member_is_ready_and_replicating() {
        let obs = Observation {
            replicas_existing: 3,
            replicas_ready: 3,
            replication: Some(healthy_report(0)),
            ..Default::default()
        };
        let s = compute(None, 3, &obs, now());
        assert_eq!(s.phase, ClusterPhase::Running);
        assert_eq!(cond(&s, condition::READY).status, "True");
        assert_eq!(s.replication.primary, Some(0));
        assert_eq!(s.ready_replicas, 3);
    }

    #[test]
    fn transition_time_is_kept_while_status_is_unchanged() {
        let obs = Observation {
            replicas_existing: 3,
            replicas_ready: 3,
            replication: Some(healthy_report(0)),
            ..Default::default()
        };
        let first = compute(None, 3, &obs, now());
        let later = now() + chrono::Duration::seconds(60);
        let second = compute(Some(&first), 3, &obs, later);
        assert_eq!(
            first, second,
            "an unchanged pass produces an identical status (no API write)"
        );
        let degraded = Observation {
            replicas_ready: 2,
            ..obs
        };
        let third = compute(Some(&second), 3, &degraded, later);
        assert_eq!(third.phase, ClusterPhase::Degraded);
        // A member down is not a write outage: Ready stays, its message changes.
        assert_eq!(cond(&third, condition::READY).status, "True");
        assert_eq!(
            cond(&third, condition::READY).last_transition_time,
            to_time(now())
        );
        assert!(cond(&third, condition::READY).message.contains("2 of 3"));
    }

    #[test]
    fn a_primary_that_refuses_writes_is_not_ready() {
        let mut report = healthy_report(0);
        report.writes = PrimaryWrites::Refused {
            reason: "NotEnoughReplicas".into(),
            message: "NOREPLICAS: 0 replica(s) acknowledge in time".into(),
        };
        let obs = Observation {
            replicas_existing: 3,
            replicas_ready: 3,
            replication: Some(report),
            ..Default::default()
        };
        let s = compute(None, 3, &obs, now());
        let ready = cond(&s, condition::READY);
        assert_eq!(ready.status, "False");
        assert_eq!(ready.reason, "NotEnoughReplicas");
        assert!(
            ready.message.contains("c-0 refuses writes"),
            "{}",
            ready.message
        );
        assert_eq!(s.phase, ClusterPhase::Degraded);
    }

    #[test]
    fn a_refused_child_is_a_condition_and_keeps_its_message() {
        let obs = Observation {
            children: Children::Failed(
                "apply StatefulSet x: spec.template.spec.topologySpreadConstraints[0].maxSkew: Invalid value: 0".into(),
            ),
            ..Default::default()
        };
        let s = compute(None, 3, &obs, now());
        let reconciled = cond(&s, "Reconciled");
        assert_eq!(reconciled.status, "False");
        assert_eq!(reconciled.reason, "ChildApplyFailed");
        assert!(reconciled.message.contains("maxSkew"));
        assert_eq!(cond(&s, condition::READY).reason, "ChildApplyFailed");
        // A pass that does not re-apply leaves the condition as it was.
        let later = Observation {
            children: Children::Unchanged,
            ..Default::default()
        };
        let again = compute(Some(&s), 3, &later, now());
        assert_eq!(cond(&again, "Reconciled").status, "False");
        let fixed = Observation {
            children: Children::Applied,
            ..Default::default()
        };
        let fixed = compute(Some(&again), 3, &fixed, now());
        assert_eq!(cond(&fixed, "Reconciled").status, "True");
    }

    #[test]
    fn invalid_spec_and_operations_set_their_phases() {
        let bad = Observation {
            config_error: Some("config key port is managed by Ordinal".into()),
            ..Default::default()
        };
        let s = compute(None, 3, &bad, now());
        assert_eq!(s.phase, ClusterPhase::Failed);
        assert_eq!(cond(&s, condition::CONFIG_VALID).status, "False");
        assert!(cond(&s, condition::READY).message.contains("port"));

        let mut report = healthy_report(1);
        report.state.operation = Some(Operation {
            kind: OperationKind::Failover,
            from: 0,
            to: Some(1),
            step: "Promote".into(),
            term: 2,
            started_at: to_time(now()),
            deadline: None,
            reason: "primary unreachable for 5s".into(),
            data: None,
        });
        let obs = Observation {
            replicas_existing: 3,
            replicas_ready: 2,
            replication: Some(report),
            ..Default::default()
        };
        let s = compute(None, 3, &obs, now());
        assert_eq!(s.phase, ClusterPhase::Reconfiguring);
        assert_eq!(cond(&s, condition::FAILOVER_IN_PROGRESS).status, "True");
        assert!(
            cond(&s, condition::FAILOVER_IN_PROGRESS)
                .message
                .contains("step Promote")
        );
    }

    #[test]
    fn positions_offsets_and_numbers_are_details() {
        let obs = Observation {
            replicas_existing: 1,
            replicas_ready: 1,
            replication: Some(healthy_report(0)),
            ..Default::default()
        };
        let a = compute(None, 1, &obs, now());
        let mut b = a.clone();
        b.replication.primary_position = Some("A:200".into());
        b.members[0].offset = Some(200);
        b.members[0].lag = Some(3);
        b.members[0].gtid = Some("0-1-200".into());
        b.conditions[0].message = format!("{} 12345 bytes", b.conditions[0].message);
        let mut a2 = a.clone();
        a2.conditions[0].message = format!("{} 99 bytes", a2.conditions[0].message);
        assert!(differs_only_in_details(&a2, &b));
        for change in [
            |s: &mut ClusterStatus| s.members[0].role = MemberRole::Replica,
            |s: &mut ClusterStatus| s.members[0].reachable = false,
            |s: &mut ClusterStatus| s.replication.term += 1,
            |s: &mut ClusterStatus| s.replication.primary_identity = Some("new".into()),
            |s: &mut ClusterStatus| s.ready_replicas = 0,
            |s: &mut ClusterStatus| s.phase = ClusterPhase::Degraded,
            |s: &mut ClusterStatus| s.conditions[0].status = "False".into(),
            |s: &mut ClusterStatus| s.conditions[0].message.push_str(" lost"),
        ] {
            let mut c = b.clone();
            change(&mut c);
            assert!(!differs_only_in_details(&a2, &c), "{c:?}");
        }
    }

    #[test]
    fn the_binlog_archive_is_written_when_it_fails_recovers_or_moves_ten_minutes() {
        use crate::api::BinlogArchiveStatus;
        let archive = |commit: &str, error: Option<&str>| BinlogArchiveStatus {
            last_gtid: Some(format!("0-100-{}", commit.len())),
            position: Some("0-100-7".into()),
            last_commit_time: Some(commit.into()),
            archived_at: Some("2026-12-01T03:00:09Z".into()),
            error: error.map(String::from),
        };
        let with = |a: Option<BinlogArchiveStatus>| {
            let obs = Observation {
                replicas_existing: 1,
                replicas_ready: 1,
                replication: Some(healthy_report(0)),
                binlog_archive: Some(a),
                ..Default::default()
            };
            compute(None, 1, &obs, now())
        };
        let at_3_01 = with(Some(archive("2026-12-01T03:01:00Z", None)));
        // Not polled this pass: the archive stays as it was.
        let kept = compute(Some(&at_3_01), 1, &Observation::default(), now());
        assert_eq!(kept.binlog_archive, at_3_01.binlog_archive);
        // Within the same ten minutes: a detail, not written alone.
        assert!(differs_only_in_details(
            &at_3_01,
            &with(Some(archive("2026-12-01T03:09:59Z", None)))
        ));
        for written in [
            with(Some(archive("2026-12-01T03:10:00Z", None))),
            with(Some(archive("2026-12-01T03:01:00Z", Some("db-1: refused")))),
            with(None),
        ] {
            assert!(!differs_only_in_details(&at_3_01, &written), "{written:?}");
        }
        assert!(
            !differs_only_in_details(&with(None), &at_3_01),
            "first report"
        );
    }

    #[test]
    fn the_newest_observation_is_planned_from_on_the_same_primary() {
        let persisted = ReplicationState {
            primary: Some(0),
            term: 3,
            primary_position: Some("A:100".into()),
            primary_identity: Some("run-1".into()),
            ..Default::default()
        };
        let observed = |state: ReplicationState| Observed {
            state,
            members: vec![],
        };
        let newer = ReplicationState {
            primary_position: Some("A:900".into()),
            primary_unhealthy_since: Some(to_time(now())),
            ..persisted.clone()
        };
        let planned = with_observed(&persisted, Some(&observed(newer.clone())));
        assert_eq!(planned.primary_position, Some("A:900".into()));
        assert_eq!(
            planned.primary_unhealthy_since,
            Some(to_time(now())),
            "a suspicion not written yet still counts from its first pass"
        );
        // A suspicion cleared in memory but still in status is cleared.
        let suspected = ReplicationState {
            primary_unhealthy_since: Some(to_time(now())),
            ..persisted.clone()
        };
        assert_eq!(
            with_observed(&suspected, Some(&observed(persisted.clone()))).primary_unhealthy_since,
            None
        );
        assert_eq!(with_observed(&persisted, None), persisted);
        for other in [
            ReplicationState {
                term: 4,
                ..newer.clone()
            },
            ReplicationState {
                primary: Some(1),
                ..newer.clone()
            },
            ReplicationState {
                primary_identity: Some("run-2".into()),
                ..newer.clone()
            },
        ] {
            assert_eq!(
                with_observed(&persisted, Some(&observed(other.clone()))),
                persisted,
                "{other:?}"
            );
        }
    }

    fn running_one_member() -> ClusterStatus {
        let obs = Observation {
            replicas_existing: 1,
            replicas_ready: 1,
            replication: Some(healthy_report(0)),
            ..Default::default()
        };
        compute(None, 1, &obs, now())
    }

    /// The status of a pass in which the single member missed its probe.
    fn missed_probe(previous: &ClusterStatus, at: DateTime<Utc>) -> ClusterStatus {
        let mut report = healthy_report(0);
        report.state.primary_unhealthy_since = Some(to_time(at));
        report.members[0].role = MemberRole::Unknown;
        report.members[0].reachable = false;
        report.members[0].message = Some("probe timed out after 500 ms".into());
        report.health = Health::Unhealthy {
            reason: "PrimaryUnreachable".into(),
            message: "c-0 does not answer".into(),
        };
        report.writes = PrimaryWrites::Unknown;
        let obs = Observation {
            replicas_existing: 1,
            replicas_ready: 1,
            replication: Some(report),
            ..Default::default()
        };
        compute(Some(previous), 1, &obs, at)
    }

    #[test]
    fn a_recovery_is_all_clear_and_a_missed_probe_is_not() {
        let running = running_one_member();
        assert!(all_clear(&running), "{running:?}");
        let down = missed_probe(&running, now());
        assert!(!all_clear(&down), "{down:?}");
        let mut unreachable_replica = running.clone();
        unreachable_replica.members[0].reachable = false;
        assert!(!all_clear(&unreachable_replica));
    }

    #[test]
    fn a_missed_probe_differs_only_in_probes() {
        let running = running_one_member();
        let first = missed_probe(&running, now());
        assert_ne!(first.phase, running.phase);
        assert_eq!(cond(&first, condition::READY).status, "False");
        assert!(differs_only_in_probes(&running, &first));
        assert!(!differs_only_in_details(&running, &first));
        for change in [
            |s: &mut ClusterStatus| s.replication.term += 1,
            |s: &mut ClusterStatus| s.replication.primary = None,
            |s: &mut ClusterStatus| s.ready_replicas = 0,
            |s: &mut ClusterStatus| s.members.push(MemberStatus::default()),
            |s: &mut ClusterStatus| s.conditions[0].status = "False".into(),
        ] {
            let mut c = first.clone();
            change(&mut c);
            assert!(!differs_only_in_probes(&running, &c), "{c:?}");
        }
    }

    #[test]
    fn day_two_planners_see_the_newest_members_of_the_same_state() {
        let running = running_one_member();
        let down = missed_probe(&running, now());
        let observed = Observed {
            state: down.replication.clone(),
            members: down.members.clone(),
        };
        let view = planning_view(Some(&running), Some(&observed)).expect("view");
        assert!(!view.members[0].reachable);
        assert_eq!(
            view.replication.primary_unhealthy_since,
            down.replication.primary_unhealthy_since
        );
        let other_term = Observed {
            state: ReplicationState {
                term: 9,
                ..down.replication.clone()
            },
            ..observed
        };
        assert_eq!(
            planning_view(Some(&running), Some(&other_term)).as_ref(),
            Some(&running)
        );
        assert_eq!(planning_view(None, Some(&other_term)), None);
    }
}
