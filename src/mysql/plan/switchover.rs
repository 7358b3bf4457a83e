//! Switchover: `spec.primary` names another healthy replica. The primary
//! is fenced (read-only, writers killed), the target catches up to its
//! position (server-side GTID waits) and is promoted; at the deadline the
//! switchover is aborted, the old primary writable again, and a cooldown
//! delays the next attempt.

use super::*;

/// Start a switchover when one is requested and the target replicates
/// healthily; true when it started (the pass ends there).
pub(super) fn start_switchover(
    inp: &PlanInput<'_>,
    pv: &View,
    po: &Observed,
    healthy_replicas: &[i32],
    problems: &mut Vec<String>,
    p: &mut Plan,
) -> bool {
    let primary = pv.ordinal;
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
                data: Some(OperationData::position(po.executed.to_string())),
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
            return true;
        }
        problems.push(format!(
            "switchover to ordinal {want} waits until it replicates healthily"
        ));
    }

    false
}

/// A switchover in progress (`CatchUp`).
pub(super) fn plan_switchover(inp: &PlanInput<'_>, op: &Operation, p: &mut Plan) {
    let expired = op_expired(inp, op);
    let from_pod = pod(inp, op.from);
    p.requeue = std::time::Duration::from_millis(300);
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
            format!("{to_pod} still lacked {missing} transaction(s) of {target} at the deadline"),
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
    next.data = Some(OperationData::position(target.to_string()));
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
