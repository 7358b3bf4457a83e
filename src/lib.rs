//! Ordinal: a Kubernetes operator for replicated Redis and MySQL/MariaDB.

pub mod api;
pub mod backup;
pub mod cli;
pub mod conn_cache;
pub mod controller;
pub mod engine;
pub mod memory;
pub mod metrics;
pub mod mysql;
pub mod operator;
pub mod plugin;
pub mod redis;
pub mod resources;
pub mod shutdown;
pub mod tls;
pub mod watch;
