//! The Helm chart on a real API server (the devcluster, RBAC authorization
//! on): the rendered manifests pass a server-side dry run, two operator
//! replicas run with exactly the chart's RBAC, one holds the leader Lease and
//! reconciles a cluster, `/metrics` exposes the operator's series, and when
//! the leader pod is deleted the other replica takes over and reconciling
//! continues.

#[path = "support/devcluster.rs"]
mod devcluster;

use std::process::Command;
use std::time::Duration;

use devcluster::{DevCluster, eventually};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use ordinal::api::{ClusterPhase, RedisReplication};

const SYSTEM: &str = "ordinal-system";
const NS: &str = "e2e-chart";

fn render() -> String {
    let chart = concat!(env!("CARGO_MANIFEST_DIR"), "/charts/ordinal");
    let out = Command::new(concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/helm.sh"))
        // The `helm test` Pod runs busybox, which the devcluster cannot run.
        .args([
            "template",
            "ordinal",
            chart,
            "--namespace",
            SYSTEM,
            "--skip-tests",
        ])
        .args([
            "--set",
            "metrics.listenOnPodIP=true",
            "--set",
            "leaderElection.leaseSeconds=6",
        ])
        .args([
            "--set",
            "image.repository=ordinal/ordinal",
            "--set",
            "image.tag=dev",
        ])
        .output()
        .expect("helm template");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf8")
}

async fn holder(leases: &Api<Lease>) -> Option<String> {
    leases
        .get("ordinal-leader")
        .await
        .ok()?
        .spec?
        .holder_identity
}

async fn operator_pods(pods: &Api<Pod>) -> Vec<(String, Option<String>, bool)> {
    let list = pods
        .list(&ListParams::default().labels("app.kubernetes.io/name=ordinal"))
        .await
        .map(|l| l.items)
        .unwrap_or_default();
    list.into_iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .map(|p| {
            let ready = p
                .status
                .as_ref()
                .and_then(|s| s.conditions.as_ref())
                .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"));
            (
                p.metadata.name.unwrap_or_default(),
                p.status.and_then(|s| s.pod_ip),
                ready,
            )
        })
        .collect()
}

fn metrics(ip: &str) -> Option<String> {
    let out = Command::new("curl")
        .args([
            "-sf",
            "--max-time",
            "2",
            &format!("http://{ip}:8080/metrics"),
        ])
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

/// `promtool check metrics` (Debian's prometheus package) on a real scrape.
fn promtool_check_metrics(text: &str) {
    use std::io::Write;
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("promtool not found: apt-get install prometheus (scripts/test.sh does)");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(text.as_bytes())
        .expect("write scrape");
    let out = child.wait_with_output().expect("promtool");
    assert!(
        out.status.success(),
        "promtool check metrics on the leader's /metrics:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn chart_installs_a_leader_elected_least_privileged_operator() {
    let cluster = DevCluster::up_without_operator(104);
    let client = cluster.client().await;
    let step = |s: &str| eprintln!("[e2e-chart] {s}");
    let manifests = render();

    step("the rendered chart passes a server-side dry run, then is applied");
    cluster
        .kubectl(&["create", "namespace", SYSTEM])
        .expect("namespace");
    cluster
        .kubectl_stdin(
            &["apply", "--server-side", "--dry-run=server", "-f", "-"],
            &manifests,
        )
        .expect("dry run");
    cluster
        .kubectl_stdin(&["apply", "--server-side", "-f", "-"], &manifests)
        .expect("apply chart");

    step("two operator replicas, one leader");
    let pods: Api<Pod> = Api::namespaced(client.clone(), SYSTEM);
    let leases: Api<Lease> = Api::namespaced(client.clone(), SYSTEM);
    eventually(
        "2 Ready operator pods",
        Duration::from_secs(120),
        || async {
            let p = operator_pods(&pods).await;
            (p.len() == 2 && p.iter().all(|(_, _, r)| *r)).then_some(())
        },
    )
    .await;
    let leader = eventually("a lease holder", Duration::from_secs(60), || {
        holder(&leases)
    })
    .await;
    let leader_pod = operator_pods(&pods)
        .await
        .into_iter()
        .find(|(n, _, _)| leader.starts_with(n.as_str()))
        .expect("leader is an operator pod");

    step("the leader reconciles a RedisReplication using only the chart's RBAC");
    cluster
        .kubectl(&["create", "namespace", NS])
        .expect("namespace");
    let rr: Api<RedisReplication> = Api::namespaced(client.clone(), NS);
    let obj: RedisReplication = serde_json::from_value(serde_json::json!({
        "apiVersion": "ordinal.dev/v1alpha1", "kind": "RedisReplication", "metadata": {"name": "cache"},
        "spec": {"replicas": 2}
    }))
    .expect("object");
    rr.create(&PostParams::default(), &obj)
        .await
        .expect("create");
    eventually("cache Running", Duration::from_secs(180), || async {
        (rr.get("cache").await.ok()?.status?.phase == ClusterPhase::Running).then_some(())
    })
    .await;

    step("/metrics on the leader exposes the operator's series");
    let ip = leader_pod.1.clone().expect("leader ip");
    let text = eventually("metrics", Duration::from_secs(30), || async {
        metrics(&ip)
    })
    .await;
    for series in [
        "ordinal_leader 1",
        "ordinal_reconciles_total{controller=\"RedisReplication\"}",
        "ordinal_reconcile_duration_seconds_bucket",
        "ordinal_replication_lag{",
    ] {
        assert!(text.contains(series), "missing {series} in\n{text}");
    }
    promtool_check_metrics(&text);
    let follower = operator_pods(&pods)
        .await
        .into_iter()
        .find(|(n, _, _)| *n != leader_pod.0)
        .expect("follower");
    let text = metrics(follower.1.as_deref().expect("ip")).expect("follower metrics");
    assert!(
        text.contains("ordinal_leader 0") || !text.contains("ordinal_leader 1"),
        "only one leader"
    );

    step("deleting the leader pod hands the lease over; reconciling continues");
    pods.delete(&leader_pod.0, &DeleteParams::default())
        .await
        .expect("delete leader");
    let new_leader = eventually("another lease holder", Duration::from_secs(60), || async {
        holder(&leases)
            .await
            .filter(|h| !h.starts_with(leader_pod.0.as_str()))
    })
    .await;
    assert!(
        new_leader.starts_with(follower.0.as_str())
            || !new_leader.starts_with(leader_pod.0.as_str())
    );
    rr.patch(
        "cache",
        &PatchParams::default(),
        &Patch::Merge(serde_json::json!({"spec": {"primary": 1}})),
    )
    .await
    .expect("switchover");
    eventually(
        "the new leader performs the switchover",
        Duration::from_secs(90),
        || async {
            let s = rr.get("cache").await.ok()?.status?;
            (s.replication.primary == Some(1) && s.phase == ClusterPhase::Running).then_some(())
        },
    )
    .await;

    step("SIGTERM: the operator releases its lease and exits 0");
    let mut local = Command::new(env!("CARGO_BIN_EXE_ordinal"))
        .args([
            "run",
            "--http-addr",
            "127.0.0.1:0",
            "--namespaces",
            "nothing-here",
        ])
        .args([
            "--leader-election",
            "--leader-election-namespace",
            SYSTEM,
            "--lease-name",
            "shutdown-test",
            "--identity",
            "local-test",
        ])
        .env("KUBECONFIG", &cluster.kubeconfig)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("start a local operator");
    eventually(
        "the local operator leads its lease",
        Duration::from_secs(60),
        || async {
            let l = leases.get("shutdown-test").await.ok()?;
            (l.spec?.holder_identity.as_deref() == Some("local-test")).then_some(())
        },
    )
    .await;
    let pid = local.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .expect("kill")
            .success()
    );
    let deadline = std::time::Instant::now() + Duration::from_secs(40);
    let exit = loop {
        if let Some(status) = local.try_wait().expect("wait") {
            break status;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the operator did not exit within 40 s of SIGTERM"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert!(exit.success(), "exit status after SIGTERM: {exit:?}");
    let released = leases
        .get("shutdown-test")
        .await
        .expect("lease")
        .spec
        .and_then(|s| s.holder_identity);
    assert_eq!(released, None, "the lease is released on shutdown");
}
