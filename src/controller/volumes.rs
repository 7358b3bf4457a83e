//! Volume growth. `spec.storage.size` may grow (the CRD refuses a shrink);
//! the StatefulSet's volumeClaimTemplates are immutable, so each member's
//! claim is patched directly when its StorageClass has
//! `allowVolumeExpansion`; otherwise the `StorageInSync` condition says why
//! the volumes keep their size. A member added later gets the template's
//! size first and is then grown the same way.

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::PersistentVolumeClaim;
use k8s_openapi::api::storage::v1::StorageClass;
use kube::api::{Api, Patch, PatchParams};

use super::conditions::{Cond, ConditionStatus, ConditionType, Reason};
use super::context::{Context, Error, KubeContext};
use crate::api::ClusterStatus;
use crate::resources::ClusterView;
use crate::resources::statefulset::DATA_VOLUME;

/// One member's data claim.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClaimView {
    pub name: String,
    pub requested: u128,
    /// `status.capacity` (0 while unknown).
    pub capacity: u128,
}

/// Where the volumes stand against `spec.storage.size`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum VolumeState {
    /// Every claim has at least the size asked for.
    InSync,
    /// Claims asked for the size; the storage has not reported it yet.
    Expanding { claims: Vec<String> },
    /// Claims to patch.
    Grow { claims: Vec<String> },
    /// The StorageClass does not allow expansion (or is unknown).
    NotExpandable { class: String },
}

/// Classify: `wanted` bytes; `expandable` is the StorageClass's
/// `allowVolumeExpansion` (None when the class is not found).
pub fn classify(
    wanted: u128,
    claims: &[ClaimView],
    class: &str,
    expandable: Option<bool>,
) -> VolumeState {
    let small: Vec<String> = claims
        .iter()
        .filter(|c| c.requested < wanted)
        .map(|c| c.name.clone())
        .collect();
    if !small.is_empty() {
        return if expandable == Some(true) {
            VolumeState::Grow { claims: small }
        } else {
            VolumeState::NotExpandable {
                class: class.to_string(),
            }
        };
    }
    let pending: Vec<String> = claims
        .iter()
        .filter(|c| c.capacity < wanted)
        .map(|c| c.name.clone())
        .collect();
    if pending.is_empty() {
        VolumeState::InSync
    } else {
        VolumeState::Expanding { claims: pending }
    }
}

/// The `StorageInSync` condition of a state.
pub fn condition(state: &VolumeState, size: &str) -> Cond {
    let c = |status, reason, message: String| {
        Cond::new(ConditionType::StorageInSync, status, reason, message)
    };
    match state {
        VolumeState::InSync => c(
            ConditionStatus::True,
            Reason::VolumesExpanded,
            format!("every member's volume has {size} (grown from the StatefulSet's template)"),
        ),
        VolumeState::Expanding { claims } | VolumeState::Grow { claims } => c(
            ConditionStatus::False,
            Reason::VolumesExpanding,
            format!(
                "expanding to {size}: {} (waiting for the storage to report the new capacity)",
                claims.join(", ")
            ),
        ),
        VolumeState::NotExpandable { class } => c(
            ConditionStatus::False,
            Reason::ExpansionNotSupported,
            format!(
                "spec.storage.size {size} is larger than the volumes, but StorageClass {class} does not allow volume expansion (allowVolumeExpansion; or the operator may not read it); the volumes keep their size"
            ),
        ),
    }
}

/// Bytes of a Kubernetes quantity (binary and decimal suffixes, exponents
/// not supported: None).
pub fn quantity_bytes(q: &str) -> Option<u128> {
    let q = q.trim();
    let split = q
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(q.len());
    let (num, suffix) = q.split_at(split);
    let num: f64 = num.parse().ok()?;
    let mult: f64 = match suffix {
        "" => 1.0,
        "Ki" => 1024.0,
        "Mi" => 1024.0_f64.powi(2),
        "Gi" => 1024.0_f64.powi(3),
        "Ti" => 1024.0_f64.powi(4),
        "Pi" => 1024.0_f64.powi(5),
        "k" => 1e3,
        "M" => 1e6,
        "G" => 1e9,
        "T" => 1e12,
        "P" => 1e15,
        _ => return None,
    };
    Some((num * mult) as u128)
}

fn storage_of(
    q: Option<
        &std::collections::BTreeMap<
            String,
            k8s_openapi::apimachinery::pkg::api::resource::Quantity,
        >,
    >,
) -> u128 {
    q.and_then(|m| m.get("storage"))
        .and_then(|q| quantity_bytes(&q.0))
        .unwrap_or(0)
}

fn template_size(sts: &StatefulSet) -> Option<u128> {
    let claim = sts
        .spec
        .as_ref()?
        .volume_claim_templates
        .as_ref()?
        .iter()
        .find(|c| c.metadata.name.as_deref() == Some(DATA_VOLUME))?;
    Some(storage_of(
        claim.spec.as_ref()?.resources.as_ref()?.requests.as_ref(),
    ))
}

/// The volume step: None when the spec's size is the template's (the
/// condition is then the StatefulSet apply's); otherwise the condition,
/// after patching the claims that are too small.
pub async fn step(
    view: &ClusterView,
    sts: &StatefulSet,
    previous: Option<&ClusterStatus>,
    ctx: &Context,
) -> Result<Option<Cond>, Error> {
    let size = view.storage.size.clone();
    let Some(wanted) = quantity_bytes(&size) else {
        return Ok(None);
    };
    if template_size(sts).is_none_or(|t| t >= wanted) {
        return Ok(None);
    }
    // Settled at this size: nothing to read again.
    let settled = condition(&VolumeState::InSync, &size);
    if let Some(c) = super::status::find(previous, ConditionType::StorageInSync)
        && c.reason == settled.reason.as_str()
        && c.message == settled.message
        && previous.is_some_and(|s| s.replicas == view.replicas)
    {
        return Ok(Some(settled));
    }
    let api: Api<PersistentVolumeClaim> = Api::namespaced(ctx.client.clone(), &view.namespace);
    let mut claims = Vec::new();
    for ordinal in 0..view.replicas {
        let name = format!("{DATA_VOLUME}-{}", view.pod_name(ordinal));
        let Some(pvc) = api
            .get_opt(&name)
            .await
            .context(format!("get PersistentVolumeClaim {name}"))?
        else {
            continue;
        };
        claims.push(ClaimView {
            name,
            requested: storage_of(
                pvc.spec
                    .as_ref()
                    .and_then(|s| s.resources.as_ref())
                    .and_then(|r| r.requests.as_ref()),
            ),
            capacity: storage_of(pvc.status.as_ref().and_then(|s| s.capacity.as_ref())),
        });
    }
    let class = match &view.storage.storage_class_name {
        Some(name) => Some(name.clone()),
        None => default_class(ctx).await?,
    };
    // StorageClasses are cluster-scoped: an operator limited to namespaces
    // (Roles) may not read them; the class then counts as not expandable.
    let expandable = match &class {
        Some(name) => match Api::<StorageClass>::all(ctx.client.clone())
            .get_opt(name)
            .await
        {
            Ok(sc) => sc.map(|sc| sc.allow_volume_expansion == Some(true)),
            Err(kube::Error::Api(e)) if e.code == 403 => None,
            Err(e) => return Err(e).context(format!("get StorageClass {name}")),
        },
        None => None,
    };
    let class = class.unwrap_or_else(|| "(cluster default: none)".into());
    let state = classify(wanted, &claims, &class, expandable);
    if let VolumeState::Grow { claims } = &state {
        let patch = serde_json::json!({"spec": {"resources": {"requests": {"storage": size}}}});
        for name in claims {
            api.patch(name, &PatchParams::default(), &Patch::Merge(&patch))
                .await
                .context(format!("expand PersistentVolumeClaim {name} to {size}"))?;
        }
    }
    Ok(Some(condition(&state, &size)))
}

async fn default_class(ctx: &Context) -> Result<Option<String>, Error> {
    let classes = match Api::<StorageClass>::all(ctx.client.clone())
        .list(&Default::default())
        .await
    {
        Ok(classes) => classes,
        Err(kube::Error::Api(e)) if e.code == 403 => return Ok(None),
        Err(e) => return Err(e).context("list StorageClasses"),
    };
    Ok(classes
        .items
        .into_iter()
        .find(|sc| {
            sc.metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get("storageclass.kubernetes.io/is-default-class"))
                .is_some_and(|v| v == "true")
        })
        .and_then(|sc| sc.metadata.name))
}

#[cfg(test)]
mod tests {
    use super::*;

    const GI: u128 = 1 << 30;

    fn claim(name: &str, requested: u128, capacity: u128) -> ClaimView {
        ClaimView {
            name: name.into(),
            requested,
            capacity,
        }
    }

    #[test]
    fn small_claims_grow_where_the_class_allows_it() {
        let claims = [claim("a", GI, GI), claim("b", 2 * GI, 2 * GI)];
        assert_eq!(
            classify(2 * GI, &claims, "fast", Some(true)),
            VolumeState::Grow {
                claims: vec!["a".into()]
            }
        );
        let state = classify(2 * GI, &claims, "fast", Some(false));
        assert_eq!(
            state,
            VolumeState::NotExpandable {
                class: "fast".into()
            }
        );
        let c = condition(&state, "2Gi");
        assert_eq!(c.status, ConditionStatus::False);
        assert_eq!(c.reason, Reason::ExpansionNotSupported);
        assert!(
            c.message
                .contains("StorageClass fast does not allow volume expansion")
        );
        assert!(matches!(
            classify(2 * GI, &claims, "gone", None),
            VolumeState::NotExpandable { .. }
        ));
    }

    #[test]
    fn patched_claims_wait_for_the_capacity() {
        let claims = [claim("a", 2 * GI, GI), claim("b", 2 * GI, 2 * GI)];
        let state = classify(2 * GI, &claims, "fast", Some(true));
        assert_eq!(
            state,
            VolumeState::Expanding {
                claims: vec!["a".into()]
            }
        );
        assert_eq!(condition(&state, "2Gi").status, ConditionStatus::False);
        let done = [claim("a", 2 * GI, 2 * GI), claim("b", 2 * GI, 2 * GI)];
        let state = classify(2 * GI, &done, "fast", Some(true));
        assert_eq!(state, VolumeState::InSync);
        assert_eq!(condition(&state, "2Gi").status, ConditionStatus::True);
    }

    #[test]
    fn quantities() {
        assert_eq!(quantity_bytes("1Gi"), Some(GI));
        assert_eq!(quantity_bytes("1536Mi"), Some(GI + GI / 2));
        assert_eq!(quantity_bytes("2G"), Some(2_000_000_000));
        assert_eq!(quantity_bytes("100"), Some(100));
        assert_eq!(quantity_bytes("1e3"), None);
        assert_eq!(quantity_bytes("Gi"), None);
    }
}
