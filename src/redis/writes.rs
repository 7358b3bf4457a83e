//! Whether the primary accepts writes. A Redis primary with
//! `min-replicas-to-write N` answers every write with `NOREPLICAS` while fewer
//! than N replicas are "good" (acknowledged within `min-replicas-max-lag`);
//! INFO reports that count as `min_slaves_good_slaves`.

use super::conn::Conn;

use super::RedisError;
use crate::engine::PrimaryWrites;

/// Judge the primary's write availability from its `INFO replication` text
/// and its `min-replicas-to-write`.
pub fn from_info(info: &str, to_write: i64) -> PrimaryWrites {
    if to_write <= 0 {
        return PrimaryWrites::Accepted;
    }
    let field = |key: &str| {
        info.lines()
            .find_map(|l| l.trim_end().strip_prefix(key)?.strip_prefix(':'))
            .map(str::to_string)
    };
    // Without `min-replicas-max-lag` Redis does not count good replicas; fall
    // back to the replicas it lists online.
    let good = field("min_slaves_good_slaves")
        .and_then(|v| v.parse::<i64>().ok())
        .unwrap_or_else(|| {
            info.lines()
                .filter(|l| {
                    l.strip_prefix("slave")
                        .and_then(|r| r.split_once(':'))
                        .is_some_and(|(n, v)| {
                            n.chars().all(|c| c.is_ascii_digit()) && v.contains("state=online")
                        })
                })
                .count() as i64
        });
    if good >= to_write {
        PrimaryWrites::Accepted
    } else {
        PrimaryWrites::Refused {
            reason: "NotEnoughReplicas".into(),
            message: format!(
                "NOREPLICAS: {good} replica(s) acknowledge in time, min-replicas-to-write (spec.durability.minReplicasToWrite) is {to_write}"
            ),
        }
    }
}

/// Ask the primary: `CONFIG GET min-replicas-to-write` and `INFO replication`.
pub async fn probe(conn: &mut Conn) -> Result<PrimaryWrites, RedisError> {
    let (cfg, info): (Vec<String>, String) = redis::pipe()
        .cmd("CONFIG")
        .arg("GET")
        .arg("min-replicas-to-write")
        .cmd("INFO")
        .arg("replication")
        .query_async(conn)
        .await
        .map_err(|e| RedisError::command("probe writes", e))?;
    let to_write = cfg.get(1).and_then(|v| v.parse().ok()).unwrap_or(0);
    Ok(from_info(&info, to_write))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn too_few_good_replicas_refuse_writes() {
        let info = "role:master\r\nconnected_slaves:1\r\nslave0:ip=a,port=6379,state=online,offset=5,lag=0\r\nmin_slaves_good_slaves:1\r\n";
        assert_eq!(from_info(info, 1), PrimaryWrites::Accepted);
        match from_info(info, 2) {
            PrimaryWrites::Refused { reason, message } => {
                assert_eq!(reason, "NotEnoughReplicas");
                assert!(
                    message.contains("NOREPLICAS") && message.contains("is 2"),
                    "{message}"
                );
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(from_info("role:master\r\n", 0), PrimaryWrites::Accepted);
    }

    #[test]
    fn without_a_good_count_online_replicas_are_counted() {
        let info = "role:master\nslave0:ip=a,port=1,state=online,offset=1\nslave1:ip=b,port=1,state=wait_bgsave,offset=0\n";
        assert_eq!(from_info(info, 1), PrimaryWrites::Accepted);
        assert!(matches!(from_info(info, 2), PrimaryWrites::Refused { .. }));
    }
}
