//! Streamed, consistent, parallel logical backup and restore.

use super::flavor::Dialect;
use super::observe::Login;
use super::{Creds, MySqlEngine, MySqlError};
use crate::engine::Member;

impl MySqlEngine {
    /// Re-seed `target` from a fresh dump of `source`.
    pub(crate) async fn reseed(
        &self,
        _source: &Member,
        _target: &Member,
        _creds: &Creds,
        _d: Dialect,
    ) -> Result<(), MySqlError> {
        let _ = Login {
            user: String::new(),
            password: String::new(),
        };
        Err(MySqlError::Unexpected(
            "re-seeding not implemented yet".into(),
        ))
    }
}
