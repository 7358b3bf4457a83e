//! Steady state: the recorded primary answers and holds every transaction
//! the members hold. Keep it writable (and semi-sync configured), keep every
//! other member replicating from it — repointing, restarting, quarantining
//! or re-seeding one member at a time — start a requested switchover, and
//! report health. A member holding transactions the primary lacks is
//! quarantined (data kept for a person), unless they are provably never
//! acknowledged (see [`never_acknowledged`]): then it is re-seeded.

use super::*;

/// The recorded primary `pv` is usable (see [`primary_problem`]).
pub(super) fn plan_steady(inp: &PlanInput<'_>, pv: &View, po: &Observed, p: &mut Plan) {
    let primary = pv.ordinal;
    p.state.primary_unhealthy_since = None;
    p.fallback.primary_unhealthy_since = None;
    p.state.primary_position = Some(po.executed.to_string());
    p.state.primary_identity = Some(po.identity.clone());
    p.fallback.primary_position = p.state.primary_position.clone();
    p.fallback.primary_identity = p.state.primary_identity.clone();
    primary_steps(inp, pv, po, p);

    let mut problems: Vec<String> = Vec::new();
    let mut healthy_replicas: Vec<i32> = Vec::new();
    for v in inp.views.iter().filter(|v| v.ordinal != primary) {
        plan_member(inp, pv, po, v, &mut problems, &mut healthy_replicas, p);
    }
    if super::switchover::start_switchover(inp, pv, po, &healthy_replicas, &mut problems, p) {
        return;
    }
    steady_health(inp, pv, po, problems, p);
}

/// Keep the primary writable, its users current and semi-sync as configured.
fn primary_steps(inp: &PlanInput<'_>, pv: &View, po: &Observed, p: &mut Plan) {
    let primary = pv.ordinal;
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
}

/// One member other than the primary: what keeps it replicating from the
/// primary, or why it must not (errant, re-seeding, unreachable).
fn plan_member(
    inp: &PlanInput<'_>,
    pv: &View,
    po: &Observed,
    v: &View,
    problems: &mut Vec<String>,
    healthy_replicas: &mut Vec<i32>,
    p: &mut Plan,
) {
    let primary = pv.ordinal;
    let d = crate::mysql::flavor::Dialect(inp.settings.flavor);
    let semi_sync = semi(inp);
    let recorded = &inp.state.reseeds;
    if recorded.iter().any(|r| r.ordinal == v.ordinal) && !inp.reseeded.contains(&v.ordinal) {
        // Its schemas may be dropped already: whatever its GTID position
        // says, it is seeded again unless the seed runs right now.
        problems.push(format!("{} being re-seeded", v.pod));
        set_role(
            p,
            v.ordinal,
            MemberRole::Unknown,
            Some(crate::mysql::RESEEDING.into()),
        );
        if !inp.reseeding.contains(&v.ordinal) && v.obs.is_ok() {
            p.steps.push(Step {
                action: Action::Reseed {
                    ordinal: v.ordinal,
                    source: primary,
                },
                critical: false,
            });
        }
        return;
    }
    let o = match &v.obs {
        Ok(o) => o,
        Err(e) if e == crate::mysql::RESEEDING => {
            problems.push(format!("{} {e}", v.pod));
            return;
        }
        Err(_) => {
            problems.push(format!("{} unreachable", v.pod));
            return;
        }
    };
    if let Some(why) = errant(o, po.reference(), d) {
        if let Some(proof) = never_acknowledged(inp, pv, v, o, po) {
            if o.writable() {
                p.steps.push(Step {
                    action: Action::Fence { ordinal: v.ordinal },
                    critical: false,
                });
            }
            request_reseed(
                inp,
                p,
                problems,
                v,
                format!(
                    "{} {why}; {proof}: they are discarded and it is seeded from a fresh dump of {}",
                    v.pod, pv.pod
                ),
            );
            return;
        }
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
        return;
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
                return;
            }
            if d.is_purged_binlog_error(r.last_io_errno, &r.last_io_error) {
                request_reseed(
                    inp,
                    p,
                    problems,
                    v,
                    format!(
                        "{} needs binlogs {} no longer has; seeding it from a fresh dump",
                        v.pod, pv.pod
                    ),
                );
                return;
            }
            if r.last_sql_errno != 0 && !r.sql_running {
                let msg = format!(
                    "SQL thread stopped with error {}: {}",
                    r.last_sql_errno, r.last_sql_error
                );
                problems.push(format!("{}: {msg}", v.pod));
                set_role(p, v.ordinal, MemberRole::Unknown, Some(msg));
                return;
            }
            if r.io_yes() && r.sql_running {
                set_role(p, v.ordinal, MemberRole::Replica, None);
                // Replicating from this primary: no longer a replaced primary.
                p.state.replaced_primaries.retain(|o| *o != v.ordinal);
                p.fallback.replaced_primaries.retain(|o| *o != v.ordinal);
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
            // A member lacking transactions it originated itself (emptied,
            // or a returned primary that lost its last commits in a crash)
            // would skip them when replicating (events of its own server
            // id are ignored): seeded from a dump instead, like a member
            // behind purged binlogs.
            let own_lost = own_transactions_lacking(o, po) > 0;
            if own_lost
                || po
                    .purged
                    .as_ref()
                    .is_some_and(|pg| !o.executed.contains(pg))
            {
                let pg = po.purged.clone().unwrap_or_else(|| po.reference().clone());
                // MariaDB would silently start such a replica from the
                // oldest binlog left; it is seeded from a dump instead.
                request_reseed(
                    inp,
                    p,
                    problems,
                    v,
                    if own_lost {
                        format!(
                            "{} lacks {} transaction(s) it originated itself that {} holds, which replication would skip; seeding it from a fresh dump",
                            v.pod,
                            own_transactions_lacking(o, po),
                            pv.pod
                        )
                    } else {
                        format!(
                            "{} lacks transactions {} purged from its binlogs ({} missing); seeding it from a fresh dump",
                            v.pod,
                            pv.pod,
                            o.executed.missing(&pg)
                        )
                    },
                );
                return;
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

/// Health of a steady cluster: the members' problems, else the primary's
/// semi-sync state when semi-sync is configured.
fn steady_health(
    inp: &PlanInput<'_>,
    pv: &View,
    po: &Observed,
    mut problems: Vec<String>,
    p: &mut Plan,
) {
    let semi_sync = semi(inp);
    let semi_problem = if semi_sync && po.semi_primary == Some(true) {
        match (po.semi_status, po.semi_clients) {
            (Some(false), _) => Some((
                "SemiSyncOff",
                format!(
                    "semi-sync is configured but {} does not wait for acknowledgements (Rpl_semi_sync status OFF): commits are acknowledged before any replica holds them",
                    pv.pod
                ),
            )),
            (_, Some(0)) => Some((
                "SemiSyncNoReplicas",
                format!(
                    "semi-sync is configured but no semi-sync replica is connected to {}: commits wait for an acknowledgement nobody sends",
                    pv.pod
                ),
            )),
            _ => None,
        }
    } else {
        None
    };
    match (problems.is_empty(), semi_problem) {
        (true, None) => {
            p.health = Health::Healthy;
            p.requeue = std::time::Duration::from_secs(5);
        }
        (true, Some((reason, message))) => {
            p.health = unhealthy(reason, message);
            p.requeue = std::time::Duration::from_secs(2);
        }
        (false, semi_problem) => {
            problems.extend(semi_problem.map(|(_, m)| m));
            p.health = unhealthy("MembersNotReplicating", problems.join("; "));
            p.requeue = std::time::Duration::from_secs(2);
        }
    }
}

/// A member must be seeded from a dump of the primary: the decision is
/// recorded in the state first (persisted before the next pass); the seed,
/// which drops its schemas, starts on the next pass from that record.
fn request_reseed(
    inp: &PlanInput<'_>,
    p: &mut Plan,
    problems: &mut Vec<String>,
    v: &View,
    why: String,
) {
    problems.push(format!("{} being re-seeded", v.pod));
    if !p.state.reseeds.iter().any(|r| r.ordinal == v.ordinal) {
        let record = ReseedRecord {
            ordinal: v.ordinal,
            started_at: to_time(inp.now),
        };
        p.state.reseeds.push(record.clone());
        p.fallback.reseeds.push(record);
    }
    p.events.push(ev(EventType::Normal, "Reseeding", why));
    set_role(
        p,
        v.ordinal,
        MemberRole::Unknown,
        Some(crate::mysql::RESEEDING.into()),
    );
    p.requeue = std::time::Duration::from_millis(300);
}

/// How member `o` names itself as the origin of transactions (MariaDB server
/// id, MySQL server uuid).
fn own_origin(o: &Observed) -> Option<String> {
    match &o.executed {
        GtidSet::MariaDb(_) => Some(o.server_id.to_string()),
        GtidSet::MySql(_) => identity_origin(Some(&o.identity)),
    }
}

/// Transactions the member `o` originated that the primary `po` holds and
/// `o` lacks.
fn own_transactions_lacking(o: &Observed, po: &Observed) -> u64 {
    match own_origin(o) {
        Some(own) => o.executed.missing(&po.reference().originated_by(&own)),
        None => 0,
    }
}

/// Why the transactions member `v` holds beyond the primary `pv` were
/// provably never acknowledged to a client, or None when that cannot be
/// shown (the member is then quarantined for a person). All must hold:
/// - lossless semi-sync without async fallback: a commit returns to its
///   client only after a replica received it;
/// - a failover replaced `v` as primary and it has not replicated since,
///   and every transaction it holds beyond the primary originated on it:
///   they were written while it was the primary (a person writing on a
///   read-only member with admin privileges is not covered);
/// - every other member answers and holds (executed or received) none of
///   them, so no replica ever received them (a failover's candidate holds
///   whatever the reachable replicas received).
fn never_acknowledged(
    inp: &PlanInput<'_>,
    pv: &View,
    v: &View,
    o: &Observed,
    po: &Observed,
) -> Option<String> {
    if !semi(inp) || inp.settings.replication.allow_async_fallback {
        return None;
    }
    if !inp.state.replaced_primaries.contains(&v.ordinal) {
        return None;
    }
    let own = own_origin(o)?;
    if o.executed.errant_vs(po.reference(), Some(&own)).is_some() {
        return None;
    }
    for w in inp
        .views
        .iter()
        .filter(|w| w.ordinal != v.ordinal && w.ordinal != pv.ordinal)
    {
        let wo = w.obs.as_ref().ok()?;
        if o.executed.shares_beyond(&held(wo), po.reference()) {
            return None;
        }
    }
    Some(
        "they were written while it was the primary under lossless semi-sync without async fallback, and no other member received them, so no client was told they committed"
            .to_string(),
    )
}
