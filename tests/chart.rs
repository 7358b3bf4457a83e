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

    // Least privilege: no wildcard, secrets never deleted or replaced (read,
    // watched for the cache of generated ones, created, their owner
    // references patched), nothing deleted but Jobs, Backups, pods, claims
    // and binlog archiver Deployments.
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
            assert_eq!(verbs, ["get", "list", "watch", "create", "patch"]);
        }
        if verbs.contains(&"delete".to_string()) {
            assert!(
                // Pods: an unreachable primary is isolated before a failover
                // promotes, and a rolling update restarts members; claims: a
                // member replaced on request (ordinal.dev/replace);
                // deployments: the binlog archiver when
                // spec.backup.binlogArchive is removed.
                resources.iter().all(|r| r == "jobs"
                    || r == "backups"
                    || r == "pods"
                    || r == "persistentvolumeclaims"
                    || r == "deployments"),
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

// ---------------------------------------------------------------------------
// Observability: the PrometheusRule, the Grafana dashboard and the series the
// operator exports. promtool comes from Debian's `prometheus` package
// (scripts/test.sh installs it).

fn promtool(args: &[&str], stdin: Option<&str>) -> std::process::Output {
    use std::io::Write;
    let mut child = Command::new("promtool")
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("promtool not found: apt-get install prometheus (scripts/test.sh does)");
    let mut input = child.stdin.take().expect("stdin");
    input
        .write_all(stdin.unwrap_or_default().as_bytes())
        .expect("write promtool stdin");
    drop(input);
    child.wait_with_output().expect("promtool")
}

/// The rendered PrometheusRule's `spec` (rule groups) with the given values.
fn rule_groups(extra: &[&str]) -> Value {
    let mut args = vec!["--set", "metrics.prometheusRule.enabled=true"];
    args.extend_from_slice(extra);
    let docs = render(&args);
    let rule = docs
        .iter()
        .find(|d| d["kind"] == "PrometheusRule")
        .expect("PrometheusRule rendered");
    rule["spec"].clone()
}

fn alerts(groups: &Value) -> Vec<(String, String)> {
    groups["groups"]
        .as_sequence()
        .expect("groups")
        .iter()
        .flat_map(|g| g["rules"].as_sequence().expect("rules").iter())
        .map(|r| {
            (
                r["alert"].as_str().expect("alert name").to_string(),
                r["expr"].as_str().expect("expr").to_string(),
            )
        })
        .collect()
}

/// Every metric the operator exports, each family with at least one sample,
/// as the text `/metrics` serves.
fn exported_metrics() -> String {
    use ordinal::metrics::*;
    let m = Metrics::new();
    let c = Metrics::controller("RedisReplication");
    m.reconciles.get_or_create(&c).inc();
    m.reconcile_errors.get_or_create(&c).inc();
    m.reconcile_duration.get_or_create(&c).observe(0.02);
    m.primary_changes
        .get_or_create(&PrimaryChangeLabels {
            controller: "RedisReplication".into(),
            namespace: "ns".into(),
            cluster: "c".into(),
            kind: "Failover".into(),
            reason: "PrimaryLost".into(),
        })
        .inc();
    let member = MemberLabels {
        controller: "RedisReplication".into(),
        namespace: "ns".into(),
        cluster: "c".into(),
        member: "c-1".into(),
    };
    m.replication_lag.get_or_create(&member).set(1);
    m.replication_link_up.get_or_create(&member).set(1);
    m.primaries
        .get_or_create(&ControlledClusterLabels {
            controller: "RedisReplication".into(),
            namespace: "ns".into(),
            cluster: "c".into(),
        })
        .set(1);
    let cluster = ClusterLabels {
        namespace: "ns".into(),
        cluster: "c".into(),
    };
    m.backup_duration.get_or_create(&cluster).set(1.5);
    m.backup_bytes.get_or_create(&cluster).set(1024);
    m.backup_last_success.get_or_create(&cluster).set(1);
    m.backup_last_verified.get_or_create(&cluster).set(1);
    m.backup_failures.get_or_create(&cluster).inc();
    m.backup_verify_failures.get_or_create(&cluster).inc();
    m.leader.set(1);
    m.connections_kept("redis").set(1);
    m.encode().expect("encode")
}

/// Names of the series in an exposition (`name{…} value` lines).
fn series_names(text: &str) -> std::collections::BTreeSet<String> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|l| l.split(['{', ' ']).next().expect("series name").to_string())
        .collect()
}

/// `ordinal_*` names a PromQL expression uses.
fn referenced(expr: &str) -> Vec<String> {
    regex::Regex::new(r"\bordinal_[a-z_]+")
        .expect("regex")
        .find_iter(expr)
        .map(|m| m.as_str().to_string())
        .collect()
}

#[test]
fn metrics_exposition_passes_promtool_lint() {
    let text = exported_metrics();
    // Every registered family has a sample here, so the name check below
    // sees all of them.
    for family in text.lines().filter_map(|l| l.strip_prefix("# TYPE ")) {
        let name = family.split(' ').next().expect("name");
        assert!(
            text.lines()
                .any(|l| !l.starts_with('#') && l.starts_with(name)),
            "family {name} has no sample in exported_metrics(): populate it"
        );
    }
    let out = promtool(&["check", "metrics"], Some(&text));
    assert!(
        out.status.success(),
        "promtool check metrics:\n{}{}\n{text}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn alert_rules_pass_promtool_unit_tests() {
    let dir = tempfile::tempdir().expect("tmp");
    // The defaults, as a user enables them.
    let defaults = rule_groups(&[]);
    std::fs::write(
        dir.path().join("defaults.yaml"),
        serde_yaml::to_string(&defaults).expect("yaml"),
    )
    .expect("write rules");
    let check = Command::new("promtool")
        .current_dir(dir.path())
        .args(["check", "rules", "defaults.yaml"])
        .output()
        .expect("promtool");
    assert!(
        check.status.success(),
        "promtool check rules: {}{}",
        String::from_utf8_lossy(&check.stdout),
        String::from_utf8_lossy(&check.stderr)
    );

    // The unit tests cover every alert (with the optional one switched on).
    let groups = rule_groups(&["--set", "metrics.prometheusRule.backupMissing=true"]);
    std::fs::write(
        dir.path().join("rules.yaml"),
        serde_yaml::to_string(&groups).expect("yaml"),
    )
    .expect("write rules");
    let tests = std::fs::read_to_string(format!("{ROOT}/tests/prometheus/alerts_test.yaml"))
        .expect("alerts_test.yaml");
    for (alert, _) in alerts(&groups) {
        assert!(
            tests.contains(&format!("alertname: {alert}\n")),
            "alert {alert} has no test in tests/prometheus/alerts_test.yaml"
        );
    }
    std::fs::write(dir.path().join("alerts_test.yaml"), &tests).expect("write tests");
    let out = Command::new("promtool")
        .current_dir(dir.path())
        .args(["test", "rules", "alerts_test.yaml"])
        .output()
        .expect("promtool");
    assert!(
        out.status.success(),
        "promtool test rules:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn alerts_and_dashboard_use_only_exported_series() {
    let exported = series_names(&exported_metrics());
    let groups = rule_groups(&["--set", "metrics.prometheusRule.backupMissing=true"]);
    let mut used = Vec::new();
    for (alert, expr) in alerts(&groups) {
        let names = referenced(&expr);
        assert!(!names.is_empty(), "{alert} uses no ordinal series");
        used.extend(names.into_iter().map(|n| (alert.clone(), n)));
    }

    let docs = render(&["--set", "metrics.grafanaDashboard.enabled=true"]);
    let cm = docs
        .iter()
        .find(|d| d["kind"] == "ConfigMap" && d["metadata"]["name"] == "ordinal-dashboard")
        .expect("dashboard ConfigMap");
    assert_eq!(
        cm["metadata"]["labels"]["grafana_dashboard"],
        Value::from("1"),
        "the Grafana sidecar's label"
    );
    let json = cm["data"]["ordinal.json"].as_str().expect("dashboard json");
    let file = std::fs::read_to_string(format!("{ROOT}/charts/ordinal/dashboards/ordinal.json"))
        .expect("dashboard file");
    assert_eq!(json.trim_end(), file.trim_end());
    let dashboard: serde_json::Value = serde_json::from_str(json).expect("dashboard is JSON");
    let mut panels = 0;
    for panel in dashboard["panels"].as_array().expect("panels") {
        for target in panel["targets"].as_array().into_iter().flatten() {
            let expr = target["expr"].as_str().expect("expr");
            let names = referenced(expr);
            assert!(!names.is_empty(), "{expr} uses no ordinal series");
            let title = panel["title"].as_str().unwrap_or_default().to_string();
            used.extend(names.into_iter().map(|n| (title.clone(), n)));
            panels += 1;
        }
    }
    assert!(panels >= 10, "{panels} dashboard queries");

    for (whom, name) in &used {
        assert!(
            exported.contains(name),
            "{whom} uses {name}, which the operator does not export ({exported:?})"
        );
    }
    // And every exported family is shown or alerted on somewhere.
    for name in &exported {
        let family = name
            .strip_suffix("_bucket")
            .or_else(|| name.strip_suffix("_sum"))
            .or_else(|| name.strip_suffix("_count"))
            .unwrap_or(name);
        assert!(
            used.iter().any(|(_, n)| n.starts_with(family)),
            "{name} appears in no alert and no dashboard panel"
        );
    }
}

/// Every key in values.yaml is described by values.schema.json (free-form
/// maps such as labels are described by `additionalProperties`), and the
/// schema forbids unknown keys in the chart's own objects.
#[test]
fn values_schema_covers_every_value() {
    fn walk(path: &str, value: &Value, schema: &serde_json::Value, missing: &mut Vec<String>) {
        let Some(map) = value.as_mapping() else {
            return;
        };
        for (key, child) in map {
            let key = key.as_str().expect("string key");
            let at = format!("{path}.{key}");
            let sub = schema["properties"]
                .get(key)
                .or_else(|| schema.get("additionalProperties").filter(|a| a.is_object()));
            match sub {
                Some(sub) => walk(&at, child, sub, missing),
                None => missing.push(at),
            }
        }
    }
    let values: Value = serde_yaml::from_str(
        &std::fs::read_to_string(format!("{ROOT}/charts/ordinal/values.yaml")).expect("values"),
    )
    .expect("values yaml");
    let schema: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(format!("{ROOT}/charts/ordinal/values.schema.json"))
            .expect("schema"),
    )
    .expect("schema json");
    let mut missing = Vec::new();
    walk("", &values, &schema, &mut missing);
    assert!(missing.is_empty(), "values without a schema: {missing:?}");
    assert_eq!(
        schema["additionalProperties"],
        serde_json::Value::from(false)
    );

    // A misspelt key is refused, not silently ignored.
    ensure_helm();
    let out = Command::new(format!("{ROOT}/scripts/helm.sh"))
        .args([
            "template",
            "ordinal",
            &format!("{ROOT}/charts/ordinal"),
            "--set",
            "metrics.prometheusRule.enabeld=true",
        ])
        .output()
        .expect("run helm");
    assert!(!out.status.success(), "a misspelt value was accepted");
}

#[test]
fn helm_test_hook_checks_readiness_and_leadership() {
    let docs = render(&[]);
    let pod = docs
        .iter()
        .find(|d| d["kind"] == "Pod")
        .expect("helm test Pod");
    assert_eq!(
        pod["metadata"]["annotations"]["helm.sh/hook"],
        Value::from("test")
    );
    assert_eq!(
        pod["metadata"]["labels"]["app.kubernetes.io/component"],
        Value::from("test"),
        "the Service and PDB select component=operator only"
    );
    let script = pod["spec"]["containers"][0]["command"][2]
        .as_str()
        .expect("script");
    assert!(
        script.contains("http://ordinal-metrics.ordinal-system.svc:8080")
            && script.contains("/readyz")
            && script.contains("^ordinal_leader 1"),
        "{script}"
    );
    // Requests on every container the chart runs.
    for d in &docs {
        let spec = if d["kind"] == "Deployment" {
            &d["spec"]["template"]["spec"]
        } else if d["kind"] == "Pod" {
            &d["spec"]
        } else {
            continue;
        };
        for c in spec["containers"].as_sequence().expect("containers") {
            assert!(
                c["resources"]["requests"]["cpu"].as_str().is_some()
                    && c["resources"]["requests"]["memory"].as_str().is_some(),
                "{c:?}"
            );
        }
    }
}
