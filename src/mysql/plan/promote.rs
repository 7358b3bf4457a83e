//! The end of a failover or switchover: fence before promote, promote, or
//! abandon.

use super::*;

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
pub(super) fn fence_then_finish(
    inp: &PlanInput<'_>,
    op: &Operation,
    to: i32,
    expired: bool,
    p: &mut Plan,
) {
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
        // The reconciler isolates it right after this pass: promote then.
        p.requeue = std::time::Duration::from_millis(20);
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
pub(super) fn fail_failover(
    inp: &PlanInput<'_>,
    op: &Operation,
    p: &mut Plan,
    why: String,
    reason: &str,
) {
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

pub(super) fn finish(
    inp: &PlanInput<'_>,
    op: &Operation,
    to: i32,
    to_obs: &Observed,
    p: &mut Plan,
) {
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
    if op.kind == OperationKind::Failover && !p.state.replaced_primaries.contains(&op.from) {
        p.state.replaced_primaries.push(op.from);
    }
    p.state.replaced_primaries.retain(|o| *o != to);
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
