//! The MySQL/MariaDB side of a primary watch ([`crate::watch`]): a
//! connection of the operator user (never root) that runs `DO SLEEP(…)`
//! over and over, so it sits blocked on a read until the connection breaks.
//! It holds no lock and no transaction and changes nothing; a `KILL QUERY`
//! merely ends one sleep (the loop goes on), a `KILL` of the connection (a
//! fence killing client connections) breaks the watch, which only costs a
//! pass.

use std::time::Duration;

use futures::FutureExt;
use mysql_async::prelude::Queryable;

use super::MySqlError;
use super::observe::{self, Login};
use crate::engine::{WatchBroken, WatchOpening};

/// Seconds of one `DO SLEEP`; the statement is issued again when it ends.
pub const SLEEP_SECS: u32 = 3600;

/// Connect to `host:port` as `login` and return the future that completes
/// when the connection breaks.
pub async fn open(
    host: &str,
    port: u16,
    login: &Login,
    connect_timeout: Duration,
) -> Result<WatchBroken, MySqlError> {
    let mut conn = observe::connect(host, port, login, connect_timeout).await?;
    let target = format!("{host}:{port}");
    Ok(async move {
        let sql = format!("DO SLEEP({SLEEP_SECS})");
        loop {
            if let Err(e) = conn.query_drop(&sql).await {
                return format!("the watch connection to {target} broke: {e}");
            }
        }
    }
    .boxed())
}

/// [`open`] as an engine's [`WatchOpening`].
pub fn opening(host: String, port: u16, login: Login, connect_timeout: Duration) -> WatchOpening {
    async move {
        open(&host, port, &login, connect_timeout)
            .await
            .map_err(|e| crate::engine::EngineError::Other(format!("primary watch: {e}")))
    }
    .boxed()
}
