//! The pure builders: per-ordinal configuration, Secret, Services,
//! StatefulSet, PDB — asserting the fields that matter (the seeds' invariants
//! among them), not snapshots.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use ordinal::api::{
    MemberTemplate, MySQLClusterSpec, MySqlFlavor, PodOverrides, RedisReplicationSpec,
    ReplicationState, RetentionPolicy, StorageSpec,
};
use ordinal::resources::{ClusterView, DbKind, config, labels, pdb, secret, services, statefulset};

fn view(kind: DbKind, name: &str, replicas: i32) -> ClusterView {
    ClusterView {
        kind,
        name: name.into(),
        namespace: "shop".into(),
        owner: OwnerReference {
            api_version: "ordinal.dev/v1alpha1".into(),
            kind: "RedisReplication".into(),
            name: name.into(),
            uid: "uid-1".into(),
            controller: Some(true),
            block_owner_deletion: Some(true),
        },
        replicas,
        template: MemberTemplate {
            image: None,
            image_pull_policy: None,
            resources: None,
            pod: PodOverrides::default(),
        },
        storage: StorageSpec::default(),
        secret_name: ClusterView::generated_secret_name(name),
        cluster_domain: "cluster.local".into(),
    }
}

fn redis_spec(yaml: &str) -> RedisReplicationSpec {
    serde_yaml::from_str(yaml).expect("redis spec")
}

fn mysql_spec(yaml: &str) -> MySQLClusterSpec {
    serde_yaml::from_str(yaml).expect("mysql spec")
}

fn lines(file: &str, prefix: &str) -> Vec<String> {
    file.lines()
        .filter(|l| l.starts_with(prefix))
        .map(str::to_string)
        .collect()
}

#[test]
fn mysql_server_ids_follow_ordinals_from_base_100() {
    let v = view(DbKind::MySql(MySqlFlavor::MariaDB), "db", 3);
    let rendered = config::render_mysql(&v, &mysql_spec("replicas: 3"));
    assert_eq!(
        rendered.files.keys().collect::<Vec<_>>(),
        ["0.cnf", "1.cnf", "2.cnf"]
    );
    for (ordinal, id) in [(0, 100), (1, 101), (2, 102)] {
        let file = &rendered.files[&config::mysql_file(ordinal)];
        assert_eq!(lines(file, "server_id"), [format!("server_id = {id}")]);
        assert_eq!(
            lines(file, "report_host"),
            [format!(
                "report_host = db-{ordinal}.db-headless.shop.svc.cluster.local"
            )]
        );
        assert!(file.starts_with("# Rendered by Ordinal") && file.contains("\n[mysqld]\n"));
        for wanted in [
            "log_bin = mysql-bin",
            "gtid_strict_mode = ON",
            "relay_log_recovery = ON",
            "read_only = ON",
            "skip_slave_start = ON",
            "log_slave_updates = ON",
        ] {
            assert!(file.contains(wanted), "{wanted} in {file}");
        }
        // MariaDB has no super_read_only.
        assert!(!file.contains("super_read_only"));
    }
    let custom = config::render_mysql(&v, &mysql_spec("replicas: 3\nserverIdBase: 7"));
    assert!(custom.files["2.cnf"].contains("server_id = 9\n"));
}

#[test]
fn mysql8_renders_its_own_gtid_and_read_only_settings() {
    let v = view(DbKind::MySql(MySqlFlavor::MySQL), "db", 2);
    let rendered = config::render_mysql(&v, &mysql_spec("replicas: 2\nflavor: MySQL"));
    let file = &rendered.files["1.cnf"];
    for wanted in [
        "gtid_mode = ON",
        "enforce_gtid_consistency = ON",
        "super_read_only = ON",
        "skip_replica_start = ON",
        "log_replica_updates = ON",
        "plugin_load_add = semisync_source.so",
    ] {
        assert!(file.contains(wanted), "{wanted} in {file}");
    }
    assert!(!file.contains("gtid_strict_mode"));
}

#[test]
fn redis_members_boot_read_only_with_no_source_without_a_recorded_primary() {
    let v = view(DbKind::Redis, "cache", 3);
    let rendered =
        config::render_redis(&v, &redis_spec("replicas: 3"), &ReplicationState::default());
    // No member is a bootstrap primary and none follows ordinal 0: each
    // points at itself (read-only, never syncs) until the operator adopts.
    for ordinal in [0, 1, 2] {
        assert_eq!(
            lines(&rendered.files[&config::redis_file(ordinal)], "replicaof"),
            [format!(
                "replicaof cache-{ordinal}.cache-headless.shop.svc.cluster.local 6379"
            )]
        );
    }
    for file in rendered.files.values() {
        for wanted in [
            "port 6379",
            "dir /data",
            "appendonly yes",
            "repl-diskless-sync-delay 0",
        ] {
            assert!(file.contains(wanted), "{wanted} in {file}");
        }
    }
}

#[test]
fn redis_follows_the_recorded_primary_and_the_primary_boots_fenced() {
    let v = view(DbKind::Redis, "cache", 3);
    let state = ReplicationState {
        primary: Some(2),
        term: 4,
        ..Default::default()
    };
    let rendered = config::render_redis(&v, &redis_spec("replicas: 3"), &state);
    for file in rendered.files.values() {
        assert_eq!(
            lines(file, "replicaof"),
            ["replicaof cache-2.cache-headless.shop.svc.cluster.local 6379"]
        );
    }
    // A primary change is applied live: it must not mark pods for restart.
    let bootstrap =
        config::render_redis(&v, &redis_spec("replicas: 3"), &ReplicationState::default());
    assert_eq!(bootstrap.restart_hash, rendered.restart_hash);
    let changed = config::render_redis(
        &v,
        &redis_spec("replicas: 3\nconfig:\n  maxmemory: 1gb"),
        &state,
    );
    assert_ne!(changed.restart_hash, rendered.restart_hash);
    assert!(changed.files["0.conf"].contains("maxmemory 1gb\n"));
}

#[test]
fn redis_durability_is_rendered() {
    let v = view(DbKind::Redis, "cache", 3);
    let spec =
        redis_spec("replicas: 3\ndurability:\n  minReplicasToWrite: 1\n  minReplicasMaxLag: 5");
    let rendered = config::render_redis(&v, &spec, &ReplicationState::default());
    assert!(rendered.files["0.conf"].contains("min-replicas-to-write 1\nmin-replicas-max-lag 5\n"));
}

#[test]
fn no_password_is_rendered_into_any_config_map() {
    let rv = view(DbKind::Redis, "cache", 3);
    let mv = view(DbKind::MySql(MySqlFlavor::MariaDB), "db", 3);
    let rs = secret::generated(&rv, secret::random_password);
    let ms = secret::generated(&mv, secret::random_password);
    let passwords: Vec<String> = [rs, ms]
        .iter()
        .flat_map(|s| s.data.clone().unwrap_or_default().into_values())
        .map(|b| String::from_utf8(b.0).expect("utf8"))
        .collect();
    assert_eq!(passwords.len(), 4);
    let mut files: Vec<String> = config::render_redis(
        &rv,
        &redis_spec("replicas: 3"),
        &ReplicationState::default(),
    )
    .files
    .into_values()
    .collect();
    files.extend(
        config::render_mysql(&mv, &mysql_spec("replicas: 3"))
            .files
            .into_values(),
    );
    for file in &files {
        for password in &passwords {
            assert!(!file.contains(password.as_str()));
        }
        assert!(
            !file.contains("requirepass")
                && !file.contains("masterauth")
                && !file.to_lowercase().contains("password")
        );
    }
}

#[test]
fn generated_secret_outlives_the_resource_while_the_volumes_do() {
    // Default retention (Retain): no owner, so deleting the resource keeps it.
    let mut v = view(DbKind::MySql(MySqlFlavor::MariaDB), "db", 3);
    let s = secret::generated(&v, secret::random_password);
    assert_eq!(s.metadata.owner_references, None);
    // A Secret an earlier version made owned is released, other owners kept.
    let other = OwnerReference {
        uid: "someone-else".into(),
        ..v.owner.clone()
    };
    let mut owned = s.clone();
    owned.metadata.owner_references = Some(vec![v.owner.clone(), other.clone()]);
    assert_eq!(secret::owners_to_set(&v, &owned), Some(vec![other.clone()]));
    assert_eq!(secret::owners_to_set(&v, &s), None, "nothing to change");
    // whenDeleted: Delete: the Secret goes with the volumes.
    v.storage.retention.when_deleted = RetentionPolicy::Delete;
    let s = secret::generated(&v, secret::random_password);
    assert_eq!(s.metadata.owner_references, Some(vec![v.owner.clone()]));
    assert_eq!(secret::owners_to_set(&v, &owned), None);
}

#[test]
fn generated_secret_has_every_key_with_distinct_strong_passwords() {
    let v = view(DbKind::MySql(MySqlFlavor::MariaDB), "db", 3);
    let s = secret::generated(&v, secret::random_password);
    assert_eq!(s.metadata.name.as_deref(), Some("db-auth"));
    let data = s.data.clone().expect("data");
    assert_eq!(
        data.keys().map(String::as_str).collect::<Vec<_>>(),
        ["operator-password", "replication-password", "root-password"]
    );
    let values: std::collections::BTreeSet<_> = data.values().map(|b| b.0.clone()).collect();
    assert_eq!(values.len(), 3, "passwords differ");
    assert!(data.values().all(|b| b.0.len() == secret::PASSWORD_LEN && b.0.iter().all(u8::is_ascii_alphanumeric)));
    let creds = secret::check(&v, &s).expect("generated secret is usable");
    assert_eq!(creds.len(), 3);

    let mut missing = s.clone();
    missing
        .data
        .as_mut()
        .expect("data")
        .remove("replication-password");
    assert!(
        secret::check(&v, &missing)
            .unwrap_err()
            .contains("no key replication-password")
    );
    let mut quoted = s;
    quoted.data.as_mut().expect("data").insert(
        "root-password".into(),
        k8s_openapi::ByteString(b"a\"b".to_vec()),
    );
    assert!(
        secret::check(&v, &quoted)
            .unwrap_err()
            .contains("root-password contains")
    );
}

#[test]
fn services_select_members_by_role_label() {
    let v = view(DbKind::Redis, "cache", 3);
    let headless = services::headless(&v);
    let spec = headless.spec.expect("spec");
    assert_eq!(headless.metadata.name.as_deref(), Some("cache-headless"));
    assert_eq!(spec.cluster_ip.as_deref(), Some("None"));
    assert_eq!(spec.publish_not_ready_addresses, Some(true));
    assert!(!spec.selector.expect("selector").contains_key(labels::ROLE));

    for (svc, role) in [
        (services::primary(&v), "primary"),
        (services::read(&v), "replica"),
    ] {
        let selector = svc.spec.expect("spec").selector.expect("selector");
        assert_eq!(selector.get(labels::ROLE).map(String::as_str), Some(role));
        assert_eq!(
            selector.get(labels::INSTANCE).map(String::as_str),
            Some("cache")
        );
        assert_eq!(
            svc.metadata.owner_references.expect("owner")[0].uid,
            "uid-1"
        );
    }
}

#[test]
fn statefulset_keeps_volumes_rolls_on_delete_and_runs_non_root() {
    let mut v = view(DbKind::Redis, "cache", 3);
    v.storage.size = "5Gi".into();
    v.storage.storage_class_name = Some("fast".into());
    let claim = statefulset::data_claim(&v);
    let sts = statefulset::statefulset(&v, "hash-1", vec![claim], Default::default());
    let spec = sts.spec.expect("spec");
    assert_eq!(spec.replicas, Some(3));
    assert_eq!(spec.service_name.as_deref(), Some("cache-headless"));
    assert_eq!(
        spec.update_strategy.and_then(|u| u.type_).as_deref(),
        Some("OnDelete")
    );
    let retention = spec
        .persistent_volume_claim_retention_policy
        .expect("retention");
    assert_eq!(retention.when_deleted.as_deref(), Some("Retain"));
    assert_eq!(retention.when_scaled.as_deref(), Some("Retain"));
    let claims = spec.volume_claim_templates.expect("claims");
    let claim_spec = claims[0].spec.clone().expect("claim spec");
    assert_eq!(claim_spec.storage_class_name.as_deref(), Some("fast"));
    assert_eq!(
        claim_spec
            .resources
            .and_then(|r| r.requests)
            .expect("requests")["storage"]
            .0,
        "5Gi"
    );

    let template = spec.template;
    let annotations = template
        .metadata
        .clone()
        .and_then(|m| m.annotations)
        .expect("annotations");
    assert_eq!(annotations[labels::CONFIG_HASH], "hash-1");
    let pod = template.spec.expect("pod spec");
    assert_eq!(
        pod.security_context.and_then(|s| s.run_as_non_root),
        Some(true)
    );
    assert_eq!(pod.automount_service_account_token, Some(false));
    let anti = pod
        .affinity
        .and_then(|a| a.pod_anti_affinity)
        .expect("anti-affinity");
    assert_eq!(
        anti.preferred_during_scheduling_ignored_during_execution
            .expect("preferred")[0]
            .pod_affinity_term
            .topology_key,
        "kubernetes.io/hostname"
    );
    let container = &pod.containers[0];
    assert_eq!(container.image.as_deref(), Some("redis:7.2"));
    assert!(container.readiness_probe.is_some() && container.liveness_probe.is_some());
    let sc = container
        .security_context
        .clone()
        .expect("container security");
    assert_eq!(sc.allow_privilege_escalation, Some(false));
    assert_eq!(sc.run_as_non_root, Some(true));
    let script = container.command.clone().expect("command").join(" ");
    assert!(
        script.contains("${HOSTNAME##*-}"),
        "the container picks its file by hostname"
    );
    // The password reaches redis through the Secret, never the command line text.
    let env = container.env.clone().expect("env");
    let pw = env
        .iter()
        .find(|e| e.name == "REDIS_PASSWORD")
        .expect("password env");
    let from = pw
        .value_from
        .clone()
        .and_then(|f| f.secret_key_ref)
        .expect("from secret");
    assert_eq!(
        (from.name.as_str(), from.key.as_str()),
        ("cache-auth", "password")
    );
}

#[test]
fn user_pod_overrides_are_merged_and_ours_win() {
    let mut v = view(DbKind::MySql(MySqlFlavor::MariaDB), "db", 1);
    v.storage.retention.when_deleted = RetentionPolicy::Delete;
    v.template.image = Some("mariadb:11.4".into());
    v.template.pod = serde_yaml::from_str(
        "nodeSelector: {disk: ssd}\ntolerations: [{key: db, operator: Exists}]\npriorityClassName: critical\nlabels: {team: shop, app.kubernetes.io/instance: evil}\nannotations: {note: hi}",
    )
    .expect("overrides");
    let sts = statefulset::statefulset(
        &v,
        "h",
        vec![statefulset::data_claim(&v)],
        Default::default(),
    );
    let spec = sts.spec.expect("spec");
    assert_eq!(
        spec.persistent_volume_claim_retention_policy
            .and_then(|r| r.when_deleted)
            .as_deref(),
        Some("Delete")
    );
    let meta = spec.template.metadata.expect("meta");
    let pod_labels = meta.labels.expect("labels");
    assert_eq!(pod_labels["team"], "shop");
    assert_eq!(
        pod_labels[labels::INSTANCE],
        "db",
        "the selector label cannot be overridden"
    );
    assert_eq!(meta.annotations.expect("annotations")["note"], "hi");
    let pod = spec.template.spec.expect("pod");
    assert_eq!(
        pod.node_selector,
        Some(BTreeMap::from([("disk".to_string(), "ssd".to_string())]))
    );
    assert_eq!(
        pod.tolerations.expect("tolerations")[0].key.as_deref(),
        Some("db")
    );
    assert_eq!(pod.priority_class_name.as_deref(), Some("critical"));
    let container = &pod.containers[0];
    assert_eq!(container.image.as_deref(), Some("mariadb:11.4"));
    let script = container.command.clone().expect("command").join(" ");
    assert!(
        script.contains("mariadbd")
            && script.contains("--defaults-extra-file=\"/etc/ordinal/config/${ordinal}.cnf\"")
    );
}

#[test]
fn pdb_allows_one_member_down() {
    let v = view(DbKind::Redis, "cache", 3);
    let spec = pdb::pdb(&v).spec.expect("spec");
    assert_eq!(
        spec.max_unavailable,
        Some(k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::Int(1))
    );
    assert_eq!(
        spec.selector.and_then(|s| s.match_labels).expect("labels"),
        labels::selector(&v)
    );
}
