//! End to end on a real API server (the devcluster) with real database pods,
//! once per flavor: `mariadb:10.11` runs Debian's mariadbd, `mysql:8.0.31`
//! Oracle's mysqld 8.0.31 (the devcluster maps `mysql:8*` images to it): a
//! MySQLCluster is applied, replicates with GTIDs, fails over, switches over
//! without losing acknowledged rows, survives an operator crash mid-failover,
//! and is deleted leaving its volumes.

#[path = "support/devcluster.rs"]
mod devcluster;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use devcluster::{DevCluster, eventually, members, secret_value};
use kube::api::{Api, Patch, PatchParams, PostParams};
use mysql_async::prelude::*;
use ordinal::api::{MySQLCluster, MySqlFlavor};

const NS: &str = "e2e-mysql";
const NAME: &str = "db";

async fn status(api: &Api<MySQLCluster>) -> Option<ordinal::api::ClusterStatus> {
    devcluster::cluster_status(api, NAME).await
}

async fn wait_ready(
    api: &Api<MySQLCluster>,
    what: &str,
    timeout: Duration,
) -> ordinal::api::ClusterStatus {
    devcluster::wait_ready(api, NAME, what, timeout).await
}

async fn labelled_primary(
    client: &kube::Client,
    api: &Api<MySQLCluster>,
) -> Option<(String, String)> {
    devcluster::labelled_primary(client, api, NS, NAME).await
}

/// Application user: no SUPER, so read_only binds it (as it must bind every
/// application on MariaDB, which has no super_read_only).
const APP_USER: &str = "app";
const APP_PASSWORD: &str = "app-Passw0rd";

async fn conn(ip: &str, password: &str) -> Option<mysql_async::Conn> {
    conn_as(ip, "root", password).await
}

async fn app_conn(ip: &str) -> Option<mysql_async::Conn> {
    conn_as(ip, APP_USER, APP_PASSWORD).await
}

async fn conn_as(ip: &str, user: &str, password: &str) -> Option<mysql_async::Conn> {
    let opts = mysql_async::OptsBuilder::default()
        .ip_or_hostname(ip.to_string())
        .tcp_port(3306)
        .user(Some(user))
        .pass(Some(password.to_string()))
        .wait_timeout(Some(60));
    match tokio::time::timeout(Duration::from_secs(2), mysql_async::Conn::new(opts)).await {
        Ok(Ok(c)) => Some(c),
        Ok(Err(e)) => {
            eprintln!("[e2e-mysql] connect {user}@{ip}: {e}");
            None
        }
        Err(_) => None,
    }
}

async fn query_one<T: FromValue + Send + 'static>(
    ip: &str,
    password: &str,
    sql: &str,
) -> Option<T> {
    let mut c = conn(ip, password).await?;
    let v: Option<T> = tokio::time::timeout(Duration::from_secs(5), c.query_first(sql))
        .await
        .ok()?
        .ok()?;
    let _ = c.disconnect().await;
    v
}

/// Members that accept writes (read_only off), by name.
async fn writable(client: &kube::Client, password: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for (name, _, ip) in members(client, NS, NAME).await {
        if let Some(ip) = ip
            && query_one::<i64>(&ip, password, "SELECT @@read_only").await == Some(0)
        {
            out.insert(name);
        }
    }
    out
}

async fn count(ip: &str, password: &str) -> Option<i64> {
    query_one(ip, password, "SELECT COUNT(*) FROM app.t").await
}

/// Inserts rows into whichever pod is labelled primary; returns the acknowledged ids.
fn spawn_writer(client: kube::Client, stop: Arc<AtomicBool>) -> tokio::task::JoinHandle<Vec<i64>> {
    tokio::spawn(async move {
        let api: Api<MySQLCluster> = Api::namespaced(client.clone(), NS);
        let mut acked = Vec::new();
        let mut target: Option<mysql_async::Conn> = None;
        let mut i = 1_000_000i64;
        while !stop.load(Ordering::Relaxed) {
            if target.is_none() {
                if let Some((_, ip)) = labelled_primary(&client, &api).await
                    && let Some(c) = app_conn(&ip).await
                {
                    target = Some(c);
                } else {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            }
            let Some(c) = target.as_mut() else { continue };
            let insert = tokio::time::timeout(
                Duration::from_secs(3),
                c.exec_drop("INSERT INTO app.t (id, v) VALUES (?, 'w')", (i,)),
            )
            .await;
            match insert {
                Ok(Ok(())) => {
                    acked.push(i);
                    i += 1;
                }
                _ => {
                    // A failed or unknown outcome is not acknowledged; use a new id.
                    i += 1;
                    target = None;
                }
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        acked
    })
}

/// One devcluster at a time on two cores.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn mysql_end_to_end() {
    let _g = SERIAL.lock().await;
    end_to_end(MySqlFlavor::MariaDB, 102).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn mysql8_end_to_end() {
    let _g = SERIAL.lock().await;
    end_to_end(MySqlFlavor::MySQL, 105).await;
}

/// The server process of the pod listening on `ip`.
fn db_pid(cluster: &DevCluster, ip: &str) -> Option<i32> {
    cluster
        .db_pid(&format!("(mariadbd|mysqld).*bind-address={ip}"))
        .or_else(|| cluster.db_pid(&format!("(mariadbd|mysqld).*{ip}")))
}

async fn end_to_end(flavor: MySqlFlavor, ip_block: u8) {
    let image = match flavor {
        MySqlFlavor::MariaDB => "mariadb:10.11",
        MySqlFlavor::MySQL => "mysql:8.0.31",
    };
    let mut cluster = DevCluster::up(ip_block);
    let client = cluster.client().await;
    cluster
        .kubectl(&["create", "namespace", NS])
        .expect("namespace");
    let api: Api<MySQLCluster> = Api::namespaced(client.clone(), NS);
    let step = |s: &str| eprintln!("[e2e-mysql] {s}");

    step("invalid resources are refused by the API server with the CEL message");
    let bad: MySQLCluster = serde_json::from_value(serde_json::json!({
        "apiVersion": "ordinal.dev/v1alpha1", "kind": "MySQLCluster", "metadata": {"name": "bad"},
        "spec": {"replicas": 0, "config": {"gtid_strict_mode": "OFF"}}
    }))
    .expect("object");
    let err = api
        .create(&PostParams::default(), &bad)
        .await
        .expect_err("refused")
        .to_string();
    assert!(err.contains("spec.replicas must be at least 1"), "{err}");
    assert!(
        err.contains("config key gtid_strict_mode is managed by Ordinal"),
        "{err}"
    );

    step("apply → Ready; server ids from the ordinals; rows replicate; replicas refuse writes");
    let my: MySQLCluster = serde_json::from_value(serde_json::json!({
        "apiVersion": "ordinal.dev/v1alpha1", "kind": "MySQLCluster", "metadata": {"name": NAME},
        "spec": {"replicas": 3, "flavor": flavor, "image": image,
                 "storage": {"size": "1Gi"}, "failover": {"detectionSeconds": 3},
                 "config": {"innodb_buffer_pool_size": "64M"}}
    }))
    .expect("object");
    api.create(&PostParams::default(), &my)
        .await
        .expect("create");
    let s = wait_ready(&api, "3 members Running", Duration::from_secs(300)).await;
    assert_eq!(s.replication.primary, Some(0));
    let password = secret_value(&client, NS, &format!("{NAME}-auth"), "root-password").await;
    let (primary, primary_ip) = eventually("primary label", Duration::from_secs(30), || {
        labelled_primary(&client, &api)
    })
    .await;
    let pods = members(&client, NS, NAME).await;
    for (i, (name, _, ip)) in pods.iter().enumerate() {
        let id: i64 = query_one(ip.as_deref().expect("ip"), &password, "SELECT @@server_id")
            .await
            .expect("server id");
        assert_eq!(
            (name.as_str(), id),
            (format!("{NAME}-{i}").as_str(), 100 + i as i64)
        );
    }
    let mut c = conn(&primary_ip, &password).await.expect("connect primary");
    c.query_drop("CREATE DATABASE app")
        .await
        .expect("create db");
    c.query_drop("CREATE TABLE app.t (id BIGINT PRIMARY KEY, v VARCHAR(16))")
        .await
        .expect("create table");
    c.query_drop(format!(
        "CREATE USER '{APP_USER}'@'%' IDENTIFIED BY '{APP_PASSWORD}'"
    ))
    .await
    .expect("create user");
    c.query_drop(format!("GRANT ALL ON app.* TO '{APP_USER}'@'%'"))
        .await
        .expect("grant");
    let mut a = app_conn(&primary_ip).await.expect("connect primary as app");
    a.query_drop("INSERT INTO app.t VALUES (1, 'one'), (2, 'two')")
        .await
        .expect("insert");
    for (name, _, ip) in pods.iter().filter(|(n, _, _)| *n != primary) {
        let ip = ip.clone().expect("ip");
        eventually(
            &format!("rows on {name}"),
            Duration::from_secs(20),
            || async { (count(&ip, &password).await == Some(2)).then_some(()) },
        )
        .await;
        let mut r = eventually("app user replicated", Duration::from_secs(20), || {
            app_conn(&ip)
        })
        .await;
        let refused = r.query_drop("INSERT INTO app.t VALUES (3, 'x')").await;
        assert!(
            refused.is_err_and(|e| e.to_string().contains("read-only")
                || e.to_string().contains("READ-ONLY")
                || e.to_string().contains("read_only")),
            "replica {name} must refuse writes"
        );
    }
    assert_eq!(
        writable(&client, &password).await,
        BTreeSet::from([primary.clone()])
    );

    step(
        "the primary hangs (SIGSTOP) past the detection window → the most advanced replica takes over",
    );
    let pid = db_pid(&cluster, &primary_ip).expect("primary pid");
    cluster.signal(pid, "STOP");
    let (new_primary, new_ip) = eventually(
        "a new labelled primary",
        Duration::from_secs(90),
        || async {
            labelled_primary(&client, &api)
                .await
                .filter(|(n, _)| *n != primary)
        },
    )
    .await;
    let mut c = eventually(
        "the new primary accepts writes",
        Duration::from_secs(30),
        || async {
            let mut c = conn(&new_ip, &password).await?;
            c.query_drop("INSERT INTO app.t VALUES (10, 'after-failover')")
                .await
                .ok()?;
            Some(c)
        },
    )
    .await;
    let n: Option<i64> = c
        .query_first("SELECT COUNT(*) FROM app.t")
        .await
        .expect("count");
    assert_eq!(n, Some(3), "nothing lost");
    cluster.resume_if_running(pid);
    eventually(
        "the old primary rejoins read-only as a replica",
        Duration::from_secs(90),
        || async {
            let ro: i64 = query_one(&primary_ip, &password, "SELECT @@read_only").await?;
            let rows = count(&primary_ip, &password).await?;
            (ro == 1 && rows == 3).then_some(())
        },
    )
    .await;
    let s = wait_ready(&api, "Ready after failover", Duration::from_secs(120)).await;
    assert!(s.replication.term >= 2);
    assert_eq!(
        writable(&client, &password).await,
        BTreeSet::from([new_primary.clone()])
    );

    step("SIGKILL of the primary's server → one writable primary again, rows intact");
    let pid = db_pid(&cluster, &new_ip).expect("pid");
    cluster.signal(pid, "KILL");
    let ip = eventually(
        "a labelled, writable primary",
        Duration::from_secs(120),
        || async {
            let (_, ip) = labelled_primary(&client, &api).await?;
            let mut c = conn(&ip, &password).await?;
            c.query_drop("INSERT INTO app.t VALUES (11, 'after-kill')")
                .await
                .ok()?;
            Some(ip)
        },
    )
    .await;
    assert_eq!(count(&ip, &password).await, Some(4));
    wait_ready(&api, "Ready after SIGKILL", Duration::from_secs(120)).await;
    assert_eq!(writable(&client, &password).await.len(), 1);

    step("switchover through spec.primary under a write loop → no acknowledged row lost");
    let current = status(&api)
        .await
        .and_then(|s| s.replication.primary)
        .expect("primary");
    let target = (current + 1) % 3;
    let stop = Arc::new(AtomicBool::new(false));
    let writer = spawn_writer(client.clone(), stop.clone());
    tokio::time::sleep(Duration::from_secs(2)).await;
    api.patch(
        NAME,
        &PatchParams::default(),
        &Patch::Merge(serde_json::json!({"spec": {"primary": target}})),
    )
    .await
    .expect("patch spec.primary");
    eventually(
        "switchover to the requested member",
        Duration::from_secs(90),
        || async {
            let s = status(&api).await?;
            (s.replication.primary == Some(target) && s.replication.operation.is_none())
                .then_some(())
        },
    )
    .await;
    let (_, target_ip) = eventually("label on the new primary", Duration::from_secs(30), || {
        labelled_primary(&client, &api)
    })
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    stop.store(true, Ordering::Relaxed);
    let acked = writer.await.expect("writer");
    assert!(
        acked.len() > 20,
        "the writer made progress: {}",
        acked.len()
    );
    let mut c = conn(&target_ip, &password).await.expect("connect");
    let present: Vec<i64> = c
        .query("SELECT id FROM app.t WHERE id >= 1000000")
        .await
        .expect("ids");
    let present: BTreeSet<i64> = present.into_iter().collect();
    let missing: Vec<_> = acked.iter().filter(|id| !present.contains(id)).collect();
    assert!(
        missing.is_empty(),
        "acknowledged rows lost in the switchover: {missing:?}\n{}",
        cluster.diagnostics(NS)
    );
    wait_ready(&api, "Ready after switchover", Duration::from_secs(120)).await;
    assert_eq!(
        writable(&client, &password).await,
        BTreeSet::from([format!("{NAME}-{target}")])
    );

    step("operator crash in the middle of a failover → a new operator converges to one primary");
    api.patch(
        NAME,
        &PatchParams::default(),
        &Patch::Merge(serde_json::json!({"spec": {"primary": null}})),
    )
    .await
    .expect("clear spec.primary");
    let (old, old_ip) = labelled_primary(&client, &api).await.expect("primary");
    let pid = db_pid(&cluster, &old_ip).expect("pid");
    cluster.signal(pid, "STOP");
    eventually("failover under way", Duration::from_secs(30), || async {
        let s = status(&api).await?;
        (s.replication.operation.is_some() || s.replication.primary_unhealthy_since.is_some())
            .then_some(())
    })
    .await;
    cluster.kill_operator();
    tokio::time::sleep(Duration::from_secs(4)).await;
    cluster.start_operator();
    let (after, _) = eventually(
        "a new primary after the operator restart",
        Duration::from_secs(120),
        || async {
            labelled_primary(&client, &api)
                .await
                .filter(|(n, _)| *n != old)
        },
    )
    .await;
    cluster.resume_if_running(pid);
    wait_ready(
        &api,
        "Ready after the restarted operator finished the failover",
        Duration::from_secs(120),
    )
    .await;
    assert_eq!(writable(&client, &password).await, BTreeSet::from([after]));

    step("delete → children gone, volumes kept");
    api.delete(NAME, &Default::default()).await.expect("delete");
    eventually(
        "children garbage-collected",
        Duration::from_secs(120),
        || async {
            let left = cluster
                .kubectl(&[
                    "-n",
                    NS,
                    "get",
                    "statefulset,service,configmap,poddisruptionbudget",
                    "-l",
                    "app.kubernetes.io/instance=db",
                    "-o",
                    "name",
                ])
                .ok()?;
            let gone = api.get_opt(NAME).await.ok()?.is_none();
            (left.trim().is_empty() && gone).then_some(())
        },
    )
    .await;
    let pvcs = cluster
        .kubectl(&["-n", NS, "get", "pvc", "-o", "name"])
        .expect("pvcs");
    assert_eq!(
        pvcs.lines().count(),
        3,
        "PVCs are retained by default: {pvcs}"
    );
}
