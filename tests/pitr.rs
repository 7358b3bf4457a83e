//! Point-in-time recovery of MariaDB 10.11 (archive on a real S3 server,
//! s3s-fs) and MySQL 8.0.31 (archive on a PVC directory) against real
//! servers, one scenario per flavor: a base backup,
//! binlog archiving as a REPLICATION SLAVE-only user (resumed on another
//! member after a stop), and replay into
//! freshly restored servers to a point in time and to a GTID, counting rows;
//! tampered and missing segments refused with nothing applied.

#[path = "support/mysql.rs"]
mod support;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use chrono::{DateTime, Utc};
use mysql_async::prelude::Queryable;
use ordinal::backup::binlog::BinlogError;
use ordinal::backup::binlog::{SegmentManifest, archive_dir, list_manifests};
use ordinal::backup::binlog_archive::{ArchiveOptions, archive};
use ordinal::backup::binlog_replay::{ReplayOptions, StopAt, replay};
use ordinal::backup::target::{Target, TargetCredentials};
use ordinal::mysql::backup::Endpoint;
use support::*;
use tokio_util::sync::CancellationToken;

fn endpoint(s: &Server) -> Endpoint {
    Endpoint {
        host: s.ip.clone(),
        port: s.port,
        login: ordinal::mysql::observe::Login {
            user: "root".into(),
            password: ROOT_PW.into(),
        },
        flavor: s.flavor,
    }
}

/// The archiver's login: the replication user, created as the operator
/// creates it (REPLICATION SLAVE only).
const ARCHIVER_PW: &str = "repl-Pw'2";

fn archiver_endpoint(s: &Server) -> Endpoint {
    Endpoint {
        login: ordinal::mysql::observe::Login {
            user: ordinal::mysql::REPLICATION_USER.into(),
            password: ARCHIVER_PW.into(),
        },
        ..endpoint(s)
    }
}

async fn server_second(s: &Server) -> i64 {
    s.scalar("SELECT UNIX_TIMESTAMP()")
        .await
        .and_then(|v| v.parse().ok())
        .expect("server time")
}

/// Wait until the server's clock is in a later second than now.
async fn next_second(s: &Server) -> i64 {
    let now = server_second(s).await;
    loop {
        tokio::time::sleep(Duration::from_millis(50)).await;
        let t = server_second(s).await;
        if t > now {
            return t;
        }
    }
}

/// MariaDB `gtid_binlog_pos`, MySQL `gtid_executed` (whitespace removed).
async fn binlog_pos(s: &Server) -> String {
    match s.flavor {
        Flavor::MariaDB => s
            .scalar("SELECT @@gtid_binlog_pos")
            .await
            .unwrap_or_default(),
        Flavor::MySQL => s.executed().await,
    }
}

/// The last number of a position (`0-100-42`, `uuid:1-42`).
fn seq(p: &str) -> u64 {
    p.rsplit(['-', ':'])
        .next()
        .and_then(|s| s.parse().ok())
        .expect("sequence number")
}

/// The GTID with sequence number `n` of a single-origin position.
fn gtid_at(f: Flavor, pos: &str, n: u64) -> String {
    match f {
        Flavor::MariaDB => {
            let (prefix, _) = pos.rsplit_once('-').expect("domain-server-seq");
            format!("{prefix}-{n}")
        }
        Flavor::MySQL => {
            let (uuid, _) = pos.split_once(':').expect("uuid:interval");
            format!("{uuid}:{n}")
        }
    }
}

async fn ids(s: &Server) -> Vec<i64> {
    let mut c = s.root().await;
    c.query("SELECT id FROM shop.orders ORDER BY id")
        .await
        .expect("ids")
}

async fn insert(s: &Server, range: std::ops::RangeInclusive<i64>) {
    let mut c = s.root().await;
    for id in range {
        c.query_drop(format!(
            "INSERT INTO shop.orders (id, note, amount) VALUES ({id}, 'n{id}', {id}.25)"
        ))
        .await
        .expect("insert");
    }
}

/// Every column of the orders matching `filter`, one string per row.
async fn rows(s: &Server, filter: &str) -> Vec<String> {
    let mut c = s.root().await;
    c.query(format!(
        "SELECT CONCAT_WS('|', id, note, amount, at, IFNULL(tag, '-')) FROM shop.orders {filter} ORDER BY id"
    ))
    .await
    .expect("rows")
}

fn expected(parts: &[std::ops::RangeInclusive<i64>], minus: &[i64]) -> Vec<i64> {
    let mut v: Vec<i64> = parts.iter().flat_map(|r| r.clone()).collect();
    v.retain(|i| !minus.contains(i));
    v.sort();
    v
}

/// Where the archive goes: a target and the directory its objects are
/// files in (a PVC's mount, s3s-fs's root), for tampering.
struct Store {
    target: Target,
    /// Files of the archive's objects.
    files: PathBuf,
    /// Scratch space.
    scratch: PathBuf,
    _server: Option<Proc>,
    _dir: tempfile::TempDir,
}

/// A server process; killed on drop.
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn open(spec: serde_json::Value, creds: &TargetCredentials, root: &std::path::Path) -> Target {
    let spec: ordinal::api::backup::BackupTarget =
        serde_json::from_value(spec).expect("target spec");
    ordinal::backup::target::open(&spec, creds, root).expect("open the target")
}

/// A PVC target (a directory).
fn pvc_store() -> Store {
    let dir = tempfile::tempdir().expect("pvc mount");
    let target = open(
        serde_json::json!({"pvc": {"claimName": "backups", "path": "pitr"}}),
        &TargetCredentials::default(),
        dir.path(),
    );
    Store {
        target,
        files: dir.path().join("pitr/shop/db/binlog"),
        scratch: dir.path().to_path_buf(),
        _server: None,
        _dir: dir,
    }
}

/// An S3 target on a real S3 server (s3s-fs over a directory).
fn s3_store() -> Store {
    let dir = tempfile::tempdir().expect("s3 root");
    std::fs::create_dir_all(dir.path().join("backups")).expect("bucket");
    let (ip, port) = free_address();
    let child = Command::new(format!("{}/scripts/s3s-fs.sh", env!("CARGO_MANIFEST_DIR")))
        .args(["--host", &ip, "--port", &port.to_string()])
        .args([
            "--access-key",
            "pitr-access",
            "--secret-key",
            "pitr-secret-key",
        ])
        .arg(dir.path())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start scripts/s3s-fs.sh (scripts/setup.sh installs it)");
    let server = Proc(child);
    let deadline = std::time::Instant::now() + Duration::from_secs(300);
    while std::net::TcpStream::connect((ip.as_str(), port)).is_err() {
        assert!(std::time::Instant::now() < deadline, "s3s-fs did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    let creds = TargetCredentials {
        access_key_id: Some("pitr-access".into()),
        secret_access_key: Some("pitr-secret-key".into()),
        ..Default::default()
    };
    let ref_json = serde_json::json!({"name": "unused", "key": "unused"});
    let target = open(
        serde_json::json!({"s3": {
            "bucket": "backups", "prefix": "pitr", "endpoint": format!("http://{ip}:{port}"),
            "forcePathStyle": true, "accessKeyId": ref_json, "secretAccessKey": ref_json
        }}),
        &creds,
        dir.path(),
    );
    Store {
        target,
        files: dir.path().join("backups/pitr/shop/db/binlog"),
        scratch: dir.path().to_path_buf(),
        _server: Some(server),
        _dir: dir,
    }
}

async fn restore_base(artifact: &[u8], into: &Server) {
    ordinal::mysql::backup::restore(artifact, &endpoint(into), &Default::default())
        .await
        .expect("restore the base backup");
}

#[tokio::test]
async fn mariadb_archive_and_replay_to_a_time_and_a_gtid() {
    scenario(Flavor::MariaDB).await
}

#[tokio::test]
async fn mysql_archive_and_replay_to_a_time_and_a_gtid() {
    scenario(Flavor::MySQL).await
}

async fn scenario(f: Flavor) {
    let src = Server::of(f, 0);
    src.exec("SET GLOBAL read_only = OFF").await;
    src.exec("CREATE DATABASE shop").await;
    src.exec(
        "CREATE TABLE shop.orders (id INT PRIMARY KEY, note VARCHAR(64) CHARACTER SET utf8mb4, \
         amount DECIMAL(10,2), at DATETIME(6) DEFAULT CURRENT_TIMESTAMP(6))",
    )
    .await;
    insert(&src, 1..=20).await;
    let d = src.dialect();
    for stmt in d.ensure_user(
        ordinal::mysql::REPLICATION_USER,
        ARCHIVER_PW,
        d.replication_grants(),
    ) {
        src.exec(&stmt).await;
    }

    // The base backup, kept in memory.
    let mut artifact = Vec::new();
    let base = ordinal::mysql::backup::backup(&endpoint(&src), &mut artifact, &Default::default())
        .await
        .expect("base backup");
    assert_eq!(base.rows, 20);

    // A: single inserts, a multi-statement transaction, DDL.
    insert(&src, 21..=30).await;
    {
        let mut c = src.root().await;
        c.query_drop(
            "BEGIN; UPDATE shop.orders SET amount = amount + 1 WHERE id <= 3; \
             INSERT INTO shop.orders (id, note, amount) VALUES (31, 'in a transaction', 1); COMMIT",
        )
        .await
        .expect("transaction");
        c.query_drop("ALTER TABLE shop.orders ADD COLUMN tag VARCHAR(16) NULL")
            .await
            .expect("ddl");
        c.query_drop(
            "INSERT INTO shop.orders (id, note, amount, tag) VALUES (32, 'tagged', 2, 'x')",
        )
        .await
        .expect("insert after ddl");
    }
    let pos_a = binlog_pos(&src).await;
    // B: in later seconds than A; the target time is B's last second.
    next_second(&src).await;
    insert(&src, 41..=50).await;
    src.exec("CREATE TABLE shop.audit (id INT AUTO_INCREMENT PRIMARY KEY, msg TEXT CHARACTER SET utf8mb4)")
        .await;
    src.exec("INSERT INTO shop.audit (msg) VALUES ('héllo ✓'), ('two')")
        .await;
    src.exec("UPDATE shop.orders SET note = 'changed in B' WHERE id = 21")
        .await;
    src.exec("DELETE FROM shop.orders WHERE id = 5").await;
    let pos_b = binlog_pos(&src).await;
    let second_b = server_second(&src).await;
    // C: strictly after the target second.
    next_second(&src).await;
    insert(&src, 61..=70).await;
    src.exec("DELETE FROM shop.orders WHERE id = 41").await;
    src.exec("UPDATE shop.orders SET note = 'changed in C' WHERE id = 22")
        .await;
    let pos_c = binlog_pos(&src).await;

    // A replica, to show the archive continues from another member.
    let replica = Server::of(f, 1);
    replica
        .exec(
            &replica
                .dialect()
                .change_source(&src.ip, src.port, "root", ROOT_PW),
        )
        .await;
    replica.exec(replica.dialect().start_replica()).await;

    // Archive in small segments: the first run from the base position on
    // the primary stops after A; the second resumes from the archive on the
    // replica.
    // MariaDB archives to S3 (a real S3 server), MySQL to a PVC directory.
    let store = match f {
        Flavor::MariaDB => s3_store(),
        Flavor::MySQL => pvc_store(),
    };
    let target = store.target.clone();
    let dir = archive_dir(&target.prefix, "shop", "db");
    let opts = |until: &str| ArchiveOptions {
        max_segment_bytes: 1500,
        max_delay: Duration::from_millis(500),
        until: Some(until.to_string()),
        ..Default::default()
    };
    let first = archive(
        &archiver_endpoint(&src),
        &target,
        &dir,
        Some(&base.gtid),
        &opts(&pos_a),
        CancellationToken::new(),
    )
    .await
    .expect("archive up to A");
    assert_eq!(first.position, pos_a);
    assert!(first.segments >= 2, "{first:?}");
    let deadline = std::time::Instant::now() + patient(Duration::from_secs(30));
    while replica.executed().await != pos_c {
        assert!(
            std::time::Instant::now() < deadline,
            "replica did not catch up"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let second = archive(
        &archiver_endpoint(&replica),
        &target,
        &dir,
        None,
        &opts(&pos_c),
        CancellationToken::new(),
    )
    .await
    .expect("archive up to C from the replica");
    assert_eq!(second.position, pos_c);
    let manifests: BTreeMap<u64, SegmentManifest> =
        list_manifests(&target, &dir).await.expect("manifests");
    let n = manifests.len() as u64;
    assert_eq!(n, first.segments + second.segments);
    assert_eq!(
        manifests.values().next().map(|m| m.start_position.clone()),
        Some(
            ordinal::backup::binlog::normalize(f, &base.gtid)
                .expect("gtid")
                .position()
        )
    );
    let sources: std::collections::BTreeSet<_> =
        manifests.values().map(|m| m.source.clone()).collect();
    assert_eq!(sources.len(), 2, "{sources:?}");
    eprintln!(
        "archived {n} segments, {} + {} transactions",
        first.transactions, second.transactions
    );

    // A running archiver stores what it streamed once its oldest
    // transaction waited max_delay (segments far from full), and stops on
    // cancellation.
    let stop = CancellationToken::new();
    let live = {
        let (ep, target, dir, stop) = (
            archiver_endpoint(&replica),
            target.clone(),
            dir.clone(),
            stop.clone(),
        );
        tokio::spawn(async move {
            let opts = ArchiveOptions {
                max_delay: Duration::from_millis(300),
                heartbeat: Duration::from_secs(1),
                ..Default::default()
            };
            archive(&ep, &target, &dir, None, &opts, stop).await
        })
    };
    insert(&src, 81..=85).await;
    let pos_d = binlog_pos(&src).await;
    let deadline = std::time::Instant::now() + patient(Duration::from_secs(30));
    loop {
        let m = list_manifests(&target, &dir).await.expect("manifests");
        if m.values().next_back().map(|m| m.end_position.as_str()) == Some(pos_d.as_str()) {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the live archiver did not store D"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    stop.cancel();
    let third = live.await.expect("join").expect("live archiver");
    assert_eq!(third.position, pos_d);
    assert_eq!(third.transactions, 5);

    // A segment is a binlog file the server's own tools read.
    if f == Flavor::MariaDB {
        let seg1 = store.files.join(ordinal::backup::binlog::segment_name(1));
        let raw = zstd::decode_all(&std::fs::read(&seg1).expect("segment 1")[..]).expect("zstd");
        let plain = store.scratch.join("segment1.bin");
        std::fs::write(&plain, &raw).expect("write");
        let out = std::process::Command::new("mariadb-binlog")
            .arg(&plain)
            .output()
            .expect("run mariadb-binlog (mariadb-client)");
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let first_gtid = manifests[&1].first_gtid.clone();
        assert!(text.contains(&format!("GTID {first_gtid}")), "{text}");
    }

    // Restore the base into a fresh server; refuse a tampered and a
    // missing segment with nothing applied.
    let t1 = Server::of(f, 5);
    restore_base(&artifact, &t1).await;
    let base_ids = ids(&t1).await;
    let base_pos = binlog_pos(&t1).await;
    assert_eq!(base_ids, expected(&[1..=20], &[]));
    let at_b = StopAt::Time(DateTime::<Utc>::from_timestamp(second_b, 500_000_000).expect("time"));
    let seg2 = store.files.join(ordinal::backup::binlog::segment_name(2));
    let good = std::fs::read(&seg2).expect("segment 2");
    let mut bad = good.clone();
    let mid = bad.len() / 2;
    bad[mid] ^= 0x40;
    std::fs::write(&seg2, &bad).expect("tamper");
    let err = replay(
        &endpoint(&t1),
        &target,
        &dir,
        &base.gtid,
        &at_b,
        &ReplayOptions::default(),
    )
    .await
    .expect_err("a tampered segment is refused");
    assert!(
        matches!(&err, BinlogError::Corrupt { why, .. } if why.contains("sha256")),
        "{err}"
    );
    std::fs::write(&seg2, &good).expect("untamper");
    let manifest2 = seg2.with_file_name(ordinal::backup::binlog::manifest_name(2));
    let aside = store.scratch.join("manifest2.json");
    std::fs::rename(&manifest2, &aside).expect("hide segment 2");
    let err = replay(
        &endpoint(&t1),
        &target,
        &dir,
        &base.gtid,
        &at_b,
        &ReplayOptions::default(),
    )
    .await
    .expect_err("a missing segment is refused");
    assert!(matches!(&err, BinlogError::Gap(_)), "{err}");
    eprintln!("refused: {err}");
    assert_eq!(
        ids(&t1).await,
        base_ids,
        "nothing applied by a refused replay"
    );
    assert_eq!(binlog_pos(&t1).await, base_pos);
    std::fs::rename(&aside, &manifest2).expect("restore segment 2");

    // To the time of B: A and B present, nothing of C.
    let done = replay(
        &endpoint(&t1),
        &target,
        &dir,
        &base.gtid,
        &at_b,
        &ReplayOptions::default(),
    )
    .await
    .expect("replay to a time");
    eprintln!("replayed to {at_b:?}: {done:?}");
    assert_eq!(ids(&t1).await, expected(&[1..=20, 21..=32, 41..=50], &[5]));
    assert_eq!(done.last_gtid, Some(gtid_at(f, &pos_b, seq(&pos_b))));
    assert_eq!(binlog_pos(&t1).await, pos_b, "GTIDs are preserved");
    assert_eq!(
        t1.scalar("SELECT note FROM shop.orders WHERE id = 21")
            .await
            .as_deref(),
        Some("changed in B")
    );
    assert_eq!(
        t1.scalar("SELECT note FROM shop.orders WHERE id = 22")
            .await
            .as_deref(),
        Some("n22")
    );
    assert_eq!(
        t1.scalar("SELECT tag FROM shop.orders WHERE id = 32")
            .await
            .as_deref(),
        Some("x")
    );
    assert_eq!(
        t1.scalar("SELECT GROUP_CONCAT(msg ORDER BY id) FROM shop.audit")
            .await
            .as_deref(),
        Some("héllo ✓,two")
    );
    // Every column of every row C did not touch is as on the source
    // (microsecond defaults, decimals, the column added by DDL).
    let untouched = "WHERE id < 60 AND id NOT IN (22, 41)";
    assert_eq!(rows(&t1, untouched).await, rows(&src, untouched).await);
    let audit = "SELECT GROUP_CONCAT(CONCAT_WS('|', id, msg) ORDER BY id) FROM shop.audit";
    assert_eq!(t1.scalar(audit).await, src.scalar(audit).await);
    assert_eq!(
        t1.scalar("SELECT amount FROM shop.orders WHERE id = 2")
            .await
            .as_deref(),
        Some("3.25")
    );

    // On another fresh server, in three steps: to the 5th transaction of A
    // by GTID, from there to A's last GTID (a base inside a segment: the
    // segment's transactions the base holds are skipped), from there to
    // the time of B.
    let mid_seq = seq(&base.gtid) + 5;
    let mid = gtid_at(f, &base.gtid, mid_seq);
    let t2 = Server::of(f, 6);
    restore_base(&artifact, &t2).await;
    let to_mid = replay(
        &endpoint(&t2),
        &target,
        &dir,
        &base.gtid,
        &StopAt::Gtid(mid.clone()),
        &ReplayOptions::default(),
    )
    .await
    .expect("replay to a GTID");
    assert_eq!(to_mid.transactions, 5);
    assert_eq!(ids(&t2).await, expected(&[1..=25], &[]));
    assert_eq!(seq(&binlog_pos(&t2).await), mid_seq);
    let to_a = replay(
        &endpoint(&t2),
        &target,
        &dir,
        &binlog_pos(&t2).await,
        &StopAt::Gtid(gtid_at(f, &pos_a, seq(&pos_a))),
        &ReplayOptions::default(),
    )
    .await
    .expect("continue to a GTID");
    let holding = manifests
        .values()
        .find(|m| seq(&m.start_position) <= mid_seq && mid_seq < seq(&m.end_position))
        .expect("a segment after mid");
    assert_eq!(to_a.skipped, mid_seq - seq(&holding.start_position));
    assert_eq!(to_a.last_gtid, Some(gtid_at(f, &pos_a, seq(&pos_a))));
    assert_eq!(ids(&t2).await, expected(&[1..=20, 21..=32], &[]));
    assert_eq!(binlog_pos(&t2).await, pos_a);
    assert_eq!(
        t2.scalar("SELECT COUNT(*) FROM information_schema.TABLES WHERE TABLE_SCHEMA = 'shop' AND TABLE_NAME = 'audit'")
            .await
            .as_deref(),
        Some("0")
    );
    let to_b = replay(
        &endpoint(&t2),
        &target,
        &dir,
        &pos_a,
        &at_b,
        &ReplayOptions::default(),
    )
    .await
    .expect("continue to a time");
    assert_eq!(to_b.transactions, 14, "{to_b:?}");
    assert_eq!(rows(&t2, "").await, rows(&t1, "").await);
    assert_eq!(binlog_pos(&t2).await, pos_b);

    // Retention from a newer base: the segments before it go (the last
    // always stays); the older base can no longer be rolled forward.
    let pruned = ordinal::backup::binlog::prune(&target, &dir, f, &pos_a)
        .await
        .expect("prune");
    assert_eq!(
        pruned, first.segments,
        "the first run's segments end at or before A"
    );
    let err = replay(
        &endpoint(&t2),
        &target,
        &dir,
        &base.gtid,
        &at_b,
        &ReplayOptions::default(),
    )
    .await
    .expect_err("the archive no longer reaches back to the old base");
    assert!(matches!(err, BinlogError::Gap(_)), "{err}");

    // A point past the archive is refused, not restored partially.
    let late = StopAt::Time(Utc::now() + chrono::Duration::hours(1));
    let err = replay(
        &endpoint(&t2),
        &target,
        &dir,
        &pos_a,
        &late,
        &ReplayOptions::default(),
    )
    .await
    .expect_err("a point after the archive");
    assert!(matches!(err, BinlogError::OutOfRange(_)), "{err}");
}
