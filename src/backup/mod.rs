//! Backups: targets, artifacts and manifests; the engines provide the dumps.
//!
//! Modules import in one direction: `contract` (the Job contract: artifact
//! and env names, CLI arguments) is a leaf; `job` (the shared Job shape)
//! builds on it; `restore` (resolving a Backup's artifact, restore steps)
//! on `job`; the builders per Job kind (`backup_job`, `verify_job`,
//! `delete_job`) on those; `run` executes the commands inside the Jobs.
//! `binlog` (the archive's segment format and manifests) is a leaf;
//! `binlog_archive` and `binlog_replay` build on it; `archiver` (the
//! `ordinal binlog archive` process) runs `binlog_archive`, `run` runs
//! `binlog_replay` after a restore's load; `archive_deployment` builds the
//! archiver's Deployment from `contract` and `job`. `target` opens the
//! stores; `gcs_upload` (a leaf) sends GCS uploads through the JSON API.

pub mod archive_deployment;
pub mod archiver;
pub mod artifact;
pub mod backup_job;
pub mod binlog;
pub mod binlog_archive;
pub mod binlog_replay;
pub mod contract;
pub mod delete_job;
pub mod gcs_upload;
pub mod hashing;
pub mod job;
pub mod member;
pub mod restore;
pub mod run;
pub mod schedule;
pub mod target;
pub mod verify_job;
