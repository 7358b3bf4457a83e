//! Test harness: real `redis-server` processes on distinct loopback addresses,
//! booted the way the operator renders their configuration, and a driver that
//! calls the engine like the reconciler does (persisting each returned state).
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use chrono::Utc;
use ordinal::api::{FailoverSpec, MemberRole, ReplicationState};
use ordinal::engine::{Credentials, Engine, EngineInput, EngineOutcome, Health, Member};
use ordinal::redis::{RedisEngine, RedisEngineConfig, RedisSettings};

#[path = "patience.rs"]
#[allow(clippy::duplicate_mod)] // included by several support modules of one test
mod patience;
pub use patience::patient;
use redis::aio::MultiplexedConnection;

pub const PASSWORD: &str = "t0p-s3cret-test-pw";
pub const PORT: u16 = 16379;

/// Fail with a clear message when redis-server is not installed.
pub fn require_redis_server() {
    let ok = Command::new("redis-server")
        .arg("--version")
        .stdout(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    assert!(
        ok,
        "redis-server is not installed or not on PATH; the Redis engine tests need it (apt-get install redis-server)"
    );
}

/// One `redis-server` process; killed on drop.
pub struct Server {
    pub ip: String,
    pub port: u16,
    pub dir: PathBuf,
    child: Child,
}

impl Server {
    /// Boot with the operator's configuration: port, bind, dir, appendonly,
    /// diskless sync without delay, requirepass/masterauth, replica-announce-ip,
    /// and `replicaof` when given.
    pub fn start(ip: &str, port: u16, dir: &Path, replicaof: Option<(String, u16)>) -> Server {
        Self::start_with_password(ip, port, dir, replicaof, PASSWORD)
    }

    pub fn start_with_password(
        ip: &str,
        port: u16,
        dir: &Path,
        replicaof: Option<(String, u16)>,
        password: &str,
    ) -> Server {
        Self::start_announcing(ip, port, dir, replicaof, password, ip)
    }

    /// Like `start_with_password`, announcing `announce` to its primary (the
    /// address replicas and the primary know this member by).
    pub fn start_announcing(
        ip: &str,
        port: u16,
        dir: &Path,
        replicaof: Option<(String, u16)>,
        password: &str,
        announce: &str,
    ) -> Server {
        Self::start_configured(ip, port, dir, replicaof, password, announce, "")
    }

    /// Like `start_announcing`, with `extra` configuration lines.
    pub fn start_configured(
        ip: &str,
        port: u16,
        dir: &Path,
        replicaof: Option<(String, u16)>,
        password: &str,
        announce: &str,
        extra: &str,
    ) -> Server {
        require_redis_server();
        std::fs::create_dir_all(dir).unwrap();
        let conf_dir = dir.parent().unwrap();
        let conf = conf_dir.join(format!("{ip}.conf"));
        let mut text = format!(
            "port {port}\nbind {ip}\ndir {}\nappendonly yes\nrepl-diskless-sync yes\nrepl-diskless-sync-delay 0\nrequirepass {password}\nmasterauth {password}\nreplica-announce-ip {announce}\nenable-debug-command yes\nsave \"\"\nlogfile {}\n",
            dir.display(),
            conf_dir.join(format!("{ip}.log")).display()
        );
        if let Some((h, p)) = replicaof {
            text.push_str(&format!("replicaof {h} {p}\n"));
        }
        text.push_str(extra);
        std::fs::write(&conf, text).unwrap();
        let child = Command::new("redis-server")
            .arg(&conf)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawning redis-server");
        let s = Server {
            ip: ip.to_string(),
            port,
            dir: dir.to_path_buf(),
            child,
        };
        s.wait_listening();
        s
    }

    fn wait_listening(&self) {
        let deadline = Instant::now() + patient(Duration::from_secs(10));
        while Instant::now() < deadline {
            if std::net::TcpStream::connect((self.ip.as_str(), self.port)).is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("redis-server on {}:{} did not start", self.ip, self.port);
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGKILL and reap.
    pub fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    pub fn signal(&self, sig: &str) {
        let st = Command::new("kill")
            .arg(format!("-{sig}"))
            .arg(self.child.id().to_string())
            .status()
            .unwrap();
        assert!(st.success());
    }

    pub async fn conn(&self) -> MultiplexedConnection {
        connect(&self.ip, self.port).await.unwrap()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub async fn connect(ip: &str, port: u16) -> redis::RedisResult<MultiplexedConnection> {
    connect_with(ip, port, PASSWORD).await
}

pub async fn connect_with(
    ip: &str,
    port: u16,
    password: &str,
) -> redis::RedisResult<MultiplexedConnection> {
    let client = redis::Client::open(format!("redis://:{password}@{ip}:{port}/"))?;
    let cfg = redis::AsyncConnectionConfig::new()
        .set_connection_timeout(Some(Duration::from_millis(500)))
        .set_response_timeout(Some(Duration::from_secs(5)));
    client
        .get_multiplexed_async_connection_with_config(&cfg)
        .await
}

pub async fn info_field(c: &mut MultiplexedConnection, field: &str) -> Option<String> {
    let info: String = redis::cmd("INFO").query_async(c).await.ok()?;
    info.lines()
        .find_map(|l| l.strip_prefix(&format!("{field}:")))
        .map(|v| v.trim().to_string())
}

pub async fn dbsize(c: &mut MultiplexedConnection) -> i64 {
    redis::cmd("DBSIZE").query_async(c).await.unwrap()
}

/// A cluster of `n` members on 127.0.<block>.1.. and the engine driving it.
pub struct Cluster {
    pub base: tempfile::TempDir,
    pub block: u8,
    pub servers: Vec<Option<Server>>,
    pub engine: RedisEngine,
    pub input: EngineInput<RedisSettings>,
    pub last: Option<EngineOutcome>,
    /// Every outcome seen, for assertions on events.
    pub history: Vec<EngineOutcome>,
    /// Play the reconciler's part of `EngineOutcome::isolate`: SIGKILL the
    /// member (its pod is deleted), report it `isolated` until the operation
    /// ends and, when set, boot it again at once from the persisted state
    /// (the StatefulSet recreates the pod, read-only).
    pub restart_isolated: bool,
    /// Members isolated so far.
    pub isolations: Vec<i32>,
    /// Extra configuration lines of every server started from now on.
    pub extra_config: String,
}

impl Cluster {
    pub fn new(block: u8, n: usize, failover: FailoverSpec) -> Cluster {
        require_redis_server();
        let base = tempfile::tempdir().unwrap();
        let members = (0..n)
            .map(|i| {
                let ip = format!("127.0.{block}.{}", i + 1);
                Member {
                    ordinal: i as i32,
                    pod: format!("r-{i}"),
                    address: Some(ip.clone()),
                    port: PORT,
                    dns_name: ip,
                    pod_exists: true,
                    pod_ready: true,
                    isolated: false,
                }
            })
            .collect();
        let input = EngineInput {
            namespace: "test".into(),
            name: "r".into(),
            members,
            state: ReplicationState::default(),
            desired_primary: None,
            failover,
            credentials: Credentials(BTreeMap::from([(
                "password".to_string(),
                PASSWORD.to_string(),
            )])),
            now: Utc::now(),
            settings: RedisSettings::default(),
            hint: None,
        };
        Cluster {
            base,
            block,
            servers: (0..n).map(|_| None).collect(),
            engine: RedisEngine::new(RedisEngineConfig::default()),
            input,
            last: None,
            history: Vec::new(),
            restart_isolated: false,
            isolations: Vec::new(),
            extra_config: String::new(),
        }
    }

    /// Make the operator dial `address` and the other members `dns_name` for
    /// `ordinal` (e.g. proxies), while clients keep using `ip(ordinal)`.
    pub fn route(&mut self, ordinal: usize, address: String, dns_name: String) {
        let m = &mut self.input.members[ordinal];
        m.address = Some(address);
        m.dns_name = dns_name;
    }

    pub fn dns(&self, ordinal: usize) -> String {
        self.input.members[ordinal].dns_name.clone()
    }

    pub fn ip(&self, ordinal: usize) -> String {
        format!("127.0.{}.{}", self.block, ordinal + 1)
    }

    pub fn dir(&self, ordinal: usize) -> PathBuf {
        self.base.path().join(format!("m{ordinal}")).join("data")
    }

    /// `replicaof` rendered from the persisted state, as the config builder
    /// does: with no recorded primary every member replicates from itself
    /// (read-only, never syncing) until the engine adopts one; afterwards
    /// every member (the primary included) replicates from the recorded
    /// primary.
    pub fn boot_replicaof(&self, ordinal: usize) -> Option<(String, u16)> {
        match self.input.state.primary {
            None => Some((self.ip(ordinal), PORT)),
            Some(p) => Some((self.dns(p as usize), PORT)),
        }
    }

    pub fn start(&mut self, ordinal: usize) {
        let r = self.boot_replicaof(ordinal);
        let s = Server::start_configured(
            &self.ip(ordinal),
            PORT,
            &self.dir(ordinal),
            r,
            PASSWORD,
            &self.dns(ordinal),
            &self.extra_config,
        );
        self.servers[ordinal] = Some(s);
    }

    pub fn start_all(&mut self) {
        for i in 0..self.servers.len() {
            self.start(i);
        }
    }

    pub fn kill(&mut self, ordinal: usize) {
        if let Some(s) = self.servers[ordinal].take() {
            s.kill();
        }
    }

    pub fn wipe(&mut self, ordinal: usize) {
        let d = self.dir(ordinal);
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
    }

    pub fn server(&self, ordinal: usize) -> &Server {
        self.servers[ordinal].as_ref().unwrap()
    }

    /// One reconcile pass, persisting the returned state like the reconciler.
    pub async fn pass(&mut self) -> EngineOutcome {
        self.input.now = Utc::now();
        let out = self.engine.reconcile(&self.input).await.unwrap();
        for e in &out.events {
            eprintln!("[event] {:?} {}: {}", e.type_, e.reason, e.note);
        }
        self.input.state = out.state.clone();
        self.last = Some(out.clone());
        self.history.push(out.clone());
        self.isolate(&out);
        out
    }

    /// The reconciler's part of `outcome.isolate` (see `restart_isolated`).
    pub fn isolate(&mut self, out: &EngineOutcome) {
        if out.state.operation.is_none() {
            for m in &mut self.input.members {
                m.isolated = false;
            }
        }
        for &o in &out.isolate {
            let i = o as usize;
            if self.input.members[i].isolated {
                continue;
            }
            eprintln!("[isolate] r-{o}: role label removed, pod deleted");
            self.kill(i);
            if self.restart_isolated {
                self.start(i);
            }
            self.input.members[i].isolated = true;
            self.isolations.push(o);
        }
    }

    /// Pass, then sleep as asked (capped at 1 s), until `done` or timeout.
    pub async fn run_until(
        &mut self,
        timeout: Duration,
        mut done: impl FnMut(&EngineOutcome) -> bool,
    ) -> EngineOutcome {
        let timeout = patient(timeout);
        let deadline = Instant::now() + timeout;
        loop {
            let out = self.pass().await;
            if done(&out) {
                return out;
            }
            assert!(
                Instant::now() < deadline,
                "not converged within {timeout:?}; last outcome: {out:#?}"
            );
            tokio::time::sleep(out.requeue_after.min(Duration::from_secs(1))).await;
        }
    }

    /// Until healthy with every member in place.
    pub async fn converge(&mut self, timeout: Duration) -> EngineOutcome {
        self.run_until(timeout, |o| {
            o.health == Health::Healthy && o.members.iter().all(|m| m.role != MemberRole::Unknown)
        })
        .await
    }

    /// Ordinal reported Primary in the last outcome.
    pub fn primary(&self) -> Option<usize> {
        self.last.as_ref().and_then(|o| {
            o.members
                .iter()
                .find(|m| m.role == MemberRole::Primary)
                .map(|m| m.ordinal as usize)
        })
    }

    /// Ordinals of running servers that say `role:master`.
    pub async fn masters(&self) -> Vec<usize> {
        let mut out = Vec::new();
        for (i, s) in self.servers.iter().enumerate() {
            let Some(s) = s else { continue };
            let Ok(mut c) = connect(&s.ip, s.port).await else {
                continue;
            };
            if info_field(&mut c, "role").await.as_deref() == Some("master") {
                out.push(i);
            }
        }
        out
    }
}

/// Wait until `f` holds, polling every 50 ms.
pub async fn eventually<F, Fut>(timeout: Duration, what: &str, mut f: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + patient(timeout);
    while !f().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A writer that keeps setting `w:<n>` on whichever member the engine last
/// reported as Primary, recording every acknowledged key and when.
pub struct Writer {
    pub target: tokio::sync::watch::Sender<Option<(String, u16)>>,
    stop: tokio::sync::watch::Sender<bool>,
    handle: tokio::task::JoinHandle<Vec<(String, Instant)>>,
}

impl Writer {
    pub fn start(initial: (String, u16)) -> Writer {
        Self::start_with(initial, None)
    }

    /// With `wait = Some(n)`, a write counts as acknowledged only once
    /// `WAIT n 1000` confirms `n` replicas hold it (durable mode clients).
    pub fn start_with(initial: (String, u16), wait: Option<i64>) -> Writer {
        let (target, mut rx) = tokio::sync::watch::channel(Some(initial));
        let (stop, stop_rx) = tokio::sync::watch::channel(false);
        let handle = tokio::spawn(async move {
            let mut acked = Vec::new();
            let mut conn: Option<(String, MultiplexedConnection)> = None;
            let mut n = 0u64;
            while !*stop_rx.borrow() {
                let want = rx.borrow_and_update().clone();
                let Some((ip, port)) = want else {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                };
                if conn.as_ref().map(|(h, _)| h != &ip).unwrap_or(true) {
                    conn = connect(&ip, port).await.ok().map(|c| (ip.clone(), c));
                }
                let Some((_, c)) = conn.as_mut() else {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                };
                let key = format!("w:{n}");
                let r: redis::RedisResult<String> = tokio::time::timeout(
                    Duration::from_secs(2),
                    redis::cmd("SET").arg(&key).arg(n).query_async(c),
                )
                .await
                .unwrap_or_else(|_| {
                    Err(redis::RedisError::from((redis::ErrorKind::Io, "timeout")))
                });
                let r = match (r, wait) {
                    (Ok(v), Some(w)) => {
                        let got: redis::RedisResult<i64> = tokio::time::timeout(
                            Duration::from_secs(2),
                            redis::cmd("WAIT").arg(w).arg(1000).query_async(c),
                        )
                        .await
                        .unwrap_or_else(|_| {
                            Err(redis::RedisError::from((redis::ErrorKind::Io, "timeout")))
                        });
                        match got {
                            Ok(k) if k >= w => Ok(v),
                            // Not acknowledged: the key is not counted.
                            Ok(_) => {
                                n += 1;
                                Err(redis::RedisError::from((
                                    redis::ErrorKind::Io,
                                    "not replicated",
                                )))
                            }
                            Err(e) => Err(e),
                        }
                    }
                    (r, _) => r,
                };
                match r {
                    Ok(_) => {
                        acked.push((key, Instant::now()));
                        n += 1;
                    }
                    Err(_) => {
                        conn = None;
                        tokio::time::sleep(Duration::from_millis(10)).await;
                    }
                }
            }
            acked
        });
        Writer {
            target,
            stop,
            handle,
        }
    }

    pub fn follow(&self, c: &Cluster) {
        let t = c.primary().map(|p| (c.ip(p), PORT));
        self.target.send_replace(t);
    }

    pub async fn stop(self) -> Vec<(String, Instant)> {
        self.stop.send_replace(true);
        self.handle.await.unwrap()
    }
}
