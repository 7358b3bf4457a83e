//! The Redis side of a primary watch ([`crate::watch`]): a pub/sub
//! connection, authenticated like the engine's other connections, that
//! subscribes to a channel nobody publishes on and so sits blocked on a read
//! until the connection breaks. Pub/sub clients are exempt from Redis'
//! idle `timeout`; the connection changes nothing on the server.

use futures::{FutureExt, StreamExt};

use super::RedisError;
use super::observe::Timeouts;
use crate::engine::{WatchBroken, WatchOpening};

/// The channel a watch subscribes to.
pub const CHANNEL: &str = "__ordinal_primary_watch__";

/// Connect to `host:port` with `password`, subscribe, and return the future
/// that completes when the connection ends.
pub async fn open(
    host: &str,
    port: u16,
    password: &str,
    timeouts: Timeouts,
) -> Result<WatchBroken, RedisError> {
    let client = super::observe::client(host, port, password)?;
    let mut pubsub = match tokio::time::timeout(
        timeouts.connect + timeouts.command,
        client.get_async_pubsub(),
    )
    .await
    {
        Ok(Ok(p)) => p,
        Ok(Err(e)) => return Err(RedisError::connect(host, port, e)),
        Err(_) => {
            return Err(RedisError::Timeout(format!(
                "opening the primary watch to {host}:{port}"
            )));
        }
    };
    match tokio::time::timeout(timeouts.command, pubsub.subscribe(CHANNEL)).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => return Err(RedisError::command("SUBSCRIBE (primary watch)", e)),
        Err(_) => {
            return Err(RedisError::Timeout(format!(
                "subscribing the primary watch on {host}:{port}"
            )));
        }
    }
    let target = format!("{host}:{port}");
    Ok(async move {
        let mut messages = pubsub.into_on_message();
        // Messages (someone published on the channel) are ignored; the
        // stream ends when the connection does.
        while messages.next().await.is_some() {}
        format!("the watch connection to {target} closed")
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
