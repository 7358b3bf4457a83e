//! Every backup target through the commands backup Jobs and restore steps
//! run, against real servers: S3 (s3s-fs), Google Cloud Storage
//! (fake-gcs-server), Azure Blob (Azurite) and a PVC directory. One suite
//! for all: `ordinal backup run` streams a real redis-server's RDB (larger
//! than one 8 MiB part, so the target takes it in parts: S3 and Azure
//! multipart uploads, a GCS resumable upload in several chunks) into the
//! target and reports a manifest; the stored artifact and manifest are read
//! back through the target and the artifact's bytes match the manifest's
//! size and sha256; a tampered artifact is refused by `ordinal restore
//! redis` and installs nothing; the intact one restores and serves every
//! key; `ordinal backup delete` leaves nothing behind; refused credentials
//! and an unreachable endpoint fail with messages that say so. The servers
//! are installed by scripts/setup.sh.
//!
//! GCS uploads go through the JSON API (src/backup/gcs_upload.rs: media
//! uploads and resumable sessions), which fake-gcs-server serves; reads,
//! lists and deletes go through object_store's XML client. The emulator
//! checks no tokens and accepts chunks more loosely than GCS (no offset or
//! 256 KiB checks); the unit tests of gcs_upload cover those rules, and the
//! OAuth token paths of real GCS are not exercised here.

#[path = "support/redis.rs"]
mod support;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use base64::Engine as _;
use futures::TryStreamExt;
use object_store::ObjectStoreExt;
use ordinal::backup::artifact::{self, Manifest};
use ordinal::backup::target::{self, Target, TargetCredentials};
use support::{PASSWORD, PORT, Server, dbsize};

const BUCKET: &str = "backups";
const S3_ACCESS: &str = "ordinal-test-access";
const S3_SECRET: &str = "ordinal-test-secret-key";
/// Azurite's well-known development account and key (public, documented).
const AZ_ACCOUNT: &str = "devstoreaccount1";
const AZ_KEY: &str =
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";
/// A GCS key the emulator accepts: object_store sends no OAuth token with it.
const GCS_KEY: &str = r#"{"private_key":"","private_key_id":"","client_email":"test@example.invalid","disable_oauth":true}"#;

/// A server process; killed on drop.
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn script(name: &str) -> String {
    format!("{}/scripts/{name}", env!("CARGO_MANIFEST_DIR"))
}

fn spawn(script_name: &str, args: &[&str], ip: &str, port: u16, cwd: &Path) -> Proc {
    let child = Command::new(script(script_name))
        .args(args)
        .current_dir(cwd)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("start {script_name} (scripts/setup.sh installs it): {e}"));
    let deadline = Instant::now() + Duration::from_secs(300);
    while std::net::TcpStream::connect((ip, port)).is_err() {
        assert!(Instant::now() < deadline, "{script_name} did not start");
        std::thread::sleep(Duration::from_millis(100));
    }
    Proc(child)
}

/// One target under test: how to reach it, with good and with refused
/// credentials, and where it would be if nothing listened.
struct Case {
    kind: &'static str,
    _server: Option<Proc>,
    _dir: tempfile::TempDir,
    /// `spec.target` of a Backup.
    target: serde_json::Value,
    /// The same target at an address where nothing listens.
    unreachable: Option<serde_json::Value>,
    /// Credentials (Job environment) the target accepts.
    env: Vec<(&'static str, String)>,
    /// Credentials it refuses, and what the failure must say.
    bad_env: Option<(Vec<(&'static str, String)>, &'static str)>,
    /// `--pvc-root` (where a PVC target is mounted).
    pvc_root: PathBuf,
    /// What `status.location` shows.
    location: &'static str,
    /// Whether the server takes uploads in parts (the artifact is then
    /// made larger than one part).
    multipart: bool,
}

fn ref_json() -> serde_json::Value {
    serde_json::json!({"name": "unused", "key": "unused"})
}

fn s3_case(ip: &str, port: u16) -> Case {
    let dir = tempfile::tempdir().expect("s3 root");
    std::fs::create_dir_all(dir.path().join(BUCKET)).expect("bucket");
    let root = dir.path().display().to_string();
    let server = spawn(
        "s3s-fs.sh",
        &[
            "--host",
            ip,
            "--port",
            &port.to_string(),
            "--access-key",
            S3_ACCESS,
            "--secret-key",
            S3_SECRET,
            &root,
        ],
        ip,
        port,
        dir.path(),
    );
    let target = |endpoint: String| {
        serde_json::json!({"s3": {
            "bucket": BUCKET, "prefix": "team-a", "endpoint": endpoint, "forcePathStyle": true,
            "accessKeyId": ref_json(), "secretAccessKey": ref_json()
        }})
    };
    Case {
        kind: "s3",
        _server: Some(server),
        target: target(format!("http://{ip}:{port}")),
        unreachable: Some(target(format!("http://{ip}:{}", port + 1))),
        env: vec![
            (target::ENV_ACCESS_KEY_ID, S3_ACCESS.into()),
            (target::ENV_SECRET_ACCESS_KEY, S3_SECRET.into()),
        ],
        bad_env: Some((
            vec![
                (target::ENV_ACCESS_KEY_ID, S3_ACCESS.into()),
                (target::ENV_SECRET_ACCESS_KEY, "not-the-secret".into()),
            ],
            "the target refused the credentials",
        )),
        pvc_root: dir.path().join("unused"),
        _dir: dir,
        location: "s3://backups/team-a",
        multipart: true,
    }
}

async fn gcs_case(ip: &str, port: u16) -> Case {
    ordinal::tls::ensure_crypto_provider();
    let dir = tempfile::tempdir().expect("gcs dir");
    let server = spawn(
        "fake-gcs.sh",
        &[
            "-scheme",
            "http",
            "-backend",
            "memory",
            "-host",
            ip,
            "-port",
            &port.to_string(),
            // object_store's reads, lists and deletes (XML API) are served
            // on the public host.
            "-public-host",
            &format!("{ip}:{port}"),
            "-log-level",
            "error",
        ],
        ip,
        port,
        dir.path(),
    );
    let endpoint = format!("http://{ip}:{port}");
    let created = reqwest::Client::new()
        .post(format!("{endpoint}/storage/v1/b"))
        .header("content-type", "application/json")
        .body(serde_json::json!({"name": BUCKET}).to_string())
        .send()
        .await
        .expect("create the bucket");
    assert!(created.status().is_success(), "create bucket: {created:?}");
    let target = |endpoint: String| {
        serde_json::json!({"gcs": {
            "bucket": BUCKET, "prefix": "team-a", "endpoint": endpoint,
            "serviceAccountKey": ref_json()
        }})
    };
    Case {
        kind: "gcs",
        _server: Some(server),
        target: target(endpoint.clone()),
        unreachable: Some(target(format!("http://{ip}:{}", port + 1))),
        env: vec![(target::ENV_GCS_KEY, GCS_KEY.into())],
        // The emulator checks no tokens; a key that is not a service account
        // key is refused before anything is sent.
        bad_env: Some((
            vec![(target::ENV_GCS_KEY, "not a key".into())],
            "credential serviceAccountKey is unusable: not a service account JSON key",
        )),
        pvc_root: dir.path().join("unused"),
        _dir: dir,
        location: "gs://backups/team-a",
        // Uploaded in a resumable session of several chunks.
        multipart: true,
    }
}

/// Azure Shared Key signature of a request without body or content headers.
fn azure_shared_key(verb: &str, date: &str, version: &str, resource: &str) -> String {
    let to_sign = format!(
        "{verb}\n\n\n\n\n\n\n\n\n\n\n\nx-ms-date:{date}\nx-ms-version:{version}\n{resource}"
    );
    let key = base64::engine::general_purpose::STANDARD
        .decode(AZ_KEY)
        .expect("key");
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &key);
    let sig = ring::hmac::sign(&key, to_sign.as_bytes());
    format!(
        "SharedKey {AZ_ACCOUNT}:{}",
        base64::engine::general_purpose::STANDARD.encode(sig.as_ref())
    )
}

async fn azure_case(ip: &str, port: u16) -> Case {
    ordinal::tls::ensure_crypto_provider();
    let dir = tempfile::tempdir().expect("azurite dir");
    let server = spawn(
        "azurite.sh",
        &[
            "--blobHost",
            ip,
            "--blobPort",
            &port.to_string(),
            "--inMemoryPersistence",
            "--disableTelemetry",
            "--skipApiVersionCheck",
        ],
        ip,
        port,
        dir.path(),
    );
    let endpoint = format!("http://{ip}:{port}/{AZ_ACCOUNT}");
    // Create the container (Create Container, signed with the account key).
    let date = chrono::Utc::now()
        .format("%a, %d %b %Y %H:%M:%S GMT")
        .to_string();
    let version = "2021-08-06";
    let resource = format!("/{AZ_ACCOUNT}/{AZ_ACCOUNT}/{BUCKET}\nrestype:container");
    let created = reqwest::Client::new()
        .put(format!("{endpoint}/{BUCKET}?restype=container"))
        .header("x-ms-date", &date)
        .header("x-ms-version", version)
        .header("content-length", "0")
        .header(
            "authorization",
            azure_shared_key("PUT", &date, version, &resource),
        )
        .send()
        .await
        .expect("create the container");
    assert!(
        created.status().is_success(),
        "create container: {:?} {}",
        created.status(),
        created.text().await.unwrap_or_default()
    );
    let target = |endpoint: String| {
        serde_json::json!({"azure": {
            "account": AZ_ACCOUNT, "container": BUCKET, "prefix": "team-a",
            "endpoint": endpoint, "accessKey": ref_json()
        }})
    };
    // Another well-formed key: the server's signature check refuses it.
    let wrong_key = base64::engine::general_purpose::STANDARD.encode([7u8; 64]);
    Case {
        kind: "azure",
        _server: Some(server),
        target: target(endpoint),
        unreachable: Some(target(format!("http://{ip}:{}/{AZ_ACCOUNT}", port + 1))),
        env: vec![(target::ENV_AZURE_KEY, AZ_KEY.into())],
        bad_env: Some((
            vec![(target::ENV_AZURE_KEY, wrong_key)],
            "the target refused the credentials",
        )),
        pvc_root: dir.path().join("unused"),
        _dir: dir,
        location: "azure://devstoreaccount1/backups/team-a",
        multipart: true,
    }
}

fn pvc_case() -> Case {
    let dir = tempfile::tempdir().expect("pvc mount");
    Case {
        kind: "pvc",
        _server: None,
        target: serde_json::json!({"pvc": {"claimName": "backups", "path": "team-a"}}),
        unreachable: None,
        env: Vec::new(),
        bad_env: None,
        pvc_root: dir.path().join("mnt"),
        _dir: dir,
        location: "pvc://backups/team-a",
        multipart: true,
    }
}

impl Case {
    fn open(&self) -> Target {
        let var = |name: &str| {
            self.env
                .iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| v.clone())
        };
        let creds = TargetCredentials {
            access_key_id: var(target::ENV_ACCESS_KEY_ID),
            secret_access_key: var(target::ENV_SECRET_ACCESS_KEY),
            gcs_service_account_key: var(target::ENV_GCS_KEY),
            azure_access_key: var(target::ENV_AZURE_KEY),
        };
        let spec = serde_json::from_value(self.target.clone()).expect("target");
        target::open(&spec, &creds, &self.pvc_root).expect("open the target")
    }

    fn run(
        &self,
        args: Vec<String>,
        log: &Path,
        env: &[(&'static str, String)],
        extra: &[(&str, &str)],
    ) -> Output {
        Command::new(env!("CARGO_BIN_EXE_ordinal"))
            .args(args)
            .arg(format!("--pvc-root={}", self.pvc_root.display()))
            .env_remove(target::ENV_ACCESS_KEY_ID)
            .env_remove(target::ENV_SECRET_ACCESS_KEY)
            .env_remove(target::ENV_GCS_KEY)
            .env_remove(target::ENV_AZURE_KEY)
            .env("ORDINAL_DB_PASSWORD", PASSWORD)
            .env("ORDINAL_TERMINATION_LOG", log)
            // Give up on an unreachable target within seconds, not minutes.
            .env(target::ENV_RETRY_SECONDS, "2")
            .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
            .envs(extra.iter().copied())
            .output()
            .expect("run ordinal")
    }
}

fn strings(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

fn backup_args(target: &serde_json::Value, host: &str, backup: &str) -> Vec<String> {
    strings(&[
        "backup",
        "run",
        "--namespace=shop",
        "--cluster=cache",
        &format!("--backup={backup}"),
        &format!("--host={host}"),
        &format!("--port={PORT}"),
        "--source-member=cache-1",
        "--engine=redis",
        &format!("--target={target}"),
    ])
}

fn restore_args(target: &serde_json::Value, m: &Manifest, dir: &Path) -> Vec<String> {
    strings(&[
        "restore",
        "redis",
        &format!("--target={target}"),
        &format!("--artifact={}", m.artifact),
        &format!("--sha256={}", m.sha256),
        &format!("--data-dir={}", dir.display()),
        "--only-ordinal=0",
    ])
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

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Fill the source with incompressible values: with `multipart` the
/// compressed RDB is over 8 MiB, so the target takes it in parts.
async fn populate(c: &mut redis::aio::MultiplexedConnection, multipart: bool) {
    use rand::RngCore;
    let mut rng = rand::rng();
    for batch in 0..if multipart { 10 } else { 3 } {
        let mut pipe = redis::pipe();
        for i in 0..300 {
            let mut value = vec![0u8; 4096];
            rng.fill_bytes(&mut value);
            pipe.cmd("SET")
                .arg(format!("blob:{batch}:{i}"))
                .arg(value)
                .ignore();
        }
        let _: () = pipe.query_async(c).await.expect("populate");
    }
    let _: () = redis::cmd("DEBUG")
        .arg("POPULATE")
        .arg(20_000)
        .arg("k")
        .query_async(c)
        .await
        .expect("populate");
    let _: () = redis::cmd("SET")
        .arg("special")
        .arg("value with spaces")
        .query_async(c)
        .await
        .expect("set");
}

async fn get(c: &mut redis::aio::MultiplexedConnection, key: &str) -> Vec<u8> {
    redis::cmd("GET")
        .arg(key)
        .query_async(c)
        .await
        .expect("get")
}

/// The bytes stored at `path`, read through the target.
async fn stored(target: &Target, path: &object_store::path::Path) -> bytes::Bytes {
    target
        .store
        .get(path)
        .await
        .expect("artifact")
        .bytes()
        .await
        .expect("artifact bytes")
}

/// The suite every target passes.
async fn suite(case: Case, block: u8) {
    support::require_redis_server();
    let kind = case.kind;
    let work = tempfile::tempdir().expect("work");
    let log = work.path().join("termination-log");
    let source_ip = format!("127.0.{block}.1");
    let source = Server::start(&source_ip, PORT, &work.path().join("source"), None);
    let mut c = source.conn().await;
    populate(&mut c, case.multipart).await;
    let keys = dbsize(&mut c).await;

    // Backup: streamed into the target, the manifest reported only after
    // the store confirmed the upload.
    let out = case.run(
        backup_args(&case.target, &source_ip, "b1"),
        &log,
        &case.env,
        &[],
    );
    assert!(out.status.success(), "{kind}: backup: {}", stderr(&out));
    let manifest: Manifest = serde_json::from_str(&std::fs::read_to_string(&log).expect("report"))
        .expect("manifest json");
    assert_eq!(manifest.location, case.location, "{kind}");
    let expected_key = if kind == "pvc" {
        "shop/cache/b1/dump.rdb.zst"
    } else {
        "team-a/shop/cache/b1/dump.rdb.zst"
    };
    assert_eq!(manifest.artifact, expected_key, "{kind}");
    assert_eq!(
        manifest.size_bytes > 8 << 20,
        case.multipart,
        "{kind}: a multipart upload or not ({} bytes)",
        manifest.size_bytes
    );
    assert!(manifest.raw_bytes >= manifest.size_bytes, "{kind}");

    // What the target holds is what the manifest says.
    let store = case.open();
    let dir = target::backup_dir(&store.prefix, "shop", "cache", "b1");
    assert_eq!(
        artifact::read_manifest(&store, &dir)
            .await
            .expect("stored manifest"),
        manifest,
        "{kind}"
    );
    let artifact_path = object_store::path::Path::from(manifest.artifact.as_str());
    let bytes = stored(&store, &artifact_path).await;
    assert_eq!(bytes.len() as i64, manifest.size_bytes, "{kind}");
    assert_eq!(
        ordinal::resources::config::sha256_hex(&bytes),
        manifest.sha256,
        "{kind}"
    );

    // A tampered artifact is refused and installs nothing.
    let mut tampered = bytes.to_vec();
    let mid = tampered.len() / 2;
    tampered[mid] ^= 0xff;
    store
        .store
        .put(&artifact_path, tampered.into())
        .await
        .expect("tamper");
    let refused_dir = work.path().join("tampered");
    std::fs::create_dir_all(&refused_dir).expect("dir");
    let out = case.run(
        restore_args(&case.target, &manifest, &refused_dir),
        &log,
        &case.env,
        &[("HOSTNAME", "copy-0")],
    );
    assert!(
        !out.status.success(),
        "{kind}: a tampered artifact restored"
    );
    let err = stderr(&out);
    assert!(err.contains("sha256"), "{kind}: {err}");
    assert_eq!(files_under(&refused_dir), Vec::<PathBuf>::new(), "{kind}");
    store
        .store
        .put(&artifact_path, bytes.clone().into())
        .await
        .expect("untamper");
    assert_eq!(
        stored(&store, &artifact_path).await,
        bytes,
        "{kind}: the put back artifact"
    );

    // The intact artifact restores and serves every key.
    let restored_dir = work.path().join("restored");
    std::fs::create_dir_all(&restored_dir).expect("dir");
    let out = case.run(
        restore_args(&case.target, &manifest, &restored_dir),
        &log,
        &case.env,
        &[("HOSTNAME", "copy-0")],
    );
    assert!(out.status.success(), "{kind}: restore: {}", stderr(&out));
    let restored = Server::start(&format!("127.0.{block}.2"), PORT, &restored_dir, None);
    let mut r = restored.conn().await;
    for _ in 0..100 {
        let loaded: redis::RedisResult<i64> = redis::cmd("DBSIZE").query_async(&mut r).await;
        if loaded.is_ok() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(dbsize(&mut r).await, keys, "{kind}");
    for key in ["special", "k:12345", "blob:0:17", "blob:2:299"] {
        assert_eq!(
            get(&mut r, key).await,
            get(&mut c, key).await,
            "{kind} {key}"
        );
    }

    // Refused credentials: the backup fails, says why, and leaves no manifest.
    if let Some((bad_env, says)) = &case.bad_env {
        let out = case.run(
            backup_args(&case.target, &source_ip, "b2"),
            &log,
            bad_env,
            &[],
        );
        assert!(!out.status.success(), "{kind}: bad credentials accepted");
        let report = std::fs::read_to_string(&log).expect("report");
        assert!(report.contains(says), "{kind}: {report}");
        assert!(
            !report.contains(S3_SECRET) && !report.contains(AZ_KEY),
            "{kind}: a credential in the report: {report}"
        );
        assert!(matches!(
            artifact::read_manifest(
                &store,
                &target::backup_dir(&store.prefix, "shop", "cache", "b2")
            )
            .await,
            Err(artifact::ArtifactError::NoManifest(_))
        ));
    }

    // An unreachable endpoint: the backup fails and says so.
    if let Some(unreachable) = &case.unreachable {
        let out = case.run(
            backup_args(unreachable, &source_ip, "b3"),
            &log,
            &case.env,
            &[],
        );
        assert!(!out.status.success(), "{kind}: unreachable target");
        let report = std::fs::read_to_string(&log).expect("report");
        assert!(
            report.contains("the target is unreachable"),
            "{kind}: {report}"
        );
    }

    // Delete removes the artifact and the manifest.
    let out = case.run(
        strings(&[
            "backup",
            "delete",
            "--namespace=shop",
            "--cluster=cache",
            "--backup=b1",
            &format!("--target={}", case.target),
        ]),
        &log,
        &case.env,
        &[],
    );
    assert!(out.status.success(), "{kind}: delete: {}", stderr(&out));
    let left: Vec<_> = store
        .store
        .list(Some(&store.prefix))
        .try_collect()
        .await
        .expect("list");
    assert!(left.is_empty(), "{kind}: left behind: {left:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_target_backs_up_restores_verified_refuses_tampering_and_deletes() {
    suite(s3_case("127.0.230.100", 18014), 230).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gcs_target_backs_up_restores_verified_refuses_tampering_and_deletes() {
    suite(gcs_case("127.0.231.100", 18015).await, 231).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn azure_target_backs_up_restores_verified_refuses_tampering_and_deletes() {
    suite(azure_case("127.0.232.100", 18016).await, 232).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pvc_target_backs_up_restores_verified_refuses_tampering_and_deletes() {
    suite(pvc_case(), 233).await;
}
