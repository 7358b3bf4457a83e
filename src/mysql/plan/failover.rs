//! Failover: the recorded primary is lost (unreachable, stale, a replica).
//! After the detection window — and unless replicas still hear it — every
//! replica's IO thread is stopped (`WaitRelayLog`), the candidate is chosen
//! by what it received (`choose_by_received`), applies its relay log
//! (`ApplyRelayLog`) and is promoted once the old primary is fenced or
//! isolated (`Promote` / `AwaitingIsolation`, see [`super::promote`]).

use super::*;

pub(super) fn plan_primary_lost(
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
        // The next pass right when the window ends (the failover starts
        // then), at most 200 ms from now.
        p.requeue = crate::engine::window_requeue(
            std::time::Duration::from_millis(200),
            (window - elapsed).num_milliseconds(),
        );
        return;
    }
    // Pre-check with what replicas received so far: start only if a candidate
    // can qualify once relay logs are applied.
    let el = eligible(inp, primary);
    match candidate_by_held(inp, &el).1 {
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
                    stop_receiving(v.ordinal, o, p);
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
                data: None,
            });
            p.events.push(ev(
                EventType::Warning,
                "FailoverStarted",
                format!("primary {pod} lost for {}s ({reason}); replication IO threads stopped, choosing the replica that received the most", elapsed.num_seconds()),
            ));
            p.health = unhealthy("FailoverInProgress", message);
            // IO threads were stopped in this pass: choose at once.
            p.requeue = std::time::Duration::from_millis(20);
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

/// Replicas that may be promoted: reachable, not `exclude`, no errant
/// transactions relative to the last primary position.
/// What each eligible member holds once its relay log is applied, and the
/// candidate [`choose_candidate`] picks from those sets against the last
/// primary position and `failover.maxLag`.
fn candidate_by_held(
    inp: &PlanInput<'_>,
    el: &[(&View, &Observed)],
) -> (Vec<(i32, GtidSet)>, Result<i32, String>) {
    let sets: Vec<(i32, GtidSet)> = el.iter().map(|(v, o)| (v.ordinal, held(o))).collect();
    let refs: Vec<(i32, &GtidSet)> = sets.iter().map(|(o, g)| (*o, g)).collect();
    let pos = inp
        .state
        .primary_position
        .as_deref()
        .and_then(|s| GtidSet::parse(inp.settings.flavor, s).ok());
    let chosen = choose_candidate(
        &refs,
        pos.as_ref(),
        inp.failover.max_lag,
        inp.desired_primary,
    );
    (sets, chosen)
}

fn eligible<'a>(inp: &'a PlanInput<'a>, exclude: i32) -> Vec<(&'a View, &'a Observed)> {
    let d = crate::mysql::flavor::Dialect(inp.settings.flavor);
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
                Some(pp) => {
                    errant_for_failover(inp, o, pp, origin.as_deref(), exclude, d).is_none()
                }
                None => true,
            }
        })
        .filter(|(v, _)| !reseed_recorded(inp, v.ordinal))
        .collect()
}

/// Errant check during failover, against the last recorded state of the
/// lost primary: that state was sampled, so transactions the lost primary
/// itself originated later are legitimate; anything else it never had is
/// errant. A divergence error from the lost primary itself ("the replica has
/// more GTIDs") is no evidence: a primary that lost its last transactions in
/// a crash answers so to the replicas holding them.
fn errant_for_failover(
    inp: &PlanInput<'_>,
    o: &Observed,
    pos: &GtidSet,
    origin: Option<&str>,
    lost: i32,
    d: crate::mysql::flavor::Dialect,
) -> Option<String> {
    if let Some(e) = o.executed.errant_vs(pos, origin) {
        return Some(e);
    }
    if let Some(r) = &o.replica
        && source_ordinal(inp.views, &r.host, r.port) != Some(lost)
        && d.is_divergence_error(r.last_io_errno, &r.last_io_error)
    {
        return Some(r.last_io_error.clone());
    }
    None
}

/// Stop a replica's IO thread, its SQL thread first started when it was
/// stopped without an error: MariaDB discards the relay log of a GTID
/// replica whose two threads are both stopped as soon as one starts again,
/// so an applier must be running before the receiver stops.
fn stop_receiving(ordinal: i32, o: &Observed, p: &mut Plan) {
    if o.replica
        .as_ref()
        .is_some_and(|r| !r.sql_running && r.last_sql_errno == 0 && !r.io_stopped())
    {
        p.steps.push(Step {
            action: Action::StartSqlThread { ordinal },
            critical: false,
        });
    }
    p.steps.push(Step {
        action: Action::StopIo { ordinal },
        critical: false,
    });
}

/// A failover in progress, whatever its step.
pub(super) fn plan_failover(inp: &PlanInput<'_>, op: &Operation, p: &mut Plan) {
    let expired = op_expired(inp, op);
    let from_pod = pod(inp, op.from);
    p.requeue = std::time::Duration::from_millis(300);
    let promoting = op.step == step::PROMOTE || op.step == step::AWAIT_ISOLATION;
    if let Some(o) = view(inp, op.from).and_then(View::up)
        && o.writable()
        && !promoting
    {
        // An old primary that answers again during a failover is fenced.
        p.steps.push(Step {
            action: Action::Fence { ordinal: op.from },
            critical: false,
        });
    }
    // The old primary came back intact (holding everything the
    // replicas hold) before any promotion: the failover is cancelled.
    if let Some(pv) = view(inp, op.from)
        && primary_problem(inp, pv).is_none()
    {
        fail_failover(
            inp,
            op,
            p,
            format!("{from_pod} answers again with all its data before any promotion"),
            "FailoverCancelled",
        );
        p.state.primary_unhealthy_since = None;
        return;
    }
    let chosen = promoting || op.step == step::APPLY_RELAY;
    match op.to {
        Some(to) if chosen => apply_relay(inp, op, to, p),
        None if chosen => fail_failover(
            inp,
            op,
            p,
            "no candidate recorded".into(),
            "FailoverAborted",
        ),
        _ if expired => fail_failover(
            inp,
            op,
            p,
            "deadline passed before a candidate was promoted".into(),
            "FailoverAborted",
        ),
        _ => choose_by_received(inp, op, p),
    }
}

/// `WaitRelayLog`: once no eligible replica receives any more (IO threads
/// stopped), choose the one holding every transaction the others hold,
/// counting what sits unapplied in relay logs: a semi-sync primary
/// acknowledged a commit as soon as one replica wrote it there.
fn choose_by_received(inp: &PlanInput<'_>, op: &Operation, p: &mut Plan) {
    let el = eligible(inp, op.from);
    let mut receiving = Vec::new();
    for (v, o) in &el {
        if o.replica.as_ref().is_some_and(|r| !r.io_stopped()) {
            stop_receiving(v.ordinal, o, p);
            receiving.push(v.pod.clone());
        }
    }
    if !receiving.is_empty() {
        p.health = unhealthy(
            "FailoverInProgress",
            format!(
                "stopping replication IO threads on {} before choosing a candidate",
                receiving.join(", ")
            ),
        );
        p.requeue = std::time::Duration::from_millis(20);
        return;
    }
    let (sets, chosen) = candidate_by_held(inp, &el);
    match chosen {
        Err(why) => fail_failover(inp, op, p, format!("refused: {why}"), "FailoverRefused"),
        Ok(c) => {
            let received = sets
                .iter()
                .find(|(o, _)| *o == c)
                .map(|(_, g)| g.to_string());
            let mut next = op.clone();
            next.to = Some(c);
            next.step = step::APPLY_RELAY.into();
            next.data = Some(OperationData {
                received,
                ..Default::default()
            });
            p.state.operation = Some(next);
            let cpod = view(inp, c).map(|v| v.pod.clone()).unwrap_or_default();
            p.events.push(ev(
                EventType::Normal,
                "CandidateChosen",
                format!("{cpod} holds every transaction the other reachable replicas received; it applies its relay log, then it is promoted"),
            ));
            p.health = unhealthy(
                "FailoverInProgress",
                format!("{cpod} applies its relay log"),
            );
            p.requeue = std::time::Duration::from_millis(20);
        }
    }
}

/// What the failover candidate must hold before promotion: what it received
/// when chosen (recorded), and anything it holds or received since.
fn candidate_target(inp: &PlanInput<'_>, op: &Operation, o: &Observed) -> GtidSet {
    let recorded = op
        .data
        .as_ref()
        .and_then(|d| d.received.as_deref())
        .and_then(|s| GtidSet::parse(inp.settings.flavor, s).ok());
    match recorded {
        Some(r) => held(o).union(&r),
        None => held(o),
    }
}

/// `ApplyRelayLog`: the candidate applies everything it received (its SQL
/// thread is started if it was stopped without an error); a stopped applier
/// with an error is reported and waited on until the deadline. Nothing is
/// promoted (and no relay log reset) before it applied all of it.
fn apply_relay(inp: &PlanInput<'_>, op: &Operation, to: i32, p: &mut Plan) {
    let expired = op
        .deadline
        .as_ref()
        .is_some_and(|dl| inp.now >= from_time(dl));
    let to_pod = view(inp, to).map(|v| v.pod.clone()).unwrap_or_default();
    let Some(o) = view(inp, to).and_then(View::up) else {
        if expired {
            fail_failover(
                inp,
                op,
                p,
                format!("candidate {to_pod} unreachable until the deadline"),
                "FailoverAborted",
            );
        } else {
            p.health = unhealthy(
                "FailoverInProgress",
                format!("waiting for candidate {to_pod} to answer"),
            );
        }
        return;
    };
    let target = candidate_target(inp, op, o);
    let missing = o.executed.missing(&target);
    if missing == 0 {
        if op.step == step::APPLY_RELAY {
            // Persisted before the promotion (a restarted operator resumes it).
            let mut next = op.clone();
            next.step = step::PROMOTE.into();
            p.state.operation = Some(next);
            p.health = unhealthy(
                "FailoverInProgress",
                format!("{to_pod} applied everything it received; promoting it"),
            );
            p.requeue = std::time::Duration::from_millis(20);
            return;
        }
        fence_then_finish(inp, op, to, expired, p);
        return;
    }
    let applier_error = o
        .replica
        .as_ref()
        .filter(|r| !r.sql_running && r.last_sql_errno != 0)
        .map(|r| format!("error {}: {}", r.last_sql_errno, r.last_sql_error));
    if expired {
        let why = match &applier_error {
            Some(e) => format!(
                "candidate {to_pod} could not apply {missing} received transaction(s) before the deadline: its SQL thread stopped with {e}"
            ),
            None => format!(
                "candidate {to_pod} still had {missing} received transaction(s) to apply at the deadline"
            ),
        };
        fail_failover(inp, op, p, why, "FailoverAborted");
        return;
    }
    if let Some(e) = applier_error {
        let msg = format!(
            "failover candidate {to_pod} cannot apply {missing} received transaction(s): its SQL thread stopped with {e}; it is not promoted before it applied them"
        );
        p.events
            .push(ev(EventType::Warning, "ReplicaApplierFailed", msg.clone()));
        set_role(p, to, MemberRole::Unknown, Some(msg.clone()));
        p.health = unhealthy("ReplicaApplierFailed", msg);
        p.requeue = std::time::Duration::from_secs(1);
        return;
    }
    if o.replica.as_ref().is_some_and(|r| !r.sql_running) {
        p.steps.push(Step {
            action: Action::StartSqlThread { ordinal: to },
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
    p.health = unhealthy(
        "FailoverInProgress",
        format!("{to_pod} applies {missing} received transaction(s) before its promotion"),
    );
    p.requeue = std::time::Duration::from_millis(100);
}
