//! Every difference between the MariaDB and MySQL dialects, in one place.
//!
//! MariaDB 10.5+ (tested end to end on 10.11) and MySQL 8.0.23+ / 8.4 (covered
//! by the unit tests of the generated SQL below; no MySQL server runs in CI).

use crate::api::MySqlFlavor;

/// Quote a string literal for SQL (single quotes, backslashes escaped).
/// `mysql_native_password` hash: `*` and the upper-case hex SHA1 of the SHA1.
pub fn native_password_hash(password: &str) -> String {
    use sha1::{Digest, Sha1};
    let inner = Sha1::digest(password.as_bytes());
    format!("*{}", hex::encode_upper(Sha1::digest(inner)))
}

pub fn quote_str(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('\'');
    for c in s.chars() {
        match c {
            '\'' => out.push_str("''"),
            '\\' => out.push_str("\\\\"),
            '\0' => out.push_str("\\0"),
            c => out.push(c),
        }
    }
    out.push('\'');
    out
}

/// Quote an identifier with backticks.
pub fn quote_ident(s: &str) -> String {
    format!("`{}`", s.replace('`', "``"))
}

/// Names of the replica status columns, which differ by flavor.
#[derive(Debug, Clone, Copy)]
pub struct StatusColumns {
    pub host: &'static str,
    pub port: &'static str,
    pub io_running: &'static str,
    pub sql_running: &'static str,
    pub seconds_behind: &'static str,
    pub sql_state: &'static str,
    /// GTIDs received into the relay log (MariaDB `Gtid_IO_Pos`, MySQL `Retrieved_Gtid_Set`).
    pub received: &'static str,
}

/// The SQL dialect of one flavor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Dialect(pub MySqlFlavor);

impl Dialect {
    pub fn flavor(self) -> MySqlFlavor {
        self.0
    }

    fn maria(self) -> bool {
        self.0 == MySqlFlavor::MariaDB
    }

    /// Point this server at a source with GTID auto-positioning.
    pub fn change_source(self, host: &str, port: u16, user: &str, password: &str) -> String {
        if self.maria() {
            format!(
                "CHANGE MASTER TO MASTER_HOST={}, MASTER_PORT={port}, MASTER_USER={}, MASTER_PASSWORD={}, MASTER_USE_GTID=slave_pos, MASTER_CONNECT_RETRY=1",
                quote_str(host),
                quote_str(user),
                quote_str(password)
            )
        } else {
            format!(
                "CHANGE REPLICATION SOURCE TO SOURCE_HOST={}, SOURCE_PORT={port}, SOURCE_USER={}, SOURCE_PASSWORD={}, SOURCE_AUTO_POSITION=1, SOURCE_CONNECT_RETRY=1, GET_SOURCE_PUBLIC_KEY=1",
                quote_str(host),
                quote_str(user),
                quote_str(password)
            )
        }
    }

    /// Statements run after `change_source` (replica stopped) so a replica
    /// hears from a live source at least every `heartbeat_secs` and drops a
    /// silent connection after `net_timeout_secs`: `Slave_IO_Running=Yes`
    /// then means "heard from the source within `net_timeout_secs`", which
    /// the failover's replica-side view relies on.
    pub fn replica_liveness(self, heartbeat_secs: u32, net_timeout_secs: u32) -> Vec<String> {
        if self.maria() {
            vec![
                format!("SET GLOBAL slave_net_timeout = {net_timeout_secs}"),
                format!("CHANGE MASTER TO MASTER_HEARTBEAT_PERIOD = {heartbeat_secs}"),
            ]
        } else {
            vec![
                format!("SET GLOBAL replica_net_timeout = {net_timeout_secs}"),
                format!("CHANGE REPLICATION SOURCE TO SOURCE_HEARTBEAT_PERIOD = {heartbeat_secs}"),
            ]
        }
    }

    /// One row: seconds since the replica last received a heartbeat or (MySQL)
    /// a transaction from its source (NULL when unknown), and the net timeout
    /// after which a silent source connection is dropped.
    pub fn last_heard_query(self) -> &'static str {
        if self.maria() {
            // MariaDB 10.11 reports heartbeats only (not events): the net
            // timeout bounds the silence while events flow.
            "SELECT TIMESTAMPDIFF(SECOND, NULLIF((SELECT VARIABLE_VALUE FROM information_schema.GLOBAL_STATUS              WHERE VARIABLE_NAME = 'SLAVE_LAST_HEARTBEAT'), ''), NOW()), @@GLOBAL.slave_net_timeout"
        } else {
            "SELECT TIMESTAMPDIFF(SECOND, GREATEST(LAST_HEARTBEAT_TIMESTAMP, LAST_QUEUED_TRANSACTION_END_QUEUE_TIMESTAMP), NOW(6)),              @@GLOBAL.replica_net_timeout FROM performance_schema.replication_connection_status WHERE CHANNEL_NAME = ''"
        }
    }

    /// Statements run before `change_source` on MariaDB so the replica asks
    /// for exactly what it holds: its executed position becomes the slave
    /// position (a former primary's own transactions are only in its binlog
    /// position). Only used after the errant check passed.
    pub fn align_slave_pos(self, executed: &str) -> Vec<String> {
        if self.maria() {
            vec![format!(
                "SET GLOBAL gtid_slave_pos = {}",
                quote_str(executed)
            )]
        } else {
            Vec::new()
        }
    }

    pub fn start_replica(self) -> &'static str {
        if self.maria() {
            "START SLAVE"
        } else {
            "START REPLICA"
        }
    }

    pub fn stop_replica(self) -> &'static str {
        if self.maria() {
            "STOP SLAVE"
        } else {
            "STOP REPLICA"
        }
    }

    pub fn stop_io_thread(self) -> &'static str {
        if self.maria() {
            "STOP SLAVE IO_THREAD"
        } else {
            "STOP REPLICA IO_THREAD"
        }
    }

    pub fn start_io_thread(self) -> &'static str {
        if self.maria() {
            "START SLAVE IO_THREAD"
        } else {
            "START REPLICA IO_THREAD"
        }
    }

    pub fn start_sql_thread(self) -> &'static str {
        if self.maria() {
            "START SLAVE SQL_THREAD"
        } else {
            "START REPLICA SQL_THREAD"
        }
    }

    /// Primary-side semi-sync health as one row (status ON/OFF, connected
    /// semi-sync replicas); NULLs where the plugin is absent.
    pub fn semi_sync_status_query(self) -> &'static str {
        if self.maria() {
            "SELECT (SELECT VARIABLE_VALUE FROM information_schema.GLOBAL_STATUS WHERE VARIABLE_NAME='RPL_SEMI_SYNC_MASTER_STATUS'), \
             (SELECT VARIABLE_VALUE FROM information_schema.GLOBAL_STATUS WHERE VARIABLE_NAME='RPL_SEMI_SYNC_MASTER_CLIENTS')"
        } else {
            "SELECT (SELECT VARIABLE_VALUE FROM performance_schema.global_status WHERE VARIABLE_NAME='Rpl_semi_sync_source_status'), \
             (SELECT VARIABLE_VALUE FROM performance_schema.global_status WHERE VARIABLE_NAME='Rpl_semi_sync_source_clients')"
        }
    }

    /// Crash-safe durability lines of the semi-sync mode: every commit's
    /// binlog and redo log are on disk before it is acknowledged, so a member
    /// that crashes (node or process) comes back with every transaction it
    /// acknowledged.
    pub fn durable_config(self) -> Vec<String> {
        vec![
            "sync_binlog = 1".into(),
            "innodb_flush_log_at_trx_commit = 1".into(),
        ]
    }

    pub fn reset_replica_all(self) -> &'static str {
        if self.maria() {
            "RESET SLAVE ALL"
        } else {
            "RESET REPLICA ALL"
        }
    }

    pub fn show_replica_status(self) -> &'static str {
        if self.maria() {
            "SHOW SLAVE STATUS"
        } else {
            "SHOW REPLICA STATUS"
        }
    }

    pub fn status_columns(self) -> StatusColumns {
        if self.maria() {
            StatusColumns {
                host: "Master_Host",
                port: "Master_Port",
                io_running: "Slave_IO_Running",
                sql_running: "Slave_SQL_Running",
                seconds_behind: "Seconds_Behind_Master",
                sql_state: "Slave_SQL_Running_State",
                received: "Gtid_IO_Pos",
            }
        } else {
            StatusColumns {
                host: "Source_Host",
                port: "Source_Port",
                io_running: "Replica_IO_Running",
                sql_running: "Replica_SQL_Running",
                seconds_behind: "Seconds_Behind_Source",
                sql_state: "Replica_SQL_Running_State",
                received: "Retrieved_Gtid_Set",
            }
        }
    }

    /// One row: server_id, version, read_only, super_read_only (0 on MariaDB),
    /// executed GTIDs, identity of the data directory incarnation.
    pub fn observe_query(self) -> &'static str {
        if self.maria() {
            // MariaDB has no server_uuid: the creation time of mysql.global_priv
            // changes with every mariadb-install-db, i.e. every new datadir.
            "SELECT @@server_id, @@version, @@read_only, 0, CONCAT_WS(',', @@gtid_current_pos, @@gtid_binlog_state), \
             CONCAT('server_id=', @@server_id, ';datadir=', COALESCE((SELECT CAST(CREATE_TIME AS CHAR) FROM information_schema.TABLES WHERE TABLE_SCHEMA='mysql' AND TABLE_NAME='global_priv'), '?'))"
        } else {
            "SELECT @@server_id, @@version, @@read_only, @@super_read_only, @@GLOBAL.gtid_executed, \
             CONCAT('server_id=', @@server_id, ';server_uuid=', @@server_uuid)"
        }
    }

    /// Semi-sync variables as (primary enabled, replica enabled), 0/1; NULL when absent.
    pub fn semi_sync_query(self) -> &'static str {
        if self.maria() {
            "SELECT @@rpl_semi_sync_master_enabled, @@rpl_semi_sync_slave_enabled"
        } else {
            "SELECT (SELECT VARIABLE_VALUE FROM performance_schema.global_variables WHERE VARIABLE_NAME='rpl_semi_sync_source_enabled'), \
             (SELECT VARIABLE_VALUE FROM performance_schema.global_variables WHERE VARIABLE_NAME='rpl_semi_sync_replica_enabled')"
        }
    }

    /// Make the server refuse writes (MySQL: also from SUPER users).
    pub fn set_read_only(self) -> Vec<String> {
        if self.maria() {
            vec!["SET GLOBAL read_only = ON".into()]
        } else {
            vec!["SET GLOBAL super_read_only = ON".into()]
        }
    }

    /// Make the server writable.
    pub fn set_writable(self) -> Vec<String> {
        if self.maria() {
            vec!["SET GLOBAL read_only = OFF".into()]
        } else {
            vec![
                "SET GLOBAL super_read_only = OFF".into(),
                "SET GLOBAL read_only = OFF".into(),
            ]
        }
    }

    /// Wait (server side, bounded) until `gtids` are executed; returns 0 on success.
    pub fn wait_for_gtids(self, gtids: &str, timeout_secs: u32) -> String {
        if self.maria() {
            format!(
                "SELECT MASTER_GTID_WAIT({}, {timeout_secs})",
                quote_str(gtids)
            )
        } else {
            format!(
                "SELECT WAIT_FOR_EXECUTED_GTID_SET({}, {timeout_secs})",
                quote_str(gtids)
            )
        }
    }

    /// Client connections to kill when fencing: everything but replication,
    /// system threads, the operator's own and the excluded users.
    pub fn writer_connections_query(self, exclude_users: &[&str]) -> String {
        let mut users = vec!["'system user'".to_string(), "'event_scheduler'".to_string()];
        users.extend(exclude_users.iter().map(|u| quote_str(u)));
        format!(
            "SELECT ID FROM information_schema.PROCESSLIST WHERE ID <> CONNECTION_ID() AND USER NOT IN ({}) \
             AND COMMAND NOT IN ('Binlog Dump', 'Binlog Dump GTID', 'Daemon', 'Slave_IO', 'Slave_SQL', 'Slave_worker', 'Connect')",
            users.join(", ")
        )
    }

    pub fn kill_connection(self, id: u64) -> String {
        format!("KILL CONNECTION {id}")
    }

    /// Statements creating (or updating the password of) a user. The
    /// password never reaches the binary log in clear: MariaDB logs the
    /// statement as written, so it is given the `mysql_native_password` hash;
    /// MySQL 8 writes the hash to the binary log itself.
    pub fn ensure_user(self, user: &str, password: &str, grants: &str) -> Vec<String> {
        let u = format!("{}@'%'", quote_str(user));
        let identified = if self.maria() {
            format!(
                "IDENTIFIED BY PASSWORD {}",
                quote_str(&native_password_hash(password))
            )
        } else {
            format!("IDENTIFIED BY {}", quote_str(password))
        };
        vec![
            "SET SESSION sql_log_bin = 1".to_string(),
            format!("CREATE USER IF NOT EXISTS {u} {identified}"),
            format!("ALTER USER {u} {identified}"),
            format!("GRANT {grants} ON *.* TO {u}"),
        ]
    }

    /// Least privileges of the operator user: read topology, change
    /// replication, toggle read-only, kill connections, take consistent dumps.
    pub fn operator_grants(self) -> &'static str {
        if self.maria() {
            "SELECT, SHOW VIEW, TRIGGER, EVENT, LOCK TABLES, RELOAD, PROCESS, SHOW DATABASES, \
             BINLOG MONITOR, SLAVE MONITOR, REPLICATION SLAVE ADMIN, REPLICATION MASTER ADMIN, \
             BINLOG ADMIN, CONNECTION ADMIN, READ_ONLY ADMIN, SUPER"
        } else {
            "SELECT, SHOW VIEW, TRIGGER, EVENT, LOCK TABLES, RELOAD, PROCESS, SHOW DATABASES, \
             REPLICATION CLIENT, REPLICATION_SLAVE_ADMIN, CONNECTION_ADMIN, SYSTEM_VARIABLES_ADMIN, \
             BINLOG_ADMIN, BACKUP_ADMIN"
        }
    }

    pub fn replication_grants(self) -> &'static str {
        "REPLICATION SLAVE"
    }

    /// Lossless semi-sync on the primary. `timeout_ms` None → wait (practically) forever.
    pub fn semi_sync_primary(self, wait_for: i32, timeout_ms: Option<i64>) -> Vec<String> {
        // A timeout of ~1 year: commits never silently fall back to async.
        let timeout = timeout_ms.unwrap_or(31_536_000_000).max(1);
        if self.maria() {
            // MariaDB waits for exactly one replica acknowledgement; there is no
            // wait-count variable (wait_for > 1 cannot be honoured).
            let _ = wait_for;
            vec![
                "SET GLOBAL rpl_semi_sync_master_wait_point = AFTER_SYNC".into(),
                format!(
                    "SET GLOBAL rpl_semi_sync_master_timeout = {}",
                    timeout.min(4_294_967_295)
                ),
                "SET GLOBAL rpl_semi_sync_master_wait_no_slave = ON".into(),
                "SET GLOBAL rpl_semi_sync_master_enabled = ON".into(),
            ]
        } else {
            vec![
                "SET GLOBAL rpl_semi_sync_source_wait_point = AFTER_SYNC".into(),
                format!(
                    "SET GLOBAL rpl_semi_sync_source_timeout = {}",
                    timeout.min(4_294_967_295)
                ),
                format!(
                    "SET GLOBAL rpl_semi_sync_source_wait_for_replica_count = {}",
                    wait_for.max(1)
                ),
                "SET GLOBAL rpl_semi_sync_source_wait_no_replica = ON".into(),
                "SET GLOBAL rpl_semi_sync_source_enabled = ON".into(),
            ]
        }
    }

    /// Turn the primary side of semi-sync off (a replica must not wait for acks).
    pub fn semi_sync_primary_off(self) -> &'static str {
        if self.maria() {
            "SET GLOBAL rpl_semi_sync_master_enabled = OFF"
        } else {
            "SET GLOBAL rpl_semi_sync_source_enabled = OFF"
        }
    }

    /// Semi-sync on a replica; the IO thread must be restarted to take effect.
    pub fn semi_sync_replica(self) -> &'static str {
        if self.maria() {
            "SET GLOBAL rpl_semi_sync_slave_enabled = ON"
        } else {
            "SET GLOBAL rpl_semi_sync_replica_enabled = ON"
        }
    }

    /// Lines the lead renders under `[mysqld]` for a member (besides port,
    /// bind-address, datadir, socket).
    ///
    /// `skip_name_resolve`: accounts are matched by address only, as the
    /// official images do. Without it every new client's address is looked
    /// up in DNS before the server greets it, so a slow or absent resolver
    /// holds each first connection after a restart (the operator's probes,
    /// replicas' IO threads) for the resolver's whole timeout. The
    /// operator's own accounts are `'user'@'%'`; grants naming host names
    /// stop matching (README).
    pub fn boot_config(self, server_id: i64, report_host: &str) -> Vec<String> {
        let mut v = vec![
            format!("server_id = {server_id}"),
            "skip_name_resolve = ON".into(),
            "log_bin = mysql-bin".into(),
            "binlog_format = ROW".into(),
            "relay_log_recovery = ON".into(),
            format!("report_host = {report_host}"),
            "read_only = ON".into(),
        ];
        if self.maria() {
            v.extend([
                "log_slave_updates = ON".into(),
                "gtid_strict_mode = ON".into(),
                "skip_slave_start = ON".into(),
            ]);
        } else {
            v.extend([
                "log_replica_updates = ON".into(),
                "gtid_mode = ON".into(),
                "enforce_gtid_consistency = ON".into(),
                "skip_replica_start = ON".into(),
                "super_read_only = ON".into(),
                "plugin_load_add = semisync_source.so".into(),
                "plugin_load_add = semisync_replica.so".into(),
            ]);
        }
        v
    }

    /// Errors of the replication IO thread meaning the source no longer has
    /// the binlogs the replica needs (re-seed), as opposed to divergence.
    pub fn is_purged_binlog_error(self, errno: u32, message: &str) -> bool {
        if errno != 1236 {
            return false;
        }
        let m = message.to_ascii_lowercase();
        if self.maria() {
            m.contains("could not find gtid state") || m.contains("purged")
        } else {
            m.contains("purged")
        }
    }

    /// IO errors meaning the replica holds transactions the source never had.
    pub fn is_divergence_error(self, errno: u32, message: &str) -> bool {
        if errno != 1236 {
            return false;
        }
        let m = message.to_ascii_lowercase();
        m.contains("not in the master's binlog")
            || m.contains("which is not in the master")
            || m.contains("has more gtids than the source")
            || m.contains("slave has more gtids")
            || m.contains("replica has more gtids")
    }

    /// Restore on a server of `version` (`@@version`): like
    /// [`Dialect::set_restored_gtid`], with the binlog reset spelled as that
    /// server knows it (`RESET MASTER` before MySQL 8.2, where
    /// `RESET BINARY LOGS AND GTIDS` is a syntax error; 8.4 removed
    /// `RESET MASTER`).
    pub fn set_restored_gtid_on(
        self,
        version: &str,
        gtids: &str,
        binlog_state: Option<&str>,
    ) -> Vec<String> {
        let mut v = self.set_restored_gtid(gtids, binlog_state);
        if !self.maria() && !mysql_at_least(version, (8, 2, 0)) {
            v[0] = "RESET MASTER".into();
        }
        v
    }

    /// Statements letting an administrative session write on a fenced
    /// member (re-seeding, restore): MySQL's `super_read_only` refuses even
    /// SUPER sessions; `read_only` stays on, so applications still cannot
    /// write. Nothing on MariaDB, whose `read_only` spares SUPER sessions.
    pub fn lift_super_read_only(self) -> Vec<String> {
        if self.maria() {
            Vec::new()
        } else {
            vec!["SET GLOBAL super_read_only = OFF".into()]
        }
    }

    /// Undo [`Dialect::lift_super_read_only`].
    pub fn restore_super_read_only(self) -> Vec<String> {
        if self.maria() {
            Vec::new()
        } else {
            vec!["SET GLOBAL super_read_only = ON".into()]
        }
    }

    /// Restore: make the restored data's GTID position this server's state so
    /// replicas (or the server itself, as a replica) continue from it. MySQL
    /// statements are those of the newest server (8.4); see
    /// [`Dialect::set_restored_gtid_on`] for older ones.
    pub fn set_restored_gtid(self, gtids: &str, binlog_state: Option<&str>) -> Vec<String> {
        if self.maria() {
            // The binlog state (with the source's history of originating
            // servers, when known) makes a restored server continue the
            // sequence as a primary and keeps errant-transaction checks
            // against it exact; the slave position lets it replicate.
            vec![
                "RESET MASTER".into(),
                format!(
                    "SET GLOBAL gtid_binlog_state = {}",
                    quote_str(binlog_state.unwrap_or(gtids))
                ),
                format!("SET GLOBAL gtid_slave_pos = {}", quote_str(gtids)),
            ]
        } else {
            vec![
                "RESET BINARY LOGS AND GTIDS".into(),
                format!("SET GLOBAL gtid_purged = {}", quote_str(gtids)),
            ]
        }
    }

    /// The position a stopped replica resumes from (MariaDB gtid_current_pos).
    pub fn current_position_query(self) -> &'static str {
        if self.maria() {
            "SELECT @@gtid_current_pos"
        } else {
            "SELECT @@GLOBAL.gtid_executed"
        }
    }

    /// Accounts (user, host), roles excluded.
    pub fn list_users_query(self) -> &'static str {
        if self.maria() {
            "SELECT User, Host FROM mysql.user WHERE is_role = 'N' ORDER BY User, Host"
        } else {
            "SELECT user, host FROM mysql.user ORDER BY user, host"
        }
    }

    /// Query returning the executed GTIDs (MariaDB: position and binlog
    /// state, which also names every originating server).
    pub fn executed_gtid_query(self) -> &'static str {
        if self.maria() {
            "SELECT CONCAT_WS(',', @@gtid_current_pos, @@gtid_binlog_state)"
        } else {
            "SELECT @@GLOBAL.gtid_executed"
        }
    }

    /// Query returning the GTID position of the binlog (the snapshot point
    /// under FLUSH TABLES WITH READ LOCK).
    pub fn binlog_gtid_query(self) -> &'static str {
        if self.maria() {
            "SELECT @@gtid_binlog_pos, @@gtid_binlog_state"
        } else {
            "SELECT @@GLOBAL.gtid_executed, @@GLOBAL.gtid_executed"
        }
    }
}

/// Whether a MySQL `@@version` string (`8.0.31`, `8.4.3-log`) is at least
/// `min`. An unparsable version counts as the newest.
pub fn mysql_at_least(version: &str, min: (u32, u32, u32)) -> bool {
    let mut parts = version
        .split(|c: char| !c.is_ascii_digit())
        .take(3)
        .map(|p| p.parse::<u32>().ok());
    match (parts.next(), parts.next(), parts.next()) {
        (Some(Some(a)), Some(Some(b)), Some(Some(c))) => (a, b, c) >= min,
        _ => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const M: Dialect = Dialect(MySqlFlavor::MariaDB);
    const Y: Dialect = Dialect(MySqlFlavor::MySQL);

    #[test]
    fn quoting() {
        assert_eq!(quote_str("a'b\\c"), "'a''b\\\\c'");
        assert_eq!(quote_ident("we`ird"), "`we``ird`");
    }

    #[test]
    fn change_source_per_flavor() {
        assert_eq!(
            M.change_source("db-0.h", 3306, "repl", "p'w"),
            "CHANGE MASTER TO MASTER_HOST='db-0.h', MASTER_PORT=3306, MASTER_USER='repl', MASTER_PASSWORD='p''w', MASTER_USE_GTID=slave_pos, MASTER_CONNECT_RETRY=1"
        );
        assert_eq!(
            Y.change_source("db-0.h", 3306, "repl", "pw"),
            "CHANGE REPLICATION SOURCE TO SOURCE_HOST='db-0.h', SOURCE_PORT=3306, SOURCE_USER='repl', SOURCE_PASSWORD='pw', SOURCE_AUTO_POSITION=1, SOURCE_CONNECT_RETRY=1, GET_SOURCE_PUBLIC_KEY=1"
        );
        assert_eq!(
            M.align_slave_pos("0-100-5"),
            vec!["SET GLOBAL gtid_slave_pos = '0-100-5'"]
        );
        assert!(Y.align_slave_pos("x").is_empty());
    }

    #[test]
    fn mysql8_replica_statements() {
        assert_eq!(Y.start_replica(), "START REPLICA");
        assert_eq!(Y.stop_io_thread(), "STOP REPLICA IO_THREAD");
        assert_eq!(Y.reset_replica_all(), "RESET REPLICA ALL");
        assert_eq!(Y.show_replica_status(), "SHOW REPLICA STATUS");
        assert_eq!(Y.status_columns().io_running, "Replica_IO_Running");
        assert_eq!(Y.status_columns().received, "Retrieved_Gtid_Set");
        assert_eq!(M.status_columns().received, "Gtid_IO_Pos");
        assert!(Y.observe_query().contains("@@super_read_only"));
        assert!(Y.observe_query().contains("@@server_uuid"));
        assert_eq!(
            Y.wait_for_gtids("u:1-3", 2),
            "SELECT WAIT_FOR_EXECUTED_GTID_SET('u:1-3', 2)"
        );
        assert_eq!(
            M.wait_for_gtids("0-1-3", 2),
            "SELECT MASTER_GTID_WAIT('0-1-3', 2)"
        );
    }

    #[test]
    fn replica_liveness_per_flavor() {
        assert_eq!(
            M.replica_liveness(1, 4),
            vec![
                "SET GLOBAL slave_net_timeout = 4",
                "CHANGE MASTER TO MASTER_HEARTBEAT_PERIOD = 1"
            ]
        );
        assert_eq!(
            Y.replica_liveness(1, 4),
            vec![
                "SET GLOBAL replica_net_timeout = 4",
                "CHANGE REPLICATION SOURCE TO SOURCE_HEARTBEAT_PERIOD = 1"
            ]
        );
        assert!(M.last_heard_query().contains("SLAVE_LAST_HEARTBEAT"));
        assert!(
            Y.last_heard_query()
                .contains("performance_schema.replication_connection_status")
        );
    }

    #[test]
    fn read_only_per_flavor() {
        assert_eq!(M.set_read_only(), vec!["SET GLOBAL read_only = ON"]);
        assert_eq!(Y.set_read_only(), vec!["SET GLOBAL super_read_only = ON"]);
        assert_eq!(
            Y.set_writable(),
            vec![
                "SET GLOBAL super_read_only = OFF",
                "SET GLOBAL read_only = OFF"
            ]
        );
    }

    #[test]
    fn semi_sync_per_flavor() {
        let y = Y.semi_sync_primary(2, None);
        assert!(
            y.contains(&"SET GLOBAL rpl_semi_sync_source_wait_for_replica_count = 2".to_string())
        );
        assert!(y.contains(&"SET GLOBAL rpl_semi_sync_source_wait_point = AFTER_SYNC".to_string()));
        assert!(y.contains(&"SET GLOBAL rpl_semi_sync_source_timeout = 4294967295".to_string()));
        let m = M.semi_sync_primary(1, Some(500));
        assert!(m.contains(&"SET GLOBAL rpl_semi_sync_master_timeout = 500".to_string()));
        assert!(m.iter().all(|s| !s.contains("wait_for_replica_count")));
        assert_eq!(
            Y.semi_sync_replica(),
            "SET GLOBAL rpl_semi_sync_replica_enabled = ON"
        );
    }

    #[test]
    fn users_and_errors() {
        let s = Y.ensure_user("ordinal", "x'y", Y.operator_grants());
        assert_eq!(
            s[1],
            "CREATE USER IF NOT EXISTS 'ordinal'@'%' IDENTIFIED BY 'x''y'"
        );
        assert!(s[3].starts_with("GRANT SELECT"));
        // MariaDB would log a clear password as written: it gets the hash.
        let m = M.ensure_user("ordinal", "secret", M.operator_grants());
        assert_eq!(
            native_password_hash("secret"),
            "*14E65567ABDB5135D0CFD9A70B3032C179A49EE7"
        );
        assert_eq!(
            m[1],
            "CREATE USER IF NOT EXISTS 'ordinal'@'%' IDENTIFIED BY PASSWORD '*14E65567ABDB5135D0CFD9A70B3032C179A49EE7'"
        );
        assert!(m.iter().all(|q| !q.contains("'secret'")));
        assert!(M.is_purged_binlog_error(
            1236,
            "Could not find GTID state requested by slave in any binlog files. Probably the slave state is too old and required binlog files have been purged."
        ));
        assert!(!M.is_purged_binlog_error(1045, "purged"));
        assert!(Y.is_purged_binlog_error(
            1236,
            "Cannot replicate because the source purged required binary logs."
        ));
        assert!(M.is_divergence_error(1236, "Error: connecting slave requested to start from GTID 0-101-3, which is not in the master's binlog"));
        assert_eq!(
            Y.set_restored_gtid("u:1-5", None)[1],
            "SET GLOBAL gtid_purged = 'u:1-5'"
        );
        // MySQL before 8.2 knows only RESET MASTER (8.0.31 found it out).
        assert_eq!(
            Y.set_restored_gtid_on("8.0.31", "u:1-5", None),
            vec!["RESET MASTER", "SET GLOBAL gtid_purged = 'u:1-5'"]
        );
        assert_eq!(
            Y.set_restored_gtid_on("8.4.3", "u:1-5", None)[0],
            "RESET BINARY LOGS AND GTIDS"
        );
        assert_eq!(
            M.set_restored_gtid_on("10.11.6-MariaDB", "0-1-5", None)[0],
            "RESET MASTER"
        );
        assert!(mysql_at_least("8.0.17", (8, 0, 17)));
        assert!(!mysql_at_least("8.0.16-log", (8, 0, 17)));
        assert!(mysql_at_least("garbage", (8, 0, 17)));
        assert!(Y.lift_super_read_only()[0].contains("super_read_only = OFF"));
        assert!(M.lift_super_read_only().is_empty());
        assert!(
            Y.boot_config(101, "h")
                .contains(&"gtid_mode = ON".to_string())
        );
        assert!(
            M.boot_config(101, "h")
                .contains(&"gtid_strict_mode = ON".to_string())
        );
        for d in [Y, M] {
            assert!(
                d.boot_config(101, "h")
                    .contains(&"skip_name_resolve = ON".to_string())
            );
        }
    }
}
