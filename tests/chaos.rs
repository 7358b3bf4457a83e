//! Chaos runner: primary crashes under a write load, for each engine in its
//! durable mode and its default (asynchronous) mode.
//!
//! Every round builds a fresh 3-member cluster of real servers (Redis:
//! `redis-server`; MariaDB: `mariadbd`), driven by the engine in-process the
//! way the reconciler drives it (each returned state persisted into the next
//! pass; the reconciler's isolation of a member = SIGKILL, and the member
//! starts again 0.2–3 s later, as when a pod is deleted and recreated).
//! Under a write load of
//! several concurrent pipelined writers it injects, at a random point, one
//! fault:
//! - `kill`: SIGKILL of the primary (it starts again 0.5–10 s later);
//! - `hang`: SIGSTOP of the primary, SIGCONT 1–12 s later (unless it was
//!   isolated first);
//! - `kill-promoted`: SIGKILL of the primary, then SIGKILL of the member
//!   promoted in its place right after its promotion;
//!
//! and in a quarter of the rounds the operator is killed too: the engine
//! instance is dropped in the middle of a pass (or after a pass whose state
//! is never persisted) at a random pass of the failover, and a new one
//! resumes from the persisted state.
//!
//! Per round it records the write-unavailability window (longest gap
//! between acknowledged writes after the fault), the acknowledged writes
//! missing on the final primary (Jepsen "set": every acknowledged id must be
//! present), samples (every 200 ms) with more than one writable member, and
//! the time until the cluster is healthy again with every member back.
//!
//! Modes: Redis durable = `spec.durability` (`min-replicas-to-write 1`,
//! `min-replicas-max-lag 2`) and clients counting a write as acknowledged
//! only once `WAIT 1` confirms a replica holds it; Redis async = neither.
//! MariaDB durable = `replication.mode: SemiSync`; async = the default.
//!
//! `chaos_short_durable` (2 rounds per engine, durable mode) runs with the
//! suite. The long run is `scripts/chaos.sh` (the ignored `chaos_runs`):
//! `ORDINAL_CHAOS_ROUNDS` (default 10), `ORDINAL_CHAOS_ENGINE`
//! (`redis`, `mariadb`, `all`), `ORDINAL_CHAOS_MODE` (`durable`, `async`,
//! `all`), `ORDINAL_CHAOS_SEED` (round i uses seed + i; one round replays
//! with its seed and `ORDINAL_CHAOS_ROUNDS=1`), `ORDINAL_CHAOS_RATE`
//! (target acknowledged writes/s, default 4000), `ORDINAL_CHAOS_REPORT`
//! (a file the per-round lines and the summary are appended to).

#[path = "support/mysql.rs"]
mod mharness;
#[path = "support/redis.rs"]
mod rharness;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use mysql_async::prelude::Queryable;
use ordinal::api::{FailoverSpec, MemberRole, ReplicationState};
use ordinal::engine::{Engine, EngineOutcome, Health};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

const MEMBERS: i32 = 3;
const WRITERS: u64 = 8;
const BATCH: u64 = 25;
const DETECTION_SECONDS: i32 = 2;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Redis,
    MariaDb,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Redis => "redis",
            Kind::MariaDb => "mariadb",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Fault {
    Kill,
    Hang,
    KillPromoted,
}

impl Fault {
    fn name(self) -> &'static str {
        match self {
            Fault::Kill => "kill",
            Fault::Hang => "hang",
            Fault::KillPromoted => "kill-promoted",
        }
    }
}

/// What one round measured.
#[derive(Clone, Debug)]
struct RoundResult {
    kind: Kind,
    durable: bool,
    seed: u64,
    fault: Fault,
    operator_killed: bool,
    acked: usize,
    /// Acknowledged writes per second before the fault (the load the fault
    /// hits).
    steady_rate: f64,
    /// Acknowledged writes per second over the whole round, outage included.
    rate: f64,
    /// Longest gap between acknowledged writes after the fault.
    unavailable: Duration,
    missing: usize,
    /// A few of the missing ids, for the report.
    missing_sample: Vec<String>,
    samples: u64,
    dual: u64,
    /// From the fault until healthy with every member back.
    healthy_after: Option<Duration>,
    /// Why the round ended without becoming healthy: the health reason
    /// that stayed put for 20 s with every member back and a primary serving.
    stuck: Option<String>,
    /// At the end a labelled primary acknowledged writes (the write Service
    /// serves), healthy or not.
    ready: bool,
    final_primary: Option<i32>,
    term: i64,
}

impl RoundResult {
    fn line(&self) -> String {
        format!(
            "| {} | {} | {} | {} | {} | {} | {:.0} | {:.0} | {} | {} | {}/{} | {} | {} |",
            self.kind.name(),
            if self.durable { "durable" } else { "async" },
            self.seed,
            self.fault.name(),
            if self.operator_killed { "yes" } else { "no" },
            self.acked,
            self.steady_rate,
            self.rate,
            self.unavailable.as_millis(),
            self.missing,
            self.dual,
            self.samples,
            match (&self.healthy_after, &self.stuck) {
                (Some(d), _) => d.as_millis().to_string(),
                (None, Some(why)) => format!(
                    "not healthy ({why}){}",
                    if self.ready { ", writes served" } else { "" }
                ),
                (None, None) => "not converged".into(),
            },
            self.final_primary
                .map(|p| format!("{p} (term {})", self.term))
                .unwrap_or_else(|| "-".into()),
        )
    }
}

const HEADER: &str = "| engine | mode | seed | fault | operator killed | acknowledged writes | writes/s before the fault | writes/s whole round | unavailable ms | missing | dual-writable samples | healthy after ms | final primary |\n|---|---|---|---|---|---|---|---|---|---|---|---|---|";

/// Acknowledged writes: ids and when each batch was acknowledged.
#[derive(Default)]
struct Acks {
    ids: Vec<(u64, u64)>,
    times: Vec<Instant>,
}

type SharedAcks = Arc<Mutex<Acks>>;

/// The cluster under test, either engine.
enum Db {
    Redis(Box<rharness::Cluster>),
    Maria(Box<mharness::Cluster>),
}

impl Db {
    async fn boot(kind: Kind, durable: bool, block: u8) -> Db {
        let failover = FailoverSpec {
            enabled: true,
            detection_seconds: DETECTION_SECONDS,
            max_lag: None,
        };
        match kind {
            Kind::Redis => {
                let mut c = rharness::Cluster::new(block, MEMBERS as usize, failover);
                if durable {
                    c.input.settings.durability = Some(ordinal::api::redis::RedisDurability {
                        min_replicas_to_write: 1,
                        min_replicas_max_lag: 2,
                    });
                }
                c.restart_isolated = false;
                c.start_all();
                c.converge(Duration::from_secs(30)).await;
                c.pass().await;
                Db::Redis(Box::new(c))
            }
            Kind::MariaDb => {
                let mut c = mharness::Cluster::of(mharness::Flavor::MariaDB, MEMBERS);
                c.failover = failover;
                if durable {
                    c.settings.replication.mode = ordinal::api::mysql::ReplicationMode::SemiSync;
                }
                c.restart_isolated = false;
                c.converge(Duration::from_secs(60), "bootstrap", |o| {
                    mharness::healthy_with(o, 0)
                })
                .await;
                mharness::setup_app(c.server(0)).await;
                c.converge(Duration::from_secs(30), "steady", |o| {
                    mharness::healthy_with(o, 0)
                })
                .await;
                Db::Maria(Box::new(c))
            }
        }
    }

    async fn pass(&mut self) -> EngineOutcome {
        match self {
            Db::Redis(c) => c.pass().await,
            Db::Maria(c) => c.pass().await,
        }
    }

    /// The operator dies: a pass cut after `cut` (or run whole and never
    /// persisted), then a new engine instance.
    async fn lost_pass(&mut self, cut: Option<Duration>) {
        match self {
            Db::Redis(c) => {
                c.input.now = chrono::Utc::now();
                match cut {
                    None => {
                        let _ = c.engine.reconcile(&c.input).await;
                    }
                    Some(d) => {
                        let _ = tokio::time::timeout(d, c.engine.reconcile(&c.input)).await;
                    }
                }
                c.engine = ordinal::redis::RedisEngine::new(Default::default());
            }
            Db::Maria(c) => {
                let input = c.input();
                match cut {
                    None => {
                        let _ = c.engine.reconcile(&input).await;
                    }
                    Some(d) => {
                        let _ = tokio::time::timeout(d, c.engine.reconcile(&input)).await;
                    }
                }
                c.engine = ordinal::mysql::MySqlEngine::new(Default::default());
            }
        }
    }

    /// Members the reconciler isolated so far (SIGKILLed: pod deleted).
    fn isolations(&self) -> usize {
        match self {
            Db::Redis(c) => c.isolations.len(),
            Db::Maria(c) => c.isolations.len(),
        }
    }

    fn isolated_member(&self, i: usize) -> i32 {
        match self {
            Db::Redis(c) => c.isolations[i],
            Db::Maria(c) => c.isolations[i],
        }
    }

    fn state(&self) -> &ReplicationState {
        match self {
            Db::Redis(c) => &c.input.state,
            Db::Maria(c) => &c.state,
        }
    }

    fn addr(&self, o: i32) -> (String, u16) {
        match self {
            Db::Redis(c) => (c.ip(o as usize), rharness::PORT),
            Db::Maria(c) => (c.server(o).ip.clone(), c.server(o).port),
        }
    }

    fn running(&self, o: i32) -> bool {
        match self {
            Db::Redis(c) => c.servers[o as usize].is_some(),
            Db::Maria(c) => c.server(o).member().pod_ready,
        }
    }

    fn pid(&self, o: i32) -> Option<u32> {
        match self {
            Db::Redis(c) => c.servers[o as usize].as_ref().map(|s| s.pid()),
            Db::Maria(c) => {
                let s = c.server(o);
                if !s.member().pod_ready {
                    return None;
                }
                std::fs::read_to_string(s.dir.join("mysqld.pid"))
                    .ok()
                    .and_then(|p| p.trim().parse().ok())
            }
        }
    }

    fn kill(&mut self, o: i32) {
        eprintln!("[chaos] SIGKILL member {o}");
        match self {
            Db::Redis(c) => c.kill(o as usize),
            Db::Maria(c) => c.server_mut(o).kill(),
        }
    }

    fn start(&mut self, o: i32) {
        eprintln!("[chaos] member {o} starts again");
        match self {
            Db::Redis(c) => c.start(o as usize),
            Db::Maria(c) => c.server_mut(o).start(),
        }
    }
}

fn signal(pid: u32, sig: &str) {
    eprintln!("[chaos] SIG{sig} pid {pid}");
    let _ = std::process::Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(pid.to_string())
        .status();
}

/// The member the outcome reports Primary (what the write Service selects).
fn labelled_primary(out: &EngineOutcome) -> Option<i32> {
    out.members
        .iter()
        .find(|m| m.role == MemberRole::Primary)
        .map(|m| m.ordinal)
}

fn settled(out: &EngineOutcome) -> bool {
    out.health == Health::Healthy
        && out.state.operation.is_none()
        && out.state.primary.is_some()
        && labelled_primary(out) == out.state.primary
        && out
            .members
            .iter()
            .all(|m| m.role == MemberRole::Primary || m.role == MemberRole::Replica)
}

/// One Redis writer: pipelines of `BATCH` SETs of unique keys on the
/// labelled primary; in durable mode a batch counts only once `WAIT 1`
/// confirms a replica holds it.
async fn redis_writer(
    w: u64,
    durable: bool,
    interval: Duration,
    mut target: tokio::sync::watch::Receiver<Option<(String, u16)>>,
    acks: SharedAcks,
    stop: Arc<AtomicBool>,
) {
    let mut conn: Option<((String, u16), redis::aio::MultiplexedConnection)> = None;
    let mut n = 0u64;
    while !stop.load(Ordering::SeqCst) {
        let began = Instant::now();
        let want = target.borrow_and_update().clone();
        let Some(addr) = want else {
            tokio::time::sleep(Duration::from_millis(20)).await;
            continue;
        };
        if conn.as_ref().map(|(a, _)| a != &addr).unwrap_or(true) {
            conn = match tokio::time::timeout(
                Duration::from_millis(500),
                rharness::connect(&addr.0, addr.1),
            )
            .await
            {
                Ok(Ok(c)) => Some((addr.clone(), c)),
                _ => None,
            };
        }
        let Some((_, c)) = conn.as_mut() else {
            tokio::time::sleep(Duration::from_millis(20)).await;
            continue;
        };
        let first = n;
        let mut pipe = redis::pipe();
        for i in 0..BATCH {
            pipe.cmd("SET")
                .arg(format!("w:{w}:{}", first + i))
                .arg(first + i)
                .ignore();
        }
        n += BATCH;
        let res: redis::RedisResult<()> =
            match tokio::time::timeout(Duration::from_secs(2), pipe.query_async(c)).await {
                Ok(r) => r,
                Err(_) => Err(redis::RedisError::from((redis::ErrorKind::Io, "timeout"))),
            };
        let ok = match res {
            Ok(()) if durable => {
                let r: Result<redis::RedisResult<i64>, _> = tokio::time::timeout(
                    Duration::from_secs(2),
                    redis::cmd("WAIT").arg(1).arg(1000).query_async(c),
                )
                .await;
                matches!(r, Ok(Ok(k)) if k >= 1)
            }
            Ok(()) => true,
            Err(_) => {
                conn = None;
                false
            }
        };
        if ok {
            let now = Instant::now();
            let mut a = acks.lock().unwrap();
            a.ids.extend((first..first + BATCH).map(|i| (w, i)));
            a.times.push(now);
        } else {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        if let Some(rest) = interval.checked_sub(began.elapsed()) {
            tokio::time::sleep(rest).await;
        }
    }
}

/// One MariaDB writer: transactions inserting `BATCH` rows of unique ids on
/// the labelled primary; a row is acknowledged when its COMMIT returned.
async fn maria_writer(
    w: u64,
    interval: Duration,
    mut target: tokio::sync::watch::Receiver<Option<(String, u16)>>,
    acks: SharedAcks,
    stop: Arc<AtomicBool>,
) {
    let mut conn: Option<((String, u16), mysql_async::Conn)> = None;
    let mut n = 0u64;
    while !stop.load(Ordering::SeqCst) {
        let began = Instant::now();
        let want = target.borrow_and_update().clone();
        let Some(addr) = want else {
            tokio::time::sleep(Duration::from_millis(20)).await;
            continue;
        };
        if conn.as_ref().map(|(a, _)| a != &addr).unwrap_or(true) {
            let o = mysql_async::OptsBuilder::default()
                .ip_or_hostname(addr.0.clone())
                .tcp_port(addr.1)
                .user(Some("app"))
                .pass(Some(mharness::APP_PW))
                .prefer_socket(false);
            conn = match tokio::time::timeout(Duration::from_millis(500), mysql_async::Conn::new(o))
                .await
            {
                Ok(Ok(c)) => Some((addr.clone(), c)),
                _ => None,
            };
        }
        let Some((_, c)) = conn.as_mut() else {
            tokio::time::sleep(Duration::from_millis(20)).await;
            continue;
        };
        let first = n;
        n += BATCH;
        let values = (first..first + BATCH)
            .map(|i| format!("({}, 'w')", id_of(w, i)))
            .collect::<Vec<_>>()
            .join(",");
        let r = tokio::time::timeout(
            Duration::from_secs(3),
            c.query_drop(format!("INSERT INTO app.t (id, v) VALUES {values}")),
        )
        .await;
        match r {
            Ok(Ok(())) => {
                let now = Instant::now();
                let mut a = acks.lock().unwrap();
                a.ids.extend((first..first + BATCH).map(|i| (w, i)));
                a.times.push(now);
            }
            Ok(Err(mysql_async::Error::Server(e))) if e.code == 1290 || e.code == 1836 => {
                // read-only: the label has not moved yet
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            _ => {
                conn = None;
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
        if let Some(rest) = interval.checked_sub(began.elapsed()) {
            tokio::time::sleep(rest).await;
        }
    }
}

fn id_of(w: u64, i: u64) -> i64 {
    (w * 1_000_000_000 + i) as i64
}

/// Whether the member accepts writes right now (Redis: `role:master`
/// without a FAILOVER pausing it; MariaDB: `@@read_only = 0`).
async fn writable(kind: Kind, addr: &(String, u16)) -> bool {
    let probe = async {
        match kind {
            Kind::Redis => {
                let mut c = rharness::connect(&addr.0, addr.1).await.ok()?;
                let info: String = redis::cmd("INFO")
                    .arg("replication")
                    .query_async(&mut c)
                    .await
                    .ok()?;
                let has = |l: &str| info.lines().any(|x| x.trim() == l);
                Some(has("role:master") && has("master_failover_state:no-failover"))
            }
            Kind::MariaDb => {
                let o = mysql_async::OptsBuilder::default()
                    .ip_or_hostname(addr.0.clone())
                    .tcp_port(addr.1)
                    .user(Some("root"))
                    .pass(Some(mharness::ROOT_PW))
                    .prefer_socket(false);
                let mut c = mysql_async::Conn::new(o).await.ok()?;
                let ro: Option<i64> = c.query_first("SELECT @@read_only").await.ok()?;
                let _ = c.disconnect().await;
                Some(ro == Some(0))
            }
        }
    };
    tokio::time::timeout(Duration::from_millis(400), probe)
        .await
        .ok()
        .flatten()
        .unwrap_or(false)
}

/// Every 200 ms: how many members accept writes; counts samples with more than one.
fn sampler(
    kind: Kind,
    addrs: Vec<(String, u16)>,
    stop: Arc<AtomicBool>,
) -> tokio::task::JoinHandle<(u64, u64)> {
    tokio::spawn(async move {
        let (mut samples, mut dual) = (0u64, 0u64);
        while !stop.load(Ordering::SeqCst) {
            let w = futures::future::join_all(addrs.iter().map(|a| writable(kind, a))).await;
            samples += 1;
            if w.iter().filter(|x| **x).count() > 1 {
                dual += 1;
                eprintln!("[sampler] more than one writable member: {w:?}");
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        (samples, dual)
    })
}

/// Acknowledged ids missing on the member at `addr`.
async fn missing(kind: Kind, addr: &(String, u16), ids: &[(u64, u64)]) -> Vec<String> {
    match kind {
        Kind::Redis => {
            let mut c = rharness::connect(&addr.0, addr.1)
                .await
                .expect("connect to the final primary");
            let mut out = Vec::new();
            for chunk in ids.chunks(1000) {
                let keys: Vec<String> = chunk.iter().map(|(w, i)| format!("w:{w}:{i}")).collect();
                let vals: Vec<Option<String>> = redis::cmd("MGET")
                    .arg(&keys)
                    .query_async(&mut c)
                    .await
                    .expect("MGET on the final primary");
                out.extend(
                    keys.into_iter()
                        .zip(vals)
                        .filter(|(_, v)| v.is_none())
                        .map(|(k, _)| k),
                );
            }
            out
        }
        Kind::MariaDb => {
            let o = mysql_async::OptsBuilder::default()
                .ip_or_hostname(addr.0.clone())
                .tcp_port(addr.1)
                .user(Some("root"))
                .pass(Some(mharness::ROOT_PW))
                .prefer_socket(false);
            let mut c = mysql_async::Conn::new(o)
                .await
                .expect("connect to the final primary");
            let present: Vec<i64> = c
                .query("SELECT id FROM app.t")
                .await
                .expect("read ids on the final primary");
            let set: std::collections::HashSet<i64> = present.into_iter().collect();
            ids.iter()
                .map(|(w, i)| id_of(*w, *i))
                .filter(|id| !set.contains(id))
                .map(|id| id.to_string())
                .collect()
        }
    }
}

/// Longest gap between consecutive acknowledged batches from `since` on
/// (the gap spanning `since` included); until `end` when nothing followed.
fn unavailability(times: &[Instant], since: Instant, end: Instant) -> Duration {
    let mut t: Vec<Instant> = times.to_vec();
    t.sort();
    let mut prev = t
        .iter()
        .rev()
        .find(|x| **x <= since)
        .copied()
        .unwrap_or(since);
    let mut worst = Duration::ZERO;
    for x in t.iter().filter(|x| **x > since) {
        worst = worst.max(*x - prev);
        prev = *x;
    }
    worst.max(end.saturating_duration_since(prev).min(end - since))
}

/// Something the round does at a given time.
#[derive(Clone, Debug)]
enum Due {
    Start(i32),
    Cont(i32, u32),
}

/// One round with a fresh cluster.
async fn round(kind: Kind, durable: bool, seed: u64, rate: u64) -> RoundResult {
    let mut rng = StdRng::seed_from_u64(seed);
    let fault = match rng.random_range(0..10u32) {
        0..=5 => Fault::Kill,
        6..=7 => Fault::Hang,
        _ => Fault::KillPromoted,
    };
    let operator_killed = rng.random_bool(0.25);
    let crash_pass = rng.random_range(0..4u32);
    let crash_cut = rng
        .random_bool(0.5)
        .then(|| Duration::from_millis(rng.random_range(0..60u64)));
    let warmup = Duration::from_millis(rng.random_range(500..2000u64));
    let restart_after = Duration::from_millis(rng.random_range(500..10000u64));
    let isolated_back_after = Duration::from_millis(rng.random_range(200..3000u64));
    let hang_for = Duration::from_millis(rng.random_range(1000..12000u64));
    let promoted_kill_after = Duration::from_millis(rng.random_range(0..800u64));
    eprintln!(
        "[chaos] round seed {seed}: {} {} fault={} operator_killed={operator_killed} (pass {crash_pass}, {crash_cut:?}) warmup={warmup:?} restart_after={restart_after:?} isolated_back_after={isolated_back_after:?} hang_for={hang_for:?} promoted_kill_after={promoted_kill_after:?}",
        kind.name(),
        if durable { "durable" } else { "async" },
        fault.name()
    );

    let mut db = Db::boot(kind, durable, 95).await;
    let addrs: Vec<(String, u16)> = (0..MEMBERS).map(|o| db.addr(o)).collect();
    let first_primary = db.state().primary.expect("bootstrapped");
    let (target_tx, target_rx) = tokio::sync::watch::channel(Some(db.addr(first_primary)));
    let acks: SharedAcks = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let interval = Duration::from_micros(1_000_000 * WRITERS * BATCH / rate.max(1));
    let writers: Vec<_> = (0..WRITERS)
        .map(|w| {
            let (rx, a, s) = (target_rx.clone(), acks.clone(), stop.clone());
            match kind {
                Kind::Redis => tokio::spawn(redis_writer(w, durable, interval, rx, a, s)),
                Kind::MariaDb => tokio::spawn(maria_writer(w, interval, rx, a, s)),
            }
        })
        .collect();
    let sampler_stop = Arc::new(AtomicBool::new(false));
    let sampler = sampler(kind, addrs.clone(), sampler_stop.clone());
    let load_start = Instant::now();

    // Steady load before the fault.
    while load_start.elapsed() < warmup {
        let out = db.pass().await;
        target_tx.send_replace(labelled_primary(&out).map(|p| db.addr(p)));
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    let victim = db.state().primary.expect("a primary before the fault");
    let t0 = Instant::now();
    let mut due: Vec<(Instant, Due)> = Vec::new();
    match fault {
        Fault::Kill | Fault::KillPromoted => {
            db.kill(victim);
            due.push((t0 + restart_after, Due::Start(victim)));
        }
        Fault::Hang => {
            if let Some(pid) = db.pid(victim) {
                signal(pid, "STOP");
                due.push((t0 + hang_for, Due::Cont(victim, pid)));
            }
        }
    }
    let mut promoted_kill: Option<(Instant, i32)> = None;
    let mut promoted_killed = fault != Fault::KillPromoted;
    let mut victim_back = false;
    let mut crashed = !operator_killed;
    let mut operator_died = false;
    let mut active_passes = 0u32;
    let limit = Duration::from_secs(match kind {
        Kind::Redis => 90,
        Kind::MariaDb => 150,
    });
    let mut healthy_after = None;
    let mut stuck: Option<String> = None;
    let mut stuck_since: Option<(Instant, String)> = None;
    loop {
        let now = Instant::now();
        // Members coming back, hung members resuming.
        let mut i = 0;
        while i < due.len() {
            if due[i].0 <= now {
                match due.remove(i).1 {
                    Due::Start(o) => {
                        if !db.running(o) {
                            db.start(o);
                        }
                        if o == victim {
                            victim_back = true;
                        }
                    }
                    Due::Cont(o, pid) => {
                        if db.pid(o) == Some(pid) {
                            signal(pid, "CONT");
                        }
                    }
                }
            } else {
                i += 1;
            }
        }
        if let Some((at, o)) = promoted_kill
            && at <= now
        {
            if db.running(o) {
                db.kill(o);
                due.push((now + restart_after, Due::Start(o)));
            }
            promoted_kill = None;
        }
        let st = db.state();
        let active = st.operation.is_some() || st.primary_unhealthy_since.is_some();
        if !crashed && active {
            if active_passes == crash_pass {
                eprintln!("[chaos] the operator dies ({crash_cut:?} into the pass)");
                db.lost_pass(crash_cut).await;
                crashed = true;
                operator_died = true;
                continue;
            }
            active_passes += 1;
        }
        let seen = db.isolations();
        let out = db.pass().await;
        target_tx.send_replace(labelled_primary(&out).map(|p| db.addr(p)));
        // An isolated member's pod is recreated a moment later.
        for i in seen..db.isolations() {
            let o = db.isolated_member(i);
            // A hung member was killed: it will not resume. A member already
            // down comes back when it was going to.
            due.retain(|(_, d)| !matches!(d, Due::Cont(x, _) if *x == o));
            if !due
                .iter()
                .any(|(_, d)| matches!(d, Due::Start(x) if *x == o))
            {
                due.push((Instant::now() + isolated_back_after, Due::Start(o)));
            }
        }
        // The member promoted after the fault (the victim too, when it is
        // made writable again after its restart) is killed in its turn.
        if !promoted_killed
            && let Some(p) = labelled_primary(&out)
            && (p != victim || victim_back)
        {
            promoted_kill = Some((Instant::now() + promoted_kill_after, p));
            promoted_killed = true;
        }
        let everyone_back = due.is_empty()
            && promoted_kill.is_none()
            && promoted_killed
            && (0..MEMBERS).all(|o| db.running(o));
        if everyone_back && settled(&out) {
            healthy_after = Some(t0.elapsed());
            break;
        }
        // Every member back, a primary serving, no operation, and the same
        // unhealthy reason for 20 s: the engine waits for a person.
        let serving = out.state.operation.is_none()
            && labelled_primary(&out).is_some()
            && labelled_primary(&out) == out.state.primary;
        let reason = match &out.health {
            Health::Unhealthy { reason, message } | Health::Unknown { reason, message } => {
                format!("{reason}: {message}")
            }
            Health::Healthy => "Healthy".to_string(),
        };
        if everyone_back && serving {
            match &stuck_since {
                Some((since, r)) if *r == reason => {
                    if since.elapsed() > Duration::from_secs(20) {
                        eprintln!("[chaos] round seed {seed} stuck: {reason}");
                        stuck = Some(reason);
                        break;
                    }
                }
                _ => stuck_since = Some((Instant::now(), reason)),
            }
        } else {
            stuck_since = None;
        }
        if t0.elapsed() > limit {
            eprintln!("[chaos] round seed {seed} did not converge within {limit:?}: {out:#?}");
            break;
        }
        tokio::time::sleep(out.requeue_after.min(Duration::from_millis(300))).await;
    }
    // A little more load on the final primary, then the accounting. A
    // primary resumed from a hang refuses writes until a replica acknowledges
    // again (min-replicas-to-write) and the writers reconnect, so the load
    // runs until a write is acknowledged after the settle began (at least
    // 600 ms, at most 15 s).
    let settle = Instant::now();
    let acked_since = |from: Instant| acks.lock().unwrap().times.iter().any(|t| *t >= from);
    let mut last = db.pass().await;
    while settle.elapsed() < Duration::from_millis(600)
        || (!acked_since(settle) && settle.elapsed() < Duration::from_secs(15))
    {
        target_tx.send_replace(labelled_primary(&last).map(|p| db.addr(p)));
        tokio::time::sleep(Duration::from_millis(200)).await;
        last = db.pass().await;
    }
    let end = Instant::now();
    let ready = labelled_primary(&last).is_some() && acked_since(settle);
    stop.store(true, Ordering::SeqCst);
    for w in writers {
        let _ = w.await;
    }
    sampler_stop.store(true, Ordering::SeqCst);
    let (samples, dual) = sampler.await.unwrap_or((0, 0));
    // Resume anything still stopped so it can be torn down.
    for o in 0..MEMBERS {
        if let Some(pid) = db.pid(o) {
            signal(pid, "CONT");
        }
    }
    let (ids, times) = {
        let a = acks.lock().unwrap();
        (a.ids.clone(), a.times.clone())
    };
    let final_primary = last.state.primary;
    let lost = match final_primary {
        Some(p) if db.running(p) => missing(kind, &db.addr(p), &ids).await,
        _ => ids.iter().map(|(w, i)| format!("{w}:{i}")).collect(),
    };
    let load = end - load_start;
    let before = times.iter().filter(|t| **t <= t0).count() as u64 * BATCH;
    let r = RoundResult {
        kind,
        durable,
        seed,
        fault,
        operator_killed: operator_died,
        acked: ids.len(),
        steady_rate: before as f64 / (t0 - load_start).as_secs_f64(),
        rate: ids.len() as f64 / load.as_secs_f64(),
        unavailable: unavailability(&times, t0, end),
        missing: lost.len(),
        missing_sample: lost.iter().take(5).cloned().collect(),
        samples,
        dual,
        healthy_after,
        stuck,
        ready,
        final_primary,
        term: db.state().term,
    };
    eprintln!("[chaos] {}", r.line());
    drop(db);
    r
}

fn median(mut v: Vec<u128>) -> u128 {
    if v.is_empty() {
        return 0;
    }
    v.sort();
    v[v.len() / 2]
}

/// Summary line of a set of rounds of one engine and mode.
fn summary(rs: &[RoundResult]) -> String {
    let Some(first) = rs.first() else {
        return String::new();
    };
    let unavail: Vec<u128> = rs.iter().map(|r| r.unavailable.as_millis()).collect();
    let healthy: Vec<u128> = rs
        .iter()
        .filter_map(|r| r.healthy_after.map(|d| d.as_millis()))
        .collect();
    let lossy: Vec<String> = rs
        .iter()
        .filter(|r| r.missing > 0)
        .map(|r| {
            format!(
                "seed {} ({} missing, e.g. {:?})",
                r.seed, r.missing, r.missing_sample
            )
        })
        .collect();
    format!(
        "| {} | {} | {} | {} | {} | {:.0} | {:.0} | {} | {} | {} | {} | {} | {} | {} | {} |",
        first.kind.name(),
        if first.durable { "durable" } else { "async" },
        rs.len(),
        rs.iter().filter(|r| r.healthy_after.is_some()).count(),
        rs.iter().filter(|r| r.ready).count(),
        rs.iter().map(|r| r.steady_rate).fold(f64::MAX, f64::min),
        rs.iter().map(|r| r.steady_rate).sum::<f64>() / rs.len() as f64,
        median(unavail.clone()),
        unavail.iter().max().copied().unwrap_or(0),
        rs.iter().map(|r| r.missing).sum::<usize>(),
        rs.iter().map(|r| r.missing).max().unwrap_or(0),
        rs.iter().map(|r| r.dual).sum::<u64>(),
        median(healthy.clone()),
        healthy.iter().max().copied().unwrap_or(0),
        if lossy.is_empty() {
            "-".to_string()
        } else {
            lossy.join("; ")
        },
    )
}

const SUMMARY_HEADER: &str = "| engine | mode | rounds | healthy | primary serving at the end | min writes/s before the fault | mean writes/s before the fault | median unavailable ms | max unavailable ms | missing (total) | missing (max/round) | dual-writable samples | median healthy after ms | max healthy after ms | rounds with loss |\n|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|";

fn report(text: &str) {
    eprintln!("{text}");
    if let Ok(path) = std::env::var("ORDINAL_CHAOS_REPORT") {
        use std::io::Write;
        if let Ok(mut f) = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
        {
            let _ = writeln!(f, "{text}");
        }
    }
}

fn env_or<T: std::str::FromStr>(key: &str, default: T) -> T {
    std::env::var(key)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn base_seed() -> u64 {
    env_or(
        "ORDINAL_CHAOS_SEED",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0),
    )
}

/// Run `rounds` rounds of one engine and mode; report each and a summary.
async fn campaign(kind: Kind, durable: bool, rounds: u64, seed: u64) -> Vec<RoundResult> {
    let rate = env_or("ORDINAL_CHAOS_RATE", 4000u64);
    report(&format!(
        "\n{} {} mode: {rounds} rounds from seed {seed} (ORDINAL_CHAOS_SEED={seed}), target {rate} writes/s\n\n{HEADER}",
        kind.name(),
        if durable { "durable" } else { "async" }
    ));
    let mut out = Vec::new();
    for i in 0..rounds {
        let r = round(kind, durable, seed.wrapping_add(i), rate).await;
        report(&r.line());
        out.push(r);
    }
    report(&format!("\n{SUMMARY_HEADER}\n{}", summary(&out)));
    out
}

/// Durable mode keeps every acknowledged write; no mode has two writable
/// members; every round ends with a primary serving writes; every Redis
/// round and every durable MariaDB round becomes healthy with every member
/// back. An async MariaDB round may end with the returned old primary
/// quarantined: it holds transactions that may have been acknowledged
/// (async replication), so its data is kept for a person, and the round
/// must say so.
fn check(results: &[RoundResult]) {
    for r in results {
        assert!(
            r.ready,
            "round seed {} ({} {}): no primary serves writes at the end",
            r.seed,
            r.kind.name(),
            r.fault.name()
        );
        if r.durable || r.kind == Kind::Redis {
            assert!(
                r.healthy_after.is_some(),
                "round seed {} ({} {}) did not become healthy: {:?}",
                r.seed,
                r.kind.name(),
                r.fault.name(),
                r.stuck
            );
        } else if r.healthy_after.is_none() {
            assert!(
                r.stuck
                    .as_deref()
                    .is_some_and(|s| s.contains("quarantined")),
                "round seed {} ({} async, {}) is neither healthy nor waiting on a quarantined member: {:?}",
                r.seed,
                r.kind.name(),
                r.fault.name(),
                r.stuck
            );
        }
        assert_eq!(
            r.dual,
            0,
            "round seed {} ({}): two writable members",
            r.seed,
            r.kind.name()
        );
        if r.durable {
            assert_eq!(
                r.missing,
                0,
                "round seed {} ({} durable, {}): acknowledged writes lost: {:?}",
                r.seed,
                r.kind.name(),
                r.fault.name(),
                r.missing_sample
            );
        }
        assert!(
            r.acked > 0,
            "round seed {}: nothing was acknowledged",
            r.seed
        );
    }
}

/// The short version that runs with the suite: 2 rounds per engine in
/// its durable mode.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn chaos_short_durable() {
    rharness::require_redis_server();
    let seed = base_seed();
    let mut all = campaign(Kind::Redis, true, 2, seed).await;
    all.extend(campaign(Kind::MariaDb, true, 2, seed).await);
    check(&all);
}

/// The long run (`scripts/chaos.sh`).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "long run: scripts/chaos.sh"]
async fn chaos_runs() {
    let rounds = env_or("ORDINAL_CHAOS_ROUNDS", 10u64);
    let engine = std::env::var("ORDINAL_CHAOS_ENGINE").unwrap_or_else(|_| "all".into());
    let mode = std::env::var("ORDINAL_CHAOS_MODE").unwrap_or_else(|_| "all".into());
    let kinds: Vec<Kind> = match engine.as_str() {
        "redis" => vec![Kind::Redis],
        "mariadb" => vec![Kind::MariaDb],
        "all" => vec![Kind::Redis, Kind::MariaDb],
        other => panic!("ORDINAL_CHAOS_ENGINE must be redis, mariadb or all, not {other:?}"),
    };
    let modes: Vec<bool> = match mode.as_str() {
        "durable" => vec![true],
        "async" => vec![false],
        "all" => vec![true, false],
        other => panic!("ORDINAL_CHAOS_MODE must be durable, async or all, not {other:?}"),
    };
    let seed = base_seed();
    let mut all = Vec::new();
    for k in kinds {
        for d in &modes {
            all.extend(campaign(k, *d, rounds, seed).await);
        }
    }
    check(&all);
}

#[test]
fn unavailability_is_the_longest_gap_after_the_fault() {
    let t = Instant::now();
    let ms = |n| t + Duration::from_millis(n);
    let times = [ms(0), ms(10), ms(20), ms(900), ms(910)];
    assert_eq!(
        unavailability(&times, ms(15), ms(1000)),
        Duration::from_millis(880)
    );
    // Nothing acknowledged after the fault: until the end.
    assert_eq!(
        unavailability(&times[..3], ms(30), ms(1000)),
        Duration::from_millis(970)
    );
}
