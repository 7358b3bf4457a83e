//! CRD generation, CEL rules (evaluated offline with kube's CEL validator, the
//! same rules the API server enforces) and the examples.

use kube::CustomResourceExt;
use kube::core::cel::Validator;
use ordinal::api::{self, Backup, BackupSchedule, MySQLCluster, RedisReplication};
use serde_json::{Value, json};

fn schema<K: CustomResourceExt>() -> Value {
    let crd = K::crd();
    let schema = crd.spec.versions[0]
        .schema
        .as_ref()
        .and_then(|s| s.open_api_v3_schema.as_ref())
        .expect("schema");
    serde_json::to_value(schema).expect("schema json")
}

/// Messages of every rule the object breaks (empty when accepted).
fn refusals<K: CustomResourceExt>(object: &Value, old: Option<&Value>) -> Vec<String> {
    match Validator::new().validate(&schema::<K>(), object, old) {
        Ok(()) => Vec::new(),
        Err(errors) => errors.iter().map(|e| e.message.clone()).collect(),
    }
}

fn assert_refused<K: CustomResourceExt>(object: &Value, old: Option<&Value>, message: &str) {
    let got = refusals::<K>(object, old);
    assert!(
        got.iter().any(|m| m.contains(message)),
        "expected a refusal containing {message:?}, got {got:?}"
    );
}

fn redis(spec: Value) -> Value {
    json!({"apiVersion": "ordinal.dev/v1alpha1", "kind": "RedisReplication", "metadata": {"name": "r"}, "spec": spec})
}

fn mysql(spec: Value) -> Value {
    json!({"apiVersion": "ordinal.dev/v1alpha1", "kind": "MySQLCluster", "metadata": {"name": "m"}, "spec": spec})
}

#[test]
fn committed_crds_match_generated() {
    let generated = api::crds_yaml().expect("render");
    let committed = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/crds/ordinal.dev.yaml"
    ))
    .expect("crds/ordinal.dev.yaml exists");
    assert!(
        generated == committed,
        "crds/ is stale: run `cargo run -- crd > crds/ordinal.dev.yaml` and commit"
    );
}

#[test]
fn crds_have_status_printer_columns_short_names_and_category() {
    for crd in api::crds() {
        let names = &crd.spec.names;
        assert_eq!(crd.spec.group, "ordinal.dev");
        assert_eq!(crd.spec.versions[0].name, "v1alpha1");
        assert_eq!(
            names.categories.as_deref(),
            Some(&["ordinal".to_string()][..]),
            "{}",
            names.kind
        );
        assert!(
            names.short_names.as_ref().is_some_and(|s| !s.is_empty()),
            "{} has a short name",
            names.kind
        );
        let version = &crd.spec.versions[0];
        assert!(
            version
                .subresources
                .as_ref()
                .and_then(|s| s.status.as_ref())
                .is_some(),
            "{} status",
            names.kind
        );
        let columns: Vec<String> = version
            .additional_printer_columns
            .clone()
            .unwrap_or_default()
            .into_iter()
            .map(|c| c.name)
            .collect();
        let wanted: &[&str] = match names.kind.as_str() {
            "RedisReplication" | "MySQLCluster" => &["Primary", "Ready", "Phase", "Age"],
            "Backup" => &["Phase", "Size", "Age"],
            _ => &["Schedule", "Age"],
        };
        for w in wanted {
            assert!(
                columns.iter().any(|c| c == w),
                "{} lacks column {w}: {columns:?}",
                names.kind
            );
        }
    }
}

#[test]
fn valid_clusters_are_accepted() {
    assert_eq!(
        refusals::<RedisReplication>(&redis(json!({"replicas": 3})), None),
        Vec::<String>::new()
    );
    assert_eq!(
        refusals::<MySQLCluster>(
            &mysql(json!({"replicas": 3, "primary": 2, "config": {"max_connections": "10"}})),
            None
        ),
        Vec::<String>::new()
    );
}

#[test]
fn replicas_must_be_positive() {
    assert_refused::<RedisReplication>(
        &redis(json!({"replicas": 0})),
        None,
        "spec.replicas must be at least 1",
    );
    assert_refused::<MySQLCluster>(
        &mysql(json!({"replicas": -1})),
        None,
        "spec.replicas must be at least 1",
    );
}

#[test]
fn primary_must_be_an_existing_ordinal() {
    assert_refused::<RedisReplication>(
        &redis(json!({"replicas": 3, "primary": 3})),
        None,
        "spec.primary must be an ordinal below spec.replicas",
    );
    assert_refused::<MySQLCluster>(
        &mysql(json!({"replicas": 2, "primary": -1})),
        None,
        "spec.primary must be an ordinal below spec.replicas",
    );
}

#[test]
fn storage_size_must_be_a_quantity() {
    assert_refused::<RedisReplication>(
        &redis(json!({"replicas": 1, "storage": {"size": "ten gigs"}})),
        None,
        "storage.size must be a Kubernetes quantity",
    );
    assert!(
        refusals::<RedisReplication>(
            &redis(json!({"replicas": 1, "storage": {"size": "10Gi"}})),
            None
        )
        .is_empty()
    );
}

#[test]
fn storage_class_is_immutable() {
    let old = redis(json!({"replicas": 1, "storage": {"size": "1Gi", "storageClassName": "fast"}}));
    let new = redis(json!({"replicas": 1, "storage": {"size": "1Gi", "storageClassName": "slow"}}));
    assert_refused::<RedisReplication>(&new, Some(&old), "storage.storageClassName is immutable");
    let dropped = redis(json!({"replicas": 1, "storage": {"size": "1Gi"}}));
    assert_refused::<RedisReplication>(
        &dropped,
        Some(&old),
        "storage.storageClassName is immutable",
    );
    assert!(refusals::<RedisReplication>(&old, Some(&old)).is_empty());
}

#[test]
fn server_id_base_and_flavor_are_immutable() {
    let old = mysql(json!({"replicas": 3, "serverIdBase": 100}));
    let new = mysql(json!({"replicas": 3, "serverIdBase": 200}));
    assert_refused::<MySQLCluster>(&new, Some(&old), "spec.serverIdBase is immutable");
    let flavor = mysql(json!({"replicas": 3, "serverIdBase": 100, "flavor": "MySQL"}));
    assert_refused::<MySQLCluster>(&flavor, Some(&old), "spec.flavor is immutable");
    assert_refused::<MySQLCluster>(
        &mysql(json!({"replicas": 3, "serverIdBase": 0})),
        None,
        "spec.serverIdBase must be between",
    );
}

#[test]
fn owned_config_keys_are_refused_by_name() {
    for key in [
        "port",
        "replicaof",
        "slaveof",
        "masterauth",
        "requirepass",
        "dir",
    ] {
        assert_refused::<RedisReplication>(
            &redis(json!({"replicas": 1, "config": {"maxmemory": "1gb", key: "x"}})),
            None,
            &format!("config key {key} is managed by Ordinal"),
        );
    }
    for key in [
        "server-id",
        "server_id",
        "log_bin",
        "gtid_strict_mode",
        "gtid_mode",
        "read_only",
        "super_read_only",
        "port",
    ] {
        assert_refused::<MySQLCluster>(
            &mysql(json!({"replicas": 1, "config": {key: "1"}})),
            None,
            &format!("config key {key} is managed by Ordinal"),
        );
    }
}

#[test]
fn failover_and_durability_bounds() {
    assert_refused::<RedisReplication>(
        &redis(json!({"replicas": 3, "failover": {"detectionSeconds": 0}})),
        None,
        "failover.detectionSeconds must be between 1 and 300",
    );
    assert_refused::<RedisReplication>(
        &redis(json!({"replicas": 3, "failover": {"maxLag": -1}})),
        None,
        "failover.maxLag must not be negative",
    );
    assert_refused::<RedisReplication>(
        &redis(json!({"replicas": 3, "durability": {"minReplicasToWrite": 0}})),
        None,
        "durability.minReplicasToWrite must be at least 1",
    );
    assert_refused::<MySQLCluster>(
        &mysql(json!({"replicas": 2, "replication": {"mode": "SemiSync", "waitForReplicas": 2}})),
        None,
        "replication.waitForReplicas must be below spec.replicas",
    );
}

fn backup(spec: Value) -> Value {
    json!({"apiVersion": "ordinal.dev/v1alpha1", "kind": "Backup", "metadata": {"name": "b"}, "spec": spec})
}

#[test]
fn backup_needs_exactly_one_target_and_a_cluster_name() {
    let pvc = json!({"pvc": {"claimName": "backups"}});
    assert!(
        refusals::<Backup>(
            &backup(json!({"cluster": {"kind": "RedisReplication", "name": "r"}, "target": pvc})),
            None
        )
        .is_empty()
    );
    assert_refused::<Backup>(
        &backup(json!({"cluster": {"kind": "RedisReplication", "name": "r"}, "target": {}})),
        None,
        "target must set exactly one of s3, gcs, azure, pvc",
    );
    let two = json!({"pvc": {"claimName": "b"}, "gcs": {"bucket": "x", "serviceAccountKey": {"name": "s", "key": "k"}}});
    assert_refused::<Backup>(
        &backup(json!({"cluster": {"kind": "RedisReplication", "name": "r"}, "target": two})),
        None,
        "target must set exactly one",
    );
    assert_refused::<Backup>(
        &backup(json!({"cluster": {"kind": "MySQLCluster", "name": ""}, "target": pvc})),
        None,
        "cluster.name must not be empty",
    );
    let old = backup(json!({"cluster": {"kind": "RedisReplication", "name": "r"}, "target": pvc}));
    let changed =
        backup(json!({"cluster": {"kind": "RedisReplication", "name": "other"}, "target": pvc}));
    assert_refused::<Backup>(&changed, Some(&old), "a Backup's spec is immutable");
}

#[test]
fn backup_schedule_needs_a_cron_string() {
    let schedule = |cron: &str| {
        json!({"apiVersion": "ordinal.dev/v1alpha1", "kind": "BackupSchedule", "metadata": {"name": "s"}, "spec": {
            "schedule": cron, "cluster": {"kind": "MySQLCluster", "name": "m"}, "target": {"pvc": {"claimName": "b"}},
            "retention": {"keepLast": 3, "maxAge": "30d"}}})
    };
    assert!(refusals::<BackupSchedule>(&schedule("0 2 * * *"), None).is_empty());
    assert_refused::<BackupSchedule>(&schedule("   "), None, "schedule must not be empty");
    let mut bad_age = schedule("0 2 * * *");
    bad_age["spec"]["retention"]["maxAge"] = json!("a month");
    assert_refused::<BackupSchedule>(&bad_age, None, "retention.maxAge must be a duration");
}

fn example(name: &str) -> String {
    std::fs::read_to_string(format!("{}/examples/{name}", env!("CARGO_MANIFEST_DIR")))
        .expect("example exists")
}

#[test]
fn examples_parse_and_pass_validation() {
    let r: RedisReplication =
        serde_yaml::from_str(&example("redis-replication.yaml")).expect("redis example");
    assert_eq!(r.spec.replicas, 3);
    let m: MySQLCluster =
        serde_yaml::from_str(&example("mysql-cluster.yaml")).expect("mysql example");
    assert_eq!(m.spec.replicas, 3);
    assert_eq!(m.spec.server_id_base, 100);
    let b: Backup = serde_yaml::from_str(&example("backup.yaml")).expect("backup example");
    assert!(b.spec.target.s3.is_some());
    let s: BackupSchedule =
        serde_yaml::from_str(&example("backup-schedule.yaml")).expect("schedule example");
    assert_eq!(s.spec.retention.keep_last, Some(7));

    let as_json = |y: &str| {
        serde_json::to_value(serde_yaml::from_str::<Value>(y).expect("yaml")).expect("json")
    };
    assert_eq!(
        refusals::<RedisReplication>(&as_json(&example("redis-replication.yaml")), None),
        Vec::<String>::new()
    );
    assert_eq!(
        refusals::<MySQLCluster>(&as_json(&example("mysql-cluster.yaml")), None),
        Vec::<String>::new()
    );
    assert_eq!(
        refusals::<Backup>(&as_json(&example("backup.yaml")), None),
        Vec::<String>::new()
    );
    assert_eq!(
        refusals::<BackupSchedule>(&as_json(&example("backup-schedule.yaml")), None),
        Vec::<String>::new()
    );
}

/// Paths of schema properties without a description (what `kubectl explain` shows).
fn undocumented(schema: &Value, path: &str, out: &mut Vec<String>) {
    if let Some(props) = schema.get("properties").and_then(Value::as_object) {
        for (name, sub) in props {
            let p = format!("{path}.{name}");
            let described = sub
                .get("description")
                .and_then(Value::as_str)
                .is_some_and(|d| !d.trim().is_empty());
            if !described && !matches!(name.as_str(), "apiVersion" | "kind" | "metadata") {
                out.push(p.clone());
            }
            undocumented(sub, &p, out);
        }
    }
    if let Some(items) = schema.get("items") {
        undocumented(items, &format!("{path}[]"), out);
    }
    if let Some(extra) = schema.get("additionalProperties").filter(|v| v.is_object()) {
        undocumented(extra, &format!("{path}{{}}"), out);
    }
}

#[test]
fn every_field_is_described_for_kubectl_explain() {
    let mut missing = Vec::new();
    for crd in api::crds() {
        let schema = serde_json::to_value(
            crd.spec.versions[0]
                .schema
                .as_ref()
                .and_then(|s| s.open_api_v3_schema.as_ref())
                .expect("schema"),
        )
        .expect("json");
        undocumented(&schema, &crd.spec.names.kind, &mut missing);
    }
    assert!(
        missing.is_empty(),
        "{} fields lack a description:\n{}",
        missing.len(),
        missing.join("\n")
    );
}
