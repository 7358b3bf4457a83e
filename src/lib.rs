//! Ordinal: a Kubernetes operator for replicated Redis and MySQL/MariaDB.

pub mod api;
pub mod engine;
pub mod mysql;
