//! Carrying out planned actions with client calls.

use super::RedisError;
use super::conn::Conn;
use super::plan::{Action, MemberView};

/// Connections of this pass, by ordinal (None when the member was unreachable).
pub type Conns = Vec<(i32, Option<Conn>)>;

fn conn(conns: &mut Conns, ordinal: i32) -> Result<&mut Conn, RedisError> {
    conns
        .iter_mut()
        .find(|(o, _)| *o == ordinal)
        .and_then(|(_, c)| c.as_mut())
        .ok_or(RedisError::NotConnected(ordinal))
}

async fn ok(cmd: &redis::Cmd, c: &mut Conn, what: &str) -> Result<(), RedisError> {
    let _: redis::Value = cmd
        .query_async(c)
        .await
        .map_err(|e| RedisError::command(what, e))?;
    Ok(())
}

async fn set_min_replicas(c: &mut Conn, to_write: i64, max_lag: i64) -> Result<(), RedisError> {
    ok(
        redis::cmd("CONFIG")
            .arg("SET")
            .arg("min-replicas-to-write")
            .arg(to_write)
            .arg("min-replicas-max-lag")
            .arg(max_lag),
        c,
        "CONFIG SET min-replicas",
    )
    .await
}

/// Perform one action.
pub async fn perform(
    action: &Action,
    members: &[MemberView],
    conns: &mut Conns,
) -> Result<(), RedisError> {
    match action {
        Action::Promote {
            ordinal,
            durability,
        } => {
            let c = conn(conns, *ordinal)?;
            if let Some(d) = durability {
                tracing::info!(
                    ordinal,
                    to_write = d.to_write,
                    max_lag = d.max_lag,
                    "CONFIG SET min-replicas before promotion"
                );
                set_min_replicas(c, d.to_write, d.max_lag)
                    .await
                    .map_err(|e| RedisError::Durability {
                        ordinal: *ordinal,
                        to_write: d.to_write,
                        source: Box::new(e),
                    })?;
            }
            tracing::info!(ordinal, "REPLICAOF NO ONE");
            ok(
                redis::cmd("REPLICAOF").arg("NO").arg("ONE"),
                c,
                "REPLICAOF NO ONE",
            )
            .await
        }
        Action::Detach { ordinals } => {
            let mut first_err = None;
            for o in ordinals {
                let Some(m) = members.iter().find(|m| m.ordinal == *o) else {
                    continue;
                };
                tracing::info!(ordinal = o, "REPLICAOF itself (freeze)");
                let res = match conn(conns, *o) {
                    Ok(c) => {
                        ok(
                            redis::cmd("REPLICAOF").arg(&m.dns_name).arg(m.port),
                            c,
                            "REPLICAOF itself",
                        )
                        .await
                    }
                    Err(e) => Err(e),
                };
                if let Err(e) = res {
                    tracing::warn!(ordinal = o, error = %e, "freezing a replica failed");
                    first_err.get_or_insert(e);
                }
            }
            first_err.map_or(Ok(()), Err)
        }
        Action::Replicate { ordinals, primary } => {
            let target = members
                .iter()
                .find(|m| m.ordinal == *primary)
                .ok_or(RedisError::NotConnected(*primary))?;
            let mut first_err = None;
            for o in ordinals {
                tracing::info!(ordinal = o, primary, host = %target.dns_name, "REPLICAOF");
                let res = match conn(conns, *o) {
                    Ok(c) => {
                        ok(
                            redis::cmd("REPLICAOF")
                                .arg(&target.dns_name)
                                .arg(target.port),
                            c,
                            "REPLICAOF",
                        )
                        .await
                    }
                    Err(e) => Err(e),
                };
                if let Err(e) = res {
                    tracing::warn!(ordinal = o, error = %e, "REPLICAOF failed");
                    first_err.get_or_insert(e);
                }
            }
            first_err.map_or(Ok(()), Err)
        }
        Action::Failover {
            primary,
            host,
            port,
            timeout_ms,
        } => {
            tracing::info!(ordinal = primary, host, port, timeout_ms, "FAILOVER TO");
            let c = conn(conns, *primary)?;
            ok(
                redis::cmd("FAILOVER")
                    .arg("TO")
                    .arg(host)
                    .arg(*port)
                    .arg("TIMEOUT")
                    .arg(*timeout_ms),
                c,
                "FAILOVER TO",
            )
            .await
        }
        Action::AbortFailover { primary } => {
            tracing::warn!(ordinal = primary, "FAILOVER ABORT");
            let c = conn(conns, *primary)?;
            ok(redis::cmd("FAILOVER").arg("ABORT"), c, "FAILOVER ABORT").await
        }
        Action::SetMinReplicas {
            ordinal,
            to_write,
            max_lag,
        } => {
            tracing::info!(ordinal, to_write, max_lag, "CONFIG SET min-replicas");
            let c = conn(conns, *ordinal)?;
            set_min_replicas(c, *to_write, *max_lag).await
        }
        Action::SetPingPeriod { ordinal, secs } => {
            tracing::info!(ordinal, secs, "CONFIG SET repl-ping-replica-period");
            let c = conn(conns, *ordinal)?;
            ok(
                redis::cmd("CONFIG")
                    .arg("SET")
                    .arg("repl-ping-replica-period")
                    .arg(*secs),
                c,
                "CONFIG SET repl-ping-replica-period",
            )
            .await
        }
    }
}
