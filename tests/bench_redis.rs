//! Redis benchmarks (not timed tests). Run:
//!
//! ```text
//! CARGO_TARGET_DIR=/var/tmp/ordinal-target-redis \
//!   cargo test --release --test bench_redis -- --ignored --nocapture --test-threads 1
//! ```
//!
//! `BENCH_REDIS_MB` sets the size of the random dataset (default 1024).
//! Results are written up in BENCHMARKS.md.

#[path = "support/redis.rs"]
mod harness;

use std::process::Command;
use std::time::{Duration, Instant};

use harness::{Cluster, PASSWORD, PORT, connect, info_field};
use ordinal::api::{FailoverSpec, MemberRole};
use ordinal::redis::backup::{BackupOptions, BackupSource, backup_rdb};
use rand::RngCore;

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

async fn wait_replica_synced(ip: &str, keys: i64) {
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        if let Ok(mut c) = connect(ip, PORT).await {
            let n: Option<i64> = redis::cmd("DBSIZE").query_async(&mut c).await.ok();
            if n == Some(keys)
                && info_field(&mut c, "master_link_status").await.as_deref() == Some("up")
            {
                return;
            }
        }
        assert!(Instant::now() < deadline, "replica never synced");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// One `redis-cli --rdb` run; returns the RDB size, pushes MB/s.
fn cli_backup(ip: &str, dir: &std::path::Path, run: usize, cli: &mut Vec<f64>) -> u64 {
    let rdb = dir.join(format!("cli-{run}.rdb"));
    let t = Instant::now();
    let st = Command::new("redis-cli")
        .args([
            "-h",
            ip,
            "-p",
            &PORT.to_string(),
            "-a",
            PASSWORD,
            "--no-auth-warning",
            "--rdb",
        ])
        .arg(&rdb)
        .output()
        .expect("redis-cli");
    assert!(
        st.status.success(),
        "{}",
        String::from_utf8_lossy(&st.stderr)
    );
    let secs = t.elapsed().as_secs_f64();
    let size = std::fs::metadata(&rdb).unwrap().len();
    std::fs::remove_file(&rdb).unwrap();
    cli.push(size as f64 / 1e6 / secs);
    size
}

/// One streamed Ordinal backup to a local zstd file; pushes MB/s.
async fn our_backup(
    ip: &str,
    dir: &std::path::Path,
    run: usize,
    ours: &mut Vec<f64>,
) -> ordinal::redis::BackupReport {
    let out = dir.join(format!("ordinal-{run}.rdb.zst"));
    let file = tokio::fs::File::create(&out).await.unwrap();
    let source = BackupSource {
        host: ip.to_string(),
        port: PORT,
        password: Some(PASSWORD.into()),
    };
    let t = Instant::now();
    let rep = backup_rdb(&source, file, &BackupOptions::default())
        .await
        .unwrap();
    let secs = t.elapsed().as_secs_f64();
    std::fs::remove_file(&out).unwrap();
    ours.push(rep.raw_bytes as f64 / 1e6 / secs);
    rep
}

/// `redis-cli --rdb` vs Ordinal's streamed zstd backup, from the replica.
async fn compare_backup(c: &Cluster, label: &str, runs: usize) {
    let ip = c.ip(1);
    let dir = c.base.path();
    let mut cli = Vec::new();
    let mut ours = Vec::new();
    let mut sizes = (0u64, 0u64);
    for run in 0..runs {
        // Alternate which tool goes first, so neither always gets the cold run.
        let cli_first = run % 2 == 0;
        let mut size = 0;
        let mut rep = None;
        for tool in 0..2 {
            if (tool == 0) == cli_first {
                size = cli_backup(&ip, dir, run, &mut cli);
            } else {
                rep = Some(our_backup(&ip, dir, run, &mut ours).await);
            }
        }
        let rep = rep.unwrap();
        sizes = (rep.raw_bytes, rep.compressed_bytes);
        eprintln!(
            "[{label}] run {run}: redis-cli --rdb {size} B at {:.1} MB/s; ordinal {} B -> {} B zstd at {:.1} MB/s",
            cli[run], rep.raw_bytes, rep.compressed_bytes, ours[run]
        );
    }
    let (c_m, o_m) = (median(cli), median(ours));
    eprintln!(
        "RESULT backup [{label}] RDB {:.0} MB (zstd {:.0} MB): redis-cli --rdb {c_m:.1} MB/s, ordinal {o_m:.1} MB/s, ratio {:.2}",
        sizes.0 as f64 / 1e6,
        sizes.1 as f64 / 1e6,
        o_m / c_m
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "benchmark; run explicitly"]
async fn bench_backup_throughput() {
    let mb: usize = std::env::var("BENCH_REDIS_MB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1024);
    let mut c = Cluster::new(90, 2, FailoverSpec::default());
    c.start_all();
    c.converge(Duration::from_secs(30)).await;
    let mut p = c.server(0).conn().await;

    // 1) Random (incompressible) values, 100 KiB each, written through the
    // primary and replicated.
    let value_len = 100 * 1024;
    let keys = mb * 1024 * 1024 / value_len;
    let mut rng = rand::rng();
    let mut value = vec![0u8; value_len];
    let t = Instant::now();
    for chunk in 0..keys.div_ceil(50) {
        let mut pipe = redis::pipe();
        for i in 0..50 {
            let k = chunk * 50 + i;
            if k >= keys {
                break;
            }
            rng.fill_bytes(&mut value);
            pipe.cmd("SET")
                .arg(format!("rand:{k}"))
                .arg(&value[..])
                .ignore();
        }
        let () = pipe.query_async(&mut p).await.unwrap();
    }
    wait_replica_synced(&c.ip(1), keys as i64).await;
    eprintln!("loaded {keys} random values ({mb} MB) in {:?}", t.elapsed());
    compare_backup(&c, "random", 3).await;

    // 2) Compressible values (DEBUG POPULATE), loaded into a fresh replica.
    let () = redis::cmd("FLUSHALL").query_async(&mut p).await.unwrap();
    let n = 3_000_000;
    let () = redis::cmd("DEBUG")
        .arg("POPULATE")
        .arg(n)
        .arg("key")
        .arg(100)
        .query_async(&mut p)
        .await
        .unwrap();
    // DEBUG POPULATE is not replicated: resync the replica from scratch.
    c.kill(1);
    c.wipe(1);
    c.start(1);
    wait_replica_synced(&c.ip(1), n).await;
    compare_backup(&c, "populate", 3).await;
}

type Target = std::sync::Arc<std::sync::Mutex<Option<(String, u16)>>>;

/// A client that SETs every 10 ms on `target`; with `sentinels`, it asks them
/// for the master after an error, as Sentinel-aware clients do. Returns the
/// times of acknowledged writes.
fn spawn_writer(
    target: Target,
    sentinels: Vec<String>,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> tokio::task::JoinHandle<Vec<Instant>> {
    tokio::spawn(async move {
        let mut acks = Vec::new();
        let mut n = 0u64;
        let mut conn: Option<((String, u16), redis::aio::MultiplexedConnection)> = None;
        while !stop.load(std::sync::atomic::Ordering::Relaxed) {
            let want = target.lock().unwrap().clone();
            if let Some(addr) = want {
                if conn.as_ref().map(|(a, _)| a != &addr).unwrap_or(true) {
                    conn = connect(&addr.0, addr.1)
                        .await
                        .ok()
                        .map(|c| (addr.clone(), c));
                }
                let ok = match conn.as_mut() {
                    Some((_, cn)) => matches!(
                        tokio::time::timeout(
                            Duration::from_millis(500),
                            redis::cmd("SET")
                                .arg(format!("w:{n}"))
                                .arg(n)
                                .query_async::<()>(cn),
                        )
                        .await,
                        Ok(Ok(()))
                    ),
                    None => false,
                };
                if ok {
                    acks.push(Instant::now());
                    n += 1;
                } else {
                    conn = None;
                    if let Some(addr) = ask_sentinels(&sentinels).await {
                        *target.lock().unwrap() = Some(addr);
                    }
                }
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        acks
    })
}

async fn ask_sentinels(sentinels: &[String]) -> Option<(String, u16)> {
    for s in sentinels {
        let Ok(client) = redis::Client::open(format!("redis://{s}:{SENTINEL_PORT}/")) else {
            continue;
        };
        let cfg = redis::AsyncConnectionConfig::new()
            .set_connection_timeout(Some(Duration::from_millis(200)))
            .set_response_timeout(Some(Duration::from_millis(200)));
        let Ok(mut c) = client
            .get_multiplexed_async_connection_with_config(&cfg)
            .await
        else {
            continue;
        };
        let r: redis::RedisResult<Option<(String, u16)>> = redis::cmd("SENTINEL")
            .arg("get-master-addr-by-name")
            .arg("m")
            .query_async(&mut c)
            .await;
        if let Ok(Some(addr)) = r {
            return Some(addr);
        }
    }
    None
}

const SENTINEL_PORT: u16 = 26379;

/// A `redis-server --sentinel` process, killed on drop.
struct Sentinel(std::process::Child);

impl Drop for Sentinel {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The same kill with Redis Sentinel (3 sentinels, quorum 2) in charge instead.
async fn sentinel_once(down_after_ms: u64, block: u8) -> f64 {
    let mut c = Cluster::new(block, 3, FailoverSpec::default());
    c.start_all(); // every member boots replicating from itself (no recorded primary)
    // Sentinel's topology: ordinal 0 primary, 1 and 2 replicas of it.
    for r in [0, 1, 2] {
        let deadline = Instant::now() + Duration::from_secs(20);
        let mut cn = loop {
            match connect(&c.ip(r), PORT).await {
                Ok(cn) => break cn,
                Err(e) => assert!(Instant::now() < deadline, "member {r}: {e}"),
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        let mut cmd = redis::cmd("REPLICAOF");
        if r == 0 {
            cmd.arg("NO").arg("ONE");
        } else {
            cmd.arg(c.ip(0)).arg(PORT);
        }
        let () = cmd.query_async(&mut cn).await.unwrap();
    }
    for r in [1, 2] {
        let ip = c.ip(r);
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let mut cn = connect(&ip, PORT).await.unwrap();
            if info_field(&mut cn, "master_link_status").await.as_deref() == Some("up") {
                break;
            }
            assert!(Instant::now() < deadline, "replica never linked");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    let mut sentinels = Vec::new();
    let mut ips = Vec::new();
    for i in 0..3 {
        let ip = format!("127.0.{block}.{}", 11 + i);
        let dir = c.base.path().join(format!("sentinel-{i}"));
        std::fs::create_dir_all(&dir).unwrap();
        let conf = dir.join("sentinel.conf");
        std::fs::write(
            &conf,
            format!(
                "port {SENTINEL_PORT}\nbind {ip}\ndir {}\nlogfile {}\nsentinel announce-ip {ip}\nsentinel monitor m {} {PORT} 2\nsentinel auth-pass m {PASSWORD}\nsentinel down-after-milliseconds m {down_after_ms}\nsentinel failover-timeout m 60000\nsentinel parallel-syncs m 2\n",
                dir.display(),
                dir.join("log").display(),
                c.ip(0)
            ),
        )
        .unwrap();
        let child = Command::new("redis-server")
            .arg(&conf)
            .arg("--sentinel")
            .stdout(std::process::Stdio::null())
            .spawn()
            .unwrap();
        sentinels.push(Sentinel(child));
        ips.push(ip);
    }
    // Let the sentinels find the replicas and each other.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let mut ready = true;
        for ip in &ips {
            let ok = async {
                let client = redis::Client::open(format!("redis://{ip}:{SENTINEL_PORT}/")).ok()?;
                let mut s = client.get_multiplexed_async_connection().await.ok()?;
                let others: Vec<redis::Value> = redis::cmd("SENTINEL")
                    .arg("sentinels")
                    .arg("m")
                    .query_async(&mut s)
                    .await
                    .ok()?;
                let replicas: Vec<redis::Value> = redis::cmd("SENTINEL")
                    .arg("replicas")
                    .arg("m")
                    .query_async(&mut s)
                    .await
                    .ok()?;
                Some(others.len() == 2 && replicas.len() == 2)
            }
            .await;
            ready &= ok == Some(true);
        }
        if ready {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "sentinels did not discover the topology"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let target = std::sync::Arc::new(std::sync::Mutex::new(Some((c.ip(0), PORT))));
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writer = spawn_writer(target.clone(), ips.clone(), stop.clone());
    tokio::time::sleep(Duration::from_millis(1000 + rand::random::<u64>() % 1000)).await;
    c.kill(0);
    let killed = Instant::now();
    loop {
        let moved = target
            .lock()
            .unwrap()
            .as_ref()
            .is_some_and(|(ip, _)| *ip != c.ip(0));
        if moved {
            break;
        }
        assert!(
            killed.elapsed() < Duration::from_secs(60),
            "sentinel never failed over"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let acks = writer.await.unwrap();
    drop(sentinels);
    let first = acks.iter().find(|t| **t > killed).expect("writes resumed");
    (*first - killed).as_secs_f64()
}

/// One Ordinal failover: write-unavailability (kill → first acknowledged
/// write on the new primary), detection latency (kill → the start of the
/// first pass that found the primary unreachable) and post-detection time
/// (end of the detection window → first acknowledged write).
struct FailoverRun {
    unavailable: f64,
    detected: f64,
    post_detection: f64,
}

/// `watch`: keep the controller's primary watch (`ordinal::watch::follow`
/// after every pass, a pass at once when it fires), as the operator does.
async fn failover_once(detection: i32, block: u8, watch: bool) -> FailoverRun {
    use ordinal::watch::{PrimaryWatches, WatchKey, follow};
    use std::sync::atomic::{AtomicBool, Ordering};
    let mut c = Cluster::new(
        block,
        3,
        FailoverSpec {
            detection_seconds: detection,
            ..Default::default()
        },
    );
    c.start_all();
    c.converge(Duration::from_secs(30)).await;
    let watches = PrimaryWatches::default();
    let key = WatchKey {
        engine: "redis",
        namespace: "bench".into(),
        name: "failover".into(),
    };
    // What the controller's `reconcile_on` does: a fired watch runs a pass now.
    let poke = std::sync::Arc::new(AtomicBool::new(false));
    let poker = {
        use futures::StreamExt;
        let (mut fired, poke) = (Box::pin(watches.fired()), poke.clone());
        tokio::spawn(async move {
            while fired.next().await.is_some() {
                poke.store(true, Ordering::SeqCst);
            }
        })
    };
    // A client writing every 10 ms to whichever member holds the primary label.
    let target = std::sync::Arc::new(std::sync::Mutex::new(Some((c.ip(0), PORT))));
    let stop = std::sync::Arc::new(AtomicBool::new(false));
    let writer = spawn_writer(target.clone(), Vec::new(), stop.clone());
    // The reconciler's schedule runs on its own clock (a pass, then the
    // requested requeue, at most 1 s); the kill lands at a random point of it.
    let kill_at = Instant::now() + Duration::from_millis(3000 + rand::random::<u64>() % 1000);
    let mut killed = None;
    let mut noticed = None;
    let mut next_pass = Instant::now();
    loop {
        let now = Instant::now();
        if killed.is_none() && now >= kill_at {
            c.kill(0);
            killed = Some(Instant::now());
        }
        if poke.swap(false, Ordering::SeqCst) {
            next_pass = now;
        }
        if now >= next_pass {
            let started = Instant::now();
            let out = c.pass().await;
            if watch {
                follow(&watches, &key, &c.engine, &c.input, &out);
            }
            if killed.is_some() && noticed.is_none() && out.state.primary_unhealthy_since.is_some()
            {
                noticed = Some(started);
            }
            let p = out
                .members
                .iter()
                .find(|m| m.role == MemberRole::Primary)
                .map(|m| c.ip(m.ordinal as usize));
            if p.is_some() && p != Some(c.ip(0)) {
                *target.lock().unwrap() = p.map(|ip| (ip, PORT));
            }
            if killed.is_some() && out.state.primary != Some(0) && out.state.operation.is_none() {
                break;
            }
            assert!(
                killed.is_none_or(|k| k.elapsed() < Duration::from_secs(60)),
                "no failover"
            );
            next_pass = Instant::now() + out.requeue_after.min(Duration::from_secs(1));
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let killed = killed.unwrap();
    tokio::time::sleep(Duration::from_secs(1)).await;
    stop.store(true, Ordering::Relaxed);
    poker.abort();
    let acks = writer.await.unwrap();
    let first = acks.iter().find(|t| **t > killed).expect("writes resumed");
    let noticed = noticed.expect("the loss was noticed");
    let window_end = noticed + Duration::from_secs(detection as u64);
    FailoverRun {
        unavailable: (*first - killed).as_secs_f64(),
        detected: (noticed - killed).as_secs_f64(),
        post_detection: first.saturating_duration_since(window_end).as_secs_f64(),
    }
}

/// `median (min–max)` of `v`.
fn spread(v: &[f64]) -> String {
    let min = v.iter().cloned().fold(f64::MAX, f64::min);
    let max = v.iter().cloned().fold(0.0, f64::max);
    format!("{:.2} s ({min:.2}–{max:.2})", median(v.to_vec()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "benchmark; run explicitly"]
async fn bench_failover_unavailability() {
    let runs: u8 = std::env::var("BENCH_FAILOVER_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5);
    // Detection windows to measure, e.g. `3,1,5` (default 3).
    let detections: Vec<i32> = std::env::var("BENCH_FAILOVER_DETECTION")
        .unwrap_or_else(|_| "3".into())
        .split(',')
        .filter_map(|d| d.trim().parse().ok())
        .collect();
    for detection in detections {
        let mut before = Vec::new();
        let mut after = Vec::new();
        let mut sentinel = Vec::new();
        for run in 0..runs {
            let r = failover_once(detection, 91 + run % 4, false).await;
            eprintln!(
                "ordinal (no watch) detection {detection}s run {run}: unavailable {:.2}s, detected {:.3}s, post-detection {:.3}s",
                r.unavailable, r.detected, r.post_detection
            );
            before.push(r);
            let r = failover_once(detection, 91 + run % 4, true).await;
            eprintln!(
                "ordinal (watch) detection {detection}s run {run}: unavailable {:.2}s, detected {:.3}s, post-detection {:.3}s",
                r.unavailable, r.detected, r.post_detection
            );
            after.push(r);
            let s = sentinel_once(detection as u64 * 1000, 95 + run % 4).await;
            eprintln!("sentinel down-after {detection}s run {run}: write-unavailability {s:.2}s");
            sentinel.push(s);
        }
        for (name, v) in [("no watch", &before), ("watch", &after)] {
            let u: Vec<f64> = v.iter().map(|r| r.unavailable).collect();
            let d: Vec<f64> = v.iter().map(|r| r.detected).collect();
            let p: Vec<f64> = v.iter().map(|r| r.post_detection).collect();
            eprintln!(
                "RESULT failover {detection}s ordinal ({name}): write-unavailability {}, detection {}, post-detection {}; /sentinel {:.2} ({} runs)",
                spread(&u),
                spread(&d),
                spread(&p),
                median(u.clone()) / median(sentinel.clone()),
                v.len()
            );
        }
        eprintln!(
            "RESULT failover {detection}s sentinel: write-unavailability {}",
            spread(&sentinel)
        );
    }
}
