//! The Redis engine against real `redis-server` processes.
//!
//! Each test uses its own loopback block 127.0.<block>.x so tests run in
//! parallel. The engine is driven like the reconciler drives it: a loop of
//! `reconcile` calls, each returned state persisted into the next input, and
//! restarted servers booted with the configuration rendered from that state.

#[path = "support/redis.rs"]
mod harness;
#[path = "support/proxy.rs"]
mod proxy;

use std::time::{Duration, Instant};

use harness::{Cluster, PORT, Server, Writer, connect, dbsize, eventually, info_field};
use ordinal::api::{FailoverSpec, MemberRole};
use ordinal::engine::{Engine, EventType, Health};
use ordinal::redis::backup::{BackupError, BackupOptions, BackupSource, backup_rdb, restore_rdb};

fn failover(detection_seconds: i32) -> FailoverSpec {
    FailoverSpec {
        detection_seconds,
        ..Default::default()
    }
}

async fn set_many(c: &mut redis::aio::MultiplexedConnection, prefix: &str, n: usize) {
    let mut pipe = redis::pipe();
    for i in 0..n {
        pipe.cmd("SET").arg(format!("{prefix}:{i}")).arg(i).ignore();
    }
    let () = pipe.query_async(c).await.unwrap();
}

async fn wait_dbsize(ip: &str, want: i64) {
    eventually(
        Duration::from_secs(15),
        &format!("{ip} to hold {want} keys"),
        || async {
            match connect(ip, PORT).await {
                Ok(mut c) => dbsize(&mut c).await == want,
                Err(_) => false,
            }
        },
    )
    .await;
}

async fn get(ip: &str, key: &str) -> Option<String> {
    let mut c = connect(ip, PORT).await.ok()?;
    redis::cmd("GET").arg(key).query_async(&mut c).await.ok()?
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bootstrap_converges_and_replicates() {
    let mut c = Cluster::new(71, 3, failover(5));
    c.start_all();
    let out = c.converge(Duration::from_secs(20)).await;
    assert_eq!(out.state.primary, Some(0));
    assert_eq!(out.state.term, 1);
    assert_eq!(c.primary(), Some(0));
    assert!(out.state.primary_identity.is_some());
    let roles: Vec<_> = out.members.iter().map(|m| m.role).collect();
    assert_eq!(
        roles,
        [
            MemberRole::Primary,
            MemberRole::Replica,
            MemberRole::Replica
        ]
    );

    let mut p = c.server(0).conn().await;
    let () = redis::cmd("SET")
        .arg("hello")
        .arg("world")
        .query_async(&mut p)
        .await
        .unwrap();
    for r in [1, 2] {
        let ip = c.ip(r);
        eventually(Duration::from_secs(5), "the key on a replica", || {
            let ip = ip.clone();
            async move { get(&ip, "hello").await.as_deref() == Some("world") }
        })
        .await;
    }
    // A replica refuses writes.
    let mut r = c.server(1).conn().await;
    let err = redis::cmd("SET")
        .arg("x")
        .arg("y")
        .query_async::<()>(&mut r)
        .await;
    assert!(err.is_err());
    // Steady state: nothing to do, still one primary.
    let out = c.pass().await;
    assert_eq!(out.health, Health::Healthy);
    assert!(out.events.is_empty());
    assert_eq!(c.masters().await, [0]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_primary_fails_over_under_writes_and_old_primary_rejoins() {
    let detection = 2;
    let mut c = Cluster::new(72, 3, failover(detection));
    c.start_all();
    c.converge(Duration::from_secs(20)).await;
    let writer = Writer::start((c.ip(0), PORT));
    tokio::time::sleep(Duration::from_millis(800)).await;
    c.pass().await;

    c.kill(0);
    let killed = Instant::now();
    let out = c
        .run_until(Duration::from_secs(20), |o| {
            o.state.primary.is_some_and(|p| p != 0)
                && o.members.iter().any(|m| m.role == MemberRole::Primary)
        })
        .await;
    writer.follow(&c);
    let promoted_after = killed.elapsed();
    let new = out.state.primary.unwrap() as usize;
    assert_eq!(out.state.term, 2);
    assert!(
        promoted_after < Duration::from_secs(detection as u64 + 3),
        "promotion took {promoted_after:?}"
    );
    // The other replica is repointed and the failover recorded.
    let out = c
        .run_until(Duration::from_secs(10), |o| {
            o.state.operation.is_none()
                && o.members
                    .iter()
                    .filter(|m| m.role == MemberRole::Replica)
                    .count()
                    == 1
        })
        .await;
    writer.follow(&c);
    let lf = out.state.last_failover.clone().expect("failover recorded");
    assert_eq!((lf.from, lf.to), (0, new as i32));
    assert!(
        c.history
            .iter()
            .flat_map(|o| &o.events)
            .any(|e| e.reason == "Promoted")
    );

    // Writes resume on the new primary.
    tokio::time::sleep(Duration::from_millis(500)).await;
    // The old primary restarts with its data, booted from the persisted state.
    c.start(0);
    c.converge(Duration::from_secs(20)).await;
    writer.follow(&c);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let acked = writer.stop().await;
    let after_kill: Vec<_> = acked.iter().filter(|(_, t)| *t > killed).collect();
    assert!(!after_kill.is_empty(), "writes never resumed");
    let first = after_kill[0].1 - killed;
    eprintln!(
        "write unavailability after SIGKILL: {first:?} (promotion seen after {promoted_after:?})"
    );

    assert_eq!(c.masters().await, [new], "exactly one primary");
    assert_eq!(c.primary(), Some(new));
    let mut pc = c.server(new).conn().await;
    let total = dbsize(&mut pc).await;
    // Asynchronous replication: only writes acknowledged in the last moments
    // before the kill may be missing.
    let mut missing = 0;
    for (k, _) in &acked {
        let v: Option<String> = redis::cmd("GET").arg(k).query_async(&mut pc).await.unwrap();
        if v.is_none() {
            missing += 1;
        }
    }
    eprintln!(
        "acked {} writes, {missing} missing after failover",
        acked.len()
    );
    assert!(missing <= 50, "{missing} acknowledged writes lost");
    for r in 0..3 {
        if r != new {
            wait_dbsize(&c.ip(r), total).await;
        }
    }
    let mut old = c.server(0).conn().await;
    assert_eq!(info_field(&mut old, "role").await.as_deref(), Some("slave"));
    assert_eq!(info_field(&mut old, "master_host").await, Some(c.ip(new)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn primary_restarted_from_its_aof_is_replaced_by_its_replica_keeping_every_key() {
    let mut c = Cluster::new(73, 2, failover(5));
    c.start_all();
    c.converge(Duration::from_secs(20)).await;
    let mut p = c.server(0).conn().await;
    set_many(&mut p, "k", 500).await;
    wait_dbsize(&c.ip(1), 500).await;
    // Let the AOF reach the disk (appendfsync everysec).
    tokio::time::sleep(Duration::from_millis(1200)).await;
    c.kill(0);
    c.start(0);
    let mut p = c.server(0).conn().await;
    assert_eq!(
        info_field(&mut p, "role").await.as_deref(),
        Some("slave"),
        "boots read-only"
    );
    // The AOF restart forgot the replication history: nothing shows the
    // returned primary holds what the replica holds, so the replica (which
    // holds the history) is promoted and the returned member resyncs from it.
    let out = c.converge(Duration::from_secs(15)).await;
    assert_eq!(out.state.primary, Some(1));
    assert_eq!(out.state.term, 2);
    assert!(
        c.history
            .iter()
            .flat_map(|o| &o.events)
            .any(|e| e.reason == "PrimaryReturnedWithoutData" && e.note.contains("AOF"))
    );
    assert_eq!(c.masters().await, [1]);
    let mut np = c.server(1).conn().await;
    assert_eq!(dbsize(&mut np).await, 500);
    wait_dbsize(&c.ip(0), 500).await;
}

/// `INCR` every counter `c:0..n` `times` times in one pipeline, then `WAIT
/// replicas`; returns the values the server acknowledged (the last reply per
/// counter) once `WAIT` confirms every replica holds them.
async fn incr_all(
    conn: &mut redis::aio::MultiplexedConnection,
    n: usize,
    times: usize,
    replicas: i64,
) -> Vec<i64> {
    let mut pipe = redis::pipe();
    for _ in 0..times {
        for i in 0..n {
            pipe.cmd("INCR").arg(format!("c:{i}"));
        }
    }
    let replies: Vec<i64> = pipe.query_async(conn).await.unwrap();
    let got: i64 = redis::cmd("WAIT")
        .arg(replicas)
        .arg(5000)
        .query_async(conn)
        .await
        .unwrap();
    assert_eq!(got, replicas, "WAIT: the replicas did not acknowledge");
    replies[replies.len() - n..].to_vec()
}

async fn counters(ip: &str, n: usize) -> Vec<Option<i64>> {
    let mut conn = connect(ip, PORT).await.unwrap();
    let keys: Vec<String> = (0..n).map(|i| format!("c:{i}")).collect();
    redis::cmd("MGET")
        .arg(&keys)
        .query_async(&mut conn)
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn returned_primary_that_lost_its_last_updates_never_overwrites_the_replicas() {
    const N: usize = 50;
    let mut c = Cluster::new(91, 3, failover(5));
    c.input.settings.durability = Some(ordinal::api::redis::RedisDurability {
        min_replicas_to_write: 1,
        min_replicas_max_lag: 3,
    });
    c.start_all();
    c.converge(Duration::from_secs(20)).await;
    c.pass().await;
    let mut p = c.server(0).conn().await;
    // Phase 1: every counter at 10, on every member and on the primary's disk.
    let first = incr_all(&mut p, N, 10, 2).await;
    assert!(first.iter().all(|v| *v == 10));
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let snapshot = c.base.path().join("m0-fsynced");
    let st = std::process::Command::new("cp")
        .arg("-a")
        .arg(c.dir(0))
        .arg(&snapshot)
        .status()
        .unwrap();
    assert!(st.success());
    // Phase 2: ten more increments each, acknowledged by both replicas.
    let acked = incr_all(&mut p, N, 10, 2).await;
    assert!(acked.iter().all(|v| *v == 20));
    c.pass().await;
    // The primary's node crashes: its AOF lost the unsynced phase 2.
    c.kill(0);
    let _ = std::fs::remove_dir_all(c.dir(0));
    let st = std::process::Command::new("cp")
        .arg("-a")
        .arg(&snapshot)
        .arg(c.dir(0))
        .status()
        .unwrap();
    assert!(st.success());
    c.start(0);
    let mut back = c.server(0).conn().await;
    eventually(Duration::from_secs(10), "the AOF loaded", || async {
        let mut b = connect(&c.ip(0), PORT).await.unwrap();
        info_field(&mut b, "loading").await.as_deref() == Some("0")
    })
    .await;
    // Same key count as the replicas: a count cannot tell them apart.
    assert_eq!(dbsize(&mut back).await, N as i64);
    assert_eq!(counters(&c.ip(0), N).await[0], Some(10));

    let out = c.converge(Duration::from_secs(30)).await;
    let new = out.state.primary.unwrap() as usize;
    assert_ne!(
        new, 0,
        "the returned primary that lost updates was promoted"
    );
    assert_eq!(out.state.term, 2);
    let want: Vec<Option<i64>> = acked.iter().map(|v| Some(*v)).collect();
    assert_eq!(
        counters(&c.ip(new), N).await,
        want,
        "acknowledged increments lost on the final primary"
    );
    assert_eq!(c.masters().await, [new]);
    // The returned member resynced from the new primary.
    let ip0 = c.ip(0);
    eventually(
        Duration::from_secs(15),
        "r-0 to hold the acknowledged values",
        || {
            let (ip0, want) = (ip0.clone(), want.clone());
            async move { counters(&ip0, N).await == want }
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn durability_comes_with_the_promotion_and_a_failure_to_apply_it_is_unhealthy() {
    let mut c = Cluster::new(92, 3, failover(1));
    c.input.settings.durability = Some(ordinal::api::redis::RedisDurability {
        min_replicas_to_write: 1,
        min_replicas_max_lag: 3,
    });
    c.start_all();
    c.converge(Duration::from_secs(20)).await;
    c.pass().await;
    let min_replicas = |ip: String| async move {
        let mut conn = connect(&ip, PORT).await.unwrap();
        let v: Vec<String> = redis::cmd("CONFIG")
            .arg("GET")
            .arg("min-replicas-to-write")
            .query_async(&mut conn)
            .await
            .unwrap();
        v[1].clone()
    };
    assert_eq!(min_replicas(c.ip(1)).await, "0");
    c.kill(0);
    c.restart_isolated = false;
    let out = c
        .run_until(Duration::from_secs(20), |o| {
            o.events.iter().any(|e| e.reason == "Promoted")
        })
        .await;
    let new = out.state.primary.unwrap() as usize;
    assert!(
        c.history
            .iter()
            .flat_map(|o| &o.events)
            .any(|e| e.reason == "ReplicasFrozen"),
        "replicas frozen before the candidate was chosen"
    );
    // In the very pass that promoted it, before any other pass.
    assert_eq!(min_replicas(c.ip(new)).await, "1");
    c.start(0);
    c.converge(Duration::from_secs(20)).await;

    // The primary refuses CONFIG SET: health says durability is not applied.
    let mut pc = c.server(new).conn().await;
    let () = redis::cmd("ACL")
        .arg("SETUSER")
        .arg("default")
        .arg("-config|set")
        .query_async(&mut pc)
        .await
        .unwrap();
    c.input.settings.durability = Some(ordinal::api::redis::RedisDurability {
        min_replicas_to_write: 2,
        min_replicas_max_lag: 3,
    });
    let out = c.pass().await;
    assert!(
        matches!(&out.health, Health::Unhealthy { reason, message } if reason == "DurabilityNotApplied" && message.contains("min-replicas")),
        "{:?}",
        out.health
    );
    assert_eq!(min_replicas(c.ip(new)).await, "1");
    let () = redis::cmd("ACL")
        .arg("SETUSER")
        .arg("default")
        .arg("+config|set")
        .query_async(&mut pc)
        .await
        .unwrap();
    let out = c.converge(Duration::from_secs(10)).await;
    assert_eq!(out.health, Health::Healthy);
    assert_eq!(min_replicas(c.ip(new)).await, "2");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn primary_restarted_empty_never_becomes_the_source() {
    let mut c = Cluster::new(74, 3, failover(5));
    c.start_all();
    c.converge(Duration::from_secs(20)).await;
    let mut p = c.server(0).conn().await;
    set_many(&mut p, "k", 1000).await;
    wait_dbsize(&c.ip(1), 1000).await;
    wait_dbsize(&c.ip(2), 1000).await;
    c.pass().await;

    c.kill(0);
    c.wipe(0);
    c.start(0); // boots as a replica of itself: state.primary is still 0
    let mut replicas = [c.server(1).conn().await, c.server(2).conn().await];
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let out = c.pass().await;
        for r in replicas.iter_mut() {
            assert_eq!(dbsize(r).await, 1000, "a replica lost data");
        }
        if out.state.primary.is_some_and(|p| p != 0) && out.state.operation.is_none() {
            break;
        }
        assert!(Instant::now() < deadline, "no failover: {out:#?}");
        tokio::time::sleep(out.requeue_after.min(Duration::from_secs(1))).await;
    }
    let out = c.converge(Duration::from_secs(20)).await;
    let new = out.state.primary.unwrap() as usize;
    assert_ne!(new, 0);
    assert_eq!(out.state.term, 2);
    assert!(
        c.history
            .iter()
            .flat_map(|o| &o.events)
            .any(|e| e.reason == "PrimaryReturnedWithoutData" && e.type_ == EventType::Warning)
    );
    assert_eq!(c.masters().await, [new]);
    let mut np = c.server(new).conn().await;
    assert_eq!(dbsize(&mut np).await, 1000);
    // The emptied member got the data from the new primary.
    wait_dbsize(&c.ip(0), 1000).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn switchover_under_writes_loses_no_acknowledged_write() {
    let mut c = Cluster::new(75, 3, failover(5));
    c.start_all();
    c.converge(Duration::from_secs(20)).await;
    let writer = Writer::start((c.ip(0), PORT));
    tokio::time::sleep(Duration::from_millis(800)).await;
    c.input.desired_primary = Some(2);
    let mut saw_op = false;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let out = c.pass().await;
        writer.follow(&c);
        saw_op |= out.state.operation.is_some();
        if out.state.primary == Some(2) && out.health == Health::Healthy {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "switchover did not finish: {out:#?}"
        );
        tokio::time::sleep(out.requeue_after.min(Duration::from_secs(1))).await;
    }
    assert!(saw_op, "the switchover ran as a persisted operation");
    tokio::time::sleep(Duration::from_millis(500)).await;
    let acked = writer.stop().await;
    let out = c.pass().await;
    assert_eq!(out.state.term, 2);
    assert_eq!(c.masters().await, [2]);
    let lf = out.state.last_failover.expect("recorded");
    assert_eq!((lf.from, lf.to), (0, 2));
    let mut np = c.server(2).conn().await;
    let mut missing = Vec::new();
    for (k, _) in &acked {
        let v: Option<String> = redis::cmd("GET").arg(k).query_async(&mut np).await.unwrap();
        if v.is_none() {
            missing.push(k.clone());
        }
    }
    assert!(
        acked.len() > 100,
        "the writer barely wrote: {}",
        acked.len()
    );
    assert!(
        missing.is_empty(),
        "{} acknowledged writes lost: {:?}",
        missing.len(),
        &missing[..missing.len().min(10)]
    );
    // Everyone follows the new primary.
    for r in [0, 1] {
        let mut rc = c.server(r).conn().await;
        assert_eq!(info_field(&mut rc, "master_host").await, Some(c.ip(2)));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failover_refused_when_candidate_is_too_far_behind() {
    let mut c = Cluster::new(76, 2, failover(1));
    c.start_all();
    c.converge(Duration::from_secs(20)).await;
    // Freeze the replica, then write far more than socket buffers hold: the
    // rest waits in the primary's output buffer and dies with it.
    c.server(1).signal("STOP");
    let mut p = c.server(0).conn().await;
    let value = "x".repeat(100 * 1024);
    for chunk in 0..8 {
        let mut pipe = redis::pipe();
        for i in 0..50 {
            pipe.cmd("SET")
                .arg(format!("big:{chunk}:{i}"))
                .arg(&value)
                .ignore();
        }
        let () = pipe.query_async(&mut p).await.unwrap();
    }
    c.pass().await; // records the primary's position (replica times out)
    c.kill(0);
    c.server(1).signal("CONT");
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(4) {
        let out = c.pass().await;
        tokio::time::sleep(out.requeue_after.min(Duration::from_secs(1))).await;
    }
    let out = c.pass().await;
    assert_eq!(out.state.primary, Some(0), "no promotion");
    assert_eq!(out.state.term, 1);
    assert!(out.state.operation.is_none());
    match &out.health {
        Health::Unhealthy { reason, message } => {
            assert_eq!(reason, "FailoverRefused");
            assert!(message.contains("behind"), "{message}");
        }
        h => panic!("unexpected health {h:?}"),
    }
    let refusals = c
        .history
        .iter()
        .flat_map(|o| &o.events)
        .filter(|e| e.reason == "FailoverRefused" && e.type_ == EventType::Warning)
        .count();
    assert_eq!(refusals, 1, "one Warning event, not one per pass");
    let mut r = c.server(1).conn().await;
    assert_eq!(info_field(&mut r, "role").await.as_deref(), Some("slave"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operator_crash_mid_failover_resumes_to_one_primary() {
    let mut c = Cluster::new(77, 3, failover(1));
    c.start_all();
    c.converge(Duration::from_secs(20)).await;
    let mut p = c.server(0).conn().await;
    set_many(&mut p, "k", 200).await;
    wait_dbsize(&c.ip(1), 200).await;
    wait_dbsize(&c.ip(2), 200).await;
    c.pass().await;
    c.kill(0);

    // Crash 1: the pass that promotes (once the old primary is isolated) is
    // lost before its state is persisted.
    let before = loop {
        let saved = c.input.state.clone();
        let out = c.pass().await;
        if out
            .state
            .operation
            .as_ref()
            .is_some_and(|o| o.step == "Repoint")
        {
            break saved;
        }
        tokio::time::sleep(out.requeue_after.min(Duration::from_secs(1))).await;
    };
    let promoted = c.input.state.primary.unwrap();
    c.input.state = before;
    c.engine = ordinal::redis::RedisEngine::new(Default::default());

    // Crash 2: the operation is persisted mid-way; a new engine resumes it.
    let out = c
        .run_until(Duration::from_secs(10), |o| o.state.operation.is_some())
        .await;
    assert_eq!(
        out.state.primary,
        Some(promoted),
        "the same candidate is chosen again"
    );
    assert_eq!(out.state.term, 2, "one term per failover");
    c.engine = ordinal::redis::RedisEngine::new(Default::default());
    let out = c
        .run_until(Duration::from_secs(15), |o| {
            o.state.operation.is_none()
                && o.members
                    .iter()
                    .filter(|m| m.role == MemberRole::Replica)
                    .count()
                    == 1
        })
        .await;
    assert_eq!(out.state.term, 2);
    assert_eq!(c.masters().await, [promoted as usize]);
    let other = 3 - promoted as usize;
    let mut oc = c.server(other).conn().await;
    assert_eq!(
        info_field(&mut oc, "master_host").await,
        Some(c.ip(promoted as usize))
    );
    let mut np = c.server(promoted as usize).conn().await;
    assert_eq!(dbsize(&mut np).await, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backup_streams_and_restore_verifies_before_installing() {
    let mut c = Cluster::new(78, 2, failover(5));
    c.start_all();
    c.run_until(Duration::from_secs(10), |o| o.state.primary == Some(0))
        .await;
    c.kill(1);
    c.wipe(1);
    let mut p = c.server(0).conn().await;
    // ~100 MB: 400k keys of 256 bytes (DEBUG POPULATE is not replicated, so
    // the replica is started afterwards, emptied, and full-syncs it).
    let () = redis::cmd("DEBUG")
        .arg("POPULATE")
        .arg(400_000)
        .arg("key")
        .arg(256)
        .query_async(&mut p)
        .await
        .unwrap();
    c.start(1);
    c.converge(Duration::from_secs(60)).await;
    wait_dbsize(&c.ip(1), 400_000).await;

    // Send the ~100 MB uncompressed so the stream really is that large.
    let mut rc1 = c.server(1).conn().await;
    let () = redis::cmd("CONFIG")
        .arg("SET")
        .arg("rdbcompression")
        .arg("no")
        .query_async(&mut rc1)
        .await
        .unwrap();
    let artifact = c.base.path().join("backup.rdb.zst");
    let file = tokio::fs::File::create(&artifact).await.unwrap();
    // The source is chosen from the last outcome: the replica.
    let last = c.pass().await;
    let source =
        ordinal::redis::backup_source_for(&c.input.members, &last.members, &c.input.credentials)
            .unwrap();
    assert_eq!(source.host, c.ip(1));
    let t = Instant::now();
    let report = backup_rdb(&source, file, &BackupOptions::default())
        .await
        .unwrap();
    eprintln!("backup: {report:?} in {:?}", t.elapsed());
    assert!(report.raw_bytes > 100_000_000, "{report:?}");
    assert_eq!(
        report.compressed_bytes,
        std::fs::metadata(&artifact).unwrap().len()
    );
    assert!(report.offset >= 0);
    let bytes = std::fs::read(&artifact).unwrap();
    use sha2::Digest;
    assert_eq!(hex::encode(sha2::Sha256::digest(&bytes)), report.sha256);

    // Restore into a fresh data dir, start a server there: same data.
    let dir = c.base.path().join("restored").join("data");
    std::fs::create_dir_all(&dir).unwrap();
    let rr = restore_rdb(
        tokio::fs::File::open(&artifact).await.unwrap(),
        &report.sha256,
        &dir,
    )
    .await
    .unwrap();
    assert_eq!(rr.raw_bytes, report.raw_bytes);
    let restored = Server::start(&format!("127.0.{}.9", c.block), PORT, &dir, None);
    let mut rc = restored.conn().await;
    eventually(
        Duration::from_secs(30),
        "the restored dataset to load",
        || {
            let ip = restored.ip.clone();
            async move {
                match connect(&ip, PORT).await {
                    Ok(mut c) => info_field(&mut c, "loading").await.as_deref() == Some("0"),
                    Err(_) => false,
                }
            }
        },
    )
    .await;
    assert_eq!(dbsize(&mut rc).await, 400_000);
    for k in ["key:0", "key:1234", "key:399999"] {
        let want: String = redis::cmd("GET").arg(k).query_async(&mut p).await.unwrap();
        let got: String = redis::cmd("GET").arg(k).query_async(&mut rc).await.unwrap();
        assert_eq!(got, want, "{k}");
    }

    // A corrupted artifact fails the checksum and leaves the dir untouched.
    let mut bad = bytes.clone();
    let mid = bad.len() / 2;
    bad[mid] ^= 0xff;
    let dir2 = c.base.path().join("corrupt").join("data");
    std::fs::create_dir_all(&dir2).unwrap();
    let err = restore_rdb(&bad[..], &report.sha256, &dir2)
        .await
        .unwrap_err();
    assert!(matches!(err, BackupError::ChecksumMismatch { .. }), "{err}");
    assert_eq!(
        std::fs::read_dir(&dir2).unwrap().count(),
        0,
        "data dir untouched"
    );
    // A truncated artifact too.
    let err = restore_rdb(&bytes[..bytes.len() / 3], &report.sha256, &dir2)
        .await
        .unwrap_err();
    assert!(matches!(err, BackupError::ChecksumMismatch { .. }), "{err}");
    assert_eq!(
        std::fs::read_dir(&dir2).unwrap().count(),
        0,
        "data dir untouched"
    );
    // A non-empty data dir is refused.
    let err = restore_rdb(&bytes[..], &report.sha256, &dir)
        .await
        .unwrap_err();
    assert!(matches!(err, BackupError::DataDirNotEmpty(..)), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn switchover_that_cannot_complete_leaves_the_old_primary_writable() {
    let mut c = Cluster::new(79, 2, failover(5));
    c.engine = ordinal::redis::RedisEngine::new(ordinal::redis::RedisEngineConfig {
        switchover_timeout: Duration::from_secs(1),
        ..Default::default()
    });
    c.start_all();
    c.converge(Duration::from_secs(20)).await;
    // The target answers but applies nothing from its primary (its master
    // link's writes are postponed), so it cannot catch up with a new write.
    let mut target = c.server(1).conn().await;
    let () = redis::cmd("CLIENT")
        .arg("PAUSE")
        .arg(20_000)
        .arg("WRITE")
        .query_async(&mut target)
        .await
        .unwrap();
    let mut p = c.server(0).conn().await;
    let () = redis::cmd("SET")
        .arg("before")
        .arg("1")
        .query_async(&mut p)
        .await
        .unwrap();
    c.input.desired_primary = Some(1);
    let out = c
        .run_until(Duration::from_secs(15), |o| {
            o.events.iter().any(|e| e.reason == "SwitchoverFailed")
        })
        .await;
    assert_eq!(out.state.primary, Some(0));
    assert_eq!(out.state.term, 1);
    assert_eq!(
        out.state.operation.as_ref().map(|o| o.step.as_str()),
        Some("RetryWait")
    );
    // Writable again, at once.
    let t = Instant::now();
    let () = redis::cmd("SET")
        .arg("after")
        .arg("1")
        .query_async(&mut p)
        .await
        .unwrap();
    assert!(
        t.elapsed() < Duration::from_millis(500),
        "writes still paused"
    );
    assert_eq!(info_field(&mut p, "role").await.as_deref(), Some("master"));
    // No new attempt (and no new write pause) before the retry time.
    let out = c.pass().await;
    assert!(out.events.iter().all(|e| e.reason != "SwitchoverStarted"));
    assert_eq!(out.members[0].role, MemberRole::Primary);
    let () = redis::cmd("CLIENT")
        .arg("UNPAUSE")
        .query_async(&mut target)
        .await
        .unwrap();
    wait_dbsize(&c.ip(1), 2).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn durable_mode_is_enforced_on_the_primary_only() {
    let mut c = Cluster::new(80, 2, failover(5));
    c.input.settings.durability = Some(ordinal::api::redis::RedisDurability {
        min_replicas_to_write: 1,
        min_replicas_max_lag: 3,
    });
    c.start_all();
    c.converge(Duration::from_secs(20)).await;
    c.pass().await;
    let get = |ip: String| async move {
        let mut conn = connect(&ip, PORT).await.unwrap();
        let v: Vec<String> = redis::cmd("CONFIG")
            .arg("GET")
            .arg("min-replicas-to-write")
            .query_async(&mut conn)
            .await
            .unwrap();
        v[1].clone()
    };
    assert_eq!(get(c.ip(0)).await, "1");
    assert_eq!(get(c.ip(1)).await, "0");
    // Without its replica, the primary refuses writes instead of losing them.
    c.kill(1);
    let mut p = c.server(0).conn().await;
    let mut refused = false;
    for _ in 0..100 {
        let r = redis::cmd("SET")
            .arg("k")
            .arg("v")
            .query_async::<()>(&mut p)
            .await;
        if let Err(e) = r {
            assert!(e.to_string().contains("NOREPLICAS"), "{e}");
            refused = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        refused,
        "the primary kept accepting writes without replicas"
    );
    // Durability off again: the engine resets it.
    c.input.settings.durability = None;
    c.pass().await;
    assert_eq!(get(c.ip(0)).await, "0");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn password_rotation_keeps_replication_up() {
    const NEW: &str = "n3w-r0tated-pw";
    let mut c = Cluster::new(81, 2, failover(5));
    c.start_all();
    c.converge(Duration::from_secs(20)).await;
    c.input.credentials = ordinal::engine::Credentials(
        [
            ("password".to_string(), NEW.to_string()),
            (
                "previous-password".to_string(),
                harness::PASSWORD.to_string(),
            ),
        ]
        .into(),
    );
    let mut rotated = 0;
    c.run_until(Duration::from_secs(15), |o| {
        rotated += o
            .events
            .iter()
            .filter(|e| e.reason == "PasswordRotated")
            .count();
        rotated == 2 && o.health == Health::Healthy
    })
    .await;
    assert!(
        c.history
            .iter()
            .flat_map(|o| &o.events)
            .any(|e| e.reason == "PasswordAdded")
    );
    for r in [0, 1] {
        assert!(harness::connect_with(&c.ip(r), PORT, NEW).await.is_ok());
        assert!(
            harness::connect_with(&c.ip(r), PORT, harness::PASSWORD)
                .await
                .is_err(),
            "the old password still works on member {r}"
        );
    }
    // Replication kept working, and a replica restarted with the new
    // password in its configuration links up again.
    let mut p = harness::connect_with(&c.ip(0), PORT, NEW).await.unwrap();
    let () = redis::cmd("SET")
        .arg("after-rotation")
        .arg("1")
        .query_async(&mut p)
        .await
        .unwrap();
    c.kill(1);
    let replicaof = c.boot_replicaof(1);
    let r = Server::start_with_password(&c.ip(1), PORT, &c.dir(1), replicaof, NEW);
    eventually(
        Duration::from_secs(10),
        "the restarted replica to sync",
        || async {
            match harness::connect_with(&r.ip, PORT, NEW).await {
                Ok(mut rc) => {
                    let v: Option<String> = redis::cmd("GET")
                        .arg("after-rotation")
                        .query_async(&mut rc)
                        .await
                        .ok()
                        .flatten();
                    v.as_deref() == Some("1")
                        && info_field(&mut rc, "master_link_status").await.as_deref() == Some("up")
                }
                Err(_) => false,
            }
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backup_from_a_primary_with_disk_based_sync() {
    let mut c = Cluster::new(82, 1, failover(5));
    c.start(0);
    c.converge(Duration::from_secs(10)).await;
    let mut p = c.server(0).conn().await;
    set_many(&mut p, "d", 5000).await;
    // Disk-based sync: the RDB arrives as `$<len>` instead of an EOF mark.
    let () = redis::cmd("CONFIG")
        .arg("SET")
        .arg("repl-diskless-sync")
        .arg("no")
        .query_async(&mut p)
        .await
        .unwrap();
    let mut artifact = Vec::new();
    let source = BackupSource {
        host: c.ip(0),
        port: PORT,
        password: Some(harness::PASSWORD.into()),
    };
    let report = backup_rdb(&source, &mut artifact, &BackupOptions::default())
        .await
        .unwrap();
    // (A primary without replicas keeps no backlog: its offset is still 0.)
    assert!(
        report.offset >= 0 && report.raw_bytes > 50_000,
        "{report:?}"
    );
    assert_eq!(report.compressed_bytes as usize, artifact.len());
    // A wrong password is a clear error, not an empty backup.
    let bad = BackupSource {
        password: Some("nope".into()),
        ..source.clone()
    };
    let err = backup_rdb(&bad, Vec::new(), &BackupOptions::default())
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            BackupError::Refused {
                command: "AUTH",
                ..
            }
        ),
        "{err}"
    );

    let dir = c.base.path().join("restored").join("data");
    std::fs::create_dir_all(&dir).unwrap();
    restore_rdb(&artifact[..], &report.sha256, &dir)
        .await
        .unwrap();
    let restored = Server::start(&format!("127.0.{}.9", c.block), PORT, &dir, None);
    let mut rc = restored.conn().await;
    wait_dbsize(&restored.ip, 5000).await;
    let v: String = redis::cmd("GET")
        .arg("d:4321")
        .query_async(&mut rc)
        .await
        .unwrap();
    assert_eq!(v, "4321");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operator_crash_mid_switchover_adopts_the_new_primary() {
    let mut c = Cluster::new(83, 3, failover(5));
    c.start_all();
    c.converge(Duration::from_secs(20)).await;
    let mut p = c.server(0).conn().await;
    set_many(&mut p, "k", 300).await;
    c.input.desired_primary = Some(1);
    // The pass that sends FAILOVER TO is lost before its state is persisted.
    let before = c.input.state.clone();
    let out = c.pass().await;
    assert!(out.state.operation.is_some());
    c.input.state = before;
    c.engine = ordinal::redis::RedisEngine::new(Default::default());
    let t = Instant::now();
    let out = c.converge(Duration::from_secs(15)).await;
    assert!(
        t.elapsed() < Duration::from_secs(4),
        "no detection window needed: {:?}",
        t.elapsed()
    );
    assert_eq!(out.state.primary, Some(1));
    assert_eq!(out.state.term, 2);
    assert_eq!(c.masters().await, [1]);
    let mut np = c.server(1).conn().await;
    assert_eq!(dbsize(&mut np).await, 300);
    wait_dbsize(&c.ip(2), 300).await;
}

/// Samples every 200 ms which members accept writes (`role:master`, not
/// loading, no FAILOVER pausing it) and counts samples with more than one.
struct Sampler {
    stop: tokio::sync::watch::Sender<bool>,
    handle: tokio::task::JoinHandle<(u64, u64)>,
}

impl Sampler {
    fn start(ips: Vec<String>) -> Sampler {
        let (stop, rx) = tokio::sync::watch::channel(false);
        let handle = tokio::spawn(async move {
            let (mut samples, mut dual) = (0u64, 0u64);
            while !*rx.borrow() {
                let writable = futures::future::join_all(ips.iter().map(|ip| async move {
                    let probe = async {
                        let mut c = connect(ip, PORT).await.ok()?;
                        let info: String = redis::cmd("INFO")
                            .arg("replication")
                            .query_async(&mut c)
                            .await
                            .ok()?;
                        let has = |l: &str| info.lines().any(|x| x.trim() == l);
                        Some(has("role:master") && has("master_failover_state:no-failover"))
                    };
                    tokio::time::timeout(Duration::from_millis(400), probe)
                        .await
                        .ok()
                        .flatten()
                        .unwrap_or(false)
                }))
                .await;
                samples += 1;
                let n = writable.iter().filter(|w| **w).count();
                if n > 1 {
                    dual += 1;
                    eprintln!("[sampler] {n} writable members: {writable:?}");
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            (samples, dual)
        });
        Sampler { stop, handle }
    }

    async fn stop(self) -> (u64, u64) {
        self.stop.send_replace(true);
        self.handle.await.unwrap()
    }
}

/// Proxies between the operator and each member (`.0`, the member's address)
/// and between the members (`.1`, its DNS name); clients dial members directly.
async fn route_through_proxies(c: &mut Cluster) -> Vec<(proxy::Proxy, proxy::Proxy)> {
    let mut out = Vec::new();
    for i in 0..c.servers.len() {
        let real = format!("{}:{PORT}", c.ip(i));
        let op_ip = format!("127.0.{}.{}", c.block, 101 + i);
        let peer_ip = format!("127.0.{}.{}", c.block, 201 + i);
        let op = proxy::Proxy::start(&format!("{op_ip}:{PORT}"), &real).await;
        let peer = proxy::Proxy::start(&format!("{peer_ip}:{PORT}"), &real).await;
        c.route(i, op_ip, peer_ip);
        out.push((op, peer));
    }
    out
}

/// Acknowledged keys missing on `ip`.
async fn missing_keys(ip: &str, acked: &[(String, Instant)]) -> usize {
    let mut conn = connect(ip, PORT).await.unwrap();
    let mut missing = 0;
    for chunk in acked.chunks(500) {
        let keys: Vec<&str> = chunk.iter().map(|(k, _)| k.as_str()).collect();
        let vals: Vec<Option<String>> = redis::cmd("MGET")
            .arg(&keys)
            .query_async(&mut conn)
            .await
            .unwrap();
        missing += vals.iter().filter(|v| v.is_none()).count();
    }
    missing
}

/// Every key `<prefix>:0..n` present on `ip`; returns the missing ones.
async fn missing_prefixed_keys(ip: &str, prefix: &str, n: usize) -> Vec<String> {
    let mut c = connect(ip, PORT).await.unwrap();
    let keys: Vec<String> = (0..n).map(|i| format!("{prefix}:{i}")).collect();
    let mut missing = Vec::new();
    for chunk in keys.chunks(500) {
        let vals: Vec<Option<String>> = redis::cmd("MGET")
            .arg(chunk)
            .query_async(&mut c)
            .await
            .unwrap();
        for (k, v) in chunk.iter().zip(vals) {
            if v.is_none() {
                missing.push(k.clone());
            }
        }
    }
    missing
}

fn count_events(c: &Cluster, reason: &str) -> usize {
    c.history
        .iter()
        .flat_map(|o| &o.events)
        .filter(|e| e.reason == reason)
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operator_partitioned_from_a_live_primary_does_not_fail_over() {
    let mut c = Cluster::new(84, 3, failover(2));
    let proxies = route_through_proxies(&mut c).await;
    c.start_all();
    c.converge(Duration::from_secs(20)).await;
    c.pass().await; // the ping period is set: replicas hear from the primary every second
    let sampler = Sampler::start((0..3).map(|i| c.ip(i)).collect());
    let writer = Writer::start((c.ip(0), PORT));
    tokio::time::sleep(Duration::from_millis(500)).await;

    // Only the operator loses the primary; replicas and clients still reach it.
    proxies[0].0.cut();
    let cut = Instant::now();
    while cut.elapsed() < Duration::from_secs(8) {
        let out = c.pass().await;
        assert_eq!(out.state.primary, Some(0), "no failover: {out:#?}");
        assert!(out.state.operation.is_none(), "no failover: {out:#?}");
        tokio::time::sleep(out.requeue_after.min(Duration::from_secs(1))).await;
    }
    let out = c.last.clone().unwrap();
    assert!(
        matches!(&out.health, Health::Unhealthy { reason, .. } if reason == "PrimaryUnreachableFromOperator"),
        "{:?}",
        out.health
    );
    assert_eq!(
        out.members[0].role,
        MemberRole::Primary,
        "it keeps its label"
    );
    assert_eq!(count_events(&c, "PrimaryUnreachableFromOperator"), 1);
    assert!(out.isolate.is_empty());

    proxies[0].0.heal();
    let out = c.converge(Duration::from_secs(15)).await;
    assert_eq!((out.state.primary, out.state.term), (Some(0), 1));
    tokio::time::sleep(Duration::from_millis(300)).await;
    let acked = writer.stop().await;
    let (samples, dual) = sampler.stop().await;
    let missing = missing_keys(&c.ip(0), &acked).await;
    eprintln!(
        "operator<->primary partition: acked {} writes, found {} on the primary, {missing} missing; {dual} dual-writable samples of {samples}",
        acked.len(),
        acked.len() - missing
    );
    assert!(
        acked.len() > 100,
        "the writer barely wrote: {}",
        acked.len()
    );
    assert_eq!(missing, 0);
    assert_eq!(dual, 0);
    assert_eq!(c.masters().await, [0]);
    assert_eq!(count_events(&c, "Promoted"), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_partition_of_the_primary_fails_over_after_isolating_it() {
    let mut c = Cluster::new(85, 3, failover(2));
    c.input.settings.durability = Some(ordinal::api::redis::RedisDurability {
        min_replicas_to_write: 1,
        min_replicas_max_lag: 2,
    });
    c.restart_isolated = true;
    let proxies = route_through_proxies(&mut c).await;
    c.start_all();
    c.converge(Duration::from_secs(20)).await;
    c.pass().await;
    let sampler = Sampler::start((0..3).map(|i| c.ip(i)).collect());
    let writer = Writer::start_with((c.ip(0), PORT), Some(1));
    tokio::time::sleep(Duration::from_millis(800)).await;

    // The operator and the replicas lose the primary; clients still reach it.
    proxies[0].0.cut();
    proxies[0].1.cut();
    let cut = Instant::now();
    let out = loop {
        let out = c.pass().await;
        writer.follow(&c);
        if out.state.primary.is_some_and(|p| p != 0)
            && out.members.iter().any(|m| m.role == MemberRole::Primary)
        {
            break out;
        }
        assert!(
            cut.elapsed() < Duration::from_secs(30),
            "no failover: {out:#?}"
        );
        tokio::time::sleep(out.requeue_after.min(Duration::from_secs(1))).await;
    };
    let new = out.state.primary.unwrap() as usize;
    eprintln!("failed over to r-{new} after {:?}", cut.elapsed());
    assert_eq!(c.isolations, [0], "the old primary was isolated");
    // The promotion came after the isolation, never before.
    let isolated_at = c
        .history
        .iter()
        .position(|o| !o.isolate.is_empty())
        .unwrap();
    let promoted_at = c
        .history
        .iter()
        .position(|o| o.events.iter().any(|e| e.reason == "Promoted"))
        .unwrap();
    assert!(isolated_at < promoted_at);
    // The old primary came back (a new pod) read-only: it takes no write.
    let mut old = c.server(0).conn().await;
    let err = redis::cmd("SET")
        .arg("stale")
        .arg("1")
        .query_async::<()>(&mut old)
        .await
        .unwrap_err();
    assert!(
        err.to_string().to_lowercase().contains("read only"),
        "{err}"
    );

    proxies[0].0.heal();
    proxies[0].1.heal();
    let out = c.converge(Duration::from_secs(20)).await;
    writer.follow(&c);
    assert_eq!(out.state.primary, Some(new as i32));
    tokio::time::sleep(Duration::from_millis(500)).await;
    let acked = writer.stop().await;
    let (samples, dual) = sampler.stop().await;
    let missing = missing_keys(&c.ip(new), &acked).await;
    eprintln!(
        "full partition (durable): acked {} writes, found {} on the new primary, {missing} missing; {dual} dual-writable samples of {samples}",
        acked.len(),
        acked.len() - missing
    );
    assert!(
        acked.len() > 100,
        "the writer barely wrote: {}",
        acked.len()
    );
    assert_eq!(missing, 0, "acknowledged writes lost");
    assert_eq!(dual, 0, "two writable members");
    assert_eq!(c.masters().await, [new]);
    let mut old = c.server(0).conn().await;
    assert_eq!(info_field(&mut old, "master_host").await, Some(c.dns(new)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operator_killed_at_random_points_of_failovers_and_switchovers() {
    use rand::{Rng, SeedableRng};
    let seed = std::env::var("ORDINAL_CHAOS_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
        });
    eprintln!("chaos seed {seed} (ORDINAL_CHAOS_SEED={seed} replays it)");
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut c = Cluster::new(86, 3, failover(1));
    c.input.settings.durability = Some(ordinal::api::redis::RedisDurability {
        min_replicas_to_write: 1,
        min_replicas_max_lag: 2,
    });
    // Durable mode: a restarted primary holds every write it executed.
    c.extra_config = "appendfsync always\n".into();
    c.restart_isolated = true;
    c.start_all();
    c.converge(Duration::from_secs(20)).await;
    c.pass().await;
    let sampler = Sampler::start((0..3).map(|i| c.ip(i)).collect());
    let writer = Writer::start_with((c.ip(0), PORT), Some(1));
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut crashes = 0;
    for round in 0..10 {
        let primary = c.input.state.primary.unwrap() as usize;
        let failover_round = round % 2 == 0;
        let crash_pass = rng.random_range(0..3u32);
        let crash_ms = rng.random_range(0..8u64);
        let lose_whole_pass = rng.random_bool(0.5);
        if failover_round {
            c.kill(primary);
            c.input.desired_primary = None;
        } else {
            let target = (primary + 1 + rng.random_range(0..2usize)) % 3;
            c.input.desired_primary = Some(target as i32);
        }
        eprintln!(
            "round {round}: {} from r-{primary}; operator dies in operation pass {crash_pass} ({})",
            if failover_round {
                "failover"
            } else {
                "switchover"
            },
            if lose_whole_pass {
                "after the pass, before its state is persisted".to_string()
            } else {
                format!("{crash_ms} ms into the pass")
            }
        );
        let start = Instant::now();
        let mut in_op = 0;
        let mut crashed = false;
        loop {
            let st = &c.input.state;
            let window_over = st.primary_unhealthy_since.as_ref().is_some_and(|t| {
                chrono::Utc::now().timestamp_millis() - t.0.as_millisecond() >= 1000
            });
            let active = st.operation.is_some()
                || window_over
                || c.input
                    .desired_primary
                    .is_some_and(|d| Some(d) != st.primary);
            if active && !crashed && in_op == crash_pass {
                c.input.now = chrono::Utc::now();
                if lose_whole_pass {
                    // Its database steps happen; the reconciler never persists it.
                    let _ = c.engine.reconcile(&c.input).await.unwrap();
                } else {
                    let _ = tokio::time::timeout(
                        Duration::from_millis(crash_ms),
                        c.engine.reconcile(&c.input),
                    )
                    .await;
                }
                c.engine = ordinal::redis::RedisEngine::new(Default::default());
                crashed = true;
                crashes += 1;
                continue;
            }
            if active {
                in_op += 1;
            }
            let out = c.pass().await;
            writer.follow(&c);
            let done = out.state.operation.is_none()
                && out.health == Health::Healthy
                && out.members.iter().all(|m| m.role != MemberRole::Unknown)
                && (failover_round || out.state.primary == c.input.desired_primary);
            if done {
                if !crashed {
                    eprintln!("round {round}: the operation ended before the crash point");
                }
                break;
            }
            if failover_round && c.servers[primary].is_none() && in_op > crash_pass + 10 {
                // Never isolated (e.g. it was promoted back): the pod comes back.
                c.start(primary);
            }
            assert!(
                start.elapsed() < Duration::from_secs(60),
                "round {round} did not converge: {out:#?}"
            );
            tokio::time::sleep(out.requeue_after.min(Duration::from_millis(300))).await;
        }
        if c.servers[primary].is_none() {
            c.start(primary);
        }
        let out = c.converge(Duration::from_secs(30)).await;
        writer.follow(&c);
        eprintln!(
            "round {round}: primary r-{} in term {} after {:?}",
            out.state.primary.unwrap(),
            out.state.term,
            start.elapsed()
        );
        assert_eq!(c.masters().await.len(), 1, "one primary");
    }
    c.input.desired_primary = None;
    let out = c.converge(Duration::from_secs(30)).await;
    writer.follow(&c);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let acked = writer.stop().await;
    let (samples, dual) = sampler.stop().await;
    let p = out.state.primary.unwrap() as usize;
    let missing = missing_keys(&c.ip(p), &acked).await;
    eprintln!(
        "operator kills (seed {seed}): {crashes} of 10 operations interrupted; acked {} writes, found {} on the final primary, {missing} missing; {dual} dual-writable samples of {samples}",
        acked.len(),
        acked.len() - missing
    );
    assert!(
        acked.len() > 100,
        "the writer barely wrote: {}",
        acked.len()
    );
    assert_eq!(missing, 0, "acknowledged writes lost (seed {seed})");
    assert_eq!(dual, 0, "two writable members (seed {seed})");
    assert_eq!(c.masters().await, [p]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recreated_over_kept_volumes_adopts_the_full_member_not_the_emptied_ordinal_zero() {
    let mut c = Cluster::new(87, 3, failover(5));
    c.start_all();
    c.converge(Duration::from_secs(20)).await;
    let mut p = c.server(0).conn().await;
    set_many(&mut p, "k", 2000).await;
    for r in 0..3 {
        wait_dbsize(&c.ip(r), 2000).await;
    }
    // The resource is deleted (every pod goes, the volumes stay), ordinal 0's
    // volume is lost, the resource is applied again: no recorded state.
    for r in 0..3 {
        c.kill(r);
    }
    c.wipe(0);
    c.input.state = Default::default();
    c.history.clear();
    c.start_all();
    // As rendered, nobody accepts writes and nobody syncs before the engine decides.
    assert!(c.masters().await.is_empty());
    let out = c.converge(Duration::from_secs(30)).await;
    assert_eq!(
        out.state.primary,
        Some(1),
        "lowest of the equally full members"
    );
    let events: Vec<_> = c.history.iter().flat_map(|o| o.events.clone()).collect();
    assert!(events.iter().any(|e| e.reason == "Adopted"), "{events:#?}");
    assert!(!events.iter().any(|e| e.reason == "Bootstrapped"));
    assert_eq!(c.masters().await, [1]);
    assert_eq!(
        missing_prefixed_keys(&c.ip(1), "k", 2000).await,
        Vec::<String>::new()
    );
    // The emptied member is a replica of the adopted primary with every key.
    wait_dbsize(&c.ip(0), 2000).await;
    wait_dbsize(&c.ip(2), 2000).await;
    assert_eq!(
        missing_prefixed_keys(&c.ip(0), "k", 2000).await,
        Vec::<String>::new()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_status_under_writes_adopts_the_running_primary_in_the_same_pass() {
    let mut c = Cluster::new(88, 3, failover(5));
    c.start_all();
    c.converge(Duration::from_secs(20)).await;
    let writer = Writer::start((c.ip(0), PORT));
    tokio::time::sleep(Duration::from_millis(500)).await;
    c.input.state = Default::default();
    let out = c.pass().await;
    assert_eq!(out.state.primary, Some(0));
    assert_eq!(
        c.primary(),
        Some(0),
        "the primary keeps its role in the same pass"
    );
    let out = c.converge(Duration::from_secs(10)).await;
    assert_eq!(out.state.primary, Some(0));
    tokio::time::sleep(Duration::from_millis(300)).await;
    let acked = writer.stop().await;
    assert!(acked.len() > 10, "the writer kept writing: {}", acked.len());
    assert_eq!(c.masters().await, [0]);
    let mut conn = c.server(0).conn().await;
    for (key, _) in &acked {
        let v: Option<String> = redis::cmd("GET")
            .arg(key)
            .query_async(&mut conn)
            .await
            .unwrap();
        assert!(v.is_some(), "acknowledged {key} lost");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn diverged_members_are_refused_and_both_keep_their_data() {
    let mut c = Cluster::new(89, 2, failover(5));
    c.start_all();
    c.converge(Duration::from_secs(20)).await;
    let mut p = c.server(0).conn().await;
    set_many(&mut p, "k", 100).await;
    wait_dbsize(&c.ip(1), 100).await;
    // Split brain nobody recorded: 1 is detached and written to, 0 too.
    let mut r = c.server(1).conn().await;
    let () = redis::cmd("REPLICAOF")
        .arg("NO")
        .arg("ONE")
        .query_async(&mut r)
        .await
        .unwrap();
    set_many(&mut r, "only1", 10).await;
    set_many(&mut p, "only0", 20).await;
    c.input.state = Default::default();
    for _ in 0..3 {
        let out = c.pass().await;
        assert_eq!(out.state.primary, None);
        assert!(
            matches!(&out.health, Health::Unhealthy { reason, .. } if reason == "AdoptionRefused"),
            "{:?}",
            out.health
        );
    }
    let refused = c.history.iter().flat_map(|o| o.events.clone());
    assert!(
        refused
            .into_iter()
            .any(|e| e.reason == "AdoptionRefused" && e.type_ == EventType::Warning)
    );
    // Nothing was wiped or resynced.
    assert_eq!(dbsize(&mut c.server(0).conn().await).await, 120);
    assert_eq!(dbsize(&mut c.server(1).conn().await).await, 110);
}

/// `total_connections_received` of every running server, read through
/// `probes` (connections opened once, so reading adds nothing).
async fn connections_received(probes: &mut [redis::aio::MultiplexedConnection]) -> Vec<i64> {
    let mut out = Vec::new();
    for p in probes.iter_mut() {
        let v = info_field(p, "total_connections_received")
            .await
            .expect("INFO stats total_connections_received");
        out.push(v.parse().unwrap());
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn steady_passes_reuse_connections_and_reconnect_after_a_restart_or_a_stall() {
    const PASSES: usize = 20;
    let mut c = Cluster::new(93, 3, failover(5));
    c.start_all();
    c.converge(Duration::from_secs(20)).await;

    let mut probes = Vec::new();
    for i in 0..3 {
        probes.push(c.server(i).conn().await);
    }
    let before = connections_received(&mut probes).await;
    for _ in 0..PASSES {
        let out = c.pass().await;
        assert_eq!(out.health, Health::Healthy);
    }
    let after = connections_received(&mut probes).await;
    let opened: i64 = after.iter().zip(&before).map(|(a, b)| a - b).sum();
    eprintln!("[connections] {PASSES} steady passes over 3 members opened {opened} connections");
    // One per member per pass without the cache (60 here).
    assert!(
        opened <= 1,
        "{PASSES} steady passes opened {opened} connections: {before:?} -> {after:?}"
    );
    assert_eq!(c.engine.cached_connections(), 3);

    // A replica killed and restarted: its kept connection is dead. The engine
    // notices in the first pass, reconnects at once and reads the new server
    // (a new run_id), never the stale connection.
    let old_run_id = info_field(&mut probes[2], "run_id").await.unwrap();
    c.kill(2);
    c.start(2);
    let out = c.pass().await;
    assert!(
        out.members[2].reachable,
        "the restarted member is read through a new connection in the first pass: {out:#?}"
    );
    let out = c.converge(Duration::from_secs(20)).await;
    assert_eq!(out.state.primary, Some(0));
    assert_eq!(out.state.term, 1);
    assert_eq!(c.masters().await, [0]);
    probes[2] = c.server(2).conn().await;
    assert_ne!(
        info_field(&mut probes[2], "run_id").await.unwrap(),
        old_run_id
    );
    let before = connections_received(&mut probes).await;
    for _ in 0..PASSES {
        assert_eq!(c.pass().await.health, Health::Healthy);
    }
    let after = connections_received(&mut probes).await;
    let opened: i64 = after.iter().zip(&before).map(|(a, b)| a - b).sum();
    assert!(opened <= 1, "after the restart: {before:?} -> {after:?}");

    // A stalled replica: its kept connection times out within the command
    // timeout of one pass and is dropped; once the server runs again the
    // next pass opens a new connection (the timed-out one, with its late
    // reply, is never used again).
    c.server(2).signal("STOP");
    let out = c.pass().await;
    c.server(2).signal("CONT");
    assert!(!out.members[2].reachable, "{out:#?}");
    assert_eq!(c.engine.cached_connections(), 2);
    let before = connections_received(&mut probes).await;
    let out = c.converge(Duration::from_secs(20)).await;
    let after = connections_received(&mut probes).await;
    assert_eq!(out.members[2].role, MemberRole::Replica);
    assert_eq!(c.engine.cached_connections(), 3);
    assert!(
        after[2] > before[2],
        "the stalled member got a new connection: {before:?} -> {after:?}"
    );
    assert_eq!(c.masters().await, [0]);
}

/// Subscribers of the primary watch's channel on `ip`.
async fn watch_subscribers(ip: &str) -> i64 {
    let mut c = connect(ip, PORT).await.unwrap();
    let (_, n): (String, i64) = redis::cmd("PUBSUB")
        .arg("NUMSUB")
        .arg(ordinal::redis::watch::CHANNEL)
        .query_async(&mut c)
        .await
        .unwrap();
    n
}

/// The primary watch (what the controller keeps per cluster): one
/// connection to the confirmed primary, kept across steady passes, silent
/// while the primary is healthy and idle, firing when the primary process
/// is killed; the pass it triggers sees the primary gone, and the watch is
/// dropped while no primary is confirmed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn primary_watch_fires_when_the_primary_dies_and_stays_silent_while_it_idles() {
    use ordinal::watch::{PrimaryWatches, WatchKey, follow, wait_fired};
    let mut c = Cluster::new(100, 2, failover(30));
    c.start_all();
    let out = c.converge(Duration::from_secs(20)).await;
    // Adoption of empty members may pick any of them.
    let p = c.primary().expect("a primary");
    let gauge = prometheus_client::metrics::gauge::Gauge::default();
    let watches = PrimaryWatches::new(vec![("redis", gauge.clone())]);
    let key = WatchKey {
        engine: "redis",
        namespace: "test".into(),
        name: "watched".into(),
    };
    follow(&watches, &key, &c.engine, &c.input, &out);
    assert_eq!(
        watches.watching(&key),
        Some(format!("{}:{PORT}", c.ip(p))),
        "the confirmed primary is watched"
    );
    eventually(Duration::from_secs(10), "the watch subscribed", || async {
        watch_subscribers(&c.ip(p)).await == 1
    })
    .await;
    // A watch the server refuses says why, and subscribes nothing.
    let refused = ordinal::redis::watch::open(
        &c.ip(p),
        PORT,
        "not-the-password",
        ordinal::redis::observe::Timeouts {
            connect: Duration::from_secs(2),
            command: Duration::from_secs(2),
        },
    )
    .await
    .err()
    .map(|e| e.to_string())
    .unwrap_or_default();
    assert!(refused.contains("WRONGPASS"), "{refused:?}");
    assert_eq!(watch_subscribers(&c.ip(p)).await, 1);
    // The gauge is set once the subscription is confirmed, which may come
    // just after the server lists the subscriber.
    eventually(Duration::from_secs(5), "the watch counted", || async {
        gauge.get() == 1
    })
    .await;

    // Healthy and idle, with steady passes following it: no trigger, still
    // one watch connection.
    let quiet = wait_fired(&watches, key.clone(), Duration::from_secs(3));
    for _ in 0..5 {
        let out = c.pass().await;
        assert_eq!(out.health, Health::Healthy);
        follow(&watches, &key, &c.engine, &c.input, &out);
        tokio::time::sleep(Duration::from_millis(400)).await;
    }
    assert!(
        !quiet.await,
        "the watch fired while the primary was healthy"
    );
    assert_eq!(watch_subscribers(&c.ip(p)).await, 1, "one watch connection");
    assert_eq!(gauge.get(), 1);

    let fired = wait_fired(&watches, key.clone(), Duration::from_secs(10));
    c.kill(p);
    assert!(
        fired.await,
        "the watch did not fire when the primary was killed"
    );
    assert_eq!(gauge.get(), 0);
    // The pass it triggers sees the primary unreachable (its replica may
    // take a moment longer to see the link down).
    let out = c.pass().await;
    assert!(
        out.state.primary_unhealthy_since.is_some()
            && matches!(&out.health, Health::Unhealthy { reason, .. }
                if reason == "PrimaryUnavailable" || reason == "PrimaryUnreachableFromOperator"),
        "the triggered pass sees the primary gone: {:?}",
        out.health
    );
    let out = c
        .run_until(Duration::from_secs(10), |o| {
            matches!(&o.health, Health::Unhealthy { reason, .. } if reason == "PrimaryUnavailable")
        })
        .await;
    assert_ne!(out.members[p].role, MemberRole::Primary);
    follow(&watches, &key, &c.engine, &c.input, &out);
    assert_eq!(
        watches.watching(&key),
        None,
        "no watch without a confirmed primary"
    );
}
