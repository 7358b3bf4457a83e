//! End to end on a real API server (the devcluster): a RedisReplication is
//! applied, replicates, fails over, switches over without losing writes,
//! survives an operator crash mid-failover, scales without ever removing the
//! primary, and is deleted leaving its volumes.

#[path = "support/devcluster.rs"]
mod devcluster;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use devcluster::{DevCluster, eventually, members, secret_value};
use kube::api::{Api, Patch, PatchParams, PostParams};
use ordinal::api::{ClusterPhase, RedisReplication};

const NS: &str = "e2e-redis";
const NAME: &str = "cache";

async fn status(api: &Api<RedisReplication>) -> Option<ordinal::api::ClusterStatus> {
    devcluster::cluster_status(api, NAME).await
}

async fn wait_ready(
    api: &Api<RedisReplication>,
    what: &str,
    timeout: Duration,
) -> ordinal::api::ClusterStatus {
    devcluster::wait_ready(api, NAME, what, timeout).await
}

async fn labelled_primary(
    client: &kube::Client,
    api: &Api<RedisReplication>,
) -> Option<(String, String)> {
    devcluster::labelled_primary(client, api, NS, NAME).await
}

async fn conn(ip: &str, password: &str) -> Option<redis::aio::MultiplexedConnection> {
    use redis::IntoConnectionInfo;
    let info = redis::ConnectionAddr::Tcp(ip.to_string(), 6379)
        .into_connection_info()
        .ok()?
        .set_redis_settings(redis::RedisConnectionInfo::default().set_password(password));
    let client = redis::Client::open(info).ok()?;
    tokio::time::timeout(
        Duration::from_secs(1),
        client.get_multiplexed_async_connection(),
    )
    .await
    .ok()?
    .ok()
}

async fn get(ip: &str, password: &str, key: &str) -> Option<String> {
    let mut c = conn(ip, password).await?;
    redis::cmd("GET").arg(key).query_async(&mut c).await.ok()
}

async fn role(ip: &str, password: &str) -> Option<String> {
    let mut c = conn(ip, password).await?;
    let v: Vec<redis::Value> = redis::cmd("ROLE").query_async(&mut c).await.ok()?;
    match v.first() {
        Some(redis::Value::BulkString(b)) => Some(String::from_utf8_lossy(b).into_owned()),
        Some(redis::Value::SimpleString(s)) => Some(s.clone()),
        _ => None,
    }
}

/// Every reachable member agrees on one master.
async fn single_master(client: &kube::Client, password: &str) -> Option<String> {
    let mut masters = BTreeSet::new();
    for (name, _, ip) in members(client, NS, NAME).await {
        if let Some(ip) = ip
            && role(&ip, password).await.as_deref() == Some("master")
        {
            masters.insert(name);
        }
    }
    (masters.len() == 1).then(|| masters.into_iter().next().unwrap_or_default())
}

/// Writes sequential keys to whichever pod is labelled primary; returns the acknowledged ones.
fn spawn_writer(
    client: kube::Client,
    password: String,
    stop: Arc<AtomicBool>,
) -> tokio::task::JoinHandle<Vec<String>> {
    tokio::spawn(async move {
        let api: Api<RedisReplication> = Api::namespaced(client.clone(), NS);
        let mut acked = Vec::new();
        let mut target: Option<(String, redis::aio::MultiplexedConnection)> = None;
        let mut i = 0u64;
        while !stop.load(Ordering::Relaxed) {
            if target.is_none() {
                if let Some((_, ip)) = labelled_primary(&client, &api).await
                    && let Some(c) = conn(&ip, &password).await
                {
                    target = Some((ip, c));
                } else {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            }
            let key = format!("w:{i}");
            let Some((_, c)) = target.as_mut() else {
                continue;
            };
            let set = tokio::time::timeout(
                Duration::from_secs(2),
                redis::cmd("SET").arg(&key).arg(i).query_async::<String>(c),
            )
            .await;
            match set {
                Ok(Ok(ok)) if ok == "OK" => {
                    acked.push(key);
                    i += 1;
                }
                _ => target = None,
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        acked
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn redis_end_to_end() {
    let mut cluster = DevCluster::up(101);
    let client = cluster.client().await;
    cluster
        .kubectl(&["create", "namespace", NS])
        .expect("namespace");
    let api: Api<RedisReplication> = Api::namespaced(client.clone(), NS);
    let step = |s: &str| eprintln!("[e2e-redis] {s}");

    step("invalid resources are refused by the API server with the CEL message");
    let bad: RedisReplication = serde_json::from_value(serde_json::json!({
        "apiVersion": "ordinal.dev/v1alpha1", "kind": "RedisReplication", "metadata": {"name": "bad"},
        "spec": {"replicas": 2, "primary": 4, "config": {"slaveof": "evil 6379"}}
    }))
    .expect("object");
    let err = api
        .create(&PostParams::default(), &bad)
        .await
        .expect_err("refused")
        .to_string();
    assert!(
        err.contains("spec.primary must be an ordinal below spec.replicas"),
        "{err}"
    );
    assert!(
        err.contains("config key slaveof is managed by Ordinal"),
        "{err}"
    );

    step("apply → Ready, roles labelled, data replicates");
    let rr: RedisReplication = serde_json::from_value(serde_json::json!({
        "apiVersion": "ordinal.dev/v1alpha1", "kind": "RedisReplication", "metadata": {"name": NAME},
        "spec": {"replicas": 3, "storage": {"size": "1Gi"}, "failover": {"detectionSeconds": 3}}
    }))
    .expect("object");
    api.create(&PostParams::default(), &rr)
        .await
        .expect("create");
    let ready = wait_ready(&api, "3 members Running", Duration::from_secs(180)).await;
    assert_eq!(ready.replication.primary, Some(0));
    let password = secret_value(&client, NS, &format!("{NAME}-auth"), "password").await;
    let (primary, primary_ip) = eventually(
        "primary label on the recorded primary",
        Duration::from_secs(30),
        || labelled_primary(&client, &api),
    )
    .await;
    assert_eq!(primary, format!("{NAME}-0"));
    let pods = members(&client, NS, NAME).await;
    assert_eq!(
        pods.iter()
            .filter(|(_, r, _)| r.as_deref() == Some("replica"))
            .count(),
        2,
        "{pods:?}"
    );
    let mut c = conn(&primary_ip, &password).await.expect("connect primary");
    let _: () = redis::cmd("SET")
        .arg("hello")
        .arg("world")
        .query_async(&mut c)
        .await
        .expect("SET");
    for (name, _, ip) in pods.iter().filter(|(n, _, _)| *n != primary) {
        let ip = ip.clone().expect("ip");
        let got = eventually(&format!("hello on {name}"), Duration::from_secs(10), || {
            get(&ip, &password, "hello")
        })
        .await;
        assert_eq!(got, "world");
    }

    step(
        "the primary hangs (SIGSTOP) past the detection window → failover, labels move, it returns as a replica",
    );
    let pid = cluster
        .db_pid(&format!("redis-server {primary_ip}:6379"))
        .expect("primary pid");
    cluster.signal(pid, "STOP");
    let (new_primary, new_ip) = eventually(
        "a new labelled primary",
        Duration::from_secs(60),
        || async {
            labelled_primary(&client, &api)
                .await
                .filter(|(n, _)| *n != primary)
        },
    )
    .await;
    let mut c = conn(&new_ip, &password).await.expect("connect new primary");
    let _: () = redis::cmd("SET")
        .arg("after-failover")
        .arg("1")
        .query_async(&mut c)
        .await
        .expect("writes resume");
    assert_eq!(
        get(&new_ip, &password, "hello").await.as_deref(),
        Some("world"),
        "data kept"
    );
    cluster.resume_if_running(pid);
    eventually(
        "the old primary fenced into a replica",
        Duration::from_secs(60),
        || async { (role(&primary_ip, &password).await.as_deref() == Some("slave")).then_some(()) },
    )
    .await;
    let s = wait_ready(&api, "Ready after failover", Duration::from_secs(60)).await;
    assert_eq!(s.replication.term, 2);
    assert_eq!(
        s.replication.last_failover.as_ref().map(|f| f.to),
        Some(s.replication.primary.expect("primary"))
    );
    assert_eq!(
        single_master(&client, &password).await,
        Some(new_primary.clone())
    );

    step("SIGKILL of the primary's redis-server → one writable primary again, data intact");
    let pid = cluster
        .db_pid(&format!("redis-server {new_ip}:6379"))
        .expect("pid");
    cluster.signal(pid, "KILL");
    let (_, ip) = eventually(
        "a labelled, writable primary",
        Duration::from_secs(90),
        || async {
            let (n, ip) = labelled_primary(&client, &api).await?;
            let mut c = conn(&ip, &password).await?;
            let ok: String = redis::cmd("SET")
                .arg("after-kill")
                .arg("1")
                .query_async(&mut c)
                .await
                .ok()?;
            (ok == "OK").then_some((n, ip))
        },
    )
    .await;
    assert_eq!(
        get(&ip, &password, "after-failover").await.as_deref(),
        Some("1")
    );
    // The operator noticed the kill through its primary watch (the
    // persistent connection to the confirmed primary broke), not only at a
    // later steady pass.
    let watched = format!("{new_ip}:6379");
    assert!(
        cluster
            .operator_log()
            .lines()
            .any(|l| l.contains("primary watch connection broke") && l.contains(&watched)),
        "no primary watch of {watched} fired in the operator log"
    );
    wait_ready(&api, "Ready after SIGKILL", Duration::from_secs(90)).await;
    assert!(single_master(&client, &password).await.is_some());

    step("deleting the primary pod → it is recreated, one writable primary, data intact");
    let (victim, _) = labelled_primary(&client, &api).await.expect("primary");
    cluster
        .kubectl(&["-n", NS, "delete", "pod", &victim, "--wait=false"])
        .expect("delete pod");
    let ip = eventually(
        "a labelled, writable primary after the pod deletion",
        Duration::from_secs(120),
        || async {
            let (_, ip) = labelled_primary(&client, &api).await?;
            let mut c = conn(&ip, &password).await?;
            let ok: String = redis::cmd("SET")
                .arg("after-delete")
                .arg("1")
                .query_async(&mut c)
                .await
                .ok()?;
            (ok == "OK").then_some(ip)
        },
    )
    .await;
    assert_eq!(
        get(&ip, &password, "after-kill").await.as_deref(),
        Some("1")
    );
    wait_ready(
        &api,
        "Ready after the pod deletion",
        Duration::from_secs(120),
    )
    .await;
    assert!(single_master(&client, &password).await.is_some());

    step("switchover through spec.primary under a write loop → no acknowledged write lost");
    let current = status(&api)
        .await
        .and_then(|s| s.replication.primary)
        .expect("primary");
    let target = (current + 1) % 3;
    let stop = Arc::new(AtomicBool::new(false));
    let writer = spawn_writer(client.clone(), password.clone(), stop.clone());
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
        Duration::from_secs(60),
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
        acked.len() > 50,
        "the writer made progress: {}",
        acked.len()
    );
    let mut c = conn(&target_ip, &password).await.expect("connect");
    let mut missing = Vec::new();
    for key in &acked {
        let v: Option<String> = redis::cmd("GET")
            .arg(key)
            .query_async(&mut c)
            .await
            .expect("GET");
        if v.is_none() {
            missing.push(key.clone());
        }
    }
    assert!(
        missing.is_empty(),
        "acknowledged writes lost in the switchover: {missing:?}\n{}",
        cluster.diagnostics(NS)
    );
    let s = wait_ready(&api, "Ready after switchover", Duration::from_secs(60)).await;
    assert_eq!(
        s.replication.last_failover.map(|f| f.kind),
        Some(ordinal::api::OperationKind::Switchover)
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
    let pid = cluster
        .db_pid(&format!("redis-server {old_ip}:6379"))
        .expect("pid");
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
        Duration::from_secs(90),
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
        Duration::from_secs(90),
    )
    .await;
    assert_eq!(single_master(&client, &password).await, Some(after));

    step("scale 3 → 5 → 2 → 3: the primary is never removed, volumes are kept and re-used");
    api.patch(
        NAME,
        &PatchParams::default(),
        &Patch::Merge(serde_json::json!({"spec": {"replicas": 5}})),
    )
    .await
    .expect("scale up");
    eventually("5 members Running", Duration::from_secs(180), || async {
        let s = status(&api).await?;
        (s.phase == ClusterPhase::Running && s.ready_replicas == 5).then_some(())
    })
    .await;
    // Make the highest ordinal the primary, so the scale-down has to move it first.
    api.patch(
        NAME,
        &PatchParams::default(),
        &Patch::Merge(serde_json::json!({"spec": {"primary": 4}})),
    )
    .await
    .expect("switch to 4");
    eventually("member 4 primary", Duration::from_secs(60), || async {
        (status(&api).await?.replication.primary == Some(4)).then_some(())
    })
    .await;
    api.patch(
        NAME,
        &PatchParams::default(),
        &Patch::Merge(serde_json::json!({"spec": {"replicas": 2, "primary": null}})),
    )
    .await
    .expect("scale down");
    let s = eventually(
        "2 members Running with the primary among them",
        Duration::from_secs(180),
        || async {
            let s = status(&api).await?;
            let pods = members(&client, NS, NAME).await;
            (s.phase == ClusterPhase::Running
                && pods.len() == 2
                && s.replication.primary.is_some_and(|p| p < 2))
            .then_some(s)
        },
    )
    .await;
    assert!(s.replication.primary.is_some_and(|p| p < 2));
    let pvcs = cluster
        .kubectl(&["-n", NS, "get", "pvc", "-o", "name"])
        .expect("pvcs");
    assert_eq!(
        pvcs.lines().count(),
        5,
        "volumes of removed members are kept: {pvcs}"
    );
    let primary_ip = labelled_primary(&client, &api).await.expect("primary").1;
    assert_eq!(
        get(&primary_ip, &password, "hello").await.as_deref(),
        Some("world"),
        "data survived it all"
    );
    api.patch(
        NAME,
        &PatchParams::default(),
        &Patch::Merge(serde_json::json!({"spec": {"replicas": 3}})),
    )
    .await
    .expect("scale up again");
    let ip2 = eventually(
        "member 2 back, replicating",
        Duration::from_secs(120),
        || async {
            let s = status(&api).await?;
            let pods = members(&client, NS, NAME).await;
            let (_, role, ip) = pods
                .into_iter()
                .find(|(n, _, _)| *n == format!("{NAME}-2"))?;
            (s.phase == ClusterPhase::Running && role.as_deref() == Some("replica")).then_some(ip?)
        },
    )
    .await;
    let claim = cluster
        .kubectl(&[
            "-n",
            NS,
            "get",
            "pod",
            &format!("{NAME}-2"),
            "-o",
            "jsonpath={.spec.volumes[?(@.name==\"data\")].persistentVolumeClaim.claimName}",
        ])
        .expect("claim");
    assert_eq!(
        claim,
        format!("data-{NAME}-2"),
        "the kept volume is re-used"
    );
    assert_eq!(
        cluster
            .kubectl(&["-n", NS, "get", "pvc", "-o", "name"])
            .expect("pvcs")
            .lines()
            .count(),
        5
    );
    assert_eq!(
        get(&ip2, &password, "hello").await.as_deref(),
        Some("world")
    );

    step("delete → children gone, volumes kept");
    api.delete(NAME, &Default::default()).await.expect("delete");
    eventually(
        "children garbage-collected",
        Duration::from_secs(120),
        || async {
            let sts = cluster
                .kubectl(&[
                    "-n",
                    NS,
                    "get",
                    "statefulset,service,configmap,poddisruptionbudget",
                    "-l",
                    "app.kubernetes.io/instance=cache",
                    "-o",
                    "name",
                ])
                .ok()?;
            let rr = api.get_opt(NAME).await.ok()?;
            (sts.trim().is_empty() && rr.is_none()).then_some(())
        },
    )
    .await;
    let pvcs = cluster
        .kubectl(&["-n", NS, "get", "pvc", "-o", "name"])
        .expect("pvcs");
    assert_eq!(
        pvcs.lines().count(),
        5,
        "PVCs are retained by default: {pvcs}"
    );
    let _ = cluster.diagnostics(NS);
}
