//! Per-ordinal database configuration. One file per ordinal; the container
//! picks its own by hostname (`<name>-<ordinal>`).

use std::collections::BTreeMap;
use std::fmt::Write as _;

use sha2::{Digest, Sha256};

use super::{ClusterView, RenderedConfig};
use crate::api::{MySQLClusterSpec, RedisReplicationSpec, ReplicationState};

/// Where the ConfigMap is mounted in the database container.
pub const CONFIG_DIR: &str = "/etc/ordinal/config";

/// File name of one ordinal's Redis configuration.
pub fn redis_file(ordinal: i32) -> String {
    format!("{ordinal}.conf")
}

/// File name of one ordinal's MySQL configuration.
pub fn mysql_file(ordinal: i32) -> String {
    format!("{ordinal}.cnf")
}

/// The member a member replicates from at boot: the recorded primary, or,
/// while no primary is recorded, the member itself (see [`render_redis`]).
pub fn boot_source(state: &ReplicationState, ordinal: i32) -> i32 {
    state.primary.unwrap_or(ordinal)
}

/// Render `redis.conf` for every ordinal.
///
/// No recorded primary (a new cluster, a cluster re-created over kept
/// volumes, a lost status): every member boots with `replicaof` pointing at
/// *itself*. That is a replica with no usable source: it loads its own data
/// from disk, refuses client writes (`replica-read-only`), and never syncs —
/// its attempts to sync from itself are refused with NOMASTERLINK (a replica
/// whose own link is down serves no sync), so it neither loses nor gains a
/// key. The operator then reads every member's data and promotes the one
/// that holds everything the others hold (`redis::plan` adoption); nothing
/// about ordinal 0 is assumed. A placeholder address (e.g. `127.0.0.1 1`)
/// would do the same but depends on nothing listening there; an unreachable
/// DNS name would cost a lookup per retry; `min-replicas-to-write` would
/// still let the member act as a sync source.
///
/// Once a primary is recorded, every member boots with `replicaof <recorded
/// primary>` — the primary included: it comes back read-only and refuses
/// replication (NOMASTERLINK) until the operator has confirmed it still holds
/// its data, so a primary that restarted empty can never become the source
/// replicas resync from. Passwords are not here: the container includes a
/// file it writes from the Secret at start.
pub fn render_redis(
    view: &ClusterView,
    spec: &RedisReplicationSpec,
    state: &ReplicationState,
) -> RenderedConfig {
    let port = view.kind.port();
    let mut static_part = String::new();
    let _ = writeln!(static_part, "port {port}");
    let _ = writeln!(static_part, "dir {}", view.kind.data_dir());
    static_part.push_str(
        "protected-mode no\n\
         appendonly yes\n\
         appendfsync everysec\n\
         save 3600 1 300 100 60 10000\n\
         replica-read-only yes\n\
         repl-diskless-sync yes\n\
         repl-diskless-sync-delay 0\n",
    );
    for (key, value) in &spec.config {
        let _ = writeln!(static_part, "{key} {value}");
    }
    let restart_hash = sha256_hex(static_part.as_bytes());

    let mut live = String::new();
    if let Some(durability) = &spec.durability {
        let _ = writeln!(
            live,
            "min-replicas-to-write {}",
            durability.min_replicas_to_write
        );
        let _ = writeln!(
            live,
            "min-replicas-max-lag {}",
            durability.min_replicas_max_lag
        );
    }

    let mut files = BTreeMap::new();
    for ordinal in 0..view.replicas {
        let mut file = format!(
            "# Rendered by Ordinal for {}; do not edit.\n",
            view.pod_name(ordinal)
        );
        file.push_str(&static_part);
        let _ = writeln!(file, "replica-announce-ip {}", view.member_dns(ordinal));
        file.push_str(&live);
        let source = boot_source(state, ordinal);
        let _ = writeln!(file, "replicaof {} {port}", view.member_dns(source));
        files.insert(redis_file(ordinal), file);
    }
    RenderedConfig {
        files,
        restart_hash,
    }
}

/// Render `my.cnf` for every ordinal: `server_id = serverIdBase + ordinal`,
/// binary log and GTID on, `report_host` = the member's DNS name, relay log
/// recovery on, no DNS lookups of clients (`skip_name_resolve`; a
/// `spec.config` line can turn it off), replication not started
/// automatically, every member
/// read-only at boot (the operator turns writes on only on the confirmed
/// primary and sets up replication itself), and in `SemiSync` mode
/// `sync_binlog = 1` and `innodb_flush_log_at_trx_commit = 1`; `spec.config`
/// lines come last.
pub fn render_mysql(view: &ClusterView, spec: &MySQLClusterSpec) -> RenderedConfig {
    let settings = crate::mysql::MySqlEngine::settings_from_spec(spec);
    let mut files = BTreeMap::new();
    let mut all = String::new();
    for ordinal in 0..view.replicas {
        let mut file = format!(
            "# Rendered by Ordinal for {}; do not edit.\n[mysqld]\n",
            view.pod_name(ordinal)
        );
        let _ = writeln!(file, "port = {}", view.kind.port());
        let _ = writeln!(file, "datadir = {}", view.kind.data_dir());
        let _ = writeln!(file, "relay_log = relay-bin");
        for line in
            crate::mysql::MySqlEngine::mysqld_config(&settings, ordinal, &view.member_dns(ordinal))
        {
            file.push_str(&line);
            file.push('\n');
        }
        for (key, value) in &spec.config {
            let _ = writeln!(file, "{key} = {value}");
        }
        all.push_str(&file);
        files.insert(mysql_file(ordinal), file);
    }
    RenderedConfig {
        files,
        restart_hash: sha256_hex(all.as_bytes()),
    }
}

pub fn sha256_hex(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}
