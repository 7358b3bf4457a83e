//! End to end on the devcluster: the faults of a lost state, counted in data.
//!
//! - A cluster re-created over its kept volumes (`kubectl delete` then apply
//!   again, as a GitOps re-sync or a restore of the objects does), with
//!   ordinal 0's volume emptied and with the primary at the highest ordinal:
//!   every acknowledged key/row is on the final primary, every member
//!   converges, the generated Secret (the passwords the kept data knows) is
//!   reused, and the cluster is Ready.
//! - The status wiped (`status: {}`) under a write loop: the primary keeps or
//!   regains its label within 30 s, no acknowledged write is lost, and a
//!   sampler (every 200 ms) never sees two writable members.
//!
//! Pod addresses 127.0.111.x.

#[path = "support/accounting.rs"]
mod accounting;
#[path = "support/devcluster.rs"]
mod devcluster;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use accounting::{Db, Engine, Load, Route, redis_conn};
use devcluster::{DevCluster, eventually, members, secret_value};
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::core::NamespaceResourceScope;
use mysql_async::prelude::*;
use ordinal::api::{MySQLCluster, RedisReplication};
use ordinal::controller::kinds::ClusterResource;

const IP_BLOCK: u8 = 111;

fn step(s: &str) {
    eprintln!("[e2e-recreate] {s}");
}

// ---------------------------------------------------------------- helpers

/// Delete the resource, wait until its pods and children are gone (the
/// volumes and the generated Secret stay), optionally empty ordinal 0's
/// volume, then apply the same manifest again.
async fn recreate<K>(
    cluster: &DevCluster,
    api: &Api<K>,
    ns: &str,
    name: &str,
    manifest: &serde_json::Value,
    empty_ordinal_0: bool,
) where
    K: ClusterResource
        + kube::Resource<DynamicType = (), Scope = NamespaceResourceScope>
        + serde::de::DeserializeOwned
        + serde::Serialize
        + Clone
        + std::fmt::Debug,
{
    api.delete(name, &Default::default()).await.expect("delete");
    eventually(
        "pods, StatefulSet and resource gone",
        Duration::from_secs(180),
        || async {
            let left = cluster
                .kubectl(&[
                    "-n",
                    ns,
                    "get",
                    "pods,statefulset",
                    "-l",
                    &format!("app.kubernetes.io/instance={name}"),
                    "-o",
                    "name",
                ])
                .ok()?;
            let gone = api.get_opt(name).await.ok()?.is_none();
            (left.trim().is_empty() && gone).then_some(())
        },
    )
    .await;
    let pvcs = cluster
        .kubectl(&["-n", ns, "get", "pvc", "-o", "name"])
        .expect("pvcs");
    assert_eq!(pvcs.lines().count(), 3, "volumes kept: {pvcs}");
    cluster
        .kubectl(&["-n", ns, "get", "secret", &format!("{name}-auth")])
        .expect("the generated Secret outlives the resource while its volumes are kept");
    if empty_ordinal_0 {
        let dir = cluster
            .state_path()
            .join("pv")
            .join(ns)
            .join(format!("data-{name}-0"));
        let entries = std::fs::read_dir(&dir).expect("ordinal 0's volume");
        let mut n = 0;
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                std::fs::remove_dir_all(&p).expect("empty volume");
            } else {
                std::fs::remove_file(&p).expect("empty volume");
            }
            n += 1;
        }
        assert!(n > 0, "ordinal 0's volume held data");
    }
    let obj: K = serde_json::from_value(manifest.clone()).expect("object");
    api.create(&PostParams::default(), &obj)
        .await
        .expect("create again");
}

/// The longest stretch (in 200 ms samples) without a labelled primary.
fn spawn_label_watch<F, Fut>(
    stop: Arc<AtomicBool>,
    mut labelled: F,
) -> tokio::task::JoinHandle<Duration>
where
    F: FnMut() -> Fut + Send + 'static,
    Fut: std::future::Future<Output = bool> + Send,
{
    tokio::spawn(async move {
        let mut worst = Duration::ZERO;
        let mut since: Option<Instant> = None;
        while !stop.load(Ordering::Relaxed) {
            if labelled().await {
                since = None;
            } else {
                let s = *since.get_or_insert_with(Instant::now);
                worst = worst.max(s.elapsed());
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        worst
    })
}

async fn wipe_status(cluster: &DevCluster, ns: &str, resource: &str) {
    cluster
        .kubectl(&[
            "-n",
            ns,
            "patch",
            resource,
            "--subresource=status",
            "--type=json",
            "-p",
            r#"[{"op":"replace","path":"/status","value":{}}]"#,
        ])
        .expect("wipe status");
}

// ------------------------------------------------------------------ Redis

const RNS: &str = "recreate-redis";
const RNAME: &str = "cache";

async fn rprimary(client: &kube::Client, api: &Api<RedisReplication>) -> Option<(String, String)> {
    devcluster::labelled_primary(client, api, RNS, RNAME).await
}

/// Keys of `keys` missing on `ip`.
async fn missing_keys(ip: &str, password: &str, keys: &[String]) -> Vec<String> {
    let mut c = redis_conn(ip, password).await.expect("connect");
    let mut missing = Vec::new();
    for chunk in keys.chunks(500) {
        let vals: Vec<Option<String>> = redis::cmd("MGET")
            .arg(chunk)
            .query_async(&mut c)
            .await
            .expect("MGET");
        missing.extend(
            chunk
                .iter()
                .zip(vals)
                .filter(|(_, v)| v.is_none())
                .map(|(k, _)| k.clone()),
        );
    }
    missing
}

async fn dbsize(ip: &str, password: &str) -> Option<i64> {
    let mut c = redis_conn(ip, password).await?;
    redis::cmd("DBSIZE").query_async(&mut c).await.ok()
}

/// `n` keys `<prefix>:<i>` written one by one through the labelled primary;
/// returns the acknowledged ones.
async fn write_keys(
    client: &kube::Client,
    api: &Api<RedisReplication>,
    password: &str,
    prefix: &str,
    n: usize,
) -> Vec<String> {
    let (_, ip) = eventually("a labelled primary", Duration::from_secs(30), || {
        rprimary(client, api)
    })
    .await;
    let mut c = redis_conn(&ip, password).await.expect("connect primary");
    let mut acked = Vec::new();
    for chunk in (0..n).collect::<Vec<_>>().chunks(200) {
        let mut pipe = redis::pipe();
        for i in chunk {
            pipe.cmd("SET").arg(format!("{prefix}:{i}")).arg(*i);
        }
        let replies: Vec<String> = pipe.query_async(&mut c).await.expect("SET");
        for (i, r) in chunk.iter().zip(replies) {
            if r == "OK" {
                acked.push(format!("{prefix}:{i}"));
            }
        }
    }
    assert_eq!(acked.len(), n);
    acked
}

async fn all_members_hold(client: &kube::Client, password: &str, n: i64, what: &str) {
    eventually(what, Duration::from_secs(120), || async {
        let pods = members(client, RNS, RNAME).await;
        if pods.len() != 3 {
            return None;
        }
        for (_, _, ip) in &pods {
            if dbsize(ip.as_deref()?, password).await != Some(n) {
                return None;
            }
        }
        Some(())
    })
    .await;
}

async fn redis_suite(cluster: &DevCluster, client: &kube::Client) {
    cluster
        .kubectl(&["create", "namespace", RNS])
        .expect("namespace");
    let api: Api<RedisReplication> = Api::namespaced(client.clone(), RNS);
    let manifest = serde_json::json!({
        "apiVersion": "ordinal.dev/v1alpha1", "kind": "RedisReplication", "metadata": {"name": RNAME},
        "spec": {"replicas": 3, "storage": {"size": "1Gi"}, "failover": {"detectionSeconds": 3}}
    });
    let rr: RedisReplication = serde_json::from_value(manifest.clone()).expect("object");
    api.create(&PostParams::default(), &rr)
        .await
        .expect("create");
    let s = devcluster::wait_ready(&api, RNAME, "Redis Ready", Duration::from_secs(180)).await;
    assert_eq!(
        s.replication.primary,
        Some(0),
        "an all-empty cluster starts at 0"
    );
    let password = secret_value(client, RNS, &format!("{RNAME}-auth"), "password").await;

    step(
        "redis: 2,000 keys through the primary (ordinal 0), then delete, empty ordinal 0, apply again",
    );
    let mut acked = write_keys(client, &api, &password, "k", 2000).await;
    all_members_hold(client, &password, 2000, "2,000 keys on every member").await;
    recreate(cluster, &api, RNS, RNAME, &manifest, true).await;
    let s =
        devcluster::wait_ready(&api, RNAME, "Redis Ready again", Duration::from_secs(180)).await;
    let primary = s.replication.primary.expect("primary");
    assert_ne!(primary, 0, "the emptied member is never the source");
    let (_, ip) = eventually("labelled primary", Duration::from_secs(30), || {
        rprimary(client, &api)
    })
    .await;
    assert_eq!(
        missing_keys(&ip, &password, &acked).await,
        Vec::<String>::new()
    );
    all_members_hold(
        client,
        &password,
        2000,
        "every member converges on 2,000 keys",
    )
    .await;
    assert_eq!(
        secret_value(client, RNS, &format!("{RNAME}-auth"), "password").await,
        password,
        "the kept Secret is reused"
    );

    step("redis: primary moved to the highest ordinal, more keys, delete, apply again");
    api.patch(
        RNAME,
        &PatchParams::default(),
        &Patch::Merge(serde_json::json!({"spec": {"primary": 2}})),
    )
    .await
    .expect("spec.primary");
    eventually(
        "switchover to ordinal 2",
        Duration::from_secs(90),
        || async {
            let s = devcluster::cluster_status(&api, RNAME).await?;
            (s.replication.primary == Some(2) && s.replication.operation.is_none()).then_some(())
        },
    )
    .await;
    devcluster::wait_ready(&api, RNAME, "Ready on ordinal 2", Duration::from_secs(90)).await;
    acked.extend(write_keys(client, &api, &password, "m", 500).await);
    all_members_hold(client, &password, 2500, "2,500 keys on every member").await;
    recreate(cluster, &api, RNS, RNAME, &manifest, false).await;
    let s =
        devcluster::wait_ready(&api, RNAME, "Redis Ready (3rd)", Duration::from_secs(180)).await;
    assert!(s.replication.primary.is_some());
    let (_, ip) = eventually("labelled primary", Duration::from_secs(30), || {
        rprimary(client, &api)
    })
    .await;
    assert_eq!(
        missing_keys(&ip, &password, &acked).await,
        Vec::<String>::new()
    );
    all_members_hold(client, &password, 2500, "every member keeps 2,500 keys").await;

    step("redis: status wiped under writes");
    status_wipe_redis(cluster, client, &api, &password).await;
    let _ = cluster.diagnostics(RNS);
}

async fn status_wipe_redis(
    cluster: &DevCluster,
    client: &kube::Client,
    api: &Api<RedisReplication>,
    password: &str,
) {
    let (before, _) = rprimary(client, api).await.expect("labelled primary");
    let stop = Arc::new(AtomicBool::new(false));
    let db = Db::new(cluster, Engine::Redis, client.clone(), RNS, RNAME, password);
    let load = Load::start(&db, Route::LabelledPrimary, 0);
    let (c3, a3) = (client.clone(), api.clone());
    let labels = spawn_label_watch(stop.clone(), move || {
        let (c, a) = (c3.clone(), a3.clone());
        async move {
            members(&c, RNS, RNAME)
                .await
                .iter()
                .any(|(_, r, _)| r.as_deref() == Some("primary"))
                && a.get(RNAME).await.is_ok()
        }
    });
    tokio::time::sleep(Duration::from_secs(2)).await;
    let wiped = Instant::now();
    wipe_status(cluster, RNS, &format!("redisreplication/{RNAME}")).await;
    let (after, _) = eventually(
        "the primary labelled and recorded again",
        Duration::from_secs(30),
        || rprimary(client, api),
    )
    .await;
    step(&format!(
        "redis: primary {after} recorded and labelled {:?} after the wipe",
        wiped.elapsed()
    ));
    assert_eq!(after, before, "the running primary is kept");
    tokio::time::sleep(Duration::from_secs(3)).await;
    stop.store(true, Ordering::Relaxed);
    let (written, samples) = load.finish().await;
    let gap = labels.await.expect("label watch");
    let acked = written.acked;
    assert!(acked.len() > 50, "the writer kept writing: {}", acked.len());
    assert!(samples.taken > 10, "sampled {} times", samples.taken);
    assert_eq!(
        samples.max_writable, 1,
        "never two writable members ({} samples)",
        samples.taken
    );
    assert!(
        gap < Duration::from_secs(30),
        "no primary label for {gap:?}"
    );
    let (_, ip) = rprimary(client, api).await.expect("primary");
    assert_eq!(db.missing_on(&ip, &acked).await, Vec::<u64>::new());
    devcluster::wait_ready(api, RNAME, "Ready after the wipe", Duration::from_secs(60)).await;
}

// ------------------------------------------------------------------ MySQL

const MNS: &str = "recreate-mysql";
const MNAME: &str = "db";

async fn mconn(ip: &str, password: &str) -> Option<mysql_async::Conn> {
    let opts = mysql_async::OptsBuilder::default()
        .ip_or_hostname(ip.to_string())
        .tcp_port(3306)
        .user(Some("root"))
        .pass(Some(password.to_string()))
        .prefer_socket(false);
    tokio::time::timeout(Duration::from_secs(2), mysql_async::Conn::new(opts))
        .await
        .ok()?
        .ok()
}

async fn mprimary(client: &kube::Client, api: &Api<MySQLCluster>) -> Option<(String, String)> {
    devcluster::labelled_primary(client, api, MNS, MNAME).await
}

async fn ids_on(ip: &str, password: &str) -> Option<BTreeSet<i64>> {
    let mut c = mconn(ip, password).await?;
    let ids: Vec<i64> = c.query("SELECT id FROM app.t").await.ok()?;
    Some(ids.into_iter().collect())
}

async fn mysql_writable(client: &kube::Client, password: &str) -> usize {
    let mut n = 0;
    for (_, _, ip) in members(client, MNS, MNAME).await {
        let Some(ip) = ip else { continue };
        let Some(mut c) = mconn(&ip, password).await else {
            continue;
        };
        if let Ok(Some(0)) = c.query_first::<i64, _>("SELECT @@read_only").await {
            n += 1;
        }
    }
    n
}

async fn all_mysql_members_hold(client: &kube::Client, password: &str, ids: &[i64], what: &str) {
    let want: BTreeSet<i64> = ids.iter().copied().collect();
    eventually(what, Duration::from_secs(180), || async {
        let pods = members(client, MNS, MNAME).await;
        if pods.len() != 3 {
            return None;
        }
        for (_, _, ip) in &pods {
            let got = ids_on(ip.as_deref()?, password).await?;
            if !want.is_subset(&got) {
                return None;
            }
        }
        Some(())
    })
    .await;
}

async fn mysql_suite(cluster: &DevCluster, client: &kube::Client) {
    cluster
        .kubectl(&["create", "namespace", MNS])
        .expect("namespace");
    let api: Api<MySQLCluster> = Api::namespaced(client.clone(), MNS);
    let manifest = serde_json::json!({
        "apiVersion": "ordinal.dev/v1alpha1", "kind": "MySQLCluster", "metadata": {"name": MNAME},
        "spec": {"replicas": 3, "storage": {"size": "1Gi"}, "failover": {"detectionSeconds": 3},
                 "config": {"innodb_buffer_pool_size": "64M"}}
    });
    let obj: MySQLCluster = serde_json::from_value(manifest.clone()).expect("object");
    api.create(&PostParams::default(), &obj)
        .await
        .expect("create");
    devcluster::wait_ready(&api, MNAME, "MySQL Ready", Duration::from_secs(300)).await;
    let password = secret_value(client, MNS, &format!("{MNAME}-auth"), "root-password").await;

    step("mysql: 2,000 rows, primary moved to ordinal 2");
    let (_, ip) = eventually("labelled primary", Duration::from_secs(30), || {
        mprimary(client, &api)
    })
    .await;
    let mut c = mconn(&ip, &password).await.expect("connect primary");
    c.query_drop("CREATE DATABASE app; CREATE TABLE app.t (id BIGINT PRIMARY KEY, v VARCHAR(16))")
        .await
        .expect("schema");
    let mut acked: Vec<i64> = Vec::new();
    let ids: Vec<i64> = (1..=2000).collect();
    for chunk in ids.chunks(100) {
        let values: Vec<String> = chunk.iter().map(|i| format!("({i}, 'x')")).collect();
        c.query_drop(format!("INSERT INTO app.t VALUES {}", values.join(",")))
            .await
            .expect("insert");
        acked.extend_from_slice(chunk);
    }
    drop(c);
    api.patch(
        MNAME,
        &PatchParams::default(),
        &Patch::Merge(serde_json::json!({"spec": {"primary": 2}})),
    )
    .await
    .expect("spec.primary");
    eventually(
        "switchover to ordinal 2",
        Duration::from_secs(120),
        || async {
            let s = devcluster::cluster_status(&api, MNAME).await?;
            (s.replication.primary == Some(2) && s.replication.operation.is_none()).then_some(())
        },
    )
    .await;
    all_mysql_members_hold(client, &password, &acked, "2,000 rows on every member").await;

    step("mysql: delete, empty ordinal 0's volume, apply again (without spec.primary)");
    recreate(cluster, &api, MNS, MNAME, &manifest, true).await;
    let s =
        devcluster::wait_ready(&api, MNAME, "MySQL Ready again", Duration::from_secs(300)).await;
    let primary = s.replication.primary.expect("primary");
    assert_ne!(primary, 0, "the emptied member is never the source");
    let (_, ip) = eventually("labelled primary", Duration::from_secs(30), || {
        mprimary(client, &api)
    })
    .await;
    let on_primary = ids_on(&ip, &password).await.expect("ids on the primary");
    let missing: Vec<i64> = acked
        .iter()
        .copied()
        .filter(|i| !on_primary.contains(i))
        .collect();
    assert_eq!(missing, Vec::<i64>::new(), "acknowledged rows lost");
    all_mysql_members_hold(client, &password, &acked, "every member converges").await;
    assert_eq!(
        secret_value(client, MNS, &format!("{MNAME}-auth"), "root-password").await,
        password,
        "the kept Secret is reused"
    );
    assert_eq!(mysql_writable(client, &password).await, 1);

    step("mysql: status wiped under writes");
    let (before, _) = mprimary(client, &api).await.expect("primary");
    let mut db = Db::new(
        cluster,
        Engine::MySql,
        client.clone(),
        MNS,
        MNAME,
        &password,
    );
    db.table = "app.t".into();
    let load = Load::start(&db, Route::LabelledPrimary, 100_000);
    tokio::time::sleep(Duration::from_secs(2)).await;
    wipe_status(cluster, MNS, &format!("mysqlcluster/{MNAME}")).await;
    let (after, ip) = eventually(
        "the primary labelled and recorded again",
        Duration::from_secs(30),
        || mprimary(client, &api),
    )
    .await;
    assert_eq!(after, before, "the running primary is kept");
    tokio::time::sleep(Duration::from_secs(3)).await;
    let (written, samples) = load.finish().await;
    let written: Vec<i64> = written.acked.iter().map(|i| *i as i64).collect();
    assert!(
        written.len() > 20,
        "the writer kept writing: {}",
        written.len()
    );
    assert_eq!(
        samples.max_writable, 1,
        "never two writable members ({} samples)",
        samples.taken
    );
    let on_primary = ids_on(&ip, &password).await.expect("ids");
    let lost: Vec<i64> = written
        .iter()
        .chain(acked.iter())
        .copied()
        .filter(|i| !on_primary.contains(i))
        .collect();
    assert_eq!(lost, Vec::<i64>::new(), "acknowledged rows lost");
    devcluster::wait_ready(&api, MNAME, "Ready after the wipe", Duration::from_secs(60)).await;
    let _ = cluster.diagnostics(MNS);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn recreate_and_lost_status_keep_every_acknowledged_write() {
    let cluster = DevCluster::up(IP_BLOCK);
    let client = cluster.client().await;
    let t = Instant::now();
    redis_suite(&cluster, &client).await;
    step(&format!("redis part done in {:?}", t.elapsed()));
    let t = Instant::now();
    mysql_suite(&cluster, &client).await;
    step(&format!("mysql part done in {:?}", t.elapsed()));
}
