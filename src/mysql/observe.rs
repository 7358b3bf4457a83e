//! Reading one member's state through the database protocol.

use std::collections::HashMap;
use std::time::Duration;

use mysql_async::prelude::Queryable;
use mysql_async::{Conn, Opts, OptsBuilder, Row, Value};

use super::MySqlError;
use super::flavor::Dialect;
use super::gtid::GtidSet;

/// What the replica side of a member reports (SHOW SLAVE/REPLICA STATUS).
#[derive(Clone, Debug, PartialEq)]
pub struct ReplicaStatus {
    pub host: String,
    pub port: u16,
    /// `Yes`, `No` or `Connecting`.
    pub io_running: String,
    pub sql_running: bool,
    pub last_io_errno: u32,
    pub last_io_error: String,
    pub last_sql_errno: u32,
    pub last_sql_error: String,
    pub seconds_behind: Option<i64>,
    pub sql_state: String,
    /// GTIDs received into the relay log.
    pub received: Option<GtidSet>,
    /// Upper bound of the seconds since the replica last received anything
    /// from its source, while its IO thread is connected (`Yes`): the age of
    /// the last heartbeat or received transaction as the flavor reports it,
    /// capped by the net timeout (a silent connection is dropped after it).
    /// None when not connected or not known.
    pub heard_secs: Option<i64>,
}

impl ReplicaStatus {
    pub fn io_yes(&self) -> bool {
        self.io_running.eq_ignore_ascii_case("yes")
    }
    pub fn io_stopped(&self) -> bool {
        self.io_running.eq_ignore_ascii_case("no")
    }
}

/// A reachable member's state.
#[derive(Clone, Debug, PartialEq)]
pub struct Observed {
    pub server_id: u32,
    pub version: String,
    pub read_only: bool,
    pub super_read_only: bool,
    /// Executed transactions (MariaDB gtid_current_pos / MySQL gtid_executed).
    pub executed: GtidSet,
    pub identity: String,
    /// None when no source is configured.
    pub replica: Option<ReplicaStatus>,
    pub semi_primary: Option<bool>,
    pub semi_replica: Option<bool>,
    /// Primary-side semi-sync health, read when semi-sync is enabled on the
    /// member: whether it currently waits for acknowledgements
    /// (`Rpl_semi_sync_*_status`) and how many semi-sync replicas are
    /// connected (`Rpl_semi_sync_*_clients`).
    pub semi_status: Option<bool>,
    pub semi_clients: Option<i64>,
    /// The executed set read again after every member was observed (only on
    /// the primary): the reference for errant-transaction checks, so a
    /// replica sampled later than the primary is never mistaken for errant.
    pub executed_after: Option<GtidSet>,
    /// Transactions no longer in the binlogs (primary only; MariaDB: the
    /// Gtid_list of the oldest binlog, MySQL: gtid_purged). A member lacking
    /// them cannot catch up from the binlogs and is re-seeded.
    pub purged: Option<GtidSet>,
    /// The operator user could not log in (not created yet): root was used.
    pub via_root: bool,
}

impl Observed {
    /// Reference set for errant checks against this member as primary.
    pub fn reference(&self) -> &GtidSet {
        self.executed_after.as_ref().unwrap_or(&self.executed)
    }

    /// Whether clients (without admin privileges) can write.
    pub fn writable(&self) -> bool {
        !self.read_only
    }
}

/// Who to log in as.
#[derive(Clone)]
pub struct Login {
    pub user: String,
    pub password: String,
}

impl std::fmt::Debug for Login {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Login({}, <redacted>)", self.user)
    }
}

pub fn opts(host: &str, port: u16, login: &Login) -> Opts {
    OptsBuilder::default()
        .ip_or_hostname(host)
        .tcp_port(port)
        .user(Some(login.user.clone()))
        .pass(Some(login.password.clone()))
        .prefer_socket(false)
        .stmt_cache_size(0)
        .into()
}

/// Connect within `timeout`.
pub async fn connect(
    host: &str,
    port: u16,
    login: &Login,
    timeout: Duration,
) -> Result<Conn, MySqlError> {
    match tokio::time::timeout(timeout, Conn::new(opts(host, port, login))).await {
        Ok(Ok(c)) => Ok(c),
        Ok(Err(e)) => Err(MySqlError::Sql {
            context: format!("connect to {host}:{port} as {}", login.user),
            source: e,
        }),
        Err(_) => Err(MySqlError::Timeout(format!("connect to {host}:{port}"))),
    }
}

/// Whether the server answered with an error reply (e.g. an unknown
/// variable): the reply was read whole and the connection can go on. Any
/// other failure (a timeout, I/O, a driver error) may leave it half read.
pub fn is_server_error(e: &MySqlError) -> bool {
    matches!(
        e,
        MySqlError::Sql {
            source: mysql_async::Error::Server(_),
            ..
        }
    )
}

/// Whether a connection error is an authentication refusal. MySQL 8 answers
/// a login to an account that does not exist (yet) with a switch to a
/// pseudo-random authentication plugin, often `sha256_password`, which the
/// client cannot speak without TLS: that is a refusal too, not an outage.
pub fn is_access_denied(e: &MySqlError) -> bool {
    match e {
        MySqlError::Sql {
            source: mysql_async::Error::Server(s),
            ..
        } => s.code == 1045,
        MySqlError::Sql {
            source: mysql_async::Error::Driver(mysql_async::DriverError::UnknownAuthPlugin { .. }),
            ..
        } => true,
        _ => false,
    }
}

/// Run one statement within `timeout`.
pub async fn exec(conn: &mut Conn, sql: &str, timeout: Duration) -> Result<(), MySqlError> {
    match tokio::time::timeout(timeout, conn.query_drop(sql)).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(MySqlError::Sql {
            context: redact(sql),
            source: e,
        }),
        Err(_) => Err(MySqlError::Timeout(redact(sql))),
    }
}

/// Run one query within `timeout` and return its rows.
pub async fn rows(conn: &mut Conn, sql: &str, timeout: Duration) -> Result<Vec<Row>, MySqlError> {
    match tokio::time::timeout(timeout, conn.query::<Row, _>(sql)).await {
        Ok(Ok(r)) => Ok(r),
        Ok(Err(e)) => Err(MySqlError::Sql {
            context: redact(sql),
            source: e,
        }),
        Err(_) => Err(MySqlError::Timeout(redact(sql))),
    }
}

/// Statement text safe for logs and errors: anything after a PASSWORD or
/// IDENTIFIED BY keyword is cut.
pub fn redact(sql: &str) -> String {
    let upper = sql.to_ascii_uppercase();
    for kw in ["PASSWORD", "IDENTIFIED BY"] {
        if let Some(i) = upper.find(kw) {
            return format!("{} <redacted>", &sql[..i + kw.len()]);
        }
    }
    sql.to_string()
}

pub fn value_str(v: &Value) -> Option<String> {
    match v {
        Value::NULL => None,
        Value::Bytes(b) => Some(String::from_utf8_lossy(b).into_owned()),
        Value::Int(i) => Some(i.to_string()),
        Value::UInt(u) => Some(u.to_string()),
        Value::Float(f) => Some(f.to_string()),
        Value::Double(f) => Some(f.to_string()),
        other => Some(other.as_sql(true).trim_matches('\'').to_string()),
    }
}

fn row_map(row: &Row) -> HashMap<String, Option<String>> {
    let cols = row.columns_ref();
    let mut m = HashMap::with_capacity(cols.len());
    for (i, c) in cols.iter().enumerate() {
        let v = row.as_ref(i).and_then(value_str);
        m.insert(c.name_str().into_owned(), v);
    }
    m
}

fn col(row: &Row, i: usize) -> Option<String> {
    row.as_ref(i).and_then(value_str)
}

fn truthy(s: Option<String>) -> Option<bool> {
    s.map(|v| matches!(v.to_ascii_uppercase().as_str(), "1" | "ON" | "YES" | "TRUE"))
}

/// Observe a member over an open connection. The flag says whether every
/// query completed; after an optional query failed (a timeout may leave a
/// reply half read) the connection is not to be kept for another pass.
pub async fn observe(
    conn: &mut Conn,
    d: Dialect,
    timeout: Duration,
    via_root: bool,
) -> Result<(Observed, bool), MySqlError> {
    let mut clean = true;
    let base = rows(conn, d.observe_query(), timeout).await?;
    let row = base
        .first()
        .ok_or_else(|| MySqlError::Unexpected("observe query returned no row".into()))?;
    let server_id: u32 = col(row, 0).and_then(|s| s.parse().ok()).unwrap_or(0);
    let version = col(row, 1).unwrap_or_default();
    let read_only = truthy(col(row, 2)).unwrap_or(true);
    let super_read_only = truthy(col(row, 3)).unwrap_or(false);
    let executed_text = col(row, 4).unwrap_or_default();
    let executed = GtidSet::parse(d.flavor(), &executed_text)
        .map_err(|e| MySqlError::Unexpected(e.to_string()))?;
    let identity = col(row, 5).unwrap_or_default();

    let status = rows(conn, d.show_replica_status(), timeout).await?;
    let cols = d.status_columns();
    let mut replica = status.first().map(row_map).and_then(|m| {
        let get = |k: &str| m.get(k).cloned().flatten().unwrap_or_default();
        let host = get(cols.host);
        if host.is_empty() {
            return None;
        }
        let received_text = get(cols.received);
        Some(ReplicaStatus {
            host,
            port: get(cols.port).parse().unwrap_or(0),
            io_running: get(cols.io_running),
            sql_running: get(cols.sql_running).eq_ignore_ascii_case("yes"),
            last_io_errno: get("Last_IO_Errno").parse().unwrap_or(0),
            last_io_error: get("Last_IO_Error"),
            last_sql_errno: get("Last_SQL_Errno").parse().unwrap_or(0),
            last_sql_error: get("Last_SQL_Error"),
            seconds_behind: get(cols.seconds_behind).parse().ok(),
            sql_state: get(cols.sql_state),
            received: GtidSet::parse(d.flavor(), &received_text).ok(),
            heard_secs: None,
        })
    });
    if let Some(r) = replica.as_mut().filter(|r| r.io_yes()) {
        // Optional: a server that cannot report it simply vouches for nothing.
        match rows(conn, d.last_heard_query(), timeout).await {
            Ok(rows) => {
                if let Some(row) = rows.first() {
                    let age = col(row, 0).and_then(|s| s.parse::<i64>().ok());
                    let net = col(row, 1).and_then(|s| s.parse::<i64>().ok());
                    r.heard_secs = heard_bound(age, net);
                }
            }
            Err(e) => clean &= is_server_error(&e),
        }
    }

    // Semi-sync variables may be absent (MySQL without the plugins).
    let (semi_primary, semi_replica) = match rows(conn, d.semi_sync_query(), timeout).await {
        Ok(r) => r
            .first()
            .map(|row| (truthy(col(row, 0)), truthy(col(row, 1))))
            .unwrap_or((None, None)),
        Err(e) => {
            clean &= is_server_error(&e);
            (None, None)
        }
    };

    let (semi_status, semi_clients) = if semi_primary == Some(true) {
        match rows(conn, d.semi_sync_status_query(), timeout).await {
            Ok(r) => r
                .first()
                .map(|row| {
                    (
                        truthy(col(row, 0)),
                        col(row, 1).and_then(|s| s.parse::<i64>().ok()),
                    )
                })
                .unwrap_or((None, None)),
            Err(e) => {
                clean &= is_server_error(&e);
                (None, None)
            }
        }
    } else {
        (None, None)
    };

    let observed = Observed {
        server_id,
        version,
        read_only,
        super_read_only,
        executed,
        identity,
        replica,
        semi_primary,
        semi_replica,
        semi_status,
        semi_clients,
        executed_after: None,
        purged: None,
        via_root,
    };
    Ok((observed, clean))
}

/// Upper bound of a connected replica's silence from the last heartbeat or
/// transaction age and the net timeout (see `ReplicaStatus::heard_secs`).
pub fn heard_bound(age: Option<i64>, net_timeout: Option<i64>) -> Option<i64> {
    match (age.filter(|a| *a >= 0), net_timeout.filter(|n| *n > 0)) {
        (Some(a), Some(n)) => Some(a.min(n)),
        (a, n) => a.or(n),
    }
}

/// What the binlogs of a server no longer hold (see `Observed::purged`).
pub async fn purged(conn: &mut Conn, d: Dialect, timeout: Duration) -> Result<GtidSet, MySqlError> {
    match d.flavor() {
        crate::api::MySqlFlavor::MySQL => {
            let r = rows(conn, "SELECT @@GLOBAL.gtid_purged", timeout).await?;
            let text = r
                .first()
                .and_then(|r| r.as_ref(0))
                .and_then(value_str)
                .unwrap_or_default();
            GtidSet::parse(d.flavor(), &text).map_err(|e| MySqlError::Unexpected(e.to_string()))
        }
        crate::api::MySqlFlavor::MariaDB => {
            let logs = rows(conn, "SHOW BINARY LOGS", timeout).await?;
            let Some(first) = logs.first().and_then(|r| r.as_ref(0)).and_then(value_str) else {
                return Ok(GtidSet::empty(d.flavor()));
            };
            let events = rows(
                conn,
                &format!(
                    "SHOW BINLOG EVENTS IN {} LIMIT 4",
                    super::flavor::quote_str(&first)
                ),
                timeout,
            )
            .await?;
            for e in events {
                let m = row_map(&e);
                if m.get("Event_type").cloned().flatten().as_deref() == Some("Gtid_list") {
                    let info = m.get("Info").cloned().flatten().unwrap_or_default();
                    let inner = info.trim().trim_start_matches('[').trim_end_matches(']');
                    return GtidSet::parse(d.flavor(), inner)
                        .map_err(|e| MySqlError::Unexpected(e.to_string()));
                }
            }
            Ok(GtidSet::empty(d.flavor()))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heard_bound_takes_the_tighter_bound() {
        assert_eq!(heard_bound(Some(1), Some(4)), Some(1));
        assert_eq!(heard_bound(Some(30), Some(4)), Some(4));
        assert_eq!(heard_bound(None, Some(60)), Some(60));
        assert_eq!(heard_bound(Some(2), None), Some(2));
        assert_eq!(heard_bound(Some(-1), Some(0)), None);
    }

    #[test]
    fn unknown_account_on_mysql_is_a_refusal() {
        let e = MySqlError::Sql {
            context: "connect".into(),
            source: mysql_async::Error::Driver(mysql_async::DriverError::UnknownAuthPlugin {
                name: "sha256_password".into(),
            }),
        };
        assert!(is_access_denied(&e));
        let e = MySqlError::Timeout("connect".into());
        assert!(!is_access_denied(&e));
    }

    #[test]
    fn redaction() {
        assert_eq!(
            redact(
                "CHANGE MASTER TO MASTER_HOST='h', MASTER_USER='repl', MASTER_PASSWORD='secret'"
            ),
            "CHANGE MASTER TO MASTER_HOST='h', MASTER_USER='repl', MASTER_PASSWORD <redacted>"
        );
        assert_eq!(
            redact("CREATE USER 'x'@'%' IDENTIFIED BY 'secret'"),
            "CREATE USER 'x'@'%' IDENTIFIED BY <redacted>"
        );
        assert_eq!(redact("STOP SLAVE"), "STOP SLAVE");
    }
}
