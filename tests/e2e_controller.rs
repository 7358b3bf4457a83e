//! End to end on a real API server (the devcluster), for the cluster
//! reconciler itself: a child the API server refuses shows as a condition and
//! a Warning Event within one pass; `Ready` follows whether the primary
//! accepts writes (a Redis primary answering `NOREPLICAS` is not Ready); a
//! wiped status does not take the role labels away; with watch events held
//! back for seconds by a proxy, a switchover under writes keeps one writable
//! primary (sampled every 200 ms) and every acknowledged write.

#[path = "support/accounting.rs"]
mod accounting;
#[path = "support/devcluster.rs"]
mod devcluster;
#[path = "support/watch_delay.rs"]
mod watch_delay;

use std::time::Duration;

use accounting::{Db, Engine, Load, Route};
use devcluster::{DevCluster, cluster_status, eventually, members, secret_value};
use kube::api::{Api, Patch, PatchParams, PostParams};
use ordinal::api::{ClusterStatus, RedisReplication};

const NS: &str = "e2e-controller";

fn condition<'a>(
    s: &'a ClusterStatus,
    type_: &str,
) -> Option<&'a k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition> {
    s.conditions.iter().find(|c| c.type_ == type_)
}

/// SET on `ip`: Ok, or the server's error text.
async fn set(ip: &str, password: &str, key: &str) -> Result<(), String> {
    let mut c = accounting::redis_conn(ip, password)
        .await
        .ok_or("no connection")?;
    tokio::time::timeout(
        Duration::from_secs(2),
        redis::cmd("SET")
            .arg(key)
            .arg("v")
            .query_async::<String>(&mut c),
    )
    .await
    .map_err(|_| "timed out".to_string())?
    .map(|_| ())
    .map_err(|e| e.to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn controller_end_to_end() {
    let mut cluster = DevCluster::up(121);
    let client = cluster.client().await;
    cluster
        .kubectl(&["create", "namespace", NS])
        .expect("namespace");
    let api: Api<RedisReplication> = Api::namespaced(client.clone(), NS);
    let step = |s: &str| eprintln!("[e2e-controller] {s}");

    step(
        "a StatefulSet the API server refuses (invalid nodeSelector key) → Reconciled=False with its message, and a Warning Event",
    );
    let refused: RedisReplication = serde_json::from_value(serde_json::json!({
        "apiVersion": "ordinal.dev/v1alpha1", "kind": "RedisReplication", "metadata": {"name": "refused"},
        "spec": {"replicas": 1, "storage": {"size": "1Gi"}, "pod": {
            "nodeSelector": {"not a label key!": "x"}}}
    }))
    .expect("object");
    api.create(&PostParams::default(), &refused)
        .await
        .expect("the resource itself is valid");
    let mut reconciled = None;
    for _ in 0..120 {
        reconciled = cluster_status(&api, "refused").await.and_then(|s| {
            condition(&s, "Reconciled")
                .filter(|c| c.status == "False")
                .cloned()
        });
        if reconciled.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let Some(reconciled) = reconciled else {
        panic!(
            "no Reconciled=False on refused within 30 s; status {:?}\n{}",
            cluster_status(&api, "refused").await,
            cluster.diagnostics(NS)
        );
    };
    assert_eq!(reconciled.reason, "ChildApplyFailed");
    assert!(
        reconciled.message.contains("StatefulSet refused")
            && reconciled.message.contains("nodeSelector"),
        "the API server's message: {}",
        reconciled.message
    );
    let s = cluster_status(&api, "refused").await.expect("status");
    let ready = condition(&s, "Ready").expect("Ready");
    assert_eq!(ready.status, "False");
    let events = eventually(
        "a ChildApplyFailed Event",
        Duration::from_secs(15),
        || async {
            let out = cluster
                .kubectl(&[
                    "-n",
                    NS,
                    "get",
                    "events",
                    "--field-selector",
                    "involvedObject.name=refused,reason=ChildApplyFailed,type=Warning",
                    "-o",
                    "jsonpath={.items[*].message}",
                ])
                .ok()?;
            out.contains("nodeSelector").then_some(out)
        },
    )
    .await;
    eprintln!("event: {events}");
    let printed = cluster
        .kubectl(&["-n", NS, "get", "redisreplication", "refused"])
        .expect("kubectl get");
    assert!(printed.contains("False"), "Ready column: {printed}");
    step("fixing the spec clears it");
    api.patch(
        "refused",
        &PatchParams::default(),
        &Patch::Merge(serde_json::json!({"spec": {"pod": {"nodeSelector": null}}})),
    )
    .await
    .expect("fix");
    eventually("Reconciled=True", Duration::from_secs(30), || async {
        let s = cluster_status(&api, "refused").await?;
        condition(&s, "Reconciled")
            .filter(|c| c.status == "True")
            .map(|_| ())
    })
    .await;
    api.delete("refused", &Default::default())
        .await
        .expect("delete");

    step("durability.minReplicasToWrite = replicas-1 → Ready");
    let name = "durable";
    let rr: RedisReplication = serde_json::from_value(serde_json::json!({
        "apiVersion": "ordinal.dev/v1alpha1", "kind": "RedisReplication", "metadata": {"name": name},
        "spec": {"replicas": 2, "storage": {"size": "1Gi"},
                 "durability": {"minReplicasToWrite": 1, "minReplicasMaxLag": 2},
                 "failover": {"detectionSeconds": 5}}
    }))
    .expect("object");
    api.create(&PostParams::default(), &rr)
        .await
        .expect("create");
    devcluster::wait_ready(&api, name, "durable Ready", Duration::from_secs(180)).await;
    let password = secret_value(&client, NS, &format!("{name}-auth"), "password").await;
    let (primary, primary_ip) = eventually(
        "primary label on the recorded primary",
        Duration::from_secs(30),
        || devcluster::labelled_primary(&client, &api, NS, name),
    )
    .await;
    let replica_ip = members(&client, NS, name)
        .await
        .into_iter()
        .find(|(n, _, _)| *n != primary)
        .and_then(|(_, _, ip)| ip)
        .expect("replica ip");
    eventually("a write accepted", Duration::from_secs(30), || async {
        set(&primary_ip, &password, "before").await.ok()
    })
    .await;

    step(
        "the only replica stops (SIGSTOP) → the primary answers NOREPLICAS → Ready=False with the reason",
    );
    let pid = cluster
        .db_pid(&format!("redis-server {replica_ip}:6379"))
        .expect("replica pid");
    cluster.signal(pid, "STOP");
    let refusal = eventually("a NOREPLICAS refusal", Duration::from_secs(30), || async {
        match set(&primary_ip, &password, "during").await {
            Err(e) if e.contains("NOREPLICAS") => Some(e),
            _ => None,
        }
    })
    .await;
    eprintln!("write refused: {refusal}");
    let ready = eventually(
        "Ready=False NotEnoughReplicas",
        Duration::from_secs(30),
        || async {
            let s = cluster_status(&api, name).await?;
            condition(&s, "Ready")
                .filter(|c| c.status == "False" && c.reason == "NotEnoughReplicas")
                .cloned()
        },
    )
    .await;
    assert!(ready.message.contains("NOREPLICAS"), "{}", ready.message);
    assert!(
        set(&primary_ip, &password, "still").await.is_err(),
        "Ready=False is reported while writes are refused"
    );
    cluster.signal(pid, "CONT");
    eventually("Ready again", Duration::from_secs(60), || async {
        let s = cluster_status(&api, name).await?;
        condition(&s, "Ready")
            .filter(|c| c.status == "True")
            .map(|_| ())
    })
    .await;
    eventually("writes accepted again", Duration::from_secs(30), || async {
        set(&primary_ip, &password, "after").await.ok()
    })
    .await;

    step("status wiped → the role labels stay (sampled every 200 ms for 15 s)");
    api.patch_status(
        name,
        &PatchParams::default(),
        &Patch::Merge(serde_json::json!({"status": null})),
    )
    .await
    .expect("wipe status");
    let mut samples = 0;
    let started = std::time::Instant::now();
    while started.elapsed() < Duration::from_secs(15) {
        let pods = members(&client, NS, name).await;
        let primaries: Vec<_> = pods
            .iter()
            .filter(|(_, r, _)| r.as_deref() == Some("primary"))
            .map(|(n, _, _)| n.clone())
            .collect();
        assert_eq!(
            primaries,
            vec![primary.clone()],
            "the write Service keeps its primary after a status wipe: {pods:?}\n{}",
            cluster.diagnostics(NS)
        );
        assert!(
            pods.iter().any(|(_, r, _)| r.as_deref() == Some("replica")),
            "the read Service keeps its replica: {pods:?}"
        );
        samples += 1;
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    eprintln!("{samples} samples, labels intact");
    assert!(
        set(&primary_ip, &password, "after-wipe").await.is_ok(),
        "the labelled primary still takes writes"
    );

    api.delete(name, &Default::default()).await.expect("delete");

    step(
        "watch events held back 3 s by a proxy: switchover under writes → one primary, no acknowledged write lost",
    );
    cluster.kill_operator();
    let proxy = watch_delay::WatchDelay::start(client.clone(), Duration::from_secs(3)).await;
    let proxy_kubeconfig = cluster.state_path().join("kubeconfig-delayed");
    proxy.write_kubeconfig(&proxy_kubeconfig);
    cluster.start_operator_with(&proxy_kubeconfig);
    let name = "delayed";
    let rr: RedisReplication = serde_json::from_value(serde_json::json!({
        "apiVersion": "ordinal.dev/v1alpha1", "kind": "RedisReplication", "metadata": {"name": name},
        "spec": {"replicas": 3, "storage": {"size": "1Gi"}, "failover": {"detectionSeconds": 5}}
    }))
    .expect("object");
    api.create(&PostParams::default(), &rr)
        .await
        .expect("create");
    devcluster::wait_ready(&api, name, "delayed Ready", Duration::from_secs(240)).await;
    let password = secret_value(&client, NS, &format!("{name}-auth"), "password").await;
    eventually("primary label", Duration::from_secs(60), || {
        devcluster::labelled_primary(&client, &api, NS, name)
    })
    .await;
    let current = cluster_status(&api, name)
        .await
        .and_then(|s| s.replication.primary)
        .expect("primary");
    let target = (current + 1) % 3;
    let db = Db::new(&cluster, Engine::Redis, client.clone(), NS, name, &password);
    let load = Load::start(&db, Route::LabelledPrimary, 0);
    tokio::time::sleep(Duration::from_secs(2)).await;
    api.patch(
        name,
        &PatchParams::default(),
        &Patch::Merge(serde_json::json!({"spec": {"primary": target}})),
    )
    .await
    .expect("patch spec.primary");
    eventually("switchover done", Duration::from_secs(120), || async {
        let s = cluster_status(&api, name).await?;
        (s.replication.primary == Some(target) && s.replication.operation.is_none()).then_some(())
    })
    .await;
    let (_, target_ip) = eventually("label on the new primary", Duration::from_secs(60), || {
        devcluster::labelled_primary(&client, &api, NS, name)
    })
    .await;
    // Let stale events arrive after the switchover, under writes.
    tokio::time::sleep(Duration::from_secs(8)).await;
    let (written, samples) = load.finish().await;
    assert!(
        samples.dual.is_empty(),
        "two members answered master in the same sample: {:?}\n{}",
        samples.dual,
        cluster.diagnostics(NS)
    );
    assert!(
        written.acked.len() > 50,
        "the writer made progress: {}",
        written.acked.len()
    );
    let missing = db.missing_on(&target_ip, &written.acked).await;
    assert!(
        missing.is_empty(),
        "acknowledged writes lost: {missing:?}\n{}",
        cluster.diagnostics(NS)
    );
    let s = cluster_status(&api, name).await.expect("status");
    assert_eq!(
        s.replication.primary,
        Some(target),
        "no stale pass undid the switchover"
    );
    eprintln!(
        "{} acknowledged writes all on {target_ip}; {} samples, never two masters",
        written.acked.len(),
        samples.taken
    );
    let log = cluster.operator_log();
    let fresh_reads = log
        .matches("cache behind the last status write; planning from a fresh read")
        .count();
    assert!(
        fresh_reads > 0,
        "the delayed watch put the cache behind our writes and passes re-read the object"
    );
    eprintln!("{fresh_reads} passes re-read the cluster because the cache was behind");
    drop(proxy);
}
