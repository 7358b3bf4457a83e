//! Observing members: one `INFO` plus `CONFIG GET min-replicas-*` per member,
//! parsed by pure functions into [`NodeInfo`].

use std::collections::BTreeMap;
use std::time::Duration;

use super::RedisError;
use super::conn::Conn;

/// Replication role a server reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ServerRole {
    Master,
    Replica,
}

/// One replica as listed by a primary (`slaveN:ip=…,port=…,state=…,offset=…`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListedReplica {
    pub ip: String,
    pub port: u16,
    pub state: String,
    pub offset: i64,
}

/// What one reachable server reported.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeInfo {
    pub run_id: String,
    pub role: ServerRole,
    /// `master_host`/`master_port` of a replica.
    pub master: Option<(String, u16)>,
    /// `master_link_status:up` on a replica.
    pub link_up: bool,
    /// `master_last_io_seconds_ago` of a replica whose link is up: seconds
    /// since it last received anything (data or ping) from its primary.
    pub last_io_secs: Option<i64>,
    /// Whether a replica is in the middle of a full sync.
    pub sync_in_progress: bool,
    /// `master_repl_offset`: bytes of replication stream processed.
    pub offset: i64,
    pub replid: String,
    pub replid2: String,
    /// `second_repl_offset`: offsets below it are valid on `replid2` (the
    /// history this server continued when it was promoted); -1 when none.
    pub second_offset: i64,
    /// `master_failover_state` (`no-failover`, `waiting-for-sync`, `failover-in-progress`).
    pub failover_state: String,
    /// Replicas connected to this server.
    pub replicas: Vec<ListedReplica>,
    /// Keys over all databases (from the keyspace section).
    pub keys: i64,
    /// Still loading its dataset from disk.
    pub loading: bool,
    /// Current `min-replicas-to-write` and `min-replicas-max-lag`.
    pub min_replicas: Option<(i64, i64)>,
    /// Current `repl-ping-replica-period` (seconds between the pings a
    /// primary sends its replicas; bounds their `master_last_io_seconds_ago`).
    pub ping_period: Option<i64>,
}

/// Parse `key:value` lines of an INFO reply.
fn fields(info: &str) -> BTreeMap<&str, &str> {
    info.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.trim_end().split_once(':'))
        .collect()
}

/// Parse a `k=v,k=v` list (replica entries, keyspace lines).
fn kv_list(s: &str) -> BTreeMap<&str, &str> {
    s.split(',').filter_map(|p| p.split_once('=')).collect()
}

/// Parse the text of `INFO` (at least sections server, replication,
/// persistence and keyspace).
pub fn parse_info(info: &str) -> Result<NodeInfo, RedisError> {
    let f = fields(info);
    let get = |k: &str| f.get(k).copied();
    let role = match get("role") {
        Some("master") => ServerRole::Master,
        Some("slave") => ServerRole::Replica,
        other => {
            return Err(RedisError::Protocol(format!(
                "INFO reports an unknown role {other:?}"
            )));
        }
    };
    let num = |k: &str| get(k).and_then(|v| v.parse::<i64>().ok()).unwrap_or(0);
    let master = match role {
        ServerRole::Replica => match (get("master_host"), get("master_port")) {
            (Some(h), Some(p)) => p.parse::<u16>().ok().map(|p| (h.to_string(), p)),
            _ => None,
        },
        ServerRole::Master => None,
    };
    let mut replicas = Vec::new();
    for (k, v) in &f {
        if k.starts_with("slave") && k[5..].chars().all(|c| c.is_ascii_digit()) && k.len() > 5 {
            let e = kv_list(v);
            if let (Some(ip), Some(port)) =
                (e.get("ip"), e.get("port").and_then(|p| p.parse().ok()))
            {
                replicas.push(ListedReplica {
                    ip: ip.to_string(),
                    port,
                    state: e.get("state").unwrap_or(&"").to_string(),
                    offset: e.get("offset").and_then(|o| o.parse().ok()).unwrap_or(0),
                });
            }
        }
    }
    let keys = f
        .iter()
        .filter(|(k, _)| k.starts_with("db") && k[2..].chars().all(|c| c.is_ascii_digit()))
        .filter_map(|(_, v)| kv_list(v).get("keys").and_then(|n| n.parse::<i64>().ok()))
        .sum();
    Ok(NodeInfo {
        run_id: get("run_id").unwrap_or_default().to_string(),
        role,
        master,
        link_up: get("master_link_status") == Some("up"),
        last_io_secs: (get("master_link_status") == Some("up"))
            .then(|| get("master_last_io_seconds_ago").and_then(|v| v.parse::<i64>().ok()))
            .flatten()
            .filter(|s| *s >= 0),
        sync_in_progress: get("master_sync_in_progress") == Some("1"),
        offset: num("master_repl_offset"),
        replid: get("master_replid").unwrap_or_default().to_string(),
        replid2: get("master_replid2").unwrap_or_default().to_string(),
        second_offset: get("second_repl_offset")
            .and_then(|v| v.parse().ok())
            .unwrap_or(-1),
        failover_state: get("master_failover_state")
            .unwrap_or("no-failover")
            .to_string(),
        replicas,
        keys,
        loading: get("loading") == Some("1"),
        min_replicas: None,
        ping_period: None,
    })
}

/// Parse the flat reply of `CONFIG GET min-replicas-*`.
pub fn parse_min_replicas(pairs: &[String]) -> Option<(i64, i64)> {
    let mut to_write = None;
    let mut max_lag = None;
    for kv in pairs.chunks(2) {
        if let [k, v] = kv {
            match k.as_str() {
                "min-replicas-to-write" => to_write = v.parse().ok(),
                "min-replicas-max-lag" => max_lag = v.parse().ok(),
                _ => {}
            }
        }
    }
    Some((to_write?, max_lag?))
}

/// Timeouts of the operator's own connections.
#[derive(Clone, Copy, Debug)]
pub struct Timeouts {
    pub connect: Duration,
    pub command: Duration,
}

/// Parse the flat reply of `CONFIG GET repl-ping-replica-period`.
pub fn parse_ping_period(pairs: &[String]) -> Option<i64> {
    pairs
        .chunks(2)
        .find(|kv| kv.first().map(String::as_str) == Some("repl-ping-replica-period"))
        .and_then(|kv| kv.get(1))
        .and_then(|v| v.parse().ok())
}

/// Observe one server: INFO, the durability settings and the ping period in
/// one round trip.
pub async fn observe(conn: &mut Conn) -> Result<NodeInfo, RedisError> {
    let (info, cfg, ping): (String, Vec<String>, Vec<String>) = redis::pipe()
        .cmd("INFO")
        .cmd("CONFIG")
        .arg("GET")
        .arg("min-replicas-*")
        .cmd("CONFIG")
        .arg("GET")
        .arg("repl-ping-replica-period")
        .query_async(conn)
        .await
        .map_err(|e| RedisError::command("INFO", e))?;
    let mut node = parse_info(&info)?;
    node.min_replicas = parse_min_replicas(&cfg);
    node.ping_period = parse_ping_period(&ping);
    Ok(node)
}

#[cfg(test)]
mod tests {
    use super::*;

    const REPLICA: &str = "# Server\r\nredis_version:7.0.15\r\nrun_id:abc\r\n# Persistence\r\nloading:0\r\n# Replication\r\nrole:slave\r\nmaster_host:10.0.0.1\r\nmaster_port:6379\r\nmaster_link_status:up\r\nmaster_last_io_seconds_ago:1\r\nmaster_sync_in_progress:0\r\nslave_repl_offset:50\r\nconnected_slaves:0\r\nmaster_failover_state:no-failover\r\nmaster_replid:r1\r\nmaster_replid2:0000\r\nmaster_repl_offset:50\r\n# Keyspace\r\ndb0:keys=3,expires=0,avg_ttl=0\r\ndb2:keys=4,expires=0,avg_ttl=0\r\n";

    #[test]
    fn parses_a_replica() {
        let n = parse_info(REPLICA).unwrap();
        assert_eq!(n.role, ServerRole::Replica);
        assert_eq!(n.master, Some(("10.0.0.1".to_string(), 6379)));
        assert!(n.link_up);
        assert_eq!(n.last_io_secs, Some(1));
        assert_eq!(n.offset, 50);
        assert_eq!(n.replid, "r1");
        assert_eq!(n.keys, 7);
        assert_eq!(n.run_id, "abc");
        assert!(!n.loading);
    }

    #[test]
    fn parses_a_primary_with_replicas() {
        let info = "run_id:x\nloading:1\nrole:master\nconnected_slaves:2\nslave0:ip=10.0.0.2,port=6379,state=online,offset=42,lag=0\nslave1:ip=r-2.h,port=6380,state=wait_bgsave,offset=0,lag=1\nmaster_repl_offset:42\nslave_read_only:1\n";
        let n = parse_info(info).unwrap();
        assert_eq!(n.role, ServerRole::Master);
        assert_eq!(n.master, None);
        assert!(n.loading);
        assert_eq!(
            n.replicas,
            vec![
                ListedReplica {
                    ip: "10.0.0.2".into(),
                    port: 6379,
                    state: "online".into(),
                    offset: 42
                },
                ListedReplica {
                    ip: "r-2.h".into(),
                    port: 6380,
                    state: "wait_bgsave".into(),
                    offset: 0
                },
            ]
        );
        assert_eq!(n.keys, 0);
    }

    #[test]
    fn rejects_info_without_role() {
        assert!(parse_info("run_id:x\n").is_err());
    }

    #[test]
    fn parses_min_replicas() {
        let v: Vec<String> = ["min-replicas-max-lag", "10", "min-replicas-to-write", "1"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        assert_eq!(parse_min_replicas(&v), Some((1, 10)));
        assert_eq!(parse_min_replicas(&[]), None);
        let p: Vec<String> = ["repl-ping-replica-period", "10"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        assert_eq!(parse_ping_period(&p), Some(10));
        assert_eq!(parse_ping_period(&[]), None);
    }
}
