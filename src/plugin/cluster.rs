//! Which cluster a command names (`NAME`, `redis/NAME`, `mysql/NAME`) and
//! the few things the plugin reads from either kind.

use std::fmt;

use anyhow::{Context as _, bail};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, Patch, PatchParams};
use kube::{Client, Resource};

use crate::api::backup::ClusterKind;
use crate::api::{ClusterStatus, MySQLCluster, RedisReplication};
use crate::controller::kinds::ClusterResource;
use crate::resources::{ClusterView, DbKind};

/// Kind of a cluster resource.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Redis,
    MySql,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Redis => "RedisReplication",
            Kind::MySql => "MySQLCluster",
        }
    }

    /// The `Backup` API's name of this kind.
    pub fn backup_kind(self) -> ClusterKind {
        match self {
            Kind::Redis => ClusterKind::RedisReplication,
            Kind::MySql => ClusterKind::MySQLCluster,
        }
    }

    pub fn from_backup_kind(kind: ClusterKind) -> Self {
        match kind {
            ClusterKind::RedisReplication => Kind::Redis,
            ClusterKind::MySQLCluster => Kind::MySql,
        }
    }

    /// A `TYPE/` prefix as kubectl users write it: the short engine word, the
    /// kind (singular or plural, any case) or its short name.
    fn from_prefix(prefix: &str) -> Option<Self> {
        match prefix.to_ascii_lowercase().as_str() {
            "redis" | "redisreplication" | "redisreplications" | "rr" => Some(Kind::Redis),
            "mysql" | "mariadb" | "mysqlcluster" | "mysqlclusters" => Some(Kind::MySql),
            _ => None,
        }
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A cluster as named on the command line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClusterArg {
    /// None: look the name up under both kinds.
    pub kind: Option<Kind>,
    pub name: String,
}

impl std::str::FromStr for ClusterArg {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (kind, name) = match s.split_once('/') {
            Some((prefix, name)) => {
                let kind = Kind::from_prefix(prefix).ok_or_else(|| {
                    format!(
                        "unknown cluster type {prefix:?} in {s:?}: use redis/NAME, mysql/NAME or just NAME"
                    )
                })?;
                (Some(kind), name)
            }
            None => (None, s),
        };
        if name.is_empty() || name.contains('/') {
            return Err(format!(
                "{s:?} is not a cluster name: use NAME, redis/NAME or mysql/NAME"
            ));
        }
        Ok(ClusterArg {
            kind,
            name: name.to_string(),
        })
    }
}

/// A cluster read from the API server.
#[derive(Clone, Debug)]
pub enum Cluster {
    Redis(RedisReplication),
    MySql(MySQLCluster),
}

impl Cluster {
    pub fn kind(&self) -> Kind {
        match self {
            Cluster::Redis(_) => Kind::Redis,
            Cluster::MySql(_) => Kind::MySql,
        }
    }

    pub fn meta(&self) -> &ObjectMeta {
        match self {
            Cluster::Redis(c) => c.meta(),
            Cluster::MySql(c) => c.meta(),
        }
    }

    pub fn name(&self) -> String {
        self.meta().name.clone().unwrap_or_default()
    }

    pub fn namespace(&self) -> String {
        self.meta().namespace.clone().unwrap_or_default()
    }

    pub fn status(&self) -> Option<&ClusterStatus> {
        match self {
            Cluster::Redis(c) => c.cluster_status(),
            Cluster::MySql(c) => c.cluster_status(),
        }
    }

    pub fn replicas(&self) -> i32 {
        match self {
            Cluster::Redis(c) => c.replicas(),
            Cluster::MySql(c) => c.replicas(),
        }
    }

    pub fn desired_primary(&self) -> Option<i32> {
        match self {
            Cluster::Redis(c) => c.desired_primary(),
            Cluster::MySql(c) => c.desired_primary(),
        }
    }

    pub fn db_kind(&self) -> DbKind {
        match self {
            Cluster::Redis(c) => c.db_kind(),
            Cluster::MySql(c) => c.db_kind(),
        }
    }

    /// The credentials Secret: the user's, or the one Ordinal generates.
    pub fn secret_name(&self) -> String {
        let auth = match self {
            Cluster::Redis(c) => c.auth(),
            Cluster::MySql(c) => c.auth(),
        };
        auth.secret_name
            .clone()
            .unwrap_or_else(|| ClusterView::generated_secret_name(&self.name()))
    }

    pub fn paused(&self) -> bool {
        crate::api::is_paused(self.meta())
    }

    /// `TYPE/NAME` as the commands print it.
    pub fn display(&self) -> String {
        let prefix = match self.kind() {
            Kind::Redis => "redis",
            Kind::MySql => "mysql",
        };
        format!("{prefix}/{}", self.name())
    }
}

async fn get_opt<K: ClusterResource>(
    client: &Client,
    ns: &str,
    name: &str,
) -> anyhow::Result<Option<K>> {
    let api: Api<K> = Api::namespaced(client.clone(), ns);
    api.get_opt(name)
        .await
        .with_context(|| format!("read {} {ns}/{name}", K::kind(&())))
}

/// Read the named cluster; with no kind given, whichever kind has that name
/// (both: ambiguous, refused).
pub async fn fetch(client: &Client, ns: &str, arg: &ClusterArg) -> anyhow::Result<Cluster> {
    let name = &arg.name;
    let redis = match arg.kind {
        Some(Kind::MySql) => None,
        _ => get_opt::<RedisReplication>(client, ns, name).await?,
    };
    let mysql = match arg.kind {
        Some(Kind::Redis) => None,
        _ => get_opt::<MySQLCluster>(client, ns, name).await?,
    };
    match (redis, mysql) {
        (Some(_), Some(_)) => bail!(
            "both a RedisReplication and a MySQLCluster are named {name} in namespace {ns}: say which, redis/{name} or mysql/{name}"
        ),
        (Some(r), None) => Ok(Cluster::Redis(r)),
        (None, Some(m)) => Ok(Cluster::MySql(m)),
        (None, None) => match arg.kind {
            Some(kind) => bail!("no {kind} named {name} in namespace {ns}"),
            None => bail!("no RedisReplication or MySQLCluster named {name} in namespace {ns}"),
        },
    }
}

/// JSON merge patch of a cluster (spec or metadata); the generation after it.
pub async fn merge_patch(
    client: &Client,
    cluster: &Cluster,
    patch: &serde_json::Value,
) -> anyhow::Result<Option<i64>> {
    let (ns, name) = (cluster.namespace(), cluster.name());
    let params = PatchParams::default();
    let result = match cluster.kind() {
        Kind::Redis => Api::<RedisReplication>::namespaced(client.clone(), &ns)
            .patch(&name, &params, &Patch::Merge(patch))
            .await
            .map(|c| c.metadata.generation),
        Kind::MySql => Api::<MySQLCluster>::namespaced(client.clone(), &ns)
            .patch(&name, &params, &Patch::Merge(patch))
            .await
            .map(|c| c.metadata.generation),
    };
    result
        .map_err(api_error)
        .with_context(|| format!("update {}", cluster.display()))
}

/// The API server's own message for a refusal (e.g. a CEL rule), not the
/// whole debug form of the error.
pub fn api_error(e: kube::Error) -> anyhow::Error {
    match e {
        kube::Error::Api(status) => anyhow::anyhow!("{}", status.message),
        other => anyhow::Error::new(other),
    }
}

/// Re-read a cluster.
pub async fn refresh(client: &Client, cluster: &Cluster) -> anyhow::Result<Cluster> {
    fetch(
        client,
        &cluster.namespace(),
        &ClusterArg {
            kind: Some(cluster.kind()),
            name: cluster.name(),
        },
    )
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_with_and_without_a_type() {
        let plain: ClusterArg = "cache".parse().expect("plain");
        assert_eq!((plain.kind, plain.name.as_str()), (None, "cache"));
        for (text, kind) in [
            ("redis/cache", Kind::Redis),
            ("rr/cache", Kind::Redis),
            ("RedisReplication/cache", Kind::Redis),
            ("mysql/cache", Kind::MySql),
            ("mariadb/cache", Kind::MySql),
            ("mysqlclusters/cache", Kind::MySql),
        ] {
            let arg: ClusterArg = text.parse().expect(text);
            assert_eq!(arg.kind, Some(kind), "{text}");
            assert_eq!(arg.name, "cache", "{text}");
        }
        for bad in ["postgres/db", "redis/", "", "redis/a/b"] {
            let err = bad.parse::<ClusterArg>().expect_err(bad);
            assert!(err.contains("NAME"), "{bad}: {err}");
        }
    }

    #[test]
    fn backup_kinds_round_trip() {
        for kind in [Kind::Redis, Kind::MySql] {
            assert_eq!(Kind::from_backup_kind(kind.backup_kind()), kind);
            // The Backup API spells the kind as the resource's kind.
            let json = serde_json::to_value(kind.backup_kind()).expect("json");
            assert_eq!(json, kind.as_str());
        }
    }
}
