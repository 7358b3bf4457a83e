//! Counting data for the end-to-end safety suites: a writer that records
//! every acknowledged key (Redis) or row id (MySQL/MariaDB), a sampler that
//! asks every member every 200 ms whether it accepts writes, and the final
//! check of every acknowledged id on the final primary.
//!
//! The writer sends through a route: the write Service's ClusterIP (what
//! applications use; new connections follow the EndpointSlice) or the pod
//! labelled primary. On any error or timeout it drops the connection and
//! connects again; a write counts only once the server acknowledged it
//! (Redis: `SET` then, when durable, `WAIT 1` reporting a replica; MySQL: the
//! `INSERT` returned, which in SemiSync mode means a replica holds it).
//!
//! The sampler reads each member from the test process; with the netns
//! network, a member the test process cannot reach (a partition) is read
//! from inside its own pod network namespace (`ip netns exec`), so a
//! partitioned primary that still accepts writes is seen too. Needs the
//! crate root to declare `mod devcluster` (tests/support/devcluster.rs).
#![allow(dead_code)]

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use mysql_async::prelude::*;

use crate::devcluster::{DevCluster, members};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Engine {
    Redis,
    MySql,
}

/// Where the writer sends its writes.
#[derive(Clone, Debug)]
pub enum Route {
    /// A fixed address: the write Service's ClusterIP, or a pod IP.
    Address(String),
    /// Whichever pod is labelled primary (exactly one), looked up again after
    /// every error.
    LabelledPrimary,
}

/// One cluster under test and how to talk to its members.
#[derive(Clone)]
pub struct Db {
    pub engine: Engine,
    pub client: kube::Client,
    pub ns: String,
    pub name: String,
    /// Administrative password (Redis `password`, MySQL `root-password`),
    /// used by the sampler and the final check.
    pub admin_password: String,
    /// MySQL: the writer's user and password (an application user, so
    /// `read_only` applies to it); Redis: ignored (the writer uses the
    /// admin password).
    pub writer_user: String,
    pub writer_password: String,
    /// MySQL: `db.table` with a BIGINT primary key `id`; Redis: key prefix.
    pub table: String,
    /// Redis: acknowledge a write only once `WAIT 1` reports a replica has it.
    pub durable: bool,
    /// `odp-<id>-` of the devcluster's pod namespaces (netns network), for
    /// reading members the test process cannot reach.
    pub pod_netns_prefix: Option<String>,
}

impl Db {
    pub fn new(
        cluster: &DevCluster,
        engine: Engine,
        client: kube::Client,
        ns: &str,
        name: &str,
        admin_password: &str,
    ) -> Db {
        Db {
            engine,
            client,
            ns: ns.to_string(),
            name: name.to_string(),
            admin_password: admin_password.to_string(),
            writer_user: "root".into(),
            writer_password: admin_password.to_string(),
            table: match engine {
                Engine::Redis => "w:".into(),
                Engine::MySql => "safety.acked".into(),
            },
            durable: false,
            pod_netns_prefix: pod_netns_prefix(cluster),
        }
    }

    /// Pod IPs of the members, by pod name.
    pub async fn member_ips(&self) -> Vec<(String, String)> {
        members(&self.client, &self.ns, &self.name)
            .await
            .into_iter()
            .filter_map(|(n, _, ip)| Some((n, ip?)))
            .collect()
    }

    /// MySQL: create the table and an application user (no SUPER, no
    /// READ ONLY ADMIN: `read_only` refuses its writes) on the primary at
    /// `ip`; the writer then uses that user.
    pub async fn mysql_setup(&mut self, ip: &str, user: &str, password: &str) {
        let mut c = mysql_conn(ip, "root", &self.admin_password)
            .await
            .expect("connect to the primary as root");
        let db = self.table.split('.').next().expect("db.table");
        c.query_drop(format!(
            "CREATE DATABASE IF NOT EXISTS {db}; \
             CREATE TABLE IF NOT EXISTS {} (id BIGINT PRIMARY KEY); \
             CREATE USER IF NOT EXISTS '{user}'@'%' IDENTIFIED BY '{password}'; \
             GRANT SELECT, INSERT ON {db}.* TO '{user}'@'%'",
            self.table
        ))
        .await
        .expect("create table and application user");
        self.writer_user = user.into();
        self.writer_password = password.into();
    }

    /// Ids of `acked` missing on the member at `ip` (read as admin).
    pub async fn missing_on(&self, ip: &str, acked: &[u64]) -> Vec<u64> {
        match self.engine {
            Engine::Redis => {
                redis_missing(
                    ip,
                    &self.admin_password,
                    &self.table,
                    acked,
                    Expect::Present,
                )
                .await
            }
            Engine::MySql => mysql_missing(ip, &self.admin_password, &self.table, acked).await,
        }
    }

    /// Does the member at `ip` accept writes (Redis: answers `role:master`;
    /// MySQL: `@@read_only` is 0)? Read from the test process, or else from
    /// inside the member's pod namespace (first there when `cut`: it did not
    /// answer the test process last time). None when it cannot be read at all.
    pub async fn writable(&self, ip: &str, cut: bool) -> (Option<bool>, bool) {
        if cut && let Some(w) = self.writable_inside(ip).await {
            return (Some(w), true);
        }
        let direct = match self.engine {
            Engine::Redis => redis_role(ip, &self.admin_password)
                .await
                .map(|r| r == "master"),
            Engine::MySql => mysql_read_only(ip, &self.admin_password)
                .await
                .map(|ro| !ro),
        };
        if direct.is_some() {
            return (direct, false);
        }
        if cut {
            return (None, true);
        }
        (self.writable_inside(ip).await, true)
    }

    /// The same, read from inside the member's pod network namespace.
    async fn writable_inside(&self, ip: &str) -> Option<bool> {
        let prefix = self.pod_netns_prefix.as_ref()?;
        let octet = ip.rsplit('.').next()?;
        let ns = format!("{prefix}{octet}");
        let argv: Vec<String> = match self.engine {
            Engine::Redis => [
                "redis-cli",
                "-h",
                ip,
                "-a",
                &self.admin_password,
                "--no-auth-warning",
                "role",
            ]
            .map(String::from)
            .to_vec(),
            Engine::MySql => [
                "mariadb",
                "-h",
                ip,
                "-uroot",
                &format!("-p{}", self.admin_password),
                "--connect-timeout=1",
                "-N",
                "-B",
                "-e",
                "SELECT @@read_only",
            ]
            .map(String::from)
            .to_vec(),
        };
        let out = tokio::time::timeout(
            Duration::from_secs(3),
            tokio::process::Command::new("ip")
                .args(["netns", "exec", &ns, "timeout", "2"])
                .args(&argv)
                .stdin(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .kill_on_drop(true)
                .output(),
        )
        .await
        .ok()?
        .ok()?;
        if !out.status.success() {
            return None;
        }
        let first = String::from_utf8_lossy(&out.stdout)
            .lines()
            .next()?
            .trim()
            .to_string();
        match self.engine {
            Engine::Redis => Some(first == "master"),
            Engine::MySql => Some(first == "0"),
        }
    }

    /// Members accepting writes right now, read concurrently; `cut` holds
    /// the addresses that did not answer the test process (updated).
    pub async fn writable_members(&self, cut: &mut BTreeSet<String>) -> (Vec<String>, usize) {
        let ips = self.member_ips().await;
        let seen = futures::future::join_all(
            ips.iter()
                .map(|(_, ip)| self.writable(ip, cut.contains(ip))),
        )
        .await;
        let mut unknown = 0;
        let mut writable = Vec::new();
        for ((name, ip), (w, inside)) in ips.into_iter().zip(seen) {
            if inside {
                cut.insert(ip);
            } else {
                cut.remove(&ip);
            }
            match w {
                None => unknown += 1,
                Some(true) => writable.push(name),
                Some(false) => {}
            }
        }
        (writable, unknown)
    }

    /// The address the route points at now.
    async fn resolve(&self, route: &Route) -> Option<String> {
        match route {
            Route::Address(a) => Some(a.clone()),
            Route::LabelledPrimary => {
                let pods = members(&self.client, &self.ns, &self.name).await;
                let primaries: Vec<_> = pods
                    .into_iter()
                    .filter(|(_, r, _)| r.as_deref() == Some("primary"))
                    .collect();
                match primaries.as_slice() {
                    [(_, _, Some(ip))] => Some(ip.clone()),
                    _ => None,
                }
            }
        }
    }
}

/// `odp-<id>-` when the cluster runs the netns network.
pub fn pod_netns_prefix(cluster: &DevCluster) -> Option<String> {
    if !cluster.netns() {
        return None;
    }
    let text = std::fs::read_to_string(cluster.state_path().join("network.json")).ok()?;
    let v: serde_json::Value = serde_json::from_str(&text).ok()?;
    Some(format!("odp-{}-", v.get("id")?.as_str()?))
}

/// What a sampler saw.
#[derive(Debug, Default, Clone)]
pub struct Samples {
    pub taken: usize,
    /// Most members writable in one sample.
    pub max_writable: usize,
    /// Samples in which two or more members accepted writes (confirmed by a
    /// second read), with the members.
    pub dual: Vec<Vec<String>>,
    /// Samples in which some member could not be read at all (e.g. its
    /// process was being replaced).
    pub with_unknown: usize,
}

/// A writer and a sampler running against one cluster until `finish`.
pub struct Load {
    stop: Arc<AtomicBool>,
    acked: Arc<std::sync::atomic::AtomicUsize>,
    writer: tokio::task::JoinHandle<Written>,
    sampler: tokio::task::JoinHandle<Samples>,
}

/// What a writer did.
#[derive(Debug, Default, Clone)]
pub struct Written {
    /// Ids the server acknowledged, in order.
    pub acked: Vec<u64>,
    /// Attempts that failed or timed out (outcome unknown, not counted).
    pub failed: usize,
    pub last_error: Option<String>,
}

impl Load {
    /// Start writing ids from `first_id` on through `route`, and sampling.
    pub fn start(db: &Db, route: Route, first_id: u64) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let acked = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let writer = tokio::spawn(write_loop(
            db.clone(),
            route,
            first_id,
            stop.clone(),
            acked.clone(),
        ));
        let sampler = tokio::spawn(sample_loop(db.clone(), stop.clone()));
        Load {
            stop,
            acked,
            writer,
            sampler,
        }
    }

    /// How many writes were acknowledged so far.
    pub fn acked_so_far(&self) -> usize {
        self.acked.load(Ordering::Relaxed)
    }

    /// Stop both and collect what they saw.
    pub async fn finish(self) -> (Written, Samples) {
        self.stop.store(true, Ordering::Relaxed);
        let w = self.writer.await.expect("writer task");
        let s = self.sampler.await.expect("sampler task");
        (w, s)
    }
}

async fn write_loop(
    db: Db,
    route: Route,
    first_id: u64,
    stop: Arc<AtomicBool>,
    count: Arc<std::sync::atomic::AtomicUsize>,
) -> Written {
    let mut out = Written::default();
    let mut id = first_id;
    let mut redis: Option<redis::aio::MultiplexedConnection> = None;
    let mut mysql: Option<mysql_async::Conn> = None;
    while !stop.load(Ordering::Relaxed) {
        let result: Result<(), String> = match db.engine {
            Engine::Redis => {
                if redis.is_none() {
                    redis = match db.resolve(&route).await {
                        Some(ip) => redis_conn(&ip, &db.admin_password).await,
                        None => None,
                    };
                }
                match redis.as_mut() {
                    None => Err("no connection".into()),
                    Some(c) => redis_write(c, &db.table, id, db.durable).await,
                }
            }
            Engine::MySql => {
                if mysql.is_none() {
                    mysql = match db.resolve(&route).await {
                        Some(ip) => mysql_conn(&ip, &db.writer_user, &db.writer_password).await,
                        None => None,
                    };
                }
                match mysql.as_mut() {
                    None => Err("no connection".into()),
                    Some(c) => tokio::time::timeout(
                        Duration::from_secs(3),
                        c.query_drop(format!("INSERT INTO {} (id) VALUES ({id})", db.table)),
                    )
                    .await
                    .map_err(|_| "timed out".to_string())
                    .and_then(|r| r.map_err(|e| e.to_string())),
                }
            }
        };
        match result {
            Ok(()) => {
                out.acked.push(id);
                count.fetch_add(1, Ordering::Relaxed);
                id += 1;
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            Err(e) => {
                // Outcome unknown: never counted, and the id is not reused
                // (a late commit of it must not look like a later write).
                out.failed += 1;
                out.last_error = Some(e);
                id += 1;
                redis = None;
                mysql = None;
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
    out
}

async fn redis_write(
    c: &mut redis::aio::MultiplexedConnection,
    prefix: &str,
    id: u64,
    durable: bool,
) -> Result<(), String> {
    let set = tokio::time::timeout(
        Duration::from_secs(2),
        redis::cmd("SET")
            .arg(format!("{prefix}{id}"))
            .arg(id)
            .query_async::<String>(c),
    )
    .await
    .map_err(|_| "SET timed out".to_string())?
    .map_err(|e| e.to_string())?;
    if set != "OK" {
        return Err(format!("SET answered {set}"));
    }
    if durable {
        let n: i64 = tokio::time::timeout(
            Duration::from_secs(2),
            redis::cmd("WAIT").arg(1).arg(1000).query_async(c),
        )
        .await
        .map_err(|_| "WAIT timed out".to_string())?
        .map_err(|e| e.to_string())?;
        if n < 1 {
            return Err("WAIT: no replica acknowledged".into());
        }
    }
    Ok(())
}

async fn sample_loop(db: Db, stop: Arc<AtomicBool>) -> Samples {
    let mut s = Samples::default();
    let mut cut = BTreeSet::new();
    while !stop.load(Ordering::Relaxed) {
        let t = Instant::now();
        let (writable, unknown) = db.writable_members(&mut cut).await;
        if unknown > 0 {
            s.with_unknown += 1;
        }
        if writable.len() > 1 {
            let (again, _) = db.writable_members(&mut cut).await;
            if again.len() > 1 {
                s.dual.push(again);
            }
        }
        s.max_writable = s.max_writable.max(writable.len());
        s.taken += 1;
        tokio::time::sleep(Duration::from_millis(200).saturating_sub(t.elapsed())).await;
    }
    s
}

/// What counts as holding an acknowledged Redis key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Expect {
    /// The key exists.
    Present,
    /// The key holds its id (the writer sets `<prefix><id>` to `<id>`).
    Value,
}

/// Ids of `acked` whose key `<prefix><id>` the Redis member at `ip` does not
/// hold as `expect` says (read with `password`, 500 keys an `MGET`).
pub async fn redis_missing(
    ip: &str,
    password: &str,
    prefix: &str,
    acked: &[u64],
    expect: Expect,
) -> Vec<u64> {
    let mut c = redis_conn(ip, password)
        .await
        .unwrap_or_else(|| panic!("connect to the member at {ip}"));
    let mut missing = Vec::new();
    for chunk in acked.chunks(500) {
        let keys: Vec<String> = chunk.iter().map(|i| format!("{prefix}{i}")).collect();
        let vals: Vec<Option<String>> = redis::cmd("MGET")
            .arg(&keys)
            .query_async(&mut c)
            .await
            .expect("MGET");
        missing.extend(
            chunk
                .iter()
                .zip(vals)
                .filter(|(i, v)| match expect {
                    Expect::Present => v.is_none(),
                    Expect::Value => v.as_deref() != Some(i.to_string().as_str()),
                })
                .map(|(i, _)| *i),
        );
    }
    missing
}

/// Ids of `acked` missing from `table` (`db.table`, BIGINT key `id`) on the
/// MySQL/MariaDB member at `ip` (read as root with `password`).
pub async fn mysql_missing(ip: &str, password: &str, table: &str, acked: &[u64]) -> Vec<u64> {
    let mut c = mysql_conn(ip, "root", password)
        .await
        .unwrap_or_else(|| panic!("connect to the member at {ip}"));
    let ids: Vec<i64> = c
        .query(format!("SELECT id FROM {table}"))
        .await
        .expect("SELECT ids");
    let have: BTreeSet<u64> = ids.into_iter().map(|i| i as u64).collect();
    acked
        .iter()
        .copied()
        .filter(|i| !have.contains(i))
        .collect()
}

pub async fn redis_conn(ip: &str, password: &str) -> Option<redis::aio::MultiplexedConnection> {
    use redis::IntoConnectionInfo;
    let info = redis::ConnectionAddr::Tcp(ip.to_string(), 6379)
        .into_connection_info()
        .ok()?
        .set_redis_settings(redis::RedisConnectionInfo::default().set_password(password));
    let client = redis::Client::open(info).ok()?;
    let cfg = redis::AsyncConnectionConfig::new()
        .set_connection_timeout(Some(Duration::from_secs(1)))
        .set_response_timeout(Some(Duration::from_secs(2)));
    tokio::time::timeout(
        Duration::from_secs(2),
        client.get_multiplexed_async_connection_with_config(&cfg),
    )
    .await
    .ok()?
    .ok()
}

/// `ROLE`'s first field (`master` / `slave`).
pub async fn redis_role(ip: &str, password: &str) -> Option<String> {
    let mut c = redis_conn(ip, password).await?;
    let v: Vec<redis::Value> = tokio::time::timeout(
        Duration::from_secs(1),
        redis::cmd("ROLE").query_async(&mut c),
    )
    .await
    .ok()?
    .ok()?;
    match v.first() {
        Some(redis::Value::BulkString(b)) => Some(String::from_utf8_lossy(b).into_owned()),
        Some(redis::Value::SimpleString(s)) => Some(s.clone()),
        _ => None,
    }
}

pub async fn mysql_conn(ip: &str, user: &str, password: &str) -> Option<mysql_async::Conn> {
    let opts = mysql_async::OptsBuilder::default()
        .ip_or_hostname(ip.to_string())
        .tcp_port(3306)
        .user(Some(user.to_string()))
        .pass(Some(password.to_string()))
        .prefer_socket(false);
    tokio::time::timeout(Duration::from_secs(2), mysql_async::Conn::new(opts))
        .await
        .ok()?
        .ok()
}

pub async fn mysql_read_only(ip: &str, password: &str) -> Option<bool> {
    let mut c = mysql_conn(ip, "root", password).await?;
    let ro: Option<i64> =
        tokio::time::timeout(Duration::from_secs(1), c.query_first("SELECT @@read_only"))
            .await
            .ok()?
            .ok()?;
    Some(ro? != 0)
}
