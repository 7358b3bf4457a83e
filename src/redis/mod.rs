//! The Redis engine: observe every member through the Redis protocol, plan with
//! pure functions ([`plan`]), perform at most one topology step ([`act`]).
//! Streaming backup and restore live in [`backup`], password rotation in [`auth`].
//!
//! What the reconciler does with it:
//! - `RedisEngine::new(RedisEngineConfig::default())`, settings from
//!   [`settings_from_spec`], then `reconcile` per pass; persist
//!   `outcome.state` before the next call and requeue after
//!   `outcome.requeue_after` (1 s steady, 200 ms during operations, during a
//!   detection window 200 ms or the time left in it when shorter). Between
//!   passes the reconciler keeps a primary watch ([`watch`], `crate::watch`):
//!   a pub/sub connection to the confirmed primary whose break (a killed
//!   process closes its sockets) runs a pass at once.
//! - Boot configuration: `replicaof` follows `state.primary` for every member
//!   (the recorded primary included) once it is set; while it is unset every
//!   member replicates from itself (read-only, never syncing) and the engine
//!   adopts the member whose data holds everything the others hold
//!   (`plan::choose_adoption`), never ordinal 0 by default. `replica-announce-ip <dns_name>` is
//!   optional (the engine also matches the pod IP a primary lists its replicas
//!   by); it is needed only where replicas reach the primary from an address
//!   that is not their pod IP.
//! - `state.primary_position` is `<replid>:<offset>` of the primary: the
//!   replication history candidates must share, and the offset `maxLag` is
//!   measured against.
//! - Credentials: `password`; during a rotation also `previous-password`.
//! - Fence before promote: a failover promotes its candidate only once the
//!   old primary cannot take writes — it answers as a replica, or it answers
//!   writable and is made a replica of the candidate first (step `Fence`), or
//!   it does not answer and the reconciler isolated it: the engine lists it
//!   in `outcome.isolate` (step `AwaitingIsolation`) until
//!   `Member::isolated` (role label removed, pod deleted) or `!pod_exists`.
//!   Not fenced by the operation's deadline: the failover is abandoned
//!   (`FenceFailed`) and started again while the primary stays lost.
//! - Freeze before choosing: the replicas still following a lost primary
//!   are made to replicate from themselves (step `Freeze`) before the
//!   candidate is chosen, so none keeps taking its stream once another is
//!   promoted; they are repointed at the new primary afterwards.
//! - Returned primary: one that restarted from its AOF has a fresh
//!   replication ID, so it is judged by the replicas' offsets on the
//!   recorded history (`state.primary_position`), never by key counts
//!   (`plan::returned_decision`).
//! - Durable mode: the promotion step sets `min-replicas-to-write` before
//!   `REPLICAOF NO ONE`; a primary refusing it is `DurabilityNotApplied`;
//!   the default `maxLag` is 0 (see `plan::choose_candidate`).
//! - Replica-side view: no failover while a replica's link to the primary
//!   is up with traffic at most [`plan::REPLICA_VIEW_RECENT_SECS`] old (the
//!   engine keeps `repl-ping-replica-period` at 1 s on every member): the
//!   primary stays `Primary` (keeps its label), health and a Warning event
//!   say `PrimaryUnreachableFromOperator`, and the detection window starts
//!   only once the replicas lose it too.

pub mod act;
pub mod auth;
pub mod backup;
pub mod conn;
pub mod observe;
pub mod plan;
pub mod watch;
pub mod writes;

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use futures::future::join_all;
use tracing::Instrument;

use crate::api::RedisReplicationSpec;
use crate::api::redis::RedisDurability;
use crate::conn_cache::{ConnCache, ConnKey};
use crate::engine::{
    Engine, EngineError, EngineEvent, EngineInput, EngineOutcome, EventType, Health,
};

use conn::Conn;
use observe::Timeouts;
use plan::{MemberView, PlanInput, Timing};

pub use backup::{
    BackupError, BackupOptions, BackupReport, BackupSource, RestoreReport, backup_rdb,
    backup_source_for, restore_rdb,
};

/// Errors of Redis client calls, with the context of what was attempted.
#[derive(Debug, thiserror::Error)]
pub enum RedisError {
    #[error("connecting to {host}:{port}: {source}")]
    Connect {
        host: String,
        port: u16,
        #[source]
        source: redis::RedisError,
    },
    #[error("{what}: {source}")]
    Command {
        what: String,
        #[source]
        source: redis::RedisError,
    },
    #[error("timed out {0}")]
    Timeout(String),
    #[error("unexpected reply: {0}")]
    Protocol(String),
    #[error("no connection to ordinal {0}")]
    NotConnected(i32),
    /// `min-replicas-to-write` could not be set (durable mode not in force).
    #[error("setting min-replicas-to-write {to_write} on ordinal {ordinal}: {source}")]
    Durability {
        ordinal: i32,
        to_write: i64,
        #[source]
        source: Box<RedisError>,
    },
}

impl RedisError {
    pub(crate) fn connect(host: &str, port: u16, source: redis::RedisError) -> Self {
        Self::Connect {
            host: host.to_string(),
            port,
            source,
        }
    }

    /// Whether the call ran out of time (the server may be alive but slow:
    /// a fresh connection would not do better within the same pass).
    pub fn is_timeout(&self) -> bool {
        match self {
            Self::Timeout(_) => true,
            Self::Connect { source, .. } | Self::Command { source, .. } => source.is_timeout(),
            Self::Durability { source, .. } => source.is_timeout(),
            _ => false,
        }
    }

    /// Whether the server refused the password.
    pub fn is_auth_failure(&self) -> bool {
        match self {
            Self::Connect { source, .. } | Self::Command { source, .. } => {
                source.kind() == redis::ErrorKind::AuthenticationFailed
                    || source.to_string().contains("WRONGPASS")
            }
            _ => false,
        }
    }

    pub(crate) fn command(what: &str, source: redis::RedisError) -> Self {
        Self::Command {
            what: what.to_string(),
            source,
        }
    }
}

/// Redis-specific settings taken from the spec.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RedisSettings {
    /// `spec.durability`: `min-replicas-to-write` / `min-replicas-max-lag` on the primary.
    pub durability: Option<RedisDurability>,
}

/// Settings of a `RedisReplication` spec.
pub fn settings_from_spec(spec: &RedisReplicationSpec) -> RedisSettings {
    RedisSettings {
        durability: spec.durability.clone(),
    }
}

/// Tunables of the engine. `Default` is what the operator should use.
#[derive(Clone, Copy, Debug)]
pub struct RedisEngineConfig {
    /// TCP connect timeout of the operator's connections (default 500 ms).
    pub connect_timeout: Duration,
    /// Reply timeout of each command (default 500 ms).
    pub command_timeout: Duration,
    /// Requeue while healthy (default 1 s; it bounds failure detection latency).
    pub steady_requeue: Duration,
    /// Requeue during detection windows and operations (default 200 ms).
    pub active_requeue: Duration,
    /// `FAILOVER … TIMEOUT` of a switchover: how long writes may stay paused
    /// waiting for the target to catch up (default 10 s).
    pub switchover_timeout: Duration,
    /// After this long, a failover stops waiting for its new primary (default 30 s).
    pub failover_deadline: Duration,
    /// Pause before a failed switchover is tried again (default 30 s).
    pub switchover_retry: Duration,
}

impl Default for RedisEngineConfig {
    fn default() -> Self {
        Self {
            connect_timeout: Duration::from_millis(500),
            command_timeout: Duration::from_millis(500),
            steady_requeue: Duration::from_secs(1),
            active_requeue: Duration::from_millis(200),
            switchover_timeout: Duration::from_secs(10),
            failover_deadline: Duration::from_secs(30),
            switchover_retry: Duration::from_secs(30),
        }
    }
}

/// The Redis engine. Everything it needs to resume is in the persisted
/// [`crate::api::ReplicationState`]; between passes it keeps only its own
/// connections to the members ([`ConnCache`]), each used by one pass at a
/// time and dropped on any error.
#[derive(Clone, Debug, Default)]
pub struct RedisEngine {
    config: RedisEngineConfig,
    conns: Arc<ConnCache<Conn>>,
}

/// The user the engine authenticates as (`requirepass`).
const USER: &str = "default";

impl RedisEngine {
    /// Hand the connections used without error back to the cache.
    fn keep(&self, conns: act::Conns, keys: Vec<(i32, ConnKey)>, failed: &HashSet<i32>) {
        for (ordinal, conn) in conns {
            let Some(conn) = conn else { continue };
            if failed.contains(&ordinal) {
                continue;
            }
            if let Some((_, key)) = keys.iter().find(|(o, _)| *o == ordinal) {
                self.conns.put(key.clone(), conn);
            }
        }
    }

    pub fn new(config: RedisEngineConfig) -> Self {
        Self {
            config,
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

    fn timeouts(&self) -> Timeouts {
        Timeouts {
            connect: self.config.connect_timeout,
            command: self.config.command_timeout,
        }
    }

    async fn pass(&self, input: &EngineInput<RedisSettings>) -> Result<EngineOutcome, EngineError> {
        let password = input
            .credentials
            .get("password")
            .ok_or_else(|| EngineError::MissingCredential("password".into()))?;
        let previous = input.credentials.get(auth::PREVIOUS_PASSWORD_KEY);
        let timeouts = self.timeouts();
        let observed = join_all(input.members.iter().map(|m| {
            let span = tracing::debug_span!("observe", member = %m.pod, ordinal = m.ordinal);
            observe_member(m, password, previous, timeouts, &self.conns).instrument(span)
        }))
        .await;
        let mut conns = Vec::with_capacity(observed.len());
        let mut views = Vec::with_capacity(observed.len());
        let mut auth_states = Vec::with_capacity(observed.len());
        let mut keys = Vec::with_capacity(observed.len());
        // Members whose connection saw an error this pass: not kept.
        let mut failed = HashSet::new();
        let mut events = Vec::new();
        for (m, o) in input.members.iter().zip(observed) {
            if o.password_added {
                events.push(EngineEvent {
                    type_: EventType::Normal,
                    reason: "PasswordAdded".into(),
                    note: format!(
                        "{} accepts the new password next to the previous one",
                        m.pod
                    ),
                });
            }
            if let Some(k) = o.key {
                keys.push((m.ordinal, k));
            }
            conns.push((m.ordinal, o.conn));
            auth_states.push((m.ordinal, o.auth));
            views.push(MemberView {
                ordinal: m.ordinal,
                pod: m.pod.clone(),
                dns_name: m.dns_name.clone(),
                address: m.address.clone(),
                port: m.port,
                obs: o.node,
                isolated: m.isolated || !m.pod_exists,
            });
        }
        let plan = plan::plan(&PlanInput {
            members: &views,
            state: &input.state,
            desired_primary: input.desired_primary,
            failover: &input.failover,
            durability: input.settings.durability.as_ref(),
            now: input.now,
            timing: Timing {
                steady: self.config.steady_requeue,
                active: self.config.active_requeue,
                switchover_timeout: self.config.switchover_timeout,
                failover_deadline: self.config.failover_deadline,
                switchover_retry: self.config.switchover_retry,
            },
            hint: input.hint,
        });
        events.extend(plan.events);
        let mut health = plan.health;
        let mut state = plan.state;
        let mut members = plan.members;
        if let Some(step) = &plan.step {
            match act::perform(step, &views, &mut conns).await {
                Ok(()) => {
                    events.extend(plan.step_events);
                    if let plan::Action::Promote { ordinal, .. } = step
                        && state.primary == Some(*ordinal)
                    {
                        confirm_promoted(*ordinal, &mut conns, &mut members, &mut failed).await;
                    }
                }
                Err(e) => {
                    let what = step.describe(&views);
                    tracing::warn!(error = %e, step = %what, "step failed");
                    // Which connection failed is not told apart: keep none.
                    failed.extend(views.iter().map(|v| v.ordinal));
                    state = plan.fallback;
                    // A failed fence stops the failover here; the persisted
                    // fence step retries it until the operation's deadline.
                    let (reason, msg) = if let RedisError::Durability { .. } = &e {
                        (
                            plan::REASON_DURABILITY_NOT_APPLIED,
                            format!("{what} failed: {e}; not promoted without it, retrying"),
                        )
                    } else if plan.step_is_fence {
                        (
                            "FenceFailed",
                            format!("{what} failed: {e}; nothing promoted, retrying"),
                        )
                    } else {
                        ("StepFailed", format!("{what} failed: {e}"))
                    };
                    events.push(EngineEvent {
                        type_: EventType::Warning,
                        reason: reason.into(),
                        note: msg.clone(),
                    });
                    health = Health::Unhealthy {
                        reason: reason.into(),
                        message: msg,
                    };
                }
            }
        }
        for s in &plan.settings {
            if let Err(e) = act::perform(s, &views, &mut conns).await {
                let what = s.describe(&views);
                tracing::warn!(error = %e, action = %what, "applying settings failed");
                failed.extend(views.iter().map(|v| v.ordinal));
                // The primary without its min-replicas-to-write is not in
                // durable mode: say so in health, not only in the log.
                if let plan::Action::SetMinReplicas {
                    ordinal, to_write, ..
                } = s
                    && *to_write > 0
                    && state.primary == Some(*ordinal)
                {
                    let msg = format!(
                        "{what} failed: {e}; the primary accepts writes without the durability spec.durability asks for"
                    );
                    health = Health::Unhealthy {
                        reason: plan::REASON_DURABILITY_NOT_APPLIED.into(),
                        message: msg,
                    };
                }
            }
        }
        events
            .extend(rotate_passwords(&auth_states, password, &mut conns, input, &mut failed).await);
        let primary_writes = probe_writes(&members, &mut conns, &mut failed).await;
        self.keep(conns, keys, &failed);
        Ok(EngineOutcome {
            state,
            members,
            health,
            events,
            requeue_after: plan.requeue,
            isolate: plan.isolate,
            primary_writes,
        })
    }
}

/// Read a just-promoted member again so it is reported `Primary` in the same
/// pass once it answers as a writable primary.
async fn confirm_promoted(
    ordinal: i32,
    conns: &mut act::Conns,
    members: &mut [crate::api::MemberStatus],
    failed: &mut HashSet<i32>,
) {
    let Some(c) = conns
        .iter_mut()
        .find(|(o, _)| *o == ordinal)
        .and_then(|(_, c)| c.as_mut())
    else {
        return;
    };
    match observe::observe(c).await {
        Ok(n) => {
            if let Some(st) = members.iter_mut().find(|m| m.ordinal == ordinal) {
                plan::confirm_primary(st, &n);
            }
        }
        Err(e) => {
            failed.insert(ordinal);
            tracing::warn!(ordinal, error = %e, "re-reading the promoted member failed")
        }
    }
}

/// Whether the member reported primary accepts writes (`NOREPLICAS` aside,
/// a confirmed primary is writable).
async fn probe_writes(
    members: &[crate::api::MemberStatus],
    conns: &mut act::Conns,
    failed: &mut HashSet<i32>,
) -> crate::engine::PrimaryWrites {
    let Some(primary) = members
        .iter()
        .find(|m| m.role == crate::api::MemberRole::Primary)
    else {
        return crate::engine::PrimaryWrites::Unknown;
    };
    let Some(c) = conns
        .iter_mut()
        .find(|(o, _)| *o == primary.ordinal)
        .and_then(|(_, c)| c.as_mut())
    else {
        return crate::engine::PrimaryWrites::Unknown;
    };
    writes::probe(c).await.unwrap_or_else(|e| {
        failed.insert(primary.ordinal);
        tracing::debug!(error = %e, "probing the primary's writes failed");
        crate::engine::PrimaryWrites::Unknown
    })
}

/// One member's observation.
struct Observed {
    conn: Option<Conn>,
    /// Where `conn` is kept after the pass (None: not kept, e.g. opened with
    /// the previous password).
    key: Option<ConnKey>,
    node: Result<observe::NodeInfo, String>,
    auth: Option<auth::AuthState>,
    password_added: bool,
}

/// The member's connection kept from an earlier pass, read once; or a fresh
/// one. A kept connection that fails for any reason is dropped; unless it ran
/// out of time (the server is slow or gone: a fresh connection would not do
/// better in this pass) a fresh connection is opened and read at once, so a
/// restarted member is never reported unreachable because of a stale
/// connection.
async fn connect_and_observe(
    addr: &str,
    port: u16,
    password: &str,
    timeouts: Timeouts,
    cache: &ConnCache<Conn>,
    key: &ConnKey,
) -> Result<(Conn, observe::NodeInfo), RedisError> {
    if let Some(mut c) = cache.take(key) {
        match observe::observe(&mut c).await {
            Ok(n) => return Ok((c, n)),
            Err(e) if e.is_timeout() => return Err(e),
            Err(e) => tracing::debug!(error = %e, "kept connection failed; reconnecting"),
        }
    }
    let mut c = Conn::connect(addr, port, password, timeouts).await?;
    let n = observe::observe(&mut c).await?;
    Ok((c, n))
}

/// Connect (with the previous password during a rotation, adding the new one),
/// then read replication and authentication state.
async fn observe_member(
    m: &crate::engine::Member,
    password: &str,
    previous: Option<&str>,
    timeouts: Timeouts,
    cache: &ConnCache<Conn>,
) -> Observed {
    let fail = |e: String| Observed {
        conn: None,
        key: None,
        node: Err(e),
        auth: None,
        password_added: false,
    };
    let Some(addr) = m.address.as_deref() else {
        return fail("the pod has no IP address".to_string());
    };
    let key = cache.key(addr, m.port, USER, password);
    let mut password_added = false;
    let (mut c, node, mut key) =
        match connect_and_observe(addr, m.port, password, timeouts, cache, &key).await {
            Ok((c, n)) => (c, n, Some(key)),
            Err(e) if e.is_auth_failure() && previous.is_some() => {
                let old = previous.unwrap_or_default();
                let mut c = match Conn::connect(addr, m.port, old, timeouts).await {
                    Ok(c) => c,
                    Err(e2) => return fail(format!("{e}; with the previous password: {e2}")),
                };
                if let Err(e) = auth::add_password(&mut c, password).await {
                    return fail(e.to_string());
                }
                tracing::info!("added the new password next to the previous one");
                password_added = true;
                let node = match observe::observe(&mut c).await {
                    Ok(n) => n,
                    Err(e) => return fail(e.to_string()),
                };
                (c, node, None)
            }
            Err(e) => return fail(e.to_string()),
        };
    let auth = match auth::observe_auth(&mut c, password).await {
        Ok(a) => Some(a),
        Err(e) => {
            tracing::warn!(error = %e, "cannot read the authentication settings");
            key = None;
            None
        }
    };
    Observed {
        conn: Some(c),
        key,
        node: Ok(node),
        auth,
        password_added,
    }
}

/// Bring `masterauth` to the current password and, once every member uses
/// it, drop previous passwords.
async fn rotate_passwords(
    states: &[(i32, Option<auth::AuthState>)],
    password: &str,
    conns: &mut act::Conns,
    input: &EngineInput<RedisSettings>,
    failed: &mut HashSet<i32>,
) -> Vec<EngineEvent> {
    let plan = auth::plan_auth(states, password);
    let pod = |o: i32| {
        input
            .members
            .iter()
            .find(|m| m.ordinal == o)
            .map(|m| m.pod.clone())
            .unwrap_or_default()
    };
    let mut events = Vec::new();
    for o in plan.set_masterauth {
        let Some(c) = conns
            .iter_mut()
            .find(|(x, _)| *x == o)
            .and_then(|(_, c)| c.as_mut())
        else {
            continue;
        };
        if let Err(e) = auth::set_masterauth(c, password).await {
            failed.insert(o);
            tracing::warn!(ordinal = o, error = %e, "setting masterauth failed");
        }
    }
    for o in plan.drop_old {
        let Some(c) = conns
            .iter_mut()
            .find(|(x, _)| *x == o)
            .and_then(|(_, c)| c.as_mut())
        else {
            continue;
        };
        match auth::drop_other_passwords(c, password).await {
            Ok(()) => events.push(EngineEvent {
                type_: EventType::Normal,
                reason: "PasswordRotated".into(),
                note: format!("{} accepts only the new password now", pod(o)),
            }),
            Err(e) => {
                failed.insert(o);
                tracing::warn!(ordinal = o, error = %e, "dropping the old password failed")
            }
        }
    }
    events
}

impl Engine for RedisEngine {
    type Settings = RedisSettings;

    async fn reconcile(
        &self,
        input: &EngineInput<RedisSettings>,
    ) -> Result<EngineOutcome, EngineError> {
        let span = tracing::info_span!("redis_reconcile", namespace = %input.namespace, name = %input.name, term = input.state.term);
        self.pass(input).instrument(span).await
    }

    fn watch_primary(
        &self,
        primary: &crate::engine::Member,
        credentials: &crate::engine::Credentials,
    ) -> crate::engine::WatchOpening {
        use futures::FutureExt;
        let (Some(host), Some(password)) = (primary.address.clone(), credentials.get("password"))
        else {
            return futures::future::ready(Err(EngineError::Other(
                "primary watch: no address or password".into(),
            )))
            .boxed();
        };
        watch::opening(host, primary.port, password.to_string(), self.timeouts())
    }
}
