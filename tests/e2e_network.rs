//! End to end on the devcluster's netns network (pods in their own network
//! namespaces, real EndpointSlices, kube-proxy): the write Service's
//! ClusterIP reaches the primary, and after a switchover the same ClusterIP
//! reaches the new primary for new connections, while a connection opened
//! before stays on the old pod (now a read-only replica). Partitions cut the
//! test process, the operator or a replica off a pod and heal again.

#[path = "support/devcluster.rs"]
mod devcluster;

use std::time::Duration;

use devcluster::{DevCluster, eventually, labelled_primary, secret_value, wait_ready};
use kube::api::{Api, Patch, PatchParams, PostParams};
use ordinal::api::RedisReplication;

const NS: &str = "e2e-net";
const NAME: &str = "net";

fn step(s: &str) {
    eprintln!("[e2e-network] {s}");
}

async fn conn(host: &str, password: &str) -> Option<redis::aio::MultiplexedConnection> {
    use redis::IntoConnectionInfo;
    let info = redis::ConnectionAddr::Tcp(host.to_string(), 6379)
        .into_connection_info()
        .ok()?
        .set_redis_settings(redis::RedisConnectionInfo::default().set_password(password));
    let client = redis::Client::open(info).ok()?;
    let cfg = redis::AsyncConnectionConfig::new()
        .set_connection_timeout(Some(Duration::from_secs(2)))
        .set_response_timeout(Some(Duration::from_secs(2)));
    client
        .get_multiplexed_async_connection_with_config(&cfg)
        .await
        .ok()
}

/// The server-side address of a connection (`CLIENT INFO` laddr), i.e. the
/// pod a ClusterIP connection was sent to, and the server's role.
async fn where_and_role(c: &mut redis::aio::MultiplexedConnection) -> Option<(String, String)> {
    let info: String = redis::cmd("CLIENT").arg("INFO").query_async(c).await.ok()?;
    let laddr = info
        .split_whitespace()
        .find_map(|f| f.strip_prefix("laddr="))?;
    let ip = laddr.rsplit_once(':')?.0.to_owned();
    let v: Vec<redis::Value> = redis::cmd("ROLE").query_async(c).await.ok()?;
    let role = match v.first() {
        Some(redis::Value::BulkString(b)) => String::from_utf8_lossy(b).into_owned(),
        Some(redis::Value::SimpleString(s)) => s.clone(),
        _ => return None,
    };
    Some((ip, role))
}

async fn get(host: &str, password: &str, key: &str) -> Option<String> {
    let mut c = conn(host, password).await?;
    redis::cmd("GET").arg(key).query_async(&mut c).await.ok()?
}

fn pod_ip(cluster: &DevCluster, pod: &str) -> String {
    cluster
        .kubectl(&[
            "-n",
            NS,
            "get",
            "pod",
            pod,
            "-o",
            "jsonpath={.status.podIP}",
        ])
        .expect("pod ip")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn cluster_ip_follows_the_primary_and_partitions_cut_traffic() {
    let mut cluster = DevCluster::up_netns_without_operator(105);
    assert!(cluster.netns());
    cluster.start_operator();
    let client = cluster.client().await;
    cluster
        .kubectl(&["create", "namespace", NS])
        .expect("namespace");
    let api: Api<RedisReplication> = Api::namespaced(client.clone(), NS);

    step("the kubernetes Service has the API server's in-cluster endpoint");
    let kube_eps = cluster
        .kubectl(&[
            "-n",
            "default",
            "get",
            "endpointslices",
            "-l",
            "kubernetes.io/service-name=kubernetes",
            "-o",
            "jsonpath={.items[*].endpoints[*].addresses[*]}",
        ])
        .expect("endpointslices");
    assert_eq!(kube_eps.trim(), "10.244.105.2", "kubernetes endpoints");

    step("a 3-member RedisReplication becomes Ready");
    let rr: RedisReplication = serde_json::from_value(serde_json::json!({
        "apiVersion": "ordinal.dev/v1alpha1", "kind": "RedisReplication", "metadata": {"name": NAME},
        "spec": {"replicas": 3, "storage": {"size": "1Gi"}, "failover": {"detectionSeconds": 3}}
    }))
    .expect("object");
    api.create(&PostParams::default(), &rr)
        .await
        .expect("create");
    wait_ready(&api, NAME, "3 members Running", Duration::from_secs(180)).await;
    let password = secret_value(&client, NS, &format!("{NAME}-auth"), "password").await;
    let (primary, primary_ip) = eventually("labelled primary", Duration::from_secs(30), || {
        labelled_primary(&client, &api, NS, NAME)
    })
    .await;
    assert!(
        primary_ip.starts_with("10.244.105."),
        "pod IPs come from the pod CIDR: {primary_ip}"
    );

    step("EndpointSlices of the write Service list the primary's pod address");
    let svc = format!("{NAME}-primary");
    let selector = format!("kubernetes.io/service-name={svc}");
    let slice_addrs = || {
        cluster
            .kubectl(&[
                "-n",
                NS,
                "get",
                "endpointslices",
                "-l",
                &selector,
                "-o",
                "jsonpath={.items[*].endpoints[*].addresses[*]}",
            ])
            .unwrap_or_default()
    };
    let addrs = eventually(
        "endpointslice of the primary",
        Duration::from_secs(30),
        || {
            let a = slice_addrs();
            let ok = a.trim() == primary_ip;
            async move { ok.then_some(a) }
        },
    )
    .await;
    step(&format!("{svc} endpoints: {addrs}"));
    let cluster_ip = cluster
        .kubectl(&[
            "-n",
            NS,
            "get",
            "svc",
            &svc,
            "-o",
            "jsonpath={.spec.clusterIP}",
        ])
        .expect("clusterIP");
    assert!(
        cluster_ip.starts_with("10.96.105."),
        "ClusterIP from the service CIDR: {cluster_ip}"
    );

    step("through `devcluster run`, redis-cli -h <ClusterIP> answers role:master");
    let info = cluster
        .exec_in_netns(&[
            "redis-cli",
            "-h",
            &cluster_ip,
            "-a",
            &password,
            "--no-auth-warning",
            "info",
            "replication",
        ])
        .expect("redis-cli through the ClusterIP");
    assert!(info.contains("role:master"), "{info}");

    step("from the test process too; the connection lands on the primary pod");
    let mut before = eventually(
        "a connection through the ClusterIP",
        Duration::from_secs(20),
        || conn(&cluster_ip, &password),
    )
    .await;
    let (landed, role) = where_and_role(&mut before).await.expect("client info");
    assert_eq!(
        (landed.as_str(), role.as_str()),
        (primary_ip.as_str(), "master")
    );
    let _: () = redis::cmd("SET")
        .arg("before")
        .arg("1")
        .query_async(&mut before)
        .await
        .expect("SET through the ClusterIP");

    step("switchover: the same ClusterIP reaches the new primary for new connections");
    let target = if primary == format!("{NAME}-0") { 1 } else { 0 };
    api.patch(
        NAME,
        &PatchParams::default(),
        &Patch::Merge(serde_json::json!({"spec": {"primary": target}})),
    )
    .await
    .expect("patch spec.primary");
    let (new_primary, new_ip) =
        eventually("the new primary labelled", Duration::from_secs(90), || {
            let (client, api) = (client.clone(), api.clone());
            async move {
                labelled_primary(&client, &api, NS, NAME)
                    .await
                    .filter(|(p, _)| *p == format!("{NAME}-{target}"))
            }
        })
        .await;
    let (landed, role) = eventually(
        "a new ClusterIP connection on the new primary",
        Duration::from_secs(30),
        || {
            let (cip, pw, new_ip) = (cluster_ip.clone(), password.clone(), new_ip.clone());
            async move {
                let mut c = conn(&cip, &pw).await?;
                where_and_role(&mut c)
                    .await
                    .filter(|(ip, role)| *ip == new_ip && role == "master")
            }
        },
    )
    .await;
    step(&format!(
        "new connection: {landed} ({role}), primary {new_primary}"
    ));
    assert_eq!(
        slice_addrs().trim(),
        new_ip,
        "the write Service's EndpointSlice follows the primary"
    );

    step("a connection opened before the switchover never writes to the new primary");
    // conntrack keeps it on the pod it was sent to: it either still talks to
    // the old pod, now a replica that refuses writes, or it was closed.
    let set: redis::RedisResult<String> = redis::cmd("SET")
        .arg("after")
        .arg("1")
        .query_async(&mut before)
        .await;
    match where_and_role(&mut before).await {
        Some((ip, role)) => {
            step(&format!(
                "old connection still open: on {ip} as {role}; SET → {set:?}"
            ));
            assert_eq!(ip, primary_ip, "an established connection is not moved");
            assert_eq!(role, "slave");
            let err = set.expect_err("the old primary refuses writes");
            let msg = err.to_string().to_lowercase();
            assert!(
                msg.contains("readonly") || msg.contains("read only"),
                "{err}"
            );
        }
        None => {
            step(&format!("old connection closed; SET → {set:?}"));
            assert!(set.is_err(), "a closed connection acknowledged a write");
        }
    }
    assert_eq!(get(&new_ip, &password, "after").await, None);
    assert_eq!(
        get(&new_ip, &password, "before").await.as_deref(),
        Some("1")
    );

    step("partition host ↔ new primary: the test process cannot reach it, the operator can");
    cluster.partition(NS, &["host"], &[&new_primary]);
    assert!(
        conn(&new_ip, &password).await.is_none(),
        "connected through a partition"
    );
    let ping = cluster
        .exec_in_netns(&[
            "timeout",
            "5",
            "redis-cli",
            "-h",
            &new_ip,
            "-a",
            &password,
            "--no-auth-warning",
            "ping",
        ])
        .expect("the operator's side still reaches the primary");
    assert_eq!(ping.trim(), "PONG");
    cluster.heal();
    eventually(
        "the primary reachable after heal",
        Duration::from_secs(20),
        || conn(&new_ip, &password),
    )
    .await;

    step("partition primary ↔ one replica: writes stop reaching it, and arrive after heal");
    let replica = (0..3)
        .map(|i| format!("{NAME}-{i}"))
        .find(|p| *p != new_primary)
        .expect("a replica");
    let other = (0..3)
        .map(|i| format!("{NAME}-{i}"))
        .find(|p| *p != new_primary && *p != replica)
        .expect("another replica");
    let (replica_ip, other_ip) = (pod_ip(&cluster, &replica), pod_ip(&cluster, &other));
    cluster.partition(NS, &[&new_primary], &[&replica]);
    let mut p = conn(&new_ip, &password).await.expect("primary");
    let _: () = redis::cmd("SET")
        .arg("during")
        .arg("1")
        .query_async(&mut p)
        .await
        .expect("SET on the primary");
    eventually(
        "the write on the reachable replica",
        Duration::from_secs(20),
        || {
            let (ip, pw) = (other_ip.clone(), password.clone());
            async move { get(&ip, &pw, "during").await }
        },
    )
    .await;
    // The reachable replica has it, so replication ran; the cut one must not.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        get(&replica_ip, &password, "during").await,
        None,
        "a write crossed the partition\n{}",
        cluster.diagnostics(NS)
    );
    cluster.heal();
    eventually(
        "the write on the healed replica",
        Duration::from_secs(120),
        || {
            let (ip, pw) = (replica_ip.clone(), password.clone());
            async move { get(&ip, &pw, "during").await }
        },
    )
    .await;
    // Last: the operator may react to losing its primary (that is what the
    // safety suites study); here only the cut itself is checked.
    step("partition operator ↔ new primary: the operator's side cannot reach it");
    cluster.partition(NS, &["operator"], &[&new_primary]);
    let cut = cluster.exec_in_netns(&[
        "timeout",
        "3",
        "redis-cli",
        "-h",
        &new_ip,
        "-a",
        &password,
        "--no-auth-warning",
        "ping",
    ]);
    assert!(
        cut.is_err(),
        "operator side reached a partitioned pod: {cut:?}"
    );
    assert!(conn(&new_ip, &password).await.is_some(), "host is not cut");
    cluster.heal();
    step(&format!("operator log after the partition:\n{}", {
        let log = cluster.operator_log();
        log.lines().rev().take(5).collect::<Vec<_>>().join("\n")
    }));

    step("done");
}
