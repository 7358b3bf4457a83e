//! The `kubectl-ordinal` binary against a real API server (the devcluster)
//! and a real 3-member Redis: `status` shows the roles the servers report
//! through the protocol, a bad `switchover` is refused and a good one moves
//! the primary, `pause` stops the operator (a removed role label stays
//! removed) and `resume` lets it repair, `backup` follows a Backup to
//! Succeeded, the command `credentials` prints connects and writes through
//! the write Service, and `restore` bootstraps a new cluster holding the data.
//! Then a 2-member MariaDB (found without a type prefix): `status` roles
//! equal to each server's `read_only`, a switchover, and the `credentials`
//! command line (`mysql` as root) writing through the write Service.

#[path = "support/accounting.rs"]
mod accounting;
#[path = "support/devcluster.rs"]
mod devcluster;

use std::process::{Command, Output};
use std::time::{Duration, Instant};

use accounting::{mysql_conn, redis_conn as conn};
use devcluster::{DevCluster, eventually, members, secret_value};
use kube::api::{Api, PostParams};
use mysql_async::prelude::*;
use ordinal::api::backup::{Backup, BackupPhase};
use ordinal::api::{MySQLCluster, RedisReplication};

const NS: &str = "e2e-plugin";
const NAME: &str = "cache";

struct Plugin<'a> {
    cluster: &'a DevCluster,
}

impl Plugin<'_> {
    /// Run `kubectl-ordinal -n NS --kubeconfig KC ARGS`.
    fn run(&self, args: &[&str]) -> Output {
        let kubeconfig = self.cluster.kubeconfig.to_string_lossy().into_owned();
        Command::new(env!("CARGO_BIN_EXE_kubectl-ordinal"))
            .args(["-n", NS, "--kubeconfig", &kubeconfig])
            .args(args)
            .env_remove("KUBECONFIG")
            .output()
            .expect("run kubectl-ordinal")
    }

    /// Run and expect success; stdout.
    fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            out.status.success(),
            "kubectl ordinal {args:?} failed ({}):\n{stdout}\n{}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr),
            self.cluster.diagnostics(NS)
        );
        stdout
    }

    /// Run and expect failure; stderr.
    fn fails(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            !out.status.success(),
            "kubectl ordinal {args:?} succeeded:\n{}",
            String::from_utf8_lossy(&out.stdout)
        );
        String::from_utf8_lossy(&out.stderr).into_owned()
    }

    fn status_json(&self) -> serde_json::Value {
        serde_json::from_str(&self.ok(&["status", NAME, "-o", "json"])).expect("status json")
    }
}

/// `role:` of `INFO replication`, asked of the server itself.
async fn server_role(ip: &str, password: &str) -> Option<String> {
    let mut c = conn(ip, password).await?;
    let info: String = redis::cmd("INFO")
        .arg("replication")
        .query_async(&mut c)
        .await
        .ok()?;
    info.lines()
        .find_map(|l| l.strip_prefix("role:"))
        .map(|r| r.trim().to_string())
}

/// Every pod's role as its server reports it: pod → "master" / "slave".
async fn server_roles(client: &kube::Client, password: &str) -> Vec<(String, String)> {
    let mut out = vec![];
    for (pod, _, ip) in members(client, NS, NAME).await {
        let ip = ip.expect("pod ip");
        let role = server_role(&ip, password).await.unwrap_or_default();
        out.push((pod, role));
    }
    out
}

fn role_label(cluster: &DevCluster, pod: &str) -> Option<String> {
    let out = cluster
        .kubectl(&[
            "-n",
            NS,
            "get",
            "pod",
            pod,
            "-o",
            "jsonpath={.metadata.labels.ordinal\\.dev/role}",
        ])
        .expect("get pod");
    Some(out.trim().to_string()).filter(|s| !s.is_empty())
}

/// The member whose server says `role:master`, when exactly one does.
async fn the_master(client: &kube::Client, password: &str) -> Option<String> {
    let roles = server_roles(client, password).await;
    let masters: Vec<_> = roles.iter().filter(|(_, r)| r == "master").collect();
    (masters.len() == 1 && roles.len() == 3).then(|| masters[0].0.clone())
}

/// Run `script` where clients in the cluster network run, until its output
/// is `want`: a Service's endpoints follow a moved role label a moment later
/// (after a switchover or a resume), and until then the write Service may
/// not answer.
async fn exec_until(cluster: &DevCluster, script: &str, want: &str) {
    let mut last = Err(String::new());
    for _ in 0..60 {
        last = cluster.exec_in_netns(&["sh", "-c", script]);
        if matches!(&last, Ok(out) if out.trim() == want) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    panic!("{script}: {last:?}");
}

async fn mysql_read_only(ip: &str, password: &str) -> Option<i64> {
    let mut c = mysql_conn(ip, "root", password).await?;
    let ro = c.query_first("SELECT @@read_only").await.ok()?;
    let _ = c.disconnect().await;
    ro
}

/// Every MariaDB pod's `read_only`, by pod name.
async fn mysql_roles(client: &kube::Client, password: &str) -> Vec<(String, Option<i64>)> {
    let mut out = vec![];
    for (pod, _, ip) in members(client, NS, "db").await {
        let ro = mysql_read_only(&ip.expect("pod ip"), password).await;
        out.push((pod, ro));
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn plugin_end_to_end() {
    let started = Instant::now();
    let mut cluster = DevCluster::up(141);
    let client = cluster.client().await;
    let step = |s: &str| eprintln!("[e2e-plugin {:>5.1}s] {s}", started.elapsed().as_secs_f64());
    cluster
        .kubectl(&["create", "namespace", NS])
        .expect("namespace");
    let rr: Api<RedisReplication> = Api::namespaced(client.clone(), NS);
    let plugin = Plugin { cluster: &cluster };

    step("a PVC for backups and a 3-member Redis");
    cluster
        .kubectl_stdin(
            &["-n", NS, "apply", "-f", "-"],
            "apiVersion: v1\nkind: PersistentVolumeClaim\nmetadata: {name: backups}\nspec:\n  accessModes: [ReadWriteOnce]\n  resources: {requests: {storage: 1Gi}}\n",
        )
        .expect("pvc");
    let err = plugin.fails(&["status", NAME]);
    assert!(
        err.contains("no RedisReplication or MySQLCluster named cache in namespace e2e-plugin"),
        "{err}"
    );
    let obj: RedisReplication = serde_json::from_value(serde_json::json!({
        "apiVersion": "ordinal.dev/v1alpha1", "kind": "RedisReplication", "metadata": {"name": NAME},
        "spec": {"replicas": 3}
    }))
    .expect("object");
    rr.create(&PostParams::default(), &obj)
        .await
        .expect("create");
    // The MariaDB boots meanwhile; it is used at the end.
    let my: Api<MySQLCluster> = Api::namespaced(client.clone(), NS);
    let db: MySQLCluster = serde_json::from_value(serde_json::json!({
        "apiVersion": "ordinal.dev/v1alpha1", "kind": "MySQLCluster", "metadata": {"name": "db"},
        "spec": {"replicas": 2, "config": {"innodb_buffer_pool_size": "64M"}}
    }))
    .expect("object");
    my.create(&PostParams::default(), &db)
        .await
        .expect("create db");
    devcluster::wait_ready(&rr, NAME, "cache Ready", Duration::from_secs(180)).await;
    let password = secret_value(&client, NS, "cache-auth", "password").await;

    step("status shows the roles the servers report");
    let master = eventually("one master", Duration::from_secs(30), || {
        the_master(&client, &password)
    })
    .await;
    let report = eventually(
        "status reports the master as primary, the rest as replicas",
        Duration::from_secs(30),
        || async {
            let r = plugin.status_json();
            let roles = server_roles(&client, &password).await;
            let members = r["members"].as_array()?;
            let agree = members.len() == 3
                && members.iter().all(|m| {
                    let server = roles
                        .iter()
                        .find(|(p, _)| m["pod"] == p.as_str())
                        .map(|(_, r)| r.as_str());
                    matches!(
                        (m["role"].as_str(), server),
                        (Some("Primary"), Some("master")) | (Some("Replica"), Some("slave"))
                    )
                });
            agree.then_some(r)
        },
    )
    .await;
    assert_eq!(report["kind"], "RedisReplication");
    assert_eq!(
        report["primary"],
        master
            .trim_start_matches("cache-")
            .parse::<i64>()
            .expect("ordinal")
    );
    assert_eq!(report["paused"], false);
    let text = plugin.ok(&["status", &format!("redis/{NAME}")]);
    eprintln!("{text}");
    let first = text.lines().next().expect("root line");
    assert!(
        first.starts_with("RedisReplication e2e-plugin/cache (redis): Running")
            && first.contains(&format!("primary {master}")),
        "{text}"
    );
    for (pod, role) in server_roles(&client, &password).await {
        let word = if role == "master" {
            "primary"
        } else {
            "replica"
        };
        let line = text
            .lines()
            .find(|l| l.contains(&format!("{pod}  ")))
            .unwrap_or_else(|| panic!("no line for {pod} in\n{text}"));
        assert!(line.contains(word), "{pod} is {role}: {line}\n{text}");
    }
    let yaml: serde_json::Value =
        serde_yaml::from_str(&plugin.ok(&["status", NAME, "-o", "yaml"])).expect("yaml");
    assert_eq!(yaml["name"], "cache");
    assert_eq!(yaml["members"].as_array().map(Vec::len), Some(3));

    step("switchover: a bad ordinal is refused, a good one moves the primary");
    let err = plugin.fails(&["switchover", NAME, "--to", "3"]);
    assert!(
        err.contains("has 3 members") && err.contains("--to 3"),
        "{err}"
    );
    let err = plugin.fails(&["switchover", "mysql/cache", "--to", "1"]);
    assert!(err.contains("no MySQLCluster named cache"), "{err}");
    let target = if master == "cache-2" { 1 } else { 2 };
    let target_pod = format!("cache-{target}");
    let master_ip = members(&client, NS, NAME)
        .await
        .into_iter()
        .find(|(p, _, _)| *p == master)
        .and_then(|(_, _, ip)| ip)
        .expect("master ip");
    let mut c = conn(&master_ip, &password).await.expect("connect master");
    let _: () = redis::cmd("SET")
        .arg("before-switchover")
        .arg("kept")
        .query_async(&mut c)
        .await
        .expect("SET");
    let out = plugin.ok(&[
        "switchover",
        NAME,
        "--to",
        &target.to_string(),
        "--timeout",
        "90s",
    ]);
    assert!(
        out.contains(&format!("{target_pod} is the primary")),
        "{out}"
    );
    let roles = server_roles(&client, &password).await;
    for (pod, role) in &roles {
        let want = if *pod == target_pod {
            "master"
        } else {
            "slave"
        };
        assert_eq!(role, want, "{pod} after the switchover: {roles:?}");
    }
    let target_ip = members(&client, NS, NAME)
        .await
        .into_iter()
        .find(|(p, _, _)| *p == target_pod)
        .and_then(|(_, _, ip)| ip)
        .expect("target ip");
    let mut c = conn(&target_ip, &password)
        .await
        .expect("connect new master");
    let kept: String = redis::cmd("GET")
        .arg("before-switchover")
        .query_async(&mut c)
        .await
        .expect("GET");
    assert_eq!(kept, "kept");
    let r = plugin.status_json();
    assert_eq!(r["primary"], target);
    assert_eq!(r["lastFailover"]["kind"], "Switchover");
    assert_eq!(r["lastFailover"]["to"], target);

    step("pause: a removed role label stays removed; resume restores it");
    let replica = if target == 1 { "cache-0" } else { "cache-1" };
    assert_eq!(role_label(&cluster, replica).as_deref(), Some("replica"));
    let out = plugin.ok(&["pause", NAME]);
    assert!(out.contains("paused"), "{out}");
    let r = plugin.status_json();
    assert_eq!(
        (r["paused"].clone(), r["pauseConfirmed"].clone()),
        (true.into(), true.into())
    );
    let err = plugin.fails(&["switchover", NAME, "--to", "0"]);
    assert!(err.contains("is paused"), "{err}");
    cluster
        .kubectl(&["-n", NS, "label", "pod", replica, "ordinal.dev/role-"])
        .expect("remove label");
    // Unpaused, the operator puts the label back within a pass (about a
    // second); paused it must not, however long we look.
    tokio::time::sleep(Duration::from_secs(6)).await;
    assert_eq!(
        role_label(&cluster, replica),
        None,
        "the label came back while paused\n{}",
        cluster.diagnostics(NS)
    );
    let text = plugin.ok(&["status", NAME]);
    eprintln!("{text}");
    assert!(text.contains("PAUSED"), "{text}");
    let line = text
        .lines()
        .find(|l| l.contains(&format!("{replica}  ")))
        .expect("replica line");
    assert!(line.contains("label (none)"), "{line}");
    let out = plugin.ok(&["resume", NAME]);
    assert!(out.contains("resumed"), "{out}");
    eventually(
        "label restored after resume",
        Duration::from_secs(30),
        || async { (role_label(&cluster, replica).as_deref() == Some("replica")).then_some(()) },
    )
    .await;
    let r = plugin.status_json();
    assert_eq!(r["paused"], false);
    assert!(
        !r["conditions"]
            .as_array()
            .expect("conditions")
            .iter()
            .any(|c| c["type"] == "Paused"),
        "{r}"
    );

    step("credentials: the printed command connects to the primary");
    let out = plugin.ok(&["credentials", NAME]);
    assert!(
        !out.contains(&password),
        "password printed without --show-passwords"
    );
    assert!(out.contains("cache-auth") && out.contains("cache-read.e2e-plugin.svc.cluster.local"));
    let command = out.lines().last().expect("command").trim().to_string();
    // From where a client in the cluster's network runs (cluster DNS names).
    exec_until(&cluster, &format!("{command} SET via-credentials ok"), "OK").await;
    let kept: String = redis::cmd("GET")
        .arg("via-credentials")
        .query_async(&mut c)
        .await
        .expect("GET");
    assert_eq!(
        kept, "ok",
        "written through the write Service to the primary"
    );
    let out = plugin.ok(&["credentials", NAME, "--show-passwords"]);
    assert!(out.contains(&password));

    step("backup: created, followed to Succeeded");
    let out = plugin.ok(&[
        "backup",
        NAME,
        "--pvc",
        "backups",
        "--path",
        "plugin",
        "--timeout",
        "120s",
    ]);
    let name = out
        .lines()
        .find_map(|l| l.strip_prefix("backup/")?.split_whitespace().next())
        .expect("backup name")
        .to_string();
    assert!(out.contains(&format!("backup/{name} Succeeded")), "{out}");
    let backups: Api<Backup> = Api::namespaced(client.clone(), NS);
    let b = backups.get(&name).await.expect("backup object");
    assert_eq!(
        b.status.as_ref().map(|s| s.phase),
        Some(BackupPhase::Succeeded)
    );
    assert_eq!(b.spec.cluster.name, NAME);
    let r = plugin.status_json();
    assert_eq!(r["lastBackup"]["name"], name.as_str());
    assert_eq!(r["lastBackup"]["phase"], "Succeeded");

    step("restore: a new cluster from the backup holds the data");
    let err = plugin.fails(&["restore", NAME, "--from", &name]);
    assert!(err.contains("exists"), "{err}");
    let out = plugin.ok(&[
        "restore",
        "cache2",
        "--from",
        &name,
        "--replicas",
        "1",
        "--dry-run",
    ]);
    let manifest: serde_json::Value = serde_yaml::from_str(&out).expect("manifest");
    assert_eq!(manifest["spec"]["restore"]["backup"], name.as_str());
    assert!(manifest["spec"].get("primary").is_none(), "{manifest}");
    let out = plugin.ok(&[
        "restore",
        "cache2",
        "--from",
        &name,
        "--replicas",
        "1",
        "--timeout",
        "150s",
    ]);
    assert!(out.contains("restored and Ready"), "{out}");
    let restored_pw = secret_value(&client, NS, "cache2-auth", "password").await;
    let ip = members(&client, NS, "cache2")
        .await
        .into_iter()
        .find_map(|(_, _, ip)| ip)
        .expect("cache2 ip");
    let mut r2 = conn(&ip, &restored_pw).await.expect("connect cache2");
    let kept: String = redis::cmd("GET")
        .arg("before-switchover")
        .query_async(&mut r2)
        .await
        .expect("GET restored");
    assert_eq!(kept, "kept");

    step("MariaDB: status roles are the servers' read_only, switchover, credentials");
    devcluster::wait_ready(&my, "db", "db Ready", Duration::from_secs(300)).await;
    let root_pw = secret_value(&client, NS, "db-auth", "root-password").await;
    let report = eventually(
        "status agrees with read_only on every member",
        Duration::from_secs(30),
        || async {
            let r: serde_json::Value =
                serde_json::from_str(&plugin.ok(&["status", "mysql/db", "-o", "json"])).ok()?;
            let roles = mysql_roles(&client, &root_pw).await;
            let members = r["members"].as_array()?;
            let agree = members.len() == 2
                && members.iter().all(|m| {
                    let ro = roles
                        .iter()
                        .find(|(p, _)| m["pod"] == p.as_str())
                        .and_then(|(_, ro)| *ro);
                    matches!(
                        (m["role"].as_str(), ro),
                        (Some("Primary"), Some(0)) | (Some("Replica"), Some(1))
                    )
                });
            agree.then_some(r)
        },
    )
    .await;
    let primary = report["primary"].as_i64().expect("primary");
    let text = plugin.ok(&["status", "db"]);
    eprintln!("{text}");
    assert!(
        text.starts_with("MySQLCluster e2e-plugin/db (mariadb): Running"),
        "{text}"
    );
    let other = 1 - primary;
    let out = plugin.ok(&[
        "switchover",
        "db",
        "--to",
        &other.to_string(),
        "--timeout",
        "120s",
    ]);
    assert!(out.contains(&format!("db-{other} is the primary")), "{out}");
    let roles = mysql_roles(&client, &root_pw).await;
    for (pod, ro) in &roles {
        let want = if *pod == format!("db-{other}") { 0 } else { 1 };
        assert_eq!(
            *ro,
            Some(want),
            "{pod} read_only after the switchover: {roles:?}"
        );
    }
    let out = plugin.ok(&["credentials", "db"]);
    assert!(!out.contains(&root_pw));
    let command = out.lines().last().expect("command").trim().to_string();
    // read_only 0: the write Service reached the primary.
    let sql = "SELECT @@read_only; CREATE DATABASE IF NOT EXISTS via_credentials";
    exec_until(&cluster, &format!("{command} -N -e '{sql}'"), "0").await;

    cluster.kill_operator();
    step("done");
}
