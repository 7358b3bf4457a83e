//! Prometheus metrics served on `/metrics`.

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::AtomicU64;
use std::sync::{Mutex, PoisonError};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ControllerLabels {
    pub controller: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PrimaryChangeLabels {
    pub controller: String,
    pub namespace: String,
    pub cluster: String,
    /// `Failover` or `Switchover`.
    pub kind: String,
    pub reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct MemberLabels {
    pub controller: String,
    pub namespace: String,
    pub cluster: String,
    pub member: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ClusterLabels {
    pub namespace: String,
    pub cluster: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ControlledClusterLabels {
    pub controller: String,
    pub namespace: String,
    pub cluster: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct EngineLabels {
    /// `redis` or `mysql`.
    pub engine: String,
}

/// One member as a reconcile pass observed it.
#[derive(Clone, Debug)]
pub struct MemberSample {
    pub pod: String,
    /// Confirmed as the writable primary.
    pub primary: bool,
    /// A replica with its replication link up.
    pub replicating: bool,
    pub lag: Option<i64>,
}

/// Every series the operator exports.
pub struct Metrics {
    registry: Registry,
    /// Members last recorded per cluster, to drop the series of members
    /// that are gone (scale-down) or of a deleted cluster.
    members: Mutex<HashMap<ControlledClusterLabels, BTreeSet<String>>>,
    pub reconciles: Family<ControllerLabels, Counter>,
    pub reconcile_errors: Family<ControllerLabels, Counter>,
    pub reconcile_duration: Family<ControllerLabels, Histogram>,
    pub primary_changes: Family<PrimaryChangeLabels, Counter>,
    pub replication_lag: Family<MemberLabels, Gauge>,
    pub replication_link_up: Family<MemberLabels, Gauge>,
    pub primaries: Family<ControlledClusterLabels, Gauge>,
    pub backup_duration: Family<ClusterLabels, Gauge<f64, AtomicU64>>,
    pub backup_bytes: Family<ClusterLabels, Gauge>,
    pub backup_last_success: Family<ClusterLabels, Gauge>,
    pub backup_last_verified: Family<ClusterLabels, Gauge>,
    pub backup_failures: Family<ClusterLabels, Counter>,
    pub backup_verify_failures: Family<ClusterLabels, Counter>,
    pub leader: Gauge,
    pub connections_kept: Family<EngineLabels, Gauge>,
    pub primary_watches: Family<EngineLabels, Gauge>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("ordinal");
        let reconciles = Family::<ControllerLabels, Counter>::default();
        let reconcile_errors = Family::<ControllerLabels, Counter>::default();
        let reconcile_duration =
            Family::<ControllerLabels, Histogram>::new_with_constructor(|| {
                Histogram::new(exponential_buckets(0.005, 2.0, 14))
            });
        let primary_changes = Family::<PrimaryChangeLabels, Counter>::default();
        let replication_lag = Family::<MemberLabels, Gauge>::default();
        let replication_link_up = Family::<MemberLabels, Gauge>::default();
        let primaries = Family::<ControlledClusterLabels, Gauge>::default();
        let backup_duration = Family::<ClusterLabels, Gauge<f64, AtomicU64>>::default();
        let backup_bytes = Family::<ClusterLabels, Gauge>::default();
        let backup_last_success = Family::<ClusterLabels, Gauge>::default();
        let backup_last_verified = Family::<ClusterLabels, Gauge>::default();
        let backup_failures = Family::<ClusterLabels, Counter>::default();
        let backup_verify_failures = Family::<ClusterLabels, Counter>::default();
        let leader = Gauge::default();
        let connections_kept = Family::<EngineLabels, Gauge>::default();
        let primary_watches = Family::<EngineLabels, Gauge>::default();
        registry.register(
            "reconciles",
            "Reconcile passes by controller",
            reconciles.clone(),
        );
        registry.register(
            "reconcile_errors",
            "Failed reconcile passes by controller",
            reconcile_errors.clone(),
        );
        registry.register(
            "reconcile_duration_seconds",
            "Duration of reconcile passes",
            reconcile_duration.clone(),
        );
        registry.register(
            "primary_changes",
            "Completed failovers and switchovers by kind and reason",
            primary_changes.clone(),
        );
        registry.register(
            "replication_lag",
            "Replication lag of a member: bytes (Redis) or seconds (MySQL)",
            replication_lag.clone(),
        );
        registry.register(
            "replication_link_up",
            "1 while a replica's replication link to its source is up, 0 while it is down",
            replication_link_up.clone(),
        );
        registry.register(
            "cluster_primaries",
            "Members confirmed as writable primary (1 when healthy, 0: no primary)",
            primaries.clone(),
        );
        registry.register(
            "backup_duration_seconds",
            "Duration of the last backup",
            backup_duration.clone(),
        );
        registry.register(
            "backup_bytes",
            "Size of the last backup artifact",
            backup_bytes.clone(),
        );
        registry.register(
            "backup_last_success_timestamp_seconds",
            "Unix time of the last successful backup",
            backup_last_success.clone(),
        );
        registry.register(
            "backup_last_verified_timestamp_seconds",
            "Unix time a backup of the cluster last restored successfully in verification",
            backup_last_verified.clone(),
        );
        registry.register(
            "backup_failures",
            "Backups that ended Failed",
            backup_failures.clone(),
        );
        registry.register(
            "backup_verify_failures",
            "Backup verifications that could not restore the backup",
            backup_verify_failures.clone(),
        );
        registry.register(
            "leader",
            "1 while this process holds the leader lease",
            leader.clone(),
        );
        registry.register(
            "db_connections_kept",
            "Database connections to members kept between reconcile passes, by engine",
            connections_kept.clone(),
        );
        registry.register(
            "db_primary_watch_connections",
            "Open primary watch connections (one per cluster with a confirmed primary), by engine",
            primary_watches.clone(),
        );
        Self {
            registry,
            members: Mutex::default(),
            reconciles,
            reconcile_errors,
            reconcile_duration,
            primary_changes,
            replication_lag,
            replication_link_up,
            primaries,
            backup_duration,
            backup_bytes,
            backup_last_success,
            backup_last_verified,
            backup_failures,
            backup_verify_failures,
            leader,
            connections_kept,
            primary_watches,
        }
    }

    /// The gauge of open primary watch connections of an engine.
    pub fn primary_watches(&self, engine: &str) -> Gauge {
        self.primary_watches
            .get_or_create(&EngineLabels {
                engine: engine.to_string(),
            })
            .clone()
    }

    /// The gauge of connections an engine's cache keeps (`redis`, `mysql`).
    pub fn connections_kept(&self, engine: &str) -> Gauge {
        self.connections_kept
            .get_or_create(&EngineLabels {
                engine: engine.to_string(),
            })
            .clone()
    }

    /// The Prometheus text format (version 0.0.4, what `/metrics` declares).
    pub fn encode(&self) -> Result<String, std::fmt::Error> {
        let mut open_metrics = String::new();
        prometheus_client::encoding::text::encode(&mut open_metrics, &self.registry)?;
        Ok(text_format(&open_metrics))
    }

    /// The per-cluster and per-member gauges after a reconcile pass:
    /// `cluster_primaries`, `replication_link_up` (0 for every member but the
    /// primary that is not a replica with its link up; no series for the
    /// primary) and `replication_lag`. Members no longer listed lose their
    /// series.
    pub fn record_cluster(&self, cluster: &ControlledClusterLabels, members: &[MemberSample]) {
        let member_labels = |pod: &str| MemberLabels {
            controller: cluster.controller.clone(),
            namespace: cluster.namespace.clone(),
            cluster: cluster.cluster.clone(),
            member: pod.to_string(),
        };
        let current: BTreeSet<String> = members.iter().map(|m| m.pod.clone()).collect();
        let previous = self
            .members
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(cluster.clone(), current.clone())
            .unwrap_or_default();
        for gone in previous.difference(&current) {
            self.replication_lag.remove(&member_labels(gone));
            self.replication_link_up.remove(&member_labels(gone));
        }
        for m in members {
            let labels = member_labels(&m.pod);
            if let Some(lag) = m.lag {
                self.replication_lag.get_or_create(&labels).set(lag);
            } else {
                self.replication_lag.remove(&labels);
            }
            if m.primary {
                self.replication_link_up.remove(&labels);
            } else {
                self.replication_link_up
                    .get_or_create(&labels)
                    .set(i64::from(m.replicating));
            }
        }
        let primaries = members.iter().filter(|m| m.primary).count();
        self.primaries
            .get_or_create(cluster)
            .set(i64::try_from(primaries).unwrap_or(i64::MAX));
    }

    /// Drop the gauges of a deleted cluster (its counters stay).
    pub fn forget_cluster(&self, cluster: &ControlledClusterLabels) {
        self.record_cluster(cluster, &[]);
        self.primaries.remove(cluster);
        self.members
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(cluster);
        let labels = ClusterLabels {
            namespace: cluster.namespace.clone(),
            cluster: cluster.cluster.clone(),
        };
        self.backup_duration.remove(&labels);
        self.backup_bytes.remove(&labels);
        self.backup_last_success.remove(&labels);
        self.backup_last_verified.remove(&labels);
    }

    pub fn controller(controller: &str) -> ControllerLabels {
        ControllerLabels {
            controller: controller.to_string(),
        }
    }
}

/// prometheus-client writes OpenMetrics, where a counter family `x` has
/// samples `x_total`; in the text format 0.0.4 HELP and TYPE must name the
/// samples (`x_total`), or a scraper sees untyped series without help. There
/// is no `# EOF` in that format.
fn text_format(open_metrics: &str) -> String {
    let counters: BTreeSet<&str> = open_metrics
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.strip_suffix(" counter"))
        .collect();
    let mut out = String::with_capacity(open_metrics.len());
    for line in open_metrics.lines() {
        if line == "# EOF" || line.starts_with("# UNIT ") {
            continue;
        }
        let renamed = ["# HELP ", "# TYPE "].iter().find_map(|prefix| {
            let rest = line.strip_prefix(prefix)?;
            let (name, tail) = rest.split_once(' ')?;
            counters
                .contains(name)
                .then(|| format!("{prefix}{name}_total {tail}"))
        });
        match renamed {
            Some(l) => out.push_str(&l),
            None => out.push_str(line),
        }
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exports_the_listed_series() {
        let m = Metrics::new();
        let c = Metrics::controller("RedisReplication");
        m.reconciles.get_or_create(&c).inc();
        m.reconcile_errors.get_or_create(&c).inc();
        m.reconcile_duration.get_or_create(&c).observe(0.02);
        m.primary_changes
            .get_or_create(&PrimaryChangeLabels {
                controller: "RedisReplication".into(),
                namespace: "ns".into(),
                cluster: "c".into(),
                kind: "Failover".into(),
                reason: "PrimaryLost".into(),
            })
            .inc();
        let member = MemberLabels {
            controller: "RedisReplication".into(),
            namespace: "ns".into(),
            cluster: "c".into(),
            member: "c-1".into(),
        };
        m.replication_lag.get_or_create(&member).set(42);
        m.replication_link_up.get_or_create(&member).set(1);
        m.primaries
            .get_or_create(&ControlledClusterLabels {
                controller: "RedisReplication".into(),
                namespace: "ns".into(),
                cluster: "c".into(),
            })
            .set(1);
        let cluster = ClusterLabels {
            namespace: "ns".into(),
            cluster: "c".into(),
        };
        m.backup_last_success
            .get_or_create(&cluster)
            .set(1_800_000_000);
        m.backup_last_verified
            .get_or_create(&cluster)
            .set(1_800_000_100);
        m.backup_failures.get_or_create(&cluster).inc();
        m.backup_verify_failures.get_or_create(&cluster).inc();
        m.leader.set(1);
        m.connections_kept("redis").set(3);
        let text = m.encode().expect("encode");
        assert!(
            text.contains("# TYPE ordinal_reconciles_total counter\n")
                && text.contains("# HELP ordinal_reconciles_total ")
                && text.contains("# TYPE ordinal_leader gauge\n")
                && !text.contains("# EOF"),
            "text format 0.0.4:\n{text}"
        );
        for series in [
            "ordinal_reconciles_total{controller=\"RedisReplication\"} 1",
            "ordinal_reconcile_errors_total{controller=\"RedisReplication\"} 1",
            "ordinal_reconcile_duration_seconds_count{controller=\"RedisReplication\"} 1",
            "ordinal_primary_changes_total{controller=\"RedisReplication\",namespace=\"ns\",cluster=\"c\",kind=\"Failover\",reason=\"PrimaryLost\"} 1",
            "ordinal_replication_lag{controller=\"RedisReplication\",namespace=\"ns\",cluster=\"c\",member=\"c-1\"} 42",
            "ordinal_replication_link_up{controller=\"RedisReplication\",namespace=\"ns\",cluster=\"c\",member=\"c-1\"} 1",
            "ordinal_cluster_primaries{controller=\"RedisReplication\",namespace=\"ns\",cluster=\"c\"} 1",
            "ordinal_backup_last_verified_timestamp_seconds{namespace=\"ns\",cluster=\"c\"} 1800000100",
            "ordinal_backup_failures_total{namespace=\"ns\",cluster=\"c\"} 1",
            "ordinal_backup_verify_failures_total{namespace=\"ns\",cluster=\"c\"} 1",
            "ordinal_leader 1",
            "ordinal_db_connections_kept{engine=\"redis\"} 3",
            "ordinal_backup_last_success_timestamp_seconds{namespace=\"ns\",cluster=\"c\"} 1800000000",
        ] {
            assert!(text.contains(series), "missing {series} in\n{text}");
        }
    }

    #[test]
    fn cluster_gauges_follow_members_and_deletion() {
        let m = Metrics::new();
        let cluster = ControlledClusterLabels {
            controller: "MySQLCluster".into(),
            namespace: "ns".into(),
            cluster: "db".into(),
        };
        let member = |pod: &str, primary: bool, replicating: bool, lag: Option<i64>| MemberSample {
            pod: pod.into(),
            primary,
            replicating,
            lag,
        };
        m.record_cluster(
            &cluster,
            &[
                member("db-0", true, false, None),
                member("db-1", false, true, Some(0)),
                member("db-2", false, false, None),
            ],
        );
        let text = m.encode().expect("encode");
        let labels = |pod: &str| {
            format!(
                "{{controller=\"MySQLCluster\",namespace=\"ns\",cluster=\"db\",member=\"{pod}\"}}"
            )
        };
        assert!(text.contains("ordinal_cluster_primaries{controller=\"MySQLCluster\",namespace=\"ns\",cluster=\"db\"} 1"), "{text}");
        assert!(
            text.contains(&format!("ordinal_replication_link_up{} 1", labels("db-1"))),
            "{text}"
        );
        assert!(
            text.contains(&format!("ordinal_replication_link_up{} 0", labels("db-2"))),
            "{text}"
        );
        assert!(
            !text.contains(&format!("ordinal_replication_link_up{}", labels("db-0"))),
            "{text}"
        );

        // Scaled down to two, the primary lost: db-2's series go, no primary.
        m.record_cluster(
            &cluster,
            &[
                member("db-0", false, false, None),
                member("db-1", false, true, Some(3)),
            ],
        );
        let text = m.encode().expect("encode");
        assert!(text.contains("ordinal_cluster_primaries{controller=\"MySQLCluster\",namespace=\"ns\",cluster=\"db\"} 0"), "{text}");
        assert!(!text.contains(&labels("db-2")), "{text}");
        assert!(
            text.contains(&format!("ordinal_replication_link_up{} 0", labels("db-0"))),
            "{text}"
        );
        assert!(
            text.contains(&format!("ordinal_replication_lag{} 3", labels("db-1"))),
            "{text}"
        );

        m.backup_last_success
            .get_or_create(&ClusterLabels {
                namespace: "ns".into(),
                cluster: "db".into(),
            })
            .set(1);
        m.forget_cluster(&cluster);
        let text = m.encode().expect("encode");
        assert!(!text.contains("cluster=\"db\""), "{text}");
    }
}
