//! Backups as resources on a real API server (the devcluster): Backup Jobs to
//! a PVC target, a Backup that survives an operator restart recorded once, a
//! failing target never marked Succeeded, restores of Redis and MariaDB into
//! new clusters with the data compared, a tampered artifact refused at
//! restore, and a every-minute BackupSchedule whose retention deletes old
//! Backups and their artifacts. An S3-compatible server (s3s-fs, installed by
//! scripts/setup.sh) runs as a pod behind a Service, so a MariaDB Backup and
//! its restore take the Job's whole path (Secret → env → object_store →
//! Service name → ClusterIP → pod), and a wrong secret key fails as refused
//! credentials.

#[path = "support/devcluster.rs"]
mod devcluster;

use std::path::{Path, PathBuf};
use std::time::Duration;

use devcluster::{DevCluster, eventually, members, secret_value};
use futures::TryStreamExt;
use kube::api::{Api, ListParams, PostParams};
use mysql_async::prelude::*;
use object_store::ObjectStoreExt;
use ordinal::api::backup::{Backup, BackupPhase, BackupTarget};
use ordinal::api::{ClusterPhase, MySQLCluster, RedisReplication};
use ordinal::backup::artifact;
use ordinal::backup::target::{self, TargetCredentials};

const NS: &str = "e2e-backup";
/// The in-cluster S3 server: Service name, port, bucket and the keys it takes.
const S3_SERVICE: &str = "objects";
const S3_PORT: u16 = 9000;
const S3_BUCKET: &str = "backups";
const S3_ACCESS: &str = "e2e-backup-access";
const S3_SECRET: &str = "e2e-backup-secret-key";

fn obj<T: serde::de::DeserializeOwned>(v: serde_json::Value) -> T {
    serde_json::from_value(v).expect("object")
}

fn pvc_target(path: &str) -> serde_json::Value {
    serde_json::json!({"pvc": {"claimName": "backups", "path": path}})
}

async fn backup_done(api: &Api<Backup>, name: &str) -> Backup {
    eventually(
        &format!("Backup {name} finished"),
        Duration::from_secs(180),
        || async {
            let b = api.get(name).await.ok()?;
            matches!(
                b.status.as_ref()?.phase,
                BackupPhase::Succeeded | BackupPhase::Failed
            )
            .then_some(b)
        },
    )
    .await
}

async fn ip_of(client: &kube::Client, cluster: &str, role: &str) -> String {
    members(client, NS, cluster)
        .await
        .into_iter()
        .find(|(_, r, _)| r.as_deref() == Some(role))
        .and_then(|(_, _, ip)| ip)
        .expect("member with role")
}

async fn redis_conn(ip: &str, password: &str) -> redis::aio::MultiplexedConnection {
    let client = redis::Client::open(format!("redis://:{password}@{ip}:6379/")).expect("client");
    client
        .get_multiplexed_async_connection()
        .await
        .expect("connect")
}

async fn mysql_conn(ip: &str, password: &str) -> mysql_async::Conn {
    let opts = mysql_async::OptsBuilder::default()
        .ip_or_hostname(ip.to_string())
        .tcp_port(3306)
        .user(Some("root"))
        .pass(Some(password.to_string()));
    mysql_async::Conn::new(opts).await.expect("connect mysql")
}

async fn mysql_fingerprint(ip: &str, password: &str) -> (i64, i64) {
    let mut c = mysql_conn(ip, password).await;
    let n: Option<i64> = c
        .query_first("SELECT COUNT(*) FROM shop.orders")
        .await
        .expect("count");
    let row: Option<(String, i64)> = c
        .query_first("CHECKSUM TABLE shop.orders")
        .await
        .expect("checksum");
    (n.unwrap_or(-1), row.map(|r| r.1).unwrap_or(-1))
}

/// `spec.target` of a Backup to the in-cluster S3 server at `endpoint`,
/// with credentials from Secret `secret`.
fn s3_target(endpoint: &str, secret: &str) -> serde_json::Value {
    serde_json::json!({"s3": {"bucket": S3_BUCKET, "prefix": "db-backups", "endpoint": endpoint,
        "forcePathStyle": true,
        "accessKeyId": {"name": secret, "key": "access-key"},
        "secretAccessKey": {"name": secret, "key": "secret-key"}}})
}

/// s3s-fs as a pod (the host program, through scripts/s3s-fs.sh, which
/// scripts/setup.sh has installed: its install runs here first, a no-op when
/// present) listening on its pod IP, with the bucket as a directory in the
/// pod's own /tmp, a Service in front, and two credential Secrets: the keys
/// it takes and a wrong secret key.
fn start_s3_pod(cluster: &DevCluster) {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/s3s-fs.sh");
    let cache = std::env::var("ORDINAL_CACHE").unwrap_or_else(|_| {
        format!(
            "{}/.cache/ordinal",
            std::env::var("HOME").expect("HOME or ORDINAL_CACHE")
        )
    });
    let installed = std::process::Command::new(script)
        .arg("--version")
        .env("ORDINAL_CACHE", &cache)
        .output()
        .expect("scripts/s3s-fs.sh");
    assert!(installed.status.success(), "s3s-fs: {installed:?}");
    let pod = serde_json::json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "objects-0", "labels": {"app": S3_SERVICE}},
        "spec": {"containers": [{"name": "s3s-fs", "image": "s3s-fs",
            "command": ["sh", "-c", "mkdir -p /tmp/s3/$BUCKET && exec \"$0\" \"$@\"", script,
                "--host", "$(POD_IP)", "--port", S3_PORT.to_string(),
                "--access-key", S3_ACCESS, "--secret-key", S3_SECRET, "/tmp/s3"],
            "env": [{"name": "ORDINAL_CACHE", "value": cache}, {"name": "BUCKET", "value": S3_BUCKET},
                {"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}}],
            "ports": [{"containerPort": S3_PORT}],
            "readinessProbe": {"tcpSocket": {"port": S3_PORT}, "periodSeconds": 1}}]}});
    let service = serde_json::json!({"apiVersion": "v1", "kind": "Service",
        "metadata": {"name": S3_SERVICE},
        "spec": {"selector": {"app": S3_SERVICE}, "ports": [{"port": S3_PORT, "targetPort": S3_PORT}]}});
    for (name, secret) in [
        ("objects-creds", S3_SECRET),
        ("objects-wrong", "not-the-secret-key"),
    ] {
        cluster
            .kubectl(&[
                "-n",
                NS,
                "create",
                "secret",
                "generic",
                name,
                &format!("--from-literal=access-key={S3_ACCESS}"),
                &format!("--from-literal=secret-key={secret}"),
            ])
            .expect("s3 secret");
    }
    for o in [pod, service] {
        cluster
            .kubectl_stdin(&["-n", NS, "apply", "-f", "-"], &o.to_string())
            .expect("s3 server");
    }
}

/// The in-cluster S3 server as the test reaches it: through the Service's
/// ClusterIP (netns network), or the pod IP the Service name resolves to
/// (loopback network, which has no ClusterIP routing).
fn s3_from_test(cluster: &DevCluster) -> target::Target {
    let field = |args: &[&str]| cluster.kubectl(args).expect("kubectl").trim().to_string();
    let addr = if cluster.netns() {
        field(&[
            "-n",
            NS,
            "get",
            "service",
            S3_SERVICE,
            "-o",
            "jsonpath={.spec.clusterIP}",
        ])
    } else {
        field(&[
            "-n",
            NS,
            "get",
            "pod",
            "objects-0",
            "-o",
            "jsonpath={.status.podIP}",
        ])
    };
    let spec: BackupTarget = obj(s3_target(&format!("http://{addr}:{S3_PORT}"), "unused"));
    let creds = TargetCredentials {
        access_key_id: Some(S3_ACCESS.into()),
        secret_access_key: Some(S3_SECRET.into()),
        ..Default::default()
    };
    target::open(&spec, &creds, Path::new("/nonexistent")).expect("open the S3 target")
}

async fn mysql_rows(ip: &str, password: &str) -> Vec<(i32, String, String, String)> {
    let mut c = mysql_conn(ip, password).await;
    c.query("SELECT id, customer, CAST(total AS CHAR), note FROM shop.orders ORDER BY id")
        .await
        .expect("rows")
}

fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                out.extend(files_under(&p));
            } else {
                out.push(p);
            }
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn backups_end_to_end() {
    let mut cluster = DevCluster::up(103);
    let client = cluster.client().await;
    cluster
        .kubectl(&["create", "namespace", NS])
        .expect("namespace");
    let step = |s: &str| eprintln!("[e2e-backup] {s}");
    let rr: Api<RedisReplication> = Api::namespaced(client.clone(), NS);
    let my: Api<MySQLCluster> = Api::namespaced(client.clone(), NS);
    let backups: Api<Backup> = Api::namespaced(client.clone(), NS);
    let pp = PostParams::default();
    let pv_root = cluster.state_path().join("pv").join(NS).join("backups");

    step("a PVC target and two source clusters");
    cluster
        .kubectl_stdin(
            &["-n", NS, "apply", "-f", "-"],
            "apiVersion: v1\nkind: PersistentVolumeClaim\nmetadata: {name: backups}\nspec:\n  accessModes: [ReadWriteOnce]\n  resources: {requests: {storage: 1Gi}}\n",
        )
        .expect("pvc");
    start_s3_pod(&cluster);
    rr.create(
        &pp,
        &obj(
            serde_json::json!({"apiVersion": "ordinal.dev/v1alpha1", "kind": "RedisReplication",
        "metadata": {"name": "cache"}, "spec": {"replicas": 2}}),
        ),
    )
    .await
    .expect("redis");
    // With a binlog archive on the PVC next to its manual backups (PITR below).
    my.create(&pp, &obj(serde_json::json!({"apiVersion": "ordinal.dev/v1alpha1", "kind": "MySQLCluster",
        "metadata": {"name": "db"}, "spec": {"replicas": 2, "config": {"innodb_buffer_pool_size": "64M"},
        "backup": {"binlogArchive": {"target": pvc_target("manual"), "maxDelaySeconds": 1}}}}))).await.expect("mysql");
    devcluster::wait_ready(&rr, "cache", "cache Ready", Duration::from_secs(180)).await;
    devcluster::wait_ready(&my, "db", "db Ready", Duration::from_secs(300)).await;
    let redis_pw = secret_value(&client, NS, "cache-auth", "password").await;
    let mysql_pw = secret_value(&client, NS, "db-auth", "root-password").await;
    let mut r = redis_conn(&ip_of(&client, "cache", "primary").await, &redis_pw).await;
    for batch in 0..50 {
        let mut mset = redis::cmd("MSET");
        for i in batch * 1000..(batch + 1) * 1000 {
            mset.arg(format!("k:{i}"))
                .arg(format!("value-{i}-{}", "x".repeat(80)));
        }
        let _: () = mset.query_async(&mut r).await.expect("populate");
    }
    let _: () = redis::cmd("SET")
        .arg("marker")
        .arg("before-backup")
        .query_async(&mut r)
        .await
        .expect("set");
    let mut m = mysql_conn(&ip_of(&client, "db", "primary").await, &mysql_pw).await;
    m.query_drop("CREATE DATABASE shop").await.expect("db");
    m.query_drop("CREATE TABLE shop.orders (id INT PRIMARY KEY, customer VARCHAR(32), total DECIMAL(10,2), note TEXT)").await.expect("table");
    for chunk in 0..20 {
        let values: Vec<String> = (0..500).map(|i| {
            let id = chunk * 500 + i;
            format!("({id}, 'customer-{}', {}.{:02}, 'note with ''quotes'' and \\\\backslash {id}')", id % 97, id % 1000, id % 100)
        }).collect();
        m.query_drop(format!(
            "INSERT INTO shop.orders VALUES {}",
            values.join(",")
        ))
        .await
        .expect("insert");
    }
    let source_fp = mysql_fingerprint(&ip_of(&client, "db", "primary").await, &mysql_pw).await;
    assert_eq!(source_fp.0, 10_000);

    step("an every-minute BackupSchedule keeping the last 2 starts in the background");
    cluster.kubectl_stdin(&["-n", NS, "apply", "-f", "-"], &serde_json::json!({
        "apiVersion": "ordinal.dev/v1alpha1", "kind": "BackupSchedule", "metadata": {"name": "every-minute"},
        "spec": {"schedule": "* * * * *", "cluster": {"kind": "RedisReplication", "name": "cache"},
                 "target": pvc_target("scheduled"), "retention": {"keepLast": 2}}
    }).to_string()).expect("schedule");

    step("a Redis backup survives an operator restart and is recorded once");
    backups.create(&pp, &obj(serde_json::json!({"apiVersion": "ordinal.dev/v1alpha1", "kind": "Backup",
        "metadata": {"name": "cache-1"}, "spec": {"cluster": {"kind": "RedisReplication", "name": "cache"}, "target": pvc_target("manual")}}))).await.expect("backup");
    eventually("backup running", Duration::from_secs(60), || async {
        let b = backups.get("cache-1").await.ok()?;
        (b.status?.phase != BackupPhase::Pending).then_some(())
    })
    .await;
    cluster.kill_operator();
    tokio::time::sleep(Duration::from_secs(3)).await;
    cluster.start_operator();
    let b = backup_done(&backups, "cache-1").await;
    let status = b.status.clone().expect("status");
    assert_eq!(
        status.phase,
        BackupPhase::Succeeded,
        "{status:?}\n{}",
        cluster.diagnostics(NS)
    );
    assert!(
        status.size_bytes.is_some_and(|s| s > 0)
            && status.sha256.as_ref().is_some_and(|s| s.len() == 64)
    );
    assert!(
        status.position.is_some() && status.source.as_deref() == Some("cache-1"),
        "read from the replica: {status:?}"
    );
    let jobs = cluster
        .kubectl(&[
            "-n",
            NS,
            "get",
            "jobs",
            "-l",
            "ordinal.dev/backup=cache-1",
            "-o",
            "name",
        ])
        .expect("jobs");
    assert_eq!(jobs.lines().count(), 1, "one Job: {jobs}");
    let events = cluster
        .kubectl(&[
            "-n",
            NS,
            "get",
            "events",
            "--field-selector",
            "involvedObject.name=cache-1,reason=BackupSucceeded",
            "-o",
            "name",
        ])
        .expect("events");
    assert_eq!(events.lines().count(), 1, "recorded once: {events}");
    let artifact = pv_root
        .join("manual")
        .join(NS)
        .join("cache")
        .join("cache-1")
        .join("dump.rdb.zst");
    assert_eq!(
        std::fs::metadata(&artifact).map(|m| m.len() as i64).ok(),
        status.size_bytes
    );

    step("a MariaDB backup while writes continue");
    backups.create(&pp, &obj(serde_json::json!({"apiVersion": "ordinal.dev/v1alpha1", "kind": "Backup",
        "metadata": {"name": "db-1"}, "spec": {"cluster": {"kind": "MySQLCluster", "name": "db"}, "target": pvc_target("manual")}}))).await.expect("backup");
    let b = backup_done(&backups, "db-1").await;
    let db_status = b.status.expect("status");
    assert_eq!(db_status.phase, BackupPhase::Succeeded, "{db_status:?}");
    let mut m = mysql_conn(&ip_of(&client, "db", "primary").await, &mysql_pw).await;
    m.query_drop("INSERT INTO shop.orders VALUES (99999, 'after', 1.00, 'after the backup')")
        .await
        .expect("later write");

    step("a MariaDB backup to the S3 server in the cluster; a wrong secret key is refused");
    let s3_endpoint = format!("http://{S3_SERVICE}.{NS}.svc:{S3_PORT}");
    cluster
        .kubectl(&[
            "-n",
            NS,
            "wait",
            "--for=condition=Ready",
            "pod/objects-0",
            "--timeout=120s",
        ])
        .expect("the S3 server's pod is Ready");
    eventually(
        "the replica has every row (the backup reads a replica)",
        Duration::from_secs(60),
        || async {
            let fp = mysql_fingerprint(&ip_of(&client, "db", "replica").await, &mysql_pw).await;
            (fp.0 == 10_001).then_some(())
        },
    )
    .await;
    for (name, secret) in [
        ("db-s3", "objects-creds"),
        ("db-s3-denied", "objects-wrong"),
    ] {
        backups
            .create(
                &pp,
                &obj(
                    serde_json::json!({"apiVersion": "ordinal.dev/v1alpha1", "kind": "Backup",
            "metadata": {"name": name}, "spec": {"cluster": {"kind": "MySQLCluster", "name": "db"},
            "target": s3_target(&s3_endpoint, secret)}}),
                ),
            )
            .await
            .expect("backup");
    }
    let s3_status = backup_done(&backups, "db-s3").await.status.expect("status");
    assert_eq!(
        s3_status.phase,
        BackupPhase::Succeeded,
        "{s3_status:?}\n{}",
        cluster.diagnostics(NS)
    );
    let denied = backup_done(&backups, "db-s3-denied")
        .await
        .status
        .expect("status");
    assert_eq!(denied.phase, BackupPhase::Failed, "{denied:?}");
    let msg = denied.message.clone().unwrap_or_default();
    step(&format!("refused: {msg}"));
    assert!(
        msg.contains("refused the credentials") && msg.contains(&s3_endpoint),
        "refused by the server the Service name reached: {msg}"
    );
    assert!(denied.sha256.is_none() && denied.size_bytes.is_none());
    let store = s3_from_test(&cluster);
    let mut objects: Vec<(String, u64)> = store
        .store
        .list(Some(&store.prefix))
        .map_ok(|o| (o.location.to_string(), o.size))
        .try_collect()
        .await
        .expect("list the bucket through the Service");
    objects.sort();
    let dir = format!("db-backups/{NS}/db/db-s3");
    let names: Vec<&str> = objects.iter().map(|o| o.0.as_str()).collect();
    assert_eq!(
        names,
        [
            format!("{dir}/{}", ordinal::backup::contract::MYSQL_ARTIFACT),
            format!("{dir}/{}", ordinal::backup::contract::MANIFEST),
        ],
        "the artifact and its manifest, nothing of the refused Backup"
    );
    assert_eq!(Some(objects[0].1 as i64), s3_status.size_bytes);
    let manifest = artifact::read_manifest(
        &store,
        &target::backup_dir(&store.prefix, NS, "db", "db-s3"),
    )
    .await
    .expect("manifest through the Service");
    assert_eq!(Some(manifest.sha256.clone()), s3_status.sha256);
    assert_eq!(manifest.rows, Some(10_001), "{manifest:?}");
    let bytes = store
        .store
        .get(&object_store::path::Path::from(manifest.artifact.as_str()))
        .await
        .expect("artifact")
        .bytes()
        .await
        .expect("artifact bytes");
    assert_eq!(
        ordinal::resources::config::sha256_hex(&bytes),
        manifest.sha256
    );

    step("a Backup whose target is unreachable fails with a clear message, never Succeeded");
    cluster
        .kubectl(&[
            "-n",
            NS,
            "create",
            "secret",
            "generic",
            "s3",
            "--from-literal=id=a",
            "--from-literal=secret=b",
        ])
        .expect("secret");
    backups.create(&pp, &obj(serde_json::json!({"apiVersion": "ordinal.dev/v1alpha1", "kind": "Backup",
        "metadata": {"name": "nowhere"}, "spec": {"cluster": {"kind": "RedisReplication", "name": "cache"},
        "target": {"s3": {"bucket": "b", "endpoint": "http://127.0.0.1:9", "forcePathStyle": true,
            "accessKeyId": {"name": "s3", "key": "id"}, "secretAccessKey": {"name": "s3", "key": "secret"}}}}}))).await.expect("backup");
    let b = backup_done(&backups, "nowhere").await;
    let st = b.status.expect("status");
    assert_eq!(st.phase, BackupPhase::Failed);
    let msg = st.message.unwrap_or_default();
    assert!(
        msg.contains("failed")
            && (msg.contains("127.0.0.1:9")
                || msg.contains("error sending request")
                || msg.contains("upload")),
        "{msg}"
    );
    assert!(st.sha256.is_none() && st.size_bytes.is_none());

    step("restore both into new clusters and compare the data");
    rr.create(&pp, &obj(serde_json::json!({"apiVersion": "ordinal.dev/v1alpha1", "kind": "RedisReplication",
        "metadata": {"name": "cache-copy"}, "spec": {"replicas": 2, "restore": {"backup": "cache-1"}}}))).await.expect("redis copy");
    my.create(&pp, &obj(serde_json::json!({"apiVersion": "ordinal.dev/v1alpha1", "kind": "MySQLCluster",
        "metadata": {"name": "db-copy"}, "spec": {"replicas": 2, "restore": {"backup": "db-1"}, "config": {"innodb_buffer_pool_size": "64M"}}}))).await.expect("mysql copy");
    my.create(&pp, &obj(serde_json::json!({"apiVersion": "ordinal.dev/v1alpha1", "kind": "MySQLCluster",
        "metadata": {"name": "db-s3-copy"}, "spec": {"replicas": 1, "restore": {"backup": "db-s3"}, "config": {"innodb_buffer_pool_size": "64M"}}}))).await.expect("mysql copy from s3");
    devcluster::wait_ready(
        &rr,
        "cache-copy",
        "cache-copy Ready",
        Duration::from_secs(180),
    )
    .await;
    devcluster::wait_ready(&my, "db-copy", "db-copy Ready", Duration::from_secs(300)).await;
    for (cond, name) in [
        (rr.get("cache-copy").await.expect("rr").status, "cache-copy"),
        (my.get("db-copy").await.expect("my").status, "db-copy"),
    ] {
        let restored = cond
            .expect("status")
            .conditions
            .into_iter()
            .find(|c| c.type_ == "Restored")
            .expect("Restored condition");
        assert_eq!(restored.status, "True", "{name}: {restored:?}");
    }
    let copy_pw = secret_value(&client, NS, "cache-copy-auth", "password").await;
    let mut src = redis_conn(&ip_of(&client, "cache", "primary").await, &redis_pw).await;
    let replica_ip = ip_of(&client, "cache-copy", "replica").await;
    let mut copy = redis_conn(&replica_ip, &copy_pw).await;
    let n: i64 = redis::cmd("DBSIZE")
        .query_async(&mut copy)
        .await
        .expect("dbsize");
    assert_eq!(
        n, 50_001,
        "every key restored, and replicated to the copy's replica"
    );
    for key in ["k:0", "k:777", "k:49999", "marker"] {
        let a: Option<String> = redis::cmd("GET")
            .arg(key)
            .query_async(&mut src)
            .await
            .expect("get");
        let b: Option<String> = redis::cmd("GET")
            .arg(key)
            .query_async(&mut copy)
            .await
            .expect("get");
        assert_eq!(a, b, "{key}");
    }
    let copy_mysql_pw = secret_value(&client, NS, "db-copy-auth", "root-password").await;
    let fp = eventually(
        "rows on the copy's replica",
        Duration::from_secs(60),
        || async {
            let fp = mysql_fingerprint(&ip_of(&client, "db-copy", "replica").await, &copy_mysql_pw)
                .await;
            (fp.0 == source_fp.0).then_some(fp)
        },
    )
    .await;
    assert_eq!(
        fp, source_fp,
        "same rows and CHECKSUM TABLE as at the backup's GTID position"
    );
    devcluster::wait_ready(
        &my,
        "db-s3-copy",
        "db-s3-copy Ready",
        Duration::from_secs(300),
    )
    .await;
    let source_rows = mysql_rows(&ip_of(&client, "db", "primary").await, &mysql_pw).await;
    assert_eq!(source_rows.len(), 10_001);
    assert_eq!(source_rows.last().map(|r| r.0), Some(99_999));
    let s3_copy_pw = secret_value(&client, NS, "db-s3-copy-auth", "root-password").await;
    let copy_rows = mysql_rows(&ip_of(&client, "db-s3-copy", "primary").await, &s3_copy_pw).await;
    assert_eq!(
        copy_rows.len(),
        source_rows.len(),
        "every row restored from S3"
    );
    assert!(
        copy_rows == source_rows,
        "the copy restored through the in-cluster S3 server has the source's rows, row by row"
    );

    step("verified backups: each restored into a throwaway instance and checked");
    for (name, kind, cluster_name) in [
        ("cache-v", "RedisReplication", "cache"),
        ("db-v", "MySQLCluster", "db"),
    ] {
        backups.create(&pp, &obj(serde_json::json!({"apiVersion": "ordinal.dev/v1alpha1", "kind": "Backup",
            "metadata": {"name": name}, "spec": {"cluster": {"kind": kind, "name": cluster_name}, "target": pvc_target("verified"), "verify": true}}))).await.expect("backup");
    }
    for name in ["cache-v", "db-v"] {
        let verified = eventually(
            &format!("{name} verified"),
            Duration::from_secs(240),
            || async {
                let b = backups.get(name).await.ok()?;
                b.status?
                    .conditions
                    .into_iter()
                    .find(|c| c.type_ == "Verified" && c.status != "Unknown")
            },
        )
        .await;
        assert_eq!(
            verified.status,
            "True",
            "{name}: {verified:?}\n{}",
            cluster.diagnostics(NS)
        );
        let expected = if name == "cache-v" {
            "50001 keys loaded"
        } else {
            "10001 rows loaded"
        };
        assert!(
            verified.message.contains(expected),
            "{name}: {}",
            verified.message
        );
    }

    step("a tampered artifact is refused at restore");
    backups.create(&pp, &obj(serde_json::json!({"apiVersion": "ordinal.dev/v1alpha1", "kind": "Backup",
        "metadata": {"name": "cache-2"}, "spec": {"cluster": {"kind": "RedisReplication", "name": "cache"}, "target": pvc_target("manual")}}))).await.expect("backup");
    assert_eq!(
        backup_done(&backups, "cache-2")
            .await
            .status
            .expect("status")
            .phase,
        BackupPhase::Succeeded
    );
    let file = pv_root
        .join("manual")
        .join(NS)
        .join("cache")
        .join("cache-2")
        .join("dump.rdb.zst");
    let mut bytes = std::fs::read(&file).expect("artifact");
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x5a;
    std::fs::write(&file, &bytes).expect("tamper");
    rr.create(&pp, &obj(serde_json::json!({"apiVersion": "ordinal.dev/v1alpha1", "kind": "RedisReplication",
        "metadata": {"name": "cache-bad"}, "spec": {"replicas": 1, "restore": {"backup": "cache-2"}}}))).await.expect("bad copy");
    let message = eventually("the restore step refuses the artifact", Duration::from_secs(120), || async {
        let out = cluster.kubectl(&["-n", NS, "get", "pod", "cache-bad-0", "-o", "jsonpath={.status.initContainerStatuses[0].lastState.terminated.message}{.status.initContainerStatuses[0].state.terminated.message}"]).ok()?;
        (!out.trim().is_empty()).then_some(out)
    }).await;
    assert!(
        message.contains("sha256") || message.contains("checksum"),
        "{message}"
    );
    let bad = rr
        .get("cache-bad")
        .await
        .expect("rr")
        .status
        .unwrap_or_default();
    assert_ne!(
        bad.phase,
        ClusterPhase::Running,
        "a refused restore never serves"
    );
    assert!(bad.replication.primary.is_none());

    point_in_time_recovery(&cluster, &client, &pv_root, &mysql_pw).await;

    step(
        "the schedule created Backups every minute and retention removed the oldest with their artifacts",
    );
    let sched_root = pv_root.join("scheduled").join(NS).join("cache");
    eventually(
        "three scheduled backups, the oldest deleted",
        Duration::from_secs(300),
        || async {
            let list = backups
                .list(&ListParams::default().labels("ordinal.dev/schedule=every-minute"))
                .await
                .ok()?;
            let succeeded: Vec<String> = list
                .items
                .iter()
                .filter(|b| {
                    b.status
                        .as_ref()
                        .is_some_and(|s| s.phase == BackupPhase::Succeeded)
                        && b.metadata.deletion_timestamp.is_none()
                })
                .map(|b| b.metadata.name.clone().unwrap_or_default())
                .collect();
            let dirs: Vec<String> = std::fs::read_dir(&sched_root)
                .ok()?
                .flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect();
            let schedule = cluster
                .kubectl(&[
                    "-n",
                    NS,
                    "get",
                    "obs",
                    "every-minute",
                    "-o",
                    "jsonpath={.status.lastScheduleTime}",
                ])
                .ok()?;
            // Retention ran at least once: more runs happened than are kept.
            let runs = cluster
                .kubectl(&[
                    "-n",
                    NS,
                    "get",
                    "events",
                    "--field-selector",
                    "involvedObject.name=every-minute,reason=RetentionDeleted",
                    "-o",
                    "name",
                ])
                .ok()?;
            let mut dirs_sorted = dirs.clone();
            dirs_sorted.sort();
            let mut ok_sorted = succeeded.clone();
            ok_sorted.sort();
            (!schedule.is_empty()
                && runs.lines().count() >= 1
                && succeeded.len() == 2
                && dirs_sorted == ok_sorted)
                .then_some(())
        },
    )
    .await;
    assert!(files_under(&sched_root).iter().all(|p| {
        p.file_name()
            .is_some_and(|n| n == "dump.rdb.zst" || n == "manifest.json")
    }));
}

async fn server_second(c: &mut mysql_async::Conn) -> i64 {
    c.query_first("SELECT UNIX_TIMESTAMP()")
        .await
        .expect("server time")
        .expect("a row")
}

/// Insert `ids` into shop.events one transaction each, all within one
/// second of the server's clock (starting at a fresh second); returns it.
async fn insert_in_one_second(
    c: &mut mysql_async::Conn,
    ids: std::ops::RangeInclusive<i64>,
) -> i64 {
    loop {
        let start = server_second(c).await;
        while server_second(c).await == start {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let second = server_second(c).await;
        for id in ids.clone() {
            c.query_drop(format!("INSERT INTO shop.events VALUES ({id}, 'e{id}')"))
                .await
                .expect("insert");
        }
        if server_second(c).await == second {
            return second;
        }
        // Crossed a second boundary: delete and try again in the next one.
        c.query_drop(format!(
            "DELETE FROM shop.events WHERE id BETWEEN {} AND {}",
            ids.start(),
            ids.end()
        ))
        .await
        .expect("undo");
    }
}

/// Point-in-time recovery: "db" archives its binlogs (a Deployment) to the
/// PVC; rows with known ids in known server seconds around a base Backup;
/// once the archive holds them, a new cluster restored to a time between
/// two writes holds exactly the rows committed up to it, and one restored
/// to a time past the archive is refused and never serves.
async fn point_in_time_recovery(
    cluster: &DevCluster,
    client: &kube::Client,
    pv_root: &Path,
    mysql_pw: &str,
) {
    let step = |s: &str| eprintln!("[e2e-backup] pitr: {s}");
    let my: Api<MySQLCluster> = Api::namespaced(client.clone(), NS);
    let backups: Api<Backup> = Api::namespaced(client.clone(), NS);
    let pp = PostParams::default();
    step("the archiver runs as a Deployment");
    let ready = cluster
        .kubectl(&[
            "-n",
            NS,
            "get",
            "deployment",
            "db-binlog",
            "-o",
            "jsonpath={.spec.replicas}",
        ])
        .expect("archiver Deployment");
    assert_eq!(ready.trim(), "1");

    step("ids 1..5, a base Backup, ids 6..10 in second T, ids 11..15 after T");
    let mut m = mysql_conn(&ip_of(client, "db", "primary").await, mysql_pw).await;
    m.query_drop("CREATE TABLE shop.events (id INT PRIMARY KEY, note VARCHAR(16))")
        .await
        .expect("table");
    for id in 1..=5 {
        m.query_drop(format!("INSERT INTO shop.events VALUES ({id}, 'e{id}')"))
            .await
            .expect("insert");
    }
    backups.create(&pp, &obj(serde_json::json!({"apiVersion": "ordinal.dev/v1alpha1", "kind": "Backup",
        "metadata": {"name": "db-pitr"}, "spec": {"cluster": {"kind": "MySQLCluster", "name": "db"}, "target": pvc_target("manual")}}))).await.expect("backup");
    let base = backup_done(&backups, "db-pitr")
        .await
        .status
        .expect("status");
    assert_eq!(base.phase, BackupPhase::Succeeded, "{base:?}");
    let t = insert_in_one_second(&mut m, 6..=10).await;
    let after = insert_in_one_second(&mut m, 11..=15).await;
    assert!(after > t);
    let end: String = m
        .query_first("SELECT @@gtid_binlog_pos")
        .await
        .expect("position")
        .expect("a row");

    step("the archive catches up");
    let spec: BackupTarget = obj(pvc_target("manual"));
    let store = target::open(&spec, &TargetCredentials::default(), pv_root).expect("pvc");
    let dir = ordinal::backup::binlog::archive_dir(&store.prefix, NS, "db");
    let last = eventually(
        "the archive holds id 15",
        Duration::from_secs(60),
        || async {
            let m = ordinal::backup::binlog::list_manifests(&store, &dir)
                .await
                .ok()?;
            let last = m.values().next_back()?.clone();
            (last.end_position == end).then_some(last)
        },
    )
    .await;
    let replica = members(client, NS, "db")
        .await
        .into_iter()
        .find(|(_, r, _)| r.as_deref() == Some("replica"))
        .map(|(name, _, _)| name)
        .expect("db's replica");
    assert!(
        last.source.starts_with(&format!("{replica}.")),
        "PreferReplica: archived from {replica}, not {}",
        last.source
    );

    step("the cluster's status shows the archive");
    let archive = eventually(
        "status.binlogArchive with a last GTID",
        Duration::from_secs(90),
        || async {
            let a = my.get("db").await.ok()?.status?.binlog_archive?;
            (a.last_gtid.is_some() && a.last_commit_time.is_some()).then_some(a)
        },
    )
    .await;
    assert!(archive.error.is_none(), "{archive:?}");
    assert!(
        archive
            .last_commit_time
            .as_deref()
            .is_some_and(|t| chrono::DateTime::parse_from_rfc3339(t).is_ok()),
        "{archive:?}"
    );

    step("restore to T (a time between ids 10 and 11) and to a time past the archive");
    let at = chrono::DateTime::from_timestamp(t, 500_000_000)
        .expect("time")
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    let late = (chrono::Utc::now() + chrono::Duration::hours(1))
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    for (name, point) in [("db-at-t", at.as_str()), ("db-too-late", late.as_str())] {
        my.create(&pp, &obj(serde_json::json!({"apiVersion": "ordinal.dev/v1alpha1", "kind": "MySQLCluster",
            "metadata": {"name": name}, "spec": {"replicas": 1, "config": {"innodb_buffer_pool_size": "64M"},
            "restore": {"backup": "db-pitr", "pointInTime": point}}}))).await.expect("pitr copy");
    }
    devcluster::wait_ready(&my, "db-at-t", "db-at-t Ready", Duration::from_secs(300)).await;
    let pw = secret_value(client, NS, "db-at-t-auth", "root-password").await;
    let mut c = mysql_conn(&ip_of(client, "db-at-t", "primary").await, &pw).await;
    let ids: Vec<i64> = c
        .query("SELECT id FROM shop.events ORDER BY id")
        .await
        .expect("ids");
    assert_eq!(
        ids,
        (1..=10).collect::<Vec<_>>(),
        "exactly the rows up to {at}"
    );
    let orders: Option<i64> = c
        .query_first("SELECT COUNT(*) FROM shop.orders")
        .await
        .expect("count");
    assert_eq!(orders, Some(10_001), "the base backup's other rows");

    let failed = eventually("db-too-late refused", Duration::from_secs(240), || async {
        let st = my.get("db-too-late").await.ok()?.status?;
        st.conditions
            .into_iter()
            .find(|c| c.type_ == "Restored" && c.reason == "RestoreFailed")
    })
    .await;
    step(&format!("refused: {}", failed.message));
    assert!(failed.message.contains("archive"), "{}", failed.message);
    assert!(
        failed.message.contains("nothing was restored"),
        "the point is checked before the base is loaded: {}",
        failed.message
    );
    // The Job's termination message (the error with its causes), not the
    // last line of its log (which reads "Error: …").
    assert!(
        !failed.message.contains("Error:"),
        "the restore reports its error as the termination message: {}",
        failed.message
    );
    // Ordinal 0 runs (the restore Job talked to it) but holds nothing of
    // the base backup.
    let ip = members(client, NS, "db-too-late")
        .await
        .into_iter()
        .find_map(|(name, _, ip)| (name == "db-too-late-0").then_some(ip).flatten())
        .expect("db-too-late-0 has an IP");
    let pw = secret_value(client, NS, "db-too-late-auth", "root-password").await;
    let mut c = mysql_conn(&ip, &pw).await;
    let shop: Option<i64> = c
        .query_first("SELECT COUNT(*) FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = 'shop'")
        .await
        .expect("schemata");
    assert_eq!(shop, Some(0), "a refused point loads nothing");
    let st = my
        .get("db-too-late")
        .await
        .expect("get")
        .status
        .unwrap_or_default();
    assert_ne!(
        st.phase,
        ClusterPhase::Running,
        "a refused restore never serves"
    );
    assert!(st.replication.primary.is_none());
}
