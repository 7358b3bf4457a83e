//! The StatefulSet running the members.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{
    StatefulSet, StatefulSetPersistentVolumeClaimRetentionPolicy, StatefulSetSpec,
    StatefulSetUpdateStrategy,
};
use k8s_openapi::api::core::v1::{
    Affinity, Capabilities, ConfigMapVolumeSource, Container, ContainerPort, EmptyDirVolumeSource,
    EnvVar, EnvVarSource, ExecAction, ObjectFieldSelector, PersistentVolumeClaim,
    PersistentVolumeClaimSpec, PodAffinityTerm, PodAntiAffinity, PodSecurityContext, PodSpec,
    PodTemplateSpec, Probe, SecretKeySelector, SecurityContext, TCPSocketAction, Volume,
    VolumeMount, VolumeResourceRequirements, WeightedPodAffinityTerm,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::config::CONFIG_DIR;
use super::secret::{MYSQL_ROOT, REDIS_PASSWORD};
use super::{ClusterView, DbKind, labels};
use crate::api::MySqlFlavor;

pub const DATA_VOLUME: &str = "data";
pub const CONFIG_VOLUME: &str = "config";
pub const RUN_VOLUME: &str = "run";
pub const RUN_DIR: &str = "/run/ordinal";
pub const CONTAINER: &str = "database";
/// The image's database user (uid/gid 999 in the official redis, mariadb and mysql images).
const DB_UID: i64 = 999;

/// Start script of a Redis member: pick this ordinal's file, include the
/// password from the Secret through a memory-backed file (never the
/// ConfigMap, never the command line), listen on the pod IP.
const REDIS_START: &str = r#"set -eu
ordinal="${HOSTNAME##*-}"
umask 077
printf 'requirepass "%s"\nmasterauth "%s"\n' "$REDIS_PASSWORD" "$REDIS_PASSWORD" > /run/ordinal/auth.conf
exec redis-server "/etc/ordinal/config/${ordinal}.conf" --include /run/ordinal/auth.conf --bind "$POD_IP"
"#;

const REDIS_READY: &str = r#"redis-cli -h "$POD_IP" -p 6379 ping | grep -q PONG"#;

fn mysql_start(flavor: MySqlFlavor) -> String {
    let server = match flavor {
        MySqlFlavor::MariaDB => "mariadbd",
        MySqlFlavor::MySQL => "mysqld",
    };
    format!(
        "set -eu\nordinal=\"${{HOSTNAME##*-}}\"\nexec docker-entrypoint.sh {server} \
         --defaults-extra-file=\"/etc/ordinal/config/${{ordinal}}.cnf\" --bind-address=\"$POD_IP\"\n"
    )
}

/// `ping` answers 0 whenever the server runs, even when it refuses the
/// login, so the probe needs no credentials (and none are put in the
/// environment, where client tools would pick them up).
fn mysql_ready(flavor: MySqlFlavor) -> String {
    let admin = match flavor {
        MySqlFlavor::MariaDB => "mariadb-admin",
        MySqlFlavor::MySQL => "mysqladmin",
    };
    format!("{admin} --user=root --host=\"$POD_IP\" --port=3306 ping")
}

fn env_from_secret(name: &str, secret: &str, key: &str) -> EnvVar {
    EnvVar {
        name: name.to_string(),
        value_from: Some(EnvVarSource {
            secret_key_ref: Some(SecretKeySelector {
                name: secret.to_string(),
                key: key.to_string(),
                optional: None,
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn pod_ip_env() -> EnvVar {
    EnvVar {
        name: "POD_IP".to_string(),
        value_from: Some(EnvVarSource {
            field_ref: Some(ObjectFieldSelector {
                field_path: "status.podIP".to_string(),
                api_version: None,
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn exec_probe(script: String, initial: i32, period: i32, failures: i32) -> Probe {
    Probe {
        exec: Some(ExecAction {
            command: Some(vec!["sh".into(), "-c".into(), script]),
        }),
        initial_delay_seconds: Some(initial),
        period_seconds: Some(period),
        timeout_seconds: Some(5),
        failure_threshold: Some(failures),
        ..Default::default()
    }
}

fn tcp_probe(port: u16, initial: i32, period: i32, failures: i32) -> Probe {
    Probe {
        tcp_socket: Some(TCPSocketAction {
            port: IntOrString::Int(i32::from(port)),
            host: None,
        }),
        initial_delay_seconds: Some(initial),
        period_seconds: Some(period),
        timeout_seconds: Some(5),
        failure_threshold: Some(failures),
        ..Default::default()
    }
}

/// Annotation the shared stores put on their copies of pods and StatefulSets
/// (the controller's `caches::Slim`), never on an object in the API server: the
/// [`restart_digest`] of the full pod or template, taken before the stored
/// copy drops the database container, so the stores need not keep it.
pub const RESTART_DIGEST: &str = "ordinal.dev/restart-digest";

/// What a restart of a member would change, as a digest: the database
/// container, the configuration hash and where the pod may run. Init
/// containers and volumes (a restore's init step) are not; neither are
/// tolerations (admission adds some to every pod).
pub fn restart_digest(
    spec: Option<&PodSpec>,
    annotations: Option<&BTreeMap<String, String>>,
) -> Option<String> {
    let spec = spec?;
    let container = spec.containers.iter().find(|c| c.name == CONTAINER)?;
    let relevant = serde_json::json!({
        "container": container,
        "configHash": annotations.and_then(|a| a.get(labels::CONFIG_HASH)),
        "nodeSelector": spec.node_selector,
        "affinity": spec.affinity,
    });
    Some(super::config::sha256_hex(relevant.to_string().as_bytes()))
}

/// The database container of a member.
pub fn database_container(view: &ClusterView) -> Container {
    let port = view.kind.port();
    let (script, env, ready) = match view.kind {
        DbKind::Redis => (
            REDIS_START.to_string(),
            vec![
                env_from_secret("REDIS_PASSWORD", &view.secret_name, REDIS_PASSWORD),
                env_from_secret("REDISCLI_AUTH", &view.secret_name, REDIS_PASSWORD),
                pod_ip_env(),
            ],
            REDIS_READY.to_string(),
        ),
        DbKind::MySql(flavor) => {
            let root_env = match flavor {
                MySqlFlavor::MariaDB => "MARIADB_ROOT_PASSWORD",
                MySqlFlavor::MySQL => "MYSQL_ROOT_PASSWORD",
            };
            (
                mysql_start(flavor),
                vec![
                    env_from_secret(root_env, &view.secret_name, MYSQL_ROOT),
                    pod_ip_env(),
                ],
                mysql_ready(flavor),
            )
        }
    };
    Container {
        name: CONTAINER.to_string(),
        image: Some(view.image()),
        image_pull_policy: view.template.image_pull_policy.clone(),
        command: Some(vec!["sh".into(), "-c".into(), script]),
        env: Some(env),
        ports: Some(vec![ContainerPort {
            name: Some(view.kind.app().to_string()),
            container_port: i32::from(port),
            protocol: Some("TCP".to_string()),
            ..Default::default()
        }]),
        resources: view.template.resources.clone(),
        readiness_probe: Some(exec_probe(ready, 5, 5, 3)),
        liveness_probe: Some(tcp_probe(port, 30, 10, 6)),
        startup_probe: Some(tcp_probe(port, 2, 5, 120)),
        volume_mounts: Some(vec![
            VolumeMount {
                name: DATA_VOLUME.into(),
                mount_path: view.kind.data_dir().into(),
                ..Default::default()
            },
            VolumeMount {
                name: CONFIG_VOLUME.into(),
                mount_path: CONFIG_DIR.into(),
                read_only: Some(true),
                ..Default::default()
            },
            VolumeMount {
                name: RUN_VOLUME.into(),
                mount_path: RUN_DIR.into(),
                ..Default::default()
            },
        ]),
        security_context: Some(SecurityContext {
            run_as_non_root: Some(true),
            run_as_user: Some(DB_UID),
            run_as_group: Some(DB_UID),
            allow_privilege_escalation: Some(false),
            capabilities: Some(Capabilities {
                drop: Some(vec!["ALL".into()]),
                add: None,
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// Preferred anti-affinity: spread members across nodes when possible.
fn default_affinity(view: &ClusterView) -> Affinity {
    Affinity {
        pod_anti_affinity: Some(PodAntiAffinity {
            preferred_during_scheduling_ignored_during_execution: Some(vec![
                WeightedPodAffinityTerm {
                    weight: 100,
                    pod_affinity_term: PodAffinityTerm {
                        topology_key: "kubernetes.io/hostname".into(),
                        label_selector: Some(LabelSelector {
                            match_labels: Some(labels::selector(view)),
                            ..Default::default()
                        }),
                        ..Default::default()
                    },
                },
            ]),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// The PVC template of the data volume.
pub fn data_claim(view: &ClusterView) -> PersistentVolumeClaim {
    PersistentVolumeClaim {
        metadata: ObjectMeta {
            name: Some(DATA_VOLUME.into()),
            labels: Some(labels::selector(view)),
            ..Default::default()
        },
        spec: Some(PersistentVolumeClaimSpec {
            access_modes: Some(vec!["ReadWriteOnce".into()]),
            storage_class_name: view.storage.storage_class_name.clone(),
            resources: Some(VolumeResourceRequirements {
                requests: Some(BTreeMap::from([(
                    "storage".into(),
                    Quantity(view.storage.size.clone()),
                )])),
                limits: None,
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// A step that runs before the database starts (e.g. restoring a backup),
/// with the extra volumes it needs.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct InitStep {
    pub containers: Vec<Container>,
    pub volumes: Vec<Volume>,
}

/// The StatefulSet. `config_hash` goes into a pod annotation so a change of
/// restart-relevant configuration marks pods outdated; `claims` are the
/// volumeClaimTemplates to use (the existing ones when the StatefulSet exists,
/// since they are immutable).
pub fn statefulset(
    view: &ClusterView,
    config_hash: &str,
    claims: Vec<PersistentVolumeClaim>,
    init: InitStep,
) -> StatefulSet {
    let mut volumes = vec![
        Volume {
            name: CONFIG_VOLUME.into(),
            config_map: Some(ConfigMapVolumeSource {
                name: view.config_map(),
                ..Default::default()
            }),
            ..Default::default()
        },
        Volume {
            name: RUN_VOLUME.into(),
            empty_dir: Some(EmptyDirVolumeSource {
                medium: Some("Memory".into()),
                size_limit: Some(Quantity("16Mi".into())),
            }),
            ..Default::default()
        },
    ];
    volumes.extend(init.volumes);
    let overrides = &view.template.pod;
    let mut pod_labels = overrides.labels.clone().unwrap_or_default();
    pod_labels.extend(labels::common(view));
    let mut annotations = overrides.annotations.clone().unwrap_or_default();
    annotations.insert(labels::CONFIG_HASH.into(), config_hash.into());
    StatefulSet {
        metadata: ObjectMeta {
            name: Some(view.name.clone()),
            namespace: Some(view.namespace.clone()),
            labels: Some(labels::common(view)),
            owner_references: Some(vec![view.owner.clone()]),
            ..Default::default()
        },
        spec: Some(StatefulSetSpec {
            replicas: Some(view.replicas),
            service_name: Some(view.headless_service()),
            selector: LabelSelector {
                match_labels: Some(labels::selector(view)),
                ..Default::default()
            },
            pod_management_policy: Some("OrderedReady".into()),
            update_strategy: Some(StatefulSetUpdateStrategy {
                type_: Some("OnDelete".into()),
                rolling_update: None,
            }),
            persistent_volume_claim_retention_policy: Some(
                StatefulSetPersistentVolumeClaimRetentionPolicy {
                    when_deleted: Some(view.storage.retention.when_deleted.as_str().into()),
                    when_scaled: Some(view.storage.retention.when_scaled.as_str().into()),
                },
            ),
            volume_claim_templates: Some(claims),
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(pod_labels),
                    annotations: Some(annotations),
                    ..Default::default()
                }),
                spec: Some(PodSpec {
                    init_containers: (!init.containers.is_empty()).then_some(init.containers),
                    containers: vec![database_container(view)],
                    volumes: Some(volumes),
                    security_context: Some(PodSecurityContext {
                        run_as_non_root: Some(true),
                        run_as_user: Some(DB_UID),
                        fs_group: Some(DB_UID),
                        ..Default::default()
                    }),
                    affinity: Some(
                        overrides
                            .affinity
                            .clone()
                            .unwrap_or_else(|| default_affinity(view)),
                    ),
                    node_selector: overrides.node_selector.clone(),
                    tolerations: overrides.tolerations.clone(),
                    topology_spread_constraints: overrides.topology_spread_constraints.clone(),
                    priority_class_name: overrides.priority_class_name.clone(),
                    automount_service_account_token: Some(false),
                    enable_service_links: Some(false),
                    termination_grace_period_seconds: Some(30),
                    ..Default::default()
                }),
            },
            ..Default::default()
        }),
        ..Default::default()
    }
}
