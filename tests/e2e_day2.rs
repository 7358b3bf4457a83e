//! Day-2 operations end to end on one devcluster, under write loops with
//! acknowledged-write accounting: an image change rolls every member of a
//! 3-member Redis and a 3-member MariaDB cluster (replicas first, one
//! switchover, the old primary last) with the operator killed mid-roll; no
//! acknowledged write is lost. A member that does not come back stops the
//! roll; a downgrade is refused.

#[path = "support/accounting.rs"]
mod accounting;
#[path = "support/devcluster.rs"]
mod devcluster;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use accounting::{Expect, mysql_conn, mysql_missing, redis_conn, redis_missing};
use devcluster::{DevCluster, eventually, labelled_primary, members, patient, secret_value};
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod};
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use mysql_async::prelude::*;
use ordinal::api::{ClusterStatus, MySQLCluster, RedisReplication, RolloutPhase};
use ordinal::controller::kinds::ClusterResource;

const NS: &str = "e2e-day2";
const REDIS: &str = "cache";
const MARIADB: &str = "db";
const APP_USER: &str = "app";
const APP_PASSWORD: &str = "app-Passw0rd";

fn step(s: &str) {
    static START: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    let t = START.get_or_init(Instant::now).elapsed().as_secs();
    eprintln!("[e2e-day2 {t:>4}s] {s}");
}

async fn status<K: ClusterResource>(api: &Api<K>, name: &str) -> Option<ClusterStatus> {
    devcluster::cluster_status(api, name).await
}

fn condition<'a>(
    s: &'a ClusterStatus,
    type_: &str,
) -> Option<&'a k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition> {
    s.conditions.iter().find(|c| c.type_ == type_)
}

/// Pods of a cluster: name → (controller-revision-hash, database image).
async fn pod_revisions(client: &kube::Client, name: &str) -> BTreeMap<String, (String, String)> {
    let api: Api<Pod> = Api::namespaced(client.clone(), NS);
    let pods = api
        .list(&ListParams::default().labels(&format!("app.kubernetes.io/instance={name}")))
        .await
        .map(|l| l.items)
        .unwrap_or_default();
    pods.into_iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .map(|p| {
            let rev = p
                .metadata
                .labels
                .as_ref()
                .and_then(|l| l.get("controller-revision-hash").cloned())
                .unwrap_or_default();
            let image = p
                .spec
                .as_ref()
                .and_then(|s| s.containers.first())
                .and_then(|c| c.image.clone())
                .unwrap_or_default();
            (p.metadata.name.unwrap_or_default(), (rev, image))
        })
        .collect()
}

async fn update_revision(client: &kube::Client, name: &str) -> Option<String> {
    let api: Api<StatefulSet> = Api::namespaced(client.clone(), NS);
    let sts = api.get(name).await.ok()?;
    let st = sts.status?;
    (st.observed_generation >= sts.metadata.generation)
        .then_some(st.update_revision)
        .flatten()
}

/// The roll is over: every pod runs the update revision, `status.rollout`
/// is gone, `Updating` is False and the cluster is Running.
async fn rolled<K: ClusterResource>(
    client: &kube::Client,
    api: &Api<K>,
    name: &str,
    replicas: usize,
) -> Option<ClusterStatus> {
    let rev = update_revision(client, name).await?;
    let pods = pod_revisions(client, name).await;
    if pods.len() != replicas || pods.values().any(|(r, _)| *r != rev) {
        return None;
    }
    let s = status(api, name).await?;
    let updating = condition(&s, "Updating")?;
    (s.rollout.is_none()
        && updating.status == "False"
        && s.phase == ordinal::api::ClusterPhase::Running)
        .then_some(s)
}

async fn patch_spec<K: ClusterResource>(api: &Api<K>, name: &str, spec: serde_json::Value) {
    api.patch(
        name,
        &PatchParams::default(),
        &Patch::Merge(&serde_json::json!({ "spec": spec })),
    )
    .await
    .expect("patch spec");
}

// ---------- Redis: connection, writer, reads ----------

/// Writes sequential keys to whichever pod is labelled primary; returns the acknowledged ones.
fn spawn_redis_writer(
    client: kube::Client,
    password: String,
    stop: Arc<AtomicBool>,
) -> tokio::task::JoinHandle<Vec<u64>> {
    tokio::spawn(async move {
        let api: Api<RedisReplication> = Api::namespaced(client.clone(), NS);
        let mut acked = Vec::new();
        let mut target: Option<redis::aio::MultiplexedConnection> = None;
        let mut i = 0u64;
        while !stop.load(Ordering::Relaxed) {
            if target.is_none() {
                if let Some((_, ip)) = labelled_primary(&client, &api, NS, REDIS).await
                    && let Some(c) = redis_conn(&ip, &password).await
                {
                    target = Some(c);
                } else {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            }
            let Some(c) = target.as_mut() else { continue };
            let set = tokio::time::timeout(
                Duration::from_secs(2),
                redis::cmd("SET")
                    .arg(format!("w:{i}"))
                    .arg(i)
                    .query_async::<String>(c),
            )
            .await;
            match set {
                Ok(Ok(ok)) if ok == "OK" => acked.push(i),
                _ => target = None,
            }
            i += 1;
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        acked
    })
}

// ---------- MariaDB: connection, writer, reads ----------

/// Inserts rows (as an application user, whom read_only binds) into
/// whichever pod is labelled primary; returns the acknowledged ids.
fn spawn_mysql_writer(
    client: kube::Client,
    stop: Arc<AtomicBool>,
    first_id: u64,
) -> tokio::task::JoinHandle<Vec<u64>> {
    tokio::spawn(async move {
        let api: Api<MySQLCluster> = Api::namespaced(client.clone(), NS);
        let mut acked = Vec::new();
        let mut target: Option<mysql_async::Conn> = None;
        let mut i = first_id;
        while !stop.load(Ordering::Relaxed) {
            if target.is_none() {
                if let Some((_, ip)) = labelled_primary(&client, &api, NS, MARIADB).await
                    && let Some(c) = mysql_conn(&ip, APP_USER, APP_PASSWORD).await
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
                c.exec_drop("INSERT INTO app.t (id) VALUES (?)", (i,)),
            )
            .await;
            match insert {
                Ok(Ok(())) => acked.push(i),
                _ => target = None,
            }
            i += 1;
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        acked
    })
}

/// The image the devcluster agent last started a pod's database container
/// for (`DEVCLUSTER_IMAGE` in the environment it gave the process).
fn started_image(cluster: &DevCluster, pod: &str) -> Option<String> {
    let path = cluster
        .state_path()
        .join("pods")
        .join(format!("{NS}_{pod}"))
        .join("database.exec.json");
    let spec: serde_json::Value = serde_json::from_slice(&std::fs::read(path).ok()?).ok()?;
    spec["env"]
        .as_array()?
        .iter()
        .find(|kv| kv[0] == "DEVCLUSTER_IMAGE")
        .and_then(|kv| kv[1].as_str().map(str::to_string))
}

/// (requested, capacity) of each member's data claim, by ordinal.
async fn claim_sizes(client: &kube::Client, name: &str) -> Vec<(String, String)> {
    let api: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), NS);
    let mut out = Vec::new();
    for ordinal in 0..3 {
        let pvc = api
            .get(&format!("data-{name}-{ordinal}"))
            .await
            .expect("claim");
        let requested = pvc
            .spec
            .and_then(|s| s.resources)
            .and_then(|r| r.requests)
            .and_then(|r| r.get("storage").map(|q| q.0.clone()))
            .unwrap_or_default();
        let capacity = pvc
            .status
            .and_then(|s| s.capacity)
            .and_then(|c| c.get("storage").map(|q| q.0.clone()))
            .unwrap_or_default();
        out.push((requested, capacity));
    }
    out
}

async fn claim_uid(client: &kube::Client, claim: &str) -> Option<String> {
    let api: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), NS);
    api.get(claim).await.ok()?.metadata.uid
}

async fn annotate<K: ClusterResource>(api: &Api<K>, name: &str, value: Option<&str>) {
    api.patch(
        name,
        &PatchParams::default(),
        &Patch::Merge(
            &serde_json::json!({"metadata": {"annotations": {"ordinal.dev/replace": value}}}),
        ),
    )
    .await
    .expect("annotate");
}

async fn replace_annotation<K: ClusterResource>(api: &Api<K>, name: &str) -> Option<String> {
    use kube::ResourceExt;
    api.get(name)
        .await
        .ok()?
        .annotations()
        .get("ordinal.dev/replace")
        .cloned()
}

/// Wait for a roll to finish, printing its progress as it changes.
async fn wait_rolled<K: ClusterResource>(
    cluster: &DevCluster,
    api: &Api<K>,
    name: &str,
    timeout: Duration,
) -> ClusterStatus {
    let client = cluster.client().await;
    wait_roll(cluster, api, name, "rolled", timeout, || {
        rolled(&client, api, name, 3)
    })
    .await
}

/// Poll `done` until it returns a status, printing the roll's progress as it
/// changes; past the (patient) timeout, fail with what the roll waits for
/// (status, pods, events, the operator's log), to tell a slow machine from a
/// stuck roll.
async fn wait_roll<K, F, Fut>(
    cluster: &DevCluster,
    api: &Api<K>,
    name: &str,
    what: &str,
    timeout: Duration,
    mut done: F,
) -> ClusterStatus
where
    K: ClusterResource,
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<ClusterStatus>>,
{
    let timeout = patient(timeout);
    let mut last = String::new();
    let start = Instant::now();
    loop {
        if let Some(r) = status(api, name).await.and_then(|s| s.rollout) {
            let now = format!("{:?} {}", r.phase, r.message);
            if last != now {
                step(&format!("{name}: {now}"));
                last = now;
            }
        }
        if let Some(s) = done().await {
            return s;
        }
        if start.elapsed() > timeout {
            let s = status(api, name).await;
            let conditions: Vec<String> = s
                .iter()
                .flat_map(|s| &s.conditions)
                .map(|c| format!("{}={} {}: {}", c.type_, c.status, c.reason, c.message))
                .collect();
            let members: Vec<String> = s
                .iter()
                .flat_map(|s| &s.members)
                .map(|m| format!("{:?}", m))
                .collect();
            let client = cluster.client().await;
            panic!(
                "timed out after {timeout:?} waiting for {name} {what}; rollout {:?}; pods {:?}; conditions {conditions:#?}; members {members:#?}\n{}",
                s.as_ref().and_then(|s| s.rollout.as_ref()),
                pod_revisions(&client, name).await,
                cluster.diagnostics(NS)
            );
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn day2_end_to_end() {
    let started = Instant::now();
    let mut cluster = DevCluster::up(141);
    let client = cluster.client().await;
    cluster
        .kubectl(&["create", "namespace", NS])
        .expect("namespace");
    let redis_api: Api<RedisReplication> = Api::namespaced(client.clone(), NS);
    let mysql_api: Api<MySQLCluster> = Api::namespaced(client.clone(), NS);

    step("a 3-member Redis and a 3-member MariaDB cluster");
    let rr: RedisReplication = serde_json::from_value(serde_json::json!({
        "apiVersion": "ordinal.dev/v1alpha1", "kind": "RedisReplication", "metadata": {"name": REDIS},
        "spec": {"replicas": 3, "image": "redis:7.2", "storage": {"size": "1Gi"}, "failover": {"detectionSeconds": 3}}
    }))
    .expect("redis object");
    redis_api
        .create(&PostParams::default(), &rr)
        .await
        .expect("create redis");
    let my: MySQLCluster = serde_json::from_value(serde_json::json!({
        "apiVersion": "ordinal.dev/v1alpha1", "kind": "MySQLCluster", "metadata": {"name": MARIADB},
        "spec": {"replicas": 3, "flavor": "MariaDB", "image": "mariadb:10.11", "storage": {"size": "1Gi"},
                 "failover": {"detectionSeconds": 3}, "config": {"innodb_buffer_pool_size": "64M"}}
    }))
    .expect("mysql object");
    mysql_api
        .create(&PostParams::default(), &my)
        .await
        .expect("create mariadb");
    let r0 =
        devcluster::wait_ready(&redis_api, REDIS, "redis Running", Duration::from_secs(180)).await;
    let m0 = devcluster::wait_ready(
        &mysql_api,
        MARIADB,
        "mariadb Running",
        Duration::from_secs(300),
    )
    .await;
    let redis_pw = secret_value(&client, NS, &format!("{REDIS}-auth"), "password").await;
    let mysql_pw = secret_value(&client, NS, &format!("{MARIADB}-auth"), "root-password").await;
    let (_, mprimary) = eventually("mariadb primary label", Duration::from_secs(30), || {
        labelled_primary(&client, &mysql_api, NS, MARIADB)
    })
    .await;
    let mut c = mysql_conn(&mprimary, "root", &mysql_pw)
        .await
        .expect("root on primary");
    for sql in [
        "CREATE DATABASE app".to_string(),
        "CREATE TABLE app.t (id BIGINT PRIMARY KEY)".to_string(),
        format!("CREATE USER '{APP_USER}'@'%' IDENTIFIED BY '{APP_PASSWORD}'"),
        format!("GRANT ALL ON app.* TO '{APP_USER}'@'%'"),
    ] {
        c.query_drop(sql).await.expect("set up app schema");
    }
    drop(c);
    let before_redis = pod_revisions(&client, REDIS).await;
    let before_mysql = pod_revisions(&client, MARIADB).await;
    step(&format!("ready after {:?}", started.elapsed()));

    step("write loops on both; image upgrade redis:7.2 → 7.4 and mariadb:10.11 → 11.4");
    let stop = Arc::new(AtomicBool::new(false));
    let redis_writer = spawn_redis_writer(client.clone(), redis_pw.clone(), stop.clone());
    let mysql_writer = spawn_mysql_writer(client.clone(), stop.clone(), 1);
    tokio::time::sleep(Duration::from_secs(2)).await;
    patch_spec(&redis_api, REDIS, serde_json::json!({"image": "redis:7.4"})).await;
    patch_spec(
        &mysql_api,
        MARIADB,
        serde_json::json!({"image": "mariadb:11.4"}),
    )
    .await;

    step("the operator is killed mid-roll (after the first restart) and started again");
    eventually("redis roll under way", Duration::from_secs(60), || async {
        status(&redis_api, REDIS)
            .await
            .and_then(|s| s.rollout)
            .filter(|r| r.member.is_some())
    })
    .await;
    cluster.kill_operator();
    tokio::time::sleep(Duration::from_secs(3)).await;
    cluster.start_operator();

    let r1 = wait_rolled(&cluster, &redis_api, REDIS, Duration::from_secs(240)).await;
    let m1 = wait_rolled(&cluster, &mysql_api, MARIADB, Duration::from_secs(300)).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    stop.store(true, Ordering::Relaxed);
    let redis_acked = redis_writer.await.expect("redis writer");
    let mysql_acked = mysql_writer.await.expect("mysql writer");
    step(&format!(
        "rolled after {:?}: {} redis writes and {} rows acknowledged",
        started.elapsed(),
        redis_acked.len(),
        mysql_acked.len()
    ));
    for (name, before, s0, s1) in [
        (REDIS, &before_redis, &r0, &r1),
        (MARIADB, &before_mysql, &m0, &m1),
    ] {
        let after = pod_revisions(&client, name).await;
        for (pod, (rev, image)) in &after {
            let (old_rev, old_image) = &before[pod];
            assert_ne!(rev, old_rev, "{pod} restarted into the new revision");
            assert_ne!(image, old_image, "{pod} runs the new image");
        }
        assert_eq!(
            s1.replication.term,
            s0.replication.term + 1,
            "{name}: exactly one primary change (the roll's switchover)"
        );
        let last = s1
            .replication
            .last_failover
            .as_ref()
            .expect("a recorded switchover");
        assert_eq!(last.kind, ordinal::api::OperationKind::Switchover, "{name}");
        assert_eq!(
            last.from,
            s0.replication.primary.expect("primary"),
            "{name}"
        );
    }
    assert!(
        redis_acked.len() > 100 && mysql_acked.len() > 100,
        "the writers made progress"
    );
    let (_, rp) = eventually("redis primary label", Duration::from_secs(30), || {
        labelled_primary(&client, &redis_api, NS, REDIS)
    })
    .await;
    let missing = redis_missing(&rp, &redis_pw, "w:", &redis_acked, Expect::Value).await;
    assert!(
        missing.is_empty(),
        "acknowledged Redis writes lost: {missing:?}"
    );
    let (_, mp) = eventually("mariadb primary label", Duration::from_secs(30), || {
        labelled_primary(&client, &mysql_api, NS, MARIADB)
    })
    .await;
    let lost = mysql_missing(&mp, &mysql_pw, "app.t", &mysql_acked).await;
    assert!(lost.is_empty(), "acknowledged MariaDB rows lost: {lost:?}");
    let events = cluster
        .kubectl(&[
            "-n",
            NS,
            "get",
            "events",
            "-o",
            "custom-columns=R:.reason,M:.message",
        ])
        .unwrap_or_default();
    for reason in ["RolloutRestart", "RolloutSwitchover", "RolloutComplete"] {
        assert!(
            events.contains(reason),
            "Event {reason} published:\n{events}"
        );
    }
    step("every member's database was started by the agent for the new image");
    for (name, image) in [(REDIS, "redis:7.4"), (MARIADB, "mariadb:11.4")] {
        for pod in pod_revisions(&client, name).await.keys() {
            assert_eq!(
                started_image(&cluster, pod).as_deref(),
                Some(image),
                "{pod}"
            );
        }
    }

    step(
        "a restart-relevant config change rolls MariaDB again under writes (while the Redis scenarios run)",
    );
    let m_term = status(&mysql_api, MARIADB)
        .await
        .expect("status")
        .replication
        .term;
    let stop_config = Arc::new(AtomicBool::new(false));
    let config_writer = spawn_mysql_writer(client.clone(), stop_config.clone(), 10_000_000);
    tokio::time::sleep(Duration::from_secs(1)).await;
    patch_spec(
        &mysql_api,
        MARIADB,
        serde_json::json!({"config": {"innodb_buffer_pool_size": "128M"}}),
    )
    .await;

    step("a downgrade (redis:7.4 → 7.0) is refused; no pod restarts");
    let pods_before = pod_revisions(&client, REDIS).await;
    patch_spec(&redis_api, REDIS, serde_json::json!({"image": "redis:7.0"})).await;
    let refused = eventually("DowngradeRefused", Duration::from_secs(30), || async {
        status(&redis_api, REDIS)
            .await
            .filter(|s| condition(s, "Updating").is_some_and(|c| c.reason == "DowngradeRefused"))
    })
    .await;
    let msg = &condition(&refused, "Updating").expect("Updating").message;
    assert!(
        msg.contains("redis:7.0 would downgrade members running redis:7.4"),
        "{msg}"
    );
    assert_eq!(
        refused.rollout.as_ref().map(|r| r.phase),
        Some(RolloutPhase::Refused)
    );
    tokio::time::sleep(Duration::from_secs(3)).await;
    let uids_same = pod_revisions(&client, REDIS).await == pods_before;
    assert!(uids_same, "no member restarted for a refused downgrade");
    patch_spec(&redis_api, REDIS, serde_json::json!({"image": "redis:7.4"})).await;
    wait_rolled(&cluster, &redis_api, REDIS, Duration::from_secs(60)).await;

    step("a member that does not come back (a config redis-server refuses) stops the roll");
    let redis_primary = status(&redis_api, REDIS)
        .await
        .and_then(|s| s.replication.primary)
        .expect("primary");
    let first = (0..3)
        .rev()
        .find(|o| *o != redis_primary)
        .expect("a replica");
    patch_spec(
        &redis_api,
        REDIS,
        serde_json::json!({"config": {"maxmemory-policy": "not-a-policy"}}),
    )
    .await;
    let stalled = wait_roll(
        &cluster,
        &redis_api,
        REDIS,
        "roll stalled",
        Duration::from_secs(90),
        || async {
            status(&redis_api, REDIS).await.filter(|s| {
                s.rollout
                    .as_ref()
                    .is_some_and(|r| r.phase == RolloutPhase::Stalled)
            })
        },
    )
    .await;
    let r = stalled.rollout.as_ref().expect("rollout");
    assert_eq!(
        r.member,
        Some(first),
        "the first member restarted is the highest replica"
    );
    assert!(
        r.message.contains(&format!("stopped at member {first}")),
        "{}",
        r.message
    );
    assert_eq!(
        condition(&stalled, "Updating").map(|c| c.reason.as_str()),
        Some("RolloutStalled")
    );
    tokio::time::sleep(Duration::from_secs(5)).await;
    let pods = pod_revisions(&client, REDIS).await;
    for ordinal in (0..3).filter(|o| *o != first) {
        let pod = format!("{REDIS}-{ordinal}");
        assert_eq!(
            pods[&pod], pods_before[&pod],
            "{pod} was not touched past the stall"
        );
    }
    step("the config is set back: the stalled member is restarted and the roll completes");
    redis_api
        .patch(
            REDIS,
            &PatchParams::default(),
            &Patch::Json::<()>(
                serde_json::from_value(serde_json::json!([
                    {"op": "remove", "path": "/spec/config/maxmemory-policy"}
                ]))
                .expect("json patch"),
            ),
        )
        .await
        .expect("remove the bad key");
    wait_rolled(&cluster, &redis_api, REDIS, Duration::from_secs(90)).await;

    step(
        "volume growth 1Gi → 2Gi: reported while the StorageClass cannot expand, applied once it can",
    );
    cluster
        .kubectl(&[
            "patch",
            "storageclass",
            "devcluster",
            "--type=merge",
            "-p",
            r#"{"allowVolumeExpansion": false}"#,
        ])
        .expect("StorageClass without expansion");
    patch_spec(
        &redis_api,
        REDIS,
        serde_json::json!({"storage": {"size": "2Gi"}}),
    )
    .await;
    let not = eventually("ExpansionNotSupported", Duration::from_secs(30), || async {
        status(&redis_api, REDIS).await.filter(|s| {
            condition(s, "StorageInSync").is_some_and(|c| c.reason == "ExpansionNotSupported")
        })
    })
    .await;
    let msg = &condition(&not, "StorageInSync").expect("condition").message;
    assert!(
        msg.contains("StorageClass devcluster does not allow volume expansion"),
        "{msg}"
    );
    assert_eq!(
        claim_sizes(&client, REDIS).await,
        vec![("1Gi".to_string(), "1Gi".to_string()); 3]
    );
    cluster
        .kubectl(&[
            "patch",
            "storageclass",
            "devcluster",
            "--type=merge",
            "-p",
            r#"{"allowVolumeExpansion": true}"#,
        ])
        .expect("StorageClass with expansion");
    eventually("volumes expanded", Duration::from_secs(60), || async {
        status(&redis_api, REDIS).await.filter(|s| {
            condition(s, "StorageInSync")
                .is_some_and(|c| c.status == "True" && c.reason == "VolumesExpanded")
        })
    })
    .await;
    assert_eq!(
        claim_sizes(&client, REDIS).await,
        vec![("2Gi".to_string(), "2Gi".to_string()); 3]
    );

    step(
        "replace a member: refused for the primary, then a replica is wiped, re-seeded and caught up",
    );
    let s = status(&redis_api, REDIS).await.expect("status");
    let primary = s.replication.primary.expect("primary");
    let replica = (0..3).rev().find(|o| *o != primary).expect("a replica");
    annotate(&redis_api, REDIS, Some(&primary.to_string())).await;
    let refused = eventually("replacement refused", Duration::from_secs(30), || async {
        status(&redis_api, REDIS)
            .await
            .filter(|s| condition(s, "Replacing").is_some_and(|c| c.reason == "ReplaceRefused"))
    })
    .await;
    let msg = &condition(&refused, "Replacing").expect("condition").message;
    assert!(
        msg.contains(&format!("member {primary} is the primary")),
        "{msg}"
    );
    assert!(
        replace_annotation(&redis_api, REDIS).await.is_some(),
        "annotation left"
    );
    let old_claim = claim_uid(&client, &format!("data-{REDIS}-{replica}"))
        .await
        .expect("claim");
    annotate(&redis_api, REDIS, Some(&replica.to_string())).await;
    eventually("replacement done", Duration::from_secs(120), || async {
        let gone = replace_annotation(&redis_api, REDIS).await.is_none();
        let s = status(&redis_api, REDIS).await?;
        (gone && s.replacement.is_none() && condition(&s, "Replacing")?.reason != "ReplaceRefused")
            .then_some(())
    })
    .await;
    let new_claim = claim_uid(&client, &format!("data-{REDIS}-{replica}"))
        .await
        .expect("claim");
    assert_ne!(
        new_claim, old_claim,
        "member {replica} runs on a new volume"
    );
    let replica_ip = members(&client, NS, REDIS)
        .await
        .into_iter()
        .find(|(n, _, _)| *n == format!("{REDIS}-{replica}"))
        .and_then(|(_, _, ip)| ip)
        .expect("replica ip");
    let missing = redis_missing(&replica_ip, &redis_pw, "w:", &redis_acked, Expect::Value).await;
    assert!(
        missing.is_empty(),
        "re-seeded replica lacks {} acknowledged keys",
        missing.len()
    );
    let events = cluster
        .kubectl(&["-n", NS, "get", "events", "-o", "custom-columns=R:.reason"])
        .unwrap_or_default();
    assert!(
        events.contains("MemberReplaced") && events.contains("ReplaceRefused"),
        "{events}"
    );
    step(
        "the MariaDB config roll: every member restarted with the new setting, one switchover, no row lost",
    );
    let m2 = wait_rolled(&cluster, &mysql_api, MARIADB, Duration::from_secs(420)).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    stop_config.store(true, Ordering::Relaxed);
    let config_acked = config_writer.await.expect("config writer");
    assert_eq!(
        m2.replication.term,
        m_term + 1,
        "exactly one switchover in the config roll"
    );
    assert!(config_acked.len() > 100, "the writer made progress");
    for (pod, _, ip) in members(&client, NS, MARIADB).await {
        let mut c = mysql_conn(&ip.expect("ip"), "root", &mysql_pw)
            .await
            .expect("connect");
        let pool: Option<i64> = c
            .query_first("SELECT @@innodb_buffer_pool_size")
            .await
            .expect("buffer pool size");
        assert_eq!(
            pool,
            Some(128 << 20),
            "{pod} restarted with the new setting"
        );
    }
    let (_, mp) = eventually("mariadb primary label", Duration::from_secs(30), || {
        labelled_primary(&client, &mysql_api, NS, MARIADB)
    })
    .await;
    let acked: Vec<u64> = mysql_acked.iter().chain(&config_acked).copied().collect();
    let lost = mysql_missing(&mp, &mysql_pw, "app.t", &acked).await;
    assert!(lost.is_empty(), "acknowledged MariaDB rows lost: {lost:?}");
    step(&format!(
        "done after {:?}: {} more rows acknowledged during the config roll",
        started.elapsed(),
        config_acked.len()
    ));
}
