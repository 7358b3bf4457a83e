//! The MySQL/MariaDB engine: GTID replication, failover, switchover, errant
//! transaction quarantine, lossless semi-sync, streamed backup and restore,
//! re-seeding of replicas whose binlogs were purged.
//!
//! Layout: [`flavor`] holds every dialect difference, [`gtid`] the GTID set
//! arithmetic, [`observe`] reads members, [`plan`] decides (pure, unit
//! tested without I/O), [`act`] performs, [`backup`] dumps and restores.
//!
//! # What the reconciler renders
//! [`MySqlEngine::mysqld_config`] lists the `[mysqld]` lines of a member:
//! `server_id = serverIdBase + ordinal`, `log_bin`, `log_slave_updates`,
//! `binlog_format=ROW`, GTID settings (MariaDB `gtid_strict_mode`; MySQL
//! `gtid_mode`, `enforce_gtid_consistency`, the semi-sync plugins),
//! `relay_log_recovery`, `report_host`, `skip_slave_start` and `read_only=ON`
//! (MySQL: `super_read_only=ON` too) on every member, the primary included:
//! the engine turns writes on for the confirmed primary only.
//!
//! # A pass
//! Every member is observed concurrently with short timeouts (a member that
//! does not answer is `Unknown`, never errant); the primary's executed GTIDs
//! are read again afterwards so a replica sampled later is not mistaken for
//! errant. The pure planner then picks at most one topology step; its state
//! is persisted by the reconciler before the next pass (`state.operation`
//! carries failover/switchover steps, deadlines and data, so a restarted
//! operator resumes).
//!
//! # Semantics worth knowing
//! * Errant transactions: MariaDB positions are compared with the primary's
//!   `gtid_binlog_state` (one entry per domain and originating server), MySQL
//!   sets with `GTID_SUBTRACT` semantics. A member with errant transactions is
//!   `Quarantined`: fenced read-only, never promoted, never repointed, data kept.
//! * Failover candidates are chosen by what they **received** (executed plus
//!   relay log: `Gtid_IO_Pos` / `Retrieved_Gtid_Set`) once every replica's IO
//!   thread is stopped: the candidate must hold every transaction the other
//!   reachable replicas received, and lack at most `failover.maxLag`
//!   transactions (default 0) of the last primary position. It then applies
//!   all of it (step `ApplyRelayLog`; a SQL thread stopped without an error
//!   is started, one stopped with an error is reported `ReplicaApplierFailed`
//!   and waited on) and is promoted only then, within the operation's
//!   deadline; the promotion itself re-checks, with replication stopped, that
//!   nothing received is unapplied before `RESET SLAVE ALL`.
//! * A primary that answers read-only (it restarted) while a member holds
//!   transactions the primary itself originated and lacks is stale
//!   (`PrimaryStale`; lost in a crash): it is not made writable and is
//!   replaced; the members holding more are candidates, not errant. A member
//!   lacking transactions it originated itself (emptied, or such a returned
//!   primary) is re-seeded rather than repointed, since replication skips
//!   events of its own server id.
//! * Durability: `SemiSync` renders `sync_binlog = 1` and
//!   `innodb_flush_log_at_trx_commit = 1`; health reports `SemiSyncOff` /
//!   `SemiSyncNoReplicas` from the primary's `Rpl_semi_sync_*_status` and
//!   `*_clients`.
//! * Semi-sync: MariaDB waits for exactly one acknowledgement (it has no
//!   wait-count variable); `waitForReplicas > 1` is honoured on MySQL only
//!   (`rpl_semi_sync_source_wait_for_replica_count`). Without
//!   `allowAsyncFallback` the timeout is ~49 days, i.e. no silent fallback.
//!   Fencing kills client connections before `read_only=ON` and every
//!   statement has a timeout, so a primary stuck waiting for acknowledgements
//!   never blocks a failover.
//! * Fence before promote: a failover promotes only once the old primary
//!   answers read-only (MySQL: `super_read_only`), or is fenced in the same
//!   pass by a critical step before the promotion (a failed fence stops the
//!   pass, reported `FenceFailed`), or does not answer and the reconciler
//!   isolated it (`outcome.isolate`, step `AwaitingIsolation`, until
//!   `Member::isolated` or `!pod_exists`); otherwise it is abandoned at the
//!   operation's deadline (`FenceFailed`).
//! * Replica-side view: replicas are pointed with a 1 s source heartbeat and
//!   a 4 s net timeout, so `Slave_IO_Running=Yes` means "heard from the
//!   source within 4 s" (MySQL also reports the last heartbeat/transaction
//!   time in performance_schema). While a replica connected to the primary
//!   heard from it within [`plan::REPLICA_VIEW_RECENT_SECS`], an unreachable
//!   primary is not failed over: it stays `Primary` (keeps its label) and
//!   health/event say `PrimaryUnreachableFromOperator`.
//! * A member that lacks transactions its source purged from the binlogs
//!   (1236 "could not find GTID state", or a new member behind the oldest
//!   binlog's Gtid_list) is re-seeded: its user schemas are dropped, a fresh
//!   dump of the primary is streamed into it (accounts included) and it
//!   replicates from the dump's GTID position. The decision is first
//!   persisted (`status.reseeds`), and the seed starts on the next pass; it
//!   runs as a background task of the engine (aborted when the engine is
//!   dropped) and the member is reported as re-seeding meanwhile. A recorded
//!   seed that no task runs (operator restarted, or it failed) starts again
//!   from scratch, whatever the member's GTID position says. Only members
//!   without errant transactions are re-seeded.
//! * Bootstrap with no recorded primary: an empty cluster starts with
//!   ordinal 0; if members already hold data (status lost, restored
//!   ordinal 0) every member must answer and the one holding every other's
//!   transactions is adopted; diverged members are refused.
//! * Application users must not hold `SUPER`/`READ_ONLY ADMIN` on MariaDB,
//!   which has no `super_read_only`: such users could write on a fenced member.
//! * MySQL 8.0.23+/8.4 SQL is covered by unit tests of the generated
//!   statements only (no MySQL server in CI); restore on MySQL needs 8.2+
//!   (`RESET BINARY LOGS AND GTIDS`). MariaDB 10.11 is tested end to end.

pub mod act;
pub mod backup;
pub mod flavor;
pub mod gtid;
pub mod observe;
pub mod plan;
pub mod watch;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use futures::future::join_all;
use mysql_async::Conn;

use crate::api::mysql::MySqlReplication;
use crate::api::{MemberRole, MySQLClusterSpec, MySqlFlavor};
use crate::conn_cache::{ConnCache, ConnKey};
use crate::engine::{
    Engine, EngineError, EngineEvent, EngineInput, EngineOutcome, EventType, Health, Member,
};

use flavor::Dialect;
use observe::{Login, Observed};
use plan::{Action, OpTimeouts, PlanInput, View};

/// Errors of the MySQL engine's database work.
#[derive(Debug, thiserror::Error)]
pub enum MySqlError {
    #[error("{context}: {source}")]
    Sql {
        context: String,
        #[source]
        source: mysql_async::Error,
    },
    #[error("timed out: {0}")]
    Timeout(String),
    #[error("{0}")]
    Unexpected(String),
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
    #[error("backup artifact invalid: {0}")]
    Corrupt(String),
}

impl MySqlError {
    /// Whether the connection the error happened on can serve another query:
    /// only when the server answered with an error. After a timeout (the
    /// statement may still run and its answer is unread) or an I/O or driver
    /// error it cannot, so the step fails and the connection is not handed
    /// back to the connection cache.
    pub fn connection_usable(&self) -> bool {
        matches!(
            self,
            MySqlError::Sql {
                source: mysql_async::Error::Server(_),
                ..
            }
        )
    }
}

/// Engine-specific settings taken from the `MySQLCluster` spec.
#[derive(Clone, Debug, PartialEq)]
pub struct MySqlSettings {
    pub flavor: MySqlFlavor,
    pub replication: MySqlReplication,
    pub server_id_base: i64,
}

impl Default for MySqlSettings {
    fn default() -> Self {
        Self {
            flavor: MySqlFlavor::MariaDB,
            replication: MySqlReplication::default(),
            server_id_base: 100,
        }
    }
}

/// Timeouts and user names of the engine.
#[derive(Clone, Debug)]
pub struct MySqlEngineConfig {
    pub connect_timeout: Duration,
    pub query_timeout: Duration,
    pub timeouts: OpTimeouts,
    pub operator_user: String,
    pub replication_user: String,
}

impl Default for MySqlEngineConfig {
    fn default() -> Self {
        Self {
            connect_timeout: Duration::from_secs(1),
            query_timeout: Duration::from_secs(2),
            timeouts: OpTimeouts::default(),
            operator_user: "ordinal".into(),
            replication_user: REPLICATION_USER.into(),
        }
    }
}

/// Re-seeds running in the background, by `namespace/name/ordinal`.
type Reseeds = Arc<std::sync::Mutex<ReseedTasks>>;

/// The background re-seed tasks of an engine; they end with it (a new
/// engine resumes them from `ReplicationState::reseeds`).
#[derive(Debug, Default)]
struct ReseedTasks(HashMap<String, tokio::task::JoinHandle<Result<String, MySqlError>>>);

impl Drop for ReseedTasks {
    fn drop(&mut self) {
        for handle in self.0.values() {
            handle.abort();
        }
    }
}

/// The MySQL/MariaDB engine.
#[derive(Clone, Debug, Default)]
pub struct MySqlEngine {
    cfg: MySqlEngineConfig,
    /// A re-seed (dump of the primary streamed into a replica) can take long:
    /// it runs as a background task so passes (and failover detection) go on;
    /// the member is reported as being re-seeded meanwhile.
    reseeds: Reseeds,
    /// Digest of the credentials last applied, per `namespace/name`.
    applied_creds: Arc<std::sync::Mutex<HashMap<String, String>>>,
    /// The operator user's connections to the members, kept across passes:
    /// used by one pass at a time, handed back only when every query on it
    /// completed (see [`crate::conn_cache`]).
    conns: Arc<ConnCache<Conn>>,
}

/// One member's observation: its connection, what was read, and where the
/// connection is kept after the pass (None: not kept).
type MemberObservation = (Option<Conn>, Result<Observed, String>, Option<ConnKey>);

/// Message of a member whose re-seed is running (reported, never acted upon).
pub const RESEEDING: &str = "re-seeding from a dump of the primary";

/// The user replicas (and the binlog archiver) connect to the primary as:
/// REPLICATION SLAVE only.
pub const REPLICATION_USER: &str = "repl";

/// Credential keys of the cluster Secret.
pub const ROOT_PASSWORD: &str = "root-password";
pub const OPERATOR_PASSWORD: &str = "operator-password";
pub const REPLICATION_PASSWORD: &str = "replication-password";

#[derive(Clone)]
pub(crate) struct Creds {
    root: String,
    operator: String,
    replication: String,
}

impl MySqlEngine {
    pub fn new(cfg: MySqlEngineConfig) -> Self {
        Self {
            cfg,
            reseeds: Reseeds::default(),
            applied_creds: Default::default(),
            conns: Arc::default(),
        }
    }

    /// Mirror the number of kept connections in `gauge`.
    pub fn with_connection_gauge(
        mut self,
        gauge: prometheus_client::metrics::gauge::Gauge,
    ) -> Self {
        self.conns = Arc::new(ConnCache::default().with_gauge(gauge));
        self
    }

    /// Connections kept for the next pass (for tests and metrics).
    pub fn cached_connections(&self) -> usize {
        self.conns.len()
    }

    /// Hand the connections used without error back to the cache.
    fn keep(&self, conns: Vec<Option<Conn>>, keys: Vec<Option<ConnKey>>) {
        for (conn, key) in conns.into_iter().zip(keys) {
            if let (Some(conn), Some(key)) = (conn, key) {
                self.conns.put(key, conn);
            }
        }
    }

    fn reseed_key(input: &EngineInput<MySqlSettings>, ordinal: i32) -> String {
        format!("{}/{}/{ordinal}", input.namespace, input.name)
    }

    /// Collect finished re-seeds of this cluster (as events) and return the
    /// ordinals still being re-seeded and those seeded successfully.
    async fn poll_reseeds(
        &self,
        input: &EngineInput<MySqlSettings>,
        events: &mut Vec<EngineEvent>,
    ) -> (Vec<i32>, Vec<i32>) {
        let mut finished = Vec::new();
        let mut running = Vec::new();
        let mut seeded = Vec::new();
        if let Ok(mut map) = self.reseeds.lock() {
            for m in &input.members {
                let key = Self::reseed_key(input, m.ordinal);
                match map.0.get(&key) {
                    Some(h) if h.is_finished() => {
                        if let Some(h) = map.0.remove(&key) {
                            finished.push((m.ordinal, m.pod.clone(), h));
                        }
                    }
                    Some(_) => running.push(m.ordinal),
                    None => {}
                }
            }
        }
        for (ordinal, pod, h) in finished {
            match h.await {
                Ok(Ok(gtid)) => {
                    seeded.push(ordinal);
                    events.push(EngineEvent {
                        type_: EventType::Normal,
                        reason: "Reseeded".into(),
                        note: format!("{pod} was seeded from a fresh dump of the primary at GTID {gtid} and replicates from there"),
                    })
                }
                Ok(Err(e)) => events.push(EngineEvent {
                    type_: EventType::Warning,
                    reason: "ReseedFailed".into(),
                    note: format!(
                        "seeding {pod} from a dump of the primary failed: {e}; it will be retried"
                    ),
                }),
                Err(e) => events.push(EngineEvent {
                    type_: EventType::Warning,
                    reason: "ReseedFailed".into(),
                    note: format!("seeding {pod} stopped: {e}"),
                }),
            }
        }
        (running, seeded)
    }

    pub fn config(&self) -> &MySqlEngineConfig {
        &self.cfg
    }

    pub fn settings_from_spec(spec: &MySQLClusterSpec) -> MySqlSettings {
        MySqlSettings {
            flavor: spec.flavor,
            replication: spec.replication.clone(),
            server_id_base: spec.server_id_base,
        }
    }

    /// `[mysqld]` lines the reconciler renders for the member with `ordinal`
    /// (besides port, bind-address, datadir and socket, which are its own):
    /// server id, binlog and GTID settings, `report_host`, no DNS lookups of
    /// clients (`skip_name_resolve`), replication
    /// threads not started at boot and read-only at boot on every member.
    /// In `SemiSync` mode also `sync_binlog = 1` and
    /// `innodb_flush_log_at_trx_commit = 1` (see [`Dialect::durable_config`]).
    pub fn mysqld_config(settings: &MySqlSettings, ordinal: i32, report_host: &str) -> Vec<String> {
        let d = Dialect(settings.flavor);
        let mut lines = d.boot_config(settings.server_id_base + i64::from(ordinal), report_host);
        if settings.replication.mode == crate::api::mysql::ReplicationMode::SemiSync {
            lines.extend(d.durable_config());
        }
        lines
    }

    fn creds(input: &EngineInput<MySqlSettings>) -> Result<Creds, EngineError> {
        let get = |k: &str| {
            input
                .credentials
                .get(k)
                .map(str::to_string)
                .ok_or_else(|| EngineError::MissingCredential(k.to_string()))
        };
        Ok(Creds {
            root: get(ROOT_PASSWORD)?,
            operator: get(OPERATOR_PASSWORD)?,
            replication: get(REPLICATION_PASSWORD)?,
        })
    }

    /// Connect as the operator user, falling back to root while the
    /// operator user does not exist yet.
    async fn connect_member(&self, m: &Member, creds: &Creds) -> Result<(Conn, bool), MySqlError> {
        let addr = m
            .address
            .as_deref()
            .ok_or_else(|| MySqlError::Unexpected("pod has no IP yet".into()))?;
        let op = Login {
            user: self.cfg.operator_user.clone(),
            password: creds.operator.clone(),
        };
        match observe::connect(addr, m.port, &op, self.cfg.connect_timeout).await {
            Ok(c) => Ok((c, false)),
            Err(e) if observe::is_access_denied(&e) => {
                let root = Login {
                    user: "root".into(),
                    password: creds.root.clone(),
                };
                let c = observe::connect(addr, m.port, &root, self.cfg.connect_timeout).await?;
                Ok((c, true))
            }
            Err(e) => Err(e),
        }
    }

    /// Read the member through the operator user's connection kept from an
    /// earlier pass, or a fresh one. A kept connection that fails for any
    /// reason is dropped; unless it ran out of time (a fresh connection would
    /// not do better in this pass) a fresh connection is opened and read at
    /// once, so a restarted member (or one whose connections were killed by
    /// fencing) is never reported unreachable because of a stale connection.
    /// Only operator-user connections are kept, never root's.
    async fn observe_member(&self, m: &Member, creds: &Creds, d: Dialect) -> MemberObservation {
        let Some(addr) = m.address.as_deref() else {
            return (None, Err("pod has no IP yet".to_string()), None);
        };
        let key = self
            .conns
            .key(addr, m.port, &self.cfg.operator_user, &creds.operator);
        if let Some(mut conn) = self.conns.take(&key) {
            match observe::observe(&mut conn, d, self.cfg.query_timeout, false).await {
                Ok((o, clean)) => return (Some(conn), Ok(o), clean.then_some(key)),
                Err(e @ MySqlError::Timeout(_)) => return (None, Err(e.to_string()), None),
                Err(e) => {
                    tracing::debug!(member = %m.pod, error = %e, "kept connection failed; reconnecting")
                }
            }
        }
        let (mut conn, via_root) = match self.connect_member(m, creds).await {
            Ok(c) => c,
            Err(e) => return (None, Err(e.to_string()), None),
        };
        match observe::observe(&mut conn, d, self.cfg.query_timeout, via_root).await {
            Ok((o, clean)) => (Some(conn), Ok(o), (clean && !via_root).then_some(key)),
            Err(e) => (None, Err(e.to_string()), None),
        }
    }

    fn root_login(creds: &Creds) -> Login {
        Login {
            user: "root".into(),
            password: creds.root.clone(),
        }
    }
}

impl MySqlEngine {
    /// Whether the member reported primary accepts writes: `@@read_only`
    /// read again after this pass's steps (`super_read_only` implies it).
    async fn probe_writes(
        &self,
        input: &EngineInput<MySqlSettings>,
        members: &[crate::api::MemberStatus],
        conns: &mut [Option<Conn>],
        keys: &mut [Option<ConnKey>],
    ) -> crate::engine::PrimaryWrites {
        use crate::engine::PrimaryWrites;
        let Some(primary) = members.iter().find(|m| m.role == MemberRole::Primary) else {
            return PrimaryWrites::Unknown;
        };
        let Some(idx) = input
            .members
            .iter()
            .position(|m| m.ordinal == primary.ordinal)
        else {
            return PrimaryWrites::Unknown;
        };
        let Some(conn) = conns.get_mut(idx).and_then(Option::as_mut) else {
            return PrimaryWrites::Unknown;
        };
        let read_only =
            match observe::rows(conn, "SELECT @@global.read_only", self.cfg.query_timeout).await {
                Ok(rows) => rows
                    .first()
                    .and_then(|r| r.as_ref(0))
                    .and_then(observe::value_str),
                Err(e) => {
                    tracing::debug!(error = %e, "probing the primary's read_only failed");
                    if let Some(k) = keys.get_mut(idx) {
                        *k = None;
                    }
                    return PrimaryWrites::Unknown;
                }
            };
        writes_from_read_only(read_only.as_deref())
    }
}

/// `@@read_only` of the primary as write availability.
pub fn writes_from_read_only(value: Option<&str>) -> crate::engine::PrimaryWrites {
    use crate::engine::PrimaryWrites;
    match value.map(str::to_ascii_uppercase).as_deref() {
        Some("0" | "OFF") => PrimaryWrites::Accepted,
        Some(_) => PrimaryWrites::Refused {
            reason: "PrimaryReadOnly".into(),
            message: "read_only is ON on the primary; clients' writes fail".into(),
        },
        None => PrimaryWrites::Unknown,
    }
}

impl Engine for MySqlEngine {
    type Settings = MySqlSettings;

    fn watch_primary(
        &self,
        primary: &Member,
        credentials: &crate::engine::Credentials,
    ) -> crate::engine::WatchOpening {
        use futures::FutureExt;
        let (Some(host), Some(password)) =
            (primary.address.clone(), credentials.get(OPERATOR_PASSWORD))
        else {
            return futures::future::ready(Err(EngineError::Other(
                "primary watch: no address or operator password".into(),
            )))
            .boxed();
        };
        let login = Login {
            user: self.cfg.operator_user.clone(),
            password: password.to_string(),
        };
        watch::opening(host, primary.port, login, self.cfg.connect_timeout)
    }

    async fn reconcile(
        &self,
        input: &EngineInput<MySqlSettings>,
    ) -> Result<EngineOutcome, EngineError> {
        let creds = Self::creds(input)?;
        let d = Dialect(input.settings.flavor);
        let (mut observed, mut keys): (Vec<_>, Vec<_>) = join_all(
            input
                .members
                .iter()
                .map(|m| self.observe_member(m, &creds, d)),
        )
        .await
        .into_iter()
        .map(|(c, o, k)| ((c, o), k))
        .unzip();
        // Re-read the primary's position after everyone was sampled (see
        // `Observed::executed_after`). With no recorded primary (adoption),
        // every writable member's: it may keep taking writes meanwhile.
        let reread: Vec<usize> = match input.state.primary {
            Some(p) => input
                .members
                .iter()
                .position(|m| m.ordinal == p)
                .into_iter()
                .collect(),
            None => (0..observed.len())
                .filter(|i| observed[*i].1.as_ref().is_ok_and(|o| o.writable()))
                .collect(),
        };
        for idx in reread {
            let (Some(conn), Ok(o)) = &mut observed[idx] else {
                continue;
            };
            let r = match observe::rows(conn, d.executed_gtid_query(), self.cfg.query_timeout).await
            {
                Ok(r) => r,
                Err(e) => {
                    tracing::debug!(member = %input.members[idx].pod, error = %e, "re-reading the executed GTIDs failed");
                    keys[idx] = None;
                    continue;
                }
            };
            let Some(text) = r
                .first()
                .and_then(|row| row.as_ref(0))
                .and_then(observe::value_str)
            else {
                continue;
            };
            o.executed_after = gtid::GtidSet::parse(d.flavor(), &text).ok();
            o.purged = match observe::purged(conn, d, self.cfg.query_timeout).await {
                Ok(g) => Some(g),
                Err(e) => {
                    tracing::warn!(member = %input.members[idx].pod, error = %e, "cannot read purged GTIDs");
                    keys[idx] = None;
                    None
                }
            };
        }
        // Credentials rotation: compare a digest of the passwords the users
        // were last set up with (kept in memory; after an operator restart a
        // changed password is still caught by the 1045 refusals).
        let cluster_key = format!("{}/{}", input.namespace, input.name);
        let creds_digest = {
            use sha2::{Digest, Sha256};
            let mut h = Sha256::new();
            h.update(creds.operator.as_bytes());
            h.update([0u8]);
            h.update(creds.replication.as_bytes());
            hex::encode(h.finalize())
        };
        let credentials_changed = match self.applied_creds.lock() {
            Ok(mut map) => match map.get(&cluster_key) {
                Some(seen) => *seen != creds_digest,
                None => {
                    map.insert(cluster_key.clone(), creds_digest.clone());
                    false
                }
            },
            Err(_) => false,
        };
        let mut early_events = Vec::new();
        let (busy, seeded) = self.poll_reseeds(input, &mut early_events).await;
        let mut conns: Vec<Option<Conn>> = Vec::with_capacity(observed.len());
        let mut views: Vec<View> = Vec::with_capacity(observed.len());
        for (m, (conn, obs)) in input.members.iter().zip(observed) {
            if let Err(e) = &obs {
                tracing::debug!(member = %m.pod, error = %e, "member unreachable");
            }
            conns.push(conn);
            let obs = if busy.contains(&m.ordinal) {
                Err(RESEEDING.to_string())
            } else {
                obs
            };
            views.push(View {
                ordinal: m.ordinal,
                pod: m.pod.clone(),
                dns_name: m.dns_name.clone(),
                address: m.address.clone(),
                port: m.port,
                obs,
                isolated: m.isolated || !m.pod_exists,
            });
        }
        let plan = plan::plan(&PlanInput {
            views: &views,
            state: &input.state,
            desired_primary: input.desired_primary,
            failover: &input.failover,
            settings: &input.settings,
            now: input.now,
            timeouts: self.cfg.timeouts,
            credentials_changed,
            hint: input.hint,
            reseeded: &seeded,
            reseeding: &busy,
        });

        let cx = act::ActCtx {
            dialect: d,
            query_timeout: self.cfg.query_timeout,
            operator_user: &self.cfg.operator_user,
            replication_user: &self.cfg.replication_user,
            replication_password: &creds.replication,
            operator_password: &creds.operator,
            semi_wait_for: input.settings.replication.wait_for_replicas,
            semi_timeout_ms: if input.settings.replication.allow_async_fallback {
                input.settings.replication.timeout_millis.or(Some(10_000))
            } else {
                None
            },
        };
        let mut state = plan.state.clone();
        let mut members = plan.members.clone();
        let mut events = early_events;
        events.extend(plan.events.iter().cloned());
        let mut health = plan.health.clone();
        let mut failed_critical = false;
        let mut users_applied = false;
        for st in &plan.steps {
            let ord = st.action.ordinal();
            let Some(idx) = input.members.iter().position(|m| m.ordinal == ord) else {
                continue;
            };
            let member = &input.members[idx];
            tracing::info!(member = %member.pod, action = ?st.action, "performing");
            let res = match &st.action {
                Action::EnsureUsers { .. } => {
                    let addr = member.address.clone().unwrap_or_default();
                    match observe::connect(
                        &addr,
                        member.port,
                        &Self::root_login(&creds),
                        self.cfg.connect_timeout,
                    )
                    .await
                    {
                        Ok(mut c) => act::ensure_users(&mut c, &cx).await,
                        Err(e) => Err(e),
                    }
                }
                Action::Reseed { .. } if busy.contains(&ord) => Ok(()),
                Action::Reseed { source, .. } => {
                    match input.members.iter().find(|m| m.ordinal == *source) {
                        Some(src) => {
                            // A plain engine (no registry of its own tasks), so
                            // dropping this engine aborts the task.
                            let (me, src, dst, creds) = (
                                MySqlEngine::new(self.cfg.clone()),
                                src.clone(),
                                member.clone(),
                                creds.clone(),
                            );
                            let handle =
                                tokio::spawn(async move { me.reseed(&src, &dst, &creds, d).await });
                            match self.reseeds.lock() {
                                Ok(mut map) => {
                                    map.0.insert(Self::reseed_key(input, ord), handle);
                                    Ok(())
                                }
                                Err(_) => {
                                    handle.abort();
                                    Err(MySqlError::Unexpected("re-seed registry poisoned".into()))
                                }
                            }
                        }
                        None => Err(MySqlError::Unexpected("source not a member".into())),
                    }
                }
                action => {
                    let source = match action {
                        Action::Repoint { source, .. } => input
                            .members
                            .iter()
                            .find(|m| m.ordinal == *source)
                            .map(|m| (m.dns_name.as_str(), m.port)),
                        _ => None,
                    };
                    match conns[idx].as_mut() {
                        Some(c) => act::perform(c, &cx, action, source).await,
                        None => Err(MySqlError::Unexpected("no connection".into())),
                    }
                }
            };
            if res.is_ok() && matches!(st.action, Action::EnsureUsers { .. }) {
                users_applied = true;
            }
            if let Err(e) = res {
                tracing::warn!(member = %member.pod, action = ?st.action, error = %e, "action failed");
                keys[idx] = None;
                events.push(EngineEvent {
                    type_: EventType::Warning,
                    reason: "ActionFailed".into(),
                    note: format!("{} on {} failed: {e}", action_name(&st.action), member.pod),
                });
                if let Some(ms) = members.iter_mut().find(|m| m.ordinal == ord)
                    && ms.role != MemberRole::Quarantined
                {
                    ms.role = MemberRole::Unknown;
                    ms.message = Some(format!("{} failed: {e}", action_name(&st.action)));
                }
                if st.critical {
                    failed_critical = true;
                    state = plan.fallback.clone();
                    // A failed fence stops the failover (nothing after it
                    // runs); the persisted step retries it until the deadline.
                    let reason = if matches!(st.action, Action::Fence { .. }) {
                        "FenceFailed"
                    } else {
                        "ActionFailed"
                    };
                    if reason == "FenceFailed" {
                        events.push(EngineEvent {
                            type_: EventType::Warning,
                            reason: reason.into(),
                            note: format!(
                                "fencing {} failed: {e}; nothing was promoted, retrying",
                                member.pod
                            ),
                        });
                    }
                    health = Health::Unhealthy {
                        reason: reason.into(),
                        message: format!(
                            "{} on {} failed: {e}",
                            action_name(&st.action),
                            member.pod
                        ),
                    };
                    break;
                }
            }
        }
        if credentials_changed && users_applied {
            if let Ok(mut map) = self.applied_creds.lock() {
                map.insert(cluster_key, creds_digest);
            }
            events.push(EngineEvent {
                type_: EventType::Normal,
                reason: "CredentialsRotated".into(),
                note: "the operator and replication users were updated with the Secret's current passwords".into(),
            });
        }
        if failed_critical {
            // Nothing was confirmed this pass: no member is reported primary
            // unless it already was writable and confirmed.
            for ms in members.iter_mut() {
                if ms.role == MemberRole::Primary && Some(ms.ordinal) != state.primary {
                    ms.role = MemberRole::Unknown;
                }
            }
        }
        let primary_writes = self
            .probe_writes(input, &members, &mut conns, &mut keys)
            .await;
        self.keep(conns, keys);
        Ok(EngineOutcome {
            state,
            members,
            health,
            events,
            requeue_after: if failed_critical {
                Duration::from_secs(1)
            } else {
                plan.requeue
            },
            isolate: plan.isolate.clone(),
            primary_writes,
        })
    }
}

fn action_name(a: &Action) -> &'static str {
    match a {
        Action::EnsureUsers { .. } => "creating users",
        Action::MakeWritable { .. } => "enabling writes",
        Action::Fence { .. } => "fencing (read-only, killing writers)",
        Action::Repoint { .. } => "repointing",
        Action::StartReplication { .. } => "starting replication",
        Action::StopIo { .. } => "stopping the IO thread",
        Action::StartSqlThread { .. } => "starting the SQL thread",
        Action::Promote { .. } => "promotion",
        Action::SemiSyncPrimary { .. } => "enabling semi-sync on the primary",
        Action::SemiSyncPrimaryOff { .. } => "disabling primary semi-sync",
        Action::SemiSyncReplica { .. } => "enabling semi-sync on a replica",
        Action::WaitGtid { .. } => "waiting for GTIDs",
        Action::Reseed { .. } => "re-seeding",
    }
}

#[cfg(test)]
mod writes_tests {
    use super::writes_from_read_only;
    use crate::engine::PrimaryWrites;

    #[test]
    fn a_read_only_primary_refuses_writes() {
        assert_eq!(writes_from_read_only(Some("0")), PrimaryWrites::Accepted);
        assert_eq!(writes_from_read_only(Some("OFF")), PrimaryWrites::Accepted);
        assert!(matches!(
            writes_from_read_only(Some("1")),
            PrimaryWrites::Refused { reason, .. } if reason == "PrimaryReadOnly"
        ));
        assert_eq!(writes_from_read_only(None), PrimaryWrites::Unknown);
    }
}
