//! End to end on a real API server (the devcluster), for the cluster
//! reconciler itself: a child the API server refuses shows as a condition and
//! a Warning Event within one pass; `Ready` follows whether the primary
//! accepts writes (a Redis primary answering `NOREPLICAS` is not Ready); a
//! wiped status does not take the role labels away.

#[path = "support/devcluster.rs"]
mod devcluster;

use std::time::Duration;

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

/// SET on `ip`: Ok, or the server's error text.
async fn set(ip: &str, password: &str, key: &str) -> Result<(), String> {
    let mut c = conn(ip, password).await.ok_or("no connection")?;
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
    let cluster = DevCluster::up(121);
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
}
