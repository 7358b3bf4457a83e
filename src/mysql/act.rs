//! Performing planned actions against members (I/O only, no decisions).

use std::time::Duration;

use mysql_async::Conn;

use super::MySqlError;
use super::flavor::Dialect;
use super::gtid::GtidSet;
use super::observe::{exec, rows, value_str};
use super::plan::Action;

/// Heartbeat period a source uses toward its replicas (seconds).
pub const HEARTBEAT_SECS: u32 = 1;
/// A replica drops a source connection silent for this long (seconds), so
/// `Slave_IO_Running=Yes` means it heard from the source this recently.
pub const NET_TIMEOUT_SECS: u32 = 4;

/// What the executor needs besides the connection.
pub struct ActCtx<'a> {
    pub dialect: Dialect,
    pub query_timeout: Duration,
    pub operator_user: &'a str,
    pub replication_user: &'a str,
    pub replication_password: &'a str,
    pub operator_password: &'a str,
    pub semi_wait_for: i32,
    pub semi_timeout_ms: Option<i64>,
}

async fn run_all(conn: &mut Conn, stmts: &[String], t: Duration) -> Result<(), MySqlError> {
    for s in stmts {
        exec(conn, s, t).await?;
    }
    Ok(())
}

/// The result of a step whose failure the action goes on after: `Ok(true)`
/// when it succeeded, `Ok(false)` when the server refused it (the connection
/// is still in a known state), and the error when the connection is not
/// (a timeout, an I/O error): the action then fails, so the engine does not
/// hand that connection back to the cache nor run more statements on it.
pub fn tolerated<T>(res: Result<T, MySqlError>) -> Result<bool, MySqlError> {
    match res {
        Ok(_) => Ok(true),
        Err(e) if e.connection_usable() => Ok(false),
        Err(e) => Err(e),
    }
}

/// Kill client connections (not replication, not the operator's).
pub async fn kill_writers(conn: &mut Conn, cx: &ActCtx<'_>) -> Result<usize, MySqlError> {
    let q = cx
        .dialect
        .writer_connections_query(&[cx.operator_user, cx.replication_user]);
    let ids = rows(conn, &q, cx.query_timeout).await?;
    let mut n = 0;
    for r in ids {
        if let Some(id) = r
            .as_ref(0)
            .and_then(value_str)
            .and_then(|s| s.parse::<u64>().ok())
        {
            // A connection may end by itself meanwhile: ignore "unknown
            // thread", but not a KILL that timed out (see `tolerated`).
            if tolerated(exec(conn, &cx.dialect.kill_connection(id), cx.query_timeout).await)? {
                n += 1;
            }
        }
    }
    Ok(n)
}

/// Read-only on, writers killed (before, so commits stuck waiting for
/// semi-sync acknowledgements cannot hold the read-only switch, and after).
pub async fn fence(conn: &mut Conn, cx: &ActCtx<'_>) -> Result<(), MySqlError> {
    tolerated(kill_writers(conn, cx).await)?;
    run_all(conn, &cx.dialect.set_read_only(), cx.query_timeout).await?;
    kill_writers(conn, cx).await?;
    Ok(())
}

/// Turn the member into a replica of `host:port`.
pub async fn repoint(
    conn: &mut Conn,
    cx: &ActCtx<'_>,
    host: &str,
    port: u16,
    executed: &str,
) -> Result<(), MySqlError> {
    let d = cx.dialect;
    let t = cx.query_timeout;
    exec(conn, d.stop_replica(), t).await?;
    // Replication may have applied more since the member was observed: align
    // with what it holds now that it is stopped (never an older position,
    // which strict mode would refuse to re-apply).
    let now_pos = rows(conn, d.current_position_query(), t)
        .await?
        .first()
        .and_then(|r| r.as_ref(0))
        .and_then(value_str);
    run_all(
        conn,
        &d.align_slave_pos(now_pos.as_deref().unwrap_or(executed)),
        t,
    )
    .await?;
    exec(
        conn,
        &d.change_source(host, port, cx.replication_user, cx.replication_password),
        t,
    )
    .await?;
    run_all(
        conn,
        &d.replica_liveness(HEARTBEAT_SECS, NET_TIMEOUT_SECS),
        t,
    )
    .await?;
    exec(conn, d.start_replica(), t).await?;
    Ok(())
}

/// Perform one action (not `EnsureUsers` or `Reseed`, which need other
/// connections; see the engine).
pub async fn perform(
    conn: &mut Conn,
    cx: &ActCtx<'_>,
    action: &Action,
    source: Option<(&str, u16)>,
) -> Result<(), MySqlError> {
    let d = cx.dialect;
    let t = cx.query_timeout;
    match action {
        Action::MakeWritable { semi_sync, .. } => {
            if *semi_sync {
                run_all(
                    conn,
                    &d.semi_sync_primary(cx.semi_wait_for, cx.semi_timeout_ms),
                    t,
                )
                .await?;
            }
            run_all(conn, &d.set_writable(), t).await
        }
        Action::Fence { .. } => fence(conn, cx).await,
        Action::Repoint { executed, .. } => {
            let (host, port) =
                source.ok_or_else(|| MySqlError::Unexpected("repoint without a source".into()))?;
            repoint(conn, cx, host, port, executed).await
        }
        Action::StartReplication { .. } => exec(conn, d.start_replica(), t).await,
        Action::StopIo { .. } => exec(conn, d.stop_io_thread(), t).await,
        Action::StartSqlThread { .. } => exec(conn, d.start_sql_thread(), t).await,
        Action::Promote { semi_sync, .. } => {
            exec(conn, d.stop_replica(), t).await?;
            ensure_relay_applied(conn, d, t).await?;
            exec(conn, d.reset_replica_all(), t).await?;
            if *semi_sync {
                run_all(
                    conn,
                    &d.semi_sync_primary(cx.semi_wait_for, cx.semi_timeout_ms),
                    t,
                )
                .await?;
            }
            run_all(conn, &d.set_writable(), t).await
        }
        Action::SemiSyncPrimary { .. } => {
            run_all(
                conn,
                &d.semi_sync_primary(cx.semi_wait_for, cx.semi_timeout_ms),
                t,
            )
            .await
        }
        Action::SemiSyncPrimaryOff { .. } => exec(conn, d.semi_sync_primary_off(), t).await,
        Action::SemiSyncReplica { .. } => {
            exec(conn, d.semi_sync_replica(), t).await?;
            // Takes effect when the IO thread reconnects.
            tolerated(exec(conn, d.stop_io_thread(), t).await)?;
            tolerated(exec(conn, d.start_io_thread(), t).await)?;
            Ok(())
        }
        Action::WaitGtid { gtids, secs, .. } => rows(
            conn,
            &d.wait_for_gtids(gtids, *secs),
            t + Duration::from_secs(u64::from(*secs)),
        )
        .await
        .map(|_| ()),
        Action::EnsureUsers { .. } => ensure_users(conn, cx).await,
        Action::Reseed { .. } => Err(MySqlError::Unexpected(
            "re-seeding is performed by the engine".into(),
        )),
    }
}

/// Refuse to go on (with the replica stopped) while the member holds
/// received transactions it has not applied: `RESET SLAVE ALL` would delete
/// them with the relay logs, and a semi-sync primary acknowledged them.
pub async fn ensure_relay_applied(
    conn: &mut Conn,
    d: Dialect,
    t: Duration,
) -> Result<(), MySqlError> {
    let status = rows(conn, d.show_replica_status(), t).await?;
    let Some(row) = status.first() else {
        return Ok(());
    };
    let column = d.status_columns().received;
    let received = row
        .columns_ref()
        .iter()
        .position(|c| c.name_str() == column)
        .and_then(|i| row.as_ref(i))
        .and_then(value_str)
        .unwrap_or_default();
    let flavor = d.flavor();
    let received = GtidSet::parse(flavor, &received)
        .map_err(|e| MySqlError::Unexpected(format!("received GTIDs: {e}")))?;
    let executed = rows(conn, d.observe_query(), t)
        .await?
        .first()
        .and_then(|r| r.as_ref(4))
        .and_then(value_str)
        .unwrap_or_default();
    let executed = GtidSet::parse(flavor, &executed)
        .map_err(|e| MySqlError::Unexpected(format!("executed GTIDs: {e}")))?;
    let missing = executed.missing(&received);
    if missing > 0 {
        // Keep applying (STOP SLAVE stopped the SQL thread too).
        let _ = exec(conn, d.start_sql_thread(), t).await;
        return Err(MySqlError::Unexpected(format!(
            "{missing} received transaction(s) not applied yet (received {received}, executed {executed}); not discarding the relay log"
        )));
    }
    Ok(())
}

/// Create or refresh the operator and replication users; `conn` must be a
/// root connection to the primary (statements are binlogged so replicas get
/// the users through replication, never as errant transactions).
pub async fn ensure_users(conn: &mut Conn, cx: &ActCtx<'_>) -> Result<(), MySqlError> {
    let d = cx.dialect;
    run_all(
        conn,
        &d.ensure_user(cx.operator_user, cx.operator_password, d.operator_grants()),
        cx.query_timeout,
    )
    .await?;
    run_all(
        conn,
        &d.ensure_user(
            cx.replication_user,
            cx.replication_password,
            d.replication_grants(),
        ),
        cx.query_timeout,
    )
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn server_error(code: u16) -> MySqlError {
        MySqlError::Sql {
            context: "KILL 42".into(),
            source: mysql_async::Error::Server(mysql_async::ServerError {
                code,
                message: "Unknown thread id: 42".into(),
                state: "HY000".into(),
            }),
        }
    }

    #[test]
    fn a_refusal_by_the_server_is_tolerated() {
        assert!(tolerated(Ok::<_, MySqlError>(3)).unwrap());
        assert!(!tolerated::<()>(Err(server_error(1094))).unwrap());
    }

    #[test]
    fn a_timed_out_or_broken_connection_fails_the_step() {
        // The engine drops the connection of a failed step (it is not handed
        // back to the cache), so these must surface as errors.
        let timeout = tolerated::<()>(Err(MySqlError::Timeout("KILL 42".into())));
        assert!(matches!(timeout, Err(MySqlError::Timeout(_))));
        let io = MySqlError::Sql {
            context: "KILL 42".into(),
            source: mysql_async::Error::Io(mysql_async::IoError::Io(std::io::Error::other(
                "connection reset",
            ))),
        };
        assert!(!io.connection_usable());
        assert!(tolerated::<()>(Err(io)).is_err());
        let closed = MySqlError::Sql {
            context: "KILL 42".into(),
            source: mysql_async::Error::Driver(mysql_async::DriverError::ConnectionClosed),
        };
        assert!(tolerated::<()>(Err(closed)).is_err());
        assert!(server_error(1094).connection_usable());
    }
}
