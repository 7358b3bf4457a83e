//! Backup/restore throughput of Ordinal's MySQL engine against the tools
//! users know, on one dataset in one run. Not a timed test: run with
//!
//! ```text
//! CARGO_TARGET_DIR=/var/tmp/ordinal-target-mysql \
//!   cargo test --release --test bench_mysql -- --ignored --nocapture
//! ```
//!
//! `ORDINAL_BENCH_MB` sets the approximate InnoDB data size (default 1024).
//! Throughput is MB of InnoDB table data (DATA_LENGTH) per second for every
//! tool, so the ratios compare like with like.

#[path = "support/mysql.rs"]
mod support;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use mysql_async::prelude::Queryable;
use ordinal::mysql::backup::{self, BackupOptions, Endpoint, RestoreOptions};
use support::*;

const BIG: &str =
    "innodb_buffer_pool_size=1G\ninnodb_log_file_size=512M\nmax_allowed_packet=256M\n";

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
    let src = Server::with_extra(0, BIG);
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
    let want = checksum(&src).await;
    let dir = tempfile::tempdir_in("/var/tmp").expect("tempdir");
    let mut results: Vec<(String, f64, String)> = Vec::new();

    // Ordinal dump: 4 snapshot connections, zstd -3, sha256.
    let art = dir.path().join("ordinal.zst");
    let t = Instant::now();
    let sum = backup::backup(
        &endpoint(&src),
        tokio::fs::File::create(&art).await.expect("file"),
        &BackupOptions::default(),
    )
    .await
    .expect("ordinal backup");
    let d_ord = t.elapsed();
    results.push((
        "Ordinal backup (4 conns, zstd -3, sha256)".into(),
        data / d_ord.as_secs_f64(),
        format!(
            "{:?}, artifact {} MB (raw {} MB)",
            d_ord,
            sum.size >> 20,
            sum.raw_size >> 20
        ),
    ));

    // mariadb-dump, plain and piped through zstd -3.
    let args = client_args(&src).join(" ");
    let dump = dir.path().join("dump.sql");
    let (ok, d_md) = sh(&format!(
        "mariadb-dump {args} --single-transaction --gtid --master-data=2 --databases bench > {}",
        dump.display()
    ));
    assert!(ok, "mariadb-dump failed");
    let dump_mb = std::fs::metadata(&dump).map(|m| m.len()).unwrap_or(0) >> 20;
    results.push((
        "mariadb-dump --single-transaction".into(),
        data / d_md.as_secs_f64(),
        format!("{d_md:?}, {dump_mb} MB SQL"),
    ));
    if have("zstd") {
        let (ok, d) = sh(&format!(
            "mariadb-dump {args} --single-transaction --gtid --master-data=2 --databases bench | zstd -3 -q > {}/dump.sql.zst",
            dir.path().display()
        ));
        assert!(ok);
        results.push((
            "mariadb-dump --single-transaction | zstd -3".into(),
            data / d.as_secs_f64(),
            format!("{d:?}"),
        ));
    }
    let mydumper = have("mydumper") && have("myloader");
    if mydumper {
        for threads in [2, 4] {
            let out = dir.path().join(format!("mydumper{threads}"));
            let (ok, d) = sh(&format!(
                "mydumper --host={} --port={} --user=root --password='{}' --threads={threads} --database=bench --outputdir={} --rows=100000",
                src.ip,
                src.port,
                ROOT_PW.replace('\'', "'\\''"),
                out.display()
            ));
            if ok {
                results.push((
                    format!("mydumper {threads} threads"),
                    data / d.as_secs_f64(),
                    format!("{d:?}"),
                ));
            } else {
                eprintln!("mydumper {threads} failed");
            }
        }
    }

    // Restores into fresh servers.
    let dst = Server::with_extra(1, BIG);
    let t = Instant::now();
    backup::verify(
        tokio::fs::File::open(&art).await.expect("open"),
        Some(&sum.sha256),
    )
    .await
    .expect("verify");
    let d_verify = t.elapsed();
    let t = Instant::now();
    backup::restore(
        tokio::fs::File::open(&art).await.expect("open"),
        &endpoint(&dst),
        &RestoreOptions {
            workers: restore_workers,
            ..Default::default()
        },
    )
    .await
    .expect("ordinal restore");
    let d_load = t.elapsed();
    let d_ordr = d_verify + d_load;
    assert_eq!(checksum(&dst).await, want, "Ordinal restore differs");
    results.push((
        format!("Ordinal restore (verify pass + {restore_workers} conns)"),
        data / d_ordr.as_secs_f64(),
        format!("{d_ordr:?} (verify {d_verify:?} + load {d_load:?})"),
    ));
    drop(dst);

    let dst = Server::with_extra(2, BIG);
    let (ok, d_replay) = sh(&format!(
        "mariadb {} < {}",
        client_args(&dst).join(" "),
        dump.display()
    ));
    assert!(ok, "mariadb replay failed");
    assert_eq!(checksum(&dst).await, want, "client replay differs");
    results.push((
        "mariadb client replay".into(),
        data / d_replay.as_secs_f64(),
        format!("{d_replay:?}"),
    ));
    drop(dst);

    if mydumper {
        let dst = Server::with_extra(3, BIG);
        let (ok, d) = sh(&format!(
            "myloader --host={} --port={} --user=root --password='{}' --threads=2 --directory={}",
            dst.ip,
            dst.port,
            ROOT_PW.replace('\'', "'\\''"),
            dir.path().join("mydumper2").display()
        ));
        if ok {
            results.push((
                "myloader 2 threads".into(),
                data / d.as_secs_f64(),
                format!("{d:?}"),
            ));
        }
        drop(dst);
    }

    let md = results
        .iter()
        .find(|r| r.0.starts_with("mariadb-dump --single"))
        .map(|r| r.1)
        .unwrap_or(1.0);
    let replay = results
        .iter()
        .find(|r| r.0 == "mariadb client replay")
        .map(|r| r.1)
        .unwrap_or(1.0);
    eprintln!("\n| tool | MB/s | ratio | detail |\n|---|---:|---:|---|");
    for (name, rate, detail) in &results {
        let base =
            if name.contains("restore") || name.contains("replay") || name.contains("myloader") {
                replay
            } else {
                md
            };
        eprintln!("| {name} | {rate:.1} | {:.2}x | {detail} |", rate / base);
    }
}
