//! CRD generation, CEL rules (evaluated offline with kube's CEL validator, the
//! same rules the API server enforces) and the examples.

#[path = "support/corpus.rs"]
mod corpus;

use std::collections::BTreeMap;
use std::str::FromStr;

use kube::CustomResourceExt;
use kube::core::cel::{CompiledSchema, Validator, compile_schema};
use ordinal::api::backup::{MAX_BACKUP_NAME, MAX_SCHEDULE_NAME};
use ordinal::api::{
    self, Backup, BackupSchedule, MAX_CLUSTER_NAME, MySQLCluster, RedisReplication,
};
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

/// The four kinds' schemas compiled once, to validate many objects.
struct Schemas(BTreeMap<&'static str, CompiledSchema>, Validator);

impl Schemas {
    fn new() -> Self {
        Schemas(
            BTreeMap::from([
                (
                    "RedisReplication",
                    compile_schema(&schema::<RedisReplication>()),
                ),
                ("MySQLCluster", compile_schema(&schema::<MySQLCluster>())),
                ("Backup", compile_schema(&schema::<Backup>())),
                (
                    "BackupSchedule",
                    compile_schema(&schema::<BackupSchedule>()),
                ),
            ]),
            Validator::new(),
        )
    }

    /// Messages of every rule `doc` breaks (its kind picks the schema).
    fn refusals(&self, doc: &Value, old: Option<&Value>) -> Vec<String> {
        let kind = doc["kind"].as_str().expect("kind");
        let compiled = self
            .0
            .get(kind)
            .unwrap_or_else(|| panic!("unknown kind {kind}"));
        match self.1.validate_compiled(compiled, doc, old) {
            Ok(()) => Vec::new(),
            Err(errors) => errors.iter().map(|e| e.message.clone()).collect(),
        }
    }
}

/// Whether `doc` deserializes into its Rust type (what the operator reads).
fn typed(doc: &Value) -> Result<(), String> {
    let r = match doc["kind"].as_str().expect("kind") {
        "RedisReplication" => serde_json::from_value::<RedisReplication>(doc.clone()).map(drop),
        "MySQLCluster" => serde_json::from_value::<MySQLCluster>(doc.clone()).map(drop),
        "Backup" => serde_json::from_value::<Backup>(doc.clone()).map(drop),
        "BackupSchedule" => serde_json::from_value::<BackupSchedule>(doc.clone()).map(drop),
        other => panic!("unknown kind {other}"),
    };
    r.map_err(|e| e.to_string())
}

/// The latest earlier state of the same object among `docs[..i]`.
fn previous(docs: &[Value], i: usize) -> Option<&Value> {
    docs[..i].iter().rev().find(|d| {
        d["kind"] == docs[i]["kind"] && d["metadata"]["name"] == docs[i]["metadata"]["name"]
    })
}

#[test]
fn invalid_corpus_is_refused_and_every_message_names_the_field() {
    let schemas = Schemas::new();
    let cases = corpus::invalid();
    assert!(cases.len() >= 60, "only {} invalid cases", cases.len());
    for kind in [
        "RedisReplication",
        "MySQLCluster",
        "Backup",
        "BackupSchedule",
    ] {
        assert!(
            cases.iter().filter(|c| c.kind() == kind).count() >= 10,
            "too few {kind} cases"
        );
    }
    let mut failures = Vec::new();
    let mut cel_refused = 0;
    for case in &cases {
        assert!(!case.expect.is_empty(), "{} lacks `# expect:`", case.file);
        for (i, doc) in case.setup().iter().enumerate() {
            let got = schemas.refusals(doc, previous(&case.docs, i));
            if !got.is_empty() || typed(doc).is_err() {
                failures.push(format!(
                    "{}: setup document {i} is refused: {got:?}",
                    case.file
                ));
            }
        }
        let last = case.docs.len() - 1;
        let got = schemas.refusals(case.refused(), previous(&case.docs, last));
        if case.schema_only {
            // Types and enums are the OpenAPI schema's part (checked by the
            // real API server in e2e_refusals); the operator could not even
            // read such an object.
            if typed(case.refused()).is_ok() {
                failures.push(format!(
                    "{}: marked schema-only but deserializes",
                    case.file
                ));
            }
            continue;
        }
        cel_refused += 1;
        if got.is_empty() {
            failures.push(format!("{}: accepted", case.file));
        } else if let Some(m) = got.iter().find(|m| !m.contains(&case.expect)) {
            failures.push(format!(
                "{}: message {m:?} does not name {:?} (all: {got:?})",
                case.file, case.expect
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases wrong:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
    eprintln!(
        "{} invalid cases: {cel_refused} refused by CEL offline, {} schema-only",
        cases.len(),
        cases.len() - cel_refused
    );
}

#[test]
fn valid_corpus_and_examples_are_accepted() {
    let schemas = Schemas::new();
    let cases = corpus::valid();
    let mut failures = Vec::new();
    let mut objects = 0;
    for case in &cases {
        for (i, doc) in case.docs.iter().enumerate() {
            objects += 1;
            let got = schemas.refusals(doc, previous(&case.docs, i));
            if !got.is_empty() {
                failures.push(format!("{} document {i}: {got:?}", case.file));
            }
            if let Err(e) = typed(doc) {
                failures.push(format!(
                    "{} document {i} does not deserialize: {e}",
                    case.file
                ));
            }
        }
    }
    assert!(objects >= 40, "only {objects} valid objects");
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

fn schedule_with(cron: &str, zone: Option<&str>) -> Value {
    let mut spec = json!({"schedule": cron, "cluster": {"kind": "MySQLCluster", "name": "m"}, "target": {"pvc": {"claimName": "b"}}});
    if let Some(zone) = zone {
        spec["timeZone"] = json!(zone);
    }
    json!({"apiVersion": "ordinal.dev/v1alpha1", "kind": "BackupSchedule", "metadata": {"name": "s"}, "spec": spec})
}

/// Every schedule the API server accepts is one the operator's cron parser
/// runs; the parser accepts more (seconds, years, names in the wrong field,
/// empty list items), which the rules refuse on purpose.
#[test]
fn cron_rules_accept_only_schedules_the_operator_parses() {
    let tokens = [
        "*",
        "?",
        "L",
        "LW",
        "W",
        "0",
        "00",
        "1",
        "7",
        "8",
        "12",
        "13",
        "23",
        "24",
        "31",
        "32",
        "59",
        "60",
        "-1",
        "5-1",
        "0-59",
        "0-60",
        "1-31",
        "*/5",
        "*/0",
        "*/61",
        "1-10/3",
        "10-1/3",
        "5/10",
        "/5",
        "1,2,3",
        "1,,2",
        "JAN",
        "jul",
        "JANUARY",
        "SUN",
        "fri",
        "MON-FRI",
        "FRI-MON",
        "SAT-SUN",
        "MAR-JAN",
        "jan-dec/2",
        "5L",
        "5#2",
        "5#6",
        "15W",
        "32W",
        "L-2",
        "a",
        "1.5",
    ];
    // Only the schedule's own rules, compiled once per thread (the regexes
    // are compiled at every evaluation, slow in a debug build).
    let field = schema::<BackupSchedule>()["properties"]["spec"]["properties"]["schedule"].clone();
    let (only_cel, only_parser): (Vec<String>, Vec<String>) = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..5)
            .map(|position| {
                let field = &field;
                scope.spawn(move || {
                    let compiled = compile_schema(field);
                    let validator = Validator::new();
                    let mut only_cel = Vec::new();
                    let mut only_parser = Vec::new();
                    for token in tokens {
                        let mut fields = ["0", "2", "*", "*", "*"];
                        fields[position] = token;
                        let cron = fields.join(" ");
                        let cel = validator
                            .validate_compiled(&compiled, &json!(cron), None)
                            .is_ok();
                        match (cel, croner::Cron::from_str(&cron).is_ok()) {
                            (true, false) => only_cel.push(cron),
                            (false, true) => only_parser.push(cron),
                            _ => {}
                        }
                    }
                    (only_cel, only_parser)
                })
            })
            .collect();
        workers.into_iter().map(|w| w.join().expect("worker")).fold(
            (Vec::new(), Vec::new()),
            |(mut a, mut b), (c, p)| {
                a.extend(c);
                b.extend(p);
                (a, b)
            },
        )
    });
    assert!(
        only_cel.is_empty(),
        "accepted by the API server, refused by the operator: {only_cel:?}"
    );
    eprintln!("refused by the rules, accepted by the parser: {only_parser:?}");
    assert!(only_parser.iter().all(|c| c.contains(",,")
        || c.contains(",1")
        || c.contains("1,")
        || c.chars().any(|ch| ch.is_ascii_alphabetic())));
    let schemas = Schemas::new();
    for cron in [
        "0 0 2 * * *",
        "0 0 2 * * * 2026",
        "every day",
        "61 25 * * *",
    ] {
        assert!(
            !schemas
                .refusals(&schedule_with(cron, None), None)
                .is_empty(),
            "{cron} accepted"
        );
    }
    for cron in [
        "@daily",
        "@hourly",
        "@weekly",
        "@monthly",
        "@yearly",
        "@annually",
        "0 2 * * *",
    ] {
        assert!(
            schemas
                .refusals(&schedule_with(cron, None), None)
                .is_empty(),
            "{cron} refused"
        );
        croner::Cron::from_str(cron).expect("parser");
    }
}

#[test]
fn time_zones_are_the_operators_tz_database() {
    let schemas = Schemas::new();
    let mut refused = Vec::new();
    for tz in chrono_tz::TZ_VARIANTS.iter().step_by(7) {
        if !schemas
            .refusals(&schedule_with("0 2 * * *", Some(tz.name())), None)
            .is_empty()
        {
            refused.push(tz.name());
        }
    }
    assert!(refused.is_empty(), "known zones refused: {refused:?}");
    for zone in [
        "Mars/Olympus_Mons",
        "europe/berlin",
        "CEST",
        "+02:00",
        "",
        "Europe/Berlin ",
    ] {
        let got = schemas.refusals(&schedule_with("0 2 * * *", Some(zone)), None);
        assert!(
            got.iter()
                .any(|m| m.contains("timeZone") && m.contains(zone)),
            "{zone:?}: {got:?}"
        );
        assert!(zone.parse::<chrono_tz::Tz>().is_err(), "{zone} parses");
    }
}

/// The name limits are what the operator's derived names need: a Backup of
/// the longest name gets its Jobs without truncation, a schedule of the
/// longest name creates Backups within the Backup limit, and the rules refuse
/// one character more.
#[test]
fn name_limits_match_the_derived_names() {
    let longest = "b".repeat(MAX_BACKUP_NAME);
    for suffix in ["backup", "verify", "delete"] {
        let job = ordinal::backup::job::job_name(&longest, suffix);
        assert_eq!(job, format!("{longest}-{suffix}"));
        assert!(job.len() <= 63);
    }
    let schedule = "s".repeat(MAX_SCHEDULE_NAME);
    let at = chrono::DateTime::from_timestamp(4_102_444_800, 0).expect("2100-01-01");
    let scheduled = ordinal::controller::schedule::backup_name(&schedule, at);
    assert!(scheduled.starts_with(&schedule), "{scheduled}");
    assert!(scheduled.len() <= MAX_BACKUP_NAME, "{scheduled}");
    // The StatefulSet's revision label `<name>-<hash of up to 10 characters>`.
    let revision = format!("{}-{}", "c".repeat(MAX_CLUSTER_NAME), "5d8f9c7b6a");
    assert!(revision.len() <= 63, "{revision}");
    let restore = ordinal::backup::restore::mysql_job_name(&"c".repeat(MAX_CLUSTER_NAME));
    assert!(restore.ends_with("-restore") && restore.len() <= 63);

    let named = |mut doc: Value, name: String| {
        doc["metadata"]["name"] = json!(name);
        doc
    };
    let schemas = Schemas::new();
    let pvc = json!({"pvc": {"claimName": "b"}});
    let objects = [
        (redis(json!({"replicas": 1})), MAX_CLUSTER_NAME),
        (mysql(json!({"replicas": 1})), MAX_CLUSTER_NAME),
        (
            backup(json!({"cluster": {"kind": "RedisReplication", "name": "r"}, "target": pvc})),
            MAX_BACKUP_NAME,
        ),
        (schedule_with("0 2 * * *", None), MAX_SCHEDULE_NAME),
    ];
    for (doc, max) in objects {
        let kind = doc["kind"].as_str().expect("kind").to_string();
        let fits = named(doc.clone(), format!("a{}", "0".repeat(max - 1)));
        assert!(schemas.refusals(&fits, None).is_empty(), "{kind} of {max}");
        let long = named(doc, format!("a{}", "0".repeat(max)));
        let got = schemas.refusals(&long, None);
        assert!(
            got.iter()
                .any(|m| m.contains("metadata.name")
                    && m.contains(&format!("at most {max} characters"))),
            "{kind}: {got:?}"
        );
    }
}

#[test]
fn storage_never_shrinks_and_is_positive() {
    let sized = |size: &str| redis(json!({"replicas": 1, "storage": {"size": size}}));
    assert_refused::<RedisReplication>(
        &sized("1Gi"),
        Some(&sized("2Gi")),
        "storage.size cannot shrink (from 2Gi to 1Gi)",
    );
    assert_refused::<RedisReplication>(
        &sized("1000Mi"),
        Some(&sized("1Gi")),
        "storage.size cannot shrink",
    );
    assert!(refusals::<RedisReplication>(&sized("1024Mi"), Some(&sized("1Gi"))).is_empty());
    assert!(refusals::<RedisReplication>(&sized("3Gi"), Some(&sized("1Gi"))).is_empty());
    for bad in ["-1Gi", "0", "0Gi", "-1"] {
        assert_refused::<RedisReplication>(
            &sized(bad),
            None,
            "storage.size must be greater than zero",
        );
    }
}

#[test]
fn min_replicas_to_write_stays_below_replicas() {
    let durable = |replicas: i32, min: i32| {
        redis(json!({"replicas": replicas, "durability": {"minReplicasToWrite": min}}))
    };
    assert!(refusals::<RedisReplication>(&durable(3, 2), None).is_empty());
    assert_refused::<RedisReplication>(
        &durable(3, 3),
        None,
        "durability.minReplicasToWrite must be below spec.replicas",
    );
    assert_refused::<RedisReplication>(
        &durable(1, 1),
        None,
        "durability.minReplicasToWrite must be below spec.replicas",
    );
}
