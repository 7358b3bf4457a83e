//! The Redis side of a primary watch ([`crate::watch`]): a pub/sub
//! connection, authenticated like the engine's other connections, that
//! subscribes to a channel nobody publishes on and so sits blocked on a read
//! until the connection breaks. Pub/sub clients are exempt from Redis'
//! idle `timeout`; the connection changes nothing on the server.

use futures::FutureExt;

use super::RedisError;
use super::conn::Conn;
use super::observe::Timeouts;
use crate::engine::{WatchBroken, WatchOpening};

/// The channel a watch subscribes to.
pub const CHANNEL: &str = "__ordinal_primary_watch__";

/// Connect to `host:port`, authenticate with `password`, subscribe, and
/// return the future that completes when the connection ends.
///
/// The engine's own connection ([`Conn`]), not the client library's
/// pub/sub connection: after the subscription it only reads until the
/// end, and a watch per cluster held that library's codec buffers, channel
/// and driver task (about 17 KiB each) for nothing.
pub async fn open(
    host: &str,
    port: u16,
    password: &str,
    timeouts: Timeouts,
) -> Result<WatchBroken, RedisError> {
    let mut conn = Conn::connect(host, port, password, timeouts).await?;
    let (kind, _, _): (String, String, i64) = redis::cmd("SUBSCRIBE")
        .arg(CHANNEL)
        .query_async(&mut conn)
        .await
        .map_err(|e| RedisError::command("SUBSCRIBE (primary watch)", e))?;
    if kind != "subscribe" {
        return Err(RedisError::Protocol(format!(
            "{host}:{port} answered SUBSCRIBE with {kind:?}"
        )));
    }
    let target = format!("{host}:{port}");
    Ok(async move {
        // Messages (someone published on the channel) are ignored.
        let why = conn.until_closed().await;
        format!("the watch connection to {target} ended: {why}")
    }
    .boxed())
}

/// [`open`] as an engine's [`WatchOpening`].
pub fn opening(host: String, port: u16, password: String, timeouts: Timeouts) -> WatchOpening {
    async move {
        open(&host, port, &password, timeouts)
            .await
            .map_err(|e| crate::engine::EngineError::Other(format!("primary watch: {e}")))
    }
    .boxed()
}
