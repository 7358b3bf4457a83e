//! Rolling updates the operator drives itself.
//!
//! The StatefulSet uses `OnDelete`: a changed pod template (image,
//! restart-relevant configuration, resources) gives it a new
//! `updateRevision` and nothing else happens until a pod is deleted. This
//! planner decides which pod, one at a time:
//!
//! - replicas first, highest ordinal first, each only after every member is
//!   back, ready, caught up and replicating (as the engine last observed it);
//! - then a switchover of the primary to the most advanced updated replica,
//!   requested through `EngineInput::desired_primary` (the engine's
//!   switchover waits for the target to catch up and loses no acknowledged
//!   write);
//! - then the old primary, now a replica, is restarted like any other.
//!
//! The plan is rebuilt from observation every pass (pod revisions, engine
//! member status), so a restarted operator resumes where the pods are;
//! `status.rollout` carries what observation cannot: the member in flight,
//! when its step began (the deadline) and the switchover target. A member
//! that does not come back stalls the roll there; it never goes past it.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::Pod;
use kube::ResourceExt;
use kube::api::{Api, DeleteParams, Preconditions};
use kube::runtime::events::EventType as KubeEventType;
use tracing::info;

use super::common::{key_of, pod_ready, publish};
use super::conditions::{Cond, ConditionStatus, ConditionType, Reason};
use super::context::{Context, Error, KubeContext};
use super::kinds::ClusterResource;
use super::status::RolloutReport;
use crate::api::{ClusterStatus, MemberRole, MemberStatus, RolloutPhase, RolloutStatus};
use crate::resources::statefulset::{CONTAINER, RESTART_DIGEST, restart_digest};
use crate::resources::{ClusterView, DbKind};

/// Annotation on a cluster that pauses its rolling update (any value but `"false"`).
pub const PAUSE_ANNOTATION: &str = "ordinal.dev/pause-rollout";
/// A restarted member must be back (or a switchover done) within this many seconds.
pub const STEP_DEADLINE_SECS: i64 = 600;
/// Label the StatefulSet controller puts on each pod: the revision it runs.
pub const REVISION_LABEL: &str = "controller-revision-hash";

/// A member's pod as the roll sees it.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct PodView {
    pub revision: Option<String>,
    pub ready: bool,
    /// Restarts of the database container in this pod.
    pub restarts: i32,
    pub image: Option<String>,
    /// The digest of what a restart would change (see [`restart_digest`]).
    pub relevant: Option<String>,
}

/// One member: its pod (None while it is being recreated) and what the
/// engine last observed of it.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RollMember {
    pub ordinal: i32,
    pub pod: Option<PodView>,
    pub observed: Option<MemberStatus>,
}

/// Everything the planner decides from.
#[derive(Clone, Debug)]
pub struct RollInput {
    /// The StatefulSet's `updateRevision`, once its controller observed the
    /// current template.
    pub update_revision: Option<String>,
    /// The restart digest of the StatefulSet's pod template.
    pub template: Option<String>,
    pub members: Vec<RollMember>,
    pub primary: Option<i32>,
    /// A failover or switchover is running in the engine.
    pub operation: bool,
    /// `spec.primary`.
    pub spec_primary: Option<i32>,
    pub paused: bool,
    /// Largest lag (engine units) at which a replica counts as caught up.
    pub max_lag: i64,
    /// The image the spec asks for.
    pub image: String,
    pub previous: Option<RolloutStatus>,
    pub now: DateTime<Utc>,
    /// Another Day-2 operation (a member replacement) holds the roll.
    pub hold: Option<String>,
}

/// Where a roll stands; one planning function per state.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RollState {
    /// The StatefulSet has not reported the revision of the current template yet.
    Unknown,
    /// Every pod runs the update revision and no restarted member is pending.
    UpToDate,
    /// The spec's image is older than a running one in a way replication cannot cross.
    Refused {
        running: String,
    },
    Paused,
    /// The member restarted last is not back yet (within its deadline).
    AwaitingMember {
        ordinal: i32,
    },
    /// The member restarted last (or the switchover) did not make it.
    Stalled {
        ordinal: i32,
        why: String,
    },
    /// Not safe to take the next step now.
    Waiting {
        why: String,
    },
    RestartReplica {
        ordinal: i32,
    },
    SwitchOver {
        from: i32,
        to: i32,
    },
    /// A single member: no switchover possible, the primary itself restarts.
    RestartSolePrimary {
        ordinal: i32,
    },
}

/// What the pass does about the roll.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RollAction {
    None,
    DeletePod(i32),
    /// Ask the engine for a switchover to this member.
    DesirePrimary(i32),
}

/// An Event to publish.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RollEvent {
    pub warning: bool,
    pub reason: &'static str,
    pub note: String,
}

/// The plan: the status to persist, the action, the condition and an Event.
#[derive(Clone, Debug, PartialEq)]
pub struct RollPlan {
    pub status: Option<RolloutStatus>,
    pub action: RollAction,
    pub condition: Cond,
    pub event: Option<RollEvent>,
}

impl RollInput {
    fn revision(&self) -> &str {
        self.update_revision.as_deref().unwrap_or_default()
    }

    fn member(&self, ordinal: i32) -> Option<&RollMember> {
        self.members.iter().find(|m| m.ordinal == ordinal)
    }

    /// A pod that exists, runs another revision, and differs from the
    /// template in what a restart would change (see [`restart_relevant`]):
    /// e.g. a restore's init step leaving the template is no reason to
    /// restart anything.
    fn outdated(&self, m: &RollMember) -> bool {
        m.pod.as_ref().is_some_and(|p| {
            p.revision.as_deref() != self.update_revision.as_deref()
                && (self.template.is_none() || p.relevant != self.template)
        })
    }

    fn updated_count(&self) -> i32 {
        self.members
            .iter()
            .filter(|m| m.pod.is_some() && !self.outdated(m))
            .count() as i32
    }

    fn healthy(&self, m: &RollMember) -> bool {
        member_healthy(m, self.primary, self.max_lag)
    }

    fn why_unhealthy(&self, m: &RollMember) -> String {
        let name = format!("member {}", m.ordinal);
        match (&m.pod, &m.observed) {
            (None, _) => format!("{name} has no pod yet"),
            (Some(p), _) if !p.ready => format!("{name} is not ready"),
            (_, Some(s)) if !s.reachable => format!("{name} does not answer"),
            (_, Some(s)) => s.message.clone().map_or_else(
                || format!("{name} is not replicating from the primary or lags behind"),
                |msg| format!("{name}: {msg}"),
            ),
            (_, None) => format!("{name} was not observed yet"),
        }
    }

    /// The member restarted by the previous step, when it is not healthy yet.
    fn in_flight(&self) -> Option<&RollMember> {
        let prev = self.previous.as_ref()?;
        if !matches!(prev.phase, RolloutPhase::Restarting | RolloutPhase::Stalled) {
            return None;
        }
        let m = self.member(prev.member?)?;
        (!self.outdated(m) && !self.healthy(m)).then_some(m)
    }

    fn step_started(&self) -> Option<DateTime<Utc>> {
        let t = self.previous.as_ref()?.step_started_at.as_ref()?;
        DateTime::from_timestamp_millis(t.0.as_millisecond())
    }

    fn past_deadline(&self) -> bool {
        self.step_started()
            .is_some_and(|t| (self.now - t).num_seconds() > STEP_DEADLINE_SECS)
    }

    /// The updated, healthy replica to switch over to: the previous choice
    /// while it still qualifies, otherwise the most advanced one.
    fn switchover_target(&self, primary: i32) -> Option<i32> {
        let candidates: Vec<&RollMember> = self
            .members
            .iter()
            .filter(|m| m.ordinal != primary && !self.outdated(m) && self.healthy(m))
            .collect();
        let previous = self.previous.as_ref().and_then(|p| p.switchover_to);
        if let Some(p) = previous
            && candidates.iter().any(|m| m.ordinal == p)
        {
            return Some(p);
        }
        candidates
            .into_iter()
            .max_by_key(|m| {
                let seen = m.observed.as_ref();
                (
                    seen.and_then(|s| s.offset).unwrap_or(0),
                    -seen.and_then(|s| s.lag).unwrap_or(0),
                    m.ordinal,
                )
            })
            .map(|m| m.ordinal)
    }

    /// A running image the spec's image would downgrade from (same image
    /// name, lower major.minor): a newer server's data or replication
    /// stream cannot be read by an older one.
    fn downgrade_from(&self) -> Option<String> {
        let wanted = ImageVersion::parse(&self.image)?;
        self.members
            .iter()
            .filter_map(|m| m.pod.as_ref()?.image.clone())
            .find(|running| {
                ImageVersion::parse(running).is_some_and(|r| {
                    r.name == wanted.name && (r.major, r.minor) > (wanted.major, wanted.minor)
                })
            })
    }
}

/// Back, ready, reachable, and either the primary or a replica of it
/// whose link is up and whose lag is within bounds.
pub fn member_healthy(m: &RollMember, primary: Option<i32>, max_lag: i64) -> bool {
    let Some(pod) = &m.pod else { return false };
    let Some(seen) = &m.observed else {
        return false;
    };
    if !pod.ready || !seen.reachable {
        return false;
    }
    if Some(m.ordinal) == primary {
        return seen.role == MemberRole::Primary;
    }
    seen.role == MemberRole::Replica
        && seen.link_up == Some(true)
        && (primary.is_none() || seen.source == primary)
        && seen.lag.is_none_or(|l| l <= max_lag)
}

/// Name and version of an image reference, from its tag (`redis:7.2.4-alpine`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImageVersion {
    pub name: String,
    pub major: u32,
    pub minor: u32,
}

impl ImageVersion {
    pub fn parse(image: &str) -> Option<Self> {
        let no_digest = image.split('@').next().unwrap_or(image);
        let (repo, tag) = no_digest.rsplit_once(':')?;
        if tag.contains('/') {
            return None; // a registry port, no tag
        }
        let name = repo.rsplit('/').next().unwrap_or(repo).to_ascii_lowercase();
        let numeric: String = tag
            .chars()
            .take_while(|c| c.is_ascii_digit() || *c == '.')
            .collect();
        let mut parts = numeric.split('.').filter(|p| !p.is_empty());
        let major = parts.next()?.parse().ok()?;
        let minor = parts.next().and_then(|p| p.parse().ok()).unwrap_or(0);
        Some(Self { name, major, minor })
    }
}

/// Classify the roll.
pub fn classify(input: &RollInput) -> RollState {
    if input.update_revision.is_none() {
        return RollState::Unknown;
    }
    let outdated: Vec<&RollMember> = input.members.iter().filter(|m| input.outdated(m)).collect();
    let in_flight = input.in_flight();
    if outdated.is_empty() && in_flight.is_none() {
        return RollState::UpToDate;
    }
    if !outdated.is_empty()
        && let Some(running) = input.downgrade_from()
    {
        return RollState::Refused { running };
    }
    if input.paused {
        return RollState::Paused;
    }
    if let Some(m) = in_flight {
        let crashed = m.pod.as_ref().is_some_and(|p| p.restarts > 0);
        if crashed || input.past_deadline() {
            let why = if crashed {
                format!(
                    "its database container restarted {} time(s) since the update",
                    m.pod.as_ref().map_or(0, |p| p.restarts)
                )
            } else {
                format!(
                    "it is not back, caught up and replicating {STEP_DEADLINE_SECS}s after its restart ({})",
                    input.why_unhealthy(m)
                )
            };
            return RollState::Stalled {
                ordinal: m.ordinal,
                why,
            };
        }
        return RollState::AwaitingMember { ordinal: m.ordinal };
    }
    if input.operation {
        return RollState::Waiting {
            why: "a failover or switchover is in progress".into(),
        };
    }
    if let Some(why) = &input.hold {
        return RollState::Waiting { why: why.clone() };
    }
    let Some(primary) = input.primary else {
        return RollState::Waiting {
            why: "no primary is recorded yet".into(),
        };
    };
    // A broken outdated replica is restarted first: it serves nobody now.
    let broken = outdated
        .iter()
        .filter(|m| m.ordinal != primary && !input.healthy(m))
        .map(|m| m.ordinal)
        .max();
    if let Some(ordinal) = broken {
        return RollState::RestartReplica { ordinal };
    }
    if let Some(sick) = input.members.iter().find(|m| !input.healthy(m)) {
        return RollState::Waiting {
            why: input.why_unhealthy(sick),
        };
    }
    if let Some(ordinal) = outdated
        .iter()
        .map(|m| m.ordinal)
        .filter(|o| *o != primary)
        .max()
    {
        return RollState::RestartReplica { ordinal };
    }
    // Only the primary is left.
    if input.members.len() == 1 {
        return RollState::RestartSolePrimary { ordinal: primary };
    }
    if input.spec_primary == Some(primary) {
        return RollState::Waiting {
            why: format!(
                "spec.primary pins member {primary}, which runs the old revision: point spec.primary at an updated member or remove it"
            ),
        };
    }
    let previous_switchover = input
        .previous
        .as_ref()
        .is_some_and(|p| p.phase == RolloutPhase::SwitchingOver && p.member == Some(primary));
    if previous_switchover && input.past_deadline() {
        return RollState::Stalled {
            ordinal: primary,
            why: format!(
                "the switchover away from it did not complete within {STEP_DEADLINE_SECS}s"
            ),
        };
    }
    match input.switchover_target(primary) {
        Some(to) => RollState::SwitchOver { from: primary, to },
        None => RollState::Waiting {
            why: "no updated replica is caught up to switch over to".into(),
        },
    }
}

/// Plan the pass: classify, then one function per state.
pub fn plan(input: &RollInput) -> RollPlan {
    match classify(input) {
        RollState::Unknown => unknown(input),
        RollState::UpToDate => up_to_date(input),
        RollState::Refused { running } => refused(input, &running),
        RollState::Paused => paused(input),
        RollState::AwaitingMember { ordinal } => awaiting(input, ordinal),
        RollState::Stalled { ordinal, why } => stalled(input, ordinal, &why),
        RollState::Waiting { why } => waiting(input, &why),
        RollState::RestartReplica { ordinal } | RollState::RestartSolePrimary { ordinal } => {
            restart(input, ordinal)
        }
        RollState::SwitchOver { from, to } => switch_over(input, from, to),
    }
}

fn cond(status: ConditionStatus, reason: Reason, message: impl Into<String>) -> Cond {
    Cond::new(ConditionType::Updating, status, reason, message)
}

fn rollout(input: &RollInput, phase: RolloutPhase, message: String) -> RolloutStatus {
    let previous = input.previous.as_ref();
    RolloutStatus {
        revision: input.revision().to_string(),
        phase,
        member: previous.and_then(|p| p.member),
        switchover_to: previous.and_then(|p| p.switchover_to),
        updated: input.updated_count(),
        total: input.members.len() as i32,
        step_started_at: previous.and_then(|p| p.step_started_at.clone()),
        message,
    }
}

fn no_action(status: RolloutStatus, condition: Cond) -> RollPlan {
    RollPlan {
        status: Some(status),
        action: RollAction::None,
        condition,
        event: None,
    }
}

fn unknown(input: &RollInput) -> RollPlan {
    let condition = match &input.previous {
        Some(p) => cond(
            ConditionStatus::True,
            Reason::RollingUpdate,
            p.message.clone(),
        ),
        None => cond(
            ConditionStatus::False,
            Reason::UpToDate,
            "waiting for the StatefulSet to report its revision",
        ),
    };
    RollPlan {
        status: input.previous.clone(),
        action: RollAction::None,
        condition,
        event: None,
    }
}

fn up_to_date(input: &RollInput) -> RollPlan {
    let event = input.previous.as_ref().map(|p| RollEvent {
        warning: false,
        reason: "RolloutComplete",
        note: format!(
            "every member runs revision {} and is back, caught up and replicating",
            p.revision
        ),
    });
    RollPlan {
        status: None,
        action: RollAction::None,
        condition: cond(
            ConditionStatus::False,
            Reason::UpToDate,
            format!("every member runs revision {}", input.revision()),
        ),
        event,
    }
}

fn refused(input: &RollInput, running: &str) -> RollPlan {
    let message = format!(
        "image {} would downgrade members running {running}: an older server cannot replicate from a newer one, so no member is restarted; set the image back (or to a newer version)",
        input.image
    );
    let mut plan = no_action(
        rollout(input, RolloutPhase::Refused, message.clone()),
        cond(
            ConditionStatus::False,
            Reason::DowngradeRefused,
            message.clone(),
        ),
    );
    plan.event = Some(RollEvent {
        warning: true,
        reason: "DowngradeRefused",
        note: message,
    });
    plan
}

fn paused(input: &RollInput) -> RollPlan {
    let message = format!(
        "paused by annotation {PAUSE_ANNOTATION}: {} of {} members run revision {}",
        input.updated_count(),
        input.members.len(),
        input.revision()
    );
    let mut plan = no_action(
        rollout(input, RolloutPhase::Paused, message.clone()),
        cond(
            ConditionStatus::True,
            Reason::RolloutPaused,
            message.clone(),
        ),
    );
    plan.event = Some(RollEvent {
        warning: false,
        reason: "RolloutPaused",
        note: message,
    });
    plan
}

fn awaiting(input: &RollInput, ordinal: i32) -> RollPlan {
    let message = format!(
        "restarted member {ordinal}; waiting until it is back, caught up and replicating ({} of {} members updated)",
        input.updated_count(),
        input.members.len()
    );
    no_action(
        rollout(input, RolloutPhase::Restarting, message.clone()),
        cond(ConditionStatus::True, Reason::RollingUpdate, message),
    )
}

fn stalled(input: &RollInput, ordinal: i32, why: &str) -> RollPlan {
    let message = format!(
        "stopped at member {ordinal}: {why}; the roll does not go past it until it is healthy (or the spec changes)"
    );
    let mut status = rollout(input, RolloutPhase::Stalled, message.clone());
    status.member = Some(ordinal);
    let mut plan = no_action(
        status,
        cond(
            ConditionStatus::True,
            Reason::RolloutStalled,
            message.clone(),
        ),
    );
    plan.event = Some(RollEvent {
        warning: true,
        reason: "RolloutStalled",
        note: message,
    });
    plan
}

fn waiting(input: &RollInput, why: &str) -> RollPlan {
    let message = format!(
        "waiting before the next step: {why} ({} of {} members updated)",
        input.updated_count(),
        input.members.len()
    );
    no_action(
        rollout(input, RolloutPhase::Waiting, message.clone()),
        cond(ConditionStatus::True, Reason::RollingUpdate, message),
    )
}

fn restart(input: &RollInput, ordinal: i32) -> RollPlan {
    let message = format!(
        "restarting member {ordinal} to revision {} ({} of {} members updated)",
        input.revision(),
        input.updated_count(),
        input.members.len()
    );
    let mut status = rollout(input, RolloutPhase::Restarting, message.clone());
    status.member = Some(ordinal);
    status.switchover_to = None;
    status.step_started_at = Some(super::status::to_time(input.now));
    RollPlan {
        status: Some(status),
        action: RollAction::DeletePod(ordinal),
        condition: cond(
            ConditionStatus::True,
            Reason::RollingUpdate,
            message.clone(),
        ),
        event: Some(RollEvent {
            warning: false,
            reason: "RolloutRestart",
            note: message,
        }),
    }
}

fn switch_over(input: &RollInput, from: i32, to: i32) -> RollPlan {
    let message = format!(
        "every replica runs revision {}; switching the primary over from member {from} to member {to} before restarting it",
        input.revision()
    );
    let continuing = input.previous.as_ref().is_some_and(|p| {
        p.phase == RolloutPhase::SwitchingOver
            && p.member == Some(from)
            && p.switchover_to == Some(to)
    });
    let mut status = rollout(input, RolloutPhase::SwitchingOver, message.clone());
    status.member = Some(from);
    status.switchover_to = Some(to);
    if !continuing {
        status.step_started_at = Some(super::status::to_time(input.now));
    }
    RollPlan {
        status: Some(status),
        action: RollAction::DesirePrimary(to),
        condition: cond(
            ConditionStatus::True,
            Reason::RolloutSwitchover,
            message.clone(),
        ),
        event: (!continuing).then_some(RollEvent {
            warning: false,
            reason: "RolloutSwitchover",
            note: message,
        }),
    }
}

/// What the roll asks of this pass.
#[derive(Clone, Debug)]
pub struct RollOutcome {
    /// A switchover target for the engine, while the roll needs one.
    pub desired_primary: Option<i32>,
    pub report: RolloutReport,
}

/// The [`restart_digest`] of a pod or pod template: the one a store took
/// of the full object ([`RESTART_DIGEST`]), else taken now.
pub fn restart_relevant(
    spec: Option<&k8s_openapi::api::core::v1::PodSpec>,
    annotations: Option<&BTreeMap<String, String>>,
) -> Option<String> {
    annotations
        .and_then(|a| a.get(RESTART_DIGEST))
        .cloned()
        .or_else(|| restart_digest(spec, annotations))
}

fn pod_view(pod: &Pod) -> PodView {
    let container = pod
        .status
        .as_ref()
        .and_then(|s| s.container_statuses.as_ref())
        .and_then(|cs| cs.iter().find(|c| c.name == CONTAINER));
    PodView {
        revision: pod.labels().get(REVISION_LABEL).cloned(),
        ready: pod_ready(pod),
        restarts: container.map_or(0, |c| c.restart_count),
        relevant: restart_relevant(pod.spec.as_ref(), pod.metadata.annotations.as_ref()),
        image: pod
            .spec
            .as_ref()
            .and_then(|s| s.containers.iter().find(|c| c.name == CONTAINER))
            .and_then(|c| c.image.clone()),
    }
}

/// The revision pods should run, once the StatefulSet controller has seen
/// the current template.
fn update_revision(sts: &StatefulSet) -> Option<String> {
    let status = sts.status.as_ref()?;
    let observed = status.observed_generation.unwrap_or(0);
    (observed >= sts.metadata.generation.unwrap_or(0))
        .then(|| status.update_revision.clone())
        .flatten()
}

/// Default lag bound for "caught up": bytes (Redis) or seconds (MySQL).
fn default_max_lag(kind: DbKind) -> i64 {
    match kind {
        DbKind::Redis => 1 << 20,
        DbKind::MySql(_) => 5,
    }
}

/// The members as the roll sees them.
pub fn members(
    view: &ClusterView,
    pods: &BTreeMap<String, Pod>,
    previous: Option<&ClusterStatus>,
) -> Vec<RollMember> {
    (0..view.replicas)
        .map(|ordinal| RollMember {
            ordinal,
            pod: pods.get(&view.pod_name(ordinal)).map(pod_view),
            observed: previous
                .and_then(|s| s.members.iter().find(|m| m.ordinal == ordinal).cloned()),
        })
        .collect()
}

/// Lag bound for "caught up": `failover.maxLag`, or a default per engine.
pub fn max_lag<K: ClusterResource>(obj: &K, view: &ClusterView) -> i64 {
    obj.failover()
        .max_lag
        .unwrap_or_else(|| default_max_lag(view.kind))
}

/// The roll step of a reconcile pass: plan, delete at most one pod, publish
/// what happened.
pub async fn step<K: ClusterResource>(
    obj: &K,
    view: &ClusterView,
    pods: &BTreeMap<String, Pod>,
    previous: Option<&ClusterStatus>,
    sts: &StatefulSet,
    hold: Option<String>,
    ctx: &Context,
) -> Result<RollOutcome, Error> {
    let members = members(view, pods, previous);
    let paused = obj
        .annotations()
        .get(PAUSE_ANNOTATION)
        .is_some_and(|v| v != "false");
    let input = RollInput {
        update_revision: update_revision(sts),
        template: sts.spec.as_ref().and_then(|s| {
            restart_relevant(
                s.template.spec.as_ref(),
                s.template
                    .metadata
                    .as_ref()
                    .and_then(|m| m.annotations.as_ref()),
            )
        }),
        members,
        primary: previous.and_then(|s| s.replication.primary),
        operation: previous.is_some_and(|s| s.replication.operation.is_some()),
        spec_primary: obj.desired_primary(),
        paused,
        max_lag: max_lag(obj, view),
        image: view.image(),
        previous: previous.and_then(|s| s.rollout.clone()),
        now: Utc::now(),
        hold,
    };
    let plan = plan(&input);
    let mut desired_primary = None;
    match plan.action {
        RollAction::None => {}
        RollAction::DesirePrimary(to) => desired_primary = Some(to),
        RollAction::DeletePod(ordinal) => delete_pod(view, pods, ordinal, ctx).await?,
    }
    if let Some(event) = &plan.event {
        let key = key_of(obj);
        if ctx.event_is_new(&key, event.reason, &event.note) {
            let type_ = if event.warning {
                KubeEventType::Warning
            } else {
                KubeEventType::Normal
            };
            publish(ctx, obj, type_, event.reason, event.note.clone()).await;
        }
    }
    Ok(RollOutcome {
        desired_primary,
        report: RolloutReport {
            status: plan.status,
            condition: plan.condition,
        },
    })
}

/// Delete one member's pod (only the pod observed in this pass: a uid
/// precondition) so the StatefulSet recreates it at the update revision.
async fn delete_pod(
    view: &ClusterView,
    pods: &BTreeMap<String, Pod>,
    ordinal: i32,
    ctx: &Context,
) -> Result<(), Error> {
    let name = view.pod_name(ordinal);
    let Some(pod) = pods.get(&name) else {
        return Ok(());
    };
    info!(pod = %name, "rolling update: restarting member");
    let api: Api<Pod> = Api::namespaced(ctx.client.clone(), &view.namespace);
    let params = DeleteParams {
        preconditions: Some(Preconditions {
            uid: pod.uid(),
            resource_version: None,
        }),
        ..Default::default()
    };
    match api.delete(&name, &params).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(e)) if e.code == 404 || e.code == 409 => Ok(()),
        Err(e) => Err(e).context(format!("delete pod {name} for the rolling update")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NEW: &str = "rev-new";
    const OLD: &str = "rev-old";

    fn now() -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000, 0).expect("time")
    }

    fn member(ordinal: i32, revision: &str, primary: i32) -> RollMember {
        let role = if ordinal == primary {
            MemberRole::Primary
        } else {
            MemberRole::Replica
        };
        RollMember {
            ordinal,
            pod: Some(PodView {
                revision: Some(revision.into()),
                ready: true,
                restarts: 0,
                image: Some("redis:7.2".into()),
                relevant: None,
            }),
            observed: Some(MemberStatus {
                ordinal,
                pod: format!("c-{ordinal}"),
                role,
                reachable: true,
                source: (ordinal != primary).then_some(primary),
                link_up: (ordinal != primary).then_some(true),
                offset: Some(100 + i64::from(ordinal)),
                lag: Some(0),
                ..Default::default()
            }),
        }
    }

    fn input(revisions: &[&str], primary: i32) -> RollInput {
        RollInput {
            update_revision: Some(NEW.into()),
            template: None,
            members: revisions
                .iter()
                .enumerate()
                .map(|(i, r)| member(i as i32, r, primary))
                .collect(),
            primary: Some(primary),
            operation: false,
            spec_primary: None,
            paused: false,
            max_lag: 1 << 20,
            image: "redis:7.2".into(),
            previous: None,
            now: now(),
            hold: None,
        }
    }

    /// Carry the plan's status into the next pass, as persisting does.
    fn next(mut input: RollInput, plan: &RollPlan) -> RollInput {
        input.previous = plan.status.clone();
        input
    }

    #[test]
    fn nothing_to_do_when_every_pod_runs_the_update_revision() {
        let plan = plan(&input(&[NEW, NEW, NEW], 0));
        assert_eq!(plan.action, RollAction::None);
        assert_eq!(plan.status, None);
        assert_eq!(plan.condition.status, ConditionStatus::False);
        assert_eq!(plan.event, None, "no roll happened: nothing to announce");
    }

    #[test]
    fn unknown_revision_keeps_the_previous_status() {
        let mut i = input(&[OLD, OLD, OLD], 0);
        i.update_revision = None;
        assert_eq!(classify(&i), RollState::Unknown);
        assert_eq!(plan(&i).action, RollAction::None);
    }

    #[test]
    fn replicas_restart_highest_ordinal_first_and_the_primary_last() {
        // Primary 0: restart 2, then 1, then switch over to an updated replica.
        let i = input(&[OLD, OLD, OLD], 0);
        let p = plan(&i);
        assert_eq!(p.action, RollAction::DeletePod(2));
        let status = p.status.clone().expect("status");
        assert_eq!(status.phase, RolloutPhase::Restarting);
        assert_eq!(status.member, Some(2));
        assert_eq!(p.event.as_ref().map(|e| e.reason), Some("RolloutRestart"));

        let i = input(&[OLD, OLD, NEW], 0);
        let i = next(i, &p);
        assert_eq!(plan(&i).action, RollAction::DeletePod(1));

        let i = input(&[OLD, NEW, NEW], 0);
        let p = plan(&i);
        assert_eq!(classify(&i), RollState::SwitchOver { from: 0, to: 2 });
        assert_eq!(
            p.action,
            RollAction::DesirePrimary(2),
            "most advanced replica"
        );
        assert_eq!(p.condition.reason, Reason::RolloutSwitchover);

        // After the switchover the old primary is an outdated replica.
        let i = next(input(&[OLD, NEW, NEW], 2), &p);
        assert_eq!(plan(&i).action, RollAction::DeletePod(0));
    }

    #[test]
    fn the_primary_is_never_deleted_while_it_is_primary() {
        for primary in 0..3 {
            let i = input(&[OLD, OLD, OLD], primary);
            let mut i2 = i.clone();
            loop {
                let p = plan(&i2);
                match p.action {
                    RollAction::DeletePod(o) => {
                        assert_ne!(o, primary, "primary {primary}");
                        i2.members[o as usize].pod.as_mut().expect("pod").revision =
                            Some(NEW.into());
                        i2 = next(i2, &p);
                    }
                    RollAction::DesirePrimary(to) => {
                        assert_ne!(to, primary);
                        break;
                    }
                    RollAction::None => panic!("stuck: {:?}", classify(&i2)),
                }
            }
        }
    }

    #[test]
    fn a_restarted_member_is_awaited_until_back_and_caught_up() {
        let first = plan(&input(&[OLD, OLD, OLD], 0));
        // The pod is gone (being recreated).
        let mut i = next(input(&[OLD, OLD, NEW], 0), &first);
        i.members[2].pod = None;
        assert_eq!(classify(&i), RollState::AwaitingMember { ordinal: 2 });
        assert_eq!(plan(&i).action, RollAction::None);
        // Back and ready but still syncing (link down).
        let mut i = next(input(&[OLD, OLD, NEW], 0), &first);
        if let Some(s) = i.members[2].observed.as_mut() {
            s.link_up = Some(false);
        }
        assert_eq!(classify(&i), RollState::AwaitingMember { ordinal: 2 });
        // Lagging beyond the bound.
        let mut i = next(input(&[OLD, OLD, NEW], 0), &first);
        if let Some(s) = i.members[2].observed.as_mut() {
            s.lag = Some(10 << 20);
        }
        assert_eq!(classify(&i), RollState::AwaitingMember { ordinal: 2 });
        // Caught up: the next one.
        let i = next(input(&[OLD, OLD, NEW], 0), &first);
        assert_eq!(classify(&i), RollState::RestartReplica { ordinal: 1 });
    }

    #[test]
    fn a_member_that_does_not_come_back_stalls_the_roll() {
        let first = plan(&input(&[OLD, OLD, OLD], 0));
        // Crash-looping at the new revision.
        let mut i = next(input(&[OLD, OLD, NEW], 0), &first);
        if let Some(p) = i.members[2].pod.as_mut() {
            p.ready = false;
            p.restarts = 3;
        }
        let p = plan(&i);
        assert!(matches!(
            classify(&i),
            RollState::Stalled { ordinal: 2, .. }
        ));
        assert_eq!(p.action, RollAction::None);
        let status = p.status.clone().expect("status");
        assert_eq!(status.phase, RolloutPhase::Stalled);
        assert!(
            status.message.contains("restarted 3 time(s)"),
            "{}",
            status.message
        );
        assert!(p.event.as_ref().is_some_and(|e| e.warning));
        // It stays stalled in the following passes, never going past it.
        let i2 = next(i.clone(), &p);
        assert!(matches!(
            classify(&i2),
            RollState::Stalled { ordinal: 2, .. }
        ));
        // Not ready past the deadline, without restarts.
        let mut i = next(input(&[OLD, OLD, NEW], 0), &first);
        if let Some(p) = i.members[2].pod.as_mut() {
            p.ready = false;
        }
        assert_eq!(classify(&i), RollState::AwaitingMember { ordinal: 2 });
        i.now = now() + chrono::Duration::seconds(STEP_DEADLINE_SECS + 1);
        assert!(matches!(
            classify(&i),
            RollState::Stalled { ordinal: 2, .. }
        ));
        // Healthy again: the roll goes on.
        let i = next(input(&[OLD, OLD, NEW], 0), &p);
        assert_eq!(classify(&i), RollState::RestartReplica { ordinal: 1 });
    }

    #[test]
    fn waits_for_an_unhealthy_member_and_for_engine_operations() {
        let mut i = input(&[OLD, OLD, OLD], 0);
        i.operation = true;
        assert!(matches!(classify(&i), RollState::Waiting { .. }));
        let mut i = input(&[NEW, OLD, NEW], 0);
        if let Some(s) = i.members[2].observed.as_mut() {
            s.reachable = false;
        }
        let p = plan(&i);
        assert_eq!(p.action, RollAction::None);
        assert!(
            p.condition.message.contains("member 2 does not answer"),
            "{}",
            p.condition.message
        );
        // An outdated replica that is broken anyway is restarted first.
        let mut i = input(&[NEW, OLD, OLD], 0);
        if let Some(p) = i.members[1].pod.as_mut() {
            p.ready = false;
        }
        assert_eq!(classify(&i), RollState::RestartReplica { ordinal: 1 });
        // No primary recorded: wait.
        let mut i = input(&[OLD, OLD, OLD], 0);
        i.primary = None;
        assert!(matches!(classify(&i), RollState::Waiting { .. }));
    }

    #[test]
    fn paused_by_annotation_and_resumed() {
        let mut i = input(&[OLD, OLD, OLD], 0);
        i.paused = true;
        let p = plan(&i);
        assert_eq!(p.action, RollAction::None);
        assert_eq!(
            p.status.as_ref().map(|s| s.phase),
            Some(RolloutPhase::Paused)
        );
        assert_eq!(p.condition.reason, Reason::RolloutPaused);
        i.paused = false;
        assert_eq!(plan(&next(i, &p)).action, RollAction::DeletePod(2));
    }

    #[test]
    fn completion_is_announced_and_clears_the_status() {
        let last = plan(&input(&[OLD, NEW, NEW], 2));
        assert_eq!(last.action, RollAction::DeletePod(0));
        let done = plan(&next(input(&[NEW, NEW, NEW], 2), &last));
        assert_eq!(done.status, None);
        assert_eq!(done.condition.reason, Reason::UpToDate);
        assert_eq!(
            done.event.as_ref().map(|e| e.reason),
            Some("RolloutComplete")
        );
    }

    #[test]
    fn switchover_keeps_its_target_and_is_bounded() {
        let i = input(&[OLD, NEW, NEW], 0);
        let p = plan(&i);
        assert_eq!(p.action, RollAction::DesirePrimary(2));
        // Member 1 is now more advanced, but the target stays.
        let mut i2 = next(input(&[OLD, NEW, NEW], 0), &p);
        if let Some(s) = i2.members[1].observed.as_mut() {
            s.offset = Some(1_000);
        }
        let p2 = plan(&i2);
        assert_eq!(p2.action, RollAction::DesirePrimary(2));
        assert_eq!(p2.event, None, "announced once");
        assert_eq!(
            p2.status.as_ref().and_then(|s| s.step_started_at.clone()),
            p.status.as_ref().and_then(|s| s.step_started_at.clone())
        );
        let mut late = next(input(&[OLD, NEW, NEW], 0), &p2);
        late.now = now() + chrono::Duration::seconds(STEP_DEADLINE_SECS + 1);
        assert!(matches!(
            classify(&late),
            RollState::Stalled { ordinal: 0, .. }
        ));
        // spec.primary pinning the outdated primary holds the roll.
        let mut pinned = input(&[OLD, NEW, NEW], 0);
        pinned.spec_primary = Some(0);
        assert!(
            matches!(classify(&pinned), RollState::Waiting { why } if why.contains("spec.primary"))
        );
    }

    #[test]
    fn a_revision_that_changes_nothing_a_restart_would_change_is_not_rolled() {
        let relevant = |image: &str| Some(format!("digest of {image}"));
        let mut i = input(&[OLD, OLD, OLD], 0);
        i.template = relevant("redis:7.2");
        for m in &mut i.members {
            if let Some(p) = m.pod.as_mut() {
                p.relevant = relevant("redis:7.2");
            }
        }
        let p = plan(&i);
        assert_eq!(
            classify(&i),
            RollState::UpToDate,
            "e.g. a restore's init step left the template"
        );
        assert_eq!(p.action, RollAction::None);
        i.template = relevant("redis:7.4");
        assert_eq!(plan(&i).action, RollAction::DeletePod(2));
    }

    #[test]
    fn a_single_member_restarts_in_place() {
        let i = input(&[OLD], 0);
        assert_eq!(classify(&i), RollState::RestartSolePrimary { ordinal: 0 });
        assert_eq!(plan(&i).action, RollAction::DeletePod(0));
    }

    #[test]
    fn downgrades_are_refused_upgrades_roll() {
        let mut i = input(&[OLD, OLD, OLD], 0);
        i.image = "redis:7.0".into();
        let p = plan(&i);
        assert_eq!(
            classify(&i),
            RollState::Refused {
                running: "redis:7.2".into()
            }
        );
        assert_eq!(p.action, RollAction::None);
        assert_eq!(p.condition.reason, Reason::DowngradeRefused);
        assert!(p.condition.message.contains("redis:7.0 would downgrade"));
        i.image = "redis:7.4".into();
        assert_eq!(plan(&i).action, RollAction::DeletePod(2));
        i.image = "redis:7.2.9".into();
        assert_eq!(plan(&i).action, RollAction::DeletePod(2), "patch level");
        i.image = "valkey:7.0".into();
        assert_eq!(plan(&i).action, RollAction::DeletePod(2), "another image");
    }

    #[test]
    fn image_versions_parse_from_tags() {
        let v = |s: &str| ImageVersion::parse(s).map(|v| (v.name, v.major, v.minor));
        assert_eq!(v("redis:7.2.4-alpine"), Some(("redis".into(), 7, 2)));
        assert_eq!(
            v("docker.io/library/mariadb:11"),
            Some(("mariadb".into(), 11, 0))
        );
        assert_eq!(v("registry:5000/mysql"), None);
        assert_eq!(v("mysql:8.4@sha256:abc"), Some(("mysql".into(), 8, 4)));
        assert_eq!(v("redis:latest"), None);
    }
}
