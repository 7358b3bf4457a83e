//! Replacing a member: the annotation `ordinal.dev/replace: "<ordinal>"`
//! wipes one replica (its claim and its pod are deleted) so it is re-seeded
//! from the primary by the engine, as a new member would be. Refused — a
//! condition and a Warning Event, the annotation left in place — for the
//! primary, for a member that does not exist, and whenever another member is
//! not healthy (the wiped member must never hold the last good copy). The
//! annotation is removed once the member is back and replicating on a new
//! volume.

use chrono::{DateTime, Utc};
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod};
use kube::ResourceExt;
use kube::api::{Api, DeleteParams, Patch, PatchParams};
use kube::runtime::events::EventType as KubeEventType;
use tracing::info;

use super::common::{key_of, publish};
use super::conditions::{Cond, ConditionStatus, ConditionType, Reason};
use super::context::{Context, Error, KubeContext};
use super::kinds::ClusterResource;
use crate::api::ReplacementStatus;
use crate::resources::ClusterView;
use crate::resources::statefulset::DATA_VOLUME;

/// Annotation asking for a member to be wiped and re-seeded.
pub const REPLACE_ANNOTATION: &str = "ordinal.dev/replace";

/// A member as the replacement sees it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ReplaceMember {
    pub ordinal: i32,
    /// Back, ready and replicating (or the confirmed primary).
    pub healthy: bool,
    pub pod_exists: bool,
    /// uid of its data claim, when it exists.
    pub claim_uid: Option<String>,
}

#[derive(Clone, Debug)]
pub struct ReplaceInput {
    pub annotation: Option<String>,
    pub members: Vec<ReplaceMember>,
    pub primary: Option<i32>,
    pub operation: bool,
    pub previous: Option<ReplacementStatus>,
    pub now: DateTime<Utc>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ReplaceState {
    NoRequest,
    Refused {
        why: String,
    },
    /// Delete the claim, then the pod.
    Wipe {
        ordinal: i32,
    },
    /// Wiped; waiting for the new claim and the member to catch up.
    Reseeding {
        ordinal: i32,
    },
    Done {
        ordinal: i32,
    },
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ReplaceAction {
    None,
    /// Delete this member's claim and pod.
    Wipe(i32),
    /// Remove the annotation.
    Finish,
}

#[derive(Clone, Debug, PartialEq)]
pub struct ReplacePlan {
    pub status: Option<ReplacementStatus>,
    pub action: ReplaceAction,
    pub condition: Option<Cond>,
    /// (warning, reason, note)
    pub event: Option<(bool, &'static str, String)>,
}

pub fn classify(input: &ReplaceInput) -> ReplaceState {
    let Some(raw) = input.annotation.as_deref() else {
        return ReplaceState::NoRequest;
    };
    let Ok(ordinal) = raw.trim().parse::<i32>() else {
        return ReplaceState::Refused {
            why: format!("{REPLACE_ANNOTATION} must be a member's ordinal, not {raw:?}"),
        };
    };
    let Some(target) = input.members.iter().find(|m| m.ordinal == ordinal) else {
        return ReplaceState::Refused {
            why: format!("there is no member {ordinal}"),
        };
    };
    if let Some(prev) = input.previous.as_ref().filter(|p| p.ordinal == ordinal) {
        let new_claim = target
            .claim_uid
            .as_ref()
            .is_some_and(|uid| Some(uid) != prev.claim_uid.as_ref());
        return if new_claim && target.healthy {
            ReplaceState::Done { ordinal }
        } else {
            ReplaceState::Reseeding { ordinal }
        };
    }
    if input.primary == Some(ordinal) {
        return ReplaceState::Refused {
            why: format!(
                "member {ordinal} is the primary: switch over first (spec.primary), then replace it"
            ),
        };
    }
    if input.primary.is_none() || input.operation {
        return ReplaceState::Refused {
            why: "no confirmed primary to re-seed from, or a failover/switchover is running".into(),
        };
    }
    if let Some(sick) = input
        .members
        .iter()
        .find(|m| m.ordinal != ordinal && !m.healthy)
    {
        return ReplaceState::Refused {
            why: format!(
                "member {} is not healthy: wiping member {ordinal} now could remove the last good copy",
                sick.ordinal
            ),
        };
    }
    ReplaceState::Wipe { ordinal }
}

fn cond(status: ConditionStatus, reason: Reason, message: String) -> Option<Cond> {
    Some(Cond::new(ConditionType::Replacing, status, reason, message))
}

pub fn plan(input: &ReplaceInput) -> ReplacePlan {
    match classify(input) {
        ReplaceState::NoRequest => ReplacePlan {
            status: None,
            action: ReplaceAction::None,
            condition: cond(
                ConditionStatus::False,
                Reason::NoReplacement,
                format!("no member replacement requested ({REPLACE_ANNOTATION})"),
            ),
            event: None,
        },
        ReplaceState::Refused { why } => {
            let message = format!("replacement refused: {why}; the annotation is left in place");
            ReplacePlan {
                status: None,
                action: ReplaceAction::None,
                condition: cond(
                    ConditionStatus::False,
                    Reason::ReplaceRefused,
                    message.clone(),
                ),
                event: Some((true, "ReplaceRefused", message)),
            }
        }
        ReplaceState::Wipe { ordinal } => {
            let message = format!(
                "wiping member {ordinal} (its volume claim and pod are deleted) to re-seed it from the primary"
            );
            let claim_uid = input
                .members
                .iter()
                .find(|m| m.ordinal == ordinal)
                .and_then(|m| m.claim_uid.clone());
            ReplacePlan {
                status: Some(ReplacementStatus {
                    ordinal,
                    claim_uid,
                    started_at: super::status::to_time(input.now),
                }),
                action: ReplaceAction::Wipe(ordinal),
                condition: cond(ConditionStatus::True, Reason::Reseeding, message.clone()),
                event: Some((false, "ReplacingMember", message)),
            }
        }
        ReplaceState::Reseeding { ordinal } => {
            let wiped = input
                .members
                .iter()
                .find(|m| m.ordinal == ordinal)
                .is_some_and(|m| m.pod_exists);
            ReplacePlan {
                status: input.previous.clone(),
                action: ReplaceAction::None,
                condition: cond(
                    ConditionStatus::True,
                    Reason::Reseeding,
                    format!(
                        "member {ordinal} was wiped; waiting for its new volume and until it is back and replicating{}",
                        if wiped {
                            ""
                        } else {
                            " (pod not recreated yet)"
                        }
                    ),
                ),
                event: None,
            }
        }
        ReplaceState::Done { ordinal } => {
            let message = format!(
                "member {ordinal} was re-seeded on a new volume and replicates from the primary"
            );
            ReplacePlan {
                status: None,
                action: ReplaceAction::Finish,
                condition: cond(ConditionStatus::False, Reason::Replaced, message.clone()),
                event: Some((false, "MemberReplaced", message)),
            }
        }
    }
}

/// The replacement step; returns the status to persist (None: no
/// replacement running) and the condition, and whether a replacement holds
/// other Day-2 steps.
pub async fn step<K: ClusterResource>(
    obj: &K,
    view: &ClusterView,
    members: Vec<ReplaceMember>,
    previous: Option<&crate::api::ClusterStatus>,
    ctx: &Context,
) -> Result<ReplacePlan, Error> {
    let input = ReplaceInput {
        annotation: obj.annotations().get(REPLACE_ANNOTATION).cloned(),
        members,
        primary: previous.and_then(|s| s.replication.primary),
        operation: previous.is_some_and(|s| s.replication.operation.is_some()),
        previous: previous.and_then(|s| s.replacement.clone()),
        now: Utc::now(),
    };
    let plan = plan(&input);
    match plan.action {
        ReplaceAction::None => {}
        ReplaceAction::Wipe(ordinal) => wipe(view, ordinal, ctx).await?,
        ReplaceAction::Finish => remove_annotation(obj, ctx).await?,
    }
    if let Some((warning, reason, note)) = &plan.event
        && ctx.event_is_new(&key_of(obj), reason, note)
    {
        let type_ = if *warning {
            KubeEventType::Warning
        } else {
            KubeEventType::Normal
        };
        publish(ctx, obj, type_, reason, note.clone()).await;
    }
    Ok(plan)
}

/// Delete the claim first (it stays until no scheduled pod uses it), then
/// the pod: the recreated pod is not scheduled on a claim being deleted,
/// and the StatefulSet controller gives it a fresh claim once the old one is gone.
async fn wipe(view: &ClusterView, ordinal: i32, ctx: &Context) -> Result<(), Error> {
    let pod = view.pod_name(ordinal);
    let claim = format!("{DATA_VOLUME}-{pod}");
    info!(%pod, %claim, "replacing member: deleting its claim and pod");
    let claims: Api<PersistentVolumeClaim> = Api::namespaced(ctx.client.clone(), &view.namespace);
    match claims.delete(&claim, &DeleteParams::default()).await {
        Ok(_) => {}
        Err(kube::Error::Api(e)) if e.code == 404 => {}
        Err(e) => return Err(e).context(format!("delete PersistentVolumeClaim {claim}")),
    }
    let pods: Api<Pod> = Api::namespaced(ctx.client.clone(), &view.namespace);
    match pods.delete(&pod, &DeleteParams::default()).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(e)) if e.code == 404 => Ok(()),
        Err(e) => Err(e).context(format!("delete pod {pod} to replace it")),
    }
}

async fn remove_annotation<K: ClusterResource>(obj: &K, ctx: &Context) -> Result<(), Error> {
    let ns = obj.namespace().unwrap_or_default();
    let api: Api<K> = Api::namespaced(ctx.client.clone(), &ns);
    let patch = serde_json::json!({"metadata": {"annotations": {REPLACE_ANNOTATION: null}}});
    api.patch(
        &obj.name_any(),
        &PatchParams::default(),
        &Patch::Merge(&patch),
    )
    .await
    .context(format!("remove annotation {REPLACE_ANNOTATION}"))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(ordinal: i32) -> ReplaceMember {
        ReplaceMember {
            ordinal,
            healthy: true,
            pod_exists: true,
            claim_uid: Some(format!("uid-{ordinal}")),
        }
    }

    fn input(annotation: Option<&str>) -> ReplaceInput {
        ReplaceInput {
            annotation: annotation.map(str::to_string),
            members: (0..3).map(member).collect(),
            primary: Some(0),
            operation: false,
            previous: None,
            now: DateTime::from_timestamp(1_800_000_000, 0).expect("time"),
        }
    }

    #[test]
    fn a_healthy_replica_is_wiped_then_awaited_then_released() {
        let i = input(Some("2"));
        let p = plan(&i);
        assert_eq!(p.action, ReplaceAction::Wipe(2));
        let recorded = p.status.clone().expect("recorded");
        assert_eq!(recorded.claim_uid.as_deref(), Some("uid-2"));
        // Same claim still there (being deleted): reseeding, nothing done again.
        let mut i = input(Some("2"));
        i.previous = Some(recorded.clone());
        assert_eq!(classify(&i), ReplaceState::Reseeding { ordinal: 2 });
        assert_eq!(plan(&i).action, ReplaceAction::None);
        // New claim, member not caught up yet.
        i.members[2].claim_uid = Some("uid-new".into());
        i.members[2].healthy = false;
        assert_eq!(classify(&i), ReplaceState::Reseeding { ordinal: 2 });
        // Caught up: done, annotation removed.
        i.members[2].healthy = true;
        let p = plan(&i);
        assert_eq!(p.action, ReplaceAction::Finish);
        assert_eq!(p.status, None);
        assert_eq!(p.event.as_ref().map(|e| e.1), Some("MemberReplaced"));
    }

    #[test]
    fn refused_for_the_primary_a_sick_peer_and_nonsense() {
        let p = plan(&input(Some("0")));
        assert_eq!(p.action, ReplaceAction::None);
        let c = p.condition.expect("condition");
        assert_eq!(c.reason, Reason::ReplaceRefused);
        assert!(
            c.message.contains("member 0 is the primary"),
            "{}",
            c.message
        );
        assert!(p.event.is_some_and(|e| e.0), "a Warning");

        let mut i = input(Some("2"));
        i.members[1].healthy = false;
        let ReplaceState::Refused { why } = classify(&i) else {
            panic!("refused")
        };
        assert!(why.contains("last good copy"), "{why}");

        assert!(matches!(
            classify(&input(Some("7"))),
            ReplaceState::Refused { .. }
        ));
        assert!(matches!(
            classify(&input(Some("two"))),
            ReplaceState::Refused { .. }
        ));
        let mut i = input(Some("1"));
        i.operation = true;
        assert!(matches!(classify(&i), ReplaceState::Refused { .. }));
        assert_eq!(classify(&input(None)), ReplaceState::NoRequest);
    }
}
