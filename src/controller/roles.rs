//! Role labels on member pods, which the write (`primary`) and read
//! (`replica`) Services select. Labels follow the engine's confirmed roles,
//! but they do not flap: a member the engine could not classify in this pass
//! keeps the label it has until something positive says otherwise.
//!
//! - The primary keeps `primary` until it is fenced (observed as a replica),
//!   replaced (another member is confirmed primary, the recorded primary
//!   moved, or a failover away from it started) or quarantined. One missed
//!   probe does not empty the write Service.
//! - A replica keeps `replica` while the primary is being replaced (its link
//!   is down but it serves reads), and while it misses a probe but the
//!   kubelet reports it Ready.
//! - With no recorded primary (new cluster, status wiped) nothing is taken
//!   away that the engine has not contradicted: state is being
//!   re-established, and the labels are the best evidence of who served.
//!
//! Changes are applied removals first, so the write Service never selects two
//! members.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Pod;
use kube::ResourceExt;
use kube::api::{Api, Patch, PatchParams};
use serde_json::json;
use tracing::info;

use super::common::pod_ready;
use super::context::{Context, Error, KubeContext};
use crate::api::{MemberRole, MemberStatus, OperationKind, ReplicationState};
use crate::resources::labels;

pub const PRIMARY: &str = "primary";
pub const REPLICA: &str = "replica";

/// One pod as the label planner sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PodRole {
    pub pod: String,
    pub ordinal: Option<i32>,
    /// Current value of the role label.
    pub current: Option<String>,
    /// Kubelet readiness.
    pub ready: bool,
}

/// Label changes, to apply in order: `remove` first, then `set`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LabelChanges {
    pub remove: Vec<String>,
    pub set: Vec<(String, &'static str)>,
}

impl LabelChanges {
    pub fn is_empty(&self) -> bool {
        self.remove.is_empty() && self.set.is_empty()
    }
}

/// Whether a failover away from `ordinal` is running or another member is the
/// recorded primary: its primary label must go.
fn replaced(ordinal: i32, state: &ReplicationState) -> bool {
    state.primary.is_some_and(|p| p != ordinal)
        || state
            .operation
            .as_ref()
            .is_some_and(|op| op.from == ordinal && op.kind == OperationKind::Failover)
}

/// The label a pod should carry.
fn wanted(
    pod: &PodRole,
    member: Option<&MemberStatus>,
    confirmed_primary: Option<i32>,
    state: &ReplicationState,
) -> Option<&'static str> {
    let role = member.map_or(MemberRole::Unknown, |m| m.role);
    match role {
        MemberRole::Primary => return Some(PRIMARY),
        MemberRole::Replica => return Some(REPLICA),
        MemberRole::Quarantined => return None,
        MemberRole::Unknown => {}
    }
    // Not classified in this pass: keep what is there unless contradicted.
    let reachable = member.is_some_and(|m| m.reachable);
    // A reachable member reporting a replication link is a read-only replica.
    let replica_server = reachable && member.is_some_and(|m| m.link_up.is_some());
    match pod.current.as_deref() {
        Some(PRIMARY) => {
            let ordinal = pod.ordinal.unwrap_or(-1);
            let other_primary = confirmed_primary.is_some_and(|p| p != ordinal);
            if replica_server {
                Some(REPLICA)
            } else if other_primary || replaced(ordinal, state) {
                None
            } else {
                Some(PRIMARY)
            }
        }
        Some(REPLICA) => {
            if replica_server || (!reachable && pod.ready) {
                Some(REPLICA)
            } else {
                // A reachable member claiming to be a primary, or a member
                // that neither answers nor is Ready.
                None
            }
        }
        _ => None,
    }
}

/// Plan the role label changes of a pass.
pub fn plan(pods: &[PodRole], members: &[MemberStatus], state: &ReplicationState) -> LabelChanges {
    let confirmed_primary = members
        .iter()
        .find(|m| m.role == MemberRole::Primary)
        .map(|m| m.ordinal);
    let mut changes = LabelChanges::default();
    let mut additions = Vec::new();
    for pod in pods {
        let member = members.iter().find(|m| m.pod == pod.pod);
        let want = wanted(pod, member, confirmed_primary, state);
        let have = pod.current.as_deref();
        if have == want {
            continue;
        }
        if have.is_some() {
            changes.remove.push(pod.pod.clone());
        }
        if let Some(role) = want {
            additions.push((pod.pod.clone(), role));
        }
    }
    changes.set = additions;
    changes
}

/// The planner's view of the listed pods.
pub fn pod_roles(pods: &BTreeMap<String, Pod>, cluster: &str) -> Vec<PodRole> {
    pods.iter()
        .map(|(name, pod)| PodRole {
            pod: name.clone(),
            ordinal: name
                .strip_prefix(cluster)
                .and_then(|r| r.strip_prefix('-'))
                .and_then(|o| o.parse().ok()),
            current: pod.labels().get(labels::ROLE).cloned(),
            ready: pod_ready(pod),
        })
        .collect()
}

/// Apply label changes: removals first, then additions.
pub async fn apply(namespace: &str, changes: &LabelChanges, ctx: &Context) -> Result<(), Error> {
    let api: Api<Pod> = Api::namespaced(ctx.client.clone(), namespace);
    for name in &changes.remove {
        let patch = json!({"metadata": {"labels": {labels::ROLE: serde_json::Value::Null}}});
        api.patch(name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .context(format!("remove role label from {name}"))?;
    }
    for (name, role) in &changes.set {
        let patch = json!({"metadata": {"labels": {labels::ROLE: role}}});
        api.patch(name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .context(format!("label {name} {role}"))?;
        info!(pod = %name, role, "role label set");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::Operation;

    fn pod(ordinal: i32, current: Option<&str>, ready: bool) -> PodRole {
        PodRole {
            pod: format!("c-{ordinal}"),
            ordinal: Some(ordinal),
            current: current.map(str::to_string),
            ready,
        }
    }

    fn member(
        ordinal: i32,
        role: MemberRole,
        reachable: bool,
        link_up: Option<bool>,
    ) -> MemberStatus {
        MemberStatus {
            ordinal,
            pod: format!("c-{ordinal}"),
            role,
            reachable,
            link_up,
            ..Default::default()
        }
    }

    fn state(primary: Option<i32>) -> ReplicationState {
        ReplicationState {
            primary,
            term: 3,
            ..Default::default()
        }
    }

    fn labelled() -> Vec<PodRole> {
        vec![
            pod(0, Some(PRIMARY), true),
            pod(1, Some(REPLICA), true),
            pod(2, Some(REPLICA), true),
        ]
    }

    #[test]
    fn a_missed_probe_keeps_every_label() {
        let members = [
            member(0, MemberRole::Unknown, false, None),
            member(1, MemberRole::Replica, true, Some(true)),
            member(2, MemberRole::Unknown, false, None),
        ];
        assert!(plan(&labelled(), &members, &state(Some(0))).is_empty());
    }

    #[test]
    fn replicas_keep_serving_reads_while_the_primary_is_replaced() {
        let mut s = state(Some(0));
        s.operation = Some(Operation {
            kind: OperationKind::Failover,
            from: 0,
            to: Some(1),
            step: "Promote".into(),
            term: 4,
            started_at: crate::controller::status::to_time(chrono::Utc::now()),
            deadline: None,
            reason: "primary unreachable".into(),
            data: None,
        });
        let members = [
            member(0, MemberRole::Unknown, false, None),
            member(1, MemberRole::Unknown, true, Some(false)),
            member(2, MemberRole::Unknown, true, Some(false)),
        ];
        let changes = plan(&labelled(), &members, &s);
        assert_eq!(
            changes.remove,
            vec!["c-0".to_string()],
            "the lost primary leaves the write Service"
        );
        assert!(
            changes.set.is_empty(),
            "replicas keep their label: {changes:?}"
        );
    }

    #[test]
    fn a_confirmed_new_primary_takes_the_label_after_the_old_one_lost_it() {
        let members = [
            member(0, MemberRole::Unknown, false, None),
            member(1, MemberRole::Primary, true, None),
            member(2, MemberRole::Replica, true, Some(true)),
        ];
        let changes = plan(&labelled(), &members, &state(Some(1)));
        assert_eq!(changes.remove, vec!["c-0".to_string(), "c-1".to_string()]);
        assert_eq!(changes.set, vec![("c-1".to_string(), PRIMARY)]);
    }

    #[test]
    fn a_demoted_primary_becomes_a_replica() {
        // The hand-over finished on its own: the old primary reports a link.
        let members = [
            member(0, MemberRole::Unknown, true, Some(true)),
            member(1, MemberRole::Unknown, true, None),
            member(2, MemberRole::Unknown, true, Some(true)),
        ];
        let changes = plan(&labelled(), &members, &state(Some(0)));
        assert_eq!(changes.remove, vec!["c-0".to_string(), "c-1".to_string()]);
        assert_eq!(changes.set, vec![("c-0".to_string(), REPLICA)]);
    }

    #[test]
    fn a_wiped_status_takes_no_label_away() {
        let members = [
            member(0, MemberRole::Unknown, true, None),
            member(1, MemberRole::Unknown, true, Some(true)),
            member(2, MemberRole::Unknown, false, None),
        ];
        assert!(plan(&labelled(), &members, &state(None)).is_empty());
        assert!(plan(&labelled(), &[], &state(None)).is_empty());
    }

    #[test]
    fn quarantined_and_dead_members_lose_their_labels() {
        let members = [
            member(0, MemberRole::Primary, true, None),
            member(1, MemberRole::Quarantined, true, Some(true)),
            member(2, MemberRole::Unknown, false, None),
        ];
        let pods = [
            pod(0, Some(PRIMARY), true),
            pod(1, Some(REPLICA), true),
            pod(2, Some(REPLICA), false),
        ];
        let changes = plan(&pods, &members, &state(Some(0)));
        assert_eq!(changes.remove, vec!["c-1".to_string(), "c-2".to_string()]);
        assert!(changes.set.is_empty());
    }

    #[test]
    fn new_members_get_confirmed_roles_only() {
        let pods = [pod(0, None, true), pod(1, None, true), pod(2, None, true)];
        let members = [
            member(0, MemberRole::Primary, true, None),
            member(1, MemberRole::Replica, true, Some(true)),
            member(2, MemberRole::Unknown, true, Some(false)),
        ];
        let changes = plan(&pods, &members, &state(Some(0)));
        assert!(changes.remove.is_empty());
        assert_eq!(
            changes.set,
            vec![("c-0".to_string(), PRIMARY), ("c-1".to_string(), REPLICA)]
        );
    }
}
