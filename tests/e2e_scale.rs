//! Steady state costs the API server nothing: with a few Ready clusters —
//! one taking writes — the operator makes no API writes (no status write, no
//! re-apply of children, no label patch) and reads its children from its
//! caches, counted by the API server's own `apiserver_request_total`.
//! The window is longer than the minute after which main wrote a status whose
//! positions, offsets or lag alone had changed (the two-member cluster under
//! writes moves them every pass): main fails here.
//! One cluster's credentials are in a Secret the user names: it is not read
//! again at steady state either, and a password rotated through it reaches
//! the member in a pass the Secret's change started (the operator logs the
//! mapping from the Secret to the cluster; main found it only on its next
//! requeued pass).
//! The scale benchmark itself is `scripts/bench-scale.sh` (BENCHMARKS.md).

#[path = "support/devcluster.rs"]
mod devcluster;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use devcluster::{DevCluster, secret_value};
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, Patch, PatchParams, PostParams};
use ordinal::api::RedisReplication;

const NS: &str = "e2e-scale";
/// Longer than the period main re-applied children on (30 s) and than the
/// minute after which it wrote positions, offsets and lag alone (60 s from
/// the last status write, which came before the window).
const WINDOW: Duration = Duration::from_secs(65);
/// The Secret cluster "b" names in `spec.auth.secretName`, and its passwords.
const NAMED: &str = "b-credentials";
const FIRST: &str = "b-first-Pw1";
const SECOND: &str = "b-second-Pw2";

/// `apiserver_request_total` summed by "VERB resource[/subresource]".
fn requests(cluster: &DevCluster) -> BTreeMap<String, f64> {
    let text = cluster
        .kubectl(&["get", "--raw", "/metrics"])
        .expect("GET /metrics");
    let mut sums = BTreeMap::new();
    for line in text.lines() {
        let Some(rest) = line.strip_prefix("apiserver_request_total{") else {
            continue;
        };
        let Some((labels, value)) = rest.rsplit_once("} ") else {
            continue;
        };
        let labels: BTreeMap<&str, &str> = labels
            .split("\",")
            .filter_map(|kv| kv.split_once("=\""))
            .map(|(k, v)| (k, v.trim_end_matches('"')))
            .collect();
        let resource = labels.get("resource").copied().unwrap_or_default();
        if resource.is_empty() {
            continue;
        }
        let verb = labels.get("verb").copied().unwrap_or_default();
        let key = match labels.get("subresource").copied().unwrap_or_default() {
            "" => format!("{verb} {resource}"),
            sub => format!("{verb} {resource}/{sub}"),
        };
        *sums.entry(key).or_insert(0.0) += value.trim().parse::<f64>().unwrap_or(0.0);
    }
    sums
}

fn delta(before: &BTreeMap<String, f64>, after: &BTreeMap<String, f64>) -> BTreeMap<String, f64> {
    after
        .iter()
        .map(|(k, v)| (k.clone(), v - before.get(k).copied().unwrap_or(0.0)))
        .filter(|(_, d)| *d > 0.0)
        .collect()
}

/// Requests only this operator makes (the devcluster's controller-manager
/// and agent write statuses of pods, StatefulSets and budgets, not these).
fn operators(verb: &str, resource: &str) -> bool {
    let writes = ["POST", "PUT", "PATCH", "DELETE", "APPLY"];
    let write_targets = [
        "redisreplications",
        "redisreplications/status",
        "statefulsets",
        "services",
        "configmaps",
        "poddisruptionbudgets",
        "secrets",
        "pods",
    ];
    writes.contains(&verb) && write_targets.contains(&resource)
}

/// Whether a Redis member at `ip` accepts `password` (PING answered).
async fn accepts(ip: &str, password: &str) -> bool {
    use redis::IntoConnectionInfo;
    let info = redis::ConnectionAddr::Tcp(ip.to_string(), 6379)
        .into_connection_info()
        .expect("info")
        .set_redis_settings(redis::RedisConnectionInfo::default().set_password(password));
    let ping = async {
        let client = redis::Client::open(info).ok()?;
        let mut c = client.get_multiplexed_async_connection().await.ok()?;
        let pong: String = redis::cmd("PING").query_async(&mut c).await.ok()?;
        Some(pong)
    };
    matches!(
        tokio::time::timeout(Duration::from_secs(3), ping).await,
        Ok(Some(_))
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn idle_clusters_and_light_writes_cost_no_api_writes() {
    let mut cluster = DevCluster::up(141);
    let client = cluster.client().await;
    cluster
        .kubectl(&["create", "namespace", NS])
        .expect("namespace");
    let api: Api<RedisReplication> = Api::namespaced(client.clone(), NS);
    let secrets: Api<Secret> = Api::namespaced(client.clone(), NS);
    let named: Secret = serde_json::from_value(serde_json::json!({
        "apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": NAMED},
        "stringData": {"password": FIRST}
    }))
    .expect("Secret");
    secrets
        .create(&PostParams::default(), &named)
        .await
        .expect("create the named Secret");
    for (name, replicas) in [("a", 1), ("b", 1), ("c", 2)] {
        let mut spec = serde_json::json!({"replicas": replicas, "storage": {"size": "1Gi"}});
        if name == "b" {
            spec["auth"] = serde_json::json!({"secretName": NAMED});
        }
        let rr: RedisReplication = serde_json::from_value(serde_json::json!({
            "apiVersion": "ordinal.dev/v1alpha1", "kind": "RedisReplication",
            "metadata": {"name": name},
            "spec": spec
        }))
        .expect("object");
        api.create(&PostParams::default(), &rr)
            .await
            .expect("create");
    }
    for name in ["a", "b", "c"] {
        devcluster::wait_ready(&api, name, name, Duration::from_secs(180)).await;
    }
    // Let the first passes after Ready (members joining, labels) settle.
    devcluster::eventually(
        "c has its replica linked",
        Duration::from_secs(60),
        || async {
            let s = devcluster::cluster_status(&api, "c").await?;
            (s.members.len() == 2 && s.members.iter().all(|m| m.reachable)).then_some(())
        },
    )
    .await;
    tokio::time::sleep(Duration::from_secs(5)).await;

    // Writes on the two-member cluster move offsets and lag every pass.
    let password = secret_value(&client, NS, "c-auth", "password").await;
    let primary = devcluster::eventually("c's primary", Duration::from_secs(30), || {
        devcluster::labelled_primary(&client, &api, NS, "c")
    })
    .await;
    let stop = Arc::new(AtomicBool::new(false));
    let written = Arc::new(AtomicU64::new(0));
    let writer = {
        let (stop, written, ip) = (stop.clone(), written.clone(), primary.1.clone());
        tokio::spawn(async move {
            use redis::IntoConnectionInfo;
            let info = redis::ConnectionAddr::Tcp(ip, 6379)
                .into_connection_info()
                .expect("info")
                .set_redis_settings(redis::RedisConnectionInfo::default().set_password(password));
            let client = redis::Client::open(info).expect("client");
            let mut c = client
                .get_multiplexed_async_connection()
                .await
                .expect("connect to c's primary");
            while !stop.load(Ordering::Relaxed) {
                let _: i64 = redis::cmd("INCR")
                    .arg("counter")
                    .query_async(&mut c)
                    .await
                    .expect("INCR");
                written.fetch_add(1, Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
    };

    let before = requests(&cluster);
    let rv_before: Vec<_> = api
        .list(&Default::default())
        .await
        .expect("list")
        .items
        .iter()
        .map(|r| r.metadata.resource_version.clone())
        .collect();
    tokio::time::sleep(WINDOW).await;
    let after = requests(&cluster);
    stop.store(true, Ordering::Relaxed);
    writer.await.expect("writer");
    let changes = delta(&before, &after);
    eprintln!("requests in {WINDOW:?}: {changes:#?}");
    assert!(
        written.load(Ordering::Relaxed) > 100,
        "the writer made progress"
    );

    let writes: Vec<_> = changes
        .iter()
        .filter(|(k, _)| {
            let (verb, resource) = k.split_once(' ').unwrap_or_default();
            operators(verb, resource)
        })
        .collect();
    assert!(
        writes.is_empty(),
        "API writes at steady state: {writes:?}\n{}",
        cluster.operator_log()
    );
    let rv_after: Vec<_> = api
        .list(&Default::default())
        .await
        .expect("list")
        .items
        .iter()
        .map(|r| r.metadata.resource_version.clone())
        .collect();
    assert_eq!(rv_before, rv_after, "no status write");
    // Reads come from the caches. Secrets and StatefulSets are read by this
    // operator only (the devcluster's agent lists pods, Services and claims
    // and reads ConfigMaps on its own): well under 0.2/s per cluster.
    let reads: f64 = changes
        .iter()
        .filter(|(k, _)| {
            let (verb, resource) = k.split_once(' ').unwrap_or_default();
            matches!(verb, "GET" | "LIST") && ["secrets", "statefulsets"].contains(&resource)
        })
        .map(|(_, v)| v)
        .sum();
    assert!(
        reads / WINDOW.as_secs_f64() < 0.2 * 3.0 / 10.0,
        "{reads} reads of Secrets and StatefulSets in {WINDOW:?}"
    );
    // Not even the Secret "b" names, which no managed-object watch holds.
    assert_eq!(
        changes.get("GET secrets"),
        None,
        "Secrets read at steady state"
    );

    // A password rotated through the named Secret reaches b's member.
    let (_, ip) = devcluster::eventually("b's primary", Duration::from_secs(30), || {
        devcluster::labelled_primary(&client, &api, NS, "b")
    })
    .await;
    assert!(accepts(&ip, FIRST).await, "b runs with the named password");
    let rotation = serde_json::json!({
        "stringData": {"password": SECOND, "previous-password": FIRST}
    });
    let rotated_at = std::time::Instant::now();
    let mapped = |log: &str| {
        log.lines()
            .filter(|l| l.contains("passing them") && l.contains(NAMED))
            .count()
    };
    let mapped_before = mapped(&cluster.operator_log());
    secrets
        .patch(NAMED, &PatchParams::default(), &Patch::Merge(&rotation))
        .await
        .expect("rotate the named Secret");
    devcluster::eventually(
        "b to accept the rotated password",
        Duration::from_secs(60),
        || async { accepts(&ip, SECOND).await.then_some(()) },
    )
    .await;
    devcluster::eventually(
        "b to refuse the old password",
        Duration::from_secs(30),
        || async { (!accepts(&ip, FIRST).await).then_some(()) },
    )
    .await;
    eprintln!(
        "rotation through {NAMED} done in {:?}",
        rotated_at.elapsed()
    );
    // The Secret's change itself started b's pass (not only the requeue).
    assert!(
        mapped(&cluster.operator_log()) > mapped_before,
        "the change of {NAMED} was not mapped to b:\n{}",
        cluster.operator_log()
    );
    cluster.kill_operator();
}
