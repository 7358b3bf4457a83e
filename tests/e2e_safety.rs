//! The safety suite on the devcluster's netns network, with real partitions
//! (nftables in the cluster's node namespace), for both engines in their
//! durable modes (Redis `durability.minReplicasToWrite` with writes
//! acknowledged by `WAIT 1`; MariaDB lossless `SemiSync`). Clients write
//! through the write Service's ClusterIP; every acknowledged key / row id is
//! checked on the final primary, and every member is sampled every 200 ms for
//! writability (a partitioned member from inside its own pod namespace).
//!
//! Per engine:
//! - **operator ↔ primary partition** with clients still writing: no
//!   failover, `PrimaryUnreachableFromOperator` in status and an Event, the
//!   primary keeps its label; after heal the cluster is healthy again;
//! - **full partition of the primary** (from the operator, the replicas and
//!   the clients): failover after the old primary is isolated; after heal
//!   0 acknowledged writes lost, 0 dual-writable samples;
//! - **operator SIGKILLed at random points** of alternating switchovers and
//!   failovers (`ORDINAL_SAFETY_KILLS` per engine, default 3;
//!   `ORDINAL_CHAOS_SEED` replays): converges to Ready, no dual primary, no
//!   lost acknowledged write;
//! - **watch events held back 3 s** by a proxy in front of the API server
//!   during a failover (both engines) and a MariaDB switchover.
//!
//! The long run: `ORDINAL_SAFETY_KILLS=10 cargo test --test e2e_safety`.
//! Pod addresses 10.244.141.x.

#[path = "support/accounting.rs"]
mod accounting;
#[path = "support/devcluster.rs"]
mod devcluster;
#[path = "support/watch_delay.rs"]
mod watch_delay;

use std::time::{Duration, Instant};

use accounting::{Db, Engine, Load, Route};
use devcluster::{DevCluster, cluster_status, eventually, members, patient, secret_value};
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::core::NamespaceResourceScope;
use ordinal::api::{ClusterStatus, MemberRole, MySQLCluster, RedisReplication};
use ordinal::controller::kinds::ClusterResource;
use rand::{Rng, SeedableRng};

const IP_BLOCK: u8 = 141;
const REPLICAS: i32 = 3;

fn step(s: &str) {
    eprintln!("[e2e-safety] {s}");
}

trait Kind:
    ClusterResource
    + kube::Resource<DynamicType = (), Scope = NamespaceResourceScope>
    + serde::de::DeserializeOwned
    + serde::Serialize
    + Clone
    + std::fmt::Debug
{
}
impl<K> Kind for K where
    K: ClusterResource
        + kube::Resource<DynamicType = (), Scope = NamespaceResourceScope>
        + serde::de::DeserializeOwned
        + serde::Serialize
        + Clone
        + std::fmt::Debug
{
}

/// One cluster under test, with everything acknowledged so far.
struct Subject<K: Kind> {
    label: &'static str,
    api: Api<K>,
    db: Db,
    cluster_ip: String,
    next_id: u64,
    acked: Vec<u64>,
    report: Vec<String>,
}

/// A settled cluster: Ready, no operation, all members ready, the recorded
/// primary labelled (and the only one labelled).
async fn settled<K: Kind>(subject: &Subject<K>) -> Option<(i32, i64)> {
    let s = cluster_status(&subject.api, &subject.db.name).await?;
    let ready = s
        .conditions
        .iter()
        .any(|c| c.type_ == "Ready" && c.status == "True");
    if !ready || s.replication.operation.is_some() || s.ready_replicas != REPLICAS {
        return None;
    }
    let primary = s.replication.primary?;
    let pods = members(&subject.db.client, &subject.db.ns, &subject.db.name).await;
    let labelled: Vec<_> = pods
        .iter()
        .filter(|(_, r, _)| r.as_deref() == Some("primary"))
        .map(|(n, _, _)| n.clone())
        .collect();
    (labelled == [format!("{}-{primary}", subject.db.name)])
        .then_some((primary, s.replication.term))
}

async fn wait_settled<K: Kind>(
    cluster: &DevCluster,
    subject: &Subject<K>,
    what: &str,
    timeout: Duration,
) -> (i32, i64) {
    let timeout = patient(timeout);
    let start = Instant::now();
    loop {
        if let Some(v) = settled(subject).await {
            return v;
        }
        if start.elapsed() > timeout {
            keep_log(cluster);
            panic!(
                "{}: timed out after {timeout:?} waiting for {what}; status {:?}\n{}",
                subject.label,
                cluster_status(&subject.api, &subject.db.name).await,
                cluster.diagnostics(&subject.db.ns)
            );
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Keep the operator's log of a failed run (the cluster's state dir is
/// removed).
fn keep_log(cluster: &DevCluster) {
    let to = std::env::temp_dir().join("ordinal-e2e-safety-operator.log");
    if std::fs::write(&to, cluster.operator_log()).is_ok() {
        eprintln!("[e2e-safety] operator log kept in {}", to.display());
    }
}

fn condition_reason(s: &ClusterStatus, type_: &str) -> Option<(String, String)> {
    s.conditions
        .iter()
        .find(|c| c.type_ == type_)
        .map(|c| (c.status.clone(), c.reason.clone()))
}

fn pod_uid(cluster: &DevCluster, ns: &str, pod: &str) -> String {
    cluster
        .kubectl(&[
            "-n",
            ns,
            "get",
            "pod",
            pod,
            "-o",
            "jsonpath={.metadata.uid}",
        ])
        .unwrap_or_default()
}

/// Stop the load and check it: every acknowledged id on the final primary,
/// never two writable members.
async fn check<K: Kind>(cluster: &DevCluster, subject: &mut Subject<K>, load: Load, what: &str) {
    let (written, samples) = load.finish().await;
    let (primary, _) = wait_settled(
        cluster,
        subject,
        "settled for the final check",
        Duration::from_secs(120),
    )
    .await;
    let ip = subject
        .db
        .member_ips()
        .await
        .into_iter()
        .find(|(n, _)| *n == format!("{}-{primary}", subject.db.name))
        .map(|(_, ip)| ip)
        .expect("primary ip");
    subject.acked.extend(&written.acked);
    // The writer used one id per attempt.
    subject.next_id += (written.acked.len() + written.failed) as u64;
    // Everything acknowledged since the start, not only in this scenario.
    let missing = subject.db.missing_on(&ip, &subject.acked).await;
    let line = format!(
        "{}/{what}: {} acknowledged ({} failed attempts, last error {:?}), {} missing of {} in total on {}-{primary}; {} samples, {} dual-writable, {} with a member unreadable",
        subject.label,
        written.acked.len(),
        written.failed,
        written.last_error,
        missing.len(),
        subject.acked.len(),
        subject.db.name,
        samples.taken,
        samples.dual.len(),
        samples.with_unknown
    );
    step(&line);
    subject.report.push(line);
    if !missing.is_empty() || !samples.dual.is_empty() {
        keep_log(cluster);
    }
    assert!(
        missing.is_empty(),
        "{}/{what}: acknowledged writes lost: {:?}\n{}",
        subject.label,
        &missing[..missing.len().min(50)],
        cluster.diagnostics(&subject.db.ns)
    );
    assert!(
        samples.dual.is_empty(),
        "{}/{what}: two writable members: {:?}\n{}",
        subject.label,
        samples.dual,
        cluster.diagnostics(&subject.db.ns)
    );
    assert!(
        written.acked.len() >= 20,
        "{}/{what}: the writer made progress: {written:?}",
        subject.label
    );
    assert!(samples.taken >= 10, "{}/{what}: sampled", subject.label);
}

// ---------------------------------------------------------------- scenarios

/// (a) Operator ↔ primary partition while clients still write.
async fn operator_partition<K: Kind>(cluster: &DevCluster, subject: &mut Subject<K>) {
    let (ns, name) = (subject.db.ns.clone(), subject.db.name.clone());
    let (p, term) = wait_settled(cluster, subject, "settled", Duration::from_secs(120)).await;
    let pod = format!("{name}-{p}");
    step(&format!(
        "{}: partition operator ↔ {pod} (the primary) under writes",
        subject.label
    ));
    let load = Load::start(
        &subject.db,
        Route::Address(subject.cluster_ip.clone()),
        subject.next_id,
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    cluster.partition(&ns, &["operator"], &[&pod]);
    let cut = Instant::now();
    let (reason_seen, message) = eventually(
        "ReplicationHealthy=False PrimaryUnreachableFromOperator",
        Duration::from_secs(60),
        || async {
            let s = cluster_status(&subject.api, &name).await?;
            let c = s
                .conditions
                .iter()
                .find(|c| c.type_ == "ReplicationHealthy")?;
            (c.status == "False" && c.reason == "PrimaryUnreachableFromOperator")
                .then(|| (cut.elapsed(), c.message.clone()))
        },
    )
    .await;
    step(&format!(
        "{}: reported after {reason_seen:?}: {message}",
        subject.label
    ));
    let acked_then = load.acked_so_far();
    // Several detection windows (3 s) and more: never a failover.
    let hold = Instant::now();
    while hold.elapsed() < Duration::from_secs(12) {
        let s = cluster_status(&subject.api, &name).await.expect("status");
        assert_eq!(
            (s.replication.primary, s.replication.term),
            (Some(p), term),
            "{}: no failover while replicas see the primary: {s:?}\n{}",
            subject.label,
            cluster.diagnostics(&ns)
        );
        assert!(
            s.replication.operation.is_none(),
            "{}: no operation started: {:?}",
            subject.label,
            s.replication.operation
        );
        let labelled: Vec<_> = members(&subject.db.client, &ns, &name)
            .await
            .into_iter()
            .filter(|(_, r, _)| r.as_deref() == Some("primary"))
            .map(|(n, _, _)| n)
            .collect();
        assert_eq!(
            labelled,
            std::slice::from_ref(&pod),
            "{}: the primary keeps its label",
            subject.label
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let during = load.acked_so_far() - acked_then;
    assert!(
        during > 20,
        "{}: clients kept writing through the ClusterIP during the partition: {during}",
        subject.label
    );
    let events = cluster
        .kubectl(&[
            "-n",
            &ns,
            "get",
            "events",
            "--field-selector",
            &format!("involvedObject.name={name},reason=PrimaryUnreachableFromOperator"),
            "-o",
            "jsonpath={.items[*].message}",
        ])
        .unwrap_or_default();
    assert!(
        events.contains(&pod),
        "{}: a PrimaryUnreachableFromOperator Event naming {pod}: {events:?}",
        subject.label
    );
    cluster.heal_between(&ns, &["operator"], &[&pod]);
    eventually(
        "ReplicationHealthy=True after heal",
        Duration::from_secs(60),
        || async {
            let s = cluster_status(&subject.api, &name).await?;
            (condition_reason(&s, "ReplicationHealthy")?.0 == "True").then_some(())
        },
    )
    .await;
    subject.report.push(format!(
        "{}/operator-partition: PrimaryUnreachableFromOperator after {reason_seen:?}; {during} writes acknowledged in the 12 s held after it, term {term} unchanged",
        subject.label
    ));
    tokio::time::sleep(Duration::from_secs(1)).await;
    check(cluster, subject, load, "operator-partition").await;
}

/// Everyone but `pod`: the operator, the test process (clients, probes) and
/// the other members.
fn everyone_but(name: &str, ordinal: i32) -> Vec<String> {
    let mut v = vec!["operator".to_string(), "host".to_string()];
    v.extend(
        (0..REPLICAS)
            .filter(|i| *i != ordinal)
            .map(|i| format!("{name}-{i}")),
    );
    v
}

/// No desired primary: a failover must not be followed by a switchover back.
async fn clear_desired_primary<K: Kind>(subject: &Subject<K>) {
    subject
        .api
        .patch(
            &subject.db.name,
            &PatchParams::default(),
            &Patch::Merge(serde_json::json!({"spec": {"primary": null}})),
        )
        .await
        .expect("clear spec.primary");
}

/// Cut the primary `p` off from everyone (operator, test process, the other
/// members). Returns the pod's uid, to tell later whether it was deleted.
fn cut_primary<K: Kind>(cluster: &DevCluster, subject: &Subject<K>, p: i32) -> String {
    let (ns, name) = (&subject.db.ns, &subject.db.name);
    let pod = format!("{name}-{p}");
    let uid = pod_uid(cluster, ns, &pod);
    let rest = everyone_but(name, p);
    let rest: Vec<&str> = rest.iter().map(String::as_str).collect();
    cluster.partition(ns, &[&pod], &rest);
    uid
}

fn heal_primary<K: Kind>(cluster: &DevCluster, subject: &Subject<K>, p: i32) {
    let (ns, name) = (&subject.db.ns, &subject.db.name);
    let pod = format!("{name}-{p}");
    let rest = everyone_but(name, p);
    let rest: Vec<&str> = rest.iter().map(String::as_str).collect();
    cluster.heal_between(ns, &[&pod], &rest);
}

/// Wait until a failover away from `p` (cut off, old pod uid `uid`) is
/// recorded: another primary, a higher term, no operation. The old pod must
/// have been deleted (isolated) by then.
async fn await_failover<K: Kind>(
    cluster: &DevCluster,
    subject: &Subject<K>,
    p: i32,
    term: i64,
    uid: &str,
) {
    let (ns, name) = (&subject.db.ns, &subject.db.name);
    let pod = format!("{name}-{p}");
    let start = Instant::now();
    loop {
        let s = cluster_status(&subject.api, name).await;
        if let Some(s) = &s
            && s.replication.primary.is_some_and(|q| q != p)
            && s.replication.term > term
            && s.replication.operation.is_none()
        {
            break;
        }
        if start.elapsed() > patient(Duration::from_secs(180)) {
            keep_log(cluster);
            panic!(
                "{}: no failover away from {pod} in time; status {s:?}\n{}",
                subject.label,
                cluster.diagnostics(ns)
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    if pod_uid(cluster, ns, &pod) == uid {
        keep_log(cluster);
        panic!(
            "{}: the unreachable old primary's pod {pod} was not deleted (isolated) before the promotion\n{}",
            subject.label,
            cluster.diagnostics(ns)
        );
    }
}

/// Cut the primary off from everyone; wait for the failover; heal. Returns
/// how long the failover took (partition → new primary recorded, no
/// operation left).
async fn fail_over_by_full_partition<K: Kind>(
    cluster: &DevCluster,
    subject: &Subject<K>,
    p: i32,
    term: i64,
) -> Duration {
    clear_desired_primary(subject).await;
    let uid = cut_primary(cluster, subject, p);
    let cut = Instant::now();
    await_failover(cluster, subject, p, term, &uid).await;
    let took = cut.elapsed();
    heal_primary(cluster, subject, p);
    took
}

/// (b) Full partition of the primary under writes.
async fn full_partition<K: Kind>(cluster: &DevCluster, subject: &mut Subject<K>) {
    let (p, term) = wait_settled(cluster, subject, "settled", Duration::from_secs(120)).await;
    step(&format!(
        "{}: full partition of the primary {}-{p} under writes",
        subject.label, subject.db.name
    ));
    let load = Load::start(
        &subject.db,
        Route::Address(subject.cluster_ip.clone()),
        subject.next_id,
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    let took = fail_over_by_full_partition(cluster, subject, p, term).await;
    step(&format!(
        "{}: failed over in {took:?}; healed",
        subject.label
    ));
    subject.report.push(format!(
        "{}/full-partition: failover (partition → new primary recorded) {took:?}",
        subject.label
    ));
    wait_settled(
        cluster,
        subject,
        "old primary back as a replica",
        Duration::from_secs(180),
    )
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    check(cluster, subject, load, "full-partition").await;
}

/// Wait until the cluster is settled on `target` (a switchover completed).
async fn wait_switched<K: Kind>(cluster: &DevCluster, subject: &Subject<K>, target: i32) {
    let start = Instant::now();
    loop {
        let (q, _) = wait_settled(
            cluster,
            subject,
            "switchover done",
            Duration::from_secs(180),
        )
        .await;
        if q == target {
            return;
        }
        if start.elapsed() > patient(Duration::from_secs(180)) {
            keep_log(cluster);
            panic!(
                "{}: the switchover to {target} did not complete (primary {q})\n{}",
                subject.label,
                cluster.diagnostics(&subject.db.ns)
            );
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// An operation started on one cluster for a kill round.
struct Started {
    from: i32,
    term: i64,
    /// Switchover target, or None for a failover (primary cut off; old pod uid).
    target: Option<i32>,
    uid: String,
}

/// A switchover target other than the primary `p`, chosen by `pick` among the
/// members the operator would promote: a quarantined member (MariaDB: one
/// holding a transaction the primary lacks, e.g. one that a killed primary
/// wrote to its binlog but no replica acknowledged) is refused by design and
/// waits for a person, so it is not asked for (and the test says so).
async fn switchover_target<K: Kind>(subject: &Subject<K>, p: i32, pick: i32) -> i32 {
    let quarantined: Vec<i32> = cluster_status(&subject.api, &subject.db.name)
        .await
        .map(|s| {
            s.members
                .iter()
                .filter(|m| m.role == MemberRole::Quarantined)
                .map(|m| m.ordinal)
                .collect()
        })
        .unwrap_or_default();
    if !quarantined.is_empty() {
        step(&format!(
            "{}: members {quarantined:?} are quarantined (not switchover targets)",
            subject.label
        ));
    }
    let candidates: Vec<i32> = (1..REPLICAS)
        .map(|i| (p + i) % REPLICAS)
        .filter(|o| !quarantined.contains(o))
        .collect();
    if candidates.is_empty() {
        return (p + 1) % REPLICAS;
    }
    candidates[pick.rem_euclid(candidates.len() as i32) as usize]
}

async fn start_operation<K: Kind>(
    cluster: &DevCluster,
    subject: &Subject<K>,
    switchover: bool,
    pick: i32,
) -> Started {
    let (p, term) = wait_settled(cluster, subject, "settled", Duration::from_secs(180)).await;
    if switchover {
        let target = switchover_target(subject, p, pick).await;
        subject
            .api
            .patch(
                &subject.db.name,
                &PatchParams::default(),
                &Patch::Merge(serde_json::json!({"spec": {"primary": target}})),
            )
            .await
            .expect("patch spec.primary");
        Started {
            from: p,
            term,
            target: Some(target),
            uid: String::new(),
        }
    } else {
        clear_desired_primary(subject).await;
        let uid = cut_primary(cluster, subject, p);
        Started {
            from: p,
            term,
            target: None,
            uid,
        }
    }
}

async fn finish_operation<K: Kind>(cluster: &DevCluster, subject: &Subject<K>, op: &Started) {
    match op.target {
        Some(target) => wait_switched(cluster, subject, target).await,
        None => {
            await_failover(cluster, subject, op.from, op.term, &op.uid).await;
            heal_primary(cluster, subject, op.from);
            wait_settled(
                cluster,
                subject,
                "settled after heal",
                Duration::from_secs(180),
            )
            .await;
        }
    }
}

/// The operation in progress on `subject`, as persisted.
async fn persisted_step<K: Kind>(subject: &Subject<K>) -> Option<String> {
    cluster_status(&subject.api, &subject.db.name)
        .await
        .and_then(|s| s.replication.operation)
        .map(|o| format!("{:?}/{}", o.kind, o.step))
}

/// Every persisted operation step of a cluster (None = no operation), in
/// order, seen through a watch: each status write shows, however short.
struct Steps {
    rx: tokio::sync::watch::Receiver<Vec<Option<String>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Steps {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn watch_steps<K: Kind>(subject: &Subject<K>) -> Steps {
    use futures::StreamExt;
    use kube::runtime::{WatchStreamExt, watcher};
    let (tx, rx) = tokio::sync::watch::channel(Vec::new());
    let api = subject.api.clone();
    let fields = format!("metadata.name={}", subject.db.name);
    let task = tokio::spawn(async move {
        let stream = watcher(api, watcher::Config::default().fields(&fields)).applied_objects();
        futures::pin_mut!(stream);
        while let Some(event) = stream.next().await {
            let Ok(obj) = event else { continue };
            let step = obj
                .cluster_status()
                .and_then(|s| s.replication.operation.as_ref())
                .map(|o| format!("{:?}/{}", o.kind, o.step));
            tx.send_modify(|v| {
                if v.last() != Some(&step) {
                    v.push(step);
                }
            });
        }
    });
    Steps { rx, task }
}

/// Wait for the kill point: mode 0 = a random delay (often before anything
/// is persisted), 1 = the first persisted step, 2 = the next persisted
/// change after it (another step, or the end). Bounded by 30 s. Returns the
/// steps seen so far.
async fn kill_point(steps: &mut Steps, mode: u32, delay_ms: u64) -> String {
    let reached = |v: &Vec<Option<String>>| -> bool {
        let first = v.iter().position(Option::is_some);
        match (mode, first) {
            (1, Some(_)) => true,
            (2, Some(i)) => v.len() > i + 1,
            _ => false,
        }
    };
    if mode == 0 {
        tokio::time::sleep(Duration::from_millis(delay_ms)).await;
    } else {
        let _ = tokio::time::timeout(Duration::from_secs(30), steps.rx.wait_for(reached)).await;
    }
    let seen = steps.rx.borrow().clone();
    let seen: Vec<String> = seen
        .iter()
        .map(|s| s.clone().unwrap_or_else(|| "-".into()))
        .collect();
    seen.join(" → ")
}

/// (d) Operator SIGKILLed at random points of switchovers and failovers run
/// on both clusters at once, under writes: `kills` rounds, alternating
/// switchovers and failovers; each round the kill point is timed on one
/// cluster's operation (alternating).
async fn operator_kills(
    cluster: &mut DevCluster,
    redis: &mut Subject<RedisReplication>,
    mysql: &mut Subject<MySQLCluster>,
    kills: usize,
    rng: &mut rand::rngs::StdRng,
) {
    let rload = Load::start(
        &redis.db,
        Route::Address(redis.cluster_ip.clone()),
        redis.next_id,
    );
    let mload = Load::start(
        &mysql.db,
        Route::Address(mysql.cluster_ip.clone()),
        mysql.next_id,
    );
    for i in 0..kills {
        let switchover = i % 2 == 0;
        let kind = if switchover { "switchover" } else { "failover" };
        let (pick_r, pick_m) = (rng.random_range(0..8), rng.random_range(0..8));
        let mode = rng.random_range(0..3u32);
        let delay = if switchover {
            rng.random_range(0..1500u64)
        } else {
            rng.random_range(500..6000u64)
        };
        let down = rng.random_range(0..2000u64);
        let started = Instant::now();
        let (mut rsteps, mut msteps) = (watch_steps(redis), watch_steps(mysql));
        let (rop, mop) = tokio::join!(
            start_operation(cluster, redis, switchover, pick_r),
            start_operation(cluster, mysql, switchover, pick_m)
        );
        let timed_on_redis = i.div_ceil(2) % 2 == 0;
        let at = if timed_on_redis {
            kill_point(&mut rsteps, mode, delay).await
        } else {
            kill_point(&mut msteps, mode, delay).await
        };
        drop((rsteps, msteps));
        let (rat, mat) = tokio::join!(persisted_step(redis), persisted_step(mysql));
        cluster.kill_operator();
        let line = format!(
            "kill {}/{kills}: {kind}s (redis from {}, mariadb from {}), operator SIGKILLed at point {mode} of the {} operation (steps seen: {at}) after {:?}: redis at {rat:?}, mariadb at {mat:?}; restarted after {down} ms",
            i + 1,
            rop.from,
            mop.from,
            if timed_on_redis { "redis" } else { "mariadb" },
            started.elapsed()
        );
        step(&line);
        tokio::time::sleep(Duration::from_millis(down)).await;
        cluster.start_operator();
        tokio::join!(
            finish_operation(cluster, redis, &rop),
            finish_operation(cluster, mysql, &mop)
        );
        redis.report.push(format!(
            "{line}; both settled {:?} after the start",
            started.elapsed()
        ));
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    tokio::join!(
        check(cluster, redis, rload, "operator-kills"),
        check(cluster, mysql, mload, "operator-kills")
    );
}

/// (c) Watch events held back 3 s by a proxy in front of the API server
/// (the operator runs behind it, in the host's network namespace, so `host`
/// cuts it and the clients): a failover on both clusters at once, then a
/// MariaDB switchover, under writes.
async fn delayed_watch(
    cluster: &mut DevCluster,
    redis: &mut Subject<RedisReplication>,
    mysql: &mut Subject<MySQLCluster>,
) {
    cluster.kill_operator();
    let proxy =
        watch_delay::WatchDelay::start(redis.db.client.clone(), Duration::from_secs(3)).await;
    let kubeconfig = cluster.state_path().join("kubeconfig-delayed");
    proxy.write_kubeconfig(&kubeconfig);
    let log_before = cluster
        .operator_log()
        .matches("cache behind the last status write")
        .count();
    cluster.start_operator_with(&kubeconfig);
    {
        let cluster = &*cluster;
        tokio::join!(
            delayed_failover(cluster, redis, false),
            delayed_failover(cluster, mysql, true)
        );
    }
    let fresh = cluster
        .operator_log()
        .matches("cache behind the last status write")
        .count()
        - log_before;
    redis.report.push(format!(
        "delayed-watch: {fresh} passes re-read a cluster because the cache was behind"
    ));
    cluster.kill_operator();
    drop(proxy);
    cluster.start_operator();
}

async fn delayed_failover<K: Kind>(
    cluster: &DevCluster,
    subject: &mut Subject<K>,
    switchover: bool,
) {
    let (p, term) = wait_settled(cluster, subject, "settled", Duration::from_secs(120)).await;
    step(&format!(
        "{}: watch events held back 3 s; failover away from {}-{p} under writes",
        subject.label, subject.db.name
    ));
    let load = Load::start(
        &subject.db,
        Route::Address(subject.cluster_ip.clone()),
        subject.next_id,
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    let took = fail_over_by_full_partition(cluster, subject, p, term).await;
    let (q, _) = wait_settled(cluster, subject, "settled", Duration::from_secs(180)).await;
    subject.report.push(format!(
        "{}/delayed-watch failover {p} → {q}: {took:?}",
        subject.label
    ));
    if switchover {
        let target = switchover_target(subject, q, 0).await;
        step(&format!(
            "{}: watch events held back 3 s; switchover {q} → {target} under writes",
            subject.label
        ));
        let t = Instant::now();
        subject
            .api
            .patch(
                &subject.db.name,
                &PatchParams::default(),
                &Patch::Merge(serde_json::json!({"spec": {"primary": target}})),
            )
            .await
            .expect("patch spec.primary");
        wait_switched(cluster, subject, target).await;
        subject.report.push(format!(
            "{}/delayed-watch switchover {q} → {target}: {:?}",
            subject.label,
            t.elapsed()
        ));
    }
    // Stale events arrive after the operation, under writes.
    tokio::time::sleep(Duration::from_secs(6)).await;
    check(cluster, subject, load, "delayed-watch").await;
}

// ---------------------------------------------------------------- set-up

async fn cluster_ip(cluster: &DevCluster, ns: &str, name: &str) -> String {
    let ip = cluster
        .kubectl(&[
            "-n",
            ns,
            "get",
            "svc",
            &format!("{name}-primary"),
            "-o",
            "jsonpath={.spec.clusterIP}",
        ])
        .expect("write Service");
    assert!(ip.starts_with("10.96."), "a ClusterIP: {ip}");
    ip
}

async fn redis_subject(cluster: &DevCluster, client: &kube::Client) -> Subject<RedisReplication> {
    let (ns, name) = ("safety-redis", "cache");
    cluster
        .kubectl(&["create", "namespace", ns])
        .expect("namespace");
    let api: Api<RedisReplication> = Api::namespaced(client.clone(), ns);
    let rr: RedisReplication = serde_json::from_value(serde_json::json!({
        "apiVersion": "ordinal.dev/v1alpha1", "kind": "RedisReplication", "metadata": {"name": name},
        "spec": {"replicas": REPLICAS, "storage": {"size": "1Gi"},
                 "durability": {"minReplicasToWrite": 1, "minReplicasMaxLag": 5},
                 "failover": {"detectionSeconds": 3}}
    }))
    .expect("object");
    api.create(&PostParams::default(), &rr)
        .await
        .expect("create");
    let mut db = Db::new(cluster, Engine::Redis, client.clone(), ns, name, "");
    db.durable = true;
    let mut subject = Subject {
        label: "redis",
        api,
        db,
        cluster_ip: String::new(),
        next_id: 1,
        acked: Vec::new(),
        report: Vec::new(),
    };
    wait_settled(cluster, &subject, "Redis Ready", Duration::from_secs(240)).await;
    subject.db.admin_password = secret_value(client, ns, &format!("{name}-auth"), "password").await;
    subject.cluster_ip = cluster_ip(cluster, ns, name).await;
    subject
}

async fn mysql_subject(cluster: &DevCluster, client: &kube::Client) -> Subject<MySQLCluster> {
    let (ns, name) = ("safety-mysql", "db");
    cluster
        .kubectl(&["create", "namespace", ns])
        .expect("namespace");
    let api: Api<MySQLCluster> = Api::namespaced(client.clone(), ns);
    let my: MySQLCluster = serde_json::from_value(serde_json::json!({
        "apiVersion": "ordinal.dev/v1alpha1", "kind": "MySQLCluster", "metadata": {"name": name},
        "spec": {"replicas": REPLICAS, "storage": {"size": "1Gi"},
                 "replication": {"mode": "SemiSync"},
                 "failover": {"detectionSeconds": 3},
                 "config": {"innodb_buffer_pool_size": "64M"}}
    }))
    .expect("object");
    api.create(&PostParams::default(), &my)
        .await
        .expect("create");
    let mut subject = Subject {
        label: "mariadb",
        api,
        db: Db::new(cluster, Engine::MySql, client.clone(), ns, name, ""),
        cluster_ip: String::new(),
        next_id: 1,
        acked: Vec::new(),
        report: Vec::new(),
    };
    let (p, _) = wait_settled(cluster, &subject, "MariaDB Ready", Duration::from_secs(360)).await;
    let password = secret_value(client, ns, &format!("{name}-auth"), "root-password").await;
    subject.db.admin_password = password;
    let ip = subject
        .db
        .member_ips()
        .await
        .into_iter()
        .find(|(n, _)| *n == format!("{name}-{p}"))
        .map(|(_, ip)| ip)
        .expect("primary ip");
    subject.db.mysql_setup(&ip, "app", "app-secret").await;
    subject.cluster_ip = cluster_ip(cluster, ns, name).await;
    subject
}

fn kills() -> usize {
    std::env::var("ORDINAL_SAFETY_KILLS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3)
}

fn rng() -> rand::rngs::StdRng {
    let seed = std::env::var("ORDINAL_CHAOS_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0)
        });
    step(&format!("ORDINAL_CHAOS_SEED={seed}"));
    rand::rngs::StdRng::seed_from_u64(seed)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn partitions_operator_kills_and_delayed_watches_lose_no_acknowledged_write() {
    let suite = Instant::now();
    let mut cluster = DevCluster::up_netns_without_operator(IP_BLOCK);
    assert!(cluster.netns(), "the safety suite needs the netns network");
    cluster.start_operator();
    let client = cluster.client().await;
    let mut rng = rng();
    let kills = kills();
    let mut report = Vec::new();

    // Both clusters side by side; each scenario runs on both at once
    // (partitions of one never touch the other's pods).
    let t = Instant::now();
    let (mut redis, mut mysql) = tokio::join!(
        redis_subject(&cluster, &client),
        mysql_subject(&cluster, &client)
    );
    report.push(format!("both clusters Ready after {:?}", t.elapsed()));
    let t = Instant::now();
    tokio::join!(
        operator_partition(&cluster, &mut redis),
        operator_partition(&cluster, &mut mysql)
    );
    report.push(format!("(a) operator partition: {:?}", t.elapsed()));
    let t = Instant::now();
    tokio::join!(
        full_partition(&cluster, &mut redis),
        full_partition(&cluster, &mut mysql)
    );
    report.push(format!("(b) full partition: {:?}", t.elapsed()));
    let t = Instant::now();
    operator_kills(&mut cluster, &mut redis, &mut mysql, kills, &mut rng).await;
    report.push(format!("(d) {kills} operator kills: {:?}", t.elapsed()));
    let t = Instant::now();
    delayed_watch(&mut cluster, &mut redis, &mut mysql).await;
    report.push(format!("(c) delayed watch events: {:?}", t.elapsed()));
    report.append(&mut redis.report);
    report.append(&mut mysql.report);
    report.push(format!("suite: {:?}", suite.elapsed()));
    eprintln!("[e2e-safety] summary:\n  {}", report.join("\n  "));
}
