//! Backup/restore throughput of Ordinal's MySQL engine against the tools
//! users know, on one dataset in one run. Not a timed test: run with
//!
//! ```text
//! CARGO_TARGET_DIR=/var/tmp/ordinal-target-mysql \
//!   cargo test --release --test bench_mysql -- --ignored --nocapture
//! ```
//!
//! `ORDINAL_BENCH_MB` sets the approximate InnoDB data size (default 1024);
//! `ORDINAL_BENCH_DUMP_ONLY=1` skips the restores; `ORDINAL_BENCH_ZSTD_LEVELS`
//! (e.g. `-3,-7`) adds Ordinal dumps at other zstd levels.
//! Throughput is MB of InnoDB table data (DATA_LENGTH) per second for every
//! tool, so the ratios compare like with like.

#[path = "support/mysql.rs"]
mod support;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use mysql_async::prelude::Queryable;
use ordinal::mysql::backup::{self, BackupOptions, Endpoint, RestoreOptions};
use support::*;

/// Server settings of the benchmark: the redo log scales with the dataset
/// (512 MB at the default 1024 MB; smaller datasets need less disk).
fn big(mb: u64) -> String {
    format!(
        "innodb_buffer_pool_size=1G\ninnodb_log_file_size={}M\nmax_allowed_packet=256M\n",
        (mb / 2).clamp(128, 512)
    )
}

fn endpoint(s: &Server) -> Endpoint {
    Endpoint {
        host: s.ip.clone(),
        port: s.port,
        login: ordinal::mysql::observe::Login {
            user: "root".into(),
            password: ROOT_PW.into(),
        },
        flavor: ordinal::api::MySqlFlavor::MariaDB,
    }
}

fn client_args(s: &Server) -> Vec<String> {
    vec![
        "--no-defaults".into(),
        format!("--host={}", s.ip),
        format!("--port={}", s.port),
        "--user=root".into(),
        format!("--password='{}'", ROOT_PW.replace('\'', "'\\''")),
    ]
}

fn sh(cmd: &str) -> (bool, Duration) {
    let t = Instant::now();
    let st = Command::new("bash")
        .arg("-c")
        .arg(cmd)
        .stdout(Stdio::null())
        .status()
        .expect("bash");
    (st.success(), t.elapsed())
}

fn sh_out(cmd: &str) -> String {
    Command::new("bash")
        .arg("-c")
        .arg(cmd)
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default()
}

fn have(bin: &str) -> bool {
    Command::new("bash")
        .arg("-c")
        .arg(format!("command -v {bin}"))
        .stdout(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

async fn data_mb(s: &Server) -> f64 {
    s.scalar("SELECT SUM(DATA_LENGTH) FROM information_schema.TABLES WHERE TABLE_SCHEMA = 'bench'")
        .await
        .and_then(|v| v.parse::<f64>().ok())
        .unwrap_or(0.0)
        / 1048576.0
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

/// CPU seconds (user + system) of a process and of its reaped children.
fn cpu_of(pid: &str) -> (f64, f64) {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name; utime is the 14th field of the line.
    let f: Vec<f64> = stat
        .rsplit_once(')')
        .map(|x| x.1)
        .unwrap_or("")
        .split_whitespace()
        .map(|x| x.parse().unwrap_or(0.0))
        .collect();
    // SAFETY: sysconf has no preconditions.
    let tick = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    if f.len() < 15 {
        return (0.0, 0.0);
    }
    ((f[11] + f[12]) / tick, (f[13] + f[14]) / tick)
}

/// CPU seconds spent so far by the client side (this process, with the
/// tools it ran and waited for) and by one server.
#[derive(Clone, Copy)]
struct Cpu {
    client: f64,
    server: f64,
}

fn cpu(s: &Server) -> Cpu {
    let (own, children) = cpu_of("self");
    let server = s.pid().map(|p| cpu_of(&p.to_string()).0).unwrap_or(0.0);
    Cpu {
        client: own + children,
        server,
    }
}

/// One measured tool: rate in MB/s, CPU seconds spent by the client and by
/// the server while it ran, and a detail (wall time, sizes).
struct Measured {
    name: String,
    rate: f64,
    client_cpu: f64,
    server_cpu: f64,
    detail: String,
}

fn measured(
    name: String,
    data: f64,
    wall: Duration,
    s: &Server,
    before: Cpu,
    detail: String,
) -> Measured {
    let after = cpu(s);
    Measured {
        name,
        rate: data / wall.as_secs_f64(),
        client_cpu: after.client - before.client,
        server_cpu: after.server - before.server,
        detail: format!("{wall:.2?}{detail}"),
    }
}

/// Let InnoDB finish writing the freshly generated dataset (dirty pages
/// flushed, undo purged) before anything is timed, so the first tool does
/// not compete with the server's background work.
async fn settle(s: &Server) {
    let t = Instant::now();
    let before = cpu(s);
    let mut c = s.root().await;
    let pct: Option<String> = c
        .query_first("SELECT @@GLOBAL.innodb_max_dirty_pages_pct")
        .await
        .expect("dirty pct");
    c.query_drop("SET GLOBAL innodb_max_dirty_pages_pct = 0")
        .await
        .expect("flush eagerly");
    let metric = |name: &str| {
        format!(
            "SELECT VARIABLE_VALUE FROM information_schema.GLOBAL_STATUS WHERE VARIABLE_NAME = '{name}'"
        )
    };
    let num = |v: Option<String>| v.and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    let (mut dirty, mut history) = (0, 0);
    while t.elapsed() < Duration::from_secs(300) {
        dirty = num(s.scalar(&metric("INNODB_BUFFER_POOL_PAGES_DIRTY")).await);
        history = num(s.scalar(&metric("INNODB_HISTORY_LIST_LENGTH")).await);
        if dirty < 100 && history < 1000 {
            break;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    if let Some(p) = pct {
        c.query_drop(format!("SET GLOBAL innodb_max_dirty_pages_pct = {p}"))
            .await
            .expect("restore dirty pct");
    }
    eprintln!(
        "settled in {:.1?}: {dirty} dirty pages, history length {history}, server CPU {:.1} s",
        t.elapsed(),
        cpu(s).server - before.server
    );
}

/// Every index of the benchmark's tables, by table, name and column.
async fn indexes(s: &Server) -> Vec<(String, String, String)> {
    let mut c = s.root().await;
    c.query(
        "SELECT TABLE_NAME, INDEX_NAME, COLUMN_NAME FROM information_schema.STATISTICS \
         WHERE TABLE_SCHEMA = 'bench' ORDER BY TABLE_NAME, INDEX_NAME, SEQ_IN_INDEX",
    )
    .await
    .expect("indexes")
}

async fn checksum(s: &Server) -> Vec<(String, Option<i64>)> {
    let mut c = s.root().await;
    let mut v = Vec::new();
    for t in ["t1", "t2", "t3", "t4"] {
        let r: Option<(String, Option<i64>)> = c
            .query_first(format!("CHECKSUM TABLE bench.{t}"))
            .await
            .expect("checksum");
        v.push(r.expect("row"));
    }
    v
}

// Multi-threaded like the operator's runtime: parsing rows, compressing and
// hashing spread over both cores.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "benchmark: minutes of CPU; run explicitly with --release"]
async fn bench_backup_restore() {
    let restore_workers: usize = std::env::var("ORDINAL_BENCH_RESTORE_WORKERS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(RestoreOptions::default().workers);
    let mb: u64 = std::env::var("ORDINAL_BENCH_MB")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1024);
    // ~270 bytes of InnoDB data per row; four tables.
    let rows_per_table = mb * 1_048_576 / 270 / 4;
    let src = Server::with_extra(0, &big(mb));
    let mut c = src.root().await;
    c.query_drop("SET GLOBAL read_only = OFF; CREATE DATABASE bench; USE bench")
        .await
        .expect("db");
    let t = Instant::now();
    for tn in ["t1", "t2", "t3", "t4"] {
        c.query_drop(format!(
            "CREATE TABLE bench.{tn} (id BIGINT PRIMARY KEY, k INT NOT NULL, c CHAR(120) NOT NULL, pad CHAR(60) NOT NULL, \
             note VARCHAR(64), amount DECIMAL(12,2), at DATETIME, KEY k_{tn} (k)) ENGINE=InnoDB"
        ))
        .await
        .expect("create");
        let mut start = 1u64;
        while start <= rows_per_table {
            let end = (start + 500_000 - 1).min(rows_per_table);
            c.query_drop(format!(
                "INSERT INTO bench.{tn} SELECT seq, FLOOR(RAND(seq) * 1000000), \
                 CONCAT(LPAD(seq, 11, '0'), '-', SHA2(seq, 256), '-', MD5(seq)), LPAD(MD5(seq * 7), 59, 'p'), \
                 IF(seq % 10 = 0, NULL, CONCAT('note ', seq % 977)), (seq % 100000) / 7, \
                 '2020-01-01' + INTERVAL (seq % 100000000) SECOND FROM seq_{start}_to_{end}"
            ))
            .await
            .expect("fill");
            start = end + 1;
        }
    }
    c.query_drop("ANALYZE TABLE bench.t1, bench.t2, bench.t3, bench.t4")
        .await
        .expect("analyze");
    let data = data_mb(&src).await;
    eprintln!(
        "dataset: {data:.0} MB InnoDB data, {} rows/table, generated in {:?}",
        rows_per_table,
        t.elapsed()
    );
    // CHECKSUM TABLE reads every row: it also warms the buffer pool for
    // every tool alike.
    let want = checksum(&src).await;
    settle(&src).await;
    let dir = tempfile::tempdir_in("/var/tmp").expect("tempdir");
    let mut results: Vec<Measured> = Vec::new();
    let dump_only = std::env::var_os("ORDINAL_BENCH_DUMP_ONLY").is_some();

    eprintln!("load average before the runs: {}", loadavg());
    // Ordinal dump with as many snapshot connections as mydumper gets
    // threads (2 and 4), zstd at the default level, sha256.
    // ORDINAL_BENCH_ZSTD_LEVELS (e.g. "-3,-7") adds runs at other levels,
    // after the default's (the ratios are the default's).
    let mut levels = vec![BackupOptions::default().zstd_level];
    if let Ok(extra) = std::env::var("ORDINAL_BENCH_ZSTD_LEVELS") {
        levels.extend(
            extra
                .split(',')
                .map(|l| l.trim().parse::<i32>().expect("ORDINAL_BENCH_ZSTD_LEVELS")),
        );
    }
    let art = dir.path().join("ordinal.zst");
    let mut sum = None;
    for (level, workers) in levels
        .iter()
        .flat_map(|&l| [2usize, 4].map(move |w| (l, w)))
    {
        let before = cpu(&src);
        let t = Instant::now();
        let s = backup::backup(
            &endpoint(&src),
            // The default level's artifact is the one restored below.
            tokio::fs::File::create(if level == levels[0] {
                art.clone()
            } else {
                dir.path().join(format!("ordinal{level}.zst"))
            })
            .await
            .expect("file"),
            &BackupOptions {
                workers,
                zstd_level: level,
                ..Default::default()
            },
        )
        .await
        .expect("ordinal backup");
        results.push(measured(
            format!("Ordinal backup ({workers} conns, zstd {level}, sha256)"),
            data,
            t.elapsed(),
            &src,
            before,
            format!(
                ", artifact {} MB (raw {} MB)",
                s.size >> 20,
                s.raw_size >> 20
            ),
        ));
        if level == levels[0] {
            sum = Some(s);
        }
    }
    let sum = sum.expect("a backup ran");
    eprintln!("load average after Ordinal's dumps: {}", loadavg());

    // mariadb-dump, plain and piped through zstd -3.
    let args = client_args(&src).join(" ");
    let dump = dir.path().join("dump.sql");
    if !dump_only {
        let before = cpu(&src);
        let (ok, d_md) = sh(&format!(
            "mariadb-dump {args} --single-transaction --gtid --master-data=2 --databases bench > {}",
            dump.display()
        ));
        assert!(ok, "mariadb-dump failed");
        let dump_mb = std::fs::metadata(&dump).map(|m| m.len()).unwrap_or(0) >> 20;
        results.push(measured(
            "mariadb-dump --single-transaction".into(),
            data,
            d_md,
            &src,
            before,
            format!(", {dump_mb} MB SQL"),
        ));
    }
    if have("zstd") && !dump_only {
        let before = cpu(&src);
        let (ok, d) = sh(&format!(
            "mariadb-dump {args} --single-transaction --gtid --master-data=2 --databases bench | zstd -3 -q > {}/dump.sql.zst",
            dir.path().display()
        ));
        assert!(ok);
        let _ = std::fs::remove_file(dir.path().join("dump.sql.zst"));
        results.push(measured(
            "mariadb-dump --single-transaction | zstd -3".into(),
            data,
            d,
            &src,
            before,
            String::new(),
        ));
    }
    let mydumper = have("mydumper") && have("myloader");
    if mydumper {
        // Uncompressed, as in the goal; then with mydumper's own
        // compression (gzip) for comparison.
        for (threads, compress) in [(2, false), (4, false), (2, true), (4, true)] {
            let out = dir.path().join(format!(
                "mydumper{threads}{}",
                if compress { "c" } else { "" }
            ));
            let before = cpu(&src);
            let (ok, d) = sh(&format!(
                "mydumper --host={} --port={} --user=root --password='{}' --threads={threads} --database=bench --outputdir={} --rows=100000{}",
                src.ip,
                src.port,
                ROOT_PW.replace('\'', "'\\''"),
                out.display(),
                if compress { " --compress" } else { "" }
            ));
            if ok {
                let mut m = measured(
                    format!(
                        "mydumper {threads} threads{}",
                        if compress { " --compress" } else { "" }
                    ),
                    data,
                    d,
                    &src,
                    before,
                    String::new(),
                );
                let size = sh_out(&format!("du -sm {} | cut -f1", out.display()));
                m.detail.push_str(&format!(", {} MB", size.trim()));
                results.push(m);
            } else {
                eprintln!("mydumper {threads} failed");
            }
            if threads != 2 || compress || dump_only {
                // Only the plain 2-thread dump is loaded again (disk is short).
                let _ = std::fs::remove_dir_all(&out);
            }
        }
    }
    eprintln!("load average after the dumps: {}", loadavg());

    // Restores into fresh servers: what the restore Job runs (the stored
    // artifact verified against its sha256 first, then loaded).
    if !dump_only {
        let dst = Server::with_extra(1, &big(mb));
        let before = cpu(&dst);
        let t = Instant::now();
        let a = art.clone();
        backup::restore_verified(
            || tokio::fs::File::open(a.clone()),
            &sum.sha256,
            &endpoint(&dst),
            &RestoreOptions {
                workers: restore_workers,
                ..Default::default()
            },
        )
        .await
        .expect("ordinal restore");
        let d_ordr = t.elapsed();
        results.push(measured(
            format!("Ordinal restore (verified, {restore_workers} conns)"),
            data,
            d_ordr,
            &dst,
            before,
            String::new(),
        ));
        assert_eq!(checksum(&dst).await, want, "Ordinal restore differs");
        assert_eq!(
            indexes(&dst).await,
            indexes(&src).await,
            "Ordinal restore lacks keys"
        );
        drop(dst);

        let dst = Server::with_extra(2, &big(mb));
        let before = cpu(&dst);
        let (ok, d_replay) = sh(&format!(
            "mariadb {} < {}",
            client_args(&dst).join(" "),
            dump.display()
        ));
        assert!(ok, "mariadb replay failed");
        results.push(measured(
            "mariadb client replay".into(),
            data,
            d_replay,
            &dst,
            before,
            String::new(),
        ));
        assert_eq!(checksum(&dst).await, want, "client replay differs");
        drop(dst);

        if mydumper {
            let dst = Server::with_extra(3, &big(mb));
            let before = cpu(&dst);
            let (ok, d) = sh(&format!(
                "myloader --host={} --port={} --user=root --password='{}' --threads=2 --directory={}",
                dst.ip,
                dst.port,
                ROOT_PW.replace('\'', "'\\''"),
                dir.path().join("mydumper2").display()
            ));
            if ok {
                results.push(measured(
                    "myloader 2 threads".into(),
                    data,
                    d,
                    &dst,
                    before,
                    String::new(),
                ));
            }
            drop(dst);
        }
    }

    let rate = |name: &str| {
        results
            .iter()
            .find(|r| r.name.starts_with(name))
            .map(|r| r.rate)
    };
    // The references of the ratio column (absent in a dump-only run).
    let md = rate("mariadb-dump --single");
    let replay = rate("mariadb client replay");
    eprintln!("load average after the runs: {}", loadavg());
    for n in [2, 4] {
        if let (Some(o), Some(m)) = (
            rate(&format!("Ordinal backup ({n} conns")),
            results
                .iter()
                .find(|r| r.name == format!("mydumper {n} threads"))
                .map(|r| r.rate),
        ) {
            eprintln!(
                "dump at {n} connections: Ordinal / mydumper = {:.2}x",
                o / m
            );
        }
        if let (Some(o), Some(m)) = (
            rate(&format!("Ordinal backup ({n} conns")),
            rate(&format!("mydumper {n} threads --compress")),
        ) {
            eprintln!(
                "dump at {n} connections: Ordinal / mydumper --compress = {:.2}x (extra, not the goal)",
                o / m
            );
        }
    }
    if let Some(o) = rate("Ordinal restore") {
        if let Some(m) = rate("myloader 2 threads") {
            eprintln!(
                "restore at 2 connections: Ordinal / myloader = {:.2}x",
                o / m
            );
        }
        if let Some(r) = replay {
            eprintln!("restore: Ordinal / client replay = {:.2}x", o / r);
        }
    }
    eprintln!(
        "\n| tool | MB/s | ratio | client CPU s | server CPU s | wall, detail |\n|---|---:|---:|---:|---:|---|"
    );
    for m in &results {
        let base = if m.name.contains("restore")
            || m.name.contains("replay")
            || m.name.contains("myloader")
        {
            replay
        } else {
            md
        };
        let ratio = base.map_or("—".to_string(), |b| format!("{:.2}x", m.rate / b));
        eprintln!(
            "| {} | {:.1} | {ratio} | {:.1} | {:.1} | {} |",
            m.name, m.rate, m.client_cpu, m.server_cpu, m.detail
        );
    }
}

/// One MariaDB failover driven like the reconciler drives the engine (a
/// pass, then the requested requeue capped at 1 s; with `watch`, the
/// controller's primary watch after every pass and a pass at once when it
/// fires), a client inserting every 10 ms into the member reported
/// `Primary`, the primary SIGKILLed at a random point. Returns
/// (write-unavailability, detection latency, post-detection time) in seconds.
async fn mysql_failover_once(flavor: Flavor, detection: i32, watch: bool) -> (f64, f64, f64) {
    use mysql_async::prelude::Queryable;
    use ordinal::api::MemberRole;
    use ordinal::watch::{PrimaryWatches, WatchKey, follow};
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    let mut c = Cluster::of(flavor, 3);
    c.failover.detection_seconds = detection;
    c.converge(Duration::from_secs(60), "bootstrap", |o| healthy_with(o, 0))
        .await;
    setup_app(c.server(0)).await;
    let watches = PrimaryWatches::default();
    let key = WatchKey {
        engine: "mysql",
        namespace: "bench".into(),
        name: "failover".into(),
    };
    let poke = Arc::new(AtomicBool::new(false));
    let poker = {
        use futures::StreamExt;
        let (mut fired, poke) = (Box::pin(watches.fired()), poke.clone());
        tokio::spawn(async move {
            while fired.next().await.is_some() {
                poke.store(true, Ordering::SeqCst);
            }
        })
    };
    let addr = |c: &Cluster, o: i32| (c.server(o).ip.clone(), c.server(o).port);
    let target = Arc::new(std::sync::Mutex::new(addr(&c, 0)));
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (target, stop) = (target.clone(), stop.clone());
        tokio::spawn(async move {
            let mut acks = Vec::new();
            let mut n = 0i64;
            let mut conn: Option<((String, u16), mysql_async::Conn)> = None;
            while !stop.load(Ordering::Relaxed) {
                let want = target.lock().unwrap().clone();
                if conn.as_ref().is_none_or(|(a, _)| *a != want) {
                    let o = mysql_async::OptsBuilder::default()
                        .ip_or_hostname(want.0.clone())
                        .tcp_port(want.1)
                        .user(Some("app"))
                        .pass(Some(APP_PW))
                        .prefer_socket(false);
                    conn = match tokio::time::timeout(
                        Duration::from_millis(300),
                        mysql_async::Conn::new(o),
                    )
                    .await
                    {
                        Ok(Ok(c)) => Some((want, c)),
                        _ => None,
                    };
                }
                let ok = match conn.as_mut() {
                    Some((_, cn)) => matches!(
                        tokio::time::timeout(
                            Duration::from_millis(500),
                            cn.query_drop(format!("INSERT INTO app.t (id, v) VALUES ({n}, 'w')")),
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
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            acks
        })
    };
    let kill_at = Instant::now() + Duration::from_millis(3000 + rand::random::<u64>() % 1000);
    let (mut killed, mut noticed) = (None, None);
    let mut next_pass = Instant::now();
    loop {
        let now = Instant::now();
        if killed.is_none() && now >= kill_at {
            c.server_mut(0).kill();
            killed = Some(Instant::now());
        }
        if poke.swap(false, Ordering::SeqCst) {
            next_pass = now;
        }
        if now >= next_pass {
            let started = Instant::now();
            let out = c.pass().await;
            if watch {
                follow(&watches, &key, &c.engine, &c.input(), &out);
            }
            if let Some(k) = killed
                && std::env::var_os("BENCH_TRACE").is_some()
            {
                let h = match &out.health {
                    ordinal::engine::Health::Unhealthy { reason, .. } => reason.as_str(),
                    _ => "-",
                };
                eprintln!(
                    "pass at +{:.3}s took {:.3}s: {h}, step {:?}, requeue {:?}",
                    (started - k).as_secs_f64(),
                    started.elapsed().as_secs_f64(),
                    out.state.operation.as_ref().map(|o| o.step.clone()),
                    out.requeue_after
                );
            }
            if killed.is_some() && noticed.is_none() && out.state.primary_unhealthy_since.is_some()
            {
                noticed = Some(started);
            }
            if let Some(p) = out
                .members
                .iter()
                .find(|m| m.role == MemberRole::Primary && m.ordinal != 0)
            {
                *target.lock().unwrap() = addr(&c, p.ordinal);
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
    let first = *acks.iter().find(|t| **t > killed).expect("writes resumed");
    let noticed = noticed.expect("the loss was noticed");
    let window_end = noticed + Duration::from_secs(detection as u64);
    (
        (first - killed).as_secs_f64(),
        (noticed - killed).as_secs_f64(),
        first.saturating_duration_since(window_end).as_secs_f64(),
    )
}

/// MariaDB (or MySQL 8) failover: write-unavailability, detection latency
/// and post-detection time, without and with the primary watch (there is no
/// Sentinel equivalent for MySQL to compare with). Run:
///
/// ```text
/// cargo test --release --test bench_mysql bench_mysql_failover -- --ignored --nocapture
/// ```
/// `BENCH_FAILOVER_RUNS` (default 5), `BENCH_FAILOVER_DETECTION` (default 3),
/// `BENCH_FAILOVER_FLAVOR` (`mariadb`, the default, or `mysql`: MySQL 8).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "benchmark; run explicitly"]
async fn bench_mysql_failover() {
    let (flavor, label) = match std::env::var("BENCH_FAILOVER_FLAVOR").as_deref() {
        Ok("mysql") => (Flavor::MySQL, "mysql8"),
        Ok("mariadb") | Err(_) => (Flavor::MariaDB, "mariadb"),
        Ok(other) => panic!("BENCH_FAILOVER_FLAVOR={other}: mariadb or mysql"),
    };
    let runs: u8 = std::env::var("BENCH_FAILOVER_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5);
    let detection: i32 = std::env::var("BENCH_FAILOVER_DETECTION")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3);
    let spread = |v: &[f64]| {
        let mut s = v.to_vec();
        s.sort_by(|a, b| a.total_cmp(b));
        format!(
            "{:.2} s ({:.2}–{:.2})",
            s[s.len() / 2],
            s[0],
            s[s.len() - 1]
        )
    };
    for watch in [false, true] {
        let mut r = (Vec::new(), Vec::new(), Vec::new());
        for run in 0..runs {
            let (u, d, p) = mysql_failover_once(flavor, detection, watch).await;
            eprintln!(
                "{label} watch={watch} detection {detection}s run {run}: unavailable {u:.2}s, detected {d:.3}s, post-detection {p:.3}s"
            );
            r.0.push(u);
            r.1.push(d);
            r.2.push(p);
        }
        eprintln!(
            "RESULT {label} failover {detection}s ({}): write-unavailability {}, detection {}, post-detection {} ({runs} runs)",
            if watch { "watch" } else { "no watch" },
            spread(&r.0),
            spread(&r.1),
            spread(&r.2)
        );
    }
}
