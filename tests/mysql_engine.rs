//! The MySQL/MariaDB engine against real servers of both flavors: MariaDB
//! 10.11 (Debian's `mariadbd`) and MySQL 8.0.31 (Oracle's `mysqld`, installed
//! by `scripts/mysql8.sh`). Each scenario is one `async fn(Flavor)`;
//! `flavored!` runs it as `<name>::mariadb` and `<name>::mysql`. MySQL 8.4
//! syntax is covered only by unit tests of the generated SQL in
//! `src/mysql/flavor.rs`.

#[path = "support/proxy.rs"]
mod proxy;
#[path = "support/mysql.rs"]
mod support;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use mysql_async::prelude::Queryable;
use ordinal::api::MemberRole;
use ordinal::engine::Engine;
use support::*;

/// Each scenario once per flavor: `flavored!(name)` declares the tests
/// `name::mariadb` and `name::mysql`, calling `name(Flavor)`.
macro_rules! flavored {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[tokio::test]
            async fn mariadb() {
                super::$name(super::Flavor::MariaDB).await
            }
            #[tokio::test]
            async fn mysql() {
                super::$name(super::Flavor::MySQL).await
            }
        }
    )*};
}

flavored!(
    bootstrap_replicates_and_replicas_refuse_writes,
    failover_after_primary_sigkill_under_writes,
    errant_replica_is_quarantined_and_never_promoted,
    switchover_under_writes_loses_nothing,
    switchover_that_cannot_catch_up_aborts_and_keeps_primary_writable,
    operator_crash_mid_failover_converges_to_one_primary,
    backup_under_writes_restores_identically_and_refuses_corruption,
    new_replica_after_binlog_purge_is_reseeded,
    restarted_primary_boots_read_only_and_is_confirmed_again,
    failover_promotes_the_most_advanced_replica,
    rotated_passwords_are_applied_without_breaking_replication,
    operator_partitioned_from_a_live_primary_does_not_fail_over,
    returned_primary_lacking_what_replicas_hold_is_replaced_and_reseeded,
);

/// The scenarios share two cores: run them one at a time.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

const CONVERGE: Duration = Duration::from_secs(30);

/// A client inserting rows 1, 2, 3… into app.t wherever writes are accepted;
/// records the ids whose COMMIT was acknowledged.
struct Writer {
    /// While set, no new write starts (a quiet moment to kill a primary in).
    pause: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
    acked: Arc<Mutex<Vec<i64>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Writer {
    fn start(targets: Vec<(String, u16)>) -> Writer {
        let stop = Arc::new(AtomicBool::new(false));
        let pause = Arc::new(AtomicBool::new(false));
        let acked = Arc::new(Mutex::new(Vec::new()));
        let (s2, a2, p2) = (stop.clone(), acked.clone(), pause.clone());
        let task = tokio::spawn(async move {
            let mut next = 1i64;
            let mut conns: Vec<Option<mysql_async::Conn>> = targets.iter().map(|_| None).collect();
            let mut cur = 0usize;
            while !s2.load(Ordering::SeqCst) {
                if p2.load(Ordering::SeqCst) {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    continue;
                }
                let mut done = false;
                for k in 0..targets.len() {
                    let i = (cur + k) % targets.len();
                    if conns[i].is_none() {
                        let o = mysql_async::OptsBuilder::default()
                            .ip_or_hostname(targets[i].0.clone())
                            .tcp_port(targets[i].1)
                            .user(Some("app"))
                            .pass(Some(APP_PW))
                            .prefer_socket(false);
                        if let Ok(Ok(c)) = tokio::time::timeout(
                            Duration::from_millis(300),
                            mysql_async::Conn::new(o),
                        )
                        .await
                        {
                            conns[i] = Some(c);
                        } else {
                            continue;
                        }
                    }
                    let Some(c) = conns[i].as_mut() else { continue };
                    let r = tokio::time::timeout(
                        Duration::from_secs(3),
                        c.query_drop(format!("INSERT INTO app.t (id, v) VALUES ({next}, 'w')")),
                    )
                    .await;
                    match r {
                        Ok(Ok(())) => {
                            a2.lock().unwrap().push(next);
                            next += 1;
                            cur = i;
                            done = true;
                            break;
                        }
                        Ok(Err(mysql_async::Error::Server(e))) if e.code == 1062 => {
                            // An earlier ambiguous attempt committed: not acknowledged.
                            next += 1;
                            done = true;
                            break;
                        }
                        Ok(Err(mysql_async::Error::Server(e)))
                            if e.code == 1290 || e.code == 1836 =>
                        {
                            // read-only: try the next member
                        }
                        _ => {
                            conns[i] = None;
                        }
                    }
                }
                if !done {
                    tokio::time::sleep(Duration::from_millis(30)).await;
                } else {
                    tokio::time::sleep(Duration::from_millis(2)).await;
                }
            }
        });
        Writer {
            pause,
            stop,
            acked,
            task,
        }
    }

    fn acked(&self) -> Vec<i64> {
        self.acked.lock().unwrap().clone()
    }

    async fn wait_acked(&self, n: usize, timeout: Duration) {
        let deadline = std::time::Instant::now() + timeout;
        while self.acked.lock().unwrap().len() < n {
            assert!(
                std::time::Instant::now() < deadline,
                "writer acknowledged only {} rows",
                self.acked().len()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    async fn stop(self) -> Vec<i64> {
        self.stop.store(true, Ordering::SeqCst);
        let _ = self.task.await;
        self.acked.lock().unwrap().clone()
    }
}

fn targets(c: &Cluster) -> Vec<(String, u16)> {
    c.servers.iter().map(|s| (s.ip.clone(), s.port)).collect()
}

async fn missing_ids(s: &Server, ids: &[i64]) -> Vec<i64> {
    let mut conn = s.root().await;
    let present: Vec<i64> = conn
        .query("SELECT id FROM app.t")
        .await
        .expect("select ids");
    let set: std::collections::HashSet<i64> = present.into_iter().collect();
    ids.iter().copied().filter(|i| !set.contains(i)).collect()
}

async fn bootstrap(f: Flavor, n: i32) -> Cluster {
    let mut c = Cluster::of(f, n);
    bootstrap_cluster(&mut c).await;
    c
}

async fn bootstrap_cluster(c: &mut Cluster) {
    c.converge(CONVERGE, "bootstrap", |o| healthy_with(o, 0))
        .await;
    setup_app(c.server(0)).await;
    assert_eq!(c.state.term, 1);
}

async fn bootstrap_replicates_and_replicas_refuse_writes(f: Flavor) {
    let _g = SERIAL.lock().await;
    let mut c = bootstrap(f, 3).await;
    let out = c.pass().await;
    assert!(healthy_with(&out, 0), "{out:#?}");
    assert!(
        out.state
            .primary_identity
            .as_deref()
            .unwrap_or("")
            .contains("server_id=100")
    );
    let mut app = c.server(0).app().await.expect("app on primary");
    for i in 0..50 {
        app.query_drop(format!("INSERT INTO app.t (id, v) VALUES ({i}, 'x')"))
            .await
            .expect("insert on primary");
    }
    for r in 1..3 {
        wait_rows(c.server(r), "app.t", 50, Duration::from_secs(10)).await;
        let mut a = c.server(r).app().await.expect("app on replica");
        let err = a
            .query_drop("INSERT INTO app.t (id, v) VALUES (1000, 'no')")
            .await
            .expect_err("replica must refuse writes");
        assert!(
            format!("{err}").contains("read-only")
                || format!("{err}").contains("READ-ONLY")
                || format!("{err}").contains("1290"),
            "{err}"
        );
        assert_eq!(
            c.server(r).scalar("SELECT @@read_only").await.as_deref(),
            Some("1")
        );
        match f {
            Flavor::MariaDB => assert_eq!(
                c.server(r).slave_status("Using_Gtid").await.as_deref(),
                Some("Slave_Pos")
            ),
            Flavor::MySQL => {
                assert_eq!(
                    c.server(r).slave_status("Auto_Position").await.as_deref(),
                    Some("1")
                );
                // super_read_only: even an account with every privilege
                // (root, SUPER) cannot write on a fenced member.
                assert_eq!(
                    c.server(r)
                        .scalar("SELECT @@super_read_only")
                        .await
                        .as_deref(),
                    Some("1")
                );
                let mut root = c.server(r).root().await;
                let err = root
                    .query_drop("INSERT INTO app.t (id, v) VALUES (1001, 'no')")
                    .await
                    .expect_err("super_read_only refuses SUPER writes");
                assert!(format!("{err}").contains("super-read-only"), "{err}");
            }
        }
    }
    // The operator and replication users replicated with the primary's GTIDs:
    // no replica holds a transaction of its own.
    let primary_id = c.server(0).gtid_source_id().await;
    for r in 1..3 {
        if let Err(pos) = c.server(r).binlog_only_from(&primary_id).await {
            panic!("replica {r} has own GTIDs: {pos}");
        }
    }
    // The operator user is used from now on (no root fallback on the primary).
    let out = c.pass().await;
    assert!(healthy_with(&out, 0));
    assert!(out.members.iter().all(|m| m.gtid.is_some()));
}

async fn failover_after_primary_sigkill_under_writes(f: Flavor) {
    let _g = SERIAL.lock().await;
    let mut c = bootstrap(f, 3).await;
    let w = Writer::start(targets(&c));
    w.wait_acked(200, Duration::from_secs(20)).await;
    // Keep the engine observing while writes flow (the recorded position is
    // the yardstick of failover.maxLag = 0; give the replicas a moment to
    // receive it, as they would have between two real passes).
    c.pass().await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    c.server_mut(0).kill();
    let killed_at = std::time::Instant::now();
    let out = c
        .converge(Duration::from_secs(40), "failover", |o| {
            o.state.primary.is_some_and(|p| p != 0) && o.state.operation.is_none()
        })
        .await;
    let new_primary = out.state.primary.expect("primary");
    eprintln!(
        "promoted ordinal {new_primary} after {:?}",
        killed_at.elapsed()
    );
    assert_eq!(out.state.term, 2);
    let rec = out.state.last_failover.clone().expect("failover record");
    assert_eq!((rec.from, rec.to), (0, new_primary));
    // The other replica follows the new primary.
    let other = if new_primary == 1 { 2 } else { 1 };
    c.converge(CONVERGE, "repointed", |o| {
        o.members[other as usize].role == MemberRole::Replica
            && o.members[new_primary as usize].role == MemberRole::Primary
    })
    .await;
    // Writes resume on the new primary.
    let before = w.acked().len();
    w.wait_acked(before + 100, Duration::from_secs(20)).await;
    // Old primary restarts read-only (as rendered) and becomes a replica.
    c.server_mut(0).start();
    assert_eq!(
        c.server(0).scalar("SELECT @@read_only").await.as_deref(),
        Some("1")
    );
    let out = c
        .converge(CONVERGE, "old primary rejoins", |o| {
            o.members[0].role == MemberRole::Replica || o.members[0].role == MemberRole::Quarantined
        })
        .await;
    let acked = w.stop().await;
    let np = c.server(new_primary);
    let n = np.count("app.t").await;
    assert!(
        n as usize >= acked.len() - 50,
        "new primary has {n} rows, {} acknowledged",
        acked.len()
    );
    if out.members[0].role == MemberRole::Replica {
        // Asynchronous replication may lose the last acknowledged writes of
        // the killed primary; if the old primary holds none of them, it rejoins.
        wait_rows(c.server(0), "app.t", n, Duration::from_secs(15)).await;
        assert_eq!(
            c.server(0).scalar("SELECT @@read_only").await.as_deref(),
            Some("1")
        );
    } else {
        // It had committed transactions nobody received: quarantined, reported.
        assert!(c.events.iter().any(|e| e.contains("ErrantTransactions")));
    }
    wait_rows(c.server(other), "app.t", n, Duration::from_secs(15)).await;
    let out = c.pass().await;
    assert_eq!(
        out.members[other as usize].role,
        MemberRole::Replica,
        "{out:#?}"
    );
    // Exactly one writable member.
    let mut writable = 0;
    for s in &c.servers {
        if s.scalar("SELECT @@read_only").await.as_deref() == Some("0") {
            writable += 1;
        }
    }
    assert_eq!(writable, 1);
}

async fn writable_members(c: &Cluster) -> Vec<i32> {
    let mut v = Vec::new();
    for s in &c.servers {
        if let Ok(mut conn) = s.conn_as("root", ROOT_PW).await
            && let Ok(Some(ro)) = conn.query_first::<i64, _>("SELECT @@read_only").await
            && ro == 0
        {
            v.push(s.ordinal);
        }
    }
    v
}

async fn errant_replica_is_quarantined_and_never_promoted(f: Flavor) {
    let _g = SERIAL.lock().await;
    let mut c = bootstrap(f, 3).await;
    let mut app = c.server(0).app().await.expect("app");
    for i in 0..20 {
        app.query_drop(format!("INSERT INTO app.t (id, v) VALUES ({i}, 'x')"))
            .await
            .expect("insert");
    }
    wait_rows(c.server(2), "app.t", 20, Duration::from_secs(10)).await;
    // Someone writes directly on replica 2 (binlogged with its own server id).
    // (MySQL: only after someone lifted super_read_only.)
    let mut r2 = c.server(2).root().await;
    for s in c.server(2).dialect().lift_super_read_only() {
        r2.query_drop(s).await.expect("lift super_read_only");
    }
    r2.query_drop("SET SESSION sql_log_bin = 1; INSERT INTO app.t (id, v) VALUES (9999, 'errant')")
        .await
        .expect("errant write");
    for s in c.server(2).dialect().restore_super_read_only() {
        r2.query_drop(s).await.expect("restore super_read_only");
    }
    let errant_id = match f {
        Flavor::MariaDB => "0-102-".to_string(),
        Flavor::MySQL => c.server(2).gtid_source_id().await,
    };
    // The primary keeps taking writes.
    for i in 20..30 {
        app.query_drop(format!("INSERT INTO app.t (id, v) VALUES ({i}, 'x')"))
            .await
            .expect("insert");
    }
    let out = c
        .converge(CONVERGE, "quarantine", |o| {
            o.members[2].role == MemberRole::Quarantined
        })
        .await;
    let msg = out.members[2].message.clone().unwrap_or_default();
    assert!(msg.contains(&errant_id), "{msg}");
    assert!(matches!(
        out.health,
        ordinal::engine::Health::Unhealthy { .. }
    ));
    assert!(out.events.iter().any(
        |e| e.reason == "ErrantTransactions" && e.type_ == ordinal::engine::EventType::Warning
    ));
    assert_eq!(out.members[1].role, MemberRole::Replica);
    // Fail the primary: replica 1 is promoted, never the errant replica 2.
    wait_rows(c.server(1), "app.t", 30, Duration::from_secs(10)).await;
    c.server_mut(0).kill();
    let out = c
        .converge(Duration::from_secs(30), "failover", |o| {
            o.state.primary.is_some_and(|p| p != 0) && o.state.operation.is_none()
        })
        .await;
    assert_eq!(out.state.primary, Some(1));
    let out = c
        .converge(CONVERGE, "still quarantined", |o| {
            o.members[1].role == MemberRole::Primary
        })
        .await;
    assert_eq!(out.members[2].role, MemberRole::Quarantined, "{out:#?}");
    // Its data is kept, and it is not writable.
    assert_eq!(
        c.server(2)
            .scalar("SELECT COUNT(*) FROM app.t WHERE id = 9999")
            .await
            .as_deref(),
        Some("1")
    );
    assert_eq!(
        c.server(1)
            .scalar("SELECT COUNT(*) FROM app.t WHERE id = 9999")
            .await
            .as_deref(),
        Some("0")
    );
    assert_eq!(writable_members(&c).await, vec![1]);
}

async fn switchover_under_writes_loses_nothing(f: Flavor) {
    let _g = SERIAL.lock().await;
    let mut c = bootstrap(f, 3).await;
    let w = Writer::start(targets(&c));
    w.wait_acked(200, Duration::from_secs(20)).await;
    c.desired_primary = Some(2);
    let started = std::time::Instant::now();
    let out = c
        .converge(CONVERGE, "switchover", |o| {
            o.state.primary == Some(2) && o.state.operation.is_none()
        })
        .await;
    eprintln!("switchover took {:?}", started.elapsed());
    assert_eq!(out.state.term, 2);
    assert_eq!(
        out.state.last_failover.as_ref().map(|r| (r.from, r.to)),
        Some((0, 2))
    );
    c.converge(CONVERGE, "old primary replicates", |o| healthy_with(o, 2))
        .await;
    let before = w.acked().len();
    w.wait_acked(before + 100, Duration::from_secs(20)).await;
    let acked = w.stop().await;
    let missing = missing_ids(c.server(2), &acked).await;
    assert!(
        missing.is_empty(),
        "acknowledged rows lost in the switchover: {missing:?}"
    );
    let n = c.server(2).count("app.t").await;
    for r in [0, 1] {
        wait_rows(c.server(r), "app.t", n, Duration::from_secs(15)).await;
    }
    assert_eq!(writable_members(&c).await, vec![2]);
    if f == Flavor::MySQL {
        // The former primary is fenced with super_read_only: root is refused too.
        let mut root = c.server(0).root().await;
        let err = root
            .query_drop("INSERT INTO app.t (id, v) VALUES (-1, 'fenced')")
            .await
            .expect_err("fenced former primary refuses SUPER writes");
        assert!(format!("{err}").contains("super-read-only"), "{err}");
    }
    // The status is lost (resource re-created): the existing primary is
    // adopted from the data, never ordinal 0 by default.
    c.state = Default::default();
    c.desired_primary = None;
    c.engine = ordinal::mysql::MySqlEngine::new(Default::default());
    c.converge(CONVERGE, "adopted", |o| healthy_with(o, 2))
        .await;
    assert_eq!(writable_members(&c).await, vec![2]);
}

async fn switchover_that_cannot_catch_up_aborts_and_keeps_primary_writable(f: Flavor) {
    let _g = SERIAL.lock().await;
    let cfg = ordinal::mysql::MySqlEngineConfig {
        timeouts: ordinal::mysql::plan::OpTimeouts {
            switchover: Duration::from_secs(3),
            ..Default::default()
        },
        ..Default::default()
    };
    let mut c = Cluster::flavored(f, 2, cfg);
    bootstrap_cluster(&mut c).await;
    // Block the candidate's SQL thread with a global read lock.
    let mut lock = c.server(1).root().await;
    lock.query_drop("FLUSH TABLES WITH READ LOCK")
        .await
        .expect("ftwrl");
    let mut app = c.server(0).app().await.expect("app");
    for i in 0..10 {
        app.query_drop(format!("INSERT INTO app.t (id, v) VALUES ({i}, 'x')"))
            .await
            .expect("insert");
    }
    c.desired_primary = Some(1);
    let started = std::time::Instant::now();
    let out = c
        .converge(Duration::from_secs(20), "abort", |o| {
            o.events.iter().any(|e| e.reason == "SwitchoverAborted")
        })
        .await;
    let took = started.elapsed();
    assert!(took < Duration::from_secs(10), "abort took {took:?}");
    assert_eq!(out.state.primary, Some(0));
    assert_eq!(
        c.server(0).scalar("SELECT @@read_only").await.as_deref(),
        Some("0")
    );
    let mut app = c.server(0).app().await.expect("app reconnects");
    app.query_drop("INSERT INTO app.t (id, v) VALUES (100, 'after abort')")
        .await
        .expect("primary writable after the abort");
    // While cooling down no new attempt fences the primary.
    for _ in 0..3 {
        let o = c.pass().await;
        assert_eq!(o.state.primary, Some(0));
        assert!(o.members[0].role == MemberRole::Primary, "{o:#?}");
    }
    assert_eq!(writable_members(&c).await, vec![0]);
    lock.query_drop("UNLOCK TABLES").await.expect("unlock");
    wait_rows(c.server(1), "app.t", 11, Duration::from_secs(10)).await;
}

#[tokio::test]
async fn semi_sync_failover_keeps_every_acknowledged_row() {
    let _g = SERIAL.lock().await;
    let mut c = Cluster::new(3);
    // MariaDB only: the MySQL 8.0.31 build installed here ships no
    // semisync_source/semisync_replica plugins (see README).
    c.settings.replication.mode = ordinal::api::mysql::ReplicationMode::SemiSync;
    bootstrap_cluster(&mut c).await;
    semi_sync_active(&mut c, 0).await;
    assert_eq!(
        c.server(0)
            .scalar("SELECT @@rpl_semi_sync_master_wait_point")
            .await
            .as_deref(),
        Some("AFTER_SYNC")
    );
    let w = Writer::start(targets(&c));
    w.wait_acked(300, Duration::from_secs(30)).await;
    // Kill right after acknowledged commits.
    c.server_mut(0).kill();
    let acked = w.acked();
    let out = c
        .converge(Duration::from_secs(30), "failover", |o| {
            o.state.primary.is_some_and(|p| p != 0) && o.state.operation.is_none()
        })
        .await;
    let np = out.state.primary.expect("primary");
    let missing = missing_ids(c.server(np), &acked).await;
    assert!(
        missing.is_empty(),
        "semi-sync lost acknowledged rows: {missing:?}"
    );
    w.stop().await;
}

/// Semi-sync is on at `primary` and every other member acknowledges: the
/// engine reports healthy only then (`SemiSyncNoReplicas` before).
async fn semi_sync_active(c: &mut Cluster, primary: i32) {
    let n = c.servers.len();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let out = c.pass().await;
        let st = c.server(primary).scalar("SELECT VARIABLE_VALUE FROM information_schema.GLOBAL_STATUS WHERE VARIABLE_NAME = 'RPL_SEMI_SYNC_MASTER_STATUS'").await;
        let clients = c.server(primary).scalar("SELECT VARIABLE_VALUE FROM information_schema.GLOBAL_STATUS WHERE VARIABLE_NAME = 'RPL_SEMI_SYNC_MASTER_CLIENTS'").await;
        let all = clients.as_deref() == Some((n - 1).to_string().as_str());
        if st.as_deref() == Some("ON") && all && healthy_with(&out, primary) {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "semi-sync not active: status {st:?}, clients {clients:?}, health {:?}",
            out.health
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Semi-sync with appliers that lag: every replica's SQL thread is stopped,
/// so acknowledged rows sit only in relay logs when the primary is killed.
/// The candidate is chosen by what it received, applies it, and only then is
/// promoted (its relay log is never reset before).
#[tokio::test]
async fn semi_sync_lagging_appliers_keep_every_acknowledged_row() {
    let _g = SERIAL.lock().await;
    let mut c = Cluster::new(3);
    c.settings.replication.mode = ordinal::api::mysql::ReplicationMode::SemiSync;
    bootstrap_cluster(&mut c).await;
    semi_sync_active(&mut c, 0).await;
    // Health reports a semi-sync primary with nobody to acknowledge.
    for r in [1, 2] {
        c.server(r)
            .exec("SET GLOBAL rpl_semi_sync_slave_enabled = OFF; STOP SLAVE IO_THREAD; START SLAVE IO_THREAD")
            .await;
    }
    let clients = "SELECT VARIABLE_VALUE FROM information_schema.GLOBAL_STATUS WHERE VARIABLE_NAME = 'RPL_SEMI_SYNC_MASTER_CLIENTS'";
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while c.server(0).scalar(clients).await.as_deref() != Some("0") {
        assert!(
            std::time::Instant::now() < deadline,
            "semi-sync clients left"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The restarted IO threads reconnect (asynchronously now): until they
    // have, health names the member that is still connecting instead.
    for r in [1, 2] {
        while c
            .server(r)
            .slave_status("Slave_IO_Running")
            .await
            .as_deref()
            != Some("Yes")
        {
            assert!(
                std::time::Instant::now() < deadline,
                "db-{r}: IO thread not running again"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    let out = c.pass().await;
    assert!(
        matches!(&out.health, ordinal::engine::Health::Unhealthy { reason, .. } if reason == "SemiSyncNoReplicas"),
        "{:?}",
        out.health
    );
    semi_sync_active(&mut c, 0).await;
    let w = Writer::start(targets(&c));
    w.wait_acked(50, Duration::from_secs(30)).await;
    // The appliers stop; the IO threads keep receiving and acknowledging.
    for r in [1, 2] {
        c.server(r).exec("STOP SLAVE SQL_THREAD").await;
    }
    let before = w.acked().len();
    w.wait_acked(before + 300, Duration::from_secs(30)).await;
    c.server_mut(0).kill();
    let acked = w.acked();
    let applied = [
        c.server(1).count("app.t").await,
        c.server(2).count("app.t").await,
    ];
    assert!(
        applied.iter().all(|n| (*n as usize) + 200 < acked.len()),
        "the appliers did not lag: {applied:?} of {} acknowledged",
        acked.len()
    );
    let out = c
        .converge(Duration::from_secs(45), "failover", |o| {
            o.state.primary.is_some_and(|p| p != 0) && o.state.operation.is_none()
        })
        .await;
    let np = out.state.primary.expect("primary");
    let missing = missing_ids(c.server(np), &acked).await;
    eprintln!(
        "lagging appliers: {} rows acknowledged, applied on the replicas at the kill {applied:?}, missing on the new primary db-{np}: {}",
        acked.len(),
        missing.len()
    );
    assert!(
        missing.is_empty(),
        "semi-sync lost acknowledged rows: {missing:?}"
    );
    assert!(c.events.iter().any(|e| e.contains("CandidateChosen")));
    w.stop().await;
}

/// Lossless semi-sync, and the primary crashes while a commit waits for a
/// replica's acknowledgement nobody will send (every IO thread stopped): the
/// transaction is in its binlog, so it returns holding a transaction no
/// other member has. No client was told it committed, which the engine can
/// prove (semi-sync without fallback, it is the replaced primary, every
/// other member answers and lacks it): the member is re-seeded from the new
/// primary instead of quarantined, and the cluster is healthy again with
/// every acknowledged row and without the unacknowledged one.
#[tokio::test]
async fn semi_sync_returned_primary_with_an_unacknowledged_commit_is_reseeded() {
    let _g = SERIAL.lock().await;
    let mut c = Cluster::new(3);
    c.settings.replication.mode = ordinal::api::mysql::ReplicationMode::SemiSync;
    bootstrap_cluster(&mut c).await;
    semi_sync_active(&mut c, 0).await;
    let mut app = c.server(0).app().await.expect("app");
    for i in 1..=50 {
        app.query_drop(format!("INSERT INTO app.t (id, v) VALUES ({i}, 'acked')"))
            .await
            .expect("acknowledged insert");
    }
    drop(app);
    // No pass runs from here to the kill, so nothing restarts the threads.
    for r in [1, 2] {
        c.server(r).exec("STOP SLAVE IO_THREAD").await;
    }
    let before = c.server(0).scalar("SELECT @@gtid_binlog_pos").await;
    let mut app = c.server(0).app().await.expect("app");
    let pending = tokio::spawn(async move {
        app.query_drop("INSERT INTO app.t (id, v) VALUES (9000, 'never acknowledged')")
            .await
    });
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while c.server(0).scalar("SELECT @@gtid_binlog_pos").await == before {
        assert!(
            std::time::Instant::now() < deadline,
            "the commit never reached the binlog"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        !pending.is_finished(),
        "the commit returned without an acknowledgement"
    );
    c.server_mut(0).kill();
    let answer = pending.await.expect("client task");
    assert!(answer.is_err(), "the client was told the commit succeeded");
    for r in [1, 2] {
        assert!(missing_ids(c.server(r), &[9000]).await.len() == 1);
    }
    let out = c
        .converge(CONVERGE, "failover", |o| {
            o.state.primary.is_some_and(|p| p != 0) && o.state.operation.is_none()
        })
        .await;
    let np = out.state.primary.expect("primary");
    // The old primary returns; crash recovery kept the commit.
    c.server_mut(0).start();
    assert!(
        missing_ids(c.server(0), &[9000]).await.is_empty(),
        "the staged commit is not on the returned primary"
    );
    c.converge(
        Duration::from_secs(90),
        "new primary, all replicating",
        |o| healthy_with(o, np),
    )
    .await;
    assert!(
        !c.events.iter().any(|e| e.contains("ErrantTransactions")),
        "{:#?}",
        c.events
    );
    assert!(
        c.events
            .iter()
            .any(|e| e.contains("Reseeding") && e.contains("no client was told")),
        "{:#?}",
        c.events
    );
    let acked: Vec<i64> = (1..=50).collect();
    for s in 0..3 {
        wait_rows(c.server(s), "app.t", 50, Duration::from_secs(15)).await;
        assert!(missing_ids(c.server(s), &acked).await.is_empty());
        assert_eq!(
            missing_ids(c.server(s), &[9000]).await,
            vec![9000],
            "db-{s} holds the unacknowledged row"
        );
    }
    assert_eq!(writable_members(&c).await, vec![np]);
}

/// A primary that comes back without its last commits (a crash without a
/// durable flush; emulated by giving a replica a transaction of the
/// primary's origin the primary lacks) is not made writable: the replica
/// holding more is promoted (not quarantined as errant), and the old primary
/// is seeded again (replication would skip its own transactions).
async fn returned_primary_lacking_what_replicas_hold_is_replaced_and_reseeded(f: Flavor) {
    let _g = SERIAL.lock().await;
    let mut c = bootstrap(f, 3).await;
    let mut app = c.server(0).app().await.expect("app");
    for i in 0..50 {
        app.query_drop(format!("INSERT INTO app.t (id, v) VALUES ({i}, 'x')"))
            .await
            .expect("insert");
    }
    drop(app);
    for r in [1, 2] {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while try_count(c.server(r)).await != Some(50) {
            assert!(std::time::Instant::now() < deadline, "db-{r} lags");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    c.pass().await;
    let origin = c.server(0).gtid_source_id().await;
    c.server_mut(0).kill();
    // db-1 holds a commit db-0 originated and lost.
    let mut r1 = c.server(1).root().await;
    match f {
        Flavor::MariaDB => {
            r1.query_drop(format!(
                "SET SESSION server_id = {origin}; INSERT INTO app.t (id, v) VALUES (5000, 'lost tail')"
            ))
            .await
            .expect("transaction of the primary's origin");
        }
        Flavor::MySQL => {
            let executed = c.server(1).executed().await;
            let next = executed
                .split(',')
                .map(str::trim)
                .find(|s| {
                    s.to_ascii_lowercase()
                        .starts_with(&origin.to_ascii_lowercase())
                })
                .and_then(|s| s.rsplit(['-', ':']).next())
                .and_then(|n| n.parse::<u64>().ok())
                .expect("primary's interval")
                + 1;
            r1.query_drop(format!(
                "SET GLOBAL super_read_only = OFF; SET gtid_next = '{origin}:{next}'; \
                 INSERT INTO app.t (id, v) VALUES (5000, 'lost tail'); SET gtid_next = 'AUTOMATIC'; \
                 SET GLOBAL super_read_only = ON"
            ))
            .await
            .expect("transaction of the primary's origin");
        }
    }
    drop(r1);
    c.server_mut(0).start();
    let out = c
        .converge(
            Duration::from_secs(90),
            "db-1 primary, all replicating",
            |o| healthy_with(o, 1),
        )
        .await;
    assert_eq!(out.state.term, 2);
    assert!(
        !c.events.iter().any(|e| e.contains("ErrantTransactions")),
        "{:#?}",
        c.events
    );
    assert!(c.events.iter().any(|e| e.contains("Reseeding")));
    for s in 0..3 {
        wait_rows(c.server(s), "app.t", 51, Duration::from_secs(15)).await;
        assert!(missing_ids(c.server(s), &[5000]).await.is_empty());
    }
    assert_eq!(writable_members(&c).await, vec![1]);
}

/// The re-seed decision is persisted before anything is dropped; an operator
/// that stops mid-seed (its task aborted) is replaced by a new engine instance
/// that seeds the member again from the persisted state.
#[tokio::test]
async fn reseed_interrupted_by_an_operator_restart_resumes() {
    let _g = SERIAL.lock().await;
    let mut c = bootstrap(Flavor::MariaDB, 2).await;
    let mut app = c.server(0).app().await.expect("app");
    for i in 0..200 {
        app.query_drop(format!("INSERT INTO app.t (id, v) VALUES ({i}, 'x')"))
            .await
            .expect("insert");
    }
    wait_rows(c.server(1), "app.t", 200, Duration::from_secs(10)).await;
    // db-1 stops replicating; the primary writes on and purges its binlogs.
    c.server(1).exec("STOP SLAVE").await;
    for i in 200..300 {
        app.query_drop(format!("INSERT INTO app.t (id, v) VALUES ({i}, 'x')"))
            .await
            .expect("insert");
    }
    let mut root = c.server(0).root().await;
    root.query_drop("FLUSH BINARY LOGS").await.expect("flush");
    let current: String = root
        .query_first::<mysql_async::Row, _>("SHOW MASTER STATUS")
        .await
        .expect("master status")
        .map(|r| mysql_async::from_value(r.get(0).expect("file")))
        .expect("binlog file");
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let _ = root
            .query_drop(format!("PURGE BINARY LOGS TO '{current}'"))
            .await;
        let logs: Vec<mysql_async::Row> =
            root.query("SHOW BINARY LOGS").await.expect("binary logs");
        if logs.len() == 1 {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "binlogs not purged");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // The dump of the primary blocks on this lock: the seed stays mid-way.
    let mut lock = c.server(0).root().await;
    lock.query_drop("LOCK TABLES app.t WRITE")
        .await
        .expect("lock");
    // Pass by pass: the decision is recorded while db-1 still has its rows.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let out = c.pass().await;
        if out.state.reseeds.iter().any(|r| r.ordinal == 1) {
            assert_eq!(
                c.server(1).count("app.t").await,
                200,
                "dropped before recorded"
            );
            break;
        }
        assert!(std::time::Instant::now() < deadline, "no re-seed recorded");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Next passes start the seed, which drops db-1's schemas and then waits.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        c.pass().await;
        let app_schema = c
            .server(1)
            .scalar("SELECT COUNT(*) FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = 'app'")
            .await;
        if app_schema.as_deref() == Some("0") {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "seed never dropped the schema"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(c.state.reseeds.iter().any(|r| r.ordinal == 1));
    // The operator stops: its seed task ends with it; a new one takes over.
    c.engine = ordinal::mysql::MySqlEngine::new(Default::default());
    tokio::time::sleep(Duration::from_millis(300)).await;
    lock.query_drop("UNLOCK TABLES").await.expect("unlock");
    let out = c
        .converge(
            Duration::from_secs(60),
            "re-seeded after the restart",
            |o| healthy_with(o, 0),
        )
        .await;
    assert!(out.state.reseeds.is_empty());
    assert!(c.events.iter().any(|e| e.contains("Reseeded")));
    wait_rows(c.server(1), "app.t", 300, Duration::from_secs(15)).await;
    app.query_drop("INSERT INTO app.t (id, v) VALUES (1000, 'after')")
        .await
        .expect("insert");
    wait_rows(c.server(1), "app.t", 301, Duration::from_secs(15)).await;
}

async fn operator_crash_mid_failover_converges_to_one_primary(f: Flavor) {
    let _g = SERIAL.lock().await;
    let mut c = bootstrap(f, 3).await;
    let mut app = c.server(0).app().await.expect("app");
    for i in 0..50 {
        app.query_drop(format!("INSERT INTO app.t (id, v) VALUES ({i}, 'x')"))
            .await
            .expect("insert");
    }
    wait_rows(c.server(1), "app.t", 50, Duration::from_secs(10)).await;
    wait_rows(c.server(2), "app.t", 50, Duration::from_secs(10)).await;
    c.pass().await;
    c.server_mut(0).kill();
    // Run until the failover reached its Promote step, then "crash".
    c.converge(Duration::from_secs(20), "promote step persisted", |o| {
        o.state
            .operation
            .as_ref()
            .is_some_and(|op| op.step == "Promote")
    })
    .await;
    let persisted = c.state.clone();
    // The crashed operator performed the promotion but never persisted it.
    c.pass().await;
    c.state = persisted.clone();
    // A new operator instance resumes from the persisted step.
    c.engine = ordinal::mysql::MySqlEngine::new(Default::default());
    let out = c
        .converge(CONVERGE, "one primary", |o| {
            o.state.operation.is_none() && o.state.primary.is_some_and(|p| p != 0)
        })
        .await;
    let p = out.state.primary.expect("primary");
    assert_eq!(Some(p), persisted.operation.as_ref().and_then(|op| op.to));
    assert_eq!(out.state.term, 2);
    c.converge(CONVERGE, "replica follows", |o| {
        o.members
            .iter()
            .filter(|m| m.role == MemberRole::Primary)
            .count()
            == 1
            && o.members
                .iter()
                .filter(|m| m.role == MemberRole::Replica)
                .count()
                == 1
    })
    .await;
    assert_eq!(writable_members(&c).await, vec![p]);
}

fn root_endpoint(s: &Server) -> ordinal::mysql::backup::Endpoint {
    ordinal::mysql::backup::Endpoint {
        host: s.ip.clone(),
        port: s.port,
        login: ordinal::mysql::observe::Login {
            user: "root".into(),
            password: ROOT_PW.into(),
        },
        flavor: s.flavor,
    }
}

/// Rows per big table; the default keeps the whole file within minutes on
/// two cores in a debug build (~25 MB of data per 100 000 rows).
fn backup_rows() -> u64 {
    std::env::var("ORDINAL_MYSQL_BACKUP_ROWS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(250_000)
}

/// A schema exercising the dump: integer-keyed tables split into ranges, a
/// composite key, no key, binary data, NULLs, a view, a trigger, a routine.
pub async fn create_dataset(primary: &Server, rows: u64) {
    let mut c = primary.root().await;
    c.query_drop(
        "CREATE DATABASE shop; \
         CREATE TABLE shop.orders (id BIGINT PRIMARY KEY, customer INT NOT NULL, note VARCHAR(200), payload BLOB, \
           created DATETIME(3), price DECIMAL(12,2), ratio DOUBLE, flag BIT(1), KEY by_customer (customer)) ENGINE=InnoDB; \
         CREATE TABLE shop.items (id INT UNSIGNED PRIMARY KEY, name VARCHAR(100) CHARACTER SET utf8mb4, body TEXT, \
           KEY by_name (name), KEY by_body (body(20), id), UNIQUE KEY body_name (name, body(30))) ENGINE=InnoDB; \
         CREATE TABLE shop.lines (id INT PRIMARY KEY, order_id BIGINT NOT NULL, qty INT, KEY by_qty (qty), \
           CONSTRAINT fk_order FOREIGN KEY (order_id) REFERENCES shop.orders (id)) ENGINE=InnoDB; \
         CREATE TABLE shop.pairs (a INT, b VARCHAR(20), v INT, PRIMARY KEY (a, b)) ENGINE=InnoDB; \
         CREATE TABLE shop.logs (line VARCHAR(100), at DATE) ENGINE=InnoDB; \
         CREATE TABLE shop.audit (id BIGINT AUTO_INCREMENT PRIMARY KEY, what VARCHAR(50), KEY by_what (what)) ENGINE=InnoDB; \
         CREATE TABLE shop.legacy (id INT PRIMARY KEY, name VARCHAR(50) CHARACTER SET latin1, raw VARBINARY(16)) ENGINE=InnoDB; \
         INSERT INTO shop.legacy VALUES (1, 'café crème', 0x00090a0d5c27), (2, NULL, ''), (3, 'tab\there', NULL); \
         CREATE VIEW shop.big_orders AS SELECT id, price FROM shop.orders WHERE price > 500; \
         CREATE TRIGGER shop.pairs_ins AFTER INSERT ON shop.pairs FOR EACH ROW INSERT INTO shop.audit (what) VALUES (CONCAT('pair ', NEW.a)); \
         CREATE PROCEDURE shop.touch(IN x INT) SELECT x + 1",
    )
    .await
    .expect("schema");
    c.query_drop("USE shop").await.expect("use");
    let f = primary.flavor;
    c.query_drop(numbered(
        f,
        "shop.orders",
        "seq, seq % 1000, CONCAT('note ''quoted'' \\\\ ', seq, REPEAT('x', seq % 120)), \
           IF(seq % 7 = 0, NULL, UNHEX(SHA2(seq, 256))), '2024-01-01 00:00:00.000' + INTERVAL seq SECOND, \
           (seq % 100000) / 100, seq / 3, seq % 2",
        rows,
    ))
    .await
    .expect("orders");
    c.query_drop(numbered(
        f,
        "shop.items",
        "seq, CONCAT('item é ', seq), REPEAT(MD5(seq), 3)",
        rows,
    ))
    .await
    .expect("items");
    c.query_drop(numbered(f, "shop.lines", "seq, seq, seq % 10", 2000))
        .await
        .expect("lines");
    c.query_drop(numbered(
        f,
        "shop.pairs",
        "seq % 100, CONCAT('k', seq), seq",
        3000,
    ))
    .await
    .expect("pairs");
    c.query_drop(numbered(
        f,
        "shop.logs",
        "CONCAT('line\\n', seq), '2020-01-01' + INTERVAL (seq % 999) DAY",
        5000,
    ))
    .await
    .expect("logs");
}

/// `INSERT INTO table SELECT columns` over `seq` = 1..=n: MariaDB's sequence
/// engine, a recursive common table expression on MySQL.
fn numbered(f: Flavor, table: &str, columns: &str, n: u64) -> String {
    match f {
        Flavor::MariaDB => format!("INSERT INTO {table} SELECT {columns} FROM seq_1_to_{n}"),
        Flavor::MySQL => format!(
            "SET SESSION cte_max_recursion_depth = {n}; INSERT INTO {table} \
             WITH RECURSIVE s (seq) AS (SELECT 1 UNION ALL SELECT seq + 1 FROM s WHERE seq < {n}) \
             SELECT {columns} FROM s"
        ),
    }
}

async fn checksums(s: &Server, tables: &[&str]) -> Vec<(String, String, i64)> {
    let mut out = Vec::new();
    for t in tables {
        let cs = s.scalar(&format!("SELECT 1 FROM {t} LIMIT 0")).await;
        let _ = cs;
        let mut c = s.root().await;
        let row: Option<(String, Option<i64>)> = c
            .query_first(format!("CHECKSUM TABLE {t}"))
            .await
            .expect("checksum");
        let sum = row
            .and_then(|r| r.1)
            .map(|v| v.to_string())
            .unwrap_or_default();
        out.push((t.to_string(), sum, s.count(t).await));
    }
    out
}

/// The keys of the `shop` and `app` schemas: table, key, position, column,
/// prefix length, uniqueness, and the foreign keys.
async fn index_list(s: &Server) -> Vec<String> {
    let mut c = s.root().await;
    let mut keys: Vec<String> = c
        .query(
            "SELECT CONCAT_WS(' ', TABLE_SCHEMA, TABLE_NAME, INDEX_NAME, SEQ_IN_INDEX, COLUMN_NAME, \
             IFNULL(SUB_PART, '-'), NON_UNIQUE) FROM information_schema.STATISTICS \
             WHERE TABLE_SCHEMA IN ('shop', 'app')",
        )
        .await
        .expect("keys");
    let fks: Vec<String> = c
        .query(
            "SELECT CONCAT_WS(' ', CONSTRAINT_SCHEMA, TABLE_NAME, CONSTRAINT_NAME, REFERENCED_TABLE_NAME) \
             FROM information_schema.REFERENTIAL_CONSTRAINTS WHERE CONSTRAINT_SCHEMA IN ('shop', 'app')",
        )
        .await
        .expect("foreign keys");
    keys.extend(fks);
    keys.sort();
    keys
}

async fn backup_under_writes_restores_identically_and_refuses_corruption(f: Flavor) {
    let _g = SERIAL.lock().await;
    let mut c = bootstrap(f, 2).await;
    let rows = backup_rows();
    create_dataset(c.server(0), rows).await;
    c.converge(CONVERGE, "replica caught up", |o| healthy_with(o, 0))
        .await;
    wait_rows(
        c.server(1),
        "shop.items",
        rows as i64,
        Duration::from_secs(120),
    )
    .await;
    // The replica stops replicating; it is replayed exactly to the backup's
    // GTID afterwards, as the reference for the restored copy.
    let mut r1 = c.server(1).root().await;
    r1.query_drop(c.server(1).dialect().stop_replica())
        .await
        .expect("stop replica");
    let w = Writer::start(targets(&c));
    w.wait_acked(50, Duration::from_secs(20)).await;

    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("backup.ordinal.zst");
    let file = tokio::fs::File::create(&path)
        .await
        .expect("create artifact");
    let started = std::time::Instant::now();
    let summary =
        ordinal::mysql::backup::backup(&root_endpoint(c.server(0)), file, &Default::default())
            .await
            .expect("backup");
    let took = started.elapsed();
    let acked_during = w.stop().await.len();
    let on_disk = std::fs::metadata(&path).expect("artifact").len();
    eprintln!(
        "backup: {} rows, {} tables, raw {} MB, stored {} MB in {:?} ({:.1} MB/s raw), gtid {}, {} rows written meanwhile",
        summary.rows,
        summary.tables,
        summary.raw_size >> 20,
        summary.size >> 20,
        took,
        summary.raw_size as f64 / 1048576.0 / took.as_secs_f64(),
        summary.gtid,
        acked_during
    );
    assert_eq!(on_disk, summary.size);
    assert_eq!(summary.sha256.len(), 64);
    assert!(summary.rows >= 2 * rows + 8000);
    assert!(!summary.gtid.is_empty());

    // Reference: the stopped replica replayed up to exactly the backup GTID.
    let until = match f {
        Flavor::MariaDB => format!("START SLAVE UNTIL master_gtid_pos = '{}'", summary.gtid),
        Flavor::MySQL => format!("START REPLICA UNTIL SQL_AFTER_GTIDS = '{}'", summary.gtid),
    };
    r1.query_drop(until).await.expect("start replica until");
    let gtid: String = summary.gtid.split_whitespace().collect();
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let pos = match f {
            Flavor::MariaDB => c
                .server(1)
                .scalar("SELECT @@gtid_slave_pos")
                .await
                .unwrap_or_default(),
            Flavor::MySQL => c.server(1).executed().await,
        };
        let sql = c
            .server(1)
            .slave_status("Slave_SQL_Running")
            .await
            .unwrap_or_default();
        if pos == gtid && sql == "No" {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "replica did not reach {} (at {pos})",
            summary.gtid
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // Restore into a fresh server, verifying the stored artifact first.
    let fresh = Server::of(f, 7);
    let p2 = path.clone();
    let started = std::time::Instant::now();
    let restored = ordinal::mysql::backup::restore_verified(
        || tokio::fs::File::open(p2.clone()),
        &summary.sha256,
        &root_endpoint(&fresh),
        &Default::default(),
    )
    .await
    .expect("restore");
    eprintln!("restore: {} rows in {:?}", restored.rows, started.elapsed());
    assert_eq!(restored.gtid, summary.gtid);
    assert_eq!(restored.rows, summary.rows);
    let tables = [
        "shop.orders",
        "shop.items",
        "shop.lines",
        "shop.pairs",
        "shop.logs",
        "shop.audit",
        "app.t",
    ];
    let want = checksums(c.server(1), &tables).await;
    let got = checksums(&fresh, &tables).await;
    assert_eq!(
        got, want,
        "restored data differs from the source at the backup GTID"
    );
    assert!(want.iter().all(|(_, sum, _)| !sum.is_empty()));
    // Every key came back (the restore builds plain secondary keys after
    // the rows; keys a foreign key involves are created with the table).
    let keys = index_list(c.server(1)).await;
    assert!(keys.len() >= 12, "{keys:?}");
    assert_eq!(index_list(&fresh).await, keys, "restored keys differ");
    let restored_pos = match f {
        Flavor::MariaDB => fresh
            .scalar("SELECT @@gtid_slave_pos")
            .await
            .unwrap_or_default(),
        Flavor::MySQL => fresh.executed().await,
    };
    assert_eq!(restored_pos, gtid);
    if f == Flavor::MySQL {
        // The restore lifted super_read_only only while loading.
        assert_eq!(
            fresh.scalar("SELECT @@super_read_only").await.as_deref(),
            Some("1")
        );
    }
    // Application accounts came along (root and operator accounts did not).
    let mut app = fresh.app().await.expect("app account restored");
    let n: Option<i64> = app
        .query_first("SELECT COUNT(*) FROM app.t")
        .await
        .expect("app can read");
    assert!(n.is_some());
    assert_eq!(
        fresh
            .scalar("SELECT COUNT(*) FROM mysql.user WHERE User IN ('ordinal', 'repl')")
            .await
            .as_deref(),
        Some("0")
    );
    // Schema objects came along: view, trigger (after the data), routine.
    assert_eq!(
        fresh.scalar("SELECT COUNT(*) FROM shop.big_orders").await,
        c.server(1)
            .scalar("SELECT COUNT(*) FROM shop.big_orders")
            .await
    );
    assert_eq!(
        fresh
            .scalar(
                "SELECT COUNT(*) FROM information_schema.TRIGGERS WHERE TRIGGER_SCHEMA = 'shop'"
            )
            .await
            .as_deref(),
        Some("1")
    );
    assert_eq!(
        fresh
            .scalar(
                "SELECT COUNT(*) FROM information_schema.ROUTINES WHERE ROUTINE_SCHEMA = 'shop'"
            )
            .await
            .as_deref(),
        Some("1")
    );

    // The INSERT data format (replayable by any client) restores identically too.
    let ins_path = dir.path().join("insert.zst");
    let opts = ordinal::mysql::backup::BackupOptions {
        data_format: ordinal::mysql::backup::DataFormat::Insert,
        ..Default::default()
    };
    let ins = ordinal::mysql::backup::backup(
        &root_endpoint(c.server(1)),
        tokio::fs::File::create(&ins_path).await.expect("create"),
        &opts,
    )
    .await
    .expect("insert-format backup of the stopped replica");
    let fresh2 = Server::of(f, 9);
    let p3 = ins_path.clone();
    ordinal::mysql::backup::restore_verified(
        || tokio::fs::File::open(p3.clone()),
        &ins.sha256,
        &root_endpoint(&fresh2),
        &Default::default(),
    )
    .await
    .expect("restore insert format");
    assert_eq!(
        checksums(&fresh2, &tables).await,
        want,
        "INSERT-format restore differs"
    );
    assert_eq!(index_list(&fresh2).await, keys, "restored keys differ");
    // latin1 bytes survive both formats ('café crème' in latin1).
    for srv in [c.server(1), &fresh, &fresh2] {
        assert_eq!(
            srv.scalar("SELECT HEX(name) FROM shop.legacy WHERE id = 1")
                .await
                .as_deref(),
            Some("636166E9206372E86D65")
        );
    }
    drop(fresh2);

    // A corrupted artifact is refused before anything is applied.
    let mut bytes = std::fs::read(&path).expect("read artifact");
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x5a;
    let bad = dir.path().join("corrupt.zst");
    std::fs::write(&bad, &bytes).expect("write corrupt copy");
    let empty = Server::of(f, 8);
    let err = ordinal::mysql::backup::restore_verified(
        || tokio::fs::File::open(bad.clone()),
        &summary.sha256,
        &root_endpoint(&empty),
        &Default::default(),
    )
    .await
    .expect_err("corrupted artifact must be refused");
    eprintln!("corrupted artifact refused: {err}");
    assert!(
        matches!(err, ordinal::mysql::MySqlError::Corrupt(_)),
        "{err}"
    );
    assert_eq!(empty.scalar("SELECT COUNT(*) FROM information_schema.SCHEMATA WHERE SCHEMA_NAME IN ('shop', 'app')").await.as_deref(), Some("0"));
    // Without the stored digest, the content digest still catches it.
    let err =
        ordinal::mysql::backup::verify(tokio::fs::File::open(&bad).await.expect("open"), None)
            .await;
    assert!(err.is_err());
}

async fn new_replica_after_binlog_purge_is_reseeded(f: Flavor) {
    let _g = SERIAL.lock().await;
    let mut c = bootstrap(f, 2).await;
    let mut app = c.server(0).app().await.expect("app");
    for i in 0..200 {
        app.query_drop(format!(
            "INSERT INTO app.t (id, v) VALUES ({i}, 'before purge')"
        ))
        .await
        .expect("insert");
    }
    let mut root = c.server(0).root().await;
    root.query_drop("FLUSH BINARY LOGS").await.expect("flush");
    let current: Option<(String, i64)> = root
        .query_first("SHOW MASTER STATUS")
        .await
        .expect("master status")
        .map(|r: mysql_async::Row| {
            (
                mysql_async::from_value::<String>(r.get(0).expect("file")),
                0,
            )
        });
    let (current, _) = current.expect("binlog file");
    // A log still read by the existing replica's dump thread is kept: retry
    // until only the current binlog is left.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let _ = root
            .query_drop(format!("PURGE BINARY LOGS TO '{current}'"))
            .await;
        let logs: Vec<mysql_async::Row> =
            root.query("SHOW BINARY LOGS").await.expect("binary logs");
        if logs.len() == 1 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "binlogs not purged: {logs:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    for i in 200..300 {
        app.query_drop(format!(
            "INSERT INTO app.t (id, v) VALUES ({i}, 'after purge')"
        ))
        .await
        .expect("insert");
    }
    // A new member joins with an empty datadir.
    c.servers.push(Server::of(f, 2));
    let out = c
        .converge(Duration::from_secs(60), "new replica seeded", |o| {
            healthy_with(o, 0)
        })
        .await;
    assert!(
        c.events.iter().any(|e| e.contains("Reseeding")),
        "{:?}",
        c.events
    );
    assert_eq!(out.members[2].role, MemberRole::Replica);
    wait_rows(c.server(2), "app.t", 300, Duration::from_secs(15)).await;
    app.query_drop("INSERT INTO app.t (id, v) VALUES (1000, 'after seeding')")
        .await
        .expect("insert");
    wait_rows(c.server(2), "app.t", 301, Duration::from_secs(15)).await;
    // The application account exists on the seeded member (promotable).
    let mut a2 = c.server(2).app().await.expect("app account seeded");
    let n: Option<i64> = a2
        .query_first("SELECT COUNT(*) FROM app.t")
        .await
        .expect("read");
    assert_eq!(n, Some(301));
}

async fn restarted_primary_boots_read_only_and_is_confirmed_again(f: Flavor) {
    let _g = SERIAL.lock().await;
    let mut c = bootstrap(f, 2).await;
    c.failover.detection_seconds = 30;
    let mut app = c.server(0).app().await.expect("app");
    app.query_drop("INSERT INTO app.t (id, v) VALUES (1, 'x')")
        .await
        .expect("insert");
    drop(app);
    c.server_mut(0).restart();
    // As rendered, it boots read-only: nobody can write before the engine decides.
    assert_eq!(
        c.server(0).scalar("SELECT @@read_only").await.as_deref(),
        Some("1")
    );
    let mut app = c.server(0).app().await.expect("app");
    assert!(
        app.query_drop("INSERT INTO app.t (id, v) VALUES (2, 'x')")
            .await
            .is_err()
    );
    // Holding every known transaction, it is confirmed primary again (no failover).
    let out = c
        .converge(CONVERGE, "primary confirmed", |o| healthy_with(o, 0))
        .await;
    assert_eq!(out.state.term, 1);
    assert!(c.events.iter().any(|e| e.contains("PrimaryWritable")));
    let mut app = c.server(0).app().await.expect("app");
    app.query_drop("INSERT INTO app.t (id, v) VALUES (2, 'x')")
        .await
        .expect("writable again");
    wait_rows(c.server(1), "app.t", 2, Duration::from_secs(10)).await;
}

async fn failover_promotes_the_most_advanced_replica(f: Flavor) {
    let _g = SERIAL.lock().await;
    let mut c = bootstrap(f, 3).await;
    let mut app = c.server(0).app().await.expect("app");
    for i in 0..20 {
        app.query_drop(format!("INSERT INTO app.t (id, v) VALUES ({i}, 'x')"))
            .await
            .expect("insert");
    }
    wait_rows(c.server(1), "app.t", 20, Duration::from_secs(10)).await;
    // Replica 1 stops receiving; replica 2 gets 30 more transactions.
    c.server(1)
        .exec(c.server(1).dialect().stop_io_thread())
        .await;
    for i in 20..50 {
        app.query_drop(format!("INSERT INTO app.t (id, v) VALUES ({i}, 'x')"))
            .await
            .expect("insert");
    }
    wait_rows(c.server(2), "app.t", 50, Duration::from_secs(10)).await;
    c.server_mut(0).kill();
    let out = c
        .converge(Duration::from_secs(30), "failover", |o| {
            o.state.primary.is_some_and(|p| p != 0) && o.state.operation.is_none()
        })
        .await;
    assert_eq!(
        out.state.primary,
        Some(2),
        "the replica holding every transaction must be promoted"
    );
    // The lagging replica follows the new primary and receives what it missed.
    c.converge(CONVERGE, "replica 1 follows", |o| {
        o.members[1].role == MemberRole::Replica && o.members[1].source == Some(2)
    })
    .await;
    wait_rows(c.server(1), "app.t", 50, Duration::from_secs(15)).await;
}

async fn rotated_passwords_are_applied_without_breaking_replication(f: Flavor) {
    let _g = SERIAL.lock().await;
    let mut c = bootstrap(f, 2).await;
    c.credentials
        .0
        .insert("operator-password".into(), "op-rotated".into());
    c.credentials
        .0
        .insert("replication-password".into(), "repl-rotated".into());
    c.converge(CONVERGE, "rotated", |o| {
        healthy_with(o, 0) && o.events.is_empty()
    })
    .await;
    assert!(
        c.events.iter().any(|e| e.contains("CredentialsRotated")),
        "{:?}",
        c.events
    );
    assert!(c.server(0).conn_as("ordinal", "op-rotated").await.is_ok());
    assert!(c.server(0).conn_as("repl", "repl-rotated").await.is_ok());
    assert!(c.server(0).conn_as("repl", REPL_PW).await.is_err());
    // The replica reconnects with the new password and keeps replicating.
    let d = c.server(1).dialect();
    c.server(1).exec(d.stop_replica()).await;
    c.server(1).exec(d.start_replica()).await;
    let mut app = c.server(0).app().await.expect("app");
    app.query_drop("INSERT INTO app.t (id, v) VALUES (1, 'after rotation')")
        .await
        .expect("insert");
    wait_rows(c.server(1), "app.t", 1, Duration::from_secs(10)).await;
    let out = c.pass().await;
    assert!(healthy_with(&out, 0), "{out:#?}");
}

/// Samples every 200 ms which members accept writes (`@@read_only = 0`) and
/// counts samples with more than one.
struct Sampler {
    stop: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<(u64, u64)>,
}

impl Sampler {
    fn start(c: &Cluster) -> Sampler {
        let addrs: Vec<(String, u16)> = targets(c);
        let stop = Arc::new(AtomicBool::new(false));
        let s2 = stop.clone();
        let task = tokio::spawn(async move {
            let (mut samples, mut dual) = (0u64, 0u64);
            let mut conns: Vec<Option<mysql_async::Conn>> = addrs.iter().map(|_| None).collect();
            while !s2.load(Ordering::SeqCst) {
                let mut writable = Vec::new();
                for (i, (ip, port)) in addrs.iter().enumerate() {
                    if conns[i].is_none() {
                        let o = mysql_async::OptsBuilder::default()
                            .ip_or_hostname(ip.clone())
                            .tcp_port(*port)
                            .user(Some("root"))
                            .pass(Some(ROOT_PW))
                            .prefer_socket(false);
                        conns[i] = tokio::time::timeout(
                            Duration::from_millis(300),
                            mysql_async::Conn::new(o),
                        )
                        .await
                        .ok()
                        .and_then(Result::ok);
                    }
                    let Some(conn) = conns[i].as_mut() else {
                        continue;
                    };
                    match tokio::time::timeout(
                        Duration::from_millis(300),
                        conn.query_first::<i64, _>("SELECT @@read_only"),
                    )
                    .await
                    {
                        Ok(Ok(Some(0))) => writable.push(i),
                        Ok(Ok(_)) => {}
                        _ => conns[i] = None,
                    }
                }
                samples += 1;
                if writable.len() > 1 {
                    dual += 1;
                    eprintln!("sampler: writable members {writable:?}");
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            (samples, dual)
        });
        Sampler { stop, task }
    }

    async fn stop(self) -> (u64, u64) {
        self.stop.store(true, Ordering::SeqCst);
        self.task.await.unwrap()
    }
}

/// Proxies between the operator and each member (`.0`) and between the
/// members (`.1`); clients dial members directly.
async fn route_through_proxies(c: &mut Cluster) -> Vec<(proxy::Proxy, proxy::Proxy)> {
    let mut out = Vec::new();
    for i in 0..c.servers.len() {
        let real = format!("{}:{}", c.servers[i].ip, c.servers[i].port);
        let (op_ip, port) = free_address();
        let op = proxy::Proxy::start(&format!("{op_ip}:{port}"), &real).await;
        let (peer_ip, _) = free_address();
        let peer = proxy::Proxy::start(&format!("{peer_ip}:{port}"), &real).await;
        assert_eq!(port, c.servers[i].port);
        c.routes[i] = Some((op_ip, peer_ip));
        out.push((op, peer));
    }
    out
}

fn count_events(c: &Cluster, reason: &str) -> usize {
    c.events
        .iter()
        .filter(|e| {
            e.split(':')
                .next()
                .is_some_and(|h| h.ends_with(&format!(" {reason}")))
        })
        .count()
}

async fn operator_partitioned_from_a_live_primary_does_not_fail_over(f: Flavor) {
    let _g = SERIAL.lock().await;
    let mut c = Cluster::of(f, 3);
    let proxies = route_through_proxies(&mut c).await;
    bootstrap_cluster(&mut c).await;
    let sampler = Sampler::start(&c);
    let w = Writer::start(targets(&c));
    w.wait_acked(100, Duration::from_secs(20)).await;

    // Only the operator loses the primary; replicas and clients still reach it.
    proxies[0].0.cut();
    let cut = std::time::Instant::now();
    while cut.elapsed() < Duration::from_secs(10) {
        let out = c.pass().await;
        assert_eq!(out.state.primary, Some(0), "no failover: {out:#?}");
        assert!(out.state.operation.is_none(), "no failover: {out:#?}");
        tokio::time::sleep(out.requeue_after.min(Duration::from_millis(500))).await;
    }
    let out = c.last.clone().unwrap();
    assert!(
        matches!(&out.health, ordinal::engine::Health::Unhealthy { reason, .. } if reason == "PrimaryUnreachableFromOperator"),
        "{:?}",
        out.health
    );
    assert_eq!(
        out.members[0].role,
        MemberRole::Primary,
        "it keeps its label"
    );
    assert_eq!(count_events(&c, "PrimaryUnreachableFromOperator"), 1);
    let during = w.acked().len();

    proxies[0].0.heal();
    c.converge(CONVERGE, "healed", |o| healthy_with(o, 0)).await;
    let acked = w.stop().await;
    let (samples, dual) = sampler.stop().await;
    let missing = missing_ids(c.server(0), &acked).await;
    eprintln!(
        "operator<->primary partition: acked {} rows ({during} by the end of the partition), found {} on the primary, {} missing; {dual} dual-writable samples of {samples}",
        acked.len(),
        acked.len() - missing.len(),
        missing.len()
    );
    assert!(missing.is_empty(), "{missing:?}");
    assert_eq!(dual, 0);
    assert_eq!(c.state.term, 1);
    assert_eq!(writable_members(&c).await, vec![0]);
    assert_eq!(count_events(&c, "Promoted"), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_partition_of_the_primary_fails_over_after_isolating_it() {
    let _g = SERIAL.lock().await;
    let mut c = Cluster::new(3);
    c.settings.replication.mode = ordinal::api::mysql::ReplicationMode::SemiSync;
    c.restart_isolated = true;
    let proxies = route_through_proxies(&mut c).await;
    bootstrap_cluster(&mut c).await;
    c.converge(CONVERGE, "semi-sync replicas", |o| healthy_with(o, 0))
        .await;
    let sampler = Sampler::start(&c);
    let w = Writer::start(targets(&c));
    w.wait_acked(200, Duration::from_secs(30)).await;

    // The operator and the replicas lose the primary; clients still reach it.
    proxies[0].0.cut();
    proxies[0].1.cut();
    let cut = std::time::Instant::now();
    let out = c
        .converge(Duration::from_secs(60), "failover", |o| {
            o.state.primary.is_some_and(|p| p != 0) && o.state.operation.is_none()
        })
        .await;
    let np = out.state.primary.unwrap();
    eprintln!("failed over to db-{np} after {:?}", cut.elapsed());
    assert_eq!(c.isolations, vec![0], "the old primary was isolated");
    let isolated_at = c.events.iter().position(|e| e.contains("Promoted"));
    assert!(isolated_at.is_some());
    // The old primary came back (a new pod) read-only.
    assert_eq!(
        c.server(0).scalar("SELECT @@read_only").await.as_deref(),
        Some("1")
    );
    proxies[0].0.heal();
    proxies[0].1.heal();
    c.converge(CONVERGE, "old primary rejoins or is quarantined", |o| {
        o.members
            .iter()
            .filter(|m| m.ordinal != 0)
            .all(|m| m.role == MemberRole::Primary || m.role == MemberRole::Replica)
            && o.members[0].role != MemberRole::Primary
            && o.members[0].role != MemberRole::Unknown
    })
    .await;
    w.wait_acked(w.acked().len() + 50, Duration::from_secs(30))
        .await;
    let acked = w.stop().await;
    let (samples, dual) = sampler.stop().await;
    let missing = missing_ids(c.server(np), &acked).await;
    eprintln!(
        "full partition (semi-sync): acked {} rows, found {} on the new primary, {} missing; {dual} dual-writable samples of {samples}; old primary now {:?}",
        acked.len(),
        acked.len() - missing.len(),
        missing.len(),
        c.last.as_ref().unwrap().members[0].role
    );
    assert!(
        missing.is_empty(),
        "semi-sync lost acknowledged rows: {missing:?}"
    );
    assert_eq!(dual, 0, "two writable members");
    assert_eq!(writable_members(&c).await, vec![np]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operator_killed_at_random_points_of_failovers_and_switchovers() {
    use rand::{Rng, SeedableRng};
    let _g = SERIAL.lock().await;
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
    let mut c = Cluster::new(3);
    c.settings.replication.mode = ordinal::api::mysql::ReplicationMode::SemiSync;
    // Isolated members stay down until a new primary serves (a member that
    // restarts at once with all its data is simply made writable again).
    bootstrap_cluster(&mut c).await;
    c.converge(CONVERGE, "semi-sync replicas", |o| healthy_with(o, 0))
        .await;
    let sampler = Sampler::start(&c);
    let w = Writer::start(targets(&c));
    w.wait_acked(100, Duration::from_secs(30)).await;
    let mut crashes = 0;
    for round in 0..10 {
        let primary = c.state.primary.unwrap();
        let failover_round = round % 2 == 0;
        let crash_pass = rng.random_range(0..4u32);
        let crash_ms = rng.random_range(0..60u64);
        let lose_whole_pass = rng.random_bool(0.5);
        if failover_round {
            // A quiet moment: every committed row is acknowledged, so the
            // returned member holds nothing the others lack.
            w.pause.store(true, Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(300)).await;
            c.server_mut(primary).kill();
            w.pause.store(false, Ordering::SeqCst);
            c.desired_primary = None;
        } else {
            let target = (primary + 1 + rng.random_range(0..2i32)) % 3;
            c.desired_primary = Some(target);
        }
        eprintln!(
            "round {round}: {} from db-{primary}; operator dies in operation pass {crash_pass} ({})",
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
        let start = std::time::Instant::now();
        let mut in_op = 0;
        let mut crashed = false;
        loop {
            let window_over = c.state.primary_unhealthy_since.as_ref().is_some_and(|t| {
                chrono::Utc::now().timestamp_millis() - t.0.as_millisecond() >= 2000
            });
            let active = c.state.operation.is_some()
                || window_over
                || c.desired_primary
                    .is_some_and(|d| Some(d) != c.state.primary);
            if active && !crashed && in_op == crash_pass {
                let input = c.input();
                if lose_whole_pass {
                    // Its database steps happen; the reconciler never persists it.
                    let _ = c.engine.reconcile(&input).await;
                } else {
                    let _ = tokio::time::timeout(
                        Duration::from_millis(crash_ms),
                        c.engine.reconcile(&input),
                    )
                    .await;
                }
                c.engine = ordinal::mysql::MySqlEngine::new(Default::default());
                crashed = true;
                crashes += 1;
                continue;
            }
            if active {
                in_op += 1;
            }
            let out = c.pass().await;
            let done = out.state.operation.is_none()
                && out.health == ordinal::engine::Health::Healthy
                && (failover_round || out.state.primary == c.desired_primary)
                && out.state.primary.is_some_and(|p| healthy_with(&out, p));
            if done {
                if !crashed {
                    eprintln!("round {round}: the operation ended before the crash point");
                }
                break;
            }
            if failover_round
                && !c.servers[primary as usize].member().pod_ready
                && out.state.primary != Some(primary)
                && out.state.operation.is_none()
            {
                // The new primary serves: the old one's pod comes back.
                c.server_mut(primary).start();
            }
            assert!(
                start.elapsed() < Duration::from_secs(90),
                "round {round} did not converge: {out:#?}"
            );
            tokio::time::sleep(out.requeue_after.min(Duration::from_millis(300))).await;
        }
        let p = c.state.primary.unwrap();
        eprintln!(
            "round {round}: primary db-{p} in term {} after {:?}",
            c.state.term,
            start.elapsed()
        );
        assert_eq!(writable_members(&c).await, vec![p], "one writable primary");
    }
    c.desired_primary = None;
    w.wait_acked(w.acked().len() + 50, Duration::from_secs(30))
        .await;
    let acked = w.stop().await;
    let (samples, dual) = sampler.stop().await;
    let p = c.state.primary.unwrap();
    let missing = missing_ids(c.server(p), &acked).await;
    eprintln!(
        "operator kills (seed {seed}): {crashes} of 10 operations interrupted; acked {} rows, found {} on the final primary, {} missing; {dual} dual-writable samples of {samples}",
        acked.len(),
        acked.len() - missing.len(),
        missing.len()
    );
    assert!(
        missing.is_empty(),
        "acknowledged rows lost (seed {seed}): {missing:?}"
    );
    assert_eq!(dual, 0, "two writable members (seed {seed})");
}

/// Rows of app.t on `s`, or None while the table cannot be read.
async fn try_count(s: &Server) -> Option<i64> {
    let mut c = s.conn_as("root", ROOT_PW).await.ok()?;
    c.query_first::<i64, _>("SELECT COUNT(*) FROM app.t")
        .await
        .ok()
        .flatten()
}

#[tokio::test]
async fn recreated_over_kept_volumes_adopts_the_full_member_not_the_emptied_ordinal_zero() {
    let _g = SERIAL.lock().await;
    let mut c = bootstrap(Flavor::MariaDB, 3).await;
    let mut app = c.server(0).app().await.expect("app");
    let mut acked = Vec::new();
    let ids: Vec<i64> = (1..=2000).collect();
    for chunk in ids.chunks(200) {
        let values: Vec<String> = chunk.iter().map(|i| format!("({i}, 'x')")).collect();
        app.query_drop(format!(
            "INSERT INTO app.t (id, v) VALUES {}",
            values.join(",")
        ))
        .await
        .expect("insert");
        acked.extend_from_slice(chunk);
    }
    drop(app);
    for r in 1..3 {
        wait_rows(c.server(r), "app.t", 2000, Duration::from_secs(30)).await;
    }
    // The resource is deleted and applied again over the kept volumes, with
    // ordinal 0's volume lost; the hint still names the old primary 0.
    for r in 0..3 {
        c.server_mut(r).kill();
    }
    c.server_mut(0).empty();
    c.server_mut(1).start();
    c.server_mut(2).start();
    c.state = Default::default();
    c.events.clear();
    c.hint = Some(ordinal::engine::PrimaryHint {
        primary: 0,
        term: 1,
    });
    // As rendered, nobody accepts writes before the engine decides.
    assert_eq!(writable_members(&c).await, Vec::<i32>::new());
    let out = c
        .converge(Duration::from_secs(60), "adoption", |o| healthy_with(o, 1))
        .await;
    assert!(out.state.term >= 2, "a new term: {}", out.state.term);
    assert!(
        c.events.iter().any(|e| e.contains("Adopted")),
        "{:#?}",
        c.events
    );
    assert!(!c.events.iter().any(|e| e.contains("Bootstrapped")));
    assert_eq!(missing_ids(c.server(1), &acked).await, Vec::<i64>::new());
    assert_eq!(writable_members(&c).await, vec![1]);
    // The emptied member catches up from the adopted primary.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while try_count(c.server(0)).await != Some(2000) {
        assert!(
            std::time::Instant::now() < deadline,
            "ordinal 0 did not catch up"
        );
        c.pass().await;
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    assert_eq!(missing_ids(c.server(0), &acked).await, Vec::<i64>::new());
}

#[tokio::test]
async fn diverged_members_are_refused_and_keep_their_rows() {
    let _g = SERIAL.lock().await;
    let mut c = bootstrap(Flavor::MariaDB, 2).await;
    let mut app = c.server(0).app().await.expect("app");
    for i in 1..=20 {
        app.query_drop(format!("INSERT INTO app.t (id, v) VALUES ({i}, 'x')"))
            .await
            .expect("insert");
    }
    wait_rows(c.server(1), "app.t", 20, Duration::from_secs(10)).await;
    // A split nobody recorded: 1 detached and written to, 0 written to too.
    let mut r1 = c.server(1).root().await;
    r1.query_drop(
        "STOP SLAVE; SET SESSION sql_log_bin = 1; INSERT INTO app.t (id, v) VALUES (9001, 'only1')",
    )
    .await
    .expect("write on 1");
    app.query_drop("INSERT INTO app.t (id, v) VALUES (9000, 'only0')")
        .await
        .expect("write on 0");
    drop(app);
    c.state = Default::default();
    for _ in 0..3 {
        let out = c.pass().await;
        assert_eq!(out.state.primary, None);
        assert!(
            matches!(&out.health, ordinal::engine::Health::Unhealthy { reason, .. } if reason == "AdoptionRefused"),
            "{:?}",
            out.health
        );
    }
    assert!(c.events.iter().any(|e| e.contains("AdoptionRefused")));
    // Nothing was wiped, repointed or promoted.
    assert_eq!(c.server(0).count("app.t").await, 21);
    assert_eq!(c.server(1).count("app.t").await, 21);
    assert_eq!(
        c.server(1)
            .scalar("SELECT COUNT(*) FROM app.t WHERE id = 9001")
            .await
            .as_deref(),
        Some("1")
    );
    assert_eq!(
        c.server(1)
            .slave_status("Slave_IO_Running")
            .await
            .as_deref(),
        Some("No")
    );
}

/// `Connections` (connection attempts since start) of each server, read
/// through `probes` opened once (reading adds nothing).
async fn connections_received(probes: &mut [mysql_async::Conn]) -> Vec<i64> {
    let mut out = Vec::new();
    for p in probes.iter_mut() {
        let row: Option<(String, i64)> = p
            .query_first("SHOW GLOBAL STATUS LIKE 'Connections'")
            .await
            .expect("SHOW GLOBAL STATUS");
        out.push(row.expect("a Connections row").1);
    }
    out
}

/// Run `passes` steady passes (each healthy with member 0 primary) and
/// return the Connections counters before and after, and how many the
/// servers accepted in between.
async fn connections_over_steady_passes(
    c: &mut Cluster,
    probes: &mut [mysql_async::Conn],
    passes: usize,
) -> (Vec<i64>, Vec<i64>, i64) {
    let before = connections_received(probes).await;
    for _ in 0..passes {
        let out = c.pass().await;
        assert!(healthy_with(&out, 0), "{out:#?}");
    }
    let after = connections_received(probes).await;
    let opened = after.iter().zip(&before).map(|(a, b)| a - b).sum();
    (before, after, opened)
}

/// Steady passes reuse the operator's connections (one per member), and a
/// member killed and restarted is read through a new connection in the very
/// next pass; the cluster is healthy again without a stale connection used.
#[tokio::test]
async fn steady_passes_reuse_connections_and_reconnect_after_a_restart() {
    const PASSES: usize = 10;
    let _g = SERIAL.lock().await;
    let mut c = bootstrap(Flavor::MariaDB, 3).await;
    let out = c.pass().await;
    assert!(healthy_with(&out, 0), "{out:#?}");
    let mut probes = Vec::new();
    for i in 0..3 {
        probes.push(c.server(i).root().await);
    }
    let (before, after, opened) = connections_over_steady_passes(&mut c, &mut probes, PASSES).await;
    eprintln!("[connections] {PASSES} steady passes over 3 members opened {opened} connections");
    // One per member per pass without the kept connections (30 here).
    assert!(
        opened <= 1,
        "{PASSES} steady passes opened {opened} connections: {before:?} -> {after:?}"
    );
    assert_eq!(c.engine.cached_connections(), 3);

    c.server_mut(2).restart();
    let out = c.pass().await;
    assert!(
        out.members[2].reachable,
        "the restarted member is read through a new connection in the first pass: {out:#?}"
    );
    let out = c
        .converge(CONVERGE, "healthy after the restart", |o| {
            healthy_with(o, 0)
        })
        .await;
    assert_eq!(out.state.term, 1);
    assert_eq!(writable_members(&c).await, [0]);
    probes[2] = c.server(2).root().await;
    let (before, after, opened) = connections_over_steady_passes(&mut c, &mut probes, PASSES).await;
    assert!(opened <= 1, "after the restart: {before:?} -> {after:?}");
}

/// Primary watch connections (the operator user's `DO SLEEP`) on `s`.
async fn watch_sessions(s: &Server) -> i64 {
    s.scalar("SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE INFO LIKE 'DO SLEEP(%'")
        .await
        .and_then(|v| v.parse().ok())
        .unwrap_or(-1)
}

/// The primary watch (what the controller keeps per cluster), MariaDB: one
/// operator-user connection to the confirmed primary, kept across steady
/// passes, silent while the primary is healthy and idle, firing when the
/// primary process is killed; the pass it triggers sees the primary gone.
#[tokio::test]
async fn primary_watch_fires_when_the_primary_dies_and_stays_silent_while_it_idles() {
    use ordinal::watch::{PrimaryWatches, WatchKey, follow, wait_fired};
    let _g = SERIAL.lock().await;
    let mut c = bootstrap(Flavor::MariaDB, 2).await;
    c.failover.detection_seconds = 30;
    let out = c.pass().await;
    assert!(healthy_with(&out, 0), "{:?}", out.health);
    let gauge = prometheus_client::metrics::gauge::Gauge::default();
    let watches = PrimaryWatches::new(vec![("mysql", gauge.clone())]);
    let key = WatchKey {
        engine: "mysql",
        namespace: "test".into(),
        name: "watched".into(),
    };
    follow(&watches, &key, &c.engine, &c.input(), &out);
    assert!(
        watches.watching(&key).is_some(),
        "the confirmed primary is watched"
    );
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while watch_sessions(c.server(0)).await != 1 {
        assert!(
            std::time::Instant::now() < deadline,
            "the watch never connected"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(gauge.get(), 1);
    let user = c
        .server(0)
        .scalar("SELECT USER FROM information_schema.PROCESSLIST WHERE INFO LIKE 'DO SLEEP(%'")
        .await;
    assert_eq!(
        user.as_deref(),
        Some("ordinal"),
        "the operator user, never root"
    );

    // Healthy and idle, with steady passes following it: no trigger, one
    // watch connection.
    let quiet = wait_fired(&watches, key.clone(), Duration::from_secs(3));
    for _ in 0..5 {
        let out = c.pass().await;
        assert!(healthy_with(&out, 0), "{:?}", out.health);
        follow(&watches, &key, &c.engine, &c.input(), &out);
        tokio::time::sleep(Duration::from_millis(400)).await;
    }
    assert!(
        !quiet.await,
        "the watch fired while the primary was healthy"
    );
    assert_eq!(watch_sessions(c.server(0)).await, 1, "one watch connection");

    let fired = wait_fired(&watches, key.clone(), Duration::from_secs(10));
    c.server_mut(0).kill();
    assert!(
        fired.await,
        "the watch did not fire when the primary was killed"
    );
    assert_eq!(gauge.get(), 0);
    let out = c.pass().await;
    assert!(
        out.state.primary_unhealthy_since.is_some(),
        "the triggered pass sees the primary gone: {:?}",
        out.health
    );
}
