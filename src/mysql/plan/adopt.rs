//! Adoption: no primary is recorded (a new cluster, a cluster re-created over
//! kept volumes, a lost status). Every member boots read-only with
//! replication not started, so nothing has been copied yet. The planner waits
//! until every member answers — a member that is not up yet may hold the
//! most data — then promotes the member whose executed GTID set contains
//! every other member's. An empty member is contained by every other, so it
//! is never the source while another holds data; when no member contains all
//! others (they diverged) adoption is refused and nothing is touched. Only a
//! cluster whose members are all empty bootstraps from `spec.primary` or
//! ordinal 0.

use super::*;

/// How long adoption waits quietly for every member before it warns.
pub const ADOPTION_PATIENCE: std::time::Duration = std::time::Duration::from_secs(300);

/// The member to adopt: among members whose executed set contains every
/// other's, one that already accepts writes (so no second writable member is
/// made), then the hint, then the desired primary, then the lowest ordinal.
pub fn choose_adoption(
    sets: &[(i32, &GtidSet)],
    writable: &[i32],
    hint: Option<i32>,
    desired: Option<i32>,
) -> Result<i32, String> {
    for pref in writable.iter().copied().chain(hint).chain(desired) {
        if choose_candidate(sets, None, None, Some(pref)) == Ok(pref) {
            return Ok(pref);
        }
    }
    choose_candidate(sets, None, None, None)
}

pub(super) fn plan_bootstrap(inp: &PlanInput<'_>, p: &mut Plan) {
    if inp.views.is_empty() {
        p.health = Health::Unknown {
            reason: "NoMembers".into(),
            message: "the cluster has no members".into(),
        };
        return;
    }
    let missing: Vec<&str> = inp
        .views
        .iter()
        .filter(|v| v.up().is_none())
        .map(|v| v.pod.as_str())
        .collect();
    if !missing.is_empty() {
        wait_for_members(inp, p, &missing);
        return;
    }
    // A writable member's set as re-read after every member was sampled, so
    // a replica sampled later never looks ahead of the member it follows.
    let sets: Vec<(i32, &GtidSet)> = inp
        .views
        .iter()
        .filter_map(|v| v.up().map(|o| (v.ordinal, o.reference())))
        .collect();
    let fresh = sets.iter().all(|(_, g)| g.is_empty());
    let writable: Vec<i32> = inp
        .views
        .iter()
        .filter(|v| v.up().is_some_and(|o| o.writable()))
        .map(|v| v.ordinal)
        .collect();
    let hint = inp.hint.map(|h| h.primary);
    let chosen = match choose_adoption(&sets, &writable, hint, inp.desired_primary) {
        Ok(c) => c,
        Err(why) => {
            let msg = format!(
                "members hold data and no primary can be chosen safely: {why}; every member is kept read-only and nothing is resynced until a person decides"
            );
            p.health = unhealthy("AdoptionRefused", msg.clone());
            p.events
                .push(ev(EventType::Warning, "AdoptionRefused", msg));
            p.requeue = std::time::Duration::from_secs(10);
            return;
        }
    };
    let Some(v0) = view(inp, chosen) else { return };
    let Some(o) = v0.up() else { return };
    // Never two writable members: any other member that accepts writes is
    // fenced (read-only, its connections killed; its data kept) first.
    for w in writable.iter().filter(|w| **w != chosen) {
        p.steps.push(Step {
            action: Action::Fence { ordinal: *w },
            critical: true,
        });
    }
    // Semi-sync is enabled on later passes: with no replica attached yet, a
    // lossless primary would block the very user creation replicas need.
    let semi_sync = false;
    // Promote: forgets any replication configuration of an adopted member.
    p.steps.push(Step {
        action: Action::Promote {
            ordinal: chosen,
            semi_sync,
        },
        critical: true,
    });
    p.steps.push(Step {
        action: Action::EnsureUsers { ordinal: chosen },
        critical: true,
    });
    let base = inp.state.term.max(inp.hint.map_or(0, |h| h.term)).max(0);
    let term = match inp.hint {
        Some(h) if h.primary == chosen && base > 0 => base,
        _ => base + 1,
    };
    p.state.primary = Some(chosen);
    p.state.term = term;
    p.state.primary_unhealthy_since = None;
    p.state.primary_position = Some(o.reference().to_string());
    p.state.primary_identity = Some(o.identity.clone());
    set_role(p, chosen, MemberRole::Primary, None);
    let evidence = inp
        .views
        .iter()
        .filter_map(|v| v.up().map(|o| format!("{}: {{{}}}", v.pod, o.executed)))
        .collect::<Vec<_>>()
        .join(", ");
    if fresh {
        p.events.push(ev(
            EventType::Normal,
            "Bootstrapped",
            format!(
                "{} (ordinal {chosen}) is the first primary (term {term}): every member is empty; users created, writes enabled",
                v0.pod
            ),
        ));
        p.health = Health::Unknown {
            reason: "Bootstrapping".into(),
            message: "primary confirmed; replicas are being configured".into(),
        };
    } else {
        p.events.push(ev(
            EventType::Normal,
            "Adopted",
            format!(
                "{} (ordinal {chosen}) is the primary in term {term}: its transactions contain every other member's ({evidence})",
                v0.pod
            ),
        ));
        p.health = Health::Unknown {
            reason: "Adopting".into(),
            message: format!(
                "{} adopted as primary; the others are being repointed",
                v0.pod
            ),
        };
    }
}

fn wait_for_members(inp: &PlanInput<'_>, p: &mut Plan, missing: &[&str]) {
    let since = inp
        .state
        .primary_unhealthy_since
        .clone()
        .unwrap_or_else(|| to_time(inp.now));
    p.state.primary_unhealthy_since = Some(since.clone());
    p.fallback.primary_unhealthy_since = Some(since.clone());
    let waited = (inp.now - from_time(&since)).to_std().unwrap_or_default();
    let msg = format!(
        "no primary is recorded: waiting for every member to answer before choosing the one that holds all data ({}s so far; missing: {})",
        waited.as_secs(),
        missing.join(", ")
    );
    p.requeue = std::time::Duration::from_secs(2);
    if waited > ADOPTION_PATIENCE {
        // Bounded: past the patience the wait is a reported problem, with a
        // Warning every 10 minutes; still no member is chosen blind.
        let over = (waited - ADOPTION_PATIENCE).as_secs();
        if over % 600 < 2 {
            p.events
                .push(ev(EventType::Warning, "WaitingForMembers", msg.clone()));
        }
        p.health = unhealthy("WaitingForMembers", msg);
    } else {
        p.health = Health::Unknown {
            reason: "WaitingForMembers".into(),
            message: msg,
        };
    }
}
