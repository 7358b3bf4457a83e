//! The headless Service (stable member DNS), the write Service (role
//! `primary`) and the read Service (role `replica`).

use k8s_openapi::api::core::v1::{Service, ServicePort, ServiceSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::{ClusterView, labels};

fn service(view: &ClusterView, name: String, spec: ServiceSpec) -> Service {
    Service {
        metadata: ObjectMeta {
            name: Some(name),
            namespace: Some(view.namespace.clone()),
            labels: Some(labels::common(view)),
            owner_references: Some(vec![view.owner.clone()]),
            ..Default::default()
        },
        spec: Some(spec),
        ..Default::default()
    }
}

fn ports(view: &ClusterView) -> Vec<ServicePort> {
    vec![ServicePort {
        name: Some(view.kind.app().to_string()),
        port: i32::from(view.kind.port()),
        target_port: Some(IntOrString::Int(i32::from(view.kind.port()))),
        protocol: Some("TCP".to_string()),
        ..Default::default()
    }]
}

/// Headless Service giving each member `<pod>.<headless>.<ns>.svc` DNS, also
/// while not ready (members must find each other to become ready).
pub fn headless(view: &ClusterView) -> Service {
    service(
        view,
        view.headless_service(),
        ServiceSpec {
            cluster_ip: Some("None".to_string()),
            publish_not_ready_addresses: Some(true),
            selector: Some(labels::selector(view)),
            ports: Some(ports(view)),
            ..Default::default()
        },
    )
}

fn by_role(view: &ClusterView, name: String, role: &str) -> Service {
    service(
        view,
        name,
        ServiceSpec {
            type_: Some("ClusterIP".to_string()),
            selector: Some(labels::with_role(view, role)),
            ports: Some(ports(view)),
            ..Default::default()
        },
    )
}

/// Write Service: the member labelled primary by the operator.
pub fn primary(view: &ClusterView) -> Service {
    by_role(view, view.primary_service(), labels::ROLE_PRIMARY)
}

/// Read Service: the members labelled replica by the operator.
pub fn read(view: &ClusterView) -> Service {
    by_role(view, view.read_service(), labels::ROLE_REPLICA)
}
