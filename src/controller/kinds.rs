//! What the generic cluster reconciler needs from each cluster kind.

use std::collections::BTreeMap;

use kube::Resource;
use kube::core::NamespaceResourceScope;
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::context::Context;
use crate::api::{
    AuthSpec, ClusterStatus, FailoverSpec, MemberTemplate, MySQLCluster, RedisReplication,
    ReplicationState, StorageSpec, mysql::MYSQL_OWNED_KEYS, redis::REDIS_OWNED_KEYS,
};
use crate::engine::Engine;
use crate::resources::{ClusterView, DbKind, RenderedConfig, config};

/// A custom resource describing a replicated database cluster.
pub trait ClusterResource:
    Resource<DynamicType = (), Scope = NamespaceResourceScope>
    + Clone
    + std::fmt::Debug
    + Serialize
    + DeserializeOwned
    + Send
    + Sync
    + 'static
{
    type Engine: Engine;

    fn db_kind(&self) -> DbKind;
    fn replicas(&self) -> i32;
    fn template(&self) -> &MemberTemplate;
    fn storage(&self) -> &StorageSpec;
    fn auth(&self) -> &AuthSpec;
    fn config(&self) -> &BTreeMap<String, String>;
    fn failover(&self) -> &FailoverSpec;
    fn desired_primary(&self) -> Option<i32>;
    fn restore_spec(&self) -> Option<&crate::api::RestoreSpec>;
    fn cluster_status(&self) -> Option<&ClusterStatus>;
    fn owned_keys() -> &'static [&'static str];
    /// Per-ordinal configuration following the recorded primary.
    fn render(&self, view: &ClusterView, state: &ReplicationState) -> RenderedConfig;
    fn engine_settings(&self) -> <Self::Engine as Engine>::Settings;
    fn engine(ctx: &Context) -> &Self::Engine;
    /// Continuous binlog archiving (MySQL/MariaDB only).
    fn binlog_archive(&self) -> Option<&crate::api::mysql::BinlogArchiveSpec> {
        None
    }
}

/// Accessors both cluster specs share field for field.
macro_rules! spec_accessors {
    () => {
        fn replicas(&self) -> i32 {
            self.spec.replicas
        }
        fn template(&self) -> &MemberTemplate {
            &self.spec.template
        }
        fn storage(&self) -> &StorageSpec {
            &self.spec.storage
        }
        fn auth(&self) -> &AuthSpec {
            &self.spec.auth
        }
        fn config(&self) -> &BTreeMap<String, String> {
            &self.spec.config
        }
        fn failover(&self) -> &FailoverSpec {
            &self.spec.failover
        }
        fn desired_primary(&self) -> Option<i32> {
            self.spec.primary
        }
        fn restore_spec(&self) -> Option<&crate::api::RestoreSpec> {
            self.spec.restore.as_ref()
        }
        fn cluster_status(&self) -> Option<&ClusterStatus> {
            self.status.as_ref()
        }
    };
}

impl ClusterResource for RedisReplication {
    type Engine = crate::redis::RedisEngine;

    spec_accessors!();

    fn db_kind(&self) -> DbKind {
        DbKind::Redis
    }
    fn owned_keys() -> &'static [&'static str] {
        REDIS_OWNED_KEYS
    }
    fn render(&self, view: &ClusterView, state: &ReplicationState) -> RenderedConfig {
        config::render_redis(view, &self.spec, state)
    }
    fn engine_settings(&self) -> crate::redis::RedisSettings {
        crate::redis::settings_from_spec(&self.spec)
    }
    fn engine(ctx: &Context) -> &Self::Engine {
        &ctx.redis
    }
}

impl ClusterResource for MySQLCluster {
    type Engine = crate::mysql::MySqlEngine;

    spec_accessors!();

    fn db_kind(&self) -> DbKind {
        DbKind::MySql(self.spec.flavor)
    }
    fn owned_keys() -> &'static [&'static str] {
        MYSQL_OWNED_KEYS
    }
    fn render(&self, view: &ClusterView, _state: &ReplicationState) -> RenderedConfig {
        config::render_mysql(view, &self.spec)
    }
    fn engine_settings(&self) -> crate::mysql::MySqlSettings {
        crate::mysql::MySqlEngine::settings_from_spec(&self.spec)
    }
    fn engine(ctx: &Context) -> &Self::Engine {
        &ctx.mysql
    }
    fn binlog_archive(&self) -> Option<&crate::api::mysql::BinlogArchiveSpec> {
        self.spec
            .backup
            .as_ref()
            .and_then(|b| b.binlog_archive.as_deref())
    }
}
