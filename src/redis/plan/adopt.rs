//! Adoption: no primary is recorded (a new cluster, a cluster re-created over
//! kept volumes, a lost status). Every member boots as a replica of itself —
//! read-only, never syncing — so nothing has been copied yet. The planner
//! waits until every member answers, reads each one's data evidence
//! (replication history and offset; key count when histories are not
//! comparable, e.g. after every member restarted) and promotes the member
//! that holds everything the others hold. An empty member is never the
//! source while another holds data; when no member holds everything the
//! others hold, adoption is refused and nothing is touched. Only a cluster
//! whose members are all empty bootstraps from `spec.primary` or ordinal 0.

use super::*;

/// How long adoption waits quietly for every member before it warns.
pub const ADOPTION_PATIENCE: Duration = Duration::from_secs(300);

/// What one member's data says about another's.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Containment {
    /// `a` holds everything `b` holds.
    Holds,
    /// `b` holds something `a` lacks.
    Lacks,
    /// The evidence cannot tell (histories not comparable, both hold keys).
    Unknown,
}

/// Whether `a`'s data contains `b`'s, from replication history and offset
/// when they share one, otherwise only for an empty `b`.
pub fn containment(a: &NodeInfo, b: &NodeInfo) -> Containment {
    let known = |id: &str| !id.is_empty() && id.bytes().any(|c| c != b'0');
    if known(&a.replid) && a.replid == b.replid {
        return if a.offset >= b.offset {
            Containment::Holds
        } else {
            Containment::Lacks
        };
    }
    // `a` was promoted from `b`'s history: `b` is contained when it stopped
    // before the fork (offsets below `a.second_offset`).
    if known(&b.replid) && a.replid2 == b.replid {
        return if b.offset < a.second_offset {
            Containment::Holds
        } else {
            Containment::Lacks
        };
    }
    // `b` was promoted from `a`'s history: contained only while `b` has
    // nothing past its own fork.
    if known(&a.replid) && b.replid2 == a.replid {
        return if b.offset < b.second_offset && a.offset >= b.offset {
            Containment::Holds
        } else {
            Containment::Lacks
        };
    }
    match (a.keys, b.keys) {
        (_, 0) => Containment::Holds,
        (0, _) => Containment::Lacks,
        _ => Containment::Unknown,
    }
}

/// Why adoption cannot pick a source.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AdoptionError {
    /// Members not observed yet (not reachable, loading, syncing).
    Waiting(Vec<String>),
    /// No member holds everything the others hold.
    Diverged(String),
}

/// The member to adopt as primary, and how the evidence was read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Adoption {
    pub ordinal: i32,
    /// Every member is empty: a fresh bootstrap, not an adoption.
    pub fresh: bool,
    /// Some members were compared by key count only.
    pub by_key_count: bool,
}

/// Choose the member to adopt. Preference among members the data shows to
/// be equally complete: one that already accepts writes (no second writable
/// member is ever made), the hint, the desired primary, the lowest ordinal.
pub fn choose_adoption(
    members: &[MemberView],
    hint: Option<i32>,
    desired: Option<i32>,
) -> Result<Adoption, AdoptionError> {
    let waiting: Vec<String> = members
        .iter()
        .filter_map(|m| match &m.obs {
            Err(e) => Some(format!("{} ({e})", m.pod)),
            Ok(n) if n.loading => Some(format!("{} (loading its dataset)", m.pod)),
            Ok(n) if n.sync_in_progress => Some(format!("{} (syncing)", m.pod)),
            Ok(_) => None,
        })
        .collect();
    if !waiting.is_empty() {
        return Err(AdoptionError::Waiting(waiting));
    }
    let nodes: Vec<(&MemberView, &NodeInfo)> = members
        .iter()
        .filter_map(|m| m.node().map(|n| (m, n)))
        .collect();
    let rank = |m: &MemberView, n: &NodeInfo| {
        (
            n.role == ServerRole::Master,
            hint == Some(m.ordinal),
            desired == Some(m.ordinal),
            std::cmp::Reverse(m.ordinal),
        )
    };
    let fresh = nodes.iter().all(|(_, n)| n.keys == 0);
    // A replica of a writable member on that member's history holds a prefix
    // of it, whatever order they were sampled in (the primary keeps taking
    // writes while the others are read).
    let holds = |(am, an): (&MemberView, &NodeInfo), (_, bn): (&MemberView, &NodeInfo)| {
        if an.role == ServerRole::Master
            && bn.role == ServerRole::Replica
            && an.replid == bn.replid
            && source_of(bn, members) == Some(am.ordinal)
        {
            Containment::Holds
        } else {
            containment(an, bn)
        }
    };
    let candidates: Vec<(&MemberView, &NodeInfo)> = nodes
        .iter()
        .filter(|(m, n)| {
            nodes
                .iter()
                .filter(|(o, _)| o.ordinal != m.ordinal)
                .all(|(om, o)| match holds((m, n), (om, o)) {
                    Containment::Holds => true,
                    Containment::Lacks => false,
                    Containment::Unknown => n.keys >= o.keys,
                })
        })
        .copied()
        .collect();
    if let Some((m, n)) = candidates.iter().max_by_key(|(m, n)| rank(m, n)) {
        let by_key_count = nodes.iter().any(|(o, on)| {
            o.ordinal != m.ordinal && holds((m, n), (o, on)) == Containment::Unknown
        });
        return Ok(Adoption {
            ordinal: m.ordinal,
            fresh,
            by_key_count,
        });
    }
    let mut pairs = Vec::new();
    for (i, (a, an)) in nodes.iter().enumerate() {
        for (b, bn) in nodes.iter().skip(i + 1) {
            let ab = holds((a, an), (b, bn));
            let ba = holds((b, bn), (a, an));
            if ab == Containment::Lacks && ba == Containment::Lacks {
                pairs.push(format!(
                    "{} ({} keys, offset {}) and {} ({} keys, offset {}) each hold writes the other lacks",
                    a.pod, an.keys, an.offset, b.pod, bn.keys, bn.offset
                ));
            }
        }
    }
    if pairs.is_empty() {
        pairs.push("no member holds everything the others hold".to_string());
    }
    Err(AdoptionError::Diverged(pairs.join("; ")))
}

impl Planner<'_> {
    /// No recorded primary: adopt the member holding everything, or wait.
    pub(super) fn adoption(&mut self) {
        let hint = self.input.hint.map(|h| h.primary);
        match choose_adoption(self.members(), hint, self.input.desired_primary) {
            Ok(a) => self.adopt_member(a),
            Err(AdoptionError::Waiting(missing)) => self.wait_for_members(&missing),
            Err(AdoptionError::Diverged(why)) => {
                self.plan.requeue = self.input.timing.steady;
                let msg = format!(
                    "members hold data and none holds everything the others hold: {why}; every member is kept read-only and nothing is resynced until a person decides"
                );
                self.plan
                    .events
                    .push(event(EventType::Warning, "AdoptionRefused", msg.clone()));
                self.plan.health = unhealthy("AdoptionRefused", msg);
            }
        }
    }

    fn wait_for_members(&mut self, missing: &[String]) {
        let since = self
            .input
            .state
            .primary_unhealthy_since
            .clone()
            .unwrap_or_else(|| self.now());
        for s in [&mut self.plan.state, &mut self.plan.fallback] {
            s.primary_unhealthy_since = Some(since.clone());
        }
        let waited = (self.input.now - from_time(&since))
            .to_std()
            .unwrap_or_default();
        let msg = format!(
            "no primary is recorded: waiting for every member to answer before choosing the one that holds all data ({}s so far; missing: {})",
            waited.as_secs(),
            missing.join(", ")
        );
        self.plan.requeue = self.input.timing.steady;
        if waited > ADOPTION_PATIENCE {
            // Bounded: past the patience the wait is a reported problem, with
            // a Warning every 10 minutes; still no member is chosen blind.
            let period = Duration::from_secs(600).as_millis();
            let over = (waited - ADOPTION_PATIENCE).as_millis();
            if over % period <= self.input.timing.steady.as_millis().max(1000) {
                self.plan
                    .events
                    .push(event(EventType::Warning, "WaitingForMembers", msg.clone()));
            }
            self.plan.health = unhealthy("WaitingForMembers", msg);
        } else {
            self.plan.health = Health::Unknown {
                reason: "WaitingForMembers".into(),
                message: msg,
            };
        }
    }

    fn adopt_member(&mut self, a: Adoption) {
        let Some(m) = self.member(a.ordinal) else {
            return;
        };
        let Some(n) = m.node().cloned() else { return };
        let pod = m.pod.clone();
        // Never a second writable member: a writable member that is not the
        // one adopted is first made a replica of it (read-only; it cannot sync
        // while the adopted member is itself still read-only).
        let others_writable: Vec<i32> = self
            .members()
            .iter()
            .filter(|o| o.ordinal != a.ordinal && o.writable_primary().is_some())
            .map(|o| o.ordinal)
            .collect();
        if n.role != ServerRole::Master && !others_writable.is_empty() {
            self.plan.step_events = replicate_events(self.members(), &others_writable, a.ordinal);
            self.plan.step = Some(Action::Replicate {
                ordinals: others_writable,
                primary: a.ordinal,
            });
            self.plan.requeue = self.input.timing.active;
            self.plan.health = Health::Unknown {
                reason: "Adopting".into(),
                message: format!("fencing writable members before adopting {pod}"),
            };
            return;
        }
        let hint = self.input.hint;
        let base = self.input.state.term.max(hint.map_or(0, |h| h.term));
        let term = match hint {
            Some(h) if h.primary == a.ordinal && base > 0 => base,
            _ => base + 1,
        };
        let already_writable = n.role == ServerRole::Master;
        self.record_primary(&n);
        // When the promotion fails, the fallback keeps no primary recorded.
        let mut states = vec![&mut self.plan.state];
        if already_writable {
            states.push(&mut self.plan.fallback);
        } else {
            self.plan.fallback.primary_position = self.input.state.primary_position.clone();
            self.plan.fallback.primary_identity = self.input.state.primary_identity.clone();
        }
        for s in states {
            s.primary = Some(a.ordinal);
            s.term = term;
            s.operation = None;
            s.primary_unhealthy_since = None;
        }
        let evidence = self
            .members()
            .iter()
            .filter_map(|o| o.node().map(|on| format!("{} {} keys", o.pod, on.keys)))
            .collect::<Vec<_>>()
            .join(", ");
        let (reason, how) = if a.fresh {
            ("Bootstrapped", "every member is empty".to_string())
        } else if a.by_key_count {
            (
                "Adopted",
                format!(
                    "it holds the most keys and the replication histories are not comparable ({evidence})"
                ),
            )
        } else {
            (
                "Adopted",
                format!("it holds everything the others hold ({evidence})"),
            )
        };
        let note = format!("{pod} is the primary in term {term}: {how}");
        if already_writable {
            // Already writable (the status was lost under a running cluster).
            self.plan
                .events
                .push(event(EventType::Normal, reason, note));
            self.plan.health = Health::Unknown {
                reason: "Adopting".into(),
                message: format!("{pod} adopted as primary; repointing the others"),
            };
        } else {
            self.plan.step = Some(self.promote_action(a.ordinal));
            self.plan
                .step_events
                .push(event(EventType::Normal, reason, note));
            self.plan.health = Health::Unknown {
                reason: "Adopting".into(),
                message: format!("promoting {pod}; the others follow it next"),
            };
        }
        self.plan.requeue = self.input.timing.active;
    }
}
