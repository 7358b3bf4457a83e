//! Backups: targets, artifacts and manifests; the engines provide the dumps.

pub mod artifact;
pub mod hashing;
pub mod job;
pub mod restore;
pub mod run;
pub mod schedule;
pub mod target;
