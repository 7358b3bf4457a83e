//! Pure builders: a validated cluster view in, Kubernetes objects out. No I/O.

pub mod config;
pub mod labels;
pub mod pdb;
pub mod secret;
pub mod services;
pub mod statefulset;

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;

use crate::api::{MemberTemplate, MySqlFlavor, StorageSpec};

/// Which database a cluster runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DbKind {
    Redis,
    MySql(MySqlFlavor),
}

impl DbKind {
    /// `app.kubernetes.io/name` of the members.
    pub fn app(self) -> &'static str {
        match self {
            DbKind::Redis => "redis",
            DbKind::MySql(_) => "mysql",
        }
    }

    pub fn port(self) -> u16 {
        match self {
            DbKind::Redis => 6379,
            DbKind::MySql(_) => 3306,
        }
    }

    /// Where the data volume is mounted in the database container.
    pub fn data_dir(self) -> &'static str {
        match self {
            DbKind::Redis => "/data",
            DbKind::MySql(_) => "/var/lib/mysql",
        }
    }

    pub fn default_image(self) -> &'static str {
        match self {
            DbKind::Redis => "redis:7.2",
            DbKind::MySql(MySqlFlavor::MariaDB) => "mariadb:10.11",
            DbKind::MySql(MySqlFlavor::MySQL) => "mysql:8.4",
        }
    }

    /// Keys of the credentials Secret.
    pub fn secret_keys(self) -> &'static [&'static str] {
        match self {
            DbKind::Redis => &[secret::REDIS_PASSWORD],
            DbKind::MySql(_) => &[
                secret::MYSQL_ROOT,
                secret::MYSQL_REPLICATION,
                secret::MYSQL_OPERATOR,
            ],
        }
    }
}

/// Everything the builders need, taken from a validated spec.
#[derive(Clone, Debug, PartialEq)]
pub struct ClusterView {
    pub kind: DbKind,
    pub name: String,
    pub namespace: String,
    /// Owner reference to the custom resource, set on every child.
    pub owner: OwnerReference,
    pub replicas: i32,
    pub template: MemberTemplate,
    pub storage: StorageSpec,
    /// Secret holding the credentials (user's or generated).
    pub secret_name: String,
    /// Cluster DNS domain, e.g. `cluster.local`.
    pub cluster_domain: String,
}

impl ClusterView {
    pub fn headless_service(&self) -> String {
        format!("{}-headless", self.name)
    }

    pub fn primary_service(&self) -> String {
        format!("{}-primary", self.name)
    }

    pub fn read_service(&self) -> String {
        format!("{}-read", self.name)
    }

    pub fn config_map(&self) -> String {
        format!("{}-config", self.name)
    }

    pub fn pod_name(&self, ordinal: i32) -> String {
        format!("{}-{}", self.name, ordinal)
    }

    /// Stable DNS name of a member: `<pod>.<headless>.<ns>.svc.<domain>`.
    pub fn member_dns(&self, ordinal: i32) -> String {
        format!(
            "{}.{}.{}.svc.{}",
            self.pod_name(ordinal),
            self.headless_service(),
            self.namespace,
            self.cluster_domain
        )
    }

    pub fn image(&self) -> String {
        self.template
            .image
            .clone()
            .unwrap_or_else(|| self.kind.default_image().to_string())
    }

    /// Generated Secret name when the user names none.
    pub fn generated_secret_name(name: &str) -> String {
        format!("{name}-auth")
    }
}

/// Files of the per-ordinal ConfigMap plus the hash of what needs a restart.
#[derive(Clone, Debug, PartialEq)]
pub struct RenderedConfig {
    /// `<ordinal>.conf` / `<ordinal>.cnf` → contents.
    pub files: BTreeMap<String, String>,
    /// sha256 over the settings that only take effect at process start (not the
    /// role lines, which the operator changes live), for the pod annotation.
    pub restart_hash: String,
}
