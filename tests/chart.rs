//! The Helm chart: CRDs in sync with the generated ones, and the rendered
//! manifests (helm is built from its Go module by scripts/helm.sh).

use std::process::Command;

use serde_yaml::Value;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

#[test]
fn chart_crds_equal_generated_crds() {
    let chart = std::fs::read_to_string(format!("{ROOT}/charts/ordinal/crds/ordinal.dev.yaml"))
        .expect("chart crds");
    let generated = ordinal::api::crds_yaml().expect("render");
    assert!(
        chart == generated,
        "charts/ordinal/crds is stale: cp crds/ordinal.dev.yaml charts/ordinal/crds/"
    );
}

/// Build helm once per test binary (tests run in parallel threads).
fn ensure_helm() {
    static BUILT: std::sync::OnceLock<()> = std::sync::OnceLock::new();
    BUILT.get_or_init(|| {
        let out = Command::new(format!("{ROOT}/scripts/helm.sh"))
            .arg("version")
            .output()
            .expect("run scripts/helm.sh");
        assert!(
            out.status.success(),
            "building helm failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    });
}

fn helm(args: &[&str]) -> String {
    ensure_helm();
    let out = Command::new(format!("{ROOT}/scripts/helm.sh"))
        .args(args)
        .output()
        .expect("run scripts/helm.sh");
    assert!(
        out.status.success(),
        "helm {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf8")
}

fn render(extra: &[&str]) -> Vec<Value> {
    let chart = format!("{ROOT}/charts/ordinal");
    let mut args = vec![
        "template",
        "ordinal",
        chart.as_str(),
        "--namespace",
        "ordinal-system",
    ];
    args.extend_from_slice(extra);
    serde_yaml::Deserializer::from_str(&helm(&args))
        .map(|d| Value::deserialize(d).expect("yaml document"))
        .filter(|v| !v.is_null())
        .collect()
}

use serde::Deserialize;

fn kinds(docs: &[Value]) -> Vec<(String, String)> {
    docs.iter()
        .map(|d| {
            (
                d["kind"].as_str().unwrap_or_default().to_string(),
                d["metadata"]["namespace"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
            )
        })
        .collect()
}

#[test]
fn chart_lints_and_renders_a_least_privileged_operator() {
    let lint = helm(&["lint", "--strict", &format!("{ROOT}/charts/ordinal")]);
    assert!(lint.contains("0 chart(s) failed"), "{lint}");

    let docs = render(&[]);
    let deployment = docs
        .iter()
        .find(|d| d["kind"] == "Deployment")
        .expect("deployment");
    assert_eq!(deployment["spec"]["replicas"], Value::from(2));
    let pod = &deployment["spec"]["template"]["spec"];
    let container = &pod["containers"][0];
    let sc = &container["securityContext"];
    assert_eq!(sc["readOnlyRootFilesystem"], Value::from(true));
    assert_eq!(sc["allowPrivilegeEscalation"], Value::from(false));
    assert_eq!(pod["securityContext"]["runAsNonRoot"], Value::from(true));
    let env = container["env"].as_sequence().expect("env");
    let var = |name: &str| {
        env.iter()
            .find(|e| e["name"] == name)
            .map(|e| e["value"].clone())
    };
    assert_eq!(var("ORDINAL_LEADER_ELECTION"), Some(Value::from("true")));
    assert_eq!(
        container["readinessProbe"]["httpGet"]["path"],
        Value::from("/readyz")
    );
    assert_eq!(
        container["livenessProbe"]["httpGet"]["path"],
        Value::from("/healthz")
    );

    let k = kinds(&docs);
    assert!(k.contains(&("ClusterRole".into(), String::new())));
    assert!(
        k.contains(&("Role".into(), "ordinal-system".into())),
        "lease Role: {k:?}"
    );
    assert!(k.iter().any(|(kind, _)| kind == "PodDisruptionBudget"));
    assert!(k.iter().any(|(kind, _)| kind == "Service"));
    assert!(
        !k.iter().any(|(kind, _)| kind == "ServiceMonitor"),
        "ServiceMonitor is opt-in"
    );

    // Least privilege: no wildcard, secrets only read and created, nothing deleted but Jobs and Backups.
    let role = docs
        .iter()
        .find(|d| d["kind"] == "ClusterRole")
        .expect("cluster role");
    for rule in role["rules"].as_sequence().expect("rules") {
        let strings = |key: &str| -> Vec<String> {
            rule[key]
                .as_sequence()
                .map(|s| {
                    s.iter()
                        .filter_map(|v| v.as_str().map(String::from))
                        .collect()
                })
                .unwrap_or_default()
        };
        let (resources, verbs) = (strings("resources"), strings("verbs"));
        assert!(
            !resources.contains(&"*".to_string()) && !verbs.contains(&"*".to_string()),
            "{rule:?}"
        );
        if resources.contains(&"secrets".to_string()) {
            assert_eq!(verbs, ["get", "create"]);
        }
        if verbs.contains(&"delete".to_string()) {
            assert!(
                // Pods: an unreachable primary is isolated before a failover promotes.
                resources
                    .iter()
                    .all(|r| r == "jobs" || r == "backups" || r == "pods"),
                "{rule:?}"
            );
        }
    }
}

#[test]
fn watch_namespaces_switch_to_namespaced_roles() {
    let docs = render(&[
        "--set",
        "watchNamespaces={shop,billing}",
        "--set",
        "metrics.serviceMonitor.enabled=true",
    ]);
    let k = kinds(&docs);
    assert!(
        !k.iter()
            .any(|(kind, _)| kind == "ClusterRole" || kind == "ClusterRoleBinding"),
        "{k:?}"
    );
    for ns in ["shop", "billing"] {
        assert!(k.contains(&("Role".into(), ns.into())), "{k:?}");
        assert!(k.contains(&("RoleBinding".into(), ns.into())), "{k:?}");
    }
    assert!(k.iter().any(|(kind, _)| kind == "ServiceMonitor"));
    let deployment = docs
        .iter()
        .find(|d| d["kind"] == "Deployment")
        .expect("deployment");
    let env = deployment["spec"]["template"]["spec"]["containers"][0]["env"]
        .as_sequence()
        .expect("env");
    let watch = env
        .iter()
        .find(|e| e["name"] == "ORDINAL_WATCH_NAMESPACES")
        .expect("watch env");
    assert_eq!(watch["value"], Value::from("shop,billing"));
}

#[test]
fn values_schema_refuses_bad_values() {
    ensure_helm();
    let chart = format!("{ROOT}/charts/ordinal");
    let out = Command::new(format!("{ROOT}/scripts/helm.sh"))
        .args([
            "template",
            "ordinal",
            chart.as_str(),
            "--set",
            "replicaCount=0",
        ])
        .output()
        .expect("run helm");
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("replicaCount"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
