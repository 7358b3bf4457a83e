//! Unit tests of the pure planner (no I/O).

use super::*;
use crate::api::MySqlFlavor;
use crate::mysql::observe::ReplicaStatus;

fn g(s: &str) -> GtidSet {
    GtidSet::parse(MySqlFlavor::MariaDB, s).unwrap()
}

fn obs(executed: &str, read_only: bool, source: Option<&str>) -> Observed {
    Observed {
        server_id: 0,
        version: "10.11".into(),
        read_only,
        super_read_only: false,
        executed: g(executed),
        identity: "server_id=100;datadir=x".into(),
        replica: source.map(|h| ReplicaStatus {
            host: h.into(),
            port: 3306,
            io_running: "Yes".into(),
            sql_running: true,
            last_io_errno: 0,
            last_io_error: String::new(),
            last_sql_errno: 0,
            last_sql_error: String::new(),
            seconds_behind: Some(0),
            sql_state: String::new(),
            received: Some(g(executed)),
            heard_secs: None,
        }),
        semi_primary: Some(false),
        semi_replica: Some(false),
        semi_status: None,
        semi_clients: None,
        executed_after: None,
        purged: None,
        via_root: false,
    }
}

fn view(ordinal: i32, o: Option<Observed>) -> View {
    View {
        ordinal,
        pod: format!("db-{ordinal}"),
        dns_name: format!("db-{ordinal}.h"),
        address: Some(format!("10.0.0.{ordinal}")),
        port: 3306,
        obs: o.ok_or_else(|| "connection refused".to_string()),
        isolated: false,
    }
}

fn now() -> DateTime<Utc> {
    DateTime::from_timestamp(1_800_000_000, 0).unwrap()
}

fn run(views: &[View], state: &ReplicationState, desired: Option<i32>, at: DateTime<Utc>) -> Plan {
    let settings = MySqlSettings::default();
    let failover = FailoverSpec {
        enabled: true,
        detection_seconds: 5,
        max_lag: None,
    };
    plan(&PlanInput {
        desired_primary: desired,
        failover: &failover,
        now: at,
        ..input(views, state, &settings)
    })
}

/// A pass at `now()` with `settings`, default failover and no other input.
fn input<'a>(
    views: &'a [View],
    state: &'a ReplicationState,
    settings: &'a MySqlSettings,
) -> PlanInput<'a> {
    static FAILOVER: std::sync::LazyLock<FailoverSpec> =
        std::sync::LazyLock::new(FailoverSpec::default);
    PlanInput {
        views,
        state,
        desired_primary: None,
        failover: &FAILOVER,
        settings,
        now: now(),
        timeouts: OpTimeouts::default(),
        credentials_changed: false,
        hint: None,
        reseeded: &[],
        reseeding: &[],
    }
}

fn healthy_state() -> ReplicationState {
    ReplicationState {
        primary: Some(0),
        term: 1,
        primary_position: Some("0-100-10".into()),
        primary_identity: Some("server_id=100;datadir=x".into()),
        ..Default::default()
    }
}

fn actions(p: &Plan) -> Vec<Action> {
    p.steps.iter().map(|s| s.action.clone()).collect()
}

#[test]
fn bootstrap_promotes_ordinal_zero() {
    let views = vec![
        view(0, Some(obs("", true, None))),
        view(1, Some(obs("", true, None))),
    ];
    let p = run(&views, &ReplicationState::default(), None, now());
    assert_eq!(p.state.primary, Some(0));
    assert_eq!(p.state.term, 1);
    assert_eq!(
        actions(&p),
        vec![
            Action::Promote {
                ordinal: 0,
                semi_sync: false
            },
            Action::EnsureUsers { ordinal: 0 }
        ]
    );
    assert_eq!(p.members[0].role, MemberRole::Primary);
    assert!(p.events.iter().any(|e| e.reason == "Bootstrapped"));
    // Any member unreachable: wait (it may hold data), never pick another.
    for views in [
        vec![view(0, None), view(1, Some(obs("", true, None)))],
        vec![view(0, Some(obs("", true, None))), view(1, None)],
    ] {
        let p = run(&views, &ReplicationState::default(), None, now());
        assert_eq!(p.state.primary, None);
        assert!(p.steps.is_empty());
        assert!(
            matches!(&p.health, Health::Unknown { reason, .. } if reason == "WaitingForMembers")
        );
    }
}

#[test]
fn an_emptied_ordinal_zero_is_never_the_source_while_others_hold_data() {
    // Re-created over kept volumes, ordinal 0's volume emptied: ordinal 0
    // answers first; nothing is chosen until every member answered.
    let full = "0-100-2010";
    let views = vec![
        view(0, Some(obs("", true, None))),
        view(1, None),
        view(2, None),
    ];
    let p = run(&views, &ReplicationState::default(), None, now());
    assert!(p.steps.is_empty());
    let views = vec![
        view(0, Some(obs("", true, None))),
        view(1, Some(obs(full, true, None))),
        view(2, Some(obs(full, true, None))),
    ];
    let p = run(&views, &ReplicationState::default(), Some(0), now());
    assert_eq!(p.state.primary, Some(1));
    assert_eq!(
        actions(&p),
        vec![
            Action::Promote {
                ordinal: 1,
                semi_sync: false
            },
            Action::EnsureUsers { ordinal: 1 }
        ]
    );
    assert!(p.events.iter().any(|e| e.reason == "Adopted"));
    // The hint breaks the tie between equally complete members.
    let st = ReplicationState::default();
    let settings = MySqlSettings::default();
    let failover = FailoverSpec::default();
    let hinted = |hint| {
        plan(&PlanInput {
            views: &views,
            state: &st,
            desired_primary: None,
            failover: &failover,
            settings: &settings,
            now: now(),
            timeouts: OpTimeouts::default(),
            credentials_changed: false,
            hint,
            reseeded: &[],
            reseeding: &[],
        })
    };
    let p = hinted(Some(PrimaryHint {
        primary: 2,
        term: 6,
    }));
    assert_eq!((p.state.primary, p.state.term), (Some(2), 6));
    let p = hinted(Some(PrimaryHint {
        primary: 0,
        term: 6,
    }));
    assert_eq!((p.state.primary, p.state.term), (Some(1), 7));
    // A writable member that is not adopted is fenced before the promotion.
    let views = vec![
        view(0, Some(obs("", false, None))),
        view(1, Some(obs(full, true, None))),
    ];
    let p = run(&views, &ReplicationState::default(), None, now());
    assert_eq!(
        actions(&p)[..2],
        [
            Action::Fence { ordinal: 0 },
            Action::Promote {
                ordinal: 1,
                semi_sync: false
            }
        ]
    );
}

#[test]
fn steady_state_repairs_drift() {
    let views = vec![
        view(0, Some(obs("0-100-10", true, None))),
        view(1, Some(obs("0-100-9", false, None))),
        view(2, Some(obs("0-100-10", true, Some("db-0.h")))),
    ];
    let p = run(&views, &healthy_state(), None, now());
    let a = actions(&p);
    // restarted primary (read-only at boot) holding every transaction: writable again
    assert!(a.contains(&Action::MakeWritable {
        ordinal: 0,
        semi_sync: false
    }));
    // stray writable member fenced and pointed at the primary
    assert!(a.contains(&Action::Fence { ordinal: 1 }));
    assert!(a.contains(&Action::Repoint {
        ordinal: 1,
        source: 0,
        executed: "0-100-9".into()
    }));
    assert_eq!(p.members[2].role, MemberRole::Replica);
    assert_eq!(p.members[2].source, Some(0));
    assert!(matches!(p.health, Health::Unhealthy { .. }));
}

#[test]
fn healthy_cluster_does_nothing() {
    let views = vec![
        view(0, Some(obs("0-100-10", false, None))),
        view(1, Some(obs("0-100-10", true, Some("10.0.0.0")))),
    ];
    let p = run(&views, &healthy_state(), None, now());
    assert!(p.steps.is_empty(), "{:?}", p.steps);
    assert_eq!(p.health, Health::Healthy);
    assert_eq!(p.members[1].role, MemberRole::Replica);
}

#[test]
fn errant_replica_is_quarantined_not_repointed() {
    let views = vec![
        view(0, Some(obs("0-100-10", false, None))),
        view(1, Some(obs("0-101-11", false, Some("db-0.h")))),
    ];
    let p = run(&views, &healthy_state(), None, now());
    assert_eq!(p.members[1].role, MemberRole::Quarantined);
    let a = actions(&p);
    assert!(a.contains(&Action::Fence { ordinal: 1 }));
    assert!(!a.iter().any(|a| matches!(a, Action::Repoint { .. })));
    assert!(
        p.events
            .iter()
            .any(|e| e.reason == "ErrantTransactions" && e.type_ == EventType::Warning)
    );
}

#[test]
fn stale_primary_is_not_trusted() {
    // came back empty (lost volume): not made writable, failover clock starts
    let views = vec![
        view(0, Some(obs("", true, None))),
        view(1, Some(obs("0-100-10", true, Some("db-0.h")))),
    ];
    let p = run(&views, &healthy_state(), None, now());
    assert!(
        !actions(&p)
            .iter()
            .any(|a| matches!(a, Action::MakeWritable { .. }))
    );
    assert!(p.state.primary_unhealthy_since.is_some());
    assert!(matches!(&p.health, Health::Unhealthy { reason, .. } if reason == "PrimaryStale"));
}

#[test]
fn failover_waits_for_detection_window_then_starts() {
    let views = vec![
        view(0, None),
        view(1, Some(obs("0-100-10", true, Some("db-0.h")))),
        view(2, Some(obs("0-100-8", true, Some("db-0.h")))),
    ];
    let p = run(&views, &healthy_state(), None, now());
    assert!(p.state.operation.is_none());
    assert_eq!(
        p.state.primary_unhealthy_since.as_ref().map(from_time),
        Some(now())
    );
    let mut st = p.state.clone();
    let p = run(&views, &st, None, now() + ChronoDuration::seconds(3));
    assert!(p.state.operation.is_none());
    let p = run(&views, &st, None, now() + ChronoDuration::seconds(6));
    let op = p.state.operation.clone().expect("failover started");
    assert_eq!(op.kind, OperationKind::Failover);
    assert_eq!(op.step, step::WAIT_RELAY);
    assert_eq!(op.term, 2);
    assert_eq!(
        actions(&p),
        vec![Action::StopIo { ordinal: 1 }, Action::StopIo { ordinal: 2 }]
    );
    // next pass: relay logs applied → candidate chosen (the superset), persisted
    st = p.state.clone();
    let mut stopped = views.clone();
    for v in stopped.iter_mut().skip(1) {
        if let Ok(o) = &mut v.obs {
            o.replica.as_mut().unwrap().io_running = "No".into();
        }
    }
    let p = run(&stopped, &st, None, now() + ChronoDuration::seconds(7));
    let op = p.state.operation.clone().unwrap();
    assert_eq!((op.step.as_str(), op.to), (step::APPLY_RELAY, Some(1)));
    // it applied everything it received: the Promote step is persisted first
    let p = run(&stopped, &p.state, None, now() + ChronoDuration::seconds(7));
    let op = p.state.operation.clone().unwrap();
    assert_eq!((op.step.as_str(), op.to), (step::PROMOTE, Some(1)));
    assert!(actions(&p).is_empty(), "{:?}", actions(&p));
    // the old primary does not answer: no promotion until it is isolated
    let p = run(&stopped, &p.state, None, now() + ChronoDuration::seconds(8));
    assert!(actions(&p).is_empty(), "{:?}", actions(&p));
    assert_eq!(p.isolate, vec![0]);
    let waiting = p.state.operation.clone().unwrap();
    assert_eq!(
        (waiting.step.as_str(), waiting.to),
        (step::AWAIT_ISOLATION, Some(1))
    );
    assert_eq!(p.state.primary, Some(0));
    assert!(p.members.iter().all(|m| m.role != MemberRole::Primary));
    // isolated by the reconciler → promote
    let mut isolated = stopped.clone();
    isolated[0].isolated = true;
    let p = run(
        &isolated,
        &p.state,
        None,
        now() + ChronoDuration::seconds(9),
    );
    assert_eq!(
        actions(&p),
        vec![Action::Promote {
            ordinal: 1,
            semi_sync: false
        }]
    );
    assert!(p.isolate.is_empty());
    assert_eq!(p.state.primary, Some(1));
    assert_eq!(p.state.term, 2);
    assert!(p.state.operation.is_none());
    assert_eq!(p.state.replaced_primaries, vec![0]);
    assert_eq!(p.fallback.operation, Some(waiting));
    let _ = op;
}

#[test]
fn replicas_hearing_the_primary_veto_the_failover() {
    let hearing = |secs: Option<i64>| {
        let mut o = obs("0-100-10", true, Some("db-0.h"));
        o.replica.as_mut().unwrap().heard_secs = secs;
        o
    };
    let views = vec![
        view(0, None),
        view(1, Some(hearing(Some(1)))),
        view(2, Some(hearing(Some(4)))),
    ];
    let mut st = healthy_state();
    let mut events = Vec::new();
    for t in [0, 6, 12, 100] {
        let p = run(&views, &st, None, now() + ChronoDuration::seconds(t));
        assert!(p.state.operation.is_none());
        assert!(p.steps.is_empty());
        assert_eq!(p.members[0].role, MemberRole::Primary, "keeps its label");
        assert!(
            matches!(&p.health, Health::Unhealthy { reason, .. } if reason == "PrimaryUnreachableFromOperator")
        );
        events.extend(p.events.iter().map(|e| e.reason.clone()));
        st = p.state;
    }
    assert_eq!(events, vec!["PrimaryUnreachableFromOperator"]);
    // Not heard for long (or not connected): the window starts again from the last vouch.
    let views = vec![
        view(0, None),
        view(1, Some(hearing(Some(30)))),
        view(2, Some(hearing(None))),
    ];
    let p = run(&views, &st, None, now() + ChronoDuration::seconds(101));
    assert!(p.state.operation.is_none());
    let p = run(&views, &p.state, None, now() + ChronoDuration::seconds(106));
    assert!(p.state.operation.is_some());
}

#[test]
fn a_writable_old_primary_is_fenced_critically_and_isolation_times_out() {
    // A stale primary that answers writable: fenced, critically, before anything else.
    let stale = obs("0-100-5", false, None);
    let views = vec![
        view(0, Some(stale.clone())),
        view(1, Some(obs("0-100-10", true, Some("db-0.h")))),
    ];
    let p = run(&views, &healthy_state(), None, now());
    assert_eq!(
        p.steps.first(),
        Some(&Step {
            action: Action::Fence { ordinal: 0 },
            critical: true
        })
    );
    // In the promote step an old primary answering writable is fenced in
    // the same pass, right before the promotion (both critical).
    let st = ReplicationState {
        operation: Some(Operation {
            kind: OperationKind::Failover,
            from: 0,
            to: Some(1),
            step: step::PROMOTE.into(),
            term: 2,
            started_at: to_time(now()),
            deadline: Some(to_time(now() + ChronoDuration::seconds(60))),
            reason: "lost".into(),
            data: None,
        }),
        ..healthy_state()
    };
    let p = run(&views, &st, None, now() + ChronoDuration::seconds(1));
    assert_eq!(
        p.steps,
        vec![
            Step {
                action: Action::Fence { ordinal: 0 },
                critical: true
            },
            Step {
                action: Action::Promote {
                    ordinal: 1,
                    semi_sync: false
                },
                critical: true
            }
        ]
    );
    // Unreachable and never isolated: abandoned at the deadline, FenceFailed.
    let views = vec![view(0, None), views[1].clone()];
    let p = run(&views, &st, None, now() + ChronoDuration::seconds(61));
    assert!(p.state.operation.is_none());
    assert_eq!(p.state.primary, Some(0));
    assert!(matches!(&p.health, Health::Unhealthy { reason, .. } if reason == "FenceFailed"));
    assert!(p.events.iter().any(|e| e.reason == "FenceFailed"));
    assert!(
        !p.steps
            .iter()
            .any(|s| matches!(s.action, Action::Promote { .. }))
    );
}

fn wait_relay_state() -> ReplicationState {
    ReplicationState {
        operation: Some(Operation {
            kind: OperationKind::Failover,
            from: 0,
            to: None,
            step: step::WAIT_RELAY.into(),
            term: 2,
            started_at: to_time(now()),
            deadline: Some(to_time(now() + ChronoDuration::seconds(60))),
            reason: "lost".into(),
            data: None,
        }),
        ..healthy_state()
    }
}

/// A replica whose IO thread is stopped, having executed `executed` and
/// received `received`.
fn lagging(executed: &str, received: &str) -> Observed {
    let mut o = obs(executed, true, Some("db-0.h"));
    let r = o.replica.as_mut().unwrap();
    r.received = Some(g(received));
    r.io_running = "No".into();
    o
}

#[test]
fn failover_chooses_by_received_and_applies_before_promoting() {
    // db-1 executed less but received more than db-2: it is the candidate.
    let views = vec![
        view(0, None),
        view(1, Some(lagging("0-100-8", "0-100-10"))),
        view(2, Some(lagging("0-100-9", "0-100-9"))),
    ];
    // Still receiving: IO threads are stopped first, nothing chosen.
    let mut receiving = views.clone();
    if let Ok(o) = &mut receiving[1].obs {
        o.replica.as_mut().unwrap().io_running = "Yes".into();
    }
    let p = run(&receiving, &wait_relay_state(), None, now());
    assert_eq!(actions(&p), vec![Action::StopIo { ordinal: 1 }]);
    assert_eq!(p.state.operation.as_ref().unwrap().step, step::WAIT_RELAY);
    // An applier stopped without an error starts before the receiver stops
    // (MariaDB discards the relay log when both were stopped).
    if let Ok(o) = &mut receiving[1].obs {
        o.replica.as_mut().unwrap().sql_running = false;
    }
    let p = run(&receiving, &wait_relay_state(), None, now());
    assert_eq!(
        actions(&p),
        vec![
            Action::StartSqlThread { ordinal: 1 },
            Action::StopIo { ordinal: 1 }
        ]
    );

    let p = run(&views, &wait_relay_state(), None, now());
    let op = p.state.operation.clone().unwrap();
    assert_eq!((op.step.as_str(), op.to), (step::APPLY_RELAY, Some(1)));
    assert_eq!(
        op.data.as_ref().and_then(|d| d.received.as_deref()),
        Some("0-100-10")
    );
    let st = p.state.clone();

    // Applying: waited for, never promoted (no relay log reset).
    let at = now() + ChronoDuration::seconds(1);
    let p = run(&views, &st, None, at);
    assert_eq!(
        actions(&p),
        vec![Action::WaitGtid {
            ordinal: 1,
            gtids: "0-100-10".into(),
            secs: 1
        }]
    );
    assert_eq!(p.state.operation.as_ref().unwrap().step, step::APPLY_RELAY);

    // SQL thread stopped without an error: started again.
    let mut stopped = views.clone();
    if let Ok(o) = &mut stopped[1].obs {
        o.replica.as_mut().unwrap().sql_running = false;
    }
    let p = run(&stopped, &st, None, at);
    assert!(actions(&p).contains(&Action::StartSqlThread { ordinal: 1 }));
    assert!(
        !actions(&p)
            .iter()
            .any(|a| matches!(a, Action::Promote { .. }))
    );

    // Stopped with an error: reported, not taken for applied.
    let mut broken = stopped.clone();
    if let Ok(o) = &mut broken[1].obs {
        let r = o.replica.as_mut().unwrap();
        r.last_sql_errno = 1062;
        r.last_sql_error = "Duplicate entry".into();
    }
    let p = run(&broken, &st, None, at);
    assert!(actions(&p).is_empty(), "{:?}", actions(&p));
    assert!(
        matches!(&p.health, Health::Unhealthy { reason, .. } if reason == "ReplicaApplierFailed")
    );
    assert!(p.events.iter().any(|e| e.reason == "ReplicaApplierFailed"));
    assert_eq!(p.state.operation.as_ref().unwrap().to, Some(1));
    // ... until the deadline: abandoned, nothing promoted.
    let p = run(&broken, &st, None, now() + ChronoDuration::seconds(61));
    assert!(p.state.operation.is_none());
    assert_eq!(p.state.primary, Some(0));
    assert!(p.events.iter().any(|e| e.reason == "FailoverAborted"));
    assert!(
        !actions(&p)
            .iter()
            .any(|a| matches!(a, Action::Promote { .. }))
    );

    // Applied everything it received: promoted once the old primary is isolated.
    let mut applied = views.clone();
    applied[1] = view(1, Some(lagging("0-100-10", "0-100-10")));
    applied[0].isolated = true;
    let p = run(&applied, &st, None, at);
    assert_eq!(p.state.operation.as_ref().unwrap().step, step::PROMOTE);
    assert!(actions(&p).is_empty(), "{:?}", actions(&p));
    let p = run(&applied, &p.state, None, at);
    assert_eq!(
        actions(&p),
        vec![Action::Promote {
            ordinal: 1,
            semi_sync: false
        }]
    );
    assert_eq!(p.state.primary, Some(1));
    // A Promote step whose candidate has not applied everything (it received
    // more meanwhile) waits again.
    let mut promote = st.clone();
    promote.operation.as_mut().unwrap().step = step::PROMOTE.into();
    let p = run(&views, &promote, None, at);
    assert!(
        !actions(&p)
            .iter()
            .any(|a| matches!(a, Action::Promote { .. }))
    );
}

#[test]
fn operation_data_is_typed_and_old_strings_are_ignored() {
    let op = wait_relay_state().operation.unwrap();
    let mut json = serde_json::to_value(&op).unwrap();
    json["data"] = serde_json::json!("relay_until=2026-01-01T00:00:00Z");
    let back: Operation = serde_json::from_value(json.clone()).unwrap();
    assert_eq!(back.data, None);
    json["data"] = serde_json::json!({"received": "0-100-10", "position": "0-100-9"});
    let back: Operation = serde_json::from_value(json).unwrap();
    let data = back.data.unwrap();
    assert_eq!(data.received.as_deref(), Some("0-100-10"));
    assert_eq!(data.position.as_deref(), Some("0-100-9"));
    let round = serde_json::to_value(&data).unwrap();
    assert_eq!(
        round,
        serde_json::json!({"received": "0-100-10", "position": "0-100-9"})
    );
}

#[test]
fn returned_primary_lacking_what_replicas_hold_is_replaced_not_trusted() {
    // db-0 came back read-only at 0-100-10; db-1 holds 0-100-12 which db-0
    // originated (lost in its crash): db-0 is stale, db-1 is not errant.
    let mut ahead = obs("0-100-12", true, Some("db-0.h"));
    {
        let r = ahead.replica.as_mut().unwrap();
        r.io_running = "No".into();
        r.last_io_errno = 1236;
        r.last_io_error = "Got fatal error 1236 from master when reading data from binary log: 'Error: connecting slave requested to start from GTID 0-100-12, which is not in the master's binlog. Since the master's binlog contains GTIDs with higher sequence numbers, it probably means that the slave has diverged due to executing extra erroneous transactions'".into();
    }
    let views = vec![
        view(0, Some(obs("0-100-10", true, None))),
        view(1, Some(ahead)),
        view(2, Some(obs("0-100-10", true, Some("db-0.h")))),
    ];
    let p = run(&views, &healthy_state(), None, now());
    assert!(matches!(&p.health, Health::Unhealthy { reason, .. } if reason == "PrimaryStale"));
    assert!(
        !actions(&p)
            .iter()
            .any(|a| matches!(a, Action::MakeWritable { .. }))
    );
    assert!(p.members.iter().all(|m| m.role != MemberRole::Quarantined));
    // After the detection window the replica holding more is the candidate.
    let p = run(&views, &p.state, None, now() + ChronoDuration::seconds(6));
    let op = p.state.operation.clone().expect("failover started");
    let mut stopped = views.clone();
    if let Ok(o) = &mut stopped[2].obs {
        o.replica.as_mut().unwrap().io_running = "No".into();
    }
    let p = run(&stopped, &p.state, None, now() + ChronoDuration::seconds(7));
    let chosen = p.state.operation.clone().unwrap();
    assert_eq!(
        (chosen.step.as_str(), chosen.to),
        (step::APPLY_RELAY, Some(1))
    );
    assert_eq!(op.from, 0);
    // The same primary writable (not restarted) is judged as before: the
    // replica is then sampled ahead of it only by a race.
    let mut writable = views.clone();
    writable[0] = view(0, Some(obs("0-100-10", false, None)));
    let p = run(&writable, &healthy_state(), None, now());
    assert!(!matches!(&p.health, Health::Unhealthy { reason, .. } if reason == "PrimaryStale"));
}

#[test]
fn semi_sync_health_reports_no_replicas_and_off() {
    let mut po = obs("0-100-10", false, None);
    po.semi_primary = Some(true);
    let mut r1 = obs("0-100-10", true, Some("db-0.h"));
    r1.semi_replica = Some(true);
    let mut settings = MySqlSettings::default();
    settings.replication.mode = ReplicationMode::SemiSync;
    let state = healthy_state();
    let health = |po: &Observed| {
        let views = vec![view(0, Some(po.clone())), view(1, Some(r1.clone()))];
        plan(&input(&views, &state, &settings)).health
    };
    po.semi_status = Some(true);
    po.semi_clients = Some(1);
    assert_eq!(health(&po), Health::Healthy);
    po.semi_clients = Some(0);
    assert!(
        matches!(health(&po), Health::Unhealthy { reason, .. } if reason == "SemiSyncNoReplicas")
    );
    po.semi_status = Some(false);
    po.semi_clients = Some(1);
    assert!(matches!(health(&po), Health::Unhealthy { reason, .. } if reason == "SemiSyncOff"));
}

#[test]
fn candidate_choice() {
    let a = g("0-100-10");
    let b = g("0-100-8");
    let c = g("0-101-10");
    assert_eq!(
        choose_candidate(&[(1, &b), (2, &a)], Some(&a), None, None),
        Ok(2)
    );
    // lagging beyond max_lag
    assert!(choose_candidate(&[(1, &b)], Some(&a), None, None).is_err());
    assert_eq!(choose_candidate(&[(1, &b)], Some(&a), Some(2), None), Ok(1));
    // diverged replicas: nobody holds everything
    assert!(choose_candidate(&[(1, &a), (2, &c)], None, None, None).is_err());
    // preference among equals
    assert_eq!(
        choose_candidate(&[(1, &a), (2, &a)], None, None, Some(2)),
        Ok(2)
    );
    assert_eq!(
        choose_candidate(&[(1, &a), (2, &a)], None, None, None),
        Ok(1)
    );
    assert!(choose_candidate(&[], None, None, None).is_err());
}

#[test]
fn switchover_fences_then_promotes_or_aborts() {
    let views = vec![
        view(0, Some(obs("0-100-10", false, None))),
        view(1, Some(obs("0-100-10", true, Some("db-0.h")))),
    ];
    let p = run(&views, &healthy_state(), Some(1), now());
    let op = p.state.operation.clone().expect("switchover");
    assert_eq!(
        (op.kind, op.step.as_str(), op.to),
        (OperationKind::Switchover, step::CATCH_UP, Some(1))
    );
    assert!(
        p.steps
            .iter()
            .any(|s| s.action == Action::Fence { ordinal: 0 } && s.critical)
    );
    // candidate behind: wait
    let behind = vec![
        view(0, Some(obs("0-100-12", true, None))),
        view(1, Some(obs("0-100-10", true, Some("db-0.h")))),
    ];
    let p2 = run(
        &behind,
        &p.state,
        Some(1),
        now() + ChronoDuration::seconds(1),
    );
    assert!(actions(&p2).contains(&Action::WaitGtid {
        ordinal: 1,
        gtids: "0-100-12".into(),
        secs: 1
    }));
    assert_eq!(p2.state.primary, Some(0));
    // deadline passed: abort, old primary writable again, cooldown recorded
    let p3 = run(
        &behind,
        &p.state,
        Some(1),
        now() + ChronoDuration::seconds(31),
    );
    assert!(actions(&p3).contains(&Action::MakeWritable {
        ordinal: 0,
        semi_sync: false
    }));
    assert_eq!(p3.state.operation.as_ref().unwrap().step, step::COOLDOWN);
    assert_eq!(p3.state.primary, Some(0));
    // during the cooldown the steady state runs without a new attempt
    let healthy = vec![
        view(0, Some(obs("0-100-12", false, None))),
        view(1, Some(obs("0-100-12", true, Some("db-0.h")))),
    ];
    let p4 = run(
        &healthy,
        &p3.state,
        Some(1),
        now() + ChronoDuration::seconds(40),
    );
    assert!(p4.steps.is_empty(), "{:?}", p4.steps);
    // caught up: promote
    let p5 = run(
        &healthy,
        &p.state,
        Some(1),
        now() + ChronoDuration::seconds(2),
    );
    assert_eq!(
        actions(&p5),
        vec![Action::Promote {
            ordinal: 1,
            semi_sync: false
        }]
    );
    assert_eq!(p5.state.primary, Some(1));
    assert_eq!(p5.state.term, 2);
}

#[test]
fn identity_origin_parses_both_flavors() {
    assert_eq!(
        identity_origin(Some("server_id=101;datadir=x")).as_deref(),
        Some("101")
    );
    assert_eq!(
        identity_origin(Some("server_id=101;server_uuid=abc")).as_deref(),
        Some("abc")
    );
    assert_eq!(identity_origin(None), None);
}

#[test]
fn member_behind_purged_binlogs_is_reseeded_not_repointed() {
    let mut po = obs("0-100-300", false, None);
    po.purged = Some(g("0-100-210"));
    let mut broken = obs("0-100-50", true, Some("db-0.h"));
    {
        let r = broken.replica.as_mut().unwrap();
        r.io_running = "No".into();
        r.last_io_errno = 1236;
        r.last_io_error = "Got fatal error 1236 from master when reading data from binary log: 'Could not find GTID state requested by slave in any binlog files. Probably the slave state is too old and required binlog files have been purged.'".into();
    }
    let views = vec![
        view(0, Some(po)),
        view(1, Some(obs("", true, None))),
        view(2, Some(broken)),
        view(3, Some(obs("0-100-250", true, None))),
    ];
    // First recorded (persisted before anything is dropped), then started.
    let p = run(&views, &healthy_state(), None, now());
    assert!(
        !actions(&p)
            .iter()
            .any(|a| matches!(a, Action::Reseed { .. }))
    );
    let recorded: Vec<i32> = p.state.reseeds.iter().map(|r| r.ordinal).collect();
    assert_eq!(recorded, vec![1, 2]);
    assert!(p.events.iter().any(|e| e.reason == "Reseeding"));
    let st = p.state.clone();
    let p = run(&views, &st, None, now());
    let a = actions(&p);
    assert!(
        a.contains(&Action::Reseed {
            ordinal: 1,
            source: 0
        }),
        "{a:?}"
    );
    assert!(
        a.contains(&Action::Reseed {
            ordinal: 2,
            source: 0
        }),
        "{a:?}"
    );
    // holds everything purged: a plain repoint is enough
    assert!(a.contains(&Action::Repoint {
        ordinal: 3,
        source: 0,
        executed: "0-100-250".into()
    }));
    // A recorded re-seed whatever the member now reports (its GTID position
    // without its data, after an operator restart): seeded again.
    let mut restarted = views.clone();
    restarted[1] = view(1, Some(obs("0-100-250", true, Some("db-0.h"))));
    let p = run(&restarted, &st, None, now());
    assert!(actions(&p).contains(&Action::Reseed {
        ordinal: 1,
        source: 0
    }));
    assert_ne!(p.members[1].role, MemberRole::Replica);
    // Seeded: the record goes, the member is judged as usual.
    let settings = MySqlSettings::default();
    let failover = FailoverSpec {
        enabled: true,
        detection_seconds: 5,
        max_lag: None,
    };
    let p = plan(&PlanInput {
        views: &restarted,
        state: &st,
        desired_primary: None,
        failover: &failover,
        settings: &settings,
        now: now(),
        timeouts: OpTimeouts::default(),
        credentials_changed: false,
        hint: None,
        reseeded: &[1],
        reseeding: &[2],
    });
    let recorded: Vec<i32> = p.state.reseeds.iter().map(|r| r.ordinal).collect();
    assert_eq!(recorded, vec![2]);
    assert_eq!(p.members[1].role, MemberRole::Replica);
    assert!(
        !actions(&p)
            .iter()
            .any(|a| matches!(a, Action::Reseed { .. }))
    );
}

#[test]
fn replica_sampled_after_the_primary_is_not_errant() {
    // The replica was observed after the primary committed more: the primary's
    // position re-read after all observations is the reference.
    let mut po = obs("0-100-10", false, None);
    po.executed_after = Some(g("0-100-12"));
    let views = vec![
        view(0, Some(po)),
        view(1, Some(obs("0-100-12", true, Some("db-0.h")))),
    ];
    let p = run(&views, &healthy_state(), None, now());
    assert_eq!(p.members[1].role, MemberRole::Replica);
    assert_eq!(p.health, Health::Healthy);
}

#[test]
fn semi_sync_settings_are_enforced_each_pass() {
    let views = vec![
        view(0, Some(obs("0-100-10", false, None))),
        view(1, Some(obs("0-100-10", true, Some("db-0.h")))),
    ];
    let mut settings = MySqlSettings::default();
    settings.replication.mode = ReplicationMode::SemiSync;
    settings.replication.wait_for_replicas = 2;
    let state = healthy_state();
    let p = plan(&input(&views, &state, &settings));
    let a = actions(&p);
    assert!(a.contains(&Action::SemiSyncPrimary { ordinal: 0 }));
    assert!(a.contains(&Action::SemiSyncReplica { ordinal: 1 }));
    assert!(
        p.events
            .iter()
            .any(|e| e.reason == "SemiSyncWaitCountUnsupported")
    );
}

#[test]
fn mysql_flavor_quarantines_and_fails_over_by_gtid_sets() {
    const P: &str = "3e11fa47-71ca-11e1-9e33-c80aa9429562";
    const R: &str = "4e11fa47-71ca-11e1-9e33-c80aa9429562";
    let y = |s: &str| GtidSet::parse(MySqlFlavor::MySQL, s).unwrap();
    let mk = |executed: &str, read_only: bool, source: Option<&str>| {
        let mut o = obs("", read_only, source);
        o.executed = y(executed);
        if let Some(r) = o.replica.as_mut() {
            r.received = Some(y(executed));
        }
        o.identity = format!("server_id=100;server_uuid={P}");
        o
    };
    let mut settings = MySqlSettings {
        flavor: MySqlFlavor::MySQL,
        ..Default::default()
    };
    settings.replication.mode = ReplicationMode::Async;
    let failover = FailoverSpec {
        enabled: true,
        detection_seconds: 1,
        max_lag: None,
    };
    let state = ReplicationState {
        primary: Some(0),
        term: 1,
        primary_position: Some(format!("{P}:1-100")),
        primary_identity: Some(format!("server_id=100;server_uuid={P}")),
        ..Default::default()
    };
    let run_y = |views: &[View], st: &ReplicationState, at| {
        plan(&PlanInput {
            views,
            state: st,
            desired_primary: None,
            failover: &failover,
            settings: &settings,
            now: at,
            timeouts: OpTimeouts::default(),
            credentials_changed: false,
            hint: None,
            reseeded: &[],
            reseeding: &[],
        })
    };
    let views = vec![
        view(0, Some(mk(&format!("{P}:1-100"), false, None))),
        view(1, Some(mk(&format!("{P}:1-100"), true, Some("db-0.h")))),
        view(
            2,
            Some(mk(&format!("{P}:1-100,{R}:1"), true, Some("db-0.h"))),
        ),
    ];
    let p = run_y(&views, &state, now());
    assert_eq!(p.members[1].role, MemberRole::Replica);
    assert_eq!(p.members[2].role, MemberRole::Quarantined);
    assert!(
        p.members[2]
            .message
            .as_deref()
            .unwrap_or("")
            .contains(&format!("{R}:1"))
    );
    // primary lost: the errant replica (a superset!) is never the candidate
    let lost = vec![view(0, None), views[1].clone(), views[2].clone()];
    let p = run_y(&lost, &state, now());
    let p = run_y(&lost, &p.state, now() + ChronoDuration::seconds(2));
    assert!(p.state.operation.is_some());
    let stopped: Vec<View> = lost
        .iter()
        .cloned()
        .map(|mut v| {
            if let Ok(o) = &mut v.obs
                && let Some(r) = o.replica.as_mut()
            {
                r.io_running = "No".into();
            }
            v
        })
        .collect();
    let p = run_y(&stopped, &p.state, now() + ChronoDuration::seconds(3));
    assert_eq!(p.state.operation.as_ref().and_then(|o| o.to), Some(1));
}

#[test]
fn bootstrap_adopts_the_member_holding_every_transaction() {
    // Status lost while ordinal 2 was the primary: it is adopted, not ordinal 0.
    let views = vec![
        view(0, Some(obs("0-100-10,0-102-40", true, Some("db-2.h")))),
        view(1, None),
        view(2, Some(obs("0-100-10,0-102-42", false, None))),
    ];
    let p = run(&views, &ReplicationState::default(), None, now());
    assert_eq!(p.state.primary, None, "waits for every member first");
    assert!(p.steps.is_empty());
    let views = vec![
        view(0, Some(obs("0-100-10,0-102-40", true, Some("db-2.h")))),
        view(1, Some(obs("0-100-10", true, Some("db-2.h")))),
        view(2, Some(obs("0-100-10,0-102-42", false, None))),
    ];
    let p = run(&views, &ReplicationState::default(), None, now());
    assert_eq!(p.state.primary, Some(2));
    assert_eq!(
        actions(&p)[0],
        Action::Promote {
            ordinal: 2,
            semi_sync: false
        }
    );
    // Diverged members: refused, a person decides.
    let views = vec![
        view(0, Some(obs("0-100-10,0-101-11", true, None))),
        view(1, Some(obs("0-100-10,0-102-11", true, None))),
    ];
    let p = run(&views, &ReplicationState::default(), None, now());
    assert_eq!(p.state.primary, None);
    assert!(p.events.iter().any(|e| e.reason == "AdoptionRefused"));
    assert!(p.steps.is_empty(), "nothing is touched");
}

#[test]
fn credential_change_refreshes_users_and_repoints_replicas() {
    let views = vec![
        view(0, Some(obs("0-100-10", false, None))),
        view(1, Some(obs("0-100-10", true, Some("db-0.h")))),
    ];
    let settings = MySqlSettings::default();
    let failover = FailoverSpec::default();
    let state = healthy_state();
    let p = plan(&PlanInput {
        views: &views,
        state: &state,
        desired_primary: None,
        failover: &failover,
        settings: &settings,
        now: now(),
        timeouts: OpTimeouts::default(),
        credentials_changed: true,
        hint: None,
        reseeded: &[],
        reseeding: &[],
    });
    assert_eq!(
        actions(&p),
        vec![
            Action::EnsureUsers { ordinal: 0 },
            Action::Repoint {
                ordinal: 1,
                source: 0,
                executed: "0-100-10".into()
            }
        ]
    );
    // A replica refused by the primary (access denied) triggers the same.
    let mut refused = obs("0-100-10", true, Some("db-0.h"));
    {
        let r = refused.replica.as_mut().unwrap();
        r.io_running = "Connecting".into();
        r.last_io_errno = 1045;
    }
    let views = vec![
        view(0, Some(obs("0-100-10", false, None))),
        view(1, Some(refused)),
    ];
    let p = run(&views, &healthy_state(), None, now());
    assert!(actions(&p).contains(&Action::EnsureUsers { ordinal: 0 }));
    assert!(
        actions(&p)
            .iter()
            .any(|a| matches!(a, Action::Repoint { ordinal: 1, .. }))
    );
}

/// A former primary returns holding a transaction of its own no other
/// member received: under lossless semi-sync without fallback it was never
/// acknowledged, so it is re-seeded; in every case where that cannot be
/// shown it is quarantined for a person.
#[test]
fn returned_primary_with_unacknowledged_transactions_is_reseeded_only_when_provable() {
    let returned = || {
        let mut o = obs("0-100-12", true, None);
        o.server_id = 100;
        o
    };
    let replica = |executed: &str| {
        let mut o = obs(executed, true, Some("db-1.h"));
        o.server_id = 102;
        o
    };
    let mut primary = obs("0-100-11,0-101-20", false, None);
    primary.server_id = 101;
    primary.semi_primary = Some(true);
    let state = |replaced: &[i32]| ReplicationState {
        primary: Some(1),
        term: 2,
        primary_position: Some("0-101-20".into()),
        replaced_primaries: replaced.to_vec(),
        ..Default::default()
    };
    let semi = |fallback: bool| {
        let mut s = MySqlSettings::default();
        s.replication.mode = ReplicationMode::SemiSync;
        s.replication.allow_async_fallback = fallback;
        s
    };
    let decide = |views: &[View], st: &ReplicationState, settings: &MySqlSettings| {
        plan(&input(views, st, settings))
    };
    let views = |r2: Option<Observed>| {
        vec![
            view(0, Some(returned())),
            view(1, Some(primary.clone())),
            view(2, r2),
        ]
    };
    let caught_up = || Some(replica("0-100-11,0-101-20"));

    let p = decide(&views(caught_up()), &state(&[0]), &semi(false));
    let recorded: Vec<i32> = p.state.reseeds.iter().map(|r| r.ordinal).collect();
    assert_eq!(recorded, vec![0], "{:?}", p.events);
    assert_ne!(p.members[0].role, MemberRole::Quarantined);
    assert!(
        p.events
            .iter()
            .any(|e| e.reason == "Reseeding" && e.note.contains("0-100-12")),
        "{:?}",
        p.events
    );
    // The next pass seeds it from the primary.
    let p = decide(&views(caught_up()), &p.state, &semi(false));
    assert!(actions(&p).contains(&Action::Reseed {
        ordinal: 0,
        source: 1
    }));

    let mut holds_it = replica("0-100-12,0-101-20");
    holds_it.replica.as_mut().unwrap().received = Some(g("0-100-12,0-101-20"));
    let mut async_mode = MySqlSettings::default();
    async_mode.replication.mode = ReplicationMode::Async;
    for (why, views, st, settings) in [
        ("async mode", views(caught_up()), state(&[0]), async_mode),
        (
            "async fallback allowed",
            views(caught_up()),
            state(&[0]),
            semi(true),
        ),
        (
            "another member unreachable",
            views(None),
            state(&[0]),
            semi(false),
        ),
        (
            "another member received it",
            views(Some(holds_it)),
            state(&[0]),
            semi(false),
        ),
        (
            "not a replaced primary",
            views(caught_up()),
            state(&[2]),
            semi(false),
        ),
    ] {
        let p = decide(&views, &st, &settings);
        assert_eq!(p.members[0].role, MemberRole::Quarantined, "{why}");
        assert!(p.state.reseeds.is_empty(), "{why}");
        assert!(
            !actions(&p)
                .iter()
                .any(|a| matches!(a, Action::Reseed { .. })),
            "{why}"
        );
    }

    // Two primaries replaced in a row (the promoted one killed too), each
    // back with a commit of its own the other lacks: both are re-seeded.
    let mut second = obs("0-100-11,0-101-20,0-102-21", true, None);
    second.server_id = 102;
    let p = decide(&views(Some(second)), &state(&[0, 2]), &semi(false));
    let recorded: Vec<i32> = p.state.reseeds.iter().map(|r| r.ordinal).collect();
    assert_eq!(recorded, vec![0, 2], "{:?}", p.events);

    // A replaced primary replicating from the primary again is no longer one.
    let mut rejoined = obs("0-100-11,0-101-20", true, Some("db-1.h"));
    rejoined.server_id = 100;
    let views = vec![
        view(0, Some(rejoined)),
        view(1, Some(primary.clone())),
        view(2, caught_up()),
    ];
    let p = decide(&views, &state(&[0]), &semi(false));
    assert!(p.state.replaced_primaries.is_empty());
}
