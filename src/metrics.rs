//! Prometheus metrics served on `/metrics`.

use std::sync::atomic::AtomicU64;

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
    pub namespace: String,
    pub cluster: String,
    pub member: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ClusterLabels {
    pub namespace: String,
    pub cluster: String,
}

/// Every series the operator exports.
pub struct Metrics {
    registry: Registry,
    pub reconciles: Family<ControllerLabels, Counter>,
    pub reconcile_errors: Family<ControllerLabels, Counter>,
    pub reconcile_duration: Family<ControllerLabels, Histogram>,
    pub primary_changes: Family<PrimaryChangeLabels, Counter>,
    pub replication_lag: Family<MemberLabels, Gauge>,
    pub backup_duration: Family<ClusterLabels, Gauge<f64, AtomicU64>>,
    pub backup_bytes: Family<ClusterLabels, Gauge>,
    pub backup_last_success: Family<ClusterLabels, Gauge>,
    pub backup_last_verified: Family<ClusterLabels, Gauge>,
    pub leader: Gauge,
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
        let backup_duration = Family::<ClusterLabels, Gauge<f64, AtomicU64>>::default();
        let backup_bytes = Family::<ClusterLabels, Gauge>::default();
        let backup_last_success = Family::<ClusterLabels, Gauge>::default();
        let backup_last_verified = Family::<ClusterLabels, Gauge>::default();
        let leader = Gauge::default();
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
            "leader",
            "1 while this process holds the leader lease",
            leader.clone(),
        );
        Self {
            registry,
            reconciles,
            reconcile_errors,
            reconcile_duration,
            primary_changes,
            replication_lag,
            backup_duration,
            backup_bytes,
            backup_last_success,
            backup_last_verified,
            leader,
        }
    }

    /// Text exposition format.
    pub fn encode(&self) -> Result<String, std::fmt::Error> {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)?;
        Ok(out)
    }

    pub fn controller(controller: &str) -> ControllerLabels {
        ControllerLabels {
            controller: controller.to_string(),
        }
    }
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
        m.replication_lag
            .get_or_create(&MemberLabels {
                namespace: "ns".into(),
                cluster: "c".into(),
                member: "c-1".into(),
            })
            .set(42);
        m.backup_last_success
            .get_or_create(&ClusterLabels {
                namespace: "ns".into(),
                cluster: "c".into(),
            })
            .set(1_800_000_000);
        m.leader.set(1);
        let text = m.encode().expect("encode");
        for series in [
            "ordinal_reconciles_total{controller=\"RedisReplication\"} 1",
            "ordinal_reconcile_errors_total{controller=\"RedisReplication\"} 1",
            "ordinal_reconcile_duration_seconds_count{controller=\"RedisReplication\"} 1",
            "ordinal_primary_changes_total{controller=\"RedisReplication\",namespace=\"ns\",cluster=\"c\",kind=\"Failover\",reason=\"PrimaryLost\"} 1",
            "ordinal_replication_lag{namespace=\"ns\",cluster=\"c\",member=\"c-1\"} 42",
            "ordinal_leader 1",
            "ordinal_backup_last_success_timestamp_seconds{namespace=\"ns\",cluster=\"c\"} 1800000000",
        ] {
            assert!(text.contains(series), "missing {series} in\n{text}");
        }
    }
}
