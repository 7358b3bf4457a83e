//! The Redis engine: observe every member through the Redis protocol, plan with
//! pure functions ([`plan`]), perform at most one topology step ([`act`]).
//! Streaming backup and restore live in [`backup`].

pub mod act;
pub mod backup;
pub mod observe;
pub mod plan;

use std::time::Duration;

use futures::future::join_all;
use tracing::Instrument;

use crate::api::RedisReplicationSpec;
use crate::api::redis::RedisDurability;
use crate::engine::{
    Engine, EngineError, EngineEvent, EngineInput, EngineOutcome, EventType, Health,
};

use observe::Timeouts;
use plan::{MemberView, PlanInput, Timing};

pub use backup::{BackupError, BackupReport, RestoreReport, backup_rdb, restore_rdb};

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
}

impl RedisError {
    pub(crate) fn connect(host: &str, port: u16, source: redis::RedisError) -> Self {
        Self::Connect {
            host: host.to_string(),
            port,
            source,
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

/// The Redis engine. Stateless between passes: everything it needs to resume
/// is in the persisted [`crate::api::ReplicationState`].
#[derive(Clone, Debug, Default)]
pub struct RedisEngine {
    config: RedisEngineConfig,
}

impl RedisEngine {
    pub fn new(config: RedisEngineConfig) -> Self {
        Self { config }
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
        let timeouts = self.timeouts();
        let observed = join_all(input.members.iter().map(|m| {
            let span = tracing::debug_span!("observe", member = %m.pod, ordinal = m.ordinal);
            async move {
                let Some(addr) = m.address.as_deref() else {
                    return (None, Err("the pod has no IP address".to_string()));
                };
                match observe::connect(addr, m.port, password, timeouts).await {
                    Err(e) => (None, Err(e.to_string())),
                    Ok(mut c) => match observe::observe(&mut c).await {
                        Ok(n) => (Some(c), Ok(n)),
                        Err(e) => (None, Err(e.to_string())),
                    },
                }
            }
            .instrument(span)
        }))
        .await;
        let mut conns = Vec::with_capacity(observed.len());
        let mut views = Vec::with_capacity(observed.len());
        for (m, (c, obs)) in input.members.iter().zip(observed) {
            conns.push((m.ordinal, c));
            views.push(MemberView {
                ordinal: m.ordinal,
                pod: m.pod.clone(),
                dns_name: m.dns_name.clone(),
                address: m.address.clone(),
                port: m.port,
                obs,
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
        });
        let mut events = plan.events;
        let mut health = plan.health;
        let mut state = plan.state;
        if let Some(step) = &plan.step {
            match act::perform(step, &views, &mut conns).await {
                Ok(()) => events.extend(plan.step_events),
                Err(e) => {
                    tracing::warn!(error = %e, ?step, "step failed");
                    state = plan.fallback;
                    let msg = format!("{step:?} failed: {e}");
                    events.push(EngineEvent {
                        type_: EventType::Warning,
                        reason: "StepFailed".into(),
                        note: msg.clone(),
                    });
                    health = Health::Unhealthy {
                        reason: "StepFailed".into(),
                        message: msg,
                    };
                }
            }
        }
        for s in &plan.settings {
            if let Err(e) = act::perform(s, &views, &mut conns).await {
                tracing::warn!(error = %e, "applying durability settings failed");
            }
        }
        Ok(EngineOutcome {
            state,
            members: plan.members,
            health,
            events,
            requeue_after: plan.requeue,
        })
    }
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
}
