//! Pure status computation: phase, conditions, counts. No I/O.

use chrono::{DateTime, Utc};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

use crate::api::{ClusterPhase, ClusterStatus, MemberStatus, ReplicationState, condition};
use crate::engine::Health;

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
    /// Engine result; None when the engine step did not run.
    pub replication: Option<ReplicationReport>,
    /// sha256 of the credentials in use.
    pub auth_hash: Option<String>,
    /// `Restored` condition (status, reason, message) while a restore matters.
    pub restore: Option<super::restore::RestoreCondition>,
}

/// The part of an engine outcome that goes into status.
#[derive(Clone, Debug)]
pub struct ReplicationReport {
    pub state: ReplicationState,
    pub members: Vec<MemberStatus>,
    pub health: Health,
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

/// A chrono instant as a Kubernetes `Time` (millisecond precision).
pub fn to_time(t: DateTime<Utc>) -> Time {
    Time(
        k8s_openapi::jiff::Timestamp::from_millisecond(t.timestamp_millis())
            .unwrap_or(k8s_openapi::jiff::Timestamp::UNIX_EPOCH),
    )
}

fn bool_str(value: bool) -> &'static str {
    if value { "True" } else { "False" }
}

/// The new status from the previous one and this pass's observation.
pub fn compute(
    previous: Option<&ClusterStatus>,
    replicas: i32,
    obs: &Observation,
    now: DateTime<Utc>,
) -> ClusterStatus {
    let mut status = previous.cloned().unwrap_or_default();
    let generation = obs.generation;
    status.observed_generation = generation;
    status.replicas = obs.replicas_existing;
    status.ready_replicas = obs.replicas_ready;
    if obs.auth_hash.is_some() {
        status.auth_hash = obs.auth_hash.clone();
    }
    let conditions = &mut status.conditions;

    match &obs.config_error {
        Some(msg) => set_condition(
            conditions,
            condition::CONFIG_VALID,
            "False",
            "InvalidSpec",
            msg,
            generation,
            now,
        ),
        None => set_condition(
            conditions,
            condition::CONFIG_VALID,
            "True",
            "Valid",
            "spec and Secret accepted",
            generation,
            now,
        ),
    }
    match &obs.storage_note {
        Some(msg) => set_condition(
            conditions,
            condition::STORAGE_IN_SYNC,
            "False",
            "ImmutableStorage",
            msg,
            generation,
            now,
        ),
        None => set_condition(
            conditions,
            condition::STORAGE_IN_SYNC,
            "True",
            "InSync",
            "volume claims match spec.storage",
            generation,
            now,
        ),
    }

    if let Some((state, reason, message)) = &obs.restore {
        set_condition(
            conditions,
            condition::RESTORED,
            state,
            reason,
            message,
            generation,
            now,
        );
    }
    let (healthy, reason, message) = match &obs.replication {
        Some(report) => {
            status.replication = report.state.clone();
            status.members = report.members.clone();
            match &report.health {
                Health::Healthy => (
                    Some(true),
                    "Replicating".to_string(),
                    "every member replicates from the primary".to_string(),
                ),
                Health::Unhealthy { reason, message } => {
                    (Some(false), reason.clone(), message.clone())
                }
                Health::Unknown { reason, message } => (None, reason.clone(), message.clone()),
            }
        }
        None => (
            None,
            "NotObserved".to_string(),
            "replication was not observed in this pass".to_string(),
        ),
    };
    let healthy_str = healthy.map(bool_str).unwrap_or("Unknown");
    set_condition(
        conditions,
        condition::REPLICATION_HEALTHY,
        healthy_str,
        &reason,
        &message,
        generation,
        now,
    );

    // An aborted switchover waiting out its cooldown is recorded as an
    // operation so a restarted operator respects it, but nothing is running.
    let operation = status
        .replication
        .operation
        .clone()
        .filter(|op| !op.step.ends_with("Cooldown"));
    match &operation {
        Some(op) => set_condition(
            conditions,
            condition::FAILOVER_IN_PROGRESS,
            "True",
            &format!("{:?}", op.kind),
            &format!(
                "{:?} from member {} at step {}: {}",
                op.kind, op.from, op.step, op.reason
            ),
            generation,
            now,
        ),
        None => set_condition(
            conditions,
            condition::FAILOVER_IN_PROGRESS,
            "False",
            "Idle",
            "no failover or switchover running",
            generation,
            now,
        ),
    }

    let all_ready =
        replicas > 0 && obs.replicas_ready == replicas && obs.replicas_existing == replicas;
    status.phase = if obs.config_error.is_some() {
        ClusterPhase::Failed
    } else if operation.is_some() {
        ClusterPhase::Reconfiguring
    } else if obs.replicas_existing == 0 {
        ClusterPhase::Pending
    } else if all_ready && healthy == Some(true) {
        ClusterPhase::Running
    } else if status.replication.primary.is_none() {
        ClusterPhase::Provisioning
    } else {
        ClusterPhase::Degraded
    };

    let (ready, ready_reason, ready_msg) = match status.phase {
        ClusterPhase::Running => (
            true,
            "Running",
            format!("{replicas} members ready and replicating"),
        ),
        ClusterPhase::Failed => (
            false,
            "InvalidSpec",
            obs.config_error.clone().unwrap_or_default(),
        ),
        _ if !all_ready => (
            false,
            "MembersNotReady",
            format!("{} of {replicas} members ready", obs.replicas_ready),
        ),
        _ => (false, "ReplicationNotHealthy", message),
    };
    set_condition(
        &mut status.conditions,
        condition::READY,
        bool_str(ready),
        ready_reason,
        &ready_msg,
        generation,
        now,
    );
    status
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{MemberRole, Operation, OperationKind};

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
        assert_eq!(
            cond(&third, condition::READY).last_transition_time,
            to_time(later)
        );
        assert_eq!(cond(&third, condition::READY).reason, "MembersNotReady");
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
}
