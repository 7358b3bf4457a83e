//! Test harness: real servers of either flavor on distinct 127.0.x.y
//! addresses, each with a private datadir copied from one template per test
//! run and flavor, started with the configuration the operator renders
//! (read_only at boot, GTID mode, log_replica_updates, skip_replica_start,
//! report_host). MariaDB is Debian's `mariadbd`; MySQL is Oracle's `mysqld`
//! 8.0.31, installed into the tool cache by `scripts/mysql8.sh`.
#![allow(dead_code)]

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use chrono::Utc;
use mysql_async::prelude::Queryable;
use mysql_async::{Conn, OptsBuilder, Row};
use ordinal::api::{FailoverSpec, ReplicationState};
use ordinal::engine::{Credentials, Engine, EngineInput, EngineOutcome, Member, PrimaryHint};
use ordinal::mysql::flavor::Dialect;
use ordinal::mysql::{MySqlEngine, MySqlEngineConfig, MySqlSettings};

#[path = "patience.rs"]
#[allow(clippy::duplicate_mod)] // included by several support modules of one test
mod patience;
pub use patience::patient;

pub use ordinal::api::MySqlFlavor as Flavor;

pub const ROOT_PW: &str = "root-Pw'1";
pub const OP_PW: &str = "op-pw-2";
pub const REPL_PW: &str = "repl-pw-3";
pub const APP_PW: &str = "app-pw";

const MARIADBD: &str = "/usr/sbin/mariadbd";
const INSTALL_DB: &str = "mariadb-install-db";

/// The MySQL 8.0.31 server installed by `scripts/mysql8.sh` (or `ORDINAL_MYSQLD`).
pub fn mysqld() -> PathBuf {
    if let Ok(p) = std::env::var("ORDINAL_MYSQLD") {
        return PathBuf::from(p);
    }
    let cache = std::env::var("ORDINAL_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|_| {
            PathBuf::from(std::env::var("HOME").unwrap_or_else(|_| "/root".into()))
                .join(".cache/ordinal")
        });
    cache.join("mysql-8.0.31/bin/mysqld")
}

fn server_binary(flavor: Flavor) -> PathBuf {
    match flavor {
        Flavor::MariaDB => PathBuf::from(MARIADBD),
        Flavor::MySQL => mysqld(),
    }
}

fn require_binaries(flavor: Flavor) {
    match flavor {
        Flavor::MariaDB => assert!(
            Path::new(MARIADBD).exists(),
            "{MARIADBD} not found: install the mariadb-server package (apt-get install mariadb-server) to run the MySQL engine tests"
        ),
        Flavor::MySQL => assert!(
            mysqld().exists(),
            "{} not found: run scripts/mysql8.sh (installs MySQL 8.0.31 from Maven Central into the tool cache) to run the MySQL engine tests",
            mysqld().display()
        ),
    }
}

fn base_dir() -> PathBuf {
    let p = PathBuf::from("/var/tmp/ordinal-mysql-tests");
    std::fs::create_dir_all(&p).expect("create /var/tmp/ordinal-mysql-tests");
    p
}

/// Remove directories of earlier runs whose process is gone.
fn clean_stale() {
    if let Ok(rd) = std::fs::read_dir(base_dir()) {
        for e in rd.flatten() {
            let name = e.file_name().to_string_lossy().to_string();
            if let Some(pid) = name
                .strip_prefix("run-")
                .and_then(|s| s.parse::<u32>().ok())
                && pid != std::process::id()
                && !Path::new(&format!("/proc/{pid}")).exists()
            {
                let _ = std::fs::remove_dir_all(e.path());
            }
        }
    }
}

fn run_dir() -> PathBuf {
    let p = base_dir().join(format!("run-{}", std::process::id()));
    std::fs::create_dir_all(&p).expect("create run dir");
    p
}

/// One initialised datadir per test process and flavor; servers copy it.
pub fn template(flavor: Flavor) -> &'static PathBuf {
    static MARIA: OnceLock<PathBuf> = OnceLock::new();
    static MYSQL: OnceLock<PathBuf> = OnceLock::new();
    match flavor {
        Flavor::MariaDB => MARIA.get_or_init(mariadb_template),
        Flavor::MySQL => MYSQL.get_or_init(mysql_template),
    }
}

/// `mysqld --initialize-insecure`, then a first boot without binlog (no
/// GTID is created) giving root@'%' and root@localhost their password.
fn mysql_template() -> PathBuf {
    require_binaries(Flavor::MySQL);
    clean_stale();
    let dir = run_dir().join("template-mysql");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("mkdir template");
    let data = dir.join("data");
    let out = Command::new(mysqld())
        .args(["--no-defaults", "--initialize-insecure", "--user=root"])
        .arg(format!("--datadir={}", data.display()))
        .arg(format!(
            "--log-error={}",
            dir.join("initialize.err").display()
        ))
        .output()
        .expect("run mysqld --initialize-insecure");
    assert!(
        out.status.success(),
        "mysqld --initialize-insecure failed: {}",
        std::fs::read_to_string(dir.join("initialize.err")).unwrap_or_default()
    );
    let sock = dir.join("init.sock");
    let mut child = Command::new(mysqld())
        .args([
            "--no-defaults",
            "--user=root",
            "--skip-networking",
            "--skip-log-bin",
            "--mysqlx=OFF",
        ])
        .arg(format!("--datadir={}", data.display()))
        .arg(format!("--socket={}", sock.display()))
        .arg(format!("--log-error={}", dir.join("init.err").display()))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn mysqld");
    let sql = format!(
        "CREATE USER 'root'@'%' IDENTIFIED BY '{pw}'; GRANT ALL ON *.* TO 'root'@'%' WITH GRANT OPTION; \
         ALTER USER 'root'@'localhost' IDENTIFIED BY '{pw}'; SHUTDOWN;",
        pw = ROOT_PW.replace('\'', "''")
    );
    let deadline = Instant::now() + patient(Duration::from_secs(60));
    loop {
        let out = Command::new("mariadb")
            .args(["--no-defaults", "--skip-ssl", "-uroot"])
            .arg(format!("--socket={}", sock.display()))
            .arg("-e")
            .arg(&sql)
            .output()
            .expect("run mariadb client");
        if out.status.success() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "template mysqld did not start: {} {}",
            String::from_utf8_lossy(&out.stderr),
            std::fs::read_to_string(dir.join("init.err")).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let _ = child.wait();
    // Every copy generates its own server_uuid (the GTID source id).
    let _ = std::fs::remove_file(data.join("auto.cnf"));
    data
}

fn mariadb_template() -> PathBuf {
    {
        require_binaries(Flavor::MariaDB);
        clean_stale();
        let dir = run_dir().join("template");
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("mkdir template");
        let data = dir.join("data");
        let out = Command::new(INSTALL_DB)
            .args([
                "--no-defaults",
                "--auth-root-authentication-method=normal",
                "--skip-test-db",
                "--user=root",
            ])
            .arg(format!("--datadir={}", data.display()))
            .output()
            .expect("run mariadb-install-db (install mariadb-server)");
        assert!(
            out.status.success(),
            "mariadb-install-db failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        // First boot without binlog, like the image entrypoint: root@'%' gets
        // its password without creating any GTID.
        let sock = dir.join("init.sock");
        let mut child = Command::new(MARIADBD)
            .args([
                "--no-defaults",
                "--user=root",
                "--skip-networking",
                "--skip-log-bin",
            ])
            .arg(format!("--datadir={}", data.display()))
            .arg(format!("--socket={}", sock.display()))
            .arg(format!("--log-error={}", dir.join("init.err").display()))
            .arg("--innodb-log-file-size=16M")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn mariadbd");
        let deadline = Instant::now() + patient(Duration::from_secs(60));
        let sql = format!(
            "CREATE USER 'root'@'%' IDENTIFIED BY '{pw}'; GRANT ALL ON *.* TO 'root'@'%' WITH GRANT OPTION; \
             ALTER USER 'root'@'localhost' IDENTIFIED BY '{pw}'; SHUTDOWN;",
            pw = ROOT_PW.replace('\'', "''")
        );
        // Drop every account but root@localhost and the system ones (like the
        // image entrypoint), so root@'%' is the account remote clients match.
        loop {
            let out = Command::new("mariadb")
                .args(["--no-defaults", "-uroot", "-N", "-B"])
                .arg(format!("--socket={}", sock.display()))
                .arg("-e")
                .arg("SELECT CONCAT(QUOTE(User), '@', QUOTE(Host)) FROM mysql.user WHERE NOT (Host = 'localhost' AND User IN ('root', 'mariadb.sys', 'mysql'))")
                .output()
                .expect("run mariadb client");
            if out.status.success() {
                let stray: Vec<String> = String::from_utf8_lossy(&out.stdout)
                    .lines()
                    .map(str::to_string)
                    .collect();
                if !stray.is_empty() {
                    let st = Command::new("mariadb")
                        .args(["--no-defaults", "-uroot"])
                        .arg(format!("--socket={}", sock.display()))
                        .arg("-e")
                        .arg(format!("DROP USER {}", stray.join(", ")))
                        .status()
                        .expect("drop users");
                    assert!(st.success());
                }
                break;
            }
            assert!(
                Instant::now() < deadline,
                "template server did not start: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            std::thread::sleep(Duration::from_millis(200));
        }
        loop {
            let out = Command::new("mariadb")
                .args(["--no-defaults", "-uroot"])
                .arg(format!("--socket={}", sock.display()))
                .arg("-e")
                .arg(&sql)
                .output()
                .expect("run mariadb client");
            if out.status.success() {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "template server did not start: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            std::thread::sleep(Duration::from_millis(200));
        }
        let _ = child.wait();
        data
    }
}

fn next_ip() -> (String, u16) {
    static N: AtomicU32 = AtomicU32::new(10);
    let third = 100 + (std::process::id() % 150);
    loop {
        let n = N.fetch_add(1, Ordering::SeqCst);
        let ip = format!("127.0.{third}.{}", n % 250 + 2);
        let port = 3306;
        if TcpListener::bind((ip.as_str(), port)).is_ok() {
            return (ip, port);
        }
        assert!(n < 2000, "no free loopback address");
    }
}

/// A free loopback address (for a proxy in front of a server).
pub fn free_address() -> (String, u16) {
    next_ip()
}

/// A real mariadbd or mysqld.
pub struct Server {
    pub flavor: Flavor,
    pub ordinal: i32,
    pub ip: String,
    pub port: u16,
    pub dir: PathBuf,
    child: Option<Child>,
}

impl Server {
    pub fn new(ordinal: i32) -> Server {
        Self::with_extra(ordinal, "")
    }

    /// A server of `flavor`.
    pub fn of(flavor: Flavor, ordinal: i32) -> Server {
        Self::flavored(flavor, ordinal, "")
    }

    /// A MariaDB server with extra `[mysqld]` lines (e.g. a bigger buffer pool).
    pub fn with_extra(ordinal: i32, extra: &str) -> Server {
        Self::flavored(Flavor::MariaDB, ordinal, extra)
    }

    /// A server of `flavor` with extra `[mysqld]` lines.
    pub fn flavored(flavor: Flavor, ordinal: i32, extra: &str) -> Server {
        let tpl = template(flavor);
        let (ip, port) = next_ip();
        let dir = run_dir().join(format!("srv-{ip}"));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("mkdir server dir");
        let st = Command::new("cp")
            .arg("-a")
            .arg(tpl)
            .arg(dir.join("data"))
            .status()
            .expect("cp");
        assert!(st.success());
        let mysql_cnf = || {
            // MySQL: the lines the operator renders (Dialect::boot_config),
            // with the harness' paths and light settings for two cores.
            let mut lines = vec![
                "[mysqld]".to_string(),
                "user=root".into(),
                format!("datadir={}/data", dir.display()),
                format!("socket={}/mysqld.sock", dir.display()),
                format!("pid-file={}/mysqld.pid", dir.display()),
                format!("log-error={}/error.log", dir.display()),
                format!("port={port}"),
                format!("bind-address={ip}"),
            ];
            lines.extend(Dialect(Flavor::MySQL).boot_config(100 + ordinal as i64, &ip));
            lines.extend(
                [
                    "skip_name_resolve=ON",
                    "innodb_buffer_pool_size=128M",
                    "innodb_redo_log_capacity=64M",
                    "performance_schema=OFF",
                    "mysqlx=OFF",
                    "innodb_flush_log_at_trx_commit=2",
                    "sync_binlog=0",
                    "max_connections=200",
                    "replica_parallel_workers=0",
                ]
                .map(String::from),
            );
            lines.join("\n") + "\n" + extra
        };
        let cnf = if flavor == Flavor::MySQL {
            mysql_cnf()
        } else {
            format!(
                "[mysqld]\nuser=root\ndatadir={d}/data\nsocket={d}/mysqld.sock\npid-file={d}/mysqld.pid\nlog-error={d}/error.log\n\
             port={port}\nbind-address={ip}\nserver_id={sid}\nlog_bin=mysql-bin\nlog_slave_updates=ON\nbinlog_format=ROW\n\
             gtid_strict_mode=ON\nrelay_log_recovery=ON\nreport_host={ip}\nskip_slave_start=ON\nread_only=ON\n\
             skip_name_resolve=ON\ninnodb_buffer_pool_size=128M\ninnodb_log_file_size=16M\nperformance_schema=OFF\n\
             innodb_flush_log_at_trx_commit=2\nsync_binlog=0\nmax_connections=200\n",
                d = dir.display(),
                sid = 100 + ordinal
            ) + extra
        };
        std::fs::write(dir.join("my.cnf"), cnf).expect("write my.cnf");
        let mut s = Server {
            flavor,
            ordinal,
            ip,
            port,
            dir,
            child: None,
        };
        s.start();
        s
    }

    /// The server process's id while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }

    pub fn start(&mut self) {
        assert!(self.child.is_none());
        let child = Command::new(server_binary(self.flavor))
            .arg(format!(
                "--defaults-file={}",
                self.dir.join("my.cnf").display()
            ))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn the server");
        self.child = Some(child);
        let deadline = Instant::now() + patient(Duration::from_secs(60));
        while std::net::TcpStream::connect((self.ip.as_str(), self.port)).is_err() {
            if let Some(c) = self.child.as_mut()
                && let Ok(Some(st)) = c.try_wait()
            {
                panic!(
                    "{:?} server exited with {st}: {}",
                    self.flavor,
                    self.error_log()
                );
            }
            assert!(
                Instant::now() < deadline,
                "{:?} server did not listen within 60s: {}",
                self.flavor,
                self.error_log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn error_log(&self) -> String {
        std::fs::read_to_string(self.dir.join("error.log")).unwrap_or_default()
    }

    /// SIGKILL.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub fn restart(&mut self) {
        self.kill();
        self.start();
    }

    /// Lose the volume: stop, replace the datadir with a freshly initialised
    /// one (same root password, no data, no GTIDs) and start again.
    pub fn empty(&mut self) {
        self.kill();
        let data = self.dir.join("data");
        let _ = std::fs::remove_dir_all(&data);
        let st = Command::new("cp")
            .arg("-a")
            .arg(template(self.flavor))
            .arg(&data)
            .status()
            .expect("cp");
        assert!(st.success());
        self.start();
    }

    pub fn member(&self) -> Member {
        Member {
            ordinal: self.ordinal,
            pod: format!("db-{}", self.ordinal),
            address: Some(self.ip.clone()),
            port: self.port,
            dns_name: self.ip.clone(),
            pod_exists: true,
            pod_ready: self.child.is_some(),
            isolated: false,
        }
    }

    pub async fn conn_as(&self, user: &str, pw: &str) -> mysql_async::Result<Conn> {
        let o = OptsBuilder::default()
            .ip_or_hostname(self.ip.clone())
            .tcp_port(self.port)
            .user(Some(user))
            .pass(Some(pw))
            .prefer_socket(false);
        tokio::time::timeout(Duration::from_secs(3), Conn::new(o))
            .await
            .unwrap_or_else(|_| Err(mysql_async::Error::Other("connect timeout".into())))
    }

    pub async fn root(&self) -> Conn {
        self.conn_as("root", ROOT_PW)
            .await
            .expect("root connection")
    }

    pub async fn app(&self) -> mysql_async::Result<Conn> {
        self.conn_as("app", APP_PW).await
    }

    pub async fn scalar(&self, sql: &str) -> Option<String> {
        let mut c = self.root().await;
        let r: Option<Row> = c.query_first(sql).await.expect(sql);
        r.and_then(|r| {
            r.as_ref(0).and_then(|v| match v {
                mysql_async::Value::NULL => None,
                mysql_async::Value::Bytes(b) => Some(String::from_utf8_lossy(b).to_string()),
                v => Some(v.as_sql(true)),
            })
        })
    }

    pub fn dialect(&self) -> Dialect {
        Dialect(self.flavor)
    }

    /// A column of SHOW SLAVE STATUS, None when not a replica. MariaDB
    /// column names (`Slave_SQL_Running`) are translated for MySQL
    /// (`Replica_SQL_Running` of SHOW REPLICA STATUS).
    pub async fn slave_status(&self, column: &str) -> Option<String> {
        let mut c = self.root().await;
        let r: Option<Row> = c
            .query_first(self.dialect().show_replica_status())
            .await
            .expect("show replica status");
        let r = r?;
        let column = match self.flavor {
            Flavor::MariaDB => column.to_string(),
            Flavor::MySQL => column
                .replace("Slave", "Replica")
                .replace("Master", "Source"),
        };
        let idx = r
            .columns_ref()
            .iter()
            .position(|c| c.name_str() == column)?;
        r.as_ref(idx).and_then(|v| match v {
            mysql_async::Value::Bytes(b) => Some(String::from_utf8_lossy(b).to_string()),
            mysql_async::Value::NULL => None,
            v => Some(v.as_sql(true)),
        })
    }

    /// Run statements as root (e.g. a dialect's `stop_replica()`).
    pub async fn exec(&self, sql: &str) {
        let mut c = self.root().await;
        c.query_drop(sql).await.expect(sql);
    }

    /// Executed GTIDs (MariaDB gtid_current_pos, MySQL gtid_executed),
    /// whitespace removed.
    pub async fn executed(&self) -> String {
        let q = match self.flavor {
            Flavor::MariaDB => "SELECT @@gtid_current_pos",
            Flavor::MySQL => "SELECT @@GLOBAL.gtid_executed",
        };
        self.scalar(q)
            .await
            .unwrap_or_default()
            .split_whitespace()
            .collect()
    }

    /// The id this server's own transactions carry in GTIDs (MariaDB
    /// server_id, MySQL server_uuid).
    pub async fn gtid_source_id(&self) -> String {
        let q = match self.flavor {
            Flavor::MariaDB => "SELECT @@server_id",
            Flavor::MySQL => "SELECT @@server_uuid",
        };
        self.scalar(q).await.unwrap_or_default()
    }

    /// GTIDs in this server's binlog originate from `source_id` only.
    pub async fn binlog_only_from(&self, source_id: &str) -> Result<(), String> {
        match self.flavor {
            Flavor::MariaDB => {
                let pos = self
                    .scalar("SELECT @@gtid_binlog_pos")
                    .await
                    .unwrap_or_default();
                if pos
                    .split(',')
                    .all(|g| g.split('-').nth(1) == Some(source_id))
                {
                    Ok(())
                } else {
                    Err(pos)
                }
            }
            Flavor::MySQL => {
                let set = self.executed().await;
                if set
                    .split(',')
                    .all(|g| g.split(':').next() == Some(source_id))
                {
                    Ok(())
                } else {
                    Err(set)
                }
            }
        }
    }

    pub async fn count(&self, table: &str) -> i64 {
        self.scalar(&format!("SELECT COUNT(*) FROM {table}"))
            .await
            .and_then(|s| s.parse().ok())
            .unwrap_or(-1)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Credentials like the operator's Secret.
pub fn credentials() -> Credentials {
    let mut m = std::collections::BTreeMap::new();
    m.insert("root-password".to_string(), ROOT_PW.to_string());
    m.insert("operator-password".to_string(), OP_PW.to_string());
    m.insert("replication-password".to_string(), REPL_PW.to_string());
    Credentials(m)
}

/// A cluster of servers driven by the engine like the reconciler does.
pub struct Cluster {
    pub flavor: Flavor,
    pub servers: Vec<Server>,
    pub engine: MySqlEngine,
    pub state: ReplicationState,
    pub settings: MySqlSettings,
    pub failover: FailoverSpec,
    pub desired_primary: Option<i32>,
    pub last: Option<EngineOutcome>,
    pub events: Vec<String>,
    pub credentials: Credentials,
    /// Per ordinal: (address the operator dials, name the members use)
    /// instead of the server's own address (e.g. proxies).
    pub routes: Vec<Option<(String, String)>>,
    /// Members reported `isolated` (the reconciler's part of
    /// `EngineOutcome::isolate`: SIGKILL, i.e. the pod is deleted).
    pub isolated: Vec<bool>,
    /// Boot an isolated member again at once (the StatefulSet recreates
    /// the pod; it boots read-only).
    pub restart_isolated: bool,
    /// Members isolated so far.
    pub isolations: Vec<i32>,
    /// The last-primary hint handed to the engine (None: no hint).
    pub hint: Option<PrimaryHint>,
}

impl Cluster {
    pub fn new(n: i32) -> Cluster {
        Self::with_config(n, MySqlEngineConfig::default())
    }

    pub fn with_config(n: i32, cfg: MySqlEngineConfig) -> Cluster {
        Self::flavored(Flavor::MariaDB, n, cfg)
    }

    /// `n` servers of `flavor`, driven with `settings.flavor = flavor`.
    pub fn of(flavor: Flavor, n: i32) -> Cluster {
        Self::flavored(flavor, n, MySqlEngineConfig::default())
    }

    pub fn flavored(flavor: Flavor, n: i32, cfg: MySqlEngineConfig) -> Cluster {
        let _ = tracing_subscriber::fmt()
            .with_test_writer()
            .with_env_filter(std::env::var("RUST_LOG").unwrap_or_else(|_| "warn".into()))
            .try_init();
        let servers = (0..n).map(|i| Server::of(flavor, i)).collect();
        Cluster {
            flavor,
            servers,
            engine: MySqlEngine::new(cfg),
            state: ReplicationState::default(),
            settings: MySqlSettings {
                flavor,
                ..Default::default()
            },
            failover: FailoverSpec {
                enabled: true,
                detection_seconds: 2,
                max_lag: None,
            },
            desired_primary: None,
            last: None,
            events: Vec::new(),
            credentials: credentials(),
            routes: (0..n).map(|_| None).collect(),
            isolated: (0..n).map(|_| false).collect(),
            restart_isolated: false,
            isolations: Vec::new(),
            hint: None,
        }
    }

    pub fn input(&self) -> EngineInput<MySqlSettings> {
        EngineInput {
            namespace: "test".into(),
            name: "db".into(),
            members: self
                .servers
                .iter()
                .map(|s| {
                    let mut m = s.member();
                    let i = s.ordinal as usize;
                    if let Some(Some((address, dns))) = self.routes.get(i) {
                        m.address = Some(address.clone());
                        m.dns_name = dns.clone();
                    }
                    m.isolated = self.isolated.get(i).copied().unwrap_or(false);
                    m
                })
                .collect(),
            state: self.state.clone(),
            desired_primary: self.desired_primary,
            failover: self.failover.clone(),
            credentials: self.credentials.clone(),
            now: Utc::now(),
            settings: self.settings.clone(),
            hint: self.hint,
        }
    }

    /// One reconcile pass; the returned state is persisted for the next.
    pub async fn pass(&mut self) -> EngineOutcome {
        let out = self
            .engine
            .reconcile(&self.input())
            .await
            .expect("reconcile");
        for e in &out.events {
            let line = format!("{:?} {}: {}", e.type_, e.reason, e.note);
            eprintln!("event: {line}");
            self.events.push(line);
        }
        self.state = out.state.clone();
        self.last = Some(out.clone());
        self.isolate(&out);
        out
    }

    /// The reconciler's part of `outcome.isolate` (see `isolated`).
    pub fn isolate(&mut self, out: &EngineOutcome) {
        if out.state.operation.is_none() {
            self.isolated.iter_mut().for_each(|i| *i = false);
        }
        for &o in &out.isolate {
            let i = o as usize;
            if self.isolated[i] {
                continue;
            }
            eprintln!("isolate: db-{o}: role label removed, pod deleted");
            self.servers[i].kill();
            if self.restart_isolated {
                self.servers[i].start();
            }
            self.isolated[i] = true;
            self.isolations.push(o);
        }
    }

    /// Pass until `pred` holds, within `timeout`.
    pub async fn converge(
        &mut self,
        timeout: Duration,
        what: &str,
        pred: impl Fn(&EngineOutcome) -> bool,
    ) -> EngineOutcome {
        let timeout = patient(timeout);
        let deadline = Instant::now() + timeout;
        loop {
            let out = self.pass().await;
            if pred(&out) {
                return out;
            }
            if Instant::now() > deadline {
                panic!("not converged within {timeout:?} ({what}); last outcome: {out:#?}");
            }
            tokio::time::sleep(out.requeue_after.min(Duration::from_millis(300))).await;
        }
    }

    pub fn server(&self, ordinal: i32) -> &Server {
        &self.servers[ordinal as usize]
    }

    pub fn server_mut(&mut self, ordinal: i32) -> &mut Server {
        &mut self.servers[ordinal as usize]
    }
}

/// The outcome reports `primary` as Primary and every other member as Replica.
pub fn healthy_with(out: &EngineOutcome, primary: i32) -> bool {
    use ordinal::api::MemberRole;
    out.health == ordinal::engine::Health::Healthy
        && out.state.primary == Some(primary)
        && out.members.iter().all(|m| {
            if m.ordinal == primary {
                m.role == MemberRole::Primary
            } else {
                m.role == MemberRole::Replica
            }
        })
}

/// Create the application schema and user on the primary (binlogged).
pub async fn setup_app(primary: &Server) {
    let mut c = primary.root().await;
    c.query_drop(format!(
        "CREATE DATABASE IF NOT EXISTS app; CREATE USER IF NOT EXISTS 'app'@'%' IDENTIFIED BY '{APP_PW}'; \
         GRANT ALL ON app.* TO 'app'@'%'; \
         CREATE TABLE IF NOT EXISTS app.t (id BIGINT PRIMARY KEY, v VARCHAR(64), at TIMESTAMP(6) DEFAULT CURRENT_TIMESTAMP(6)) ENGINE=InnoDB"
    ))
    .await
    .expect("create app schema");
}

/// Wait until `table` on `s` has `n` rows.
pub async fn wait_rows(s: &Server, table: &str, n: i64, timeout: Duration) {
    let deadline = Instant::now() + patient(timeout);
    loop {
        let c = s.count(table).await;
        if c == n {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{} has {c} rows in {table}, expected {n}",
            s.ip
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
