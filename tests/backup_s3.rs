//! Backups through a real S3-compatible server (s3s-fs, a separate process)
//! with the commands backup Jobs and restore steps run: `ordinal backup run`
//! streams a real redis-server's RDB into the bucket and reports a manifest;
//! `ordinal restore redis` verifies and installs it; a tampered artifact and
//! an unreachable target are refused; `ordinal backup delete` removes it all.

#[path = "support/redis.rs"]
mod support;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use ordinal::backup::artifact::Manifest;
use support::{PASSWORD, PORT, Server, dbsize};

const ACCESS: &str = "ordinal-test-access";
const SECRET: &str = "ordinal-test-secret-key";
const BUCKET: &str = "backups";

struct S3 {
    child: Child,
    root: tempfile::TempDir,
    endpoint: String,
}

impl Drop for S3 {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_s3(ip: &str, port: u16) -> S3 {
    let root = tempfile::tempdir().expect("s3 root");
    std::fs::create_dir_all(root.path().join(BUCKET)).expect("bucket");
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/s3s-fs.sh");
    let child = Command::new(script)
        .args([
            "--host",
            ip,
            "--port",
            &port.to_string(),
            "--access-key",
            ACCESS,
            "--secret-key",
            SECRET,
        ])
        .arg(root.path())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start s3s-fs (scripts/s3s-fs.sh installs it)");
    let deadline = std::time::Instant::now() + Duration::from_secs(300);
    while std::net::TcpStream::connect((ip, port)).is_err() {
        assert!(std::time::Instant::now() < deadline, "s3s-fs did not start");
        std::thread::sleep(Duration::from_millis(100));
    }
    S3 {
        child,
        root,
        endpoint: format!("http://{ip}:{port}"),
    }
}

fn target_json(endpoint: &str) -> String {
    serde_json::json!({"s3": {
        "bucket": BUCKET, "prefix": "team-a", "endpoint": endpoint, "forcePathStyle": true,
        "accessKeyId": {"name": "unused", "key": "unused"},
        "secretAccessKey": {"name": "unused", "key": "unused"}
    }})
    .to_string()
}

fn ordinal(args: &[String], termination_log: &Path, envs: &[(&str, &str)]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ordinal"))
        .args(args)
        .env("ORDINAL_DB_PASSWORD", PASSWORD)
        .env("ORDINAL_TARGET_ACCESS_KEY_ID", ACCESS)
        .env("ORDINAL_TARGET_SECRET_ACCESS_KEY", SECRET)
        .env("ORDINAL_TERMINATION_LOG", termination_log)
        .envs(envs.iter().copied())
        .output()
        .expect("run ordinal")
}

fn backup_args(endpoint: &str, host: &str, backup: &str) -> Vec<String> {
    [
        "backup",
        "run",
        "--namespace=shop",
        "--cluster=cache",
        &format!("--backup={backup}"),
        &format!("--host={host}"),
        &format!("--port={PORT}"),
        "--source-member=cache-1",
        "--engine=redis",
        &format!("--target={}", target_json(endpoint)),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                out.extend(files_under(&p));
            } else {
                out.push(p);
            }
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_backup_to_s3_restores_verified_and_deletes() {
    let block = 230;
    let s3 = start_s3(&format!("127.0.{block}.100"), 18014);
    let work = tempfile::tempdir().expect("work");
    let source_ip = format!("127.0.{block}.1");
    let source = Server::start(&source_ip, PORT, &work.path().join("source"), None);
    let mut c = source.conn().await;
    let _: () = redis::cmd("DEBUG")
        .arg("POPULATE")
        .arg(200_000)
        .arg("k")
        .arg(64)
        .query_async(&mut c)
        .await
        .expect("populate");
    let _: () = redis::cmd("SET")
        .arg("special")
        .arg("value with spaces")
        .query_async(&mut c)
        .await
        .expect("set");
    let keys = dbsize(&mut c).await;

    // Backup: streamed to S3, manifest reported only after the upload is confirmed.
    let log = work.path().join("termination-log");
    let out = ordinal(&backup_args(&s3.endpoint, &source_ip, "b1"), &log, &[]);
    assert!(
        out.status.success(),
        "backup failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let manifest: Manifest = serde_json::from_str(&std::fs::read_to_string(&log).expect("report"))
        .expect("manifest json");
    assert_eq!(manifest.artifact, "team-a/shop/cache/b1/dump.rdb.zst");
    assert_eq!(manifest.location, "s3://backups/team-a");
    let stored = s3.root.path().join(BUCKET).join(&manifest.artifact);
    let bytes = std::fs::read(&stored).expect("artifact in the bucket");
    assert_eq!(bytes.len() as i64, manifest.size_bytes);
    assert_eq!(
        ordinal::resources::config::sha256_hex(&bytes),
        manifest.sha256
    );
    assert!(manifest.raw_bytes > manifest.size_bytes, "compressed");
    assert!(
        manifest.position.contains(':'),
        "replid:offset recorded: {}",
        manifest.position
    );
    assert!(
        s3.root
            .path()
            .join(BUCKET)
            .join("team-a/shop/cache/b1/manifest.json")
            .exists()
    );

    // Restore into an empty directory, then serve it.
    let restore_args = |dir: &Path, sha: &str| -> Vec<String> {
        [
            "restore",
            "redis",
            &format!("--target={}", target_json(&s3.endpoint)),
            &format!("--artifact={}", manifest.artifact),
            &format!("--sha256={sha}"),
            &format!("--data-dir={}", dir.display()),
            "--only-ordinal=0",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect()
    };
    let restored_dir = work.path().join("restored");
    std::fs::create_dir_all(&restored_dir).expect("dir");
    let out = ordinal(
        &restore_args(&restored_dir, &manifest.sha256),
        &log,
        &[("HOSTNAME", "copy-0")],
    );
    assert!(
        out.status.success(),
        "restore failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let restored = Server::start(&format!("127.0.{block}.2"), PORT, &restored_dir, None);
    let mut r = restored.conn().await;
    for _ in 0..100 {
        let loaded: redis::RedisResult<i64> = redis::cmd("DBSIZE").query_async(&mut r).await;
        if loaded.is_ok() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(dbsize(&mut r).await, keys);
    let v: String = redis::cmd("GET")
        .arg("special")
        .query_async(&mut r)
        .await
        .expect("get");
    assert_eq!(v, "value with spaces");
    let v: String = redis::cmd("GET")
        .arg("k:12345")
        .query_async(&mut r)
        .await
        .expect("get");
    let w: String = redis::cmd("GET")
        .arg("k:12345")
        .query_async(&mut c)
        .await
        .expect("get");
    assert_eq!(v, w);

    // A tampered artifact is refused and leaves the directory untouched.
    let mut tampered = bytes.clone();
    let mid = tampered.len() / 2;
    tampered[mid] ^= 0xff;
    std::fs::write(&stored, &tampered).expect("tamper");
    let empty = work.path().join("tampered");
    std::fs::create_dir_all(&empty).expect("dir");
    let out = ordinal(
        &restore_args(&empty, &manifest.sha256),
        &log,
        &[("HOSTNAME", "copy-0")],
    );
    assert!(!out.status.success(), "a tampered artifact must be refused");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("sha256") || err.contains("checksum"), "{err}");
    assert!(
        files_under(&empty).is_empty(),
        "nothing installed: {:?}",
        files_under(&empty)
    );
    std::fs::write(&stored, &bytes).expect("untamper");

    // An unreachable target fails with a clear message and reports no manifest.
    let out = ordinal(
        &backup_args("http://127.0.0.1:9", &source_ip, "b2"),
        &log,
        &[],
    );
    assert!(
        !out.status.success(),
        "a backup to an unreachable target must fail"
    );
    let report = std::fs::read_to_string(&log).expect("report");
    assert!(
        serde_json::from_str::<Manifest>(&report).is_err(),
        "no manifest on failure: {report}"
    );
    assert!(!report.trim().is_empty(), "the failure is explained");
    assert!(
        !s3.root
            .path()
            .join(BUCKET)
            .join("team-a/shop/cache/b2")
            .exists()
    );

    // Delete removes the artifact and the manifest.
    let del: Vec<String> = [
        "backup",
        "delete",
        "--namespace=shop",
        "--cluster=cache",
        "--backup=b1",
        &format!("--target={}", target_json(&s3.endpoint)),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let out = ordinal(&del, &log, &[]);
    assert!(
        out.status.success(),
        "delete failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(files_under(&s3.root.path().join(BUCKET).join("team-a/shop/cache/b1")).is_empty());
}
